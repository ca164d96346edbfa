"""What ``write_run`` is given, checked and normalised before anything is written: the run record, the target
list, the exclusion audit and the segment mix.

Every rule broken raises :class:`FrameValidationError` naming the table and the column; a frame that passes comes
back with exactly the table's columns (``TARGET_COLUMNS``, ``EXCLUSION_COLUMNS``) as plain NumPy values, sorted by
``customer_id`` (the primary key's order). Nothing here touches the database.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd

from pipelines.campaigns.store_schema import (
    EXCLUSION_COLUMNS,
    EXCLUSION_REQUIRED,
    N_DECILES,
    RUN_STATUSES,
    SEGMENT_COLUMNS,
    SEGMENT_SUMMARY_COLUMNS,
    TARGET_COLUMNS,
    TARGET_GROUPS,
    TARGET_REQUIRED,
)

_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1


class FrameValidationError(ValueError):
    """A frame (or run record) handed to ``write_run`` breaks a rule; the message names the table and column."""


@dataclass
class RunRecord:
    """One campaign run: what ran, on which model, and how many customers went where.

    ``n_selected``, ``n_treatment``, ``n_holdout`` and ``n_excluded`` are filled from the frames by ``write_run``
    when left as None; ``created_at`` and ``finished_at`` are filled with the write time.
    """

    run_id: str
    campaign: str
    logical_date: date
    model_name: str | None = None
    model_version: str | None = None
    status: str = "succeeded"
    n_scored: int | None = None
    n_eligible: int | None = None
    n_excluded: int | None = None
    n_selected: int | None = None
    n_treatment: int | None = None
    n_holdout: int | None = None
    srm_p_value: float | None = None
    holdout_fraction: float | None = None
    created_at: datetime | None = None
    finished_at: datetime | None = None
    details: str | dict | None = None


# ----------------------------------------------------------------------------------------------- validation


def fail(table: str, column: str | None, message: str) -> FrameValidationError:
    """The error to raise, its message starting with ``table.column:`` (or ``table:``)."""
    where = table if column is None else f"{table}.{column}"
    return FrameValidationError(f"{where}: {message}")


def _examples(values: Any, k: int = 5) -> str:
    values = list(values)
    shown = ", ".join(repr(v.item() if isinstance(v, np.generic) else v) for v in values[:k])
    return f"[{shown}{', ...' if len(values) > k else ''}]"


def _check_columns(frame: pd.DataFrame, table: str, required: Sequence[str]) -> None:
    if len(frame) == 0:
        return
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise fail(table, None, f"missing required column(s) {missing}; the frame has {list(frame.columns)}")
    duplicated = frame.columns[frame.columns.duplicated()].unique().tolist()
    if duplicated:
        raise fail(table, None, f"duplicated column name(s) {duplicated}")


def _int_column(frame: pd.DataFrame, table: str, column: str, lo: int, hi: int) -> np.ndarray:
    series = frame[column]
    nulls = int(series.isna().sum())
    if nulls:
        raise fail(table, column, f"{nulls} null value(s); every row needs a {column}")
    if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
        try:
            series = pd.to_numeric(series, errors="raise")
        except (TypeError, ValueError) as exc:
            raise fail(table, column, f"must be integers, got dtype {frame[column].dtype}: {exc}") from exc
    values = series.to_numpy()
    if values.dtype.kind == "f":
        fractional = ~np.isfinite(values) | (values != np.round(values))
        if fractional.any():
            raise fail(table, column, f"must be whole numbers, got {_examples(values[fractional])}")
    elif values.dtype.kind not in "iu":
        raise fail(table, column, f"must be integers, got dtype {series.dtype}")
    out_of_range = (values < lo) | (values > hi)
    if out_of_range.any():
        raise fail(table, column, f"values must be in [{lo}, {hi}], got {_examples(values[out_of_range])}")
    return values.astype(np.int64)


def _str_column(frame: pd.DataFrame, table: str, column: str, *, required: bool) -> np.ndarray:
    if column not in frame.columns:
        return np.full(len(frame), None, dtype=object)
    series = frame[column]
    missing = series.isna().to_numpy()
    if required and missing.any():
        raise fail(table, column, f"{int(missing.sum())} null value(s); every row needs a {column}")
    values = series.astype(object).to_numpy(copy=True)
    values[missing] = None
    if pd.api.types.infer_dtype(values, skipna=True) not in ("string", "empty"):
        present = ~missing
        values[present] = [v if isinstance(v, str) else str(v) for v in values[present]]
    if required:
        empty = values == ""
        if empty.any():
            raise fail(table, column, f"{int(empty.sum())} empty value(s); every row needs a {column}")
    return values


def check_frame_run_id(frame: pd.DataFrame | None, table: str, run_id: str) -> None:
    """Raises FrameValidationError when the frame carries rows of another run id."""
    # The run id comes from the RunRecord; a frame that carries its own must agree with it.
    if frame is not None and "run_id" in frame.columns:
        others = pd.unique(frame["run_id"][frame["run_id"] != run_id])
        if len(others):
            raise fail(table, "run_id", f"rows of run(s) {_examples(others)} in a write of run {run_id!r}")


def _check_unique_ids(ids: np.ndarray, table: str) -> None:
    duplicated = pd.Series(ids).duplicated(keep=False).to_numpy()
    if duplicated.any():
        dupes = np.unique(ids[duplicated])
        raise fail(
            table,
            "customer_id",
            f"{len(dupes)} customer_id(s) appear more than once in the run: {_examples(dupes)}",
        )


def _in_key_order(columns: dict[str, np.ndarray]) -> pd.DataFrame:
    """The rows sorted by customer_id: the primary key's order, so its b-tree is filled by appending."""
    order = np.argsort(columns["customer_id"], kind="stable")
    # dtype kept as given: object columns stay object (pandas would otherwise re-infer them as str, slowly).
    return pd.DataFrame(
        {name: pd.Series(values[order], dtype=values.dtype) for name, values in columns.items()}
    )


