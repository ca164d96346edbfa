"""Whole campaign runs under faults, on SQLite and PostgreSQL (``pmp score`` subprocesses on a small trained bank).

- ``kill -9`` (of the process group, pool workers included) at random points of a run, run as production
  Airflow runs it, one process per DAG task: a kill point falls in one task, which restarts from the attempt
  folder its task left, and is killed; also twice inside the write transaction and, on SQLite, a few whole
  ``pmp score`` processes. The campaign database holds each run whole or not at all, a run folder at its final
  name always has its committed database row and all its files, no process is left behind, and a clean rerun
  stores the same list as an uninterrupted run.
- The PostgreSQL server stopped (``pg_ctl stop -m immediate``) while the DAG's ``write`` task is inside its
  transaction, then started again: the task fails with one line naming the database, Airflow's retry succeeds,
  the run is stored once, with one MLflow run.
- 8 concurrent runs of the same and of other campaigns and dates: nothing lost, nothing duplicated, one MLflow run
  per run id and data source, every run folder complete.
- A read-only runs/ folder, a full runs/ file system and a full file system under the SQLite database: exit 1 with
  one line naming the path (or database) and the cause, the earlier run untouched, and a rerun succeeds once there
  is room.

Mounts and the private PostgreSQL cluster need root (as on the development machines and CI).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path

import pandas as pd
import pytest

from pipelines.jobs.campaigns import campaign_run_id
from pipelines.synthetic.bank import SynthConfig, generate_bank
from tests.conftest import PROJECT_ROOT
from tests.integration import faults

pytestmark = pytest.mark.slow

BANK = SynthConfig(customers=1_500, months=6, seed=7, chunk_size=10_000)
CAMPAIGN = "churn-winback"
OTHER = "churn-retention-sms"
# Kills of single DAG-task processes, uniform over the steps' total duration (PM_TEST_KILLS lowers the count for a
# quick pass); on SQLite also a few kills of a whole `pmp score` (one process: run_lock, the attempt swap).
KILLS = int(os.environ.get("PM_TEST_KILLS", "20"))
WHOLE_KILLS = min(4, KILLS)
KILL_SEED = 17
WRITE_KILL_DELAYS = (0.0, 0.2)
STEP_NAMES = [s for s, _ in faults.STEPS]
# The step a whole run is in, after the progress line that ends the step before it (``pmp score``'s own output).
STEP_ENDS = (
    ("validate", re.compile(r"^validation as of ")),
    ("features", re.compile(r"^wide table at ")),
    ("segment", re.compile(r"^lifecycle mix of the base")),
    ("score", re.compile(r"^scored [\d,]+ customers with ")),
    ("select", re.compile(r"^holdout: treatment ")),
    ("write", re.compile(r"^wrote [\d,]+ targets ")),
    ("after", re.compile(r"^run campaign_scoring__")),
)


@dataclass(frozen=True)
class World:
    """A trained bank: lake, MLflow store with a ``churn`` champion, small specs, an uninterrupted ``pmp score``
    (its list is the reference) and the same run as DAG-task processes: each step's duration and the run's
    attempt folder as it was before each step."""

    root: Path
    data: Path
    specs: Path
    tracking_uri: str
    as_of: str
    run_id: str
    seconds: float  # T: one uninterrupted ``pmp score``
    reference: pd.DataFrame  # its stored targets, both groups
    steps: dict = dc_field(default_factory=dict)  # step -> seconds of its process
    snapshots: Path = Path()  # <step>/: the attempt folder before the step (absent: no attempt folder)

    def env(self, data: Path, database_url: str) -> dict[str, str]:
        return {
            **os.environ,
            "PM_DATA_DIR": str(data),
            "PM_CAMPAIGNS_DIR": str(self.specs),
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "PM_DATABASE_URL": database_url,
            "OMP_WAIT_POLICY": "PASSIVE",
        }

    def data_folder(self, path: Path) -> Path:
        """A fresh data folder over the world's lake (symlinked) with its persona model: runs score the same."""
        (path / "segments").mkdir(parents=True)
        (path / "lake").symlink_to(self.data / "lake", target_is_directory=True)
        shutil.copy2(self.data / "segments" / "persona_model.json", path / "segments" / "persona_model.json")
        return path

    def restore(self, data: Path, step: str) -> None:
        """The run's attempt folder in ``data`` as it was before ``step`` (the database and the run's folder stay
        as they are, as for an Airflow retry of the task)."""
        attempt = data / "runs" / f"{self.run_id}.attempt"
        shutil.rmtree(attempt, ignore_errors=True)
        if (self.snapshots / step).is_dir():
            shutil.copytree(self.snapshots / step, attempt)


