"""docker/: the image and the init services, checked without a Docker engine: the Dockerfile against pyproject.toml
and uv.lock, the build context (.dockerignore), the init scripts (run here), and, with real tools where they are
installed, ``docker compose config`` and the PostgreSQL init script on a throw-away cluster. The compose file's
wiring is ``test_compose.py``.
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
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT_ROOT
from tests.deploy.compose_files import (
    COMPOSE,
    DOCKER,
    DOCKERIGNORE,
    INIT_SQL,
    SCRIPTS,
    copies,
    dockerfile_instructions,
    dockerignore_matcher,
    final_stage,
    stand_in_env,
    walk_strings,
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
        pytest.skip(f"{reason} (test_compose.py checks the file against the schema and its wiring)")
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
        # The init script as the entrypoint of the postgres image runs it: psql as the superuser, stop on error.
        init_sql = [psql, "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(port)]
        init_sql += ["-U", "postgres", "-d", "postgres", "-f", INIT_SQL]
        run = subprocess.run(
            init_sql,
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
            init_sql,
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
