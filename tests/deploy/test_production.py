"""The platform on Airflow's and MLflow's real components, in the production shape, without a docker engine.

Fresh PostgreSQL databases hold Airflow's metadata, MLflow's store and the campaign database. ``mlflow server`` runs on
PostgreSQL; ``airflow db migrate``, the API server, the scheduler (LocalExecutor) and the DAG processor are started by
``pipelines.cli.services``, the code behind ``pmp airflow standalone``. Every server binds 127.0.0.1 on a free port.
churn_training is triggered through the REST API v2 as the simple auth manager's admin; its champion asset event
(naming the version and the as-of date) must trigger the campaign DAG, whose run must land in the campaign database as
of that date, with the training runs and the ``champion`` alias in the MLflow server. Everything started is stopped
also on failure; the failure message carries the end of every component's log and of the failed task's log, and the
test's folder (kept by pytest) has them all.

Two things keep the scheduler from adding runs of its own:

- The DAGs start paused (Airflow's default). With ``catchup=False`` an unpaused DAG runs its latest past schedule
  point at once, so the test first triggers churn_training for exactly that point (``next_dagrun_logical_date``,
  with the lake's end as the ``as_of`` param), then unpauses it: the scheduler finds the run there and moves on.
- The test's copy of the campaign spec is scheduled on 29 February: its latest past occurrence (2024) is before the
  DAGs' start date (2025), so the time schedule adds no run before 2028 and the only campaign run is the
  asset-triggered one.

It prints the times of the production path: trigger -> churn_training done, -> campaign list written, and the DAG
processor's parse time of the DAG folder. The last two tests run ``pmp airflow standalone`` and ``pmp mlflow ui`` as
a user of a fresh clone does (by path, nothing activated) and check they serve on 127.0.0.1 only and stop cleanly.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.cli import services, supervise
from pipelines.config import Settings
from pipelines.data import storage
from tests.conftest import POSTGRES_URL, PROJECT_ROOT

pytestmark = [pytest.mark.deploy, pytest.mark.slow]

CAMPAIGN = "churn-retention-sms"
CAMPAIGN_DAG = f"campaign_scoring__{CAMPAIGN}"
TRAINING_DAG = "churn_training"
# On a 2-core machine churn_training takes about a minute and the campaign DAG about as long; the margins are for a
# busy CI machine.
DAGS_PARSED_TIMEOUT = 120
CHURN_TIMEOUT = 420
CAMPAIGN_TIMEOUT = 300

# Intervals the test waits on, tuned down: the scheduler's loop, the DAG bundle's refresh. Files are not re-parsed
# during the test (nothing changes them), so the re-parse interval goes up: each parse costs CPU the tasks need.
AIRFLOW_TEST_SETTINGS = {
    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__PARALLELISM": "4",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
    "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
    "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "10",
    "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
}


@pytest.fixture
def databases():
    """Three fresh PostgreSQL databases (airflow, mlflow, campaigns) on the test server, as SQLAlchemy URLs;
    dropped afterwards, their connections ended first."""
    if os.environ.get("PM_SKIP_POSTGRES") == "1":
        pytest.skip("PM_SKIP_POSTGRES=1")
    import psycopg
    from sqlalchemy import make_url

    base = make_url(os.environ.get("PM_TEST_POSTGRES_URL", POSTGRES_URL)).set(drivername="postgresql")
    try:
        admin = psycopg.connect(
            base.render_as_string(hide_password=False), autocommit=True, connect_timeout=5
        )
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {base!r}: {exc}\nStart it, point PM_TEST_POSTGRES_URL at a server, "
            "or set PM_SKIP_POSTGRES=1 to skip the PostgreSQL tests.",
            pytrace=False,
        )
    prefix = f"pmp_deploy_{uuid.uuid4().hex[:10]}"
    names = {role: f"{prefix}_{role}" for role in ("airflow", "mlflow", "campaigns")}
    with admin:
        try:
            for name in names.values():
                admin.execute(f'CREATE DATABASE "{name}"')
            yield {
                role: base.set(drivername="postgresql+psycopg", database=name).render_as_string(
                    hide_password=False
                )
                for role, name in names.items()
            }
        finally:
            for name in names.values():
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class AirflowApi:
    """The REST API v2 of the running API server, as the admin user, and the task logs under its home."""

    url: str
    token: str
    home: Path

    def call(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200,)) -> Any:
        status, answer = supervise.http_json(
            f"{self.url}/api/v2{path}", method=method, body=body, token=self.token, timeout=30
        )
        if status not in ok:
            raise AssertionError(f"{method} /api/v2{path} answered {status}: {answer}")
        return answer

    def tasks(self, dag_id: str, run_id: str) -> list[dict]:
        return self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]

    def describe(self, dag_id: str, run_id: str, log_lines: int = 60) -> str:
        """Each task's state, then the end of the log of every task that failed."""
        tasks = sorted(self.tasks(dag_id, run_id), key=lambda t: t.get("start_date") or "~")
        lines = [f"{dag_id} {run_id}:"] + [f"  {t['task_id']:<18} {t['state']}" for t in tasks]
        for t in tasks:
            if t["state"] in ("failed", "upstream_failed", "up_for_retry"):
                for log in self.task_logs(dag_id, run_id, t["task_id"]):
                    lines += [f"----- {log} -----", supervise.tail(log, log_lines)]
        return "\n".join(lines)

    def task_logs(self, dag_id: str, run_id: str, task_id: str) -> list[Path]:
        folder = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        return sorted(folder.rglob("*.log")) if folder.is_dir() else []

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            run = self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
            if run["state"] == "success":
                return run
            if run["state"] == "failed":
                raise AssertionError(f"{dag_id} run failed\n{self.describe(dag_id, run_id)}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{dag_id} run still {run['state']} after {timeout:.0f} s\n{self.describe(dag_id, run_id)}"
                )
            time.sleep(1)


