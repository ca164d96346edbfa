"""Scoring metrics and decile tables against sklearn and against properties any ranking must have."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

from pipelines.models.evaluate import (
    calibration_plot,
    calibration_table,
    decile_table,
    gains_chart,
    ks_statistic,
    score_metrics,
    top_decile_lift,
)


@pytest.fixture
def scored():
    rng = np.random.default_rng(3)
    p = rng.uniform(0.01, 0.99, 1000)
    y = (rng.uniform(size=p.size) < p).astype(int)
    return y, p


def test_score_metrics_match_sklearn(scored):
    y, p = scored
    m = score_metrics(y, p)
    assert m["auc"] == pytest.approx(roc_auc_score(y, p))
    assert m["pr_auc"] == pytest.approx(average_precision_score(y, p))
    assert m["log_loss"] == pytest.approx(log_loss(y, p))
    assert m["brier"] == pytest.approx(brier_score_loss(y, p))
    assert m["base_rate"] == pytest.approx(y.mean())
    assert m["n"] == 1000
    assert 0.6 < m["auc"] < 0.9


def test_ranking_metrics_of_the_rank_key_and_calibration_metrics_of_the_probability(scored):
    y, p = scored
    steps = np.clip(np.round(p, 1), 0.05, 0.95)  # a step map of p that ties most rows
    m = score_metrics(y, steps, rank=p)
    assert m["auc"] == roc_auc_score(y, p) > roc_auc_score(y, steps)
    assert m["ks"] == ks_statistic(y, p)
    assert m["pr_auc"] == pytest.approx(average_precision_score(y, p))
    assert m["log_loss"] == pytest.approx(log_loss(y, steps))
    assert m["brier"] == pytest.approx(brier_score_loss(y, steps))
    with pytest.raises(ValueError, match="differ in length"):
        score_metrics(y, p, rank=p[:-1])


def test_ks_on_hand_made_arrays():
    # Perfect separation: KS = 1; identical scores: KS = 0.
    assert ks_statistic([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == pytest.approx(1.0)
    assert ks_statistic([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.0)
    # One of two positives above both negatives: TPR - FPR peaks at 0.5.
    assert ks_statistic([1, 0, 1, 0], [0.9, 0.8, 0.3, 0.2]) == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("y", "p", "message"),
    [
        ([1, 1, 1], [0.1, 0.2, 0.3], "single class"),
        ([0, 1], [0.1], "differ in length"),
        ([0, 2], [0.1, 0.2], "0/1"),
        ([0, 1], [0.1, np.nan], "NaN"),
    ],
)
def test_score_metrics_rejects_bad_input(y, p, message):
    with pytest.raises(ValueError, match=message):
        score_metrics(y, p)


def test_decile_table_sums_and_columns(scored):
    y, p = scored
    t = decile_table(y, p)
    assert list(t["decile"]) == list(range(1, 11))
    assert t["count"].sum() == y.size and (t["count"] == 100).all()
    assert t["positives"].sum() == y.sum()
    assert t["rate"].to_numpy() == pytest.approx(t["positives"].to_numpy() / 100)
    assert (t["count"] * t["lift"]).sum() / y.size == pytest.approx(1.0)  # lift averages to 1
    assert t["cumulative_gain"].iloc[-1] == pytest.approx(1.0)
    assert t["cumulative_lift"].iloc[-1] == pytest.approx(1.0)
    assert np.all(np.diff(t["cumulative_gain"]) >= 0)
    assert t["lift"].iloc[0] > t["lift"].iloc[-1]


def test_decile_table_uneven_rows_and_tie_order():
    y = np.array([1, 0] * 11 + [1])  # 23 rows
    p = np.linspace(1, 0, 23)
    t = decile_table(y, p)
    assert list(t["count"]) == [3, 3, 3, 2, 2, 2, 2, 2, 2, 2]
    assert t["positives"].sum() == y.sum()


def test_perfect_ranker_lift_is_inverse_base_rate():
    y = np.array([1] * 100 + [0] * 900)
    p = np.linspace(1, 0, 1000)
    t = decile_table(y, p)
    assert top_decile_lift(y, p) == pytest.approx(10.0)
    assert list(t["positives"]) == [100] + [0] * 9
    assert t["cumulative_gain"].iloc[0] == pytest.approx(1.0)
    # Reversed scores put every positive in the last decile.
    assert top_decile_lift(y, -p) == pytest.approx(0.0)


def test_random_scores_have_lift_near_one():
    rng = np.random.default_rng(0)
    y = (rng.uniform(size=50_000) < 0.2).astype(int)
    assert top_decile_lift(y, rng.uniform(size=y.size)) == pytest.approx(1.0, abs=0.1)


def test_calibration_table_of_calibrated_scores_is_on_the_diagonal(scored):
    y, p = scored
    t = calibration_table(y, p)
    assert t["count"].sum() == y.size
    assert np.all(np.diff(t["mean_predicted"]) > 0)
    assert np.abs(t["mean_predicted"] - t["observed_rate"]).max() < 0.12


def test_plots_write_png_files(scored, tmp_path):
    y, p = scored
    gains = gains_chart(decile_table(y, p), tmp_path / "gains.png")
    calib = calibration_plot(y, p, tmp_path / "calibration.png")
    for path in (gains, calib):
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000


def test_decile_table_is_a_dataframe_with_the_documented_columns(scored):
    t = decile_table(*scored)
    assert isinstance(t, pd.DataFrame)
    assert list(t.columns) == [
        "decile",
        "count",
        "positives",
        "rate",
        "lift",
        "cumulative_gain",
        "cumulative_lift",
    ]
