"""Declared source mappings: a YAML file per external source (``sources/<name>.yaml``) that maps its tables onto
the canonical tables of :mod:`pipelines.data.schema`, validated on load, and the safe expression language its
``expr`` and ``when`` fields are written in.

A mapping is data, not code: expressions are parsed with :mod:`ast` and only names (source columns or the
mapping's ``params``), constants, arithmetic, comparisons, ``and``/``or``/``not`` and the functions of
:data:`FUNCTIONS` are allowed; they are evaluated vectorised on a pandas chunk. Every error names the mapping file
and the field (``tables.customers.columns.gender.map``). ``docs/bring-your-own-data.md`` describes the format.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import operator
import os
import re
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipelines.data import schema

SAMPLE_ROWS = 50_000


class MappingError(ValueError):
    """A mapping file that cannot be used; the message names the file and the field."""


# ---------------------------------------------------------------- expressions


class ExprError(ValueError):
    """An expression that is not allowed or cannot be evaluated; the message names the bad token."""


def _s(x: Any, index: pd.Index) -> pd.Series:
    return x if isinstance(x, pd.Series) else pd.Series([x] * len(index), index=index)


def _text(x: Any) -> pd.Series:
    return x.astype("string") if isinstance(x, pd.Series) else x


def _row_number(ctx: _Context) -> pd.Series:
    """0-based position of each row in the source (the chunk's index is its row numbers, see ``ingest``)."""
    if isinstance(ctx.frame.index, pd.RangeIndex) or pd.api.types.is_integer_dtype(ctx.frame.index):
        return pd.Series(ctx.frame.index.to_numpy(dtype=np.int64), index=ctx.frame.index)
    return pd.Series(
        np.arange(ctx.offset, ctx.offset + len(ctx.frame), dtype=np.int64), index=ctx.frame.index
    )


def _where(ctx: _Context, cond: Any, a: Any, b: Any) -> pd.Series:
    cond = _s(cond, ctx.frame.index).fillna(False).astype(bool)
    return _s(a, ctx.frame.index).where(cond, _s(b, ctx.frame.index))


def _to_datetime(ctx: _Context, x: Any, fmt: str | None = None) -> pd.Series:
    return pd.to_datetime(_s(x, ctx.frame.index), format=fmt, errors="coerce")


def _make_date(ctx: _Context, year: Any, month: Any, day: Any = 1) -> pd.Series:
    idx = ctx.frame.index
    month = _s(month, idx)
    if not pd.api.types.is_numeric_dtype(month):  # month names or abbreviations (may, jun, ...)
        names = {
            m.lower(): i
            for i, m in enumerate(pd.date_range("2000-01-01", periods=12, freq="MS").strftime("%b"), 1)
        }
        month = month.astype("string").str.lower().str[:3].map(names)
    parts = pd.DataFrame({"year": _s(year, idx), "month": month, "day": _s(day, idx)})
    return pd.to_datetime(parts, errors="coerce")


# name -> (function of (ctx, *args), min args, max args)
FUNCTIONS: dict[str, tuple[Callable[..., Any], int, int]] = {
    "isnull": (lambda ctx, x: _s(x, ctx.frame.index).isna(), 1, 1),
    "notnull": (lambda ctx, x: _s(x, ctx.frame.index).notna(), 1, 1),
    "startswith": (lambda ctx, x, p: _text(x).str.startswith(p).fillna(False).astype(bool), 2, 2),
    "endswith": (lambda ctx, x, p: _text(x).str.endswith(p).fillna(False).astype(bool), 2, 2),
    "contains": (lambda ctx, x, p: _text(x).str.contains(p, regex=False).fillna(False).astype(bool), 2, 2),
    "lower": (lambda ctx, x: _text(x).str.lower(), 1, 1),
    "upper": (lambda ctx, x: _text(x).str.upper(), 1, 1),
    "strip": (lambda ctx, x: _text(x).str.strip(), 1, 1),
    "coalesce": (lambda ctx, x, *ys: _coalesce(ctx, x, *ys), 2, 9),
    "where": (_where, 3, 3),
    "row_number": (lambda ctx: _row_number(ctx), 0, 0),
    "to_datetime": (_to_datetime, 1, 2),
    "make_date": (_make_date, 2, 3),
    "year": (lambda ctx, x: pd.to_datetime(_s(x, ctx.frame.index), errors="coerce").dt.year, 1, 1),
    "month": (lambda ctx, x: pd.to_datetime(_s(x, ctx.frame.index), errors="coerce").dt.month, 1, 1),
    "abs": (lambda ctx, x: abs(x), 1, 1),
    "round": (lambda ctx, x, n=0: x.round(n) if isinstance(x, pd.Series) else round(x, n), 1, 2),
    "col": (lambda ctx, name: ctx.column(name), 1, 1),
}


def _coalesce(ctx: _Context, x: Any, *ys: Any) -> pd.Series:
    out = _s(x, ctx.frame.index)
    for y in ys:
        out = out.where(out.notna(), _s(y, ctx.frame.index))
    return out


_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_CMPOPS = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


class _Context:
    def __init__(self, frame: pd.DataFrame, params: dict[str, Any], offset: int) -> None:
        self.frame, self.params, self.offset = frame, params, offset

    def column(self, name: str, quoted: bool = False) -> Any:
        if name in self.frame.columns and name in self.params and not quoted:
            raise ExprError(
                f"name {name!r} is both a source column and a param: rename the param, or col({name!r})"
            )
        if name in self.frame.columns:
            return self.frame[name]
        if name in self.params:
            return self.params[name]
        near = difflib.get_close_matches(name, [*map(str, self.frame.columns), *self.params], n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ExprError(f"unknown name {name!r}: not a source column nor a param{hint}")


class Expr:
    """A parsed, checked expression; :meth:`evaluate` runs it on a chunk. Refuses anything but the allowed nodes."""

    def __init__(self, text: str) -> None:
        self.text = str(text)
        try:
            self.tree = ast.parse(self.text.strip(), mode="eval")
        except SyntaxError as exc:
            raise ExprError(
                f"not a valid expression ({exc.msg} at column {exc.offset}): {self.text!r}"
            ) from None
        self.names: set[str] = set()
        self._check(self.tree.body)

    def _check(self, node: ast.AST) -> None:
        if isinstance(node, ast.Name):
            self.names.add(node.id)
        elif isinstance(node, ast.Constant):
            if not isinstance(node.value, int | float | str | bool | type(None)):
                raise ExprError(f"constant {node.value!r} is not allowed")
        elif isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            self._check(node.left), self._check(node.right)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd | ast.Not):
            self._check(node.operand)
        elif isinstance(node, ast.BoolOp):
            for v in node.values:
                self._check(v)
        elif isinstance(node, ast.Compare):
            self._check(node.left)
            for op, right in zip(node.ops, node.comparators, strict=True):
                if isinstance(op, ast.In | ast.NotIn):
                    if not isinstance(right, ast.List | ast.Tuple) or not all(
                        isinstance(e, ast.Constant) for e in right.elts
                    ):
                        raise ExprError("'in' takes a list of constants, e.g. x in ['a', 'b']")
                elif type(op) not in _CMPOPS:
                    raise ExprError(f"operator {type(op).__name__} is not allowed")
                else:
                    self._check(right)
        elif isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else None
            if name not in FUNCTIONS or node.keywords:
                token = name or ast.unparse(node.func)
                raise ExprError(
                    f"call of {token!r} is not allowed; functions: {', '.join(sorted(FUNCTIONS))}"
                    + (" (no keyword arguments)" if node.keywords and name in FUNCTIONS else "")
                )
            _, lo, hi = FUNCTIONS[name]
            if not lo <= len(node.args) <= hi:
                raise ExprError(f"{name}() takes {lo}..{hi} argument(s), got {len(node.args)}")
            if name == "col":
                if not (isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                    raise ExprError("col() takes a column name in quotes, e.g. col('emp.var.rate')")
                self.names.add(node.args[0].value)
                return
            for a in node.args:
                self._check(a)
        else:
            token = ast.unparse(node) if hasattr(ast, "unparse") else type(node).__name__
            raise ExprError(f"{type(node).__name__} {token!r} is not allowed in an expression")

    def evaluate(self, frame: pd.DataFrame, params: dict[str, Any] | None = None, offset: int = 0) -> Any:
        """The expression's value on ``frame`` (a Series, or a constant); ``offset`` is row_number() of row 0."""
        ctx = _Context(frame, params or {}, offset)
        return self._eval(self.tree.body, ctx)

    def _eval(self, node: ast.AST, ctx: _Context) -> Any:
        if isinstance(node, ast.Name):
            return ctx.column(node.id)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.BinOp):
            return _BINOPS[type(node.op)](self._eval(node.left, ctx), self._eval(node.right, ctx))
        if isinstance(node, ast.UnaryOp):
            v = self._eval(node.operand, ctx)
            if isinstance(node.op, ast.Not):
                return ~_s(v, ctx.frame.index).fillna(False).astype(bool)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.BoolOp):
            vals = [_s(self._eval(v, ctx), ctx.frame.index).fillna(False).astype(bool) for v in node.values]
            out = vals[0]
            for v in vals[1:]:
                out = (out & v) if isinstance(node.op, ast.And) else (out | v)
            return out
        if isinstance(node, ast.Compare):
            left = self._eval(node.left, ctx)
            out = None
            for op, right in zip(node.ops, node.comparators, strict=True):
                if isinstance(op, ast.In | ast.NotIn):
                    values = [e.value for e in right.elts]
                    r = _s(left, ctx.frame.index).isin(values)
                    r = ~r if isinstance(op, ast.NotIn) else r
                    rv = left
                else:
                    rv = self._eval(right, ctx)
                    r = _s(_CMPOPS[type(op)](left, rv), ctx.frame.index).fillna(False).astype(bool)
                out = r if out is None else out & r
                left = rv
            return out
        if isinstance(node, ast.Call):
            fn = FUNCTIONS[node.func.id][0]
            if node.func.id == "col":
                return ctx.column(node.args[0].value, quoted=True)
            return fn(ctx, *(self._eval(a, ctx) for a in node.args))
        raise ExprError(f"{type(node).__name__} is not allowed")  # _check refused it already


