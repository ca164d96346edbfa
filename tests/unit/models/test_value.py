"""Value metrics, RFM features, the BG/NBD baseline, snapshot planning, the cross-fitted value model and its
promotion rule, on small hand-made frames."""

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
    decide_value_promotion,
    decile_error,
    fit_btyd,
    fit_value_model,
    future_spend,
    make_value_labels,
    normalised_gini,
    plan_value_snapshots,
    predict_btyd,
    predict_value,
    rfm_features,
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
# Transaction logs

LOG = pd.DataFrame(
    {
        "customer_id": ["a", "a", "a", "a", "b", "c"],
        "date": pd.to_datetime(
            ["2020-01-01", "2020-01-01", "2020-01-15", "2020-02-20", "2020-02-10", "2020-03-05"]
        ),
        "amount": [10.0, 5.0, 20.0, 30.0, 7.0, 99.0],
        "quantity": [1, 1, 2, 3, 1, 9],
    }
)
CUTOFF = pd.Timestamp("2020-03-01")


def test_rfm_features_by_hand():
    f = rfm_features(LOG, CUTOFF, quantity_col="quantity")
    assert list(f.index) == ["a", "b"]  # c bought only after the cutoff
    a = f.loc["a"]
    assert a["frequency"] == 2  # three purchase days, the two Jan 1 transactions are one purchase
    assert a["purchase_days"] == 3
    assert a["recency_weeks"] == pytest.approx(50 / 7)  # Jan 1 -> Feb 20
    assert a["t_weeks"] == pytest.approx(59 / 7)  # Jan 1 -> Feb 29, the last day before the cutoff
    assert a["days_since_last"] == 10
    assert a["first_day_spend"] == 15 and a["first_day_units"] == 2
    assert a["repeat_mean_spend"] == 25 and a["mean_gap_days"] == 25
    assert a["total_spend"] == 65 and a["max_day_spend"] == 30
    assert a["spend_30d"] == 30 and a["purchase_days_30d"] == 1
    assert a["spend_90d"] == 65 and a["purchase_days_90d"] == 3
    b = f.loc["b"]
    assert b["frequency"] == 0 and np.isnan(b["repeat_mean_spend"]) and np.isnan(b["mean_gap_days"])


def test_future_spend_window_and_order():
    spend = future_spend(LOG, "2020-01-15", "2020-03-05", ["c", "b", "a", "z"])
    assert spend.tolist() == [0.0, 7.0, 50.0, 0.0]  # [start, end): Mar 5 excluded, Jan 15 included
    assert spend.name == LABEL


def _btyd_log(n: int = 1500, seed: int = 3) -> pd.DataFrame:
    """Purchases of a BG/NBD-like population: Poisson buying, dropout after a purchase."""
    rng = np.random.default_rng(seed)
    rows = []
    start = pd.Timestamp("2021-01-01")
    for i in range(n):
        rate, p = rng.gamma(0.5, 1 / 3), rng.beta(1, 4)
        t = rng.uniform(0, 20)
        spend = rng.gamma(5, 4)
        while t < 52:
            rows.append((f"c{i}", start + pd.Timedelta(days=int(t * 7)), round(rng.gamma(5, spend / 5), 2)))
            if rng.random() < p:
                break
            t += rng.exponential(1 / rate) if rate > 0 else 1e9
    return pd.DataFrame(rows, columns=["customer_id", "date", "amount"])


def test_btyd_baseline_ranks_frequent_recent_buyers_first_and_gives_the_unborn_zero():
    log = _btyd_log()
    cutoff = pd.Timestamp("2021-10-01")
    baseline = fit_btyd(log, cutoff)
    assert set(baseline.params) == {"r", "alpha", "a", "b", "p", "q", "gamma"}
    assert all(v > 0 for v in baseline.params.values())
    features = rfm_features(log, cutoff)
    pred = predict_btyd(baseline, 13 * 7, [*features.index, "never-bought"])
    assert pred["never-bought"] == 0.0
    assert (pred.drop("never-bought") > 0).all()
    frequent = features.index[(features["frequency"] >= 5) & (features["days_since_last"] <= 14)]
    one_off = features.index[(features["frequency"] == 0) & (features["days_since_last"] >= 150)]
    assert len(frequent) and len(one_off)
    assert pred[frequent].median() > 5 * pred[one_off].median()
    with pytest.raises(ValueError, match="horizon_days"):
        predict_btyd(baseline, 0)
    with pytest.raises(ValueError, match="no transactions before"):
        fit_btyd(log, "2020-01-01")


