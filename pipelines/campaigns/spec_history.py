"""The change history of campaign specs edited in the staff app: one ``campaign_spec_history`` row per change.

A row says who changed which campaign when, how (``created``, ``edited``; ``not_applied`` when the file could not
be replaced after its change was recorded), the sha256 of the file as written and the unified diff of the old and
new YAML (``a/campaigns/X.yaml`` -> ``b/campaigns/X.yaml``). Rows are only ever inserted: on PostgreSQL the staff
role may SELECT and INSERT, nothing else (:mod:`pipelines.campaigns.store_access`). Who may edit is the web app's
business; ``changed_by`` is the identity it passes.

:func:`save_spec` (re-exported by ``pipelines.campaigns.spec_form``, the form's API) is the write that keeps a
spec file and its row together: the row is committed before the file is put in place, so a change never lacks
its row; one save at a time per campaigns folder (a lock on the folder), refused when the file changed since the
editor opened it (optimistic concurrency on the file's sha256).
"""

from __future__ import annotations

import difflib
import hashlib
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from sqlalchemy import Engine, insert, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from pipelines.campaigns.spec import CampaignSpec, SpecError, parse_spec
from pipelines.campaigns.spec_header import read_yaml
from pipelines.campaigns.store_schema import (
    SPEC_ACTIONS,
    begin_write,
    campaign_spec_history,
    database_error,
    database_errors,
)

HISTORY_COLUMNS = tuple(c.name for c in campaign_spec_history.columns)
_DTYPES = {
    "id": "str",
    "changed_at": "datetime64[us, UTC]",
    "changed_by": "str",
    "campaign": "str",
    "action": "str",
    "spec_sha256": "str",
    "diff": "str",
}


def spec_diff(old: str, new: str, campaign: str, folder: str = "campaigns") -> str:
    """The unified diff of a spec file's old and new text (``""`` for a file that did not exist), with the
    file names ``a/<folder>/<campaign>.yaml`` and ``b/<folder>/<campaign>.yaml``; empty when nothing changed."""
    name = f"{folder}/{campaign}.yaml"
    lines = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{name}", f"b/{name}"
    )
    # A last line without a newline would run into the next one: end it, as `diff` does with its marker.
    return "".join(
        line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines
    )


def record_change(
    conn: Connection,
    *,
    campaign: str,
    action: str,
    changed_by: str,
    spec_sha256: str,
    diff: str,
    changed_at: datetime | None = None,
) -> str:
    """Inserts one history row on ``conn`` (inside the caller's transaction) and returns its id (32 hex digits).

    ``action`` is one of ``SPEC_ACTIONS``; ``changed_at`` defaults to now (UTC) and must be timezone-aware."""
    if action not in SPEC_ACTIONS:
        raise ValueError(
            f"campaign_spec_history.action must be one of {', '.join(SPEC_ACTIONS)}, got {action!r}"
        )
    if not changed_by or not changed_by.strip():
        raise ValueError("campaign_spec_history.changed_by: who made the change is required")
    row_id = uuid.uuid4().hex
    conn.execute(
        insert(campaign_spec_history).values(
            id=row_id,
            changed_at=changed_at or datetime.now(UTC),
            changed_by=changed_by,
            campaign=campaign,
            action=action,
            spec_sha256=spec_sha256,
            diff=diff,
        )
    )
    return row_id


def _newest_first(query):
    c = campaign_spec_history.c
    return query.order_by(c.changed_at.desc(), c.id.desc())


@database_errors
def read_history(engine: Engine, campaign: str | None = None, limit: int | None = None) -> pd.DataFrame:
    """The history rows (of one campaign, or all), newest first, at most ``limit`` of them; columns
    ``HISTORY_COLUMNS`` with ``changed_at`` as a UTC timestamp."""
    query = select(campaign_spec_history)
    if campaign is not None:
        query = query.where(campaign_spec_history.c.campaign == campaign)
    query = _newest_first(query)
    if limit is not None:
        query = query.limit(limit)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(_DTYPES)
    out = {}
    for (name, dtype), values in zip(_DTYPES.items(), columns, strict=True):
        series = pd.Series(values, dtype=object)
        out[name] = (
            pd.to_datetime(series, utc=True).astype(dtype) if name == "changed_at" else series.astype(dtype)
        )
    return pd.DataFrame(out, columns=list(_DTYPES))


