"""Campaign readout: lift statistics, SRM, funnel, channel quality, the floor alert and ``pmp readout``."""

from __future__ import annotations

import math
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pipelines.cli import main
from pipelines.readout.stats import (
    FUNNEL_STAGES,
    channel_quality,
    funnel,
    lift,
    lift_by_decile_chart,
    newcombe_interval,
    readout,
    render_report,
    response_floor_alert,
    return_on_spend,
    two_proportion_p_value,
)

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


def _experiment(n=20_000, treated_share=0.9, p1=0.03, p0=0.02, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    treated = rng.random(n) < treated_share
    decile = rng.integers(1, 11, n)
    # decile 10 does not respond to the contact at all
    p = np.where(treated & (decile < 10), p1, p0)
    return pd.DataFrame(
        {
            "arm": np.where(treated, "B", "A"),
            "bought": (rng.random(n) < p).astype(int),
            "decile": decile,
            "region": rng.choice(["north", "south"], n),
        }
    )


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
# funnel and channel quality


def _lake_frames():
    contacts = pd.DataFrame(
        {
            "campaign_id": ["c1"] * 6 + ["c2"],
            "customer_id": [1, 2, 3, 4, 5, 6, 1],
            "channel": ["sms"] * 7,
            "group": ["treatment"] * 4 + ["holdout"] * 2 + ["treatment"],
            "selected_at": pd.Timestamp("2025-03-01"),
            "sent_at": [pd.Timestamp("2025-03-01 10:00")] * 4 + [pd.NaT] * 2 + [pd.Timestamp("2025-04-01")],
        }
    )
    utm = {
        "utm_source": "sms",
        "utm_medium": "crm",
        "utm_campaign": "c1",
        "utm_content": "v1",
        "utm_term": "x",
    }
    rows = []
    for customer, events in {1: 8, 2: 4, 3: 2}.items():  # customer 1 converts, 2 visits, 3 opens
        for e in ("delivered", "opened", "clicked", "visited", "app_installed", "registered", "card_bound")[
            : min(events, 7)
        ]:
            rows.append({"customer_id": customer, "event_type": e})
    rows.append({"customer_id": 1, "event_type": "converted"})
    rows.append({"customer_id": 5, "event_type": "converted"})  # holdout converts on its own
    rows.append({"customer_id": 9, "event_type": "converted"})  # not a contact of c1
    responses = pd.DataFrame(rows).assign(campaign_id="c1", event_ts=pd.Timestamp("2025-03-02"))
    for col, value in utm.items():
        tracked = responses["event_type"].isin(["clicked", "visited", "registered", "card_bound"]) | (
            (responses["customer_id"] == 1) & (responses["event_type"] == "converted")
        )
        responses[col] = np.where(tracked, value, None)
    responses.loc[(responses["customer_id"] == 2) & responses["utm_content"].notna(), "utm_content"] = "v2"
    other = pd.DataFrame(
        [
            {
                "campaign_id": "c2",
                "customer_id": 1,
                "event_type": "delivered",
                "event_ts": pd.Timestamp("2025-04-02"),
            }
        ]
    )
    return contacts, pd.concat([responses, other], ignore_index=True)


def test_funnel_on_a_hand_made_campaign():
    contacts, responses = _lake_frames()
    table = funnel(contacts, responses, "c1")
    treated = table[table["group"] == "treatment"].set_index("stage")
    assert list(treated.index) == list(FUNNEL_STAGES)
    assert treated["customers"].to_dict() == {
        "sent": 4,
        "delivered": 3,
        "opened": 3,
        "clicked": 2,
        "visited": 2,
        "app_installed": 1,
        "registered": 1,
        "card_bound": 1,
        "converted": 1,
    }
    assert treated.loc["delivered", "stage_rate"] == pytest.approx(0.75)
    assert treated.loc["clicked", "stage_rate"] == pytest.approx(2 / 3)
    assert treated.loc["converted", "rate_from_sent"] == pytest.approx(0.25)
    assert np.isnan(treated.loc["sent", "stage_rate"])
    holdout = table[table["group"] == "holdout"].set_index("stage")
    assert holdout.loc["sent", "customers"] == 0 and holdout.loc["converted", "customers"] == 1
    assert holdout.loc["converted", "rate_from_selected"] == pytest.approx(0.5)
    assert np.isnan(holdout.loc["converted", "rate_from_sent"])


def test_funnel_of_an_unknown_campaign_is_a_lookup_error():
    contacts, responses = _lake_frames()
    with pytest.raises(LookupError, match="nope"):
        funnel(contacts, responses, "nope")


def test_channel_quality_counts_visits_registrations_and_conversions_per_utm():
    contacts, responses = _lake_frames()
    table = channel_quality(responses, contacts, "c1")
    by_content = table.set_index("utm_content")
    assert by_content.loc["v1", ["visits", "registrations", "conversions"]].tolist() == [1, 1, 1]
    assert by_content.loc["v2", ["visits", "registrations", "conversions"]].tolist() == [1, 0, 0]
    assert by_content.loc["v1", "conversion_rate"] == 1.0 and by_content.loc["v2", "registration_rate"] == 0.0
    organic = by_content.loc["(none)"]
    assert organic["conversions"] == 1 and organic["visits"] == 0  # customer 5; customer 9 is not a contact
    assert np.isnan(organic["conversion_rate"])
    assert table["visits"].is_monotonic_decreasing


def test_funnel_and_channel_quality_on_the_generated_bank(bank):
    from pipelines.data.storage import read_table

    contacts = read_table(bank / "lake", "campaign_contacts")
    responses = read_table(bank / "lake", "responses")
    campaign = contacts["campaign_id"].value_counts().index[0]
    table = funnel(contacts, responses, campaign)
    treated = table[table["group"] == "treatment"].set_index("stage")["customers"]
    n_contacts = int(((contacts["campaign_id"] == campaign) & (contacts["group"] == "treatment")).sum())
    assert treated["sent"] == n_contacts > 0
    # the tracked path is nested; app_installed is a side step and converted includes organic conversions
    path = treated[["sent", "delivered", "opened", "clicked", "visited", "registered", "card_bound"]]
    assert path.is_monotonic_decreasing and path.iloc[-1] > 0
    assert treated["app_installed"] <= treated["visited"]
    holdout = table[table["group"] == "holdout"].set_index("stage")["customers"]
    assert holdout["sent"] == 0 and holdout["visited"] == 0

    quality = channel_quality(responses, contacts, campaign)
    tracked = quality[quality["utm_source"] != "(none)"]
    assert tracked["visits"].sum() == treated["visited"]
    assert tracked["registrations"].sum() == treated["registered"]
    assert (tracked["utm_campaign"] == campaign).all()
    assert (tracked["registrations"] <= tracked["visits"]).all()


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

    from pipelines.campaigns import store
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
    results = store.read_results(store.make_engine(settings.database_url))
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
    assert row.srm_p_value is None or pd.isna(
        row.srm_p_value
    )  # a lake campaign has no planned split on record
    assert main(["readout", "--campaign-id", campaign, "--data", str(data), "--expected-share", "0.5"]) == 0
    stored = store.read_results(store.make_engine(settings.database_url)).iloc[0]
    assert stored.srm_p_value > 0.001 and stored.trustworthy  # the generator's campaigns hold out half
    client = MlflowClient(settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name("campaign-readouts")
    runs = client.search_runs([experiment.experiment_id], f"tags.campaign_id = '{campaign}'")
    assert len(runs) == 1 and runs[0].data.metrics["lift_abs"] == pytest.approx(row.lift_abs)
    assert main(["readout", "--campaign-id", "nope", "--data", str(data)]) == 2
    assert "known:" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------------------
# lift chart and report


def _decile_readout(treated_share=0.9, n=40_000, seed=0):
    frame = _experiment(n=n, treated_share=treated_share, seed=seed)
    frame["segment"] = frame["region"].map({"north": "at_risk <b>", "south": "loyal|core_*x*"})
    return readout(
        frame,
        treatment_col="arm",
        treated="B",
        control="A",
        outcome_col="bought",
        expected_share=0.9,
        segment_cols=("decile", "segment"),
    )


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_lift_by_decile_chart_writes_a_png_for_deciles_and_for_any_segment_column(tmp_path):
    result = _decile_readout()
    path = lift_by_decile_chart(result.segments, tmp_path / "lift.png")
    assert path == tmp_path / "lift.png"
    width, height = _png_size(path)
    assert width >= 600 and height == 400
    by_segment = lift_by_decile_chart(result.segments, tmp_path / "segment.png", by="segment", title="t")
    assert _png_size(by_segment)[1] == 400 and by_segment.read_bytes() != path.read_bytes()
    # rows in any order give the same decile chart
    shuffled = result.segments.sample(frac=1, random_state=1)
    again = lift_by_decile_chart(shuffled, tmp_path / "again.png")
    assert again.read_bytes() == path.read_bytes()


def test_lift_by_decile_chart_errors_name_the_missing_rows(tmp_path):
    result = _decile_readout()
    with pytest.raises(ValueError, match=r"no rows with by == 'region'.*by values: decile, segment"):
        lift_by_decile_chart(result.segments, tmp_path / "x.png", by="region")
    with pytest.raises(ValueError, match="lift_ci_low"):
        lift_by_decile_chart(result.segments.drop(columns="lift_ci_low"), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


class _Html(HTMLParser):
    """Checks that every opened element is closed in order, and collects the external references and text."""

    VOID = {"meta", "img", "br", "hr", "link"}

    def __init__(self):
        super().__init__()
        self.stack, self.refs, self.text, self.tags = [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.refs += [v for k, v in attrs if k in ("src", "href")]
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack.pop() == tag, f"</{tag}> closes {self.stack}"

    def handle_data(self, data):
        self.text.append(data)


def _parse(page: str) -> _Html:
    parser = _Html()
    parser.feed(page)
    parser.close()
    assert parser.stack == []
    return parser


def _report(result, **kwargs):
    contacts, responses = _lake_frames()
    args = {
        "title": "Readout <script>alert(1)</script> & co",
        "facts": {
            "campaign_id": "cmp-1",
            "cost_per_contact": 0.5,
            "value_per_response": 40.0,
            "dry_run": False,
        },
        "funnel": funnel(contacts, responses, "c1"),
        "channels": channel_quality(responses, contacts, "c1"),
        "alert": response_floor_alert(result, floor=0.05),
        "power_note": "powered: 80% power to detect ≥ +0.90 points",
        "true_lift": 0.01,
        "chart": "lift_by_decile.png",
        **kwargs,
    }
    return render_report(result, **args)


def test_report_headline_trust_and_every_section():
    result = _decile_readout()
    o = result.overall
    markdown, page = _report(result)
    for text in (markdown, page):
        assert f"{o.treated_rate:.2%}" in text and f"{o.control_rate:.2%}" in text
        assert f"{o.treated_n:,}" in text and f"{o.control_n:,}" in text
        assert f"{100 * o.lift_abs:+.2f} percentage points" in text
        assert f"95% CI {100 * o.lift_ci_low:+.2f} to {100 * o.lift_ci_high:+.2f}" in text
        assert f"{o.lift_rel:+.1%} (95% CI {o.lift_rel_ci_low:+.1%} to {o.lift_rel_ci_high:+.1%})" in text
        assert f"p = {o.p_value:.4f} (pooled z-test)" in text
        assert f"Incremental responses: {o.incremental_responses:,.1f}" in text
        ros = return_on_spend(o, 0.5, 40.0)
        assert f"incremental value {ros.incremental_value:,.2f}" in text and f"cost {ros.cost:,.2f}" in text
        assert "SRM: ok" in text and "UNTRUSTWORTHY" not in text
        assert "powered: 80% power to detect ≥ +0.90 points" in text
        covers = o.lift_ci_low <= 0.01 <= o.lift_ci_high
        assert ("covers it" if covers else "does not cover it") in text
        for heading in ("Headline", "Trust and power", "Alert", "Lift by score decile", "Lift by segment"):
            assert heading in text
        assert "Funnel" in text and "Channel quality (UTM)" in text and "ALERT: treated response rate" in text
        assert "Below the floor by decile" in text
        assert "dry_run" in text
    # the decile table has ten rows, in decile order, and the chart sits with it
    decile_part = markdown.split("## Lift by score decile")[1].split("## ")[0]
    assert "![absolute lift by decile with 95% intervals](lift_by_decile.png)" in decile_part
    rows = [line for line in decile_part.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [int(r.split("|")[1]) for r in rows] == list(range(1, 11))
    funnel_part = markdown.split("## Funnel")[1].split("## ")[0]
    assert "| converted | 1 | 100.00% | 25.00% | 1 | – | 50.00% |" in funnel_part


def test_report_escapes_text_and_is_standalone_html():
    result = _decile_readout()
    markdown, page = _report(result)
    parsed = _parse(page)
    assert parsed.refs == ["lift_by_decile.png"]  # the only external asset
    assert "script" not in parsed.tags and "<script>" not in page
    assert "Readout &lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in page
    assert "Readout <script>alert(1)</script> & co" in "".join(parsed.text)
    assert "at_risk &lt;b&gt;" in page and "<b>" not in page
    assert page.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in page
    # Markdown: a pipe cannot open a table column, a tag is not HTML, emphasis markers are literal
    assert markdown.startswith("# Readout \\<script>alert(1)\\</script> & co\n")
    assert "| loyal\\|core\\_\\*x\\* |" in markdown and "| at_risk \\<b> |" in markdown
    table_rows = [line for line in markdown.splitlines() if line.startswith("| loyal")]
    assert table_rows and all(row.count(" | ") == 8 for row in table_rows)


def test_report_flags_an_untrustworthy_readout_and_leaves_out_what_is_not_given():
    frame = _experiment(treated_share=0.93)
    result = readout(
        frame, treatment_col="arm", treated="B", control="A", outcome_col="bought", expected_share=0.9
    )
    markdown, page = render_report(result, title="biased split")
    assert "> **UNTRUSTWORTHY:** the treated/holdout split failed the sample-ratio check" in markdown
    assert '<p class="warn"><strong>UNTRUSTWORTHY:</strong>' in page
    assert "MISMATCH" in markdown and "**UNTRUSTWORTHY**: SRM: MISMATCH" in markdown
    # the banner comes before the headline
    assert markdown.index("UNTRUSTWORTHY:") < markdown.index("## Headline")
    for absent in (
        "Return on spend",
        "Power:",
        "True lift",
        "## Alert",
        "## Lift by",
        "## Funnel",
        "## Channel",
    ):
        assert absent not in markdown
    _parse(page)
    assert "<img" not in page and _parse(page).refs == []


def test_report_true_lift_outside_the_interval_and_an_absolute_chart_path(tmp_path):
    result = _decile_readout()
    markdown, page = _report(result, true_lift=0.5, chart=tmp_path / "charts" / "lift by decile.png")
    assert "**does not cover it**" in markdown
    assert "](lift%20by%20decile.png)" in markdown and 'src="lift%20by%20decile.png"' in page


def test_report_of_the_cli_style_readout_keeps_describe_unchanged():
    result = _decile_readout()
    before = result.describe()
    _report(result)
    assert result.describe() == before and before.startswith("readout: B vs A\ntreated ")
