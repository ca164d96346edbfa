"""The Great Expectations engine of the gates, and how one batch (a frame, or lake partitions) is checked.

This is the only module that imports Great Expectations (lazily, inside functions: the import takes seconds).

How a batch is checked (:func:`check_batch`, for ``gates.validate_frame`` and ``gates.validate_lake`` alike):

* presence and types of columns: by GX on a zero-row frame made from the stored Arrow/Parquet schema, so the
  stored type is checked rather than pandas' null-dependent one (an int64 column with a null becomes float64);
* everything else: by GX on a pandas frame typed for its vectorised paths (integers as int64, dates and
  timestamps as ``datetime64[ns]``, clamped into its range): for other dtypes GX loops in Python per row;
* a single-column or compound key whose values strictly increase (or decrease) in storage order is unique by
  construction; that O(n) check replaces GX's hash-based ``duplicated`` (3 s per 10M ids). Keys not in order
  still go through GX.

An expectation that cannot be evaluated (a column it reads is missing or mistyped, a parameter was not given) is
reported as not evaluated, never silently passed.

Referential integrity is ``expect_column_values_to_not_be_in_set(customer_id, $unknown_customer_ids)`` rather
than ``expect_column_values_to_be_in_set(customer_id, $customer_ids)``: GX 1.24 copies a value set through pydantic
about 80 times per expectation (100k ids took 50 s for 200k rows, 1M ids 220 s). The set difference against the
customer ids is taken here, vectorised, and GX counts the rows and picks the examples; both forms fail on exactly
the same rows. (Past ``MAX_UNKNOWN_IDS_FOR_GX`` distinct unknown ids in one batch the rows are counted here.)

GX also md5-hashes every frame under 1 GB for a batch fingerprint nothing here reads; that is switched off.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.data import schema
from pipelines.data.gate_reports import (
    MAX_EXAMPLES,
    Outcome,
    add_examples,
    describe_bounds,
    masked_example,
    new_outcome,
    plain,
)
from pipelines.data.suites import (
    AGGREGATE_TYPES,
    ROW_TYPES,
    SCHEMA_TYPES,
    UNIQUENESS_TYPES,
    SuiteError,
    columns_of,
    load_suite,
    parameters_of,
    value_columns,
)

# Beyond this many distinct unknown customer ids in one batch the rows are counted here rather than through a GX
# value set (see the module docstring for why large value sets are slow in GX).
MAX_UNKNOWN_IDS_FOR_GX = 2_000
# The range of datetime64[ns], to the second: timestamps outside it are clamped into it.
NS_MAX = pd.Timestamp.max.floor("s").to_pydatetime()
NS_MIN = pd.Timestamp.min.ceil("s").to_pydatetime()

_RESULT_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": 20}


# --------------------------------------------------------------------------------------------------------------
# Frames


def frame_to_arrow(df: pd.DataFrame, spec: schema.Table) -> tuple[pa.Table, dict[str, str]]:
    """A frame as Arrow, column by column; a column Arrow cannot represent is left out and its error returned
    (for a PII column without the error text, which can quote a value)."""
    arrays, names, errors = [], [], {}
    for name in df.columns:
        try:
            arrays.append(pa.Array.from_pandas(df[name]))
            names.append(str(name))
        except (pa.ArrowException, TypeError, ValueError) as exc:
            detail = "" if str(name) in spec.pii_columns else f": {str(exc).splitlines()[0][:200]}"
            errors[str(name)] = f"not convertible to Arrow ({type(exc).__name__}{detail})"
    return pa.table(arrays, names=names), errors


def _schema_frame(arrow_schema: pa.Schema) -> pd.DataFrame:
    """A zero-row pandas frame with the dtypes storage.read_table gives each stored type (dates as datetime64)."""
    return arrow_schema.empty_table().to_pandas(date_as_object=False)


def compute_frame(table: pa.Table) -> pd.DataFrame:
    """The frame GX checks rows on, typed for its vectorised paths.

    GX's ``column_values.between`` loops in Python unless the dtype is int64/float64 or datetime64[ns]: narrow
    integers are widened to int64, dates and timestamps become datetime64[ns], clamped into its range (years
    1677-2262) so a far-future timestamp stays far in the future instead of overflowing.
    """
    columns = []
    for f in table.schema:
        col = table.column(f.name)
        t = f.type
        if pa.types.is_date(t):
            col = col.cast(pa.timestamp("s"))
            t = col.type
        if pa.types.is_timestamp(t) and t.unit != "ns":
            hi = pa.scalar(NS_MAX, type=pa.timestamp(t.unit, t.tz))
            lo = pa.scalar(NS_MIN, type=pa.timestamp(t.unit, t.tz))
            col = pc.max_element_wise(pc.min_element_wise(col, hi, skip_nulls=False), lo, skip_nulls=False)
            col = col.cast(pa.timestamp("ns", t.tz))
        elif pa.types.is_integer(t) and t.bit_width < 64:
            col = col.cast(pa.int64())
        columns.append(col)
    if not columns:  # nothing to read but the row count
        return pd.DataFrame(index=pd.RangeIndex(table.num_rows))
    return pa.table(columns, names=table.column_names).to_pandas(split_blocks=True)


def id_index(ids: Any) -> pd.Index:
    """Distinct non-null ids from a list, set, array, Series or Arrow array, as an Index (hash lookups)."""
    if isinstance(ids, pa.Array | pa.ChunkedArray):
        ids = ids.drop_null().to_numpy()
    elif not isinstance(ids, np.ndarray | pd.Series | pd.Index):
        ids = list(ids)
    return pd.Index(pd.unique(pd.Series(ids).dropna().to_numpy()))


def _unknown_ids(values: pd.Series, customer_index: pd.Index) -> np.ndarray:
    """Distinct non-null values of ``values`` that are not customer ids."""
    u = pd.unique(values.dropna().to_numpy())
    if u.dtype.kind == "f":
        integral = np.isfinite(u) & (np.floor(u) == u)
        bad = u[~integral]
        u = u[integral].astype(np.int64)
        return np.concatenate([u[customer_index.get_indexer(u) < 0].astype(np.float64), bad])
    if u.dtype.kind not in "iu":
        return u
    return np.sort(u[customer_index.get_indexer(u) < 0])


# --------------------------------------------------------------------------------------------------------------
# The GX engine


def _import_gx():
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx
    from great_expectations.execution_engine import pandas_execution_engine

    # GX md5-hashes every frame under 1 GB for a batch fingerprint (0.8 s per 5M rows); nothing here reads it.
    pandas_execution_engine.HASH_THRESHOLD = 0
    return gx


class Engine:
    """An ephemeral GX context with one pandas whole-dataframe batch definition; suite variants built on demand."""

    def __init__(self, expectations_dir: Path):
        self.gx = _import_gx()
        self.expectations_dir = Path(expectations_dir)
        self.context = self.gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = {"globally": False}
        if hasattr(self.context, "enable_analytics"):
            self.context.enable_analytics(False)
        source = self.context.data_sources.add_pandas("pm_frames")
        self.batch_definition = source.add_dataframe_asset("frame").add_batch_definition_whole_dataframe(
            "whole"
        )
        self._suites: dict[str, dict] = {}
        self._definitions: dict[tuple[str, tuple[int, ...]], Any] = {}
        self._schema_cache: dict[tuple[str, str], dict[int, Outcome]] = {}

    def suite(self, table: str) -> dict:
        if table not in self._suites:
            self._suites[table] = load_suite(table, self.expectations_dir)
        return self._suites[table]

    def run(
        self, table: str, indices: list[int], frame: pd.DataFrame, params: Mapping[str, Any]
    ) -> dict[int, Any]:
        """GX results of the suite's expectations ``indices`` on ``frame``, keyed by expectation index."""
        if not indices:
            return {}
        key = (table, tuple(indices))
        definition = self._definitions.get(key)
        if definition is None:
            suite = self.suite(table)
            exps = []
            for i in indices:
                exp = copy.deepcopy(suite["expectations"][i])
                exp["meta"] = {**exp.get("meta", {}), "pm_index": i}
                exps.append(exp)
            name = f"{table}__{len(self._definitions)}"
            gx_suite = self.gx.ExpectationSuite(name=name, expectations=exps)
            if len(gx_suite.expectations) != len(exps):
                raise SuiteError(
                    f"GX rejected {len(exps) - len(gx_suite.expectations)} expectation(s) of suite {table!r}"
                )
            gx_suite = self.context.suites.add(gx_suite)
            definition = self.context.validation_definitions.add(
                self.gx.ValidationDefinition(name=name, data=self.batch_definition, suite=gx_suite)
            )
            self._definitions[key] = definition
        used = {p for i in indices for p in parameters_of(self.suite(table)["expectations"][i]["kwargs"])}
        result = definition.run(
            batch_parameters={"dataframe": frame},
            expectation_parameters={k: v for k, v in params.items() if k in used},
            result_format=_RESULT_FORMAT,
        )
        return {r.expectation_config.meta["pm_index"]: r for r in result.results}

    def schema_outcomes(
        self, table: str, arrow_schema: pa.Schema, spec: schema.Table | None = None
    ) -> dict[int, Outcome]:
        """Outcomes of the suite's presence and type expectations for a stored schema (cached per schema)."""
        key = (table, arrow_schema.to_string(show_schema_metadata=False))
        if key not in self._schema_cache:
            suite = self.suite(table)
            spec = spec or schema.get_table(table)
            present = set(arrow_schema.names)
            run_idx = []
            outcomes: dict[int, Outcome] = {}
            for i, exp in enumerate(suite["expectations"]):
                if exp["type"] not in SCHEMA_TYPES:
                    continue
                col = exp["kwargs"].get("column")
                if exp["type"] == "expect_column_values_to_be_of_type" and col not in present:
                    outcomes[i] = new_outcome(table, i, exp, "skipped", note=f"column {col} missing")
                else:
                    run_idx.append(i)
            results = self.run(table, run_idx, _schema_frame(arrow_schema), {})
            for i, res in results.items():
                o = outcomes[i] = _outcome_from_gx(table, i, suite["expectations"][i], res, spec, {})
                col = suite["expectations"][i]["kwargs"].get("column")
                stored = arrow_schema.field(col).type if col in present else None
                if o.failed and stored is not None and pa.types.is_timestamp(stored) and stored.tz:
                    # GX only says "Timestamp": name the zone (mixed zones, or aware among naive partitions)
                    o.observed = f"timestamp with time zone {stored.tz}"
                    o.expected = "datetime64 without a time zone (local time)"
            self._schema_cache[key] = outcomes
        return copy.deepcopy(self._schema_cache[key])


