"""Customer segments over the wide table: RFM scores and named segments, lifecycle stages and flags, behavioural
personas, value tiers, and a per-segment summary.

Pure functions over DataFrames (the wide table of ``features.build_features``: one row per open customer); no
storage, no tracking. Every rule is data — :data:`RFM_RULES`, :class:`LifecycleRules`, :data:`PERSONA_INPUTS`,
:data:`VALUE_TIER_SHARES` — and ``docs/segments.md`` shows it (its RFM table is :func:`render_rfm_rules`).

Only the personas are learned from data; the learned part is a :class:`PersonaModel` (imputation medians, scaler,
centres, names) that is fitted once, stored as JSON (``to_dict``/``from_dict``) and re-applied, so a customer whose
behaviour has not changed keeps the same persona from run to run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipelines.features.wide_table import ID, LOOKBACK_DAYS

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
    return pd.to_numeric(wide[column], errors="coerce").astype("float64").fillna(missing).to_numpy()


def lifecycle_stages(wide: pd.DataFrame, rules: LifecycleRules = LifecycleRules()) -> pd.Series:
    """The lifecycle stage of each row of ``wide`` (Series ``lifecycle_stage``, categories
    :data:`LIFECYCLE_STAGES`, same index as ``wide``), by the rules of :class:`LifecycleRules`.

    Missing values never trigger a rule: a missing ``aum_change_1m`` is no outflow, a missing ``days_since_*`` is
    read as "none in the lookback".
    """
    _require(wide, LIFECYCLE_COLUMNS, "lifecycle_stages")
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
# Personas


@dataclass(frozen=True)
class PersonaInput:
    """One k-means input: how it is computed from the wide table and the trait it names when it dominates."""

    name: str
    trait: str
    definition: str
    compute: Callable[[pd.DataFrame], pd.Series] = field(repr=False, compare=False)


def _col(name: str) -> Callable[[pd.DataFrame], pd.Series]:
    return lambda w: pd.to_numeric(w[name], errors="coerce").astype("float64")


def _log1p(name: str) -> Callable[[pd.DataFrame], pd.Series]:
    return lambda w: np.log1p(pd.to_numeric(w[name], errors="coerce").astype("float64").clip(lower=0))


def _revolving_share(w: pd.DataFrame) -> pd.Series:
    spend = pd.to_numeric(w["spend_30d"], errors="coerce").astype("float64")
    balance = pd.to_numeric(w["card_balance_last"], errors="coerce").astype("float64")
    return (balance / spend.where(spend > 0)).clip(0.0, 1.0)


PERSONA_INPUTS: tuple[PersonaInput, ...] = (
    PersonaInput(
        "installment_share_180d",
        "installment-heavy",
        "installment_share_180d",
        _col("installment_share_180d"),
    ),
    PersonaInput(
        "cross_border_share_180d",
        "cross-border traveller",
        "cross_border_share_180d",
        _col("cross_border_share_180d"),
    ),
    PersonaInput(
        "log_points_redemption_90d",
        "points collector",
        "log(1 + points_redemption_90d)",
        _log1p("points_redemption_90d"),
    ),
    PersonaInput(
        "log_coupon_view_90d", "coupon hunter", "log(1 + coupon_view_90d)", _log1p("coupon_view_90d")
    ),
    PersonaInput(
        "revolving_share",
        "revolver",
        "card_balance_last / spend_30d, clipped to [0, 1] (share of the last month's spend not repaid)",
        _revolving_share,
    ),
    PersonaInput(
        "credit_utilisation",
        "credit-stretched",
        "credit_utilisation, clipped to [0, 1]",
        lambda w: _col("credit_utilisation")(w).clip(0.0, 1.0),
    ),
)
_PERSONA_INPUT = {p.name: p for p in PERSONA_INPUTS}
LOW_ENGAGEMENT = "low-engagement"
MIN_TRAIT_Z = 0.5  # a centre must sit this many standard deviations above the mean to be named after a trait
PERSONA_N_INIT = 10
PERSONA_MAX_FIT_ROWS = 200_000


def persona_inputs(wide: pd.DataFrame, names: Iterable[str] | None = None) -> pd.DataFrame:
    """The persona inputs (columns ``names``, default all of :data:`PERSONA_INPUTS`), NaN where undefined."""
    names = list(names or _PERSONA_INPUT)
    unknown = [n for n in names if n not in _PERSONA_INPUT]
    if unknown:
        raise KeyError(f"unknown persona inputs {unknown}; known: {list(_PERSONA_INPUT)}")
    return pd.DataFrame({n: _PERSONA_INPUT[n].compute(wide).to_numpy() for n in names}, index=wide.index)


@dataclass(frozen=True)
class PersonaModel:
    """A fitted persona clustering: apply it with :meth:`assign`, store it with :meth:`to_dict` (JSON-safe).

    ``centres`` are in standardised units (z-scores of the imputed inputs), one per persona, in ``names`` order.
    """

    inputs: tuple[str, ...]
    medians: tuple[float, ...]
    means: tuple[float, ...]
    stds: tuple[float, ...]
    centres: tuple[tuple[float, ...], ...]
    names: tuple[str, ...]
    seed: int = 42

    def standardise(self, wide: pd.DataFrame) -> np.ndarray:
        """The inputs of ``wide`` imputed with the fitted medians and scaled with the fitted mean and std."""
        x = persona_inputs(wide, self.inputs).to_numpy(np.float64)
        x = np.where(np.isnan(x), np.asarray(self.medians), x)
        return (x - np.asarray(self.means)) / np.asarray(self.stds)

    def assign(self, wide: pd.DataFrame) -> pd.Series:
        """The persona of each row of ``wide``: the nearest centre (ties to the first). Row by row: a customer's
        persona depends only on their own inputs and the model."""
        z = self.standardise(wide)
        centres = np.asarray(self.centres, dtype=np.float64)
        d2 = np.empty((len(z), len(centres)))
        for j, c in enumerate(centres):  # one centre at a time: n x inputs temporaries, not n x k x inputs
            d2[:, j] = ((z - c) ** 2).sum(axis=1)
        idx = d2.argmin(axis=1) if len(centres) else np.zeros(len(z), dtype=np.int64)
        names = np.asarray(self.names, dtype=object)
        return pd.Series(
            pd.Categorical(names[idx], categories=list(self.names)), index=wide.index, name="persona"
        )

    def profile(self) -> pd.DataFrame:
        """Centres as a frame (persona x input, z-scores): what each name was read from."""
        return pd.DataFrame(self.centres, index=list(self.names), columns=list(self.inputs))

    def to_dict(self) -> dict:
        return {
            "inputs": list(self.inputs),
            "medians": list(self.medians),
            "means": list(self.means),
            "stds": list(self.stds),
            "centres": [list(c) for c in self.centres],
            "names": list(self.names),
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, data: dict) -> PersonaModel:
        model = cls(
            inputs=tuple(data["inputs"]),
            medians=tuple(float(v) for v in data["medians"]),
            means=tuple(float(v) for v in data["means"]),
            stds=tuple(float(v) for v in data["stds"]),
            centres=tuple(tuple(float(v) for v in c) for c in data["centres"]),
            names=tuple(data["names"]),
            seed=int(data.get("seed", 42)),
        )
        unknown = [n for n in model.inputs if n not in _PERSONA_INPUT]
        if unknown or len(model.names) != len(model.centres) or len(set(model.names)) != len(model.names):
            raise ValueError(f"not a persona model: unknown inputs {unknown} or names/centres mismatch")
        return model


def name_personas(centres: np.ndarray, inputs: tuple[str, ...], min_z: float = MIN_TRAIT_Z) -> list[str]:
    """A unique name for each centre (rows, z-scores) from its dominant trait.

    Greedy, strongest first: the (centre, input) pair with the highest z-score names that centre after the input's
    trait, then the next pair whose centre and trait are both still free, as long as z >= ``min_z``. A centre left
    over is ``low-engagement`` when no input reaches ``min_z``, else ``<its top trait> (light)`` (its trait went to
    a stronger centre); a repeated name gets `` 2``, `` 3``... in centre order.
    """
    traits = [_PERSONA_INPUT[n].trait for n in inputs]
    k, p = centres.shape
    pairs = sorted((-centres[i, j], i, j) for i in range(k) for j in range(p))
    names: list[str | None] = [None] * k
    used: set[str] = set()
    for neg_z, i, j in pairs:
        if -neg_z < min_z:
            break
        if names[i] is None and traits[j] not in used:
            names[i] = traits[j]
            used.add(traits[j])
    out: list[str] = []
    for i in range(k):
        base = names[i]
        if base is None:
            top = int(np.argmax(centres[i]))
            base = LOW_ENGAGEMENT if centres[i, top] < min_z else f"{traits[top]} (light)"
        name, n = base, 1
        while name in out:
            n += 1
            name = f"{base} {n}"
        out.append(name)
    return out


def fit_personas(
    wide: pd.DataFrame, k: int = 6, seed: int = 42, max_fit_rows: int = PERSONA_MAX_FIT_ROWS
) -> PersonaModel:
    """K-means (``n_init`` = :data:`PERSONA_N_INIT`, ``random_state=seed``) on the standardised
    :data:`PERSONA_INPUTS` of ``wide``.

    Deterministic: rows are taken in ``customer_id`` order (a seeded sample of ``max_fit_rows`` when there are
    more); missing inputs are imputed with the fitted median (0 when an input is missing everywhere); an input
    without spread gets std 1; ``k`` is lowered to the number of distinct input rows when there are fewer. The
    centres are stored in lexicographic order of their (rounded) coordinates, so the same data and seed give the
    same model whatever order the rows came in, and each centre is named by :func:`name_personas`.
    """
    from sklearn.cluster import KMeans  # heavy import, only when fitting
    from threadpoolctl import threadpool_limits

    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if len(wide) == 0:
        raise ValueError("cannot fit personas on an empty wide table")
    ordered = wide.sort_values(ID, kind="stable") if ID in wide.columns else wide
    if len(ordered) > max_fit_rows:
        pick = np.sort(np.random.default_rng(seed).choice(len(ordered), max_fit_rows, replace=False))
        ordered = ordered.iloc[pick]
    inputs = tuple(p.name for p in PERSONA_INPUTS)
    x = persona_inputs(ordered, inputs).to_numpy(np.float64)
    medians = np.array([np.median(c[~np.isnan(c)]) if (~np.isnan(c)).any() else 0.0 for c in x.T])
    x = np.where(np.isnan(x), medians, x)
    means = x.mean(axis=0)
    stds = x.std(axis=0)
    stds = np.where(stds > 1e-12, stds, 1.0)
    z = (x - means) / stds
    k = min(k, len(np.unique(z.round(9), axis=0)))
    # One thread: the same centres on any machine, and OpenMP workers spinning on a busy 2-core box made a
    # 16k-row fit 20x slower (1.6 s against 0.08 s).
    with threadpool_limits(limits=1):
        km = KMeans(n_clusters=k, n_init=PERSONA_N_INIT, random_state=seed).fit(z)
    centres = km.cluster_centers_
    order = sorted(range(k), key=lambda i: tuple(np.round(centres[i], 6)))
    centres = centres[order]
    names = name_personas(centres, inputs)
    return PersonaModel(
        inputs=inputs,
        medians=tuple(float(v) for v in medians),
        means=tuple(float(v) for v in means),
        stds=tuple(float(v) for v in stds),
        centres=tuple(tuple(float(v) for v in c) for c in centres),
        names=tuple(names),
        seed=seed,
    )


def personas(
    wide: pd.DataFrame, model: PersonaModel | None = None, k: int = 6, seed: int = 42
) -> tuple[pd.Series, PersonaModel]:
    """``(persona of each row of wide, model)``: ``model`` re-applied when given, else fitted on ``wide``
    (:func:`fit_personas`)."""
    model = model or fit_personas(wide, k=k, seed=seed)
    return model.assign(wide), model


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
