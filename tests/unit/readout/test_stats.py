"""Campaign readout statistics: lift, return on spend, the readout of a frame with SRM, the floor alert, and
``pmp readout`` (the CLI and the lake-campaign job over these statistics)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pipelines.cli import main
from pipelines.readout.stats import (
    lift,
    newcombe_interval,
    readout,
    response_floor_alert,
    return_on_spend,
    two_proportion_p_value,
    wilson_interval,
)
from tests.unit.readout._frames import experiment as _experiment

# --------------------------------------------------------------------------------------------------------------
# lift


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        # Newcombe (1998), Statistics in Medicine 17:873-890, Table II, method 10.
        ((56, 70, 48, 80), (0.0524, 0.3339)),
        ((9, 10, 3, 10), (0.1705, 0.8090)),
        ((6, 7, 2, 7), (0.0582, 0.8062)),
        ((5, 56, 0, 29), (-0.0381, 0.1926)),
        ((0, 10, 0, 20), (-0.1611, 0.2775)),
        ((10, 10, 0, 20), (0.6791, 1.0000)),
    ],
)
def test_newcombe_interval_matches_the_published_examples(counts, expected):
    low, high = newcombe_interval(*counts)
    assert (round(float(low), 4), round(float(high), 4)) == expected


def _wilson_by_hand(x: float, n: float, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson (1927) score interval, the textbook formula."""
    p = x / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(centre - half, 0.0), min(centre + half, 1.0)


EDGE_CASES = [
    (0, 5, 0, 5),  # no conversions anywhere
    (5, 5, 5, 5),  # every unit converts
    (1, 1, 0, 1),  # one unit a group
    (0, 2, 2, 2),
    (3, 3, 0, 4),
    (100, 100, 0, 100),
    (1, 2, 1, 3),
    (0, 1000, 40, 1000),  # z-test with an empty cell
    (1000, 100_000, 800, 90_000),
]


@pytest.mark.parametrize("counts", EDGE_CASES)
def test_wilson_and_newcombe_match_the_textbook_formulas_on_edge_cases(counts):
    x1, n1, x0, n0 = counts
    for x, n in ((x1, n1), (x0, n0)):
        low, high = wilson_interval(x, n)
        assert (float(low), float(high)) == pytest.approx(_wilson_by_hand(x, n), abs=1e-12)
    (l1, u1), (l0, u0) = _wilson_by_hand(x1, n1), _wilson_by_hand(x0, n0)
    d = x1 / n1 - x0 / n0
    by_hand = (
        d - math.sqrt((x1 / n1 - l1) ** 2 + (u0 - x0 / n0) ** 2),
        d + math.sqrt((u1 - x1 / n1) ** 2 + (x0 / n0 - l0) ** 2),
    )
    low, high = newcombe_interval(x1, n1, x0, n0)
    assert (float(low), float(high)) == pytest.approx(by_hand, abs=1e-12)
    assert -1 <= low <= d <= high <= 1


@pytest.mark.parametrize("counts", [c for c in EDGE_CASES if min(c[0] + c[2], c[1] + c[3] - c[0] - c[2]) > 0])
def test_the_z_test_is_the_pooled_one(counts):
    x1, n1, x0, n0 = counts
    pooled = (x1 + x0) / (n1 + n0)
    z = (x1 / n1 - x0 / n0) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
    p, test = two_proportion_p_value(x1, n1, x0, n0)
    if test == "z":
        assert p == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-12)
    else:  # an expected cell under 5
        assert p == pytest.approx(stats.fisher_exact([[x1, n1 - x1], [x0, n0 - x0]]).pvalue)


def test_the_intervals_are_vectorised_and_nan_for_an_empty_group():
    low, high = wilson_interval([0, 3, 5], [0, 10, 5])
    assert np.isnan(low[0]) and np.isnan(high[0])
    by_hand = [_wilson_by_hand(3, 10), _wilson_by_hand(5, 5)]
    assert np.column_stack([low[1:], high[1:]]) == pytest.approx(np.array(by_hand), abs=1e-12)
    low, high = newcombe_interval([0, 5, 10], [10, 56, 10], [0, 0, 0], [20, 29, 0])
    assert np.round(low[:2], 4).tolist() == [-0.1611, -0.0381] and np.isnan(low[2]) and np.isnan(high[2])


