"""Campaign list exports and their audit: who may export contact details, and how a file is released.

A list export is a run's target list (:func:`pipelines.campaigns.store.read_targets`) made readable
(:func:`readable_list`: reason codes in plain language, a score percentile and probability) and written to CSV,
Parquet or Excel (.xlsx); with contact details it also carries ``full_name``, ``phone`` and ``email`` joined from
the lake's ``customers`` table at export time (the campaign database holds no personal data).

Who may export contact details (:func:`authorise_contact`):

- PostgreSQL: the identity is the connection's ``session_user`` (the role the server authenticated; ``SET ROLE``
  does not change it); it may if it is a member of the contact role (``pg_has_role(session_user, role,
  'MEMBER')``, true for superusers too).
- SQLite (no roles, no authentication): the identity is the OS account the process runs as
  (``pwd.getpwuid(os.getuid())``, not ``$USER``, which anyone can set); it may if it is listed in
  ``PM_CONTACT_USERS``. The audit is then only as trustworthy as the database file's permissions.

Anyone who can read the runs may export without contact details; every export is recorded (``contact_exports`` or
``list_exports``, :mod:`pipelines.campaigns.store_schema`).

How a file is released (:func:`export_list`), so that no contact file exists under its name without a committed
audit row:

1. the frame is written to a hidden temporary file in the destination folder (``.<name>.<random>.partial``),
   created exclusively with mode 0600 (contact exports; set with ``fchmod`` too, so no umask widens or narrows
   it), flushed and fsynced, and its SHA-256 taken;
2. one transaction checks the authorisation again (PostgreSQL), inserts the audit row (who, when, campaign, run,
   groups, rows, the final absolute path, the SHA-256) and commits;
3. only then is the temporary file renamed to the final name (atomic in one folder) and the folder fsynced.

If the insert or the commit fails, the temporary file is removed and the export fails with one line: nothing is
released. The rename comes after the commit rather than inside the transaction because a crash (or a lost
connection) between a rename and a commit would leave the final file without its row; in this order a crash
leaves at most a hidden ``.partial`` file (0600, which ``pmp audit pii`` reports if it lies where it looks) or a
committed row whose file was never put in place (a row without a file releases nothing). A rename that fails after
the commit removes the temporary file and says the row is orphaned.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Engine, Table, insert, inspect, select, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from pipelines.campaigns import store
from pipelines.campaigns.store_schema import (
    begin_write,
    contact_exports,
    database_error,
    database_errors,
    list_exports,
    safe_url,
)
from pipelines.config import Settings
from pipelines.features.plain import format_value, plain_of

CONTACT_COLUMNS = ("full_name", "phone", "email")
EXPORT_SUFFIXES = (".csv", ".parquet", ".xlsx")
REASON_COLUMNS = ("reason_1", "reason_2", "reason_3")
# Models whose score is not a probability (an estimated uplift, random fallback scores): no probability column.
NOT_PROBABILITY_MODELS = ("uplift", "random")
EXCEL_MAX_ROWS = 1_048_575  # an .xlsx sheet holds 1,048,576 rows, one of them the header
CONTACT_FILE_MODE = 0o600
_LOCK_KEY = "pmp.list_exports"


class ExportRefused(RuntimeError):
    """The identity may not export contact details: one line naming it and what would allow it."""


class ExportFailed(RuntimeError):
    """The export could not be released: one line naming the file and the cause."""


@dataclass(frozen=True)
class ExportRecord:
    """What was released: the final file, its audit row and what the row says."""

    table: str  # contact_exports or list_exports
    row_id: str  # the audit row's id (32 hex digits)
    exported_by: str
    file: Path
    n_rows: int
    sha256: str
    run_id: str
    groups: tuple[str, ...]


def os_account() -> str:
    """The name of the OS account this process runs as (from the password database, not ``$USER``)."""
    import pwd

    uid = os.getuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _identity(conn: Connection, web_user: str | None = None) -> str:
    if conn.dialect.name == "postgresql":
        who = conn.execute(text("SELECT session_user")).scalar_one()
        return f"{web_user} (staff app, as {who})" if web_user else who
    return f"{web_user} (staff app)" if web_user else os_account()


def _check_contact(conn: Connection, settings: Settings, web_user: str | None = None) -> str:
    """The identity, if it may export contact details; ExportRefused otherwise. For a staff-app user
    (``web_user``, whose privileged role the app has checked) PostgreSQL still requires the app's own database
    role to be a member of the contact role; on SQLite the app's sign-in is the authentication."""
    if web_user and conn.dialect.name != "postgresql":
        return _identity(conn, web_user)
    who = _identity(conn)
    if conn.dialect.name == "postgresql":
        role = settings.contact_role
        exists = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first()
        if exists is None:
            raise ExportRefused(
                f"{who} may not export contact details: role {role} (PM_CONTACT_ROLE) does not exist on "
                f"{safe_url(conn.engine)}; the schema step creates it when run by a user with CREATEROLE; "
                "nothing was written"
            )
        member = conn.execute(
            text("SELECT pg_has_role(session_user, :r, 'MEMBER')"), {"r": role}
        ).scalar_one()
        if not member:
            raise ExportRefused(
                f"PostgreSQL role {who} may not export contact details: only members of role {role} may "
                f"(an administrator grants it with GRANT {role} TO {who}); nothing was written"
            )
        return _identity(conn, web_user)
    if who not in settings.contact_users:
        listed = ", ".join(settings.contact_users) or "nobody"
        raise ExportRefused(
            f"OS account {who} may not export contact details: it is not in PM_CONTACT_USERS (now: {listed}); "
            "nothing was written"
        )
    return who


