"""Uplift learners: S-, T- and X-learners and the class transformation, LightGBM under each, and the choice
among them by validation Qini.

Learners share ``fit(X, y, t) -> self`` and ``predict_uplift(X) -> ndarray``; every booster is LightGBM with the
deterministic parameters of :class:`pipelines.models.propensity.TrainConfig` and early stopping on a validation
split drawn from the training rows (stratified by treatment and outcome). Models are fitted one after the other,
each with ``config.num_threads`` threads, so threads never exceed that number.

Memory: features are encoded once into a float32, row-major matrix whose rows are ordered by the blocks the
boosters train and stop on (train/validation, per treatment group where the learner splits by group), so every
booster reads a contiguous slice of it instead of a copy; scoring encodes and predicts in chunks of
:data:`PREDICT_CHUNK_ROWS` rows.

lightgbm is imported inside the functions that need it: importing this module stays cheap.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from pipelines.models.propensity import (
    TrainConfig,
    _as_category_values,
    _category_list,
    _is_categorical_like,
    fit_early_stopped,
)
from pipelines.models.uplift_metrics import auuc, qini_coefficient, uplift_at_k
from pipelines.progress import Progress, say_to

PREDICT_CHUNK_ROWS = 100_000


def uplift_config(**overrides: Any) -> TrainConfig:
    """The training settings of the uplift learners: :class:`TrainConfig` with model name ``uplift``."""
    return replace(TrainConfig(model_name="uplift"), **overrides)


def _params(config: TrainConfig, objective: str) -> dict[str, Any]:
    params = config.lgb_params()
    if objective == "regression":
        params.update(objective="regression", metric="l2")
    return params


def _flags(values, name: str) -> np.ndarray:
    a = np.asarray(values).ravel()
    if pd.isna(a).any():
        raise ValueError(f"{name} has missing values")
    a = a.astype(float)
    if not np.isin(a, (0.0, 1.0)).all():
        raise ValueError(f"{name} must be 0/1")
    return a


def _valid_mask(y: np.ndarray, t: np.ndarray, share: float, seed: int) -> np.ndarray:
    """A validation mask with ``share`` of each (treatment, outcome) cell, fixed by ``seed``."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(y.size, dtype=bool)
    for cell in np.unique(t * 2 + y):
        idx = np.flatnonzero(t * 2 + y == cell)
        k = int(round(idx.size * share))
        mask[rng.permutation(idx)[:k]] = True
    return mask


class _Encoder:
    """Feature list and fit-time category lists; encodes a frame to the float32 matrix the boosters see.

    The encoding is :meth:`propensity.CalibratedModel.encode`'s (numerics as numbers, categoricals as codes of the
    fit-time lists, NaN for missing or unseen values), in float32 to halve the memory of the largest object.
    """

    def __init__(self, X: pd.DataFrame, categorical: Sequence[str] | None) -> None:
        if categorical is None:
            categorical = [
                c for c in X.columns if _is_categorical_like(X[c]) and not pd.api.types.is_bool_dtype(X[c])
            ]
        self.features = [str(c) for c in X.columns]
        self.categories = {c: _category_list(X[c]) for c in categorical}

    @property
    def categorical_index(self) -> list[int]:
        return [self.features.index(c) for c in self.categories]

    def encode(self, X: pd.DataFrame, rows: np.ndarray | None = None, extra: int = 0) -> np.ndarray:
        """A C-ordered float32 matrix: one row per row of ``X`` (in the order ``rows`` gives, when given), one
        column per feature, then ``extra`` columns left for the caller to fill."""
        missing = [f for f in self.features if f not in X.columns]
        if missing:
            raise KeyError(f"frame lacks model feature column(s): {', '.join(missing)}")
        n = len(X) if rows is None else len(rows)
        out = np.empty((n, len(self.features) + extra), dtype=np.float32)
        for j, name in enumerate(self.features):
            col = X[name]
            if name in self.categories:
                cats = self.categories[name]
                if isinstance(col.dtype, pd.CategoricalDtype) and list(col.cat.categories) == cats:
                    codes = col.cat.codes.to_numpy()
                else:
                    values = _as_category_values(col, cats)
                    codes = pd.Categorical(values, categories=cats).codes
                values = codes.astype(np.float32)
                values[codes < 0] = np.nan
            else:
                if _is_categorical_like(col) and not pd.api.types.is_bool_dtype(col):
                    raise ValueError(f"feature {name!r} was numeric at fit time but is {col.dtype} now")
                values = pd.to_numeric(col, errors="raise").to_numpy(dtype=np.float32, na_value=np.nan)
            out[:, j] = values if rows is None else values[rows]
        return out