def normalize_targets(frame: pd.DataFrame | None) -> pd.DataFrame:
    """The target rows as ``TARGET_COLUMNS`` with plain NumPy values, or a FrameValidationError."""
    table = "campaign_targets"
    frame = pd.DataFrame() if frame is None else frame
    _check_columns(frame, table, TARGET_REQUIRED)
    if len(frame) == 0:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in TARGET_COLUMNS})
    ids = _int_column(frame, table, "customer_id", -_INT64_MAX, _INT64_MAX)
    _check_unique_ids(ids, table)
    score = frame["score"]
    if pd.api.types.is_bool_dtype(score):
        raise fail(table, "score", f"must be numeric, got dtype {score.dtype}")
    if not pd.api.types.is_numeric_dtype(score):
        try:
            score = pd.to_numeric(score, errors="raise")
        except (TypeError, ValueError) as exc:
            raise fail(table, "score", f"must be numeric, got dtype {score.dtype}: {exc}") from exc
    score_values = score.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(score_values)
    if bad.any():
        raise fail(table, "score", f"{int(bad.sum())} null or infinite score(s)")
    groups = _str_column(frame, table, "target_group", required=True)
    outside = ~pd.Series(groups).isin(TARGET_GROUPS).to_numpy()
    if outside.any():
        raise fail(
            table,
            "target_group",
            f"values must be one of {list(TARGET_GROUPS)}, got {_examples(pd.unique(groups[outside]))}",
        )
    return _in_key_order(
        {
            "customer_id": ids,
            "score": score_values,
            "decile": _int_column(frame, table, "decile", 1, N_DECILES),
            "rank": _int_column(frame, table, "rank", 1, _INT32_MAX),
            "target_group": groups,
            **{
                c: _str_column(frame, table, c, required=False)
                for c in ("channel", "reason_1", "reason_2", "reason_3", *SEGMENT_COLUMNS)
            },
        }
    )


def normalize_exclusions(frame: pd.DataFrame | None) -> pd.DataFrame:
    """The exclusion rows as ``EXCLUSION_COLUMNS`` with plain NumPy values, or a FrameValidationError."""
    table = "campaign_exclusions"
    frame = pd.DataFrame() if frame is None else frame
    _check_columns(frame, table, EXCLUSION_REQUIRED)
    if len(frame) == 0:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in EXCLUSION_COLUMNS})
    ids = _int_column(frame, table, "customer_id", -_INT64_MAX, _INT64_MAX)
    _check_unique_ids(ids, table)
    return _in_key_order(
        {
            "customer_id": ids,
            "exclusion_reason": _str_column(frame, table, "exclusion_reason", required=True),
            "detail": _str_column(frame, table, "detail", required=False),
        }
    )