# --------------------------------------------------------------------------------------------------------------
# Bank labels and snapshot planning


def test_make_value_labels_counts_only_the_window_and_open_customers():
    customers = pd.DataFrame(
        {
            "customer_id": [1, 2, 3, 4],
            "signup_date": pd.to_datetime(["2024-01-01", "2024-01-01", "2025-08-01", "2024-01-01"]),
            "closed_date": pd.to_datetime([None, "2025-08-15", None, "2025-06-01"]),
        }
    )
    txn = pd.DataFrame(
        {
            "customer_id": [1, 1, 1, 2, 3],
            "txn_ts": pd.to_datetime(
                [
                    "2025-06-30 23:00",
                    "2025-07-01 00:00",
                    "2025-12-31 23:59",
                    "2025-08-10 12:00",
                    "2025-08-02 09:00",
                ]
            ),
            "amount": [100.0, 10.0, 5.0, 40.0, 9.0],
        }
    )
    labels = make_value_labels({"customers": customers, "transactions": txn}, "2025-07-01", 6)
    # 3 signs up after as_of and 4 closed before it: neither is in the base.
    assert labels.to_dict() == {1: 15.0, 2: 40.0}


def test_a_twelve_month_lake_gets_a_customer_split_at_july():
    plan = plan_value_snapshots("2025-01-01", "2026-01-01", 6)
    assert plan.split == "customer" and plan.train_as_of == ()
    assert plan.test_as_of == pd.Timestamp("2025-07-01")
    with pytest.raises(ValueError, match="no out-of-time training snapshot"):
        plan_value_snapshots("2025-01-01", "2026-01-01", 6, split="time")


def test_a_long_lake_gets_out_of_time_snapshots_with_full_lookback_and_labels_ending_by_the_test():
    plan = plan_value_snapshots("2024-01-01", "2026-01-01", 6)
    assert plan.split == "time"
    assert plan.test_as_of == pd.Timestamp("2025-07-01")
    assert plan.train_as_of[0] == pd.Timestamp("2024-07-01")  # 2024-01-01 + 180 days = 2024-06-29
    assert plan.train_as_of[-1] == pd.Timestamp("2025-01-01")  # its label window ends at the test snapshot
    assert plan.snapshots[-1] == plan.test_as_of
    assert plan_value_snapshots("2024-01-01", "2026-01-01", 6, split="customer").train_as_of == ()


def test_a_label_window_past_the_lake_is_refused():
    with pytest.raises(ValueError, match="after the lake's end"):
        plan_value_snapshots("2025-01-01", "2026-01-01", 6, as_of="2025-08-01")
    with pytest.raises(ValueError, match="horizon_months"):
        plan_value_snapshots("2025-01-01", "2026-01-01", 0)


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


def test_promotion_rule_on_gini_with_a_total_guard():
    config = ValueConfig(min_gini_gain=0.01, max_total_error_worsening=0.05)
    champion = {"normalised_gini": 0.70, "total_error": -0.02}
    assert decide_value_promotion({"normalised_gini": 0.5, "total_error": 0.9}, None, config).promoted
    assert decide_value_promotion({"normalised_gini": 0.72, "total_error": 0.03}, champion, config).promoted
    small = decide_value_promotion({"normalised_gini": 0.705, "total_error": 0.0}, champion, config)
    assert not small.promoted and "normalised_gini" in small.reasons[0] and "FAIL" in small.reasons[0]
    off = decide_value_promotion({"normalised_gini": 0.75, "total_error": -0.2}, champion, config)
    assert not off.promoted and "FAIL" in off.reasons[1]
