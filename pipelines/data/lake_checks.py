"""Two of the lake's own checks that ``gate_lake`` runs besides the suites: columns the data model does not have
(schema drift: an extra or renamed column), and days without any row inside a month (a day of data lost).

Both report critical outcomes of the lake (:func:`gate_reports.lake_outcome`) naming the table, the column and
the partition or the days.

And what the lake says about its sources (``<lake>/_sources.json``, written by ``pmp ingest``): a lake built from
declared sources may lack the tables its suites mark optional (``meta.optional_table``; an absent one is a note,
:func:`absent_table`), its tables carry the columns the source mapping defaulted or left null, and a source's
trading calendar (``calendar:`` of its mapping) names the days it has no rows by design, which are not gaps.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.data import schema, storage
from pipelines.data.gate_reports import (
    LAKE_FAULT,
    TABLE_MISSING,
    Outcome,
    TableResult,
    lake_outcome,
    new_outcome,
)
from pipelines.data.ingest import SOURCES_FILE
from pipelines.data.mapping import WEEKDAYS

EXTRA_COLUMN = "columns as in the data model"
DAY_MISSING = "no day without rows"
# Suite meta key: in a month partition whose days average at least this many rows, a day without any row fails
# DAY_MISSING. Tables whose suite lacks it, and sparser months, are not checked (a quiet day is then plausible).
DAILY_ROWS_META = "day_missing_min_rows_per_day"
MAX_DAYS_SHOWN = 5
# Suite meta key: the table may be absent from a lake built from sources; its text says what is then not computed.
OPTIONAL_META = "optional_table"


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
    closed: Mapping[str, Any] | None = None,
) -> tuple[list, float] | None:
    """Days of ``month`` without a row among ``stamps`` (the partition's rows inside its month, before as_of) and
    the average rows per open day, when that average is at least ``daily_min``; None otherwise. Days the source's
    trading calendar ``closed`` (see :func:`closed_days`) names are not checked.

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
    if closed:
        span = span[~closed_days(closed, span)]
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


def closed_days(calendar: Mapping[str, Any], days: pd.DatetimeIndex) -> np.ndarray:
    """True for the ``days`` a source's calendar says it is closed: ``{"closed_weekdays": ["Sat"],
    "closed_dates": ["2011-04-22", {"from": "2010-12-24", "to": "2011-01-03"}]}`` (a mapping's ``calendar:``,
    :class:`pipelines.data.mapping.Calendar`, as JSON)."""
    weekdays = [WEEKDAYS.index(d) for d in calendar.get("closed_weekdays") or []]
    shut = np.isin(days.day_of_week, weekdays)
    for d in calendar.get("closed_dates") or []:
        lo, hi = (d["from"], d["to"]) if isinstance(d, Mapping) else (d, d)
        shut |= np.asarray((days >= pd.Timestamp(lo)) & (days <= pd.Timestamp(hi)))
    return shut


def read_sources(lake_dir: Path) -> tuple[dict[str, dict] | None, str | None]:
    """Per table, the record ``pmp ingest`` left in ``<lake>/_sources.json`` (source, mapping file, when, columns
    defaulted and left null, months); None when the lake has no such file (it was not built from sources). An
    unreadable file gives None and why."""
    path = Path(lake_dir) / SOURCES_FILE
    if not path.is_file():
        return None, None
    try:
        tables = storage.read_json(path).get("tables")
        if not isinstance(tables, dict):
            raise ValueError("no 'tables' object")
    except (OSError, ValueError, AttributeError) as exc:
        return None, f"{path} not read ({str(exc).splitlines()[0][:200]}): every table is expected"
    return {t: r for t, r in tables.items() if isinstance(r, dict)}, None


def source_calendars(records: Mapping[str, dict]) -> tuple[dict[str, dict], dict[str, str]]:
    """Per table, the trading calendar of the mapping its source was ingested with (as JSON), and per table why it
    could not be read. The mapping file named in the record is read now, not a copy kept at ingest time, so a
    holiday added to the calendar explains a gap without re-ingesting."""
    from pipelines.data.mapping import MappingError, load_mapping

    read: dict[str, tuple[dict | None, str | None]] = {}
    calendars, problems = {}, {}
    for table, record in records.items():
        path = record.get("mapping")
        if not path:
            continue
        if path not in read:
            try:
                calendar = load_mapping(Path(path)).calendar
                read[path] = (calendar.model_dump(mode="json", by_alias=True) if calendar else None, None)
            except (MappingError, OSError) as exc:
                why = str(exc).splitlines()[0][:300]
                read[path] = (None, f"calendar of source {record.get('source')!r} not read: {why}")
        calendar, problem = read[path]
        if calendar:
            calendars[table] = calendar
        if problem:
            problems[table] = f"{problem}; every day without rows counts as a gap"
    return calendars, problems


def missing_table(table: str, suite: dict, as_of: pd.Timestamp, why: str) -> TableResult:
    """The result of a table the lake lacks: one critical failure, every expectation of its suite not evaluated."""
    exp = {"type": TABLE_MISSING, "meta": {"severity": "critical", "rule": "table present"}, "kwargs": {}}
    o = new_outcome(table, -1, exp, "failed", note=why)
    others = [new_outcome(table, i, e, note="table missing") for i, e in enumerate(suite["expectations"])]
    return TableResult(table, as_of.date().isoformat(), [o, *others])


def absent_table(table: str, suite: dict, as_of: pd.Timestamp) -> TableResult:
    """The result of an optional table (``meta.optional_table``) that a lake built from sources lacks: no
    failure, a note saying what is not computed without it."""
    lost = (suite.get("meta") or {}).get(OPTIONAL_META)
    n = len(suite["expectations"])
    note = f"no {table} table: {lost} (optional; its {n} rules not evaluated)"
    return TableResult(table, as_of.date().isoformat(), [], absent=note)


def describe_source(
    result: TableResult, record: Mapping[str, Any] | None, problem: str | None = None
) -> None:
    """Add to ``result`` what ``_sources.json`` says about its table: the source, the columns its mapping
    defaulted (constants, not data) and left null; and ``problem``, a note."""
    if record:
        result.source = record.get("source")
        result.defaulted = dict(record.get("defaulted") or {})
        result.left_null = list(record.get("left_null") or [])
    if problem:
        result.notes.append(problem)
