"""Lookalike scoring: rank a base by how much each customer looks like a seed list (e.g. the best customers of a
product).

:func:`fit_lookalike` fits a seed-vs-base classifier on the catalogue features of the wide table: label 1 for the
seed, 0 for the rest of the base, LightGBM with the propensity models' encoding and Platt calibration
(:func:`pipelines.models.propensity.fit_model`). The base is cut into ``folds`` folds by a salted hash of the
customer id; the model of fold ``f`` is fitted on the other folds (early stopping and calibration on fold
``f + 1``, fitting on the rest), so a customer is only ever scored by the model of its own fold, which never saw it
as a label. :class:`LookalikeScorer` keeps the fold models and scores any frame that way: its scores of the base
are out-of-fold, and a customer's score does not depend on who else is in the frame.

The out-of-fold AUC of seed vs base says how distinctive the seed is: near 0.5, the features cannot tell the seed
from anyone else and the expanded audience is close to random; near 1, the seed is a sharp profile. Seed customers
get scores too (reported), but a campaign never selects them: they are the reference, not the audience.

Only the feature columns and ``customer_id`` are read; a seed file may hold nothing but ``customer_id``.
lightgbm and sklearn are imported inside the functions that need them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.features.catalogue import CATEGORICAL_FEATURES, FEATURE_NAMES
from pipelines.models.propensity import CalibratedModel, TrainConfig, fit_model, unseen_categories
from pipelines.progress import Progress, say_to

ID = "customer_id"
MODEL_NAME = "lookalike"
MIN_SEED = 50
MAX_SEED_SHARE = 0.5
FOLDS = 5
_LABEL = "__seed__"
_SHOWN = 5


class LookalikeError(ValueError):
    """A seed that cannot define a lookalike audience: the message names the file or the problem."""


def read_seed_file(path: str | Path) -> np.ndarray:
    """The customer ids of a seed file (CSV or Parquet with one column, ``customer_id``), sorted and distinct.

    :class:`LookalikeError` naming the file when it is missing, unreadable, has no ``customer_id`` column, holds
    any other column (a seed file carries ids only: no names, no contact details) or a value that is not a whole
    number."""
    path = Path(path)
    if not path.is_file():
        raise LookalikeError(f"seed file {path} not found")
    try:
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype=str)
    except Exception as exc:  # pandas raises many kinds for a file it cannot parse
        raise LookalikeError(f"seed file {path}: cannot read it ({type(exc).__name__}: {exc})") from None
    if ID not in frame.columns:
        raise LookalikeError(f"seed file {path} has no {ID!r} column (columns: {', '.join(map(str, frame))})")
    others = [str(c) for c in frame.columns if c != ID]
    if others:
        raise LookalikeError(
            f"seed file {path} may hold only {ID!r}; remove column(s) {', '.join(others)} (a seed is a list of ids)"
        )
    ids = pd.to_numeric(frame[ID].astype(str).str.strip(), errors="coerce")
    bad = int((ids.isna() | (ids != ids.round())).sum())
    if bad:
        raise LookalikeError(f"seed file {path}: {bad:,} value(s) of {ID!r} are not whole numbers")
    return np.unique(ids.to_numpy(dtype=np.int64))


def seed_version(seed_ids: Sequence[int] | np.ndarray) -> str:
    """A short hash of the distinct seed ids (order does not matter): the lookalike's ``model_version``."""
    ids = np.unique(np.asarray(seed_ids, dtype=np.int64))
    return hashlib.sha256(ids.astype("<i8").tobytes()).hexdigest()[:12]


