"""The lake side of ``gates.validate_lake``: cutting tables into batches of month partitions, reading a batch,
running the batches (in-process or in a worker pool), and combining their results into one per table.

Combining across batches: row-level counts add up; aggregates are evaluated on the combined statistics (row counts
summed, min of minima, max of maxima, mean = sum of sums / sum of counts); a key must also be unique across
batches, which :func:`combine_table` checks as ``validate_lake``'s docstring describes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.data import schema, storage
from pipelines.data.gate_engine import (
    NS_MAX,
    NS_MIN,
    Batch,
    check_batch,
    compute_frame,
    engine_for,
    merge_outcome,
    time_column,
)
from pipelines.data.gate_reports import (
    LAKE_FAULT,
    MAX_EXAMPLES,
    MISPLACED_ROWS,
    Outcome,
    TableResult,
    add_examples,
    describe_bounds,
    lake_outcome,
    masked_example,
    new_outcome,
)
from pipelines.data.lake_checks import DAILY_ROWS_META, column_drift, day_missing_outcome, missing_days
from pipelines.data.suites import AGGREGATE_TYPES, UNIQUENESS_TYPES, parameters_of, resolve, value_columns


@dataclass
class Part:
    """One month partition (or the whole of an unpartitioned table): its files and the exclusion horizon."""

    month: str | None
    files: list[str]
    rows: int
    # Rows whose time column lies in [as_of, horizon) are facts held for later run dates and are left out.
    horizon: pd.Timestamp | None = None
    # The table's first and newest month read: the daily-gap check starts at the first row of the former and
    # ends at the last row of the latter (data starting or ending inside a month is no gap).
    first: bool = False
    newest: bool = False


@dataclass
class Task:
    """One batch to validate: consecutive parts of one table."""

    lake_dir: Path
    table: str
    parts: list[Part]
    task_id: int = 0

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.parts)

    @property
    def months(self) -> list[str]:
        return [p.month for p in self.parts if p.month]

    def labels(self) -> list[list[str]]:
        """Each part's files named as ``month=YYYY-MM/part-00000.parquet`` (the file name alone if unpartitioned)."""
        return [
            [f"month={p.month}/{Path(f).name}" if p.month else Path(f).name for f in p.files]
            for p in self.parts
        ]


BAD_LAYOUT = "every folder a month partition, every file Parquet"
BAD_FILE = "every file readable Parquet"
MISPLACED = "rows in their partition's month"


def _read_footers(table: str, files: list[Path], faults: list[Outcome]) -> tuple[list[str], int]:
    """The readable files among ``files`` and their rows; an unreadable one becomes a fault naming it."""
    good, rows = [], 0
    for f in files:
        n, why = storage.footer_rows(f)
        if n is None:
            faults.append(
                lake_outcome(table, LAKE_FAULT, BAD_FILE, f"{f} is not a readable Parquet file ({why})")
            )
        else:
            good.append(str(f))
            rows += n
    return good, rows


def _month_start(month: str) -> pd.Timestamp:
    return pd.Timestamp(f"{month}-01")


def _month_start_after(month: str) -> pd.Timestamp:
    return _month_start(month) + pd.offsets.MonthBegin(1)


