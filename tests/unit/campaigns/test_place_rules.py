"""Place rules: region and city rules, within_km (validation, labels, distances, branch resolution), the contact
policy applying them to a hand-made scored frame, the form and YAML round trip, and region/city as audience
attributes that never become model features (the wide table, segment mixes, readout breakdowns)."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import yaml

from pipelines.campaigns import place_rules
from pipelines.campaigns.place_rules import WithinKm, WithinKmRule, lake_branches, target_point, within_km
from pipelines.campaigns.policy import apply_policy, empty_history
from pipelines.campaigns.spec import AUDIENCE_COLUMNS, parse_spec, spec_problems
from pipelines.campaigns.spec_form import spec_to_form, spec_yaml, validate_form
from pipelines.config import PROJECT_ROOT
from pipelines.data import places, storage
from pipelines.features import catalogue
from pipelines.features.attributes import ABSENT, add_attributes, attribute_notes, read_attributes
from pipelines.jobs.audience import with_breakdowns
from pipelines.jobs.campaigns import segment_mix
from pipelines.jobs.training import present_features
from tests.unit.campaigns.test_spec import BASE

AS_OF = pd.Timestamp("2026-01-01")
CITY = places.CITY_BY_NAME


def _spec(*audience):
    return parse_spec({**BASE, "name": "near-branch", "audience": list(audience)})


def _haversine(a: str, b: str, radius: float = 6371.0088) -> float:
    """Great-circle km between two catalogue cities on a sphere of the mean Earth radius."""
    p1, p2 = math.radians(CITY[a].lat), math.radians(CITY[b].lat)
    dp, dl = p2 - p1, math.radians(CITY[b].lon - CITY[a].lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * radius * math.asin(math.sqrt(h))


# --------------------------------------------------------------------------------------------------------------
# The spec


@pytest.mark.parametrize(
    ("rule", "path", "fragment"),
    [
        ({"within_km": {"of": "BR012", "km": 0}}, "audience[0].within_km.km", "greater than 0"),
        ({"within_km": {"of": "BR012", "km": -5}}, "audience[0].within_km.km", "greater than 0"),
        ({"within_km": {"of": "BR012", "km": "25"}}, "audience[0].within_km.km", "number of kilometres"),
        ({"within_km": {"of": "BR012", "km": True}}, "audience[0].within_km.km", "number of kilometres"),
        ({"within_km": {"of": "BR012"}}, "audience[0].within_km.km", "required field is missing"),
        ({"within_km": {"of": "london", "km": 5}}, "audience[0].within_km.of", "not a branch id"),
        ({"within_km": {"of": "BR1", "km": 5}}, "audience[0].within_km.of", "not a branch id"),
        ({"within_km": {"of": [91.0, 0.0], "km": 5}}, "audience[0].within_km.of", "out of range"),
        ({"within_km": {"of": [51.5, -181], "km": 5}}, "audience[0].within_km.of", "out of range"),
        ({"within_km": {"of": [51.5], "km": 5}}, "audience[0].within_km.of", "[lat, lon] pair"),
        ({"within_km": {"of": ["a", "b"], "km": 5}}, "audience[0].within_km.of", "[lat, lon] pair"),
        ({"within_km": {"of": "BR012", "km": 5, "radius": 3}}, "audience[0].within_km.radius", "of, km"),
        ({"within_km": {"of": "BR012", "km": 5}, "op": "<="}, "audience[0].op", "allowed: within_km"),
        ({"column": "region", "op": "in", "value": ["London", "Atlantis"]}, "audience[0].value", "Atlantis"),
        ({"column": "region", "op": ">=", "value": "London"}, "audience[0].value", "is a category"),
        ({"column": "city", "op": "==", "value": "Londres"}, "audience[0].value", "not a value of 'city'"),
    ],
)
def test_a_bad_place_rule_names_its_field(rule, path, fragment):
    spec, problems = spec_problems({**BASE, "audience": [rule]})
    assert spec is None
    assert path in dict(problems), problems
    assert fragment in dict(problems)[path]


def test_region_and_city_are_audience_columns_with_the_catalogue_values():
    assert {"region", "city"} <= set(AUDIENCE_COLUMNS)
    spec = _spec(
        {"column": "region", "op": "not_in", "value": ["Wales", "Scotland"]},
        {"column": "city", "op": "==", "value": "Newcastle upon Tyne"},
    )
    assert [r.label for r in spec.audience] == [
        "region not_in [Wales, Scotland]",
        "city == Newcastle upon Tyne",
    ]
    # Two region rules no customer can pass are refused like any other category's.
    _, problems = spec_problems(
        {
            **BASE,
            "audience": [
                {"column": "region", "op": "==", "value": "London"},
                {"column": "region", "op": "in", "value": ["Wales"]},
            ],
        }
    )
    assert problems and problems[0][0] == "audience" and "contradict" in problems[0][1]


def test_within_km_rules_parse_with_readable_labels():
    spec = _spec(
        {"within_km": {"of": "BR012", "km": 25}},
        {"within_km": {"of": [51.5, -0.12], "km": 10.5}},
        {"column": "tenure_days", "op": ">=", "value": 90},
    )
    near, point, tenure = spec.audience
    assert isinstance(near, WithinKmRule) and near.within_km == WithinKm(of="BR012", km=25.0)
    assert near.label == "city within 25 km of BR012" and near.column == "city"
    assert point.within_km.of == (51.5, -0.12)
    assert point.label == "city within 10.5 km of [51.5, -0.12]"
    assert tenure.label == "tenure_days >= 90"


def test_a_within_km_rule_survives_the_form_and_the_yaml():
    spec = _spec(
        {"within_km": {"of": "BR012", "km": 25}},
        {"within_km": {"of": [51.5, -0.12], "km": 10.5}},
        {"column": "region", "op": "in", "value": ["London", "Wales"]},
    )
    form = spec_to_form(spec)
    assert (form["audience-0-column"], form["audience-0-op"]) == ("within_km", "<=")
    assert form["audience-0-value"] == "25 km of BR012"
    assert form["audience-1-value"] == "10.5 km of 51.5, -0.12"
    again, errors = validate_form(form)
    assert errors == {} and again == spec
    text = spec_yaml(spec)
    assert "  - {within_km: {of: BR012, km: 25}}\n" in text
    assert "  - {within_km: {of: [51.5, -0.12], km: 10.5}}\n" in text
    assert parse_spec(yaml.safe_load(text)) == spec


def test_a_bad_within_km_row_of_the_form_is_named_on_its_field():
    form = spec_to_form(_spec({"within_km": {"of": "BR012", "km": 25}}))
    _, errors = validate_form({**form, "audience-0-value": "25 miles from BR012"})
    assert "25 km of BR012" in errors["audience-0-value"]
    _, errors = validate_form({**form, "audience-0-op": ">="})
    assert "use <=" in errors["audience-0-op"]
    _, errors = validate_form({**form, "audience-0-value": "-3 km of BR9"})
    assert "not a branch id" in errors["audience-0-value"] and "greater than 0" in errors["audience-0-value"]


# --------------------------------------------------------------------------------------------------------------
# Distances and branches


@pytest.mark.parametrize(
    ("a", "b", "km"),
    [
        ("London", "Manchester", 262.4),
        ("London", "Birmingham", 162.8),
        ("London", "Edinburgh", 534.3),
        ("Cardiff", "Bristol", 41.2),
        ("Leeds", "Sheffield", 47.0),
    ],
)
def test_distances_between_known_city_pairs(a, b, km):
    got = float(places.distance_km(CITY[a].lat, CITY[a].lon, CITY[b].lat, CITY[b].lon))
    assert got == pytest.approx(km, abs=0.1)
    # The ellipsoid and a sphere of the mean radius agree to within 0.5 %.
    assert got == pytest.approx(_haversine(a, b), rel=0.005)
    target = {"of": [CITY[a].lat, CITY[a].lon], "km": got + 0.01}
    assert within_km(target, CITY[b].lat, CITY[b].lon) is True
    assert within_km({**target, "km": got - 0.01}, CITY[b].lat, CITY[b].lon) is False


def test_within_km_takes_arrays_and_a_missing_point_is_never_within():
    london = places.BRANCH_BY_ID["BR001"]
    rule = _spec({"within_km": {"of": "BR001", "km": 100}}).audience[0]
    lat = np.array([CITY["Brighton"].lat, CITY["Birmingham"].lat, np.nan])
    lon = np.array([CITY["Brighton"].lon, CITY["Birmingham"].lon, -0.1])
    assert within_km(rule, lat, lon).tolist() == [True, False, False]  # Brighton 76 km, Birmingham 163 km
    assert within_km(rule.within_km, london.lat, london.lon) is True
    assert within_km({"of": "BR001", "km": 0.001}, london.lat, london.lon) is True  # the branch itself


def test_branch_ids_resolve_through_the_lake_table_when_there_is_one(tmp_path):
    assert lake_branches(tmp_path) is None
    assert target_point({"of": "BR012", "km": 1}) == (55.8482, -4.2278)  # Glasgow South, from the catalogue
    moved = pd.DataFrame(
        {
            "branch_id": ["BR012"],
            "name": ["Leeds Pop-up"],
            "lat": [CITY["Leeds"].lat],
            "lon": [CITY["Leeds"].lon],
        }
    )
    storage.write_part(pa.Table.from_pandas(moved, preserve_index=False), tmp_path, "branches", 0)
    branches = lake_branches(tmp_path)
    assert list(branches.columns) == ["branch_id", "lat", "lon"]
    assert target_point({"of": "BR012", "km": 1}, branches) == (CITY["Leeds"].lat, CITY["Leeds"].lon)
    with pytest.raises(
        ValueError, match=r"unknown branch id 'BR001'; the lake's branches table has 1 branches"
    ):
        target_point({"of": "BR001", "km": 1}, branches)


def test_an_unknown_branch_is_an_error_naming_the_rule_and_the_id():
    with pytest.raises(
        ValueError, match=r"rule 'city within 5 km of BR999': unknown branch id 'BR999'.*catalogue"
    ):
        within_km({"of": "BR999", "km": 5}, 51.5, -0.1)
    scored = _scored(["London"])
    spec = _spec({"within_km": {"of": "BR999", "km": 5}})
    with pytest.raises(
        ValueError, match=r"campaign 'near-branch': rule 'city within 5 km of BR999'.*'BR999'"
    ):
        apply_policy(scored, _consent(scored), empty_history(), pd.Index([]), spec, AS_OF)


# --------------------------------------------------------------------------------------------------------------
# The contact policy


def _scored(cities: list[str | None]) -> pd.DataFrame:
    n = len(cities)
    regions = [CITY[c].region if c in CITY else None for c in cities]
    return pd.DataFrame(
        {
            "customer_id": np.arange(1, n + 1),
            "score": np.linspace(0.9, 0.1, n),
            "decile": np.arange(n) % 10 + 1,
            "tenure_days": np.full(n, 400.0),
            "region": pd.Categorical(regions, categories=list(places.REGIONS)),
            "city": pd.Categorical(cities, categories=list(places.CITY_NAMES)),
        }
    )


def _consent(scored: pd.DataFrame) -> pd.DataFrame:
    n = len(scored)
    return pd.DataFrame(
        {
            "customer_id": scored["customer_id"],
            "do_not_contact": [False] * n,
            "marketing_opt_out": [False] * n,
        }
    )


def _apply(scored, *audience, branches=None):
    spec = _spec(*audience)
    return apply_policy(
        scored, _consent(scored), empty_history(), pd.Index([]), spec, AS_OF, branches=branches
    )


def test_the_policy_keeps_homes_within_the_circle_and_names_why_others_are_out():
    scored = _scored(["London", "Brighton", "Manchester", None, "Cardiff", "Oxford"])
    eligible, exclusions = _apply(
        scored,
        {"column": "region", "op": "not_in", "value": ["Wales"]},
        {"within_km": {"of": "BR001", "km": 100}},
    )
    assert eligible["customer_id"].tolist() == [1, 2, 6]  # London 0 km, Brighton 76 km, Oxford 83 km
    out = exclusions.set_index("customer_id")
    assert out.loc[5, "exclusion_reason"] == "audience:region not_in [Wales]"  # the first rule that applies
    assert out.loc[5, "detail"] == "region = Wales"
    assert out.loc[3, "exclusion_reason"] == "audience:city within 100 km of BR001"
    assert re.fullmatch(r"city = Manchester, 262\.\d km from BR001", out.loc[3, "detail"])
    # No city and no region: a missing value fails even a not_in rule, and the region rule comes first.
    assert out.loc[4, "exclusion_reason"] == "audience:region not_in [Wales]"
    assert out.loc[4, "detail"] == "region is missing"


def test_a_point_target_and_the_lake_branches_change_who_is_near():
    scored = _scored(["London", "Leeds", "Sheffield", "Glasgow"])
    eligible, _ = _apply(scored, {"within_km": {"of": [CITY["Leeds"].lat, CITY["Leeds"].lon], "km": 50}})
    assert eligible["customer_id"].tolist() == [2, 3]  # Leeds 0 km, Sheffield 47 km
    eligible, _ = _apply(scored, {"within_km": {"of": "BR012", "km": 30}})
    assert eligible["customer_id"].tolist() == [4]  # BR012 is Glasgow South in the catalogue
    lake = pd.DataFrame({"branch_id": ["BR012"], "lat": [CITY["Leeds"].lat], "lon": [CITY["Leeds"].lon]})
    eligible, exclusions = _apply(scored, {"within_km": {"of": "BR012", "km": 30}}, branches=lake)
    assert eligible["customer_id"].tolist() == [2]  # the lake says BR012 is in Leeds
    assert exclusions.set_index("customer_id").loc[4, "detail"].startswith("city = Glasgow, ")


def test_without_region_or_city_in_the_lake_every_customer_fails_with_a_note():
    scored = _scored([None, None, None])
    _, exclusions = _apply(scored, {"within_km": {"of": "BR001", "km": 500}})
    assert len(exclusions) == 3
    assert set(exclusions["exclusion_reason"]) == {"audience:city within 500 km of BR001"}
    assert set(exclusions["detail"]) == {
        "city is missing (no customer has one: the lake's customers table may lack the column)"
    }
    _, exclusions = _apply(scored, {"column": "region", "op": "==", "value": "London"})
    assert (
        len(exclusions) == 3 and exclusions["detail"].str.startswith("region is missing (no customer").all()
    )


def test_a_scored_frame_without_the_attribute_is_a_clear_error():
    scored = _scored(["London"]).drop(columns=["region", "city"])
    with pytest.raises(
        ValueError, match=r"\['city'\] are not in the scored frame \(city is a customer attribute"
    ):
        _apply(scored, {"within_km": {"of": "BR001", "km": 5}})


# --------------------------------------------------------------------------------------------------------------
# Attributes, not features


def test_attributes_are_never_model_features():
    assert not set(catalogue.ATTRIBUTE_NAMES) & set(catalogue.FEATURE_NAMES)
    wide = pd.DataFrame({"customer_id": [1], "tenure_days": [10], "region": ["London"], "city": ["London"]})
    features, categorical = present_features(wide)
    assert features == ["tenure_days"] and categorical == []


def test_add_attributes_takes_the_customers_values_and_says_what_is_absent(tmp_path):
    wide = pd.DataFrame({"customer_id": [3, 1, 2], "tenure_days": [5, 6, 7]})
    wide.attrs["features_left_out"] = []
    customers = pd.DataFrame(
        {
            "customer_id": [1, 2, 3, 4],
            "region": ["London", None, "Narnia", "Wales"],
            "city": ["London", "Leeds", "Bangor", "Bangor"],
        }
    )
    out = add_attributes(wide, customers)
    assert list(out.columns) == ["customer_id", "tenure_days", "region", "city"]
    assert out["region"].isna().tolist() == [True, False, True] and out["region"][1] == "London"
    assert out["city"].tolist() == ["Bangor", "London", "Leeds"]
    assert list(out["region"].cat.categories) == list(places.REGIONS)
    assert out.attrs == {"features_left_out": [], ABSENT: {}}
    assert attribute_notes(out) == ["region: null for 2 of 3 customers (unknown or no value)"]

    older = add_attributes(wide, customers[["customer_id"]])
    assert older["region"].isna().all() and older["city"].isna().all()
    assert older.attrs[ABSENT] == {
        "region": "no region column in the customers table",
        "city": "no city column in the customers table",
    }
    assert "null for all 3 customers (rules on it exclude everyone)" in attribute_notes(older)[0]

    storage.write_part(pa.Table.from_pandas(customers[["customer_id", "city"]]), tmp_path, "customers", 0)
    assert list(read_attributes(tmp_path).columns) == ["customer_id", "city"]


def test_the_attribute_table_of_the_docs_is_generated_from_the_catalogue():
    doc = (PROJECT_ROOT / "docs" / "features.md").read_text()
    match = re.search(r"<!-- BEGIN ATTRIBUTES[^>]*-->\n(.*)<!-- END ATTRIBUTES -->", doc, re.S)
    assert match and match.group(1) == catalogue.render_attributes(), (
        "regenerate: python -m pipelines.features.catalogue"
    )


def test_segment_mix_breaks_the_audience_down_by_region_from_the_run_folder(tmp_path):
    targets = pd.DataFrame(
        {
            "customer_id": [1, 2, 3, 4],
            "score": [0.9, 0.8, 0.7, 0.6],
            "target_group": ["treatment", "treatment", "holdout", "treatment"],
            "rfm_segment": ["champions"] * 4,
        }
    )
    assert with_breakdowns(targets, tmp_path) is targets  # no features file: nothing to add
    wide = add_attributes(
        pd.DataFrame({"customer_id": [1, 2, 3, 4, 5]}),
        pd.DataFrame({"customer_id": [1, 2, 3, 5], "region": ["Wales", "Wales", "London", "London"]}),
    )
    storage.write_frame(wide, tmp_path / "features.parquet")
    mix = segment_mix(with_breakdowns(targets, tmp_path))
    region = mix.loc[mix["dimension"] == "region"].set_index("segment")
    assert region["customers"].to_dict() == {"Wales": 2, "London": 1, "unknown": 1}
    assert region.loc["Wales", "treatment"] == 2 and region.loc["London", "holdout"] == 1
    assert set(mix["dimension"]) == {"rfm_segment", "region"}
    # A run folder whose customers have no region gives no region dimension.
    storage.write_frame(
        add_attributes(wide[["customer_id"]], wide[["customer_id"]]), tmp_path / "features.parquet"
    )
    assert "region" not in with_breakdowns(targets, tmp_path).columns


def test_exclusion_detail_says_distance_missing_or_unknown_city():
    rule = _spec({"within_km": {"of": "BR001", "km": 1}}).audience[0]
    cities = pd.Series(["Leeds", None, "Atlantis"], dtype="object")
    text = place_rules.exclusion_detail(rule, cities, np.array([True, True, True]))
    assert text[0].startswith("city = Leeds, ") and text[0].endswith(" km from BR001")
    assert text[1:].tolist() == ["city is missing", "city = Atlantis has no known location"]
    assert place_rules.rule_passes(rule, pd.Series(["London", "Atlantis", None])).tolist() == [
        True,
        False,
        False,
    ]


def test_the_readout_reads_the_lift_by_region_from_the_run_folder(tmp_path):
    from pipelines.jobs.readouts import readout_segments
    from pipelines.readout.stats import readout

    n = 400
    ids = np.arange(1, n + 1)
    regions = np.where(ids % 2 == 0, "London", "Wales")
    wide = add_attributes(
        pd.DataFrame({"customer_id": ids}), pd.DataFrame({"customer_id": ids, "region": regions})
    )
    storage.write_frame(wide, tmp_path / "features.parquet")
    group = np.where((ids // 2) % 4 < 3, "treatment", "holdout")
    # London: treated convert at about 20 %, holdout at 5 %; Wales: both at about 10 %.
    london_conv = np.where(group == "treatment", ids % 10 < 2, ids % 40 < 2)
    converted = np.where(regions == "London", london_conv, ids % 10 == 1)
    frame = with_breakdowns(
        pd.DataFrame({"customer_id": ids, "group": group, "converted": converted.astype(int)}), tmp_path
    )
    segment_cols = readout_segments(frame)
    assert segment_cols == ["region"]
    result = readout(
        frame,
        treatment_col="group",
        treated="treatment",
        control="holdout",
        outcome_col="converted",
        segment_cols=segment_cols,
    )
    by_region = result.segments.set_index("segment")
    assert set(result.segments["by"]) == {"region"} and set(by_region.index) == {"London", "Wales"}
    assert (
        by_region.loc["London", "treated_n"] + by_region.loc["Wales", "treated_n"]
        == (group == "treatment").sum()
    )
    for region in ("London", "Wales"):
        rows = frame.loc[frame["region"] == region]
        treated = rows.loc[rows["group"] == "treatment", "converted"]
        control = rows.loc[rows["group"] == "holdout", "converted"]
        assert by_region.loc[region, "treated_n"] == len(treated) and by_region.loc[
            region, "control_n"
        ] == len(control)
        assert by_region.loc[region, "treated_rate"] == pytest.approx(treated.mean())
        assert by_region.loc[region, "control_rate"] == pytest.approx(control.mean())
    assert by_region.loc["London", "lift_abs"] > 0.1 > abs(by_region.loc["Wales", "lift_abs"])


def test_a_trigger_near_a_branch_resolves_the_branch_once_and_refuses_an_unknown_one():
    from pipelines.campaigns.trigger import Trigger
    from pipelines.features.online import Event

    trigger = Trigger(events=("location",), within_km={"of": "BR001", "km": 1})
    resolved = trigger.resolved()
    london = places.BRANCH_BY_ID["BR001"]
    assert resolved.within_km.of == (london.lat, london.lon) and resolved.within_km.km == 1
    at = Event.model_validate({"type": "location", "ts": "2026-03-02T09:00:00", "lat": 51.51, "lon": -0.13})
    away = Event.model_validate({"type": "location", "ts": "2026-03-02T09:00:00", "lat": 55.95, "lon": -3.19})
    assert resolved.matches(at) is None and trigger.matches(at) is None
    assert "not within 1 km" in resolved.matches(away)
    with pytest.raises(ValueError, match="unknown branch id 'BR999'"):
        Trigger(events=("location",), within_km={"of": "BR999", "km": 1}).resolved()
