"""The expectation suites: valid GX 1.x suites that agree with the data model in schema.py, and the wide table's
suite with ``wide_table.feature_table_spec()``."""

from __future__ import annotations

import json
import logging

import pytest

from pipelines.config import PROJECT_ROOT
from pipelines.data import schema, suites
from pipelines.data.gate_engine import time_column
from pipelines.features import catalogue, wide_table

EXPECTATIONS = PROJECT_ROOT / "expectations"
TABLES = list(schema.TABLES)
# Tables derived by the pipeline (not in the lake) that have a suite of their own.
DERIVED = {"customer_features": wide_table.feature_table_spec()}
SPECS = {**schema.TABLES, **DERIVED}
SUITES = list(SPECS)


@pytest.fixture(scope="module")
def gx():
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations

    return great_expectations


def by_type(suite: dict, etype: str) -> list[dict]:
    return [e for e in suite["expectations"] if e["type"] == etype]


def test_one_suite_per_table_and_nothing_else():
    assert sorted(p.stem for p in EXPECTATIONS.glob("*.json")) == sorted(SUITES)


@pytest.mark.parametrize("table", SUITES)
def test_suite_loads_into_gx_whole(table, gx):
    raw = json.loads((EXPECTATIONS / f"{table}.json").read_text())
    suite = suites.load_suite(table, EXPECTATIONS)
    assert suite["name"] == table
    gx_suite = gx.ExpectationSuite(**suite)
    # GX logs and drops an expectation it cannot build instead of raising: count them.
    assert len(gx_suite.expectations) == len(raw["expectations"])
    assert [e.expectation_type for e in gx_suite.expectations] == [e["type"] for e in raw["expectations"]]


@pytest.mark.parametrize("table", SUITES)
def test_every_expectation_has_severity_and_a_unique_rule(table):
    suite = suites.load_suite(table, EXPECTATIONS)
    rules = [e["meta"]["rule"] for e in suite["expectations"]]
    assert len(rules) == len(set(rules)), sorted(r for r in rules if rules.count(r) > 1)
    for e in suite["expectations"]:
        assert e["meta"]["severity"] in ("critical", "warning"), e
        # GX's own severity field says the same, for tools that read it.
        assert e.get("severity") == e["meta"]["severity"], e
        assert e["type"] in suites.SUPPORTED_TYPES, e["type"]


@pytest.mark.parametrize("table", SUITES)
def test_columns_present_with_their_stored_types(table):
    suite = suites.load_suite(table, EXPECTATIONS)
    spec = SPECS[table]
    exist = {e["kwargs"]["column"]: e for e in by_type(suite, "expect_column_to_exist")}
    types = {e["kwargs"]["column"]: e for e in by_type(suite, "expect_column_values_to_be_of_type")}
    assert set(exist) == set(types) == set(spec.column_names)
    for col in spec.columns:
        assert types[col.name]["kwargs"]["type_"] == suites.expected_gx_type(col.type), col.name
        assert exist[col.name]["meta"]["severity"] == types[col.name]["meta"]["severity"] == "critical"


@pytest.mark.parametrize("table", SUITES)
def test_category_sets_equal_the_schema(table):
    suite = suites.load_suite(table, EXPECTATIONS)
    spec = SPECS[table]
    in_set = {e["kwargs"]["column"]: e for e in by_type(suite, "expect_column_values_to_be_in_set")}
    allowed = {c.name: c.allowed for c in spec.columns if c.allowed is not None}
    assert set(in_set) == set(allowed)
    for name, values in allowed.items():
        assert in_set[name]["kwargs"]["value_set"] == list(values), name
        assert in_set[name]["meta"]["severity"] == "critical"


@pytest.mark.parametrize("table", SUITES)
def test_keys_are_not_null_and_unique(table):
    suite = suites.load_suite(table, EXPECTATIONS)
    key = list(SPECS[table].key)
    not_null = {e["kwargs"]["column"] for e in by_type(suite, "expect_column_values_to_not_be_null")}
    assert set(key) <= not_null
    if len(key) == 1:
        unique = [
            e for e in by_type(suite, "expect_column_values_to_be_unique") if e["kwargs"]["column"] == key[0]
        ]
    else:
        unique = [
            e
            for e in by_type(suite, "expect_compound_columns_to_be_unique")
            if e["kwargs"]["column_list"] == key
        ]
    assert len(unique) == 1 and unique[0]["meta"]["severity"] == "critical"
    for e in suite["expectations"]:
        if e["type"] == "expect_column_values_to_not_be_null" and e["kwargs"]["column"] in key:
            assert e["meta"]["severity"] == "critical"


@pytest.mark.parametrize("table", [t for t, s in SPECS.items() if s.references])
def test_references_are_checked_against_customers(table):
    suite = suites.load_suite(table, EXPECTATIONS)
    (ri,) = [
        e
        for e in suite["expectations"]
        if e["kwargs"].get("value_set") == {"$PARAMETER": "unknown_customer_ids"}
    ]
    assert ri["type"] == "expect_column_values_to_not_be_in_set"
    assert ri["kwargs"]["column"] == "customer_id"
    assert ri["meta"]["severity"] == "critical"