def plan(
    lake_dir: Path, as_of: pd.Timestamp, batch_rows: int
) -> tuple[list[Task], dict[str, str], dict[str, list[str]], dict[str, list[Outcome]]]:
    """Batches to validate, tables the lake lacks (with why), the months read per table, and the lake faults
    found per table (critical outcomes naming the folder or file).

    Month partitions at or before as_of's month are grouped, in month order, into batches of at most
    ``batch_rows`` rows; a partition larger than that is a batch of its own (a partition is never split).
    Nothing in a table's folder is passed over silently: a folder that is not a month partition, a file that is
    not Parquet or whose footer cannot be read (truncated, another format) is a fault and is left out of the read.
    """
    as_of_month = storage.month_key(as_of)
    all_months = [
        m for t, s in schema.TABLES.items() if s.partition_by for m in storage.list_months(lake_dir, t)
    ]
    data_end = _month_start_after(max(all_months)) if all_months else None
    tasks: list[Task] = []
    missing: dict[str, str] = {}
    months_read: dict[str, list[str]] = {}
    faults: dict[str, list[Outcome]] = {t: [] for t in schema.TABLES}
    for table, spec in schema.TABLES.items():
        if not storage.table_dir(lake_dir, table).is_dir():
            missing[table] = f"folder {storage.table_dir(lake_dir, table)} not found"
            continue
        faults[table] += [
            lake_outcome(table, LAKE_FAULT, BAD_LAYOUT, why)
            for why in storage.layout_problems(lake_dir, table, bool(spec.partition_by))
        ]
        if not spec.partition_by:
            files, rows = _read_footers(table, storage.table_files(lake_dir, table), faults[table])
            faults[table] += column_drift(table, spec, [(f, Path(f).name) for f in files])
            if files:
                horizon = data_end if data_end is not None and data_end > as_of else None
                tasks.append(Task(lake_dir, table, [Part(None, files, rows, horizon)]))
            continue
        group: list[Part] = []
        parts: list[Part] = []
        months_read[table] = []
        for m in storage.list_months(lake_dir, table):
            if m > as_of_month:
                break
            files, rows = _read_footers(table, storage.table_files(lake_dir, table, [m]), faults[table])
            if not files:
                continue
            months_read[table].append(m)
            part = Part(m, files, rows, _month_start_after(m) if m == as_of_month else None)
            parts.append(part)
            if group and sum(p.rows for p in group) + part.rows > batch_rows:
                tasks.append(Task(lake_dir, table, group))
                group = []
            group.append(part)
        if group:
            tasks.append(Task(lake_dir, table, group))
        if parts:
            parts[0].first, parts[-1].newest = True, True
        faults[table] += column_drift(
            table, spec, [(f, f"month={p.month}/{Path(f).name}") for p in parts for f in p.files]
        )
    for i, task in enumerate(tasks):
        task.task_id = i
    return tasks, missing, months_read, faults


def _window_mask(column: pa.ChunkedArray, lo: pd.Timestamp, hi: pd.Timestamp) -> pa.ChunkedArray:
    """True where lo <= value < hi (null: False), for date and timestamp columns."""
    if pa.types.is_date(column.type):
        column = column.cast(pa.timestamp("s"))
    t = column.type
    if not pa.types.is_timestamp(t):
        return pa.chunked_array([pa.array(np.zeros(len(column), dtype=bool))])
    lo_s = pa.scalar(lo.to_pydatetime(), type=pa.timestamp("us", t.tz)).cast(t)
    hi_s = pa.scalar(min(hi, pd.Timestamp(NS_MAX)).to_pydatetime(), type=pa.timestamp("us", t.tz)).cast(t)
    return pc.fill_null(pc.and_(pc.greater_equal(column, lo_s), pc.less(column, hi_s)), False)


