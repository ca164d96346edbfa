"""Reading an external source in chunks and mapping a chunk onto canonical columns (:mod:`pipelines.data.ingest`
streams, stages and swaps; :mod:`pipelines.data.mapping` declares).

A chunk's index is its source row numbers (``row_number()``); the table's ``where:`` keeps rows, its fault rules
catch rows (the first rule that matches takes a row), the rest is mapped column by column and typed as the schema
stores it (every field nullable, so a null the source has reaches the gate rather than failing the write).
"""

from __future__ import annotations

import glob
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.data import schema, storage
from pipelines.data.mapping import ColumnSpec, Expr, FromSpec, SourceMapping, TableMapping, hash_ids

_TRUE = {"true", "t", "yes", "y", "1", "1.0"}
_FALSE = {"false", "f", "no", "n", "0", "0.0"}


class IngestError(RuntimeError):
    """The ingest stopped (a fault rule with action stop, a source that cannot be read); nothing was written."""


# ---------------------------------------------------------------- reading


def source_files(m: SourceMapping, src: FromSpec) -> list[Path]:
    """The files a ``files:`` glob names (relative to the mapping file), sorted; an error when there are none."""
    pattern = Path(src.files).expanduser()
    if not pattern.is_absolute():
        pattern = m.base_dir() / pattern
    files = sorted(Path(p) for p in glob.glob(str(pattern), recursive=True) if Path(p).is_file())
    if not files:
        raise FileNotFoundError(f"source {m.name!r}: no file matches from.files {src.files!r} ({pattern})")
    return files


def read_chunks(
    m: SourceMapping, tm: TableMapping, columns: list[str] | None = None, limit: int | None = None
) -> Iterator[pd.DataFrame]:
    """The source rows of one table mapping, ``from.chunk_rows`` at a time, at most ``limit`` rows in all; only
    ``columns`` when given (those the mapping reads)."""
    src = tm.source
    size = src.chunk_rows if limit is None else min(src.chunk_rows, limit)
    left = limit

    def cut(chunk: pd.DataFrame) -> pd.DataFrame | None:
        nonlocal left
        if left is not None:
            if left <= 0:
                return None
            chunk = chunk.iloc[:left]
            left -= len(chunk)
        return chunk

    if src.sql is not None:
        import sqlalchemy as sa

        engine = sa.create_engine(src.database_url())
        try:
            with engine.connect() as conn:
                conn = conn.execution_options(stream_results=True)
                for chunk in pd.read_sql_query(sa.text(src.sql), conn, chunksize=size):
                    if (chunk := cut(chunk)) is None:
                        return
                    yield chunk
        finally:
            engine.dispose()
        return
    for path in source_files(m, src):
        if src.file_format(path) == "parquet":
            pf = pq.ParquetFile(path)
            cols = [c for c in columns if c in pf.schema_arrow.names] if columns else None
            batches = (b.to_pandas() for b in pf.iter_batches(batch_size=size, columns=cols))
        else:
            o = src.csv
            head = pd.read_csv(path, sep=o.sep, encoding=o.encoding, quotechar=o.quotechar, nrows=0)
            usecols = [c for c in head.columns if c in columns] if columns else None
            batches = pd.read_csv(
                path,
                sep=o.sep,
                encoding=o.encoding,
                decimal=o.decimal,
                quotechar=o.quotechar,
                usecols=usecols,
                chunksize=size,
                low_memory=False,
            )
        for chunk in batches:
            if (chunk := cut(chunk)) is None:
                return
            yield chunk


def source_rows(m: SourceMapping, tm: TableMapping) -> int | None:
    """Rows the source holds when cheap to know (Parquet footers), else None (the progress then counts up)."""
    if tm.source.files is None:
        return None
    files = source_files(m, tm.source)
    if all(tm.source.file_format(f) == "parquet" for f in files):
        return storage.count_rows(files)
    return None