def run_score(env: dict[str, str], log: Path, *args: str, campaign: str = CAMPAIGN, timeout: float = 300):
    proc = faults.start_score(env, campaign, *args, log=log)
    try:
        proc.wait(timeout=timeout)
    finally:
        faults.kill_group(proc)
    return proc.returncode, log.read_text(encoding="utf-8")


def run_step(env: dict[str, str], step: str, day: str, log: Path, timeout: float = 300):
    proc = faults.start_step(env, step, CAMPAIGN, day, log)
    try:
        proc.wait(timeout=timeout)
    finally:
        faults.kill_group(proc)
    return proc.returncode, log.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    from pipelines.jobs.training import train_churn
    from pipelines.models.propensity import TrainConfig

    root = tmp_path_factory.mktemp("faults")
    data, specs = root / "data", root / "campaigns"
    specs.mkdir()
    for name, small in (
        (CAMPAIGN, ("top_k: 1500", "top_k: 300")),
        (OTHER, ("score_threshold: 0.2", "top_k: 200")),
    ):
        text = (PROJECT_ROOT / "campaigns" / f"{name}.yaml").read_text()
        assert small[0] in text
        (specs / f"{name}.yaml").write_text(text.replace(*small))
    generate_bank(BANK, data, progress=None)
    uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    # A 1,500-customer bank has fewer positives than production's 500-positive label gate asks for.
    train_churn(
        data,
        tracking_uri=uri,
        config=TrainConfig(model_name="churn", seed=7),
        min_positives=20,
        min_negatives=20,
        progress=None,
    )
    partial = World(root, data, specs, uri, "", "", 0.0, pd.DataFrame())
    url = f"sqlite:///{data / 'campaigns.db'}"
    t0 = time.perf_counter()
    code, out = run_score(partial.env(data, url), root / "reference.log")
    seconds = time.perf_counter() - t0
    assert code == 0, out
    (run_id,) = [p.name for p in (data / "runs").glob("campaign_scoring__*") if p.is_dir()]
    as_of = run_id.split("__")[1]
    assert run_id == campaign_run_id(CAMPAIGN, as_of)
    reference = faults.stored_targets(url, run_id)
    assert len(reference) == 300

    # The same run as the DAG runs it, one process a task, in sequence: each step's duration, and the attempt
    # folder before each step. It must store the same list as `pmp score`.
    steps_data = partial.data_folder(root / "steps")
    steps_url = f"sqlite:///{steps_data / 'c.db'}"
    env = partial.env(steps_data, steps_url)
    attempt = steps_data / "runs" / f"{run_id}.attempt"
    snapshots, durations = root / "snapshots", {}
    for step in STEP_NAMES:
        if attempt.is_dir():
            shutil.copytree(attempt, snapshots / step)
        t0 = time.perf_counter()
        code, out = run_step(env, step, as_of, root / f"step-{step}.log")
        durations[step] = time.perf_counter() - t0
        assert code == 0, out
    pd.testing.assert_frame_equal(faults.stored_targets(steps_url, run_id), reference)
    return World(
        **{
            **partial.__dict__,
            "as_of": as_of,
            "run_id": run_id,
            "seconds": seconds,
            "reference": reference,
            "steps": durations,
            "snapshots": snapshots,
        }
    )


def step_of(log: str) -> str:
    """The step a killed whole run was in: the one after the last step whose closing line it printed."""
    step = "validate"
    steps = [s for s, _ in STEP_ENDS] + ["done"]
    for line in log.splitlines():
        for i, (_, ends) in enumerate(STEP_ENDS):
            if ends.search(line):
                step = steps[i + 1]
    return step