def _load_parts(
    lake_dir: Path,
    table_name: str,
    parts: list[Part],
    columns: list[str],
    as_of: pd.Timestamp,
    misplaced: dict[str, tuple[int, list]] | None = None,
    daily_min: float | None = None,
    gaps: dict[str, tuple[list, float]] | None = None,
    closed: Mapping[str, Any] | None = None,
) -> tuple[pa.Table, int]:
    """The columns of a batch's parts as one Arrow table, without the rows each part's horizon leaves out.

    Only columns present in every file of the parts may be asked for (io reads with the first file's schema).
    If ``misplaced`` is given, it receives per month partition the rows dated before as_of but outside the
    partition's month, and a few of their dates (rows on or after as_of are the suites' "no future" rules').
    If ``gaps`` is given with ``daily_min``, it receives per month partition whose days average at least
    ``daily_min`` rows the days without any row (and that average), see :func:`lake_checks.missing_days`; days
    the source's calendar ``closed`` names are not gaps.
    """
    time_col = time_column(schema.get_table(table_name))
    tables, excluded = [], 0
    for part in parts:
        read = list(columns)
        wanted = part.horizon is not None or (misplaced is not None and part.month is not None)
        if wanted and time_col and time_col not in read:
            read.append(time_col)
        months = None if part.month is None else [part.month]
        try:
            table = storage.read_arrow(lake_dir, table_name, months, columns=read)
        except storage.LakeError:
            if read == columns:
                raise
            read, table = columns, storage.read_arrow(lake_dir, table_name, months, columns=columns)
        if misplaced is not None and part.month is not None and time_col in table.column_names:
            col = table.column(time_col)
            inside = _window_mask(col, _month_start(part.month), _month_start_after(part.month))
            past = _window_mask(col, pd.Timestamp(NS_MIN), as_of)
            outside = pc.and_(pc.invert(inside), past)
            n = pc.sum(outside).as_py() or 0
            if n:
                misplaced[part.month] = (n, col.filter(outside).slice(0, MAX_EXAMPLES).to_pylist())
            if gaps is not None and daily_min:
                found = missing_days(
                    col.filter(pc.and_(inside, past)),
                    part.month,
                    as_of,
                    daily_min,
                    first=part.first,
                    newest=part.newest,
                    closed=closed,
                )
                if found:
                    gaps[part.month] = found
        if part.horizon is not None and time_col in table.column_names and part.horizon > as_of:
            later = _window_mask(table.column(time_col), as_of, part.horizon)
            n = pc.sum(later).as_py() or 0
            if n:
                excluded += n
                table = table.filter(pc.invert(later))
        tables.append(table.select(columns))
    if len(tables) == 1:
        return tables[0], excluded
    return pa.concat_tables(tables, promote_options="permissive"), excluded


# --------------------------------------------------------------------------------------------------------------
# Running the batches


_WORKER: dict[str, Any] = {}


def _die_with_parent(parent_pid: int) -> None:
    """Make this worker process end when ``parent_pid`` does, even on ``kill -9`` of the parent.

    On Linux the kernel sends SIGKILL on the parent's death (``prctl(PR_SET_PDEATHSIG)``); a parent that died
    before that call is caught by comparing ``getppid()``. Elsewhere a daemon thread polls ``getppid()``.
    """
    import signal
    import sys
    import threading

    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, signal.SIGKILL, 0, 0, 0) == 0:  # 1 == PR_SET_PDEATHSIG
            if os.getppid() != parent_pid:
                os._exit(1)
            return

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _init_worker(
    expectations_dir: str,
    as_of: pd.Timestamp,
    params: dict,
    customer_ids: np.ndarray | None,
    calendars: dict[str, dict] | None = None,
    parent_pid: int | None = None,
) -> None:
    """Per-process state: the GX engine, run parameters per table, the customer-id index and the sources' trading
    calendars per table. In a pool worker (``parent_pid`` given) first ties the worker's life to its parent's."""
    if parent_pid is not None:
        _die_with_parent(parent_pid)
    _WORKER["engine"] = engine_for(expectations_dir)
    _WORKER["as_of"] = as_of
    _WORKER["params"] = params
    _WORKER["customers"] = None if customer_ids is None else pd.Index(customer_ids)
    _WORKER["calendars"] = calendars or {}


