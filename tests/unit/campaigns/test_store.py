"""The campaign database on SQLite: schema, atomic and idempotent run writes, validation, and the readers.

The helpers here (frames, run records, table dumps) are shared with tests/integration/test_db_postgres.py, which
checks the same behaviours against a real PostgreSQL server.
"""

from __future__ import annotations

import hashlib
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import inspect, select

from pipelines.campaigns import store, store_frames, store_schema

T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


class InjectedFailure(RuntimeError):
    pass


def make_targets(n: int = 10, *, start_id: int = 1, holdout_every: int = 5, seed: int = 0) -> pd.DataFrame:
    """A scored list of ``n`` customers, best first; every ``holdout_every``-th one in the holdout."""
    rng = np.random.default_rng(seed)
    score = np.sort(rng.random(n))[::-1]
    rank = np.arange(1, n + 1)
    return pd.DataFrame(
        {
            "customer_id": np.arange(start_id, start_id + n, dtype="int64"),
            "score": score,
            "decile": np.minimum((rank - 1) * 10 // max(n, 1) + 1, 10),
            "rank": rank,
            "target_group": np.where(rank % holdout_every == 0, "holdout", "treatment"),
            "channel": np.where(rank % 2 == 0, "sms", "email"),
            "reason_1": ["balance_drop_30d"] * n,
            "reason_2": [None if i % 3 == 0 else "inactivity_60d" for i in range(n)],
            "reason_3": [None] * n,
        }
    )


def make_exclusions(ids, reason: str = "recent_contact") -> pd.DataFrame:
    ids = list(ids)
    return pd.DataFrame(
        {
            "customer_id": ids,
            "exclusion_reason": [reason] * len(ids),
            "detail": [f"last contact {i}" if i % 2 else None for i in ids],
        }
    )


def make_run(
    run_id: str = "campaign__winback__2026-01-01",
    campaign: str = "winback",
    logical_date: date = date(2026, 1, 1),
    **kwargs,
) -> store_frames.RunRecord:
    fields = {
        "model_name": "churn",
        "model_version": "3",
        "n_scored": 1000,
        "n_eligible": 900,
        "srm_p_value": 0.5,
        "holdout_fraction": 0.2,
        "created_at": T0,
        "finished_at": T0 + timedelta(minutes=1),
        "details": {"budget": 10},
    }
    return store_frames.RunRecord(
        run_id=run_id, campaign=campaign, logical_date=logical_date, **(fields | kwargs)
    )


def dump_tables(engine) -> dict[str, list[tuple]]:
    """Every row of the three tables, in key order: equal dumps mean equal contents."""
    out = {}
    with engine.connect() as conn:
        for table in (
            store_schema.campaign_runs,
            store_schema.campaign_targets,
            store_schema.campaign_exclusions,
        ):
            out[table.name] = [
                tuple(r) for r in conn.execute(select(table).order_by(*table.primary_key.columns))
            ]
    return out


def fail_at(step: str):
    def checkpoint(name: str) -> None:
        if name == step:
            raise InjectedFailure(f"injected failure at {name}")

    return checkpoint


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def db_path(tmp_path) -> Path:
    return tmp_path / "nested" / "campaigns.db"


@pytest.fixture
def engine(db_path):
    engine = store_schema.make_engine(f"sqlite:///{db_path}")
    store_schema.ensure_schema(engine)
    yield engine
    engine.dispose()


# ------------------------------------------------------------------------------------------- engine and schema


def test_make_engine_creates_the_folder_only_when_called(tmp_path):
    folder = tmp_path / "a" / "b"
    url = f"sqlite:///{folder / 'campaigns.db'}"
    assert not folder.exists()
    engine = store_schema.make_engine(url)
    assert folder.is_dir()
    assert not (folder / "campaigns.db").exists(), "make_engine must not connect"
    engine.dispose()


@pytest.mark.parametrize("url", ["postgresql+psycopg2://u@h/d", "mysql://u@h/d"])
def test_make_engine_refuses_unsupported_backends(url):
    with pytest.raises(store_schema.CampaignDBError, match="psycopg|unsupported"):
        store_schema.make_engine(url)


def test_make_engine_uses_psycopg3_for_plain_postgresql_urls():
    engine = store_schema.make_engine("postgresql://postgres@127.0.0.1:1/nowhere")
    assert engine.dialect.driver == "psycopg"


def test_ensure_schema_is_idempotent_and_keeps_data(engine):
    store.write_run(engine, make_run(), make_targets(), make_exclusions([100]))
    before = dump_tables(engine)
    store_schema.ensure_schema(engine)
    store_schema.ensure_schema(engine)
    assert dump_tables(engine) == before
    inspector = inspect(engine)
    assert {"campaign_runs", "campaign_targets", "campaign_exclusions"} <= set(inspector.get_table_names())
    assert inspector.get_pk_constraint("campaign_targets")["constrained_columns"] == ["run_id", "customer_id"]
    assert inspector.get_pk_constraint("campaign_exclusions")["constrained_columns"] == [
        "run_id",
        "customer_id",
    ]
    with engine.connect() as conn:  # the primary key is the index on run_id
        plan = conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN SELECT * FROM campaign_targets WHERE run_id = 'x' ORDER BY rank"
        ).all()
    assert "USING PRIMARY KEY (run_id=?)" in " ".join(str(row[-1]) for row in plan), plan
    columns = {c["name"] for t in store_schema.metadata.tables for c in inspector.get_columns(t)}
    assert not {c for c in columns if any(p in c for p in ("name", "phone", "email", "address"))} - {
        "model_name"
    }


