"""The campaign database: scored target lists, the exclusion audit and one row per campaign run.

Campaign staff pull lists from here, so a run is written all-or-nothing: ``write_run`` replaces everything a run
id stored before in ONE transaction, and any failure leaves the previous state exactly as it was. The same code
runs on SQLite (the default, ``Settings.database_url``) and PostgreSQL (production); on PostgreSQL the rows are
bulk-loaded with binary ``COPY`` into temporary staging tables first.

Tables::

    campaign_runs        run_id PK, campaign, logical_date, model, status, counts, SRM p-value, timestamps (UTC)
    campaign_targets     (run_id, customer_id) PK, score, decile (1 = best), rank (1 = best), target_group,
                         channel, reason_1..3
    campaign_exclusions  (run_id, customer_id) PK, exclusion_reason, detail

No personal data is stored: customers appear by ``customer_id`` only, and ``write_run`` writes the columns above
and nothing else from the frames it is given.

Importing this module connects to nothing and creates nothing; ``make_engine`` and ``ensure_schema`` do.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Double,
    Engine,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    literal,
    make_url,
    select,
)
from sqlalchemy.engine import Connection
from sqlalchemy.types import TypeDecorator

from pipelines.data.schema import CONTACT_GROUPS

RUN_STATUSES = ("succeeded", "failed")
TARGET_GROUPS = CONTACT_GROUPS  # ("treatment", "holdout")
N_DECILES = 10
SQLITE_BUSY_TIMEOUT_S = 30.0
_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1


class CampaignDBError(RuntimeError):
    """The campaign database cannot do what was asked."""


class RunNotFoundError(CampaignDBError, LookupError):
    """A run id (or the latest succeeded run of a campaign) is not in the database."""


class FrameValidationError(ValueError):
    """A frame (or run record) handed to ``write_run`` breaks a rule; the message names the table and column."""


class _UTCDateTime(TypeDecorator):
    """A timezone-aware UTC timestamp on every backend.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so the UTC wall time is stored and UTC is
    re-attached on the way out. Naive datetimes are refused rather than guessed.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"timestamps must be timezone-aware, got naive {value!r}")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "pk": "pk_%(table_name)s",
    }
)

campaign_runs = Table(
    "campaign_runs",
    metadata,
    Column("run_id", String, primary_key=True),
    Column("campaign", String, nullable=False),
    Column("logical_date", Date, nullable=False),
    Column("model_name", String),
    Column("model_version", String),
    Column("status", String, nullable=False),
    Column("n_scored", BigInteger),
    Column("n_eligible", BigInteger),
    Column("n_excluded", BigInteger),
    Column("n_selected", BigInteger),
    Column("n_treatment", BigInteger),
    Column("n_holdout", BigInteger),
    Column("srm_p_value", Double),
    Column("holdout_fraction", Double),
    Column("created_at", _UTCDateTime, nullable=False),
    Column("finished_at", _UTCDateTime),
    Column("details", Text),
    CheckConstraint(f"status IN {RUN_STATUSES!r}", name="status"),
    Index(None, "campaign", "logical_date"),
)

# Design notes for the two row tables, from bench/bench_db.py (1M rows):
# - The primary key (run_id, customer_id) is THE index on run_id: every read and every delete is by run, and a
#   second index such as (run_id, rank) tripled SQLite's write time (rows arrive in customer_id order, so it is
#   filled at random) and doubled PostgreSQL's. Reads sort by rank instead.
# - No foreign key to campaign_runs: write_run writes a run's three parts in one transaction, which is what keeps
#   them consistent, and the per-row key check cost PostgreSQL about 40 % of the write.
# - On SQLite the rows are stored in key order (WITHOUT ROWID): one b-tree instead of two, a run's rows are
#   contiguous, and the file is 40 % smaller.
campaign_targets = Table(
    "campaign_targets",
    metadata,
    Column("run_id", String, nullable=False),
    Column("customer_id", BigInteger, nullable=False, autoincrement=False),
    Column("score", Double, nullable=False),
    Column("decile", SmallInteger, nullable=False),
    Column("rank", Integer, nullable=False),
    Column("target_group", String, nullable=False),
    Column("channel", String),
    Column("reason_1", String),
    Column("reason_2", String),
    Column("reason_3", String),
    Column("rfm_segment", String),
    Column("value_tier", String),
    Column("lifecycle_stage", String),
    Column("persona", String),
    PrimaryKeyConstraint("run_id", "customer_id"),
    CheckConstraint(f"target_group IN {TARGET_GROUPS!r}", name="target_group"),
    CheckConstraint(f"decile BETWEEN 1 AND {N_DECILES}", name="decile"),
    CheckConstraint("rank >= 1", name="rank"),
    sqlite_with_rowid=False,
)