def one_campaign(folder: Path) -> Path:
    """A campaigns folder with a copy of the churn SMS campaign, time-scheduled on 29 February (see the module's
    docstring), so the only DAG listening to churn_champion is this one and its only run the asset-triggered one."""
    spec = yaml.safe_load((PROJECT_ROOT / "campaigns" / f"{CAMPAIGN}.yaml").read_text(encoding="utf-8"))
    spec["schedule"] = "0 6 29 2 *"
    folder.mkdir()
    (folder / f"{CAMPAIGN}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return folder


def wait_for_dags(api: AirflowApi, dag_ids: list[str], timeout: float) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    while True:
        found = {}
        for dag_id in dag_ids:
            status, dag = supervise.http_json(f"{api.url}/api/v2/dags/{dag_id}", token=api.token)
            if status == 200:
                found[dag_id] = dag
        if len(found) == len(dag_ids):
            return found
        if time.monotonic() > deadline:
            errors = api.call("GET", "/importErrors")
            raise AssertionError(
                f"DAGs not parsed within {timeout:.0f} s: missing {sorted(set(dag_ids) - set(found))}; "
                f"import errors: {errors}"
            )
        time.sleep(1)


def wait_for_asset_run(api: AirflowApi, dag_id: str, timeout: float) -> dict:
    """The first asset-triggered run of ``dag_id``, once it exists."""
    deadline = time.monotonic() + timeout
    while True:
        runs = api.call("GET", f"/dags/{dag_id}/dagRuns?order_by=run_after")["dag_runs"]
        triggered = [r for r in runs if r["run_type"] == "asset_triggered"]
        if triggered:
            return triggered[0]
        if time.monotonic() > deadline:
            raise AssertionError(
                f"no asset-triggered run of {dag_id} within {timeout:.0f} s; its runs: {runs}"
            )
        time.sleep(1)


def seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


@pytest.mark.postgres
def test_churn_champion_triggers_the_campaign_on_the_real_components(bank, tmp_path, databases):
    t_test = time.monotonic()
    lake_end = storage.lake_end(bank / "lake")
    data = tmp_path / "data"
    data.mkdir()
    for part in ("lake", "truth"):  # the session's bank, read only; runs/ and the rest are this test's
        (data / part).symlink_to(bank / part, target_is_directory=True)
    mlflow_port = supervise.free_port()
    airflow_port = supervise.free_port()
    assert mlflow_port != airflow_port
    mlflow_url = f"http://{supervise.LOCALHOST}:{mlflow_port}"
    settings = Settings(
        data_dir=data,
        campaigns_dir=one_campaign(tmp_path / "campaigns"),
        mlruns_dir=tmp_path / "mlruns",
        airflow_home=tmp_path / "airflow",
        database_url=databases["campaigns"],
        mlflow_tracking_uri=mlflow_url,
        task_retries=0,
        retry_delay_seconds=1,
    )
    # Nothing of this process's Airflow, MLflow or platform settings leaks into the components.
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PM_", "MLFLOW_"))}
    # As `make test` sets it: LightGBM's threads wait passively, or a fit slows ~10x while a core is busy elsewhere.
    clean.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env = services.airflow_service_environment(
        settings,
        airflow_port,
        overrides={**AIRFLOW_TEST_SETTINGS, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": databases["airflow"]},
        base=clean,
    )
    timings: dict[str, float] = {}
    with supervise.Supervisor(tmp_path / "logs", env, say=print) as supervisor:
        try:
            # The MLflow server starts while Airflow migrates its database; start_airflow waits for all.
            supervisor.start(
                services.mlflow_server(databases["mlflow"], tmp_path / "mlflow-artifacts", mlflow_port),
                wait=False,
            )
            started = services.start_airflow(supervisor, airflow_port, triggerer=False)
            timings |= {f"{name} (from its start)": seconds for name, seconds in started.items()}
            api = AirflowApi(
                services.airflow_url(airflow_port),
                services.airflow_token(airflow_port, env),
                settings.airflow_home,
            )
            _trigger_and_check(api, settings, lake_end, timings, t_test)
            t_stop = time.monotonic()
        except Exception as exc:
            pytest.fail(
                f"{type(exc).__name__}: {exc}\n\n{supervisor.tails()}\n\neverything is kept in {tmp_path}",
                pytrace=False,
            )
    timings["stopping every server"] = time.monotonic() - t_stop
    timings["test total (servers stopped)"] = time.monotonic() - t_test
    print("\ndeploy timings (s):\n" + "\n".join(f"  {name:<58} {sec:7.1f}" for name, sec in timings.items()))


def _trigger_and_check(
    api: AirflowApi, settings: Settings, lake_end: date, timings: dict[str, float], t_test: float
) -> None:
    """Trigger churn_training through the REST API, wait for it and for the campaign run its champion event
    triggers, then check Airflow's record, the campaign database and the MLflow server; adds to ``timings``."""
    dags = wait_for_dags(api, [TRAINING_DAG, CAMPAIGN_DAG], DAGS_PARSED_TIMEOUT)
    timings["test start -> DAGs parsed"] = time.monotonic() - t_test
    run = api.call(
        "POST",
        f"/dags/{TRAINING_DAG}/dagRuns",
        {
            "dag_run_id": f"deploy_test__{lake_end}",
            "logical_date": dags[TRAINING_DAG]["next_dagrun_logical_date"],
            "conf": {"as_of": lake_end.isoformat()},
        },
    )
    t_trigger = time.monotonic()
    for dag_id in (TRAINING_DAG, CAMPAIGN_DAG):
        assert api.call("PATCH", f"/dags/{dag_id}", {"is_paused": False})["is_paused"] is False

    trained = api.wait_for_run(TRAINING_DAG, run["dag_run_id"], CHURN_TIMEOUT)
    timings["REST trigger -> churn_training success (polled)"] = time.monotonic() - t_trigger
    training_tasks = {t["task_id"]: t for t in api.tasks(TRAINING_DAG, run["dag_run_id"])}
    assert training_tasks["publish_champion"]["state"] == "success", api.describe(
        TRAINING_DAG, run["dag_run_id"]
    )

    campaign_run = wait_for_asset_run(api, CAMPAIGN_DAG, CAMPAIGN_TIMEOUT)
    campaign_run = api.wait_for_run(CAMPAIGN_DAG, campaign_run["dag_run_id"], CAMPAIGN_TIMEOUT)
    timings["REST trigger -> campaign run success (polled)"] = time.monotonic() - t_trigger
    campaign_tasks = {t["task_id"]: t for t in api.tasks(CAMPAIGN_DAG, campaign_run["dag_run_id"])}
    timings["churn_training run, start -> end"] = seconds_between(trained["start_date"], trained["end_date"])
    timings["churn_training end -> campaign run start"] = seconds_between(
        trained["end_date"], campaign_run["start_date"]
    )
    timings["campaign run, start -> end"] = seconds_between(
        campaign_run["start_date"], campaign_run["end_date"]
    )
    timings["churn_training start -> campaign list written"] = seconds_between(
        trained["start_date"], campaign_tasks["write"]["end_date"]
    )
    parsed = api.call("GET", "/dags?limit=100")["dags"]
    by_file = {d["fileloc"]: d["last_parse_duration"] or 0.0 for d in parsed}
    timings[f"DAG folder parse, dag-processor ({len(by_file)} DAG files)"] = sum(by_file.values())
    for path, seconds in sorted(by_file.items()):
        timings[f"  {Path(path).name}"] = seconds

    # Triggered by churn_training's champion event, and by nothing else.
    assert campaign_run["run_type"] == "asset_triggered", campaign_run
    events = api.call(
        "GET", f"/dags/{CAMPAIGN_DAG}/dagRuns/{campaign_run['dag_run_id']}/upstreamAssetEvents"
    )["asset_events"]
    assert [(e["source_dag_id"], e["source_run_id"], e["source_task_id"]) for e in events] == [
        (TRAINING_DAG, run["dag_run_id"], "publish_champion")
    ], events
    assert events[0]["uri"] == "model://churn/champion"
    assert set(campaign_tasks) == {
        "validate",
        "features",
        "segment",
        "score",
        "select",
        "write",
        "refresh_online",
    }
    assert {t["state"] for t in campaign_tasks.values()} == {"success"}, campaign_tasks

    # The event names the new champion and the training's as-of date, which the campaign run scores as of.
    version = _check_mlflow(settings.mlflow_tracking_uri)
    assert events[0]["extra"]["version"] == version, events
    assert events[0]["extra"]["as_of"] == lake_end.isoformat(), events
    _check_campaign_database(settings.database_url, lake_end)


def _check_campaign_database(url: str, as_of: date) -> None:
    """The campaign database holds exactly one run, succeeded, as of ``as_of``, with its treatment and holdout
    targets."""
    from sqlalchemy import func, select

    from pipelines.campaigns import store_schema

    engine = store_schema.make_engine(url)
    try:
        with engine.connect() as conn:
            runs = conn.execute(select(store_schema.campaign_runs)).mappings().all()
            assert [(r["campaign"], r["status"]) for r in runs] == [(CAMPAIGN, "succeeded")], runs
            row = runs[0]
            targets = dict(
                conn.execute(
                    select(store_schema.campaign_targets.c.target_group, func.count())
                    .where(store_schema.campaign_targets.c.run_id == row["run_id"])
                    .group_by(store_schema.campaign_targets.c.target_group)
                ).all()
            )
    finally:
        engine.dispose()
    assert row["model_name"] == "churn"
    assert row["n_treatment"] > 0 and row["n_holdout"] > 0, row
    assert targets == {"treatment": row["n_treatment"], "holdout": row["n_holdout"]}, (targets, row)
    assert row["logical_date"] == as_of, row


def _check_mlflow(url: str) -> str:
    """The MLflow server has the churn_training run(s) and the churn champion alias on one of them; returns the
    champion's version."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=url, registry_uri=url)
    champion = client.get_model_version_by_alias("churn", "champion")
    experiment = client.get_experiment_by_name(TRAINING_DAG)
    assert experiment is not None, "no churn_training experiment on the MLflow server"
    runs = client.search_runs([experiment.experiment_id])
    assert champion.run_id in {r.info.run_id for r in runs}, (champion, [r.info.run_id for r in runs])
    assert all(r.info.status == "FINISHED" for r in runs), [(r.info.run_id, r.info.status) for r in runs]
    assert client.get_run(champion.run_id).data.metrics, "the champion's run has no metrics"
    return str(champion.version)


# ------------------------------------------------------------------------- the commands, from a fresh shell


def fresh_shell(home: Path) -> dict[str, str]:
    """A fresh clone's shell: no virtual environment activated (its bin folder is not on PATH), no platform or
    Airflow settings; ``PM_HOME`` puts the writable folders (.airflow, mlruns, data) under ``home``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "PM_", "MLFLOW_", "VIRTUAL_ENV", "PYTHON", "CONDA"))
    }
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    env["PM_HOME"] = str(home)
    return env


