"""Run identity: a run is (command or DAG, as-of date, campaign) and everything it writes is keyed by its id."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import pandas as pd

_SAFE = re.compile(r"[^a-z0-9_.-]+")


def make_run_id(kind: str, as_of: date | str, campaign: str | None = None) -> str:
    """A deterministic run id such as ``validate__2026-01-01`` or ``campaign_scoring__2026-01-01__winback``.

    The same inputs always give the same id, so re-running a run replaces its outputs instead of adding more.
    """
    parts = [kind, pd.Timestamp(as_of).strftime("%Y-%m-%d")]
    if campaign:
        parts.append(campaign)
    return "__".join(_SAFE.sub("-", p.lower()).strip("-") for p in parts)


def run_dir(runs_root: Path, run_id: str) -> Path:
    """Folder of a run's outputs."""
    return Path(runs_root) / run_id


ATTEMPT_SUFFIX = ".attempt"


def attempt_dir(runs_root: Path, run_id: str) -> Path:
    """Folder the steps of a run's current attempt write into (``<run_id>.attempt``), until :func:`swap_in`
    makes it the run's folder: a failed attempt never touches the files of an earlier succeeded run."""
    return Path(runs_root) / f"{run_id}{ATTEMPT_SUFFIX}"


def swap_in(attempt: Path, final: Path) -> None:
    """Make ``attempt`` the run's folder ``final``: the old folder is renamed aside, the attempt renamed into
    place, then the old one removed (two renames on one file system: a reader sees the old or the new folder
    whole, or for an instant none)."""
    old = final.with_name(final.name + ".previous")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(attempt, final)
    shutil.rmtree(old, ignore_errors=True)


def check_writable(folder: Path) -> None:
    """Raise ``OSError(errno, cause, folder)`` unless a file can be created in ``folder`` (made if missing): a
    read-only or foreign runs/ folder fails a run at its start, not after its heavy work."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".pmp-write-check.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        if exc.errno is None:
            raise
        raise OSError(exc.errno, os.strerror(exc.errno), str(folder)) from exc


@contextmanager
def run_lock(runs_root: Path, run_id: str, say: Callable[[str], None] = print) -> Iterator[None]:
    """Hold the run id's lock (``flock`` on ``runs/.locks/<run_id>.lock``) for the block: two processes running the
    same run id over the same data folder would share its attempt folder, so the second waits for the first. The
    kernel drops the lock with its holder, also on ``kill -9``; the file stays (deleting it would race)."""
    path = Path(runs_root) / ".locks" / f"{run_id}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"run {run_id}: another process is running it over {runs_root}; waiting for it to finish")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
