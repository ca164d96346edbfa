"""What the fault tests (``test_faults.py``) break things with: a private PostgreSQL cluster that a test may stop
and start (the shared server at 127.0.0.1:5432 is never touched), tmpfs and read-only bind mounts, ``pmp score``
as a subprocess in its own process group, and the checks of a campaign database and a runs/ folder after a fault.

Mounts and servers need root (as on the development machines and in CI); every one is undone in a ``finally``,
also when the test fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from sqlalchemy import func, select

from pipelines.campaigns import store, store_schema

PMP = Path(sys.executable).with_name("pmp")
# What a complete campaign run folder holds (charts/ come with the MLflow run, after the swap).
RUN_FILES = (
    "features.parquet",
    "segments.parquet",
    "scores.parquet",
    "model.json",
    "targets.parquet",
    "exclusions.parquet",
    "selection.json",
)


def need_root() -> None:
    import pytest

    if os.geteuid() != 0:
        pytest.skip("mounts and a private PostgreSQL cluster need root")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------ PostgreSQL


def _as_postgres(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["runuser", "-u", "postgres", "--", *args], capture_output=True, text=True, check=check, timeout=60
    )


@dataclass
class PrivatePostgres:
    """A throw-away PostgreSQL cluster on 127.0.0.1:``port`` (trust auth, ``fsync=off``) in ``folder``."""

    folder: Path
    port: int = field(default_factory=free_port)

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def init(self) -> None:
        _as_postgres(
            "initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.folder} "
            "-c fsync=off -c full_page_writes=off"
        )
        log = self.folder / "server.log"
        _as_postgres("pg_ctl", "-D", str(self.data), "-l", str(log), "-o", options, "-w", "-t", "30", "start")

    def stop(self, mode: str = "immediate") -> None:
        """``pg_ctl stop -m immediate`` by default: the server's processes end at once, as in a crash, and the
        next start recovers from the WAL."""
        _as_postgres("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop", check=False)

    def running(self) -> bool:
        return _as_postgres("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A started private cluster, stopped and deleted afterwards (also when the test fails)."""
    import pytest

    if os.environ.get("PM_SKIP_POSTGRES") == "1":
        pytest.skip("PM_SKIP_POSTGRES=1")
    need_root()
    if shutil.which("initdb") is None or shutil.which("pg_ctl") is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not on PATH")
    # Not under pytest's tmp_path: the postgres user must be able to reach the folder.
    folder = Path(tempfile.mkdtemp(prefix="pmp-faults-pg-"))
    shutil.chown(folder, "postgres", "postgres")
    server = PrivatePostgres(folder)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- mounts


@contextmanager
def tmpfs(path: Path, size_kb: int) -> Iterator[Path]:
    """A tmpfs of ``size_kb`` KiB mounted on ``path`` (made if missing), lazily unmounted afterwards."""
    need_root()
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """``path`` made read-only by a read-only bind mount onto itself: root cannot write there either (EROFS),
    where a ``chmod 0555`` would not stop root."""
    need_root()
    subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], check=True)
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(folder: Path, leave_kb: int) -> Path:
    """Fill the file system of ``folder`` with one file until about ``leave_kb`` KiB are left; returns the file."""
    filler = folder / "filler.bin"
    free = shutil.disk_usage(folder).free - leave_kb * 1024
    with open(filler, "wb") as f:
        f.write(b"\0" * max(free, 0))
    return filler


# --------------------------------------------------------------------------------------------- processes


