"""Population stability: PSI, the reference profile, its bins and JSON form, and the rows, levels and summary of a
comparison (pipelines/monitoring/stability.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pipelines.monitoring.stability import (
    ROW_COLUMNS,
    Thresholds,
    level,
    psi,
    reference_profile,
    stability,
    summary_lines,
    worst,
)

N = 20_000


def _normal(seed: int, shift: float = 0.0, n: int = N) -> np.ndarray:
    return np.random.default_rng(seed).normal(shift, 1.0, n)


def _row(rows: pd.DataFrame, subject: str, metric: str) -> pd.Series:
    hit = rows[(rows["subject"] == subject) & (rows["metric"] == metric)]
    assert len(hit) == 1, f"{subject}/{metric}: {len(hit)} rows"
    return hit.iloc[0]


# --------------------------------------------------------------------------------------------------------------
# psi and level


def test_psi_is_zero_for_identical_shares_and_positive_otherwise():
    shares = [0.1, 0.2, 0.3, 0.4]
    assert psi(shares, shares) == 0.0
    rng = np.random.default_rng(3)
    for _ in range(20):
        e, a = rng.dirichlet(np.ones(6)), rng.dirichlet(np.ones(6))
        assert psi(e, a) > 0.0
        assert psi(e, a) == pytest.approx(psi(a, e))  # symmetric


def test_psi_matches_a_hand_computation():
    expected = 0.25 * math.log(0.5 / 0.25) + 0.25 * math.log(0.75 / 0.5)  # (a - e) ln(a / e), two bins
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(0.2747, abs=1e-4)


def test_psi_floors_empty_bins_at_floor():
    floored = (0.5 - 1.0) * math.log(0.5 / 1.0) + (0.5 - 1e-4) * math.log(0.5 / 1e-4)
    assert psi([1.0, 0.0], [0.5, 0.5]) == pytest.approx(floored, abs=1e-12)
    assert psi([1.0, 0.0], [0.5, 0.5], floor=1e-2) < floored


@pytest.mark.parametrize(
    ("expected", "actual", "match"),
    [([0.5, 0.5], [1.0], "differ in length"), ([], [], "no bins"), ([1.5, -0.5], [0.5, 0.5], "non-negative")],
)
def test_psi_rejects_bad_shares(expected, actual, match):
    with pytest.raises(ValueError, match=match):
        psi(expected, actual)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.0, "ok"), (0.0999, "ok"), (0.1, "warn"), (0.2499, "warn"), (0.25, "alert"), (3, "alert")],
)
def test_level_boundaries(value, expected):
    assert level(value, 0.1, 0.25) == expected


def test_level_and_thresholds_reject_inverted_bounds():
    with pytest.raises(ValueError, match="above alert"):
        level(0.1, 0.3, 0.2)
    with pytest.raises(ValueError, match="psi_warn <= psi_alert"):
        Thresholds(psi_warn=0.3, psi_alert=0.2)


# --------------------------------------------------------------------------------------------------------------
# numeric shifts


def test_a_second_sample_of_the_same_distribution_is_stable():
    ref = _normal(1)
    profile = reference_profile(pd.DataFrame({"x": _normal(2)}), ref, ["x"])
    rows = stability(profile, pd.DataFrame({"x": _normal(4)}), _normal(3))
    assert len(profile["score"]["edges"]) == 9
    assert sum(profile["score"]["shares"]) == pytest.approx(1.0)
    for subject in ("score", "x"):
        assert 0.0 <= _row(rows, subject, "psi")["value"] < 0.02
    assert worst(rows) == "ok"


def test_an_unchanged_frame_gives_zero_psi():
    frame = pd.DataFrame({"x": _normal(5), "c": np.random.default_rng(6).choice(list("abc"), N)})
    profile = reference_profile(frame, _normal(7), ["x", "c"])
    rows = stability(profile, frame, _normal(7))
    assert rows.loc[rows["metric"] == "psi", "value"].abs().max() < 1e-12
    assert set(rows["level"]) == {"ok"}


def test_a_one_sd_shift_alerts():
    profile = reference_profile(pd.DataFrame({"x": _normal(1)}), _normal(2), ["x"])
    rows = stability(profile, pd.DataFrame({"x": _normal(3, shift=1.0)}), _normal(4, shift=1.0))
    for subject in ("score", "x"):
        row = _row(rows, subject, "psi")
        assert row["value"] > 0.25
        assert row["level"] == "alert"
        assert math.isnan(row["reference"])
    assert worst(rows) == "alert"


def test_a_fifth_sd_shift_gives_the_psi_the_normal_distribution_predicts():
    profile = reference_profile(pd.DataFrame({"x": _normal(1)}), _normal(2), ["x"])
    rows = stability(profile, pd.DataFrame({"x": _normal(3, shift=0.2)}), _normal(4))
    edges = np.array(profile["features"]["x"]["edges"])
    cdf = stats.norm.cdf(np.r_[-np.inf, edges, np.inf], loc=0.2)
    predicted = psi([*profile["features"]["x"]["shares"], 0.0], [*np.diff(cdf), 0.0])
    measured = _row(rows, "x", "psi")
    assert 0.02 < predicted < 0.1
    assert measured["value"] == pytest.approx(predicted, abs=0.01)
    assert measured["level"] == level(predicted, 0.1, 0.25) == "ok"


def test_bins_are_right_closed_and_open_at_both_ends():
    x = np.arange(1, 101, dtype=float)
    profile = reference_profile(pd.DataFrame({"x": x}), x, ["x"], bins=4)
    entry = profile["features"]["x"]
    assert entry["edges"] == pytest.approx([25.75, 50.5, 75.25])
    assert entry["shares"] == pytest.approx([0.25, 0.25, 0.25, 0.25])
    # A value on a cut point falls in the bin below it; values past the reference's range in the outer bins.
    now = pd.DataFrame({"x": [50.5] * 50 + [-1e9] * 25 + [1e9] * 25})
    rows = stability(profile, now, x)
    assert _row(rows, "x", "psi")["value"] == pytest.approx(
        psi([0.25] * 4 + [0.0], [0.25, 0.5, 0.0, 0.25, 0.0])
    )


def test_a_constant_column_and_ties_do_not_crash_and_are_stable_when_unchanged():
    rng = np.random.default_rng(8)
    frame = pd.DataFrame(
        {"const": np.full(1000, 7.0), "ties": rng.choice([0, 1, 2, 3], 1000, p=[0.7, 0.1, 0.1, 0.1])}
    )
    profile = reference_profile(frame, np.zeros(1000), ["const", "ties"])
    for name in ("const", "ties"):
        entry = profile["features"][name]
        assert np.all(np.diff(entry["edges"]) > 0)
        assert len(entry["shares"]) == len(entry["edges"]) + 1
        assert sum(entry["shares"]) == pytest.approx(1.0)
    assert profile["features"]["const"]["edges"] == [7.0]
    assert profile["score"]["edges"] == [0.0]
    rows = stability(profile, frame, np.zeros(1000))
    assert rows.loc[rows["metric"] == "psi", "value"].abs().max() < 1e-12
    moved = stability(profile, frame.assign(const=8.0), np.zeros(1000))
    assert _row(moved, "const", "psi")["level"] == "alert"


# --------------------------------------------------------------------------------------------------------------
# missing values, unseen categories, absent features


def test_a_column_thirty_percent_missing_now_alerts_and_shows_in_psi():
    ref = _normal(1)
    profile = reference_profile(pd.DataFrame({"x": ref}), ref, ["x"])
    now = ref.copy()
    now[np.random.default_rng(2).random(N) < 0.3] = np.nan
    rows = stability(profile, pd.DataFrame({"x": now}), ref)
    missing = _row(rows, "x", "missing_share")
    share = float(np.isnan(now).mean())
    assert missing["value"] == pytest.approx(share)
    assert missing["reference"] == 0.0
    assert missing["level"] == "alert"
    assert _row(rows, "x", "psi")["value"] > (share - 1e-4) * math.log(share / 1e-4) > 0.25
    assert _row(rows, "x", "psi")["level"] == "alert"
    assert _row(rows, "score", "missing_share")["level"] == "ok"


def test_a_column_that_turns_all_missing_shows_in_psi_and_infinities_count_as_missing():
    x = np.random.default_rng(1).normal(size=500)
    profile = reference_profile(pd.DataFrame({"x": x}), x, ["x"])
    rows = stability(profile, pd.DataFrame({"x": np.full(500, np.inf)}), x)
    assert _row(rows, "x", "missing_share")["value"] == 1.0
    assert _row(rows, "x", "psi")["level"] == "alert"


def test_missing_share_grades_the_rise_over_the_reference():
    x = np.where(np.arange(1000) % 10 == 0, np.nan, np.arange(1000.0))  # 10 % missing at reference
    profile = reference_profile(pd.DataFrame({"x": x}), np.arange(1000.0), ["x"])
    assert profile["features"]["x"]["missing"] == pytest.approx(0.1)
    now = np.where(np.arange(1000) % 5 == 0, np.nan, np.arange(1000.0))  # 20 %: a rise of 0.1
    row = _row(stability(profile, pd.DataFrame({"x": now}), np.arange(1000.0)), "x", "missing_share")
    assert (row["value"], row["reference"], row["level"]) == (pytest.approx(0.2), pytest.approx(0.1), "warn")


def test_unseen_categories_are_graded_and_in_psi():
    rng = np.random.default_rng(9)
    ref = pd.DataFrame({"channel": rng.choice(["email", "sms"], 2000)})
    profile = reference_profile(ref, np.zeros(2000), ["channel"])
    assert profile["features"]["channel"]["kind"] == "categorical"
    now = ref.copy()
    now.loc[:59, "channel"] = "push"  # 3 % of values never seen at reference
    rows = stability(profile, now, np.zeros(2000))
    unseen = _row(rows, "channel", "unseen_share")
    assert unseen["value"] == pytest.approx(0.03)
    assert unseen["reference"] == 0.0
    assert unseen["level"] == "warn"
    assert _row(rows, "channel", "psi")["value"] > (0.03 - 1e-4) * math.log(0.03 / 1e-4)
    assert list(rows.loc[rows["subject"] == "channel", "metric"]) == ["psi", "missing_share", "unseen_share"]


def test_a_profiled_feature_absent_from_the_frame_is_one_alert_row():
    frame = pd.DataFrame({"a": _normal(1, n=100), "b": _normal(2, n=100)})
    profile = reference_profile(frame, _normal(3, n=100), ["a", "b"])
    rows = stability(profile, frame[["b"]], _normal(3, n=100))
    absent = rows[rows["subject"] == "a"]
    assert len(absent) == 1
    assert absent.iloc[0][["metric", "value", "level"]].tolist() == ["missing_share", 1.0, "alert"]
    assert worst(rows) == "alert"


# --------------------------------------------------------------------------------------------------------------
# categoricals, row layout, JSON


def test_categorical_dtype_is_profiled_by_value_and_ignores_unused_categories():
    values = pd.Categorical(["a"] * 60 + ["b"] * 40, categories=["a", "b", "never"])
    profile = reference_profile(pd.DataFrame({"c": values}), np.arange(100.0), ["c"])
    assert profile["features"]["c"] == {"kind": "categorical", "shares": {"a": 0.6, "b": 0.4}, "missing": 0.0}
    now = pd.DataFrame({"c": pd.Categorical(["a"] * 30 + ["b"] * 70, categories=["a", "b", "never"])})
    row = _row(stability(profile, now, np.arange(100.0)), "c", "psi")
    assert row["value"] == pytest.approx(psi([0.6, 0.4, 0.0, 0.0], [0.3, 0.7, 0.0, 0.0]))


def test_a_numeric_column_named_categorical_keys_integral_floats_like_ints():
    ref = pd.DataFrame({"tier": np.tile([1, 2, 3], 100)})
    profile = reference_profile(ref, np.zeros(300), ["tier"], categorical=["tier"])
    assert set(profile["features"]["tier"]["shares"]) == {"1", "2", "3"}
    now = pd.DataFrame({"tier": np.r_[np.tile([1.0, 2.0, 3.0], 90), np.full(30, np.nan)]})
    rows = stability(profile, now, np.zeros(300))
    assert _row(rows, "tier", "unseen_share")["value"] == 0.0
    assert _row(rows, "tier", "missing_share")["value"] == pytest.approx(0.1)


def test_rows_come_score_first_then_features_in_profile_order():
    rng = np.random.default_rng(10)
    frame = pd.DataFrame(
        {"z": rng.normal(size=200), "seg": rng.choice(list("xy"), 200), "a": rng.normal(size=200)}
    )
    profile = reference_profile(frame, rng.random(200), ["z", "seg", "a"])
    rows = stability(profile, frame, rng.random(200))
    assert tuple(rows.columns) == ROW_COLUMNS
    assert list(dict.fromkeys(rows["subject"])) == ["score", "z", "seg", "a"]
    assert len(rows) == 2 + 2 + 3 + 2
    assert rows.loc[rows["metric"] == "missing_share", "reference"].notna().all()


def test_the_profile_survives_a_json_round_trip_with_the_same_stability():
    rng = np.random.default_rng(11)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=3000),
            "n": rng.integers(0, 5, 3000),
            "seg": pd.Categorical(rng.choice(["a", "b", "c"], 3000)),
            "flag": rng.random(3000) < 0.3,
        }
    )
    profile = reference_profile(frame, rng.random(3000), ["x", "n", "seg", "flag"])
    restored = json.loads(json.dumps(profile, allow_nan=False))
    assert restored == profile
    now = frame.sample(frac=1.0, random_state=1).reset_index(drop=True)
    now.loc[:300, "x"] = np.nan
    now.loc[:100, "seg"] = "c"
    scores = rng.random(3000) ** 2
    pd.testing.assert_frame_equal(stability(restored, now, scores), stability(profile, now, scores))


def test_bad_inputs_name_the_problem():
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match=r"lacks the features \['y'\]"):
        reference_profile(frame, [0.1, 0.2, 0.3], ["x", "y"])
    with pytest.raises(ValueError, match="differ in length"):
        reference_profile(frame, [0.1, 0.2], ["x"])
    profile = reference_profile(frame, [0.1, 0.2, 0.3], ["x"])
    with pytest.raises(ValueError, match="'x' is profiled as numeric"):
        stability(profile, pd.DataFrame({"x": ["a", "b", "c"]}), [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="version"):
        stability({**profile, "version": 99}, frame, [0.1, 0.2, 0.3])


# --------------------------------------------------------------------------------------------------------------
# worst and summary lines


def test_worst_and_summary_lines_put_the_worst_first():
    profile = reference_profile(pd.DataFrame({"x": _normal(1), "y": _normal(2)}), _normal(3), ["x", "y"])
    now = pd.DataFrame({"x": _normal(4, shift=1.0), "y": _normal(5)})
    rows = stability(profile, now, _normal(6))
    lines = summary_lines(rows, top=3)
    assert len(lines) == 3
    assert lines[0].startswith("psi x ") and lines[0].endswith(" ALERT")
    assert all(line.endswith(" ok") for line in lines[1:])
    assert lines[1].split()[2] >= lines[2].split()[2]
    score_line = next(line for line in summary_lines(rows, top=len(rows)) if line.startswith("psi score "))
    assert score_line == f"psi score {_row(rows, 'score', 'psi')['value']:.3f} ok"
    assert "missing_share y 0.000 (reference 0.000) ok" in summary_lines(rows, top=len(rows))
    assert worst(rows) == "alert"
    assert worst(rows[rows["subject"] == "y"]) == "ok"
    assert worst(rows.iloc[0:0]) == "ok"
    assert summary_lines(rows.iloc[0:0]) == []


def test_a_share_that_did_not_move_is_not_listed_before_a_psi_that_did():
    rows = pd.DataFrame(
        {
            "subject": ["aum", "score"],
            "metric": ["missing_share", "psi"],
            "value": [0.043, 0.023],
            "reference": [0.045, float("nan")],
            "level": ["ok", "ok"],
        }
    )
    assert summary_lines(rows) == ["psi score 0.023 ok", "missing_share aum 0.043 (reference 0.045) ok"]
