"""The campaign database: scored target lists, the exclusion audit and one row per campaign run; the reads that
campaign staff, the CLI and the readout use; and the stored readouts.

Campaign staff pull lists from here, so a run is written all-or-nothing: ``write_run`` replaces everything a run
id stored before in ONE transaction, and any failure leaves the previous state exactly as it was. The same code
runs on SQLite (the default, ``Settings.database_url``) and PostgreSQL (production); on PostgreSQL the rows are
bulk-loaded with binary ``COPY`` into temporary staging tables first.

The tables, engines and ``ensure_schema`` are in ``pipelines.campaigns.store_schema``; the checks of what
``write_run`` is given in ``pipelines.campaigns.store_frames``. ``write_run`` writes the tables' own columns and
nothing else from the frames it is given, so no personal data is stored. A driver error (server unreachable,
unknown role or database, a file that is not a database, a lock past the busy timeout) raises one-line
``store_schema.DatabaseError`` naming the URL with its password masked.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from itertools import repeat
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, String, Table, delete, func, insert, literal, select
from sqlalchemy.engine import Connection

from pipelines.campaigns import store_frames
from pipelines.campaigns.store_frames import RunRecord, fail
from pipelines.campaigns.store_schema import (
    RESULT_COLUMNS,
    SEGMENT_COLUMNS,
    SEGMENT_SUMMARY_COLUMNS,
    STAGE_TABLES,
    TARGET_GROUPS,
    CampaignDBError,
    begin_write,
    campaign_exclusions,
    campaign_results,
    campaign_runs,
    campaign_segments,
    campaign_targets,
    check_engine,
    database_errors,
    ensure_schema,
)


class RunNotFoundError(CampaignDBError, LookupError):
    """A run id (or the latest succeeded run of a campaign) is not in the database."""


# psycopg binary COPY types of the staged columns, in TARGET_COLUMNS / EXCLUSION_COLUMNS order.
_COPY_TYPES = {
    "campaign_targets": ["int8", "float8", "int2", "int4", *["text"] * 9],
    "campaign_exclusions": ["int8", "text", "text"],
}


# ---------------------------------------------------------------------------------------------------- write


def _checkpoint(step: str) -> None:
    """Called at each step of ``write_run`` (a seam for tests that inject failures); does nothing."""


@database_errors
def write_run(
    engine: Engine,
    run: RunRecord,
    targets: pd.DataFrame | None,
    exclusions: pd.DataFrame | None,
    *,
    segments: pd.DataFrame | None = None,
    chunk_rows: int = 100_000,
) -> None:
    """Store a run: its record, its target list, its exclusion audit and its segment mix (``segments``:
    :data:`SEGMENT_SUMMARY_COLUMNS`, optional), replacing whatever the run id had.

    Atomic (one transaction: a failure anywhere leaves the database as it was) and idempotent (writing the same
    run again replaces its rows, never duplicates them). Frames are validated first, with errors naming the table
    and column; only the table's own columns are written (``TARGET_COLUMNS``, ``EXCLUSION_COLUMNS``), and a
    frame with no rows may omit columns. Creates the tables if they are missing.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    check_engine(engine)
    for name, frame in (("campaign_targets", targets), ("campaign_exclusions", exclusions)):
        store_frames.check_frame_run_id(frame, name, run.run_id)
    segment_rows = store_frames.normalize_segments(segments)
    target_rows = store_frames.normalize_targets(targets)
    exclusion_rows = store_frames.normalize_exclusions(exclusions)
    store_frames.check_disjoint(target_rows, exclusion_rows)
    record = store_frames.complete_record(run, target_rows, exclusion_rows)
    ensure_schema(engine)
    frames = {"campaign_targets": target_rows, "campaign_exclusions": exclusion_rows}
    children = (campaign_targets, campaign_exclusions)
    with begin_write(engine, f"pmp.campaign_run:{record['run_id']}") as conn:
        postgres = conn.dialect.name == "postgresql"
        if postgres:
            for name, frame in frames.items():
                STAGE_TABLES[name].create(conn, checkfirst=False)
                _copy_rows(conn, name, frame, chunk_rows)
            _checkpoint("staged")
        for table in children:
            conn.execute(delete(table).where(table.c.run_id == record["run_id"]))
        _checkpoint("deleted")
        _upsert_run(conn, record)
        _checkpoint("run_upserted")
        for table in children:
            if postgres:
                stage = STAGE_TABLES[table.name]
                names = [c.name for c in stage.columns]
                conn.execute(
                    insert(table).from_select(
                        ["run_id", *names],
                        select(literal(record["run_id"], String), *(stage.c[n] for n in names)),
                    )
                )
            else:
                _insert_rows(conn, table, record["run_id"], frames[table.name], chunk_rows)
        conn.execute(delete(campaign_segments).where(campaign_segments.c.run_id == record["run_id"]))
        if segment_rows:
            conn.execute(insert(campaign_segments), [{"run_id": record["run_id"], **r} for r in segment_rows])
        _checkpoint("written")


