"""How one batch is checked: frames typed for GX, keys proven unique by order, unknown ids counted outside GX."""

from __future__ import annotations

import pandas as pd
import pytest

from pipelines.data import gate_engine
from tests.unit.data.test_gates import _orphan, check, customers_frame, failure, transactions_frame


def test_many_unknown_customer_ids_are_counted_outside_gx(monkeypatch):
    monkeypatch.setattr(gate_engine, "MAX_UNKNOWN_IDS_FOR_GX", 2)
    o = failure(
        check(_orphan(transactions_frame())), "transactions.customer_id", "customer exists in customers"
    )
    assert o.unexpected_count == 4
    assert "counted outside GX" in o.message


def test_pii_column_that_cannot_be_stored_is_reported_without_its_values():
    df = customers_frame()
    df["full_name"] = df["full_name"].astype(object)
    df.loc[0, "full_name"] = 12345  # mixed types: Arrow refuses the column, and its error quotes a value
    result = check(df, "customers")
    o = failure(result, "customers.full_name", "full_name type")
    assert o.severity == "critical"
    assert "Alice" not in o.message and "12345" not in o.message
    assert "observed not convertible to Arrow (Arrow" in o.message, o.message


@pytest.mark.parametrize(
    ("columns", "rows", "monotonic"),
    [
        (["a"], [1, 2, 5, 9], True),
        (["a"], [9, 5, 2, 1], True),
        (["a"], [1, 2, 2, 3], False),
        (["a"], [3, 1, 2, 4], False),
        (["a"], [1, None, 2, 3], True),  # nulls are ignored, as GX's uniqueness does
        (["a", "b"], [(1, 1), (1, 2), (2, 1), (2, 5)], True),
        (["a", "b"], [(1, 1), (2, 1), (1, 2), (2, 2)], True),  # increasing by (b, a)
        (["a", "b"], [(1, 1), (1, 2), (1, 2)], False),
        (["a", "b"], [(1, 1), (None, 2)], False),
    ],
)
def test_strictly_monotonic_keys_are_proven_unique(columns, rows, monotonic):
    if len(columns) == 1:
        frame = pd.DataFrame({"a": pd.array(rows, dtype="Float64").astype("float64")})
    else:
        frame = pd.DataFrame(rows, columns=columns).astype("float64")
    assert gate_engine.strictly_monotonic(frame, columns) is monotonic
    if monotonic:
        assert not frame.dropna(how="all").duplicated(subset=columns).any()
