"""Ingest an external source into the lake through its declared mapping (:mod:`pipelines.data.mapping`).

The source is read in chunks (CSV and Parquet files, or a SQL query), each chunk is checked against the mapping's
fault rules (matching rows are quarantined with a count, or the ingest stops) and mapped onto the canonical
columns. Month-partitioned tables are streamed into part files per month under a hidden staging folder inside the
lake; a ``group_by`` table (customers from transactions) keeps one partial aggregate per key, so memory is bounded
by the chunk size and the number of keys, not the source size. Only when every table is read without error are the
months written swapped into the lake (a rename per month partition, the whole folder for an unpartitioned table):
a failure midway leaves the previous lake as it was, and re-ingesting a month replaces it with the same rows.
A month asked for with ``months`` that keeps no row (all quarantined, or gone from the source) is emptied: its old
partition is removed and the report says so; a full ingest replaces the months it writes and leaves the others.
One ingest writes a lake at a time (a lock file in the lake; a second one stops with one line).

A dry run reads a sample, maps it, counts the faults and runs the gates on it, and writes nothing.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.data import schema, storage
from pipelines.data.ingest_chunks import (
    IngestError,
    aggregate,
    combine,
    map_chunk,
    read_chunks,
    referenced_columns,
    source_rows,
    stored_schema,
    to_arrow,
)
from pipelines.data.mapping import SAMPLE_ROWS, SourceMapping
from pipelines.progress import Progress, say_to, track

SOURCES_FILE = "_sources.json"


@dataclass
class TableReport:
    """What one canonical table got from the source."""

    table: str
    mapped: dict[str, str] = field(default_factory=dict)  # column -> where from (source column or expression)
    defaulted: dict[str, Any] = field(default_factory=dict)  # column -> the constant the source lacks
    missing: list[str] = field(default_factory=list)  # nullable columns the mapping leaves out (null)
    rows_read: int = 0
    rows_written: int = 0
    rows_filtered: int = 0  # left out by the table's where:
    quarantined: dict[str, int] = field(default_factory=dict)
    stopped: dict[str, int] = field(default_factory=dict)
    months: list[str] = field(default_factory=list)
    emptied: list[str] = field(default_factory=list)  # months asked for that kept no row: partition removed
    sources: int = (
        1  # the mapping's sources of this table (also:); mapped/defaulted/missing describe the first
    )
    gate: dict[str, Any] | None = None


@dataclass
class IngestReport:
    source: str
    dry_run: bool
    started: str
    tables: dict[str, TableReport]
    seconds: float = 0.0
    report_dir: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        """The readable summary (no source values: defaults are constants of the mapping, never personal data)."""
        kind = "dry run (sample)" if self.dry_run else "ingest"
        out = [f"{kind} of source {self.source!r}: {len(self.tables)} table(s) in {self.seconds:.1f} s"]
        for t in self.tables.values():
            q = ", ".join(f"{k} {v:,}" for k, v in t.quarantined.items()) or "none"
            filtered = f", {t.rows_filtered:,} left out by where:" if t.rows_filtered else ""
            out.append(
                f"  {t.table}: {t.rows_read:,} rows read{filtered}, {t.rows_written:,} written, quarantined: {q}"
            )
            if t.stopped:
                out.append("    STOP: " + ", ".join(f"{k} {v:,} row(s)" for k, v in t.stopped.items()))
            if t.sources > 1:
                out.append(
                    f"    from {t.sources} sources (also:); what is mapped and defaulted below is the first's"
                )
            out.append(f"    mapped: {', '.join(t.mapped) or 'none'}")
            if t.defaulted:
                out.append("    defaulted: " + ", ".join(f"{k}={v!r}" for k, v in t.defaulted.items()))
            if t.missing:
                out.append(f"    left null (not in the source): {', '.join(t.missing)}")
            if t.months:
                out.append(f"    months: {t.months[0]} .. {t.months[-1]} ({len(t.months)})")
            if t.emptied:
                out.append(
                    f"    emptied (asked for, no row kept; old partition removed): {', '.join(t.emptied)}"
                )
            if t.gate is not None:
                verdict = "PASSED" if t.gate["success"] else "FAILED"
                out.append(f"    gates on the sample: {verdict}")
                out += [f"      {m}" for m in t.gate["failures"]]
        out += [f"  note: {n}" for n in self.notes]
        return out


# ---------------------------------------------------------------- the ingest


def describe(m: SourceMapping, name: str) -> TableReport:
    """What maps, what is defaulted and what is left null, from the mapping alone."""
    table, tm = schema.TABLES[name], m.tables[name]
    report = TableReport(name, sources=len(tm.parts))
    for col in table.columns:
        spec = tm.spec(col.name)
        if spec is None:
            report.missing.append(col.name)
        elif spec.constant:  # a personal column's constant is not shown either
            report.defaulted[col.name] = "<personal: masked>" if col.pii else spec.default
        else:
            how = spec.column if spec.column is not None else f"= {spec.expr}"
            report.mapped[col.name] = how + (" (hashed)" if spec.hash else "")
    return report


class _Writer:
    """Part files per (table, month) in a staging folder, appended chunk by chunk."""

    def __init__(self, staging: Path) -> None:
        self.staging = staging
        self.writers: dict[tuple[str, str | None], pq.ParquetWriter] = {}

    def write(self, arrow: pa.Table, table: str, month: str | None) -> None:
        key = (table, month)
        if key not in self.writers:
            folder = storage.partition_dir(self.staging / "lake", table, month)
            folder.mkdir(parents=True, exist_ok=True)
            self.writers[key] = pq.ParquetWriter(
                folder / "part-00000.parquet",
                arrow.schema,
                compression=storage.PARQUET_OPTIONS["compression"],
                compression_level=storage.PARQUET_OPTIONS["compression_level"],
                **storage._encodings(arrow.schema),
            )
        self.writers[key].write_table(arrow)

    def write_quarantine(self, rows: pd.DataFrame, table: str, rule: str) -> None:
        key = (f"quarantine/{table}", rule)
        arrow = pa.Table.from_pandas(rows.astype("string"), preserve_index=False)
        if key not in self.writers:
            folder = self.staging / "quarantine" / table
            folder.mkdir(parents=True, exist_ok=True)
            self.writers[key] = pq.ParquetWriter(folder / f"{rule}.parquet", arrow.schema, compression="zstd")
        self.writers[key].write_table(arrow.cast(self.writers[key].schema))

    def close(self) -> None:
        for w in self.writers.values():
            w.close()
        self.writers.clear()


def _months(frame: pd.DataFrame, table: schema.Table) -> pd.Series:
    return pd.to_datetime(frame[table.partition_by], errors="coerce").dt.strftime("%Y-%m")


def _set_aside(report: TableReport, writer: _Writer | None, rows: pd.DataFrame, table: str, why: str) -> None:
    """Mapped rows the lake has no place for, counted and quarantined under ``why``."""
    if len(rows):
        report.quarantined[why] = report.quarantined.get(why, 0) + len(rows)
        if writer is not None:
            personal = [c.name for c in schema.TABLES[table].columns if c.pii and c.name in rows.columns]
            writer.write_quarantine(rows.drop(columns=personal), table, why)


def _ingest_table(
    m: SourceMapping,
    name: str,
    writer: _Writer | None,
    report: TableReport,
    months: set[str] | None,
    limit: int | None,
    progress: Progress,
) -> pa.Table | None:
    """Stream one table into ``writer``'s staging folder, or (``writer`` None: a dry run) return it as Arrow.

    Mapped rows that cannot be placed (no partition date, no ``group_by`` key) are set aside like a fault."""
    table, whole = schema.TABLES[name], m.tables[name]
    partials: list[pd.DataFrame] = []
    sample: list[pa.Table] = []
    for k, tm in enumerate(whole.parts):  # the table's sources in turn (``also:``), into the same partitions
        # Quarantine files keep the source's own columns to show what was wrong, but never a personal value: the
        # source columns behind hashed ids and personal canonical columns are left out (pmp audit pii scans them).
        personal = {
            tm.spec(c).column
            for c in tm.columns
            if tm.spec(c).column and (tm.spec(c).hash or table.column(c).pii)
        }
        offset = 0  # row_number() counts each source's own rows from 0
        what = f"ingest {m.name}/{name}" + (f" (source {k + 1} of {len(whole.parts)})" if whole.also else "")
        with track(source_rows(m, tm), what, unit="rows", progress=progress) as tracker:
            for chunk in read_chunks(m, tm, referenced_columns(tm), limit):
                frame, caught = map_chunk(m, table, tm, chunk, offset)
                offset += len(chunk)
                report.rows_read += len(chunk)
                report.rows_filtered += len(chunk) - len(frame) - sum(len(c) for c in caught.values())
                for rule in tm.faults:
                    n = len(caught[rule.name])
                    bucket = report.stopped if rule.action == "stop" else report.quarantined
                    bucket[rule.name] = bucket.get(rule.name, 0) + n
                    if n and rule.action == "quarantine" and writer is not None and not report.stopped:
                        writer.write_quarantine(
                            caught[rule.name].drop(columns=list(personal & set(chunk.columns))),
                            name,
                            rule.name,
                        )
                tracker.advance(len(chunk))
                if any(report.stopped.values()):
                    continue  # keep counting the faults; nothing will be written
                if tm.group_by is not None:
                    _set_aside(report, writer, frame[frame[tm.group_by].isna()], name, "no_group_key")
                    partials.append(aggregate(frame, tm, table))
                    if len(partials) > 8:
                        partials = [combine(partials, tm)]
                    continue
                if table.partition_by is not None:
                    keys = _months(frame, table)
                    _set_aside(report, writer, frame[keys.isna()], name, "no_partition_date")
                    if months is not None:
                        frame, keys = frame[keys.isin(months)], keys[keys.isin(months)]
                    for month in sorted(keys.dropna().unique()):
                        part = to_arrow(frame[keys == month], table)
                        report.rows_written += part.num_rows
                        if month not in report.months:
                            report.months.append(month)
                        if writer is None:
                            sample.append(part)
                        else:
                            writer.write(part, name, month)
                else:
                    part = to_arrow(frame, table)
                    report.rows_written += part.num_rows
                    if writer is None:
                        sample.append(part)
                    else:
                        writer.write(part, name, None)
    report.months.sort()
    stops = {k: v for k, v in report.stopped.items() if v}
    if stops:
        rule, n = next(iter(stops.items()))
        raise IngestError(
            f"source {m.name!r}, table {name}: fault rule {rule!r} (action stop) matched {n:,} row(s); nothing written"
        )
    if whole.group_by is not None:
        grouped = combine(partials, whole) if partials else pd.DataFrame(columns=[whole.group_by])
        arrow = to_arrow(grouped, table)
        report.rows_written = arrow.num_rows
        if writer is not None:
            writer.write(arrow, name, None)
            return None
        return arrow
    if writer is None:
        return pa.concat_tables(sample) if sample else stored_schema(table).empty_table()
    return None


def _swap(
    staging: Path,
    data_dir: Path,
    m: SourceMapping,
    reports: dict[str, TableReport],
    wanted: set[str] | None,
) -> None:
    """Move the staged partitions into the lake (rename per month; whole folder for unpartitioned tables) and
    the quarantine files into ``<data>/quarantine/<source>/``. A month of ``wanted`` the table kept no row for is
    emptied (its old partition removed, listed in the report's ``emptied``)."""
    lake = data_dir / "lake"
    for name, report in reports.items():
        table = schema.TABLES[name]
        if table.partition_by is None:
            targets = [(staging / "lake" / name, storage.table_dir(lake, name))]
        else:
            targets = [
                (storage.partition_dir(staging / "lake", name, mo), storage.partition_dir(lake, name, mo))
                for mo in sorted(set(report.months) | (wanted or set()))
            ]
        for src, final in targets:
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            if not src.exists():
                if final.exists():  # asked for, and nothing kept: the month is now empty
                    os.replace(final, old)
                    shutil.rmtree(old, ignore_errors=True)
                    report.emptied.append(final.name.removeprefix("month="))
                continue
            final.parent.mkdir(parents=True, exist_ok=True)
            _fsync_dir(src)
            if final.exists():
                os.replace(final, old)
            os.replace(src, final)
            shutil.rmtree(old, ignore_errors=True)
        q_src = staging / "quarantine" / name
        q_dir = data_dir / "quarantine" / m.name / name
        if q_dir.exists():
            shutil.rmtree(q_dir)
        if q_src.exists():
            q_dir.parent.mkdir(parents=True, exist_ok=True)
            os.replace(q_src, q_dir)


LOCK_FILE = ".ingest.lock"


@contextmanager
def _lake_lock(lake: Path, source: str) -> Iterator[None]:
    """Hold the lake's ingest lock (``<lake>/.ingest.lock``, an advisory ``flock`` the kernel drops when the
    process dies); :class:`IngestError` naming the holder when another ingest has it."""
    path = lake / LOCK_FILE
    with open(path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise IngestError(
                f"{lake} is being written by another ingest ({holder}); wait for it to finish, then rerun "
                f"source {source!r}"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"source {source!r}, pid {os.getpid()}, since {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def _fsync_dir(folder: Path) -> None:
    for f in folder.rglob("*.parquet"):
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _record_sources(lake: Path, m: SourceMapping, reports: dict[str, TableReport], when: str) -> None:
    """``<lake>/_sources.json``: per table, the source it came from, when, and the columns the mapping defaulted
    (the gate report lists them)."""
    path = lake / SOURCES_FILE
    record = storage.read_json(path) if path.is_file() else {}
    tables = record.setdefault("tables", {})
    for name, r in reports.items():
        tables[name] = {
            "source": m.name,
            "mapping": str(m.path) if m.path else None,
            "ingested_at": when,
            "defaulted": {k: v for k, v in r.defaulted.items()},
            "left_null": r.missing,
            "months": r.months,
        }
    storage.write_json_atomic(path, record)


def _sample_gates(
    m: SourceMapping, arrows: dict[str, pa.Table], expectations_dir: Path, report: IngestReport
) -> None:
    """Run each mapped table's suite on its mapped sample (``gates.validate_frame``)."""
    from pipelines.data.gates import validate_frame

    ids = None
    if "customers" in arrows:
        ids = arrows["customers"].column("customer_id").drop_null().to_numpy()
    ends = [
        pd.Timestamp(arrow.column(schema.TABLES[n].partition_by).to_pandas().max())
        for n, arrow in arrows.items()
        if schema.TABLES[n].partition_by and arrow.num_rows
    ]
    ends = [e for e in ends if pd.notna(e)]
    # The run date the sample is checked for: the day after its newest timestamp (today without one).
    as_of = (max(ends).normalize() + pd.Timedelta(days=1)) if ends else pd.Timestamp.today().normalize()
    for name, arrow in arrows.items():
        frame = arrow.to_pandas(date_as_object=False)
        params = {"customer_ids": ids} if ids is not None and name != "customers" else {}
        result = validate_frame(frame, name, as_of, expectations_dir, params)
        report.tables[name].gate = {
            "success": result.success,
            "as_of": as_of.date().isoformat(),
            "failures": [o.message for o in result.failures],
        }


def ingest_source(
    m: SourceMapping,
    data_dir: str | Path,
    *,
    months: list[str] | None = None,
    dry_run: bool = False,
    sample_rows: int = SAMPLE_ROWS,
    expectations_dir: str | Path | None = None,
    progress: Progress = print,
) -> IngestReport:
    """Ingest every table of mapping ``m`` into ``<data_dir>/lake`` (see the module docstring); only the rows
    of ``months`` (``YYYY-MM``) of partitioned tables when given. A dry run maps the first ``sample_rows`` of
    each table, counts faults and runs the gates on them (when ``expectations_dir`` is given), writing nothing.
    Writes ``<data>/runs/ingest__<source>__<date>/report.json`` and ``report.md`` after a real run."""
    t0 = time.perf_counter()
    say = say_to(progress)
    data_dir = Path(data_dir)
    lake = data_dir / "lake"
    started = datetime.now(UTC).replace(microsecond=0).isoformat()
    reports = {name: describe(m, name) for name in m.tables}
    report = IngestReport(m.name, dry_run, started, reports)
    wanted = set(months) if months else None
    if dry_run:
        arrows = {}
        for name in m.tables:
            arrows[name] = _ingest_table(m, name, None, reports[name], wanted, sample_rows, progress)
        if expectations_dir is not None:
            _sample_gates(m, arrows, Path(expectations_dir), report)
        else:
            report.notes.append("gates not run on the sample (no expectations folder given)")
        report.notes.append(f"sample: the first {sample_rows:,} source rows of each table; nothing written")
    else:
        lake.mkdir(parents=True, exist_ok=True)
        with _lake_lock(lake, m.name):
            staging = Path(tempfile.mkdtemp(prefix=f".ingest-{m.name}-", dir=lake))
            writer = _Writer(staging)
            try:
                for name in m.tables:
                    _ingest_table(m, name, writer, reports[name], wanted, None, progress)
                writer.close()
                _swap(staging, data_dir, m, reports, wanted)
                _record_sources(lake, m, reports, started)
            finally:
                writer.close()
                shutil.rmtree(staging, ignore_errors=True)
    report.seconds = time.perf_counter() - t0
    if not dry_run:
        folder = data_dir / "runs" / f"ingest__{m.name}__{started[:10]}"
        storage.write_json_atomic(folder / "report.json", report.to_dict())
        storage.write_text_atomic(
            folder / "report.md", "# Ingest report\n\n```\n" + "\n".join(report.lines()) + "\n```\n"
        )
        report.report_dir = str(folder)
    for line in report.lines():
        say(line)
    return report
