"""Uplift learners on a simulated randomised experiment: they find the heterogeneity, stay deterministic and use the
fit-time categories (the choice among them: test_uplift_selection.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.models.uplift import (
    LEARNERS,
    RLearner,
    SharedTLearner,
    SLearner,
    TLearner,
    XLearner,
    uplift_config,
)
from pipelines.models.uplift_metrics import (
    HETEROGENEITY,
    NO_HETEROGENEITY,
    bootstrap_ci,
    qini_coefficient,
    verdict,
)

FAST = uplift_config(learning_rate=0.1, n_estimators=300, early_stopping_rounds=30, num_threads=2)


# --------------------------------------------------------------------------------------------------------------
# Learners on a simulated randomised experiment


def simulate(n: int, seed: int, heterogeneous: bool = True):
    """50/50 experiment. Heterogeneous: persuadables (x0 > 0.6, not push) +10 points, do-not-disturb (x0 < 0.2,
    baseline 8 %) -5 points, sure things (x2 > 0.7, baseline 8 %) and lost causes (3 %) 0. Otherwise a constant
    +2 points."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, 4))
    channel = rng.choice(["email", "sms", "push"], n)
    base = 0.03 + 0.05 * (x[:, 2] > 0.7)
    if heterogeneous:
        dnd = x[:, 0] < 0.2
        base = np.where(dnd, 0.08, base)
        effect = 0.10 * ((x[:, 0] > 0.6) & (channel != "push")) - 0.05 * dnd
    else:
        effect = np.full(n, 0.02)
    t = (rng.uniform(size=n) < 0.5).astype(int)
    y = (rng.uniform(size=n) < base + effect * t).astype(int)
    X = pd.DataFrame({"x0": x[:, 0], "x1": x[:, 1], "x2": x[:, 2], "x3": x[:, 3], "channel": channel})
    X["channel"] = X["channel"].astype("category")
    return X, y, t, effect


def _halves(n, seed, heterogeneous):
    X, y, t, effect = simulate(n, seed, heterogeneous)
    h = n // 2
    return (X.iloc[:h], y[:h], t[:h]), (X.iloc[h:].reset_index(drop=True), y[h:], t[h:], effect[h:])


@pytest.fixture(scope="module")
def heterogeneous():
    return _halves(30_000, 0, True)


@pytest.mark.parametrize("name", list(LEARNERS))
def test_learners_find_heterogeneity(heterogeneous, name):
    (X, y, t), (Xh, yh, th, effect) = heterogeneous
    s = LEARNERS[name](FAST).fit(X, y, t).predict_uplift(Xh)
    assert s.shape == (len(Xh),) and np.isfinite(s).all()
    q = qini_coefficient(yh, th, s)
    low, high = bootstrap_ci(qini_coefficient, yh, th, s)
    oracle = qini_coefficient(yh, th, effect)
    assert 0.02 < low < q < high
    assert q > 0.3 * oracle
    assert verdict(q, low, high) == HETEROGENEITY
    # the learned ranking puts persuadables above do-not-disturb customers
    assert s[effect > 0].mean() > s[effect < 0].mean()


@pytest.mark.parametrize("name", list(LEARNERS))
def test_no_heterogeneity_gives_no_verdict(name):
    (X, y, t), (Xh, yh, th, _) = _halves(20_000, 1, False)
    s = LEARNERS[name](FAST).fit(X, y, t).predict_uplift(Xh)
    q = qini_coefficient(yh, th, s)
    low, high = bootstrap_ci(qini_coefficient, yh, th, s)
    assert low < 0 < high
    assert verdict(q, low, high) == NO_HETEROGENEITY


def test_learners_are_deterministic(heterogeneous):
    (X, y, t), (Xh, *_) = heterogeneous
    for cls in (SLearner, XLearner, RLearner, SharedTLearner):
        a = cls(FAST).fit(X, y, t).predict_uplift(Xh)
        b = cls(FAST).fit(X, y, t).predict_uplift(Xh)
        np.testing.assert_array_equal(a, b)


def test_categories_use_fit_time_lists(heterogeneous):
    (X, y, t), (Xh, *_) = heterogeneous
    model = TLearner(FAST).fit(X, y, t)
    assert model.encoder.categories == {"channel": ["email", "push", "sms"]}
    # plain strings, a reordered category list and an unseen value all encode against the fit-time list
    as_str = Xh.assign(channel=Xh["channel"].astype(str))
    np.testing.assert_array_equal(model.predict_uplift(as_str), model.predict_uplift(Xh))
    unseen = Xh.head(3).assign(channel=["fax", "fax", "fax"])
    assert np.isfinite(model.predict_uplift(unseen)).all()


def test_r_learner_residualises_with_the_treated_share_and_regresses_the_pseudo_outcome(heterogeneous):
    (X, y, t), (Xh, _, _, effect) = heterogeneous
    model = RLearner(FAST).fit(X, y, t)
    assert model.e == pytest.approx(np.mean(t))
    assert model.tau.dump_model()["objective"].startswith("regression")
    s = model.predict_uplift(Xh)
    # tau estimates the effect itself: positive for persuadables, negative for do-not-disturb customers
    assert s[effect > 0].mean() > 0.03 and s[effect < 0].mean() < 0
    with pytest.raises(ValueError, match="propensity"):
        RLearner(FAST, propensity=1.0)


def test_shared_t_learner_group_boosters_start_from_the_pooled_one(heterogeneous):
    (X, y, t), (Xh, _, _, effect) = heterogeneous
    model = SharedTLearner(FAST).fit(X, y, t)
    # the group boosters only correct the pooled baseline, with half the leaves
    assert set(model.groups) == {0.0, 1.0}
    for booster in model.groups.values():
        assert max(tree["num_leaves"] for tree in booster.dump_model()["tree_info"]) <= FAST.num_leaves // 2
    s = model.predict_uplift(Xh)
    assert np.all(np.abs(s) < 1) and s[effect > 0].mean() > s[effect == 0].mean() > s[effect < 0].mean()


def test_learner_input_checks():
    X = pd.DataFrame({"a": [0.1, 0.2, 0.3, 0.4]})
    with pytest.raises(ValueError, match="both outcomes"):
        SLearner(FAST).fit(X, [1, 1, 0, 0], [1, 1, 0, 0])
    with pytest.raises(ValueError, match="differ in length"):
        SLearner(FAST).fit(X, [1, 0, 1], [1, 1, 0])
    with pytest.raises(RuntimeError, match="not fitted"):
        TLearner(FAST).predict_uplift(X)
