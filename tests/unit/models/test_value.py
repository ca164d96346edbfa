"""Value metrics and the cross-fitted value model, on small hand-made frames."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from pipelines.models.value import (
    LABEL,
    ValueConfig,
    ValueModel,
    customer_folds,
    decile_error,
    fit_value_model,
    normalised_gini,
    predict_value,
    top_share,
    total_error,
    value_metrics,
)

# --------------------------------------------------------------------------------------------------------------
# Metrics


def test_normalised_gini_by_hand():
    actual = np.array([0.0, 10.0, 30.0, 60.0])
    # Ranked by actual: cumulative shares .6, .9, 1, 1 -> mean .875 - 5/8 = .25.
    # Ranked by this prediction (order 10, 60, 30, 0): .1, .7, 1, 1 -> mean .7 - .625 = .075.
    predicted = np.array([0.0, 4.0, 2.0, 3.0])
    assert normalised_gini(actual, predicted) == pytest.approx(0.075 / 0.25)
    assert normalised_gini(actual, actual) == pytest.approx(1.0)
    assert normalised_gini(actual, -actual) < 0


def test_a_constant_prediction_scores_zero_and_ties_do_not_depend_on_row_order():
    actual = np.array([5.0, 0.0, 0.0, 20.0, 1.0, 0.0])
    assert normalised_gini(actual, np.ones(6)) == pytest.approx(0.0)
    assert top_share(actual, np.ones(6), 0.5) == pytest.approx(0.5)
    predicted = np.array([1.0, 1.0, 3.0, 1.0, 2.0, 2.0])  # ties
    rng = np.random.default_rng(0)
    for _ in range(5):
        order = rng.permutation(6)
        assert normalised_gini(actual[order], predicted[order]) == pytest.approx(
            normalised_gini(actual, predicted)
        )
        assert top_share(actual[order], predicted[order]) == pytest.approx(top_share(actual, predicted))


@pytest.mark.parametrize("transform", [lambda p: 2 * p + 7, np.log1p, np.sqrt])
def test_only_the_order_of_the_prediction_matters(transform):
    rng = np.random.default_rng(1)
    actual = rng.gamma(0.5, 100, 200)
    predicted = actual * rng.lognormal(0, 1, 200)
    assert normalised_gini(actual, transform(predicted)) == pytest.approx(normalised_gini(actual, predicted))
    assert top_share(actual, transform(predicted)) == pytest.approx(top_share(actual, predicted))


def test_top_share_by_hand_with_a_fractional_customer():
    actual = np.array([50.0, 30.0, 15.0, 5.0, 0.0])
    predicted = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    assert top_share(actual, predicted, 0.2) == pytest.approx(0.5)  # 1 customer of 5
    assert top_share(actual, predicted, 0.3) == pytest.approx(0.65)  # 1.5 customers: 50 + 30 / 2
    assert top_share(actual, predicted, 1.0) == pytest.approx(1.0)
    assert top_share(actual, -predicted, 0.4) == pytest.approx(0.05)


def test_total_error_sign():
    assert total_error([10, 30], [20, 12]) == pytest.approx(-0.2)
    assert total_error([10, 30], [30, 20]) == pytest.approx(0.25)


def test_decile_error_table():
    actual = np.r_[np.full(2, 100.0), np.full(8, 10.0), np.zeros(10)]
    predicted = np.r_[np.full(2, 80.0), np.full(8, 12.0), np.arange(10) / 100]
    table = decile_error(actual, predicted)
    assert list(table.columns) == [
        "decile",
        "count",
        "mean_predicted",
        "mean_actual",
        "error",
        "actual_share",
        "cumulative_actual_share",
    ]
    assert table["count"].tolist() == [2] * 10
    assert table.loc[0, "mean_actual"] == 100.0 and table.loc[0, "error"] == pytest.approx(-0.2)
    assert table.loc[1, "error"] == pytest.approx(0.2)
    assert table["error"].iloc[5:].isna().all()  # actual 0: no relative error
    assert table["cumulative_actual_share"].iloc[-1] == pytest.approx(1.0)
    assert table.loc[0, "actual_share"] == pytest.approx(200 / 280)


def test_value_metrics_keys_and_best_share():
    m = value_metrics([0, 0, 0, 0, 10], [1, 2, 3, 4, 5])
    assert m["normalised_gini"] == pytest.approx(1.0)
    assert m["top20_share"] == pytest.approx(1.0) and m["top20_share_best"] == pytest.approx(1.0)
    assert m["total_error"] == pytest.approx(0.5) and m["n"] == 5


@pytest.mark.parametrize(
    ("actual", "predicted", "message"),
    [
        ([1, 2], [1], "differ in length"),
        ([], [], "no customers"),
        ([1, np.nan], [1, 2], "NaN"),
        ([0, 0], [1, 2], "zero"),
    ],
)
def test_metrics_refuse_bad_input(actual, predicted, message):
    with pytest.raises(ValueError, match=message):
        normalised_gini(actual, predicted)


def test_top_share_refuses_a_bad_q():
    with pytest.raises(ValueError, match="q must be"):
        top_share([1, 2], [1, 2], 0)


# --------------------------------------------------------------------------------------------------------------
# The value model

TIERS = ["bronze", "silver", "gold"]


def make_spend_frame(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    past = rng.gamma(0.6, 200, n)
    active = rng.uniform(size=n)
    tier = rng.choice(TIERS, n)
    boost = pd.Series(tier).map({"bronze": 0.7, "silver": 1.0, "gold": 1.6}).to_numpy()
    mean = 0.8 * past * (active > 0.3) * boost + 5
    return pd.DataFrame(
        {
            "customer_id": np.arange(n) + 1000,
            "past_spend": past,
            "active": active,
            "noise": rng.normal(size=n),
            "tier": pd.Categorical(tier, categories=TIERS),
            LABEL: rng.gamma(2.0, mean / 2.0),
        }
    )


FAST = ValueConfig(learning_rate=0.1, n_estimators=300, early_stopping_rounds=20, folds=3)
FEATURES = ["past_spend", "active", "noise", "tier"]


@pytest.fixture(scope="module")
def fitted():
    return fit_value_model(make_spend_frame(), FEATURES, ["tier"], LABEL, FAST)


def test_the_value_model_ranks_and_keeps_the_total(fitted):
    test = make_spend_frame(seed=1)
    m = value_metrics(test[LABEL], fitted.predict(test))
    assert m["normalised_gini"] > 0.6
    assert abs(m["total_error"]) < 0.05
    assert len(fitted.boosters) == 3 and len(fitted.best_iterations) == 3
    assert fitted.feature_importance()["feature"].iloc[0] == "past_spend"


def test_pickle_round_trip_and_unseen_categories(fitted):
    test = make_spend_frame(200, seed=2)
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.predict(test), fitted.predict(test))
    odd = test.assign(tier=test["tier"].astype(str).where(test.index % 2 == 0, "diamond"))
    assert fitted.unseen_categories(odd) == {"tier": 100}
    assert np.isfinite(fitted.predict(odd)).all()


def test_predict_value_indexes_by_customer(fitted):
    test = make_spend_frame(50, seed=3)
    pred = predict_value(fitted, test)
    assert pred.name == "predicted_value" and pred.index.name == "customer_id"
    assert pred.index.tolist() == test["customer_id"].tolist()
    assert (pred >= 0).all()
    with pytest.raises(TypeError, match="ValueModel"):
        predict_value(object(), test)


def test_folds_follow_the_customer_not_the_row_order():
    ids = np.arange(1000)
    folds = customer_folds(ids, 5, seed=1)
    assert set(folds) == {0, 1, 2, 3, 4}
    assert customer_folds(ids[::-1], 5, seed=1).tolist() == folds[::-1].tolist()
    assert customer_folds(ids[:10], 5, seed=1).tolist() == folds[:10].tolist()
    assert customer_folds(ids, 5, seed=2).tolist() != folds.tolist()


def test_fit_refuses_bad_labels():
    frame = make_spend_frame(300)
    with pytest.raises(ValueError, match="negative spend"):
        fit_value_model(frame.assign(**{LABEL: -1.0}), FEATURES, ["tier"], LABEL, FAST)
    with pytest.raises(ValueError, match="also listed as a feature"):
        fit_value_model(frame, [*FEATURES, LABEL], ["tier"], LABEL, FAST)
    with pytest.raises(KeyError, match="lacks feature"):
        fit_value_model(frame, [*FEATURES, "nope"], ["tier"], LABEL, FAST)


def test_value_model_has_no_probabilities():
    assert not hasattr(ValueModel([], ["x"], {}, [], "poisson"), "predict_proba")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"objective": "binary"}, "objective"), ({"folds": 1}, "folds"), ({"model_name": "a b"}, "model_name")],
)
def test_value_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ValueConfig(**kwargs)
