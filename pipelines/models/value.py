"""Customer value: predicted spend over a horizon, how it is judged, and the buy-till-you-die baseline.

Three parts, each usable alone:

* Metrics (pure functions over actual and predicted spend per customer): :func:`normalised_gini`,
  :func:`top_share`, :func:`total_error`, :func:`decile_error`, all of them :func:`value_metrics`. Customers with
  tied predictions are ranked by the expectation over every order of the tie (their actual spend is averaged
  inside the tie), so no metric depends on the input order.
* The classical baseline: BG/NBD (purchases) times Gamma-Gamma (spend per purchase), fitted by maximum likelihood
  with ``clvkit`` (:func:`fit_btyd`, :func:`predict_btyd`); and the CDNOW benchmark protocol
  (:func:`evaluate_cdnow`: calibrate through 1997-09-30, predict the 39 weeks to 1998-06-30).
* The platform's ``value`` model: LightGBM regression of future spend (:class:`ValueModel`, a regression
  :class:`train.CalibratedModel` carrying its feature and category lists), trained on the wide table of the bank
  lake by :func:`train_value`, logged and registered in MLflow as ``value`` with a promotion rule on normalised
  Gini. :func:`predict_value` scores a wide table with it.

lightgbm, mlflow and clvkit are imported inside the functions that need them: importing this module stays cheap.
"""

from __future__ import annotations

import json
import re
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from pipelines.models.propensity import (
    CalibratedModel,
    Decision,
    Progress,
    _category_list,
    fit_early_stopped,
    pyfunc_model,
)

LABEL = "future_spend"
SNAPSHOT = "as_of"
ID = "customer_id"
TOP_SHARE = 0.2
TEST_METRICS = ("normalised_gini", "top20_share", "total_error")

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
# Transaction logs: the buy-till-you-die baseline, RFM features and future spend


def _log(
    transactions: pd.DataFrame,
    customer_col: str,
    date_col: str,
    amount_col: str,
    quantity_col: str | None = None,
) -> pd.DataFrame:
    """The log as ``customer_id, day, amount[, quantity]`` with timestamps floored to the day."""
    out = pd.DataFrame(
        {
            ID: transactions[customer_col].to_numpy(),
            "day": pd.to_datetime(transactions[date_col]).dt.floor("D").to_numpy(),
            "amount": transactions[amount_col].to_numpy(dtype=np.float64),
        }
    )
    if quantity_col is not None:
        out["quantity"] = transactions[quantity_col].to_numpy(dtype=np.float64)
    return out


@dataclass
class BtydBaseline:
    """BG/NBD and Gamma-Gamma fitted on the purchases before ``cutoff`` (one purchase per customer-day, time in
    weeks, as in Fader, Hardie & Lee 2005)."""

    purchases: Any  # clvkit.BGNBD
    spend: Any  # clvkit.GammaGamma
    cutoff: pd.Timestamp

    @property
    def params(self) -> dict[str, float]:
        """r, alpha, a, b (BG/NBD, weekly) and p, q, gamma (Gamma-Gamma)."""
        return {
            **{k: float(v) for k, v in self.purchases.params_.items()},
            **{k: float(v) for k, v in self.spend.params_.items()},
        }


def fit_btyd(
    transactions: pd.DataFrame,
    cutoff: Any,
    *,
    customer_col: str = ID,
    date_col: str = "date",
    amount_col: str = "amount",
) -> BtydBaseline:
    """BG/NBD + Gamma-Gamma by maximum likelihood on the transactions strictly before ``cutoff`` (a date).

    Each customer is born at their first purchase in the log (so a log that starts after customers' real first
    purchases is left-censored: they look newer than they are). Purchases are collapsed per customer-day; a day
    whose amounts net to zero or less keeps its place in frequency and recency and adds no spend (clvkit's
    ``on_negative="net"``; its warnings about such days are silenced here).
    """
    from clvkit import BGNBD, CustomerBase, GammaGamma

    cutoff = pd.Timestamp(cutoff).normalize()
    log = _log(transactions, customer_col, date_col, amount_col)
    log = log.loc[log["day"] < cutoff]
    if log.empty:
        raise ValueError(f"no transactions before {cutoff:%Y-%m-%d} to calibrate BG/NBD on")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        base = CustomerBase.from_transactions(
            log,
            customer_id_col=ID,
            datetime_col="day",
            amount_col="amount",
            time_unit="W",
            collapse="D",
            observation_period_end=cutoff - pd.Timedelta(days=1),
            on_negative="net",
        )
        purchases = BGNBD().fit(base)
        spend = GammaGamma().fit(base)
    return BtydBaseline(purchases, spend, cutoff)


