"""Every read and write of the Parquet lake, with atomic file writes.

Layout under a data folder::

    lake/<table>/part-00000.parquet                 unpartitioned tables (customers)
    lake/<table>/month=YYYY-MM/part-00000.parquet   month-partitioned tables (events, balances)
    truth/<table>/...                               the generator's ground truth, same layout
    runs/<run_id>/...                               per-run outputs (reports, lists)

A month-partitioned table can be read for a window of months alone, which is how a run reads what it needs for
one as-of date.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from pipelines.data.schema import TABLES, Table

PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 1, "row_group_size": 1_000_000}
# The month-partitioned source tables (customers is not partitioned by month).
_EVENT_TABLES = tuple(name for name, t in TABLES.items() if t.partition_by)
_MONTH_DIR = re.compile(r"^month=(\d{4}-(\d{2}))$")


class LakeError(RuntimeError):
    """A table or partition that should be in the lake is not there."""


def table_dir(root: Path, table: str) -> Path:
    return Path(root) / table


def partition_dir(root: Path, table: str, month: str | None) -> Path:
    base = table_dir(root, table)
    return base if month is None else base / f"month={month}"


def month_key(ts: pd.Timestamp | str) -> str:
    """``YYYY-MM`` partition key of a date or timestamp."""
    return pd.Timestamp(ts).strftime("%Y-%m")


def list_months(root: Path, table: str) -> list[str]:
    """Sorted partition months present for a month-partitioned table."""
    base = table_dir(root, table)
    if not base.is_dir():
        return []
    return sorted(m.group(1) for p in base.iterdir() if p.is_dir() and (m := _month_dir(p.name)))


def has_table(root: Path, table: str) -> bool:
    """Whether the lake holds ``table``: its folder has at least one Parquet part file (temp and marker files,
    names starting with ``.`` or ``_``, do not count). A source without the table (a retailer's lake without
    ``balances``) has no folder, or an empty one."""
    base = table_dir(root, table)
    return base.is_dir() and any(not _hidden(f.name) for f in base.rglob("*.parquet") if f.is_file())


def _month_dir(name: str) -> re.Match | None:
    """The match of a ``month=YYYY-MM`` folder name with a real month (01-12), else None."""
    m = _MONTH_DIR.match(name)
    return m if m and 1 <= int(m.group(2)) <= 12 else None


def _hidden(name: str) -> bool:
    """Temp files of the atomic writes (``.part-…tmp``) and marker files (``_SUCCESS``) are not data."""
    return name.startswith((".", "_"))


def layout_problems(root: Path, table: str, partitioned: bool) -> list[str]:
    """What in a table's folder would not be read, one line each naming the path: for a month-partitioned table
    a folder that is not ``month=YYYY-MM`` (a real month), Parquet files outside the month folders, a month folder
    without Parquet files or with a folder inside; for any table a file that is not ``.parquet``. Names starting
    with ``.`` or ``_`` (temp and marker files) are ignored."""
    base = table_dir(root, table)
    if not base.is_dir():
        return []
    problems = []
    for entry in sorted(base.iterdir()):
        if _hidden(entry.name):
            continue
        if entry.is_dir():
            if not partitioned:
                continue  # read recursively (table_files)
            if not _month_dir(entry.name):
                n = sum(1 for _ in entry.rglob("*.parquet"))
                problems.append(
                    f"folder {entry} is not a month partition (month=YYYY-MM, a real month); "
                    f"its {n} Parquet file(s) would not be read"
                )
                continue
            files = [f for f in entry.iterdir() if not _hidden(f.name)]
            if not any(f.is_file() and f.suffix == ".parquet" for f in files):
                problems.append(f"month partition {entry} holds no Parquet file")
            for f in files:
                if f.is_dir():
                    problems.append(f"folder {f} inside a month partition would not be read")
                elif f.suffix != ".parquet":
                    problems.append(f"file {f} is not a .parquet file and would not be read")
        elif entry.suffix != ".parquet":
            problems.append(f"file {entry} is not a .parquet file and would not be read")
        elif partitioned:
            problems.append(f"file {entry} lies outside the month partitions and would not be read")
    if not partitioned:
        for f in sorted(base.rglob("*")):
            if f.parent != base and f.is_file() and not _hidden(f.name) and f.suffix != ".parquet":
                problems.append(f"file {f} is not a .parquet file and would not be read")
    return problems


def lake_end(lake: Path, table: str | None = None) -> date:
    """First day after the newest month partition of ``table``: the natural as-of date for the lake. Without
    ``table``: of ``transactions``, or, in a lake without transactions (a source of past campaigns alone), of
    the newest month partition any table holds."""
    if table is None and not list_months(lake, "transactions"):
        months = sorted({m for t in _EVENT_TABLES for m in list_months(lake, t)})
        where = f"no table of {lake} has month partitions ({', '.join(_EVENT_TABLES)})"
    else:
        months = list_months(lake, table or "transactions")
        where = f"{table_dir(lake, table or 'transactions')} has no month partitions"
    if not months:
        raise LakeError(f"cannot tell the lake's as-of date: {where}")
    return (pd.Period(months[-1], freq="M") + 1).start_time.date()


def table_files(root: Path, table: str, months: Iterable[str] | None = None) -> list[Path]:
    """Parquet files of a table, optionally only those of the given partition months."""
    base = table_dir(root, table)
    if not base.is_dir():
        raise LakeError(f"table {table!r} not found: {base} does not exist")
    if months is None:
        files = sorted(base.rglob("*.parquet"))
    else:
        files = []
        for month in sorted(set(months)):
            files.extend(sorted(partition_dir(root, table, month).glob("*.parquet")))
    return files


def write_part(table: pa.Table, root: Path, table_name: str, part: int, month: str | None = None) -> Path:
    """Write one Parquet part atomically (temp file in the same folder, then rename)."""
    folder = partition_dir(root, table_name, month)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"part-{part:05d}.parquet"
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        pq.write_table(table, tmp, **PARQUET_OPTIONS, **_encodings(table.schema))
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return final


def _encodings(schema: pa.Schema) -> dict:
    """Dictionary pages for categories and strings, delta packing for integers and times.

    About twice as fast to write as the defaults and a quarter smaller (measured on 2M transactions).
    """
    delta = [
        f.name
        for f in schema
        if pa.types.is_integer(f.type) and f.type.bit_width >= 32 or pa.types.is_temporal(f.type)
    ]
    dictionary = [f.name for f in schema if pa.types.is_dictionary(f.type) or pa.types.is_string(f.type)]
    return {"use_dictionary": dictionary, "column_encoding": dict.fromkeys(delta, "DELTA_BINARY_PACKED")}


def remove_part(root: Path, table_name: str, part: int) -> int:
    """Delete part ``part`` of a table from every partition (before rewriting it); returns how many files went."""
    base = table_dir(root, table_name)
    files = [*base.glob(f"part-{part:05d}.parquet"), *base.glob(f"*/part-{part:05d}.parquet")]
    for path in files:
        path.unlink()
    return len(files)


def write_partitioned(table: pa.Table, spec: Table, root: Path, part: int) -> list[Path]:
    """Split an Arrow table by its partition month and write one part per month."""
    if spec.partition_by is None:
        return [write_part(table, root, spec.name, part)]
    keys = _month_keys(table.column(spec.partition_by))
    written = []
    for month in sorted(set(keys.to_pylist())):
        mask = pc.equal(keys, month)
        written.append(write_part(table.filter(mask), root, spec.name, part, month))
    return written


def _month_keys(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_date(column.type):
        column = column.cast(pa.timestamp("s"))
    return pc.strftime(column, format="%Y-%m")


def read_part(path: Path) -> pa.Table:
    """One Parquet file as Arrow."""
    return pq.read_table(path)


def read_files(files: list[Path | str], columns: list[str] | None = None) -> pa.Table:
    """Some Parquet files (e.g. those a gate found readable) as one Arrow table."""
    return ds.dataset([str(f) for f in files], format="parquet", partitioning=None).to_table(columns=columns)


def read_file_schema(path: Path) -> pa.Schema:
    """The Arrow schema stored in one Parquet file (no data read)."""
    return pq.read_schema(path)


def count_rows(files: Iterable[Path | str]) -> int:
    """Rows in Parquet files, from their footers (no data read)."""
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def footer_rows(path: Path | str) -> tuple[int | None, str | None]:
    """Rows of one Parquet file from its footer, or (None, why) when it is not a readable Parquet file
    (truncated, corrupt, another format under a ``.parquet`` name)."""
    try:
        with pq.ParquetFile(path) as f:
            return f.metadata.num_rows, None
    except (pa.ArrowException, OSError) as exc:
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else 'unreadable'}"


def read_arrow(
    root: Path, table: str, months: Iterable[str] | None = None, columns: list[str] | None = None
) -> pa.Table:
    """A table (or some of its months and columns) as Arrow.

    The dataset takes the first file's schema (dictionaries are unified across files); a column missing from that
    file is reported as missing rather than filled with nulls, so a dropped column cannot hide.
    """
    files = table_files(root, table, months)
    if not files:
        where = "" if months is None else f" for months {sorted(set(months))}"
        raise LakeError(f"table {table!r} has no data files{where} under {table_dir(root, table)}")
    dataset = ds.dataset([str(f) for f in files], format="parquet", partitioning=None)
    if columns is not None:
        missing = [c for c in columns if c not in dataset.schema.names]
        if missing:
            raise LakeError(f"table {table!r} has no column(s) {missing}; it has {dataset.schema.names}")
    return dataset.to_table(columns=columns)


def read_table(
    root: Path, table: str, months: Iterable[str] | None = None, columns: list[str] | None = None
) -> pd.DataFrame:
    """A table as pandas: dictionary columns become ``category``, dates ``datetime64``, strings ``str``.

    Arrow's buffers are released column by column during the conversion, so the peak stays near one copy.
    """
    arrow = read_arrow(root, table, months, columns)
    return arrow.to_pandas(date_as_object=False, split_blocks=True, self_destruct=True)


@contextmanager
def replacing_dir(final: Path):
    """Yield a fresh temp folder beside ``final``; on success it replaces ``final`` whole, on error it is removed.

    Readers never see a half-written folder: either the old content or the new.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_text_atomic(path: Path, text: str) -> Path:
    """Write a text file atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        _raise_naming(path, exc)
        raise
    return path


def _raise_naming(path: Path, exc: BaseException) -> None:
    """Re-raise an OS error of writing ``path`` as ``OSError(errno, cause, path)``: pyarrow's errors name no
    file and an atomic write's name its temporary file. Returns for any other exception."""
    if isinstance(exc, OSError) and exc.errno is not None:
        raise OSError(exc.errno, os.strerror(exc.errno), str(path)) from exc


def write_json_atomic(path: Path, payload: object) -> Path:
    return write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> object:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_frame(frame: pd.DataFrame, path: Path) -> Path:
    """Write a run's intermediate frame (wide table, scores, targets) as one Parquet file, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp, **PARQUET_OPTIONS)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        _raise_naming(path, exc)
        raise
    return path


def read_frame(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """A frame written by :func:`write_frame`; a clear error when the step that writes it has not run."""
    path = Path(path)
    if not path.is_file():
        raise LakeError(f"{path} does not exist: run the step that writes it first")
    return pq.read_table(path, columns=columns).to_pandas(date_as_object=False)


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    """Write a binary file atomically (a fitted model between two tasks)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return path
