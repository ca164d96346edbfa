"""Loading and checking a suite's JSON, and the run-time values of its parameters."""

from __future__ import annotations

import datetime
import json

import pytest

from pipelines.data.suites import SuiteError, load_suite, suite_parameters


def test_load_suite_errors_are_clear(tmp_path):
    with pytest.raises(SuiteError, match="not found"):
        load_suite("transactions", tmp_path)
    (tmp_path / "transactions.json").write_text("{not json")
    with pytest.raises(SuiteError, match="not valid JSON"):
        load_suite("transactions", tmp_path)
    old = {
        "name": "transactions",
        "expectations": [{"expectation_type": "expect_column_to_exist", "kwargs": {}}],
    }
    (tmp_path / "transactions.json").write_text(json.dumps(old))
    with pytest.raises(SuiteError, match="0.x key 'expectation_type'"):
        load_suite("transactions", tmp_path)
    no_meta = {
        "name": "transactions",
        "expectations": [{"type": "expect_column_to_exist", "kwargs": {"column": "a"}}],
    }
    (tmp_path / "transactions.json").write_text(json.dumps(no_meta))
    with pytest.raises(SuiteError, match="meta.severity"):
        load_suite("transactions", tmp_path)
    (tmp_path / "transactions.json").write_text(json.dumps({**no_meta, "name": "other"}))
    with pytest.raises(SuiteError, match="must be named 'transactions'"):
        load_suite("transactions", tmp_path)


def test_suite_parameters_for_a_run_date():
    suite = {"meta": {"freshness_days": 3, "rows_per_customer_month": [0.5, 2.25]}}
    params = suite_parameters(
        suite, "2025-04-01", n_customers=10, n_months=3, overrides={"customer_ids": [1]}
    )
    assert params == {
        "as_of": datetime.datetime(2025, 4, 1),
        "min_birth_year": 1915,
        "max_birth_year": 2009,
        "freshness_min_ts": datetime.datetime(2025, 3, 29),
        "min_rows": 15,
        "max_rows": 68,
    }
    # without customers and months there is no row-count band; overrides win
    assert suite_parameters(suite, "2025-04-01", overrides={"min_birth_year": 1900})["min_birth_year"] == 1900
    assert "min_rows" not in suite_parameters(suite, "2025-04-01")
