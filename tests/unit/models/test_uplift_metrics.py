"""Uplift metrics: Qini and AUUC against a transcription of scikit-uplift, hand-made curves, ties, the bootstrap
interval and the verdict."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest

from pipelines.models import uplift_metrics
from pipelines.models.uplift_metrics import (
    HETEROGENEITY,
    NO_HETEROGENEITY,
    WORSE_THAN_RANDOM,
    auuc,
    bootstrap_ci,
    evaluate_scores,
    incremental_at_k,
    qini_coefficient,
    qini_curve,
    uplift_at_k,
    verdict,
)
from pipelines.models.uplift_training import TEST_METRICS
from pipelines.progress import track

# --------------------------------------------------------------------------------------------------------------
# Reference: scikit-uplift 0.5 qini_curve / perfect_qini_curve / qini_auc_score and the uplift-curve pair,
# transcribed (sklift is not installed). Their sort is argsort(mergesort)[::-1] with ties grouped.


def _sk_curve(y, s, t, kind):
    order = np.argsort(s, kind="mergesort")[::-1]
    y, s, t = y[order], s[order], t[order]
    yc, yt = y.copy(), y.copy()
    yc[t == 1] = 0
    yt[t == 0] = 0
    idx = np.r_[np.where(np.diff(s))[0], s.size - 1]
    nt = np.cumsum(t)[idx]
    rt = np.cumsum(yt)[idx]
    n = idx + 1
    nc = n - nt
    rc = np.cumsum(yc)[idx]
    if kind == "qini":
        v = rt - rc * np.divide(nt, nc, out=np.zeros_like(nt, dtype=float), where=nc != 0)
    else:
        v = (
            np.divide(rt, nt, out=np.zeros_like(nt, dtype=float), where=nt != 0)
            - np.divide(rc, nc, out=np.zeros_like(nc, dtype=float), where=nc != 0)
        ) * n
    return np.r_[0, n], np.r_[0, v]


def _sk_score(y, s, t, kind):
    x, v = _sk_curve(y, s, t, kind)
    if kind == "qini":
        perfect = y * t - y * (1 - t)
    else:
        summand = y if np.sum((y == 1) & (t == 0)) > np.sum((y == 0) & (t == 1)) else t
        perfect = 2 * (y == t) + summand
    px, pv = _sk_curve(y, perfect.astype(float), t, kind)
    base = np.trapezoid([0, pv[-1]], [0, px[-1]])
    return (np.trapezoid(v, x) - base) / (np.trapezoid(pv, px) - base)


def _experiment(n: int, seed: int, rate_t: float = 0.3, rate_c: float = 0.2):
    rng = np.random.default_rng(seed)
    t = (rng.uniform(size=n) < 0.5).astype(int)
    y = (rng.uniform(size=n) < np.where(t == 1, rate_t, rate_c)).astype(int)
    return y, t, rng


# --------------------------------------------------------------------------------------------------------------
# Metrics on hand-made data


@pytest.mark.parametrize("kind", ["qini", "uplift"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_normalised_areas_match_scikit_uplift(kind, seed):
    y, t, rng = _experiment(500, seed)
    s = np.round(rng.normal(size=y.size), 1)  # plenty of ties
    ours = qini_coefficient(y, t, s) if kind == "qini" else auuc(y, t, s)
    assert ours == pytest.approx(_sk_score(y.astype(float), s, t.astype(float), kind), abs=1e-12)


def test_qini_curve_by_hand():
    y = np.array([1, 0, 1, 0, 0, 1])
    t = np.array([1, 1, 0, 0, 1, 0])
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    curve = qini_curve(y, t, s)
    assert curve["n_targeted"].tolist() == [0, 1, 2, 3, 4, 5, 6]
    # k=3: treated 2 rows, 1 responder; control 1 row, 1 responder -> 1 - 1 * 2/1 = -1
    # k=5: treated 3 rows, 1 responder; control 2 rows, 1 responder -> 1 - 1 * 3/2 = -0.5
    assert curve["incremental_responses"].tolist() == pytest.approx([0, 1, 1, -1, 0, -0.5, -1])
    assert curve["random_incremental"].iloc[-1] == pytest.approx(curve["incremental_responses"].iloc[-1])
    assert curve["fraction_targeted"].iloc[-1] == 1.0


def test_qini_curve_groups_ties_and_bins():
    y = np.array([1, 0, 0, 1])
    t = np.array([1, 0, 1, 0])
    s = np.array([0.5, 0.5, 0.1, 0.1])
    curve = qini_curve(y, t, s)
    assert curve["n_targeted"].tolist() == [0, 2, 4]  # no point inside a group of equal scores
    binned = qini_curve(y, t, s, bins=4)
    assert binned["fraction_targeted"].tolist() == [0, 0.25, 0.5, 0.75, 1.0]
    assert binned["incremental_responses"].iloc[2] == pytest.approx(curve["incremental_responses"].iloc[1])


def test_perfect_random_and_reversed_scores():
    y, t, rng = _experiment(20_000, 3)
    perfect = y * t - y * (1 - t)
    assert qini_coefficient(y, t, perfect) == pytest.approx(1.0)
    randoms = [qini_coefficient(y, t, rng.uniform(size=y.size)) for _ in range(5)]
    assert abs(np.mean(randoms)) < 0.03
    assert qini_coefficient(y, t, -perfect) < -0.3
    assert auuc(y, t, -perfect) < 0 < auuc(y, t, perfect)


def test_ties_do_not_depend_on_row_order():
    y, t, rng = _experiment(3000, 4)
    s = rng.integers(0, 5, y.size).astype(float)  # five groups of equal scores
    perm = rng.permutation(y.size)
    for fn in (qini_coefficient, auuc, uplift_at_k):
        assert fn(y, t, s) == pytest.approx(fn(y[perm], t[perm], s[perm]), abs=1e-12)
    a, b = qini_curve(y, t, s), qini_curve(y[perm], t[perm], s[perm])
    pd.testing.assert_frame_equal(a, b)


def test_uplift_at_k_by_hand():
    y = np.array([1, 1, 0, 0, 1, 0, 0, 1, 0, 0])
    t = np.array([1, 0, 1, 0, 1, 0, 1, 0, 1, 0])
    s = np.arange(10, 0, -1, dtype=float)
    # top 40 %: rows 0-3 -> treated (1, 0) rate 1/2, control (1, 0) rate 1/2 -> 0
    assert uplift_at_k(y, t, s, 0.4) == pytest.approx(0.0)
    # top 50 %: treated rows 0, 2, 4 -> 2/3; control rows 1, 3 -> 1/2
    assert uplift_at_k(y, t, s, 0.5) == pytest.approx(2 / 3 - 1 / 2)
    # a cut inside a tied pair counts both rows at half weight: treated {0}, {2 half}; control {1}, {3 half}
    tied = s.copy()
    tied[2:4] = 7.5
    assert uplift_at_k(y, t, tied, 0.3) == pytest.approx(1 / 1.5 - 1 / 1.5)


@pytest.mark.parametrize(
    ("y", "t", "s", "match"),
    [
        ([1, 0], [1, 1], [0.1, 0.2], "single group"),
        ([1, 2], [1, 0], [0.1, 0.2], "0/1"),
        ([1, 0], [1, 0], [np.nan, 0.2], "NaN"),
        ([1, 0, 1], [1, 0], [0.1, 0.2], "differ"),
    ],
)
def test_metric_input_checks(y, t, s, match):
    with pytest.raises(ValueError, match=match):
        qini_coefficient(y, t, s)


def test_bootstrap_ci_vectorised_path_agrees_with_the_loop():
    y, t, rng = _experiment(4000, 5)
    s = y * t * rng.uniform(size=y.size) + rng.uniform(size=y.size)
    fast = bootstrap_ci(qini_coefficient, y, t, s, n_boot=300)
    slow = bootstrap_ci(lambda *a: qini_coefficient(*a), y, t, s, n_boot=300)
    q = qini_coefficient(y, t, s)
    assert fast[0] < q < fast[1] and slow[0] < q < slow[1]
    # different resamples, same distribution: bounds agree to Monte-Carlo error
    assert fast == pytest.approx(slow, abs=0.03)
    assert bootstrap_ci(qini_coefficient, y, t, s, seed=1) == bootstrap_ci(qini_coefficient, y, t, s, seed=1)
    low, high = bootstrap_ci(auuc, y, t, s, n_boot=50)
    assert low < auuc(y, t, s) < high


@pytest.mark.parametrize(
    ("q", "low", "high", "expected"),
    [
        (0.05, -0.01, 0.11, NO_HETEROGENEITY),
        (0.05, 0.0, 0.1, NO_HETEROGENEITY),
        (0.07, 0.02, 0.12, HETEROGENEITY),
        (-0.2, -0.3, -0.1, WORSE_THAN_RANDOM),
    ],
)
def test_verdict(q, low, high, expected):
    assert verdict(q, low, high) == expected


def test_incremental_at_k_is_uplift_at_k_times_the_rows_targeted():
    y = np.array([1, 0, 1, 0, 0, 1, 0, 0, 1, 0])
    t = np.array([1, 0, 1, 1, 0, 0, 1, 0, 1, 0])
    s = np.arange(10, 0, -1) / 10
    # top 3: rows 0-2 -> treated 2/2 responders, control 0/1 -> uplift 1.0, 3 rows
    assert uplift_at_k(y, t, s, 0.3) == pytest.approx(1.0)
    assert incremental_at_k(y, t, s, 0.3) == pytest.approx(3.0)
    m = evaluate_scores(y, t, s, n_bootstrap=50)
    assert set(m) == {*TEST_METRICS, "incremental_at_30"}
    assert m["qini_ci_low"] <= m["qini_ci_high"]


def test_the_qini_bootstrap_reports_its_progress(monkeypatch):
    """The bootstrap tells its sink how many resamples are done (here every time: the sink's interval is 0 s)."""
    monkeypatch.setattr(uplift_metrics, "track", functools.partial(track, every_seconds=0.0))
    y, t, rng = _experiment(2_000, 4)
    s = rng.normal(size=y.size)
    lines: list[str] = []
    interval = bootstrap_ci(qini_coefficient, y, t, s, n_boot=60, progress=lines.append)
    assert interval == bootstrap_ci(qini_coefficient, y, t, s, n_boot=60)
    assert lines and lines[0].startswith("qini bootstrap: 60/60 resamples (100%)")
    assert lines[-1].startswith("qini bootstrap: 60 resamples done in")
