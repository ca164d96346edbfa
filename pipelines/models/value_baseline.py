"""The classical customer-value baseline and the benchmark it is known by.

* Buy-till-you-die: BG/NBD (purchases) times Gamma-Gamma (spend per purchase), fitted by maximum likelihood with
  ``clvkit`` (:func:`fit_btyd`, :func:`predict_btyd`).
* Features and labels from a transaction log: :func:`rfm_features` (recency, frequency, monetary value and their
  windows, as of a cutoff) and :func:`future_spend` (spend in a window after it).
* The CDNOW benchmark protocol (:func:`evaluate_cdnow`: calibrate through 1997-09-30, predict the 39 weeks to
  1998-06-30), for the baseline and the value model on the same test customers.

clvkit and lightgbm are imported inside the functions that need them: importing this module stays cheap.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.models.value import (
    ID,
    LABEL,
    ValueConfig,
    ValueModel,
    decile_error,
    fit_value_model,
    unit_hash,
    value_metrics,
)

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

    is_test = unit_hash(frame[ID].to_numpy(), f"test{seed}") < test_share
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