def predict_btyd(baseline: BtydBaseline, horizon_days: float, customers: Sequence | None = None) -> pd.Series:
    """Expected spend over the ``horizon_days`` after the cutoff: expected purchases (BG/NBD) x expected spend
    per purchase (Gamma-Gamma), indexed by customer. With ``customers``, in that order; customers without a
    purchase before the cutoff (not yet born for BG/NBD) get 0."""
    if horizon_days <= 0:
        raise ValueError(f"horizon_days must be positive, got {horizon_days}")
    purchases = baseline.purchases.predict(horizon_days / 7).to_pandas().iloc[:, 0]
    per_purchase = baseline.spend.predict().to_pandas().iloc[:, 0]
    value = (purchases * per_purchase.reindex(purchases.index)).rename("predicted_value")
    value.index.name = ID
    if customers is not None:
        value = value.reindex(pd.Index(customers, name=ID), fill_value=0.0)
    return value


RFM_WINDOWS = (30, 90, 180)
RFM_FEATURES = (
    "frequency",
    "recency_weeks",
    "t_weeks",
    "days_since_last",
    "purchase_days",
    "total_spend",
    "mean_day_spend",
    "repeat_mean_spend",
    "first_day_spend",
    "max_day_spend",
    "repeat_rate_per_week",
    "mean_gap_days",
    "overdue_ratio",
    "recency_share",
    "spend_per_week",
    "naive_weekly_value",
    *(f"spend_{w}d" for w in RFM_WINDOWS),
    *(f"purchase_days_{w}d" for w in RFM_WINDOWS),
)
RFM_QUANTITY_FEATURES = ("total_units", "first_day_units", "units_per_day")


def rfm_features(
    transactions: pd.DataFrame,
    cutoff: Any,
    *,
    customer_col: str = ID,
    date_col: str = "date",
    amount_col: str = "amount",
    quantity_col: str | None = None,
) -> pd.DataFrame:
    """Per customer with a purchase before ``cutoff``, features from those purchases only (index
    ``customer_id``): :data:`RFM_FEATURES`, plus :data:`RFM_QUANTITY_FEATURES` when ``quantity_col`` is given.

    A purchase is a customer-day. ``frequency`` is the repeat count (purchase days - 1), ``recency_weeks`` the
    weeks from the first to the last purchase day, ``t_weeks`` from the first purchase day to the last day before
    the cutoff (the BG/NBD summary); ``*_{30,90,180}d`` count purchase days younger than 30/90/180 days;
    ``repeat_mean_spend`` and ``mean_gap_days`` are null without a repeat purchase.
    """
    cutoff = pd.Timestamp(cutoff).normalize()
    log = _log(transactions, customer_col, date_col, amount_col, quantity_col)
    log = log.loc[log["day"] < cutoff]
    sums = {"amount": "sum", **({"quantity": "sum"} if quantity_col else {})}
    days = log.groupby([ID, "day"], sort=True).agg(sums).reset_index()
    age = (cutoff - days["day"]).dt.days.to_numpy()
    days["age"] = age
    per = days.groupby(ID, sort=True)
    first = per.nth(0).set_index(ID)
    n = per.size()
    total = per["amount"].sum()
    first_age = per["age"].max()
    last_age = per["age"].min()
    frequency = n - 1
    recency_days = first_age - last_age
    t_days = first_age - 1  # to the last calibration day, as BG/NBD's T
    out = pd.DataFrame(index=n.index)
    out["frequency"] = frequency.astype(np.float64)
    out["recency_weeks"] = recency_days / 7
    out["t_weeks"] = t_days / 7
    out["days_since_last"] = last_age.astype(np.float64)
    out["purchase_days"] = n.astype(np.float64)
    out["total_spend"] = total
    out["mean_day_spend"] = total / n
    first_spend = first["amount"].reindex(n.index)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["repeat_mean_spend"] = ((total - first_spend) / frequency).where(frequency > 0)
        out["mean_gap_days"] = (recency_days / frequency).where(frequency > 0)
    out["first_day_spend"] = first_spend
    out["max_day_spend"] = per["amount"].max()
    out["repeat_rate_per_week"] = frequency / np.maximum(t_days / 7, 1 / 7)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["overdue_ratio"] = out["days_since_last"] / out["mean_gap_days"]
    out["recency_share"] = recency_days / np.maximum(t_days, 1)
    out["spend_per_week"] = total / np.maximum(t_days / 7, 1 / 7)
    out["naive_weekly_value"] = out["repeat_rate_per_week"] * out["repeat_mean_spend"].fillna(0.0)
    for w in RFM_WINDOWS:
        recent = days.loc[days["age"] <= w]  # age counted from the cutoff: the last day before it has age 1
        g = recent.groupby(ID)
        out[f"spend_{w}d"] = g["amount"].sum().reindex(n.index, fill_value=0.0)
        out[f"purchase_days_{w}d"] = g.size().reindex(n.index, fill_value=0).astype(np.float64)
    if quantity_col:
        units = per["quantity"].sum()
        out["total_units"] = units
        out["first_day_units"] = first["quantity"].reindex(n.index)
        out["units_per_day"] = units / n
    out.index.name = ID
    return out


