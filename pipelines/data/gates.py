"""Data-quality gates: the Great Expectations suites in ``expectations/`` run on frames and on the whole lake.

The suites are the contract; this is the only module that imports Great Expectations (lazily, inside functions:
the import takes seconds). A run date ``as_of`` fills the suites' parameters (``{"$PARAMETER": ...}``):

``as_of``                    no timestamp or date may be at or after it ("future timestamps")
``freshness_min_ts``         ``as_of`` minus the suite's ``meta.freshness_days``: the newest row must be this recent
``unknown_customer_ids``     ids in the batch that ``customers`` lacks (referential integrity, taken per batch)
``min_rows``, ``max_rows``   the usual row-count band: ``meta.rows_per_customer_month`` x customers x months read
``min_birth_year``, ``max_birth_year``   plausible birth years: ``as_of.year - 110`` to ``as_of.year - 16``
``expected_rows``            the exact row count of a derived table (the wide table: customers open at as_of)
``max_days_since``           the cap of the wide table's ``days_since_*`` columns (its lookback + 1)

The last two have no default: the caller that builds the derived table passes them in ``parameters``.

Every expectation carries ``meta.severity`` (``critical`` fails the run, ``warning`` is reported) and ``meta.rule``
(the short name messages use). An expectation that cannot be evaluated (a column it reads is missing or mistyped,
a parameter was not given) is reported as not evaluated, never silently passed.

How a batch is checked (both :func:`validate_frame` and :func:`validate_lake`):

* presence and types of columns: by GX on a zero-row frame made from the stored Arrow/Parquet schema, so the
  stored type is checked rather than pandas' null-dependent one (an int64 column with a null becomes float64);
* everything else: by GX on a pandas frame typed for its vectorised paths (integers as int64, dates and
  timestamps as ``datetime64[ns]``, clamped into its range): for other dtypes GX loops in Python per row;
* a single-column or compound key whose values strictly increase (or decrease) in storage order is unique by
  construction; that O(n) check replaces GX's hash-based ``duplicated`` (3 s per 10M ids). Keys not in order
  still go through GX.

Referential integrity is ``expect_column_values_to_not_be_in_set(customer_id, $unknown_customer_ids)`` rather
than ``expect_column_values_to_be_in_set(customer_id, $customer_ids)``: GX 1.24 copies a value set through pydantic
about 80 times per expectation (100k ids took 50 s for 200k rows, 1M ids 220 s). The set difference against the
customer ids is taken here, vectorised, and GX counts the rows and picks the examples; both forms fail on exactly
the same rows. (Past ``MAX_UNKNOWN_IDS_FOR_GX`` distinct unknown ids in one batch the rows are counted here.)

GX also md5-hashes every frame under 1 GB for a batch fingerprint nothing here reads; that is switched off.

Examples of failing values are kept (at most five) with PII masked (:func:`mask_pii`); raw PII is never printed or
written.
"""

from __future__ import annotations

import copy
import datetime
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.data import schema, storage

SEVERITIES = ("critical", "warning")

# Checked on a zero-row frame built from the stored schema.
SCHEMA_TYPES = frozenset({"expect_column_to_exist", "expect_column_values_to_be_of_type"})
# Whole-table aggregates: in the lake they are combined across partitions and evaluated here (row counts summed,
# min of minima, max of maxima, mean = sum of sums / sum of counts); on a single frame GX evaluates them.
AGGREGATE_TYPES = frozenset(
    {
        "expect_table_row_count_to_be_between",
        "expect_column_max_to_be_between",
        "expect_column_min_to_be_between",
        "expect_column_mean_to_be_between",
    }
)
# Row-level: each row passes or fails on its own, so unexpected counts add up across partitions. Uniqueness is the
# exception that needs the cross-partition check in validate_lake.
ROW_TYPES = frozenset(
    {
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_null",
        "expect_column_values_to_be_unique",
        "expect_compound_columns_to_be_unique",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_not_be_in_set",
        "expect_column_values_to_be_between",
        "expect_column_values_to_match_regex",
        "expect_column_pair_values_a_to_be_greater_than_b",
        "expect_column_pair_values_to_be_equal",
    }
)
SUPPORTED_TYPES = SCHEMA_TYPES | AGGREGATE_TYPES | ROW_TYPES
UNIQUENESS_TYPES = frozenset({"expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique"})
PARAMETERS = (
    "as_of",
    "freshness_min_ts",
    "unknown_customer_ids",
    "min_rows",
    "max_rows",
    "min_birth_year",
    "max_birth_year",
    "expected_rows",
    "max_days_since",
)
MAX_EXAMPLES = 5
TABLE_MISSING = "table_missing"  # pseudo expectation type of a table the lake does not have
# Beyond this many distinct unknown customer ids in one batch the rows are counted here rather than through a GX
# value set (see the module docstring for why large value sets are slow in GX).
MAX_UNKNOWN_IDS_FOR_GX = 2_000
# Below this many rows in the lake, validate in-process: starting worker processes costs more than it saves.
POOL_MIN_ROWS = 5_000_000
# Consecutive month partitions are grouped into batches of at most this many rows: GX spends ~30 ms per
# expectation per batch whatever its size, so many small batches are slow; one big one would not fit in memory.
BATCH_ROWS = 4_000_000

_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}( \d{2}:\d{2}:\d{2}(\.\d+)?)?$")
_RESULT_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": 20}
_NS_MAX = pd.Timestamp.max.floor("s").to_pydatetime()
_NS_MIN = pd.Timestamp.min.ceil("s").to_pydatetime()


class ValidationError(RuntimeError):
    """A critical expectation failed; the message is the validation summary."""


class SuiteError(ValueError):
    """An expectation suite file is missing or is not a valid GX 1.x suite for this project."""


# --------------------------------------------------------------------------------------------------------------
# Suites


