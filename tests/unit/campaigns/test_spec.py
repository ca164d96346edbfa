"""Campaign specs: loading and its errors (every field named), cron schedules, the holdout by power analysis and
the fallback of uplift campaigns."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from pipelines.campaigns import spec as campaign
from pipelines.campaigns.spec import (
    AUDIENCE_COLUMNS,
    KNOWN_MODELS,
    SpecError,
    load_spec,
    load_specs,
    parse_spec,
)
from pipelines.features.catalogue import FEATURE_NAMES
from tests.conftest import PROJECT_ROOT

CAMPAIGNS = PROJECT_ROOT / "campaigns"
BASE = {
    "name": "test-campaign",
    "description": "a test",
    "model": "churn",
    "channel": "sms",
    "selection": {"top_k": 10},
}


def _spec(**changes):
    return parse_spec({**BASE, **changes})


def _write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------------------------
# Specs


def test_the_demo_specs_load_with_their_declared_values():
    specs = load_specs(CAMPAIGNS)
    names = [
        "app-login-retention",
        "churn-retention-sms",
        "churn-winback",
        "reactivation-uplift",
        "travel-lookalike",
    ]
    assert [s.name for s in specs] == names
    realtime, sms, winback, uplift, lookalike = specs
    assert (lookalike.model, lookalike.lookalike.size, lookalike.selection.top_k) == ("lookalike", 2000, 2000)
    assert lookalike.lookalike.seed_file is None and len(lookalike.lookalike.seed_query) == 2
    assert realtime.trigger.events == ("login",) and realtime.selection.score_threshold == 0.15
    assert all(s.trigger is None for s in (sms, winback, uplift))
    assert (winback.model, winback.channel, winback.holdout_fraction) == ("churn", "call", 0.1)
    assert winback.selection.mode == "top_k" and winback.selection.top_k == 1500
    assert winback.audience[0].label == "tenure_days >= 90"
    assert (sms.model, sms.channel, sms.selection.mode) == ("churn", "sms", "score_threshold")
    assert sms.selection.score_threshold == 0.2 and sms.response_window_days == 7
    assert sms.contact_policy.frequency_cap.max_contacts == 3
    assert (uplift.model, uplift.channel, uplift.fallback, uplift.holdout_fraction) == (
        "uplift",
        "sms",
        "response",
        "auto",
    )
    assert (uplift.power.baseline_rate, uplift.power.min_detectable_lift) == (0.04, 0.02)
    assert uplift.selection.top_deciles == 3
    for spec in specs:
        assert spec.salt == spec.name
        assert load_spec(CAMPAIGNS / f"{spec.name}.yaml") == spec


def test_defaults_salt_and_frozen():
    spec = _spec()
    assert spec.schedule == "@monthly" and spec.holdout_fraction == 0.1 and spec.audience == ()
    assert spec.response_window_days == 14 and spec.response_rate_floor == 0.01
    assert (spec.cost_per_contact, spec.value_per_response) == (0.0, 0.0)
    policy = spec.contact_policy
    assert policy.exclude_do_not_contact and policy.exclude_opt_out and policy.recent_contact_days == 30
    assert (policy.frequency_cap.max_contacts, policy.frequency_cap.window_days) == (4, 90)
    assert (policy.invalid_customer.max_assets, policy.invalid_customer.inactive_months) == (100.0, 12)
    assert spec.salt == "test-campaign"
    assert _spec(salt="2026-rotation").salt == "2026-rotation"
    with pytest.raises(ValidationError):
        spec.name = "other"  # type: ignore[misc]
    off = _spec(contact_policy={"frequency_cap": None, "invalid_customer": None, "recent_contact_days": 0})
    assert off.contact_policy.frequency_cap is None and off.contact_policy.invalid_customer is None


@pytest.mark.parametrize("column", ["score", "decile", "rfm_segment", "persona", FEATURE_NAMES[0]])
def test_score_segment_and_feature_columns_are_allowed_in_rules(column):
    value = {"rfm_segment": "Champions", "persona": "points collector"}.get(column, 1)
    assert _spec(audience=[{"column": column, "op": "==", "value": value}]).audience[0].column == column
    assert set(FEATURE_NAMES) < set(AUDIENCE_COLUMNS)


@pytest.mark.parametrize(
    "column, good, bad",
    [
        ("rfm_segment", "Champions", "champions"),
        ("lifecycle_stage", "dormant", "sleepy"),
        ("value_tier", "high", "top"),
    ],
)
def test_segment_values_in_rules_are_checked_against_the_segment_lists(column, good, bad):
    assert _spec(audience=[{"column": column, "op": "in", "value": [good]}]).audience[0].value == (good,)
    with pytest.raises(SpecError, match=f"not a value of '{column}'"):
        _spec(audience=[{"column": column, "op": "==", "value": bad}])


AUTO = {"holdout_fraction": "auto", "power": {"baseline_rate": 0.05, "min_detectable_lift": 0.01}}


def test_a_fixed_holdout_fraction_is_used_as_it_is():
    spec = _spec(holdout_fraction=0.2)
    assert spec.power is None
    assert spec.holdout_for(1_000) == (0.2, "holdout_fraction 0.2 fixed in spec")
    assert _spec().holdout_for(0) == (0.1, "holdout_fraction 0.1 fixed in spec")


def test_an_auto_holdout_is_sized_by_power_analysis():
    from pipelines.campaigns.power import holdout_fraction_for, power_of

    spec = _spec(**AUTO)
    assert spec.holdout_fraction == "auto"
    assert (spec.power.alpha, spec.power.power) == (0.05, 0.8)  # defaults
    fraction, note = spec.holdout_for(20_000)
    plan = holdout_fraction_for(20_000, 0.05, 0.01)
    assert (fraction, note) == (plan.fraction, plan.describe())
    assert 0.05 < fraction < 0.5 and power_of(plan.treated_n, plan.holdout_n, 0.05, 0.01) >= 0.8
    # a stricter target needs a larger holdout; a large audience needs only the minimum share
    strict = _spec(**{**AUTO, "power": {**AUTO["power"], "power": 0.9, "alpha": 0.01}})
    assert strict.holdout_for(20_000)[0] > fraction
    assert spec.holdout_for(1_000_000)[0] == 0.05


def test_an_auto_holdout_on_a_small_audience_runs_but_says_it_is_under_powered():
    fraction, note = _spec(**AUTO).holdout_for(1_500)
    assert fraction == 0.5
    assert note.startswith("UNDER-POWERED: holdout 50.0% of 1,500") and "only lifts of ≥ +" in note


def test_auto_holdout_and_fallback_in_yaml(tmp_path):
    text = """
