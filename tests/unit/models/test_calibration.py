"""Ranking on the raw booster score, calibration apart: the calibrators never reorder or tie customers, ``auto``
chooses by the rarer class's count, models pickled with step isotonic calibrators still predict as before."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import log_loss, roc_auc_score

from pipelines.campaigns.score import ScoringModel, score_customers
from pipelines.models.calibration import (
    AUTO_ISOTONIC_MIN_CASES,
    apply_calibrator,
    choose_calibration,
    fit_calibrator,
)
from pipelines.models.propensity import CalibratedModel, TrainConfig, evaluate_model, fit_model
from pipelines.models.tables import split_frame
from tests.unit.models.test_propensity import CATEGORICAL, FAST, FEATURES, make_frame


def _raw_scores(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw scores that are over-confident log-odds (true log-odds = 0.6 * raw - 0.8), and their labels; about
    22 % positives."""
    rng = np.random.default_rng(seed)
    raw = rng.normal(-1.0, 2.0, n)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(0.6 * raw - 0.8)))).astype(np.int8)
    return raw, y


def _old_step_calibrator(raw: np.ndarray, y: np.ndarray) -> dict:
    """The isotonic calibrator models were pickled with before centred isotonic calibration."""
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y)
    return {"x": iso.X_thresholds_.astype(float), "y": iso.y_thresholds_.astype(float)}


@pytest.mark.parametrize("kind", ["isotonic", "platt"])
def test_calibrated_auc_equals_raw_auc_exactly(kind):
    raw, y = _raw_scores(3_000, seed=0)
    params = fit_calibrator(kind, raw, y, seed=0)
    raw_test, y_test = _raw_scores(20_000, seed=1)
    p = apply_calibrator(kind, params, raw_test)
    assert roc_auc_score(y_test, p) == roc_auc_score(y_test, raw_test)
    # The step calibrator the models had before does lose AUC to ties on the same frame.
    steps = apply_calibrator("isotonic", _old_step_calibrator(raw, y), raw_test)
    assert roc_auc_score(y_test, steps) < roc_auc_score(y_test, raw_test)


def test_isotonic_map_is_strictly_increasing_and_never_0_or_1():
    raw, y = _raw_scores(2_000, seed=2)
    params = fit_calibrator("isotonic", raw, y, seed=0)
    # The isotonic fit itself has few blocks (steps) ...
    assert len(params["centres"]) < 60
    # ... yet every distinct raw score, inside the fitted range and far beyond it, keeps a probability of its own.
    grid = np.concatenate([np.linspace(-30, 30, 200_001), raw])
    grid = np.unique(grid)
    p = apply_calibrator("isotonic", params, grid)
    assert np.all(np.diff(p) > 0)
    assert p.min() > 0 and p.max() < 1


def test_auto_picks_platt_on_a_small_set_and_isotonic_on_a_large_one():
    def labels(positives: int, negatives: int) -> np.ndarray:
        return np.array([1] * positives + [0] * negatives)

    n = AUTO_ISOTONIC_MIN_CASES
    assert choose_calibration("auto", labels(n - 1, 50 * n)) == "platt"
    assert choose_calibration("auto", labels(n, 50 * n)) == "isotonic"
    # The rarer class counts, whichever it is.
    assert choose_calibration("auto", labels(50 * n, n - 1)) == "platt"
    # An explicit choice is kept whatever the size.
    assert choose_calibration("isotonic", labels(10, 10)) == "isotonic"
    assert choose_calibration("platt", labels(50 * n, 50 * n)) == "platt"
    with pytest.raises(ValueError, match="calibration must be one of"):
        choose_calibration("beta", labels(10, 10))
    with pytest.raises(ValueError, match="calibration must be one of"):
        TrainConfig(calibration="beta")