def load_suite(table: str, expectations_dir: str | Path) -> dict:
    """The suite JSON of ``table`` from ``expectations_dir/<table>.json``, checked for this project's rules.

    Raises :class:`SuiteError` naming the file and the problem: missing file, invalid JSON, a name that is not the
    file stem, the 0.x ``expectation_type`` key, an expectation type validate_lake cannot aggregate, or an
    expectation without ``meta.severity`` (critical|warning) and ``meta.rule``.
    """
    path = Path(expectations_dir) / f"{table}.json"
    if not path.is_file():
        raise SuiteError(f"expectation suite for table {table!r} not found: {path} does not exist")
    try:
        suite = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SuiteError(f"expectation suite {path} is not valid JSON: {exc}") from exc
    if not isinstance(suite, dict) or not isinstance(suite.get("expectations"), list):
        raise SuiteError(f"expectation suite {path} must be an object with an 'expectations' list")
    if suite.get("name") != table:
        raise SuiteError(
            f"expectation suite {path} is named {suite.get('name')!r}; it must be named {table!r}"
        )
    for i, exp in enumerate(suite["expectations"]):
        where = f"{path} expectation #{i}"
        if not isinstance(exp, dict):
            raise SuiteError(f"{where} is not an object")
        if "expectation_type" in exp:
            raise SuiteError(f"{where} uses the GX 0.x key 'expectation_type'; GX 1.x suites use 'type'")
        etype = exp.get("type")
        if etype not in SUPPORTED_TYPES:
            raise SuiteError(
                f"{where} has type {etype!r}; supported types: {', '.join(sorted(SUPPORTED_TYPES))}"
            )
        if not isinstance(exp.get("kwargs"), dict):
            raise SuiteError(f"{where} ({etype}) has no 'kwargs' object")
        meta = exp.get("meta") or {}
        if meta.get("severity") not in SEVERITIES:
            raise SuiteError(
                f"{where} ({etype}) needs meta.severity 'critical' or 'warning', got {meta.get('severity')!r}"
            )
        if not isinstance(meta.get("rule"), str) or not meta["rule"].strip():
            raise SuiteError(f"{where} ({etype}) needs a meta.rule naming the rule")
        unknown = set(_parameters_of(exp["kwargs"])) - set(PARAMETERS)
        if unknown:
            raise SuiteError(
                f"{where} ({etype}) uses unknown parameter(s) {sorted(unknown)}; known: {list(PARAMETERS)}"
            )
    return suite


def expected_gx_type(arrow_type: pa.DataType) -> str:
    """The ``type_`` of ``expect_column_values_to_be_of_type`` that a column stored as ``arrow_type`` must match.

    It names the pandas dtype's scalar type, as GX compares it: dictionary columns are categoricals, dates and
    timestamps both datetime64.
    """
    if pa.types.is_dictionary(arrow_type):
        return "CategoricalDtypeType"
    if pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type):
        return "datetime64"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "str"
    if pa.types.is_boolean(arrow_type):
        return "bool"
    if pa.types.is_integer(arrow_type):
        return str(arrow_type)
    if pa.types.is_floating(arrow_type):
        return {16: "float16", 32: "float32", 64: "float64"}[arrow_type.bit_width]
    raise ValueError(f"no GX type name for Arrow type {arrow_type}")


def _parameters_of(value: Any) -> list[str]:
    if isinstance(value, dict):
        if "$PARAMETER" in value:
            return [value["$PARAMETER"]]
        return [p for v in value.values() for p in _parameters_of(v)]
    if isinstance(value, list):
        return [p for v in value for p in _parameters_of(v)]
    return []


def _value_columns(exp: dict) -> list[str]:
    """The columns whose values an expectation checks."""
    kw = exp["kwargs"]
    cols = [kw[k] for k in ("column", "column_A", "column_B") if k in kw]
    return cols + list(kw.get("column_list") or [])


def _columns_of(exp: dict) -> list[str]:
    """Every column an expectation reads, including the one of its row condition."""
    cols = _value_columns(exp)
    cond = exp["kwargs"].get("row_condition")
    if isinstance(cond, dict) and isinstance(cond.get("column"), dict):
        cols.append(cond["column"]["name"])
    return list(dict.fromkeys(cols))


def _label_column(exp: dict) -> str | None:
    kw = exp["kwargs"]
    if "column" in kw:
        return kw["column"]
    if "column_A" in kw:
        return kw["column_A"]
    if "column_list" in kw:
        return "(" + ", ".join(kw["column_list"]) + ")"
    return None


def _resolve(value: Any, params: Mapping[str, Any]) -> Any:
    if isinstance(value, dict) and "$PARAMETER" in value:
        return params[value["$PARAMETER"]]
    return value


# --------------------------------------------------------------------------------------------------------------
# Results


