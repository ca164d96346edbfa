"""What the gates report: per-expectation outcomes, table and lake results, their summaries and report files.

Examples of failing values are kept (at most :data:`MAX_EXAMPLES`) with PII masked (:func:`mask_pii`); raw PII is
never printed or written. The Markdown report is ``templates/gate_report.md.j2``.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from pipelines.data import schema, storage
from pipelines.data.suites import ROW_TYPES, SCHEMA_TYPES, label_column, resolve
from pipelines.templating import render

MAX_EXAMPLES = 5
TABLE_MISSING = "table_missing"  # pseudo expectation type of a table the lake does not have
# Pseudo expectation types of the lake's own checks (not in any suite): a folder or file that cannot be read as
# part of the table, and rows stored under another month's partition folder. Both are critical.
LAKE_FAULT = "lake_fault"
MISPLACED_ROWS = "rows_outside_partition"

_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}( \d{2}:\d{2}:\d{2}(\.\d+)?)?$")


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
        if self.expectation_type == LAKE_FAULT:
            return f"{self.where}: {self.rule} ({sev}): {self.note}"
        if self.status == "error":
            return f"{self.where}: rule '{self.rule}' ({sev}) could not be evaluated: {self.note}"
        if self.expectation_type == "expect_column_to_exist":
            scope = ""
            if 0 < self.partitions_failed < self.partitions_total:
                scope = f" in {self.partitions_failed} of {self.partitions_total} partitions"
            return f"{self.where}: column missing{scope} ({sev})"
        if self.expectation_type in ROW_TYPES or self.expectation_type == MISPLACED_ROWS:
            rows = "row" if self.unexpected_count == 1 else "rows"
            text = f"{self.where}: rule '{self.rule}' ({sev}) failed on {self.unexpected_count} {rows}"
            shown = [v for v in self.examples if v is not None]
            if shown:
                more = ", ..." if self.unexpected_count > len(shown) else ""
                text += f", e.g. [{', '.join(show(v) for v in shown)}{more}]"
            if self.note:
                text += f" ({self.note})"
            return text
        observed = self.observed if self.expectation_type in SCHEMA_TYPES else show(self.observed)
        text = (
            f"{self.where}: rule '{self.rule}' ({sev}) failed: observed {observed}, expected {self.expected}"
        )
        if self.expectation_type in SCHEMA_TYPES and self.note and self.note != self.observed:
            scope = (
                f", {self.partitions_failed} of {self.partitions_total} partitions"
                if self.partitions_total > 1
                else ""
            )
            text += f" (in {self.note}{scope})"
        return text

    @property
    def _counts_rows(self) -> bool:
        return self.expectation_type in ROW_TYPES or self.expectation_type == MISPLACED_ROWS

    def to_dict(self) -> dict:
        return {
            "table": self.table,
            "column": self.column,
            "rule": self.rule,
            "severity": self.severity,
            "expectation_type": self.expectation_type,
            "status": self.status,
            "unexpected_count": self.unexpected_count if self._counts_rows else None,
            "element_count": self.element_count if self._counts_rows else None,
            "observed": plain(self.observed),
            "expected": self.expected,
            "examples": [plain(v) for v in self.examples],
            "note": self.note,
            "message": self.message,
        }


def new_outcome(
    table: str, index: int, exp: dict, status: str = "skipped", note: str | None = None
) -> Outcome:
    """The outcome of expectation ``index`` (``exp``) of ``table``, named after its column, rule and severity."""
    return Outcome(
        table=table,
        index=index,
        expectation_type=exp["type"],
        column=label_column(exp),
        rule=exp["meta"]["rule"],
        severity=exp["meta"]["severity"],
        status=status,
        note=note,
    )


def lake_outcome(
    table: str, kind: str, rule: str, note: str | None = None, column: str | None = None
) -> Outcome:
    """A failed critical outcome of the lake's own checks (``kind``: :data:`LAKE_FAULT` or :data:`MISPLACED_ROWS`)."""
    return Outcome(
        table=table,
        index=-1,
        expectation_type=kind,
        column=column,
        rule=rule,
        severity="critical",
        status="failed",
        note=note,
        partitions_total=1,
        partitions_failed=1,
    )


def describe_bounds(exp: dict, params: Mapping[str, Any]) -> str:
    """What a ``*_to_be_between`` expectation expects, e.g. ``>= 0 and < 2025-04-01 00:00:00``."""
    kw = exp["kwargs"]
    try:
        lo, hi = resolve(kw.get("min_value"), params), resolve(kw.get("max_value"), params)
    except KeyError:
        return "within the suite's bounds"
    parts = []
    if lo is not None:
        parts.append(f"{'>' if kw.get('strict_min') else '>='} {show(lo)}")
    if hi is not None:
        parts.append(f"{'<' if kw.get('strict_max') else '<='} {show(hi)}")
    return " and ".join(parts) or "any"


