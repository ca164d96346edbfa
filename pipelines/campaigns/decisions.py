"""The decision log in the campaign database: what the real-time decision service answered, one row per event.

A row (:data:`DECISION_COLUMNS`) says which customer's event was answered when, about which campaign, with which
offer (or none), in which group (a held-out customer gets no offer and is logged as such), with which score, model
version and feature snapshot, and how long the answer took. Rows are checked one by one
(:func:`normalize_decision`: every column present, nothing else, each value of its type; a broken rule raises
``FrameValidationError`` naming ``campaign_decisions.<column>``) and written in batches (:func:`write_decisions`:
one transaction, and a ``decision_id`` already stored is skipped, so a batch sent twice is stored once).
:func:`read_decisions` is what the readout of a real-time campaign reads (``pipelines.jobs.realtime``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select

from pipelines.campaigns.store import typed_frame
from pipelines.campaigns.store_frames import fail
from pipelines.campaigns.store_schema import (
    DECISION_COLUMNS,
    TARGET_GROUPS,
    campaign_decisions,
    check_engine,
    database_errors,
    ensure_schema,
)

TABLE = "campaign_decisions"
_HEX_ID = re.compile(r"^[0-9a-f]{32}$")
_INT64_MAX = 2**63 - 1
_NUMBERS = ("score", "expected_value", "latency_ms")
_DTYPES = {
    "decision_id": "str",
    "decided_at": "datetime64[us, UTC]",
    "customer_id": "int64",
    "event_type": "str",
    "event_ts": "datetime64[us, UTC]",
    "campaign": "str",
    "offer": "str",
    "channel": "str",
    "target_group": "str",
    "score": "float64",
    "expected_value": "float64",
    "reason": "str",
    "model_name": "str",
    "model_version": "str",
    "snapshot_as_of": "datetime64[us]",
    "latency_ms": "float64",
}


def _missing(value: Any) -> bool:
    """None, NaN or NaT (a frame holds a missing value as any of them)."""
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def _timestamp(value: Any, column: str, where: str) -> datetime:
    if isinstance(value, str):
        try:
            value = pd.Timestamp(value)
        except ValueError as exc:
            raise fail(TABLE, column, f"{where}: not a timestamp: {value!r}") from exc
    if isinstance(value, np.datetime64):
        raise fail(TABLE, column, f"{where}: must be timezone-aware (UTC), got naive {value!r}")
    if not isinstance(value, datetime):
        raise fail(TABLE, column, f"{where}: must be a timezone-aware datetime, got {value!r}")
    if value.tzinfo is None:
        raise fail(TABLE, column, f"{where}: must be timezone-aware (UTC), got naive {value!r}")
    return pd.Timestamp(value).to_pydatetime().astimezone(UTC)


def _number(value: Any, column: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise fail(TABLE, column, f"{where}: must be a number, got {value!r}")
    if not math.isfinite(float(value)):
        raise fail(TABLE, column, f"{where}: must be finite, got {value!r}")
    return float(value)


def _text(value: Any, column: str, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise fail(TABLE, column, f"{where}: must be a non-empty string, got {value!r}")
    return value


def normalize_decision(row: dict[str, Any], index: int = 0) -> dict[str, Any]:
    """The row with plain Python values, or ``FrameValidationError`` naming the column, the row and its decision.

    Every column of :data:`DECISION_COLUMNS` must be given (nullable ones as None) and nothing else. Rules:
    ``decision_id`` 32 lower-case hex digits (``uuid4().hex``); ``decided_at`` and ``event_ts`` timezone-aware
    (stored in UTC); ``customer_id`` a 64-bit integer; ``event_type`` and ``reason`` non-empty; ``target_group``
    treatment, holdout or None; scores, values and latency finite numbers or None; ``snapshot_as_of`` a date or
    None. An offer is always the decision's campaign, and a held-out customer gets none.
    """
    if not isinstance(row, dict):
        raise fail(
            TABLE, None, f"row {index}: must be a dict of the table's columns, got {type(row).__name__}"
        )
    decision = row.get("decision_id")
    where = f"row {index} (decision {decision!r})"
    unknown = sorted(set(row) - set(DECISION_COLUMNS), key=str)
    if unknown:
        raise fail(
            TABLE,
            str(unknown[0]),
            f"{where}: unknown field(s) {unknown}; the columns are {list(DECISION_COLUMNS)}",
        )
    absent = [c for c in DECISION_COLUMNS if c not in row]
    if absent:
        raise fail(
            TABLE, absent[0], f"{where}: missing field(s) {absent} (give None for an empty nullable one)"
        )
    nullable = {c.name for c in campaign_decisions.columns if c.nullable}
    out: dict[str, Any] = {}
    for column in DECISION_COLUMNS:
        value = row[column]
        if _missing(value):
            if column not in nullable:
                raise fail(TABLE, column, f"{where}: must not be null")
            out[column] = None
        elif column == "decision_id":
            if not isinstance(value, str) or not _HEX_ID.match(value):
                raise fail(
                    TABLE, column, f"{where}: must be 32 lower-case hex digits (uuid4().hex), got {value!r}"
                )
            out[column] = value
        elif column in ("decided_at", "event_ts"):
            out[column] = _timestamp(value, column, where)
        elif column == "customer_id":
            if (
                isinstance(value, bool)
                or not isinstance(value, int | np.integer)
                or abs(int(value)) > _INT64_MAX
            ):
                raise fail(TABLE, column, f"{where}: must be a 64-bit integer, got {value!r}")
            out[column] = int(value)
        elif column in ("event_type", "reason"):
            out[column] = _text(value, column, where)
        elif column == "target_group":
            if value not in TARGET_GROUPS:
                raise fail(
                    TABLE, column, f"{where}: must be one of {list(TARGET_GROUPS)} or None, got {value!r}"
                )
            out[column] = str(value)
        elif column in _NUMBERS:
            out[column] = _number(value, column, where)
        elif column == "snapshot_as_of":
            try:
                out[column] = pd.Timestamp(value).date()
            except (TypeError, ValueError) as exc:
                raise fail(TABLE, column, f"{where}: not a date: {value!r}") from exc
        else:  # campaign, offer, channel, model_name, model_version
            out[column] = _text(value, column, where)
    if out["offer"] is not None and out["offer"] != out["campaign"]:
        raise fail(
            TABLE, "offer", f"{where}: the offer {out['offer']!r} is not the campaign {out['campaign']!r}"
        )
    if out["target_group"] == "holdout" and out["offer"] is not None:
        raise fail(TABLE, "offer", f"{where}: a held-out customer gets no offer, got {out['offer']!r}")
    return out


def normalize_decisions(rows: Iterable[dict[str, Any]] | pd.DataFrame) -> list[dict[str, Any]]:
    """Every row checked (:func:`normalize_decision`), a repeated ``decision_id`` kept once; the same id with
    different values is a ``FrameValidationError``."""
    if isinstance(rows, pd.DataFrame):
        rows = rows.to_dict("records")
    kept: dict[str, dict[str, Any]] = {}
    for i, row in enumerate(rows):
        clean = normalize_decision(row, i)
        earlier = kept.setdefault(clean["decision_id"], clean)
        if earlier != clean:
            raise fail(
                TABLE,
                "decision_id",
                f"row {i}: decision {clean['decision_id']!r} is given twice, differently",
            )
    return list(kept.values())


@database_errors
def write_decisions(
    engine: Engine, rows: Iterable[dict[str, Any]] | pd.DataFrame, *, ensure: bool = True
) -> int:
    """Store decisions in one transaction (a bulk insert); returns how many were new.

    Idempotent on ``decision_id``: a decision already stored is left as it is and not counted, so a batch
    retried after a lost answer is stored once. The rows are checked first (:func:`normalize_decisions`);
    nothing is written when one is broken. ``ensure`` creates the tables first when missing (a writer that has
    done so once, such as ``pipelines.decide.log.DecisionLog``, passes False).
    """
    clean = normalize_decisions(rows)
    if not clean:
        return 0
    check_engine(engine)
    if ensure:
        ensure_schema(engine)
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    statement = (
        dialect_insert(campaign_decisions)
        .on_conflict_do_nothing(index_elements=["decision_id"])
        .returning(campaign_decisions.c.decision_id)
    )
    with engine.connect() as conn:
        conn.execution_options(pmp_write=True)  # SQLite: BEGIN IMMEDIATE, a writer waits instead of failing
        with conn.begin():
            inserted = conn.execute(statement, clean).all()
    return len(inserted)


def _utc(value: Any, name: str) -> datetime:
    """A date (read as midnight UTC) or an aware datetime, as an aware UTC datetime; a naive time is refused."""
    stamp = pd.Timestamp(value)
    if stamp.tz is None:
        if isinstance(value, datetime) or stamp != stamp.normalize():
            raise ValueError(f"{name} must be a date or a timezone-aware datetime, got naive {value!r}")
        stamp = stamp.tz_localize(UTC)
    return stamp.tz_convert(UTC).to_pydatetime()


@database_errors
def read_decisions(
    engine: Engine, campaign: str | None = None, day: Any = None, since: Any = None
) -> pd.DataFrame:
    """The stored decisions, oldest first (``decided_at``, then ``decision_id``), with :data:`DECISION_COLUMNS`.

    ``campaign`` keeps that campaign's; ``day`` (a date) those whose event happened during that UTC day (the day
    the offer met the customer: a replayed or late event belongs to its own day, not to the day it was decided);
    ``since`` (a date, read as midnight UTC, or an aware datetime) those decided at or after it. Timestamps come
    back as UTC.
    """
    d = campaign_decisions.c
    conditions = []
    if campaign is not None:
        conditions.append(d.campaign == campaign)
    if day is not None:
        start = _utc(pd.Timestamp(day).date(), "day")
        conditions += [d.event_ts >= start, d.event_ts < start + timedelta(days=1)]
    if since is not None:
        conditions.append(d.decided_at >= _utc(since, "since"))
    query = select(*(d[c] for c in DECISION_COLUMNS)).where(*conditions).order_by(d.decided_at, d.decision_id)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return typed_frame(rows, _DTYPES)


__all__ = [
    "DECISION_COLUMNS",
    "normalize_decision",
    "normalize_decisions",
    "read_decisions",
    "write_decisions",
]