@pytest.mark.parametrize("table", [t for t in TABLES if time_column(schema.TABLES[t])])
def test_timestamps_have_future_and_freshness_rules(table):
    suite = suites.load_suite(table, EXPECTATIONS)
    spec = schema.TABLES[table]
    time_column = spec.partition_by or "signup_date"
    future = [
        e
        for e in by_type(suite, "expect_column_values_to_be_between")
        if e["kwargs"]["column"] == time_column and e["kwargs"].get("max_value") == {"$PARAMETER": "as_of"}
    ]
    assert len(future) == 1 and future[0]["kwargs"]["strict_max"] is True
    assert future[0]["meta"]["severity"] == "critical"
    fresh = by_type(suite, "expect_column_max_to_be_between")
    assert [e["kwargs"]["column"] for e in fresh] == [time_column]
    assert fresh[0]["kwargs"]["min_value"] == {"$PARAMETER": "freshness_min_ts"}
    assert suite["meta"]["freshness_days"] > 0
    if table in ("transactions", "app_events", "balances"):
        assert fresh[0]["meta"]["severity"] == "critical"


def test_a_table_without_time_has_no_freshness_rule():
    undated = [t for t in TABLES if not time_column(schema.TABLES[t])]
    assert undated == ["branches", "products"]
    for table in undated:
        suite = suites.load_suite(table, EXPECTATIONS)
        assert not by_type(suite, "expect_column_max_to_be_between")
        assert "freshness_days" not in suite["meta"]
        assert suite["meta"]["optional_table"]


@pytest.mark.parametrize("table", SUITES)
def test_row_count_rules(table):
    suite = suites.load_suite(table, EXPECTATIONS)
    counts = by_type(suite, "expect_table_row_count_to_be_between")
    assert any(e["kwargs"].get("min_value") == 1 for e in counts), "a table-not-empty rule"
    band = [e for e in counts if e["kwargs"].get("max_value") == {"$PARAMETER": "max_rows"}]
    if band:
        assert band[0]["meta"]["severity"] == "warning"
        lo, hi = suite["meta"]["rows_per_customer_month"]
        assert 0 < lo < hi


def test_critical_rules_named_in_the_brief_exist():
    rules = {
        t: {e["meta"]["rule"] for e in suites.load_suite(t, EXPECTATIONS)["expectations"]} for t in TABLES
    }
    assert {"amount not negative", "amount not zero", "no future txn_ts", "txn_ts fresh"} <= rules[
        "transactions"
    ]
    assert {"aum not negative", "month_end fresh"} <= rules["balances"]
    assert {"birth year plausible", "credit limit not negative", "repayment due day 1-28"} <= rules[
        "customers"
    ]
    assert "opted-out share usual" in rules["customers"]


def _feature_suite() -> dict:
    return suites.load_suite("customer_features", EXPECTATIONS)


def test_feature_suite_columns_are_the_wide_table():
    assert DERIVED["customer_features"].column_names == ["customer_id", *catalogue.FEATURE_NAMES]


def test_feature_suite_requires_values_exactly_where_the_spec_forbids_nulls():
    spec = DERIVED["customer_features"]
    suite = _feature_suite()
    strict = {
        e["kwargs"]["column"]: e
        for e in by_type(suite, "expect_column_values_to_not_be_null")
        if "mostly" not in e["kwargs"]
    }
    assert set(strict) == {c.name for c in spec.columns if not c.nullable}
    assert all(e["meta"]["severity"] == "critical" for e in strict.values())
    nullable = {c.name for c in spec.columns if c.nullable}
    assert {"avg_ticket_90d", "online_share_180d", "aum_change_1m", "credit_utilisation"} <= nullable


def test_feature_suite_row_count_is_the_eligible_customers():
    (exact,) = [
        e
        for e in by_type(_feature_suite(), "expect_table_row_count_to_be_between")
        if e["kwargs"].get("min_value") == {"$PARAMETER": "expected_rows"}
    ]
    assert exact["kwargs"]["max_value"] == {"$PARAMETER": "expected_rows"}
    assert exact["meta"]["severity"] == "critical"


def test_feature_suite_ranges():
    ranges = {
        e["kwargs"]["column"]: e for e in by_type(_feature_suite(), "expect_column_values_to_be_between")
    }
    shares = [n for n in catalogue.FEATURE_NAMES if n.endswith("_share_180d")]
    assert len(shares) == 4 + len(schema.MERCHANT_CATEGORIES)
    for name in shares:
        assert (ranges[name]["kwargs"]["min_value"], ranges[name]["kwargs"]["max_value"]) == (0, 1), name
    for name in [n for n in catalogue.FEATURE_NAMES if n.startswith("days_since_")]:
        assert ranges[name]["kwargs"] == {
            "column": name,
            "min_value": 0,
            "max_value": {"$PARAMETER": "max_days_since"},
        }
    counts = [n for n in catalogue.FEATURE_NAMES if n.startswith(("txn_count_", "spend_", "logins_"))]
    for name in counts:
        assert ranges[name]["kwargs"]["min_value"] == 0, name
        assert ranges[name]["meta"]["severity"] == "critical", name
    assert (ranges["age_years"]["kwargs"]["min_value"], ranges["age_years"]["kwargs"]["max_value"]) == (
        16,
        110,
    )
    assert ranges["tenure_days"]["kwargs"]["min_value"] == 0