def _upsert_run(conn: Connection, record: dict[str, Any]) -> None:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    stmt = dialect_insert(campaign_runs).values(**record)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["run_id"],
            set_={k: stmt.excluded[k] for k in record if k != "run_id"},
        )
    )


def _chunks(frame: pd.DataFrame, chunk_rows: int) -> Iterator[tuple[int, list[list[Any]]]]:
    """Column lists of Python values (None for missing), ``chunk_rows`` rows at a time."""
    arrays = []
    for name in frame.columns:
        values = frame[name].to_numpy()
        if values.dtype == object:
            # pandas may hold missing strings as NaN; the drivers need None.
            values = np.where(pd.isna(values), None, values)
        arrays.append(values)
    for i, start in enumerate(range(0, len(frame), chunk_rows)):
        yield i, [a[start : start + chunk_rows].tolist() for a in arrays]


def _copy_rows(conn: Connection, table_name: str, frame: pd.DataFrame, chunk_rows: int) -> int:
    """Binary ``COPY`` of the frame into a staging table (measured: about twice as fast as CSV text)."""
    stage = STAGE_TABLES[table_name]
    quote = conn.dialect.identifier_preparer.quote
    columns = ", ".join(quote(c) for c in frame.columns)
    n = 0
    with (
        conn.connection.driver_connection.cursor() as cursor,
        cursor.copy(f"COPY {quote(stage.name)} ({columns}) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        copy.set_types(_COPY_TYPES[table_name])
        for i, columns_chunk in _chunks(frame, chunk_rows):
            for row in zip(*columns_chunk, strict=True):
                copy.write_row(row)
            n += len(columns_chunk[0])
            _checkpoint(f"{table_name}:chunk:{i}")
    return n


def _insert_rows(conn: Connection, table: Table, run_id: str, frame: pd.DataFrame, chunk_rows: int) -> int:
    """``executemany`` inserts, a chunk at a time, inside the caller's transaction."""
    columns = ["run_id", *frame.columns]
    quote = conn.dialect.identifier_preparer.quote
    sql = (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
        f"VALUES ({', '.join('?' * len(columns))})"
    )
    n = 0
    for i, columns_chunk in _chunks(frame, chunk_rows):
        rows = list(zip(repeat(run_id), *columns_chunk))
        conn.exec_driver_sql(sql, rows)
        n += len(rows)
        _checkpoint(f"{table.name}:chunk:{i}")
    return n


# ----------------------------------------------------------------------------------------------------- read

_TARGET_DTYPES = {
    "run_id": "str",
    "customer_id": "int64",
    "score": "float64",
    "decile": "int64",
    "rank": "int64",
    "target_group": "str",
    "channel": "str",
    "reason_1": "str",
    "reason_2": "str",
    "reason_3": "str",
    **dict.fromkeys(SEGMENT_COLUMNS, "str"),
}
_EXCLUSION_DTYPES = {"run_id": "str", "customer_id": "int64", "exclusion_reason": "str", "detail": "str"}
_RUN_DTYPES = {
    "run_id": "str",
    "campaign": "str",
    "logical_date": "datetime64[us]",
    "model_name": "str",
    "model_version": "str",
    "status": "str",
    **{
        n: "Int64" for n in ("n_scored", "n_eligible", "n_excluded", "n_selected", "n_treatment", "n_holdout")
    },
    "srm_p_value": "float64",
    "holdout_fraction": "float64",
    "created_at": "datetime64[us, UTC]",
    "finished_at": "datetime64[us, UTC]",
    "details": "str",
}
_CONTACT_DTYPES = {"customer_id": "int64", "campaign": "str", "contact_date": "datetime64[us]"}


def typed_frame(rows: Sequence[Any], dtypes: dict[str, str]) -> pd.DataFrame:
    """A frame with exactly these columns and dtypes, whichever backend the rows came from."""
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(dtypes)
    out = {}
    for (name, dtype), values in zip(dtypes.items(), columns, strict=True):
        if dtype.startswith("datetime64"):
            out[name] = pd.to_datetime(pd.Series(values, dtype=object), utc="UTC" in dtype).astype(dtype)
        else:
            out[name] = pd.Series(values, dtype=dtype)
    return pd.DataFrame(out, columns=list(dtypes))


def _latest_first(query: Any) -> Any:
    c = campaign_runs.c
    return query.order_by(c.logical_date.desc(), c.created_at.desc(), c.run_id.desc())


@database_errors
def list_runs(engine: Engine, campaign: str | None = None) -> pd.DataFrame:
    """The campaign_runs rows (of one campaign, or all), newest first (logical date, then creation time)."""
    query = select(campaign_runs)
    if campaign is not None:
        query = query.where(campaign_runs.c.campaign == campaign)
    with engine.connect() as conn:
        rows = conn.execute(_latest_first(query)).all()
    return typed_frame(rows, _RUN_DTYPES)


@database_errors
def resolve_run(engine: Engine, campaign: str, run: str = "latest") -> str:
    """The run id ``run`` names for ``campaign``: itself, or for "latest" the newest succeeded run.

    Raises RunNotFoundError, listing the campaign's succeeded runs, when there is no such succeeded run.
    """
    c = campaign_runs.c
    with engine.connect() as conn:
        runs = conn.execute(_latest_first(select(c.run_id, c.status).where(c.campaign == campaign))).all()
        found = conn.execute(select(c.campaign, c.status).where(c.run_id == run)).first()
        campaigns = conn.execute(select(c.campaign).distinct().order_by(c.campaign)).scalars().all()
    succeeded = [r.run_id for r in runs if r.status == "succeeded"]
    if run == "latest" and succeeded:
        return succeeded[0]
    if run in succeeded:
        return run
    if run == "latest":
        problem = f"campaign {campaign!r} has no succeeded run"
    elif found is None:
        problem = f"run {run!r} does not exist"
    elif found.campaign != campaign:
        problem = f"run {run!r} belongs to campaign {found.campaign!r}, not {campaign!r}"
    else:
        problem = f"run {run!r} has status {found.status!r}; only succeeded runs can be read"
    if runs:
        listed = ", ".join(f"{r.run_id} ({r.status})" for r in runs[:20])
        available = f"runs of {campaign!r}, newest first: {listed}{' ...' if len(runs) > 20 else ''}"
    else:
        available = f"no runs of {campaign!r}; campaigns with runs: {campaigns}"
    raise RunNotFoundError(f"{problem}; {available}")


@database_errors
def read_targets(
    engine: Engine,
    campaign: str,
    run: str = "latest",
    groups: Sequence[str] = ("treatment",),
) -> pd.DataFrame:
    """The target list of a run (a run id, or "latest": the newest succeeded run of the campaign), by rank.

    Only the given target groups are returned (treatment by default: the customers to contact). Columns:
    run_id, customer_id, score, decile, rank, target_group, channel, reason_1..3.
    """
    groups = [groups] if isinstance(groups, str) else list(groups)
    unknown = sorted(set(groups) - set(TARGET_GROUPS))
    if not groups or unknown:
        raise ValueError(f"groups must be a non-empty subset of {list(TARGET_GROUPS)}, got {groups}")
    run_id = resolve_run(engine, campaign, run)
    t = campaign_targets.c
    query = (
        select(*(t[n] for n in _TARGET_DTYPES))
        .where(t.run_id == run_id, t.target_group.in_(groups))
        .order_by(t.rank, t.customer_id)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return typed_frame(rows, _TARGET_DTYPES)


def _require_run(conn: Connection, run_id: str) -> None:
    if conn.execute(select(campaign_runs.c.run_id).where(campaign_runs.c.run_id == run_id)).first() is None:
        recent = conn.execute(_latest_first(select(campaign_runs.c.run_id)).limit(20)).scalars().all()
        raise RunNotFoundError(f"run {run_id!r} does not exist; most recent runs: {recent}")


@database_errors
def read_exclusions(engine: Engine, run_id: str) -> pd.DataFrame:
    """The exclusion audit of a run (run_id, customer_id, exclusion_reason, detail) by customer_id."""
    e = campaign_exclusions.c
    with engine.connect() as conn:
        _require_run(conn, run_id)
        rows = conn.execute(
            select(*(e[n] for n in _EXCLUSION_DTYPES)).where(e.run_id == run_id).order_by(e.customer_id)
        ).all()
    return typed_frame(rows, _EXCLUSION_DTYPES)


@database_errors
def exclusion_counts(engine: Engine, run_id: str) -> dict[str, int]:
    """Excluded customers of a run per reason, largest first, counted in the database."""
    e = campaign_exclusions.c
    n = func.count().label("n")
    with engine.connect() as conn:
        _require_run(conn, run_id)
        rows = conn.execute(
            select(e.exclusion_reason, n)
            .where(e.run_id == run_id)
            .group_by(e.exclusion_reason)
            .order_by(n.desc(), e.exclusion_reason)
        ).all()
    return {str(reason): int(count) for reason, count in rows}


@database_errors
def read_segments(engine: Engine, run_id: str) -> pd.DataFrame:
    """The segment mix of a run (:data:`SEGMENT_SUMMARY_COLUMNS`), by dimension then size."""
    s_ = campaign_segments.c
    with engine.connect() as conn:
        _require_run(conn, run_id)
        rows = conn.execute(
            select(*(s_[n] for n in SEGMENT_SUMMARY_COLUMNS))
            .where(s_.run_id == run_id)
            .order_by(s_.dimension, s_.customers.desc(), s_.segment)
        ).all()
    return pd.DataFrame(rows, columns=list(SEGMENT_SUMMARY_COLUMNS))


@database_errors
def write_result(engine: Engine, row: dict[str, Any]) -> None:
    """Store (or replace) the readout of one campaign in ``campaign_results``, in one transaction."""
    record = {c: row.get(c) for c in RESULT_COLUMNS}
    record["created_at"] = record["created_at"] or datetime.now(UTC)
    missing = [c.name for c in campaign_results.columns if not c.nullable and record[c.name] is None]
    if missing:
        raise fail("campaign_results", missing[0], f"missing value(s) for {missing}")
    ensure_schema(engine)
    with begin_write(engine, f"pmp.campaign_result:{record['campaign_id']}") as conn:
        conn.execute(delete(campaign_results).where(campaign_results.c.campaign_id == record["campaign_id"]))
        conn.execute(insert(campaign_results).values(**record))


@database_errors
def read_results(engine: Engine) -> pd.DataFrame:
    """Every stored campaign readout, by campaign id."""
    with engine.connect() as conn:
        rows = conn.execute(select(campaign_results).order_by(campaign_results.c.campaign_id)).all()
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS))


@database_errors
def group_counts(engine: Engine, run_id: str) -> dict[str, int]:
    """Stored target rows of a run per group, e.g. ``{"treatment": 900, "holdout": 100}`` (both keys always)."""
    t = campaign_targets.c
    with engine.connect() as conn:
        _require_run(conn, run_id)
        rows = conn.execute(
            select(t.target_group, func.count()).where(t.run_id == run_id).group_by(t.target_group)
        ).all()
    return {group: 0 for group in TARGET_GROUPS} | {group: int(n) for group, n in rows}


@database_errors
def contact_history(engine: Engine, before: date, since: date | None = None) -> pd.DataFrame:
    """Who was contacted when: treatment rows of succeeded runs with ``since <= logical_date < before``.

    Columns customer_id, campaign, contact_date (the run's logical date), one row per customer, campaign and
    date, across all campaigns. ``before`` is exclusive, so a run re-done for the same date does not count
    its own earlier version.
    """
    r, t = campaign_runs.c, campaign_targets.c
    before = pd.Timestamp(before).date()
    conditions = [r.status == "succeeded", t.target_group == "treatment", r.logical_date < before]
    if since is not None:
        conditions.append(r.logical_date >= pd.Timestamp(since).date())
    query = (
        select(t.customer_id, r.campaign, r.logical_date.label("contact_date"))
        .select_from(campaign_targets.join(campaign_runs, t.run_id == r.run_id))
        .where(*conditions)
        .distinct()
        .order_by(r.logical_date, r.campaign, t.customer_id)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return typed_frame(rows, _CONTACT_DTYPES)


__all__ = [
    "RunNotFoundError",
    "contact_history",
    "exclusion_counts",
    "group_counts",
    "list_runs",
    "read_exclusions",
    "read_results",
    "read_segments",
    "read_targets",
    "resolve_run",
    "write_result",
    "write_run",
]
