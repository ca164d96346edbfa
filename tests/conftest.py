"""Shared fixtures: synthetic banks generated once per test session."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from pipelines.synthetic.bank import SynthConfig, generate_bank

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"

# A bank big enough for stable rates, small enough to build in a few seconds.
BANK = SynthConfig(customers=20_000, months=12, seed=7, chunk_size=10_000)
DIRTY_BANK = SynthConfig(customers=3_000, months=4, seed=11, chunk_size=1_000, dirty=True)


@pytest.fixture(scope="session")
def bank(tmp_path_factory) -> Path:
    """Data folder of a clean 20k-customer, 12-month bank (lake/ and truth/)."""
    out = tmp_path_factory.mktemp("bank")
    generate_bank(BANK, out, progress=None)
    return out


@pytest.fixture(scope="session")
def dirty_bank(tmp_path_factory) -> Path:
    """Data folder of a small bank with every fault class of ``--dirty`` injected."""
    out = tmp_path_factory.mktemp("dirty_bank")
    generate_bank(DIRTY_BANK, out, progress=None)
    return out


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"public data sets not available: {SHARED_DATA} is absent")
    return SHARED_DATA


def local_runner():
    """``dags/_local_run.py`` (the dag.test() runner lives beside the DAGs: ``pipelines`` never imports Airflow)."""
    import importlib
    import sys

    dags = str(PROJECT_ROOT / "dags")
    if dags not in sys.path:
        sys.path.append(dags)
    return importlib.import_module("_local_run")


POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def postgres_url():
    """URL of a fresh, empty PostgreSQL schema on the test server (via ``search_path``), dropped afterwards.

    The server is ``PM_TEST_POSTGRES_URL`` (default ``POSTGRES_URL``). CI starts it, so an unreachable server fails
    the test; ``PM_SKIP_POSTGRES=1`` skips instead.
    """
    import os
    import uuid

    if os.environ.get("PM_SKIP_POSTGRES") == "1":
        pytest.skip("PM_SKIP_POSTGRES=1")
    import psycopg
    from sqlalchemy import make_url

    base = make_url(os.environ.get("PM_TEST_POSTGRES_URL", POSTGRES_URL)).set(drivername="postgresql")
    dsn = base.render_as_string(hide_password=False)
    try:
        admin = psycopg.connect(dsn, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {base!r}: {exc}\nStart it (as .ci/run does: "
            "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start), point PM_TEST_POSTGRES_URL "
            "at a server, or set PM_SKIP_POSTGRES=1 to skip the PostgreSQL tests.",
            pytrace=False,
        )
    schema = f"pmp_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            url = base.update_query_dict({"options": f"-csearch_path={schema}"})
            yield url.render_as_string(hide_password=False)
        finally:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(scope="session")
def airflow_settings(tmp_path_factory):
    """Settings whose Airflow home is a fresh, migrated metadata database for this test session (DAG tests).

    Airflow reads its configuration when first imported, so this must run before anything imports ``airflow``;
    it overrides any ``AIRFLOW_HOME`` of the shell so a test never touches a developer's Airflow. Only the Airflow
    variables stay set for the session (DAGs unpaused at creation, so asset events queue their consumers): tasks
    read the platform's ``PM_*`` settings at run time, and each test sets those itself (``Platform`` in
    ``tests/integration/test_dags.py``).
    """
    import logging
    import os
    import sys

    airflow_local = local_runner()
    from pipelines.config import Settings, airflow_environment

    home = tmp_path_factory.mktemp("airflow_home")
    if "airflow" in sys.modules:
        from airflow import configuration

        if Path(configuration.AIRFLOW_HOME).resolve() != home.resolve():
            pytest.fail(
                f"airflow was imported before the airflow_settings fixture ran (AIRFLOW_HOME "
                f"{configuration.AIRFLOW_HOME}); its configuration cannot be redirected to the test home anymore",
                pytrace=False,
            )
    settings = Settings(
        data_dir=home / "unused-data",
        mlruns_dir=home / "unused-mlruns",
        airflow_home=home,
        retry_delay_seconds=1,
    )
    before = dict(os.environ)
    airflow_vars = {k: v for k, v in airflow_environment(settings).items() if k.startswith("AIRFLOW")}
    # As in a deployment where the DAGs are switched on: a new champion queues the campaign DAGs listening to it.
    airflow_vars["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] = "False"
    os.environ.update(airflow_vars)
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    airflow_local.prepare(settings)
    # prepare() also exported the platform settings (PM_*, MLFLOW_TRACKING_URI): take those back.
    for key in set(os.environ) - set(before):
        if not key.startswith("AIRFLOW"):
            del os.environ[key]
    yield settings
    for key in set(os.environ) - set(before):
        if key.startswith("AIRFLOW"):
            del os.environ[key]
    for key, value in before.items():
        if key.startswith("AIRFLOW"):
            os.environ[key] = value


# The slowest modules first (seconds of one worker, measured idle): `--dist loadfile` hands modules to the two
# workers in collection order, so starting with the longest lets the short ones fill in and both workers finish
# together (longest processing time first) instead of one worker starting the fault module near the end.
SLOW_FIRST = (
    "tests/integration/test_faults.py",  # ~560 s
    "tests/deploy/test_production.py",  # ~260 s
    "tests/integration/test_churn_training.py",  # ~170 s
    "tests/integration/test_dags.py",  # ~160 s
    "tests/integration/test_monitoring.py",  # ~130 s
    "tests/integration/test_campaign_models.py",
    "tests/integration/test_value_bank.py",
    "tests/integration/test_decide.py",  # ~45 s: a champion, a batch run, a served decision service
    "tests/web/test_browser.py",
    "tests/integration/test_retail_loop.py",
    "tests/unit/test_cli_errors.py",
)


def pytest_collection_modifyitems(config, items) -> None:
    rank = {path: i for i, path in enumerate(SLOW_FIRST)}
    items.sort(
        key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank))
    )  # stable: the rest keep order


REDIS_SERVER = "/usr/bin/redis-server"


@pytest.fixture
def redis_url(tmp_path):
    """A real redis-server on a free port of 127.0.0.1, stopped at teardown (also when the test fails)."""
    if not shutil.which(REDIS_SERVER):
        pytest.fail(f"{REDIS_SERVER} is not installed (apt-get install redis-server)", pytrace=False)
    port = _free_port()
    args = [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    server = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"redis-server did not start on port {port}", pytrace=False)
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