@database_errors
def authorise_contact(engine: Engine, settings: Settings, web_user: str | None = None) -> str:
    """The identity exporting (PostgreSQL ``session_user``, SQLite OS account, or a staff-app user) if it may
    export contact details; raises ExportRefused, one line naming it and what grants it, otherwise."""
    with engine.connect() as conn:
        return _check_contact(conn, settings, web_user)


def export_list(
    engine: Engine,
    settings: Settings,
    campaign: str,
    run: str,
    out: Path,
    groups: Sequence[str] = ("treatment",),
    with_contact: bool = False,
    web_user: str | None = None,
) -> ExportRecord:
    """Write a run's readable target list (:func:`readable_list`) to ``out`` (.csv, .parquet or .xlsx) and record
    it; with ``with_contact`` only for an identity :func:`authorise_contact` allows (checked before anything is
    read or written), in mode 0600, released as the module docstring describes. ``web_user``: the staff-app user
    the export is made for (recorded as ``<user> (staff app)``; the app has checked their role). Returns the
    record; raises ExportRefused, ExportFailed, or the store's errors (unknown campaign or run) with nothing
    written."""
    from pipelines.data import storage

    out = Path(out).expanduser().absolute()
    if out.suffix.lower() not in EXPORT_SUFFIXES:
        raise ValueError(f"--out must end in {', '.join(EXPORT_SUFFIXES)}, got {out.name}")
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give a file name ending in {', '.join(EXPORT_SUFFIXES)}")
    if with_contact:
        authorise_contact(engine, settings, web_user)
    groups = tuple(groups)
    run_id, frame = read_list(engine, settings, campaign, run, groups)
    if out.suffix.lower() == ".xlsx" and len(frame) > EXCEL_MAX_ROWS:
        raise ValueError(
            f"{out.name}: {len(frame):,} rows do not fit an Excel sheet ({EXCEL_MAX_ROWS:,} at most); "
            "export to .csv or .parquet"
        )
    if with_contact:
        contact = storage.read_table(
            settings.lake_dir, "customers", columns=["customer_id", *CONTACT_COLUMNS]
        )
        frame = frame.merge(contact, on="customer_id", how="left", validate="one_to_one")
    return _release(engine, settings, frame, out, campaign, run_id, groups, with_contact, web_user)


def read_list(
    engine: Engine,
    settings: Settings,
    campaign: str,
    run: str = "latest",
    groups: Sequence[str] = ("treatment",),
) -> tuple[str, pd.DataFrame]:
    """(run id, the run's target list of ``groups`` as :func:`readable_list` makes it): what an export writes
    before any contact details, and what the staff app previews."""
    run_id = store.resolve_run(engine, campaign, run)
    frame = store.read_targets(engine, campaign, run_id, groups=tuple(groups))
    runs = store.list_runs(engine, campaign)
    model = runs.loc[runs["run_id"] == run_id, "model_name"]
    probability = not model.empty and model.iloc[0] not in NOT_PROBABILITY_MODELS
    return run_id, readable_list(frame, _reason_values(settings, run_id, frame), probability=probability)