@dataclass
class Outcome:
    """One expectation's result for one table (summed over partitions in the lake).

    ``status`` is ``passed``, ``failed``, ``error`` (GX could not evaluate it: counts as failed) or ``skipped``
    (not evaluated: a column it reads is missing or mistyped, or a parameter was not given).
    """

    table: str
    index: int
    expectation_type: str
    column: str | None
    rule: str
    severity: str
    status: str = "skipped"
    unexpected_count: int = 0
    element_count: int = 0
    observed: Any = None
    expected: str | None = None
    examples: list = field(default_factory=list)
    note: str | None = None
    partitions_failed: int = 0
    partitions_total: int = 0

    @property
    def failed(self) -> bool:
        return self.status in ("failed", "error")

    @property
    def where(self) -> str:
        return f"{self.table}.{self.column}" if self.column else self.table

    @property
    def message(self) -> str:
        """One line naming table, column, rule, severity and what failed (counts and masked examples)."""
        sev = self.severity
        if self.status == "skipped":
            return f"{self.where}: rule '{self.rule}' ({sev}) not evaluated: {self.note or 'no data'}"
        if self.status == "passed":
            return f"{self.where}: rule '{self.rule}' ({sev}) passed"
        if self.expectation_type == TABLE_MISSING:
            return f"{self.where}: table missing ({sev}): {self.note}"
        if self.status == "error":
            return f"{self.where}: rule '{self.rule}' ({sev}) could not be evaluated: {self.note}"
        if self.expectation_type == "expect_column_to_exist":
            scope = ""
            if 0 < self.partitions_failed < self.partitions_total:
                scope = f" in {self.partitions_failed} of {self.partitions_total} partitions"
            return f"{self.where}: column missing{scope} ({sev})"
        if self.expectation_type in ROW_TYPES:
            rows = "row" if self.unexpected_count == 1 else "rows"
            text = f"{self.where}: rule '{self.rule}' ({sev}) failed on {self.unexpected_count} {rows}"
            shown = [v for v in self.examples if v is not None]
            if shown:
                more = ", ..." if self.unexpected_count > len(shown) else ""
                text += f", e.g. [{', '.join(_show(v) for v in shown)}{more}]"
            if self.note:
                text += f" ({self.note})"
            return text
        observed = self.observed if self.expectation_type in SCHEMA_TYPES else _show(self.observed)
        return (
            f"{self.where}: rule '{self.rule}' ({sev}) failed: observed {observed}, expected {self.expected}"
        )

    def to_dict(self) -> dict:
        return {
            "table": self.table,
            "column": self.column,
            "rule": self.rule,
            "severity": self.severity,
            "expectation_type": self.expectation_type,
            "status": self.status,
            "unexpected_count": self.unexpected_count if self.expectation_type in ROW_TYPES else None,
            "element_count": self.element_count if self.expectation_type in ROW_TYPES else None,
            "observed": _plain(self.observed),
            "expected": self.expected,
            "examples": [_plain(v) for v in self.examples],
            "note": self.note,
            "message": self.message,
        }


@dataclass
class TableResult:
    """All expectation outcomes of one table for one run date."""

    table: str
    as_of: str
    outcomes: list[Outcome]
    rows: int = 0
    partitions: list[str] = field(default_factory=list)
    excluded_rows: int = 0
    seconds: float = 0.0

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.failed]

    @property
    def critical_failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.failed and o.severity == "critical"]

    @property
    def warnings(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.failed and o.severity == "warning"]

    @property
    def skipped(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "skipped"]

    @property
    def success(self) -> bool:
        """False iff a critical expectation failed (or could not be evaluated)."""
        return not self.critical_failures

    def summary(self) -> str:
        return _summary(f"validation of {self.table} as of {self.as_of}", [self])

    def to_dict(self) -> dict:
        return {
            "table": self.table,
            "success": self.success,
            "rows": self.rows,
            "partitions": len(self.partitions),
            "months": [self.partitions[0], self.partitions[-1]] if self.partitions else None,
            "excluded_rows": self.excluded_rows,
            "expectations": len(self.outcomes),
            "passed": sum(o.status == "passed" for o in self.outcomes),
            "failed": len(self.failures),
            "skipped": len(self.skipped),
            "seconds": round(self.seconds, 2),
            "critical_failures": [o.to_dict() for o in self.critical_failures],
            "warnings": [o.to_dict() for o in self.warnings],
            "not_evaluated": [o.to_dict() for o in self.skipped],
        }


@dataclass
class LakeResult:
    """Results of every table of the lake for one run date."""

    as_of: str
    tables: dict[str, TableResult]
    seconds: float = 0.0

    @property
    def failures(self) -> list[Outcome]:
        return [o for t in self.tables.values() for o in t.failures]

    @property
    def critical_failures(self) -> list[Outcome]:
        return [o for t in self.tables.values() for o in t.critical_failures]

    @property
    def warnings(self) -> list[Outcome]:
        return [o for t in self.tables.values() for o in t.warnings]

    @property
    def success(self) -> bool:
        """False iff any critical expectation of any table failed."""
        return not self.critical_failures

    def summary(self) -> str:
        return _summary(f"validation as of {self.as_of}", list(self.tables.values()), self.seconds)

    def to_dict(self) -> dict:
        return {
            "as_of": self.as_of,
            "success": self.success,
            "seconds": round(self.seconds, 2),
            "critical_failures": [o.message for o in self.critical_failures],
            "warnings": [o.message for o in self.warnings],
            "tables": {name: t.to_dict() for name, t in self.tables.items()},
        }


def _summary(title: str, tables: list[TableResult], seconds: float | None = None) -> str:
    crit = [o for t in tables for o in t.critical_failures]
    warn = [o for t in tables for o in t.warnings]
    rows = sum(t.rows for t in tables)
    status = "PASSED" if not crit else "FAILED"
    timing = f", {seconds:.1f} s" if seconds else ""
    lines = [
        f"{title}: {status} - {len(crit)} critical failure(s), {len(warn)} warning(s) "
        f"({len(tables)} table(s), {rows:,} rows{timing})"
    ]
    if crit:
        lines.append("critical:")
        lines += [f"  - {o.message}" for o in crit]
    if warn:
        lines.append("warnings:")
        lines += [f"  - {o.message}" for o in warn]
    skipped = [o for t in tables for o in t.skipped if o.severity == "critical"]
    if skipped:
        lines.append("not evaluated (critical rules):")
        lines += [f"  - {o.message}" for o in skipped]
    excluded = [(t.table, t.excluded_rows) for t in tables if t.excluded_rows]
    if excluded:
        lines.append(
            "rows dated on or after as_of that the lake already holds were left out: "
            + ", ".join(f"{name} {n:,}" for name, n in excluded)
        )
    return "\n".join(lines)


def require_valid(result: LakeResult | TableResult) -> LakeResult | TableResult:
    """Return ``result`` if no critical expectation failed; raise :class:`ValidationError` with the summary if one did."""
    if not result.success:
        raise ValidationError(result.summary())
    return result


