"""Campaign readout: treatment against holdout, the funnel and channel quality (pure functions over DataFrames).

- :func:`lift` compares two response rates: absolute lift with a Newcombe hybrid score interval (Wilson score
  intervals of each rate combined, Newcombe 1998 method 10; defined for zero counts), relative lift with a
  log-ratio (delta method) interval, and a two-sided p-value (pooled two-proportion z-test, Fisher's exact test
  when an expected cell count is below 5).
- :func:`readout` runs :func:`lift` overall and by segment columns, and the sample-ratio-mismatch check of
  :func:`pipelines.score.check_sample_ratio` at ``SRM_ALPHA``; a failed check marks the readout untrustworthy.
- :func:`funnel` and :func:`channel_quality` read the lake's ``campaign_contacts`` and ``responses`` frames.
- :func:`response_floor_alert` says when the treated response rate is below a floor, and which segments drag.
- :func:`lift_by_decile_chart` draws the lift by score decile (or any segment column) with its intervals;
  :func:`render_report` writes the one-page report as Markdown and as standalone HTML.

The formulas are written out in ``docs/readout.md``.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Real
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from pipelines.campaigns.score import SRM_ALPHA, SampleRatio, check_sample_ratio
from pipelines.data.schema import RESPONSE_EVENTS

FISHER_MIN_EXPECTED = 5  # below this expected cell count the normal approximation of the z-test is poor
FUNNEL_STAGES = ("sent", *RESPONSE_EVENTS)
UTM_COLUMNS = ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term")
NO_UTM = "(none)"


# --------------------------------------------------------------------------------------------------------------
# Two-proportion statistics


def _z(alpha: float) -> float:
    from scipy import stats

    return float(stats.norm.isf(alpha / 2))


def wilson_interval(x, n, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) Wilson score interval of a proportion ``x / n``; vectorised; NaN where ``n`` is 0."""
    x = np.asarray(x, dtype=float)
    n = np.asarray(n, dtype=float)
    z = _z(alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = x / n
        denom = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z / denom * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


def newcombe_interval(x1, n1, x0, n0, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) Newcombe hybrid score interval of ``x1/n1 - x0/n0``; vectorised; valid for zero counts."""
    x1, n1, x0, n0 = (np.asarray(v, dtype=float) for v in (x1, n1, x0, n0))
    p1, p0 = x1 / n1, x0 / n0
    l1, u1 = wilson_interval(x1, n1, alpha)
    l0, u0 = wilson_interval(x0, n0, alpha)
    d = p1 - p0
    return d - np.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2), d + np.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)


def two_proportion_p_value(x1: int, n1: int, x0: int, n0: int) -> tuple[float, str]:
    """(two-sided p-value, test name): Fisher's exact test when an expected cell is below 5, else the pooled z-test."""
    from scipy import stats

    pooled = (x1 + x0) / (n1 + n0)
    expected = np.array([n1 * pooled, n1 * (1 - pooled), n0 * pooled, n0 * (1 - pooled)])
    if expected.min() < FISHER_MIN_EXPECTED:
        _, p = stats.fisher_exact([[x1, n1 - x1], [x0, n0 - x0]], alternative="two-sided")
        return float(min(p, 1.0)), "fisher"
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
    z = (x1 / n1 - x0 / n0) / se
    return float(2 * stats.norm.sf(abs(z))), "z"


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
    x1, n1, x0, n0 = (int(v) for v in (treated_conv, treated_n, control_conv, control_n))
    p1, p0 = x1 / n1, x0 / n0
    low, high = (float(v) for v in newcombe_interval(x1, n1, x0, n0, alpha))
    rel = rel_low = rel_high = None
    if x0 > 0:
        rel = p1 / p0 - 1
        a, b, c, d = (x1, n1, x0, n0) if x1 > 0 else (x1 + 0.5, n1 + 0.5, x0 + 0.5, n0 + 0.5)
        log_rr = math.log((a / b) / (c / d))
        se = math.sqrt(max(1 / a - 1 / b + 1 / c - 1 / d, 0.0))
        z = _z(alpha)
        rel_low, rel_high = math.exp(log_rr - z * se) - 1, math.exp(log_rr + z * se) - 1
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
)


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
                lines.append(
                    f"  {row.segment!s:>12}  treated {row.treated_rate:.3%} (n={row.treated_n:,})  "
                    f"control {row.control_rate:.3%} (n={row.control_n:,})  lift {row.lift_abs:+.3%} "
                    f"[{row.lift_ci_low:+.3%}, {row.lift_ci_high:+.3%}]  p={row.p_value:.3g}"
                )
        return "\n".join(lines)