def readable_list(
    targets: pd.DataFrame, values: pd.DataFrame | None = None, probability: bool = True
) -> pd.DataFrame:
    """``targets`` (:func:`store.read_targets`) as campaign staff read it: ``reason_1..3`` in plain language from
    the feature catalogue (:mod:`pipelines.features.plain`, with the customer's value from ``values``,
    indexed by customer_id, when it holds the feature), and after ``score`` (kept as stored):

    - ``score_percentile``: 1-100 among the rows of this list, 100 = the highest scores (the share of rows scoring
      at most this one, rounded up), so it rises with the score;
    - ``probability`` (with ``probability``): the calibrated score rounded to 3 decimals (Excel shows it as a
      percentage). Left out for scores that are not probabilities (uplift, random).
    """
    frame = targets.copy()
    for column in REASON_COLUMNS:
        if column in frame.columns:
            frame[column] = _plain_reasons(frame, column, values)
    at = frame.columns.get_loc("score") + 1
    percentile = np.ceil(frame["score"].rank(method="max", pct=True).to_numpy(dtype=np.float64) * 100)
    frame.insert(at, "score_percentile", pd.array(np.clip(percentile, 1, 100), dtype="Int64"))
    if probability:
        frame.insert(at + 1, "probability", frame["score"].astype("float64").round(3))
    return frame


def _plain_reasons(frame: pd.DataFrame, column: str, values: pd.DataFrame | None) -> pd.Series:
    """The plain-language phrase of each row's reason in ``column``, with its value where ``values`` has it."""
    names = frame[column]
    out = pd.Series([None] * len(frame), index=frame.index, dtype=object)
    for name in names.dropna().unique():
        rows = names == name
        plain = plain_of(name)
        if values is not None and name in values.columns:
            customer_values = values[name].reindex(frame.loc[rows, "customer_id"]).to_numpy(dtype=object)
            out[rows] = [format_value(plain, v) for v in customer_values]
        else:
            out[rows] = format_value(plain, None)
    return out


def _reason_values(settings: Settings, run_id: str, targets: pd.DataFrame) -> pd.DataFrame | None:
    """The run's own feature values of the reason features (from ``features.parquet`` in the run's folder,
    the wide table it was scored on), indexed by customer_id; None when the folder no longer has it (the reasons
    then read without values)."""
    import pyarrow.parquet as pq

    from pipelines.data import storage
    from pipelines.runs import run_dir

    path = run_dir(settings.runs_dir, run_id) / "features.parquet"
    if not path.is_file():
        return None
    present = set(pq.read_schema(path).names)
    wanted = set(pd.unique(targets[[c for c in REASON_COLUMNS if c in targets.columns]].to_numpy().ravel()))
    columns = sorted(n for n in wanted if isinstance(n, str) and n in present)
    if not columns or "customer_id" not in present:
        return None
    wide = storage.read_frame(path, columns=["customer_id", *columns])
    wide = wide[wide["customer_id"].isin(targets["customer_id"])]
    return wide.set_index("customer_id")


def _release(
    engine: Engine,
    settings: Settings,
    frame: pd.DataFrame,
    out: Path,
    campaign: str,
    run_id: str,
    groups: tuple[str, ...],
    with_contact: bool,
    web_user: str | None = None,
) -> ExportRecord:
    table = contact_exports if with_contact else list_exports
    out.parent.mkdir(parents=True, exist_ok=True)
    out = out.parent.resolve() / out.name
    partial = out.parent / f".{out.name}.{secrets.token_hex(6)}.partial"
    try:
        _write_new(partial, frame, out.suffix.lower(), CONTACT_FILE_MODE if with_contact else None)
        digest = file_sha256(partial)
        row_id, who = _record(
            engine, settings, table, with_contact, campaign, run_id, groups, len(frame), out, digest, web_user
        )
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    try:
        os.replace(partial, out)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise ExportFailed(
            f"{out}: could not be put in place ({exc.strerror or exc}); row {row_id} of {table.name} records an "
            "export that was not released"
        ) from None
    _fsync_dir(out.parent)
    return ExportRecord(table.name, row_id, who, out, len(frame), digest, run_id, groups)


