"""Uplift metrics: the Qini curve and coefficient, AUUC, uplift@k with bootstrap intervals, and the verdict.

Metrics take an outcome ``y`` (0/1), a treatment flag ``t`` (1 = contacted, 0 = holdout) and an uplift score
``s`` (higher = target first). Rows with equal scores form one group: a curve only has points between groups, so
no metric depends on row order. Normalisation (docs/uplift.md): the Qini coefficient and AUUC are the area
between the model's curve and the random line, divided by the same area for the perfect curve (Radcliffe 2007;
scikit-uplift ``qini_auc_score`` / ``uplift_auc_score``): 1 = perfect ranking, 0 = random, < 0 = worse than
random. The stratified bootstrap of Qini is ours: no library does it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from pipelines.progress import Progress, track

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
TOP_SHARE = 0.3
NO_HETEROGENEITY = "no reliable heterogeneity"
HETEROGENEITY = "heterogeneity found"
WORSE_THAN_RANDOM = "model ranks worse than random"


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
    progress: Progress = None,
) -> tuple[float, float]:
    """Percentile bootstrap interval ``(low, high)`` at level 1 - ``alpha`` of ``metric_fn(y, t, s)``.

    Resampling is stratified by treatment (each resample keeps the treated and control counts). For
    :func:`qini_coefficient` and :func:`auuc` (normalised), all resamples are scored at once as multiplicity
    weights over one sort; any other metric is called once per resample. ``progress`` gets the count of
    resamples done (:func:`pipelines.progress.track`).
    """
    y, t, s = _check(y, t, s)
    rng = np.random.default_rng(seed)
    treated, control = np.flatnonzero(t == 1), np.flatnonzero(t == 0)
    kind = _VECTORISED.get(metric_fn)
    values = []
    with track(
        n_boot, "qini bootstrap" if kind == "qini" else "bootstrap", unit="resamples", progress=progress
    ) as done:
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
                done.advance(b)
            stats = np.concatenate(values)
        else:
            idx_t = rng.choice(treated, size=(n_boot, treated.size), replace=True)
            idx_c = rng.choice(control, size=(n_boot, control.size), replace=True)
            idx = np.concatenate([idx_t, idx_c], axis=1)
            stats = np.empty(n_boot)
            for b, i in enumerate(idx):
                stats[b] = metric_fn(y[i], t[i], s[i])
                done.advance()
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


def incremental_at_k(y, t, s, k: float = TOP_SHARE) -> float:
    """Estimated incremental conversions from treating the top ``k`` share of rows by ``s``:
    :func:`uplift_at_k` (treated minus control response rate among them) x their number, floor(n x k).
    Among the rows scored, not scaled to a population."""
    return uplift_at_k(y, t, s, k) * int(len(np.asarray(y)) * k)


def evaluate_scores(
    y, t, s, *, n_bootstrap: int = 200, seed: int = 42, progress: Progress = None
) -> dict[str, float]:
    """``qini`` (normalised), ``qini_ci_low``/``qini_ci_high`` (stratified percentile bootstrap, 95 %), ``auuc``,
    ``uplift_at_30`` and ``incremental_at_30`` (:func:`incremental_at_k`) of scores ``s``; ``progress`` gets the
    bootstrap's progress."""
    q = qini_coefficient(y, t, s)
    low, high = bootstrap_ci(qini_coefficient, y, t, s, n_boot=n_bootstrap, seed=seed, progress=progress)
    return {
        "qini": q,
        "qini_ci_low": low,
        "qini_ci_high": high,
        "auuc": auuc(y, t, s),
        "uplift_at_30": uplift_at_k(y, t, s, TOP_SHARE),
        "incremental_at_30": incremental_at_k(y, t, s, TOP_SHARE),
    }


__all__ = [
    "HETEROGENEITY",
    "NO_HETEROGENEITY",
    "QINI_COLUMNS",
    "TOP_SHARE",
    "WORSE_THAN_RANDOM",
    "auuc",
    "bootstrap_ci",
    "evaluate_scores",
    "incremental_at_k",
    "qini_coefficient",
    "qini_curve",
    "uplift_at_k",
    "verdict",
]
