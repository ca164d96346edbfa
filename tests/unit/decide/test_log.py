"""The decision service's log on a real SQLite database: rows queue without waiting, go out in batches (full ones
at once, the rest on the timer), everything is written on close, and a database that is down costs one warning
line and no decision: the rows wait and are written once it is back."""

from __future__ import annotations

import logging
import shutil
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from pipelines.campaigns import store_schema
from pipelines.campaigns.decisions import read_decisions
from pipelines.campaigns.store_frames import FrameValidationError
from pipelines.decide.log import DecisionLog, DecisionLogError, DecisionLogFull

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def row(i: int) -> dict:
    held = i % 4 == 0
    return {
        "decision_id": uuid.UUID(int=i + 1).hex,
        "decided_at": T0 + timedelta(seconds=i),
        "customer_id": 5_000 + i,
        "event_type": "card_payment",
        "event_ts": T0 + timedelta(seconds=i - 1),
        "campaign": "card-upsell",
        "offer": None if held else "card-upsell",
        "channel": "app",
        "target_group": "holdout" if held else "treatment",
        "score": 0.5,
        "expected_value": 3.0,
        "reason": "held out" if held else "best expected value",
        "model_name": "response",
        "model_version": "2",
        "snapshot_as_of": None,
        "latency_ms": 1.0,
    }


def wait_for(condition, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.02)


def stored(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(store_schema.campaign_decisions)).scalar_one()


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'db' / 'campaigns.db'}"


def test_full_batches_go_at_once_and_the_rest_waits_for_the_timer(url):
    engine = store_schema.make_engine(url)
    log = DecisionLog(engine, batch_size=50, flush_seconds=30)
    t0 = time.perf_counter()
    for i in range(120):
        log.add(row(i))
    assert time.perf_counter() - t0 < 1.0  # adding never waits for the database
    wait_for(lambda: log.written == 100)
    time.sleep(0.3)
    assert (log.written, log.pending, stored(engine)) == (100, 20, 100)  # 20 do not make a batch
    assert log.flush() == 20
    assert (log.written, log.pending, stored(engine)) == (120, 0, 120)
    log.close()
    assert read_decisions(engine)["customer_id"].tolist() == [5_000 + i for i in range(120)]  # order kept
    engine.dispose()


def test_the_timer_flushes_a_partial_batch(url):
    with DecisionLog(url, batch_size=500, flush_seconds=0.2) as log:
        for i in range(7):
            log.add(row(i))
        wait_for(lambda: log.written == 7, timeout=5)
        assert log.pending == 0
        assert stored(log.engine) == 7


def test_close_writes_what_is_left_and_is_idempotent(url):
    with DecisionLog(url, batch_size=500, flush_seconds=60) as log:
        for i in range(9):
            log.add(row(i))
        assert log.pending == 9 and log.written == 0
    assert (log.pending, log.written) == (0, 9)
    log.close()  # again: nothing to do, no error
    engine = store_schema.make_engine(url)
    assert stored(engine) == 9
    engine.dispose()
    with pytest.raises(DecisionLogError, match="closed"):
        log.add(row(10))


def test_a_broken_row_is_refused_at_once(url):
    with DecisionLog(url, flush_seconds=60) as log:
        bad = {**row(1), "target_group": "control"}
        with pytest.raises(FrameValidationError, match=r"campaign_decisions\.target_group"):
            log.add(bad)
        assert log.pending == 0


def test_a_database_that_is_down_costs_one_line_and_no_decision(tmp_path, caplog):
    folder = tmp_path / "db"
    url = f"sqlite:///{folder / 'campaigns.db'}"
    engine = store_schema.make_engine(url)  # makes the folder
    shutil.rmtree(folder)  # the database is gone: every connection fails
    caplog.set_level(logging.WARNING, logger="pipelines.decide.log")
    log = DecisionLog(engine, batch_size=10, flush_seconds=0.1)
    for i in range(25):
        log.add(row(i))
    with pytest.raises(store_schema.DatabaseError, match="unable to open database file"):
        log.flush()
    wait_for(lambda: log.failures >= 4)  # the writer keeps trying, flush after flush
    assert log.pending == 25 and log.written == 0
    lines = [r for r in caplog.records if r.name == "pipelines.decide.log"]
    assert len(lines) == 1, [r.getMessage() for r in lines]  # the same cause is said once
    message = lines[0].getMessage()
    assert "\n" not in message and lines[0].exc_info is None
    assert "decision log: 10 decision(s) not written (25 pending" in message
    assert "unable to open database file" in message

    folder.mkdir()  # the database is back
    wait_for(lambda: any("resumed" in r.getMessage() for r in caplog.records))
    assert (log.pending, log.written) == (0, 25)
    assert stored(engine) == 25
    log.close()
    engine.dispose()


def test_a_full_buffer_refuses_new_rows_and_keeps_the_old_ones(tmp_path):
    folder = tmp_path / "db"
    engine = store_schema.make_engine(f"sqlite:///{folder / 'campaigns.db'}")
    shutil.rmtree(folder)
    log = DecisionLog(engine, batch_size=5, flush_seconds=0.05, max_pending=10)
    for i in range(10):
        log.add(row(i))
    with pytest.raises(DecisionLogFull, match=r"10 decisions are waiting .* refused \(1 refused so far\)"):
        log.add(row(10))
    assert (log.pending, log.refused) == (10, 1)
    with pytest.raises(DecisionLogError, match="10 decision\\(s\\) not written"):
        log.close()  # down at close: said, and the rows are still there
    assert log.pending == 10
    folder.mkdir()
    log.close()  # a second close writes them
    assert stored(engine) == 10
    assert set(read_decisions(engine)["customer_id"]) == {5_000 + i for i in range(10)}
    engine.dispose()


def test_many_threads_add_at_once_and_each_decision_is_stored_once(url):
    with DecisionLog(url, batch_size=100, flush_seconds=0.05) as log:

        def add_range(start: int) -> None:
            for i in range(start, start + 250):
                log.add(row(i))

        threads = [threading.Thread(target=add_range, args=(k * 250,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert log.written == 1_000
    engine = store_schema.make_engine(url)
    back = read_decisions(engine)
    assert len(back) == 1_000 and back["decision_id"].is_unique
    engine.dispose()
