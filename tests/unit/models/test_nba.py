"""Next-best-action arbitration (``pipelines.models.nba``): one offer per customer by expected value under capacity,
quotas and budget; the first-come baseline; the decision audit; greedy against the linear-programme optimum."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import csr_matrix

from pipelines.models.nba import arbitrate, decision_audit, expected_values, first_come

CAMPAIGNS = {"loan": 250.0, "card": 80.0, "insurance": 40.0}
CHANNELS = {"sms": 0.05, "call": 4.0}


def _candidates(n: int = 2_000, seed: int = 3) -> pd.DataFrame:
    """Every customer x campaign x channel, with a customer-level persuadability, a campaign-level affinity and a
    channel effect (a call moves 1.4 times as much as an SMS), as the synthetic bank's truth is built."""
    rng = np.random.default_rng(seed)
    persuadable = rng.beta(0.6, 8.0, n)
    rows = []
    for campaign, value in CAMPAIGNS.items():
        affinity = rng.lognormal(0.0, 0.8, n)
        for channel, cost in CHANNELS.items():
            effect = 1.4 if channel == "call" else 1.0
            rows.append(
                pd.DataFrame(
                    {
                        "customer_id": np.arange(n, dtype=np.int64) + 1_000,
                        "campaign": campaign,
                        "channel": channel,
                        "p_incremental": np.clip(persuadable * affinity * effect * 0.3, 0, 1),
                        "value": value,
                        "cost": cost,
                        "own_score": persuadable * affinity,
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)


def test_one_offer_per_customer_within_capacity_quota_and_budget():
    candidates = _candidates()
    chosen = arbitrate(candidates, capacity={"call": 100}, quotas={"card": 150}, budget=900)
    assert chosen["customer_id"].is_unique
    assert (chosen["channel"] == "call").sum() == 100  # calls move most: the capacity is used up
    assert (chosen["campaign"] == "card").sum() <= 150
    assert len(chosen) <= 900 and (chosen["ev"] > 0).all()
    assert chosen["score"].is_monotonic_decreasing  # taken best first


def test_each_customer_gets_their_best_option_when_nothing_binds():
    candidates = _candidates(300)
    chosen = arbitrate(candidates).set_index("customer_id")
    best = (
        expected_values(candidates)
        .sort_values("score")
        .groupby("customer_id")
        .tail(1)
        .set_index("customer_id")
    )
    best = best.loc[best["score"] > 0]
    assert set(chosen.index) == set(best.index)
    assert (chosen.loc[best.index, "campaign"] == best["campaign"]).all()
    assert (chosen.loc[best.index, "channel"] == best["channel"]).all()


def test_priorities_weigh_expected_value_and_row_order_does_not_matter():
    candidates = _candidates(500)
    plain = arbitrate(candidates, budget=200)
    shuffled = arbitrate(candidates.sample(frac=1.0, random_state=9), budget=200)
    pd.testing.assert_frame_equal(plain, shuffled)
    weighted = arbitrate(
        candidates.assign(priority=np.where(candidates["campaign"] == "insurance", 10.0, 1.0)), budget=200
    )
    assert (weighted["campaign"] == "insurance").sum() > (plain["campaign"] == "insurance").sum()


def test_greedy_stays_close_to_the_linear_programme_optimum():
    candidates = expected_values(_candidates(800))
    capacity, budget = {"call": 40, "sms": 10_000}, 250
    chosen = arbitrate(candidates, capacity=capacity, budget=budget)
    # The same problem as a 0/1 programme: maximise sum(score * x), one option per customer, capacity, budget.
    positive = candidates.loc[candidates["score"] > 0].reset_index(drop=True)
    n = len(positive)
    customer = pd.factorize(positive["customer_id"])[0]
    rows = [csr_matrix((np.ones(n), (customer, np.arange(n))))]
    upper = [np.ones(customer.max() + 1)]
    for channel, cap in capacity.items():
        rows.append(csr_matrix((positive["channel"] == channel).to_numpy(float)[None, :]))
        upper.append(np.array([cap]))
    rows.append(csr_matrix(np.ones((1, n))))
    upper.append(np.array([budget]))
    from scipy.sparse import vstack

    constraints = LinearConstraint(vstack(rows), -np.inf, np.concatenate(upper))
    result = milp(
        -positive["score"].to_numpy(), constraints=constraints, integrality=np.ones(n), bounds=Bounds(0, 1)
    )
    assert result.success
    optimum = -result.fun
    greedy = chosen["score"].sum()
    print(f"greedy {greedy:.1f} vs optimum {optimum:.1f} ({greedy / optimum:.3%})")
    assert greedy <= optimum + 1e-6 and greedy >= 0.97 * optimum


def test_first_come_lets_the_campaign_due_first_take_its_best_customers():
    candidates = _candidates(1_000)
    channels = {"insurance": "sms", "card": "sms", "loan": "sms"}
    quotas = {c: 200 for c in channels}
    chosen = first_come(
        candidates, ["insurance", "card", "loan"], channels=channels, rank_by="own_score", quotas=quotas
    )
    assert chosen["customer_id"].is_unique
    assert chosen.groupby("campaign").size().to_dict() == quotas
    # insurance went first: its list is its own top 200, as if it ran alone
    own = expected_values(candidates)
    own = own.loc[(own["campaign"] == "insurance") & (own["channel"] == "sms") & (own["ev"] > 0)]
    alone = set(own.nlargest(200, "own_score")["customer_id"])
    assert set(chosen.loc[chosen["campaign"] == "insurance", "customer_id"]) == alone
    assert not alone & set(chosen.loc[chosen["campaign"] != "insurance", "customer_id"])
    arbitrated = arbitrate(candidates.loc[candidates["channel"] == "sms"], budget=len(chosen))
    assert arbitrated["ev"].sum() > chosen["ev"].sum()


def test_the_audit_names_the_choice_the_runner_up_and_why():
    candidates = _candidates(400)
    chosen = arbitrate(candidates, capacity={"call": 10}, budget=150)
    audit = decision_audit(candidates, chosen)
    assert len(audit) == candidates["customer_id"].nunique() and audit["customer_id"].is_unique
    got = audit.loc[audit["campaign"].notna()]
    assert len(got) == len(chosen)
    assert (got["runner_up"] != got["campaign"]).all() and got["runner_up"].notna().all()
    assert set(got["reason"]) <= {
        "highest expected value",
        "runner-up scored higher, but its channel, quota or the budget was full",
    }
    none = audit.loc[audit["campaign"].isna()]
    assert none["reason"].str.startswith("no offer").all() and none["runner_up"].notna().all()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns="value"), "lack column"),
        (lambda f: f.assign(cost=-1.0), "'cost' has negative"),
        (lambda f: f.assign(p_incremental=np.nan), "'p_incremental' has missing"),
        (lambda f: f.assign(p_incremental=1.5), "must lie in"),
        (lambda f: pd.concat([f, f.head(1)]), "repeat an option"),
    ],
)
def test_bad_candidates_are_refused_with_the_column_named(change, message):
    with pytest.raises(ValueError, match=message):
        arbitrate(change(_candidates(20)))


def test_bad_limits_are_refused():
    with pytest.raises(ValueError, match="capacity of 'call'"):
        arbitrate(_candidates(20), capacity={"call": -1})
    with pytest.raises(ValueError, match="no channel given"):
        first_come(_candidates(20), ["loan"], channels={}, rank_by="own_score")
