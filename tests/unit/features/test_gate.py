"""The wide table's data-quality gate: expectations/customer_features.json against build_features' output."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from pipelines.data import gate_reports, gates
from pipelines.data.schema import TABLES
from pipelines.features.catalogue import FEATURE_NAMES
from pipelines.features.wide_table import build_features, eligible_customers, feature_table_spec, load_tables
from tests.conftest import PROJECT_ROOT

EXPECTATIONS = PROJECT_ROOT / "expectations"
AS_OF = pd.Timestamp("2025-09-01")
SPEC = feature_table_spec()


@pytest.fixture(scope="module")
def snapshot(bank) -> tuple[pd.DataFrame, pd.Series]:
    """The wide table of the session bank at AS_OF and the ids of the customers open then."""
    tables = load_tables(bank / "lake", AS_OF)
    return build_features(tables, AS_OF), eligible_customers(tables["customers"], AS_OF)["customer_id"]


def _gate(wide: pd.DataFrame, eligible: pd.Series, **overrides) -> gate_reports.TableResult:
    params = {"customer_ids": eligible, "expected_rows": len(eligible), "max_days_since": 181, **overrides}
    return gates.validate_frame(wide, SPEC.name, AS_OF, EXPECTATIONS, params, spec=SPEC)


def test_spec_is_the_catalogue_with_the_customers_categories():
    assert SPEC.name == "customer_features" and SPEC.key == ("customer_id",)
    assert SPEC.column_names == ["customer_id", *FEATURE_NAMES]
    customers = TABLES["customers"]
    for name in ("gender", "income_band", "occupation", "card_tier", "acquisition_channel", "city_tier"):
        assert SPEC.column(name).allowed == customers.column(name).allowed, name


def test_suite_passes_on_a_real_wide_table(snapshot):
    wide, eligible = snapshot
    result = _gate(wide, eligible)
    assert result.success, result.summary()
    assert not result.warnings and not result.skipped, result.summary()
    assert result.rows == len(eligible) > 15_000
    # Every column's dtype is the one the spec declares (the type rules ran and passed on each).
    typed = {o.column for o in result.outcomes if o.expectation_type == "expect_column_values_to_be_of_type"}
    assert typed == set(SPEC.column_names)
    # The data exercises the nullable columns: they are allowed, not merely absent.
    assert wide["aum_change_3m"].isna().any()


def test_nullable_columns_are_exactly_those_of_a_customer_without_history():
    """A customer with no transaction, login, contact or month-end balance: the spec's nullable columns are null,
    every other feature has a value."""
    tables = {
        name: t.arrow_schema.empty_table().to_pandas(date_as_object=False) for name, t in TABLES.items()
    }
    tables["customers"] = pd.DataFrame(
        {
            "customer_id": [7],
            "signup_date": pd.to_datetime(["2025-08-20"]),
            "birth_year": np.array([1990], dtype=np.int16),
            "gender": pd.Categorical(["F"]),
            "city_tier": np.array([2], dtype=np.int8),
            "income_band": pd.Categorical(["middle"]),
            "occupation": pd.Categorical(["salaried"]),
            "card_tier": pd.Categorical(["gold"]),
            "credit_limit": [0.0],
            "acquisition_channel": pd.Categorical(["online"]),
            "closed_date": pd.to_datetime([None]),
        }
    )
    # A second customer with one transaction keeps the spend columns float (a table with no transaction at all
    # gives int64 spends: see test_the_gate_catches_a_mistyped_column).
    tables["customers"] = pd.concat(
        [tables["customers"], tables["customers"].assign(customer_id=[8])], ignore_index=True
    )
    tables["transactions"] = pd.DataFrame(
        {
            "txn_id": [1],
            "customer_id": [8],
            "txn_ts": pd.to_datetime(["2025-08-30 10:00"]),
            "amount": [12.5],
            "merchant_category": pd.Categorical(["grocery"]),
            "is_cross_border": [False],
            "is_installment": [False],
            "channel": pd.Categorical(["pos"]),
        }
    )
    wide = build_features(tables, AS_OF).set_index("customer_id")
    nulls = set(wide.columns[wide.loc[7].isna().to_numpy()])
    assert nulls == {c.name for c in SPEC.columns if c.nullable}
    result = _gate(wide.reset_index(), pd.Series([7, 8]))
    assert result.success, result.summary()


@pytest.mark.parametrize(
    ("break_it", "column", "rule"),
    [
        (
            lambda w: w.assign(online_share_180d=w["online_share_180d"].where(w.index != 3, 1.25)),
            "online_share_180d",
            "online_share_180d in [0, 1]",
        ),
        (
            lambda w: w.assign(cat_grocery_spend_share_180d=w["cat_grocery_spend_share_180d"] + 0.5),
            "cat_grocery_spend_share_180d",
            "cat_grocery_spend_share_180d in [0, 1]",
        ),
        (lambda w: w.assign(spend_90d=w["spend_90d"].where(w.index != 5)), "spend_90d", "spend_90d not null"),
        (lambda w: w.assign(card_tier=w["card_tier"].where(w.index != 5)), "card_tier", "card_tier not null"),
        (
            lambda w: w.assign(days_since_last_login=w["days_since_last_login"].where(w.index != 2, 400.0)),
            "days_since_last_login",
            "days_since_last_login within lookback + 1",
        ),
        (lambda w: w.assign(txn_count_7d=w["txn_count_30d"] + 1), "txn_count_30d", "txn_count 30d covers 7d"),
    ],
    ids=["share above 1", "shares shifted", "null spend", "null category", "days since past cap", "windows"],
)
def test_a_broken_value_fails_critically_naming_column_and_rule(snapshot, break_it, column, rule):
    wide, eligible = snapshot
    result = _gate(break_it(wide.copy()), eligible)
    assert not result.success
    (failure,) = result.critical_failures
    assert (failure.column, failure.rule) == (column, rule)
    assert f"customer_features.{column}: rule '{rule}' (critical) failed on" in failure.message
    with pytest.raises(gates.ValidationError, match=re.escape(f"customer_features.{column}: rule '{rule}'")):
        gates.require_valid(result)


def test_a_duplicate_customer_fails_uniqueness_and_the_row_count(snapshot):
    wide, eligible = snapshot
    doubled = pd.concat([wide, wide.iloc[[10]]], ignore_index=True)
    result = _gate(doubled, eligible)
    failed = {o.rule: o for o in result.critical_failures}
    assert set(failed) == {"customer_id unique", "one row per customer open at as_of"}
    dup_id = int(wide["customer_id"].iloc[10])
    assert failed["customer_id unique"].unexpected_count == 2
    assert failed["customer_id unique"].examples == [dup_id]
    assert "customer_features.customer_id: rule 'customer_id unique' (critical) failed on 2 rows" in (
        failed["customer_id unique"].message
    )
    expected = len(eligible)
    assert failed["one row per customer open at as_of"].message == (
        "customer_features: rule 'one row per customer open at as_of' (critical) failed: "
        f"observed {expected + 1}, expected >= {expected} and <= {expected}"
    )


def test_row_count_must_equal_the_eligible_customers(snapshot):
    wide, eligible = snapshot
    # A customer missing from the table (a lost join) ...
    result = _gate(wide.iloc[1:].reset_index(drop=True), eligible)
    (failure,) = result.critical_failures
    assert failure.rule == "one row per customer open at as_of"
    assert f"observed {len(eligible) - 1}, expected >= {len(eligible)}" in failure.message
    # ... or a customer who is not open at as_of in place of an open one.
    swapped = wide.copy()
    swapped.loc[0, "customer_id"] = 42
    (failure,) = _gate(swapped, eligible).critical_failures
    assert failure.message.startswith(
        "customer_features.customer_id: rule 'customer open at as_of' (critical) failed on 1 row, e.g. [42]"
    )


def test_the_gate_catches_a_mistyped_column(snapshot):
    """build_features gives int64 spends when no transaction at all falls in the lookback: the type rule says so
    and the spend rules are reported as not evaluated, never passed."""
    wide, eligible = snapshot
    result = _gate(wide.assign(spend_7d=wide["spend_7d"].round().astype("int64")), eligible)
    (failure,) = result.critical_failures
    assert failure.message == (
        "customer_features.spend_7d: rule 'spend_7d type' (critical) failed: observed int64, expected float64"
    )
    assert {o.rule for o in result.skipped} >= {"spend_7d not null", "spend_7d not negative"}


def test_missing_parameters_are_not_evaluated_rather_than_passed(snapshot):
    wide, _ = snapshot
    result = gates.validate_frame(wide, SPEC.name, AS_OF, EXPECTATIONS, spec=SPEC)
    skipped = {o.rule: o.note for o in result.skipped}
    assert skipped["one row per customer open at as_of"] == "parameter expected_rows not given"
    assert skipped["days_since_last_txn within lookback + 1"] == "parameter max_days_since not given"
    assert skipped["customer open at as_of"] == "parameter customer_ids not given"
    assert "not evaluated (critical rules):" in result.summary()


def test_spec_must_name_the_table(snapshot):
    wide, eligible = snapshot
    with pytest.raises(ValueError, match="spec describes table 'customer_features', not 'customers'"):
        gates.validate_frame(wide, "customers", AS_OF, EXPECTATIONS, spec=SPEC)