def kill_once(env: dict[str, str], log: Path, at: float) -> tuple[str, float]:
    """Start ``pmp score`` and SIGKILL its process group ``at`` seconds after its start; return the step it was
    in (``done`` if it ended first) and the seconds it ran. Fails if a process of the group outlives the kill."""
    t0 = time.perf_counter()
    proc = faults.start_score(env, CAMPAIGN, log=log)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=at)
    ended = proc.poll() is not None
    elapsed = time.perf_counter() - t0
    left = faults.kill_group(proc)
    assert left == [], f"{log.name}: the kill left processes {left}"
    if ended:
        assert proc.returncode == 0, log.read_text(encoding="utf-8")
        return "done", elapsed
    return step_of(log.read_text(encoding="utf-8")), elapsed


def kill_step(world: World, env: dict[str, str], data: Path, step: str, at: float, log: Path) -> bool:
    """Restore the attempt folder as it was before ``step``, start the step's task process and SIGKILL its group
    ``at`` seconds after its start; return whether the kill came first (False: the step had ended, and
    succeeded). Fails if a process of the group outlives the kill."""
    world.restore(data, step)
    proc = faults.start_step(env, step, CAMPAIGN, world.as_of, log)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=at)
    ended = proc.poll() is not None
    left = faults.kill_group(proc)
    assert left == [], f"{log.name}: the kill left processes {left}"
    if ended:
        assert proc.returncode == 0, log.read_text(encoding="utf-8")
    return not ended


def kill_in_write(world: World, env: dict[str, str], data: Path, url: str, delay: float, log: Path) -> str:
    """Kill the write step inside its database transaction: the step pauses as its first row-writing statement
    is about to run (``faults.start_step(pause_in_write=...)``); the kill comes then (``delay`` 0) or ``delay``
    seconds after it is let go on. Returns where the step was: ``in the transaction``, ``committed`` (the run's
    row is stored) or ``ended``."""

    def written_at() -> object:
        return faults.stored_runs(url)["finished_at"].get(world.run_id)

    world.restore(data, "write")
    before = written_at()
    go = log.with_suffix(".go")
    proc = faults.start_step(env, "write", CAMPAIGN, world.as_of, log, pause_in_write=go)
    try:
        deadline = time.monotonic() + 120
        while faults.IN_WRITE not in log.read_text(encoding="utf-8"):
            assert proc.poll() is None, log.read_text(encoding="utf-8")
            assert time.monotonic() < deadline, f"{log.name}: the write step never reached its transaction"
            time.sleep(0.01)
        if delay:
            go.touch()
            time.sleep(delay)
        ended = proc.poll() is not None
    finally:
        left = faults.kill_group(proc)
    assert left == [], f"{log.name}: the kill left processes {left}"
    if ended:
        assert proc.returncode == 0, log.read_text(encoding="utf-8")
        return "ended"
    return "in the transaction" if str(written_at()) == str(before) else "committed"


def assert_consistent(world: World, data: Path, url: str) -> None:
    assert faults.database_problems(url) == []
    assert faults.folder_problems(data / "runs", url) == []


def assert_same_list(world: World, url: str) -> None:
    again = faults.stored_targets(url, world.run_id)
    pd.testing.assert_frame_equal(again, world.reference)


