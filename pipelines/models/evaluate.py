"""Scoring metrics and decile tables for a binary propensity model: pure functions over labels and scores.

Deciles rank by score, highest first (decile 1 = the 10 % of rows with the highest scores); ties are broken by
input order so the table is deterministic. A propensity model ranks by its booster's raw score and is calibrated
apart (:mod:`pipelines.models.calibration`): ranking figures take the raw score, log-loss and Brier the
probability. Plots are written with matplotlib's Agg backend, imported only when a
plot is asked for.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score, roc_curve

DECILE_COLUMNS = ("decile", "count", "positives", "rate", "lift", "cumulative_gain", "cumulative_lift")


def _check(y, p) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=float).ravel()
    p = np.asarray(p, dtype=float).ravel()
    if y.shape != p.shape:
        raise ValueError(f"labels and scores differ in length: {y.size} vs {p.size}")
    if y.size == 0:
        raise ValueError("no rows to evaluate")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0/1")
    if np.isnan(p).any():
        raise ValueError(f"{int(np.isnan(p).sum())} scores are NaN")
    return y.astype(np.int8), p


def ks_statistic(y, p) -> float:
    """Kolmogorov-Smirnov separation: the largest gap between the cumulative TPR and FPR curves."""
    y, p = _check(y, p)
    fpr, tpr, _ = roc_curve(y, p)
    return float(np.max(tpr - fpr))


def score_metrics(y, p, rank=None) -> dict[str, float]:
    """auc, pr_auc, log_loss, brier, ks, base_rate and n for 0/1 labels ``y`` and probabilities ``p``.

    The ranking figures (auc, pr_auc, ks) are of ``rank`` when given (a model's raw score, which its calibrated
    probability may have tied), else of ``p``. Raises ValueError when ``y`` holds a single class (ranking
    metrics are undefined).
    """
    y, p = _check(y, p)
    if y.min() == y.max():
        raise ValueError("labels hold a single class: ranking metrics are undefined")
    r = p if rank is None else _check(y, rank)[1]
    clipped = np.clip(p, 1e-15, 1 - 1e-15)
    return {
        "auc": float(roc_auc_score(y, r)),
        "pr_auc": float(average_precision_score(y, r)),
        "log_loss": float(log_loss(y, clipped, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "ks": ks_statistic(y, r),
        "base_rate": float(y.mean()),
        "n": int(y.size),
    }


def decile_table(y, p, bins: int = 10) -> pd.DataFrame:
    """One row per score decile, best first: count, positives, rate, lift (rate / base rate),
    cumulative_gain (share of all positives captured down to this decile) and cumulative_lift.

    Rows are split into ``bins`` groups of equal size (the first groups take one extra row when ``n`` does not
    divide evenly).
    """
    y, p = _check(y, p)
    if y.size < bins:
        raise ValueError(f"need at least {bins} rows for {bins} bins, got {y.size}")
    order = np.argsort(-p, kind="stable")
    groups = np.array_split(y[order], bins)
    count = np.array([g.size for g in groups], dtype=np.int64)
    positives = np.array([int(g.sum()) for g in groups], dtype=np.int64)
    base_rate = y.mean()
    total_pos = positives.sum()
    rate = positives / count
    cum_count = np.cumsum(count)
    cum_pos = np.cumsum(positives)
    with np.errstate(divide="ignore", invalid="ignore"):
        lift = rate / base_rate if base_rate > 0 else np.full(bins, np.nan)
        cum_gain = cum_pos / total_pos if total_pos > 0 else np.full(bins, np.nan)
        cum_lift = (cum_pos / cum_count) / base_rate if base_rate > 0 else np.full(bins, np.nan)
    return pd.DataFrame(
        {
            "decile": np.arange(1, bins + 1),
            "count": count,
            "positives": positives,
            "rate": rate,
            "lift": lift,
            "cumulative_gain": cum_gain,
            "cumulative_lift": cum_lift,
        }
    )


def top_decile_lift(y, p) -> float:
    """Positive rate in the top 10 % of scores divided by the overall positive rate."""
    return float(decile_table(y, p)["lift"].iloc[0])


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _line_chart(
    path: str | Path, series, diagonal_to: float, diagonal_label: str, labels, legend_loc: str
) -> Path:
    """Write a PNG with a model curve, a dashed grey diagonal baseline, axis labels and a title."""
    plt = _pyplot()
    path = Path(path)
    (x, y), (xlabel, ylabel, title) = series, labels
    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    try:
        ax.plot(x, y, marker="o", label="model")
        ax.plot([0, diagonal_to], [0, diagonal_to], linestyle="--", color="grey", label=diagonal_label)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend(loc=legend_loc)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def gains_chart(table: pd.DataFrame, path: str | Path) -> Path:
    """Write the cumulative gains curve of a :func:`decile_table` (with the random baseline) as a PNG."""
    share = np.concatenate([[0.0], table["count"].cumsum().to_numpy() / table["count"].sum()])
    gain = np.concatenate([[0.0], table["cumulative_gain"].to_numpy()])
    title = f"Cumulative gains (top-decile lift {table['lift'].iloc[0]:.2f})"
    labels = ("customers targeted (%)", "positives captured (%)", title)
    return _line_chart(path, (share * 100, gain * 100), 100, "random", labels, "lower right")


def calibration_table(y, p, bins: int = 10) -> pd.DataFrame:
    """Mean predicted vs observed rate in ``bins`` equal-count score bins (ordered by score, lowest first)."""
    y, p = _check(y, p)
    order = np.argsort(p, kind="stable")
    idx = np.array_split(order, min(bins, y.size))
    return pd.DataFrame(
        {
            "bin": np.arange(1, len(idx) + 1),
            "count": [i.size for i in idx],
            "mean_predicted": [float(p[i].mean()) for i in idx],
            "observed_rate": [float(y[i].mean()) for i in idx],
        }
    )


def calibration_plot(y, p, path: str | Path, bins: int = 10) -> Path:
    """Write a reliability diagram (mean predicted vs observed rate per equal-count bin) as a PNG."""
    table = calibration_table(y, p, bins)
    top = max(table["mean_predicted"].max(), table["observed_rate"].max()) * 1.05 or 1.0
    labels = ("mean predicted probability", "observed rate", "Calibration (equal-count bins)")
    series = (table["mean_predicted"], table["observed_rate"])
    return _line_chart(path, series, top, "perfect", labels, "upper left")


def segment_chart(mix: pd.DataFrame, path: str | Path, title: str = "audience by segment") -> Path:
    """Horizontal bars of treatment and holdout customers per segment, one panel per segment column
    (``mix``: ``dimension, segment, treatment, holdout`` rows as written by a campaign run)."""
    plt = _pyplot()
    path = Path(path)
    dims = list(dict.fromkeys(mix["dimension"]))
    heights = [max(1.2, 0.35 * (mix["dimension"] == d).sum() + 0.6) for d in dims]
    fig, axes = plt.subplots(len(dims), 1, figsize=(7, sum(heights)), dpi=100, squeeze=False)
    try:
        for ax, dim in zip(axes[:, 0], dims, strict=True):
            part = mix.loc[mix["dimension"] == dim].iloc[::-1]
            y = np.arange(len(part))
            ax.barh(y, part["treatment"], label="treatment")
            ax.barh(y, part["holdout"], left=part["treatment"], label="holdout")
            ax.set_yticks(y, part["segment"].astype(str))
            ax.set_title(dim, fontsize=10)
            ax.grid(axis="x", alpha=0.3)
        axes[0, 0].legend(loc="lower right")
        fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path
