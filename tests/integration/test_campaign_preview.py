"""The campaign preview on a real scored base: the 20k bank's wide table, deterministic scores, real segments and
a stored churn run. The preview must count what the run's selection picks (one shared definition), react to the
spec (audience rules, holdout size) and write nothing."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select

from pipelines.campaigns import policy, store, store_schema
from pipelines.campaigns.power import holdout_fraction_for
from pipelines.campaigns.score import GROUP, HOLDOUT, assign_deciles, assign_holdout
from pipelines.campaigns.spec import parse_spec
from pipelines.config import Settings
from pipelines.data import storage
from pipelines.jobs.audience import choose_audience, read_scored
from pipelines.jobs.campaign_preview import preview_campaign
from pipelines.jobs.campaigns import _attempt_dir, campaign_features, campaign_run_id
from pipelines.jobs.common import load_campaign, resolve_as_of
from pipelines.models import segmentation
from pipelines.runs import run_dir, swap_in
from tests.stored_runs import store_run

CAMPAIGN = "churn-winback"


def _spec(**changes):
    """A churn campaign spec as the staff form would send it (not saved anywhere)."""
    data = {
        "name": "preview-probe",
        "description": "preview test",
        "model": "churn",
        "channel": "sms",
        "audience": [{"column": "tenure_days", "op": ">=", "value": 90}],
        "selection": {"top_deciles": 3},
        "holdout_fraction": 0.1,
    }
    return parse_spec({**data, **changes})


@pytest.fixture(scope="module")
def base(bank, tmp_path_factory):
    """Settings over a data folder whose lake is the shared bank's (a symlink: nothing is written into it), with
    one succeeded churn run of churn-winback whose folder holds features, scores, segments and model.json."""
    root = tmp_path_factory.mktemp("preview")
    data = root / "data"
    data.mkdir()
    try:
        (data / "lake").symlink_to(bank / "lake", target_is_directory=True)
    except OSError:
        shutil.copytree(bank / "lake", data / "lake")
    settings = Settings(data_dir=data, mlruns_dir=root / "mlruns")
    as_of = resolve_as_of(settings)
    run_id = campaign_run_id(CAMPAIGN, as_of)
    campaign_features(settings, CAMPAIGN, as_of)
    attempt = _attempt_dir(settings, CAMPAIGN, as_of)
    wide = storage.read_frame(attempt / "features.parquet")
    ids = wide["customer_id"].to_numpy(np.int64)
    score = np.random.default_rng(7).random(len(ids))
    scores = pd.DataFrame({"customer_id": ids, "score": score, "decile": assign_deciles(score, ids)})
    storage.write_frame(scores, attempt / "scores.parquet")
    invalid = policy.invalid_customers(
        settings.lake_dir, as_of, load_campaign(settings, CAMPAIGN).contact_policy.invalid_customer
    )
    segments, _ = segmentation.assign_segments(wide, invalid_ids=invalid)
    segments["value_tier"] = pd.Series(pd.NA, index=segments.index, dtype="str")
    storage.write_frame(segments, attempt / "segments.parquet")
    storage.write_json_atomic(
        attempt / "model.json", {"model_name": "churn", "model_version": "1", "selected_by": "churn"}
    )
    swap_in(attempt, run_dir(settings.runs_dir, run_id))
    engine = store_schema.make_engine(settings.database_url)
    store_run(engine, run_id, CAMPAIGN, as_of, ids[:10].tolist())
    return settings, engine, run_id, as_of


def _snapshot(settings: Settings, engine) -> tuple[dict, dict]:
    files = {}
    for folder, _dirs, names in os.walk(settings.data_dir):  # the lake symlink is not followed
        for name in names:
            path = os.path.join(folder, name)
            stat = os.stat(path)
            files[path] = (stat.st_size, stat.st_mtime_ns)
    with engine.connect() as conn:
        rows = {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in store_schema.metadata.sorted_tables
            if t.name in {"campaign_runs", "campaign_targets", "campaign_exclusions", "campaign_results"}
        }
    return files, rows


def test_the_preview_counts_add_up_and_write_nothing(base):
    settings, engine, run_id, as_of = base
    before = _snapshot(settings, engine)
    spec = load_campaign(settings, CAMPAIGN)
    p = preview_campaign(settings, spec)
    assert _snapshot(settings, engine) == before
    assert not settings.mlruns_dir.exists()
    json.dumps(p, allow_nan=False)  # JSON-friendly as it is
    assert (p["base_run_id"], p["base_campaign"], p["as_of"]) == (run_id, CAMPAIGN, as_of.isoformat())
    assert p["model"] == {"name": "churn", "version": "1"}
    customers = storage.read_frame(
        run_dir(settings.runs_dir, run_id) / "features.parquet", columns=["customer_id"]
    )
    assert p["n_scored"] == len(customers) == p["n_excluded"] + p["n_eligible"]
    assert p["n_scored"] > 15_000  # the 20k bank's customers on book at as_of
    assert sum(p["excluded_by_reason"].values()) == p["n_excluded"]
    counts = list(p["excluded_by_reason"].values())
    assert counts == sorted(counts, reverse=True)
    assert "audience:aum_last > 500" in p["excluded_by_reason"]
    assert p["n_selected"] == min(1500, p["n_eligible"]) and p["n_selected"] <= p["n_eligible"]
    assert p["holdout_fraction"] == 0.1 and p["holdout_note"] == "holdout_fraction 0.1 fixed in spec"
    assert p["n_treatment"] + p["n_holdout"] == p["n_selected"]
    assert abs(p["n_holdout"] - 0.1 * p["n_selected"]) <= 5
    # churn-winback has no power block and no readout yet: its response_rate_floor
    assert p["baseline_rate"] == 0.02 and "response_rate_floor" in p["baseline_source"]
    assert 0 < p["mde"] < 0.2 and p["mde_text"] == f"{100 * p['mde']:.1f} percentage points"
    print(f"preview of {CAMPAIGN} on 20k customers: {p['seconds']:.2f} s")
    assert p["seconds"] < 10


def test_the_preview_picks_what_the_run_picks(base):
    """The run's path (every column of the folder, the shared choose_audience, assign_holdout) gives the same
    counts as the preview, down to the holdout the hash draws."""
    settings, engine, run_id, as_of = base
    spec = load_campaign(settings, CAMPAIGN)
    p = preview_campaign(settings, spec)
    said = []
    scored = read_scored(run_dir(settings.runs_dir, run_id))
    chosen = choose_audience(settings, spec, scored, as_of, engine, by_uplift=False, say=said.append)
    assert (len(scored), len(chosen.exclusions), len(chosen.eligible), len(chosen.selected)) == (
        p["n_scored"],
        p["n_excluded"],
        p["n_eligible"],
        p["n_selected"],
    )
    assert chosen.excluded_by_reason == p["excluded_by_reason"]
    held = assign_holdout(chosen.selected, spec.salt, run_id, p["holdout_fraction"])
    assert int((held == HOLDOUT).sum()) == p["n_holdout"]
    assert said[-1].endswith(f"{p['n_selected']:,} selected (top_k)")
    # by uplift, eligible customers with a score <= 0 are never picked
    shifted = scored.assign(score=scored["score"] - 0.5)
    uplift = choose_audience(settings, spec, shifted, as_of, engine, by_uplift=True, say=said.append)
    assert uplift.not_positive > 0 and (uplift.selected["score"] > 0).all()
    assert "estimated uplift <= 0: not selected" in said[-2]
    assert GROUP not in chosen.selected.columns


def test_a_stricter_rule_selects_fewer(base):
    settings = base[0]
    loose = preview_campaign(settings, _spec())
    strict = preview_campaign(
        settings,
        _spec(
            audience=[
                {"column": "tenure_days", "op": ">=", "value": 90},
                {"column": "aum_last", "op": ">", "value": 500},
            ]
        ),
    )
    assert 0 < strict["n_selected"] < loose["n_selected"]
    assert strict["n_eligible"] < loose["n_eligible"]
    assert "audience:aum_last > 500" in strict["excluded_by_reason"]
    assert "audience:aum_last > 500" not in loose["excluded_by_reason"]


def test_place_rules_pick_the_homes_near_a_branch_on_the_banks_own_cities(base):
    """The bank's wide table carries each customer's region and city (audience attributes, not features); a
    within_km rule keeps exactly the customers whose home city centre is near the lake's branch."""
    from pipelines.campaigns.place_rules import home_distances, lake_branches
    from pipelines.data import places

    settings, engine, run_id, as_of = base
    wide = storage.read_frame(run_dir(settings.runs_dir, run_id) / "features.parquet")
    assert wide["region"].notna().all() and wide["city"].notna().all()
    assert set(wide["city"].astype(str)) <= set(places.CITY_NAMES)
    region_of_city = wide["city"].astype(str).map(lambda c: places.CITY_BY_NAME[c].region)
    assert (wide["region"].astype(str) == region_of_city).all()
    branches = lake_branches(settings.lake_dir)
    assert branches is not None and len(branches) == len(places.BRANCHES)
    near = _spec(audience=[{"within_km": {"of": "BR001", "km": 100}}])  # London Central
    inside = set(wide.loc[home_distances(near.audience[0], wide["city"], branches) <= 100, "customer_id"])
    assert 0 < len(inside) < len(wide)
    scored = read_scored(run_dir(settings.runs_dir, run_id))
    say = [].append
    loose = choose_audience(settings, _spec(audience=[]), scored, as_of, engine, by_uplift=False, say=say)
    chosen = choose_audience(settings, near, scored, as_of, engine, by_uplift=False, say=say)
    assert set(chosen.eligible["customer_id"]) == set(loose.eligible["customer_id"]) & inside
    p = preview_campaign(settings, near)
    assert (
        p["n_eligible"] == len(chosen.eligible)
        and "audience:city within 100 km of BR001" in p["excluded_by_reason"]
    )
    london = preview_campaign(settings, _spec(audience=[{"column": "region", "op": "==", "value": "London"}]))
    assert 0 < london["n_eligible"] <= p["n_eligible"]  # every London home is within 100 km of London Central


