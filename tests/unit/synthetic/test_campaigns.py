"""The synthetic world's treatment-effect model and funnel (pipelines/synth_campaigns.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.data.schema import RESPONSE_EVENTS
from pipelines.synthetic import campaigns as sc

N = 40_000


def audience(n: int = N, seed: int = 0, holdout_share: float = 0.5) -> sc.Audience:
    rng = np.random.default_rng(seed)
    return sc.Audience(
        customer_id=1_000_000_000 + np.arange(n, dtype=np.int64),
        holdout=rng.random(n) < holdout_share,
        age=rng.integers(18, 85, n),
        income_band=rng.integers(0, 5, n),
        card_tier=rng.integers(0, 4, n),
        acquisition_channel=rng.integers(0, 5, n),
        repayment_due_day=rng.integers(1, 29, n),
        state=rng.integers(0, 4, n),
        closed_us=np.full(n, np.iinfo(np.int64).max),
        has_app=rng.random(n) < 0.6,
    )


SELECTED = pd.Timestamp("2025-06-01 09:00").value // 1000
CAMPAIGN = sc.Campaign("cmp-test", "winback", "sms", SELECTED)
END = SELECTED + 30 * sc.US_PER_DAY


def test_type_probabilities_are_distributions_driven_by_the_documented_attributes():
    a = audience(5_000)
    p = sc.type_probabilities(a.age, a.income_band, a.card_tier, a.acquisition_channel, a.state)
    assert p.shape == (5_000, 4)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    types = sc.uplift_types(p, sc.customer_uniforms(a.customer_id, seed=1))
    old = a.age >= 60
    # Customers of 60 and over are mostly do-not-disturb, under-35s mostly persuadable, the others rarely either.
    assert (types[old] == sc.DO_NOT_DISTURB).mean() > 0.8
    assert (types[~old & (a.age < 35)] == sc.PERSUADABLE).mean() > 0.5
    assert (types[(a.age >= 35) & (a.age < 60)] == sc.DO_NOT_DISTURB).mean() < 0.2


def test_a_customer_keeps_its_type_across_campaigns_while_its_attributes_do_not_change():
    a = audience(2_000)
    p = sc.type_probabilities(a.age, a.income_band, a.card_tier, a.acquisition_channel, a.state)
    u1 = sc.customer_uniforms(a.customer_id, seed=3)
    np.testing.assert_array_equal(u1, sc.customer_uniforms(a.customer_id, seed=3))
    assert not np.array_equal(u1, sc.customer_uniforms(a.customer_id, seed=4))
    assert u1.min() >= 0.0 and u1.max() < 1.0 and abs(u1.mean() - 0.5) < 0.03
    np.testing.assert_array_equal(sc.uplift_types(p, u1), sc.uplift_types(p, u1.copy()))


def test_truth_by_type_channel_and_timing():
    a = audience()
    rng = np.random.default_rng(0)
    truth = sc.contact_truth(rng, CAMPAIGN, a, seed=1)
    tau = truth["p_treated"] - truth["p_control"]
    kind = truth["uplift_type"]
    assert tau[kind == sc.PERSUADABLE].mean() > 0.08
    assert tau[kind == sc.DO_NOT_DISTURB].max() < 0
    assert (
        abs(tau[kind == sc.SURE_THING].mean()) < 0.01 < truth["p_control"][kind == sc.SURE_THING].mean() - 0.1
    )
    assert (
        abs(tau[kind == sc.LOST_CAUSE].mean()) < 0.005
        and truth["p_control"][kind == sc.LOST_CAUSE].max() < 0.02
    )

    # An e-mail moves persuadables less than an SMS, a call more; a call annoys do-not-disturb customers most.
    def mean_tau(channel: str, kind_code: int) -> float:
        t = sc.contact_truth(np.random.default_rng(0), sc.Campaign("c", "winback", channel, SELECTED), a, 1)
        return float((t["p_treated"] - t["p_control"])[t["uplift_type"] == kind_code].mean())

    assert (
        mean_tau("email", sc.PERSUADABLE) < mean_tau("sms", sc.PERSUADABLE) < mean_tau("call", sc.PERSUADABLE)
    )
    assert mean_tau("call", sc.DO_NOT_DISTURB) < mean_tau("sms", sc.DO_NOT_DISTURB) < 0

    # A repayment reminder works best 1-3 days before the due day.
    timing = sc.timing_effect("installment", SELECTED, np.array([1, 2, 4, 5, 8, 9, 28]))
    np.testing.assert_array_equal(timing, [0.4, 1.6, 1.6, 1.0, 1.0, 0.4, 0.4])
    np.testing.assert_array_equal(sc.timing_effect("winback", SELECTED, np.array([2, 20])), [1.0, 1.0])


def test_share_within_the_window():
    assert sc.share_within(0) == 0.0
    assert sc.share_within(sc.RESPONSE_HORIZON_DAYS) == pytest.approx(1.0)
    assert 0.85 < sc.share_within(7) < 0.95
    assert sc.share_within(30) == pytest.approx(1.0)


def test_outcomes_follow_the_truth_and_the_funnel_is_consistent():
    a = audience()
    contacts, ev, truth = sc.draw_campaign(np.random.default_rng(5), CAMPAIGN, a, seed=1, end_us=END)
    events = pd.DataFrame(
        {
            "idx": ev["idx"],
            "event": np.asarray(RESPONSE_EVENTS)[ev["event_type"]],
            "ts": ev["event_ts"],
            "tracked": ev["tracked"],
        }
    )
    converted = np.zeros(N, dtype=bool)
    converted[events.loc[events["event"] == "converted", "idx"]] = True
    treated = ~a.holdout
    # Realised rates match the truth within sampling error.
    for group, p in ((treated, truth["p_treated"]), (a.holdout, truth["p_control"])):
        se = np.sqrt(p[group].mean() * (1 - p[group].mean()) / group.sum())
        assert abs(converted[group].mean() - p[group].mean()) < 4 * se
    # Holdout customers were not contacted: their only events are (untracked) conversions.
    held = events[a.holdout[events["idx"]]]
    assert set(held["event"]) == {"converted"} and not held["tracked"].any()
    # Conversions land within the horizon of the selection.
    conv = events[events["event"] == "converted"]
    assert (conv["ts"] >= SELECTED).all() and (
        conv["ts"] < SELECTED + sc.RESPONSE_HORIZON_DAYS * sc.US_PER_DAY
    ).all()
    # A tracked conversion walked the whole funnel, in order, before converting.
    tracked = conv.loc[conv["tracked"], "idx"]
    assert len(tracked) > 0
    steps = events[events["idx"].isin(tracked)].pivot_table(index="idx", columns="event", values="ts")
    chain = ["delivered", "opened", "clicked", "visited", "registered", "card_bound", "converted"]
    assert steps[chain].notna().all().all()
    assert (steps[chain].diff(axis=1).iloc[:, 1:] >= 0).all().all()
    # About 1 % of the treated register; sends are recorded for treatment only.
    registered = events.loc[events["event"] == "registered", "idx"].nunique() / treated.sum()
    assert 0.005 < registered < 0.02
    assert ((contacts["sent_at"] >= 0) == treated).all()


def test_events_after_the_end_or_after_closure_are_dropped():
    a = audience(10_000)
    a.closed_us[:5_000] = SELECTED + 2 * sc.US_PER_DAY
    end = SELECTED + 5 * sc.US_PER_DAY
    _, ev, _ = sc.draw_campaign(np.random.default_rng(2), CAMPAIGN, a, seed=1, end_us=end)
    assert (ev["event_ts"] < end).all()
    assert (ev["event_ts"][ev["idx"] < 5_000] < SELECTED + 2 * sc.US_PER_DAY).all()


def test_the_same_inputs_draw_the_same_campaign():
    a = audience(5_000)
    first = sc.campaign_tables([(CAMPAIGN, *sc.draw_campaign(np.random.default_rng(9), CAMPAIGN, a, 1, END))])
    again = sc.campaign_tables([(CAMPAIGN, *sc.draw_campaign(np.random.default_rng(9), CAMPAIGN, a, 1, END))])
    for x, y in zip(first, again, strict=True):
        assert x.equals(y)


def test_unknown_kind_or_channel_is_refused():
    with pytest.raises(ValueError, match="unknown campaign kind 'spam'"):
        sc.Campaign("c", "spam", "sms", SELECTED)
    with pytest.raises(ValueError, match="unknown channel 'fax'"):
        sc.Campaign("c", "winback", "fax", SELECTED)
