"""Holdout sizing by power analysis: textbook sample sizes, power against simulated readouts, monotonicity, the
audience's holdout share, the readout's powered statement, and input errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from pipelines.campaigns.power import (
    HoldoutPlan,
    holdout_fraction_for,
    minimum_detectable_lift,
    power_of,
    powered_statement,
    required_holdout_size,
)
from pipelines.readout.stats import two_proportion_p_value
from tests.conftest import PROJECT_ROOT


def _fleiss(p0: float, lift: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Per-group size of the two-sided pooled z-test, Fleiss without continuity correction (not rounded)."""
    p1, mean = p0 + lift, p0 + lift / 2
    za, zb = stats.norm.isf(alpha / 2), stats.norm.ppf(power)
    return (
        (za * math.sqrt(2 * mean * (1 - mean)) + zb * math.sqrt(p0 * (1 - p0) + p1 * (1 - p1))) / lift
    ) ** 2


# --------------------------------------------------------------------------------------------------------------
# sample size


def test_the_textbook_example_10_against_15_percent_needs_686_per_group():
    # The usual worked example (alpha 0.05 two-sided, power 0.8, no continuity correction): 685.6 -> 686.
    assert _fleiss(0.10, 0.05) == pytest.approx(685.6, abs=0.05)
    assert required_holdout_size(0.10, 0.05) == 686


@pytest.mark.parametrize(
    ("p0", "lift", "alpha", "power"),
    [(0.05, 0.01, 0.05, 0.8), (0.02, 0.005, 0.05, 0.9), (0.3, 0.05, 0.01, 0.8), (0.01, 0.002, 0.1, 0.8)],
)
def test_equal_groups_match_the_standard_formula_and_are_the_smallest_sufficient(p0, lift, alpha, power):
    n = required_holdout_size(p0, lift, alpha=alpha, power=power)
    # The formula leaves out the far tail of the two-sided test, which can save at most one customer.
    assert math.ceil(_fleiss(p0, lift, alpha, power)) - 1 <= n <= math.ceil(_fleiss(p0, lift, alpha, power))
    assert power_of(n, n, p0, lift, alpha) >= power > power_of(n - 1, n - 1, p0, lift, alpha)


def test_a_holdout_beside_a_fixed_treated_group_is_the_smallest_sufficient():
    n0 = required_holdout_size(0.05, 0.01, treated_n=50_000)
    assert power_of(50_000, n0, 0.05, 0.01) >= 0.8 > power_of(50_000, n0 - 1, 0.05, 0.01)
    # more treated customers need fewer held out, but never fewer than half the equal-group size
    sizes = [required_holdout_size(0.05, 0.01, treated_n=t) for t in (20_000, 50_000, 200_000, 10**7)]
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[-1] > required_holdout_size(0.05, 0.01) / 2


def test_a_treated_group_too_small_for_any_holdout_says_how_many_are_needed():
    message = r"with 3,000 treated customers no holdout size reaches 80% power .* more than 3,93\d treated are needed"
    with pytest.raises(ValueError, match=message):
        required_holdout_size(0.05, 0.01, treated_n=3_000)
    # just above that, a (very large) holdout does it
    n0 = required_holdout_size(0.05, 0.01, treated_n=4_000)
    assert n0 > 100_000 and power_of(4_000, n0, 0.05, 0.01) >= 0.8


# --------------------------------------------------------------------------------------------------------------
# power against simulated readouts


@pytest.mark.parametrize(
    ("n1", "n0", "p0", "lift"),
    [
        (9_000, 1_000, 0.02, 0.016),  # a campaign split: 90 % treated
        (5_000, 5_000, 0.05, 0.01),
        (14_158, 5_842, 0.05, 0.01),
        (1_600, 400, 0.3, 0.06),
    ],
)
def test_power_matches_the_rejection_rate_of_the_readouts_test(n1, n0, p0, lift):
    rng = np.random.default_rng(n1 + n0)
    sims = 3_000
    x1, x0 = rng.binomial(n1, p0 + lift, sims), rng.binomial(n0, p0, sims)
    rejected = [two_proportion_p_value(int(a), n1, int(b), n0)[0] < 0.05 for a, b in zip(x1, x0, strict=True)]
    assert power_of(n1, n0, p0, lift) == pytest.approx(np.mean(rejected), abs=0.03)