def _blocks(key: np.ndarray, n_keys: int) -> list[slice]:
    """Slices of the sorted ``key`` holding each value 0 .. n_keys - 1."""
    bounds = np.searchsorted(key, np.arange(n_keys + 1), side="left")
    return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _fit_booster(
    x_fit: np.ndarray,
    y_fit: np.ndarray,
    x_stop: np.ndarray,
    y_stop: np.ndarray,
    cat_idx: list[int],
    config: TrainConfig,
    objective: str = "binary",
    w_fit: np.ndarray | None = None,
    w_stop: np.ndarray | None = None,
):
    """LightGBM on ``x_fit`` with early stopping on ``x_stop``, cut to its best iteration. The matrices are used
    as they are (no copy when they are C-ordered float32 or float64)."""
    import lightgbm as lgb

    names = [f"f{i}" for i in range(x_fit.shape[1])]
    dtrain = lgb.Dataset(x_fit, label=y_fit, weight=w_fit, feature_name=names, categorical_feature=cat_idx)
    dvalid = lgb.Dataset(x_stop, label=y_stop, weight=w_stop, reference=dtrain)
    return fit_early_stopped(_params(config, objective), dtrain, dvalid, config)


class _Learner:
    """Common plumbing: config, validation share, categorical handling, input checks, chunked scoring."""

    name = "learner"
    # Learners that fit one booster per treatment group order the rows by group as well as by train/validation.
    _by_group = False
    # Matrix columns after the features (the S-learner's treatment flag).
    _extra = 0

    def __init__(
        self,
        config: TrainConfig | None = None,
        valid_size: float = 0.2,
        categorical: Sequence[str] | None = None,
    ) -> None:
        if not 0.0 < valid_size < 1.0:
            raise ValueError(f"valid_size must be in (0, 1), got {valid_size}")
        self.config = config or uplift_config()
        self.valid_size = valid_size
        self.categorical = None if categorical is None else list(categorical)
        self.encoder: _Encoder | None = None

    def _prepare(self, X: pd.DataFrame, y, t) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[slice]]:
        """(x, y, t, blocks): rows sorted so that each block the boosters need is one contiguous slice of x.

        Blocks: [train, validation], or with ``_by_group`` [treated train, treated validation, control train,
        control validation]. The validation rows are ``valid_size`` of each treatment x outcome cell.
        """
        y, t = _flags(y, "outcome y"), _flags(t, "treatment t")
        if not (len(X) == y.size == t.size):
            raise ValueError(f"X, y and t differ in length: {len(X)}, {y.size}, {t.size}")
        for group, label in ((1.0, "treated"), (0.0, "control")):
            yg = y[t == group]
            if yg.size == 0 or yg.min() == yg.max():
                raise ValueError(f"the {label} rows need both outcomes to fit an uplift model")
        self.encoder = _Encoder(X, self.categorical)
        valid = _valid_mask(y, t, self.valid_size, self.config.seed)
        key = valid.astype(np.int8) + (2 * (t == 0) if self._by_group else 0)
        order = np.argsort(key, kind="stable")
        x = self.encoder.encode(X, rows=order, extra=self._extra)
        return x, y[order], t[order], _blocks(key[order], 4 if self._by_group else 2)

    def predict_uplift(self, X: pd.DataFrame) -> np.ndarray:
        """The uplift score of each row of ``X``, encoded and predicted :data:`PREDICT_CHUNK_ROWS` rows at a time."""
        if self.encoder is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted")
        out = np.empty(len(X), dtype=np.float64)
        for start in range(0, len(X), PREDICT_CHUNK_ROWS):
            part = X.iloc[start : start + PREDICT_CHUNK_ROWS]
            out[start : start + len(part)] = self._uplift(self.encoder.encode(part, extra=self._extra))
        return out

    def _predict(self, booster, x: np.ndarray) -> np.ndarray:
        # Scoring uses the same thread count as fitting (LightGBM would otherwise take every core).
        return booster.predict(x, num_threads=self.config.num_threads)

    def fit(self, X: pd.DataFrame, y, t) -> _Learner:  # pragma: no cover - abstract
        raise NotImplementedError

    def _uplift(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class SLearner(_Learner):
    """One classifier with the treatment flag as the last feature; uplift = p(x, t=1) - p(x, t=0)."""

    name = "s_learner"
    _extra = 1

    def fit(self, X: pd.DataFrame, y, t) -> SLearner:
        x, y, t, (fit, stop) = self._prepare(X, y, t)
        x[:, -1] = t
        cat = self.encoder.categorical_index
        self.booster = _fit_booster(x[fit], y[fit], x[stop], y[stop], cat, self.config)
        return self

    def _uplift(self, x: np.ndarray) -> np.ndarray:
        # The flag column is overwritten in place: no copy of the matrix per counterfactual.
        x[:, -1] = 1.0
        treated = self._predict(self.booster, x)
        x[:, -1] = 0.0
        return treated - self._predict(self.booster, x)


class TLearner(_Learner):
    """One classifier on treated rows, one on control rows; uplift = p_treated(x) - p_control(x)."""

    name = "t_learner"
    _by_group = True

    def fit(self, X: pd.DataFrame, y, t) -> TLearner:
        x, y, _, (t_fit, t_stop, c_fit, c_stop) = self._prepare(X, y, t)
        cat = self.encoder.categorical_index
        self.boosters = {
            g: _fit_booster(x[fit], y[fit], x[stop], y[stop], cat, self.config)
            for g, fit, stop in ((1.0, t_fit, t_stop), (0.0, c_fit, c_stop))
        }
        return self

    def _uplift(self, x: np.ndarray) -> np.ndarray:
        return self._predict(self.boosters[1.0], x) - self._predict(self.boosters[0.0], x)


class XLearner(_Learner):
    """Künzel et al. (2019): a T-learner (mu_1, mu_0); imputed effects D1 = y - mu_0(x) on treated rows and
    D0 = mu_1(x) - y on control rows; a regressor for each (tau_1, tau_0); uplift = g * tau_0 + (1 - g) * tau_1.

    ``propensity`` g is the treatment probability; ``None`` takes the treated share of the training rows, exact
    for a randomised experiment with a constant split.
    """

    name = "x_learner"
    _by_group = True

    def __init__(self, *args: Any, propensity: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if propensity is not None and not 0.0 < propensity < 1.0:
            raise ValueError(f"propensity must be in (0, 1), got {propensity}")
        self.propensity = propensity

    def fit(self, X: pd.DataFrame, y, t) -> XLearner:
        x, y, t, (t_fit, t_stop, c_fit, c_stop) = self._prepare(X, y, t)
        cat = self.encoder.categorical_index
        treated, control = slice(t_fit.start, t_stop.stop), slice(c_fit.start, c_stop.stop)
        mu1 = _fit_booster(x[t_fit], y[t_fit], x[t_stop], y[t_stop], cat, self.config)
        mu0 = _fit_booster(x[c_fit], y[c_fit], x[c_stop], y[c_stop], cat, self.config)
        # One imputed-effect array in the row order of x, so the same fit/stop slices select from it.
        d = np.empty_like(y)
        d[treated] = y[treated] - self._predict(mu0, x[treated])
        d[control] = self._predict(mu1, x[control]) - y[control]
        self.tau1 = _fit_booster(x[t_fit], d[t_fit], x[t_stop], d[t_stop], cat, self.config, "regression")
        self.tau0 = _fit_booster(x[c_fit], d[c_fit], x[c_stop], d[c_stop], cat, self.config, "regression")
        self.g = float(self.propensity if self.propensity is not None else t.mean())
        return self

    def _uplift(self, x: np.ndarray) -> np.ndarray:
        return self.g * self._predict(self.tau0, x) + (1.0 - self.g) * self._predict(self.tau1, x)


class ClassTransformation(_Learner):
    """Jaskowski & Jaroszewicz (2012): one classifier on z = y*t + (1-y)*(1-t); uplift = 2 p(z=1 | x) - 1.

    Valid when treatment and control are equally likely; otherwise rows are weighted so each group carries half
    the weight (0.5 / share), which restores that condition.
    """

    name = "class_transformation"

    def fit(self, X: pd.DataFrame, y, t) -> ClassTransformation:
        x, y, t, (fit, stop) = self._prepare(X, y, t)
        z = y * t + (1.0 - y) * (1.0 - t)
        share = t.mean()
        w = np.where(t == 1, 0.5 / share, 0.5 / (1.0 - share))
        cat = self.encoder.categorical_index
        self.booster = _fit_booster(
            x[fit], z[fit], x[stop], z[stop], cat, self.config, w_fit=w[fit], w_stop=w[stop]
        )
        return self

    def _uplift(self, x: np.ndarray) -> np.ndarray:
        return 2.0 * self._predict(self.booster, x) - 1.0


LEARNERS = {c.name: c for c in (SLearner, TLearner, XLearner, ClassTransformation)}


def default_learners(
    config: TrainConfig | None = None, categorical: Sequence[str] | None = None
) -> dict[str, _Learner]:
    """One of each learner, same settings (and the same ``categorical`` columns, auto-detected when None)."""
    return {name: cls(config, categorical=categorical) for name, cls in LEARNERS.items()}


def select_best(
    learners: Mapping[str, _Learner],
    X_train: pd.DataFrame,
    y,
    t,
    X_valid: pd.DataFrame,
    y_valid,
    t_valid,
    progress: Progress = None,
) -> tuple[str, _Learner, pd.DataFrame]:
    """Fit each learner in turn on the training rows and score it on the validation rows.

    Returns ``(name, learner, table)``: the learner with the highest normalised Qini on the validation rows
    (first listed wins a tie) and a table, best first, with ``learner``, ``qini``, ``auuc``, ``uplift_at_30`` and
    ``fit_seconds``. ``progress`` gets a line before and after each fit.
    """
    if not learners:
        raise ValueError("no learners to compare")
    say = say_to(progress)
    rows, fitted = [], {}
    for i, (name, learner) in enumerate(learners.items(), start=1):
        say(f"fitting {name} ({i}/{len(learners)}) on {len(X_train):,} rows")
        start = time.perf_counter()
        learner.fit(X_train, y, t)
        seconds = time.perf_counter() - start
        s = learner.predict_uplift(X_valid)
        fitted[name] = learner
        row = {
            "learner": name,
            "qini": qini_coefficient(y_valid, t_valid, s),
            "auuc": auuc(y_valid, t_valid, s),
            "uplift_at_30": uplift_at_k(y_valid, t_valid, s, 0.3),
            "fit_seconds": seconds,
        }
        rows.append(row)
        say(f"  {name}: valid qini {row['qini']:.4f}, auuc {row['auuc']:.4f} ({seconds:.1f} s)")
    table = pd.DataFrame(rows)
    table = table.sort_values("qini", ascending=False, kind="stable", ignore_index=True)
    best = str(table["learner"].iloc[0])
    return best, fitted[best], table


__all__ = [
    "LEARNERS",
    "PREDICT_CHUNK_ROWS",
    "ClassTransformation",
    "SLearner",
    "TLearner",
    "XLearner",
    "default_learners",
    "select_best",
    "uplift_config",
]
