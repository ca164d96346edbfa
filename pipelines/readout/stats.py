"""Campaign readout statistics: treatment against holdout (pure functions over DataFrames).

- :func:`lift` compares two response rates: absolute lift with a Newcombe hybrid score interval (Wilson score
  intervals of each rate combined, Newcombe 1998 method 10; defined for zero counts), relative lift with a
  log-ratio (delta method) interval, and a two-sided p-value (pooled two-proportion z-test, Fisher's exact test
  when an expected cell count is below 5). The proportion statistics are statsmodels'; the Fisher test is scipy's.
- :func:`return_on_spend` puts a value and a cost on the lift.
- :func:`readout` runs :func:`lift` overall and by segment columns, and the sample-ratio-mismatch check of
  :func:`pipelines.campaigns.score.check_sample_ratio` at ``SRM_ALPHA``; a failed check marks the readout
  untrustworthy.
- :func:`response_floor_alert` says when the treated response rate is below a floor, and which segments drag.

The funnel and channel quality are in :mod:`pipelines.readout.funnel`, the chart and the one-page report in
:mod:`pipelines.readout.report`. The formulas are written out in ``docs/readout.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipelines.campaigns.score import SRM_ALPHA, SampleRatio, check_sample_ratio

FISHER_MIN_EXPECTED = 5  # below this expected cell count the normal approximation of the z-test is poor


# --------------------------------------------------------------------------------------------------------------
# Two-proportion statistics


def wilson_interval(x, n, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) Wilson score interval of a proportion ``x / n``; vectorised; NaN where ``n`` is 0."""
    from statsmodels.stats.proportion import proportion_confint

    x, n = np.asarray(x, dtype=float), np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):  # n == 0 gives NaN, as documented
        low, high = proportion_confint(x, n, alpha=alpha, method="wilson")
    return np.asarray(low, dtype=float), np.asarray(high, dtype=float)


def newcombe_interval(x1, n1, x0, n0, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) Newcombe hybrid score interval of ``x1/n1 - x0/n0``; vectorised; valid for zero counts."""
    from statsmodels.stats.proportion import confint_proportions_2indep

    x1, n1, x0, n0 = (np.asarray(v, dtype=float) for v in (x1, n1, x0, n0))
    with np.errstate(divide="ignore", invalid="ignore"):  # an empty group gives NaN, as in wilson_interval
        low, high = confint_proportions_2indep(x1, n1, x0, n0, method="newcomb", compare="diff", alpha=alpha)
    return np.asarray(low, dtype=float), np.asarray(high, dtype=float)


def two_proportion_p_value(x1: int, n1: int, x0: int, n0: int) -> tuple[float, str]:
    """(two-sided p-value, test name): Fisher's exact test when an expected cell is below 5, else the pooled z-test."""
    from scipy import stats
    from statsmodels.stats.proportion import proportions_ztest

    pooled = (x1 + x0) / (n1 + n0)
    expected = np.array([n1 * pooled, n1 * (1 - pooled), n0 * pooled, n0 * (1 - pooled)])
    if expected.min() < FISHER_MIN_EXPECTED:
        _, p = stats.fisher_exact([[x1, n1 - x1], [x0, n0 - x0]], alternative="two-sided")
        return float(min(p, 1.0)), "fisher"
    # Without ``value`` and ``prop_var`` the standard error uses the pooled rate: the textbook pooled z-test
    # (test_proportions_2indep's score test adds a n/(n-1) variance correction by default, a different test).
    _, p = proportions_ztest([x1, x0], [n1, n0], alternative="two-sided")
    return float(p), "z"


