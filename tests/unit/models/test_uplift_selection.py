"""Choosing an uplift learner by cross-fitting: the folds, determinism, the choice on a real heterogeneous effect
with its standard error, the honest verdict when there is no effect, the ensemble, the settings' checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.models.uplift import RLearner, SharedTLearner, SLearner, stratified_folds, uplift_config
from pipelines.models.uplift_metrics import NO_HETEROGENEITY, evaluate_scores, qini_coefficient, verdict
from pipelines.models.uplift_selection import ENSEMBLE, Ensemble, SelectionConfig, select_learner

FAST = uplift_config(learning_rate=0.1, n_estimators=300, early_stopping_rounds=30, num_threads=1)


def simulate(n: int, seed: int, effect_size: float = 0.10):
    """A 60/40 experiment: persuadables (x0 > 0.6) gain ``effect_size``, do-not-disturb (x0 < 0.2) lose half of it,
    base rate 5 % (15 % where x1 > 0.7). ``effect_size=0``: no effect at all."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, 3))
    effect = np.select([x[:, 0] > 0.6, x[:, 0] < 0.2], [effect_size, -effect_size / 2], 0.0)
    base = np.where(x[:, 1] > 0.7, 0.15, 0.05)
    t = (rng.uniform(size=n) < 0.6).astype(int)
    y = (rng.uniform(size=n) < base + effect * t).astype(int)
    X = pd.DataFrame({"x0": x[:, 0], "x1": x[:, 1], "x2": x[:, 2]})
    X["channel"] = pd.Categorical(rng.choice(["email", "sms"], n))
    return X, y, t, effect


def _learners():
    return {
        "s_learner": SLearner(FAST),
        "r_learner": RLearner(FAST),
        "shared_t_learner": SharedTLearner(FAST),
    }


@pytest.fixture(scope="module")
def heterogeneous():
    X, y, t, effect = simulate(16_000, 0)
    h = 10_000
    fit = (X.iloc[:h], y[:h], t[:h])
    held = (X.iloc[h:].reset_index(drop=True), y[h:], t[h:], effect[h:])
    chosen = select_learner(_learners(), *fit, SelectionConfig(folds=3, ensemble=True), seed=3)
    return fit, held, chosen


def test_folds_are_disjoint_cover_every_row_and_are_stratified_by_treatment_and_outcome():
    _, y, t, _ = simulate(5_003, 1)
    folds = stratified_folds(y, t, 3, seed=7)
    assert folds.shape == y.shape and set(np.unique(folds)) == {0, 1, 2}  # one fold a row: disjoint, covering
    sizes = np.bincount(folds)
    assert sizes.max() - sizes.min() <= 1
    for cell in range(4):
        in_cell = np.bincount(folds[t * 2 + y == cell], minlength=3)
        assert in_cell.max() - in_cell.min() <= 1, (cell, in_cell)
    np.testing.assert_array_equal(folds, stratified_folds(y, t, 3, seed=7))
    assert not np.array_equal(folds, stratified_folds(y, t, 3, seed=8))
    with pytest.raises(ValueError, match=">= 2 folds"):
        stratified_folds(y, t, 1, seed=7)


def test_cross_fitting_is_deterministic_for_a_seed():
    X, y, t, _ = simulate(4_000, 2)
    learners = {"s_learner": SLearner(FAST), "r_learner": RLearner(FAST)}
    a = select_learner(learners, X, y, t, SelectionConfig(folds=2), seed=5)
    b = select_learner(learners, X, y, t, SelectionConfig(folds=2), seed=5)
    pd.testing.assert_frame_equal(a.table.drop(columns="fit_seconds"), b.table.drop(columns="fit_seconds"))
    np.testing.assert_array_equal(a.learner.predict_uplift(X), b.learner.predict_uplift(X))
    other = select_learner(learners, X, y, t, SelectionConfig(folds=2), seed=6)
    assert not np.allclose(other.table["qini_fold_1"], a.table["qini_fold_1"])
    # the learners passed in are left unfitted: the selection fits copies
    assert all(learner.encoder is None for learner in learners.values())


