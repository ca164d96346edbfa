"""A campaign database that cannot be used fails with ONE line naming the URL (password masked) and the cause:
an unknown role or database, a closed port, a string that is not a URL, a file that is not SQLite, a lock held
past the busy timeout; ``check_database`` finds each before any work, and the store's reads and writes raise the
same ``DatabaseError``."""

from __future__ import annotations

import socket
import sqlite3
import time
from datetime import date

import pandas as pd
import pytest
from sqlalchemy import make_url

from pipelines.campaigns import store, store_frames, store_schema
from pipelines.campaigns.store_schema import DatabaseError, check_database

SECRET = "s3cret-pw"


def closed_port() -> int:
    """A port on 127.0.0.1 nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_one_line(error: BaseException, url_shown: str, cause: str) -> str:
    message = str(error)
    assert "\n" not in message, message
    assert SECRET not in message, message
    assert message.startswith(f"campaign database {url_shown}: "), message
    assert cause in message, message
    return message


def text_file_db(tmp_path) -> str:
    path = tmp_path / "campaigns.db"
    path.write_text("customer_id,score\n1,0.5\n" * 200)
    return f"sqlite:///{path}"


def test_a_text_file_is_not_a_database(tmp_path):
    url = text_file_db(tmp_path)
    with pytest.raises(DatabaseError) as failed:
        check_database(url)
    assert_one_line(failed.value, url, "file is not a database")


def test_a_lock_held_past_the_busy_timeout_names_the_timeout(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'campaigns.db'}"
    check_database(url)  # creates the tables
    monkeypatch.setattr(store_schema, "SQLITE_BUSY_TIMEOUT_S", 0.3)
    holder = sqlite3.connect(tmp_path / "campaigns.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        t0 = time.perf_counter()
        with pytest.raises(DatabaseError) as failed:
            check_database(url)
        assert time.perf_counter() - t0 < 5
    finally:
        holder.rollback()
        holder.close()
    assert_one_line(
        failed.value, url, "database is locked (another writer held it past the busy timeout of 0.3 s)"
    )
    check_database(url)  # released: fine again


def test_a_folder_that_cannot_be_made(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    url = f"sqlite:///{blocker / 'sub' / 'campaigns.db'}"
    with pytest.raises(DatabaseError) as failed:
        check_database(url)
    assert_one_line(failed.value, url, "a-file")


@pytest.mark.parametrize(
    ("url", "shown", "cause"),
    [
        ("not a url", "not a url", "not a database URL (expected sqlite:///PATH or postgresql://"),
        (
            f"mysql://pmp:{SECRET}@db/campaigns",
            "mysql://pmp:***@db/campaigns",
            "unsupported campaign database",
        ),
        (
            f"postgresql+asyncpg://pmp:{SECRET}@db/c",
            "postgresql+asyncpg://pmp:***@db/c",
            "needs the psycopg 3",
        ),
    ],
)
def test_urls_that_cannot_be_used(url, shown, cause):
    with pytest.raises(DatabaseError) as failed:
        check_database(url)
    assert_one_line(failed.value, shown, cause)


def test_an_unparseable_url_still_has_its_password_masked():
    assert store_schema.safe_url(f"postgres ql://pmp:{SECRET}@db/x") == "postgres ql://pmp:***@db/x"


def test_the_store_raises_the_same_error_on_reads_and_writes(tmp_path, monkeypatch):
    url = text_file_db(tmp_path)
    engine = store_schema.make_engine(url)  # lazy: nothing is opened yet
    with pytest.raises(DatabaseError) as failed:
        store.list_runs(engine)
    assert_one_line(failed.value, url, "file is not a database")

    good = f"sqlite:///{tmp_path / 'good.db'}"
    engine = store_schema.make_engine(good)
    store_schema.ensure_schema(engine)
    monkeypatch.setattr(store_schema, "SQLITE_BUSY_TIMEOUT_S", 0.2)
    locked = store_schema.make_engine(good)
    holder = sqlite3.connect(tmp_path / "good.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    targets = pd.DataFrame(
        {"customer_id": [1, 2], "score": [0.9, 0.8], "decile": [1, 1], "rank": [1, 2]}
        | {"target_group": ["treatment", "holdout"]}
    )
    run = store_frames.RunRecord("campaign_scoring__2026-01-01__x", "x", date(2026, 1, 1), "churn", "1")
    try:
        with pytest.raises(DatabaseError) as failed:
            store.write_run(locked, run, targets, None)
    finally:
        holder.rollback()
        holder.close()
    assert_one_line(failed.value, good, "database is locked")
    assert store.list_runs(engine).empty  # nothing half-written
    engine.dispose()
    locked.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("problem", ["unknown role", "unknown database", "closed port"])
def test_postgresql_connection_problems(postgres_url, problem):
    base = make_url(postgres_url).set(query={})
    if problem == "unknown role":
        url, cause = base.set(username="no_such_role", password=SECRET), 'role "no_such_role" does not exist'
    elif problem == "unknown database":
        url, cause = base.set(database="no_such_db", password=SECRET), 'database "no_such_db" does not exist'
    else:
        url, cause = base.set(host="127.0.0.1", port=closed_port(), password=SECRET), "Connection refused"
    text = url.render_as_string(hide_password=False)
    assert SECRET in text
    t0 = time.perf_counter()
    with pytest.raises(DatabaseError) as failed:
        check_database(text)
    assert time.perf_counter() - t0 < 5
    shown = url.set(drivername="postgresql+psycopg").render_as_string(hide_password=True)
    assert "***" in shown
    assert_one_line(failed.value, shown, cause)


@pytest.mark.postgres
def test_postgresql_check_creates_the_tables(postgres_url):
    check_database(postgres_url)
    engine = store_schema.make_engine(postgres_url)
    try:
        assert store.list_runs(engine).empty
    finally:
        engine.dispose()