@dataclass(frozen=True)
class Lift:
    """Treated against control response rates; the interval level is ``1 - alpha``."""

    treated_n: int
    treated_conv: int
    control_n: int
    control_conv: int
    treated_rate: float
    control_rate: float
    lift_abs: float
    lift_ci_low: float
    lift_ci_high: float
    lift_rel: float | None
    lift_rel_ci_low: float | None
    lift_rel_ci_high: float | None
    p_value: float
    test: str
    alpha: float
    incremental_responses: float
    incremental_ci_low: float
    incremental_ci_high: float

    @property
    def significant(self) -> bool:
        return self.p_value < self.alpha

    def describe(self) -> str:
        level = f"{1 - self.alpha:.0%}"
        rel = (
            "n/a (control rate 0)"
            if self.lift_rel is None
            else f"{self.lift_rel:+.1%} [{self.lift_rel_ci_low:+.1%}, {self.lift_rel_ci_high:+.1%}]"
        )
        return "\n".join(
            (
                f"treated  {self.treated_conv:,} / {self.treated_n:,} = {self.treated_rate:.4%}",
                f"control  {self.control_conv:,} / {self.control_n:,} = {self.control_rate:.4%}",
                f"lift     {100 * self.lift_abs:+.4f} percentage points, {level} CI "
                f"[{100 * self.lift_ci_low:+.4f}, {100 * self.lift_ci_high:+.4f}] (Newcombe hybrid score)",
                f"relative {rel}",
                f"p-value  {self.p_value:.4g} ({'Fisher exact' if self.test == 'fisher' else 'two-proportion z'})",
                f"incremental responses {self.incremental_responses:,.1f} "
                f"[{self.incremental_ci_low:,.1f}, {self.incremental_ci_high:,.1f}]",
            )
        )


