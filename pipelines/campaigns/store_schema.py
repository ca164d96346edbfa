"""The campaign database's schema and connections: its tables, the column tuples of each, the UTC timestamp type,
engines for SQLite and PostgreSQL, the write transaction, and ``ensure_schema``.

Tables::

    campaign_runs        run_id PK, campaign, logical_date, model, status, counts, SRM p-value, timestamps (UTC)
    campaign_targets     (run_id, customer_id) PK, score, decile (1 = best), rank (1 = best), target_group,
                         channel, reason_1..3, segment columns
    campaign_exclusions  (run_id, customer_id) PK, exclusion_reason, detail
    campaign_segments    (run_id, dimension, segment) PK: the segment mix of a run
    campaign_results     campaign_id PK: the readout of a campaign
    contact_exports      id PK: the audit of list exports with contact details (who, when, run, rows, file, sha256)
    list_exports         id PK: the same for exports without contact details
    campaign_decisions   decision_id PK: the decision service's log (customer, event, campaign, offer or none,
                         group, score, model version, latency), insert-only; index (campaign, event_ts)
    campaign_spec_history id PK: every change to a campaigns/<name>.yaml made in the staff app (who, when,
                         campaign, action, the new file's sha256, unified diff); written by
                         pipelines.campaigns.spec_history, insert-only

No personal data is stored: customers appear by ``customer_id`` only. On PostgreSQL ``ensure_schema`` also creates
the staff and contact roles and their grants (:mod:`pipelines.campaigns.store_access`). What is written, and how, is
``pipelines.campaigns.store``.

Importing this module connects to nothing and creates nothing; ``make_engine`` and ``ensure_schema`` do.
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

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
    event,
    func,
    make_url,
    select,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection
from sqlalchemy.types import TypeDecorator

from pipelines.data.schema import CONTACT_GROUPS

RUN_STATUSES = ("succeeded", "failed")
TARGET_GROUPS = CONTACT_GROUPS  # ("treatment", "holdout")
N_DECILES = 10
SQLITE_BUSY_TIMEOUT_S = 30.0
PG_CONNECT_TIMEOUT_S = 10
F = TypeVar("F", bound=Callable[..., Any])


class CampaignDBError(RuntimeError):
    """The campaign database cannot do what was asked."""


class DatabaseError(CampaignDBError):
    """The campaign database cannot be reached or used: the message is one line naming the URL (password masked)
    and the cause, e.g. ``campaign database postgresql://pmp:***@db:5432/campaigns: <the driver's first line>``."""


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


def _export_audit_table(name: str) -> Table:
    # Written by pipelines.campaigns.contact_export only; on PostgreSQL exported_by is the server's session_user.
    return Table(
        name,
        metadata,
        # Made by the writer (a random hex UUID): no sequence to grant, no RETURNING needing SELECT.
        Column("id", String(32), primary_key=True, default=lambda: uuid.uuid4().hex),
        Column("exported_at", _UTCDateTime, nullable=False),
        Column("exported_by", String, nullable=False),
        Column("campaign", String, nullable=False),
        Column("run_id", String, nullable=False),
        Column("target_groups", String, nullable=False),  # comma separated, e.g. "treatment,holdout"
        Column("n_rows", BigInteger, nullable=False),
        Column("file_path", Text, nullable=False),  # absolute
        Column("sha256", String(64), nullable=False),
        implicit_returning=False,  # the staff role may insert into list_exports, not read it
    )


# Exports with contact details: only the contact role may insert (and read); nobody may update or delete.
contact_exports = _export_audit_table("contact_exports")
# Exports without contact details (no personal data): the staff role may insert.
list_exports = _export_audit_table("list_exports")

# Written by pipelines.campaigns.spec_history only (the staff app's campaign form): insert-only, like the audits.
SPEC_ACTIONS = ("created", "edited", "not_applied")
campaign_spec_history = Table(
    "campaign_spec_history",
    metadata,
    Column("id", String(32), primary_key=True, default=lambda: uuid.uuid4().hex),
    Column("changed_at", _UTCDateTime, nullable=False),
    Column("changed_by", String, nullable=False),
    Column("campaign", String, nullable=False),
    Column("action", String, nullable=False),
    Column("spec_sha256", String(64), nullable=False),  # of the file as written (not_applied: as left)
    Column("diff", Text, nullable=False),  # unified diff a/campaigns/X.yaml -> b/campaigns/X.yaml
    CheckConstraint(f"action IN {SPEC_ACTIONS!r}", name="action"),
    Index(None, "campaign", "changed_at"),
    implicit_returning=False,
)