def _require_columns(frame: pd.DataFrame, columns: Sequence[str]) -> None:
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


def _lift_row(by: str, segment: Any, result: Lift) -> dict[str, Any]:
    return {
        "by": by,
        "segment": segment,
        **{c: getattr(result, c) for c in SEGMENT_COLUMNS[2:]},
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
    boolean, 0/1, or equal to ``positive``. Segments with an empty group are left out of the segment table.
    Raises ValueError naming a missing column, or a treated/control value that is absent (listing those seen).
    """
    _require_columns(frame, [treatment_col, outcome_col, *segment_cols])
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
            if n1 and n0:
                rows.append(_lift_row(col, segment, lift(n1, x1, n0, x0, alpha)))
    segments = pd.DataFrame(rows, columns=list(SEGMENT_COLUMNS))
    return Readout(overall, srm, expected_share, segments, str(treated), str(control))


def response_floor_alert(result: Readout, floor: float = 0.01, worst: int = 3) -> str | None:
    """An alert when the treated response rate is below ``floor``, else None.

    The diagnosis names, for each segment column, up to ``worst`` segments whose treated rate is below the floor
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
    for by, table in result.segments.groupby("by", sort=False):
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


# --------------------------------------------------------------------------------------------------------------
# Funnel and channel quality from the lake tables


def _campaign(frame: pd.DataFrame, campaign_id: str, what: str) -> pd.DataFrame:
    rows = frame[frame["campaign_id"] == campaign_id]
    if what == "campaign_contacts" and rows.empty:
        raise LookupError(f"campaign {campaign_id!r} has no rows in campaign_contacts")
    return rows


def funnel(contacts: pd.DataFrame, responses: pd.DataFrame, campaign_id: str) -> pd.DataFrame:
    """Customers reaching each stage, per group: ``sent`` (contacts with a send time) then every response event.

    Columns: group, stage, customers, stage_rate (over the previous stage), rate_from_sent, rate_from_selected
    (over the group's selected contacts; the holdout's only meaningful base, as it is never sent). Only
    responses of customers in the campaign's contacts count, each customer once per stage. Stages are reported
    as they happened: ``app_installed`` is a side step and ``converted`` includes organic conversions, so those
    two may exceed the stage before.
    """
    cont = _campaign(contacts, campaign_id, "campaign_contacts")[["customer_id", "group", "sent_at"]]
    resp = _campaign(responses, campaign_id, "responses")[["customer_id", "event_type"]]
    resp = resp.merge(cont[["customer_id", "group"]], on="customer_id", how="inner")
    group = cont["group"].astype(str)
    event = resp["event_type"].astype(str)
    rows = []
    for g in sorted(group.unique(), key=lambda v: (v != "treatment", v)):
        selected = int((group == g).sum())
        in_group = resp[resp["group"].astype(str) == g]
        counts = {"sent": int(cont.loc[(group == g).to_numpy(), "sent_at"].notna().sum())}
        for stage in RESPONSE_EVENTS:
            counts[stage] = int(
                in_group.loc[(event[in_group.index] == stage).to_numpy(), "customer_id"].nunique()
            )
        previous = None
        for stage in FUNNEL_STAGES:
            n = counts[stage]
            rows.append(
                {
                    "group": g,
                    "stage": stage,
                    "customers": n,
                    "stage_rate": n / previous if previous else np.nan,
                    "rate_from_sent": n / counts["sent"] if counts["sent"] else np.nan,
                    "rate_from_selected": n / selected if selected else np.nan,
                }
            )
            previous = n
    return pd.DataFrame(rows)


def channel_quality(responses: pd.DataFrame, contacts: pd.DataFrame, campaign_id: str) -> pd.DataFrame:
    """Visits → registrations → conversions per UTM source/medium/campaign/content/term of one campaign.

    Each event counts under its own UTM parameters (distinct customers); events without UTM (organic, untracked)
    form the ``(none)`` row. Only customers of the campaign's contacts count. Columns: the five UTM columns,
    visits, registrations, conversions, registration_rate and conversion_rate (both over visits; NaN without
    visits). Sorted by visits, largest first.
    """
    cont = _campaign(contacts, campaign_id, "campaign_contacts")[["customer_id"]].drop_duplicates()
    resp = _campaign(responses, campaign_id, "responses")
    resp = resp[resp["customer_id"].isin(cont["customer_id"])]
    utm = list(UTM_COLUMNS)
    frame = pd.DataFrame({c: resp[c].astype(object).where(resp[c].notna(), NO_UTM).astype(str) for c in utm})
    frame["customer_id"] = resp["customer_id"].to_numpy()
    frame["event_type"] = resp["event_type"].astype(str).to_numpy()
    measures = {"visits": "visited", "registrations": "registered", "conversions": "converted"}
    parts = []
    for name, event in measures.items():
        sub = frame[frame["event_type"] == event]
        parts.append(sub.groupby(utm, sort=False)["customer_id"].nunique().rename(name))
    table = pd.concat(parts, axis=1).fillna(0).astype(int) if parts else pd.DataFrame()
    table = table.reindex(columns=list(measures), fill_value=0).reset_index()
    if table.empty:
        table = pd.DataFrame(columns=[*utm, *measures])
    visits = table["visits"].astype(float).replace(0, np.nan)
    table["registration_rate"] = table["registrations"] / visits
    table["conversion_rate"] = table["conversions"] / visits
    return table.sort_values(["visits", *utm], ascending=[False, *[True] * len(utm)], ignore_index=True)


# --------------------------------------------------------------------------------------------------------------
# Chart and report


def lift_by_decile_chart(
    table: pd.DataFrame,
    path: str | Path,
    *,
    by: str = "decile",
    title: str | None = None,
    level: float = 0.95,
) -> Path:
    """Write a PNG of the absolute lift (percentage points) per segment with its interval as error bars and a
    zero line, from the rows of a :attr:`Readout.segments` table whose ``by`` is ``by`` (score decile by default;
    any segment column works). Bars are coloured by whether the interval lies above zero, spans it, or lies below.
    ``level`` only labels the interval (the table's own level). Returns the path; ValueError when no row has
    that ``by``.
    """
    from matplotlib.patches import Patch

    from pipelines.models.evaluate import _pyplot

    _require_columns(table, SEGMENT_COLUMNS)
    rows = table[table["by"] == by]
    if rows.empty:
        known = ", ".join(map(str, dict.fromkeys(table["by"]))) or "none"
        raise ValueError(f"no rows with by == {by!r} in the segment table (by values: {known})")
    if by == "decile":
        rows = rows.sort_values("segment", kind="stable")
    plt = _pyplot()
    path = Path(path)
    lift_pts = rows["lift_abs"].to_numpy(dtype=float) * 100
    low = rows["lift_ci_low"].to_numpy(dtype=float) * 100
    high = rows["lift_ci_high"].to_numpy(dtype=float) * 100
    labels = [str(s) for s in rows["segment"]]
    kinds = np.where(low > 0, "above", np.where(high < 0, "below", "spans"))
    palette = {"above": "#2e7d32", "spans": "#90a4ae", "below": "#c62828"}
    names = {"above": "interval above 0", "spans": "interval spans 0", "below": "interval below 0"}
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(rows) + 2), 4), dpi=100)
    try:
        ax.bar(x, lift_pts, color=[palette[k] for k in kinds], width=0.7)
        ax.errorbar(
            x, lift_pts, yerr=[lift_pts - low, high - lift_pts], fmt="none", ecolor="black", capsize=3
        )
        ax.axhline(0, color="black", linewidth=0.8)
        rotate = len(rows) > 12 or max(map(len, labels)) > 6
        ax.set_xticks(x, labels, rotation=30 if rotate else 0, ha="right" if rotate else "center")
        ax.set_xlabel("score decile (1 = highest scores)" if by == "decile" else by)
        ax.set_ylabel("lift, percentage points")
        ax.set_title(
            title or f"Absolute lift by {'score decile' if by == 'decile' else by} ({level:.0%} interval)"
        )
        ax.legend(
            handles=[Patch(color=palette[k], label=names[k]) for k in palette if k in set(kinds)], fontsize=8
        )
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