_ENGINES: dict[Path, Engine] = {}


def engine_for(expectations_dir: str | Path) -> Engine:
    """The process's engine for the suites in ``expectations_dir`` (built once: a GX context costs seconds)."""
    path = Path(expectations_dir).resolve()
    if path not in _ENGINES:
        _ENGINES[path] = Engine(path)
    return _ENGINES[path]


def _outcome_from_gx(
    table: str, index: int, exp: dict, res: Any, spec: schema.Table, params: Mapping
) -> Outcome:
    out = new_outcome(table, index, exp, "passed" if res.success else "failed")
    out.partitions_total = 1
    info = res.exception_info or {}
    if info.get("raised_exception"):
        out.status = "error"
        out.note = str(info.get("exception_message") or "unknown error").splitlines()[0][:300]
        if set(columns_of(exp)) & set(spec.pii_columns):
            out.note = "GX raised an error (details withheld: PII column)"
        out.partitions_failed = 1
        return out
    result = res.result or {}
    etype = exp["type"]
    if etype == "expect_column_values_to_be_of_type":
        out.observed = result.get("observed_value")
        out.expected = exp["kwargs"]["type_"]
    elif etype in AGGREGATE_TYPES:
        out.observed = result.get("observed_value")
        out.expected = describe_bounds(exp, params)
    elif etype in ROW_TYPES:
        out.unexpected_count = int(result.get("unexpected_count") or 0)
        out.element_count = int(result.get("element_count") or 0)
        if etype == "expect_column_values_to_not_be_null":
            examples = []
        else:
            examples = result.get("partial_unexpected_list") or []
        cols = value_columns(exp)
        add_examples(out.examples, (masked_example(v, cols, spec) for v in examples))
    if out.failed:
        out.partitions_failed = 1
    return out


