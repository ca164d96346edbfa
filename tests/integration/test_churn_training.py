"""Churn on the synthetic bank: close to the oracle, and a retrain on unchanged data is not promoted."""

from __future__ import annotations

import pytest

from pipelines.synth import SynthConfig, generate_bank
from pipelines.train import TrainConfig, train_churn


@pytest.mark.slow
def test_churn_model_reaches_the_oracle_and_an_unchanged_retrain_is_not_promoted(tmp_path):
    data = tmp_path / "bank"
    generate_bank(SynthConfig(customers=50_000, months=12, seed=42), data, progress=None)
    tracking = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    config = TrainConfig(model_name="churn")

    first = train_churn(data, tracking_uri=tracking, config=config, progress=None)
    m = first.metrics
    assert first.promoted
    assert m["auc"] >= 0.97 * m["oracle_auc"], m
    assert abs(m["top_decile_lift"] - m["oracle_top_decile_lift"]) <= 0.10 * m["oracle_top_decile_lift"], m
    assert m["auc_to_oracle"] == pytest.approx(m["auc"] / m["oracle_auc"])

    second = train_churn(data, tracking_uri=tracking, config=config, progress=None)
    assert not second.promoted
    assert second.metrics["auc"] == pytest.approx(m["auc"])  # deterministic: same data, same model
    assert second.champion_version == first.version