def normalize_segments(frame: pd.DataFrame | None) -> list[dict[str, Any]]:
    """The segment-mix rows as plain dicts (a few dozen), or a FrameValidationError."""
    table = "campaign_segments"
    if frame is None or len(frame) == 0:
        return []
    _check_columns(frame, table, ("dimension", "segment", "customers", "treatment", "holdout", "share"))
    if frame.duplicated(["dimension", "segment"]).any():
        raise fail(table, "segment", "duplicate (dimension, segment) rows")
    rows = []
    for record in frame.to_dict("records"):
        row = {}
        for c in SEGMENT_SUMMARY_COLUMNS:
            v = record.get(c)
            v = None if v is None or (isinstance(v, float) and np.isnan(v)) else v
            row[c] = v.item() if isinstance(v, np.generic) else v
        if row["dimension"] is None or row["segment"] is None:
            raise fail(table, "segment", "every row needs a dimension and a segment")
        row["dimension"], row["segment"] = str(row["dimension"]), str(row["segment"])
        rows.append(row)
    return rows


def check_disjoint(targets: pd.DataFrame, exclusions: pd.DataFrame) -> None:
    """Raises FrameValidationError when a customer is both targeted and excluded."""
    if len(targets) and len(exclusions):
        both = np.intersect1d(targets["customer_id"].to_numpy(), exclusions["customer_id"].to_numpy())
        if len(both):
            raise fail(
                "campaign_targets",
                "customer_id",
                f"{len(both)} customer(s) are both targeted and excluded (campaign_exclusions): {_examples(both)}",
            )


def complete_record(run: RunRecord, targets: pd.DataFrame, exclusions: pd.DataFrame) -> dict[str, Any]:
    """The campaign_runs row: counts and timestamps filled in, every field checked."""
    table = "campaign_runs"
    if not isinstance(run.run_id, str) or not run.run_id.strip():
        raise fail(table, "run_id", f"must be a non-empty string, got {run.run_id!r}")
    if not isinstance(run.campaign, str) or not run.campaign.strip():
        raise fail(table, "campaign", f"must be a non-empty string, got {run.campaign!r}")
    if run.status not in RUN_STATUSES:
        raise fail(table, "status", f"must be one of {list(RUN_STATUSES)}, got {run.status!r}")
    try:
        logical_date = pd.Timestamp(run.logical_date).date()
    except (TypeError, ValueError) as exc:
        raise fail(table, "logical_date", f"not a date: {run.logical_date!r}") from exc

    groups = targets["target_group"].to_numpy()
    actual = {
        "n_selected": len(targets),
        "n_treatment": int((groups == "treatment").sum()),
        "n_holdout": int((groups == "holdout").sum()),
    }
    record = replace(run, logical_date=logical_date)
    for name, value in actual.items():
        given = getattr(record, name)
        if given is None:
            record = replace(record, **{name: value})
        elif given != value:
            raise fail(table, name, f"is {given} but the targets frame has {value} such row(s)")
    if record.n_excluded is None:
        record = replace(record, n_excluded=len(exclusions))
    for name in ("n_scored", "n_eligible", "n_excluded", "n_selected", "n_treatment", "n_holdout"):
        value = getattr(record, name)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
                raise fail(table, name, f"must be a non-negative integer or None, got {value!r}")
            record = replace(record, **{name: int(value)})
    for name in ("srm_p_value", "holdout_fraction"):
        value = getattr(record, name)
        if value is not None:
            if not isinstance(value, int | float | np.number) or not 0.0 <= float(value) <= 1.0:
                raise fail(table, name, f"must be a number in [0, 1] or None, got {value!r}")
            record = replace(record, **{name: float(value)})
    for name in ("model_name", "model_version"):
        value = getattr(record, name)
        if value is not None:
            record = replace(record, **{name: str(value)})

    now = datetime.now(UTC)
    for name in ("created_at", "finished_at"):
        value = getattr(record, name)
        if value is None:
            value = now
        elif not isinstance(value, datetime) or value.tzinfo is None:
            raise fail(table, name, f"must be a timezone-aware datetime, got {value!r}")
        record = replace(record, **{name: pd.Timestamp(value).to_pydatetime().astimezone(UTC)})

    details = record.details
    if isinstance(details, dict):
        details = json.dumps(details, sort_keys=True, default=str)
    elif details is not None:
        try:
            json.loads(details)
        except (TypeError, ValueError) as exc:
            raise fail(table, "details", f"must be a dict or JSON text: {exc}") from exc
    return {**asdict(record), "details": details}


__all__ = [
    "FrameValidationError",
    "RunRecord",
    "check_disjoint",
    "check_frame_run_id",
    "complete_record",
    "fail",
    "normalize_exclusions",
    "normalize_segments",
    "normalize_targets",
]