# ----------------------------------------------------------------------------------------------- write and read


def test_roundtrip_keeps_values_and_dtypes(engine):
    targets = make_targets(10).assign(
        email="someone@example.com",
        first_name="Ann",  # never stored
        rfm_segment="Champions",
        value_tier="high",
        lifecycle_stage="active",
        persona=None,
    )
    store.write_run(engine, make_run(), targets, make_exclusions([100, 101]))

    got = store.read_targets(engine, "winback", groups=("treatment", "holdout"))
    expected = targets[list(store_schema.TARGET_COLUMNS)].astype(
        {c: "str" for c in store_schema.TARGET_COLUMNS[4:]}
    )
    expected.insert(0, "run_id", "campaign__winback__2026-01-01")
    pd.testing.assert_frame_equal(got, expected.astype({"run_id": "str"}))
    assert got["score"].tolist() == targets["score"].tolist(), "floats must round-trip exactly"
    assert got["reason_2"].isna().sum() == 4 and got["reason_3"].isna().all()
    assert set(got["rfm_segment"]) == {"Champions"} and got["persona"].isna().all()

    treatment = store.read_targets(engine, "winback")
    assert set(treatment["target_group"]) == {"treatment"} and len(treatment) == 8
    assert treatment["rank"].is_monotonic_increasing

    exclusions = store.read_exclusions(engine, "campaign__winback__2026-01-01")
    assert exclusions.to_dict("list") == {
        "run_id": ["campaign__winback__2026-01-01"] * 2,
        "customer_id": [100, 101],
        "exclusion_reason": ["recent_contact"] * 2,
        "detail": [np.nan, "last contact 101"],
    }
    assert str(exclusions["customer_id"].dtype) == "int64"


def test_run_record_is_completed_from_the_frames(engine):
    run = make_run(model_version=7, created_at=None, finished_at=None)
    before = datetime.now(UTC)
    store.write_run(engine, run, make_targets(10), make_exclusions([100, 101, 102]))
    row = store.list_runs(engine).iloc[0]
    assert (row.n_selected, row.n_treatment, row.n_holdout, row.n_excluded) == (10, 8, 2, 3)
    assert (row.n_scored, row.n_eligible) == (1000, 900)
    assert row.model_version == "7" and row.status == "succeeded"
    assert row.logical_date == pd.Timestamp("2026-01-01")
    assert str(row.created_at.tz) == "UTC" and before <= row.created_at.to_pydatetime() <= datetime.now(UTC)
    assert row.details == '{"budget": 10}'
    assert run.created_at is None, "the caller's record is not modified"


def test_timestamps_are_stored_in_utc(engine):
    plus8 = T0.astimezone(pd.Timestamp("2026-01-01", tz="Asia/Shanghai").tzinfo)
    store.write_run(engine, make_run(created_at=plus8, finished_at=plus8), make_targets(3), None)
    row = store.list_runs(engine).iloc[0]
    assert row.created_at == pd.Timestamp(T0) and str(row.created_at.tz) == "UTC"