def who_wrote(conn: Connection, campaign: str, sha256: str) -> tuple[str, datetime] | None:
    """(changed_by, changed_at) of the newest recorded change that left ``campaign``'s file with this sha256, or
    None when no change recorded here produced it (the file was edited outside the staff app)."""
    c = campaign_spec_history.c
    query = (
        select(c.changed_by, c.changed_at)
        .where(c.campaign == campaign, c.spec_sha256 == sha256, c.action != "not_applied")
        .limit(1)
    )
    row = conn.execute(_newest_first(query)).first()
    return None if row is None else (row[0], row[1])


# ----------------------------------------------------------------------------------------------- saving


class SaveRefused(ValueError):
    """A save that would lose or clash with someone's work (the campaign exists, the file changed since it was
    opened, another file declares the name); nothing was written. The message is one line for the page."""


class SaveFailed(RuntimeError):
    """A save that could not be completed (the history row could not be inserted, the file could not be
    replaced); the message says what is on disk and in the history."""


def spec_file_sha256(path: str | Path) -> str | None:
    """The sha256 (hex) of a spec file's bytes; None when there is no such file. The edit page keeps it and
    passes it back to :func:`save_spec` as ``base_sha256``."""
    data = _read_bytes(Path(path))
    return None if data is None else hashlib.sha256(data).hexdigest()


