"""Campaign history as training data (pipelines/history.py) on the session's generated bank."""

from __future__ import annotations

import pandas as pd
import pytest

from pipelines.data import storage
from pipelines.features import history


def test_outcomes_count_conversions_inside_the_window_only(bank):
    lake = bank / "lake"
    week, fortnight = history.campaign_outcomes(lake, 7), history.campaign_outcomes(lake, 14)
    contacts = storage.read_table(lake, "campaign_contacts")
    assert len(fortnight) == len(week) == len(contacts)
    assert fortnight[history.TREATED].sum() == (contacts["group"] == "treatment").sum()
    # A longer window only adds conversions, never removes one.
    merged = week.merge(fortnight, on=[history.CAMPAIGN, "customer_id"], suffixes=("_7", "_14"))
    assert (merged["converted_7"] <= merged["converted_14"]).all()
    assert merged["converted_7"].sum() < merged["converted_14"].sum()
    # Recomputed from the responses: a conversion counts when it falls in [selected_at, selected_at + 14 days).
    responses = storage.read_table(lake, "responses")
    conv = responses.loc[
        responses["event_type"] == "converted", [history.CAMPAIGN, "customer_id", "event_ts"]
    ]
    timed = contacts.merge(conv, on=[history.CAMPAIGN, "customer_id"])
    inside = (timed["event_ts"] >= timed["selected_at"]) & (
        timed["event_ts"] < timed["selected_at"] + pd.Timedelta(days=14)
    )
    assert fortnight[history.CONVERTED].sum() == inside.sum()


def test_only_campaigns_whose_window_closed_are_usable(bank):
    lake = bank / "lake"
    everything = history.campaign_outcomes(lake, 14)
    last = everything[history.SELECTED_AT].max()
    before = history.campaign_outcomes(lake, 14, as_of=last + pd.Timedelta(days=13))
    assert last not in set(before[history.SELECTED_AT])
    assert before[history.CAMPAIGN].nunique() == everything[history.CAMPAIGN].nunique() - 1
    with pytest.raises(history.HistoryError, match="no campaign .* closed 14-day response window"):
        history.history_training_set(lake, 14, as_of=everything[history.SELECTED_AT].min(), progress=None)


def test_split_by_campaign_in_time_order():
    frame = pd.DataFrame(
        {
            history.CAMPAIGN: ["c", "a", "b", "d", "a"],
            history.SELECTED_AT: pd.to_datetime(
                ["2025-05-01", "2025-01-01", "2025-03-01", "2025-07-01", "2025-01-01"]
            ),
        }
    )
    split = history.split_by_campaign(frame)
    assert split.campaigns == {"train": ["a", "b"], "valid": ["c"], "test": ["d"]}
    assert len(split.train) == 3 and len(split.valid) == len(split.test) == 1
    assert history.lineage(split) == {
        "campaigns_train": "a,b",
        "campaigns_valid": "c",
        "campaigns_test": "d",
        "split": "by campaign, newest is the test",
    }
    with pytest.raises(history.HistoryError, match="at least 3 campaigns"):
        history.split_by_campaign(frame.loc[frame[history.CAMPAIGN].isin(["a", "b"])])
    assert history.split_history(frame).campaigns == split.campaigns  # three or more: by campaign


def test_fewer_than_three_campaigns_split_by_customer():
    # Two campaigns; customers 0..999 in the first, 500..1499 in the second (500 in both).
    ids = [*range(1_000), *range(500, 1_500)]
    frame = pd.DataFrame(
        {
            history.CAMPAIGN: ["a"] * 1_000 + ["b"] * 1_000,
            history.ID: ids,
            history.SELECTED_AT: pd.to_datetime(["2025-01-01"] * 1_000 + ["2025-03-01"] * 1_000),
        }
    )
    split = history.split_history(frame, seed=7)
    assert split.by == "customer" and split.campaigns["test"] == ["a", "b"]
    sides = [set(part[history.ID]) for part in (split.train, split.valid, split.test)]
    assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])  # a customer on one side
    assert [len(s) for s in sides] == [900, 300, 300]  # 60/20/20 of the 1,500 customers
    assert sum(len(p) for p in (split.train, split.valid, split.test)) == len(frame)
    again = history.split_history(frame.sample(frac=1, random_state=1), seed=7)
    assert set(again.test[history.ID]) == sides[2]  # the same seed, the same customers, in any row order
    assert set(history.split_history(frame, seed=8).test[history.ID]) != sides[2]
    assert history.lineage(split)["split"] == "by customer within campaigns"
    with pytest.raises(history.HistoryError, match="too few to split in three"):
        history.split_history(frame.head(2), seed=7)