campaign_exclusions = Table(
    "campaign_exclusions",
    metadata,
    Column("run_id", String, nullable=False),
    Column("customer_id", BigInteger, nullable=False, autoincrement=False),
    Column("exclusion_reason", String, nullable=False),
    Column("detail", String),
    PrimaryKeyConstraint("run_id", "customer_id"),
    sqlite_with_rowid=False,
)

SEGMENT_COLUMNS = ("rfm_segment", "value_tier", "lifecycle_stage", "persona")
# The segment mix of a run: per segment column (dimension) and value, the selected customers by group.
campaign_segments = Table(
    "campaign_segments",
    metadata,
    Column("run_id", String, nullable=False),
    Column("dimension", String, nullable=False),
    Column("segment", String, nullable=False),
    Column("customers", BigInteger, nullable=False),
    Column("treatment", BigInteger, nullable=False),
    Column("holdout", BigInteger, nullable=False),
    Column("share", Double, nullable=False),
    Column("avg_score", Double),
    Column("avg_value", Double),
    PrimaryKeyConstraint("run_id", "dimension", "segment"),
)
# The readout of a campaign (one row per campaign id, replaced when read out again).
campaign_results = Table(
    "campaign_results",
    metadata,
    Column("campaign_id", String, primary_key=True),
    Column("response_window_days", Integer, nullable=False),
    Column("treated_n", BigInteger, nullable=False),
    Column("treated_conv", BigInteger, nullable=False),
    Column("control_n", BigInteger, nullable=False),
    Column("control_conv", BigInteger, nullable=False),
    Column("treated_rate", Double, nullable=False),
    Column("control_rate", Double, nullable=False),
    Column("lift_abs", Double, nullable=False),
    Column("lift_ci_low", Double, nullable=False),
    Column("lift_ci_high", Double, nullable=False),
    Column("lift_rel", Double),
    Column("p_value", Double, nullable=False),
    Column("incremental_responses", Double, nullable=False),
    Column("srm_p_value", Double),
    Column("trustworthy", Boolean, nullable=False),
    Column("alert", Text),
    # With the generator's truth: the true lift of the contacts (mean p_treated - p_control over the window).
    Column("true_lift", Double),
    # Incremental value minus the cost of the treated contacts (the spec's value per response and cost per contact).
    Column("net_return", Double),
    Column("created_at", _UTCDateTime, nullable=False),
)
RESULT_COLUMNS = tuple(c.name for c in campaign_results.columns)

SEGMENT_SUMMARY_COLUMNS = tuple(c.name for c in campaign_segments.columns if c.name != "run_id")

TARGET_COLUMNS = (
    "customer_id",
    "score",
    "decile",
    "rank",
    "target_group",
    "channel",
    "reason_1",
    "reason_2",
    "reason_3",
    *SEGMENT_COLUMNS,
)
TARGET_REQUIRED = ("customer_id", "score", "decile", "rank", "target_group")
EXCLUSION_COLUMNS = ("customer_id", "exclusion_reason", "detail")
EXCLUSION_REQUIRED = ("customer_id", "exclusion_reason")
# psycopg binary COPY types of the staged columns, in TARGET_COLUMNS / EXCLUSION_COLUMNS order.
_COPY_TYPES = {
    "campaign_targets": ["int8", "float8", "int2", "int4", *["text"] * 9],
    "campaign_exclusions": ["int8", "text", "text"],
}

# Staging tables for the PostgreSQL path: the run's rows without run_id, dropped at commit (or with a rollback).
_staging_metadata = MetaData()
_stage_tables = {
    "campaign_targets": Table(
        "pmp_stage_campaign_targets",
        _staging_metadata,
        *(
            Column(c.name, c.type, nullable=c.nullable)
            for c in campaign_targets.columns
            if c.name != "run_id"
        ),
        prefixes=["TEMPORARY"],
        postgresql_on_commit="DROP",
    ),
    "campaign_exclusions": Table(
        "pmp_stage_campaign_exclusions",
        _staging_metadata,
        *(
            Column(c.name, c.type, nullable=c.nullable)
            for c in campaign_exclusions.columns
            if c.name != "run_id"
        ),
        prefixes=["TEMPORARY"],
        postgresql_on_commit="DROP",
    ),
}


@dataclass
class RunRecord:
    """One campaign run: what ran, on which model, and how many customers went where.

    ``n_selected``, ``n_treatment``, ``n_holdout`` and ``n_excluded`` are filled from the frames by ``write_run``
    when left as None; ``created_at`` and ``finished_at`` are filled with the write time.
    """

    run_id: str
    campaign: str
    logical_date: date
    model_name: str | None = None
    model_version: str | None = None
    status: str = "succeeded"
    n_scored: int | None = None
    n_eligible: int | None = None
    n_excluded: int | None = None
    n_selected: int | None = None
    n_treatment: int | None = None
    n_holdout: int | None = None
    srm_p_value: float | None = None
    holdout_fraction: float | None = None
    created_at: datetime | None = None
    finished_at: datetime | None = None
    details: str | dict | None = None


# --------------------------------------------------------------------------------------------------- engine


