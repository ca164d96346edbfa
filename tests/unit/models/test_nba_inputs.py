"""Next-best-action inputs (``jobs.nba``) on the session bank: channel effects measured on the randomised campaign
history agree with the truth of those campaigns; cross-sell candidates carry one row per customer, product and
allowed channel, with the campaign's own ranking."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.data import storage
from pipelines.jobs.nba import CONTACT_COSTS, channel_effects, cross_sell_candidates


def test_channel_effects_are_the_history_s_true_lift_within_their_error(bank):
    effects = channel_effects(bank / "lake")
    assert set(effects.index) == {"sms", "email", "push", "call"}
    contacts = storage.read_table(bank / "lake", "campaign_contacts", columns=["campaign_id", "channel"])
    channel_of = contacts.drop_duplicates("campaign_id").set_index("campaign_id")["channel"].astype(str)
    truth = storage.read_table(bank / "truth", "campaigns", columns=["campaign_id", "p_control", "p_treated"])
    truth["channel"] = truth["campaign_id"].map(channel_of)
    true_lift = (truth["p_treated"] - truth["p_control"]).groupby(truth["channel"]).mean()
    print(pd.DataFrame({"estimate": effects["effect"], "se": effects["se"], "truth": true_lift}).round(4))
    gap = (effects["effect"] - true_lift.reindex(effects.index)).abs()
    assert (gap < 3 * effects["se"]).all()
    assert (effects["contacts"] > 0).all() and (effects["se"] > 0).all()


def test_a_lake_without_campaign_history_is_named(tmp_path):
    with pytest.raises(ValueError, match="campaign_contacts is absent"):
        channel_effects(tmp_path)


def test_candidates_per_channel_and_the_campaign_s_own_ranking():
    scores = pd.DataFrame(
        {
            "customer_id": np.repeat([1, 2, 3], 2),
            "product": ["travel_card", "personal_loan"] * 3,
            "p_uptake": [0.01, 0.02, 0.03, 0.01, 0.02, 0.03],
        }
    )
    effects = {"sms": 0.02, "email": 0.01, "push": 0.012, "call": 0.03}
    fixed = cross_sell_candidates(scores, {"travel_card": "email", "personal_loan": "call"}, effects)
    assert len(fixed) == 6 and set(zip(fixed["campaign"], fixed["channel"], strict=True)) == {
        ("travel_card", "email"),
        ("personal_loan", "call"),
    }
    travel = fixed.loc[fixed["campaign"] == "travel_card"].set_index("customer_id")
    # the relative propensity scales the channel's effect: customer 2 is three times as keen as customer 1
    assert travel.loc[2, "p_incremental"] == pytest.approx(3 * travel.loc[1, "p_incremental"])
    assert travel.loc[1, "p_incremental"] == pytest.approx(0.01 * 0.01 / (0.06 / 3))
    free = cross_sell_candidates(scores, {"travel_card": "email"}, effects, channels=tuple(CONTACT_COSTS))
    assert len(free) == 3 * len(CONTACT_COSTS)
    # the campaign's own ranking is its expected value on its own channel, whatever the row's channel
    assert free.groupby("customer_id")["own_score"].nunique().eq(1).all()
    with pytest.raises(ValueError, match="unknown product"):
        cross_sell_candidates(scores, {"mortgage": "sms"}, effects)
    with pytest.raises(ValueError, match="no channel effect for fax"):
        cross_sell_candidates(scores, {"travel_card": "fax"}, effects)