def test_isotonic_calibrates_a_large_set_and_beats_steps_on_a_small_one():
    raw_test, y_test = _raw_scores(50_000, seed=3)
    raw, y = _raw_scores(40_000, seed=4)  # large: about 9000 positives
    iso = apply_calibrator("isotonic", fit_calibrator("isotonic", raw, y, seed=0), raw_test)
    platt = apply_calibrator("platt", fit_calibrator("platt", raw, y, seed=0), raw_test)
    uncalibrated = 1 / (1 + np.exp(-raw_test))
    assert log_loss(y_test, iso) < log_loss(y_test, uncalibrated) - 0.01
    assert log_loss(y_test, iso) < log_loss(y_test, platt) + 0.002  # Platt is the right form here
    # On a small calibration set the old step map puts 0 and 1 on its end blocks; the centred map does not.
    raw, y = _raw_scores(300, seed=5)
    steps = apply_calibrator("isotonic", _old_step_calibrator(raw, y), raw_test)
    centred = apply_calibrator("isotonic", fit_calibrator("isotonic", raw, y, seed=0), raw_test)
    assert log_loss(y_test, centred) < log_loss(y_test, np.clip(steps, 1e-15, 1 - 1e-15))


# --------------------------------------------------------------------------------------------------------------
# On a fitted booster


@pytest.fixture(scope="module")
def parts():
    return split_frame(make_frame(), "churned", seed=1)


@pytest.fixture(scope="module")
def models(parts):
    """One fitted model per calibration setting (the same booster each time: same data and seed)."""
    train, valid, _ = parts
    return {
        kind: fit_model(
            train,
            valid,
            FEATURES,
            CATEGORICAL,
            "churned",
            TrainConfig(**{**FAST.__dict__, "calibration": kind}),
        )
        for kind in ("auto", "isotonic", "platt")
    }


@pytest.mark.parametrize("kind", ["auto", "isotonic", "platt"])
def test_model_auc_equals_its_raw_score_auc(parts, models, kind, tmp_path):
    test = parts[2]
    y, model = test["churned"].to_numpy(), models[kind]
    raw, p = model.raw_score(test), model.predict_proba(test)
    assert roc_auc_score(y, p) == roc_auc_score(y, raw)
    # Distinct raw scores, distinct probabilities, in the same order.
    order = np.argsort(raw, kind="stable")
    assert len(np.unique(p)) == len(np.unique(raw))
    assert np.all(np.diff(p[order]) >= 0)
    metrics = evaluate_model(model, test, "churned", tmp_path)
    assert metrics["auc"] == roc_auc_score(y, raw)
    assert metrics["log_loss"] == pytest.approx(log_loss(y, p))


def test_auto_records_the_calibration_it_fitted(parts, models):
    valid = parts[1]
    assert valid["churned"].sum() < AUTO_ISOTONIC_MIN_CASES  # a small validation frame
    assert models["auto"].calibration == "platt"
    assert set(models["auto"].calibrator) == {"a", "b"}
    assert models["isotonic"].calibration == "isotonic"


def _old_style_model(fitted: CalibratedModel, valid: pd.DataFrame, kind: str) -> CalibratedModel:
    """A model as pickled before this change: the same attributes, a step isotonic or a Platt calibrator."""
    raw = fitted.raw_score(valid)
    calibrator = (
        _old_step_calibrator(raw, valid["churned"].to_numpy())
        if kind == "isotonic"
        else {"a": 0.9, "b": -0.1}
    )
    state = {**fitted.__getstate__(), "calibration": kind, "calibrator": calibrator}
    model = CalibratedModel.__new__(CalibratedModel)
    model.__setstate__(state)
    return pickle.loads(pickle.dumps(model))


@pytest.mark.parametrize("kind", ["isotonic", "platt"])
def test_an_old_pickled_model_predicts_as_before(parts, models, kind):
    _, valid, test = parts
    old = _old_style_model(models["isotonic"], valid, kind)
    raw = old.raw_score(test)
    if kind == "isotonic":
        expected = np.interp(raw, old.calibrator["x"], old.calibrator["y"])
    else:
        expected = 1 / (1 + np.exp(-(0.9 * raw - 0.1)))
    np.testing.assert_array_equal(old.predict_proba(test), expected)


