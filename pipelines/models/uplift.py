"""Uplift modelling: Qini/uplift metrics with bootstrap intervals, and LightGBM meta-learners.

Metrics take an outcome ``y`` (0/1), a treatment flag ``t`` (1 = contacted, 0 = holdout) and an uplift score
``s`` (higher = target first). Rows with equal scores form one group: a curve only has points between groups, so
no metric depends on row order. Normalisation (docs/uplift.md): the Qini coefficient and AUUC are the area
between the model's curve and the random line, divided by the same area for the perfect curve (Radcliffe 2007;
scikit-uplift ``qini_auc_score`` / ``uplift_auc_score``): 1 = perfect ranking, 0 = random, < 0 = worse than
random.

Learners share ``fit(X, y, t) -> self`` and ``predict_uplift(X) -> ndarray``; every booster is LightGBM with the
deterministic parameters of :class:`pipelines.train.TrainConfig` and early stopping on a validation split drawn
from the training rows (stratified by treatment and outcome). Models are fitted one after the other, each with
``config.num_threads`` threads, so threads never exceed that number.

Memory: features are encoded once into a float32, row-major matrix whose rows are ordered by the blocks the
boosters train and stop on (train/validation, per treatment group where the learner splits by group), so every
booster reads a contiguous slice of it instead of a copy; scoring encodes and predicts in chunks of
:data:`PREDICT_CHUNK_ROWS` rows.

lightgbm is imported inside the functions that need it: importing this module stays cheap.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
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

QINI_COLUMNS = (
    "n_targeted",
    "fraction_targeted",
    "n_treated",
    "n_control",
    "responders_treated",
    "responders_control",
    "incremental_responses",
    "random_incremental",
)
PREDICT_CHUNK_ROWS = 100_000
NO_HETEROGENEITY = "no reliable heterogeneity"
HETEROGENEITY = "heterogeneity found"
WORSE_THAN_RANDOM = "model ranks worse than random"


# --------------------------------------------------------------------------------------------------------------
# Metrics


def _check(y, t, s) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=float).ravel()
    t = np.asarray(t, dtype=float).ravel()
    s = np.asarray(s, dtype=float).ravel()
    if not (y.shape == t.shape == s.shape):
        raise ValueError(f"y, t and s differ in length: {y.size}, {t.size}, {s.size}")
    if y.size == 0:
        raise ValueError("no rows to evaluate")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("outcome y must be 0/1")
    if not np.isin(t, (0.0, 1.0)).all():
        raise ValueError("treatment t must be 0/1")
    if np.isnan(s).any():
        raise ValueError(f"{int(np.isnan(s).sum())} scores are NaN")
    if t.min() == t.max():
        raise ValueError("treatment t holds a single group: uplift metrics need treated and control rows")
    return y, t, s


def _cumulative(y: np.ndarray, t: np.ndarray, s: np.ndarray, w: np.ndarray | None = None):
    """Cumulative counts at the end of every group of equal scores, best scores first, starting at 0.

    ``w`` (optional, shape ``(n,)`` or ``(b, n)``) weighs rows, e.g. bootstrap multiplicities. Returns
    ``(n, n_t, r_t, r_c)``: rows targeted, treated rows targeted, treated and control responders targeted.
    """
    order = np.argsort(-s, kind="stable")
    s_sorted = s[order]
    ends = np.r_[np.flatnonzero(np.diff(s_sorted) != 0), s.size - 1]
    yt, yc = (y * t)[order], (y * (1.0 - t))[order]
    ts = t[order]
    if w is None:
        parts = (np.ones_like(ts), ts, yt, yc)
    else:
        ws = w[..., order]
        parts = (ws, ws * ts, ws * yt, ws * yc)
    out = []
    for p in parts:
        c = np.cumsum(p, axis=-1)[..., ends]
        zero = np.zeros(c.shape[:-1] + (1,))
        out.append(np.concatenate([zero, c], axis=-1))
    return tuple(out)


def _qini_values(n, n_t, r_t, r_c) -> np.ndarray:
    """Y_t(k) - Y_c(k) * N_t(k) / N_c(k), with 0 for the control term while no control row is targeted."""
    n_c = n - n_t
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(n_c > 0, n_t / np.where(n_c > 0, n_c, 1.0), 0.0)
    return r_t - r_c * ratio


def _uplift_values(n, n_t, r_t, r_c) -> np.ndarray:
    """(Y_t(k)/N_t(k) - Y_c(k)/N_c(k)) * N(k), each rate 0 while its group is empty."""
    n_c = n - n_t
    with np.errstate(divide="ignore", invalid="ignore"):
        rate_t = np.where(n_t > 0, r_t / np.where(n_t > 0, n_t, 1.0), 0.0)
        rate_c = np.where(n_c > 0, r_c / np.where(n_c > 0, n_c, 1.0), 0.0)
    return (rate_t - rate_c) * n


def _area(x: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Trapezoid area under (x, v) along the last axis; the random line (0,0)-(x_end, v_end) subtracted."""
    dx = np.diff(x, axis=-1)
    area = np.sum(dx * (v[..., 1:] + v[..., :-1]) / 2.0, axis=-1)
    return area - x[..., -1] * v[..., -1] / 2.0