def future_spend(
    transactions: pd.DataFrame,
    start: Any,
    end: Any,
    customers: Sequence,
    *,
    customer_col: str = ID,
    date_col: str = "date",
    amount_col: str = "amount",
) -> pd.Series:
    """Total amount per customer over ``[start, end)`` (by day), for ``customers`` in that order (0 when none)."""
    start, end = pd.Timestamp(start).normalize(), pd.Timestamp(end).normalize()
    log = _log(transactions, customer_col, date_col, amount_col)
    inside = log.loc[(log["day"] >= start) & (log["day"] < end)]
    spend = inside.groupby(ID)["amount"].sum()
    return spend.reindex(pd.Index(customers, name=ID), fill_value=0.0).rename(LABEL)


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

    Encoding is the churn model's (:meth:`train.CalibratedModel.encode`): numerics as floats, categoricals as codes
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
        """The float matrix the boosters see (see :meth:`train.CalibratedModel.encode`)."""
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


def _spend(frame: pd.DataFrame, label: str, objective: str) -> np.ndarray:
    if label not in frame.columns:
        raise KeyError(f"label column {label!r} is missing")
    y = pd.to_numeric(frame[label]).to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isnan(y).any():
        raise ValueError(f"label column {label!r} has {int(np.isnan(y).sum())} missing values")
    if objective != "regression" and (y < 0).any():
        raise ValueError(f"label column {label!r} has negative spend: the {objective} objective needs y >= 0")
    return y


def _unit_hash(ids, salt: str) -> np.ndarray:
    """A uniform number in [0, 1) per id, fixed by the id and ``salt`` alone (not by the other ids or the row
    order), so a customer lands in the same fold or split in every run."""
    key = f"{salt:<16}"[:16]
    hashed = pd.util.hash_array(np.asarray(ids, dtype=object), hash_key=key, categorize=False)
    return (hashed >> np.uint64(11)).astype(np.float64) / float(2**53)