def merge_outcome(acc: Outcome | None, new: Outcome) -> Outcome:
    """Combine one partition's outcome into the running one: counts add up, a failure anywhere fails the whole."""
    if acc is None:
        return copy.deepcopy(new)
    rank = {"skipped": 0, "passed": 1, "failed": 2, "error": 3}
    if rank[new.status] > rank[acc.status]:
        # the first failure is the one reported: a passed type check also observes a type, which is not it
        if new.failed and not acc.failed:
            acc.observed, acc.expected = new.observed, new.expected
        acc.status = new.status
        acc.note = new.note
    acc.unexpected_count += new.unexpected_count
    acc.element_count += new.element_count
    acc.partitions_total += new.partitions_total
    acc.partitions_failed += new.partitions_failed
    if new.failed and acc.observed is None:
        acc.observed, acc.expected = new.observed, new.expected
    elif new.failed and acc.failed and acc.expectation_type == "expect_column_values_to_be_of_type":
        # partitions that differ from the contract in different ways: name each way (two time zones, ...)
        seen = str(acc.observed).split(" and ")
        if new.observed is not None and str(new.observed) not in seen:
            acc.observed = " and ".join([*seen, str(new.observed)])
    add_examples(acc.examples, new.examples)
    return acc


# --------------------------------------------------------------------------------------------------------------
# One batch: a frame, or one or more consecutive month partitions of a lake table


