"""Behavioural personas: k-means over a few behaviour ratios of the wide table, each cluster named by its trait.

The inputs are data (:data:`PERSONA_INPUTS`: how each is computed and the trait it names) and ``docs/segments.md``
shows them. The learned part is a :class:`PersonaModel` (imputation medians, scaler, centres, names) that is fitted
once (:func:`fit_personas`), stored as JSON (``to_dict``/``from_dict``) and re-applied, so a customer whose
behaviour has not changed keeps the same persona from run to run. sklearn is imported only when fitting.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipelines.features.catalogue import ID


@dataclass(frozen=True)
class PersonaInput:
    """One k-means input: how it is computed from the wide table and the trait it names when it dominates."""

    name: str
    trait: str
    definition: str
    compute: Callable[[pd.DataFrame], pd.Series] = field(repr=False, compare=False)
    requires: tuple[
        str, ...
    ] = ()  # the wide-table columns it reads (absent when the source lacks their table)


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
        ("installment_share_180d",),
    ),
    PersonaInput(
        "cross_border_share_180d",
        "cross-border traveller",
        "cross_border_share_180d",
        _col("cross_border_share_180d"),
        ("cross_border_share_180d",),
    ),
    PersonaInput(
        "log_points_redemption_90d",
        "points collector",
        "log(1 + points_redemption_90d)",
        _log1p("points_redemption_90d"),
        ("points_redemption_90d",),
    ),
    PersonaInput(
        "log_coupon_view_90d",
        "coupon hunter",
        "log(1 + coupon_view_90d)",
        _log1p("coupon_view_90d"),
        ("coupon_view_90d",),
    ),
    PersonaInput(
        "revolving_share",
        "revolver",
        "card_balance_last / spend_30d, clipped to [0, 1] (share of the last month's spend not repaid)",
        _revolving_share,
        ("card_balance_last", "spend_30d"),
    ),
    PersonaInput(
        "credit_utilisation",
        "credit-stretched",
        "credit_utilisation, clipped to [0, 1]",
        lambda w: _col("credit_utilisation")(w).clip(0.0, 1.0),
        ("credit_utilisation",),
    ),
)
_PERSONA_INPUT = {p.name: p for p in PERSONA_INPUTS}
LOW_ENGAGEMENT = "low-engagement"
MIN_TRAIT_Z = 0.5  # a centre must sit this many standard deviations above the mean to be named after a trait
PERSONA_N_INIT = 10
PERSONA_MAX_FIT_ROWS = 200_000


def available_inputs(wide: pd.DataFrame) -> tuple[str, ...]:
    """The :data:`PERSONA_INPUTS` whose wide-table columns are all present, in their order: a source without
    balances or app events (a retailer) clusters on the behaviour it has (e.g. the cross-border share)."""
    return tuple(p.name for p in PERSONA_INPUTS if all(c in wide.columns for c in p.requires))


def persona_inputs(wide: pd.DataFrame, names: Iterable[str] | None = None) -> pd.DataFrame:
    """The persona inputs (columns ``names``, default all of :data:`PERSONA_INPUTS`), NaN where undefined."""
    names = list(_PERSONA_INPUT) if names is None else list(names)
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
    :data:`PERSONA_INPUTS` of ``wide`` whose columns it has (:func:`available_inputs`; none: one
    ``low-engagement`` persona).

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
    inputs = available_inputs(ordered)
    if not inputs:  # no behaviour to cluster on: one persona for everyone
        return PersonaModel((), (), (), (), ((),), (LOW_ENGAGEMENT,), seed)
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
