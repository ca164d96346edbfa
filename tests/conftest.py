"""Shared fixtures: synthetic banks generated once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.synth import SynthConfig, generate_bank

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