def test_lift_against_hand_computed_values():
    result = lift(treated_n=1000, treated_conv=60, control_n=1000, control_conv=40)
    assert result.treated_rate == 0.06 and result.control_rate == 0.04
    assert result.lift_abs == pytest.approx(0.02)
    # pooled z-test by hand: p = 0.05, se = sqrt(0.05 * 0.95 * 2 / 1000)
    z = 0.02 / math.sqrt(0.05 * 0.95 * 2 / 1000)
    assert result.test == "z"
    assert result.p_value == pytest.approx(2 * stats.norm.sf(z), rel=1e-12)
    assert result.p_value == pytest.approx(0.04017, abs=1e-5)
    # the z-test p-value equals the chi-square test without continuity correction
    chi2 = stats.chi2_contingency([[60, 940], [40, 960]], correction=False)
    assert result.p_value == pytest.approx(chi2.pvalue, rel=1e-9)
    # relative lift 1.5 - 1; log-ratio se = sqrt(1/60 - 1/1000 + 1/40 - 1/1000)
    se = math.sqrt(1 / 60 - 1 / 1000 + 1 / 40 - 1 / 1000)
    assert result.lift_rel == pytest.approx(0.5)
    assert result.lift_rel_ci_low == pytest.approx(1.5 * math.exp(-1.959964 * se) - 1, rel=1e-5)
    assert result.lift_rel_ci_high == pytest.approx(1.5 * math.exp(1.959964 * se) - 1, rel=1e-5)
    assert result.incremental_responses == pytest.approx(20.0)
    assert result.incremental_ci_low == pytest.approx(result.lift_ci_low * 1000)
    assert result.lift_ci_low < result.lift_abs < result.lift_ci_high
    assert result.significant


def test_small_counts_use_fisher_exact():
    result = lift(20, 5, 20, 0)
    assert result.test == "fisher"
    assert result.p_value == pytest.approx(stats.fisher_exact([[5, 15], [0, 20]]).pvalue)
    assert result.lift_rel is None and result.lift_rel_ci_low is None  # control rate 0


def test_zero_treated_conversions_give_minus_one_with_a_finite_interval():
    result = lift(500, 0, 500, 20)
    assert result.lift_rel == -1.0
    assert -1 < result.lift_rel_ci_low < result.lift_rel_ci_high < 0
    assert result.lift_ci_low < -0.04 + 1e-12 < result.lift_ci_high <= 0


def test_zero_counts_in_both_groups_are_handled():
    result = lift(10, 0, 10, 0)
    assert result.lift_abs == 0 and result.p_value == 1.0
    assert result.lift_ci_low < 0 < result.lift_ci_high


@pytest.mark.parametrize("counts", [(0, 0, 10, 1), (10, 11, 10, 1), (10, 1, 10, -1)])
def test_lift_rejects_impossible_counts(counts):
    with pytest.raises(ValueError):
        lift(*counts)


def test_the_interval_covers_a_known_lift_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    n1, n0, p1, p0 = 4000, 1000, 0.06, 0.04
    x1 = rng.binomial(n1, p1, 2000)
    x0 = rng.binomial(n0, p0, 2000)
    low, high = newcombe_interval(x1, n1, x0, n0)
    coverage = np.mean((low <= p1 - p0) & (p1 - p0 <= high))
    assert 0.93 <= coverage <= 0.97
    # the scalar API gives the same intervals
    for i in range(20):
        one = lift(n1, int(x1[i]), n0, int(x0[i]))
        assert (one.lift_ci_low, one.lift_ci_high) == pytest.approx((low[i], high[i]))


def test_the_relative_interval_covers_a_known_ratio():
    rng = np.random.default_rng(2)
    x1 = rng.binomial(3000, 0.05, 400)
    x0 = rng.binomial(3000, 0.04, 400)
    hits = [
        (r := lift(3000, int(a), 3000, int(b))).lift_rel_ci_low <= 0.25 <= r.lift_rel_ci_high
        for a, b in zip(x1, x0, strict=True)
    ]
    assert 0.92 <= np.mean(hits) <= 0.98


def test_p_values_under_the_null_are_roughly_uniform():
    rng = np.random.default_rng(3)
    x1 = rng.binomial(2000, 0.05, 1000)
    x0 = rng.binomial(2000, 0.05, 1000)
    p = np.array([two_proportion_p_value(int(a), 2000, int(b), 2000)[0] for a, b in zip(x1, x0, strict=True)])
    assert 0.03 <= np.mean(p < 0.05) <= 0.07
    assert stats.kstest(p, "uniform").pvalue > 0.001