def make_engine(url: str) -> Engine:
    """An engine for a campaign database URL (``sqlite:///...`` or ``postgresql://...``).

    SQLite: the database's folder is created here (not at import), writers wait up to
    ``SQLITE_BUSY_TIMEOUT_S`` for a lock, and transactions are real (DDL included): SQLAlchemy emits ``BEGIN``
    itself, ``BEGIN IMMEDIATE`` for writes. PostgreSQL: psycopg 3 is used
    (``postgresql://`` means ``postgresql+psycopg://``); another driver is refused because writes rely on
    psycopg's ``COPY``.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    if backend == "postgresql":
        driver = parsed.get_driver_name()
        if parsed.drivername != "postgresql" and driver != "psycopg":
            raise CampaignDBError(
                f"the campaign database needs the psycopg 3 driver (postgresql+psycopg://), got {parsed.drivername!r}"
            )
        return create_engine(parsed.set(drivername="postgresql+psycopg"), pool_pre_ping=True)
    raise CampaignDBError(
        f"unsupported campaign database {parsed.drivername!r}: use sqlite:/// or postgresql://"
    )


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take BEGIN away from the sqlite3 module (which skips it before DDL) so a transaction covers everything.
    dbapi_connection.isolation_level = None


def _sqlite_on_begin(conn: Connection) -> None:
    # IMMEDIATE takes the write lock up front: a writer waits (busy timeout) instead of failing half-way.
    mode = "IMMEDIATE" if conn.get_execution_options().get("pmp_write") else "DEFERRED"
    conn.exec_driver_sql(f"BEGIN {mode}")


def _check_engine(engine: Engine) -> None:
    dialect = engine.dialect
    if dialect.name not in ("sqlite", "postgresql") or (
        dialect.name == "postgresql" and dialect.driver != "psycopg"
    ):
        raise CampaignDBError(
            f"write_run supports SQLite and PostgreSQL through psycopg 3, got {dialect.name}+{dialect.driver}: "
            "build the engine with make_engine()"
        )


@contextmanager
def _begin_write(engine: Engine, lock_key: str) -> Iterator[Connection]:
    """A write transaction: ``BEGIN IMMEDIATE`` on SQLite, a transaction advisory lock on ``lock_key`` on PostgreSQL."""
    with engine.connect() as conn:
        conn.execution_options(pmp_write=True)
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(lock_key, 0))))
            yield conn


def ensure_schema(engine: Engine) -> None:
    """Create the campaign tables and their indexes if missing, and add nullable columns a newer version of this
    module defines to tables an older version created (segment columns on ``campaign_targets``); a no-op when
    everything is there. A missing NOT NULL column cannot be added this way and raises CampaignDBError."""
    from sqlalchemy import inspect

    with _begin_write(engine, "pmp.campaign_schema") as conn:
        metadata.create_all(conn, checkfirst=True)
        inspector = inspect(conn)
        quote = conn.dialect.identifier_preparer.quote
        for table in metadata.sorted_tables:
            present = {c["name"] for c in inspector.get_columns(table.name)}
            for column in (c for c in table.columns if c.name not in present):
                if not column.nullable:
                    raise CampaignDBError(
                        f"{table.name}.{column.name}: the table predates this NOT NULL column; migrate it by hand"
                    )
                kind = column.type.compile(dialect=conn.dialect)
                conn.exec_driver_sql(
                    f"ALTER TABLE {quote(table.name)} ADD COLUMN {quote(column.name)} {kind}"
                )


# ---------------------------------------------------------------------------------------------------- write


def _checkpoint(step: str) -> None:
    """Called at each step of ``write_run`` (a seam for tests that inject failures); does nothing."""


def write_run(
    engine: Engine,
    run: RunRecord,
    targets: pd.DataFrame | None,
    exclusions: pd.DataFrame | None,
    *,
    segments: pd.DataFrame | None = None,
    chunk_rows: int = 100_000,
) -> None:
    """Store a run: its record, its target list, its exclusion audit and its segment mix (``segments``:
    :data:`SEGMENT_SUMMARY_COLUMNS`, optional), replacing whatever the run id had.

    Atomic (one transaction: a failure anywhere leaves the database as it was) and idempotent (writing the same
    run again replaces its rows, never duplicates them). Frames are validated first, with errors naming the table
    and column; only the table's own columns are written (``TARGET_COLUMNS``, ``EXCLUSION_COLUMNS``), and a
    frame with no rows may omit columns. Creates the tables if they are missing.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    _check_engine(engine)
    for name, frame in (("campaign_targets", targets), ("campaign_exclusions", exclusions)):
        _check_frame_run_id(frame, name, run.run_id)
    segment_rows = _normalize_segments(segments)
    target_rows = _normalize_targets(targets)
    exclusion_rows = _normalize_exclusions(exclusions)
    _check_disjoint(target_rows, exclusion_rows)
    record = _complete_record(run, target_rows, exclusion_rows)
    ensure_schema(engine)
    frames = {"campaign_targets": target_rows, "campaign_exclusions": exclusion_rows}
    children = (campaign_targets, campaign_exclusions)
    with _begin_write(engine, f"pmp.campaign_run:{record['run_id']}") as conn:
        postgres = conn.dialect.name == "postgresql"
        if postgres:
            for name, frame in frames.items():
                _stage_tables[name].create(conn, checkfirst=False)
                _copy_rows(conn, name, frame, chunk_rows)
            _checkpoint("staged")
        for table in children:
            conn.execute(delete(table).where(table.c.run_id == record["run_id"]))
        _checkpoint("deleted")
        _upsert_run(conn, record)
        _checkpoint("run_upserted")
        for table in children:
            if postgres:
                stage = _stage_tables[table.name]
                names = [c.name for c in stage.columns]
                conn.execute(
                    insert(table).from_select(
                        ["run_id", *names],
                        select(literal(record["run_id"], String), *(stage.c[n] for n in names)),
                    )
                )
            else:
                _insert_rows(conn, table, record["run_id"], frames[table.name], chunk_rows)
        conn.execute(delete(campaign_segments).where(campaign_segments.c.run_id == record["run_id"]))
        if segment_rows:
            conn.execute(insert(campaign_segments), [{"run_id": record["run_id"], **r} for r in segment_rows])
        _checkpoint("written")