def test_lists_keep_the_probability_and_take_deciles_from_the_raw_ranking(parts, models):
    _, valid, test = parts
    old = _old_style_model(models["isotonic"], valid, "isotonic")  # a step calibrator: its scores tie
    scored = score_customers(ScoringModel("unit", "1", "champion", "", old), test, chunk_rows=500)
    raw = old.raw_score(test)
    np.testing.assert_array_equal(scored["score"].to_numpy(), old.predict_proba(test))
    assert scored["score"].nunique() < 0.2 * len(test)  # the steps tie most customers ...
    by_decile = pd.Series(raw).groupby(scored["decile"].to_numpy())
    # ... but deciles follow the raw score: every raw score of decile k is >= every one of decile k + 1
    assert (by_decile.min().to_numpy()[:-1] >= by_decile.max().to_numpy()[1:]).all()
    # and a new model's list ranks the same way as its probabilities
    new = score_customers(ScoringModel("unit", "2", "champion", "", models["auto"]), test)
    scores = new.groupby("decile")["score"]
    assert (scores.min().to_numpy()[:-1] >= scores.max().to_numpy()[1:]).all()


def test_an_old_step_champion_is_compared_on_its_raw_ranking(parts, models, tmp_path):
    """Challengers report ranking figures of their raw score; a champion registered with step calibration must be
    scored the same way, or its steps' ties would hand the challenger AUC it did not earn."""
    import mlflow
    from mlflow import MlflowClient

    from pipelines.models.personal_columns import synthetic_example
    from pipelines.models.propensity import pyfunc_input, pyfunc_model
    from pipelines.models.registry import CHAMPION, _champion_metrics, log_registered_pyfunc, mlflow_store

    _, valid, test = parts
    old = _old_style_model(models["isotonic"], valid, "isotonic")
    test_input = pyfunc_input(test, FEATURES, CATEGORICAL)
    y = test["churned"].to_numpy()
    raw, steps = old.raw_score(test), old.predict_proba(test)
    assert roc_auc_score(y, steps) < roc_auc_score(y, raw)  # the steps tie customers the booster tells apart

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with mlflow_store(uri):
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        experiment = client.create_experiment("old-champion", artifact_location=(tmp_path / "a").as_uri())
        with mlflow.start_run(experiment_id=experiment):
            example = synthetic_example(test_input)
            version = log_registered_pyfunc(
                client, "old_steps", pyfunc_model(old, "predict_proba"), example, old.predict_proba(example)
            )
        client.set_registered_model_alias("old_steps", CHAMPION, version)
        got_version, metrics, problem = _champion_metrics(client, "old_steps", test_input, y)
    assert (got_version, problem) == (version, None)
    assert metrics["auc"] == pytest.approx(roc_auc_score(y, raw), abs=1e-12)
    assert metrics["log_loss"] == pytest.approx(log_loss(y, np.clip(steps, 1e-15, 1 - 1e-15)), rel=1e-6)


def test_platt_on_a_backwards_ranking_keeps_the_order_at_the_base_rate():
    """Labels that fall as the raw score rises: a fitted Platt slope would be negative and reorder customers."""
    raw, y = _raw_scores(4000, seed=3)
    backwards = 1 - y
    params = fit_calibrator("platt", raw, backwards, seed=0)
    p = apply_calibrator("platt", params, raw)
    assert params["a"] > 0
    assert roc_auc_score(backwards, p) == roc_auc_score(backwards, raw)
    assert p.mean() == pytest.approx(backwards.mean(), abs=0.01)
    assert p.max() - p.min() < 0.01  # about the base rate for everyone
