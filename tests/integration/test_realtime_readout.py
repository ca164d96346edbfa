"""A real-time campaign read out like a batch one: a day of logged decisions (with a hash-random holdout) becomes a
campaign run, the synthetic world answers it, and the readout's treated and control counts are the day's groups."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import yaml

from pipelines.campaigns import store, store_schema
from pipelines.campaigns.decisions import write_decisions
from pipelines.campaigns.score import check_sample_ratio, online_holdout
from pipelines.config import Settings
from pipelines.data import storage
from pipelines.jobs import readouts
from pipelines.jobs.common import resolve_as_of
from pipelines.jobs.realtime import NoDecisions, decided_run, decided_run_id, decided_targets
from pipelines.synthetic.bank import SynthConfig, generate_bank
from tests.conftest import PROJECT_ROOT

CAMPAIGN = "winback-live"
HOLDOUT = 0.2
CUSTOMERS = 600


def _decision(rng, cid, at, group, campaign=CAMPAIGN, **changes) -> dict:
    row = {
        "decision_id": uuid.UUID(int=int(rng.integers(1, 2**62)) << 64 | int(cid)).hex,
        "decided_at": at,
        "customer_id": int(cid),
        "event_type": "login",
        "event_ts": at - timedelta(seconds=2),
        "campaign": campaign if group else None,
        "offer": campaign if group == "treatment" else None,
        "channel": "call" if group else None,
        "target_group": group,
        "score": float(rng.random()) if group else None,
        "expected_value": 1.0 if group else None,
        "reason": "best expected value" if group == "treatment" else "held out" if group else "no campaign",
        "model_name": "churn" if group else None,
        "model_version": "4" if group else None,
        "snapshot_as_of": None,
        "latency_ms": 3.0,
    }
    return {**row, **changes}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small generated bank, a real-time copy of churn-winback (holdout 20 %), and one day of decisions."""
    root = tmp_path_factory.mktemp("realtime")
    generate_bank(
        SynthConfig(customers=3_000, months=4, seed=5, chunk_size=1_000), root / "data", progress=None
    )
    specs = root / "campaigns"
    specs.mkdir()
    spec = yaml.safe_load((PROJECT_ROOT / "campaigns" / "churn-winback.yaml").read_text(encoding="utf-8"))
    spec.update(name=CAMPAIGN, holdout_fraction=HOLDOUT)
    (specs / f"{CAMPAIGN}.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    settings = Settings(data_dir=root / "data", mlruns_dir=root / "mlruns", campaigns_dir=specs)
    day = resolve_as_of(settings) - timedelta(days=1)

    rng = np.random.default_rng(20)
    ids = storage.read_table(settings.lake_dir, "customers", columns=["customer_id"])[
        "customer_id"
    ].to_numpy()
    chosen = rng.choice(ids, CUSTOMERS, replace=False)
    held = online_holdout(chosen, f"{CAMPAIGN}-salt", HOLDOUT)
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    rows, first = [], {}
    for k, (cid, h) in enumerate(zip(chosen, held, strict=True)):
        group = "holdout" if h else "treatment"
        at = start + timedelta(seconds=60 + 120 * k)
        rows.append(_decision(rng, cid, at, group))
        first[int(cid)] = group
        if k % 10 == 0:  # a later event the same day: the customer's first decision counts
            rows.append(_decision(rng, cid, at + timedelta(seconds=30), group))
        if k % 7 == 0:  # no campaign applied: not a target
            rows.append(_decision(rng, cid, at + timedelta(seconds=5), None))
    spare = [int(c) for c in np.setdiff1d(ids, chosen)[:40]]
    rows += [
        _decision(rng, c, start + timedelta(days=1, hours=1), "treatment") for c in spare[:20]
    ]  # next day
    rows += [_decision(rng, c, start + timedelta(hours=3), "treatment", "other-rt") for c in spare[20:]]
    engine = store_schema.make_engine(settings.database_url)
    assert write_decisions(engine, rows) == len(rows)
    return {"settings": settings, "day": day, "first": first, "engine": engine, "decisions": rows}


def test_a_day_of_decisions_becomes_a_run_read_out_like_a_batch_one(world):
    settings, day, first, engine = world["settings"], world["day"], world["first"], world["engine"]
    n_treatment = sum(g == "treatment" for g in first.values())
    n_holdout = sum(g == "holdout" for g in first.values())
    assert 0.1 < n_holdout / CUSTOMERS < 0.3  # the hash draw is near its planned share

    run = decided_run(settings, CAMPAIGN, day)
    run_id = decided_run_id(CAMPAIGN, day)
    assert run["run_id"] == run_id == f"campaign_decide__{day:%Y-%m-%d}__{CAMPAIGN}"
    assert (run["customers"], run["treatment"], run["holdout"]) == (CUSTOMERS, n_treatment, n_holdout)
    assert run["srm_p_value"] == pytest.approx(check_sample_ratio(n_treatment, n_holdout, HOLDOUT).p_value)
    assert (run["model_name"], run["model_version"], run["holdout_fraction"]) == ("churn", "4", HOLDOUT)

    targets = store.read_targets(engine, CAMPAIGN, run_id, groups=("treatment", "holdout"))
    assert dict(zip(targets["customer_id"], targets["target_group"], strict=True)) == first
    assert targets["rank"].tolist() == list(range(1, CUSTOMERS + 1))
    assert targets["score"].is_monotonic_decreasing
    assert targets["decile"].is_monotonic_increasing and set(targets["decile"]) == set(range(1, 11))
    assert (targets["channel"] == "call").all()
    record = store.list_runs(engine, CAMPAIGN).set_index("run_id").loc[run_id]
    assert record["logical_date"] == pd.Timestamp(day)
    assert (record["n_selected"], record["n_excluded"], record["status"]) == (CUSTOMERS, 0, "succeeded")

    # A rerun replaces the run: same rows, one run.
    again = decided_run(settings, CAMPAIGN, day)
    assert again == run
    assert list(store.list_runs(engine, CAMPAIGN)["run_id"]) == [run_id]
    assert store.group_counts(engine, run_id) == {"treatment": n_treatment, "holdout": n_holdout}

    world_answer = readouts.simulate_responses(settings, run_id)
    assert world_answer["contacts"] == CUSTOMERS
    window = 14  # churn-winback's response window
    result = readouts.readout_campaign(
        settings, run_id, as_of=pd.Timestamp(day) + pd.Timedelta(days=window + 1)
    )
    assert (result["treated_n"], result["control_n"]) == (n_treatment, n_holdout)
    stored = store.read_results(engine).set_index("campaign_id").loc[run_id]
    assert (stored["treated_n"], stored["control_n"]) == (n_treatment, n_holdout)
    assert stored["srm_p_value"] == pytest.approx(run["srm_p_value"])


def test_a_day_without_decisions_names_the_campaign_and_the_day(world):
    empty = world["day"] - timedelta(days=3)
    with pytest.raises(
        NoDecisions, match=rf"campaign '{CAMPAIGN}': no decision in treatment or holdout on {empty}"
    ):
        decided_run(world["settings"], CAMPAIGN, empty)
    assert store.list_runs(world["engine"], CAMPAIGN)["run_id"].str.contains(f"{empty:%Y-%m-%d}").sum() == 0


def test_targets_keep_each_customers_first_grouped_decision_and_need_a_score():
    rng = np.random.default_rng(1)
    at = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    rows = [
        _decision(rng, 7, at + timedelta(minutes=5), "treatment", score=0.9),
        _decision(rng, 7, at, None),  # earlier, but no campaign applied: not the one that counts
        _decision(rng, 7, at + timedelta(minutes=1), "holdout", score=0.2),
        _decision(rng, 8, at + timedelta(minutes=2), "treatment", score=0.6),
        _decision(rng, 9, at + timedelta(minutes=3), "treatment", score=0.6),
    ]
    frame = pd.DataFrame(rows)
    targets = decided_targets(frame).set_index("customer_id")
    assert targets["target_group"].to_dict() == {7: "holdout", 8: "treatment", 9: "treatment"}
    assert targets["score"].to_dict() == {7: 0.2, 8: 0.6, 9: 0.6}
    assert targets["rank"].to_dict() == {8: 1, 9: 2, 7: 3}  # ties by customer id
    frame.loc[2, "score"] = np.nan
    with pytest.raises(ValueError, match=r"campaign_decisions\.score: 1 decision\(s\) .* have no score"):
        decided_targets(frame)