@dataclass
class Batch:
    """What validating one batch returns: outcomes of schema and row-level expectations, and the statistics the
    lake combines across batches (aggregates, key range, time-column range)."""

    table: str
    task_id: int = 0
    months: list[str] = field(default_factory=list)
    rows: int = 0
    excluded: int = 0
    outcomes: dict[int, Outcome] = field(default_factory=dict)
    stats: dict[int, Any] = field(default_factory=dict)
    key_range: tuple | None = None
    time_range: tuple | None = None
    seconds: float = 0.0
    # outcomes of the lake's own checks (unreadable files, rows outside their partition's month)
    faults: list[Outcome] = field(default_factory=list)


def time_column(spec: schema.Table) -> str | None:
    """The column rows are dated by: the partition column, or ``signup_date`` for customers."""
    return spec.partition_by or ("signup_date" if spec.name == "customers" else None)


def _aggregate_stat(exp: dict, frame: pd.DataFrame) -> Any:
    etype = exp["type"]
    if etype == "expect_table_row_count_to_be_between":
        return len(frame)
    s = frame[exp["kwargs"]["column"]]
    if etype == "expect_column_max_to_be_between":
        v = s.max()
    elif etype == "expect_column_min_to_be_between":
        v = s.min()
    else:
        nonnull = s.dropna()
        return (float(nonnull.astype("float64").sum()), int(len(nonnull)))
    return None if pd.isna(v) else v


def strictly_monotonic(frame: pd.DataFrame, columns: list[str]) -> bool:
    """True if the rows' values of ``columns`` (numbers, dates or category codes; no nulls, except a single column
    whose nulls are ignored as GX does) strictly increase or decrease, lexicographically in the given or the
    reversed column order. Such rows cannot repeat a key: an O(n) proof that skips GX's hash-based ``duplicated``
    (3 s per 10M ids) for lakes written in key order."""
    arrays = []
    for col in columns:
        s = frame[col]
        if len(columns) == 1:
            s = s.dropna()
        elif s.isna().any():
            return False
        if isinstance(s.dtype, pd.CategoricalDtype):
            arrays.append(s.cat.codes.to_numpy())
        elif s.dtype.kind in "iufmM":
            arrays.append(s.to_numpy().view(np.int64) if s.dtype.kind in "mM" else s.to_numpy())
        else:
            return False
    if not arrays or len(arrays[0]) < 2:
        return True
    for order in (arrays, arrays[::-1]):
        for op in (np.greater, np.less):
            ok = op(order[-1][1:], order[-1][:-1])
            for a in reversed(order[:-1]):
                ok = op(a[1:], a[:-1]) | ((a[1:] == a[:-1]) & ok)
            if ok.all():
                return True
        if len(arrays) == 1:
            break
    return False