# ---------------------------------------------------------------- hashing


def hash_ids(values: pd.Series, salt: str) -> pd.Series:
    """A personal identifier (an e-mail, a phone) as a stable positive int64 id: keyed BLAKE2b of the trimmed,
    lower-cased text, so the raw value never reaches the lake and the same person gets the same id in every
    ingest with the same salt. Nulls stay null."""
    key = salt.encode()[:64]

    def one(v: Any) -> Any:
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
            return pd.NA
        digest = hashlib.blake2b(str(v).strip().lower().encode(), digest_size=8, key=key).digest()
        return int.from_bytes(digest, "big") & 0x7FFF_FFFF_FFFF_FFFF

    return pd.Series([one(v) for v in values], index=values.index, dtype="Int64")


# ---------------------------------------------------------------- the mapping model

CASTS = ("int", "float", "bool", "string", "datetime", "date")
AGGS = ("first", "min", "max", "sum", "count")
_UNSET = object()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class CsvOptions(_Strict):
    sep: str = ","
    encoding: str = "utf-8"
    decimal: str = "."
    quotechar: str = '"'


class FromSpec(_Strict):
    """Where a table's rows come from: files (``files`` glob, CSV or Parquet, ``.gz`` read as gzip) or a SQL query
    on a SQLAlchemy URL (``${VAR}`` is replaced by the environment variable)."""

    files: str | None = None
    format: Literal["csv", "parquet"] | None = None
    csv: CsvOptions = CsvOptions()
    sql: str | None = None
    url: str | None = None
    chunk_rows: int = Field(100_000, ge=1)

    @model_validator(mode="after")
    def _one_kind(self) -> FromSpec:
        if (self.files is None) == (self.sql is None):
            raise ValueError("give either files: <glob> or sql: <query> (with url:)")
        if self.sql is not None and not self.url:
            raise ValueError("a sql: source needs url: <SQLAlchemy URL>")
        return self

    def file_format(self, path: Path) -> str:
        if self.format:
            return self.format
        name = path.name.lower().removesuffix(".gz")
        return "parquet" if name.endswith((".parquet", ".pq")) else "csv"

    def database_url(self) -> str:
        def env(m: re.Match) -> str:
            if m.group(1) not in os.environ:
                raise MappingError(
                    f"from.url names ${{{m.group(1)}}} but that environment variable is not set"
                )
            return os.environ[m.group(1)]

        return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", env, self.url or "")