def start_score(env: dict[str, str], campaign: str, *args: str, log: Path) -> subprocess.Popen:
    """``pmp score --campaign NAME`` as a subprocess in a new session (its own process group, so a kill reaches
    its pool workers too), its output unbuffered to ``log``."""
    with open(log, "w", encoding="utf-8") as out:
        return subprocess.Popen(
            [str(PMP), "score", "--campaign", campaign, *args],
            env={**env, "PYTHONUNBUFFERED": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


# The campaign_scoring DAG's tasks, in order, and the ``pipelines.jobs.campaigns`` function each calls (``run_step``).
STEPS = (
    ("validate", "validate_campaign"),
    ("features", "campaign_features"),
    ("segment", "campaign_segments"),
    ("score", "campaign_score"),
    ("select", "campaign_select"),
    ("write", "campaign_write"),
)


# Printed by a step started with ``pause_in_write``: its first row-writing statement is about to run, inside the
# transaction of ``store.write_run`` (the statements before it only check and create the schema).
IN_WRITE = "pmp-test: inside the write transaction"
_PAUSE = """
import os, time
from sqlalchemy import event
from sqlalchemy.engine import Engine
_seen = []
@event.listens_for(Engine, "before_cursor_execute")
def _pause(conn, cursor, statement, parameters, context, executemany):
    if not _seen and statement.lstrip().upper().startswith(("DELETE", "INSERT")):
        _seen.append(statement)
        print({marker!r}, flush=True)
        while not os.path.exists({go!r}):
            time.sleep(0.005)
"""


def start_step(
    env: dict[str, str], step: str, campaign: str, day: str, log: Path, pause_in_write: Path | None = None
) -> subprocess.Popen:
    """One task of the ``campaign_scoring`` DAG as its own process, the way production Airflow runs it (a fresh
    interpreter a task, settings from the environment, the same ``pipelines.jobs.campaigns`` function as the
    task's ``run_step``), in a new session like :func:`start_score`.

    With ``pause_in_write`` (a file path), the process prints :data:`IN_WRITE` when its first row-writing SQL
    statement (the first of ``store.write_run``'s transaction) is about to run and waits there until the file
    exists: a deterministic point inside the write transaction to kill at, nothing else changed."""
    function = dict(STEPS)[step]
    code = (
        "from pipelines.config import load_settings; from pipelines.jobs import campaigns as c; "
        f"c.{function}(load_settings(), {campaign!r}, {day!r}, progress=print)"
    )
    if pause_in_write is not None:
        code = _PAUSE.format(marker=IN_WRITE, go=str(pause_in_write)) + code
    with open(log, "w", encoding="utf-8") as out:
        return subprocess.Popen(
            [sys.executable, "-c", code],
            env={**env, "PYTHONUNBUFFERED": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of the process group ``pgid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces, so split after its closing parenthesis.
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            found.append(int(entry.name))
    return found


def kill_group(proc: subprocess.Popen, timeout: float = 10) -> list[int]:
    """SIGKILL the process group of ``proc``, reap it, and return the group's processes still alive after
    ``timeout`` seconds (none, unless something escaped the kill)."""
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=timeout)
    deadline = time.monotonic() + timeout
    while (left := group_members(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


# ----------------------------------------------------------------------------------------------- checks


def _count(conn, table, run_id: str, **where) -> int:
    query = select(func.count()).select_from(table).where(table.c.run_id == run_id)
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    return conn.execute(query).scalar_one()


def database_problems(url: str) -> list[str]:
    """What is wrong with the campaign database: a run row whose counts do not match its stored targets and
    exclusions, a run that did not succeed, target, exclusion or segment rows without their run row. Empty
    when every run is either absent or complete."""
    engine = store_schema.make_engine(url)
    problems = []
    try:
        store_schema.ensure_schema(engine)
        runs = store.list_runs(engine)
        t, e, s = (
            store_schema.campaign_targets,
            store_schema.campaign_exclusions,
            store_schema.campaign_segments,
        )
        with engine.connect() as conn:
            for run in runs.itertuples():
                counts = {
                    "n_selected": _count(conn, t, run.run_id),
                    "n_treatment": _count(conn, t, run.run_id, target_group="treatment"),
                    "n_holdout": _count(conn, t, run.run_id, target_group="holdout"),
                    "n_excluded": _count(conn, e, run.run_id),
                }
                recorded = {k: int(getattr(run, k)) for k in counts}
                if recorded != counts or run.status != "succeeded" or counts["n_selected"] == 0:
                    problems.append(f"run {run.run_id} ({run.status}): recorded {recorded}, stored {counts}")
                if _count(conn, s, run.run_id) == 0:
                    problems.append(f"run {run.run_id}: no segment rows")
            known = set(runs["run_id"])
            for table in (t, e, s):
                ids = set(conn.execute(select(table.c.run_id).distinct()).scalars())
                if ids - known:
                    problems.append(f"{table.name}: rows of runs without a run row: {sorted(ids - known)}")
    finally:
        engine.dispose()
    return problems


def stored_runs(url: str) -> pd.DataFrame:
    """The campaign database's runs, indexed by run id."""
    engine = store_schema.make_engine(url)
    try:
        store_schema.ensure_schema(engine)
        return store.list_runs(engine).set_index("run_id")
    finally:
        engine.dispose()


def folder_problems(runs_dir: Path, url: str) -> list[str]:
    """What is wrong with the runs/ folder of campaign runs: a run folder at its final name without its
    database row, or incomplete, or whose targets differ in number from the stored run."""
    stored = stored_runs(url)
    problems = []
    for folder in sorted(runs_dir.glob("campaign_scoring__*")):
        if not folder.is_dir() or folder.name.endswith((".attempt", ".previous")):
            continue
        missing = [f for f in RUN_FILES if not (folder / f).is_file()]
        if missing:
            problems.append(f"{folder.name}: missing {missing}")
        if folder.name not in stored.index:
            problems.append(f"{folder.name}: a run folder without its database row")
        elif not missing:
            rows = len(pd.read_parquet(folder / "targets.parquet", columns=["customer_id"]))
            if rows != int(stored.loc[folder.name, "n_selected"]):
                problems.append(
                    f"{folder.name}: {rows} targets in the folder, {stored.loc[folder.name, 'n_selected']} stored"
                )
    return problems


def stored_targets(url: str, run_id: str) -> pd.DataFrame:
    """Every target row of a run (both groups), by customer, as stored."""
    from pipelines.campaigns.score import HOLDOUT, TREATMENT

    engine = store_schema.make_engine(url)
    try:
        rows = store.read_targets(engine, run_id.rsplit("__", 1)[1], run_id, groups=(TREATMENT, HOLDOUT))
    finally:
        engine.dispose()
    return rows.sort_values("customer_id", ignore_index=True)


def mlflow_runs(tracking_uri: str, run_id: str) -> list:
    """The active MLflow runs (experiment ``campaign_scoring``) of a campaign run id, all data sources."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name("campaign_scoring")
    if experiment is None:
        return []
    return client.search_runs([experiment.experiment_id], f"tags.pmp_run_id = '{run_id}'", max_results=100)


def write_tries(dag_id: str, run_id: str) -> dict[str, list[int]]:
    """Try numbers Airflow recorded per task that ran more than once (archived tries and the current one)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.taskinstancehistory import TaskInstanceHistory
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        history = session.execute(
            select(
                TaskInstanceHistory.task_id, TaskInstanceHistory.try_number, TaskInstanceHistory.state
            ).where(TaskInstanceHistory.dag_id == dag_id, TaskInstanceHistory.run_id == run_id)
        ).all()
        current = session.execute(
            select(TaskInstance.task_id, TaskInstance.try_number).where(
                TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id
            )
        ).all()
    tries: dict[str, list[int]] = {}
    for task_id, number, state in history:
        assert str(state) == "failed", (task_id, number, state)
        tries.setdefault(task_id, []).append(number)
    for task_id, number in current:
        if task_id in tries or number > 1:
            tries.setdefault(task_id, []).append(number)
    return {k: sorted(v) for k, v in tries.items()}