def _upsert_run(conn: Connection, record: dict[str, Any]) -> None:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    stmt = dialect_insert(campaign_runs).values(**record)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["run_id"],
            set_={k: stmt.excluded[k] for k in record if k != "run_id"},
        )
    )


def _chunks(frame: pd.DataFrame, chunk_rows: int) -> Iterator[tuple[int, list[list[Any]]]]:
    """Column lists of Python values (None for missing), ``chunk_rows`` rows at a time."""
    arrays = []
    for name in frame.columns:
        values = frame[name].to_numpy()
        if values.dtype == object:
            # pandas may hold missing strings as NaN; the drivers need None.
            values = np.where(pd.isna(values), None, values)
        arrays.append(values)
    for i, start in enumerate(range(0, len(frame), chunk_rows)):
        yield i, [a[start : start + chunk_rows].tolist() for a in arrays]


def _copy_rows(conn: Connection, table_name: str, frame: pd.DataFrame, chunk_rows: int) -> int:
    """Binary ``COPY`` of the frame into a staging table (measured: about twice as fast as CSV text)."""
    stage = _stage_tables[table_name]
    quote = conn.dialect.identifier_preparer.quote
    columns = ", ".join(quote(c) for c in frame.columns)
    n = 0
    with (
        conn.connection.driver_connection.cursor() as cursor,
        cursor.copy(f"COPY {quote(stage.name)} ({columns}) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        copy.set_types(_COPY_TYPES[table_name])
        for i, columns_chunk in _chunks(frame, chunk_rows):
            for row in zip(*columns_chunk, strict=True):
                copy.write_row(row)
            n += len(columns_chunk[0])
            _checkpoint(f"{table_name}:chunk:{i}")
    return n


def _insert_rows(conn: Connection, table: Table, run_id: str, frame: pd.DataFrame, chunk_rows: int) -> int:
    """``executemany`` inserts, a chunk at a time, inside the caller's transaction."""
    columns = ["run_id", *frame.columns]
    quote = conn.dialect.identifier_preparer.quote
    sql = (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
        f"VALUES ({', '.join('?' * len(columns))})"
    )
    n = 0
    for i, columns_chunk in _chunks(frame, chunk_rows):
        rows = list(zip(repeat(run_id), *columns_chunk))
        conn.exec_driver_sql(sql, rows)
        n += len(rows)
        _checkpoint(f"{table.name}:chunk:{i}")
    return n


# ----------------------------------------------------------------------------------------------- validation


def _fail(table: str, column: str | None, message: str) -> FrameValidationError:
    where = table if column is None else f"{table}.{column}"
    return FrameValidationError(f"{where}: {message}")


def _examples(values: Any, k: int = 5) -> str:
    values = list(values)
    shown = ", ".join(repr(v.item() if isinstance(v, np.generic) else v) for v in values[:k])
    return f"[{shown}{', ...' if len(values) > k else ''}]"


def _check_columns(frame: pd.DataFrame, table: str, required: Sequence[str]) -> None:
    if len(frame) == 0:
        return
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise _fail(table, None, f"missing required column(s) {missing}; the frame has {list(frame.columns)}")
    duplicated = frame.columns[frame.columns.duplicated()].unique().tolist()
    if duplicated:
        raise _fail(table, None, f"duplicated column name(s) {duplicated}")


def _int_column(frame: pd.DataFrame, table: str, column: str, lo: int, hi: int) -> np.ndarray:
    series = frame[column]
    nulls = int(series.isna().sum())
    if nulls:
        raise _fail(table, column, f"{nulls} null value(s); every row needs a {column}")
    if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
        try:
            series = pd.to_numeric(series, errors="raise")
        except (TypeError, ValueError) as exc:
            raise _fail(table, column, f"must be integers, got dtype {frame[column].dtype}: {exc}") from exc
    values = series.to_numpy()
    if values.dtype.kind == "f":
        fractional = ~np.isfinite(values) | (values != np.round(values))
        if fractional.any():
            raise _fail(table, column, f"must be whole numbers, got {_examples(values[fractional])}")
    elif values.dtype.kind not in "iu":
        raise _fail(table, column, f"must be integers, got dtype {series.dtype}")
    out_of_range = (values < lo) | (values > hi)
    if out_of_range.any():
        raise _fail(table, column, f"values must be in [{lo}, {hi}], got {_examples(values[out_of_range])}")
    return values.astype(np.int64)


def _str_column(frame: pd.DataFrame, table: str, column: str, *, required: bool) -> np.ndarray:
    if column not in frame.columns:
        return np.full(len(frame), None, dtype=object)
    series = frame[column]
    missing = series.isna().to_numpy()
    if required and missing.any():
        raise _fail(table, column, f"{int(missing.sum())} null value(s); every row needs a {column}")
    values = series.astype(object).to_numpy(copy=True)
    values[missing] = None
    if pd.api.types.infer_dtype(values, skipna=True) not in ("string", "empty"):
        present = ~missing
        values[present] = [v if isinstance(v, str) else str(v) for v in values[present]]
    if required:
        empty = values == ""
        if empty.any():
            raise _fail(table, column, f"{int(empty.sum())} empty value(s); every row needs a {column}")
    return values


def _check_frame_run_id(frame: pd.DataFrame | None, table: str, run_id: str) -> None:
    # The run id comes from the RunRecord; a frame that carries its own must agree with it.
    if frame is not None and "run_id" in frame.columns:
        others = pd.unique(frame["run_id"][frame["run_id"] != run_id])
        if len(others):
            raise _fail(table, "run_id", f"rows of run(s) {_examples(others)} in a write of run {run_id!r}")


def _check_unique_ids(ids: np.ndarray, table: str) -> None:
    duplicated = pd.Series(ids).duplicated(keep=False).to_numpy()
    if duplicated.any():
        dupes = np.unique(ids[duplicated])
        raise _fail(
            table,
            "customer_id",
            f"{len(dupes)} customer_id(s) appear more than once in the run: {_examples(dupes)}",
        )


def _in_key_order(columns: dict[str, np.ndarray]) -> pd.DataFrame:
    """The rows sorted by customer_id: the primary key's order, so its b-tree is filled by appending."""
    order = np.argsort(columns["customer_id"], kind="stable")
    # dtype kept as given: object columns stay object (pandas would otherwise re-infer them as str, slowly).
    return pd.DataFrame(
        {name: pd.Series(values[order], dtype=values.dtype) for name, values in columns.items()}
    )


def _normalize_targets(frame: pd.DataFrame | None) -> pd.DataFrame:
    """The target rows as ``TARGET_COLUMNS`` with plain NumPy values, or a FrameValidationError."""
    table = "campaign_targets"
    frame = pd.DataFrame() if frame is None else frame
    _check_columns(frame, table, TARGET_REQUIRED)
    if len(frame) == 0:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in TARGET_COLUMNS})
    ids = _int_column(frame, table, "customer_id", -_INT64_MAX, _INT64_MAX)
    _check_unique_ids(ids, table)
    score = frame["score"]
    if pd.api.types.is_bool_dtype(score):
        raise _fail(table, "score", f"must be numeric, got dtype {score.dtype}")
    if not pd.api.types.is_numeric_dtype(score):
        try:
            score = pd.to_numeric(score, errors="raise")
        except (TypeError, ValueError) as exc:
            raise _fail(table, "score", f"must be numeric, got dtype {score.dtype}: {exc}") from exc
    score_values = score.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(score_values)
    if bad.any():
        raise _fail(table, "score", f"{int(bad.sum())} null or infinite score(s)")
    groups = _str_column(frame, table, "target_group", required=True)
    outside = ~pd.Series(groups).isin(TARGET_GROUPS).to_numpy()
    if outside.any():
        raise _fail(
            table,
            "target_group",
            f"values must be one of {list(TARGET_GROUPS)}, got {_examples(pd.unique(groups[outside]))}",
        )
    return _in_key_order(
        {
            "customer_id": ids,
            "score": score_values,
            "decile": _int_column(frame, table, "decile", 1, N_DECILES),
            "rank": _int_column(frame, table, "rank", 1, _INT32_MAX),
            "target_group": groups,
            **{
                c: _str_column(frame, table, c, required=False)
                for c in ("channel", "reason_1", "reason_2", "reason_3", *SEGMENT_COLUMNS)
            },
        }
    )