def write_report(result: LakeResult | TableResult, report_dir: str | Path) -> tuple[Path, Path]:
    """Write ``validation.json`` and ``validation.md`` (small, PII masked) into ``report_dir``; return both paths."""
    report_dir = Path(report_dir)
    lake = (
        result
        if isinstance(result, LakeResult)
        else LakeResult(result.as_of, {result.table: result}, result.seconds)
    )
    payload = lake.to_dict()
    json_path = storage.write_json_atomic(report_dir / "validation.json", payload)
    md_path = storage.write_text_atomic(report_dir / "validation.md", _markdown(lake))
    return json_path, md_path


def _markdown(result: LakeResult) -> str:
    status = "PASSED" if result.success else "FAILED"
    lines = [
        f"# Data validation as of {result.as_of}: {status}",
        "",
        f"{len(result.critical_failures)} critical failure(s), {len(result.warnings)} warning(s).",
        "",
        "| table | status | rows | partitions | expectations | failed | not evaluated |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, t in result.tables.items():
        state = "ok" if t.success and not t.warnings else ("warnings" if t.success else "**FAILED**")
        lines.append(
            f"| {name} | {state} | {t.rows:,} | {len(t.partitions)} | {len(t.outcomes)} | {len(t.failures)} "
            f"| {len(t.skipped)} |"
        )
    for title, items in (("Critical failures", result.critical_failures), ("Warnings", result.warnings)):
        if items:
            lines += ["", f"## {title}", ""] + [f"- {_md_escape(o.message)}" for o in items]
    skipped = [o for t in result.tables.values() for o in t.skipped]
    if skipped:
        lines += ["", "## Not evaluated", ""] + [f"- {_md_escape(o.message)}" for o in skipped]
    excluded = [(n, t.excluded_rows) for n, t in result.tables.items() if t.excluded_rows]
    if excluded:
        lines += [
            "",
            "Rows dated on or after the run date that the lake already holds (a backfill) were left out: "
            + ", ".join(f"{n} {k:,}" for n, k in excluded)
            + ".",
        ]
    return "\n".join(lines) + "\n"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


# --------------------------------------------------------------------------------------------------------------
# PII masking and value formatting


def mask_pii(value: Any, column: str) -> str | None:
    """A masked rendering of a PII value: ``J*** S****``, ``+44 7*** ***123``, ``j***@e***.com``, ``*******89``."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    text = str(value)
    if column == "full_name":
        return " ".join(w[:1] + "*" * (len(w) - 1) for w in text.split())
    if column == "phone":
        digits = [i for i, ch in enumerate(text) if ch.isdigit()]
        keep_head, keep_tail = (3, 3) if len(digits) >= 9 else (0, 2 if len(digits) >= 6 else 0)
        keep = set(digits[:keep_head]) | set(digits[len(digits) - keep_tail :])
        return "".join(ch if (not ch.isalnum() or i in keep) else "*" for i, ch in enumerate(text))
    if column == "email" and "@" in text:
        local, _, domain = text.partition("@")
        name, dot, tld = domain.rpartition(".")
        return f"{local[:1]}***@{(name or domain)[:1]}***{dot}{tld if dot else ''}"
    if len(text) <= 4:
        return "*" * len(text)
    return "*" * (len(text) - 2) + text[-2:]


def _plain(value: Any) -> Any:
    """A JSON-safe, readable Python value."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, pd.Timestamp):
        return value.isoformat(sep=" ")
    if isinstance(value, np.datetime64):
        return None if np.isnat(value) else pd.Timestamp(value).isoformat(sep=" ")
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, datetime.date):
        return value.isoformat()
    return value


def _show(value: Any) -> str:
    value = _plain(value)
    if isinstance(value, str):
        return value if _ISO_DATETIME.match(value) else repr(value)
    if isinstance(value, float):
        return repr(float(f"{value:.10g}"))  # -19.8, not -19.799999999999997
    if isinstance(value, dict):
        return "(" + ", ".join(_show(v) for v in value.values()) + ")"
    return str(value)


def _example(value: Any, columns: list[str], spec: schema.Table) -> Any:
    """An example failing value made plain, PII masked and integral floats of integer columns shown as ints."""
    pii = set(spec.pii_columns)

    def one(v: Any, col: str) -> Any:
        if col in pii:
            return mask_pii(_plain(v), col)
        if isinstance(v, pd.Timestamp | np.datetime64) and not pd.isna(v) and _is_date_column(spec, col):
            return pd.Timestamp(v).date().isoformat()
        v = _plain(v)
        if isinstance(v, float) and v.is_integer() and _is_int_column(spec, col):
            return int(v)
        return v

    if isinstance(value, dict):
        return {k: one(v, k) for k, v in value.items()}
    if isinstance(value, list | tuple) and len(columns) == len(value) > 1:
        return {c: one(v, c) for c, v in zip(columns, value, strict=True)}
    if any(c in pii for c in columns) and len(columns) > 1:
        return "<masked>"
    return one(value, columns[0] if columns else "")


def _is_date_column(spec: schema.Table, column: str) -> bool:
    try:
        return pa.types.is_date(spec.column(column).type)
    except KeyError:
        return False


def _is_int_column(spec: schema.Table, column: str) -> bool:
    try:
        return pa.types.is_integer(spec.column(column).type)
    except KeyError:
        return False


def _add_examples(into: list, new: Iterable[Any]) -> None:
    for v in new:
        if len(into) >= MAX_EXAMPLES:
            return
        if v not in into:
            into.append(v)


# --------------------------------------------------------------------------------------------------------------
# Frames


def _frame_to_arrow(df: pd.DataFrame, spec: schema.Table) -> tuple[pa.Table, dict[str, str]]:
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