@dataclass(frozen=True)
class _Strong:
    text: str


@dataclass(frozen=True)
class _Block:
    """One piece of the report, rendered both to Markdown and to HTML."""

    kind: str  # h2, p, warn, ul, table, img
    spans: tuple = ()  # p / warn: the text, str and _Strong pieces; ul: one tuple of spans per item
    headers: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    numeric: tuple[bool, ...] = ()
    src: str = ""


_MD_SPECIAL = re.compile(r"([\\`*\[\]|])|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])|<(?=[A-Za-z/!?])")


def _md(text: object) -> str:
    """Text made literal in Markdown (a cell or a line cannot start emphasis, a link, a tag or a new column)."""
    return _MD_SPECIAL.sub(lambda m: "\\" + m.group(0), re.sub(r"\s+", " ", str(text)))


def _spans_md(spans) -> str:
    return "".join(f"**{_md(s.text)}**" if isinstance(s, _Strong) else _md(s) for s in spans)


def _spans_html(spans) -> str:
    return "".join(
        f"<strong>{html.escape(s.text)}</strong>" if isinstance(s, _Strong) else html.escape(str(s))
        for s in spans
    )


def _to_markdown(title: str, blocks: Sequence[_Block]) -> str:
    out = [f"# {_md(title)}"]
    for b in blocks:
        if b.kind == "h2":
            out.append(f"## {_spans_md(b.spans)}")
        elif b.kind == "p":
            out.append(_spans_md(b.spans))
        elif b.kind == "warn":
            out.append("> " + _spans_md(b.spans))
        elif b.kind == "ul":
            out.append("\n".join(f"- {_spans_md(item)}" for item in b.spans))
        elif b.kind == "table":
            align = ["---:" if n else "---" for n in b.numeric]
            lines = [b.headers, align, *b.rows]
            out.append(
                "\n".join(
                    "| " + " | ".join(_md(c) if i != 1 else c for c in line) + " |"
                    for i, line in enumerate(lines)
                )
            )
        elif b.kind == "img":
            out.append(f"![{_spans_md(b.spans)}]({quote(b.src)})")
    return "\n\n".join(out) + "\n"