def customer_folds(ids, folds: int, seed: int) -> np.ndarray:
    """Fold number (0 .. ``folds`` - 1) per id, from a seeded hash of the id: every row of a customer (several
    snapshots) falls in the same fold."""
    return np.minimum((_unit_hash(ids, f"fold{seed}") * folds).astype(np.int64), folds - 1)


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
    y = _spend(frame, label, config.objective)
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
    ``train.load_champion("value", uri)``); both score through the same encoder and category lists.
    """
    if not isinstance(model, ValueModel):
        unwrap = getattr(model, "unwrap_python_model", None)
        inner = getattr(unwrap(), "model", None) if unwrap is not None else None
        if not isinstance(inner, ValueModel):
            raise TypeError(f"expected a ValueModel or a value pyfunc, got {type(model).__name__}")
        model = inner
    index = pd.Index(wide[ID], name=ID) if ID in wide.columns else wide.index
    return pd.Series(model.predict(wide), index=index, name="predicted_value")


# --------------------------------------------------------------------------------------------------------------
# CDNOW: the standard BG/NBD benchmark, and the value model on the same customers

CDNOW_FILE = "cdnow_master.csv"
CDNOW_CUTOFF = pd.Timestamp("1997-10-01")  # calibration: purchases through 1997-09-30
CDNOW_HOLDOUT_END = pd.Timestamp("1998-07-01")  # holdout: the 39 weeks 1997-10-01 .. 1998-06-30


def read_cdnow(path: str | Path) -> pd.DataFrame:
    """The CDNOW master file (``customer_id, date YYYYMMDD, number_of_cds, dollar_value``) as columns
    ``customer_id`` (str), ``date``, ``amount``, ``quantity``."""
    path = Path(path)
    if path.is_dir():
        path = path / CDNOW_FILE
    raw = pd.read_csv(path, dtype={"customer_id": str, "date": str})
    return pd.DataFrame(
        {
            ID: raw["customer_id"],
            "date": pd.to_datetime(raw["date"], format="%Y%m%d"),
            "amount": raw["dollar_value"].astype(np.float64),
            "quantity": raw["number_of_cds"].astype(np.float64),
        }
    )


@dataclass
class CdnowResult:
    """Both models on the same test customers of CDNOW."""

    value: dict[str, float]
    baseline: dict[str, float]
    baseline_all: dict[str, float]  # the baseline on every customer (the classical benchmark figure)
    value_deciles: pd.DataFrame
    baseline_deciles: pd.DataFrame
    btyd_params: dict[str, float]
    rows: dict[str, int]
    model: ValueModel = field(repr=False)
    predictions: pd.DataFrame = field(repr=False)


# Few leaves: 23k customers and ~20 RFM features; deeper trees fit the few very large holdout spenders.
CDNOW_CONFIG = ValueConfig(num_leaves=4)


def evaluate_cdnow(
    path: str | Path,
    *,
    seed: int = 0,
    test_share: float = 0.5,
    config: ValueConfig | None = None,
) -> CdnowResult:
    """The CDNOW protocol for both models, on the same test customers.

    * Baseline: BG/NBD + Gamma-Gamma fitted on every customer's calibration purchases (through 1997-09-30; it
      never sees the holdout), predicting spend over the 39 holdout weeks.
    * Value model: features from the calibration period only (:func:`rfm_features`), label = holdout spend.
      Customers are one i.i.d. cohort (all first bought in Q1 1997), so the split is by customer: ``test_share``
      of them (a seeded hash of the id) are the test set; the value model is cross-fitted on the others
      (:func:`fit_value_model`, ``config`` default :data:`CDNOW_CONFIG`).

    Both are scored on the test customers: actual holdout spend vs prediction.
    """
    config = config or CDNOW_CONFIG
    log = read_cdnow(path)
    features = rfm_features(log, CDNOW_CUTOFF, quantity_col="quantity")
    customers = features.index
    horizon_days = (CDNOW_HOLDOUT_END - CDNOW_CUTOFF).days
    frame = features.reset_index()
    frame[LABEL] = future_spend(log, CDNOW_CUTOFF, CDNOW_HOLDOUT_END, customers).to_numpy()

    baseline = fit_btyd(log, CDNOW_CUTOFF)
    frame["baseline"] = predict_btyd(baseline, horizon_days, customers).to_numpy()

    is_test = _unit_hash(frame[ID].to_numpy(), f"test{seed}") < test_share
    test, train = frame.loc[is_test], frame.loc[~is_test]
    model = fit_value_model(train, [*RFM_FEATURES, *RFM_QUANTITY_FEATURES], [], LABEL, config)
    test = test.assign(predicted=model.predict(test))
    y = test[LABEL].to_numpy()
    return CdnowResult(
        value=value_metrics(y, test["predicted"]),
        baseline=value_metrics(y, test["baseline"]),
        baseline_all=value_metrics(frame[LABEL], frame["baseline"]),
        value_deciles=decile_error(y, test["predicted"]),
        baseline_deciles=decile_error(y, test["baseline"]),
        btyd_params=baseline.params,
        rows={"train": len(train), "test": len(test), "customers": len(frame)},
        model=model,
        predictions=test[[ID, LABEL, "predicted", "baseline"]].reset_index(drop=True),
    )


# --------------------------------------------------------------------------------------------------------------
# The bank: the value model on the wide table, tracked and registered in MLflow


def value_window(as_of: Any, horizon_months: int) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The label window ``[as_of, as_of + horizon_months)`` of a snapshot."""
    if horizon_months < 1:
        raise ValueError(f"horizon_months must be at least 1, got {horizon_months}")
    start = pd.Timestamp(as_of)
    return start, start + pd.DateOffset(months=horizon_months)


def make_value_labels(tables: Mapping[str, pd.DataFrame], as_of: Any, horizon_months: int) -> pd.Series:
    """Spend per customer open at ``as_of`` over its label window (index ``customer_id``, name
    ``future_spend``); a customer who closes inside the window counts what they spent until then."""
    from pipelines.features.wide_table import eligible_customers

    start, end = value_window(as_of, horizon_months)
    base = eligible_customers(tables["customers"], start)
    txn = tables["transactions"]
    inside = txn.loc[(txn["txn_ts"] >= start) & (txn["txn_ts"] < end)]
    spend = inside.groupby(ID)["amount"].sum()
    return spend.reindex(pd.Index(base[ID], name=ID), fill_value=0.0).rename(LABEL)


