"""The platform's real services as programs: Airflow's components and the MLflow server, started and stopped by
:mod:`pipelines.cli.supervise`. ``pmp airflow standalone``, ``pmp mlflow ui`` and the deploy test run this code.

Every server binds 127.0.0.1. Airflow's scheduler and triggerer run without their log servers (Airflow binds those
to all interfaces); the API server reads the task logs from the log folder. Nothing here imports Airflow or MLflow:
they are run as programs of this environment.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from pipelines.cli.supervise import (
    LOCALHOST,
    Component,
    Probe,
    Say,
    Supervisor,
    child_environment,
    executable,
    free_port,
    http_json,
    http_ok,
    port_taken,
    sigterm_as_interrupt,
)
from pipelines.config import Settings, airflow_environment

SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
DEFAULT_USERS = "admin:admin"


def _say(line: str) -> None:
    print(line, flush=True)  # also when the output is a pipe (| tee) rather than a terminal


# --------------------------------------------------------------------------------------------------- Airflow


def airflow_cli_environment(settings: Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The complete environment of an ``airflow`` command for this project, on ``base`` (default: this process's
    environment).

    The platform's settings (``PM_*``, ``MLFLOW_TRACKING_URI``, ``AIRFLOW_HOME``) are the given ``settings``'; the
    rest of :func:`pipelines.config.airflow_environment` (metadata DB, DAG folder, ...) applies where ``base`` does
    not set the variable (a PostgreSQL metadata DB given from outside wins). ``PYTHONPATH`` gets the DAG folder
    (``_wiring``) and ``PATH`` this environment's ``bin`` folder."""
    env = dict(os.environ if base is None else base)
    for key, value in airflow_environment(settings).items():
        if key == "AIRFLOW_HOME" or not key.startswith("AIRFLOW"):
            env[key] = value
        else:
            env.setdefault(key, value)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(settings.dags_dir), env.get("PYTHONPATH", "")) if p)
    return child_environment(base=env)


