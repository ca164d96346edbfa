"""Registration, aliases and the promotion rule: real LightGBM, real MLflow on a tmp SQLite store."""

from __future__ import annotations

import gc
import warnings

import numpy as np
import pytest

from pipelines.models.propensity import TrainConfig, pyfunc_input
from pipelines.models.registry import (
    CHALLENGER,
    CHAMPION,
    decide_promotion,
    load_champion,
    train_and_register,
)
from pipelines.models.tables import split_frame
from tests.unit.models.test_propensity import CATEGORICAL, FAST, FEATURES, make_frame


@pytest.fixture(scope="module")
def parts():
    return split_frame(make_frame(), "churned", seed=1)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    return root, f"sqlite:///{root}/mlflow.db"


def test_decide_promotion_applies_every_margin():
    config = TrainConfig(min_auc_gain=0.01, min_top_decile_lift_gain=0.1, max_brier_worsening=0.001)
    champ = {"auc": 0.80, "top_decile_lift": 3.0, "brier": 0.10}
    assert decide_promotion(champ, None, config).promoted
    better = {"auc": 0.82, "top_decile_lift": 3.2, "brier": 0.1005}
    assert decide_promotion(better, champ, config).promoted
    for worse in (
        {**better, "auc": 0.805},  # AUC gain below its margin
        {**better, "top_decile_lift": 3.05},  # lift gain below its margin
        {**better, "brier": 0.102},  # Brier worse than allowed
    ):
        decision = decide_promotion(worse, champ, config)
        assert not decision.promoted
        assert sum("FAIL" in r for r in decision.reasons) == 1


def _register(parts, store, config, *, shuffle_labels=False):
    train, valid, test = parts
    if shuffle_labels:
        rng = np.random.default_rng(5)
        train, valid = train.copy(), valid.copy()
        train["churned"] = rng.permutation(train["churned"].to_numpy())
        valid["churned"] = rng.permutation(valid["churned"].to_numpy())
    root, uri = store
    return train_and_register(
        train,
        valid,
        test,
        features=FEATURES,
        categorical=CATEGORICAL,
        label="churned",
        config=config,
        tracking_uri=uri,
        experiment="unit-tests",
        run_params={"window.lookback_days": 180, "label.definition": "no activity in 90 days"},
        lineage={"as_of": "2025-12-01", "source": "synthetic"},
        extra_metrics={"oracle_auc": 0.9},
    )


def test_register_promote_and_load_champion(parts, store, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)  # nothing may land in the working directory

    root, uri = store
    config = TrainConfig(**{**FAST.__dict__, "model_name": "churn_unit"})
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)

    first = _register(parts, store, config)
    assert first.version == "1" and first.promoted
    assert "no champion" in first.reasons[0]
    assert str(client.get_model_version_by_alias("churn_unit", CHAMPION).version) == "1"
    run = client.get_run(first.run_id)
    assert run.data.tags["promotion.decision"] == "promoted"
    assert run.data.params["run.window.lookback_days"] == "180"
    assert run.data.params["lineage.as_of"] == "2025-12-01"
    assert run.data.tags["lineage.source"] == "synthetic"
    assert run.data.metrics["oracle_auc"] == 0.9
    assert run.data.metrics["test_auc"] == pytest.approx(first.metrics["auc"])
    assert first.metrics["auc"] > 0.75
    assert run.info.artifact_uri.startswith((root / "artifacts").as_uri())
    artifacts = {a.path for a in client.list_artifacts(first.run_id, "evaluation")}
    assert {
        "evaluation/decile_table.csv",
        "evaluation/gains_chart.png",
        "evaluation/calibration_plot.png",
        "evaluation/feature_importance.csv",
        "evaluation/lineage.json",
    } <= artifacts

    # The same data again: identical metrics, so the margins are not met.
    second = _register(parts, store, config)
    assert second.version == "2" and not second.promoted
    assert second.metrics == first.metrics
    assert any("auc" in r and "FAIL" in r for r in second.reasons)
    run2 = client.get_run(second.run_id)
    assert run2.data.tags["promotion.decision"] == "rejected"
    assert "FAIL" in run2.data.tags["promotion.reasons"]
    assert run2.data.metrics["gain_auc"] == 0.0 and run2.data.metrics["promoted"] == 0.0
    assert str(client.get_model_version_by_alias("churn_unit", CHAMPION).version) == "1"
    assert str(client.get_model_version_by_alias("churn_unit", CHALLENGER).version) == "2"

    # Shuffled labels: no signal, rejected on AUC.
    noise = _register(parts, store, config, shuffle_labels=True)
    assert not noise.promoted and noise.metrics["auc"] < 0.6
    assert any(r.startswith("auc") and "FAIL" in r for r in noise.reasons)
    assert client.get_run(noise.run_id).data.tags["promotion.decision"] == "rejected"
    assert str(client.get_model_version_by_alias("churn_unit", CHAMPION).version) == "1"

    # The registered champion loads by alias and predicts what the in-memory model predicts.
    test = parts[2]
    loaded = load_champion("churn_unit", uri)
    served = np.asarray(loaded.predict(pyfunc_input(test, FEATURES, CATEGORICAL))).ravel()
    np.testing.assert_allclose(served, first.model.predict_proba(test), rtol=0, atol=1e-12)
    assert list(tmp_path.iterdir()) == []


def test_mlflow_store_puts_the_environment_back(monkeypatch, tmp_path):
    """mlflow.set_tracking_uri writes MLFLOW_TRACKING_URI; left behind, it redirected later load_settings()."""
    import os

    from pipelines.config import load_settings
    from pipelines.models.registry import mlflow_store

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    with mlflow_store(f"sqlite:///{tmp_path / 'a.db'}"):
        assert os.environ["MLFLOW_TRACKING_URI"].endswith("a.db")
    assert "MLFLOW_TRACKING_URI" not in os.environ and "MLFLOW_REGISTRY_URI" not in os.environ
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'b.db'}")
    with mlflow_store(f"sqlite:///{tmp_path / 'a.db'}"):
        pass
    assert load_settings().mlflow_tracking_uri.endswith("b.db")


def test_registering_and_loading_raise_no_library_warning(parts, tmp_path):
    """The causes of MLflow's warnings on every log and load are gone, not filtered: the pyfunc is a custom flavour
    that MLflow neither cloudpickles nor inspects for type hints, the conda environment is explicit (no pip-version
    lookup), and the input example's column labels are not the str dtype pandas 3 warns about comparing."""
    import logging

    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    mlflow_logger = logging.getLogger("mlflow")
    mlflow_logger.addHandler(handler)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    config = TrainConfig(**{**FAST.__dict__, "model_name": "churn_quiet"})
    # Garbage an earlier test in this worker left (e.g. a PostgreSQL connection in a reference cycle) is collected
    # now, not inside the window below, where its ResourceWarning would be counted against registration.
    gc.collect()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = _register(parts, (tmp_path, uri), config)
            served = load_champion("churn_quiet", uri).predict(pyfunc_input(parts[2], FEATURES, CATEGORICAL))
    finally:
        mlflow_logger.removeHandler(handler)
    np.testing.assert_allclose(np.asarray(served).ravel(), result.model.predict_proba(parts[2]), atol=1e-12)
    assert [r.getMessage() for r in records] == []
    # MLflow's own SQLAlchemy store uses a loader SQLAlchemy 2.1 deprecates: MLflow's to fix, not ours.
    ours = [
        f"{w.category.__name__}: {w.message}" for w in caught if w.category.__name__ != "SADeprecationWarning"
    ]
    assert ours == []