@dataclass(frozen=True)
class ValuePlan:
    """Which snapshots a value training run uses and how it splits them."""

    test_as_of: pd.Timestamp
    train_as_of: tuple[pd.Timestamp, ...]  # earlier snapshots (out-of-time split); empty for a customer split
    split: Literal["time", "customer"]
    horizon_months: int
    lake_start: pd.Timestamp
    lake_end: pd.Timestamp

    @property
    def snapshots(self) -> list[pd.Timestamp]:
        return [*self.train_as_of, self.test_as_of]


def plan_value_snapshots(
    lake_start: Any,
    lake_end: Any,
    horizon_months: int,
    *,
    as_of: Any = None,
    lookback_days: int = 180,
    split: Literal["auto", "time", "customer"] = "auto",
) -> ValuePlan:
    """The test snapshot and, when the lake allows, earlier training snapshots.

    The test snapshot is ``as_of`` (default: the newest month start whose label window ends by ``lake_end``). A
    training snapshot must have its whole lookback inside the lake (``as_of - lookback_days >= lake_start``, or
    its features would be truncated) and its label window must end by the test snapshot (no training label sees
    the test period). ``split="auto"`` is out-of-time when at least one such snapshot exists, otherwise a customer
    split of the test snapshot (12 months of data with a 6-month horizon: only 2025-07-01 qualifies).
    """
    lake_start, lake_end = pd.Timestamp(lake_start), pd.Timestamp(lake_end)
    if as_of is None:
        as_of = (lake_end - pd.DateOffset(months=horizon_months)).to_period("M").start_time
    test, end = value_window(as_of, horizon_months)
    if end > lake_end:
        raise ValueError(
            f"the label window of {test:%Y-%m-%d} ({horizon_months} months) ends {end:%Y-%m-%d}, after the lake's end "
            f"{lake_end:%Y-%m-%d}: choose an earlier as_of or a shorter horizon"
        )
    if test <= lake_start:
        raise ValueError(
            f"as_of {test:%Y-%m-%d} leaves no history before it (the lake starts {lake_start:%Y-%m-%d})"
        )
    earliest = lake_start + pd.Timedelta(days=lookback_days)
    candidates = pd.date_range(earliest.to_period("M").start_time, test, freq="MS")
    earlier = tuple(s for s in candidates if s >= earliest and value_window(s, horizon_months)[1] <= test)
    if split not in ("auto", "time", "customer"):
        raise ValueError(f"split must be 'auto', 'time' or 'customer', got {split!r}")
    if split == "time" and not earlier:
        raise ValueError(
            f"no out-of-time training snapshot: one needs {lookback_days} days of history and a label window ending "
            f"by {test:%Y-%m-%d}; the lake runs {lake_start:%Y-%m-%d} .. {lake_end:%Y-%m-%d} (use split='customer')"
        )
    chosen = "time" if split == "time" or (split == "auto" and earlier) else "customer"
    return ValuePlan(
        test_as_of=test,
        train_as_of=earlier if chosen == "time" else (),
        split=chosen,
        horizon_months=horizon_months,
        lake_start=lake_start,
        lake_end=lake_end,
    )


def build_value_set(
    lake: Path, snapshots: Sequence[Any], horizon_months: int, window: Any = None, progress: Progress = print
) -> pd.DataFrame:
    """Wide table and future spend per snapshot, stacked: ``as_of``, ``customer_id``, features, ``future_spend``."""
    from pipelines.features.wide_table import build_features, load_tables

    say = progress or (lambda _m: None)
    frames = []
    for as_of in snapshots:
        as_of = pd.Timestamp(as_of)
        tables = load_tables(lake, as_of, window, extra_until=value_window(as_of, horizon_months)[1])
        wide = build_features(tables, as_of, window)
        wide[LABEL] = make_value_labels(tables, as_of, horizon_months).reindex(wide[ID]).to_numpy()
        wide.insert(0, SNAPSHOT, as_of)
        frames.append(wide)
        say(
            f"  snapshot {as_of:%Y-%m-%d}: {len(wide):,} customers, {horizon_months}-month spend "
            f"{wide[LABEL].sum():,.0f} ({(wide[LABEL] > 0).mean():.1%} spend)"
        )
    return pd.concat(frames, ignore_index=True)