def test_rerun_replaces_rows_and_never_duplicates(engine):
    run = make_run()
    store.write_run(engine, run, make_targets(10), make_exclusions([100, 101]))
    other = make_run("campaign__winback__2026-02-01", logical_date=date(2026, 2, 1))
    store.write_run(engine, other, make_targets(4, start_id=500), make_exclusions([600]))
    other_before = store.read_targets(engine, "winback", other.run_id, groups=("treatment", "holdout"))

    for _ in range(2):
        store.write_run(engine, run, make_targets(6, start_id=5, seed=1), make_exclusions([200]))

    got = store.read_targets(engine, "winback", run.run_id, groups=("treatment", "holdout"))
    assert got["customer_id"].tolist() == list(range(5, 11))
    assert store.read_exclusions(engine, run.run_id)["customer_id"].tolist() == [200]
    assert store.group_counts(engine, run.run_id) == {"treatment": 5, "holdout": 1}
    dump = dump_tables(engine)
    assert len(dump["campaign_runs"]) == 2
    assert len(dump["campaign_targets"]) == 6 + 4 and len(dump["campaign_exclusions"]) == 1 + 1
    pd.testing.assert_frame_equal(
        store.read_targets(engine, "winback", other.run_id, groups=("treatment", "holdout")), other_before
    )


def test_writing_the_same_run_twice_leaves_identical_tables(engine):
    store.write_run(engine, make_run(), make_targets(20), make_exclusions([100]))
    first = dump_tables(engine)
    store.write_run(engine, make_run(), make_targets(20), make_exclusions([100]))
    assert dump_tables(engine) == first


@pytest.mark.parametrize(
    "step", ["deleted", "run_upserted", "campaign_targets:chunk:0", "campaign_targets:chunk:2", "written"]
)
def test_failure_mid_write_leaves_the_previous_state_exactly(engine, db_path, monkeypatch, step):
    run = make_run()
    store.write_run(engine, run, make_targets(10), make_exclusions([100, 101]))
    store.write_run(
        engine, make_run("campaign__other__2026-01-01", "other"), make_targets(5, start_id=900), None
    )
    before, file_before = dump_tables(engine), sha256(db_path)

    monkeypatch.setattr(store, "_checkpoint", fail_at(step))
    with pytest.raises(InjectedFailure):
        store.write_run(
            engine,
            make_run(model_version="4", status="succeeded"),
            make_targets(9, start_id=50, seed=3),
            make_exclusions([7]),
            chunk_rows=3,
        )
    assert dump_tables(engine) == before
    assert sha256(db_path) == file_before, "the database file changed"
    assert not db_path.with_name(db_path.name + "-journal").exists()


def test_a_database_error_in_a_later_chunk_rolls_everything_back(engine, db_path, monkeypatch):
    """A row the database itself rejects (NULL key) in the third chunk, after the old rows were deleted."""
    store.write_run(engine, make_run(), make_targets(10), make_exclusions([100]))
    before, file_before = dump_tables(engine), sha256(db_path)
    steps = []
    monkeypatch.setattr(store, "_checkpoint", steps.append)
    normalize = store_frames.normalize_targets

    def sneak_a_null_key_past_validation(frame):
        rows = normalize(frame)
        return rows.assign(customer_id=rows["customer_id"].astype(object).where(rows.index != 7, None))

    monkeypatch.setattr(store_frames, "normalize_targets", sneak_a_null_key_past_validation)
    with pytest.raises(Exception, match="NOT NULL"):
        store.write_run(engine, make_run(), make_targets(9, start_id=50), None, chunk_rows=3)
    assert steps == ["deleted", "run_upserted", "campaign_targets:chunk:0", "campaign_targets:chunk:1"]
    assert dump_tables(engine) == before
    assert sha256(db_path) == file_before


def test_a_failed_run_without_rows_is_recorded_and_never_latest(engine):
    store.write_run(engine, make_run(), make_targets(4), None)
    failed = make_run("campaign__winback__2026-02-01", logical_date=date(2026, 2, 1), status="failed")
    store.write_run(engine, failed, pd.DataFrame(), None)
    runs = store.list_runs(engine, "winback")
    assert runs["run_id"].tolist() == [failed.run_id, "campaign__winback__2026-01-01"]
    assert runs.iloc[0][["status", "n_selected", "n_excluded"]].tolist() == ["failed", 0, 0]
    assert store.read_targets(engine, "winback")["run_id"].unique().tolist() == [
        "campaign__winback__2026-01-01"
    ]