class ColumnSpec(_Strict):
    """How one canonical column is made: from a source ``column`` or an ``expr``, then ``cast`` (with ``format``
    for datetimes), ``map`` of values, ``default`` for nulls and unmapped values, ``hash`` of a personal id, and
    ``agg`` when the table has ``group_by``. With only ``default``, the column is that constant."""

    column: str | None = None
    expr: str | None = None
    cast: Literal[CASTS] | None = None  # type: ignore[valid-type]
    format: str | None = None
    map: dict[Any, Any] | None = None
    default: Any = None
    hash: bool = False
    agg: Literal[AGGS] | None = None  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _source(self) -> ColumnSpec:
        if self.column is not None and self.expr is not None:
            raise ValueError("give column: or expr:, not both")
        if self.column is None and self.expr is None and "default" not in self.model_fields_set:
            raise ValueError("give column:, expr: or default:")
        return self

    @property
    def has_default(self) -> bool:
        return "default" in self.model_fields_set

    @property
    def constant(self) -> bool:
        """Only a default: the column is defaulted, the source lacks it."""
        return self.column is None and self.expr is None


class FaultRule(_Strict):
    """Rows matching ``when`` (an expression on source columns) are a known fault of the source: ``quarantine``
    writes them aside with a count, ``stop`` fails the ingest naming the rule."""

    name: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    when: str
    action: Literal["quarantine", "stop"] = "quarantine"