def test_the_fully_unpooled_approximation_would_overstate_the_power_of_an_unbalanced_split():
    # Why the module uses the pooled denominator: at 90/10, se1 alone predicts 0.91 where the test gives 0.80.
    n1, n0, p0, p1 = 9_000, 1_000, 0.02, 0.036
    se1 = math.sqrt(p0 * (1 - p0) / n0 + p1 * (1 - p1) / n1)
    unpooled = stats.norm.cdf((p1 - p0) / se1 - stats.norm.isf(0.025))
    assert unpooled - power_of(n1, n0, p0, p1 - p0) > 0.05


@pytest.mark.parametrize(
    ("n1", "n0", "p0", "lift"),
    [
        (9_000, 1_000, 0.02, 0.016),
        (9_000, 1_000, 0.02, 0.012),
        (5_000, 5_000, 0.05, -0.01),
        (1_600, 400, 0.3, 0.06),
    ],
)
def test_power_is_the_pooled_null_unpooled_alternative_formula_of_the_module(n1, n0, p0, lift):
    p1 = p0 + lift
    pooled = (n1 * p1 + n0 * p0) / (n1 + n0)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
    se1 = math.sqrt(p0 * (1 - p0) / n0 + p1 * (1 - p1) / n1)
    z = stats.norm.isf(0.025)
    expected = stats.norm.cdf((abs(lift) - z * se0) / se1) + stats.norm.cdf((-abs(lift) - z * se0) / se1)
    assert power_of(n1, n0, p0, lift) == pytest.approx(expected, abs=1e-12)


def test_the_arcsine_effect_size_would_overstate_the_power_of_an_unbalanced_split():
    # Cohen's h (NormalIndPower) gives 0.62 at 90/10, 2 % against 3.2 %; the readout's test rejects about 0.57.
    from statsmodels.stats.power import NormalIndPower
    from statsmodels.stats.proportion import proportion_effectsize

    n1, n0, p0, p1 = 9_000, 1_000, 0.02, 0.032
    arcsine = NormalIndPower().power(proportion_effectsize(p1, p0), n1, 0.05, ratio=n0 / n1)
    assert arcsine - power_of(n1, n0, p0, p1 - p0) > 0.05


def test_power_is_alpha_without_a_lift_and_rises_with_the_lift_and_the_groups():
    assert power_of(5_000, 5_000, 0.05, 0.0) == pytest.approx(0.05, abs=1e-3)
    assert power_of(5_000, 5_000, 0.05, 0.0, alpha=0.1) == pytest.approx(0.1, abs=1e-3)
    lifts = [power_of(5_000, 1_000, 0.05, d) for d in np.linspace(0, 0.2, 41)]
    assert np.all(np.diff(lifts) >= 0) and np.all(np.diff(lifts[:8]) > 0) and lifts[-1] > 0.999
    treated = [power_of(n, 1_000, 0.05, 0.02) for n in (1_000, 2_000, 5_000, 20_000)]
    holdout = [power_of(9_000, n, 0.05, 0.02) for n in (100, 500, 1_000, 5_000)]
    assert treated == sorted(treated) and holdout == sorted(holdout)
    # two-sided: a drop is detected too (more easily than a rise of the same size: lower rates vary less)
    drops = [power_of(5_000, 5_000, 0.05, -d) for d in (0.0, 0.005, 0.01)]
    assert drops == sorted(drops) and drops[-1] > power_of(5_000, 5_000, 0.05, 0.01)


@settings(max_examples=60, deadline=None)
@given(
    n1=st.integers(50, 200_000),
    n0=st.integers(50, 50_000),
    p0=st.floats(0.001, 0.6),
    power=st.floats(0.5, 0.95),
)
def test_the_minimum_detectable_lift_is_detected_with_exactly_the_power(n1, n0, p0, power):
    mde = minimum_detectable_lift(n1, n0, p0, power=power)
    assert 0 < mde < 1 - p0
    assert power_of(n1, n0, p0, mde) == pytest.approx(power, abs=1e-6)
    assert power_of(n1, n0, p0, 0.95 * mde) < power
    assert minimum_detectable_lift(2 * n1, 2 * n0, p0, power=power) < mde