@pytest.mark.parametrize(
    "convert",
    [
        lambda f: f.astype({"customer_id": "Int64", "decile": "Int16", "rank": "int32"}),
        lambda f: f.astype({"customer_id": object, "target_group": "category", "score": "float32"}),
        lambda f: f.astype({"customer_id": "float64", "channel": object}),
    ],
    ids=["nullable-ints", "object-and-category", "float-ids"],
)
def test_common_input_dtypes_are_accepted(engine, convert):
    targets = make_targets(6)
    store.write_run(engine, make_run(), convert(targets), None)
    got = store.read_targets(engine, "winback", groups=("treatment", "holdout"))
    assert got["customer_id"].tolist() == targets["customer_id"].tolist()
    assert got["target_group"].tolist() == targets["target_group"].tolist()
    assert got["decile"].tolist() == targets["decile"].tolist()


def test_a_run_id_column_matching_the_run_is_accepted(engine):
    store.write_run(engine, make_run(), make_targets(4).assign(run_id="campaign__winback__2026-01-01"), None)
    assert store.group_counts(engine, "campaign__winback__2026-01-01") == {"treatment": 4, "holdout": 0}


def test_concurrent_writers_wait_for_each_other(engine):
    errors = []

    def write(i: int) -> None:
        try:
            run = make_run(f"campaign__c{i}__2026-01-01", f"c{i}")
            store.write_run(engine, run, make_targets(3000, start_id=i * 10_000), None, chunk_rows=500)
        except Exception as exc:  # collected: an exception in a thread would be lost
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert {f"c{i}": 2400 for i in range(4)} == {
        c: store.group_counts(engine, f"campaign__{c}__2026-01-01")["treatment"]
        for c in ("c0", "c1", "c2", "c3")
    }


# ------------------------------------------------------------------------------------------------- validation


def _targets_with(**changes):
    def build():
        frame = make_targets(10)
        for column, (row, value) in changes.items():
            frame[column] = frame[column].astype(object)
            frame.loc[row, column] = value
        return frame

    return build


@pytest.mark.parametrize(
    ("targets", "exclusions", "run", "message"),
    [
        (lambda: make_targets().drop(columns=["rank", "decile"]), None, {}, r"campaign_targets: missing required column\(s\) \['decile', 'rank'\]"),
        (_targets_with(customer_id=(3, None)), None, {}, r"campaign_targets\.customer_id: 1 null value"),
        (_targets_with(customer_id=(3, 1)), None, {}, r"campaign_targets\.customer_id: 1 customer_id\(s\) appear more than once in the run: \[1\]"),
        (_targets_with(customer_id=(3, 1.5)), None, {}, r"campaign_targets\.customer_id: .*whole numbers"),
        (_targets_with(customer_id=(3, "abc")), None, {}, r"campaign_targets\.customer_id: must be integers"),
        (_targets_with(target_group=(2, "control")), None, {}, r"campaign_targets\.target_group: values must be one of \['treatment', 'holdout'\], got \['control'\]"),
        (_targets_with(target_group=(2, None)), None, {}, r"campaign_targets\.target_group: 1 null value"),
        (_targets_with(decile=(2, 11)), None, {}, r"campaign_targets\.decile: values must be in \[1, 10\], got \[11\]"),
        (_targets_with(rank=(2, 0)), None, {}, r"campaign_targets\.rank: values must be in \[1, "),
        (_targets_with(score=(2, np.nan)), None, {}, r"campaign_targets\.score: 1 null or infinite"),
        (make_targets, lambda: make_exclusions([100]).drop(columns="exclusion_reason"), {}, r"campaign_exclusions: missing required column\(s\) \['exclusion_reason'\]"),
        (make_targets, lambda: make_exclusions([100, 101]).assign(exclusion_reason=["opt_out", None]), {}, r"campaign_exclusions\.exclusion_reason: 1 null value"),
        (make_targets, lambda: make_exclusions([100, 100]), {}, r"campaign_exclusions\.customer_id: 1 customer_id\(s\) appear more than once"),
        (make_targets, lambda: make_exclusions([100, 3]), {}, r"campaign_targets\.customer_id: 1 customer\(s\) are both targeted and excluded .*\[3\]"),
        (lambda: make_targets().assign(run_id="campaign__x__2026-01-01"), None, {}, r"campaign_targets\.run_id: rows of run\(s\) \['campaign__x__2026-01-01'\] in a write of run 'campaign__winback__2026-01-01'"),
        (make_targets, None, {"status": "done"}, r"campaign_runs\.status: must be one of \['succeeded', 'failed'\]"),
        (make_targets, None, {"n_treatment": 99}, r"campaign_runs\.n_treatment: is 99 but the targets frame has 8"),
        (make_targets, None, {"n_scored": -1}, r"campaign_runs\.n_scored: must be a non-negative integer"),
        (make_targets, None, {"srm_p_value": 1.5}, r"campaign_runs\.srm_p_value: must be a number in \[0, 1\]"),
        (make_targets, None, {"created_at": datetime(2026, 1, 1)}, r"campaign_runs\.created_at: must be a timezone-aware"),
        (make_targets, None, {"details": "{not json"}, r"campaign_runs\.details: must be a dict or JSON text"),
        (make_targets, None, {"run_id": ""}, r"campaign_runs\.run_id: must be a non-empty string"),
    ],
)  # fmt: skip
def test_invalid_input_is_refused_with_the_table_and_column_named(engine, targets, exclusions, run, message):
    store.write_run(engine, make_run(), make_targets(3, start_id=1000), None)
    before = dump_tables(engine)
    with pytest.raises(store_frames.FrameValidationError, match=message):
        store.write_run(engine, make_run(**run), targets(), exclusions() if exclusions else None)
    assert dump_tables(engine) == before


