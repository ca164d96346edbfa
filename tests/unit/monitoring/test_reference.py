"""Which features a model's monitoring reference profiles (``jobs.monitoring.leading_features``): the top features
and, for each one over a window longer than the monthly scoring cadence, the same definition over 30 days."""

from __future__ import annotations

from pipelines.features.catalogue import FEATURE_NAMES
from pipelines.jobs.monitoring import leading_features


def test_a_long_window_is_joined_by_its_30_day_version():
    top = ["aum_change_1m", "avg_ticket_90d", "tenure_days", "spend_180d", "txn_count_90d"]
    assert leading_features(top, list(FEATURE_NAMES)) == {
        "avg_ticket_30d": "avg_ticket_90d",
        "spend_30d": "spend_180d",
        "txn_count_30d": "txn_count_90d",
    }


def test_the_first_long_window_of_a_family_names_the_leading_one():
    # spend_90d and spend_180d share spend_30d: it is monitored once, as the leader of the higher-ranked one.
    assert leading_features(["spend_90d", "spend_180d"], list(FEATURE_NAMES)) == {"spend_30d": "spend_90d"}


def test_no_leading_window_when_it_is_monitored_already_short_or_absent():
    catalogue = list(FEATURE_NAMES)
    assert leading_features(["spend_90d", "spend_30d"], catalogue) == {}  # already a top feature
    assert (
        leading_features(["spend_7d", "logins_30d", "active_days_30d"], catalogue) == {}
    )  # not longer than 30
    assert (
        leading_features(["cat_dining_spend_share_180d", "campaign_contacts_180d"], catalogue) == {}
    )  # no 30d
    # a lake without app events: the model has no logins_30d to profile
    assert leading_features(["logins_90d"], [f for f in catalogue if not f.startswith("logins_")]) == {}
