"""The value model on the synthetic bank: features at 2025-07-01, label = spend over the next 6 months, tracked and
registered in MLflow as ``value``; it beats BG/NBD + Gamma-Gamma fitted on the same bank's transactions, a retrain
on unchanged data is not promoted, and the registered pyfunc scores like the trained model."""

from __future__ import annotations

import pandas as pd
import pytest

from pipelines.features.catalogue import FEATURE_NAMES
from pipelines.features.wide_table import build_features, load_tables
from pipelines.models.registry import CHALLENGER, CHAMPION, load_champion
from pipelines.models.value import ValueConfig, predict_value
from pipelines.models.value_training import SNAPSHOT, train_value
from pipelines.synthetic.bank import SynthConfig, generate_bank
from tests.integration import standalone

BANK = SynthConfig(customers=8_000, months=12, seed=7, chunk_size=8_000)


def _client(tracking: str):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=tracking, registry_uri=tracking)


def _aliases(client) -> dict[str, str]:
    return {k: str(v) for k, v in client.get_registered_model("value").aliases.items()}


@pytest.fixture(scope="module")
def value_bank(tmp_path_factory):
    out = tmp_path_factory.mktemp("value_bank")
    generate_bank(BANK, out, progress=None)
    return out


@pytest.mark.slow
def test_value_model_beats_btyd_is_registered_and_an_unchanged_retrain_is_not_promoted(value_bank, tmp_path):
    tracking = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    first = train_value(value_bank, tracking_uri=tracking, progress=None)
    m = first.metrics
    assert first.promoted and first.version == "1"
    assert m["n"] == m["baseline_n"] > 1_500
    assert m["normalised_gini"] > m["baseline_normalised_gini"], first.summary()
    assert m["top20_share"] > m["baseline_top20_share"], first.summary()
    assert abs(m["total_error"]) <= 0.10, first.summary()
    assert m["baseline_total_error"] < -0.05  # BG/NBD misses the second half-year's seasonal lift
    assert m["gain_vs_baseline_normalised_gini"] == pytest.approx(
        m["normalised_gini"] - m["baseline_normalised_gini"]
    )

    client = _client(tracking)
    run = client.get_run(first.run_id)
    assert run.data.params["run.split"] == "customer"
    assert run.data.params["run.snapshots"] == "2025-07-01"
    assert run.data.params["run.horizon_months"] == "6"
    assert run.data.metrics["test_normalised_gini"] == pytest.approx(m["normalised_gini"])
    assert run.data.metrics["baseline_top20_share"] == pytest.approx(m["baseline_top20_share"])
    artifacts = {a.path for a in client.list_artifacts(first.run_id, "evaluation")}
    for name in ("decile_error.csv", "baseline_decile_error.csv", "feature_importance.csv", "features.json"):
        assert f"evaluation/{name}" in artifacts
    deciles = pd.read_csv(client.download_artifacts(first.run_id, "evaluation/decile_error.csv"))
    assert len(deciles) == 10 and deciles["mean_predicted"].is_monotonic_decreasing
    assert _aliases(client) == {CHAMPION: "1", CHALLENGER: "1"}

    # The registered pyfunc scores a fresh wide table exactly like the model in hand.
    as_of = pd.Timestamp("2025-07-01")
    wide = build_features(load_tables(value_bank / "lake", as_of), as_of)
    champion = load_champion("value", tracking)
    scored = predict_value(champion, wide)
    pd.testing.assert_series_equal(scored, predict_value(first.model, wide))
    assert scored.index.is_unique and len(scored) == len(wide)
    assert list(wide.columns[1:]) == list(FEATURE_NAMES)

    second = train_value(value_bank, tracking_uri=tracking, progress=None)
    assert not second.promoted and second.version == "2"
    assert second.metrics["normalised_gini"] == pytest.approx(m["normalised_gini"])  # deterministic
    assert second.champion_version == "1"
    assert any("normalised_gini" in r and "FAIL" in r for r in second.reasons)
    assert _aliases(client) == {CHAMPION: "1", CHALLENGER: "2"}

    # The champion loads and predicts without the project (tests/integration/standalone.py).
    standalone.check_standalone(tracking, "value", tmp_path / "standalone")


@pytest.mark.slow
def test_a_long_lake_trains_out_of_time(tmp_path):
    data = tmp_path / "bank"
    generate_bank(SynthConfig(customers=3_000, months=18, seed=3, chunk_size=3_000), data, progress=None)
    tracking = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    fast = ValueConfig(learning_rate=0.1, early_stopping_rounds=30, folds=3)
    result = train_value(data, tracking_uri=tracking, config=fast, baseline=False, progress=None)
    run = _client(tracking).get_run(result.run_id)
    # Lake 2025-01 .. 2026-06: test at 2026-01-01; the one training snapshot with 180 days of history and a
    # label window ending by the test snapshot is 2025-07-01.
    assert run.data.params["run.split"] == "time"
    assert run.data.params["run.snapshots"] == "2025-07-01,2026-01-01"
    assert "baseline_normalised_gini" not in result.metrics
    assert result.metrics["normalised_gini"] > 0.8
    assert SNAPSHOT == "as_of"
