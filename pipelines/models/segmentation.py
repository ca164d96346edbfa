"""Customer segments over the wide table: RFM scores and named segments, lifecycle stages and flags, behavioural
personas, value tiers, and a per-segment summary.

Pure functions over DataFrames (the wide table of ``features.build_features``: one row per open customer); no
storage, no tracking. Every rule is data — :data:`RFM_RULES`, :class:`LifecycleRules`, the persona inputs,
:data:`VALUE_TIER_SHARES` — and ``docs/segments.md`` shows it (its RFM table is :func:`render_rfm_rules`).

Only the personas are learned from data: they are :mod:`pipelines.models.personas`, and :func:`assign_segments`
fits or re-applies a :class:`~pipelines.models.personas.PersonaModel` there.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipelines.features.catalogue import ID, LOOKBACK_DAYS
from pipelines.models.personas import PersonaModel, personas

# --------------------------------------------------------------------------------------------------------------
# RFM

RFM_COLUMNS = {
    "r_score": "days_since_last_txn",  # fewer days = better: inverted
    "f_score": "txn_count_180d",
    "m_score": "spend_180d",
}
RFM_BINS = 5


@dataclass(frozen=True)
class RfmRule:
    """A named RFM segment: customers whose scores lie in the closed ranges (and, if set, whose tenure is at most
    ``max_tenure_days``). Rules are tried in :data:`RFM_RULES` order; the first that matches names the segment."""

    segment: str
    r: tuple[int, int] = (1, 5)
    f: tuple[int, int] = (1, 5)
    m: tuple[int, int] = (1, 5)
    max_tenure_days: int | None = None
    meaning: str = ""


RFM_RULES: tuple[RfmRule, ...] = (
    RfmRule("Champions", r=(4, 5), f=(4, 5), m=(4, 5), meaning="bought recently, often and the most"),
    RfmRule("New", max_tenure_days=90, meaning="account opened in the last 90 days (whatever the scores)"),
    RfmRule("Can't lose", r=(1, 2), f=(4, 5), m=(4, 5), meaning="were among the best, not seen for a while"),
    RfmRule("At risk", r=(1, 2), f=(3, 5), meaning="bought often, not recently"),
    RfmRule("Loyal", r=(3, 5), f=(3, 5), meaning="buy regularly and recently"),
    RfmRule("Potential loyalists", r=(3, 5), f=(1, 2), meaning="recent, not yet frequent"),
    RfmRule("Hibernating", r=(2, 2), f=(1, 2), meaning="neither recent nor frequent"),
    RfmRule("Lost", r=(1, 1), f=(1, 2), meaning="the least recent and least frequent"),
)
RFM_SEGMENTS = tuple(rule.segment for rule in RFM_RULES)


def render_rfm_rules() -> str:
    """The RFM rule table of ``docs/segments.md`` (first matching row wins)."""

    def rng(lo_hi: tuple[int, int]) -> str:
        lo, hi = lo_hi
        return "any" if (lo, hi) == (1, RFM_BINS) else (str(lo) if lo == hi else f"{lo}-{hi}")

    lines = [
        "| order | segment | R | F | M | tenure | meaning |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, rule in enumerate(RFM_RULES, start=1):
        tenure = "any" if rule.max_tenure_days is None else f"<= {rule.max_tenure_days} days"
        lines.append(
            f"| {i} | {rule.segment} | {rng(rule.r)} | {rng(rule.f)} | {rng(rule.m)} | {tenure} | {rule.meaning} |"
        )
    return "\n".join(lines) + "\n"


def _require(wide: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in wide.columns]
    if missing:
        raise KeyError(f"{what} needs wide-table columns {missing} (see docs/segments.md)")


def quantile_scores(values: pd.Series, bins: int = RFM_BINS, higher_is_better: bool = True) -> pd.Series:
    """Scores ``1..bins`` (``bins`` = best) by percentile rank: ``ceil(bins * average_rank / n)``.

    Ties share the average rank, so equal values always get the same score whatever the row order (the bins are
    exact quantiles when the values are distinct); missing values rank as the worst.
    """
    x = pd.to_numeric(values, errors="coerce").astype("float64")
    if not higher_is_better:
        x = -x
    x = x.fillna(-np.inf)
    if len(x) == 0:
        return pd.Series(np.zeros(0, dtype=np.int64), index=values.index)
    pct = x.rank(method="average", pct=True).to_numpy()
    score = np.clip(np.ceil(pct * bins - 1e-9), 1, bins).astype(np.int64)
    return pd.Series(score, index=values.index)


def rfm_segment_of(r: np.ndarray, f: np.ndarray, m: np.ndarray, tenure_days: np.ndarray | None) -> np.ndarray:
    """The :data:`RFM_RULES` segment of each customer (first match); the rules cover every score combination."""
    out = np.full(len(r), None, dtype=object)
    todo = np.ones(len(r), dtype=bool)
    for rule in RFM_RULES:
        hit = todo.copy()
        for score, (lo, hi) in ((r, rule.r), (f, rule.f), (m, rule.m)):
            hit &= (score >= lo) & (score <= hi)
        if rule.max_tenure_days is not None:
            if tenure_days is None:
                continue
            hit &= (
                np.nan_to_num(np.asarray(tenure_days, dtype=np.float64), nan=np.inf) <= rule.max_tenure_days
            )
        out[hit] = rule.segment
        todo &= ~hit
    if todo.any():  # cannot happen with the shipped table; guards an edited one
        raise ValueError(f"RFM_RULES leave {int(todo.sum())} customers without a segment")
    return out


def rfm_scores(wide: pd.DataFrame) -> pd.DataFrame:
    """``customer_id, r_score, f_score, m_score, rfm_segment`` for every row of ``wide`` (same order and index).

    Recency is ``days_since_last_txn`` (fewer days scores higher), frequency ``txn_count_180d``, monetary
    ``spend_180d``; each is scored into quintiles 1..5 over all rows of ``wide`` (the eligible base) with
    :func:`quantile_scores`. ``rfm_segment`` follows :data:`RFM_RULES` (``New`` uses ``tenure_days``).
    """
    _require(wide, [ID, *RFM_COLUMNS.values()], "rfm_scores")
    out = pd.DataFrame({ID: wide[ID].to_numpy()}, index=wide.index)
    for score, column in RFM_COLUMNS.items():
        out[score] = quantile_scores(wide[column], higher_is_better=score != "r_score")
    tenure = wide["tenure_days"].to_numpy(np.float64) if "tenure_days" in wide.columns else None
    segment = rfm_segment_of(
        out["r_score"].to_numpy(), out["f_score"].to_numpy(), out["m_score"].to_numpy(), tenure
    )
    out["rfm_segment"] = pd.Categorical(segment, categories=list(RFM_SEGMENTS))
    return out


# --------------------------------------------------------------------------------------------------------------
# Lifecycle

LIFECYCLE_STAGES = ("potential", "new", "active", "loyal", "dormant", "churned")
LIFECYCLE_COLUMNS = (
    "tenure_days",
    "days_since_last_txn",
    "days_since_last_login",
    "txn_count_180d",
    "points_redemption_90d",
    "aum_change_1m",
)
# Without these (a source with no app events, no balances) the rules read them as missing: no login, no points
# redemption, no outflow, i.e. lifecycle from transaction recency, frequency and tenure alone.
LIFECYCLE_OPTIONAL = ("days_since_last_login", "points_redemption_90d", "aum_change_1m")
LIFECYCLE_REQUIRED = tuple(c for c in LIFECYCLE_COLUMNS if c not in LIFECYCLE_OPTIONAL)
FLAG_COLUMNS = ("is_effective", "is_potential", "is_dormant", "is_invalid")


@dataclass(frozen=True)
class LifecycleRules:
    """Thresholds of the lifecycle stages, applied to open customers in this precedence (first match wins):

    1. ``potential``: opened within the lookback and no card transaction since (never transacted; logins do not
       count: an app user who never used the card is still a prospect).
    2. ``churned``: older than the lookback and neither a transaction nor an app login in all of it (silent for
       the whole window; closed accounts are not in the wide table at all).
    3. ``new``: tenure at most ``new_max_tenure_days``.
    4. ``dormant``: no card transaction and no app login for ``dormant_quiet_days``; or no card transaction for
       ``dormant_days_since_txn`` whatever the logins (the app alone keeps a card customer out of this stage
       for a while, not for ever); or assets flowing out (``aum_change_1m`` at or below
       ``dormant_max_aum_change_1m``).
    5. ``loyal``: tenure at least ``loyal_min_tenure_days`` and at least ``loyal_min_txn_180d`` transactions in 180
       days, or at least ``loyal_min_points_redemptions_90d`` points redemptions in 90 days.
    6. ``active``: everyone else (transacting, not new, not drifting, not loyal).

    ``lookback_days`` must be the wide table's (``features.WindowContract.lookback_days``): "none in the lookback"
    is read from the ``days_since_*`` columns, which hold ``lookback_days + 1`` when there is none.
    """

    lookback_days: int = LOOKBACK_DAYS
    new_max_tenure_days: int = 90
    dormant_quiet_days: int = 45
    dormant_days_since_txn: int = 90
    dormant_max_aum_change_1m: float = -0.10
    loyal_min_tenure_days: int = 730
    loyal_min_txn_180d: int = 72
    loyal_min_points_redemptions_90d: int = 2

    def __post_init__(self) -> None:
        if not 0 < self.new_max_tenure_days <= self.lookback_days:
            raise ValueError(
                f"new_max_tenure_days must be in 1..lookback_days ({self.lookback_days}), "
                f"got {self.new_max_tenure_days}"
            )
        if not 0 < self.dormant_quiet_days <= self.dormant_days_since_txn < self.lookback_days:
            raise ValueError(
                "need 0 < dormant_quiet_days <= dormant_days_since_txn < lookback_days, got "
                f"{self.dormant_quiet_days}, {self.dormant_days_since_txn}, {self.lookback_days}"
            )


def _num(wide: pd.DataFrame, column: str, missing: float) -> np.ndarray:
    """The column as floats with NaN read as ``missing``; a column the wide table lacks is missing throughout."""
    if column not in wide.columns:
        return np.full(len(wide), missing, dtype=np.float64)
    return pd.to_numeric(wide[column], errors="coerce").astype("float64").fillna(missing).to_numpy()


def lifecycle_stages(wide: pd.DataFrame, rules: LifecycleRules = LifecycleRules()) -> pd.Series:
    """The lifecycle stage of each row of ``wide`` (Series ``lifecycle_stage``, categories
    :data:`LIFECYCLE_STAGES`, same index as ``wide``), by the rules of :class:`LifecycleRules`.

    Missing values never trigger a rule: a missing ``aum_change_1m`` is no outflow, a missing ``days_since_*`` is
    read as "none in the lookback". The columns of :data:`LIFECYCLE_OPTIONAL` may be absent (a retailer's wide
    table has no app or balance features): then every value is missing, and the stages come from transaction
    recency, frequency and tenure alone.
    """
    _require(wide, LIFECYCLE_REQUIRED, "lifecycle_stages")
    none = rules.lookback_days + 1
    tenure = _num(wide, "tenure_days", 0.0)
    since_txn = _num(wide, "days_since_last_txn", none)
    since_login = _num(wide, "days_since_last_login", none)
    no_txn = since_txn >= rules.lookback_days
    no_login = since_login >= rules.lookback_days
    young = tenure <= rules.lookback_days

    loyal = (
        (tenure >= rules.loyal_min_tenure_days)
        & (_num(wide, "txn_count_180d", 0.0) >= rules.loyal_min_txn_180d)
    ) | (_num(wide, "points_redemption_90d", 0.0) >= rules.loyal_min_points_redemptions_90d)
    dormant = (
        ((since_txn >= rules.dormant_quiet_days) & (since_login >= rules.dormant_quiet_days))
        | (since_txn >= rules.dormant_days_since_txn)
        | (_num(wide, "aum_change_1m", np.inf) <= rules.dormant_max_aum_change_1m)
    )
    stage = np.select(
        [
            no_txn & young,
            no_txn & no_login & ~young,
            tenure <= rules.new_max_tenure_days,
            dormant,
            loyal,
        ],
        ["potential", "churned", "new", "dormant", "loyal"],
        default="active",
    )
    return pd.Series(
        pd.Categorical(stage, categories=list(LIFECYCLE_STAGES)), index=wide.index, name="lifecycle_stage"
    )


def lifecycle_flags(
    customer_ids: pd.Series, stages: pd.Series, invalid_ids: Iterable[int] | None = None
) -> pd.DataFrame:
    """``is_effective, is_potential, is_dormant, is_invalid`` (booleans, index of ``stages``): exactly one is true
    for each customer.

    ``is_invalid``: the customer is in ``invalid_ids`` (the bank's dead-account rule,
    ``campaign.invalid_customers``) — it overrides the others. Otherwise ``is_effective``: stage new, active or
    loyal (transacting); ``is_potential``: stage potential; ``is_dormant``: stage dormant or churned (open but
    asleep).
    """
    ids = np.asarray(customer_ids)
    invalid = np.zeros(len(ids), dtype=bool)
    if invalid_ids is not None:
        known = (pd.Index, pd.Series, np.ndarray, list, tuple)
        wanted = np.asarray(invalid_ids if isinstance(invalid_ids, known) else list(invalid_ids))
        invalid = np.isin(ids, wanted.astype(ids.dtype) if wanted.size else wanted)
    stage = stages.astype(str).to_numpy()
    return pd.DataFrame(
        {
            "is_effective": np.isin(stage, ("new", "active", "loyal")) & ~invalid,
            "is_potential": (stage == "potential") & ~invalid,
            "is_dormant": np.isin(stage, ("dormant", "churned")) & ~invalid,
            "is_invalid": invalid,
        },
        index=stages.index,
    )


# --------------------------------------------------------------------------------------------------------------
# Value tiers, all segments, summary

VALUE_TIERS = ("high", "mid", "low")
VALUE_TIER_SHARES = (0.2, 0.3)  # high: top 20 %, mid: the next 30 %, low: the remaining 50 %


def value_tiers(predicted_value: pd.Series, shares: tuple[float, float] = VALUE_TIER_SHARES) -> pd.Series:
    """``high`` / ``mid`` / ``low`` per customer (Series ``value_tier``, same index, categories
    :data:`VALUE_TIERS`).

    Customers are ranked by predicted value, highest first; a customer whose rank position (average rank - 0.5,
    so tied customers share the middle of their group) is below ``shares[0] * n`` is ``high``, below
    ``(shares[0] + shares[1]) * n`` is ``mid``, else ``low``: exactly 20 / 30 / 50 % with distinct values (when
    those shares of n are whole), and equal values always share a tier. A missing prediction counts as the lowest
    value.
    """
    high, mid = shares
    if not (high >= 0 and mid >= 0 and high + mid <= 1):
        raise ValueError(f"shares must be two non-negative fractions adding up to at most 1, got {shares}")
    x = pd.to_numeric(predicted_value, errors="coerce").astype("float64").fillna(-np.inf)
    n = len(x)
    position = x.rank(method="average", ascending=False).to_numpy() - 0.5 if n else np.zeros(0)
    tier = np.where(position < high * n, "high", np.where(position < (high + mid) * n, "mid", "low"))
    return pd.Series(
        pd.Categorical(tier, categories=list(VALUE_TIERS)), index=predicted_value.index, name="value_tier"
    )


SEGMENT_FRAME_COLUMNS = (
    ID,
    "rfm_segment",
    "r_score",
    "f_score",
    "m_score",
    "lifecycle_stage",
    "persona",
    *FLAG_COLUMNS,
)


def assign_segments(
    wide: pd.DataFrame,
    *,
    invalid_ids: Iterable[int] | None = None,
    persona_model: PersonaModel | None = None,
    rules: LifecycleRules = LifecycleRules(),
) -> tuple[pd.DataFrame, PersonaModel]:
    """Every segment of every row of ``wide`` (columns :data:`SEGMENT_FRAME_COLUMNS`, same order and index), and
    the persona model used (fitted on ``wide`` when ``persona_model`` is None).

    ``invalid_ids``: the ids of ``campaign.invalid_customers`` at the same as_of (``is_invalid``).
    """
    rfm = rfm_scores(wide)
    stage = lifecycle_stages(wide, rules)
    persona, model = personas(wide, persona_model)
    flags = lifecycle_flags(wide[ID], stage, invalid_ids)
    out = pd.concat([rfm, stage, persona, flags], axis=1)
    return out[list(SEGMENT_FRAME_COLUMNS)], model


SUMMARY_COLUMNS = ("rfm_segment", "lifecycle_stage", "persona", "value_tier")


def segment_summary(
    segments: pd.DataFrame, scores: pd.DataFrame | None = None, value: pd.Series | None = None
) -> pd.DataFrame:
    """One row per segment column (of :data:`SUMMARY_COLUMNS` present in ``segments``) and value:
    ``column, segment, customers, share`` plus ``avg_<score>`` for each numeric column of ``scores`` and
    ``avg_value`` when given.

    ``scores`` is a frame with ``customer_id`` and score columns, ``value`` a Series indexed by ``customer_id``;
    both are matched to ``segments`` by ``customer_id`` (customers without one are left out of the average).
    Categorical columns list every category, in category order, including empty ones (size 0, averages NaN).
    """
    base = segments.reset_index(drop=True)
    n = len(base)
    extra: dict[str, np.ndarray] = {}
    if scores is not None:
        s = scores.drop_duplicates(ID).set_index(ID)
        for c in s.columns:
            if pd.api.types.is_numeric_dtype(s[c]) and not pd.api.types.is_bool_dtype(s[c]):
                extra[f"avg_{c}"] = s[c].reindex(base[ID]).to_numpy(np.float64)
    if value is not None:
        v = value[~value.index.duplicated()]
        extra["avg_value"] = pd.to_numeric(v, errors="coerce").reindex(base[ID]).to_numpy(np.float64)
    rows = []
    for column in (c for c in SUMMARY_COLUMNS if c in base.columns):
        col = base[column]
        if isinstance(col.dtype, pd.CategoricalDtype):
            values = list(col.cat.categories)
        else:
            values = sorted(col.dropna().unique(), key=str)
        for segment in values:
            mask = (col == segment).to_numpy(dtype=bool, na_value=False)
            size = int(mask.sum())
            row = {
                "column": column,
                "segment": str(segment),
                "customers": size,
                "share": size / n if n else 0.0,
            }
            for name, arr in extra.items():
                picked = arr[mask]
                picked = picked[~np.isnan(picked)]
                row[name] = float(picked.mean()) if picked.size else math.nan
            rows.append(row)
    return pd.DataFrame(rows, columns=["column", "segment", "customers", "share", *extra])