def _run_task(task: Task) -> Batch:
    as_of = _WORKER["as_of"]
    misplaced: dict[str, tuple[int, list]] = {}
    gaps: dict[str, tuple[list, float]] = {}
    daily_min = (_WORKER["engine"].suite(task.table).get("meta") or {}).get(DAILY_ROWS_META)
    closed = _WORKER["calendars"].get(task.table)
    try:
        batch = check_batch(
            _WORKER["engine"],
            task.table,
            [[storage.read_file_schema(f) for f in part.files] for part in task.parts],
            lambda cols: _load_parts(
                task.lake_dir, task.table, task.parts, cols, as_of, misplaced, daily_min, gaps, closed
            ),
            _WORKER["params"][task.table],
            _WORKER["customers"],
            labels_by_part=task.labels(),
        )
    except (pa.ArrowException, OSError) as exc:
        # footers were readable (plan) but a data page is not: the batch is a fault naming its files
        batch = Batch(task.table)
        files = ", ".join(str(Path(task.lake_dir) / task.table / x) for p in task.labels() for x in p)
        why = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else 'unreadable'}"
        batch.faults.append(lake_outcome(task.table, LAKE_FAULT, BAD_FILE, f"cannot read {files} ({why})"))
    spec = schema.get_table(task.table)
    for month, (n, examples) in sorted(misplaced.items()):
        o = lake_outcome(task.table, MISPLACED_ROWS, MISPLACED, column=time_column(spec))
        o.unexpected_count, o.element_count = n, next(p.rows for p in task.parts if p.month == month)
        o.note = f"month={month}: {n}"
        add_examples(o.examples, (masked_example(v, [o.column], spec) for v in examples))
        batch.faults.append(o)
    for month, (days, mean) in sorted(gaps.items()):
        batch.faults.append(day_missing_outcome(task.table, time_column(spec), month, days, mean))
    batch.task_id, batch.months = task.task_id, task.months
    return batch


def run_tasks(
    tasks: list[Task],
    workers: int,
    expectations_dir: str | Path,
    as_of: pd.Timestamp,
    params: dict[str, dict],
    customer_ids: np.ndarray | None,
    calendars: dict[str, dict] | None = None,
) -> Iterator[Batch]:
    """The batches of ``tasks``, largest first, as each is validated: in this process when ``workers`` is 1,
    otherwise in a pool of ``workers`` processes (in the order they finish). ``params`` are the run parameters per
    table, ``customer_ids`` the ids of the referential-integrity checks (None: not checked), ``calendars`` the
    trading calendars of the tables' sources (:func:`lake_checks.source_calendars`)."""
    init_args = (str(Path(expectations_dir).resolve()), as_of, params, customer_ids, calendars, None)
    ordered = sorted(tasks, key=lambda t: -t.rows)
    if workers == 1:
        _init_worker(*init_args)
        for task in ordered:
            yield _run_task(task)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = multiprocessing.get_context("spawn")  # fork after pyarrow's thread pools have started can deadlock
    init_args = (*init_args[:-1], os.getpid())  # workers die with this process (no orphans after kill -9)
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=init_args) as pool:
        for fut in as_completed([pool.submit(_run_task, task) for task in ordered]):
            yield fut.result()


# --------------------------------------------------------------------------------------------------------------
# One result per table


def _evaluate_aggregate(exp: dict, observed: Any, params: Mapping[str, Any]) -> bool:
    """GX's rule for the *_to_be_between aggregates: inside [min_value, max_value], strict where asked."""
    if observed is None:
        return False
    kw = exp["kwargs"]
    lo, hi = resolve(kw.get("min_value"), params), resolve(kw.get("max_value"), params)
    if lo is not None and (observed <= lo if kw.get("strict_min") else observed < lo):
        return False
    return not (hi is not None and (observed >= hi if kw.get("strict_max") else observed > hi))


def _combine_aggregate(exp: dict, stats: list[Any]) -> Any:
    etype = exp["type"]
    if etype == "expect_table_row_count_to_be_between":
        return int(sum(stats))
    values = [s for s in stats if s is not None]
    if etype == "expect_column_max_to_be_between":
        return max(values) if values else None
    if etype == "expect_column_min_to_be_between":
        return min(values) if values else None
    total, count = sum(s[0] for s in values), sum(s[1] for s in values)
    return total / count if count else None


