"""docker/: the compose deployment, checked without a Docker engine.

The compose file is interpolated from ``docker/.env.example`` the way compose does it (secrets left empty there get
distinct stand-in values), validated against the Compose Specification's JSON schema (vendored in ``schema/``), and
its wiring checked: variables, health checks, dependencies, the configuration every Airflow component must share,
volumes, profiles, the PostgreSQL init script against the URLs, the Dockerfile against pyproject.toml, and the
.dockerignore. The image, the build context and the init scripts are checked in ``test_image.py``; the fixtures
that parse the files are in ``conftest.py``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.deploy.compose_files import (
    COMPOSE,
    DOCKER,
    ENV_EXAMPLE,
    INIT_SQL,
    SCHEMA,
    VARIABLE,
    MissingVariable,
    active_services,
    command_words,
    depends_on,
    dockerfile_instructions,
    environment,
    final_stage,
    health_active,
    interpolated,
    is_one_shot,
    postgres_urls,
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


# ==================================================================================================== staff app
STAFF_APP = "staff-app"
# Every container that reads campaign specs (the DAG files, the tasks, pmp) or writes them (the staff app's builder).
SPEC_READERS = (*AIRFLOW_COMPONENTS, "airflow-init", "pmp", STAFF_APP)


def test_the_staff_app_serves_on_localhost_with_its_own_session_key(raw, services, example):
    assert STAFF_APP in services, f"{COMPOSE.name} has no {STAFF_APP} service"
    app = services[STAFF_APP]
    assert not app.get("profiles"), (
        f"{STAFF_APP} must start with the default services, not in {app['profiles']}"
    )
    assert app.get("image") == services["pmp"]["image"] and app.get("user") == services["pmp"]["user"], (
        f"{STAFF_APP} must run the project's image as the same user as pmp"
    )
    # The pmp service's entrypoint runs `pmp <command words>`.
    assert command_words(app, "entrypoint") == command_words(services["pmp"], "entrypoint"), (
        f"{STAFF_APP} must start through the pmp entrypoint"
    )
    words = command_words(app)
    assert words[:1] == ["serve"] and "--port" in words and "--host" in words, f"{STAFF_APP} runs pmp {words}"
    assert words[words.index("--host") + 1] == "0.0.0.0", (
        "inside its container the app must listen on every address"
    )
    port = words[words.index("--port") + 1]

    # Published on 127.0.0.1 unless PM_BIND_ADDRESS says otherwise, also when .env lacks the variable.
    written = raw["services"][STAFF_APP]["ports"]
    assert len(written) == 1 and written[0].rsplit(":", 1)[-1] == port, (
        f"{STAFF_APP} must publish the port it serves ({port}): {written}"
    )
    unset = {key: value for key, value in example.items() if key not in ("PM_BIND_ADDRESS", "STAFF_APP_PORT")}
    assert interpolated(written[0], unset) == f"127.0.0.1:8000:{port}", (
        f"by default {STAFF_APP} must be published as 127.0.0.1:8000 only, not {interpolated(written[0], unset)!r}"
    )
    assert app["ports"] == [f"127.0.0.1:{example['STAFF_APP_PORT']}:{port}"], app["ports"]

    assert health_active(app) and str(app.get("restart")) == "unless-stopped", app.get("healthcheck")
    probe = " ".join(app["healthcheck"]["test"][1:])
    assert re.search(rf"http://(127\.0\.0\.1|localhost):{port}/login\b", probe), (
        f"{STAFF_APP}'s health check must ask the sign-in page on the port it serves ({port}): {probe!r}"
    )

    written_env = environment(raw["services"][STAFF_APP])
    assert re.fullmatch(r"\$\{PM_WEB_SECRET_KEY:\?[^}]+\}", written_env.get("PM_WEB_SECRET_KEY", "")), (
        f"{STAFF_APP} must require PM_WEB_SECRET_KEY (${{PM_WEB_SECRET_KEY:?...}}), has "
        f"{written_env.get('PM_WEB_SECRET_KEY')!r}"
    )
    assert "PM_WEB_SECRET_KEY" in example and not example["PM_WEB_SECRET_KEY"]
    with pytest.raises(MissingVariable, match="PM_WEB_SECRET_KEY"):
        interpolated(raw["services"][STAFF_APP], {**example, "CAMPAIGNS_DB_PASSWORD": "x"})

    env = environment(app)
    scheduler = environment(services["airflow-scheduler"])
    for key in ("PM_DATABASE_URL", "MLFLOW_TRACKING_URI"):
        assert env.get(key) == scheduler[key], f"{STAFF_APP} must use the tasks' {key}, has {env.get(key)!r}"
    leaked = sorted(key for key in env if key.startswith("AIRFLOW__"))
    assert not leaked, f"{STAFF_APP} is no Airflow component and needs none of Airflow's secrets: {leaked}"

    for target, condition in (
        ("postgres", "service_healthy"),
        ("campaigns-init", ONE_SHOT_CONDITION),
        ("mlflow", "service_healthy"),
    ):
        assert depends_on(app).get(target, {}).get("condition") == condition, (
            f"{STAFF_APP} must depend on {target} ({condition})"
        )


def test_campaign_specs_and_the_data_are_volumes_the_staff_app_shares(compose, services, image_env):
    specs_dir, data_dir = image_env["PM_CAMPAIGNS_DIR"], image_env["PM_DATA_DIR"]
    app = volume_mounts(services[STAFF_APP])
    assert app.get(data_dir) == "pm-data", (
        f"{STAFF_APP} must mount pm-data at {data_dir}: its users (web/) and the run folders it shows"
    )
    source = app.get(specs_dir)
    assert source and source in (compose.get("volumes") or {}), (
        f"{STAFF_APP} must mount a named volume at PM_CAMPAIGNS_DIR={specs_dir} (the builder writes specs there), "
        f"has {app}"
    )
    for name in SPEC_READERS:
        if name in services:
            assert volume_mounts(services[name]).get(specs_dir) == source, (
                f"{name} must mount {source} at {specs_dir}: the specs the staff app saves are read there"
            )
    for name in ("airflow-dag-processor", "airflow-scheduler"):
        assert name in services and volume_mounts(services[name]).get(data_dir) == "pm-data", name

    # A new volume is a copy of the image's folder: group 0 must be able to write it (any AIRFLOW_UID).
    made_writable = [
        rest
        for word, rest in final_stage(dockerfile_instructions())
        if word == "RUN" and re.search(r"chmod -R g\+rwX .*" + re.escape(specs_dir) + r"(\s|$)", rest)
    ]
    assert made_writable, f"the image must make {specs_dir} writable by group 0 (chmod -R g+rwX)"


# ============================================================================================ decision service
DECIDE = "decide"


def test_the_decision_service_serves_on_localhost_with_the_tasks_stores(raw, services, example):
    assert DECIDE in services, f"{COMPOSE.name} has no {DECIDE} service"
    service = services[DECIDE]
    assert not service.get("profiles"), f"{DECIDE} must start with the default services"
    assert service.get("image") == services["pmp"]["image"], f"{DECIDE} must run the project's image"
    assert command_words(service, "entrypoint") == command_words(services["pmp"], "entrypoint")
    words = command_words(service)
    assert words[:2] == ["decide", "serve"] and words[words.index("--host") + 1] == "0.0.0.0", words
    port = words[words.index("--port") + 1]
    written = raw["services"][DECIDE]["ports"]
    unset = {key: value for key, value in example.items() if key not in ("PM_BIND_ADDRESS", "DECIDE_PORT")}
    assert [interpolated(w, unset) for w in written] == [f"127.0.0.1:8100:{port}"], written
    probe = " ".join(service["healthcheck"]["test"][1:])
    assert re.search(rf"http://(127\.0\.0\.1|localhost):{port}/health\b", probe), probe
    # The same stores as the tasks that refresh its snapshot and read out its decisions; no Airflow secrets.
    env, scheduler = environment(service), environment(services["airflow-scheduler"])
    for key in ("PM_DATABASE_URL", "MLFLOW_TRACKING_URI", "PM_ONLINE_STORE"):
        assert key in scheduler and env.get(key) == scheduler[key], f"{DECIDE} must use the tasks' {key}"
    assert not [key for key in env if key.startswith("AIRFLOW__")]
    mounts = {str(v).split(":")[1] for v in raw["services"][DECIDE]["volumes"]}
    assert {"/opt/airflow/data", "/opt/airflow/campaigns"} <= mounts, mounts