def _normalize_exclusions(frame: pd.DataFrame | None) -> pd.DataFrame:
    """The exclusion rows as ``EXCLUSION_COLUMNS`` with plain NumPy values, or a FrameValidationError."""
    table = "campaign_exclusions"
    frame = pd.DataFrame() if frame is None else frame
    _check_columns(frame, table, EXCLUSION_REQUIRED)
    if len(frame) == 0:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in EXCLUSION_COLUMNS})
    ids = _int_column(frame, table, "customer_id", -_INT64_MAX, _INT64_MAX)
    _check_unique_ids(ids, table)
    return _in_key_order(
        {
            "customer_id": ids,
            "exclusion_reason": _str_column(frame, table, "exclusion_reason", required=True),
            "detail": _str_column(frame, table, "detail", required=False),
        }
    )


def _normalize_segments(frame: pd.DataFrame | None) -> list[dict[str, Any]]:
    """The segment-mix rows as plain dicts (a few dozen), or a FrameValidationError."""
    table = "campaign_segments"
    if frame is None or len(frame) == 0:
        return []
    _check_columns(frame, table, ("dimension", "segment", "customers", "treatment", "holdout", "share"))
    if frame.duplicated(["dimension", "segment"]).any():
        raise _fail(table, "segment", "duplicate (dimension, segment) rows")
    rows = []
    for record in frame.to_dict("records"):
        row = {}
        for c in SEGMENT_SUMMARY_COLUMNS:
            v = record.get(c)
            v = None if v is None or (isinstance(v, float) and np.isnan(v)) else v
            row[c] = v.item() if isinstance(v, np.generic) else v
        if row["dimension"] is None or row["segment"] is None:
            raise _fail(table, "segment", "every row needs a dimension and a segment")
        row["dimension"], row["segment"] = str(row["dimension"]), str(row["segment"])
        rows.append(row)
    return rows


