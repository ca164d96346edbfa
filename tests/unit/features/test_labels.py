"""Churn labels: each definition on hand-made frames, snapshot dates, out-of-time split, the balance gate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.data import storage
from pipelines.features.catalogue import FEATURE_NAMES
from pipelines.features.labels import (
    LABEL,
    SNAPSHOT,
    LabelDefinition,
    LabelError,
    build_training_set,
    check_label_balance,
    label_complete,
    make_labels,
    snapshot_dates,
    split_out_of_time,
)
from tests.unit.features.test_wide_table import _empty

AS_OF = pd.Timestamp("2025-06-01")


def _tables() -> dict[str, pd.DataFrame]:
    """Customers 1-4 open at as_of: 1 active, 2 silent, 3 closes in the window, 4 drains its assets."""
    customers = pd.DataFrame(
        {
            "customer_id": [1, 2, 3, 4, 5],
            "signup_date": pd.to_datetime(["2024-01-01"] * 5),
            "closed_date": pd.to_datetime([None, None, "2025-07-10", None, "2025-05-01"]),
        }
    )
    transactions = _empty("transactions").reindex(range(3))
    transactions["customer_id"] = [1, 3, 2]
    transactions["txn_ts"] = pd.to_datetime(["2025-06-15", "2025-06-20", "2025-05-30"])  # 2's is before as_of
    events = _empty("app_events").reindex(range(2))
    events["customer_id"] = [2, 4]
    events["event_ts"] = pd.to_datetime(["2025-07-01", "2025-07-02"])
    events["event_type"] = ["bill_view", "login"]
    balances = pd.DataFrame(
        {
            "customer_id": [1, 1, 2, 2, 3, 4, 4],
            "month_end": pd.to_datetime(
                [
                    "2025-05-31",
                    "2025-07-31",
                    "2025-05-31",
                    "2025-07-31",
                    "2025-05-31",
                    "2025-05-31",
                    "2025-07-31",
                ]
            ),
            "aum": [100.0, 90.0, 100.0, 100.0, 100.0, 1000.0, 300.0],
        }
    )
    return {"customers": customers, "transactions": transactions, "app_events": events, "balances": balances}


@pytest.mark.parametrize(
    "name, expected",
    [
        ("closure", {1: 0, 2: 0, 3: 1, 4: 0}),
        ("inactivity", {1: 0, 2: 1, 3: 0, 4: 0}),  # 2 only viewed a bill; 4 logged in
        ("balance_outflow", {1: 0, 2: 0, 3: 1, 4: 1}),  # 4 lost 70 %, 3 closed
    ],
)
def test_each_definition_on_hand_made_customers(name, expected):
    labels = make_labels(_tables(), AS_OF, LabelDefinition(name=name, horizon_days=90))
    assert labels.to_dict() == expected  # customer 5 closed before as_of: no label


def test_horizon_and_gap_move_the_window():
    tables = _tables()
    assert make_labels(tables, AS_OF, LabelDefinition("closure", 150, gap_days=30))[3] == 1
    assert make_labels(tables, AS_OF, LabelDefinition("closure", 90, gap_days=45))[3] == 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "left"}, "unknown churn definition"),
        ({"horizon_days": 60}, "90 or 150"),
        ({"outflow_pct": 0}, "outflow"),
    ],
)
def test_bad_definitions_are_rejected(kwargs, message):
    with pytest.raises(LabelError, match=message):
        LabelDefinition(**kwargs)


def test_snapshot_dates_are_the_newest_complete_month_starts():
    end = pd.Timestamp("2026-01-01")
    ninety = LabelDefinition("closure", 90)
    dates = snapshot_dates(end, ninety, 3)
    assert [d.strftime("%Y-%m-%d") for d in dates] == ["2025-08-01", "2025-09-01", "2025-10-01"]
    assert all(label_complete(end, d, ninety) for d in dates)
    assert not label_complete(end, pd.Timestamp("2025-11-01"), ninety)
    assert snapshot_dates(end, LabelDefinition("closure", 150), 1)[0] == pd.Timestamp("2025-08-01")


def test_balance_gate_names_the_shortfall():
    data = pd.DataFrame({LABEL: [1] * 10 + [0] * 900})
    with pytest.raises(LabelError, match="10 positives and 900 negatives; at least 500"):
        check_label_balance(data)
    check_label_balance(data, min_positives=10, min_negatives=10)


def test_training_set_is_split_out_of_time_and_matches_the_truth(bank):
    lake = bank / "lake"
    definition = LabelDefinition("closure", 90)
    dates = snapshot_dates(storage.lake_end(lake), definition, 3)
    data = build_training_set(lake, dates, definition, progress=None)
    assert list(data.columns) == [SNAPSHOT, "customer_id", *FEATURE_NAMES, LABEL]
    split = split_out_of_time(data)
    assert split.test[SNAPSHOT].unique().tolist() == [dates[-1]]
    assert split.valid[SNAPSHOT].unique().tolist() == [dates[-2]]
    assert split.train[SNAPSHOT].max() < split.valid[SNAPSHOT].min()
    # The closure label is the event the generator's truth gives a probability for.
    truth = storage.read_table(
        bank / "truth", "churn", months=[(dates[-1] - pd.Timedelta(days=1)).strftime("%Y-%m")]
    )
    merged = split.test.merge(truth, on="customer_id")
    assert len(merged) == len(split.test)
    assert merged[LABEL].mean() == pytest.approx(merged["p_churn_90d"].mean(), rel=0.15)
    assert np.corrcoef(merged[LABEL], merged["p_churn_90d"])[0, 1] > 0.3
