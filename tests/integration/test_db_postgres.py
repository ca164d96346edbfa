"""The campaign database on a real PostgreSQL server: the SQLite behaviours, plus the COPY path and locking.

Each test gets a fresh schema (the ``postgres_url`` fixture). The server must be running (CI starts it);
``PM_SKIP_POSTGRES=1`` skips these tests.
"""

from __future__ import annotations

import threading
from datetime import date

import pandas as pd
import pytest
from sqlalchemy import event, make_url, text

from pipelines.campaigns import store, store_frames, store_schema
from tests.unit.campaigns.test_store import (
    InjectedFailure,
    dump_tables,
    fail_at,
    make_exclusions,
    make_run,
    make_targets,
)

pytestmark = pytest.mark.postgres


@pytest.fixture
def engine(postgres_url):
    engine = store_schema.make_engine(postgres_url)
    store_schema.ensure_schema(engine)
    yield engine
    engine.dispose()


def test_tables_live_in_the_test_schema(engine, postgres_url):
    schema = make_url(postgres_url).query["options"].split("=", 1)[1]
    with engine.connect() as conn:
        found = conn.execute(
            text(
                "SELECT table_schema, table_name FROM information_schema.tables WHERE table_name LIKE 'campaign_%'"
            )
        ).all()
    assert sorted(found) == [
        (schema, "campaign_decisions"),
        (schema, "campaign_exclusions"),
        (schema, "campaign_results"),
        (schema, "campaign_runs"),
        (schema, "campaign_segments"),
        (schema, "campaign_spec_history"),
        (schema, "campaign_targets"),
    ]
    store_schema.ensure_schema(engine)  # idempotent on PostgreSQL too
    with engine.connect() as conn:  # the primary key is the index on run_id
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        plan = conn.execute(text("EXPLAIN SELECT * FROM campaign_targets WHERE run_id = 'x'")).scalars().all()
    assert "pk_campaign_targets" in " ".join(plan), plan


def test_roundtrip_keeps_values_dtypes_and_utc_timestamps(postgres_url):
    # A session time zone other than UTC must not shift the stored timestamps.
    url = make_url(postgres_url)
    url = url.update_query_dict({"options": url.query["options"] + " -cTimeZone=Asia/Shanghai"})
    engine = store_schema.make_engine(url.render_as_string(hide_password=False))
    try:
        store_schema.ensure_schema(engine)
        targets = make_targets(10).assign(
            email="someone@example.com",
            rfm_segment="Lost",
            value_tier="low",
            lifecycle_stage="dormant",
            persona="revolver",
        )
        store.write_run(engine, make_run(), targets, make_exclusions([100, 101]))

        got = store.read_targets(engine, "winback", groups=("treatment", "holdout"))
        expected = targets[list(store_schema.TARGET_COLUMNS)].astype(
            {c: "str" for c in store_schema.TARGET_COLUMNS[4:]}
        )
        expected.insert(0, "run_id", "campaign__winback__2026-01-01")
        pd.testing.assert_frame_equal(got, expected.astype({"run_id": "str"}))
        assert got["score"].tolist() == targets["score"].tolist(), "floats must round-trip exactly"
        assert store.read_exclusions(engine, "campaign__winback__2026-01-01")["detail"].isna().tolist() == [
            True,
            False,
        ]

        run = store.list_runs(engine).iloc[0]
        assert run.created_at == pd.Timestamp(make_run().created_at) and str(run.created_at.tz) == "UTC"
        assert (run.n_selected, run.n_treatment, run.n_holdout, run.n_excluded) == (10, 8, 2, 2)
        assert store.group_counts(engine, "campaign__winback__2026-01-01") == {"treatment": 8, "holdout": 2}
    finally:
        engine.dispose()


def test_rows_are_loaded_with_copy_not_row_inserts(engine, monkeypatch):
    copied = []
    copy_rows = store._copy_rows

    def spy(conn, table_name, frame, chunk_rows):
        copied.append((table_name, copy_rows(conn, table_name, frame, chunk_rows)))
        return copied[-1][1]

    statements = []
    monkeypatch.setattr(store, "_copy_rows", spy)
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    store.write_run(
        engine, make_run(), make_targets(2500), make_exclusions(range(5000, 5300)), chunk_rows=1000
    )
    assert copied == [("campaign_targets", 2500), ("campaign_exclusions", 300)]
    row_inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT") and "VALUES" in s.upper()]
    assert [s.split("(")[0].split()[-1] for s in row_inserts] == ["campaign_runs"], row_inserts
    assert store.group_counts(engine, "campaign__winback__2026-01-01") == {"treatment": 2000, "holdout": 500}