def _check_disjoint(targets: pd.DataFrame, exclusions: pd.DataFrame) -> None:
    if len(targets) and len(exclusions):
        both = np.intersect1d(targets["customer_id"].to_numpy(), exclusions["customer_id"].to_numpy())
        if len(both):
            raise _fail(
                "campaign_targets",
                "customer_id",
                f"{len(both)} customer(s) are both targeted and excluded (campaign_exclusions): {_examples(both)}",
            )


def _complete_record(run: RunRecord, targets: pd.DataFrame, exclusions: pd.DataFrame) -> dict[str, Any]:
    """The campaign_runs row: counts and timestamps filled in, every field checked."""
    table = "campaign_runs"
    if not isinstance(run.run_id, str) or not run.run_id.strip():
        raise _fail(table, "run_id", f"must be a non-empty string, got {run.run_id!r}")
    if not isinstance(run.campaign, str) or not run.campaign.strip():
        raise _fail(table, "campaign", f"must be a non-empty string, got {run.campaign!r}")
    if run.status not in RUN_STATUSES:
        raise _fail(table, "status", f"must be one of {list(RUN_STATUSES)}, got {run.status!r}")
    try:
        logical_date = pd.Timestamp(run.logical_date).date()
    except (TypeError, ValueError) as exc:
        raise _fail(table, "logical_date", f"not a date: {run.logical_date!r}") from exc

    groups = targets["target_group"].to_numpy()
    actual = {
        "n_selected": len(targets),
        "n_treatment": int((groups == "treatment").sum()),
        "n_holdout": int((groups == "holdout").sum()),
    }
    record = replace(run, logical_date=logical_date)
    for name, value in actual.items():
        given = getattr(record, name)
        if given is None:
            record = replace(record, **{name: value})
        elif given != value:
            raise _fail(table, name, f"is {given} but the targets frame has {value} such row(s)")
    if record.n_excluded is None:
        record = replace(record, n_excluded=len(exclusions))
    for name in ("n_scored", "n_eligible", "n_excluded", "n_selected", "n_treatment", "n_holdout"):
        value = getattr(record, name)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
                raise _fail(table, name, f"must be a non-negative integer or None, got {value!r}")
            record = replace(record, **{name: int(value)})
    for name in ("srm_p_value", "holdout_fraction"):
        value = getattr(record, name)
        if value is not None:
            if not isinstance(value, int | float | np.number) or not 0.0 <= float(value) <= 1.0:
                raise _fail(table, name, f"must be a number in [0, 1] or None, got {value!r}")
            record = replace(record, **{name: float(value)})
    for name in ("model_name", "model_version"):
        value = getattr(record, name)
        if value is not None:
            record = replace(record, **{name: str(value)})

    now = datetime.now(UTC)
    for name in ("created_at", "finished_at"):
        value = getattr(record, name)
        if value is None:
            value = now
        elif not isinstance(value, datetime) or value.tzinfo is None:
            raise _fail(table, name, f"must be a timezone-aware datetime, got {value!r}")
        record = replace(record, **{name: pd.Timestamp(value).to_pydatetime().astimezone(UTC)})

    details = record.details
    if isinstance(details, dict):
        details = json.dumps(details, sort_keys=True, default=str)
    elif details is not None:
        try:
            json.loads(details)
        except (TypeError, ValueError) as exc:
            raise _fail(table, "details", f"must be a dict or JSON text: {exc}") from exc
    return {**asdict(record), "details": details}


