"""Customer value: predicted spend over a horizon, how it is judged, and the LightGBM model that predicts it.

* Metrics (pure functions over actual and predicted spend per customer): :func:`normalised_gini`,
  :func:`top_share`, :func:`total_error`, :func:`decile_error`, all of them :func:`value_metrics`. Customers with
  tied predictions are ranked by the expectation over every order of the tie (their actual spend is averaged
  inside the tie), so no metric depends on the input order.
* The platform's ``value`` model: LightGBM regression of future spend (:class:`ValueModel`, boosters cross-fitted
  by customer and carrying their feature and category lists; :func:`fit_value_model`), and :func:`predict_value`,
  which scores a wide table with it or with its registered MLflow pyfunc.

The BG/NBD + Gamma-Gamma baseline and the CDNOW benchmark are :mod:`pipelines.models.value_baseline`; training on
the bank's lake, registration and promotion are :mod:`pipelines.models.value_training`. lightgbm is imported inside
the functions that need it: importing this module stays cheap.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from pipelines.models.propensity import (
    CalibratedModel,
    _category_list,
    fit_early_stopped,
)

LABEL = "future_spend"
ID = "customer_id"
TOP_SHARE = 0.2

# --------------------------------------------------------------------------------------------------------------
# Metrics


def _pair(actual, predicted) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(actual, dtype=float).ravel()
    p = np.asarray(predicted, dtype=float).ravel()
    if a.shape != p.shape:
        raise ValueError(f"actual and predicted differ in length: {a.size} vs {p.size}")
    if a.size == 0:
        raise ValueError("no customers to evaluate")
    for what, v in (("actual", a), ("predicted", p)):
        if not np.isfinite(v).all():
            raise ValueError(f"{int((~np.isfinite(v)).sum())} {what} values are NaN or infinite")
    return a, p


def _ranked_actual(a: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Actual spend ordered by prediction, highest first, with each tie group's actual spend replaced by the
    group mean (the expected value over every order of the tied customers); and the predictions in that order."""
    order = np.argsort(-p, kind="stable")
    ps, xs = p[order], a[order]
    group = np.cumsum(np.r_[True, ps[1:] != ps[:-1]]) - 1
    means = np.bincount(group, weights=xs) / np.bincount(group)
    return means[group], ps


def _gini(ranked: np.ndarray) -> float:
    """Area between the cumulative share of spend (customers ranked) and the diagonal, in the discrete form:
    ``mean(cumulative share) - (n + 1) / (2n)``."""
    total = ranked.sum()
    if total <= 0:
        raise ValueError("actual spend sums to zero or less: the Gini is undefined")
    n = ranked.size
    return float(np.cumsum(ranked).sum() / total / n - (n + 1) / (2 * n))


def normalised_gini(actual, predicted) -> float:
    """Gini of actual spend ranked by ``predicted``, divided by the Gini of actual spend ranked by itself.

    1 is a perfect ranking, 0 a random one, negative worse than random; a constant prediction scores 0. Only
    the order of ``predicted`` matters (scale and level do not).
    """
    a, p = _pair(actual, predicted)
    best = _gini(np.sort(a)[::-1])
    if best == 0:
        raise ValueError("every customer has the same actual spend: the normalised Gini is undefined")
    return _gini(_ranked_actual(a, p)[0]) / best


def top_share(actual, predicted, q: float = TOP_SHARE) -> float:
    """Share of total actual spend made by the ``q`` fraction of customers with the highest predictions
    (``q * n`` customers; a fractional last customer counts pro rata)."""
    if not 0 < q <= 1:
        raise ValueError(f"q must be in (0, 1], got {q}")
    a, p = _pair(actual, predicted)
    total = a.sum()
    if total <= 0:
        raise ValueError("actual spend sums to zero or less: the top share is undefined")
    cumulative = np.r_[0.0, np.cumsum(_ranked_actual(a, p)[0])]
    return float(np.interp(q * a.size, np.arange(a.size + 1), cumulative) / total)


def total_error(actual, predicted) -> float:
    """Predicted total over actual total, minus 1: -0.17 means total spend under-predicted by 17 %."""
    a, p = _pair(actual, predicted)
    if a.sum() <= 0:
        raise ValueError("actual spend sums to zero or less: the total error is undefined")
    return float(p.sum() / a.sum() - 1)


