"""A lookalike campaign end to end on a small generated bank: ``run_campaign`` fits the seed-vs-base model on the
run's wide table, selects the top ``size`` eligible non-seed customers with the usual holdout, records the model
as ``lookalike`` / the seed's hash with the seed size and AUC (campaign_runs and the MLflow run), and the readout
works as for any campaign."""

from __future__ import annotations

import shutil
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
import yaml

from pipelines.campaigns import store, store_schema
from pipelines.config import PROJECT_ROOT, Settings
from pipelines.data import storage
from pipelines.models.lookalike import LookalikeError, seed_version
from pipelines.synthetic.bank import SynthConfig, generate_bank

NAME = "travel-lookalike"
SIZE = 300


@pytest.fixture(scope="module")
def lookalike_run(tmp_path_factory):
    from pipelines.jobs.campaigns import run_campaign
    from pipelines.jobs.common import resolve_as_of

    home = tmp_path_factory.mktemp("lookalike")
    (home / "campaigns").mkdir()
    spec = yaml.safe_load((PROJECT_ROOT / "campaigns" / f"{NAME}.yaml").read_text(encoding="utf-8"))
    spec["lookalike"]["size"] = SIZE  # the demo spec, sized for a small bank
    (home / "campaigns" / f"{NAME}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    settings = Settings(home=home, data_dir=home / "data", campaigns_dir=home / "campaigns")
    generate_bank(
        SynthConfig(customers=4_000, months=12, seed=3, chunk_size=4_000), settings.data_dir, progress=None
    )
    as_of = resolve_as_of(settings)
    return settings, as_of, run_campaign(settings, NAME, as_of, progress=None)


def test_a_lookalike_run_selects_the_top_non_seed_customers_with_a_holdout(lookalike_run):
    settings, as_of, run = lookalike_run
    folder = settings.runs_dir / run["run_id"]
    wide = storage.read_frame(folder / "features.parquet")
    seed = wide.loc[
        (wide["cat_travel_spend_share_180d"] >= 0.2) & (wide["spend_180d"] >= 5000), "customer_id"
    ].to_numpy()
    targets = storage.read_frame(folder / "targets.parquet")
    exclusions = storage.read_frame(folder / "exclusions.parquet")
    scores = storage.read_frame(folder / "scores.parquet")

    assert 50 <= len(seed) < len(wide) / 2
    assert run["selected"] == len(targets) == SIZE and run["treatment"] + run["holdout"] == SIZE
    assert run["holdout"] == pytest.approx(0.1 * SIZE, abs=3) and run["srm_p_value"] > 0.001
    # Seeds are scored (reported) but never selected; those the policy left eligible are audited as seeds.
    assert not np.isin(targets["customer_id"], seed).any()
    assert np.isin(scores["customer_id"], seed).sum() == len(seed)
    seeds_out = exclusions.loc[exclusions["exclusion_reason"] == "lookalike_seed", "customer_id"]
    assert 0 < len(seeds_out) <= len(seed) and np.isin(seeds_out, seed).all()
    assert run["excluded_by_reason"]["lookalike_seed"] == len(seeds_out)
    # The top `size` of the eligible: no eligible customer left out scores above a selected one.
    left_out = scores.loc[
        ~scores["customer_id"].isin(pd.concat([targets["customer_id"], exclusions["customer_id"]]))
    ]
    assert len(left_out) > 0 and left_out["score"].max() <= targets["score"].min()
    # Seed customers look most like the seed: their (out-of-fold) scores are well above the base's.
    is_seed = scores["customer_id"].isin(seed)
    assert scores.loc[is_seed, "score"].median() > 5 * scores.loc[~is_seed, "score"].median()
    # Reason codes name what makes the best lookalikes look like the seed.
    assert targets.sort_values("rank")["reason_1"].head(20).notna().all()


def test_the_run_records_the_lookalike_and_reads_out_like_any_campaign(lookalike_run):
    from mlflow import MlflowClient

    from pipelines.jobs.readouts import readout_campaign, simulate_responses

    settings, as_of, run = lookalike_run
    wide = storage.read_frame(settings.runs_dir / run["run_id"] / "features.parquet")
    seed = wide.loc[
        (wide["cat_travel_spend_share_180d"] >= 0.2) & (wide["spend_180d"] >= 5000), "customer_id"
    ]
    engine = store_schema.make_engine(settings.database_url)
    row = store.list_runs(engine, NAME).iloc[0]
    assert (row["model_name"], row["model_version"]) == ("lookalike", seed_version(seed.to_numpy()))
    details = row["details"] if isinstance(row["details"], dict) else yaml.safe_load(row["details"])
    figures = details["lookalike"]
    assert figures["seed_size"] == len(seed) and figures["size"] == SIZE and figures["folds"] == 5
    assert 0.5 < figures["seed_auc"] <= 1.0
    assert figures["seed"] == "query cat_travel_spend_share_180d >= 0.2 and spend_180d >= 5000"
    params = MlflowClient(settings.mlflow_tracking_uri).get_run(run["mlflow_run_id"]).data.params
    assert params["model"] == f"lookalike v{seed_version(seed.to_numpy())}"
    assert params["lookalike_seed_size"] == str(len(seed))
    assert float(params["lookalike_seed_auc"]) == pytest.approx(figures["seed_auc"])

    simulate_responses(settings, run["run_id"])
    readout = readout_campaign(settings, run["run_id"], as_of=as_of + timedelta(days=15), progress=None)
    assert (readout["treated_n"], readout["control_n"]) == (run["treatment"], run["holdout"])
    assert readout["campaign_id"] == run["run_id"] and readout["srm_p_value"] > 0.001


def test_a_missing_seed_file_fails_the_first_check(lookalike_run, tmp_path):
    from pipelines.jobs.campaigns import check_campaign

    settings, _, _ = lookalike_run
    campaigns = tmp_path / "campaigns"
    shutil.copytree(settings.campaigns_dir, campaigns)
    spec = yaml.safe_load((campaigns / f"{NAME}.yaml").read_text(encoding="utf-8"))
    spec["lookalike"] = {"seed_file": "seeds/best.csv", "size": SIZE}
    (campaigns / f"{NAME}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    own = Settings(**{**settings.model_dump(), "campaigns_dir": campaigns})
    with pytest.raises(LookalikeError, match=r"seed file .*seeds/best\.csv not found"):
        check_campaign(own, NAME)