# Written by pipelines.monitoring.store: the stability of each scoring run against its model's reference, and the
# realised performance of the run once its labels matured. A rerun replaces its rows (one kind at a time).
MONITORING_KINDS = ("stability", "realised")
MONITORING_LEVELS = ("ok", "warn", "alert")
model_monitoring = Table(
    "model_monitoring",
    metadata,
    Column("run_id", String, primary_key=True),  # the campaign run scored
    Column("kind", String, primary_key=True),
    Column("metric", String, primary_key=True),  # psi, missing_share, unseen_share, auc, top_decile_lift, ...
    Column("subject", String, primary_key=True),  # "score", a feature, "model", or "decile_01".."decile_10"
    Column("campaign", String, nullable=False),
    Column("model_name", String, nullable=False),
    Column("model_version", String, nullable=False),
    Column("as_of", Date, nullable=False),
    Column("value", Double, nullable=True),
    Column("reference", Double, nullable=True),  # the model's own figure (its test AUC, the reference share)
    Column("level", String, nullable=False),
    Column("computed_at", _UTCDateTime, nullable=False),
    CheckConstraint(f"kind IN {MONITORING_KINDS!r}", name="kind"),
    CheckConstraint(f"level IN {MONITORING_LEVELS!r}", name="level"),
    Index(None, "model_name", "as_of"),
    implicit_returning=False,
)

# Written by pipelines.campaigns.decisions (the decision service's log, in batches): one row per answered event,
# insert-only; a real-time campaign's day becomes a readable run through pipelines.jobs.realtime.
campaign_decisions = Table(
    "campaign_decisions",
    metadata,
    Column("decision_id", String(32), primary_key=True),  # uuid4 hex, made by the service
    Column("decided_at", _UTCDateTime, nullable=False),  # the service's clock
    Column("customer_id", BigInteger, nullable=False, autoincrement=False),
    Column("event_type", String, nullable=False),
    Column("event_ts", _UTCDateTime, nullable=False),
    Column("campaign", String),  # the campaign the decision was about; null when none applied
    Column("offer", String),  # the campaign offered; null for "no offer" (held out, or nothing applied)
    Column("channel", String),
    Column("target_group", String),
    Column("score", Double),
    Column("expected_value", Double),
    Column("reason", Text, nullable=False),
    Column("model_name", String),
    Column("model_version", String),
    Column("snapshot_as_of", Date),
    Column("latency_ms", Double),
    CheckConstraint(f"target_group IN {TARGET_GROUPS!r}", name="target_group"),
    Index(None, "campaign", "event_ts"),
    implicit_returning=False,
)
DECISION_COLUMNS = tuple(c.name for c in campaign_decisions.columns)

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

# Staging tables for the PostgreSQL path: the run's rows without run_id, dropped at commit (or with a rollback).
_STAGING_METADATA = MetaData()
STAGE_TABLES = {
    "campaign_targets": Table(
        "pmp_stage_campaign_targets",
        _STAGING_METADATA,
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
        _STAGING_METADATA,
        *(
            Column(c.name, c.type, nullable=c.nullable)
            for c in campaign_exclusions.columns
            if c.name != "run_id"
        ),
        prefixes=["TEMPORARY"],
        postgresql_on_commit="DROP",
    ),
}


# --------------------------------------------------------------------------------------------------- engine


def make_engine(url: str) -> Engine:
    """:func:`_make_engine`, with a URL that does not parse, or a folder that cannot be made, as DatabaseError."""
    try:
        return _make_engine(url)
    except DatabaseError:
        raise
    except (sa_exc.ArgumentError, ValueError, OSError, ImportError) as exc:
        raise database_error(url, exc) from None


def _make_engine(url: str) -> Engine:
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
            raise database_error(
                url,
                f"the campaign database needs the psycopg 3 driver (postgresql+psycopg://), got {parsed.drivername!r}",
            )
        # A host that drops packets would otherwise hold the first connection for the OS's TCP timeout (minutes).
        connect_args = {} if "connect_timeout" in parsed.query else {"connect_timeout": PG_CONNECT_TIMEOUT_S}
        return create_engine(
            parsed.set(drivername="postgresql+psycopg"), pool_pre_ping=True, connect_args=connect_args
        )
    raise database_error(
        url, f"unsupported campaign database {parsed.drivername!r}: use sqlite:/// or postgresql://"
    )


_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


def safe_url(url: Any) -> str:
    """The URL as text with its password masked (``***``); a string that does not parse is masked by pattern."""
    if isinstance(url, Engine):
        url = url.url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return mask_passwords(str(url))


