"""Funnel and UTM channel quality of a campaign, on a hand-made campaign and on the generated bank."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.readout.funnel import FUNNEL_STAGES, SIDE_STEPS, channel_quality, funnel
from tests.unit.readout._frames import lake_frames as _lake_frames


def test_funnel_on_a_hand_made_campaign():
    contacts, responses = _lake_frames()
    table = funnel(contacts, responses, "c1")
    treated = table[table["group"] == "treatment"].set_index("stage")
    assert list(treated.index) == list(FUNNEL_STAGES)
    assert treated["customers"].to_dict() == {
        "sent": 4,
        "delivered": 3,
        "opened": 3,
        "clicked": 2,
        "visited": 2,
        "app_installed": 1,
        "registered": 1,
        "card_bound": 1,
        "converted": 1,
    }
    assert treated.loc["delivered", "stage_rate"] == pytest.approx(0.75)
    assert treated.loc["clicked", "stage_rate"] == pytest.approx(2 / 3)
    assert treated.loc["converted", "rate_from_sent"] == pytest.approx(0.25)
    assert np.isnan(treated.loc["sent", "stage_rate"])
    holdout = table[table["group"] == "holdout"].set_index("stage")
    # the holdout is never sent: its organic conversion is recorded, off the path, and read over the selected
    assert holdout.loc["sent", "customers"] == 0 and holdout.loc["converted", "customers"] == 0
    assert holdout.loc["converted", ["recorded", "off_path"]].tolist() == [1, 1]
    assert holdout.loc["converted", "rate_from_selected"] == pytest.approx(0.5)
    assert np.isnan(holdout.loc["converted", "rate_from_sent"])


def test_funnel_rates_stay_within_100_percent_when_later_events_skip_earlier_ones():
    """Conversions and visits recorded without a click (as the lake holds them) once read 489 % over clicks."""
    contacts, responses = _lake_frames()
    skipped = pd.DataFrame(
        {"campaign_id": "c1", "customer_id": [c for c in (2, 3, 4) for _ in range(2)]}
        | {"event_type": ["visited", "converted"] * 3, "event_ts": pd.Timestamp("2025-03-03")}
    )
    table = funnel(contacts, pd.concat([responses, skipped], ignore_index=True), "c1")
    treated = table[table["group"] == "treatment"].set_index("stage")
    recorded = treated["recorded"]
    assert recorded["converted"] / recorded["card_bound"] > 1  # what the un-nested funnel divided
    for column in ("stage_rate", "rate_from_sent", "rate_from_selected"):
        assert (table[column].dropna() <= 1).all(), table[["group", "stage", column]]
    path = treated.loc[[s for s in FUNNEL_STAGES if s not in SIDE_STEPS], "customers"]
    assert path.is_monotonic_decreasing
    assert treated.loc["converted", "customers"] == 1 and treated.loc["converted", "off_path"] == 3
    assert treated.loc["visited", "off_path"] == 2  # 3 (only opened) and 4 (nothing) visited without a click
    assert (treated["recorded"] == treated["customers"] + treated["off_path"]).all()
    assert treated.loc["app_installed", "stage_rate"] == pytest.approx(1 / 2)  # over visited, a side step


def test_funnel_of_an_unknown_campaign_is_a_lookup_error():
    contacts, responses = _lake_frames()
    with pytest.raises(LookupError, match="nope"):
        funnel(contacts, responses, "nope")


def test_channel_quality_counts_visits_registrations_and_conversions_per_utm():
    contacts, responses = _lake_frames()
    table = channel_quality(responses, contacts, "c1")
    by_content = table.set_index("utm_content")
    assert by_content.loc["v1", ["visits", "registrations", "conversions"]].tolist() == [1, 1, 1]
    assert by_content.loc["v2", ["visits", "registrations", "conversions"]].tolist() == [1, 0, 0]
    assert by_content.loc["v1", "conversion_rate"] == 1.0 and by_content.loc["v2", "registration_rate"] == 0.0
    organic = by_content.loc["(none)"]
    assert organic["conversions"] == 1 and organic["visits"] == 0  # customer 5; customer 9 is not a contact
    assert np.isnan(organic["conversion_rate"])
    assert table["visits"].is_monotonic_decreasing


def test_funnel_and_channel_quality_on_the_generated_bank(bank):
    from pipelines.data.storage import read_table

    contacts = read_table(bank / "lake", "campaign_contacts")
    responses = read_table(bank / "lake", "responses")
    campaign = contacts["campaign_id"].value_counts().index[0]
    table = funnel(contacts, responses, campaign)
    treated = table[table["group"] == "treatment"].set_index("stage")["customers"]
    n_contacts = int(((contacts["campaign_id"] == campaign) & (contacts["group"] == "treatment")).sum())
    assert treated["sent"] == n_contacts > 0
    # the tracked path is nested; app_installed is a side step and converted includes organic conversions
    path = treated[["sent", "delivered", "opened", "clicked", "visited", "registered", "card_bound"]]
    assert path.is_monotonic_decreasing and path.iloc[-1] > 0
    assert treated["app_installed"] <= treated["visited"]
    holdout = table[table["group"] == "holdout"].set_index("stage")["customers"]
    assert holdout["sent"] == 0 and holdout["visited"] == 0

    quality = channel_quality(responses, contacts, campaign)
    tracked = quality[quality["utm_source"] != "(none)"]
    assert tracked["visits"].sum() == treated["visited"]
    assert tracked["registrations"].sum() == treated["registered"]
    assert (tracked["utm_campaign"] == campaign).all()
    assert (tracked["registrations"] <= tracked["visits"]).all()
