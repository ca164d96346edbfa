"""Realised performance of a deployed model once its labels mature, and how far it fell from its test figures.

Every metric comes from the project's one definition of it: AUC from
:func:`pipelines.models.evaluate.score_metrics`, top-decile lift from
:func:`~pipelines.models.evaluate.top_decile_lift`, calibration from
:func:`~pipelines.models.evaluate.calibration_table`, and the uplift figures from
:func:`pipelines.models.uplift_metrics.qini_coefficient` and :func:`~pipelines.models.uplift_metrics.uplift_at_k`.
This module only gathers them into a JSON-serialisable dict and grades the decay against the model's test figure
recorded at registration (:func:`decay_level`).
"""

from __future__ import annotations

import math

import numpy as np

from pipelines.models.evaluate import calibration_table, score_metrics, top_decile_lift
from pipelines.models.uplift_metrics import TOP_SHARE, qini_coefficient, uplift_at_k


def _weighted(y: np.ndarray, p: np.ndarray, w: np.ndarray, bins: int) -> dict:
    """AUC, top-decile lift and calibration deciles when each row stands for ``w`` customers (the holdout of a
    campaign standing for the selected customers it contacted): the same definitions as the unweighted path
    (``roc_auc_score``; deciles of equal weight, best first)."""
    from sklearn.metrics import roc_auc_score

    order = np.argsort(-p, kind="stable")
    y, p, w = y[order], p[order], w[order]
    cum = np.cumsum(w)
    decile = np.minimum(
        (bins * (cum - w / 2) / cum[-1]).astype(int), bins - 1
    )  # by each row's weight midpoint
    base = np.average(y, weights=w)
    calibration = []
    for d in range(bins):
        part = decile == d
        weight = w[part].sum()
        calibration.append(
            {
                "decile": d + 1,
                "rows": int(part.sum()),
                "weight": float(weight),
                "expected": float(np.average(p[part], weights=w[part])) if weight else math.nan,
                "observed": float(np.average(y[part], weights=w[part])) if weight else math.nan,
            }
        )
    total = sum(c["weight"] for c in calibration)
    error = sum(c["weight"] * abs(c["expected"] - c["observed"]) for c in calibration if c["weight"]) / total
    return {
        "auc": float(roc_auc_score(y, p, sample_weight=w)),
        "top_decile_lift": calibration[0]["observed"] / base if base > 0 else math.nan,
        "calibration": calibration,
        "calibration_error": float(error),
    }


def realised_classification(labels, scores, bins: int = 10, weights=None) -> dict:
    """Realised figures of a propensity model's probabilities ``scores`` against matured 0/1 ``labels``.

    Returns ``{"rows", "positives", "auc", "top_decile_lift", "calibration", "calibration_error"}`` where
    ``calibration`` lists ``{"decile", "rows", "expected", "observed"}`` per equal-count score bin, decile 1 holding
    the highest scores (as in :func:`~pipelines.models.evaluate.decile_table`); ``expected`` is the mean
    probability and ``observed`` the positive rate of the bin. ``calibration_error`` is the row-weighted mean of
    ``|expected - observed|`` over the bins. Raises ValueError when the labels hold one class only.

    ``weights`` (one per row, > 0) makes each row stand for that many customers: AUC, lift and calibration are
    then of the weighted population (``rows`` and ``positives`` stay counts of rows).
    """
    y = np.asarray(labels, dtype=float).ravel()
    if y.size and np.isin(y, (0.0, 1.0)).all() and y.min() == y.max():
        raise ValueError(
            f"realised labels hold one class only ({y.size} rows, all {int(y[0])}): AUC and lift need both "
            "positives and negatives; wait for more labels to mature or widen the window"
        )
    if weights is not None:
        w = np.asarray(weights, dtype=float).ravel()
        if w.shape != y.shape or not (w > 0).all():
            raise ValueError(f"weights must be {y.size} positive numbers, one per label")
        return {
            "rows": int(y.size),
            "positives": int(y.sum()),
            **_weighted(y, np.asarray(scores, dtype=float).ravel(), w, bins),
        }
    metrics = score_metrics(y, scores)
    table = calibration_table(y, scores, bins).iloc[::-1].reset_index(drop=True)
    calibration = [
        {
            "decile": i + 1,
            "rows": int(r.count),
            "expected": float(r.mean_predicted),
            "observed": float(r.observed_rate),
        }
        for i, r in enumerate(table.itertuples(index=False))
    ]
    gap = (table["mean_predicted"] - table["observed_rate"]).abs()
    return {
        "rows": int(metrics["n"]),
        "positives": int(y.sum()),
        "auc": float(metrics["auc"]),
        "top_decile_lift": top_decile_lift(y, scores),
        "calibration": calibration,
        "calibration_error": float((gap * table["count"]).sum() / table["count"].sum()),
    }


def realised_uplift(converted, treated, scores) -> dict:
    """Realised figures of an uplift model: ``{"rows", "treated", "qini", "uplift_at_30"}`` for 0/1 outcomes
    ``converted``, 0/1 ``treated`` flags (1 = contacted, 0 = holdout) and uplift ``scores``; ``qini`` is the
    normalised Qini coefficient (1 = perfect, 0 = random) and ``uplift_at_30`` the treated minus holdout
    conversion rate among the 30 % best-scored rows."""
    t = np.asarray(treated, dtype=float).ravel()
    return {
        "rows": int(t.size),
        "treated": int(np.nansum(t)),
        "qini": qini_coefficient(converted, treated, scores),
        "uplift_at_30": uplift_at_k(converted, treated, scores, TOP_SHARE),
    }


def decay_level(realised: float, reference: float, warn_drop: float = 0.03, alert_drop: float = 0.05) -> str:
    """Grade a realised figure (AUC, lift, Qini) against the model's test figure at registration: ``"alert"``
    when it dropped by ``alert_drop`` or more (absolute), ``"warn"`` by ``warn_drop`` or more, else ``"ok"``
    (a rise is ok). A drop within 1e-9 of a threshold counts as reaching it, so 0.83 -> 0.80 warns despite
    floating point."""
    if math.isnan(realised) or math.isnan(reference):
        raise ValueError(f"cannot grade decay with a NaN figure: realised {realised}, reference {reference}")
    if not 0.0 <= warn_drop <= alert_drop:
        raise ValueError(f"need 0 <= warn_drop <= alert_drop, got {warn_drop} and {alert_drop}")
    drop = reference - realised
    if drop >= alert_drop - 1e-9:
        return "alert"
    return "warn" if drop >= warn_drop - 1e-9 else "ok"


__all__ = ["decay_level", "realised_classification", "realised_uplift"]