def test_auto_holdout_follows_the_power_plan_and_a_larger_holdout_detects_smaller_lifts(base):
    settings = base[0]
    power = {"baseline_rate": 0.04, "min_detectable_lift": 0.02}
    auto = preview_campaign(settings, _spec(holdout_fraction="auto", power=power))
    plan = holdout_fraction_for(auto["n_selected"], 0.04, 0.02)
    assert auto["holdout_fraction"] == plan.fraction and auto["holdout_note"] == plan.describe()
    assert auto["baseline_rate"] == 0.04 and "power block" in auto["baseline_source"]
    mdes = [preview_campaign(settings, _spec(holdout_fraction=f))["mde"] for f in (0.05, 0.2, 0.4)]
    assert mdes[0] > mdes[1] > mdes[2] > 0


def test_the_baseline_comes_from_the_campaigns_newest_readout(base, tmp_path):
    settings, _engine, run_id, _as_of = base
    copy = tmp_path / "campaigns.db"
    shutil.copy(settings.data_dir / "campaigns.db", copy)
    other = Settings(
        data_dir=settings.data_dir, mlruns_dir=settings.mlruns_dir, database_url=f"sqlite:///{copy}"
    )
    row = {
        "campaign_id": run_id,
        "response_window_days": 14,
        **{"treated_n": 900, "treated_conv": 50, "control_n": 100, "control_conv": 4},
        **{"treated_rate": 50 / 900, "control_rate": 0.041, "lift_abs": 0.015, "lift_ci_low": -0.02},
        **{"lift_ci_high": 0.05, "p_value": 0.4, "incremental_responses": 13.0, "trustworthy": True},
    }
    store.write_result(store_schema.make_engine(other.database_url), row)
    p = preview_campaign(other, load_campaign(settings, CAMPAIGN))
    assert p["baseline_rate"] == 0.041
    assert p["baseline_source"] == f"baseline 4.1 % from the readout of {run_id}"
    # another campaign's readout is not this one's baseline
    assert "response_rate_floor" in preview_campaign(other, _spec())["baseline_source"]