def check_batch(
    engine: Engine,
    table: str,
    schemas_by_part: list[list[pa.Schema]],
    load: Callable[[list[str]], tuple[pa.Table, int]],
    params: Mapping[str, Any],
    customer_index: pd.Index | None,
    *,
    gx_aggregates: bool = False,
    conversion_errors: Mapping[str, str] | None = None,
    spec: schema.Table | None = None,
    labels_by_part: list[list[str]] | None = None,
) -> Batch:
    """Validate one batch.

    ``schemas_by_part`` are the stored schemas of each part's files: presence and types are checked on each, and a
    column missing or mistyped in any of them is not read for the row-level rules. ``load(columns)`` returns those
    columns (rows after as_of already left out) and how many rows were left out. Aggregates are evaluated by GX
    when ``gx_aggregates`` (a single frame), otherwise only their statistics are returned. ``spec`` describes the
    table when it is not a source table of ``schema.TABLES`` (a derived table such as the wide table).
    ``labels_by_part`` name each file of ``schemas_by_part`` (``month=2025-02/part-00000.parquet``): a type
    check failing on a file is noted with its name, so drift names the partition whose type differs.
    """
    t0 = time.perf_counter()
    suite = engine.suite(table)
    spec = spec or schema.get_table(table)
    exps = suite["expectations"]
    batch = Batch(table)

    for n, part_schemas in enumerate(schemas_by_part):
        part_outcomes: dict[int, Outcome] = {}
        for k, s in enumerate(part_schemas):
            for i, o in engine.schema_outcomes(table, s, spec).items():
                if o.failed and labels_by_part is not None and not o.note:
                    o.note = labels_by_part[n][k]
                part_outcomes[i] = merge_outcome(part_outcomes.get(i), o)
        for i, o in part_outcomes.items():  # files of one partition count as one partition
            o.partitions_total, o.partitions_failed = 1, int(o.failed)
            batch.outcomes[i] = merge_outcome(batch.outcomes.get(i), o)
    all_schemas = [s for part in schemas_by_part for s in part]
    present = set.intersection(*(set(s.names) for s in all_schemas)) if all_schemas else set()
    unusable = set(conversion_errors or {})
    for col, err in (conversion_errors or {}).items():
        for i, exp in enumerate(exps):
            if exp["type"] not in SCHEMA_TYPES or exp["kwargs"].get("column") != col:
                continue
            o = new_outcome(table, i, exp, "passed" if exp["type"] == "expect_column_to_exist" else "failed")
            if o.failed:
                o.note, o.observed, o.expected = err, err, exp["kwargs"]["type_"]
            o.partitions_total, o.partitions_failed = 1, int(o.failed)
            batch.outcomes[i] = o
    for i, o in batch.outcomes.items():
        col = exps[i]["kwargs"].get("column")
        if o.failed and col:
            unusable.add(col)
    usable = present - unusable

    runnable, aggregates = [], []
    for i, exp in enumerate(exps):
        if exp["type"] in SCHEMA_TYPES:
            continue
        missing_cols = [c for c in columns_of(exp) if c not in usable]
        exp_params = list(dict.fromkeys(parameters_of(exp["kwargs"])))
        missing_params = [p for p in exp_params if p not in params and p != "unknown_customer_ids"]
        if "unknown_customer_ids" in exp_params and customer_index is None:
            missing_params.append("customer_ids")
        if missing_cols or missing_params:
            why = (
                f"column {', '.join(missing_cols)} missing or mistyped"
                if missing_cols
                else f"parameter {', '.join(missing_params)} not given"
            )
            batch.outcomes[i] = new_outcome(table, i, exp, "skipped", note=why)
            continue
        (aggregates if exp["type"] in AGGREGATE_TYPES and not gx_aggregates else runnable).append(i)

    time_col = time_column(spec)
    key = spec.key[0] if len(spec.key) == 1 else None
    needed = {c for i in runnable + aggregates for c in columns_of(exps[i])}
    needed |= {c for c in (time_col, key) if c in usable}
    order = [f.name for f in all_schemas[0]] if all_schemas else []
    arrow, batch.excluded = load([c for c in order if c in needed])
    frame = compute_frame(arrow)
    del arrow
    batch.rows = len(frame)

    for i in aggregates:
        batch.stats[i] = _aggregate_stat(exps[i], frame)
    if key in frame.columns and frame[key].dtype.kind in "iuf" and frame[key].notna().any():
        batch.key_range = (frame[key].min(), frame[key].max())
    if time_col in frame.columns and frame[time_col].notna().any():
        batch.time_range = (frame[time_col].min(), frame[time_col].max())

    run_params = dict(params)
    gx_indices = list(runnable)
    for i in runnable:
        exp = exps[i]
        if exp["type"] in UNIQUENESS_TYPES and strictly_monotonic(frame, value_columns(exp)):
            gx_indices.remove(i)
            o = new_outcome(table, i, exp, "passed")
            o.element_count, o.partitions_total = len(frame), 1
            batch.outcomes[i] = o
    for i in runnable:
        if "unknown_customer_ids" not in parameters_of(exps[i]["kwargs"]):
            continue
        col = exps[i]["kwargs"]["column"]
        unknown = _unknown_ids(frame[col], customer_index)
        if len(unknown) > MAX_UNKNOWN_IDS_FOR_GX:
            # Counted here: a GX value set this large costs minutes (see the module docstring).
            gx_indices.remove(i)
            hit = frame[col].isin(unknown)
            o = new_outcome(table, i, exps[i], "failed")
            o.unexpected_count, o.element_count = int(hit.sum()), int(frame[col].notna().sum())
            o.partitions_total = o.partitions_failed = 1
            o.note = f"{len(unknown)} distinct unknown ids; counted outside GX"
            add_examples(o.examples, (masked_example(v, [col], spec) for v in unknown[:MAX_EXAMPLES]))
            batch.outcomes[i] = o
        else:
            run_params["unknown_customer_ids"] = [plain(v) for v in unknown.tolist()]

    if batch.rows or gx_aggregates:
        for i, res in engine.run(table, gx_indices, frame, run_params).items():
            batch.outcomes[i] = _outcome_from_gx(table, i, exps[i], res, spec, run_params)
    batch.seconds = time.perf_counter() - t0
    return batch
