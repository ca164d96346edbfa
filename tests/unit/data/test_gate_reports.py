"""Gate results and their reports: PII masking, summaries, and the Markdown report of templates/gate_report.md.j2."""

from __future__ import annotations

import json

import pytest

from pipelines.data import gates
from pipelines.data.gate_reports import LakeResult, Outcome, TableResult, mask_pii, write_report
from tests.unit.data.test_gates import AS_OF, CUSTOMER_IDS, EXPECTATIONS, customers_frame, failure

# --------------------------------------------------------------------------------------------------------------
# PII


@pytest.mark.parametrize(
    ("column", "value", "masked"),
    [
        ("full_name", "John Smith", "J*** S****"),
        ("phone", "+44 7911 123123", "+44 7*** ***123"),
        ("email", "john.smith@example.com", "j***@e***.com"),
        ("national_id", "AB123456C", "*******6C"),
        ("national_id", "123", "***"),
        ("email", None, None),
    ],
)
def test_mask_pii(column, value, masked):
    assert mask_pii(value, column) == masked


def test_pii_is_masked_in_messages_and_reports(tmp_path):
    df = customers_frame()
    df.loc[3, "national_id"] = df.loc[2, "national_id"]
    df.loc[4, "email"] = "eve.black-at-example.com"
    df.loc[6, "phone"] = "call me maybe"
    result = gates.validate_frame(
        df, "customers", AS_OF, EXPECTATIONS, {"customer_ids": CUSTOMER_IDS}, report_dir=tmp_path
    )
    assert result.success  # PII rules are warnings
    assert failure(result, "customers.national_id", "national id unique").unexpected_count == 2
    email = failure(result, "customers.email", "email well formed")
    assert email.examples == ["**********************om"]
    phone = failure(result, "customers.phone", "phone well formed")
    assert phone.examples == ["**** ** *****"]
    text = (
        result.summary()
        + (tmp_path / "validation.json").read_text()
        + (tmp_path / "validation.md").read_text()
    )
    for raw in (df.loc[2, "national_id"], "eve.black-at-example.com", "call me maybe"):
        assert raw not in text
    assert "*******2C" in text
    # the Markdown report escapes the mask's stars, so they stay stars rather than emphasis
    assert "\\*\\*\\*\\*\\*\\*\\*2C" in (tmp_path / "validation.md").read_text()


# --------------------------------------------------------------------------------------------------------------
# The report files


def _lake() -> LakeResult:
    """A lake result by hand: a critical failure whose examples hold Markdown, a warning, a rule not evaluated,
    rows left out of two tables."""
    passed = Outcome(
        "customers", 0, "expect_column_to_exist", "customer_id", "customer_id present", "critical", "passed"
    )
    warning = Outcome(
        "customers",
        1,
        "expect_column_mean_to_be_between",
        "marketing_opt_out",
        "opted-out share usual",
        "warning",
        "failed",
        observed=1.0,
        expected="<= 0.4",
    )
    skipped = Outcome(
        "balances",
        0,
        "expect_column_values_to_not_be_null",
        "aum",
        "aum not null",
        "critical",
        note="column aum missing or mistyped",
    )
    critical = Outcome(
        "transactions",
        0,
        "expect_column_values_to_be_in_set",
        "channel",
        "known channel",
        "critical",
        "failed",
        unexpected_count=3,
        examples=["a|b", "x*y", "<b>"],
    )
    months = ["2025-01", "2025-02", "2025-03"]
    return LakeResult(
        "2025-04-01",
        {
            "customers": TableResult("customers", "2025-04-01", [passed, warning], rows=1_234),
            "balances": TableResult(
                "balances", "2025-04-01", [skipped], rows=60, partitions=months, excluded_rows=20
            ),
            "transactions": TableResult(
                "transactions",
                "2025-04-01",
                [critical],
                rows=1_234_567,
                partitions=months,
                excluded_rows=1_500,
            ),
        },
        seconds=3.2,
    )


REPORT = r"""# Data validation as of 2025-04-01: FAILED

1 critical failure(s), 1 warning(s).

| table | status | rows | partitions | expectations | failed | not evaluated |
|---|---|---:|---:|---:|---:|---:|
| customers | warnings | 1,234 | 0 | 2 | 1 | 0 |
| balances | ok | 60 | 3 | 1 | 0 | 1 |
| transactions | **FAILED** | 1,234,567 | 3 | 1 | 1 | 0 |

## Critical failures

- transactions.channel: rule 'known channel' (critical) failed on 3 rows, e.g. \['a\|b', 'x\*y', '\<b>'\]

## Warnings

- customers.marketing_opt_out: rule 'opted-out share usual' (warning) failed: observed 1.0, expected <= 0.4

## Not evaluated

- balances.aum: rule 'aum not null' (critical) not evaluated: column aum missing or mistyped

Rows dated on or after the run date that the lake already holds (a backfill) were left out: balances 20, transactions 1,500.
"""


def test_markdown_report_has_the_table_then_failures_warnings_and_rules_not_evaluated(tmp_path):
    json_path, md_path = write_report(_lake(), tmp_path)
    assert md_path == tmp_path / "validation.md" and json_path == tmp_path / "validation.json"
    assert md_path.read_text() == REPORT
    payload = json.loads(json_path.read_text())
    assert payload["success"] is False
    assert payload["critical_failures"] == [_lake().critical_failures[0].message]
    assert payload["tables"]["transactions"]["excluded_rows"] == 1_500


def test_markdown_report_of_a_passing_table_is_its_header_and_row(tmp_path):
    ok = Outcome(
        "responses", 0, "expect_column_to_exist", "event_ts", "event_ts present", "critical", "passed"
    )
    result = TableResult("responses", "2025-04-01", [ok], rows=5, partitions=["2025-02", "2025-03"])
    _json, md_path = write_report(result, tmp_path)
    assert md_path.read_text() == (
        "# Data validation as of 2025-04-01: PASSED\n"
        "\n"
        "0 critical failure(s), 0 warning(s).\n"
        "\n"
        "| table | status | rows | partitions | expectations | failed | not evaluated |\n"
        "|---|---|---:|---:|---:|---:|---:|\n"
        "| responses | ok | 5 | 2 | 1 | 0 | 0 |\n"
    )


def test_summary_names_critical_failures_warnings_and_rows_left_out():
    summary = _lake().summary()
    assert summary.splitlines()[0] == (
        "validation as of 2025-04-01: FAILED - 1 critical failure(s), 1 warning(s) "
        "(3 table(s), 1,235,861 rows, 3.2 s)"
    )
    assert (
        "  - transactions.channel: rule 'known channel' (critical) failed on 3 rows, e.g. ['a|b'" in summary
    )
    assert summary.splitlines()[-1] == (
        "rows dated on or after as_of that the lake already holds were left out: balances 20, transactions 1,500"
    )