# ------------------------------------------------------------------------------------------------ kill -9


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_kill_9_at_random_points_leaves_no_partial_list_and_a_rerun_gives_the_same_list(
    world, tmp_path, request, backend
):
    data = world.data_folder(tmp_path / "data")
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else f"sqlite:///{data / 'c.db'}"
    env = world.env(data, url)
    rng = random.Random(KILL_SEED)
    # Kill points uniform over the DAG's task processes end to end (as timed in the world): each falls in one
    # step at an offset from the start of that step's process, which is restarted from its own starting state.
    total = sum(world.steps.values())
    landed = {s: [0, 0] for s in STEP_NAMES}  # step -> [kills, of which the step ended first]
    t0 = time.perf_counter()
    for i in range(KILLS):
        at = rng.random() * total
        for step in STEP_NAMES:
            if at < world.steps[step] or step == STEP_NAMES[-1]:
                break
            at -= world.steps[step]
        killed = kill_step(world, env, data, step, at, tmp_path / f"kill-{i}.log")
        landed[step][0] += 1
        landed[step][1] += not killed
        assert_consistent(world, data, url)
    seconds_steps = time.perf_counter() - t0
    # The write step is a small part of the whole, which uniform kills seldom hit inside its transaction: kill
    # there on purpose.
    in_write = []
    for i, delay in enumerate(WRITE_KILL_DELAYS):
        in_write.append(kill_in_write(world, env, data, url, delay, tmp_path / f"write-kill-{i}.log"))
        assert_consistent(world, data, url)
    # A whole `pmp score` (one process: run_lock, the attempt swap) killed at random points of its run.
    whole: dict[str, int] = {}
    if backend == "sqlite":
        duration = world.seconds  # T, updated by a run that ends before its kill (the machine's load varies)
        for i in range(WHOLE_KILLS):
            fraction = rng.random()
            where, ran = kill_once(env, tmp_path / f"whole-kill-{i}.log", at=fraction * duration)
            if where == "done":  # quicker than T: again at the same fraction of this run's duration
                duration = ran
                where, _ = kill_once(env, tmp_path / f"whole-kill-{i}b.log", at=fraction * duration)
            whole[where] = whole.get(where, 0) + 1
            assert_consistent(world, data, url)
    print(
        f"\n{backend}: steps "
        + ", ".join(f"{s} {world.steps[s]:.1f} s" for s in STEP_NAMES)
        + f" (total {total:.1f} s, pmp score T = {world.seconds:.1f} s); {KILLS} step kills in {seconds_steps:.1f} s"
        + ", landed in "
        + ", ".join(f"{s} {n}" + (f" ({e} after it ended)" if e else "") for s, (n, e) in landed.items())
        + f"; write kills {WRITE_KILL_DELAYS} s: {in_write}"
        + (f"; {WHOLE_KILLS} whole-run kills landed in {whole}" if whole else "")
    )
    assert sum(n for n, _ in landed.values()) == KILLS
    if KILLS >= 20:
        assert "in the transaction" in in_write

    code, out = run_score(env, tmp_path / "rerun.log")
    assert code == 0, out
    assert_consistent(world, data, url)
    assert_same_list(world, url)
    final = data / "runs" / world.run_id
    assert not final.with_name(final.name + ".attempt").exists()
    assert not final.with_name(final.name + ".previous").exists()
    # One MLflow run for the run id and lake, however many earlier attempts died around their MLflow logging.
    (mlflow_run,) = faults.mlflow_runs(world.tracking_uri, world.run_id)
    assert mlflow_run.info.status == "FINISHED"


