"""Value labels on the bank, snapshot planning and the value model's promotion rule."""

from __future__ import annotations

import pandas as pd
import pytest

from pipelines.models.value import ValueConfig
from pipelines.models.value_training import decide_value_promotion, make_value_labels, plan_value_snapshots

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
# Promotion


def test_promotion_rule_on_gini_with_a_total_guard():
    config = ValueConfig(min_gini_gain=0.01, max_total_error_worsening=0.05)
    champion = {"normalised_gini": 0.70, "total_error": -0.02}
    assert decide_value_promotion({"normalised_gini": 0.5, "total_error": 0.9}, None, config).promoted
    assert decide_value_promotion({"normalised_gini": 0.72, "total_error": 0.03}, champion, config).promoted
    small = decide_value_promotion({"normalised_gini": 0.705, "total_error": 0.0}, champion, config)
    assert not small.promoted and "normalised_gini" in small.reasons[0] and "FAIL" in small.reasons[0]
    off = decide_value_promotion({"normalised_gini": 0.75, "total_error": -0.2}, champion, config)
    assert not off.promoted and "FAIL" in off.reasons[1]