class Command:
    """A ``pmp`` command run as a user runs it (by path, from a fresh shell), its output collected line by line."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        import threading

        self.lines: list[str] = []
        self.process = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True)
        self._reader.start()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, fragment: str, timeout: float) -> str:
        """The first output line holding ``fragment``; fails with the output when the command ends first or the
        time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if fragment in line:
                    return line.strip()
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(
            f"no line with {fragment!r} (exit code {self.process.poll()}); output:\n{self.output}"
        )

    def tree(self) -> list[int]:
        """The command's process and every descendant (the components and their workers)."""
        import psutil

        root = psutil.Process(self.process.pid)
        return [root.pid, *(p.pid for p in root.children(recursive=True))]

    def stop(self, sig: signal.Signals, timeout: float = 60) -> int:
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        finally:
            self._reader.join(5)

    def kill(self) -> None:
        """Last resort after a failed test: the whole tree."""
        if self.process.poll() is None:
            pids = self.tree()
            self.stop(signal.SIGTERM, timeout=30)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def listening(pids: list[int]) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket the processes listen on."""
    import psutil

    found = []
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in pids:
            found.append((conn.laddr.ip, conn.laddr.port))
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


PMP = str(Path(sys.executable).parent / "pmp")


def serving_tree(command: Command, port: int) -> list[int]:
    """The command's process tree, after checking that it listens on 127.0.0.1:``port`` and on no other address
    (Airflow's log servers would listen on 0.0.0.0:8793/8794)."""
    tree = command.tree()
    sockets = listening(tree)
    assert (supervise.LOCALHOST, port) in sockets, sockets
    assert all(address == supervise.LOCALHOST for address, _ in sockets), sockets
    return tree


def assert_all_gone(command: Command, tree: list[int], port: int, stopped: str) -> None:
    """After the command was stopped: it said ``stopped``, no process of its tree lives, the port is free."""
    assert stopped in command.output
    assert not [pid for pid in tree if alive(pid)], command.output
    assert not supervise.port_taken(port)


def test_pmp_airflow_standalone_from_a_fresh_shell_serves_on_localhost_and_stops_on_sigterm(tmp_path):
    port = supervise.free_port()
    command = Command([PMP, "airflow", "standalone", "--port", str(port)], fresh_shell(tmp_path), tmp_path)
    try:
        banner = command.wait_for("Airflow UI:", timeout=180)
        home = tmp_path / ".airflow"
        passwords = home / "simple_auth_manager_passwords.json.generated"
        assert banner.startswith(f"Airflow UI: http://127.0.0.1:{port}")
        assert f"user admin, password in {passwords}" in banner
        health = supervise.http_json(f"http://127.0.0.1:{port}/api/v2/monitor/health")[1]
        assert {health[c]["status"] for c in ("scheduler", "dag_processor", "triggerer")} == {"healthy"}, (
            health
        )
        password = json.loads(passwords.read_text())["admin"]
        status, token = supervise.http_json(
            f"http://127.0.0.1:{port}/auth/token",
            method="POST",
            body={"username": "admin", "password": password},
        )
        assert status == 201 and token["access_token"], (status, token)
        # The project's DAGs, read from the checkout by components started without activating anything.
        status, dag = supervise.http_json(
            f"http://127.0.0.1:{port}/api/v2/dags/churn_training", token=token["access_token"]
        )
        deadline = time.monotonic() + 60
        while status != 200 and time.monotonic() < deadline:
            time.sleep(1)
            status, dag = supervise.http_json(
                f"http://127.0.0.1:{port}/api/v2/dags/churn_training", token=token["access_token"]
            )
        assert status == 200 and dag["fileloc"] == str(PROJECT_ROOT / "dags" / "churn_training.py"), dag
        tree = serving_tree(command, port)
        assert command.stop(signal.SIGTERM) == 0, command.output
    finally:
        command.kill()
    assert_all_gone(command, tree, port, "Airflow stopped")
    logs = {p.name for p in (tmp_path / ".airflow" / "services").iterdir()}
    assert logs == {
        f"{name}.log" for name in ("db-migrate", "api-server", "scheduler", "dag-processor", "triggerer")
    }


def test_pmp_mlflow_ui_from_a_fresh_shell_serves_the_store_on_localhost_and_stops_on_ctrl_c(tmp_path):
    port = supervise.free_port()
    command = Command([PMP, "mlflow", "ui", "--port", str(port)], fresh_shell(tmp_path), tmp_path)
    try:
        line = command.wait_for("MLflow UI:", timeout=120)
        assert line.startswith(f"MLflow UI: http://127.0.0.1:{port}")
        assert f"MLflow server over sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}" in command.output
        status, found = supervise.http_json(
            f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search",
            method="POST",
            body={"max_results": 5},
        )
        assert status == 200 and [e["name"] for e in found["experiments"]] == ["Default"], found
        tree = serving_tree(command, port)
        assert command.stop(signal.SIGINT) == 0, command.output
    finally:
        command.kill()
    assert_all_gone(command, tree, port, "MLflow stopped")
