"""A source without some tables (a retailer: customers and transactions only): the wide table computes what its
inputs allow, records what it left out and why, and its gate skips the left-out features' rules."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from pipelines.data import storage
from pipelines.features.catalogue import BY_NAME, FEATURE_NAMES, ID, left_out_features
from pipelines.features.gate import validate_features
from pipelines.features.labels import LabelDefinition, LabelError, make_labels
from pipelines.features.wide_table import (
    available_tables,
    build_features,
    left_out_of,
    load_tables,
    read_wide_table,
    write_wide_table,
)
from pipelines.synthetic.bank import SynthConfig, generate_bank
from tests.conftest import PROJECT_ROOT

EXPECTATIONS = PROJECT_ROOT / "expectations"
SMALL = SynthConfig(customers=1_500, months=6, seed=23, chunk_size=1_000, workers=1)
AS_OF = pd.Timestamp("2025-07-01")  # the small bank's lake end
DROPPED = ("balances", "app_events")


@pytest.fixture(scope="module")
def lakes(tmp_path_factory):
    """The full lake and a copy without ``balances`` and ``app_events`` (the retailer's shape)."""
    out = tmp_path_factory.mktemp("absent")
    generate_bank(SMALL, out / "bank", progress=None)
    full = out / "bank" / "lake"
    retail = out / "retail"
    shutil.copytree(full, retail)
    for name in DROPPED:
        shutil.rmtree(retail / name)
    return full, retail


@pytest.fixture(scope="module")
def built(lakes):
    full, retail = lakes
    tables = load_tables(retail, AS_OF)
    return build_features(load_tables(full, AS_OF), AS_OF), build_features(tables, AS_OF), tables


def test_the_features_of_absent_tables_are_left_out_with_why(built):
    full, part, tables = built
    assert set(tables) == {"customers", "transactions", "campaign_contacts", "responses"}
    expected = {
        f: f"no {t} table" for f in FEATURE_NAMES for t in BY_NAME[f].inputs if t in DROPPED
    }  # every feature reads at most one optional table
    assert left_out_of(part) == expected == left_out_features(DROPPED)
    assert {"aum_last", "credit_utilisation", "logins_30d", "days_since_last_login"} <= set(expected)
    assert part.attrs["tables_absent"] == ["app_events", "balances"]
    assert list(part.columns) == [ID, *(f for f in FEATURE_NAMES if f not in expected)]
    assert {"spend_90d", "days_since_last_txn", "campaign_contacts_180d", "age_years"} <= set(part.columns)
    assert left_out_of(full) == {} and list(full.columns) == [ID, *FEATURE_NAMES]


def test_the_remaining_features_are_identical_to_the_full_build(built):
    full, part, _ = built
    assert len(part) > 1_000
    pd.testing.assert_frame_equal(part, full[part.columns], check_exact=True)


def test_gate_passes_and_reports_the_skipped_expectations(built):
    full, part, tables = built
    result = validate_features(part, tables["customers"], AS_OF, EXPECTATIONS)
    assert result.success, result.summary()
    left_out = left_out_of(part)
    skipped = {o.column: o.note for o in result.skipped}
    assert skipped and set(skipped) == set(left_out)
    assert all(o.note == f"not computed: {left_out[o.column]}" for o in result.skipped)
    assert "balances table" in skipped["aum_last"] and "app_events table" in skipped["logins_7d"]
    assert "logins_30d: rule 'logins 30d covers 7d'" in result.summary()
    assert "not computed: no app_events table" in json.dumps(result.to_dict())
    # Rules on the features that are there still ran.
    ran = {o.column for o in result.outcomes if o.status == "passed"}
    assert {"spend_90d", "txn_count_30d", "campaign_contacts_180d"} <= ran
    assert not validate_features(full, tables["customers"], AS_OF, EXPECTATIONS).skipped


def test_a_feature_missing_without_a_record_still_fails(built):
    _, part, tables = built
    broken = part.drop(columns=["spend_7d"])  # attrs kept: spend_7d is not among the features left out
    result = validate_features(broken, tables["customers"], AS_OF, EXPECTATIONS)
    assert not result.success
    assert any(o.column == "spend_7d" for o in result.critical_failures), result.summary()


def test_written_wide_table_carries_its_left_out_list(built, tmp_path):
    _, part, tables = built
    path = write_wide_table(part, tmp_path / "features.parquet")
    record = json.loads((tmp_path / "features.left_out.json").read_text())
    assert record["tables_absent"] == ["app_events", "balances"]
    assert {e["feature"]: e["reason"] for e in record["features_left_out"]} == left_out_of(part)
    back = read_wide_table(path)
    assert left_out_of(back) == left_out_of(part)
    assert validate_features(back, tables["customers"], AS_OF, EXPECTATIONS).success


def test_an_empty_folder_is_an_absent_table(lakes, tmp_path):
    _, retail = lakes
    lake = tmp_path / "lake"
    shutil.copytree(retail, lake)
    shutil.rmtree(lake / "responses")
    (lake / "responses").mkdir()
    assert not storage.has_table(lake, "responses") and storage.has_table(lake, "campaign_contacts")
    assert available_tables(lake) == ("customers", "transactions", "campaign_contacts")
    wide = build_features(load_tables(lake, AS_OF), AS_OF)
    assert left_out_of(wide)["campaign_conversions_180d"] == "no responses table"
    assert "campaign_contacts_180d" in wide.columns


def test_a_missing_customers_table_is_a_one_line_error(lakes, built, tmp_path):
    _, retail = lakes
    lake = tmp_path / "lake"
    shutil.copytree(retail, lake)
    shutil.rmtree(lake / "customers")
    with pytest.raises(storage.LakeError) as err:
        load_tables(lake, AS_OF)
    message = str(err.value)
    assert "\n" not in message and str(lake) in message and "no customers table" in message
    with pytest.raises(ValueError, match="needs the customers table"):
        build_features({k: v for k, v in built[2].items() if k != "customers"}, AS_OF)


def test_past_campaigns_alone_give_the_customer_and_campaign_features(lakes, built, tmp_path):
    # A source of past campaigns (Bank Marketing): customers, contacts and responses, no transactions.
    full, _ = built[:2]
    lake = tmp_path / "lake"
    shutil.copytree(lakes[1], lake)
    shutil.rmtree(lake / "transactions")
    assert available_tables(lake) == ("customers", "campaign_contacts", "responses")
    wide = build_features(load_tables(lake, AS_OF), AS_OF)
    assert left_out_of(wide)["spend_90d"] == "no transactions table"
    assert wide.attrs["tables_absent"] == ["transactions", "app_events", "balances"]
    assert {"age_years", "occupation", "campaign_contacts_180d"} <= set(wide.columns)
    assert not {"days_since_last_txn", "txn_count_30d", "aum_last"} & set(wide.columns)
    pd.testing.assert_frame_equal(wide, full[wide.columns], check_exact=True)
    with pytest.raises(LabelError, match="'inactivity' needs the transactions table"):
        make_labels(load_tables(lake, AS_OF), AS_OF, LabelDefinition("inactivity", 90))