# ------------------------------------------------------------------------------------------ concurrent runs


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_8_concurrent_runs_lose_and_duplicate_nothing(world, tmp_path, request, backend):
    from sqlalchemy import select

    from pipelines.campaigns import store_schema

    data = world.data_folder(tmp_path / "data")
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else f"sqlite:///{data / 'c.db'}"
    env = world.env(data, url)
    earlier = (pd.Timestamp(world.as_of) - pd.DateOffset(months=1)).date().isoformat()
    # Four of the same run id (they take turns on its attempt folder), two of an earlier date, two of another
    # campaign: every writer of the database and of the MLflow store at once.
    jobs = [(CAMPAIGN, ())] * 4 + [(CAMPAIGN, ("--as-of", earlier))] * 2 + [(OTHER, ())] * 2
    t0 = time.perf_counter()
    procs = [
        faults.start_score(env, campaign, *args, log=tmp_path / f"run-{i}.log")
        for i, (campaign, args) in enumerate(jobs)
    ]
    try:
        for proc in procs:
            proc.wait(timeout=600)
    finally:
        for proc in procs:
            faults.kill_group(proc)
    print(f"\n{backend}: 8 concurrent runs in {time.perf_counter() - t0:.1f} s (T = {world.seconds:.1f} s)")
    for i, proc in enumerate(procs):
        assert proc.returncode == 0, (tmp_path / f"run-{i}.log").read_text(encoding="utf-8")

    run_ids = {
        campaign_run_id(CAMPAIGN, world.as_of),
        campaign_run_id(CAMPAIGN, earlier),
        campaign_run_id(OTHER, world.as_of),
    }
    assert_consistent(world, data, url)
    engine = store_schema.make_engine(url)
    t = store_schema.campaign_targets
    with engine.connect() as conn:
        stored = conn.execute(select(t.c.run_id, t.c.customer_id)).all()
        runs = conn.execute(select(store_schema.campaign_runs.c.run_id)).scalars().all()
    engine.dispose()
    assert sorted(runs) == sorted(run_ids)
    assert len(stored) == len(set(stored))  # no duplicated row
    for run_id in run_ids:
        folder = data / "runs" / run_id
        written = set(pd.read_parquet(folder / "targets.parquet")["customer_id"])
        assert {c for r, c in stored if r == run_id} == written  # no lost row
        assert not folder.with_name(run_id + ".attempt").exists()
        (mlflow_run,) = faults.mlflow_runs(world.tracking_uri, run_id)
        assert mlflow_run.info.status == "FINISHED"
    assert not [p for p in (data / "runs").iterdir() if p.name.endswith(".tmp")]


# ------------------------------------------------------------------------------ unwritable or full disk


def hashes(folder: Path) -> dict[str, str]:
    import hashlib

    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def one_line_failure(out: str) -> str:
    lines = [ln for ln in out.splitlines() if ln.startswith("pmp score: ")]
    assert "Traceback" not in out, out
    assert len(lines) == 1, out
    return lines[0]


def test_a_read_only_or_full_disk_fails_in_one_line_and_corrupts_nothing(world, tmp_path):
    faults.need_root()
    data = world.data_folder(tmp_path / "data")
    runs = data / "runs"
    # The state after a succeeded run: its folder and its database row (the world's reference run, copied).
    shutil.copytree(world.data / "runs" / world.run_id, runs / world.run_id)
    final = runs / world.run_id
    before = hashes(final)
    with faults.tmpfs(data / "db", 4096) as db:
        shutil.copy2(world.data / "campaigns.db", db / "campaigns.db")
        url = f"sqlite:///{db / 'campaigns.db'}"
        env = world.env(data, url)

        def intact() -> None:
            assert hashes(final) == before
            assert_consistent(world, data, url)
            assert_same_list(world, url)

        intact()
        # A read-only runs/ folder: refused at the start, before the gates.
        t0 = time.perf_counter()
        with faults.read_only(runs):
            code, out = run_score(env, tmp_path / "read-only.log")
        assert code == 1, out
        assert one_line_failure(out) == (
            f"pmp score: failed: {runs}: Read-only file system "
            "(the file system is read-only: make the folder writable and rerun)"
        )
        assert time.perf_counter() - t0 < 30
        intact()

        # runs/ on a full file system: the run stops where a file no longer fits, naming it.
        shutil.copytree(runs, tmp_path / "runs-before")
        shutil.rmtree(runs)
        with faults.tmpfs(runs, 1024):
            shutil.copytree(tmp_path / "runs-before", runs, dirs_exist_ok=True)
            filler = faults.fill(runs, leave_kb=150)
            code, out = run_score(env, tmp_path / "full-runs.log")
            assert code == 1, out
            line = one_line_failure(out)
            assert line.startswith(f"pmp score: failed: {runs}/"), line
            assert line.endswith(": No space left on device (free some space and rerun)"), line
            intact()
            attempt = runs / (world.run_id + ".attempt")
            assert not [p for p in attempt.rglob("*") if p.name.endswith(".tmp")]  # no half-written file
            filler.unlink()
            shutil.copytree(runs, tmp_path / "runs-after", ignore=shutil.ignore_patterns("filler.bin"))
        shutil.rmtree(runs, ignore_errors=True)
        shutil.copytree(tmp_path / "runs-after", runs)

        # The campaign database on a full file system: the write's transaction fails and rolls back.
        filler = faults.fill(db, leave_kb=0)
        code, out = run_score(env, tmp_path / "full-db.log")
        assert code == 1, out
        line = one_line_failure(out)
        assert line.startswith(f"pmp score: failed: campaign database {url}: "), line
        assert "full" in line, line
        filler.unlink()
        intact()

        # Room again: the rerun succeeds and replaces the run with the same list.
        code, out = run_score(env, tmp_path / "rerun.log")
        assert code == 0, out
        assert_consistent(world, data, url)
        assert_same_list(world, url)
        assert set(hashes(final)) == set(before)
        assert not (runs / (world.run_id + ".attempt")).exists()