def _compute_frame(table: pa.Table) -> pd.DataFrame:
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
            hi = pa.scalar(_NS_MAX, type=pa.timestamp(t.unit, t.tz))
            lo = pa.scalar(_NS_MIN, type=pa.timestamp(t.unit, t.tz))
            col = pc.max_element_wise(pc.min_element_wise(col, hi, skip_nulls=False), lo, skip_nulls=False)
            col = col.cast(pa.timestamp("ns", t.tz))
        elif pa.types.is_integer(t) and t.bit_width < 64:
            col = col.cast(pa.int64())
        columns.append(col)
    if not columns:  # nothing to read but the row count
        return pd.DataFrame(index=pd.RangeIndex(table.num_rows))
    return pa.table(columns, names=table.column_names).to_pandas(split_blocks=True)


def _id_index(ids: Any) -> pd.Index:
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


class _Engine:
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
        used = {p for i in indices for p in _parameters_of(self.suite(table)["expectations"][i]["kwargs"])}
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
                    outcomes[i] = _new_outcome(table, i, exp, "skipped", note=f"column {col} missing")
                else:
                    run_idx.append(i)
            results = self.run(table, run_idx, _schema_frame(arrow_schema), {})
            for i, res in results.items():
                outcomes[i] = _outcome_from_gx(table, i, suite["expectations"][i], res, spec, {})
            self._schema_cache[key] = outcomes
        return copy.deepcopy(self._schema_cache[key])


_ENGINES: dict[Path, _Engine] = {}


def _engine(expectations_dir: str | Path) -> _Engine:
    path = Path(expectations_dir).resolve()
    if path not in _ENGINES:
        _ENGINES[path] = _Engine(path)
    return _ENGINES[path]


def _new_outcome(
    table: str, index: int, exp: dict, status: str = "skipped", note: str | None = None
) -> Outcome:
    return Outcome(
        table=table,
        index=index,
        expectation_type=exp["type"],
        column=_label_column(exp),
        rule=exp["meta"]["rule"],
        severity=exp["meta"]["severity"],
        status=status,
        note=note,
    )


def _describe_bounds(exp: dict, params: Mapping[str, Any]) -> str:
    kw = exp["kwargs"]
    try:
        lo, hi = _resolve(kw.get("min_value"), params), _resolve(kw.get("max_value"), params)
    except KeyError:
        return "within the suite's bounds"
    parts = []
    if lo is not None:
        parts.append(f"{'>' if kw.get('strict_min') else '>='} {_show(lo)}")
    if hi is not None:
        parts.append(f"{'<' if kw.get('strict_max') else '<='} {_show(hi)}")
    return " and ".join(parts) or "any"


def _outcome_from_gx(
    table: str, index: int, exp: dict, res: Any, spec: schema.Table, params: Mapping
) -> Outcome:
    out = _new_outcome(table, index, exp, "passed" if res.success else "failed")
    out.partitions_total = 1
    info = res.exception_info or {}
    if info.get("raised_exception"):
        out.status = "error"
        out.note = str(info.get("exception_message") or "unknown error").splitlines()[0][:300]
        if set(_columns_of(exp)) & set(spec.pii_columns):
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
        out.expected = _describe_bounds(exp, params)
    elif etype in ROW_TYPES:
        out.unexpected_count = int(result.get("unexpected_count") or 0)
        out.element_count = int(result.get("element_count") or 0)
        if etype == "expect_column_values_to_not_be_null":
            examples = []
        else:
            examples = result.get("partial_unexpected_list") or []
        cols = _value_columns(exp)
        _add_examples(out.examples, (_example(v, cols, spec) for v in examples))
    if out.failed:
        out.partitions_failed = 1
    return out


def _merge(acc: Outcome | None, new: Outcome) -> Outcome:
    """Combine one partition's outcome into the running one: counts add up, a failure anywhere fails the whole."""
    if acc is None:
        return copy.deepcopy(new)
    rank = {"skipped": 0, "passed": 1, "failed": 2, "error": 3}
    if rank[new.status] > rank[acc.status]:
        acc.status = new.status
        acc.note = new.note
    acc.unexpected_count += new.unexpected_count
    acc.element_count += new.element_count
    acc.partitions_total += new.partitions_total
    acc.partitions_failed += new.partitions_failed
    if new.failed and acc.observed is None:
        acc.observed, acc.expected = new.observed, new.expected
    _add_examples(acc.examples, new.examples)
    return acc


# --------------------------------------------------------------------------------------------------------------
# Parameters