# ---------------------------------------------------------------------------------------------------- readers


@pytest.fixture
def history(engine):
    """winback: Jan 1 and Feb 1 succeeded, Mar 1 failed; upsell: Feb 1 succeeded (overlapping customers)."""
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
    store.write_run(
        engine,
        make_run("campaign__upsell__2026-02-01", "upsell", date(2026, 2, 1)),
        make_targets(5, start_id=1, holdout_every=2),
        None,
    )
    return engine


def test_latest_is_the_newest_succeeded_run_by_logical_date(history):
    assert store.read_targets(history, "winback")["run_id"].unique().tolist() == [
        "campaign__winback__2026-02-01"
    ]
    assert store.read_targets(history, "upsell")["customer_id"].tolist() == [1, 3, 5]
    assert len(store.read_targets(history, "winback", "campaign__winback__2026-01-01")) == 8


def test_latest_breaks_ties_on_the_same_date_by_creation_time(engine):
    later = make_run("campaign__winback__2026-01-01__rerun", created_at=T0 + timedelta(hours=1))
    store.write_run(engine, later, make_targets(2, start_id=77), None)
    store.write_run(engine, make_run(), make_targets(3), None)
    assert store.read_targets(engine, "winback")["run_id"].unique().tolist() == [later.run_id]
    assert store.list_runs(engine)["run_id"].tolist() == [later.run_id, "campaign__winback__2026-01-01"]


@pytest.mark.parametrize(
    ("campaign", "run", "message"),
    [
        ("winback", "campaign__winback__2026-03-01", r"has status 'failed'.*campaign__winback__2026-02-01 \(succeeded\)"),
        ("winback", "nope", r"run 'nope' does not exist; runs of 'winback', newest first: campaign__winback__2026-03-01 \(failed\), campaign__winback__2026-02-01"),
        ("winback", "campaign__upsell__2026-02-01", r"belongs to campaign 'upsell', not 'winback'"),
        ("cross-sell", "latest", r"campaign 'cross-sell' has no succeeded run; no runs of 'cross-sell'; campaigns with runs: \['upsell', 'winback'\]"),
    ],
)  # fmt: skip
def test_unknown_runs_are_reported_with_the_available_ones(history, campaign, run, message):
    with pytest.raises(store.RunNotFoundError, match=message):
        store.read_targets(history, campaign, run)


def test_read_targets_refuses_unknown_groups(history):
    with pytest.raises(ValueError, match="groups must be"):
        store.read_targets(history, "winback", groups=("control",))


def test_list_runs_is_newest_first_and_filters_by_campaign(history):
    assert store.list_runs(history)["run_id"].tolist() == [
        "campaign__winback__2026-03-01",
        "campaign__winback__2026-02-01",
        "campaign__upsell__2026-02-01",
        "campaign__winback__2026-01-01",
    ]
    upsell = store.list_runs(history, "upsell")
    assert upsell["run_id"].tolist() == ["campaign__upsell__2026-02-01"]
    assert str(upsell["logical_date"].dtype) == "datetime64[us]"
    assert store.list_runs(history, "nothing").empty


