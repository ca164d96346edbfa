"""Realised performance once labels mature: the project's metrics gathered per model, and the decay grade
(pipelines/monitoring/realised.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pipelines.models import evaluate, uplift_metrics
from pipelines.monitoring.realised import decay_level, realised_classification, realised_uplift


def _propensity(seed: int, n: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and labels drawn from them, so the probabilities are calibrated."""
    rng = np.random.default_rng(seed)
    p = 1.0 / (1.0 + np.exp(-rng.normal(-1.5, 1.0, n)))
    return (rng.random(n) < p).astype(int), p


def test_realised_classification_reuses_the_evaluate_metrics():
    y, p = _propensity(1)
    out = realised_classification(y, p)
    assert out["rows"] == y.size
    assert out["positives"] == int(y.sum())
    assert out["auc"] == evaluate.score_metrics(y, p)["auc"]
    assert out["top_decile_lift"] == evaluate.top_decile_lift(y, p)
    assert out["top_decile_lift"] > 1.5
    deciles = out["calibration"]
    assert [d["decile"] for d in deciles] == list(range(1, 11))
    assert sum(d["rows"] for d in deciles) == y.size
    assert all(a["expected"] >= b["expected"] for a, b in zip(deciles, deciles[1:], strict=False))
    table = evaluate.calibration_table(y, p)
    weighted = (table["count"] * (table["mean_predicted"] - table["observed_rate"]).abs()).sum() / y.size
    assert out["calibration_error"] == pytest.approx(weighted)
    assert json.loads(json.dumps(out)) == out


def test_calibration_error_is_small_when_calibrated_and_grows_when_not():
    y, p = _propensity(2)
    calibrated = realised_classification(y, p)["calibration_error"]
    inflated = realised_classification(y, np.clip(p * 1.5, 0, 1))["calibration_error"]
    assert calibrated < 0.02
    assert inflated > calibrated + 0.03


def test_calibration_bins_follow_the_argument():
    y, p = _propensity(3, n=1_003)
    deciles = realised_classification(y, p, bins=5)["calibration"]
    assert [d["rows"] for d in deciles] == [200, 200, 201, 201, 201]  # lowest scores take the extra rows
    assert sum(d["rows"] for d in deciles) == 1_003


@pytest.mark.parametrize("only", [0, 1])
def test_one_class_labels_raise_a_clear_error(only):
    with pytest.raises(ValueError, match=f"one class only \\(50 rows, all {only}\\)"):
        realised_classification(np.full(50, only), np.linspace(0.1, 0.9, 50))


def test_realised_uplift_matches_the_uplift_metrics():
    rng = np.random.default_rng(4)
    n = 5_000
    treated = rng.integers(0, 2, n)
    score = rng.random(n)
    converted = (rng.random(n) < 0.05 + 0.1 * treated * score).astype(int)
    out = realised_uplift(converted, treated, score)
    assert out["rows"] == n
    assert out["treated"] == int(treated.sum())
    assert out["qini"] == uplift_metrics.qini_coefficient(converted, treated, score)
    assert out["qini"] > 0.1
    assert out["uplift_at_30"] == uplift_metrics.uplift_at_k(converted, treated, score, 0.3)
    assert json.loads(json.dumps(out)) == out


@pytest.mark.parametrize(
    ("realised", "reference", "expected"),
    [
        (0.80, 0.80, "ok"),
        (0.85, 0.80, "ok"),
        (0.78, 0.80, "ok"),
        (0.80, 0.83, "warn"),  # a drop of exactly 0.03, whatever the float rounding
        (0.77, 0.80, "warn"),
        (0.751, 0.80, "warn"),
        (0.75, 0.80, "alert"),
        (0.70, 0.80, "alert"),
        (1.9, 2.0, "alert"),  # lift
    ],
)
def test_decay_level_boundaries(realised, reference, expected):
    assert decay_level(realised, reference) == expected


def test_decay_level_rejects_nan_and_inverted_drops():
    with pytest.raises(ValueError, match="NaN"):
        decay_level(math.nan, 0.8)
    with pytest.raises(ValueError, match="warn_drop <= alert_drop"):
        decay_level(0.7, 0.8, warn_drop=0.1, alert_drop=0.05)
    assert decay_level(0.7, 0.8, warn_drop=0.05, alert_drop=0.2) == "warn"