def mask_passwords(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` in it replaced by ``***``."""
    return _PASSWORD.sub(r"\1***@", text)


def _first_line(cause: BaseException | str) -> str:
    if isinstance(cause, sa_exc.DBAPIError) and cause.orig is not None:
        cause = cause.orig
    if isinstance(cause, sa_exc.SQLAlchemyError) and not isinstance(cause, sa_exc.DBAPIError):
        text = str(cause.args[0]) if cause.args else str(cause)
    else:
        text = str(cause)
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    line = lines[0] if lines else type(cause).__name__
    # psycopg repeats the server's severity ("FATAL:  role ... does not exist"): keep one space.
    return mask_passwords(re.sub(r"\s{2,}", " ", line))


def database_error(url: Any, cause: BaseException | str) -> DatabaseError:
    """One-line DatabaseError: ``campaign database <url, password masked>: <the cause's first line>``."""
    line = _first_line(cause)
    if isinstance(cause, sa_exc.ArgumentError) and "Could not parse" in line:
        line = "not a database URL (expected sqlite:///PATH or postgresql://USER@HOST:PORT/DATABASE)"
    if isinstance(cause, sa_exc.OperationalError) and "database is locked" in line:
        line += f" (another writer held it past the busy timeout of {SQLITE_BUSY_TIMEOUT_S:g} s)"
    return DatabaseError(f"campaign database {safe_url(url)}: {line}")


def database_errors(function: F) -> F:
    """Decorator for functions whose first argument is an engine: a driver error (unreachable server, unknown
    role or database, a file that is not a database, a lock past the busy timeout, ...) becomes one-line
    :class:`DatabaseError`."""

    @functools.wraps(function)
    def wrapper(engine: Engine, *args: Any, **kwargs: Any) -> Any:
        try:
            return function(engine, *args, **kwargs)
        except sa_exc.DBAPIError as exc:
            raise database_error(engine, exc) from exc

    return wrapper  # type: ignore[return-value]


def check_database(url: str) -> None:
    """Connect once and make sure the campaign database can take a run: the URL parses, the server answers and
    lets this role in, (SQLite) the file is a database in a writable folder and its write lock can be taken
    within the busy timeout, and the tables exist or can be created. Raises one-line DatabaseError otherwise."""
    engine = make_engine(url)
    try:
        ensure_schema(engine)
    finally:
        engine.dispose()


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take BEGIN away from the sqlite3 module (which skips it before DDL) so a transaction covers everything.
    dbapi_connection.isolation_level = None


def _sqlite_on_begin(conn: Connection) -> None:
    # IMMEDIATE takes the write lock up front: a writer waits (busy timeout) instead of failing half-way.
    mode = "IMMEDIATE" if conn.get_execution_options().get("pmp_write") else "DEFERRED"
    conn.exec_driver_sql(f"BEGIN {mode}")


def check_engine(engine: Engine) -> None:
    """Raises CampaignDBError unless the engine is SQLite or PostgreSQL through psycopg 3 (what writes need)."""
    dialect = engine.dialect
    if dialect.name not in ("sqlite", "postgresql") or (
        dialect.name == "postgresql" and dialect.driver != "psycopg"
    ):
        raise CampaignDBError(
            f"write_run supports SQLite and PostgreSQL through psycopg 3, got {dialect.name}+{dialect.driver}: "
            "build the engine with make_engine()"
        )


@contextmanager
def begin_write(engine: Engine, lock_key: str) -> Iterator[Connection]:
    """A write transaction: ``BEGIN IMMEDIATE`` on SQLite, a transaction advisory lock on ``lock_key`` on PostgreSQL."""
    with engine.connect() as conn:
        conn.execution_options(pmp_write=True)
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(lock_key, 0))))
            yield conn


@database_errors
def ensure_schema(engine: Engine, roles: tuple[str, str] | None = None) -> None:
    """Create the campaign tables and their indexes if missing, and add nullable columns a newer version of this
    module defines to tables an older version created (segment columns on ``campaign_targets``); a no-op when
    everything is there. A missing NOT NULL column cannot be added this way and raises CampaignDBError.

    On PostgreSQL, also the access roles ``roles`` = (staff role, contact role), default the settings'
    ``staff_role`` and ``contact_role``: created if missing, and granted what is missing
    (:func:`pipelines.campaigns.store_access.ensure_access`)."""
    from sqlalchemy import inspect

    from pipelines.campaigns import store_access

    with begin_write(engine, "pmp.campaign_schema") as conn:
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
        if conn.dialect.name == "postgresql":
            store_access.ensure_access(conn, *(roles or store_access.configured_roles()))


__all__ = [
    "CampaignDBError",
    "DECISION_COLUMNS",
    "DatabaseError",
    "EXCLUSION_COLUMNS",
    "RESULT_COLUMNS",
    "SEGMENT_COLUMNS",
    "SEGMENT_SUMMARY_COLUMNS",
    "TARGET_COLUMNS",
    "campaign_exclusions",
    "campaign_results",
    "campaign_runs",
    "campaign_segments",
    "campaign_spec_history",
    "campaign_targets",
    "campaign_decisions",
    "check_database",
    "contact_exports",
    "database_error",
    "database_errors",
    "ensure_schema",
    "list_exports",
    "make_engine",
    "metadata",
    "model_monitoring",
    "safe_url",
]