def test_return_on_spend():
    result = lift(1000, 60, 1000, 40)
    ros = return_on_spend(result, cost_per_contact=0.5, value_per_response=100)
    assert ros.incremental_value == pytest.approx(2000)
    assert ros.cost == 500 and ros.net == pytest.approx(1500) and ros.roi == pytest.approx(3.0)
    assert return_on_spend(result, 0, 100).roi is None
    with pytest.raises(ValueError):
        return_on_spend(result, -1, 100)


# --------------------------------------------------------------------------------------------------------------
# readout of a frame


def test_readout_overall_segments_and_a_passing_srm_check():
    frame = _experiment()
    result = readout(
        frame,
        treatment_col="arm",
        treated="B",
        control="A",
        outcome_col="bought",
        expected_share=0.9,
        segment_cols=("decile", "region"),
    )
    t = frame[frame["arm"] == "B"]
    assert result.overall.treated_n == len(t) and result.overall.treated_conv == t["bought"].sum()
    assert result.trustworthy and result.srm.ok
    assert result.srm.treatment == len(t)
    assert set(result.segments["by"]) == {"decile", "region"}
    deciles = result.segments[result.segments["by"] == "decile"].set_index("segment")
    assert list(deciles.index) == list(range(1, 11))
    assert deciles["treated_n"].sum() == len(t)
    assert deciles.loc[3, "treated_conv"] == t[t["decile"] == 3]["bought"].sum()
    text = result.describe()
    assert "SRM: ok" in text and "by decile:" in text and "Newcombe" in text


def test_a_biased_split_fails_srm_and_marks_the_readout_untrustworthy():
    frame = _experiment(treated_share=0.93)
    result = readout(
        frame, treatment_col="arm", treated="B", control="A", outcome_col="bought", expected_share=0.9
    )
    assert not result.trustworthy
    assert result.srm.p_value < 0.001
    assert "MISMATCH" in result.describe()


def test_without_an_expected_share_there_is_no_srm_check():
    result = readout(_experiment(), treatment_col="arm", treated="B", control="A", outcome_col="bought")
    assert result.srm is None and result.trustworthy and "not checked" in result.srm_verdict()


def test_readout_accepts_values_given_as_text_and_a_positive_outcome_value():
    frame = pd.DataFrame({"g": [1, 1, 1, 0, 0, 0, 2], "y": ["yes", "no", "yes", "no", "no", "yes", "yes"]})
    result = readout(frame, treatment_col="g", treated="1", control="0", outcome_col="y", positive="yes")
    assert (result.overall.treated_conv, result.overall.treated_n) == (2, 3)
    assert (result.overall.control_conv, result.overall.control_n) == (1, 3)  # group 2 ignored


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"treatment_col": "nope"}, "nope"),
        ({"treated": "C"}, "values seen: A, B"),
        ({"outcome_col": "region"}, "not 0/1"),
        ({"segment_cols": ("missing",)}, "missing"),
        ({"expected_share": 1.5}, "expected share"),
    ],
)
def test_readout_errors_name_the_problem(kwargs, message):
    args = {"treatment_col": "arm", "treated": "B", "control": "A", "outcome_col": "bought", **kwargs}
    with pytest.raises(ValueError, match=message):
        readout(_experiment(n=500), **args)


# --------------------------------------------------------------------------------------------------------------
# floor alert


def test_floor_alert_names_the_underperforming_segments():
    frame = _experiment(n=200_000, p1=0.012, p0=0.006, seed=4)
    result = readout(
        frame, treatment_col="arm", treated="B", control="A", outcome_col="bought", segment_cols=("decile",)
    )
    assert response_floor_alert(result, floor=0.005) is None
    alert = response_floor_alert(result, floor=0.02)
    assert alert.startswith("ALERT: treated response rate")
    below = alert.split("Below the floor by decile: ")[1]
    assert below.startswith("10 ")  # decile 10, which contact does not move, is the worst
    assert "(10 of 10)" in below


def test_floor_alert_without_segments_says_the_shortfall_is_general():
    frame = _experiment(n=5000, p1=0.002, p0=0.002)
    result = readout(frame, treatment_col="arm", treated="B", control="A", outcome_col="bought")
    assert "across the board" in response_floor_alert(result)


# --------------------------------------------------------------------------------------------------------------
# pmp readout