def test_selection_on_a_heterogeneous_effect_beats_random_and_reports_its_standard_error(heterogeneous):
    _, (Xh, yh, th, effect), chosen = heterogeneous
    table = chosen.table
    assert set(table["learner"]) == {"s_learner", "r_learner", "shared_t_learner", ENSEMBLE}
    assert table["qini"].is_monotonic_decreasing and chosen.name == table["learner"].iloc[0]
    folds = table[["qini_fold_1", "qini_fold_2", "qini_fold_3"]].to_numpy()
    np.testing.assert_allclose(table["qini"], folds.mean(axis=1))
    np.testing.assert_allclose(table["qini_se"], folds.std(axis=1, ddof=1) / np.sqrt(3))
    assert (table["qini_se"] > 0).all()
    # the chosen learner, refitted on every row, ranks the held-out rows well above random
    s = chosen.learner.predict_uplift(Xh)
    m = evaluate_scores(yh, th, s, seed=1)
    assert m["qini_ci_low"] > 0 and m["qini"] > 0.5 * qini_coefficient(yh, th, effect), m
    # the uncertainty of the choice: the lead over the runner-up on paired fold differences
    runner = table.iloc[1]
    assert chosen.runner_up == runner["learner"]
    assert chosen.lead == pytest.approx(table["qini"].iloc[0] - runner["qini"])
    assert np.isfinite(chosen.lead_se) and chosen.lead_se >= 0
    metrics = chosen.metrics()
    assert metrics[f"cv_qini_se_{chosen.name}"] == pytest.approx(table["qini_se"].iloc[0])
    assert metrics["selection_lead"] == pytest.approx(chosen.lead)
    assert chosen.note() and chosen.note()[0].startswith(f"{chosen.name} leads {chosen.runner_up} by")


def test_no_effect_keeps_the_verdict_no_reliable_heterogeneity():
    X, y, t, _ = simulate(12_000, 4, effect_size=0.0)
    h = 8_000
    chosen = select_learner(_learners(), X.iloc[:h], y[:h], t[:h], SelectionConfig(folds=3), seed=1)
    s = chosen.learner.predict_uplift(X.iloc[h:])
    m = evaluate_scores(y[h:], t[h:], s, seed=1)
    assert verdict(m["qini"], m["qini_ci_low"], m["qini_ci_high"]) == NO_HETEROGENEITY, m
    # on the folds, no learner's qini stands clear of zero either
    assert (chosen.table["qini"] < 3 * chosen.table["qini_se"] + 0.02).all(), chosen.table


def test_ensemble_mixes_its_members_with_weights_summing_to_one(heterogeneous):
    (X, y, t), (Xh, *_), _ = heterogeneous
    ensemble = Ensemble({"s_learner": SLearner(FAST), "r_learner": RLearner(FAST)}).fit(X, y, t)
    assert ensemble.weights.sum() == pytest.approx(1.0) and (ensemble.weights > 0).all()
    parts = [m.predict_uplift(Xh) for m in ensemble.members.values()]
    np.testing.assert_allclose(ensemble.predict_uplift(Xh), ensemble.weights @ np.vstack(parts))
    assert ensemble.encoder.features == ["x0", "x1", "x2", "channel"]
    with pytest.raises(ValueError, match="at least two"):
        Ensemble({"s_learner": SLearner(FAST)})


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"folds": 1}, "folds must be >= 2"),
        ({"learners": ("s_learner", "z_learner")}, "unknown uplift learner.*z_learner"),
        ({"learners": ()}, "learners is empty"),
        ({"fold_learning_rate": 0.0}, "fold_learning_rate"),
        ({"ensemble_size": 1}, "ensemble_size"),
    ],
)
def test_selection_config_checks(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SelectionConfig(**kwargs)


def test_too_few_rows_in_a_cell_for_the_folds_is_a_clear_error():
    X, y, t, _ = simulate(300, 5)
    y = np.where(t == 0, 0, y)
    y[np.flatnonzero(t == 0)[:2]] = 1  # two control responders: too few for three folds
    with pytest.raises(ValueError, match="at least 3 rows in each treatment x outcome cell"):
        select_learner({"s_learner": SLearner(FAST)}, X, y, t, SelectionConfig(folds=3))