def test_sizes_move_the_right_way():
    base = required_holdout_size(0.05, 0.01)
    assert required_holdout_size(0.05, 0.02) < base  # a larger lift needs fewer customers
    assert required_holdout_size(0.05, 0.01, power=0.9) > base
    assert required_holdout_size(0.05, 0.01, alpha=0.01) > base
    assert minimum_detectable_lift(5_000, 5_000, 0.05, power=0.9) > minimum_detectable_lift(
        5_000, 5_000, 0.05
    )


def test_groups_too_small_for_any_lift_have_an_infinite_minimum_detectable_lift():
    assert minimum_detectable_lift(1, 1, 0.5) == math.inf
    assert minimum_detectable_lift(100, 100, 1.0) == math.inf  # the rate cannot rise


# --------------------------------------------------------------------------------------------------------------
# holdout share of an audience


def test_the_smallest_sufficient_holdout_share():
    plan = holdout_fraction_for(20_000, 0.05, 0.01)
    assert isinstance(plan, HoldoutPlan) and plan.powered
    assert plan.holdout_n + plan.treated_n == 20_000 and plan.fraction == plan.holdout_n / 20_000
    assert 0.05 < plan.fraction < 0.5
    assert plan.achieved_power >= 0.8 > power_of(plan.treated_n + 1, plan.holdout_n - 1, 0.05, 0.01)
    assert plan.detectable_lift <= 0.01 and power_of(
        plan.treated_n, plan.holdout_n, 0.05, plan.detectable_lift
    ) == pytest.approx(0.8, abs=1e-6)
    text = plan.describe()
    assert text.startswith(f"holdout {plan.fraction:.1%} of 20,000 ({plan.holdout_n:,} holdout")
    assert "80% power to detect +1.00 points over a baseline of 5.00%" in text and "\n" not in text


def test_a_large_audience_gets_the_minimum_share():
    plan = holdout_fraction_for(500_000, 0.05, 0.01, min_fraction=0.05)
    assert plan.fraction == 0.05 and plan.holdout_n == 25_000 and plan.powered
    assert plan.achieved_power > 0.99


def test_an_audience_too_small_gets_the_maximum_share_and_says_it_is_under_powered():
    plan = holdout_fraction_for(1_500, 0.05, 0.01, max_fraction=0.4)
    assert not plan.powered and plan.fraction == 0.4 and plan.holdout_n == 600 and plan.treated_n == 900
    assert plan.achieved_power == pytest.approx(power_of(900, 600, 0.05, 0.01))
    assert plan.detectable_lift == pytest.approx(minimum_detectable_lift(900, 600, 0.05))
    text = plan.describe()
    assert text.startswith("UNDER-POWERED: holdout 40.0% of 1,500")
    assert f"only lifts of ≥ +{100 * plan.detectable_lift:.2f} points" in text


@pytest.mark.parametrize("n", [0, 1, 2])
def test_tiny_audiences_do_not_raise(n):
    plan = holdout_fraction_for(n, 0.05, 0.01)
    assert not plan.powered and plan.fraction == 0.5 and plan.holdout_n + plan.treated_n == n
    assert "UNDER-POWERED" in plan.describe()


@settings(max_examples=40, deadline=None)
@given(n=st.integers(100, 400_000), p0=st.floats(0.005, 0.5), lift=st.floats(0.001, 0.05))
def test_holdout_share_properties(n, p0, lift):
    plan = holdout_fraction_for(n, p0, lift)
    assert 0.05 <= plan.fraction <= 0.5
    assert plan.holdout_n == math.floor(plan.fraction * n + 0.5)
    if plan.powered and plan.fraction > 0.05:
        # one fewer held out does not reach the power
        assert power_of(plan.treated_n + 1, plan.holdout_n - 1, p0, lift) < 0.8
    if not plan.powered:
        assert plan.fraction == 0.5


