"""Choosing an uplift learner by cross-fitting, and how sure that choice is.

Why not one validation split: when the effect is small, a learner's Qini on one split of a few thousand rows moves
by as much as the gaps between learners, so the winner of one split is partly chance. :func:`select_learner` cuts
the rows into ``folds`` folds stratified by treatment x outcome (:func:`uplift.stratified_folds`); each candidate
is fitted on all folds but one and scored on the one left out, each fold in turn. A learner's figure is the mean of
its fold Qinis (normalised) with the standard error of that mean; the lead of the best over the runner-up is
measured on their paired fold differences (the same rows score both). Optionally an :class:`Ensemble` of the best
few learners competes too. The chosen learner is then refitted on every row with its own settings.

Cost: a fold fit learns with a learning rate of at least :attr:`SelectionConfig.fold_learning_rate` and stops
after at most :attr:`SelectionConfig.fold_early_stopping_rounds` rounds without gain, so k fold fits cost about as
much as one fit at the training learning rate. The defaults (:data:`DEFAULT_SELECTION`) keep platform training
cheap; :data:`FULL_SELECTION` (every learner, 5 folds at the training learning rate, the ensemble) is what
``bench/bench_uplift_peers.py`` runs too.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from pipelines.models.uplift import LEARNERS, stratified_folds
from pipelines.models.uplift_metrics import TOP_SHARE, auuc, qini_coefficient, uplift_at_k
from pipelines.progress import Progress, say_to

DEFAULT_LEARNERS = ("s_learner", "t_learner", "x_learner", "r_learner", "shared_t_learner")
ENSEMBLE = "ensemble"
# The lead of the best learner over the runner-up counts as clear beyond this many paired standard errors.
CLEAR_LEAD_SE = 2.0


@dataclass(frozen=True)
class SelectionConfig:
    """How :func:`select_learner` chooses: ``folds`` cross-fitting folds; the ``learners`` (names of
    :data:`uplift.LEARNERS`) that compete; ``ensemble``: also an :class:`Ensemble` of the best ``ensemble_size``;
    fold fits learn at least at ``fold_learning_rate`` and stop after at most ``fold_early_stopping_rounds``
    (None: the learner's own settings)."""

    folds: int = 3
    learners: tuple[str, ...] = DEFAULT_LEARNERS
    ensemble: bool = False
    ensemble_size: int = 3
    fold_learning_rate: float | None = 0.15
    fold_early_stopping_rounds: int | None = 30

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise ValueError(f"selection folds must be >= 2, got {self.folds}")
        if not self.learners:
            raise ValueError("selection learners is empty")
        unknown = [n for n in self.learners if n not in LEARNERS]
        if unknown:
            raise ValueError(f"unknown uplift learner(s): {', '.join(unknown)}; known: {', '.join(LEARNERS)}")
        if self.ensemble_size < 2:
            raise ValueError(f"ensemble_size must be >= 2, got {self.ensemble_size}")
        if self.fold_learning_rate is not None and not 0.0 < self.fold_learning_rate <= 1.0:
            raise ValueError(f"fold_learning_rate must be in (0, 1], got {self.fold_learning_rate}")
        if self.fold_early_stopping_rounds is not None and self.fold_early_stopping_rounds < 1:
            raise ValueError(
                f"fold_early_stopping_rounds must be >= 1, got {self.fold_early_stopping_rounds}"
            )


DEFAULT_SELECTION = SelectionConfig()
FULL_SELECTION = SelectionConfig(
    folds=5, learners=tuple(LEARNERS), ensemble=True, fold_learning_rate=None, fold_early_stopping_rounds=None
)


def _weights(scores: Sequence[np.ndarray]) -> np.ndarray:
    """Weights proportional to 1 / standard deviation of each score vector (equal when none varies), summing to 1:
    each member moves the ranking alike, and the mix stays an uplift in probability units with a meaningful sign."""
    sd = np.array([float(np.std(s)) for s in scores])
    inverse = np.where(sd > 0, 1.0 / np.where(sd > 0, sd, 1.0), 0.0)
    if inverse.sum() == 0:
        inverse = np.ones_like(sd)
    return inverse / inverse.sum()


class Ensemble:
    """Several learners, uplift = their scores' weighted mean (:func:`_weights`, fixed on the rows fitted on)."""

    name = ENSEMBLE

    def __init__(self, members: Mapping[str, Any]) -> None:
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two learners")
        self.members = dict(members)
        self.weights: np.ndarray | None = None

    @property
    def encoder(self):
        """The members' encoder (they share the features and category lists)."""
        return next(iter(self.members.values())).encoder

    def fit(self, X: pd.DataFrame, y, t) -> Ensemble:
        scores = [m.fit(X, y, t).predict_uplift(X) for m in self.members.values()]
        self.weights = _weights(scores)
        return self

    def predict_uplift(self, X: pd.DataFrame) -> np.ndarray:
        if self.weights is None:
            raise RuntimeError("Ensemble is not fitted")
        return sum(w * m.predict_uplift(X) for w, m in zip(self.weights, self.members.values(), strict=True))


@dataclass(frozen=True)
class Selection:
    """What :func:`select_learner` found: the chosen ``name`` and its ``learner`` refitted on every row; ``table``
    best first (``learner``, ``qini`` = mean fold Qini, ``qini_se``, ``auuc``, ``uplift_at_30``, ``fit_seconds``
    of its fold fits, ``qini_fold_<i>`` each fold); the ``runner_up`` and the chosen one's ``lead`` over it in mean
    fold Qini with ``lead_se``, the standard error of the paired fold differences (NaN with a single learner)."""

    name: str
    learner: Any = field(repr=False)
    table: pd.DataFrame = field(repr=False)
    folds: int
    rows: int
    runner_up: str | None
    lead: float
    lead_se: float

    @property
    def clear(self) -> bool:
        """Whether the chosen learner leads the runner-up by more than :data:`CLEAR_LEAD_SE` paired SEs."""
        return self.runner_up is not None and self.lead > CLEAR_LEAD_SE * self.lead_se

    def note(self) -> list[str]:
        """The choice and its uncertainty in plain words (for the summary and the MLflow tag)."""
        best = self.table.iloc[0]
        lines = []
        if self.runner_up is not None:
            how = (
                "a clear lead"
                if self.clear
                else f"within {CLEAR_LEAD_SE:g} SE: on these folds the two cannot be told apart"
            )
            lines.append(
                f"{self.name} leads {self.runner_up} by {self.lead:+.4f} (paired SE {self.lead_se:.4f}): {how}"
            )
        if best["qini"] <= CLEAR_LEAD_SE * best["qini_se"]:
            lines.append(
                f"{self.name}'s cross-fitted qini {best['qini']:.4f} ± {best['qini_se']:.4f} is within "
                f"{CLEAR_LEAD_SE:g} SE of 0: the folds cannot tell it from random targeting"
            )
        return lines

    def metrics(self, key=str) -> dict[str, float]:
        """``cv_qini_<learner>``, ``cv_qini_se_<learner>`` for each learner (``key`` makes names metric-safe),
        ``selection_lead`` and ``selection_lead_se`` (when there is a runner-up)."""
        out = {}
        for row in self.table.itertuples(index=False):
            out[f"cv_qini_{key(row.learner)}"] = float(row.qini)
            out[f"cv_qini_se_{key(row.learner)}"] = float(row.qini_se)
        if self.runner_up is not None:
            out["selection_lead"], out["selection_lead_se"] = self.lead, self.lead_se
        return out


def _fold_copy(learner: Any, selection: SelectionConfig) -> Any:
    """An unfitted copy of ``learner`` with the fold settings (faster learning, earlier stopping)."""
    clone = copy.deepcopy(learner)
    cfg = clone.config
    lr, rounds = cfg.learning_rate, cfg.early_stopping_rounds
    if selection.fold_learning_rate is not None:
        lr = max(lr, selection.fold_learning_rate)
    if selection.fold_early_stopping_rounds is not None:
        rounds = min(rounds, selection.fold_early_stopping_rounds)
    clone.config = replace(cfg, learning_rate=lr, early_stopping_rounds=rounds)
    return clone


def _scores(y: np.ndarray, t: np.ndarray, s: np.ndarray) -> tuple[float, float, float]:
    return qini_coefficient(y, t, s), auuc(y, t, s), uplift_at_k(y, t, s, TOP_SHARE)


def _se(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1) / np.sqrt(values.size))