def _record(
    engine: Engine,
    settings: Settings,
    table: Table,
    with_contact: bool,
    campaign: str,
    run_id: str,
    groups: tuple[str, ...],
    n_rows: int,
    out: Path,
    digest: str,
    web_user: str | None = None,
) -> tuple[str, str]:
    """Inserts the audit row in one committed transaction; returns (row id, identity)."""
    try:
        with begin_write(engine, _LOCK_KEY) as conn:
            who = _check_contact(conn, settings, web_user) if with_contact else _identity(conn, web_user)
            row_id = uuid.uuid4().hex
            values = {
                "id": row_id,
                "exported_at": datetime.now(UTC),
                "exported_by": who,
                "campaign": campaign,
                "run_id": run_id,
                "target_groups": ",".join(groups),
                "n_rows": n_rows,
                "file_path": str(out),
                "sha256": digest,
            }
            conn.execute(insert(table).values(values))
    except sa_exc.DBAPIError as exc:
        cause = str(database_error(engine, exc))
        raise ExportFailed(
            f"{out.name} not written: the export could not be recorded in {table.name}: {cause}"
        ) from None
    return row_id, who


def _write_new(path: Path, frame: pd.DataFrame, suffix: str, mode: int | None) -> None:
    """Writes ``frame`` as ``suffix`` (.csv, .parquet or .xlsx) to a file that must not exist yet, created with
    ``mode`` (None: the umask's default), flushed to disk."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, 0o666 if mode is None else mode)
    if mode is not None:
        os.fchmod(fd, mode)  # the umask only narrows os.open's mode; this makes it exact
    if suffix == ".csv":
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            frame.to_csv(handle, index=False)
            handle.flush()
            os.fsync(handle.fileno())
    else:
        with os.fdopen(fd, "wb") as handle:
            if suffix == ".xlsx":
                _write_excel(handle, frame)
            else:
                frame.to_parquet(handle, index=False)
            handle.flush()
            os.fsync(handle.fileno())


def _write_excel(handle, frame: pd.DataFrame) -> None:
    """One sheet ``list``: a bold header row that stays in view (frozen), columns as wide as their longest text
    (from the first 1,000 rows, at most 60 characters), ``probability`` shown as a percentage."""
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    with pd.ExcelWriter(handle, engine="openpyxl") as writer:
        frame.to_excel(writer, sheet_name="list", index=False)
        sheet = writer.sheets["list"]
        sheet.freeze_panes = "A2"
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        sample = frame.head(1000)
        for i, column in enumerate(frame.columns, start=1):
            longest = sample[column].map(lambda v: 0 if pd.isna(v) else len(str(v)), na_action=None).max()
            width = min(max(len(str(column)), 0 if pd.isna(longest) else int(longest)) + 2, 60)
            sheet.column_dimensions[get_column_letter(i)].width = width
            if column == "probability":
                for (cell,) in sheet.iter_rows(min_row=2, min_col=i, max_col=i):
                    cell.number_format = "0.0%"


def _fsync_dir(folder: Path) -> None:
    """Makes a rename durable; best effort (some file systems cannot fsync a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, as 64 hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@database_errors
def read_exports(engine: Engine, campaign: str | None = None, limit: int | None = None) -> pd.DataFrame:
    """The recorded exports, newest first: the audit columns plus ``contact`` (True for contact exports).
    Reading ``contact_exports`` needs the contact role on PostgreSQL."""
    frames = []
    with engine.connect() as conn:
        for table, contact in ((contact_exports, True), (list_exports, False)):
            query = select(table).order_by(table.c.exported_at.desc())
            if campaign is not None:
                query = query.where(table.c.campaign == campaign)
            if limit is not None:
                query = query.limit(limit)
            rows = conn.execute(query).all()
            frame = pd.DataFrame(rows, columns=[c.name for c in table.columns])
            frames.append(frame.assign(contact=contact))
    frame = pd.concat(frames, ignore_index=True).sort_values("exported_at", ascending=False, kind="stable")
    return frame.head(limit).reset_index(drop=True) if limit is not None else frame.reset_index(drop=True)


@database_errors
def released_exports(engine: Engine) -> dict[Path, set[str]]:
    """Every file recorded in ``contact_exports``: absolute path -> the SHA-256s recorded for it (empty when the
    table does not exist yet)."""
    with engine.connect() as conn:
        if not inspect(conn).has_table(contact_exports.name):
            return {}
        rows = conn.execute(select(contact_exports.c.file_path, contact_exports.c.sha256)).all()
    released: dict[Path, set[str]] = {}
    for path, digest in rows:
        released.setdefault(Path(path), set()).add(digest)
    return released