# --------------------------------------------------------------------------------------------------------------
# the readout's statement


def test_powered_statement_when_the_observed_lift_is_above_the_detectable_one():
    mde = minimum_detectable_lift(9_000, 1_000, 0.02)
    text = powered_statement(9_000, 1_000, 0.02, 0.021)
    assert text == (
        f"powered: 80% power to detect ≥ {100 * mde:+.2f} points at this size (9,000 treated, 1,000 holdout, "
        "control rate 2.00%); the observed +2.10 points is above it."
    )
    assert "a drop at least that large" in powered_statement(9_000, 1_000, 0.02, -0.03)


def test_powered_statement_when_the_observed_lift_is_too_small_to_be_seen():
    text = powered_statement(9_000, 1_000, 0.02, 0.004)
    chance = power_of(9_000, 1_000, 0.02, 0.004)
    assert text.startswith(
        "under-powered: at this size (9,000 treated, 1,000 holdout, control rate 2.00%) only "
    )
    assert f"the observed +0.40 points is below it (a true lift of that size is detected {chance:.0%}" in text
    assert text.endswith(
        "when such a run finds no significant lift, that says little about lifts that small."
    )
    assert "no lift could be detected" in powered_statement(2, 1, 0.5, 0.0)
    assert "90% power" in powered_statement(9_000, 1_000, 0.02, 0.004, power=0.9)


# --------------------------------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: required_holdout_size(0, 0.01), r"baseline_rate must lie in \(0, 1\), got 0"),
        (lambda: required_holdout_size(1.2, 0.01), r"baseline_rate must lie in \(0, 1\)"),
        (lambda: required_holdout_size(0.05, 0), r"min_detectable_lift must lie in \(0, 1 - baseline_rate\)"),
        (lambda: required_holdout_size(0.9, 0.2), r"\(0, 0.1\) as an absolute lift"),
        (lambda: required_holdout_size(0.05, "0.01"), r"min_detectable_lift must be a number, got '0.01'"),
        (lambda: required_holdout_size(0.05, 0.01, power=0.03), r"power \(0.03\) must be greater than alpha"),
        (lambda: required_holdout_size(0.05, 0.01, alpha=1), r"alpha must lie in \(0, 1\)"),
        (lambda: required_holdout_size(0.05, 0.01, treated_n=0), r"treated_n must be at least 1"),
        (lambda: holdout_fraction_for(-1, 0.05, 0.01), r"audience_n must be at least 0"),
        (lambda: holdout_fraction_for(100.5, 0.05, 0.01), r"audience_n must be a whole number"),
        (lambda: holdout_fraction_for(True, 0.05, 0.01), r"audience_n must be a whole number"),
        (
            lambda: holdout_fraction_for(100, 0.05, 0.01, min_fraction=0.3, max_fraction=0.2),
            r"must not exceed",
        ),
        (
            lambda: holdout_fraction_for(100, 0.05, 0.01, max_fraction=1.0),
            r"max_fraction must lie in \(0, 1\)",
        ),
        (lambda: power_of(0, 10, 0.05, 0.01), r"treated_n must be at least 1"),
        (lambda: power_of(10, 10, 0.05, 0.99), r"baseline_rate \+ lift must lie in \[0, 1\]"),
        (lambda: power_of(10, 10, 0.05, float("nan")), r"lift must be a number"),
        (lambda: minimum_detectable_lift(10, 10, -0.1), r"baseline_rate must lie in \[0, 1\]"),
        (lambda: powered_statement(10, 10, 0.05, None), r"observed_lift must be a number"),
    ],
)
def test_bad_inputs_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_the_examples_in_the_docs_are_what_the_functions_say():
    docs = (PROJECT_ROOT / "docs" / "readout.md").read_text(encoding="utf-8")
    for line in (
        powered_statement(9_000, 1_000, 0.02, 0.021),
        powered_statement(9_000, 1_000, 0.02, 0.004),
        holdout_fraction_for(20_000, 0.05, 0.01).describe(),
        holdout_fraction_for(1_500, 0.05, 0.01).describe(),
    ):
        assert f"\n    {line}\n" in docs or f"\n      {line}\n" in docs, line
