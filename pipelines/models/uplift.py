"""Uplift learners: S-, T-, X- and R-learners, a T-learner with shared trees and the class transformation, LightGBM
under each. The choice among them by cross-fitting is :mod:`pipelines.models.uplift_selection`.

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

from collections.abc import Sequence
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


def stratified_folds(y, t, k: int, seed: int) -> np.ndarray:
    """The fold (0 .. k-1) of each row: the rows of each treatment x outcome cell, in an order shuffled by ``seed``,
    are dealt to the folds in turn (each cell starting where the previous one stopped), so the folds are disjoint,
    cover every row, differ in size by at most one row and hold each cell in the same proportions."""
    y, t = np.asarray(y, dtype=float).ravel(), np.asarray(t, dtype=float).ravel()
    if k < 2:
        raise ValueError(f"k must be >= 2 folds, got {k}")
    rng = np.random.default_rng(seed)
    folds = np.empty(y.size, dtype=np.int64)
    cell, dealt = t * 2 + y, 0
    for c in np.unique(cell):
        idx = rng.permutation(np.flatnonzero(cell == c))
        folds[idx] = (np.arange(idx.size) + dealt) % k
        dealt += idx.size
    return folds


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
    init_fit: np.ndarray | None = None,
    init_stop: np.ndarray | None = None,
):
    """LightGBM on ``x_fit`` with early stopping on ``x_stop``, cut to its best iteration; ``init_*`` are raw
    scores the trees start from (their predictions exclude them). The matrices are used as they are (no copy when
    they are C-ordered float32 or float64)."""
    import lightgbm as lgb

    names = [f"f{i}" for i in range(x_fit.shape[1])]
    dtrain = lgb.Dataset(
        x_fit, label=y_fit, weight=w_fit, init_score=init_fit, feature_name=names, categorical_feature=cat_idx
    )
    dvalid = lgb.Dataset(x_stop, label=y_stop, weight=w_stop, init_score=init_stop, reference=dtrain)
    return fit_early_stopped(_params(config, objective), dtrain, dvalid, config)


class _Learner:
    """Common plumbing: config, validation share, categorical handling, input checks, chunked scoring."""

    name = "learner"
    # Learners that fit one booster per treatment group order the rows by group as well as by train/validation;
    # with _group_inner the group varies fastest (treated fit, control fit, treated stop, control stop), so the fit
    # rows of both groups are one slice too.
    _by_group = False
    _group_inner = False
    # The fit rows split into this many stratified parts, each a block (the R-learner's cross-fitting).
    _fit_parts = 1
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

        Blocks: [fit part 1, ..., fit part ``_fit_parts``, validation], or with ``_by_group`` those blocks for the
        treated rows then for the control rows ([treated fit, control fit, treated validation, control validation]
        with ``_group_inner``). The validation rows are ``valid_size`` of each treatment x outcome cell; the fit
        parts split the other rows the same way (:func:`stratified_folds`).
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
        parts = self._fit_parts
        block = np.where(valid, parts, 0)
        if parts > 1:
            block[~valid] = stratified_folds(y[~valid], t[~valid], parts, self.config.seed + 1)
        group = (t == 0).astype(np.int64) if self._by_group else np.zeros(y.size, dtype=np.int64)
        key = group + 2 * block if self._group_inner else block + (parts + 1) * group
        order = np.argsort(key, kind="stable")
        x = self.encoder.encode(X, rows=order, extra=self._extra)
        return x, y[order], t[order], _blocks(key[order], (parts + 1) * (2 if self._by_group else 1))

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
        self.propensity = _treated_share(propensity)

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


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _effect_config(config: TrainConfig) -> TrainConfig:
    """The settings of a booster that learns an effect (a small signal in noisy targets): half the leaves and four
    times the rows a leaf, so that a split needs more evidence than the outcome models ask for."""
    return replace(
        config, num_leaves=max(4, config.num_leaves // 2), min_child_samples=4 * config.min_child_samples
    )


def _treated_share(propensity: float | None) -> float | None:
    if propensity is not None and not 0.0 < propensity < 1.0:
        raise ValueError(f"propensity must be in (0, 1), got {propensity}")
    return propensity


class RLearner(_Learner):
    """Nie & Wager (2021), Robinson's residualisation: an outcome model m(x) = P(y=1 | x) pooled over both groups,
    cross-fitted on two halves of the fit rows (each row's residual y - m(x) comes from the model that did not see
    it); the propensity e (``propensity``, default the treated share: exact for a randomised experiment); then
    tau(x) minimising sum (t - e)^2 ((y - m) / (t - e) - tau(x))^2, a LightGBM regression on that pseudo-outcome
    with weights (t - e)^2 and the settings of :func:`_effect_config`. uplift = tau(x).

    Why: m(x) removes the baseline variation a small effect sits under (a 1-point lift on a 10 % base rate), which
    S- and T-learners must difference away with two noisy predictions; a regression that finds no effect stops
    after a few trees, near a constant, instead of ranking by noise.
    """

    name = "r_learner"
    _fit_parts = 2

    def __init__(self, *args: Any, propensity: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.propensity = _treated_share(propensity)

    def fit(self, X: pd.DataFrame, y, t) -> RLearner:
        x, y, t, (a, b, stop) = self._prepare(X, y, t)
        cat = self.encoder.categorical_index
        m_a = _fit_booster(x[b], y[b], x[stop], y[stop], cat, self.config)  # scores part a
        m_b = _fit_booster(x[a], y[a], x[stop], y[stop], cat, self.config)  # scores part b
        m = np.empty_like(y)
        m[a], m[b] = self._predict(m_a, x[a]), self._predict(m_b, x[b])
        m[stop] = (self._predict(m_a, x[stop]) + self._predict(m_b, x[stop])) / 2.0
        self.e = float(self.propensity if self.propensity is not None else t.mean())
        r = t - self.e
        pseudo, w = (y - m) / r, r * r
        fit = slice(a.start, b.stop)
        self.tau = _fit_booster(
            x[fit],
            pseudo[fit],
            x[stop],
            pseudo[stop],
            cat,
            _effect_config(self.config),
            "regression",
            w[fit],
            w[stop],
        )
        return self

    def _uplift(self, x: np.ndarray) -> np.ndarray:
        return self._predict(self.tau, x)


class SharedTLearner(_Learner):
    """A T-learner whose groups share their trees: a booster f on the rows of both groups (the outcome's common
    part, treatment ignored), then per group a booster g_1, g_0 that starts from f's raw score and learns only how
    that group differs (:func:`_effect_config`), stopped on its group's validation rows.
    uplift = sigmoid(f + g_1) - sigmoid(f + g_0).

    Why: a plain T-learner learns the baseline twice, once per group on part of the rows, and the two baselines'
    noise shows as uplift; here the baseline is learned once from every row, and a group booster that finds no
    difference stops early, leaving an uplift near 0 rather than noise.
    """

    name = "shared_t_learner"
    _by_group = True
    _group_inner = True

    def fit(self, X: pd.DataFrame, y, t) -> SharedTLearner:
        x, y, _, (t_fit, c_fit, t_stop, c_stop) = self._prepare(X, y, t)
        cat = self.encoder.categorical_index
        fit, stop = slice(t_fit.start, c_fit.stop), slice(t_stop.start, c_stop.stop)
        self.base = _fit_booster(x[fit], y[fit], x[stop], y[stop], cat, self.config)
        f = self.base.predict(x, raw_score=True, num_threads=self.config.num_threads)
        group_config = _effect_config(self.config)
        self.groups = {
            g: _fit_booster(x[gf], y[gf], x[gs], y[gs], cat, group_config, init_fit=f[gf], init_stop=f[gs])
            for g, gf, gs in ((1.0, t_fit, t_stop), (0.0, c_fit, c_stop))
        }
        return self

    def _uplift(self, x: np.ndarray) -> np.ndarray:
        def raw(booster):
            return booster.predict(x, raw_score=True, num_threads=self.config.num_threads)

        f = raw(self.base)
        return _sigmoid(f + raw(self.groups[1.0])) - _sigmoid(f + raw(self.groups[0.0]))


LEARNERS = {c.name: c for c in (SLearner, TLearner, XLearner, ClassTransformation, RLearner, SharedTLearner)}


def default_learners(
    config: TrainConfig | None = None,
    categorical: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
) -> dict[str, _Learner]:
    """One learner of each of ``names`` (default: every learner of :data:`LEARNERS`), same settings (and the same
    ``categorical`` columns, auto-detected when None)."""
    names = list(LEARNERS) if names is None else list(names)
    unknown = [n for n in names if n not in LEARNERS]
    if unknown:
        raise ValueError(f"unknown uplift learner(s): {', '.join(unknown)}; known: {', '.join(LEARNERS)}")
    return {name: LEARNERS[name](config, categorical=categorical) for name in names}


__all__ = [
    "LEARNERS",
    "PREDICT_CHUNK_ROWS",
    "ClassTransformation",
    "RLearner",
    "SLearner",
    "SharedTLearner",
    "TLearner",
    "XLearner",
    "default_learners",
    "stratified_folds",
    "uplift_config",
]
