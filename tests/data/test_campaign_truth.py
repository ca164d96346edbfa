"""The readout against the generator's known treatment effects, over many generated banks.

Each seed generates a small bank with one test-and-learn campaign (about 2,900 contacts, half held out), reads its outcome from the
lake (conversion within 14 days of selection, as the platform does) and reads it out; the truth (``truth/
campaigns``: p_treated and p_control per contact) gives the true lift of exactly those contacts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipelines.features import history
from pipelines.readout.stats import readout
from pipelines.synthetic import oracle
from pipelines.synthetic.bank import SynthConfig, generate_bank

SEEDS = range(20)
WINDOW = 14


def _campaign(out: Path, seed: int):
    config = SynthConfig(
        customers=5_000,
        months=2,
        seed=seed,
        chunk_size=5_000,
        campaign_months=(1,),
        campaign_share=0.8,
        workers=1,
    )
    generate_bank(config, out, progress=None)
    contacts = history.campaign_outcomes(out / "lake", WINDOW)
    true_lift = oracle.oracle_uplift(out, contacts, WINDOW).mean()
    return contacts, float(true_lift)


def _readout(contacts):
    return readout(
        contacts,
        treatment_col=history.TREATED,
        treated=1,
        control=0,
        outcome_col=history.CONVERTED,
        expected_share=0.5,
    )


@pytest.fixture(scope="module")
def campaigns(tmp_path_factory):
    return [_campaign(tmp_path_factory.mktemp(f"seed{seed}"), seed) for seed in SEEDS]


def test_the_95_percent_interval_contains_the_true_lift_in_at_least_17_of_20_seeds(campaigns):
    covered, lifts = 0, []
    for contacts, true_lift in campaigns:
        o = _readout(contacts).overall
        covered += o.lift_ci_low <= true_lift <= o.lift_ci_high
        lifts.append((o.lift_abs, true_lift))
    assert covered >= 17, lifts
    # The effect is real and the estimates centre on it: mean estimate within 1 point of the mean true lift.
    estimates, truths = np.array(lifts).T
    assert truths.min() > 0.005
    assert abs(estimates.mean() - truths.mean()) < 0.01


def test_the_srm_check_passes_fair_splits_and_flags_a_biased_one(campaigns):
    fair = [_readout(contacts) for contacts, _ in campaigns]
    assert sum(r.trustworthy for r in fair) >= 19, [r.srm.p_value for r in fair]

    # A biased split: a fifth of the holdout rows lost (say, a failed export batch) in every campaign.
    rng = np.random.default_rng(0)
    for contacts, _ in campaigns:
        holdout = np.flatnonzero(contacts[history.TREATED].to_numpy() == 0)
        lost = rng.choice(holdout, size=len(holdout) // 5, replace=False)
        biased = _readout(contacts.drop(index=contacts.index[lost]))
        assert not biased.trustworthy and biased.srm.p_value < 0.001, biased.srm
        assert "MISMATCH" in biased.srm_verdict()