def lift(treated_n: int, treated_conv: int, control_n: int, control_conv: int, alpha: float = 0.05) -> Lift:
    """Absolute and relative lift of the treated rate over the control rate, with intervals and a p-value.

    Absolute: Newcombe hybrid score interval. Relative (``p1/p0 - 1``): delta method on ``log(p1/p0)``, with 0.5
    added to every count when the treated count is 0; ``None`` when the control rate is 0. Incremental
    responses = absolute lift × treated_n (and its interval likewise). Raises ValueError for an empty group or
    conversions outside ``0..n``.
    """
    counts = (treated_n, treated_conv, control_n, control_conv)
    if treated_n <= 0 or control_n <= 0:
        raise ValueError(f"both groups need at least one row (treated {treated_n}, control {control_n})")
    if not (0 <= treated_conv <= treated_n and 0 <= control_conv <= control_n):
        raise ValueError(f"conversions must lie between 0 and the group size, got {counts}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    from statsmodels.stats.proportion import confint_proportions_2indep

    x1, n1, x0, n0 = (int(v) for v in (treated_conv, treated_n, control_conv, control_n))
    p1, p0 = x1 / n1, x0 / n0
    low, high = (float(v) for v in newcombe_interval(x1, n1, x0, n0, alpha))
    rel = rel_low = rel_high = None
    if x0 > 0:
        rel = p1 / p0 - 1
        # "log" is the delta method on log(p1/p0); "log-adjusted" adds 0.5 to every count and group size,
        # which keeps the interval finite when the treated count is 0
        ratio_low, ratio_high = confint_proportions_2indep(
            x1, n1, x0, n0, method="log" if x1 > 0 else "log-adjusted", compare="ratio", alpha=alpha
        )
        rel_low, rel_high = float(ratio_low) - 1, float(ratio_high) - 1
    p_value, test = two_proportion_p_value(x1, n1, x0, n0)
    return Lift(
        treated_n=n1,
        treated_conv=x1,
        control_n=n0,
        control_conv=x0,
        treated_rate=p1,
        control_rate=p0,
        lift_abs=p1 - p0,
        lift_ci_low=low,
        lift_ci_high=high,
        lift_rel=rel,
        lift_rel_ci_low=rel_low,
        lift_rel_ci_high=rel_high,
        p_value=p_value,
        test=test,
        alpha=alpha,
        incremental_responses=(p1 - p0) * n1,
        incremental_ci_low=low * n1,
        incremental_ci_high=high * n1,
    )


@dataclass(frozen=True)
class ReturnOnSpend:
    """Incremental value against the cost of contacting the treated group."""

    incremental_responses: float
    incremental_value: float
    incremental_value_ci_low: float
    incremental_value_ci_high: float
    cost: float
    net: float
    roi: float | None  # net / cost; None when the contacts cost nothing


def return_on_spend(result: Lift, cost_per_contact: float, value_per_response: float) -> ReturnOnSpend:
    """Incremental value (incremental responses × value) minus the cost of the treated contacts, and ROI."""
    if cost_per_contact < 0 or value_per_response < 0:
        raise ValueError("cost per contact and value per response must not be negative")
    value = result.incremental_responses * value_per_response
    cost = result.treated_n * cost_per_contact
    net = value - cost
    return ReturnOnSpend(
        incremental_responses=result.incremental_responses,
        incremental_value=value,
        incremental_value_ci_low=result.incremental_ci_low * value_per_response,
        incremental_value_ci_high=result.incremental_ci_high * value_per_response,
        cost=cost,
        net=net,
        roi=net / cost if cost > 0 else None,
    )


# --------------------------------------------------------------------------------------------------------------
# Readout of a frame


SEGMENT_COLUMNS = (
    "by",
    "segment",
    "treated_n",
    "treated_conv",
    "treated_rate",
    "control_n",
    "control_conv",
    "control_rate",
    "lift_abs",
    "lift_ci_low",
    "lift_ci_high",
    "lift_rel",
    "p_value",
    "incremental_responses",
    "too_few",
)

# A segment is read only when each group holds at least MIN_GROUP_N customers and the two groups together at
# least MIN_RESPONSES responders. Below 30 a single customer moves a group's rate by more than 3 points (one
# holdout customer who responds is a 100 % rate), and with fewer than 5 responders the lift is the noise of a
# handful of events: such a cell keeps its counts and rates but no lift, interval or p-value (``too_few``).
MIN_GROUP_N = 30
MIN_RESPONSES = 5
# The columns blanked (NaN) in a segment that is too small to read.
_UNREAD_COLUMNS = ("lift_abs", "lift_ci_low", "lift_ci_high", "lift_rel", "p_value", "incremental_responses")


@dataclass(frozen=True)
class Readout:
    """Overall lift, the SRM check (when an expected share was given) and the lift by segment."""

    overall: Lift
    srm: SampleRatio | None
    expected_share: float | None
    segments: pd.DataFrame = field(repr=False)
    treated_label: str = "treated"
    control_label: str = "control"

    @property
    def trustworthy(self) -> bool:
        """False when the sample-ratio check failed: the split is not what was planned, so the lift is suspect."""
        return self.srm is None or self.srm.ok

    def srm_verdict(self) -> str:
        if self.srm is None:
            return "SRM: not checked (no expected share given)"
        n = self.srm.treatment + self.srm.holdout
        share = self.srm.treatment / n if n else float("nan")
        verdict = "ok" if self.srm.ok else f"MISMATCH (p < {SRM_ALPHA}): readout untrustworthy"
        return (
            f"SRM: {verdict}; treated share {share:.4f}, expected {self.expected_share:.4f}, "
            f"chi-square {self.srm.chi2:.3f}, p = {self.srm.p_value:.4g}"
        )

    def describe(self) -> str:
        lines = [
            f"readout: {self.treated_label} vs {self.control_label}",
            self.overall.describe(),
            self.srm_verdict(),
        ]
        for by, table in self.segments.groupby("by", sort=False):
            lines.append(f"by {by}:")
            for row in table.itertuples(index=False):
                reading = (
                    "too few to read"
                    if row.too_few
                    else f"lift {row.lift_abs:+.3%} [{row.lift_ci_low:+.3%}, {row.lift_ci_high:+.3%}]  "
                    f"p={row.p_value:.3g}"
                )
                lines.append(
                    f"  {row.segment!s:>12}  treated {row.treated_rate:.3%} (n={row.treated_n:,})  "
                    f"control {row.control_rate:.3%} (n={row.control_n:,})  {reading}"
                )
        return "\n".join(lines)


def require_columns(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    """Nothing when ``frame`` has every one of ``columns``; else ValueError naming the missing ones."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"column(s) not in the table: {', '.join(missing)}; columns: {', '.join(map(str, frame.columns))}"
        )


def _value_mask(series: pd.Series, value: Any) -> pd.Series:
    """Rows equal to ``value``, also when it came from the command line as text (``1`` for an int column)."""
    mask = series == value
    if not mask.any():
        mask = series.astype(str) == str(value)
    return mask.fillna(False).astype(bool)


def _outcome(series: pd.Series, positive: Any) -> np.ndarray:
    if series.isna().any():
        raise ValueError(f"outcome column {series.name!r} has {int(series.isna().sum())} missing values")
    if positive is not None:
        mask = _value_mask(series, positive)
        if not mask.any():
            seen = ", ".join(map(str, sorted(series.astype(str).unique())[:20]))
            raise ValueError(
                f"positive value {positive!r} not in outcome column {series.name!r}; values: {seen}"
            )
        return mask.to_numpy()
    if pd.api.types.is_bool_dtype(series):
        return series.to_numpy(dtype=bool)
    values = set(pd.unique(series))
    if pd.api.types.is_numeric_dtype(series) and values <= {0, 1}:
        return series.to_numpy() == 1
    seen = ", ".join(map(str, sorted(map(str, values))[:20]))
    raise ValueError(
        f"outcome column {series.name!r} is not 0/1 or boolean (values: {seen}); give the positive value"
    )


def too_few_to_read(n1: int, x1: int, n0: int, x0: int) -> bool:
    """Whether a cell is too small to read a lift from (see ``MIN_GROUP_N`` and ``MIN_RESPONSES``)."""
    return min(n1, n0) < MIN_GROUP_N or x1 + x0 < MIN_RESPONSES


def _segment_row(by: str, segment: Any, n1: int, x1: int, n0: int, x0: int, alpha: float) -> dict[str, Any]:
    """One row of the segment table: the lift of a readable cell, else its counts and rates flagged ``too_few``."""
    if not too_few_to_read(n1, x1, n0, x0):
        result = lift(n1, x1, n0, x0, alpha)
        return {
            "by": by,
            "segment": segment,
            **{c: getattr(result, c) for c in SEGMENT_COLUMNS[2:-1]},
            "too_few": False,
        }
    rates = {"treated_rate": x1 / n1 if n1 else np.nan, "control_rate": x0 / n0 if n0 else np.nan}
    counts = {"treated_n": n1, "treated_conv": x1, "control_n": n0, "control_conv": x0}
    return {
        "by": by,
        "segment": segment,
        **counts,
        **rates,
        **dict.fromkeys(_UNREAD_COLUMNS, np.nan),
        "too_few": True,
    }


def readout(
    frame: pd.DataFrame,
    *,
    treatment_col: str,
    treated: Any,
    control: Any,
    outcome_col: str,
    expected_share: float | None = None,
    segment_cols: Sequence[str] = (),
    positive: Any = None,
    alpha: float = 0.05,
) -> Readout:
    """The readout of one experiment in ``frame`` (one row per unit).

    Rows whose treatment value is neither ``treated`` nor ``control`` are ignored. ``expected_share`` is the
    planned treated share; with it the split is tested for sample-ratio mismatch at ``SRM_ALPHA``. The outcome is
    boolean, 0/1, or equal to ``positive``. Segments too small to read (:func:`too_few_to_read`, an empty group included)
    keep their counts and rates, with ``too_few`` set and the lift, its interval and the p-value NaN.
    Raises ValueError naming a missing column, or a treated/control value that is absent (listing those seen).
    """
    require_columns(frame, [treatment_col, outcome_col, *segment_cols])
    if expected_share is not None and not 0 < expected_share < 1:
        raise ValueError(f"expected share must lie in (0, 1), got {expected_share}")
    groups = frame[treatment_col]
    is_treated, is_control = _value_mask(groups, treated), _value_mask(groups, control)
    absent = [repr(v) for v, m in ((treated, is_treated), (control, is_control)) if not m.any()]
    if absent:
        seen = ", ".join(map(str, sorted(groups.dropna().astype(str).unique())[:20]))
        raise ValueError(f"value(s) {', '.join(absent)} not in column {treatment_col!r}; values seen: {seen}")
    if (is_treated & is_control).any():
        raise ValueError("the treated and control values select the same rows")
    keep = (is_treated | is_control).to_numpy()
    data = frame.loc[keep]
    t = is_treated.to_numpy()[keep]
    y = _outcome(data[outcome_col], positive)

    overall = lift(int(t.sum()), int(y[t].sum()), int((~t).sum()), int(y[~t].sum()), alpha)
    srm = None
    if expected_share is not None:
        srm = check_sample_ratio(overall.treated_n, overall.control_n, holdout_share=1 - expected_share)

    rows = []
    for col in segment_cols:
        counts = (
            pd.DataFrame({"segment": data[col].to_numpy(), "t": t, "y": y})
            .groupby(["segment", "t"], observed=True, sort=True)["y"]
            .agg(["size", "sum"])
            .unstack("t", fill_value=0)
        )
        for segment, row in counts.iterrows():
            n1, x1 = int(row.get(("size", True), 0)), int(row.get(("sum", True), 0))
            n0, x0 = int(row.get(("size", False), 0)), int(row.get(("sum", False), 0))
            rows.append(_segment_row(col, segment, n1, x1, n0, x0, alpha))
    segments = pd.DataFrame(rows, columns=list(SEGMENT_COLUMNS))
    return Readout(overall, srm, expected_share, segments, str(treated), str(control))


def response_floor_alert(result: Readout, floor: float = 0.01, worst: int = 3) -> str | None:
    """An alert when the treated response rate is below ``floor``, else None.

    The diagnosis names, for each segment column, up to ``worst`` readable (not ``too_few``) segments whose treated rate is below the floor
    (lowest first), and segments where treatment did no better than control.
    """
    overall = result.overall
    if overall.treated_rate >= floor:
        return None
    lines = [
        f"ALERT: treated response rate {overall.treated_rate:.3%} is below the floor of {floor:.2%} "
        f"({overall.treated_conv:,} of {overall.treated_n:,}; control {overall.control_rate:.3%})."
    ]
    if not result.trustworthy:
        lines.append("The split failed the sample-ratio check: fix the assignment before reading the rates.")
    if overall.lift_ci_high <= 0:
        lines.append("Contact did not raise the response rate at all (lift interval at or below zero).")
    readable = result.segments[~result.segments["too_few"].astype(bool)]
    for by, table in readable.groupby("by", sort=False):
        low = table[table["treated_rate"] < floor].sort_values("treated_rate").head(worst)
        if len(low):
            names = ", ".join(f"{r.segment} {r.treated_rate:.2%}" for r in low.itertuples(index=False))
            lines.append(
                f"Below the floor by {by}: {names} ({int((table['treated_rate'] < floor).sum())} of {len(table)})."
            )
        flat = table[table["lift_abs"] <= 0]
        if len(flat):
            names = ", ".join(str(s) for s in flat["segment"].head(worst))
            lines.append(f"No lift by {by}: {names}.")
    if len(lines) == 1 + (not result.trustworthy) + (overall.lift_ci_high <= 0):
        lines.append("No segment stands out: the shortfall is across the board (offer, channel or audience).")
    return "\n".join(lines)