_CSS = """\
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d232a;
       max-width: 980px; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.5em; margin: 0 0 .4em; }
h2 { font-size: 1.15em; margin: 1.6em 0 .4em; padding-bottom: .2em; border-bottom: 1px solid #d9dee3; }
table { border-collapse: collapse; margin: .5em 0; font-variant-numeric: tabular-nums; }
th, td { padding: .25em .65em; border-bottom: 1px solid #e6e9ec; text-align: left; vertical-align: top; }
th { background: #f4f6f8; font-weight: 600; }
.num { text-align: right; white-space: nowrap; }
.wide { overflow-x: auto; }
.warn { background: #fdecea; border-left: 4px solid #c62828; padding: .6em .9em; }
ul { padding-left: 1.3em; }
img { max-width: 100%; }
"""


def _to_html(title: str, blocks: Sequence[_Block]) -> str:
    out = [f"<h1>{html.escape(title)}</h1>"]
    for b in blocks:
        if b.kind == "h2":
            out.append(f"<h2>{_spans_html(b.spans)}</h2>")
        elif b.kind == "p":
            out.append(f"<p>{_spans_html(b.spans)}</p>")
        elif b.kind == "warn":
            out.append(f'<p class="warn">{_spans_html(b.spans)}</p>')
        elif b.kind == "ul":
            items = "".join(f"<li>{_spans_html(item)}</li>" for item in b.spans)
            out.append(f"<ul>{items}</ul>")
        elif b.kind == "table":

            def cell(tag: str, text: str, numeric: bool) -> str:
                cls = ' class="num"' if numeric else ""
                return f"<{tag}{cls}>{html.escape(text)}</{tag}>"

            head = "".join(cell("th", h, n) for h, n in zip(b.headers, b.numeric, strict=True))
            body = "".join(
                "<tr>" + "".join(cell("td", c, n) for c, n in zip(row, b.numeric, strict=True)) + "</tr>"
                for row in b.rows
            )
            out.append(
                f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'
            )
        elif b.kind == "img":
            alt = html.escape("".join(s.text if isinstance(s, _Strong) else str(s) for s in b.spans))
            out.append(f'<p><img src="{html.escape(quote(b.src))}" alt="{alt}"></p>')
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>\n{_CSS}</style>\n</head>\n<body>\n<main>\n"
        + "\n".join(out)
        + "\n</main>\n</body>\n</html>\n"
    )


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA or v is pd.NaT