def read_spec_file(path: str | Path) -> tuple[CampaignSpec, str]:
    """The spec in a file and the sha256 of the very bytes it was parsed from (one read, so they agree)."""
    path = Path(path)
    data = _read_bytes(path)
    if data is None:
        raise SpecError(f"{path}: campaign spec not found")
    try:
        parsed = yaml.safe_load(data.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as e:
        raise SpecError(f"{path}: not a valid YAML text file: {e}") from None
    return parse_spec(parsed, str(path)), hashlib.sha256(data).hexdigest()


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


@contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on the campaigns folder (flock on the folder itself): one save at a time on this host,
    from the check of the file's sha256 to the rename."""
    import fcntl

    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def save_spec(
    campaigns_dir: Path,
    spec: CampaignSpec,
    *,
    engine: Any,
    who: str,
    base_sha256: str | None,
    comment: str | None = None,
) -> dict[str, Any]:
    """Writes ``<campaigns_dir>/<spec.name>.yaml`` (:func:`spec_yaml`) and records the change, by ``who``, in
    ``campaign_spec_history``; returns ``{path, sha256, action, diff, history_id}``.

    ``base_sha256`` None creates a campaign (refused if the file exists); otherwise it is the sha256 the editor
    opened, and the save is refused (:class:`SaveRefused`, nothing written) if the file changed since. A name
    another file already declares is refused too. ``comment`` None keeps the file's leading comment lines.
    An edit that changes nothing writes nothing and returns ``action`` "unchanged".

    Order: under a lock on the folder, the new text goes to a temporary file in the same folder (fsync); the
    history row is inserted and committed; then ``os.replace`` puts the file in place (and the folder is
    fsynced). If the insert fails nothing is written; if the rename fails, a ``not_applied`` row follows the
    change's row (best effort) and :class:`SaveFailed` says so. A spec change never lacks its history row.
    """
    from pipelines.campaigns.spec_form import spec_yaml  # the form module re-exports this one

    if not who or not who.strip():
        raise ValueError("save_spec: who is saving is required (the staff app's user)")
    folder = Path(campaigns_dir)
    path = folder / f"{spec.name}.yaml"
    shown = f"{folder.name}/{path.name}"
    with _folder_lock(folder):
        old = _read_bytes(path)
        old_sha = None if old is None else hashlib.sha256(old).hexdigest()
        if base_sha256 is None and old is not None:
            raise SaveRefused(f"campaign {spec.name} already exists: edit it instead")
        if base_sha256 is not None and old is None:
            raise SaveRefused(
                f"{shown} does not exist (removed since you opened it, or the name changed); reload"
            )
        if base_sha256 is not None and old_sha != base_sha256:
            with engine.connect() as conn:
                by = who_wrote(conn, spec.name, old_sha)
            by_text = (
                f"by {by[0]} at {by[1]:%Y-%m-%d %H:%M} UTC" if by else "by an edit outside the staff app"
            )
            raise SaveRefused(f"{shown} changed since you opened it ({by_text}); reload")
        _refuse_duplicate(folder, path, spec.name)

        old_text = "" if old is None else old.decode("utf-8", errors="replace")
        if comment is None:
            comment = "\n".join(ln[1:].removeprefix(" ") for ln in _leading_comment(old_text))
        text = spec_yaml(spec, comment)
        if parse_spec(yaml.safe_load(text), shown) != spec:  # a guard: the file must load as the spec saved
            raise SaveFailed(
                f"{shown} not saved: its YAML would not load as the same spec (a bug in spec_yaml)"
            )
        data = text.encode("utf-8")
        sha = hashlib.sha256(data).hexdigest()
        diff = spec_diff(old_text, text, spec.name, folder.name)
        if old is not None and data == old:
            return {"path": path, "sha256": sha, "action": "unchanged", "diff": "", "history_id": None}
        action = "created" if old is None else "edited"
        mode = path.stat().st_mode & 0o777 if old is not None else None
        tmp = folder / f".{path.name}.{os.getpid()}.tmp"
        try:
            _write_synced(tmp, data, mode)
            try:
                with begin_write(engine, "pmp.campaign_specs") as conn:
                    row_id = record_change(
                        conn, campaign=spec.name, action=action, changed_by=who, spec_sha256=sha, diff=diff
                    )
            except sa_exc.SQLAlchemyError as exc:
                raise SaveFailed(
                    f"{shown} not saved: the change could not be recorded in campaign_spec_history: "
                    f"{database_error(engine, exc)}"
                ) from None
            try:
                os.replace(tmp, path)
                _fsync_folder(folder)
            except OSError as exc:
                _record_not_applied(engine, spec.name, who, old_sha or "", str(exc))
                raise SaveFailed(
                    f"{shown} not saved: it could not be replaced ({exc.strerror or exc}); history row {row_id} "
                    "records the change, followed by a not_applied row"
                ) from None
        finally:
            tmp.unlink(missing_ok=True)
    return {"path": path, "sha256": sha, "action": action, "diff": diff, "history_id": row_id}


def _leading_comment(text: str) -> list[str]:
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return lines


def _refuse_duplicate(folder: Path, path: Path, name: str) -> None:
    """SaveRefused if a spec file other than ``path`` declares campaign ``name`` (unreadable files are skipped:
    the loader reports them)."""
    for other in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        if other.name == path.name:
            continue
        try:
            data = read_yaml(other)
        except SpecError:
            continue
        if isinstance(data, dict) and data.get("name") == name:
            raise SaveRefused(
                f"{folder.name}/{other.name} already declares campaign name {name!r}: choose another name"
            )


def _write_synced(tmp: Path, data: bytes, mode: int | None) -> None:
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666 if mode is None else mode)
    with open(fd, "wb") as f:
        if mode is not None:
            os.fchmod(fd, mode)  # the edited file keeps its permissions (the umask would narrow them)
        f.write(data)
        f.flush()
        os.fsync(fd)


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _record_not_applied(engine: Any, campaign: str, who: str, sha: str, why: str) -> None:
    """Best effort: a row saying the change just recorded did not reach the file (which keeps ``sha``)."""
    try:
        with begin_write(engine, "pmp.campaign_specs") as conn:
            record_change(
                conn, campaign=campaign, action="not_applied", changed_by=who, spec_sha256=sha, diff=why
            )
    except Exception:  # noqa: BLE001 - the caller raises SaveFailed naming the change's row either way
        pass