def test_contact_history_has_treatment_rows_of_succeeded_runs_before_a_date(history):
    everything = store.contact_history(history, before=date(2026, 12, 31))
    assert everything.dtypes.astype(str).to_dict() == {
        "customer_id": "int64",
        "campaign": "str",
        "contact_date": "datetime64[us]",
    }
    # Jan: 8 treatment of 10; Feb winback: ids 3..7 with rank 5 (id 7) held out; Feb upsell: ranks 1, 3, 5.
    assert len(everything) == 8 + 4 + 3
    assert set(everything["contact_date"].dt.date) == {date(2026, 1, 1), date(2026, 2, 1)}, (
        "failed run counted"
    )
    assert (
        7
        not in everything.query("campaign == 'winback' and contact_date == '2026-02-01'")[
            "customer_id"
        ].tolist()
    )

    assert store.contact_history(history, before=date(2026, 2, 1))[
        "contact_date"
    ].dt.date.unique().tolist() == [date(2026, 1, 1)], "before is exclusive"
    feb = store.contact_history(history, before=date(2026, 3, 1), since=date(2026, 2, 1))
    assert sorted(feb["campaign"].unique()) == ["upsell", "winback"] and len(feb) == 7
    per_customer = feb.groupby("customer_id").size()
    assert per_customer.loc[3] == 2, "a customer contacted by two campaigns on one day counts twice"
    assert store.contact_history(history, before=date(2026, 1, 1)).empty


def test_group_counts_and_exclusions_of_unknown_runs_raise(history):
    assert store.group_counts(history, "campaign__upsell__2026-02-01") == {"treatment": 3, "holdout": 2}
    assert store.group_counts(history, "campaign__winback__2026-03-01") == {"treatment": 0, "holdout": 0}
    with pytest.raises(store.RunNotFoundError, match="most recent runs"):
        store.group_counts(history, "nope")
    with pytest.raises(store.RunNotFoundError):
        store.read_exclusions(history, "nope")


def test_segment_mix_is_written_with_the_run_and_replaced_on_rerun(engine):
    mix = pd.DataFrame(
        {
            "dimension": ["rfm_segment", "rfm_segment", "lifecycle_stage"],
            "segment": ["Champions", "Lost", "active"],
            "customers": [6, 4, 10],
            "treatment": [5, 3, 8],
            "holdout": [1, 1, 2],
            "share": [0.6, 0.4, 1.0],
            "avg_score": [0.5, 0.2, 0.38],
            "avg_value": [np.nan, np.nan, np.nan],
        }
    )
    store.write_run(engine, make_run(), make_targets(10), make_exclusions([100]), segments=mix)
    got = store.read_segments(engine, "campaign__winback__2026-01-01")
    assert len(got) == 3 and got.loc[got["segment"] == "Champions", "treatment"].item() == 5
    assert got["avg_value"].isna().all()
    store.write_run(engine, make_run(), make_targets(10), make_exclusions([100]), segments=mix.iloc[:1])
    assert len(store.read_segments(engine, "campaign__winback__2026-01-01")) == 1
    with pytest.raises(store_frames.FrameValidationError, match="campaign_segments"):
        store.write_run(engine, make_run(), make_targets(10), None, segments=pd.concat([mix, mix]))


def test_ensure_schema_adds_the_nullable_columns_an_older_database_lacks(tmp_path):
    """A campaign database created before the segment columns existed is upgraded in place, rows kept."""
    from sqlalchemy import inspect, text

    engine = store_schema.make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    store_schema.ensure_schema(engine)
    store.write_run(engine, make_run(), make_targets(4), None)
    with engine.begin() as conn:
        for column in store_schema.SEGMENT_COLUMNS:
            conn.execute(text(f"ALTER TABLE campaign_targets DROP COLUMN {column}"))
    store_schema.ensure_schema(engine)
    assert set(store_schema.SEGMENT_COLUMNS) <= {
        c["name"] for c in inspect(engine).get_columns("campaign_targets")
    }
    assert len(store.read_targets(engine, "winback", groups=("treatment", "holdout"))) == 4
    store.write_run(engine, make_run(), make_targets(4).assign(persona="revolver"), None)
    assert set(store.read_targets(engine, "winback")["persona"]) == {"revolver"}