@dataclass(frozen=True)
class ValueResult:
    run_id: str
    model_name: str
    version: str
    promoted: bool
    reasons: tuple[str, ...]
    metrics: dict[str, float]
    champion_version: str | None
    model: ValueModel = field(repr=False)

    def summary(self) -> str:
        decision = "PROMOTED to champion" if self.promoted else "NOT promoted (stays challenger)"
        m = self.metrics
        lines = [
            f"run {self.run_id}: {self.model_name} version {self.version} {decision}",
            "test " + "  ".join(f"{k}={m[k]:.4f}" for k in TEST_METRICS if k in m),
        ]
        if "baseline_normalised_gini" in m:
            lines.append(
                "BG/NBD baseline " + "  ".join(f"{k}={m[f'baseline_{k}']:.4f}" for k in TEST_METRICS)
            )
        lines += [f"  {r}" for r in self.reasons]
        return "\n".join(lines)


def decide_value_promotion(
    challenger: Mapping[str, float], champion: Mapping[str, float] | None, config: ValueConfig
) -> Decision:
    """Promote when there is no champion; otherwise only when the normalised Gini gains at least
    ``min_gini_gain`` and ``|total_error|`` is no more than ``max_total_error_worsening`` above the champion's
    (both scored on the same test frame)."""
    if champion is None:
        return Decision(True, ("no champion yet: the first model becomes champion",))
    gain = challenger["normalised_gini"] - champion["normalised_gini"]
    worse = abs(challenger["total_error"]) - abs(champion["total_error"])
    checks = (
        ("normalised_gini", gain, gain >= config.min_gini_gain, f">= {config.min_gini_gain:+.4f}"),
        (
            "|total_error|",
            worse,
            worse <= config.max_total_error_worsening,
            f"<= {config.max_total_error_worsening:+.4f}",
        ),
    )
    values = {
        "normalised_gini": (challenger["normalised_gini"], champion["normalised_gini"]),
        "|total_error|": (abs(challenger["total_error"]), abs(champion["total_error"])),
    }
    reasons = tuple(
        f"{metric}: challenger {values[metric][0]:.4f} vs champion {values[metric][1]:.4f} "
        f"(change {delta:+.4f}, required {need}) -> {'ok' if ok else 'FAIL'}"
        for metric, delta, ok, need in checks
    )
    return Decision(all(ok for _, _, ok, _ in checks), reasons, None, dict(champion))