def fold_of(ids: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold 0..folds-1 of each customer id: splitmix64 of (id xor a salt of ``seed``), modulo ``folds``."""
    salt = np.frombuffer(hashlib.sha256(f"lookalike-folds:{seed}".encode()).digest()[:8], dtype="<u8")[0]
    with np.errstate(over="ignore"):
        z = np.asarray(ids, dtype=np.int64).astype(np.uint64) ^ salt
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(folds)).astype(np.int64)


class LookalikeScorer:
    """The fold models of a lookalike fit behind the scoring interface (``features``, ``predict_proba``,
    ``unseen_categories``, ``path_contributions``): each row is scored by the model of its own fold. The frame
    needs ``customer_id`` besides the features."""

    def __init__(
        self,
        models: Sequence[CalibratedModel],
        seed: int,
        seed_ids: np.ndarray,
        base_n: int,
        auc: float,
    ) -> None:
        self.models = list(models)
        self.seed = int(seed)
        self.seed_ids = np.unique(np.asarray(seed_ids, dtype=np.int64))
        self.base_n = int(base_n)
        self.auc = float(auc)
        self.features = list(self.models[0].features)

    @property
    def folds(self) -> int:
        return len(self.models)

    @property
    def seed_size(self) -> int:
        return len(self.seed_ids)

    @property
    def version(self) -> str:
        return seed_version(self.seed_ids)

    def is_seed(self, ids: np.ndarray) -> np.ndarray:
        """Whether each id is one of the seed's."""
        return np.isin(np.asarray(ids, dtype=np.int64), self.seed_ids)

    def _rows_by_fold(self, frame: pd.DataFrame):
        if ID not in frame.columns:
            raise KeyError(f"a lookalike scores by {ID!r}: the frame has no such column")
        fold = fold_of(frame[ID].to_numpy(np.int64), self.folds, self.seed)
        for f, model in enumerate(self.models):
            rows = np.flatnonzero(fold == f)
            if len(rows):
                yield rows, model

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """P(seed-like) of each row, from the model of the row's fold (never one that saw it as a label)."""
        out = np.empty(len(frame), dtype=np.float64)
        for rows, model in self._rows_by_fold(frame):
            out[rows] = model.predict_proba(frame.iloc[rows])
        return out

    def path_contributions(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Decision-path contributions (``CalibratedModel.path_contributions``) of each row's own fold model: what
        makes a customer look like the seed, the reason codes of a lookalike list."""
        out = pd.DataFrame(0.0, index=frame.index, columns=[*self.features, "bias"])
        for rows, model in self._rows_by_fold(frame):
            out.iloc[rows] = model.path_contributions(frame.iloc[rows]).to_numpy()
        return out

    def unseen_categories(self, frame: pd.DataFrame) -> dict[str, int]:
        """Per categorical column, the rows whose value their fold model did not see at fit time."""
        counts: dict[str, int] = {}
        for rows, model in self._rows_by_fold(frame):
            for name, n in unseen_categories(frame.iloc[rows], model.categories).items():
                counts[name] = counts.get(name, 0) + n
        return counts

    def describe(self) -> str:
        return (
            f"lookalike {self.version}: seed {self.seed_size:,} of {self.base_n:,} customers, "
            f"seed-vs-base AUC {self.auc:.3f} (out-of-fold, {self.folds} folds)"
        )


def check_seed(base_ids: np.ndarray, seed_ids: np.ndarray) -> np.ndarray:
    """The distinct seed ids, checked against the base: every one in it, at least :data:`MIN_SEED`, at most
    :data:`MAX_SEED_SHARE` of the base. :class:`LookalikeError` saying how many (and a few of the ids) otherwise."""
    seed_ids = np.unique(np.asarray(seed_ids, dtype=np.int64))
    missing = np.setdiff1d(seed_ids, np.asarray(base_ids, dtype=np.int64))
    if len(missing):
        shown = ", ".join(str(i) for i in missing[:_SHOWN]) + (", ..." if len(missing) > _SHOWN else "")
        raise LookalikeError(
            f"{len(missing):,} of {len(seed_ids):,} seed ids are not in the base of {len(base_ids):,} customers "
            f"(e.g. {shown}): a seed must be customers of this lake"
        )
    if len(seed_ids) < MIN_SEED:
        raise LookalikeError(
            f"the seed has {len(seed_ids):,} customers; a lookalike needs at least {MIN_SEED} to learn a profile"
        )
    if len(seed_ids) > MAX_SEED_SHARE * len(base_ids):
        raise LookalikeError(
            f"the seed has {len(seed_ids):,} of the base's {len(base_ids):,} customers (more than half): it is "
            "no profile to look like; target the seed with an audience rule instead"
        )
    return seed_ids


def lookalike_config(seed: int = 42, num_threads: int = 2) -> TrainConfig:
    """The LightGBM settings of a fold model: smaller trees and a faster rate than the propensity defaults (a
    seed is a few hundred customers; five fits per run), and Platt calibration (strictly increasing and
    continuous, so the fold models' probabilities compare and few scores tie)."""
    return TrainConfig(
        model_name=MODEL_NAME,
        learning_rate=0.1,
        n_estimators=500,
        early_stopping_rounds=30,
        num_leaves=15,
        min_child_samples=20,
        seed=seed,
        num_threads=num_threads,
        calibration="platt",
    )


def fit_lookalike(
    wide: pd.DataFrame,
    seed_ids: Sequence[int] | np.ndarray,
    *,
    seed: int = 42,
    folds: int = FOLDS,
    config: TrainConfig | None = None,
    progress: Progress = None,
) -> LookalikeScorer:
    """A :class:`LookalikeScorer` of seed (``seed_ids``) vs the rest of ``wide`` (one row per customer, the
    catalogue features it holds), with its out-of-fold seed-vs-base AUC. Deterministic: the same wide table (in
    any row order), seed ids and ``seed`` give the same scores. See the module docstring."""
    from sklearn.metrics import roc_auc_score

    say = say_to(progress)
    if folds < 3:
        raise ValueError(f"a lookalike needs at least 3 folds (fit, stop, score), got {folds}")
    if ID not in wide.columns:
        raise KeyError(f"the wide table has no {ID!r} column")
    if wide[ID].duplicated().any():
        raise ValueError(f"the wide table has duplicate {ID!r} values")
    features = [f for f in FEATURE_NAMES if f in wide.columns]
    if not features:
        raise ValueError("the wide table has none of the catalogued features (not a wide table?)")
    categorical = [c for c in CATEGORICAL_FEATURES if c in features]
    # Fitting on rows sorted by id makes the fit independent of the order the wide table came in.
    frame = wide[[ID, *features]].sort_values(ID, kind="stable", ignore_index=True)
    ids = frame[ID].to_numpy(np.int64)
    seed_ids = check_seed(ids, np.asarray(seed_ids))
    frame[_LABEL] = np.isin(ids, seed_ids).astype(np.int8)
    fold = fold_of(ids, folds, seed)
    config = config or lookalike_config(seed)
    models, oof = [], np.empty(len(frame), dtype=np.float64)
    for f in range(folds):
        stop = (f + 1) % folds
        model = fit_model(
            frame.loc[(fold != f) & (fold != stop)],
            frame.loc[fold == stop],
            features,
            categorical,
            _LABEL,
            config,
        )
        held = fold == f
        oof[held] = model.predict_proba(frame.loc[held])
        models.append(model)
        say(f"lookalike fold {f + 1}/{folds}: {model.best_iteration} trees, {int(held.sum()):,} scored")
    auc = float(roc_auc_score(frame[_LABEL].to_numpy(), oof))
    scorer = LookalikeScorer(models, seed, seed_ids, len(frame), auc)
    say(scorer.describe())
    return scorer


__all__ = [
    "FOLDS",
    "MAX_SEED_SHARE",
    "MIN_SEED",
    "LookalikeError",
    "LookalikeScorer",
    "check_seed",
    "fit_lookalike",
    "fold_of",
    "read_seed_file",
    "seed_version",
]