def referenced_columns(tm: TableMapping) -> list[str]:
    """The source columns the mapping reads (column names and names in expressions)."""
    names: set[str] = set()
    if tm.where is not None:
        names |= Expr(tm.where).names
    for name in tm.columns:
        spec = tm.spec(name)
        if spec.column is not None:
            names.add(spec.column)
        if spec.expr is not None:
            names |= Expr(spec.expr).names
    for rule in tm.faults:
        names |= Expr(rule.when).names
    return sorted(names)


# ---------------------------------------------------------------- mapping a chunk


def _cast(s: pd.Series, cast: str, fmt: str | None) -> pd.Series:
    if cast == "int":
        return pd.to_numeric(s, errors="coerce").round().astype("Int64")
    if cast == "float":
        return pd.to_numeric(s, errors="coerce").astype("float64")
    if cast == "bool":
        text = s.astype("string").str.strip().str.lower()
        return pd.Series(
            np.where(text.isin(_TRUE), True, np.where(text.isin(_FALSE), False, None)), index=s.index
        ).astype("boolean")
    if cast == "string":
        return s.astype("string")
    out = pd.to_datetime(s, format=fmt, errors="coerce")
    return out.dt.normalize() if cast == "date" else out


def _column_values(m: SourceMapping, spec: ColumnSpec, chunk: pd.DataFrame, offset: int) -> Any:
    """One canonical column of a chunk, before the conversion to its stored type."""
    if spec.constant:
        return spec.default
    if spec.column is not None:
        if spec.column not in chunk.columns:
            raise KeyError(f"source has no column {spec.column!r}")
        s = chunk[spec.column]
    else:
        s = Expr(spec.expr).evaluate(chunk, m.params, offset)
        if not isinstance(s, pd.Series):
            s = pd.Series([s] * len(chunk), index=chunk.index)
    if spec.cast is not None:
        s = _cast(s, spec.cast, spec.format)
    elif spec.format is not None:
        s = pd.to_datetime(s, format=spec.format, errors="coerce")
    if spec.map:
        keys = {str(k): v for k, v in spec.map.items()}
        text = s.astype("string")
        hit = text.isin(list(keys))
        mapped = text.map(keys)
        s = mapped.where(hit, s if not spec.has_default else None)
    if spec.hash:
        s = hash_ids(s, m.salt())
    if spec.has_default and spec.default is not None:
        s = s.astype(object).where(s.notna(), spec.default)
    if isinstance(s.dtype, pd.DatetimeTZDtype):  # an aware time: the lake keeps the source's local time
        s = s.dt.tz_convert(m.timezone or "UTC").dt.tz_localize(None)
    return s


def _to_type(values: Any, col: schema.Column, n: int) -> pa.Array:
    """Values as the column's stored Arrow type; a category keeps values outside ``allowed`` (the gates say so)."""
    s = values if isinstance(values, pd.Series) else pd.Series([values] * n)
    t = col.type
    if pa.types.is_dictionary(t):
        text = s.astype("string")
        extra = sorted(set(text.dropna().unique()) - set(map(str, col.allowed or ())))
        cats = [*map(str, col.allowed or ()), *extra]
        codes = pd.Categorical(text, categories=cats).codes.astype(np.int8)
        return pa.DictionaryArray.from_arrays(pa.array(codes, mask=codes < 0), pa.array(cats, pa.string()))
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        if isinstance(s.dtype, pd.DatetimeTZDtype):
            s = s.dt.tz_localize(None)
        s = pd.to_datetime(s, errors="coerce")
        if pa.types.is_date(t):
            return pa.array(s.dt.normalize().astype("datetime64[ms]"), from_pandas=True).cast(t)
        return pa.array(s.astype("datetime64[us]"), type=t, from_pandas=True)
    if pa.types.is_boolean(t):
        if s.dtype == object or pd.api.types.is_string_dtype(s.dtype):
            s = _cast(s, "bool", None)
        return pa.array(s.astype("boolean"), type=t, from_pandas=True)
    if pa.types.is_integer(t):
        return pa.array(pd.to_numeric(s, errors="coerce").round().astype("Int64"), type=t, from_pandas=True)
    if pa.types.is_floating(t):
        return pa.array(pd.to_numeric(s, errors="coerce").astype("float64"), type=t, from_pandas=True)
    return pa.array(s.astype("string"), type=t, from_pandas=True)