def _rate_text(v: Any) -> str:
    return "–" if _missing(v) else f"{v:.2%}"


def _pts(v: Any) -> str:
    return "–" if _missing(v) else f"{100 * v:+.2f}"


def _int_text(v: Any) -> str:
    return "–" if _missing(v) else f"{int(v):,}"


def _p_text(p: float) -> str:
    return "< 0.0001" if p < 1e-4 else f"{p:.4f}"


def _fact_text(v: Any) -> str:
    if _missing(v):
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:,.6g}"
    if isinstance(v, int | np.integer):
        return f"{int(v):,}"
    if isinstance(v, Mapping):
        return ", ".join(f"{k}: {_fact_text(x)}" for k, x in v.items())
    if isinstance(v, list | tuple):
        return ", ".join(map(_fact_text, v))
    return str(v)


def _group_name(label: str, word: str) -> str:
    return word if label in ("treated", "treatment", "control", "holdout") else f"{word} ({label})"


def _headline(result: Readout, facts: Mapping[str, Any]) -> list[_Block]:
    o = result.overall
    level = f"{1 - o.alpha:.0%}"
    treated, control = (
        _group_name(result.treated_label, "treated"),
        _group_name(result.control_label, "holdout"),
    )
    table = _Block(
        "table",
        headers=("", treated, control),
        rows=(
            ("customers", f"{o.treated_n:,}", f"{o.control_n:,}"),
            ("responses", f"{o.treated_conv:,}", f"{o.control_conv:,}"),
            ("response rate", _rate_text(o.treated_rate), _rate_text(o.control_rate)),
        ),
        numeric=(False, True, True),
    )
    test = "Fisher's exact test" if o.test == "fisher" else "pooled z-test"
    verdict = f"significant at {o.alpha:g}" if o.significant else f"not significant at {o.alpha:g}"
    rel = (
        "n/a (holdout rate 0)"
        if o.lift_rel is None
        else f"{o.lift_rel:+.1%} ({level} CI {o.lift_rel_ci_low:+.1%} to {o.lift_rel_ci_high:+.1%})"
    )
    items = [
        (
            "Absolute lift: ",
            _Strong(f"{_pts(o.lift_abs)} percentage points"),
            f" ({level} CI {_pts(o.lift_ci_low)} to {_pts(o.lift_ci_high)}, Newcombe hybrid score); "
            f"p = {_p_text(o.p_value)} ({test}), {verdict}",
        ),
        ("Relative lift: ", rel),
        (
            "Incremental responses: ",
            f"{o.incremental_responses:,.1f} ({level} CI {o.incremental_ci_low:,.1f} to {o.incremental_ci_high:,.1f})",
        ),
    ]
    cost, value = facts.get("cost_per_contact"), facts.get("value_per_response")
    if all(isinstance(v, Real) and not isinstance(v, bool) for v in (cost, value)):
        ros = return_on_spend(o, float(cost), float(value))
        roi = "n/a (no cost)" if ros.roi is None else f"{ros.roi:+.1%}"
        items.append(
            (
                "Return on spend: ",
                f"incremental value {ros.incremental_value:,.2f} ({level} CI {ros.incremental_value_ci_low:,.2f} to "
                f"{ros.incremental_value_ci_high:,.2f}), cost {ros.cost:,.2f}, net {ros.net:,.2f}, ROI {roi}",
            )
        )
    return [_Block("h2", ("Headline",)), table, _Block("ul", tuple(items))]


