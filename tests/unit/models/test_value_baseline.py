"""RFM features, future spend and the BG/NBD + Gamma-Gamma baseline, on small hand-made transaction logs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.models.value import LABEL
from pipelines.models.value_baseline import fit_btyd, future_spend, predict_btyd, rfm_features

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