def map_chunk(
    m: SourceMapping, table: schema.Table, tm: TableMapping, chunk: pd.DataFrame, offset: int
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """A source chunk as canonical columns (pandas, before typing) and the rows each fault rule caught (source
    columns; a rule takes only rows no earlier rule took). ``offset`` is the chunk's first row number."""
    chunk = chunk.set_axis(pd.RangeIndex(offset, offset + len(chunk)))  # row_number() is the index
    if tm.where is not None:
        try:
            keep = Expr(tm.where).evaluate(chunk, m.params, offset)
        except Exception as exc:  # noqa: BLE001 - named by field
            raise IngestError(f"tables.{table.name}.where: {exc}") from None
        chunk = chunk[pd.Series(keep, index=chunk.index).fillna(False).astype(bool)]
    caught: dict[str, pd.DataFrame] = {}
    taken = pd.Series(False, index=chunk.index)
    for i, rule in enumerate(tm.faults):
        try:
            mask = Expr(rule.when).evaluate(chunk, m.params, offset)
        except Exception as exc:  # noqa: BLE001 - any evaluation error, named by field
            raise IngestError(f"tables.{table.name}.faults.{i}.when ({rule.name}): {exc}") from None
        mask = pd.Series(mask, index=chunk.index).fillna(False).astype(bool) & ~taken
        taken |= mask
        caught[rule.name] = chunk[mask]
    kept = chunk[~taken]
    out = {}
    for col in table.columns:
        spec = tm.spec(col.name)
        if spec is None:
            continue
        try:
            out[col.name] = _column_values(m, spec, kept, offset)
        except Exception as exc:  # noqa: BLE001 - named by field
            raise IngestError(f"tables.{table.name}.columns.{col.name}: {exc}") from None
    frame = pd.DataFrame(
        {
            k: (v if isinstance(v, pd.Series) else pd.Series([v] * len(kept), index=kept.index))
            for k, v in out.items()
        },
        index=kept.index,
    )
    return frame, caught


def to_arrow(frame: pd.DataFrame, table: schema.Table) -> pa.Table:
    """Canonical columns as an Arrow table of the schema (unmapped nullable columns null)."""
    n = len(frame)
    arrays = [
        _to_type(frame[c.name], c, n) if c.name in frame.columns else pa.nulls(n, c.type)
        for c in table.columns
    ]
    return pa.Table.from_arrays(arrays, schema=stored_schema(table))


def stored_schema(table: schema.Table) -> pa.Schema:
    """The schema's types with every field nullable: a null the source has in a required column reaches the
    lake and its gate (which names it) instead of failing the write."""
    return pa.schema([f.with_nullable(True) for f in table.arrow_schema])


def aggregate(frame: pd.DataFrame, tm: TableMapping, table: schema.Table) -> pd.DataFrame:
    key = tm.group_by
    aggs = {}
    for c in frame.columns:
        if c == key:
            continue
        spec = tm.spec(c)
        aggs[c] = (spec.agg if spec and spec.agg else "first") if not (spec and spec.constant) else "first"
    frame = frame[frame[key].notna()]
    return frame.groupby(key, sort=True, dropna=True).agg(aggs).reset_index()


def combine(parts: list[pd.DataFrame], tm: TableMapping) -> pd.DataFrame:
    """Partial aggregates of several chunks combined (count partials are summed)."""
    frame = pd.concat(parts, ignore_index=True)
    aggs = {}
    for c in frame.columns:
        if c == tm.group_by:
            continue
        spec = tm.spec(c)
        agg = spec.agg if spec and spec.agg and not spec.constant else "first"
        aggs[c] = "sum" if agg == "count" else agg
    return frame.groupby(tm.group_by, sort=True).agg(aggs).reset_index()
