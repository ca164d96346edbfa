"""Data-quality gates: the Great Expectations suites in ``expectations/`` run on frames and on the whole lake.

The suites are the contract (:mod:`pipelines.data.suites`: their rules and run-time parameters). A batch is
checked by :mod:`pipelines.data.gate_engine` (the only module that imports Great Expectations); a lake is cut into
batches and their results combined by :mod:`pipelines.data.gate_lake`; results, summaries and the report files
are :mod:`pipelines.data.gate_reports`. This module holds the entry points: :func:`validate_frame`,
:func:`validate_lake` and :func:`require_valid`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from pipelines.data import schema, storage
from pipelines.data.gate_engine import Batch, check_batch, engine_for, frame_to_arrow, id_index
from pipelines.data.gate_lake import combine_table, plan, run_tasks
from pipelines.data.gate_reports import LakeResult, TableResult, new_outcome, write_report
from pipelines.data.lake_checks import (
    OPTIONAL_META,
    absent_table,
    describe_source,
    missing_table,
    read_sources,
    source_calendars,
)
from pipelines.data.suites import load_suite, suite_parameters
from pipelines.progress import Progress, say_to, track

# Below this many rows in the lake, validate in-process: starting worker processes costs more than it saves.
POOL_MIN_ROWS = 5_000_000
# Consecutive month partitions are grouped into batches of at most this many rows: GX spends ~30 ms per
# expectation per batch whatever its size, so many small batches are slow; one big one would not fit in memory.
BATCH_ROWS = 4_000_000


class ValidationError(RuntimeError):
    """A critical expectation failed; the message is the validation summary."""


def require_valid(result: LakeResult | TableResult) -> LakeResult | TableResult:
    """Return ``result`` if no critical expectation failed; raise :class:`ValidationError` with the summary if one did."""
    if not result.success:
        raise ValidationError(result.summary())
    return result


def validate_frame(
    df: pd.DataFrame,
    table: str,
    as_of: Any,
    expectations_dir: str | Path,
    parameters: Mapping[str, Any] | None = None,
    *,
    report_dir: str | Path | None = None,
    spec: schema.Table | None = None,
) -> TableResult:
    """Run the suite of ``table`` on one pandas frame (a small table, a test frame, a mapped external file).

    ``parameters`` may give ``customer_ids`` (any iterable of ids: referential integrity is then checked, otherwise
    reported as not evaluated) and override any suite parameter (``min_rows``/``max_rows`` are otherwise derived
    from ``customer_ids`` and the months the frame spans). Aggregates are evaluated by GX on the whole frame. The
    frame is validated as given: no rows are left out. Writes the report files into ``report_dir`` if given.

    ``table`` is looked up in ``schema.TABLES`` unless ``spec`` describes it: a derived table (e.g.
    ``features.feature_table_spec()``), whose name must be ``table``. Its suite is ``expectations_dir/<table>.json``
    either way.
    """
    t0 = time.perf_counter()
    as_of = pd.Timestamp(as_of)
    if spec is None:
        spec = schema.get_table(table)
    elif spec.name != table:
        raise ValueError(f"spec describes table {spec.name!r}, not {table!r}")
    engine = engine_for(expectations_dir)
    suite = engine.suite(table)
    parameters = dict(parameters or {})
    customer_index = None
    n_customers = None
    if parameters.get("customer_ids") is not None:
        customer_index = id_index(parameters["customer_ids"])
        n_customers = len(customer_index)
    n_months = None
    if spec.partition_by and spec.partition_by in df.columns:
        months = pd.to_datetime(pd.Series(df[spec.partition_by]), errors="coerce").dropna()
        n_months = int(months.dt.to_period("M").nunique()) or None
    params = suite_parameters(suite, as_of, n_customers=n_customers, n_months=n_months, overrides=parameters)
    arrow, errors = frame_to_arrow(df, spec)
    batch = check_batch(
        engine,
        table,
        [[arrow.schema]],
        lambda cols: (arrow.select(cols), 0),
        params,
        customer_index,
        gx_aggregates=True,
        conversion_errors=errors,
        spec=spec,
    )
    outcomes = [
        batch.outcomes.get(i) or new_outcome(table, i, e, note="no rows")
        for i, e in enumerate(suite["expectations"])
    ]
    result = TableResult(
        table, as_of.date().isoformat(), outcomes, rows=len(df), seconds=time.perf_counter() - t0
    )
    if report_dir is not None:
        write_report(result, report_dir)
    return result


def validate_lake(
    lake_dir: str | Path,
    as_of: Any,
    expectations_dir: str | Path,
    *,
    report_dir: str | Path | None = None,
    progress: Progress = print,
    workers: int | None = None,
    batch_rows: int = BATCH_ROWS,
) -> LakeResult:
    """Validate every table of the lake for the run date ``as_of``.

    Month-partitioned tables are read a month partition at a time (small consecutive partitions grouped into
    batches of at most ``batch_rows`` rows; a partition is never split), only partitions whose month is at or
    before as_of's month, and only the columns the suite reads. Per-expectation results are summed across batches
    (counts added, a few masked examples kept, aggregates combined). ``customers`` is one batch; its
    ``customer_id`` column is read once, up front, for the referential-integrity parameter of every other table.

    Rows dated in [as_of, start of the next month) inside as_of's own partition, and customers who signed up on
    or after as_of but before the end of the lake's data, are facts the lake holds for later run dates (a
    backfill): they are left out and counted, not reported as future timestamps. Anything later is reported.

    Uniqueness across batches: GX checks each key within its batch. For a single integer key (``txn_id``,
    ``event_id``) the batches' key ranges are compared; ranges that do not overlap cannot share a key, so a lake
    written with ids increasing by month needs no further work. Batches whose ranges overlap have their key column
    read again and checked exactly, with a bitmap over the id range when ids are dense (one byte per id), by
    sorting otherwise. A compound key that contains the time column (balances: ``month_end``) cannot repeat across
    batches when every row lies in its batch's months, which is checked; other compound keys (campaign tables) are
    hashed and candidate collisions verified on the real values. A row whose key is not unique counts once.

    Nothing is passed over silently (``docs/data-quality.md``): a folder that is not a month partition, a file that
    is not readable Parquet, and rows dated before as_of outside their partition folder's month fail critical
    rules naming the table and the folder or file; a stored type that differs names the partition file; a stored
    column the data model lacks (extra, or renamed: the missing one is named), and a day without rows inside a
    month of a table whose suite sets ``meta.day_missing_min_rows_per_day`` (:mod:`pipelines.data.lake_checks`)
    fail critical rules too.

    A lake built from declared sources (``<lake>/_sources.json``, written by ``pmp ingest``) may lack the tables
    whose suite marks them optional (``meta.optional_table``: transactions, balances, app_events,
    campaign_contacts, responses, branches): an absent one is one note saying what is not computed without it, not a
    failure. customers, a table a recorded source wrote, and any table of a lake without that record must be
    there (critical). Days the trading calendar of a table's source mapping (``calendar:``) says are
    closed are not days without rows. Each table's result names its source and the columns its mapping defaulted
    or left null.

    With ``workers`` > 1 (default: up to 4, one per core, when the lake holds at least 5M rows) batches are
    validated in a process pool, largest first; its workers die with this process (even on ``kill -9``).
    ``progress`` gets the plan, one line per table checked, the rows validated so far (see
    :mod:`pipelines.progress`) and the verdict. Writes ``validation.json`` and
    ``validation.md`` into ``report_dir`` if given.
    """
    t0 = time.perf_counter()
    say = say_to(progress)
    lake_dir = Path(lake_dir)
    as_of = pd.Timestamp(as_of)
    suites = {t: load_suite(t, expectations_dir) for t in schema.TABLES}
    tasks, missing, months_read, faults = plan(lake_dir, as_of, batch_rows)
    records, lake_note = read_sources(lake_dir)
    calendars, calendar_problems = source_calendars(records or {})

    customer_ids = None
    if "customers" not in missing:
        files = [f for t in tasks if t.table == "customers" for p in t.parts for f in p.files]
        try:
            if not files:  # the read below says why
                storage.read_arrow(lake_dir, "customers", columns=["customer_id"])
            ids = storage.read_files(files, columns=["customer_id"]).column("customer_id")
            customer_ids = np.unique(ids.drop_null().to_numpy())
        except (storage.LakeError, pa.ArrowException, OSError) as exc:
            # a faulty customers table fails its own rules; here it only leaves the references unchecked
            say(f"referential integrity not checked: {str(exc).splitlines()[0][:300]}")
    n_customers = len(customer_ids) if customer_ids is not None else None
    params = {
        t: suite_parameters(
            suites[t], as_of, n_customers=n_customers, n_months=len(months_read.get(t, [])) or None
        )
        for t in schema.TABLES
    }

    total_rows = sum(t.rows for t in tasks)
    if workers is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        workers = min(4, cpus) if total_rows >= POOL_MIN_ROWS else 1
    workers = max(1, min(workers, len(tasks)))
    say(
        f"validating {lake_dir} as of {as_of.date()}: {len(tasks)} batch(es), {total_rows:,} rows stored "
        f"on or before {storage.month_key(as_of)}, {workers} worker(s)"
    )

    batches: dict[str, list[Batch]] = {t: [] for t in schema.TABLES}
    remaining = {t: sum(1 for x in tasks if x.table == t) for t in schema.TABLES}
    stored_rows = {t.task_id: t.rows for t in tasks}
    with track(total_rows, "validation", unit="rows", progress=progress) as tracker:
        for b in run_tasks(tasks, workers, expectations_dir, as_of, params, customer_ids, calendars):
            batches[b.table].append(b)
            remaining[b.table] -= 1
            tracker.advance(stored_rows[b.task_id])
            if remaining[b.table] == 0:
                rows = sum(x.rows for x in batches[b.table])
                tracker.say(f"  {b.table}: {len(batches[b.table])} batch(es), {rows:,} rows checked")

    tables: dict[str, TableResult] = {}
    for table in schema.TABLES:
        record = (records or {}).get(table)
        if table in missing and records is not None and record is None and _optional(suites[table]):
            tables[table] = absent_table(table, suites[table], as_of)
        elif table in missing:
            why = missing[table]
            if record:
                why += f" (source {record.get('source')!r} wrote it at {record.get('ingested_at')})"
            tables[table] = missing_table(table, suites[table], as_of, why)
        else:
            tables[table] = combine_table(
                lake_dir, table, suites[table], batches[table], tasks, params[table], as_of, faults[table]
            )
        describe_source(tables[table], record, calendar_problems.get(table))
        for o in tables[table].failures:
            say(f"    {o.message}")
    result = LakeResult(
        as_of.date().isoformat(), tables, time.perf_counter() - t0, [lake_note] if lake_note else []
    )
    if report_dir is not None:
        write_report(result, report_dir)
    say(f"validation {'PASSED' if result.success else 'FAILED'} in {result.seconds:.1f} s")
    return result


def _optional(suite: dict) -> bool:
    """The suite lets a lake built from sources lack its table (``meta.optional_table``)."""
    return bool((suite.get("meta") or {}).get(OPTIONAL_META))