def evaluate_value_model(
    model: ValueModel, test: pd.DataFrame, label: str, out_dir: Path
) -> dict[str, float]:
    """Test metrics of ``model`` on ``test`` (:func:`value_metrics`); writes ``metrics.json``,
    ``decile_error.csv`` and ``feature_importance.csv`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    y = _spend(test, label, "regression")
    p = model.predict(test)
    metrics = value_metrics(y, p)
    decile_error(y, p).to_csv(out_dir / "decile_error.csv", index=False)
    model.feature_importance().to_csv(out_dir / "feature_importance.csv", index=False)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return metrics


def register_value_model(
    model: ValueModel,
    test: pd.DataFrame,
    metrics: Mapping[str, float],
    evaluation_dir: Path,
    *,
    label: str,
    config: ValueConfig,
    tracking_uri: str,
    experiment: str,
    rows: Mapping[str, int],
    run_params: Mapping[str, Any] | None = None,
    lineage: Mapping[str, Any] | None = None,
    extra_metrics: Mapping[str, float] | None = None,
    artifact_location: str | None = None,
    progress: Progress = None,
) -> ValueResult:
    """Log one MLflow run (parameters, lineage, ``test_*`` metrics, the files of ``evaluation_dir`` under
    ``evaluation/``), register a new version of ``config.model_name`` with alias ``challenger``, and move alias
    ``champion`` to it only if it passes :func:`decide_value_promotion` against the current champion scored on
    the same ``test`` frame. The same pattern as :func:`train.register_model`, with the value metrics."""
    import mlflow
    from mlflow import MlflowClient

    from pipelines.models.propensity import (
        _champion_metrics,
        _experiment_id,
        log_registered_pyfunc,
        log_run_inputs,
        mlflow_store,
        pyfunc_input,
        record_promotion,
    )

    say = progress or (lambda _msg: None)
    features, categorical = model.features, model.categorical
    metrics, extra_metrics = dict(metrics), dict(extra_metrics or {})
    run_params, lineage = dict(run_params or {}), dict(lineage or {})
    y_test = _spend(test, label, "regression")

    with mlflow_store(tracking_uri):
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        experiment_id = _experiment_id(client, experiment, tracking_uri, artifact_location)
        test_input = pyfunc_input(test, features, categorical)
        with mlflow.start_run(experiment_id=experiment_id) as run:
            log_run_inputs(
                config,
                label,
                model,
                rows,
                run_params,
                lineage,
                {"best_iterations": json.dumps(model.best_iterations)},
            )
            mlflow.log_metrics({f"test_{k}": float(v) for k, v in metrics.items()})
            if extra_metrics:
                mlflow.log_metrics({k: float(v) for k, v in extra_metrics.items()})
            mlflow.log_artifacts(str(evaluation_dir), artifact_path="evaluation")

            say("logging and registering the value model")
            example = test_input.head(5)
            version = log_registered_pyfunc(
                client, config.model_name, pyfunc_model(model, "predict"), example, model.predict(example)
            )

            champion_version, champion_metrics, problem = _champion_metrics(
                client, config.model_name, test_input, y_test, value_metrics
            )
            if problem:
                decision = Decision(False, (problem,), champion_version)
            else:
                decision = decide_value_promotion(metrics, champion_metrics, config)
            if champion_metrics is not None:
                mlflow.log_metrics({f"champion_test_{k}": float(champion_metrics[k]) for k in TEST_METRICS})
                mlflow.log_metric(
                    "gain_normalised_gini", metrics["normalised_gini"] - champion_metrics["normalised_gini"]
                )
            verdict = record_promotion(
                client, config.model_name, version, run.info.run_id, decision, champion_version
            )
            say(f"version {version}: {verdict}")

    return ValueResult(
        run_id=run.info.run_id,
        model_name=config.model_name,
        version=version,
        promoted=decision.promoted,
        reasons=decision.reasons,
        metrics={**metrics, **extra_metrics},
        champion_version=champion_version,
        model=model,
    )


def train_value(
    data_dir: str | Path,
    *,
    tracking_uri: str,
    as_of: Any = None,
    horizon_months: int = 6,
    split: Literal["auto", "time", "customer"] = "auto",
    test_share: float = 0.3,
    window: Any = None,
    config: ValueConfig | None = None,
    experiment: str = "value_training",
    baseline: bool = True,
    expectations_dir: str | Path | None = None,
    progress: Progress = print,
) -> ValueResult:
    """Train the ``value`` model on the lake under ``data_dir``: the wide table at a snapshot, label = spend over
    the following ``horizon_months`` months; log, register and maybe promote it.

    Snapshots and split come from :func:`plan_value_snapshots` (out-of-time when the lake has an earlier snapshot
    with a full lookback and a label window ending by the test snapshot; otherwise ``test_share`` of the test
    snapshot's customers, by a fixed hash of the id, are the test set). The model is cross-fitted on the rest
    (:func:`fit_value_model`). Each snapshot's wide table passes the ``customer_features`` gate first, as in churn
    training (a critical failure stops the run with :class:`gates.ValidationError`).

    With ``baseline`` the run also fits BG/NBD + Gamma-Gamma on the lake's transactions before the test snapshot
    and logs its figures on the same test customers as ``baseline_*`` (and ``baseline_decile_error.csv``);
    customers without a transaction before the snapshot get 0 from it.
    """
    from pipelines.config import load_settings
    from pipelines.data import gates, storage
    from pipelines.features.gate import validate_features
    from pipelines.features.wide_table import CATEGORICAL_FEATURES, FEATURE_NAMES, WindowContract

    say = progress or (lambda _m: None)
    config = config or ValueConfig()
    window = window or WindowContract()
    data_dir = Path(data_dir)
    lake = data_dir / "lake"
    months = storage.list_months(lake, "transactions")
    if not months:
        raise storage.LakeError(f"{lake} has no transactions")
    lake_start = pd.Period(months[0], freq="M").start_time
    lake_end = pd.Timestamp(storage.lake_end(lake))
    plan = plan_value_snapshots(
        lake_start, lake_end, horizon_months, as_of=as_of, lookback_days=window.lookback_days, split=split
    )
    test_as_of = plan.test_as_of
    if test_as_of - pd.Timedelta(days=window.lookback_days) < lake_start:
        say(
            f"warning: the lake starts {lake_start:%Y-%m-%d}, less than {window.lookback_days} days before "
            f"{test_as_of:%Y-%m-%d}: long-window features are truncated"
        )
    say(
        f"value training: {horizon_months}-month spend, {plan.split} split, snapshots "
        + ", ".join(f"{d:%Y-%m-%d}" for d in plan.snapshots)
        + " (last = test)"
    )
    data = build_value_set(lake, plan.snapshots, horizon_months, window, progress=say)

    customers = storage.read_table(lake, "customers", columns=[ID, "signup_date", "closed_date"])
    gate = {
        f"{d:%Y-%m-%d}": validate_features(
            data.loc[data[SNAPSHOT] == d, [ID, *FEATURE_NAMES]].reset_index(drop=True),
            customers,
            d,
            Path(expectations_dir or load_settings().expectations_dir),
            window=window,
        )
        for d in plan.snapshots
    }
    critical = sum(len(r.critical_failures) for r in gate.values())
    say(
        f"feature gate: {critical} critical failure(s), {sum(len(r.warnings) for r in gate.values())} warning(s)"
    )
    if critical:
        raise gates.ValidationError(
            "value training stopped: the wide table failed its critical expectations\n"
            + "\n".join(r.summary() for r in gate.values() if not r.success)
        )

    at_test = data[SNAPSHOT] == test_as_of
    if plan.split == "time":
        fit_frame, test = data.loc[~at_test], data.loc[at_test]
    else:
        is_test = _unit_hash(data[ID].to_numpy(), f"test{config.seed}") < test_share
        fit_frame, test = data.loc[~is_test], data.loc[is_test]
    fit_frame, test = fit_frame.reset_index(drop=True), test.reset_index(drop=True)
    if test[LABEL].sum() <= 0:
        raise ValueError(
            "the test customers spent nothing in the label window: the value metrics are undefined"
        )
    say(
        f"fitting LightGBM ({config.objective}, {config.folds} cross-fitted folds) on {len(fit_frame):,} rows, "
        f"test {len(test):,} ({len(FEATURE_NAMES)} features)"
    )
    model = fit_value_model(fit_frame, FEATURE_NAMES, CATEGORICAL_FEATURES, LABEL, config)

    extra: dict[str, float] = {
        "gx_critical_failures": float(critical),
        "gx_warnings": float(sum(len(r.warnings) for r in gate.values())),
    }
    horizon_days = (value_window(test_as_of, horizon_months)[1] - test_as_of).days
    with tempfile.TemporaryDirectory() as tmp:
        metrics = evaluate_value_model(model, test, LABEL, Path(tmp))
        say(
            f"test normalised Gini {metrics['normalised_gini']:.4f}, top-20 % share {metrics['top20_share']:.1%}, "
            f"total error {metrics['total_error']:+.1%}"
        )
        btyd_params: dict[str, float] = {}
        if baseline:
            txn_months = [m for m in months if pd.Period(m, freq="M").start_time < test_as_of]
            txn = storage.read_table(
                lake, "transactions", months=txn_months, columns=[ID, "txn_ts", "amount"]
            )
            btyd = fit_btyd(txn, test_as_of, date_col="txn_ts")
            btyd_params = btyd.params
            base_pred = predict_btyd(btyd, horizon_days, test[ID]).to_numpy()
            y = test[LABEL].to_numpy()
            extra.update({f"baseline_{k}": v for k, v in value_metrics(y, base_pred).items()})
            decile_error(y, base_pred).to_csv(Path(tmp) / "baseline_decile_error.csv", index=False)
            extra["gain_vs_baseline_normalised_gini"] = (
                metrics["normalised_gini"] - extra["baseline_normalised_gini"]
            )
            say(
                f"BG/NBD baseline: normalised Gini {extra['baseline_normalised_gini']:.4f}, top-20 % share "
                f"{extra['baseline_top20_share']:.1%}, total error {extra['baseline_total_error']:+.1%}"
            )
        return register_value_model(
            model,
            test,
            metrics,
            Path(tmp),
            label=LABEL,
            config=config,
            tracking_uri=tracking_uri,
            experiment=experiment,
            rows={"fit": len(fit_frame), "test": len(test)},
            run_params={
                "horizon_months": horizon_months,
                "split": plan.split,
                "test_share": test_share if plan.split == "customer" else "",
                "snapshots": ",".join(f"{d:%Y-%m-%d}" for d in plan.snapshots),
                "window.lookback_days": window.lookback_days,
                **{f"btyd.{k}": round(v, 6) for k, v in btyd_params.items()},
            },
            lineage={
                "lake": str(lake),
                "lake_start": f"{lake_start:%Y-%m-%d}",
                "lake_end": f"{lake_end:%Y-%m-%d}",
                "test_snapshot": f"{test_as_of:%Y-%m-%d}",
            },
            extra_metrics=extra,
            progress=say,
        )
