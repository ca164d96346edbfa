"""Holdout sizing by power analysis, and the readout's statement on whether a run was powered.

Power is that of the test the readout runs (:func:`pipelines.readout.stats.two_proportion_p_value`): the
two-sided pooled two-proportion z-test at level ``alpha``. In its normal approximation, with a control (holdout)
rate ``p0`` on ``n0`` customers and a treated rate ``p1 = p0 + lift`` on ``n1``:

    se1   = sqrt(p0 (1 - p0) / n0 + p1 (1 - p1) / n1)             spread of p̂1 - p̂0 (unpooled variances)
    se0   = sqrt(p̄ (1 - p̄) (1 / n1 + 1 / n0)),  p̄ = (n1 p1 + n0 p0) / (n1 + n0)   the test's pooled denominator
    power = Φ((|lift| - z se0) / se1) + Φ((-|lift| - z se0) / se1),  z = Φ⁻¹(1 - alpha / 2)

statsmodels' ``power_proportions_2indep`` computes exactly this (pooled variance under the null, unpooled under
the alternative, with ``nobs1 = n1``, ``ratio = n0 / n1``), so :func:`power_of` calls it. With equal groups it is
Fleiss' sample-size formula without continuity correction (Fleiss, Levin & Paik, *Statistical Methods for Rates
and Proportions*, 3rd ed., 2003, § 4.2), statsmodels' ``samplesize_proportions_2indep_onetail``. Two other
approximations overstate the power of the readout's test at the unbalanced splits campaigns use: at 9,000 treated
against 1,000 holdout, 2 % against 3.2 %, this formula gives 56 % and 20,000 simulated readouts reject 57 %
(± 0.7), where ``se1`` for both (fully unpooled) gives 71 % and Cohen's arcsine effect size
(``NormalIndPower`` with ``proportion_effectsize``) 62 %.

- :func:`power_of` is that power; :func:`minimum_detectable_lift` solves it for the (absolute, upward) lift;
- :func:`required_holdout_size` is the holdout size a given lift needs (equal groups, or beside a fixed treated
  group);
- :func:`holdout_fraction_for` picks the smallest holdout share of an audience that reaches the power, or says
  the campaign is under-powered at the largest share allowed;
- :func:`powered_statement` is the readout's sentence comparing the observed lift with the lift the run could
  detect.

Lifts are absolute (0.01 = one percentage point). See ``docs/readout.md``. statsmodels and SciPy are imported
by the functions that use them, so importing this module stays cheap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np

__all__ = [
    "HoldoutPlan",
    "holdout_fraction_for",
    "minimum_detectable_lift",
    "power_of",
    "powered_statement",
    "required_holdout_size",
]

_CHUNK = 1_000_000  # holdout counts evaluated at once when searching an audience's split
_LIFT_GRID = 256  # points of the scan that brackets the minimum detectable lift


# --------------------------------------------------------------------------------------------------------------
# Input checks


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or math.isnan(value):
        raise ValueError(f"{name} must be a number, got {value!r}")
    return float(value)


def _rate(name: str, value: object, *, closed: bool = False) -> float:
    """A rate in (0, 1), or in [0, 1] when ``closed``."""
    value = _number(name, value)
    if not (0 <= value <= 1 if closed else 0 < value < 1):
        raise ValueError(f"{name} must lie in {'[0, 1]' if closed else '(0, 1)'}, got {value!r}")
    return value


def _count(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value!r}")
    return int(value)


def _levels(alpha: object, power: object) -> tuple[float, float]:
    alpha, power = _rate("alpha", alpha), _rate("power", power)
    if power <= alpha:
        raise ValueError(
            f"power ({power}) must be greater than alpha ({alpha}): any test reaches alpha by chance"
        )
    return alpha, power


def _target_lift(baseline: float, lift: object) -> float:
    lift = _number("min_detectable_lift", lift)
    if not 0 < lift < 1 - baseline:
        raise ValueError(
            f"min_detectable_lift must lie in (0, 1 - baseline_rate) = (0, {1 - baseline:g}) as an absolute "
            f"lift (0.01 = one percentage point), got {lift!r}"
        )
    return lift


# --------------------------------------------------------------------------------------------------------------
# Power, minimum detectable lift, sample size


def _power(n1, n0, p0: float, lift, alpha: float):
    """Power of the pooled z-test (see the module); vectorised over the group sizes and the lift."""
    from statsmodels.stats.proportion import power_proportions_2indep

    n1, n0, lift = (np.asarray(v, dtype=float) for v in (n1, n0, lift))
    p1 = p0 + lift
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.asarray(
            power_proportions_2indep(lift, p0, n1, ratio=n0 / n1, alpha=alpha, return_results=False),
            dtype=float,
        )
    # Both rates at 0 or 1: the outcome cannot vary, so any lift is seen and no lift never is.
    fixed = (p0 * (1 - p0) == 0) & (p1 * (1 - p1) == 0)
    out = np.where(fixed, np.where(np.abs(lift) > 0, 1.0, 0.0), out)
    return float(out) if out.ndim == 0 else out


def power_of(treated_n: int, control_n: int, baseline_rate: float, lift: float, alpha: float = 0.05) -> float:
    """The probability that the readout's two-sided test at ``alpha`` finds a lift when the control rate is
    ``baseline_rate`` and the treated rate is ``baseline_rate + lift`` (normal approximation, see the module).

    ``lift`` is absolute and may be negative; ``baseline_rate + lift`` must lie in [0, 1]. About ``alpha`` at
    ``lift = 0``.
    """
    n1, n0 = _count("treated_n", treated_n), _count("control_n", control_n)
    p0 = _rate("baseline_rate", baseline_rate, closed=True)
    alpha = _rate("alpha", alpha)
    lift = _number("lift", lift)
    if not 0 <= p0 + lift <= 1:
        raise ValueError(f"baseline_rate + lift must lie in [0, 1], got {p0} + {lift} = {p0 + lift:g}")
    return _power(n1, n0, p0, lift, alpha)


def _mde(n1: int, n0: int, p0: float, alpha: float, power: float) -> float:
    from scipy import optimize

    top = 1 - p0
    if top <= 0:
        return math.inf
    grid = np.linspace(0.0, top, _LIFT_GRID + 1)[1:]
    reached = np.flatnonzero(_power(n1, n0, p0, grid, alpha) >= power)
    if reached.size == 0:
        return math.inf
    i = int(reached[0])
    low = 0.0 if i == 0 else float(grid[i - 1])
    # The first grid point that reaches the power brackets the smallest lift that does.
    return float(optimize.brentq(lambda d: _power(n1, n0, p0, d, alpha) - power, low, grid[i], xtol=1e-12))


def minimum_detectable_lift(
    treated_n: int, control_n: int, baseline_rate: float, alpha: float = 0.05, power: float = 0.8
) -> float:
    """The smallest absolute lift above ``baseline_rate`` that groups of ``treated_n`` and ``control_n`` detect
    with probability ``power`` (two-sided test at ``alpha``), solved numerically from :func:`power_of`.

    ``math.inf`` when no lift up to a treated rate of 1 reaches the power (groups far too small).
    """
    n1, n0 = _count("treated_n", treated_n), _count("control_n", control_n)
    p0 = _rate("baseline_rate", baseline_rate, closed=True)
    alpha, power = _levels(alpha, power)
    return _mde(n1, n0, p0, alpha, power)


def _smallest(powered, start: int) -> int:
    """The smallest n >= 1 with ``powered(n)``, searching from ``start`` (``powered`` rises with n)."""
    n = max(1, start)
    if powered(n):
        while n > 1 and powered(n - 1):
            n -= 1
        return n
    low, high = n, 2 * n
    while not powered(high):
        low, high = high, 2 * high
    while high - low > 1:  # invariant: low is not powered, high is
        mid = (low + high) // 2
        low, high = (low, mid) if powered(mid) else (mid, high)
    return high


def required_holdout_size(
    baseline_rate: float,
    min_detectable_lift: float,
    *,
    treated_n: int | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
) -> int:
    """The number of holdout customers needed to detect ``min_detectable_lift`` (absolute) with ``power``.

    Without ``treated_n`` the groups are equal and this is the size per group: Fleiss' formula
    ``((z_{1-alpha/2} sqrt(2 p̄(1-p̄)) + z_power sqrt(p0(1-p0) + p1(1-p1))) / lift)²``, ``p̄ = (p0 + p1) / 2``,
    rounded up. With ``treated_n`` it is the smallest holdout beside that treated group; a ValueError says how
    many treated customers are needed at least when the treated group alone is too small for any holdout.
    """
    p0 = _rate("baseline_rate", baseline_rate)
    lift = _target_lift(p0, min_detectable_lift)
    alpha, power = _levels(alpha, power)
    p1 = p0 + lift
    if treated_n is None:
        from statsmodels.stats.proportion import samplesize_proportions_2indep_onetail

        # Fleiss' formula leaves out the far tail of the two-sided test: the search starts there.
        start = samplesize_proportions_2indep_onetail(lift, p0, power, ratio=1, alpha=alpha)
        return _smallest(lambda n: _power(n, n, p0, lift, alpha) >= power, math.floor(start))
    from statsmodels.stats.power import normal_sample_size_one_tail

    n1 = _count("treated_n", treated_n)
    # With an unlimited holdout the control rate is known and the test's spread is that of the treated rate alone:
    # the one-sample test of p1 against p0.
    limit = float(
        normal_sample_size_one_tail(
            lift,
            power,
            alpha / 2,
            std_null=math.sqrt(p0 * (1 - p0)),
            std_alternative=math.sqrt(p1 * (1 - p1)),
        )
    )
    if n1 <= limit or _power(n1, 1e15, p0, lift, alpha) < power:
        raise ValueError(
            f"with {n1:,} treated customers no holdout size reaches {power:.0%} power for a lift of "
            f"{100 * lift:+.2f} points at a baseline of {p0:.2%}: more than {math.ceil(limit):,} treated are needed"
        )
    return _smallest(lambda n0: _power(n1, n0, p0, lift, alpha) >= power, 1)


# --------------------------------------------------------------------------------------------------------------
# Holdout share of an audience


@dataclass(frozen=True)
class HoldoutPlan:
    """The holdout share for an audience of ``audience_n`` and what it buys.

    ``achieved_power`` is the power to detect ``target_lift`` at this split; ``detectable_lift`` the smallest lift
    detected with ``target_power`` at this split (``math.inf`` when none is); ``powered`` says whether
    ``target_power`` is reached.
    """

    audience_n: int
    fraction: float
    treated_n: int
    holdout_n: int
    baseline_rate: float
    target_lift: float
    alpha: float
    target_power: float
    achieved_power: float
    detectable_lift: float
    powered: bool

    def describe(self) -> str:
        """One line: the split, and either the power reached or the lift the campaign can detect instead."""
        split = (
            f"holdout {self.fraction:.1%} of {self.audience_n:,} ({self.holdout_n:,} holdout, "
            f"{self.treated_n:,} treated)"
        )
        target = f"+{100 * self.target_lift:.2f} points over a baseline of {self.baseline_rate:.2%}"
        if self.powered:
            return (
                f"{split}: {self.achieved_power:.0%} power to detect {target} "
                f"(alpha {self.alpha:g}, target {self.target_power:.0%})"
            )
        can = (
            "no lift at all"
            if math.isinf(self.detectable_lift)
            else f"only lifts of ≥ +{100 * self.detectable_lift:.2f} points"
        )
        return (
            f"UNDER-POWERED: {split} gives only {self.achieved_power:.0%} power to detect {target}; "
            f"with {self.target_power:.0%} power it detects {can} (alpha {self.alpha:g})"
        )


def _holdout_count(fraction: float, n: int) -> int:
    # Half up, as pipelines.campaigns.score.assign_holdout rounds.
    return int(math.floor(fraction * n + 0.5))


def _plan(n: int, fraction: float, holdout_n: int, p0: float, lift: float, alpha: float, power: float):
    treated_n = n - holdout_n
    if treated_n < 1 or holdout_n < 1:
        achieved, detectable = 0.0, math.inf
    else:
        achieved = _power(treated_n, holdout_n, p0, lift, alpha)
        detectable = _mde(treated_n, holdout_n, p0, alpha, power)
    return HoldoutPlan(
        audience_n=n,
        fraction=fraction,
        treated_n=treated_n,
        holdout_n=holdout_n,
        baseline_rate=p0,
        target_lift=lift,
        alpha=alpha,
        target_power=power,
        achieved_power=achieved,
        detectable_lift=detectable,
        powered=achieved >= power,
    )


def holdout_fraction_for(
    audience_n: int,
    baseline_rate: float,
    min_detectable_lift: float,
    alpha: float = 0.05,
    power: float = 0.8,
    min_fraction: float = 0.05,
    max_fraction: float = 0.5,
) -> HoldoutPlan:
    """The smallest holdout share of an audience of ``audience_n`` in [``min_fraction``, ``max_fraction``] whose
    test detects ``min_detectable_lift`` (absolute) over ``baseline_rate`` with ``power``.

    When ``min_fraction`` already reaches the power the plan is ``min_fraction``; otherwise the share is
    ``holdout_n / audience_n`` for the smallest sufficient holdout count. When no share up to ``max_fraction``
    reaches it, the plan is ``max_fraction`` with ``powered = False`` and ``describe()`` names the lift it can
    detect: the campaign still runs, but its readout will say little about lifts that small. Counts are rounded
    half up, as ``pipelines.campaigns.score.assign_holdout`` does. Raises ValueError on invalid inputs.
    """
    n = _count("audience_n", audience_n, minimum=0)
    p0 = _rate("baseline_rate", baseline_rate)
    lift = _target_lift(p0, min_detectable_lift)
    alpha, power = _levels(alpha, power)
    lo_f, hi_f = _rate("min_fraction", min_fraction), _rate("max_fraction", max_fraction)
    if lo_f > hi_f:
        raise ValueError(f"min_fraction ({lo_f}) must not exceed max_fraction ({hi_f})")

    lo, hi = _holdout_count(lo_f, n), _holdout_count(hi_f, n)
    low_plan = _plan(n, lo_f, lo, p0, lift, alpha, power)
    if low_plan.powered:
        return low_plan
    # Every holdout count in between, a chunk at a time: exact, and no assumption on the shape of the curve.
    for start in range(max(lo + 1, 1), min(hi, n - 1) + 1, _CHUNK):
        holdout = np.arange(start, min(start + _CHUNK, hi + 1, n))
        reached = np.flatnonzero(_power(n - holdout, holdout, p0, lift, alpha) >= power)
        if reached.size:
            found = int(holdout[reached[0]])
            return _plan(n, hi_f if found == hi else found / n, found, p0, lift, alpha, power)
    return _plan(n, hi_f, hi, p0, lift, alpha, power)


# --------------------------------------------------------------------------------------------------------------
# The readout's sentence


def _points(lift: float) -> str:
    return f"{100 * lift:+.2f} points"


def powered_statement(
    treated_n: int,
    control_n: int,
    control_rate: float,
    observed_lift: float,
    alpha: float = 0.05,
    power: float = 0.8,
) -> str:
    """Whether a run of this size was powered to see the lift it saw, as one sentence for the readout.

    "powered" when the observed lift is, in size, at least the minimum detectable lift at this size and control
    rate; "under-powered" otherwise, with the power a true lift of the observed size would have had (a run of
    this size that finds no significant lift says little; one that does find it was partly lucky).
    """
    n1, n0 = _count("treated_n", treated_n), _count("control_n", control_n)
    p0 = _rate("control_rate", control_rate, closed=True)
    alpha, power = _levels(alpha, power)
    observed = _number("observed_lift", observed_lift)
    mde = _mde(n1, n0, p0, alpha, power)
    size = f"at this size ({n1:,} treated, {n0:,} holdout, control rate {p0:.2%})"
    seen = f"the observed {_points(observed)}"
    level = f"{power:.0%} power"
    if math.isinf(mde):
        return f"under-powered: {size} no lift could be detected with {level}; a null result says nothing."
    if abs(observed) >= mde:
        where = "is above it" if observed >= 0 else "is a drop at least that large"
        return f"powered: {level} to detect ≥ {_points(mde)} {size}; {seen} {where}."
    chance = _power(n1, n0, p0, min(max(p0 + observed, 0.0), 1.0) - p0, alpha)
    return (
        f"under-powered: {size} only lifts of ≥ {_points(mde)} would be detected with {level}; {seen} is "
        f"below it (a true lift of that size is detected {chance:.0%} of the time): when such a run finds no "
        "significant lift, that says little about lifts that small."
    )
