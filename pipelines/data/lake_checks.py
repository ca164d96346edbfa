"""Two of the lake's own checks that ``gate_lake`` runs besides the suites: columns the data model does not have
(schema drift: an extra or renamed column), and days without any row inside a month (a day of data lost).

Both report critical outcomes of the lake (:func:`gate_reports.lake_outcome`) naming the table, the column and
the partition or the days.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.data import schema, storage
from pipelines.data.gate_reports import LAKE_FAULT, Outcome, lake_outcome

EXTRA_COLUMN = "columns as in the data model"
DAY_MISSING = "no day without rows"
# Suite meta key: in a month partition whose days average at least this many rows, a day without any row fails
# DAY_MISSING. Tables whose suite lacks it, and sparser months, are not checked (a quiet day is then plausible).
DAILY_ROWS_META = "day_missing_min_rows_per_day"
MAX_DAYS_SHOWN = 5


def column_drift(table: str, spec: schema.Table, files: list[tuple[str, str]]) -> list[Outcome]:
    """Columns stored in ``files`` (``(path, label)`` pairs, label ``month=2025-02/part-00000.parquet``) that the
    data model does not have: one critical outcome per column, naming a file holding it (and how many partitions
    do) and, when a model column is missing from the same files, the column it may have been renamed from. (The
    missing column fails its suite's ``expect_column_to_exist`` rule.)"""
    model = spec.column_names
    extra: dict[str, list[str]] = {}
    lacking_beside: dict[str, set[str]] = {}
    for path, label in files:
        names = storage.read_file_schema(Path(path)).names
        lacking = {c for c in model if c not in names}
        for c in names:
            if c not in model:
                extra.setdefault(c, []).append(label)
                lacking_beside.setdefault(c, set()).update(lacking)
    total = {label.split("/")[0] for _, label in files}
    out = []
    for c, labels in extra.items():
        parts = {label.split("/")[0] for label in labels}
        scope = f"in {labels[0]}" + (f", {len(parts)} of {len(total)} partitions" if len(total) > 1 else "")
        note = f"not a column of the data model, pipelines/data/schema.py ({scope})"
        lacking = sorted(lacking_beside[c])
        close = difflib.get_close_matches(c, lacking, n=1, cutoff=0.5) or (
            lacking if len(lacking) == 1 else []
        )
        if close:
            note += f"; renamed from {close[0]}, which is missing?"
        out.append(lake_outcome(table, LAKE_FAULT, EXTRA_COLUMN, note, column=c))
    return out


def missing_days(
    stamps: pa.ChunkedArray,
    month: str,
    as_of: pd.Timestamp,
    daily_min: float,
    *,
    first: bool = False,
    newest: bool = False,
) -> tuple[list, float] | None:
    """Days of ``month`` without a row among ``stamps`` (the partition's rows inside its month, before as_of) and
    the average rows per day, when that average is at least ``daily_min``; None otherwise.

    The days checked run from the first of the month to its end or the day before as_of; in the table's
    ``first`` month from its first row, in the ``newest`` month read to its last row: data that starts or stops
    inside a month is not a gap (a table that stops too early fails its freshness rule instead). Timestamps with
    a time zone are not checked here: they fail the column's type rule.
    """
    t = stamps.type
    if len(stamps) == 0 or not (pa.types.is_date(t) or (pa.types.is_timestamp(t) and t.tz is None)):
        return None
    days = pc.cast(stamps, pa.date32()) if pa.types.is_timestamp(t) else stamps
    seen = pd.DatetimeIndex(pd.unique(days.to_numpy())).normalize()
    month_start = pd.Timestamp(f"{month}-01")
    last = min(month_start + pd.offsets.MonthBegin(1), as_of.normalize()) - pd.Timedelta(days=1)
    span = pd.date_range(seen.min() if first else month_start, seen.max() if newest else last, freq="D")
    if not len(span):
        return None
    mean = len(stamps) / len(span)
    if mean < daily_min:
        return None
    missing = span.difference(seen)
    return (list(missing.date), mean) if len(missing) else None


def day_missing_outcome(table: str, column: str | None, month: str, days: list, mean: float) -> Outcome:
    """The critical outcome of :func:`missing_days`'s finding for one month partition."""
    shown = ", ".join(str(d) for d in days[:MAX_DAYS_SHOWN]) + (", ..." if len(days) > MAX_DAYS_SHOWN else "")
    note = (
        f"{len(days)} day(s) of month={month} without any row: {shown} (its other days average {mean:,.0f} "
        "rows: a day of data lost upstream?)"
    )
    return lake_outcome(table, LAKE_FAULT, DAY_MISSING, note, column=column)
