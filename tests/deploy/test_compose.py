"""docker/: the compose deployment, checked without a Docker engine.

The compose file is interpolated from ``docker/.env.example`` the way compose does it (secrets left empty there get
distinct stand-in values), validated against the Compose Specification's JSON schema (vendored in ``schema/``), and
its wiring checked: variables, health checks, dependencies, the configuration every Airflow component must share,
volumes, profiles, the PostgreSQL init script against the URLs, the Dockerfile against pyproject.toml, and the
.dockerignore. Where the ``docker compose`` plugin exists, ``docker compose config`` reads the file too; the init
script also runs on a throw-away PostgreSQL cluster when the server binaries are installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.conftest import PROJECT_ROOT
from tests.deploy.compose_files import (
    COMPOSE,
    DOCKER,
    DOCKERIGNORE,
    ENV_EXAMPLE,
    INIT_SQL,
    SCHEMA,
    SCRIPTS,
    VARIABLE,
    MissingVariable,
    active_services,
    command_words,
    copies,
    depends_on,
    dockerfile_env,
    dockerfile_instructions,
    dockerignore_matcher,
    environment,
    final_stage,
    health_active,
    interpolated,
    is_one_shot,
    postgres_urls,
    read_env_file,
    stand_in_env,
    volume_mounts,
    walk_strings,
)

# Variables compose itself reads from .env, not the file's interpolation.
COMPOSE_OWN_VARIABLES = {"COMPOSE_PROFILES"}
AIRFLOW_COMPONENTS = {
    "airflow-apiserver": ["api-server"],
    "airflow-scheduler": ["scheduler"],
    "airflow-dag-processor": ["dag-processor"],
    "airflow-triggerer": ["triggerer"],
    "airflow-worker": ["celery", "worker"],
}
# What every Airflow container must agree on: a component with another executor, database, signing secret, key or
# execution API address fails at run time (tokens rejected, connections unreadable, tasks never picked up).
SHARED_AIRFLOW_SETTINGS = (
    "AIRFLOW__CORE__EXECUTOR",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW__API__SECRET_KEY",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    "AIRFLOW__CORE__AUTH_MANAGER",
    "AIRFLOW__CELERY__BROKER_URL",
    "AIRFLOW__CELERY__RESULT_BACKEND",
    "PM_DATABASE_URL",
    "MLFLOW_TRACKING_URI",
    "PM_TASK_RETRIES",
    "PM_RETRY_DELAY_SECONDS",
    "PM_ALERT_WEBHOOK_URL",
)
# The containers that run tasks: they read and write the lake and the campaign tables and log to MLflow.
TASK_RUNNERS = ("airflow-scheduler", "airflow-worker", "pmp")
CELERY_ONLY = {"redis", "airflow-worker"}
ONE_SHOT_CONDITION = "service_completed_successfully"

# ------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def example() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def env(example) -> dict[str, str]:
    return stand_in_env(example)


@pytest.fixture(scope="module")
def compose(raw, env) -> dict[str, Any]:
    try:
        return interpolated(raw, env)
    except MissingVariable as exc:
        pytest.fail(
            f"{COMPOSE.name} requires ${{{exc.name}}}, which {ENV_EXAMPLE.name} does not define",
            pytrace=False,
        )


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def image_env() -> dict[str, str]:
    return dockerfile_env(dockerfile_instructions())


# ==================================================================================================== tests


def test_the_compose_file_follows_the_compose_specification(raw, compose):
    from jsonschema import Draft7Validator

    validator = Draft7Validator(json.loads(SCHEMA.read_text()))
    for label, document in (("as written", raw), ("interpolated from .env.example", compose)):
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
        assert not errors, f"{COMPOSE.name} {label} breaks the compose schema:\n" + "\n".join(
            f"  at {'/'.join(map(str, e.absolute_path)) or '<top>'}: {e.message}" for e in errors[:20]
        )


def test_every_variable_is_in_env_example_and_every_secret_is_required(raw, example):
    used: set[str] = set()
    required: set[str] = set()
    for text in walk_strings(raw):
        for match in VARIABLE.finditer(text):
            name = match["braced"] or match["plain"]
            if name:
                used.add(name)
                if match["op"] in (":?", "?"):
                    required.add(name)
    missing = sorted(used - example.keys())
    assert not missing, f"{COMPOSE.name} reads variables that {ENV_EXAMPLE.name} does not define: {missing}"
    stale = sorted(example.keys() - used - COMPOSE_OWN_VARIABLES)
    assert not stale, f"{ENV_EXAMPLE.name} defines variables {COMPOSE.name} never reads: {stale}"

    secrets = {key for key in example if re.search(r"PASSWORD|SECRET|FERNET", key)}
    assert secrets, f"{ENV_EXAMPLE.name} defines no secrets?"
    shipped = sorted(key for key in secrets if example[key])
    assert not shipped, f"{ENV_EXAMPLE.name} ships values for secrets (leave them empty): {shipped}"
    assert secrets <= required, f"secrets compose does not require: {sorted(secrets - required)}"
    # With the example as it is, compose stops at the first empty secret.
    with pytest.raises(MissingVariable):
        interpolated(raw, example)


def test_every_service_has_a_health_check_or_is_a_one_shot(services):
    for name, service in services.items():
        assert "healthcheck" in service, f"service {name} has no healthcheck (one-shots say `disable: true`)"
        if health_active(service):
            test = service["healthcheck"]["test"]
            assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL"), (
                f"{name}: healthcheck test {test!r}"
            )
            assert str(service.get("restart")) in ("always", "unless-stopped", "on-failure"), (
                f"long-running service {name} has no restart policy (restart: {service.get('restart')!r})"
            )
        else:
            assert is_one_shot(service), (
                f"service {name} disables its health check but is not a one-shot (restart: {service.get('restart')!r})"
            )


def test_dependencies_exist_and_wait_for_the_right_condition(services):
    for name, service in services.items():
        for target, spec in depends_on(service).items():
            assert target in services, f"{name} depends on {target}, which is not a service"
            condition = spec.get("condition")
            if health_active(services[target]):
                assert condition == "service_healthy", (
                    f"{name} must wait for {target} to be healthy (condition: service_healthy), not {condition!r}"
                )
            else:
                assert condition == ONE_SHOT_CONDITION and is_one_shot(services[target]), (
                    f"{name} depends on {target}, which has no health check: it must be a one-shot that {name} "
                    f"waits for with condition {ONE_SHOT_CONDITION}, not {condition!r}"
                )

    # No cycles: a topological order exists.
    remaining = {name: set(depends_on(s)) for name, s in services.items()}
    while remaining:
        ready = [name for name, deps in remaining.items() if not deps & remaining.keys()]
        assert ready, f"depends_on has a cycle among {sorted(remaining)}"
        for name in ready:
            del remaining[name]


def test_each_service_waits_for_what_it_uses(services):
    def waits_for(name: str, target: str, condition: str) -> None:
        spec = depends_on(services[name]).get(target)
        assert spec and spec.get("condition") == condition, f"{name} must depend on {target} ({condition})"

    for name, _key, _url in postgres_urls(services):
        if name != "postgres":
            waits_for(name, "postgres", "service_healthy")
    for name in AIRFLOW_COMPONENTS:
        waits_for(name, "airflow-init", ONE_SHOT_CONDITION)
    for name in TASK_RUNNERS:
        waits_for(name, "campaigns-init", ONE_SHOT_CONDITION)
        waits_for(name, "mlflow", "service_healthy")
    for name in ("airflow-scheduler", "airflow-worker", "airflow-triggerer"):
        waits_for(name, "airflow-apiserver", "service_healthy")
    waits_for("mlflow", "mlflow-init", ONE_SHOT_CONDITION)
    waits_for("airflow-worker", "redis", "service_healthy")


def test_airflow_components_share_one_configuration(services, image_env):
    airflow = {name: s for name, s in services.items() if name.startswith("airflow-")}
    assert set(AIRFLOW_COMPONENTS) | {"airflow-init"} <= airflow.keys(), (
        f"Airflow services: {sorted(airflow)}"
    )
    for name, words in AIRFLOW_COMPONENTS.items():
        command = " ".join(command_words(services[name]))
        # Either the component's words (the image's entrypoint runs airflow with them) or a shell line ending with
        # `exec airflow <words>`.
        assert re.fullmatch(rf"(.* && exec airflow )?{' '.join(words)}", command), (
            f"{name} runs {command!r}, not airflow {' '.join(words)}"
        )

    reference = environment(services["airflow-scheduler"])
    for key in SHARED_AIRFLOW_SETTINGS:
        assert reference.get(key), f"airflow-scheduler does not set {key}"
        differing = {
            n: environment(s).get(key)
            for n, s in airflow.items()
            if environment(s).get(key) != reference[key]
        }
        assert not differing, (
            f"{key} must be the same in every Airflow container; differs in {sorted(differing)}"
        )
    assert reference["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor", (
        "the default executor is the LocalExecutor"
    )

    data_dir = image_env["PM_DATA_DIR"]
    logs_dir = image_env.get("AIRFLOW_HOME", "/opt/airflow") + "/logs"
    for name, service in {**airflow, "pmp": services["pmp"]}.items():
        mounts = volume_mounts(service)
        assert mounts.get(data_dir) == "pm-data", (
            f"{name} must mount the shared volume pm-data at PM_DATA_DIR={data_dir} (the lake and run folders), "
            f"has {mounts}"
        )
        assert mounts.get(logs_dir) == "airflow-logs", f"{name} must mount airflow-logs at {logs_dir}"
        assert service.get("user") == reference_user(services), f"{name} runs as {service.get('user')!r}"
        assert service.get("image") == services["airflow-scheduler"]["image"], f"{name} uses another image"


def reference_user(services: Mapping[str, Any]) -> str:
    return services["airflow-scheduler"]["user"]


def test_urls_point_at_services_and_ports_that_exist(services):
    env = environment(services["airflow-scheduler"])
    execution = urlsplit(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert execution.hostname == "airflow-apiserver" and execution.path == "/execution/", execution.geturl()
    published = [p.rsplit(":", 1)[-1] for p in services["airflow-apiserver"]["ports"]]
    assert str(execution.port) in published, (
        f"the api-server listens on {published}, the URL says {execution.port}"
    )
    assert f":{execution.port}/" in " ".join(services["airflow-apiserver"]["healthcheck"]["test"])

    tracking = urlsplit(env["MLFLOW_TRACKING_URI"])
    mlflow_command = command_words(services["mlflow"])
    assert tracking.hostname == "mlflow", tracking.geturl()
    assert mlflow_command[mlflow_command.index("--port") + 1] == str(tracking.port), (
        f"MLFLOW_TRACKING_URI says port {tracking.port}, the server listens on "
        f"{mlflow_command[mlflow_command.index('--port') + 1]}"
    )
    allowed = mlflow_command[mlflow_command.index("--allowed-hosts") + 1].split(",")
    assert tracking.netloc in allowed, (
        f"MLflow would reject Host {tracking.netloc!r}: --allowed-hosts is {allowed}"
    )

    broker = urlsplit(env["AIRFLOW__CELERY__BROKER_URL"])
    assert (
        broker.hostname == "redis" and broker.password == environment(services["redis"])["REDISCLI_AUTH"]
    ), "the broker URL must point at the redis service with the password redis is started with"
    for name, key, url in postgres_urls(services):
        assert url.port == 5432 and url.username and url.password, f"{name} {key}: {url.geturl()}"


def test_the_init_sql_creates_each_role_and_database_the_urls_use(services):
    sql = INIT_SQL.read_text()
    getenv = dict(
        re.findall(r"^\\getenv\s+(\w+)\s+(\w+)", sql, re.M)
    )  # psql variable -> environment variable
    roles = dict(
        re.findall(r"^CREATE ROLE (\w+) LOGIN PASSWORD :'(\w+)';", sql, re.M)
    )  # role -> psql variable
    databases = dict(re.findall(r"^CREATE DATABASE (\w+) OWNER (\w+)", sql, re.M))  # database -> owner
    closed = set(re.findall(r"^REVOKE ALL ON DATABASE (\w+) FROM PUBLIC;", sql, re.M))
    assert roles and databases, f"{INIT_SQL.name}: no CREATE ROLE / CREATE DATABASE found"

    postgres = services["postgres"]
    init_mounts = [
        item
        for item in postgres.get("volumes", [])
        if item.startswith(f"./postgres/{INIT_SQL.name}:/docker-entrypoint-initdb.d/")
        and item.endswith(".sql:ro")
    ]
    assert init_mounts, (
        f"the postgres service must mount {INIT_SQL.name} read-only into /docker-entrypoint-initdb.d/"
    )
    server_env = environment(postgres)
    used_roles = set()
    for name, key, url in postgres_urls(services):
        role, database = url.username, url.path.lstrip("/")
        used_roles.add(role)
        assert role in roles, f"{name} {key} logs in as {role!r}, which {INIT_SQL.name} does not create"
        assert databases.get(database) == role, (
            f"{name} {key} uses database {database!r}, which {INIT_SQL.name} does not create owned by {role!r}"
        )
        variable = getenv.get(roles[role])
        assert variable, f"{INIT_SQL.name} takes the password of {role} from no \\getenv"
        assert server_env.get(variable) == url.password, (
            f"{name} {key} uses another password for {role} than the postgres service gives {INIT_SQL.name} "
            f"(its {variable})"
        )
    assert used_roles == set(roles), f"roles created but never used: {sorted(set(roles) - used_roles)}"
    assert set(databases) <= closed, (
        f"databases still open to every role (REVOKE ... FROM PUBLIC): {sorted(set(databases) - closed)}"
    )


def test_the_celery_profile_adds_redis_and_a_worker_and_nothing_else_needs_them(services):
    default = active_services(services, set())
    with_celery = active_services(services, {"celery"})
    assert with_celery - default == CELERY_ONLY, f"the celery profile adds {sorted(with_celery - default)}"
    assert {
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "mlflow",
    } <= default
    for name in default:
        for target, spec in depends_on(services[name]).items():
            assert target in default or spec.get("required") is False, (
                f"{name} (always started) depends on {target}, which only the {services[target].get('profiles')} "
                "profile starts"
            )


def test_named_volumes_are_declared_used_and_the_bind_mount_exists(compose, services, image_env):
    declared = set(compose.get("volumes") or {})
    used = set()
    for name, service in services.items():
        for source in volume_mounts(service).values():
            if source.startswith((".", "/", "~")):
                assert (DOCKER / source).exists(), (
                    f"{name} bind-mounts {source}, which does not exist in docker/"
                )
                continue
            assert source in declared, f"{name} mounts volume {source!r}, not declared under volumes:"
            used.add(source)
    assert declared == used, f"declared but unused volumes: {sorted(declared - used)}"

    mlflow = command_words(services["mlflow"])
    artifacts = mlflow[mlflow.index("--artifacts-destination") + 1]
    assert volume_mounts(services["mlflow"]).get(artifacts) == "mlflow-artifacts", (
        f"the MLflow artifacts ({artifacts}) must live on the mlflow-artifacts volume"
    )
    made = " ".join(
        rest for word, rest in final_stage(dockerfile_instructions()) if word == "RUN" and "mkdir" in rest
    )
    for folder in (artifacts, image_env["PM_DATA_DIR"]):
        assert folder in made, (
            f"the image must create {folder}, so that a new volume mounted there is writable"
        )


def test_the_dockerfile_installs_the_pinned_airflow_and_the_lock(image_env):
    instructions = dockerfile_instructions()
    from packaging.requirements import Requirement

    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    lock = tomllib.loads((PROJECT_ROOT / "uv.lock").read_text())
    pin = next(p["version"] for p in lock["package"] if p["name"] == "apache-airflow")
    wanted = next(Requirement(d) for d in project["dependencies"] if Requirement(d).name == "apache-airflow")
    assert wanted.specifier.contains(pin), (
        f"uv.lock's apache-airflow {pin} is outside pyproject.toml's {wanted}"
    )
    python = re.match(r">=\s*(\d+\.\d+)", project["requires-python"])[1]
    base = final_stage(instructions)[0][1]
    assert base == f"apache/airflow:{pin}-python{python}", (
        f"the image is FROM {base}; uv.lock pins apache-airflow {pin} and pyproject.toml asks for Python {python}"
    )
    make_uv = re.search(r"^UV_VERSION\s*:?=\s*(\S+)", (PROJECT_ROOT / "Makefile").read_text(), re.M)[1]
    docker_uv = next(
        rest.split("=", 1)[1]
        for word, rest in instructions
        if word == "ARG" and rest.startswith("UV_VERSION=")
    )
    assert docker_uv == make_uv, (
        f"the Dockerfile exports uv.lock with uv {docker_uv}, the Makefile uses {make_uv}"
    )
    runs = " ".join(rest for word, rest in instructions if word == "RUN")
    assert re.search(r"uv export (?=.*--locked)(?=.*--no-dev)", runs), (
        "uv.lock must be exported --locked --no-dev"
    )
    assert "--no-deps" in runs, (
        "the project's wheel must be installed without dependencies (they come from uv.lock)"
    )

    assert image_env["AIRFLOW__CORE__DAGS_FOLDER"] == image_env["PM_DAGS_DIR"]
    assert image_env["AIRFLOW__CORE__DAG_IGNORE_FILE_SYNTAX"] == "regexp", (
        "dags/.airflowignore is in regexp syntax"
    )
    destinations = {
        sources[0].rstrip("/"): dest.rstrip("/")
        for sources, dest, flags in copies(final_stage(instructions))
        if "from" not in flags
    }
    for folder, setting in (
        ("dags", "PM_DAGS_DIR"),
        ("campaigns", "PM_CAMPAIGNS_DIR"),
        ("expectations", "PM_EXPECTATIONS_DIR"),
    ):
        assert destinations.get(folder) == image_env[setting], (
            f"{folder}/ must be copied to {setting}={image_env[setting]}"
        )

    scripts_dir = destinations["docker/bin"]
    for word in (
        w for s in yaml.safe_load(COMPOSE.read_text())["services"].values() for w in walk_strings(s)
    ):
        for script in re.findall(re.escape(scripts_dir) + r"/([\w.-]+)", word):
            assert (SCRIPTS / script).is_file(), (
                f"{COMPOSE.name} runs {scripts_dir}/{script}; docker/bin/{script} is missing"
            )


def test_the_build_context_keeps_data_and_secrets_out():
    ignored = dockerignore_matcher(DOCKERIGNORE.read_text())
    for path in (
        ".venv/bin/python",
        ".tools/bin/uv",
        "data/lake/customers/part-00000.parquet",
        "mlruns/mlflow.db",
        "mlruns/1/abc/artifacts/model.pkl",
        ".git/HEAD",
        ".airflow/airflow.db",
        "docker/.env",
        "bench/out/synth/lake/x.parquet",
        "pipelines/__pycache__/config.cpython-311.pyc",
        "dags/.env",
    ):
        assert ignored(path), f".dockerignore lets {path} into the build context"
    for sources, _dest, flags in copies(dockerfile_instructions()):
        if "from" in flags:
            continue
        for source in sources:
            path = PROJECT_ROOT / source
            assert path.exists(), f"the Dockerfile copies {source}, which does not exist"
            files = (
                [path]
                if path.is_file()
                else [p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
            )
            assert files, f"the Dockerfile copies {source}, which is empty"
            left_out = [
                str(p.relative_to(PROJECT_ROOT)) for p in files if ignored(str(p.relative_to(PROJECT_ROOT)))
            ]
            assert not left_out, f".dockerignore leaves out files the Dockerfile copies: {left_out[:5]}"


def test_simple_auth_passwords_script_writes_the_admin_password(tmp_path):
    target = tmp_path / "auth" / "passwords.json"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AIRFLOW_ADMIN_USERNAME": "admin",
        "AIRFLOW_ADMIN_PASSWORD": 'pa ss"word',
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(target),
    }
    script = SCRIPTS / "simple-auth-passwords.py"
    done = subprocess.run([sys.executable, script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(target.read_text()) == {"admin": 'pa ss"word'}
    assert target.stat().st_mode & 0o077 == 0, "the password file must be readable by its owner only"
    env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = "someone:admin"
    refused = subprocess.run([sys.executable, script], env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "not listed" in refused.stderr, refused.stderr


def test_init_scripts_parse_and_campaigns_init_creates_the_tables(tmp_path):
    bash = shutil.which("bash")
    assert bash, "bash is needed"
    syntax = subprocess.run([bash, "-n", SCRIPTS / "airflow-init.sh"], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    database = tmp_path / "campaigns.db"
    env = {**os.environ, "PM_DATABASE_URL": f"sqlite:///{database}"}
    done = subprocess.run(
        [sys.executable, SCRIPTS / "campaigns-init.py"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    import sqlalchemy

    tables = set(sqlalchemy.inspect(sqlalchemy.create_engine(f"sqlite:///{database}")).get_table_names())
    assert {"campaign_runs", "campaign_targets"} <= tables, tables


# --------------------------------------------------------------------------- with real tools, when installed


def _docker_compose_available() -> str | None:
    docker = shutil.which("docker")
    if not docker:
        return "the docker CLI is not installed"
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        return f"`docker compose` is not available: {(probe.stderr or probe.stdout).strip().splitlines()[0]}"
    return None


@pytest.mark.parametrize("profiles", ["", "celery,tools"])
def test_docker_compose_config_accepts_the_file(tmp_path, example, profiles):
    reason = _docker_compose_available()
    if reason:
        pytest.skip(f"{reason} (the schema and wiring tests above cover the file)")
    env_file = tmp_path / ".env"
    values = {**stand_in_env(example), "COMPOSE_PROFILES": profiles}
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    done = subprocess.run(
        [
            "docker",
            "compose",
            "--project-directory",
            str(DOCKER),
            "-f",
            str(COMPOSE),
            "--env-file",
            str(env_file),
            "config",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")},
    )
    assert done.returncode == 0, f"docker compose config rejects {COMPOSE.name}: {done.stderr}"


def _postgres_bin() -> Path | None:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_init_sql_isolates_the_roles_on_a_real_server():
    """The init script on a throw-away cluster (as the postgres image runs it): each role reaches its own database
    and may create tables there, and no other database."""
    import psycopg

    bindir, psql = _postgres_bin(), shutil.which("psql")
    if bindir is None or psql is None:
        pytest.skip("the PostgreSQL server binaries (initdb, pg_ctl, psql) are not installed")
    version = subprocess.run([psql, "--version"], capture_output=True, text=True).stdout
    if int(re.search(r"(\d+)", version)[1]) < 15:
        pytest.skip(f"the init script's \\getenv needs psql 15 or newer: {version.strip()}")

    as_owner: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix="pm-initsql-"))
    if os.geteuid() == 0:  # initdb refuses root: run the cluster as the postgres user
        shutil.chown(workdir, user="postgres")
        as_owner = ["runuser", "-u", "postgres", "--"]
    data, port = workdir / "data", _free_port()
    try:
        subprocess.run(
            [
                *as_owner,
                bindir / "initdb",
                "-D",
                data,
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        subprocess.run(
            [
                *as_owner,
                bindir / "pg_ctl",
                "-D",
                data,
                "-l",
                workdir / "server.log",
                "-w",
                "-o",
                f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off",
                "start",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        passwords = {
            "AIRFLOW_DB_PASSWORD": "a-pw",
            "MLFLOW_DB_PASSWORD": "m-pw",
            "CAMPAIGNS_DB_PASSWORD": "c-pw",
        }
        run = subprocess.run(
            [
                psql,
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-f",
                INIT_SQL,
            ],
            env={**os.environ, **passwords},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, f"{INIT_SQL.name} failed: {run.stderr}"
        roles = ("airflow", "mlflow", "campaigns")
        for role in roles:
            for database in (*roles, "postgres"):
                dsn = f"host=127.0.0.1 port={port} user={role} dbname={database}"
                if database == role:
                    with psycopg.connect(dsn, autocommit=True) as conn:
                        conn.execute("CREATE TABLE probe (x int)")
                        conn.execute("DROP TABLE probe")
                else:
                    with pytest.raises(psycopg.OperationalError, match="CONNECT privilege"):
                        psycopg.connect(dsn).close()
        without_airflow = {k: v for k, v in {**os.environ, **passwords}.items() if k != "AIRFLOW_DB_PASSWORD"}
        missing = subprocess.run(
            [
                psql,
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-f",
                INIT_SQL,
            ],
            env=without_airflow,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert missing.returncode != 0 and "AIRFLOW_DB_PASSWORD is not set" in missing.stderr, missing.stderr
    finally:
        subprocess.run(
            [*as_owner, bindir / "pg_ctl", "-D", data, "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(workdir, ignore_errors=True)


def test_constraints_diff_lists_the_packages_the_lock_moved(tmp_path):
    from importlib.metadata import version

    constraints = tmp_path / "constraints.txt"
    constraints.write_text(
        "# header\npandas==0.1.0\nPyYAML=="
        + version("pyyaml")
        + ' ; python_version >= "3.9"\nnot-installed==1.0\n'
    )
    done = subprocess.run(
        [sys.executable, SCRIPTS / "constraints-diff.py", constraints],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines()[1:-1]}
    assert rows == {"pandas": ["0.1.0", version("pandas")]}, done.stdout
    assert done.stdout.splitlines()[-1].startswith("1 of 2 constrained packages at another version"), (
        done.stdout
    )