# ----------------------------------------------------------------------------------------------------- read

_TARGET_DTYPES = {
    "run_id": "str",
    "customer_id": "int64",
    "score": "float64",
    "decile": "int64",
    "rank": "int64",
    "target_group": "str",
    "channel": "str",
    "reason_1": "str",
    "reason_2": "str",
    "reason_3": "str",
    **dict.fromkeys(SEGMENT_COLUMNS, "str"),
}
_EXCLUSION_DTYPES = {"run_id": "str", "customer_id": "int64", "exclusion_reason": "str", "detail": "str"}
_RUN_DTYPES = {
    "run_id": "str",
    "campaign": "str",
    "logical_date": "datetime64[us]",
    "model_name": "str",
    "model_version": "str",
    "status": "str",
    **{
        n: "Int64" for n in ("n_scored", "n_eligible", "n_excluded", "n_selected", "n_treatment", "n_holdout")
    },
    "srm_p_value": "float64",
    "holdout_fraction": "float64",
    "created_at": "datetime64[us, UTC]",
    "finished_at": "datetime64[us, UTC]",
    "details": "str",
}
_CONTACT_DTYPES = {"customer_id": "int64", "campaign": "str", "contact_date": "datetime64[us]"}


def _frame(rows: Sequence[Any], dtypes: dict[str, str]) -> pd.DataFrame:
    """A frame with exactly these columns and dtypes, whichever backend the rows came from."""
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(dtypes)
    out = {}
    for (name, dtype), values in zip(dtypes.items(), columns, strict=True):
        if dtype.startswith("datetime64"):
            out[name] = pd.to_datetime(pd.Series(values, dtype=object), utc="UTC" in dtype).astype(dtype)
        else:
            out[name] = pd.Series(values, dtype=dtype)
    return pd.DataFrame(out, columns=list(dtypes))


def _latest_first(query: Any) -> Any:
    c = campaign_runs.c
    return query.order_by(c.logical_date.desc(), c.created_at.desc(), c.run_id.desc())


def list_runs(engine: Engine, campaign: str | None = None) -> pd.DataFrame:
    """The campaign_runs rows (of one campaign, or all), newest first (logical date, then creation time)."""
    query = select(campaign_runs)
    if campaign is not None:
        query = query.where(campaign_runs.c.campaign == campaign)
    with engine.connect() as conn:
        rows = conn.execute(_latest_first(query)).all()
    return _frame(rows, _RUN_DTYPES)


def resolve_run(engine: Engine, campaign: str, run: str = "latest") -> str:
    """The run id ``run`` names for ``campaign``: itself, or for "latest" the newest succeeded run.

    Raises RunNotFoundError, listing the campaign's succeeded runs, when there is no such succeeded run.
    """
    c = campaign_runs.c
    with engine.connect() as conn:
        runs = conn.execute(_latest_first(select(c.run_id, c.status).where(c.campaign == campaign))).all()
        found = conn.execute(select(c.campaign, c.status).where(c.run_id == run)).first()
        campaigns = conn.execute(select(c.campaign).distinct().order_by(c.campaign)).scalars().all()
    succeeded = [r.run_id for r in runs if r.status == "succeeded"]
    if run == "latest" and succeeded:
        return succeeded[0]
    if run in succeeded:
        return run
    if run == "latest":
        problem = f"campaign {campaign!r} has no succeeded run"
    elif found is None:
        problem = f"run {run!r} does not exist"
    elif found.campaign != campaign:
        problem = f"run {run!r} belongs to campaign {found.campaign!r}, not {campaign!r}"
    else:
        problem = f"run {run!r} has status {found.status!r}; only succeeded runs can be read"
    if runs:
        listed = ", ".join(f"{r.run_id} ({r.status})" for r in runs[:20])
        available = f"runs of {campaign!r}, newest first: {listed}{' ...' if len(runs) > 20 else ''}"
    else:
        available = f"no runs of {campaign!r}; campaigns with runs: {campaigns}"
    raise RunNotFoundError(f"{problem}; {available}")