def suite_parameters(
    suite: dict,
    as_of: Any,
    *,
    n_customers: int | None = None,
    n_months: int | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The run-time values of a suite's ``$PARAMETER``s for a run date (``unknown_customer_ids`` excepted: that one
    is taken per batch). The row-count band needs ``n_customers`` and ``n_months``; ``overrides`` win."""
    as_of = pd.Timestamp(as_of)
    params: dict[str, Any] = {
        "as_of": as_of.to_pydatetime(),
        "min_birth_year": as_of.year - 110,
        "max_birth_year": as_of.year - 16,
    }
    meta = suite.get("meta") or {}
    if meta.get("freshness_days") is not None:
        params["freshness_min_ts"] = (
            as_of - pd.Timedelta(days=float(meta["freshness_days"]))
        ).to_pydatetime()
    band = meta.get("rows_per_customer_month")
    if band and n_customers and n_months:
        params["min_rows"] = int(math.floor(band[0] * n_customers * n_months))
        params["max_rows"] = int(math.ceil(band[1] * n_customers * n_months))
    for k, v in (overrides or {}).items():
        if k != "customer_ids":
            params[k] = pd.Timestamp(v).to_pydatetime() if isinstance(v, pd.Timestamp) else v
    return params


# --------------------------------------------------------------------------------------------------------------
# One batch: a frame, or one or more consecutive month partitions of a lake table


@dataclass
class _Part:
    """One month partition (or the whole of an unpartitioned table): its files and the exclusion horizon."""

    month: str | None
    files: list[str]
    rows: int
    # Rows whose time column lies in [as_of, horizon) are facts held for later run dates and are left out.
    horizon: pd.Timestamp | None = None


@dataclass
class _Task:
    lake_dir: Path
    table: str
    parts: list[_Part]
    task_id: int = 0

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.parts)

    @property
    def months(self) -> list[str]:
        return [p.month for p in self.parts if p.month]


@dataclass
class _Batch:
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


def _time_column(spec: schema.Table) -> str | None:
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


def _strictly_monotonic(frame: pd.DataFrame, columns: list[str]) -> bool:
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


def _window_mask(column: pa.ChunkedArray, lo: pd.Timestamp, hi: pd.Timestamp) -> pa.ChunkedArray:
    """True where lo <= value < hi (null: False), for date and timestamp columns."""
    if pa.types.is_date(column.type):
        column = column.cast(pa.timestamp("s"))
    t = column.type
    if not pa.types.is_timestamp(t):
        return pa.chunked_array([pa.array(np.zeros(len(column), dtype=bool))])
    lo_s = pa.scalar(lo.to_pydatetime(), type=pa.timestamp("us", t.tz)).cast(t)
    hi_s = pa.scalar(min(hi, pd.Timestamp(_NS_MAX)).to_pydatetime(), type=pa.timestamp("us", t.tz)).cast(t)
    return pc.fill_null(pc.and_(pc.greater_equal(column, lo_s), pc.less(column, hi_s)), False)


def _load_parts(
    lake_dir: Path, table_name: str, parts: list[_Part], columns: list[str], as_of: pd.Timestamp
) -> tuple[pa.Table, int]:
    """The columns of a batch's parts as one Arrow table, without the rows each part's horizon leaves out.

    Only columns present in every file of the parts may be asked for (io reads with the first file's schema).
    """
    time_col = _time_column(schema.get_table(table_name))
    tables, excluded = [], 0
    for part in parts:
        read = list(columns)
        if part.horizon is not None and time_col and time_col not in read:
            read.append(time_col)
        months = None if part.month is None else [part.month]
        try:
            table = storage.read_arrow(lake_dir, table_name, months, columns=read)
        except storage.LakeError:
            if read == columns:
                raise
            read, table = columns, storage.read_arrow(lake_dir, table_name, months, columns=columns)
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


def _check_batch(
    engine: _Engine,
    table: str,
    schemas_by_part: list[list[pa.Schema]],
    load: Callable[[list[str]], tuple[pa.Table, int]],
    params: Mapping[str, Any],
    customer_index: pd.Index | None,
    *,
    gx_aggregates: bool = False,
    conversion_errors: Mapping[str, str] | None = None,
    spec: schema.Table | None = None,
) -> _Batch:
    """Validate one batch.

    ``schemas_by_part`` are the stored schemas of each part's files: presence and types are checked on each, and a
    column missing or mistyped in any of them is not read for the row-level rules. ``load(columns)`` returns those
    columns (rows after as_of already left out) and how many rows were left out. Aggregates are evaluated by GX
    when ``gx_aggregates`` (a single frame), otherwise only their statistics are returned. ``spec`` describes the
    table when it is not a source table of ``schema.TABLES`` (a derived table such as the wide table).
    """
    t0 = time.perf_counter()
    suite = engine.suite(table)
    spec = spec or schema.get_table(table)
    exps = suite["expectations"]
    batch = _Batch(table)

    for part_schemas in schemas_by_part:
        part_outcomes: dict[int, Outcome] = {}
        for s in part_schemas:
            for i, o in engine.schema_outcomes(table, s, spec).items():
                part_outcomes[i] = _merge(part_outcomes.get(i), o)
        for i, o in part_outcomes.items():  # files of one partition count as one partition
            o.partitions_total, o.partitions_failed = 1, int(o.failed)
            batch.outcomes[i] = _merge(batch.outcomes.get(i), o)
    all_schemas = [s for part in schemas_by_part for s in part]
    present = set.intersection(*(set(s.names) for s in all_schemas)) if all_schemas else set()
    unusable = set(conversion_errors or {})
    for col, err in (conversion_errors or {}).items():
        for i, exp in enumerate(exps):
            if exp["type"] not in SCHEMA_TYPES or exp["kwargs"].get("column") != col:
                continue
            o = _new_outcome(table, i, exp, "passed" if exp["type"] == "expect_column_to_exist" else "failed")
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
        missing_cols = [c for c in _columns_of(exp) if c not in usable]
        exp_params = list(dict.fromkeys(_parameters_of(exp["kwargs"])))
        missing_params = [p for p in exp_params if p not in params and p != "unknown_customer_ids"]
        if "unknown_customer_ids" in exp_params and customer_index is None:
            missing_params.append("customer_ids")
        if missing_cols or missing_params:
            why = (
                f"column {', '.join(missing_cols)} missing or mistyped"
                if missing_cols
                else f"parameter {', '.join(missing_params)} not given"
            )
            batch.outcomes[i] = _new_outcome(table, i, exp, "skipped", note=why)
            continue
        (aggregates if exp["type"] in AGGREGATE_TYPES and not gx_aggregates else runnable).append(i)

    time_col = _time_column(spec)
    key = spec.key[0] if len(spec.key) == 1 else None
    needed = {c for i in runnable + aggregates for c in _columns_of(exps[i])}
    needed |= {c for c in (time_col, key) if c in usable}
    order = [f.name for f in all_schemas[0]] if all_schemas else []
    arrow, batch.excluded = load([c for c in order if c in needed])
    frame = _compute_frame(arrow)
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
        if exp["type"] in UNIQUENESS_TYPES and _strictly_monotonic(frame, _value_columns(exp)):
            gx_indices.remove(i)
            o = _new_outcome(table, i, exp, "passed")
            o.element_count, o.partitions_total = len(frame), 1
            batch.outcomes[i] = o
    for i in runnable:
        if "unknown_customer_ids" not in _parameters_of(exps[i]["kwargs"]):
            continue
        col = exps[i]["kwargs"]["column"]
        unknown = _unknown_ids(frame[col], customer_index)
        if len(unknown) > MAX_UNKNOWN_IDS_FOR_GX:
            # Counted here: a GX value set this large costs minutes (see the module docstring).
            gx_indices.remove(i)
            hit = frame[col].isin(unknown)
            o = _new_outcome(table, i, exps[i], "failed")
            o.unexpected_count, o.element_count = int(hit.sum()), int(frame[col].notna().sum())
            o.partitions_total = o.partitions_failed = 1
            o.note = f"{len(unknown)} distinct unknown ids; counted outside GX"
            _add_examples(o.examples, (_example(v, [col], spec) for v in unknown[:MAX_EXAMPLES]))
            batch.outcomes[i] = o
        else:
            run_params["unknown_customer_ids"] = [_plain(v) for v in unknown.tolist()]

    if batch.rows or gx_aggregates:
        for i, res in engine.run(table, gx_indices, frame, run_params).items():
            batch.outcomes[i] = _outcome_from_gx(table, i, exps[i], res, spec, run_params)
    batch.seconds = time.perf_counter() - t0
    return batch


# --------------------------------------------------------------------------------------------------------------
# validate_frame


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
    engine = _engine(expectations_dir)
    suite = engine.suite(table)
    parameters = dict(parameters or {})
    customer_index = None
    n_customers = None
    if parameters.get("customer_ids") is not None:
        customer_index = _id_index(parameters["customer_ids"])
        n_customers = len(customer_index)
    n_months = None
    if spec.partition_by and spec.partition_by in df.columns:
        months = pd.to_datetime(pd.Series(df[spec.partition_by]), errors="coerce").dropna()
        n_months = int(months.dt.to_period("M").nunique()) or None
    params = suite_parameters(suite, as_of, n_customers=n_customers, n_months=n_months, overrides=parameters)
    arrow, errors = _frame_to_arrow(df, spec)
    batch = _check_batch(
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
        batch.outcomes.get(i) or _new_outcome(table, i, e, note="no rows")
        for i, e in enumerate(suite["expectations"])
    ]
    result = TableResult(
        table, as_of.date().isoformat(), outcomes, rows=len(df), seconds=time.perf_counter() - t0
    )
    if report_dir is not None:
        write_report(result, report_dir)
    return result


# --------------------------------------------------------------------------------------------------------------
# validate_lake


_WORKER: dict[str, Any] = {}


def _init_worker(
    expectations_dir: str, as_of: pd.Timestamp, params: dict, customer_ids: np.ndarray | None
) -> None:
    """Per-process state: the GX engine, run parameters per table and the customer-id index."""
    _WORKER["engine"] = _engine(expectations_dir)
    _WORKER["as_of"] = as_of
    _WORKER["params"] = params
    _WORKER["customers"] = None if customer_ids is None else pd.Index(customer_ids)


def _run_task(task: _Task) -> _Batch:
    as_of = _WORKER["as_of"]
    batch = _check_batch(
        _WORKER["engine"],
        task.table,
        [[storage.read_file_schema(f) for f in part.files] for part in task.parts],
        lambda cols: _load_parts(task.lake_dir, task.table, task.parts, cols, as_of),
        _WORKER["params"][task.table],
        _WORKER["customers"],
    )
    batch.task_id, batch.months = task.task_id, task.months
    return batch


def _evaluate_aggregate(exp: dict, observed: Any, params: Mapping[str, Any]) -> bool:
    """GX's rule for the *_to_be_between aggregates: inside [min_value, max_value], strict where asked."""
    if observed is None:
        return False
    kw = exp["kwargs"]
    lo, hi = _resolve(kw.get("min_value"), params), _resolve(kw.get("max_value"), params)
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


def _month_start(month: str) -> pd.Timestamp:
    return pd.Timestamp(f"{month}-01")


def _month_start_after(month: str) -> pd.Timestamp:
    return _month_start(month) + pd.offsets.MonthBegin(1)


def _plan(
    lake_dir: Path, as_of: pd.Timestamp, batch_rows: int
) -> tuple[list[_Task], dict[str, str], dict[str, list[str]]]:
    """Batches to validate, tables the lake lacks (with why), and the months read per table.

    Month partitions at or before as_of's month are grouped, in month order, into batches of at most
    ``batch_rows`` rows; a partition larger than that is a batch of its own (a partition is never split).
    """
    as_of_month = storage.month_key(as_of)
    all_months = [
        m for t, s in schema.TABLES.items() if s.partition_by for m in storage.list_months(lake_dir, t)
    ]
    data_end = _month_start_after(max(all_months)) if all_months else None
    tasks: list[_Task] = []
    missing: dict[str, str] = {}
    months_read: dict[str, list[str]] = {}
    for table, spec in schema.TABLES.items():
        if not storage.table_dir(lake_dir, table).is_dir():
            missing[table] = f"folder {storage.table_dir(lake_dir, table)} not found"
            continue
        if not spec.partition_by:
            files = [str(f) for f in storage.table_files(lake_dir, table)]
            if files:
                horizon = data_end if data_end is not None and data_end > as_of else None
                tasks.append(_Task(lake_dir, table, [_Part(None, files, storage.count_rows(files), horizon)]))
            continue
        group: list[_Part] = []
        months_read[table] = []
        for m in storage.list_months(lake_dir, table):
            if m > as_of_month:
                break
            files = [str(f) for f in storage.table_files(lake_dir, table, [m])]
            if not files:
                continue
            months_read[table].append(m)
            part = _Part(
                m, files, storage.count_rows(files), _month_start_after(m) if m == as_of_month else None
            )
            if group and sum(p.rows for p in group) + part.rows > batch_rows:
                tasks.append(_Task(lake_dir, table, group))
                group = []
            group.append(part)
        if group:
            tasks.append(_Task(lake_dir, table, group))
    for i, task in enumerate(tasks):
        task.task_id = i
    return tasks, missing, months_read


def validate_lake(
    lake_dir: str | Path,
    as_of: Any,
    expectations_dir: str | Path,
    *,
    report_dir: str | Path | None = None,
    progress: Callable[[str], Any] | None = print,
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

    With ``workers`` > 1 (default: up to 4, one per core, when the lake holds at least 5M rows) batches are
    validated in a process pool, largest first. Writes ``validation.json`` and ``validation.md`` into
    ``report_dir`` if given.
    """
    t0 = time.perf_counter()
    say = progress or (lambda _msg: None)
    lake_dir = Path(lake_dir)
    as_of = pd.Timestamp(as_of)
    suites = {t: load_suite(t, expectations_dir) for t in schema.TABLES}
    tasks, missing, months_read = _plan(lake_dir, as_of, batch_rows)

    customer_ids = None
    if "customers" not in missing:
        try:
            ids = storage.read_arrow(lake_dir, "customers", columns=["customer_id"]).column("customer_id")
            customer_ids = np.unique(ids.drop_null().to_numpy())
        except storage.LakeError as exc:
            say(f"referential integrity not checked: {exc}")
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

    batches: dict[str, list[_Batch]] = {t: [] for t in schema.TABLES}
    remaining = {t: sum(1 for x in tasks if x.table == t) for t in schema.TABLES}

    def done(b: _Batch) -> None:
        batches[b.table].append(b)
        remaining[b.table] -= 1
        if remaining[b.table] == 0:
            rows = sum(x.rows for x in batches[b.table])
            say(f"  {b.table}: {len(batches[b.table])} batch(es), {rows:,} rows checked")

    init_args = (str(Path(expectations_dir).resolve()), as_of, params, customer_ids)
    ordered = sorted(tasks, key=lambda t: -t.rows)
    if workers == 1:
        _init_worker(*init_args)
        for task in ordered:
            done(_run_task(task))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        ctx = multiprocessing.get_context(
            "spawn"
        )  # fork after pyarrow's thread pools have started can deadlock
        with ProcessPoolExecutor(
            workers, mp_context=ctx, initializer=_init_worker, initargs=init_args
        ) as pool:
            for fut in as_completed([pool.submit(_run_task, task) for task in ordered]):
                done(fut.result())

    tables: dict[str, TableResult] = {}
    for table in schema.TABLES:
        if table in missing:
            tables[table] = _missing_table(table, suites[table], as_of, missing[table])
        else:
            tables[table] = _combine_table(
                lake_dir, table, suites[table], batches[table], tasks, params[table], as_of
            )
        for o in tables[table].failures:
            say(f"    {o.message}")
    result = LakeResult(as_of.date().isoformat(), tables, time.perf_counter() - t0)
    if report_dir is not None:
        write_report(result, report_dir)
    say(f"validation {'PASSED' if result.success else 'FAILED'} in {result.seconds:.1f} s")
    return result


def _missing_table(table: str, suite: dict, as_of: pd.Timestamp, why: str) -> TableResult:
    exp = {"type": TABLE_MISSING, "meta": {"severity": "critical", "rule": "table present"}, "kwargs": {}}
    o = _new_outcome(table, -1, exp, "failed", note=why)
    others = [_new_outcome(table, i, e, note="table missing") for i, e in enumerate(suite["expectations"])]
    return TableResult(table, as_of.date().isoformat(), [o, *others])


def _combine_table(
    lake_dir: Path,
    table: str,
    suite: dict,
    batches: list[_Batch],
    tasks: list[_Task],
    params: Mapping[str, Any],
    as_of: pd.Timestamp,
) -> TableResult:
    exps = suite["expectations"]
    spec = schema.get_table(table)
    batches = sorted(batches, key=lambda b: b.task_id)
    outcomes: list[Outcome] = []
    for i, exp in enumerate(exps):
        acc: Outcome | None = None
        for b in batches:
            if i in b.outcomes:
                acc = _merge(acc, b.outcomes[i])
        if exp["type"] in AGGREGATE_TYPES:
            missing = [p for p in dict.fromkeys(_parameters_of(exp["kwargs"])) if p not in params]
            stats = [b.stats[i] for b in batches if i in b.stats]
            if not batches and exp["type"] == "expect_table_row_count_to_be_between":
                stats = [0]
            if missing:
                acc = _new_outcome(table, i, exp, note=f"parameter {', '.join(missing)} not given")
            elif stats:
                observed = _combine_aggregate(exp, stats)
                ok = _evaluate_aggregate(exp, observed, params)
                acc = _new_outcome(table, i, exp, "passed" if ok else "failed")
                acc.observed, acc.expected = observed, _describe_bounds(exp, params)
        if acc is None:
            acc = _new_outcome(table, i, exp, note="no data on or before as_of")
        outcomes.append(acc)

    key_idx = next(
        (
            i
            for i, e in enumerate(exps)
            if e["type"] in UNIQUENESS_TYPES
            and sorted(_value_columns(e)) == sorted(spec.key)
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
            _add_examples(o.examples, (_example(v, list(spec.key), spec) for v in examples))
            o.note = f"{extra} of them repeat a key held by another partition"

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
    spec: schema.Table, batches: list[tuple[_Batch, _Task]], as_of: pd.Timestamp
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


def _within_months(b: _Batch) -> bool:
    """Every row's time column lies inside the months of its batch."""
    if b.time_range is None or not b.months:
        return True
    lo, hi = b.time_range
    return _month_start(min(b.months)) <= lo and hi < _month_start_after(max(b.months))


def _read_keys(spec: schema.Table, task: _Task, as_of: pd.Timestamp) -> pd.DataFrame:
    """The key columns of a batch, without the rows left out of the run; rows whose key is all null dropped."""
    table, _ = _load_parts(task.lake_dir, task.table, task.parts, list(spec.key), as_of)
    return _compute_frame(table).dropna(how="all").reset_index(drop=True)


def _exact_cross_duplicates(
    spec: schema.Table, tasks: list[_Task], as_of: pd.Timestamp, *, integer_key: bool
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