def test_no_base_is_one_clear_line(base, tmp_path):
    empty = Settings(data_dir=tmp_path / "empty", mlruns_dir=tmp_path / "mlruns")
    with pytest.raises(LookupError, match=r"^no scored base for model churn yet: .*`make run`\)$"):
        preview_campaign(empty, _spec())
    assert not (tmp_path / "empty").exists()
    with pytest.raises(LookupError, match="no scored base for model uplift yet"):
        preview_campaign(base[0], _spec(model="uplift", holdout_fraction=0.1))


def test_a_segment_rule_counts_as_on_the_whole_folder(base):
    """A rule on a segments column: the preview reads only that column, and counts what the full frame gives."""
    settings, engine, run_id, as_of = base
    spec = _spec(
        audience=[{"column": "lifecycle_stage", "op": "in", "value": ["active", "loyal"]}],
        selection={"score_threshold": 0.5},
    )
    p = preview_campaign(settings, spec)
    full = read_scored(run_dir(settings.runs_dir, run_id))
    chosen = choose_audience(settings, spec, full, as_of, engine, by_uplift=False, say=lambda _m: None)
    assert (p["n_eligible"], p["n_selected"]) == (len(chosen.eligible), len(chosen.selected))
    assert 0 < p["n_selected"] < p["n_eligible"]
    assert p["excluded_by_reason"] == chosen.excluded_by_reason
    assert "audience:lifecycle_stage in [active, loyal]" in p["excluded_by_reason"]