def read_targets(
    engine: Engine,
    campaign: str,
    run: str = "latest",
    groups: Sequence[str] = ("treatment",),
) -> pd.DataFrame:
    """The target list of a run (a run id, or "latest": the newest succeeded run of the campaign), by rank.

    Only the given target groups are returned (treatment by default: the customers to contact). Columns:
    run_id, customer_id, score, decile, rank, target_group, channel, reason_1..3.
    """
    groups = [groups] if isinstance(groups, str) else list(groups)
    unknown = sorted(set(groups) - set(TARGET_GROUPS))
    if not groups or unknown:
        raise ValueError(f"groups must be a non-empty subset of {list(TARGET_GROUPS)}, got {groups}")
    run_id = resolve_run(engine, campaign, run)
    t = campaign_targets.c
    query = (
        select(*(t[n] for n in _TARGET_DTYPES))
        .where(t.run_id == run_id, t.target_group.in_(groups))
        .order_by(t.rank, t.customer_id)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return _frame(rows, _TARGET_DTYPES)


def _require_run(conn: Connection, run_id: str) -> None:
    if conn.execute(select(campaign_runs.c.run_id).where(campaign_runs.c.run_id == run_id)).first() is None:
        recent = conn.execute(_latest_first(select(campaign_runs.c.run_id)).limit(20)).scalars().all()
        raise RunNotFoundError(f"run {run_id!r} does not exist; most recent runs: {recent}")


def read_exclusions(engine: Engine, run_id: str) -> pd.DataFrame:
    """The exclusion audit of a run (run_id, customer_id, exclusion_reason, detail) by customer_id."""
    e = campaign_exclusions.c
    with engine.connect() as conn:
        _require_run(conn, run_id)
        rows = conn.execute(
            select(*(e[n] for n in _EXCLUSION_DTYPES)).where(e.run_id == run_id).order_by(e.customer_id)
        ).all()
    return _frame(rows, _EXCLUSION_DTYPES)


def read_segments(engine: Engine, run_id: str) -> pd.DataFrame:
    """The segment mix of a run (:data:`SEGMENT_SUMMARY_COLUMNS`), by dimension then size."""
    s_ = campaign_segments.c
    with engine.connect() as conn:
        _require_run(conn, run_id)
        rows = conn.execute(
            select(*(s_[n] for n in SEGMENT_SUMMARY_COLUMNS))
            .where(s_.run_id == run_id)
            .order_by(s_.dimension, s_.customers.desc(), s_.segment)
        ).all()
    return pd.DataFrame(rows, columns=list(SEGMENT_SUMMARY_COLUMNS))


def write_result(engine: Engine, row: dict[str, Any]) -> None:
    """Store (or replace) the readout of one campaign in ``campaign_results``, in one transaction."""
    record = {c: row.get(c) for c in RESULT_COLUMNS}
    record["created_at"] = record["created_at"] or datetime.now(UTC)
    missing = [c.name for c in campaign_results.columns if not c.nullable and record[c.name] is None]
    if missing:
        raise _fail("campaign_results", missing[0], f"missing value(s) for {missing}")
    ensure_schema(engine)
    with _begin_write(engine, f"pmp.campaign_result:{record['campaign_id']}") as conn:
        conn.execute(delete(campaign_results).where(campaign_results.c.campaign_id == record["campaign_id"]))
        conn.execute(insert(campaign_results).values(**record))


def read_results(engine: Engine) -> pd.DataFrame:
    """Every stored campaign readout, by campaign id."""
    with engine.connect() as conn:
        rows = conn.execute(select(campaign_results).order_by(campaign_results.c.campaign_id)).all()
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS))


def group_counts(engine: Engine, run_id: str) -> dict[str, int]:
    """Stored target rows of a run per group, e.g. ``{"treatment": 900, "holdout": 100}`` (both keys always)."""
    t = campaign_targets.c
    with engine.connect() as conn:
        _require_run(conn, run_id)
        rows = conn.execute(
            select(t.target_group, func.count()).where(t.run_id == run_id).group_by(t.target_group)
        ).all()
    return {group: 0 for group in TARGET_GROUPS} | {group: int(n) for group, n in rows}


def contact_history(engine: Engine, before: date, since: date | None = None) -> pd.DataFrame:
    """Who was contacted when: treatment rows of succeeded runs with ``since <= logical_date < before``.

    Columns customer_id, campaign, contact_date (the run's logical date), one row per customer, campaign and
    date, across all campaigns. ``before`` is exclusive, so a run re-done for the same date does not count
    its own earlier version.
    """
    r, t = campaign_runs.c, campaign_targets.c
    before = pd.Timestamp(before).date()
    conditions = [r.status == "succeeded", t.target_group == "treatment", r.logical_date < before]
    if since is not None:
        conditions.append(r.logical_date >= pd.Timestamp(since).date())
    query = (
        select(t.customer_id, r.campaign, r.logical_date.label("contact_date"))
        .select_from(campaign_targets.join(campaign_runs, t.run_id == r.run_id))
        .where(*conditions)
        .distinct()
        .order_by(r.logical_date, r.campaign, t.customer_id)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return _frame(rows, _CONTACT_DTYPES)


__all__ = [
    "CampaignDBError",
    "FrameValidationError",
    "RunNotFoundError",
    "RunRecord",
    "campaign_exclusions",
    "campaign_runs",
    "campaign_targets",
    "contact_history",
    "ensure_schema",
    "group_counts",
    "list_runs",
    "make_engine",
    "metadata",
    "read_exclusions",
    "read_targets",
    "resolve_run",
    "write_run",
]