def test_cli_readout_prints_the_readout(tmp_path, capsys):
    path = tmp_path / "experiment.csv"
    _experiment(n=5000).to_csv(path, sep=";", index=False)
    code = main(
        [
            "readout",
            "--table",
            str(path),
            "--treatment",
            "arm",
            "--treated",
            "B",
            "--control",
            "A",
            "--outcome",
            "bought",
            "--expected-share",
            "0.9",
            "--segment",
            "region",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "treated" in out and "control" in out and "95% CI" in out and "p-value" in out
    assert "SRM: ok" in out and "by region:" in out and "north" in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--treatment", "nope"], "nope"),
        (["--treated", "Z"], "values seen: A, B"),
        (["--outcome", "region", "--positive", "east"], "east"),
    ],
)
def test_cli_readout_bad_arguments_exit_2(tmp_path, capsys, extra, message):
    path = tmp_path / "experiment.csv"
    _experiment(n=300).to_csv(path, index=False)
    base = {"--treatment": "arm", "--treated": "B", "--control": "A", "--outcome": "bought"}
    for flag, value in zip(extra[::2], extra[1::2], strict=True):
        base[flag] = value
    argv = ["readout", "--table", str(path), *[x for kv in base.items() for x in kv]]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_cli_readout_missing_file_and_missing_argument_exit_2(tmp_path, capsys):
    argv = ["readout", "--treatment", "a", "--treated", "1", "--control", "0", "--outcome", "y"]
    assert main([*argv, "--table", str(tmp_path / "none.csv")]) == 2
    assert "none.csv" in capsys.readouterr().err
    assert main(argv) == 2  # neither --table nor --campaign-id
    assert "--table FILE" in capsys.readouterr().err
    assert main(["readout", "--table", str(tmp_path / "none.csv")]) == 2  # --table without the columns
    assert "--table needs --treatment" in capsys.readouterr().err


def test_a_lake_campaign_is_read_out_into_the_results_table_and_mlflow(bank, tmp_path, capsys, monkeypatch):
    from mlflow import MlflowClient

    from pipelines.campaigns import store, store_schema
    from pipelines.config import Settings
    from pipelines.data import storage

    data = tmp_path / "data"
    data.mkdir()
    (data / "lake").symlink_to(bank / "lake", target_is_directory=True)
    settings = Settings(data_dir=data, mlruns_dir=tmp_path / "mlruns")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", settings.mlflow_tracking_uri)
    contacts = storage.read_table(settings.lake_dir, "campaign_contacts")
    campaign = sorted(contacts["campaign_id"].unique())[0]
    mine = contacts.loc[contacts["campaign_id"] == campaign, "group"].astype(str).value_counts()

    assert main(["readout", "--campaign-id", campaign, "--data", str(data)]) == 0
    assert "treatment vs holdout" in capsys.readouterr().out
    assert main(["readout", "--campaign-id", campaign, "--data", str(data)]) == 0  # read out again: replaced
    results = store.read_results(store_schema.make_engine(settings.database_url))
    assert results["campaign_id"].tolist() == [campaign]
    row = results.iloc[0]
    assert (row.treated_n, row.control_n) == (mine["treatment"], mine["holdout"])
    assert row.lift_ci_low <= row.lift_abs <= row.lift_ci_high and 0 <= row.p_value <= 1
    folder = data / "runs" / f"readout__{campaign}"
    assert {
        "readout.md",
        "readout.json",
        "report.md",
        "report.html",
        "funnel.csv",
        "channel_quality.csv",
    } <= {p.name for p in folder.iterdir()}
    # the written figures: a nested funnel (no rate over 100 %), and a self-contained page
    stages = pd.read_csv(folder / "funnel.csv")
    assert {"recorded", "off_path"} <= set(stages.columns)
    assert (stages[["stage_rate", "rate_from_sent", "rate_from_selected"]].fillna(0) <= 1).all().all()
    page = (folder / "report.html").read_text()
    assert 'src="' not in page.replace('src="data:', "") and "p = <" not in page
    assert row.srm_p_value is None or pd.isna(
        row.srm_p_value
    )  # a lake campaign has no planned split on record
    assert main(["readout", "--campaign-id", campaign, "--data", str(data), "--expected-share", "0.5"]) == 0
    stored = store.read_results(store_schema.make_engine(settings.database_url)).iloc[0]
    assert stored.srm_p_value > 0.001 and stored.trustworthy  # the generator's campaigns hold out half
    client = MlflowClient(settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name("campaign-readouts")
    runs = client.search_runs([experiment.experiment_id], f"tags.campaign_id = '{campaign}'")
    assert len(runs) == 1 and runs[0].data.metrics["lift_abs"] == pytest.approx(row.lift_abs)
    assert main(["readout", "--campaign-id", "nope", "--data", str(data)]) == 2
    assert "known:" in capsys.readouterr().err
