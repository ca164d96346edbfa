"""Uplift training end to end on simulated randomised experiments: real LightGBM learners, a real MLflow sqlite
store, selection, the verdict, comparisons with the oracle and a response ranking, champion/challenger on Qini."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.models.uplift import LEARNERS, uplift_config
from pipelines.models.uplift_metrics import HETEROGENEITY, NO_HETEROGENEITY
from pipelines.models.uplift_selection import DEFAULT_LEARNERS
from pipelines.models.uplift_training import (
    TEST_METRICS,
    champion_verdict,
    decide_uplift_promotion,
    train_uplift,
)

# One thread: the tests share a 2-core machine with other work, where two spinning OpenMP threads can run many times
# slower; LightGBM gives the same model with 1 or 2 threads here (deterministic=True).
FAST = uplift_config(learning_rate=0.1, n_estimators=300, early_stopping_rounds=30, num_threads=1)
FEATURES = ["x0", "x1", "x2", "x3", "channel"]


def simulate(n: int, seed: int, heterogeneous: bool = True):
    """A 50/50 experiment: (frame, true uplift, response score).

    Heterogeneous: persuadables (x0 > 0.6) base 4 % +12 points, do-not-disturb (x0 < 0.2) base 12 % -8 points,
    sure things (x2 > 0.7, otherwise) base 35 % and lost causes 3 % unaffected. Otherwise a constant +2 points.
    The response score is the true p(response | treated) with a little noise: it ranks sure things first.
    """
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, 4))
    channel = rng.choice(["email", "sms", "push"], n)
    persuadable, dnd = x[:, 0] > 0.6, x[:, 0] < 0.2
    sure = (x[:, 2] > 0.7) & ~persuadable & ~dnd
    base = np.select([persuadable, dnd, sure], [0.04, 0.12, 0.35], 0.03)
    effect = np.select([persuadable, dnd], [0.12, -0.08], 0.0) if heterogeneous else np.full(n, 0.02)
    t = (rng.uniform(size=n) < 0.5).astype(np.int8)
    y = (rng.uniform(size=n) < base + effect * t).astype(np.int8)
    frame = pd.DataFrame({f"x{i}": x[:, i] for i in range(4)})
    frame["channel"] = pd.Categorical(channel)
    frame["treated"], frame["converted"] = t, y
    return frame, effect, base + effect + rng.normal(0, 0.005, n)


def _split(frame):
    a, b = len(frame) // 2, 3 * len(frame) // 4
    return frame.iloc[:a], frame.iloc[a:b], frame.iloc[b:]


@pytest.fixture(scope="module")
def experiment():
    frame, effect, response = simulate(40_000, 0)
    b = 3 * len(frame) // 4
    return _split(frame), effect[b:], response[b:]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('uplift_store')}/mlflow.db"


@pytest.fixture(scope="module")
def first(experiment, store):
    (train, valid, test), truth, response = experiment
    lines: list[str] = []
    result = train_uplift(
        train,
        valid,
        test,
        features=FEATURES,
        categorical=["channel"],
        config=FAST,
        tracking_uri=store,
        true_uplift_test=truth,
        baseline_scores={"response": response},
        progress=lines.append,
    )
    return result, lines


def test_heterogeneous_experiment_is_found_promoted_and_logged(first, store):
    from mlflow import MlflowClient

    result, lines = first
    m = result.metrics
    assert result.verdict == HETEROGENEITY, result.summary()
    assert 0 < m["qini_ci_low"] < m["qini"] < m["qini_ci_high"]
    assert m["qini_share_of_oracle"] >= 0.8, result.summary()
    assert result.promoted and result.version == "1" and result.champion_version is None
    assert sorted(result.learners["learner"]) == sorted(DEFAULT_LEARNERS)
    assert result.learner == result.learners["learner"].iloc[0]
    assert (m["n_train"], m["n_valid"], m["n_test"]) == (20_000, 10_000, 10_000)
    # the selection cross-fits on train + valid (3 folds) and reports each learner's mean and standard error
    assert (result.learners["qini_se"] > 0).all()
    assert (
        result.model.encoder is not None and m[f"cv_qini_{result.learner}"] == result.learners["qini"].iloc[0]
    )
    # progress: each cross-fit, the refit, the selection, the evaluation
    assert sum(line.startswith("cross-fitting ") for line in lines) == len(DEFAULT_LEARNERS)
    assert any(line.startswith(f"refitting {result.learner} on all 30,000 rows") for line in lines)
    assert any(line.startswith(f"selected {result.learner}") for line in lines)
    assert any(line.startswith("test qini") for line in lines)

    client = MlflowClient(tracking_uri=store, registry_uri=store)
    run = client.get_run(result.run_id)
    expected = {
        *TEST_METRICS,
        "incremental_at_30",
        *(f"cv_qini_{name}" for name in DEFAULT_LEARNERS),
        *(f"cv_qini_se_{name}" for name in DEFAULT_LEARNERS),
        "selection_lead",
        "selection_lead_se",
        "n_train",
        "n_valid",
        "n_test",
        "oracle_qini",
        "qini_share_of_oracle",
        "qini_by_response",
        "incremental_at_30_by_response",
        "promoted",
    }
    assert set(run.data.metrics) == expected
    assert run.data.metrics["qini"] == pytest.approx(m["qini"])
    assert run.data.tags["verdict"] == HETEROGENEITY and run.data.params["learner"] == result.learner
    assert run.data.params["label"] == "converted" and run.data.params["run.treatment"] == "treated"
    assert run.data.params["run.selection_folds"] == "3"
    version = client.get_model_version("uplift", "1")
    assert version.tags["verdict"] == HETEROGENEITY and version.tags["promotion"] == "promoted"
    assert str(client.get_model_version_by_alias("uplift", "champion").version) == "1"
    files = {f.path for f in client.list_artifacts(result.run_id, "evaluation")}
    assert {f"evaluation/{n}" for n in ("learners.csv", "qini_curve.csv", "qini_curve.png")} <= files
    learners = pd.read_csv(client.download_artifacts(result.run_id, "evaluation/learners.csv"))
    assert list(learners["learner"]) == list(result.learners["learner"])
    assert {"qini_se", "qini_fold_1", "qini_fold_3"} <= set(learners.columns)
    assert "± SE" in result.summary() and "selection: " in result.summary()
    curve = pd.read_csv(client.download_artifacts(result.run_id, "evaluation/qini_curve.csv"))
    assert len(curve) == 101 and {"incremental_oracle", "incremental_by_response"} <= set(curve.columns)
    features = json.loads(
        Path(client.download_artifacts(result.run_id, "evaluation/features.json")).read_text()
    )
    assert features["features"] == FEATURES


def test_targeting_by_uplift_beats_the_response_ranking(first):
    m = first[0].metrics
    # the response score puts the sure things (no effect) first; the uplift model the persuadables
    assert m["incremental_at_30"] > 1.3 * m["incremental_at_30_by_response"], first[0].summary()
    assert m["qini"] > m["qini_by_response"]
    assert "ranking by response" in first[0].summary()


def test_registered_pyfunc_scores_like_the_fitted_learner(first, experiment, store):
    from pipelines.models.propensity import pyfunc_input
    from pipelines.models.registry import load_champion

    (_, _, test), _, _ = experiment
    result = first[0]
    champion = load_champion("uplift", store)
    frame = pyfunc_input(test.head(500), FEATURES, ["channel"])
    np.testing.assert_allclose(
        champion.predict(frame), result.model.predict_uplift(test[FEATURES].head(500)), rtol=0, atol=1e-12
    )


def test_retraining_the_same_data_is_deterministic_and_not_promoted(first, experiment, store):
    from mlflow import MlflowClient

    (train, valid, test), truth, _ = experiment
    again = train_uplift(
        train, valid, test, features=FEATURES, categorical=["channel"], config=FAST, tracking_uri=store
    )
    before = first[0]
    for key in (*TEST_METRICS, "incremental_at_30"):
        assert again.metrics[key] == before.metrics[key]
    assert again.learner == before.learner
    assert again.version == "2" and not again.promoted and again.champion_version == "1"
    assert again.metrics["champion_qini"] == pytest.approx(before.metrics["qini"], abs=1e-12)
    assert again.metrics["qini_gain"] == pytest.approx(0.0, abs=1e-12)
    assert "FAIL" in again.reasons[0] and "required >= +0.0050" in again.reasons[0]
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    assert str(client.get_model_version_by_alias("uplift", "champion").version) == "1"
    assert str(client.get_model_version_by_alias("uplift", "challenger").version) == "2"
    assert client.get_model_version("uplift", "2").tags["promotion"] == "rejected"


def test_champion_verdict_returns_what_was_logged(first, store, tmp_path):
    result = first[0]
    got = champion_verdict(store)
    assert got == {
        "version": "1",
        "verdict": HETEROGENEITY,
        "qini": pytest.approx(result.metrics["qini"]),
        "qini_ci_low": pytest.approx(result.metrics["qini_ci_low"]),
        "qini_ci_high": pytest.approx(result.metrics["qini_ci_high"]),
        "run_id": result.run_id,
    }
    assert champion_verdict(store, "no_such_model") is None
    assert champion_verdict(f"sqlite:///{tmp_path}/absent.db") is None
    assert not (tmp_path / "absent.db").exists()  # asking created no store


def test_no_heterogeneity_gives_the_fallback_verdict(tmp_path):
    frame, effect, _ = simulate(20_000, 0, heterogeneous=False)
    train, valid, test = _split(frame)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    result = train_uplift(
        train,
        valid,
        test,
        features=FEATURES,
        categorical=["channel"],
        config=FAST,
        tracking_uri=uri,
        model_name="flat",
        learners={"t_learner": LEARNERS["t_learner"](FAST), "s_learner": LEARNERS["s_learner"](FAST)},
        valid_in_folds=False,
        progress=(lines := []).append,
    )
    assert result.verdict == NO_HETEROGENEITY, result.summary()
    # the validation rows stayed out of the folds and the refit: the chosen learner's check on them is logged
    assert any(line.startswith(f"refitting {result.learner} on all 10,000 rows") for line in lines)
    assert -1 < result.metrics["valid_qini"] < 1
    assert "validation rows (not in the folds)" in result.summary()
    assert result.metrics["qini_ci_low"] < 0 < result.metrics["qini_ci_high"]
    assert set(result.learners["learner"]) == {"t_learner", "s_learner"}
    # registered and, as the first version, promoted: the verdict tells campaigns to fall back
    assert result.promoted
    assert champion_verdict(uri, "flat")["verdict"] == NO_HETEROGENEITY
    assert "fall back to the response score" in result.summary()


@pytest.mark.parametrize(
    "challenger, champion, promoted",
    [(0.10, None, True), (0.106, 0.10, True), (0.104, 0.10, False), (0.05, 0.10, False)],
)
def test_promotion_rule(challenger, champion, promoted):
    decision = decide_uplift_promotion(
        {"qini": challenger}, None if champion is None else {"qini": champion}, 0.005
    )
    assert decision.promoted is promoted
    assert len(decision.reasons) == 1


@pytest.mark.parametrize(
    "change, error, match",
    [
        (lambda f: f.assign(converted=f["converted"] * 2), ValueError, "'converted' must be 0/1"),
        (lambda f: f.drop(columns=["x3"]), KeyError, "lacks feature column"),
        (
            lambda f: f.assign(treated=f["treated"].astype(float).where(f.index % 7 > 0)),
            ValueError,
            "missing",
        ),
    ],
)
def test_input_checks_fail_before_anything_is_fitted(change, error, match, tmp_path):
    frame, _, _ = simulate(400, 1)
    train, valid, test = _split(frame)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with pytest.raises(error, match=match):
        train_uplift(
            change(train),
            valid,
            test,
            features=FEATURES,
            categorical=["channel"],
            config=FAST,
            tracking_uri=uri,
        )
    with pytest.raises(ValueError, match="listed as a feature"):
        train_uplift(
            train, valid, test, features=[*FEATURES, "treated"], categorical=[], config=FAST, tracking_uri=uri
        )
    assert not (tmp_path / "mlflow.db").exists()