# ------------------------------------------------------------------- PostgreSQL stopped during the write


@pytest.mark.postgres
def test_postgresql_stopped_during_write_fails_the_task_cleanly_and_airflows_retry_stores_the_run_once(
    airflow_settings, world, tmp_path, capfd
):
    import threading

    import psycopg

    from pipelines.config import Settings, airflow_environment
    from tests.conftest import local_runner

    runner = local_runner()
    data = world.data_folder(tmp_path / "data")
    dag_id = f"campaign_scoring__{CAMPAIGN}"
    lock_key = f"pmp.campaign_run:{world.run_id}"  # what store.write_run locks inside its transaction
    with faults.private_postgres() as server:
        settings = Settings(
            data_dir=data,
            campaigns_dir=world.specs,
            mlflow_tracking_uri=world.tracking_uri,
            database_url=server.url,
            airflow_home=airflow_settings.airflow_home,
            task_retries=1,
            retry_delay_seconds=3,
        )
        # Deterministic timing: this connection holds the run's write lock, so the write task waits inside its
        # transaction; the server is stopped once it waits, and started again a second later.
        holder = psycopg.connect(server.url, autocommit=False)
        holder.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [lock_key])
        events: list[tuple[str, float]] = []

        def stop_when_the_write_waits() -> None:
            t0 = time.perf_counter()
            with psycopg.connect(server.url, autocommit=True) as watcher:
                while time.perf_counter() - t0 < 300:
                    waiting = watcher.execute(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    ).fetchone()[0]
                    if waiting:
                        break
                    time.sleep(0.05)
                else:
                    return
            events.append(("stop", time.perf_counter()))
            server.stop("immediate")
            time.sleep(1)
            server.start()
            events.append(("started", time.perf_counter()))

        watcher = threading.Thread(target=stop_when_the_write_waits, daemon=True)
        watcher.start()
        try:
            with pytest.MonkeyPatch.context() as mp:
                for key, value in airflow_environment(settings).items():
                    if not key.startswith("AIRFLOW"):
                        mp.setenv(key, value)
                outcome = runner.run_dag(settings, dag_id, pd.Timestamp(world.as_of).date())
        finally:
            watcher.join(timeout=60)
            with contextlib.suppress(psycopg.Error):
                holder.close()
        assert [e for e, _ in events] == ["stop", "started"], events
        out = capfd.readouterr()
        text = out.out + out.err

        states = {t.task_id: t.state for t in outcome.tasks}
        assert set(states.values()) == {"success"}, outcome.describe()
        tries = faults.write_tries(dag_id, outcome.run_id)
        assert tries == {"write": [1, 2]} or tries == {"write": [2]}, tries
        # The failed try: one line naming the database (password masked) and the driver's first line.
        pattern = re.compile(
            rf"DatabaseError: campaign database postgresql\+psycopg://postgres@127\.0\.0\.1:{server.port}"
            r"/postgres: [^\n]+"
        )
        failed = pattern.search(text)
        assert failed, text[-5000:]
        print(f"\nthe write task's failed try: {failed.group(0)}")

        assert faults.database_problems(server.url) == []
        assert faults.folder_problems(data / "runs", server.url) == []
        assert_same_list(world, server.url)
        (mlflow_run,) = faults.mlflow_runs(world.tracking_uri, world.run_id)
        assert mlflow_run.info.status == "FINISHED"