def test_rerun_replaces_rows_and_never_duplicates(engine):
    run = make_run()
    store.write_run(engine, run, make_targets(10), make_exclusions([100, 101]))
    other = make_run("campaign__winback__2026-02-01", logical_date=date(2026, 2, 1))
    store.write_run(engine, other, make_targets(4, start_id=500), None)
    for _ in range(2):
        store.write_run(engine, run, make_targets(6, start_id=5, seed=1), make_exclusions([200]))
    assert store.read_targets(engine, "winback", run.run_id, ("treatment", "holdout"))[
        "customer_id"
    ].tolist() == list(range(5, 11))
    dump = dump_tables(engine)
    assert (len(dump["campaign_runs"]), len(dump["campaign_targets"]), len(dump["campaign_exclusions"])) == (
        2,
        10,
        1,
    )
    store.write_run(engine, run, make_targets(6, start_id=5, seed=1), make_exclusions([200]))
    assert dump_tables(engine) == dump, "writing the same run again changes nothing"


@pytest.mark.parametrize(
    "step",
    ["campaign_targets:chunk:1", "staged", "deleted", "run_upserted", "written"],
)
def test_failure_mid_write_leaves_the_previous_state_exactly(engine, monkeypatch, step):
    store.write_run(engine, make_run(), make_targets(10), make_exclusions([100, 101]))
    store.write_run(
        engine, make_run("campaign__other__2026-01-01", "other"), make_targets(5, start_id=900), None
    )
    before = dump_tables(engine)
    monkeypatch.setattr(store, "_checkpoint", fail_at(step))
    with pytest.raises(InjectedFailure):
        store.write_run(
            engine,
            make_run(model_version="4"),
            make_targets(9, start_id=50, seed=3),
            make_exclusions([7]),
            chunk_rows=3,
        )
    assert dump_tables(engine) == before
    with engine.connect() as conn:  # the staging tables went with the rollback
        assert (
            conn.execute(text("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'pmp_stage_%'")).scalar()
            == 0
        )


def test_a_copy_the_server_rejects_rolls_everything_back(engine, monkeypatch):
    """A NULL key in the third COPY chunk, past validation: the server refuses it and nothing changes."""
    store.write_run(engine, make_run(), make_targets(10), make_exclusions([100]))
    before = dump_tables(engine)
    steps = []
    monkeypatch.setattr(store, "_checkpoint", steps.append)
    normalize = store_frames.normalize_targets

    def sneak_a_null_key_past_validation(frame):
        rows = normalize(frame)
        return rows.assign(customer_id=rows["customer_id"].astype(object).where(rows.index != 7, None))

    monkeypatch.setattr(store_frames, "normalize_targets", sneak_a_null_key_past_validation)
    with pytest.raises(Exception, match="null value in column"):
        store.write_run(engine, make_run(), make_targets(9, start_id=50), None, chunk_rows=3)
    assert steps[:2] == ["campaign_targets:chunk:0", "campaign_targets:chunk:1"] and "deleted" not in steps
    assert dump_tables(engine) == before


def test_concurrent_rewrites_of_one_run_are_serialized(engine):
    """Writers of the same run id queue on an advisory lock: the last one wins, no duplicates, no errors."""
    store.write_run(engine, make_run(), make_targets(10), None)
    errors = []

    def write(i: int) -> None:
        try:
            store.write_run(
                engine, make_run(), make_targets(2000, start_id=1 + i * 100, seed=i), None, chunk_rows=500
            )
        except Exception as exc:  # collected: an exception in a thread would be lost
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    dump = dump_tables(engine)
    ids = [row[1] for row in dump["campaign_targets"]]
    assert len(ids) == 2000 and len(set(ids)) == 2000
    assert min(ids) in (1, 101, 201)


def test_latest_run_and_contact_history(engine):
    store.write_run(engine, make_run(), make_targets(10), None)
    store.write_run(
        engine,
        make_run("campaign__winback__2026-02-01", logical_date=date(2026, 2, 1)),
        make_targets(5, start_id=3),
        None,
    )
    store.write_run(
        engine,
        make_run("campaign__winback__2026-03-01", logical_date=date(2026, 3, 1), status="failed"),
        None,
        None,
    )
    assert store.read_targets(engine, "winback")["run_id"].unique().tolist() == [
        "campaign__winback__2026-02-01"
    ]
    with pytest.raises(store.RunNotFoundError, match=r"has status 'failed'"):
        store.read_targets(engine, "winback", "campaign__winback__2026-03-01")
    history = store.contact_history(engine, before=date(2026, 3, 1), since=date(2026, 1, 2))
    assert history["customer_id"].tolist() == [3, 4, 5, 6]
    assert history.dtypes.astype(str).tolist() == ["int64", "str", "datetime64[us]"]