class TableMapping(_Strict):
    source: FromSpec = Field(alias="from")
    where: str | None = (
        None  # keep only the source rows where this expression holds (others counted as filtered)
    )
    group_by: str | None = None
    columns: dict[str, str | ColumnSpec]
    faults: list[FaultRule] = []
    # More sources of the same canonical table (contacts from the SMS gateway and from the call centre), each with
    # its own from, where, columns and faults, appended after this one (not with group_by).
    also: list[TableMapping] = []

    def spec(self, name: str) -> ColumnSpec | None:
        c = self.columns.get(name)
        return ColumnSpec(column=c) if isinstance(c, str) else c

    @property
    def parts(self) -> list[TableMapping]:
        """This source and its ``also`` sources, in the order they are read."""
        return [self, *self.also]


WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
SCHEDULE_PRESETS = ("@once", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly", "@annually")


class ClosedPeriod(_Strict):
    """Consecutive closed days, both ends included (``{from: 2010-12-24, to: 2011-01-03}``)."""

    first: date = Field(alias="from")
    last: date = Field(alias="to")

    @model_validator(mode="after")
    def _ordered(self) -> ClosedPeriod:
        if self.last < self.first:
            raise ValueError(f"to ({self.last}) is before from ({self.first})")
        return self


class Calendar(_Strict):
    """The source's trading calendar: the days it has no rows by design (weekdays it is closed, holidays). The
    gates' "no day without rows" check does not count them as gaps (``pipelines.data.lake_checks``)."""

    closed_weekdays: list[Literal[WEEKDAYS]] = []  # type: ignore[valid-type]
    closed_dates: list[date | ClosedPeriod] = []


class SourceMapping(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    description: str = ""
    timezone: str | None = None
    schedule: str | None = None  # when its ingest DAG runs: an Airflow preset or a cron line; None: by hand
    calendar: Calendar | None = None
    id_salt: str | None = None
    params: dict[str, Any] = {}
    tables: dict[str, TableMapping]
    path: Path | None = Field(None, exclude=True)

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        """A preset or a 5-field cron line that fires, as croniter (Airflow's cron parser) reads it."""
        from croniter import CroniterBadDateError, croniter

        if value is None or value in SCHEDULE_PRESETS:
            return value
        if value.startswith("@") or len(value.split()) != 5 or not croniter.is_valid(value):
            raise ValueError(f"{value!r} is neither a preset ({', '.join(SCHEDULE_PRESETS)}) nor a cron line")
        try:
            croniter(value, datetime(2000, 1, 1)).get_next()
        except CroniterBadDateError:
            raise ValueError(f"cron line {value!r} never fires") from None
        return value

    def base_dir(self) -> Path:
        return self.path.parent if self.path else Path.cwd()

    def salt(self) -> str:
        """The hashing key: ``PM_ID_SALT`` if set, else the mapping's ``id_salt``, else its name."""
        return os.environ.get("PM_ID_SALT") or self.id_salt or self.name


_UNION_TAGS = ("str", "ColumnSpec", "date", "ClosedPeriod")  # pydantic's union branch names


def _field(loc: tuple) -> str:
    """A pydantic error location as the mapping's field path (union branch tags left out)."""
    return ".".join(str(p) for p in loc if not str(p).startswith("function-") and p not in _UNION_TAGS)


def _suggest(name: str, known: list[str]) -> str:
    near = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {near[0]!r}?)" if near else f"; known: {', '.join(known)}"


def _check_semantics(m: SourceMapping) -> list[str]:
    """The checks that need the schema: tables, columns, categories, expressions, group_by and agg."""
    problems: list[str] = []
    if m.timezone:
        try:
            pd.Timestamp("2020-01-01", tz=m.timezone)
        except Exception:  # noqa: BLE001 - any unknown zone
            problems.append(f"timezone: unknown time zone {m.timezone!r} (e.g. Europe/London)")
    for tname, tm in m.tables.items():
        where = f"tables.{tname}"
        if tname not in schema.TABLES:
            problems.append(
                f"{where}: unknown canonical table {tname!r}{_suggest(tname, list(schema.TABLES))}"
            )
            continue
        for i, part in enumerate(tm.parts):
            problems += _check_table(schema.TABLES[tname], part, f"{where}.also.{i - 1}" if i else where)
        if tm.also and (tm.group_by or any(part.group_by or part.also for part in tm.also)):
            problems.append(
                f"{where}.also: more sources of a table cannot use group_by nor have also: of their own"
            )
        names = [r.name for part in tm.parts for r in part.faults]
        if tm.also and len(set(names)) != len(names):
            problems.append(
                f"{where}.also: fault rule names must be unique across the table's sources, got {names}"
            )
    return problems


def _check_table(table: schema.Table, tm: TableMapping, where: str) -> list[str]:
    """One source of a canonical table: its columns, categories, expressions, group_by and faults."""
    tname, problems = table.name, []
    for cname in tm.columns:
        if cname not in table.column_names:
            problems.append(
                f"{where}.columns.{cname}: {tname} has no column {cname!r}{_suggest(cname, table.column_names)}"
            )
    for col in table.columns:
        spec = tm.spec(col.name)
        field = f"{where}.columns.{col.name}"
        if spec is None:
            if not (col.nullable or col.pii):  # personal columns may be absent (the gates warn)
                allowed = f" (allowed: {', '.join(map(str, col.allowed))})" if col.allowed else ""
                problems.append(f"{field}: required column not mapped; map it or give a default{allowed}")
            continue
        problems += _check_column(spec, col, field, tm.group_by is not None)
    if tm.group_by is not None and tm.group_by not in table.column_names:
        problems.append(f"{where}.group_by: {tm.group_by!r} is not a column of {tname}")
    if tm.where is not None:
        try:
            Expr(tm.where)
        except ExprError as exc:
            problems.append(f"{where}.where: {exc}")
    for i, rule in enumerate(tm.faults):
        try:
            Expr(rule.when)
        except ExprError as exc:
            problems.append(f"{where}.faults.{i}.when ({rule.name}): {exc}")
    names = [r.name for r in tm.faults]
    if len(set(names)) != len(names):
        problems.append(f"{where}.faults: rule names must be unique, got {names}")
    return problems


def _check_column(spec: ColumnSpec, col: schema.Column, field: str, grouped: bool) -> list[str]:
    problems = []
    if spec.expr is not None:
        try:
            Expr(spec.expr)
        except ExprError as exc:
            problems.append(f"{field}.expr: {exc}")
    if col.allowed is not None:
        allowed = set(col.allowed)
        if spec.map:
            bad = sorted({str(v) for v in spec.map.values() if v is not None and v not in allowed})
            if bad:
                problems.append(
                    f"{field}.map: value(s) {', '.join(bad)} not allowed; allowed: {', '.join(map(str, col.allowed))}"
                )
        if spec.has_default and spec.default is not None and spec.default not in allowed:
            problems.append(
                f"{field}.default: {spec.default!r} not allowed; allowed: {', '.join(map(str, col.allowed))}"
            )
    if spec.has_default and spec.default is None and not col.nullable:
        problems.append(f"{field}.default: null for a column that cannot be null")
    if spec.hash and not pa.types.is_integer(col.type):
        problems.append(f"{field}.hash: hashing makes an integer id; {col.name} is {col.type}")
    if spec.agg is not None and not grouped:
        problems.append(f"{field}.agg: only with the table's group_by")
    return problems


def parse_mapping(data: Any, path: Path | None = None) -> SourceMapping:
    """A mapping from its parsed YAML; :class:`MappingError` lists every problem, one per line, field named."""
    where = str(path) if path else "mapping"
    if not isinstance(data, dict):
        raise MappingError(f"{where}: expected a mapping (name:, tables:), got {type(data).__name__}")
    try:
        m = SourceMapping(**data, path=path)
    except ValidationError as exc:
        lines = []
        for e in exc.errors():
            if "str" in e["loc"] and e["type"] == "string_type":
                continue  # the other branch of "column name or column spec" says what is wrong
            msg = str(e["msg"]).removeprefix("Value error, ")
            if e["type"] == "extra_forbidden":
                msg = "unknown field"
            lines.append(f"{_field(e['loc'])}: {msg}")
        raise MappingError(f"{where}: " + "; ".join(dict.fromkeys(lines))) from None
    problems = _check_semantics(m)
    if problems:
        raise MappingError(f"{where}: " + "; ".join(problems))
    return m


def load_mapping(name_or_path: str | Path, sources_dir: Path | None = None) -> SourceMapping:
    """Load and validate ``sources/<name>.yaml`` (or a mapping file's path)."""
    path = Path(name_or_path)
    if not path.suffix and sources_dir is not None:
        path = Path(sources_dir) / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in Path(sources_dir).glob("*.yaml")) if sources_dir else []
        raise FileNotFoundError(
            f"no source mapping {str(name_or_path)!r} ({path} does not exist)"
            + (f"; known: {', '.join(known)}" if known else "")
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise MappingError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    return parse_mapping(data, path.resolve())
