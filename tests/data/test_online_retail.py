"""The transactions gate on a real file: UCI Online Retail, mapped with its faults kept."""

from __future__ import annotations

import pandas as pd
import pytest

from pipelines.config import PROJECT_ROOT
from pipelines.data import gates, schema, sources

DATA = (PROJECT_ROOT / ".." / "shared" / "data").resolve()
RETAIL = DATA / "online_retail.csv.gz"
EXPECTATIONS = PROJECT_ROOT / "expectations"
AS_OF = "2011-12-10"  # the day after the last invoice

pytestmark = pytest.mark.skipif(
    not RETAIL.is_file(), reason=f"public data set not available: {RETAIL} is absent"
)


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    return pd.read_csv(RETAIL, dtype={"InvoiceNo": str, "StockCode": str, "CustomerID": "Int64"})


@pytest.fixture(scope="module")
def mapped() -> pd.DataFrame:
    return sources.read_online_retail(RETAIL)


@pytest.fixture(scope="module")
def result(mapped):
    return gates.validate_frame(mapped, "transactions", AS_OF, EXPECTATIONS)


def test_mapping_keeps_every_row_and_follows_the_schema(raw, mapped):
    assert len(mapped) == len(raw) == 541_909
    assert list(mapped.columns) == [c.name for c in schema.TRANSACTIONS.columns]
    assert mapped["txn_id"].is_unique
    assert str(mapped["customer_id"].dtype) == "Int64"
    assert mapped["customer_id"].nunique() == 4_372
    assert (mapped["amount"] == raw["Quantity"] * raw["UnitPrice"]).all()
    assert mapped["is_cross_border"].sum() == (raw["Country"] != "United Kingdom").sum()
    assert set(mapped["merchant_category"]) == {"retail"} and set(mapped["channel"]) == {"online"}


def _failure(result, column, rule):
    (o,) = [o for o in result.failures if o.column == column and o.rule == rule]
    assert o.severity == "critical"
    assert o.message.startswith(
        f"transactions.{column}: rule '{rule}' (critical) failed on {o.unexpected_count} rows"
    )
    return o


def test_missing_customer_ids_are_reported(result):
    assert _failure(result, "customer_id", "customer_id not null").unexpected_count == 135_080


def test_cancellations_are_reported_as_negative_amounts(raw, result):
    negative = raw["Quantity"] * raw["UnitPrice"] < 0
    cancellations = raw["InvoiceNo"].str.startswith("C")
    assert (negative & ~cancellations).sum() == 2  # the two "Adjust bad debt" lines with a negative price
    o = _failure(result, "amount", "amount not negative")
    assert o.unexpected_count == negative.sum() == 9_290
    assert all(v < 0 for v in o.examples)


def test_zero_prices_are_reported_as_zero_amounts(raw, result):
    zero = raw["Quantity"] * raw["UnitPrice"] == 0
    assert zero.sum() == (raw["UnitPrice"] == 0).sum()
    assert _failure(result, "amount", "amount not zero").unexpected_count == zero.sum() == 2_515


def test_nothing_else_is_critical_and_the_run_is_stopped(result):
    assert {o.rule for o in result.critical_failures} == {
        "customer_id not null",
        "amount not negative",
        "amount not zero",
    }
    with pytest.raises(gates.ValidationError, match="135080 rows"):
        gates.require_valid(result)
