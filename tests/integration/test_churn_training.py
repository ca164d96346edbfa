"""Churn on the synthetic bank: close to the oracle, a retrain on unchanged data is not promoted, a model trained
on shuffled labels is rejected (and MLflow says why), and the wide-table gate runs before training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.data import gates, suites
from pipelines.features.labels import LABEL, SNAPSHOT
from pipelines.jobs.training import train_churn
from pipelines.models.propensity import TrainConfig
from pipelines.models.registry import CHALLENGER, CHAMPION
from pipelines.synthetic.bank import SynthConfig, generate_bank
from tests.conftest import PROJECT_ROOT
from tests.integration import standalone


def _client(tracking: str):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=tracking, registry_uri=tracking)


def _gate_report(client, run_id: str) -> dict:
    path = client.download_artifacts(run_id, "validation/customer_features.json")
    return json.loads(Path(path).read_text(encoding="utf-8"))


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

    # The champion stands alone: it loads and predicts without the project, and `mlflow models serve` answers it
    # from an environment built from its own requirements.
    loaded = standalone.check_standalone(tracking, "churn", tmp_path / "standalone")
    seconds = standalone.check_served(tracking, "churn", tmp_path / "serve", loaded)
    print(
        f"churn: standalone load+predict {loaded['seconds']:.1f} s, env build + first answer {seconds:.1f} s"
    )


def shuffle_labels_within_snapshot(frame: pd.DataFrame) -> pd.DataFrame:
    """Labels permuted inside each snapshot (seeded): same positives per snapshot, no link to the features."""
    rng = np.random.default_rng(20250901)
    out = frame.copy()
    for _, rows in out.groupby(SNAPSHOT).groups.items():
        out.loc[rows, LABEL] = rng.permutation(out.loc[rows, LABEL].to_numpy())
    return out


@pytest.mark.slow
def test_a_model_trained_on_shuffled_labels_is_rejected_and_mlflow_says_why(bank, tmp_path):
    tracking = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    config = TrainConfig(model_name="churn")

    champion = train_churn(bank, tracking_uri=tracking, config=config, progress=None)
    assert champion.promoted
    assert champion.metrics["auc"] > 0.75, champion.metrics

    shuffled = train_churn(
        bank,
        tracking_uri=tracking,
        config=config,
        label_transform=shuffle_labels_within_snapshot,
        progress=None,
    )
    assert not shuffled.promoted
    assert shuffled.champion_version == champion.version
    # Judged on the real labels of the test snapshot, the shuffled model is no better than chance.
    assert abs(shuffled.metrics["auc"] - 0.5) < 0.05, shuffled.metrics
    failed = {r.split(":")[0] for r in shuffled.reasons if r.endswith("FAIL")}
    assert {"auc", "top_decile_lift"} <= failed, shuffled.reasons

    client = _client(tracking)
    run = client.get_run(shuffled.run_id)
    assert run.data.tags["promotion.decision"] == "rejected"
    reasons = run.data.tags["promotion.reasons"]
    assert reasons.startswith(f"churn v{shuffled.version}: rejected (champion was v{champion.version})")
    assert all(r in reasons for r in shuffled.reasons)
    assert "auc: challenger" in reasons and "-> FAIL" in reasons
    assert run.data.params["run.label_transform"] == "shuffle_labels_within_snapshot"
    assert run.data.metrics["promoted"] == 0.0
    assert run.data.metrics["gain_auc"] < -0.2
    version = client.get_model_version("churn", shuffled.version)
    assert version.tags["promotion"] == "rejected"
    assert version.tags["run_id"] == shuffled.run_id
    assert str(client.get_model_version_by_alias("churn", CHAMPION).version) == champion.version
    assert str(client.get_model_version_by_alias("churn", CHALLENGER).version) == shuffled.version

    # The champion's run is untouched by the audit and carries no label transform.
    first_run = client.get_run(champion.run_id)
    assert first_run.data.tags["promotion.decision"] == "promoted"
    assert "run.label_transform" not in first_run.data.params

    # Both runs passed the wide-table gate and carry its report.
    for r in (first_run, run):
        assert r.data.metrics["gx_success"] == 1.0
        assert r.data.metrics["gx_critical_failures"] == 0.0
        assert r.data.metrics["gx_warnings"] == 0.0
        report = _gate_report(client, r.info.run_id)
        assert report["suite"] == "customer_features" and report["success"] is True
        assert len(report["snapshots"]) == 5
        assert all(s["success"] and s["rows"] > 15_000 for s in report["snapshots"].values())
        # The suite's rules plus the point-in-time rule "computed at as_of" (features.gate.AS_OF_RULE).
        assert sum(s["expectations"] for s in report["snapshots"].values()) == 5 * (
            len(suites.load_suite("customer_features", PROJECT_ROOT / "expectations")["expectations"]) + 1
        )


def test_a_critical_feature_failure_stops_training_before_anything_is_logged(bank, tmp_path):
    """A suite whose age band the data breaks: the run stops naming snapshot, column and rule; no MLflow run."""
    suite = json.loads((PROJECT_ROOT / "expectations" / "customer_features.json").read_text())
    for e in suite["expectations"]:
        if e["meta"]["rule"] == "age plausible":
            e["kwargs"]["max_value"] = 30
    expectations = tmp_path / "expectations"
    expectations.mkdir()
    (expectations / "customer_features.json").write_text(json.dumps(suite))
    tracking = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"

    with pytest.raises(gates.ValidationError) as caught:
        train_churn(bank, tracking_uri=tracking, expectations_dir=expectations, snapshots=3, progress=None)
    message = str(caught.value)
    assert message.startswith("churn training stopped: the wide table failed its critical expectations")
    assert message.count("validation of customer_features as of ") == 3
    assert "customer_features.age_years: rule 'age plausible' (critical) failed on" in message
    assert not (tmp_path / "mlruns").exists()