DECILE_ERROR_COLUMNS = (
    "decile",
    "count",
    "mean_predicted",
    "mean_actual",
    "error",
    "actual_share",
    "cumulative_actual_share",
)


def decile_error(actual, predicted, bins: int = 10) -> pd.DataFrame:
    """One row per predicted-value decile, highest predictions first (decile 1): count, mean predicted, mean
    actual, ``error`` = mean predicted / mean actual - 1 (NaN where the decile's actual spend is 0), the decile's
    share of total actual spend and the cumulative share down to it.

    Customers are split into ``bins`` groups of equal size in prediction order (the first groups take one more
    when ``n`` does not divide evenly); inside a prediction tie actual spend is averaged, as in every metric here.
    """
    a, p = _pair(actual, predicted)
    if a.size < bins:
        raise ValueError(f"need at least {bins} customers for {bins} bins, got {a.size}")
    ranked, ps = _ranked_actual(a, p)
    groups = np.array_split(np.arange(a.size), bins)
    count = np.array([g.size for g in groups])
    mean_predicted = np.array([ps[g].mean() for g in groups])
    mean_actual = np.array([ranked[g].mean() for g in groups])
    total = ranked.sum()
    share = np.array([ranked[g].sum() for g in groups]) / total if total else np.full(bins, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        error = np.where(mean_actual != 0, mean_predicted / mean_actual - 1, np.nan)
    return pd.DataFrame(
        {
            "decile": np.arange(1, bins + 1),
            "count": count,
            "mean_predicted": mean_predicted,
            "mean_actual": mean_actual,
            "error": error,
            "actual_share": share,
            "cumulative_actual_share": np.cumsum(share),
        }
    )


def value_metrics(actual, predicted) -> dict[str, float]:
    """normalised_gini, top20_share, total_error, plus top20_share_best (the share a perfect ranking captures),
    mean_actual, mean_predicted, mae and n."""
    a, p = _pair(actual, predicted)
    return {
        "normalised_gini": normalised_gini(a, p),
        "top20_share": top_share(a, p, TOP_SHARE),
        "total_error": total_error(a, p),
        "top20_share_best": top_share(a, a, TOP_SHARE),
        "mean_actual": float(a.mean()),
        "mean_predicted": float(p.mean()),
        "mae": float(np.abs(a - p).mean()),
        "n": float(a.size),
    }


# --------------------------------------------------------------------------------------------------------------
# The value model


OBJECTIVES = ("poisson", "tweedie", "regression")


@dataclass(frozen=True)
class ValueConfig:
    """LightGBM settings of the value model and the margins a challenger must beat the champion by.

    ``objective``: ``"poisson"`` (the default: log link, and as its canonical link the fitted total matches the
    training total; it copes with the many zero-spend customers and the long tail), ``"tweedie"`` (log link, but
    with a variance power above 1 it under-predicts totals: -7 % on CDNOW) or ``"regression"`` (L2 on spend,
    predictions clipped at 0; ranks worse on CDNOW). ``folds``: boosters cross-fitted by customer
    (:func:`fit_value_model`). Promotion (:func:`decide_value_promotion`): normalised Gini up by at least
    ``min_gini_gain`` and ``|total_error|`` no more than ``max_total_error_worsening`` above the champion's.
    """

    model_name: str = "value"
    objective: Literal["poisson", "tweedie", "regression"] = "poisson"
    folds: int = 5
    tweedie_variance_power: float = 1.5
    learning_rate: float = 0.03
    n_estimators: int = 3000
    early_stopping_rounds: int = 100
    num_leaves: int = 15
    min_child_samples: int = 50
    feature_fraction: float = 0.9
    bagging_fraction: float = 0.8
    bagging_freq: int = 1
    lambda_l2: float = 1.0
    seed: int = 42
    num_threads: int = 2
    min_gini_gain: float = 0.002
    max_total_error_worsening: float = 0.05

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if not 1 < self.tweedie_variance_power < 2:
            raise ValueError(f"tweedie_variance_power must be in (1, 2), got {self.tweedie_variance_power}")
        if self.n_estimators < 1 or self.early_stopping_rounds < 1:
            raise ValueError("n_estimators and early_stopping_rounds must be >= 1")
        if self.folds < 2:
            raise ValueError(f"folds must be at least 2 (cross-fitting), got {self.folds}")
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", self.model_name):
            raise ValueError(f"model_name may hold letters, digits, '_', '.', '-' only: {self.model_name!r}")

    def lgb_params(self) -> dict[str, Any]:
        """LightGBM parameters; deterministic for a given seed and thread count."""
        objective = {
            "poisson": {"objective": "poisson", "metric": "poisson"},
            "tweedie": {
                "objective": "tweedie",
                "tweedie_variance_power": self.tweedie_variance_power,
                "metric": "tweedie",
            },
            "regression": {"objective": "regression", "metric": "l2"},
        }[self.objective]
        return {
            **objective,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": self.bagging_freq,
            "lambda_l2": self.lambda_l2,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self.num_threads,
            "verbose": -1,
        }


class ValueModel:
    """``k`` LightGBM regression boosters (one per cross-fitting fold) with the feature and category lists learned
    at fit time: a frame in, predicted spend out (:meth:`predict`, the mean of the boosters' predictions).

    Encoding is the churn model's (:meth:`propensity.CalibratedModel.encode`): numerics as floats, categoricals as codes
    of the fit-time category lists, an unseen category missing rather than another category's code.
    """

    def __init__(
        self,
        boosters: Sequence[Any],
        features: Sequence[str],
        categories: Mapping[str, Sequence],
        best_iterations: Sequence[int],
        objective: str,
    ) -> None:
        self.boosters = list(boosters)
        self.features = list(features)
        self.categories = {k: list(v) for k, v in categories.items()}
        self.best_iterations = [int(i) for i in best_iterations]
        self.objective = objective

    @property
    def categorical(self) -> list[str]:
        return [f for f in self.features if f in self.categories]

    def _encoder(self) -> CalibratedModel:
        return CalibratedModel(None, self.features, self.categories, "none", {}, 0)

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """The float matrix the boosters see (see :meth:`propensity.CalibratedModel.encode`)."""
        return self._encoder().encode(frame)

    def unseen_categories(self, frame: pd.DataFrame) -> dict[str, int]:
        """Per categorical column, how many non-missing values are not in the fit-time category list."""
        return self._encoder().unseen_categories(frame)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Predicted spend over the model's horizon, one per row (never negative)."""
        if not self.boosters:
            raise RuntimeError("the value model has no fitted booster")
        x = self.encode(frame)
        pred = np.zeros(len(frame))
        for booster, best in zip(self.boosters, self.best_iterations, strict=True):
            pred += np.asarray(booster.predict(x, num_iteration=best), dtype=np.float64)
        return np.maximum(pred / len(self.boosters), 0.0)

    def feature_importance(self) -> pd.DataFrame:
        """Total gain and split count per feature summed over the boosters, highest gain first."""
        gain = np.zeros(len(self.features))
        split = np.zeros(len(self.features))
        for booster, best in zip(self.boosters, self.best_iterations, strict=True):
            gain += booster.feature_importance(importance_type="gain", iteration=best)
            split += booster.feature_importance(importance_type="split", iteration=best)
        table = pd.DataFrame({"feature": self.features, "gain": gain, "split": split})
        table["gain_share"] = table["gain"] / (table["gain"].sum() or 1.0)
        return table.sort_values(["gain", "feature"], ascending=[False, True], ignore_index=True)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["boosters"] = [b.model_to_string(num_iteration=-1) for b in self.boosters]
        return state

    def __setstate__(self, state: dict) -> None:
        import lightgbm as lgb

        state = dict(state)
        state["boosters"] = [lgb.Booster(model_str=text) for text in state["boosters"]]
        self.__dict__.update(state)


def spend_labels(frame: pd.DataFrame, label: str, objective: str) -> np.ndarray:
    if label not in frame.columns:
        raise KeyError(f"label column {label!r} is missing")
    y = pd.to_numeric(frame[label]).to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isnan(y).any():
        raise ValueError(f"label column {label!r} has {int(np.isnan(y).sum())} missing values")
    if objective != "regression" and (y < 0).any():
        raise ValueError(f"label column {label!r} has negative spend: the {objective} objective needs y >= 0")
    return y


def unit_hash(ids, salt: str) -> np.ndarray:
    """A uniform number in [0, 1) per id, fixed by the id and ``salt`` alone (not by the other ids or the row
    order), so a customer lands in the same fold or split in every run."""
    key = f"{salt:<16}"[:16]
    hashed = pd.util.hash_array(np.asarray(ids, dtype=object), hash_key=key, categorize=False)
    return (hashed >> np.uint64(11)).astype(np.float64) / float(2**53)


def customer_folds(ids, folds: int, seed: int) -> np.ndarray:
    """Fold number (0 .. ``folds`` - 1) per id, from a seeded hash of the id: every row of a customer (several
    snapshots) falls in the same fold."""
    return np.minimum((unit_hash(ids, f"fold{seed}") * folds).astype(np.int64), folds - 1)


def fit_value_model(
    frame: pd.DataFrame,
    features: Sequence[str],
    categorical: Sequence[str],
    label: str,
    config: ValueConfig | None = None,
) -> ValueModel:
    """LightGBM regression of ``label`` (spend), cross-fitted: customers are split into ``config.folds`` folds (by
    ``customer_id`` when the frame has it, so a customer's snapshots stay together); booster ``k`` trains on the
    other folds and early-stops on fold ``k``. The model averages the boosters, so every training customer is
    used for fitting and for early stopping, never both by the same booster. Category lists come from ``frame``
    (its declared categories when a column is Categorical)."""
    import lightgbm as lgb

    config = config or ValueConfig()
    features = list(features)
    categorical = [c for c in categorical if c in features]
    if len(set(features)) != len(features):
        raise ValueError("features contain duplicates")
    if label in features:
        raise ValueError(f"label column {label!r} is also listed as a feature")
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise KeyError(f"training frame lacks feature column(s): {', '.join(missing)}")
    y = spend_labels(frame, label, config.objective)
    if y.sum() <= 0:
        raise ValueError("training spend sums to zero: nothing to learn")
    model = ValueModel([], features, {c: _category_list(frame[c]) for c in categorical}, [], config.objective)
    x = model.encode(frame)
    ids = frame[ID].to_numpy() if ID in frame.columns else np.arange(len(frame))
    fold = customer_folds(ids, config.folds, config.seed)
    names = [f"f{i}" for i in range(len(features))]
    cat_idx = [features.index(c) for c in categorical]
    for k in range(config.folds):
        fit, stop = fold != k, fold == k
        if not stop.any() or not fit.any():
            raise ValueError(f"fold {k} of {config.folds} is empty: too few customers to cross-fit")
        dtrain = lgb.Dataset(x[fit], label=y[fit], feature_name=names, categorical_feature=cat_idx)
        dvalid = lgb.Dataset(x[stop], label=y[stop], reference=dtrain)
        booster = fit_early_stopped({**config.lgb_params(), "seed": config.seed + k}, dtrain, dvalid, config)
        model.boosters.append(booster)
        model.best_iterations.append(booster.current_iteration())
    return model


def predict_value(model: Any, wide: pd.DataFrame) -> pd.Series:
    """Predicted spend per row of ``wide`` (a wide table with the model's features), named ``predicted_value``
    and indexed by ``customer_id`` when ``wide`` has that column.

    ``model`` is a :class:`ValueModel` or the MLflow pyfunc of a registered ``value`` version (e.g.
    ``registry.load_champion("value", uri)``); both score through the same encoder and category lists.
    """
    if not isinstance(model, ValueModel):
        unwrap = getattr(model, "unwrap_python_model", None)
        inner = getattr(unwrap(), "model", None) if unwrap is not None else None
        if not isinstance(inner, ValueModel):
            raise TypeError(f"expected a ValueModel or a value pyfunc, got {type(model).__name__}")
        model = inner
    index = pd.Index(wide[ID], name=ID) if ID in wide.columns else wide.index
    return pd.Series(model.predict(wide), index=index, name="predicted_value")