name: uplift-cross-sell
description: cross-sell to the persuadable
model: uplift
channel: push
selection: {top_k: 5000}
holdout_fraction: auto
power:
  baseline_rate: 0.03
  min_detectable_lift: 0.01
  power: 0.9
fallback: random
"""
    path = tmp_path / "uplift.yaml"
    path.write_text(text, encoding="utf-8")
    spec = load_spec(path)
    assert spec.holdout_fraction == "auto" and spec.fallback == "random"
    assert (spec.power.baseline_rate, spec.power.min_detectable_lift, spec.power.power) == (0.03, 0.01, 0.9)


def test_fallback_defaults_to_response_and_is_only_for_uplift_campaigns():
    assert _spec().fallback == "response"
    assert _spec(model="uplift").fallback == "response"
    assert _spec(model="uplift", fallback="random").fallback == "random"
    assert campaign.FALLBACKS == ("response", "random")
    for model in ("churn", "response"):
        with pytest.raises(
            SpecError, match=rf"fallback: only for model: uplift campaigns \(this one is model: {model}\)"
        ):
            _spec(model=model, fallback="response")


def test_the_demo_specs_size_their_holdout_as_declared_and_fall_back_to_response():
    for spec in load_specs(CAMPAIGNS):
        assert spec.fallback == "response"
        if spec.holdout_fraction == "auto":
            assert spec.power is not None
            fraction, note = spec.holdout_for(4_000)
            assert 0.05 <= fraction <= 0.5 and "power to detect +2.00 points" in note
        else:
            assert isinstance(spec.holdout_fraction, float) and spec.power is None


BAD_SPECS = [
    ({"foo": 1}, "foo", r"unknown field 'foo' \(allowed: name, description, model"),
    (
        {"contact_policy": {"frequency_cap": {"max_contacts": 2, "days": 30}}},
        "contact_policy.frequency_cap.days",
        r"unknown field 'days' \(allowed: max_contacts, window_days\)",
    ),
    (
        {"audience": [{"column": "tenure_days", "op": ">=", "value": 90, "note": "x"}]},
        r"audience\[0\].note",
        r"unknown field 'note' \(allowed: column, op, value\)",
    ),
    (
        {"audience": [{"column": "tenure_days", "op": "like", "value": 90}]},
        r"audience\[0\].op",
        r"unknown op 'like'; use one of ==, !=, <, <=, >, >=, in, not_in, between",
    ),
    (
        {"audience": [{"column": "card_tier", "op": "in", "value": "gold"}]},
        r"audience\[0\].value",
        r"op 'in' needs a non-empty list of values, got 'gold'",
    ),
    (
        {"audience": [{"column": "score", "op": "between", "value": [0.1, 0.2, 0.3]}]},
        r"audience\[0\].value",
        r"op 'between' needs a list of two numbers \[low, high\]",
    ),
    (
        {"audience": [{"column": "score", "op": "between", "value": [0.5, 0.2]}]},
        r"audience\[0\].value",
        r"needs low <= high",
    ),
    (
        {"audience": [{"column": "tenure_days", "op": ">=", "value": "ninety"}]},
        r"audience\[0\].value",
        r"column 'tenure_days' is numeric: compare it with numbers",
    ),
    (
        {"audience": [{"column": "card_tier", "op": ">", "value": "gold"}]},
        r"audience\[0\].value",
        r"column 'card_tier' is a category: use ==, !=, in or not_in",
    ),
    (
        {"audience": [{"column": "card_tier", "op": "in", "value": ["gold", "bronze"]}]},
        r"audience\[0\].value",
        r"\[bronze\] not a value of 'card_tier'; allowed: classic, gold, platinum, infinite",
    ),
    (
        {"audience": [{"column": "tenure", "op": ">=", "value": 90}]},
        r"audience\[0\].column",
        r"unknown audience column 'tenure' \(did you mean 'tenure_days'\?\)",
    ),
    ({"model": "ltv"}, "model", r"unknown model 'ltv'; known models: churn, response, uplift"),
    ({"channel": "letter"}, "channel", r"unknown channel 'letter'; use one of sms, email, push, call"),
    (
        {"selection": {"top_k": 100, "score_threshold": 0.5}},
        "selection",
        r"set exactly one of top_k, score_threshold, top_deciles \(got top_k and score_threshold\)",
    ),
    ({"selection": {}}, "selection", r"set exactly one of .* \(got none\)"),
    ({"selection": {"top_k": 1.5}}, "selection.top_k", r"valid integer \(got 1.5\)"),
    ({"selection": {"top_deciles": 11}}, "selection.top_deciles", r"less than or equal to 10"),
    ({"selection": {"score_threshold": 1.5}}, "selection.score_threshold", r"less than or equal to 1"),
    ({"holdout_fraction": 0.5}, "holdout_fraction", r"less than 0.5 \(got 0.5\)"),
    ({"holdout_fraction": 0}, "holdout_fraction", r"greater than 0 \(got 0\)"),
    (
        {"holdout_fraction": 0.6},
        "holdout_fraction",
        r"less than 0.5 \(got 0.6\); or 'auto' to size it by power",
    ),
    (
        {"holdout_fraction": "half"},
        "holdout_fraction",
        r"must be a number in \(0, 0.5\) or 'auto', got 'half'",
    ),
    ({"holdout_fraction": "auto"}, "power", r"required with holdout_fraction: auto: \{baseline_rate: "),
    (
        {"holdout_fraction": 0.2, "power": {"baseline_rate": 0.05, "min_detectable_lift": 0.01}},
        "power",
        r"a power block is only used with holdout_fraction: auto \(holdout_fraction is 0.2\)",
    ),
    (
        {"power": {"baseline_rate": 0.05, "min_detectable_lift": 0.01}},
        "power",
        r"only used with holdout_fraction: auto \(holdout_fraction is 0.1\)",
    ),
    (
        {"holdout_fraction": "auto", "power": {"baseline_rate": 0.05}},
        "power.min_detectable_lift",
        r"required field is missing",
    ),
    (
        {"holdout_fraction": "auto", "power": {"baseline_rate": 5, "min_detectable_lift": 0.01}},
        "power.baseline_rate",
        r"less than 1 \(got 5\)",
    ),
    (
        {"holdout_fraction": "auto", "power": {"baseline_rate": 0.9, "min_detectable_lift": 0.2}},
        "power",
        r"baseline_rate \+ min_detectable_lift must stay below 1 \(got 0.9 \+ 0.2\); the lift is absolute",
    ),
    (
        {
            "holdout_fraction": "auto",
            "power": {"baseline_rate": 0.05, "min_detectable_lift": 0.01, "power": 0.01},
        },
        "power",
        r"power \(0.01\) must be greater than alpha \(0.05\)",
    ),
    (
        {
            "holdout_fraction": "auto",
            "power": {"baseline_rate": 0.05, "min_detectable_lift": 0.01, "beta": 0.2},
        },
        "power.beta",
        r"unknown field 'beta' \(allowed: baseline_rate, min_detectable_lift, alpha, power\)",
    ),
    ({"fallback": "random"}, "fallback", r"only for model: uplift campaigns \(this one is model: churn\)"),
    (
        {"model": "uplift", "fallback": "best"},
        "fallback",
        r"input should be 'response' or 'random' \(got 'best'\)",
    ),
    ({"response_window_days": 30}, "response_window_days", r"7 or 14 \(got 30\)"),
    ({"name": "Churn Winback"}, "name", r"lowercase letters, digits and hyphens"),
    ({"schedule": "monthly"}, "schedule", r"Airflow preset .* or a 5-field cron line"),
    ({"schedule": "@fortnightly"}, "schedule", r"unknown preset '@fortnightly'"),
    ({"schedule": "0 25 * * *"}, "schedule", r"impossible cron line '0 25 \* \* \*': the hour field '25'"),
    ({"schedule": "61 * * * *"}, "schedule", r"the minute field '61' is not valid \(allowed: 0-59\)"),
    ({"schedule": "0 6 0 * *"}, "schedule", r"the day-of-month field '0' is not valid"),
    ({"schedule": "0 6 1 13 *"}, "schedule", r"the month field '13' is not valid"),
    ({"schedule": "0 6 * * 8"}, "schedule", r"the day-of-week field '8' is not valid"),
    ({"schedule": "*/0 * * * *"}, "schedule", r"the minute field '\*/0' is not valid"),
    ({"schedule": "* * 31 2 *"}, "schedule", r"impossible cron line '\* \* 31 2 \*': it never fires"),
    ({"schedule": "0 6 31 4,6,9,11 *"}, "schedule", r"it never fires"),
    ({"schedule": "0 6 1 * * 2026"}, "schedule", r"or a 5-field cron line such as '0 6 1 \* \*'"),
    ({"description": None}, "description", r"valid string"),
]


@pytest.mark.parametrize(
    "schedule",
    [
        "@daily",
        "@once",
        "@annually",
        "0 6 1 * *",
        "*/15 8-18 * * MON-FRI",
        "30 7 * JAN,JUL 1",
        "0 0 29 2 *",  # fires in leap years
        "0 0 31 2 1",  # day-of-month OR day-of-week: every Monday of February
        "0 0 L * *",
        "59 23 31 12 7",
    ],
)
def test_presets_and_possible_cron_lines_are_accepted_as_written(schedule):
    assert _spec(schedule=schedule).schedule == schedule


def test_an_impossible_cron_in_a_yaml_file_fails_on_load_naming_the_file_and_the_field(tmp_path):
    path = tmp_path / "cron.yaml"
    path.write_text(yaml.safe_dump({**BASE, "schedule": "0 25 * * *"}), encoding="utf-8")
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert str(err.value) == (
        f"{path}: invalid campaign spec\n"
        "  schedule: impossible cron line '0 25 * * *': the hour field '25' is not valid (allowed: 0-23)"
    )
    _write_yaml(tmp_path / "good.yaml", {**BASE, "name": "good"})
    with pytest.raises(SpecError, match=r"cron.yaml: invalid campaign spec\n  schedule: impossible cron"):
        load_specs(tmp_path)


@pytest.mark.parametrize(("changes", "field", "problem"), BAD_SPECS)
def test_a_bad_spec_names_the_file_the_field_and_the_problem(tmp_path, changes, field, problem):
    path = _write_yaml(tmp_path / "bad.yaml", {**BASE, **changes})
    with pytest.raises(SpecError, match=rf"(?s)^{path}: invalid campaign spec\n.*  {field}: [^\n]*{problem}"):
        load_spec(path)


def test_a_missing_field_and_several_problems_are_all_reported(tmp_path):
    data = {k: v for k, v in BASE.items() if k != "channel"} | {"model": "ltv", "holdout_fraction": 0.7}
    path = _write_yaml(tmp_path / "many.yaml", data)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    lines = str(err.value).splitlines()
    assert lines[0] == f"{path}: invalid campaign spec"
    assert sorted(line.split(":")[0].strip() for line in lines[1:]) == [
        "channel",
        "holdout_fraction",
        "model",
    ]
    assert "  channel: required field is missing" in lines
    assert ", ".join(KNOWN_MODELS) in str(err.value)


def test_yaml_that_is_not_a_spec_is_named(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(SpecError, match=rf"^{broken}: not valid YAML"):
        load_spec(broken)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(
        SpecError, match=rf"^{listing}: a campaign spec must be a mapping of fields, got list"
    ):
        load_spec(listing)
    with pytest.raises(SpecError, match="cannot read campaign spec"):
        load_spec(tmp_path / "absent.yaml")


def test_load_specs_sorts_by_name_and_rejects_duplicates_and_reports_every_bad_file(tmp_path):
    _write_yaml(tmp_path / "b.yaml", {**BASE, "name": "zeta"})
    _write_yaml(tmp_path / "a.yml", {**BASE, "name": "alpha"})
    assert [s.name for s in load_specs(tmp_path)] == ["alpha", "zeta"]
    _write_yaml(tmp_path / "c.yaml", {**BASE, "name": "zeta"})
    with pytest.raises(SpecError, match=r"c.yaml: duplicate campaign name 'zeta' \(also in .*b.yaml\)"):
        load_specs(tmp_path)
    (tmp_path / "c.yaml").unlink()
    _write_yaml(tmp_path / "d.yaml", {**BASE, "name": "delta", "model": "ltv"})
    _write_yaml(tmp_path / "e.yaml", {**BASE, "name": "eta", "bogus": 1})
    with pytest.raises(SpecError) as err:
        load_specs(tmp_path)
    assert "d.yaml: invalid campaign spec\n  model: unknown model" in str(err.value)
    assert "e.yaml: invalid campaign spec\n  bogus: unknown field 'bogus'" in str(err.value)
    with pytest.raises(SpecError, match="campaign spec folder not found"):
        load_specs(tmp_path / "nowhere")


def test_the_auto_holdout_example_in_the_docs_loads_and_gives_the_documented_note():
    docs = (CAMPAIGNS.parent / "docs" / "campaigns.md").read_text(encoding="utf-8")
    section = docs.split("## Holdout size by power analysis")[1]
    spec = parse_spec(yaml.safe_load(section.split("```yaml\n")[1].split("```")[0]), "docs/campaigns.md")
    assert (spec.model, spec.holdout_fraction, spec.fallback) == ("uplift", "auto", "random")
    fraction, note = spec.holdout_for(20_000)
    assert f"\n    {note}\n" in section and 0.05 < fraction < 0.5
    assert f"\n    {parse_spec({**BASE, **AUTO}).holdout_for(1_500)[1]}\n" in section
