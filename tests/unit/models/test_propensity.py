"""The propensity model: fit with early stopping, calibration, fit-time categories, contributions; real LightGBM."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.models.propensity import TrainConfig, fit_model
from pipelines.models.tables import split_frame

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