def select_learner(
    learners: Mapping[str, Any],
    X: pd.DataFrame,
    y,
    t,
    selection: SelectionConfig | None = None,
    *,
    seed: int = 42,
    progress: Progress = None,
) -> Selection:
    """Cross-fit each of ``learners`` (name -> unfitted learner, left untouched) over ``selection.folds`` folds of
    the rows (stratified by treatment x outcome, fixed by ``seed``), rank them by mean fold Qini (first listed wins
    a tie), add the ensemble of the best few when ``selection.ensemble``, and refit the chosen one on every row
    with its own settings. Returns a :class:`Selection`. ``progress`` gets a line per learner and the refit."""
    selection = selection or DEFAULT_SELECTION
    if not learners:
        raise ValueError("no learners to compare")
    say = say_to(progress)
    y = np.asarray(y, dtype=float).ravel()
    t = np.asarray(t, dtype=float).ravel()
    k = selection.folds
    cells = pd.Series(t * 2 + y).value_counts()
    if len(cells) < 4 or int(cells.min()) < k:
        raise ValueError(
            f"cross-fitting over {k} folds needs at least {k} rows in each treatment x outcome cell; "
            f"counts (2 x treated + outcome): {cells.sort_index().to_dict()}"
        )
    folds = stratified_folds(y, t, k, seed)
    held_out = [np.flatnonzero(folds == f) for f in range(k)]
    predictions: dict[str, list[np.ndarray]] = {}
    rows = []
    for i, (name, learner) in enumerate(learners.items(), start=1):
        say(f"cross-fitting {name} ({i}/{len(learners)}): {k} folds of {len(X):,} rows")
        start = time.perf_counter()
        predictions[name] = []
        for f, rows_out in enumerate(held_out):
            rows_in = np.flatnonzero(folds != f)
            model = _fold_copy(learner, selection).fit(X.iloc[rows_in], y[rows_in], t[rows_in])
            predictions[name].append(model.predict_uplift(X.iloc[rows_out]))
        rows.append(_row(name, predictions[name], y, t, held_out, time.perf_counter() - start))
        say(
            f"  {name}: cv qini {rows[-1]['qini']:.4f} ± {rows[-1]['qini_se']:.4f} ({rows[-1]['fit_seconds']:.1f} s)"
        )
    table = pd.DataFrame(rows).sort_values("qini", ascending=False, kind="stable", ignore_index=True)
    if selection.ensemble and len(learners) >= 2:
        members = list(table["learner"].head(selection.ensemble_size))
        mixed = [
            sum(
                w * predictions[m][f]
                for w, m in zip(_weights([predictions[m][f] for m in members]), members, strict=True)
            )
            for f in range(k)
        ]
        row = _row(ENSEMBLE, mixed, y, t, held_out, 0.0)
        row["members"] = "+".join(members)
        say(f"  {ENSEMBLE} of {row['members']}: cv qini {row['qini']:.4f} ± {row['qini_se']:.4f}")
        table = pd.concat([table, pd.DataFrame([row])], ignore_index=True)
        table = table.sort_values("qini", ascending=False, kind="stable", ignore_index=True)
    folds_cols = [f"qini_fold_{f + 1}" for f in range(k)]
    name = str(table["learner"].iloc[0])
    runner_up, lead, lead_se = None, float("nan"), float("nan")
    if len(table) > 1:
        runner_up = str(table["learner"].iloc[1])
        diff = table.loc[0, folds_cols].to_numpy(float) - table.loc[1, folds_cols].to_numpy(float)
        lead, lead_se = float(diff.mean()), _se(diff)

    if name == ENSEMBLE:
        members = str(table["members"].iloc[0]).split("+")
        chosen: Any = Ensemble({m: copy.deepcopy(learners[m]) for m in members})
    else:
        chosen = copy.deepcopy(learners[name])
    say(f"refitting {name} on all {len(X):,} rows")
    chosen.fit(X, y, t)
    return Selection(name, chosen, table, k, len(X), runner_up, lead, lead_se)


def _row(name: str, scores: list[np.ndarray], y, t, held_out, seconds: float) -> dict[str, Any]:
    per_fold = np.array([_scores(y[rows], t[rows], s) for rows, s in zip(held_out, scores, strict=True)])
    row: dict[str, Any] = {
        "learner": name,
        "qini": float(per_fold[:, 0].mean()),
        "qini_se": _se(per_fold[:, 0]),
        "auuc": float(per_fold[:, 1].mean()),
        "uplift_at_30": float(per_fold[:, 2].mean()),
        "fit_seconds": seconds,
        "members": "",
    }
    row.update({f"qini_fold_{f + 1}": float(q) for f, q in enumerate(per_fold[:, 0])})
    return row


__all__ = [
    "CLEAR_LEAD_SE",
    "DEFAULT_LEARNERS",
    "DEFAULT_SELECTION",
    "ENSEMBLE",
    "FULL_SELECTION",
    "Ensemble",
    "Selection",
    "SelectionConfig",
    "select_learner",
]