def combine_table(
    lake_dir: Path,
    table: str,
    suite: dict,
    batches: list[Batch],
    tasks: list[Task],
    params: Mapping[str, Any],
    as_of: pd.Timestamp,
    faults: list[Outcome] | None = None,
) -> TableResult:
    """One table's result from its batches: outcomes merged, aggregates evaluated, keys checked across batches,
    and the lake's own faults (``faults`` found by :func:`plan`, and the batches') appended, rows outside their
    partition's month as one outcome."""
    exps = suite["expectations"]
    spec = schema.get_table(table)
    batches = sorted(batches, key=lambda b: b.task_id)
    outcomes: list[Outcome] = []
    for i, exp in enumerate(exps):
        acc: Outcome | None = None
        for b in batches:
            if i in b.outcomes:
                acc = merge_outcome(acc, b.outcomes[i])
        if exp["type"] in AGGREGATE_TYPES:
            missing = [p for p in dict.fromkeys(parameters_of(exp["kwargs"])) if p not in params]
            stats = [b.stats[i] for b in batches if i in b.stats]
            if not batches and exp["type"] == "expect_table_row_count_to_be_between":
                stats = [0]
            if missing:
                acc = new_outcome(table, i, exp, note=f"parameter {', '.join(missing)} not given")
            elif stats:
                observed = _combine_aggregate(exp, stats)
                ok = _evaluate_aggregate(exp, observed, params)
                acc = new_outcome(table, i, exp, "passed" if ok else "failed")
                acc.observed, acc.expected = observed, describe_bounds(exp, params)
        if acc is None:
            acc = new_outcome(table, i, exp, note="no data on or before as_of")
        outcomes.append(acc)

    key_idx = next(
        (
            i
            for i, e in enumerate(exps)
            if e["type"] in UNIQUENESS_TYPES
            and sorted(value_columns(e)) == sorted(spec.key)
            and outcomes[i].status != "skipped"
        ),
        None,
    )
    if key_idx is not None and len(batches) > 1:
        by_id = {t.task_id: t for t in tasks}
        extra, examples = _cross_batch_duplicates(spec, [(b, by_id[b.task_id]) for b in batches], as_of)
        if extra:
            o = outcomes[key_idx]
            o.unexpected_count += extra
            o.status = "failed" if o.status == "passed" else o.status
            add_examples(o.examples, (masked_example(v, list(spec.key), spec) for v in examples))
            o.note = f"{extra} of them repeat a key held by another partition"

    outcomes += faults or []
    misplaced = None
    for b in batches:
        for f in b.faults:
            if f.expectation_type != MISPLACED_ROWS:
                outcomes.append(f)
            elif misplaced is None:
                misplaced = f
            else:
                misplaced.unexpected_count += f.unexpected_count
                misplaced.element_count += f.element_count
                misplaced.partitions_total += 1
                misplaced.note = f"{misplaced.note}, {f.note}"
                add_examples(misplaced.examples, f.examples)
    if misplaced is not None:
        misplaced.note = f"dated outside the month of their folder: {misplaced.note}"
        outcomes.append(misplaced)

    return TableResult(
        table,
        as_of.date().isoformat(),
        outcomes,
        rows=sum(b.rows for b in batches),
        partitions=sorted(m for b in batches for m in b.months),
        excluded_rows=sum(b.excluded for b in batches),
        seconds=sum(b.seconds for b in batches),
    )


# --------------------------------------------------------------------------------------------------------------
# Uniqueness across batches


def _cross_batch_duplicates(
    spec: schema.Table, batches: list[tuple[Batch, Task]], as_of: pd.Timestamp
) -> tuple[int, list]:
    """Rows whose key also occurs in another batch and that GX did not already count as duplicates within their
    own batch; plus a few such keys."""
    key = list(spec.key)
    if len(key) == 1:
        ranged = sorted(
            (bt for bt in batches if bt[0].key_range is not None), key=lambda bt: bt[0].key_range[0]
        )
        involved: set[int] = set()
        for n, (a, _) in enumerate(ranged):
            for b, _ in ranged[n + 1 :]:
                if b.key_range[0] > a.key_range[1]:
                    break
                involved |= {a.task_id, b.task_id}
        tasks = [t for b, t in batches if b.task_id in involved]
        return _exact_cross_duplicates(spec, tasks, as_of, integer_key=True) if tasks else (0, [])
    if spec.partition_by in key and all(_within_months(b) for b, _ in batches):
        return 0, []
    return _exact_cross_duplicates(spec, [t for _, t in batches], as_of, integer_key=False)