def _segment_table(rows: pd.DataFrame, level: str) -> _Block:
    return _Block(
        "table",
        headers=(
            "segment",
            "treated n",
            "treated rate",
            "holdout n",
            "holdout rate",
            "lift (points)",
            f"{level} CI",
            "p-value",
            "incremental",
        ),
        rows=tuple(
            (
                str(r.segment),
                _int_text(r.treated_n),
                _rate_text(r.treated_rate),
                _int_text(r.control_n),
                _rate_text(r.control_rate),
                _pts(r.lift_abs),
                f"{_pts(r.lift_ci_low)} to {_pts(r.lift_ci_high)}",
                _p_text(r.p_value),
                f"{r.incremental_responses:,.1f}",
            )
            for r in rows.itertuples(index=False)
        ),
        numeric=(False, *[True] * 8),
    )


def _funnel_table(stages: pd.DataFrame) -> _Block:
    groups = list(dict.fromkeys(stages["group"].astype(str)))
    by = {(str(r.group), r.stage): r for r in stages.itertuples(index=False)}
    headers: list[str] = ["stage"]
    for g in groups:
        headers += [g, "stage rate", "of selected"]
    rows = []
    for stage in dict.fromkeys(stages["stage"]):
        row = [str(stage)]
        for g in groups:
            r = by.get((g, stage))
            row += (
                ["–"] * 3
                if r is None
                else [_int_text(r.customers), _rate_text(r.stage_rate), _rate_text(r.rate_from_selected)]
            )
        rows.append(tuple(row))
    return _Block(
        "table", headers=tuple(headers), rows=tuple(rows), numeric=(False, *[True] * (len(headers) - 1))
    )


def _channel_table(channels: pd.DataFrame, limit: int) -> list[_Block]:
    utm = [c for c in UTM_COLUMNS if c in channels.columns]
    measures = ("visits", "registrations", "conversions")
    rates = ("registration_rate", "conversion_rate")
    rows = tuple(
        (
            *(str(getattr(r, c)) for c in utm),
            *(_int_text(getattr(r, m)) for m in measures),
            *(_rate_text(getattr(r, m)) for m in rates),
        )
        for r in channels.head(limit).itertuples(index=False)
    )
    headers = (*(c.removeprefix("utm_") for c in utm), *measures, "registration rate", "conversion rate")
    blocks = [_Block("table", headers=headers, rows=rows, numeric=(*[False] * len(utm), *[True] * 5))]
    if len(channels) > limit:
        blocks.append(
            _Block("p", (f"{len(channels) - limit:,} more UTM combinations not shown (fewer visits).",))
        )
    return blocks