def _perfect_qini_score(y: np.ndarray, t: np.ndarray) -> np.ndarray:
    # Treated responders first, control responders last: the best ordering the observed outcomes allow.
    return y * t - y * (1.0 - t)


def _perfect_uplift_score(y: np.ndarray, t: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    # scikit-uplift's perfect_uplift_curve: treated responders and control non-responders first.
    weight = np.ones_like(y) if w is None else w
    control_responders = np.sum(weight * y * (1 - t))
    treated_non_responders = np.sum(weight * (1 - y) * t)
    summand = y if control_responders > treated_non_responders else t
    return 2.0 * (y == t) + summand


def _normalised(kind: str, y, t, s, w=None) -> np.ndarray | float:
    values = _qini_values if kind == "qini" else _uplift_values
    n, *rest = _cumulative(y, t, s, w)
    actual = _area(n, values(n, *rest))
    perfect_s = _perfect_qini_score(y, t) if kind == "qini" else _perfect_uplift_score(y, t, w)
    pn, *prest = _cumulative(y, t, perfect_s, w)
    perfect = _area(pn, values(pn, *prest))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(perfect != 0, actual / np.where(perfect != 0, perfect, 1.0), np.nan)


def qini_curve(y, t, s, bins: int | None = None) -> pd.DataFrame:
    """The Qini curve, best scores first: one row at the origin and one after each group of equal scores.

    ``incremental_responses`` at k targeted rows is Y_t(k) - Y_c(k) * N_t(k) / N_c(k) (treated responders minus
    control responders scaled to the treated count); ``random_incremental`` is the random-targeting line to the
    curve's end point. With ``bins``, the curve is linearly interpolated at fractions 0, 1/bins, ..., 1.
    """
    y, t, s = _check(y, t, s)
    n, n_t, r_t, r_c = _cumulative(y, t, s)
    q = _qini_values(n, n_t, r_t, r_c)
    table = pd.DataFrame(
        {
            "n_targeted": n,
            "fraction_targeted": n / y.size,
            "n_treated": n_t,
            "n_control": n - n_t,
            "responders_treated": r_t,
            "responders_control": r_c,
            "incremental_responses": q,
            "random_incremental": q[-1] * n / y.size,
        }
    )
    if bins is None:
        return table
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    grid = np.linspace(0.0, 1.0, bins + 1)
    x = table["fraction_targeted"].to_numpy()
    out = {c: np.interp(grid, x, table[c].to_numpy()) for c in QINI_COLUMNS if c != "fraction_targeted"}
    out["fraction_targeted"] = grid
    return pd.DataFrame(out)[list(QINI_COLUMNS)]


def qini_coefficient(y, t, s, normalise: bool = True) -> float:
    """Area between the Qini curve and the random line.

    With ``normalise`` (default), divided by the same area for the perfect Qini curve, the one obtained by ranking
    treated responders first and control responders last (Radcliffe 2007; scikit-uplift ``qini_auc_score`` with
    ``negative_effect=True``): 1 = perfect, 0 = random, < 0 = worse than random. Without it, the raw area in
    incremental responses x rows.
    """
    y, t, s = _check(y, t, s)
    if normalise:
        return float(_normalised("qini", y, t, s))
    n, *rest = _cumulative(y, t, s)
    return float(_area(n, _qini_values(n, *rest)))


def auuc(y, t, s) -> float:
    """Normalised area under the uplift curve: the area between the curve (rate_t(k) - rate_c(k)) * k and the
    random line, divided by the same area for the perfect uplift curve (scikit-uplift ``uplift_auc_score``:
    treated responders and control non-responders first). 1 = perfect, 0 = random."""
    y, t, s = _check(y, t, s)
    return float(_normalised("uplift", y, t, s))


def uplift_at_k(y, t, s, k: float = 0.3) -> float:
    """Treated response rate minus control response rate among the ``k`` share of rows with the highest scores
    (scikit-uplift ``uplift_at_k``, strategy "overall": one cut over all rows, then the rates per group).

    The cut keeps floor(n * k) rows; when it falls inside a group of equal scores, every row of that group counts
    with the same fractional weight, so the result does not depend on row order.
    """
    y, t, s = _check(y, t, s)
    if not 0.0 < k <= 1.0:
        raise ValueError(f"k must be in (0, 1], got {k}")
    size = int(y.size * k)
    if size < 1:
        raise ValueError(f"k={k} keeps no row of {y.size}")
    threshold = np.sort(s)[::-1][size - 1]
    above = s > threshold
    tied = s == threshold
    weight = above.astype(float) + tied * ((size - above.sum()) / tied.sum())
    w_t, w_c = weight * t, weight * (1.0 - t)
    if w_t.sum() == 0 or w_c.sum() == 0:
        raise ValueError("the top k holds no treated or no control row")
    return float((w_t * y).sum() / w_t.sum() - (w_c * y).sum() / w_c.sum())


_VECTORISED = {qini_coefficient: "qini", auuc: "uplift"}


def bootstrap_ci(
    metric_fn: Callable[..., float],
    y,
    t,
    s,
    n_boot: int = 200,
    alpha: float = 0.05,
    seed: int = 42,
) -> tuple[float, float]:
    """Percentile bootstrap interval ``(low, high)`` at level 1 - ``alpha`` of ``metric_fn(y, t, s)``.

    Resampling is stratified by treatment (each resample keeps the treated and control counts). For
    :func:`qini_coefficient` and :func:`auuc` (normalised), all resamples are scored at once as multiplicity
    weights over one sort; any other metric is called once per resample.
    """
    y, t, s = _check(y, t, s)
    rng = np.random.default_rng(seed)
    treated, control = np.flatnonzero(t == 1), np.flatnonzero(t == 0)
    kind = _VECTORISED.get(metric_fn)
    values = []
    if kind is not None:
        # Multiplicities per row: stratified resampling is a multinomial draw within each group.
        chunk = max(1, int(4e6 // y.size))
        for start in range(0, n_boot, chunk):
            b = min(chunk, n_boot - start)
            w = np.zeros((b, y.size))
            w[:, treated] = rng.multinomial(treated.size, np.full(treated.size, 1 / treated.size), size=b)
            w[:, control] = rng.multinomial(control.size, np.full(control.size, 1 / control.size), size=b)
            if kind == "qini":
                values.append(_normalised("qini", y, t, s, w))
            else:
                values.append(np.array([_normalised("uplift", y, t, s, w[i]) for i in range(b)]).ravel())
        stats = np.concatenate(values)
    else:
        idx_t = rng.choice(treated, size=(n_boot, treated.size), replace=True)
        idx_c = rng.choice(control, size=(n_boot, control.size), replace=True)
        idx = np.concatenate([idx_t, idx_c], axis=1)
        stats = np.array([metric_fn(y[i], t[i], s[i]) for i in idx])
    stats = stats[np.isfinite(stats)]
    if stats.size == 0:
        raise ValueError("the metric is undefined on every resample")
    low, high = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def verdict(qini: float, ci_low: float, ci_high: float) -> str:
    """ "no reliable heterogeneity" when the interval includes zero; "heterogeneity found" when it lies above
    zero; "model ranks worse than random" when it lies below (not a reason to target by the model either)."""
    if not ci_low <= ci_high:
        raise ValueError(f"interval bounds out of order: [{ci_low}, {ci_high}]")
    if ci_low <= 0.0 <= ci_high:
        return NO_HETEROGENEITY
    return HETEROGENEITY if ci_low > 0 else WORSE_THAN_RANDOM


# --------------------------------------------------------------------------------------------------------------
# Learners


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

    The encoding is :meth:`train.CalibratedModel.encode`'s (numerics as numbers, categoricals as codes of the
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
    progress: Callable[[str], None] | None = None,
) -> tuple[str, _Learner, pd.DataFrame]:
    """Fit each learner in turn on the training rows and score it on the validation rows.

    Returns ``(name, learner, table)``: the learner with the highest normalised Qini on the validation rows
    (first listed wins a tie) and a table, best first, with ``learner``, ``qini``, ``auuc``, ``uplift_at_30`` and
    ``fit_seconds``. ``progress`` gets a line before and after each fit.
    """
    if not learners:
        raise ValueError("no learners to compare")
    say = progress or (lambda _msg: None)
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
    "HETEROGENEITY",
    "LEARNERS",
    "NO_HETEROGENEITY",
    "WORSE_THAN_RANDOM",
    "ClassTransformation",
    "SLearner",
    "TLearner",
    "XLearner",
    "auuc",
    "bootstrap_ci",
    "default_learners",
    "qini_coefficient",
    "qini_curve",
    "select_best",
    "uplift_at_k",
    "uplift_config",
    "verdict",
]
