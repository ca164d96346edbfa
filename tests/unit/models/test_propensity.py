"""Training, calibration, registration and the promotion rule: real LightGBM, real MLflow on a tmp SQLite store."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.models.propensity import (
    CHALLENGER,
    CHAMPION,
    TrainConfig,
    decide_promotion,
    fit_model,
    load_champion,
    prepare_table,
    pyfunc_input,
    read_table,
    split_frame,
    train_and_register,
)

FEATURES = ["x1", "x2", "x3", "noise", "tier", "region"]
CATEGORICAL = ["tier", "region"]
TIERS = ["bronze", "silver", "gold", "platinum"]
REGIONS = ["north", "south", "east"]
# Small and quick: the early-stopping budget is what keeps these tests fast.
FAST = TrainConfig(model_name="unit", learning_rate=0.1, n_estimators=300, early_stopping_rounds=20)


def make_frame(n: int = 4000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1, x2, x3, noise = rng.normal(size=(4, n))
    tier = rng.choice(TIERS, n)
    region = rng.choice(REGIONS, n)
    tier_effect = (
        pd.Series(tier).map({"bronze": -0.8, "silver": 0.0, "gold": 0.6, "platinum": 1.2}).to_numpy()
    )
    logit = -1.6 + 1.2 * x1 - 0.8 * x2 + 0.5 * x3 * (x1 > 0) + tier_effect
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    x3[rng.uniform(size=n) < 0.05] = np.nan
    return pd.DataFrame(
        {
            "customer_id": np.arange(n),
            "x1": x1,
            "x2": x2,
            "x3": x3,
            "noise": noise,
            "tier": pd.Categorical(tier, categories=TIERS),
            "region": pd.Categorical(region, categories=REGIONS),
            "churned": y,
        }
    )


@pytest.fixture(scope="module")
def parts():
    return split_frame(make_frame(), "churned", seed=1)


@pytest.fixture(scope="module")
def fitted(parts):
    train, valid, _ = parts
    return fit_model(train, valid, FEATURES, CATEGORICAL, "churned", FAST)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    return root, f"sqlite:///{root}/mlflow.db"


def test_same_data_and_seed_give_identical_predictions(parts, fitted):
    train, valid, test = parts
    again = fit_model(train, valid, FEATURES, CATEGORICAL, "churned", FAST)
    assert again.best_iteration == fitted.best_iteration
    np.testing.assert_array_equal(again.predict_proba(test), fitted.predict_proba(test))


def test_fit_time_categories_are_applied_at_predict_time(parts, fitted):
    _, _, test = parts
    expected = fitted.predict_proba(test)
    assert fitted.categories == {"tier": TIERS, "region": REGIONS}
    shuffled = test.copy()
    shuffled["tier"] = pd.Categorical(test["tier"].astype(str), categories=list(reversed(TIERS)))
    shuffled["region"] = test["region"].astype(str)  # plain pandas 3 str column
    np.testing.assert_array_equal(fitted.predict_proba(shuffled), expected)
    # The codes really differ between the two frames, so equality is not a coincidence.
    assert not np.array_equal(shuffled["tier"].cat.codes, test["tier"].cat.codes)


def test_unseen_category_is_missing_not_another_category(parts, fitted):
    _, _, test = parts
    rows = test.head(200).copy()
    unseen = rows.copy()
    unseen["tier"] = "diamond"
    missing = rows.copy()
    missing["tier"] = pd.Categorical([None] * len(rows), categories=TIERS)
    assert np.isnan(fitted.encode(unseen)[:, FEATURES.index("tier")]).all()
    np.testing.assert_array_equal(fitted.predict_proba(unseen), fitted.predict_proba(missing))
    assert fitted.unseen_categories(unseen) == {"tier": 200}
    for value in TIERS:  # and it matches none of the known tiers
        known = rows.copy()
        known["tier"] = pd.Categorical([value] * len(rows), categories=TIERS)
        assert not np.array_equal(fitted.predict_proba(known), fitted.predict_proba(unseen))


def test_missing_feature_column_is_named(parts, fitted):
    with pytest.raises(KeyError, match="x2"):
        fitted.predict_proba(parts[2].drop(columns=["x2"]))


@pytest.mark.parametrize("calibration", ["isotonic", "platt"])
def test_calibrated_mean_matches_observed_rate_on_test(parts, calibration):
    train, valid, test = parts
    model = fit_model(
        train,
        valid,
        FEATURES,
        CATEGORICAL,
        "churned",
        TrainConfig(**{**FAST.__dict__, "calibration": calibration}),
    )
    p = model.predict_proba(test)
    assert ((p >= 0) & (p <= 1)).all()
    assert abs(p.mean() - test["churned"].mean()) < 0.02


def test_contributions_sum_to_the_raw_score(parts, fitted):
    test = parts[2].head(300)
    contrib = fitted.raw_contributions(test)
    assert list(contrib.columns) == [*FEATURES, "bias"]
    np.testing.assert_allclose(contrib.sum(axis=1).to_numpy(), fitted.raw_score(test), atol=1e-9)
    # The pure-noise feature carries far less than the strongest signal.
    strength = contrib.abs().mean()
    assert strength["x1"] > 5 * strength["noise"]


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


def test_prepare_table_errors_name_the_column():
    frame = pd.DataFrame(
        {"a": [1, 2, 3, 4], "y": ["yes", "no", "no", "maybe"], "when": pd.date_range("2025", periods=4)}
    )
    with pytest.raises(ValueError, match="'target' not in the table"):
        prepare_table(frame, "target")
    with pytest.raises(ValueError, match="'y' must have exactly 2 classes, found 3"):
        prepare_table(frame, "y")
    two = frame.assign(y=["yes", "no", "no", "yes"])
    with pytest.raises(ValueError, match="say which is positive"):
        prepare_table(two, "y")
    with pytest.raises(ValueError, match="'si' is not a class of 'y'"):
        prepare_table(two, "y", positive="si")
    with pytest.raises(ValueError, match="'when' has type datetime"):
        prepare_table(two, "y", positive="yes")
    with pytest.raises(ValueError, match="excluded column.*nope"):
        prepare_table(two, "y", positive="yes", exclude=["nope"])
    with pytest.raises(ValueError, match="'y' has 1 missing"):
        prepare_table(two.assign(y=["yes", None, "no", "no"]), "y", positive="yes", exclude=["when"])
    out, features, categorical, positive = prepare_table(two, "y", positive="yes", exclude=["when"])
    assert features == ["a"] and categorical == [] and positive == "yes"
    assert out["y"].tolist() == [1, 0, 0, 1]


@pytest.mark.parametrize("sep", [";", ",", "\t"])
def test_read_table_sniffs_the_delimiter(tmp_path, sep):
    frame = pd.DataFrame(
        {"age": [31, 45, 27], "job": ["admin.", "blue-collar", "unknown"], "y": ["no", "yes", "no"]}
    )
    path = tmp_path / "t.csv.gz"
    frame.to_csv(path, sep=sep, index=False)
    back = read_table(path)
    assert list(back.columns) == ["age", "job", "y"] and back["job"].tolist() == frame["job"].tolist()


def test_cli_train_prints_run_version_and_decision(tmp_path, monkeypatch, capsys):
    from pipelines.cli import main

    frame = make_frame(2000, seed=3).drop(columns=["customer_id"])
    frame["tier"] = frame["tier"].astype(str)
    frame["region"] = frame["region"].astype(str)
    frame["churned"] = np.where(frame["churned"] == 1, "yes", "no")
    frame.insert(0, "cust", np.arange(len(frame)))
    path = tmp_path / "customers.parquet"
    frame.to_parquet(path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.chdir(tmp_path)
    args = ["train", "--table", str(path), "--label", "churned", "--positive", "yes", "--id", "cust"]
    assert main([*args, "--exclude", "noise", "--name", "cli_model"]) == 0
    out = capsys.readouterr().out
    assert "version 1 PROMOTED to champion" in out
    assert "mlflow run id: " in out and "5 features (2 categorical)" in out
    assert main([*args, "--label", "missing"]) == 2
    assert "'missing' not in the table" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifacts", "customers.parquet", "mlflow.db"]


def test_mlflow_store_puts_the_environment_back(monkeypatch, tmp_path):
    """mlflow.set_tracking_uri writes MLFLOW_TRACKING_URI; left behind, it redirected later load_settings()."""
    import os

    from pipelines.config import load_settings
    from pipelines.models.propensity import mlflow_store

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    with mlflow_store(f"sqlite:///{tmp_path / 'a.db'}"):
        assert os.environ["MLFLOW_TRACKING_URI"].endswith("a.db")
    assert "MLFLOW_TRACKING_URI" not in os.environ and "MLFLOW_REGISTRY_URI" not in os.environ
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'b.db'}")
    with mlflow_store(f"sqlite:///{tmp_path / 'a.db'}"):
        pass
    assert load_settings().mlflow_tracking_uri.endswith("b.db")