def render_report(
    result: Readout,
    *,
    title: str,
    facts: Mapping[str, Any] | None = None,
    funnel: pd.DataFrame | None = None,
    channels: pd.DataFrame | None = None,
    alert: str | None = None,
    power_note: str | None = None,
    true_lift: float | None = None,
    chart: str | Path | None = None,
    channel_rows: int = 15,
) -> tuple[str, str]:
    """A one-page readout report: ``(markdown, html)``, the same content twice; the HTML is standalone (inline
    style, no scripts) and refers only to ``chart``.

    Sections: the ``facts`` (campaign id, window, model …, shown as given), a banner when the SRM check failed,
    the headline (both rates, absolute and relative lift with their intervals, p-value, incremental responses,
    and the return on spend when ``facts`` holds numeric ``cost_per_contact`` and ``value_per_response``), trust
    (SRM verdict, ``power_note``, ``true_lift`` and whether the interval covers it), the ``alert`` with its
    diagnosis, the lift by score decile (``chart``: the PNG's file name relative to the report, an absolute path
    is reduced to its name; then the table) and by every other segment column, the ``funnel`` (as returned by
    :func:`funnel`) and the UTM ``channels`` (:func:`channel_quality`, the first ``channel_rows`` rows). Omitted
    inputs leave their section out. All text is escaped for Markdown and for HTML.
    """
    facts = dict(facts or {})
    o = result.overall
    level = f"{1 - o.alpha:.0%}"
    blocks: list[_Block] = []
    if facts:
        blocks.append(
            _Block(
                "table",
                headers=("fact", "value"),
                rows=tuple((str(k), _fact_text(v)) for k, v in facts.items()),
                numeric=(False, False),
            )
        )
    if not result.trustworthy:
        blocks.append(
            _Block(
                "warn",
                (
                    _Strong("UNTRUSTWORTHY:"),
                    " the treated/holdout split failed the sample-ratio check, so the assignment was broken "
                    "somewhere (lost records, a filter on one group). Do not act on the lift below.",
                ),
            )
        )
    blocks += _headline(result, facts)

    blocks.append(_Block("h2", ("Trust and power",)))
    trust = [
        (
            _Strong("trustworthy") if result.trustworthy else _Strong("UNTRUSTWORTHY"),
            ": ",
            result.srm_verdict(),
        )
    ]
    if power_note:
        trust.append(("Power: ", power_note))
    if true_lift is not None:
        covered = o.lift_ci_low <= true_lift <= o.lift_ci_high
        trust.append(
            (
                f"True lift (ground truth): {_pts(true_lift)} points; the {level} CI "
                f"[{_pts(o.lift_ci_low)}, {_pts(o.lift_ci_high)}] ",
                _Strong("covers it") if covered else _Strong("does not cover it"),
                f" (estimate off by {100 * (o.lift_abs - true_lift):+.2f} points).",
            )
        )
    blocks.append(_Block("ul", tuple(trust)))

    if alert:
        lines = [line for line in alert.splitlines() if line.strip()]
        blocks += [_Block("h2", ("Alert",)), _Block("warn", (_Strong(lines[0]),))]
        if len(lines) > 1:
            blocks.append(_Block("ul", tuple((line,) for line in lines[1:])))

    segments = result.segments
    sections = list(dict.fromkeys(segments["by"]))
    # The chart goes with the decile table, else with the first segment table, else on its own.
    chart_by = "decile" if "decile" in sections else (sections[0] if sections else None)
    image = None
    if chart is not None:
        src = Path(chart).name if Path(chart).is_absolute() else str(chart)
        image = _Block("img", (f"absolute lift by {chart_by or 'segment'} with {level} intervals",), src=src)
        if chart_by is None:
            blocks += [_Block("h2", ("Lift chart",)), image]
    for by in sections:
        rows = segments[segments["by"] == by]
        if by == "decile":
            rows = rows.sort_values("segment", kind="stable")
        name = "score decile (1 = highest scores)" if by == "decile" else str(by)
        blocks.append(_Block("h2", (f"Lift by {name}",)))
        if image is not None and by == chart_by:
            blocks.append(image)
        blocks.append(_segment_table(rows, level))
    if sections:
        blocks.append(
            _Block("p", ("No multiplicity correction: read segment p-values as a screen, not as findings.",))
        )

    if funnel is not None:
        blocks.append(_Block("h2", ("Funnel",)))
        blocks.append(
            _funnel_table(funnel)
            if len(funnel)
            else _Block("p", ("No contacts or responses recorded for this campaign.",))
        )
        if len(funnel):
            blocks.append(
                _Block(
                    "p",
                    (
                        "Customers per stage and group; stage rate: over the stage before; of selected: over "
                        "every customer of the group, the only base the holdout has (it is never sent). "
                        "app_installed is a side step and converted includes organic conversions.",
                    ),
                )
            )
    if channels is not None:
        blocks.append(_Block("h2", ("Channel quality (UTM)",)))
        blocks += (
            _channel_table(channels, channel_rows)
            if len(channels)
            else [_Block("p", ("No tracked or organic visits, registrations or conversions.",))]
        )
    return _to_markdown(title, blocks), _to_html(title, blocks)