def _within_months(b: Batch) -> bool:
    """Every row's time column lies inside the months of its batch."""
    if b.time_range is None or not b.months:
        return True
    lo, hi = b.time_range
    return _month_start(min(b.months)) <= lo and hi < _month_start_after(max(b.months))


def _read_keys(spec: schema.Table, task: Task, as_of: pd.Timestamp) -> pd.DataFrame:
    """The key columns of a batch, without the rows left out of the run; rows whose key is all null dropped."""
    table, _ = _load_parts(task.lake_dir, task.table, task.parts, list(spec.key), as_of)
    return compute_frame(table).dropna(how="all").reset_index(drop=True)


def _exact_cross_duplicates(
    spec: schema.Table, tasks: list[Task], as_of: pd.Timestamp, *, integer_key: bool
) -> tuple[int, list]:
    key = list(spec.key)
    if integer_key:
        arrays = {t.task_id: _read_keys(spec, t, as_of)[key[0]].to_numpy().astype(np.int64) for t in tasks}
        total = sum(len(a) for a in arrays.values())
        if not total:
            return 0, []
        lo = min(int(a.min()) for a in arrays.values() if len(a))
        hi = max(int(a.max()) for a in arrays.values() if len(a))
        if hi - lo + 1 <= max(4 * total, 1 << 20):
            # Dense ids: one byte per id in the range; an id seen in an earlier batch is repeated.
            seen = np.zeros(hi - lo + 1, dtype=bool)
            hits = []
            for a in arrays.values():
                idx = a - lo
                h = seen[idx]
                if h.any():
                    hits.append(np.unique(a[h]))
                seen[idx] = True
            del seen
            repeated = np.unique(np.concatenate(hits)) if hits else np.array([], dtype=np.int64)
        else:
            uniq = np.sort(np.concatenate([np.unique(a) for a in arrays.values()]))
            repeated = np.unique(uniq[1:][uniq[1:] == uniq[:-1]])
        if not len(repeated):
            return 0, []
        extra = 0
        for a in arrays.values():
            k = pd.Series(a)
            extra += int((k.isin(repeated) & ~k.duplicated(keep=False)).sum())
        return extra, [int(v) for v in repeated[:MAX_EXAMPLES]]

    frames = {t.task_id: _read_keys(spec, t, as_of) for t in tasks}
    hashes = {n: pd.util.hash_pandas_object(f, index=False).to_numpy() for n, f in frames.items()}
    uniq = np.sort(np.concatenate([np.unique(h) for h in hashes.values()]))
    candidates = np.unique(uniq[1:][uniq[1:] == uniq[:-1]])
    if not len(candidates):
        return 0, []
    parts = []
    for n, f in frames.items():
        hit = np.isin(hashes[n], candidates)
        if hit.any():
            sub = f.loc[hit].copy()
            sub["_within_dup"] = f.duplicated(keep=False).to_numpy()[hit]
            sub["_batch"] = n
            parts.append(sub)
    cand = pd.concat(parts, ignore_index=True)
    for col in key:  # categories differ between batches: compare values
        if isinstance(cand[col].dtype, pd.CategoricalDtype):
            cand[col] = cand[col].astype(object)
    spread = cand.groupby(key, dropna=False)["_batch"].transform("nunique")
    across = cand.loc[spread.to_numpy() > 1]
    extra = int((~across["_within_dup"]).sum())
    return extra, across[key].drop_duplicates().head(MAX_EXAMPLES).to_dict("records")