def with_async_metadata_url(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with Airflow's async metadata URL on psycopg 3 for a PostgreSQL metadata database, unless given:
    Airflow derives ``postgresql+asyncpg`` otherwise, and this environment has psycopg 3 (sync and async), not
    asyncpg."""
    env = dict(env)
    url = env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "")
    scheme, _, rest = url.partition(":")
    if scheme.split("+")[0] in ("postgresql", "postgres") and not any(
        k.startswith("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC") for k in env
    ):
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] = f"postgresql+psycopg:{rest}"
    return env


def airflow_service_environment(
    settings: Settings,
    port: int,
    overrides: Mapping[str, str] | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The complete environment of the Airflow components serving this project on ``127.0.0.1:port``:
    :func:`airflow_cli_environment`, LocalExecutor and the simple auth manager unless set, one JWT secret shared by
    all components (the API server checks the tokens the scheduler signs for its tasks), and the execution API on
    the API server's address. ``overrides`` are applied last (the deploy test's intervals and databases)."""
    env = airflow_cli_environment(settings, base)
    env.setdefault("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
    env.setdefault("AIRFLOW__CORE__AUTH_MANAGER", SIMPLE_AUTH_MANAGER)
    env.setdefault("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", DEFAULT_USERS)
    env.setdefault("AIRFLOW__API_AUTH__JWT_SECRET", secrets.token_urlsafe(32))
    # The LocalExecutor forks all its workers at start (Airflow's default: 32); the tasks here use every core.
    env.setdefault("AIRFLOW__CORE__PARALLELISM", str(max(4, os.cpu_count() or 1)))
    env["AIRFLOW__API__HOST"] = LOCALHOST
    env["AIRFLOW__API__PORT"] = str(port)
    env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"{airflow_url(port)}/execution/"
    env.update(overrides or {})
    return with_async_metadata_url(env)


def airflow_url(port: int) -> str:
    return f"http://{LOCALHOST}:{port}"


def heartbeat_after_start(health_url: str, component: str) -> Probe:
    """Ready when Airflow's health endpoint reports ``component`` (``scheduler``, ``dag_processor``,
    ``triggerer``) healthy with a heartbeat newer than the component's start (not a previous run's job)."""

    def probe(started: datetime) -> bool:
        status, health = http_json(health_url, timeout=2.0)
        if status != 200 or not isinstance(health, dict):
            return False
        info = health.get(component) or {}
        beat = info.get(f"latest_{component}_heartbeat")
        if info.get("status") != "healthy" or not beat:
            return False
        when = datetime.fromisoformat(str(beat))
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return when >= started

    return probe


def airflow_components(port: int, *, triggerer: bool = True, timeout: float = 180.0) -> list[Component]:
    """api-server (on 127.0.0.1:port), scheduler, dag-processor and (optionally) triggerer, in starting order.

    The scheduler and triggerer run with ``--skip-serve-logs``: their log servers bind all interfaces (Airflow
    hard-codes the host); on one machine the API server reads the task logs from the log folder directly."""
    airflow = executable("airflow")
    base = airflow_url(port)
    health = f"{base}/api/v2/monitor/health"
    components = [
        Component(
            "api-server",
            (airflow, "api-server", "--host", LOCALHOST, "--port", str(port)),
            http_ok(health),
            timeout,
            base,
        ),
        Component(
            "scheduler",
            (airflow, "scheduler", "--skip-serve-logs"),
            heartbeat_after_start(health, "scheduler"),
            timeout,
        ),
        Component(
            "dag-processor",
            (airflow, "dag-processor"),
            heartbeat_after_start(health, "dag_processor"),
            timeout,
        ),
    ]
    if triggerer:
        components.append(
            Component(
                "triggerer",
                (airflow, "triggerer", "--skip-serve-logs"),
                heartbeat_after_start(health, "triggerer"),
                timeout,
            )
        )
    return components


def start_airflow(
    supervisor: Supervisor, port: int, *, triggerer: bool = True, say: Say = _say
) -> dict[str, float]:
    """``airflow db migrate``, then every component of :func:`airflow_components` at once (none needs another to
    start; the probes of the others ask the API server), waited for; returns the seconds each took."""
    seconds = {"db-migrate": supervisor.run("db-migrate", (executable("airflow"), "db", "migrate"))}
    say(f"  metadata database migrated ({seconds['db-migrate']:.1f} s)")
    for component in airflow_components(port, triggerer=triggerer):
        supervisor.start(component, wait=False)
    return seconds | supervisor.wait_ready(say)


def password_file(env: Mapping[str, str]) -> Path:
    """Where the simple auth manager keeps the generated passwords (as ``SimpleAuthManager
    .get_generated_password_file`` decides)."""
    configured = env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE")
    if configured:
        return Path(configured)
    return Path(env["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"


def airflow_token(port: int, env: Mapping[str, str], user: str = "admin", timeout: float = 30.0) -> str:
    """A JWT for the REST API: ``POST /auth/token`` with ``user``'s password from the password file."""
    passwords = json.loads(password_file(env).read_text(encoding="utf-8"))
    deadline = time.monotonic() + timeout
    while True:
        status, body = http_json(
            f"{airflow_url(port)}/auth/token",
            method="POST",
            body={"username": user, "password": passwords[user]},
        )
        if status in (200, 201) and isinstance(body, dict):
            return str(body["access_token"])
        if time.monotonic() > deadline:
            raise RuntimeError(f"POST /auth/token as {user} answered {status}: {body}")
        time.sleep(1)


def _check_port(port: int, option: str = "--port") -> None:
    if port_taken(port):
        raise ValueError(
            f"port {port} on {LOCALHOST} is already in use (another Airflow or MLflow?): stop it, or pass "
            f"another port, e.g. {option} {free_port()}"
        )


def airflow_standalone(settings: Settings, port: int = 8080, say: Say = _say) -> int:
    """``pmp airflow standalone``: this project's Airflow (API server and UI, scheduler, DAG processor, triggerer)
    on 127.0.0.1:``port`` until Ctrl-C; returns 0, or raises :class:`ComponentDied` when a component dies."""
    _check_port(port)
    env = airflow_service_environment(settings, port)
    home = Path(env["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    log_dir = home / "services"
    say(
        f"Airflow for this project: DAGs {settings.dags_dir}, home {home}\n"
        f"  metadata database {env['AIRFLOW__DATABASE__SQL_ALCHEMY_CONN']}\n"
        f"  component logs in {log_dir}"
    )
    with sigterm_as_interrupt(), Supervisor(log_dir, env, say=say) as supervisor:
        try:
            start_airflow(supervisor, port, say=say)
            say(_airflow_banner(port, env))
            supervisor.wait()
        except KeyboardInterrupt:
            say("stopping Airflow ...")
    say("Airflow stopped")
    return 0


def _airflow_banner(port: int, env: Mapping[str, str]) -> str:
    users = [
        u.split(":")[0] for u in env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", DEFAULT_USERS).split(",")
    ]
    if env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "").lower() == "true":
        login = "no login (simple_auth_manager_all_admins)"
    else:
        login = f"user {', '.join(users)}, password in {password_file(env)}"
    return (
        f"Airflow UI: {airflow_url(port)}   ({login})\n"
        "the DAGs start paused unless AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False; Ctrl-C stops everything"
    )


# -------------------------------------------------------------------------------------------------- MLflow


def mlflow_server(
    backend_store_uri: str, artifacts: Path, port: int, *, workers: int = 1, timeout: float = 120.0
) -> Component:
    """``mlflow server`` on 127.0.0.1:``port`` over ``backend_store_uri``, serving artifacts from ``artifacts``."""
    argv = (
        executable("mlflow"),
        "server",
        "--backend-store-uri",
        backend_store_uri,
        "--artifacts-destination",
        str(artifacts),
        "--host",
        LOCALHOST,
        "--port",
        str(port),
        "--workers",
        str(workers),
    )
    url = f"http://{LOCALHOST}:{port}"
    return Component("mlflow-server", argv, http_ok(f"{url}/health"), timeout, url)


def mlflow_ui(settings: Settings, port: int = 5000, say: Say = _say) -> int:
    """``pmp mlflow ui``: the MLflow UI over the settings' tracking store on 127.0.0.1:``port`` until Ctrl-C."""
    uri = settings.mlflow_tracking_uri
    if uri.startswith(("http://", "https://", "databricks")):
        raise ValueError(f"the tracking store is a server already (MLFLOW_TRACKING_URI={uri}): open it there")
    _check_port(port)
    # Where the platform puts the artifacts of a store without a server (models.registry: beside a SQLite file).
    artifacts = settings.mlruns_dir / "artifacts"
    if uri.startswith("sqlite:///"):
        artifacts = Path(uri.removeprefix("sqlite:///")).parent / "artifacts"
        artifacts.parent.mkdir(parents=True, exist_ok=True)
    log_dir = settings.mlruns_dir / "logs"
    component = mlflow_server(uri, artifacts, port)
    say(f"MLflow server over {uri} (log: {log_dir / 'mlflow-server.log'})")
    return serve_until_interrupted(
        component, log_dir, None, f"MLflow UI: {component.url}   Ctrl-C stops it", "MLflow", say
    )


def serve_until_interrupted(
    component: Component, log_dir: Path, env: Mapping[str, str] | None, ready: str, what: str, say: Say
) -> int:
    """Start one server under a :class:`Supervisor`, say ``ready`` once it answers, and keep it until Ctrl-C or
    SIGTERM (or until it dies: :class:`ComponentDied` with the end of its log); then stop it. Returns 0."""
    with sigterm_as_interrupt(), Supervisor(log_dir, env, say=say) as supervisor:
        try:
            supervisor.start(component)
            say(ready)
            supervisor.wait()
        except KeyboardInterrupt:
            say(f"stopping {what} ...")
    say(f"{what} stopped")
    return 0


def model_server(
    model_uri: str, port: int, env_manager: str = "local", *, timeout: float = 300.0
) -> Component:
    """``mlflow models serve`` of ``model_uri`` on 127.0.0.1:``port``. ``env_manager`` "local" serves from this
    environment; "uv" (or "virtualenv") builds the model's own environment from its logged requirements first
    (registered models carry the platform's code, so they need nothing of the project)."""
    argv = (executable("mlflow"), "models", "serve", "-m", model_uri, "--env-manager", env_manager)
    argv += ("-h", LOCALHOST, "-p", str(port))
    url = f"http://{LOCALHOST}:{port}"
    return Component("model-server", argv, http_ok(f"{url}/ping"), timeout, url)


def mlflow_serve(
    settings: Settings,
    model: str,
    alias: str = "champion",
    port: int = 5001,
    env_manager: str = "local",
    say: Say = _say,
) -> int:
    """``pmp mlflow serve MODEL``: ``models:/MODEL@ALIAS`` of the settings' registry answering ``POST
    /invocations`` on 127.0.0.1:``port`` until Ctrl-C. MLflow starts its web server (uvicorn) from PATH, so the
    environment's ``bin`` goes first on it (:func:`child_environment`): nothing needs activating."""
    _check_port(port)
    uri = f"models:/{model}@{alias}"
    env = {
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "MLFLOW_REGISTRY_URI": settings.mlflow_tracking_uri,
    }
    if env_manager == "uv":
        env["UV_PYTHON_DOWNLOADS"] = os.environ.get("UV_PYTHON_DOWNLOADS", "never")
    log_dir = settings.mlruns_dir / "logs"
    component = model_server(uri, port, env_manager)
    say(f"serving {uri} from {settings.mlflow_tracking_uri} (env manager {env_manager}; log: {log_dir})")
    ready = f'POST {component.url}/invocations   (JSON: {{"dataframe_split": ...}}); Ctrl-C stops it'
    return serve_until_interrupted(component, log_dir, child_environment(env), ready, "the model server", say)
