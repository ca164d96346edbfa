"""The gates on lakes from the synthetic generator: a clean bank passes, every fault of --dirty is critical."""

from __future__ import annotations

import pytest

from pipelines.config import PROJECT_ROOT
from pipelines.data import gates, storage

EXPECTATIONS = PROJECT_ROOT / "expectations"

# The generator's fault names (truth/manifest.json) -> (where, rule, rows per injected fault): a duplicated key
# makes two rows that are not unique.
FAULT_RULES = {
    ("customers", "duplicate customer_id"): ("customers.customer_id", "customer_id unique", 2),
    ("transactions", "duplicate txn_id"): ("transactions.txn_id", "txn_id unique", 2),
    ("transactions", "null customer_id"): ("transactions.customer_id", "customer_id not null", 1),
    ("transactions", "negative amount"): ("transactions.amount", "amount not negative", 1),
    ("transactions", "unknown merchant_category"): (
        "transactions.merchant_category",
        "known merchant_category",
        1,
    ),
    ("transactions", "customer_id not in customers"): (
        "transactions.customer_id",
        "customer exists in customers",
        1,
    ),
    ("transactions", "future txn_ts"): ("transactions.txn_ts", "no future txn_ts", 1),
}


@pytest.mark.slow
def test_clean_generated_bank_passes_without_warnings(bank, tmp_path):
    lake = bank / "lake"
    result = gates.validate_lake(
        lake, storage.lake_end(lake), EXPECTATIONS, report_dir=tmp_path, progress=None
    )
    assert result.success, result.summary()
    assert not result.warnings, result.summary()
    assert not [o for t in result.tables.values() for o in t.skipped], result.summary()
    assert (tmp_path / "validation.json").is_file()


@pytest.mark.slow
def test_every_fault_of_the_dirty_generator_is_critical(dirty_bank):
    lake = dirty_bank / "lake"
    injected = storage.read_json(dirty_bank / "truth" / "manifest.json")["dirty_faults"]
    result = gates.validate_lake(lake, storage.lake_end(lake), EXPECTATIONS, progress=None)
    assert not result.success
    expected = set()
    for table, faults in injected.items():
        for fault, count in faults.items():
            if fault == "missing column aum":
                (o,) = [o for o in result.critical_failures if o.where == "balances.aum"]
                assert o.message == "balances.aum: column missing (critical)"
                expected.add(("balances.aum", o.rule))
                continue
            where, rule, rows_each = FAULT_RULES[(table, fault)]
            (o,) = [o for o in result.failures if o.where == where and o.rule == rule]
            assert o.severity == "critical", o.message
            assert o.unexpected_count == count * rows_each, o.message
            expected.add((where, rule))
    assert {(o.where, o.rule) for o in result.critical_failures} == expected, result.summary()