@dataclass
class TableResult:
    """All expectation outcomes of one table for one run date.

    A table ingested from a declared source names it (``source``) and the columns its mapping ``defaulted`` (column
    -> the constant) and ``left_null``; ``absent`` is the note of an optional table a lake built from sources
    lacks (no outcomes then); ``notes`` are remarks that fail nothing (a source calendar that could not be read).
    """

    table: str
    as_of: str
    outcomes: list[Outcome]
    rows: int = 0
    partitions: list[str] = field(default_factory=list)
    excluded_rows: int = 0
    seconds: float = 0.0
    absent: str | None = None
    source: str | None = None
    defaulted: dict[str, Any] = field(default_factory=dict)
    left_null: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

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
            "absent": self.absent,
            "source": self.source,
            "defaulted_by_source": {k: plain(v) for k, v in self.defaulted.items()},
            "left_null_by_source": self.left_null,
            "notes": self.notes,
        }

    @property
    def defaulted_text(self) -> str:
        """The defaulted columns as ``gender = 'U', city_tier = 1`` (constants of the mapping, never data)."""
        return ", ".join(f"{k} = {show(v)}" for k, v in self.defaulted.items())

    @property
    def status(self) -> str:
        """ok, warnings, FAILED, or absent (an optional table a lake built from sources lacks)."""
        if self.absent:
            return "absent"
        return "FAILED" if not self.success else ("warnings" if self.warnings else "ok")


@dataclass
class LakeResult:
    """Results of every table of the lake for one run date."""

    as_of: str
    tables: dict[str, TableResult]
    seconds: float = 0.0
    lake_notes: list[str] = field(
        default_factory=list
    )  # about the lake as a whole (an unreadable _sources.json)

    @property
    def failures(self) -> list[Outcome]:
        return [o for t in self.tables.values() for o in t.failures]

    @property
    def notes(self) -> list[str]:
        """What fails nothing but a reader should know: the lake's notes, then each absent optional table's one
        line and each table's notes."""
        return [*self.lake_notes, *_notes(self.tables.values())]

    @property
    def critical_failures(self) -> list[Outcome]:
        return [o for t in self.tables.values() for o in t.critical_failures]

    @property
    def warnings(self) -> list[Outcome]:
        return [o for t in self.tables.values() for o in t.warnings]

    @property
    def skipped(self) -> list[Outcome]:
        return [o for t in self.tables.values() for o in t.skipped]

    @property
    def success(self) -> bool:
        """False iff any critical expectation of any table failed."""
        return not self.critical_failures

    def summary(self) -> str:
        return _summary(
            f"validation as of {self.as_of}", list(self.tables.values()), self.seconds, self.lake_notes
        )

    def to_dict(self) -> dict:
        return {
            "as_of": self.as_of,
            "success": self.success,
            "seconds": round(self.seconds, 2),
            "critical_failures": [o.message for o in self.critical_failures],
            "warnings": [o.message for o in self.warnings],
            "notes": self.notes,
            "tables": {name: t.to_dict() for name, t in self.tables.items()},
        }


def _notes(tables: Iterable[TableResult]) -> list[str]:
    return [n for t in tables for n in ([t.absent] if t.absent else []) + t.notes]


def _summary(
    title: str, tables: list[TableResult], seconds: float | None = None, lake_notes: Iterable[str] = ()
) -> str:
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
    notes = [*lake_notes, *_notes(tables)]
    if notes:
        lines.append("notes:")
        lines += [f"  - {n}" for n in notes]
    excluded = [(t.table, t.excluded_rows) for t in tables if t.excluded_rows]
    if excluded:
        lines.append(
            "rows dated on or after as_of that the lake already holds were left out: "
            + ", ".join(f"{name} {n:,}" for name, n in excluded)
        )
    return "\n".join(lines)


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
    md_path = storage.write_text_atomic(
        report_dir / "validation.md", render("gate_report.md.j2", result=lake)
    )
    return json_path, md_path


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


def plain(value: Any) -> Any:
    """A JSON-safe, readable Python value."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
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


def show(value: Any) -> str:
    """``value`` as a message shows it: dates bare, other strings quoted, floats without binary noise."""
    value = plain(value)
    if isinstance(value, str):
        return value if _ISO_DATETIME.match(value) else repr(value)
    if isinstance(value, float):
        return repr(float(f"{value:.10g}"))  # -19.8, not -19.799999999999997
    if isinstance(value, dict):
        return "(" + ", ".join(show(v) for v in value.values()) + ")"
    return str(value)


def masked_example(value: Any, columns: list[str], spec: schema.Table) -> Any:
    """An example failing value made plain, PII masked and integral floats of integer columns shown as ints."""
    pii = set(spec.pii_columns)

    def one(v: Any, col: str) -> Any:
        if col in pii:
            return mask_pii(plain(v), col)
        if isinstance(v, pd.Timestamp | np.datetime64) and not pd.isna(v) and _is_date_column(spec, col):
            return pd.Timestamp(v).date().isoformat()
        v = plain(v)
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


def add_examples(into: list, new: Iterable[Any]) -> None:
    """Append the values of ``new`` not already in ``into`` until it holds :data:`MAX_EXAMPLES`."""
    for v in new:
        if len(into) >= MAX_EXAMPLES:
            return
        if v not in into:
            into.append(v)
