"""The data-quality gates on tiny frames and small lakes, with real Great Expectations."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from pipelines import progress
from pipelines.config import PROJECT_ROOT
from pipelines.data import gates, schema, storage

EXPECTATIONS = PROJECT_ROOT / "expectations"
AS_OF = pd.Timestamp("2025-04-01")
MONTHS = ("2025-01", "2025-02", "2025-03")
N_CUSTOMERS = 20
NAMES = ("Alice Smith", "Bob Jones", "Carol White", "Dan Brown", "Eve Black")


# --------------------------------------------------------------------------------------------------------------
# Tiny, clean tables that follow schema.py


def _cat(values, allowed) -> pd.Categorical:
    return pd.Categorical(list(values), categories=list(allowed))


def customers_frame(n: int = N_CUSTOMERS) -> pd.DataFrame:
    i = np.arange(n)
    return pd.DataFrame(
        {
            "customer_id": (i + 1).astype(np.int64),
            "signup_date": [(pd.Timestamp("2024-01-15") + pd.Timedelta(days=int(22 * k))).date() for k in i],
            "birth_year": (1960 + i).astype(np.int16),
            "gender": _cat([schema.GENDERS[k % 3] for k in i], schema.GENDERS),
            "city_tier": (1 + i % 4).astype(np.int8),
            "region": _cat([None if k == 2 else "London" for k in i], schema.REGIONS),
            "city": _cat([None if k == 2 else "London" for k in i], schema.CITY_NAMES),
            "income_band": _cat([schema.INCOME_BANDS[k % 5] for k in i], schema.INCOME_BANDS),
            "occupation": _cat([schema.OCCUPATIONS[k % 7] for k in i], schema.OCCUPATIONS),
            "card_tier": _cat([schema.CARD_TIERS[k % 4] for k in i], schema.CARD_TIERS),
            "credit_limit": 1000.0 * (1 + i),
            "acquisition_channel": _cat(
                [schema.ACQUISITION_CHANNELS[k % 5] for k in i], schema.ACQUISITION_CHANNELS
            ),
            "repayment_due_day": (1 + i % 28).astype(np.int8),
            "marketing_opt_out": i % 10 == 3,
            "do_not_contact": i == 7,
            "closed_date": [pd.Timestamp("2025-02-20").date() if k == 5 else None for k in i],
            "full_name": [NAMES[k % 5] for k in i],
            "phone": [f"+44 7911 {100000 + k}" for k in i],
            "email": [f"{NAMES[k % 5].split()[0].lower()}{k}@example.com" for k in i],
            "national_id": [f"AB{123400 + k}C" for k in i],
        }
    )


def balances_frame(n: int = N_CUSTOMERS, months=MONTHS) -> pd.DataFrame:
    rows = []
    for m in months:
        end = (pd.Timestamp(f"{m}-01") + pd.offsets.MonthEnd(0)).date()
        for c in range(1, n + 1):
            rows.append((c, end, 100.0 * c, 10.0 * c))
    return pd.DataFrame(rows, columns=["customer_id", "month_end", "aum", "card_balance"])


def transactions_frame(
    n: int = N_CUSTOMERS, months=MONTHS, per_month: int = 30, first_id: int = 1
) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    frames = []
    for k, m in enumerate(months):
        start = pd.Timestamp(f"{m}-01")
        days = (start + pd.offsets.MonthEnd(0)).day
        ts = start + pd.to_timedelta(np.sort(rng.integers(0, days * 86400, per_month)), unit="s")
        ts = ts.to_numpy().copy()
        ts[-1] = (start + pd.offsets.MonthEnd(0) + pd.Timedelta(hours=20)).to_datetime64()  # last day: fresh
        frames.append(
            pd.DataFrame(
                {
                    "txn_id": np.arange(per_month, dtype=np.int64) + first_id + k * per_month,
                    "customer_id": rng.integers(1, n + 1, per_month).astype(np.int64),
                    "txn_ts": pd.DatetimeIndex(ts).astype("datetime64[us]"),
                    "amount": np.round(rng.gamma(2.0, 40.0, per_month) + 1, 2),
                    "merchant_category": _cat(
                        rng.choice(schema.MERCHANT_CATEGORIES, per_month), schema.MERCHANT_CATEGORIES
                    ),
                    "is_cross_border": rng.random(per_month) < 0.05,
                    "is_installment": rng.random(per_month) < 0.05,
                    "channel": _cat(rng.choice(schema.TXN_CHANNELS, per_month), schema.TXN_CHANNELS),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def app_events_frame(n: int = N_CUSTOMERS, months=MONTHS, per_month: int = 20) -> pd.DataFrame:
    t = transactions_frame(n, months, per_month)
    return pd.DataFrame(
        {
            "event_id": t["txn_id"] + 1000,
            "customer_id": t["customer_id"],
            "event_ts": t["txn_ts"],
            "event_type": _cat(
                [schema.APP_EVENT_TYPES[k % 6] for k in range(len(t))], schema.APP_EVENT_TYPES
            ),
            "lat": [None if k % 5 == 0 else 51.5 + k / 1000 for k in range(len(t))],  # location off: null
            "lon": [None if k % 5 == 0 else -0.13 for k in range(len(t))],
        }
    )


def branches_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "branch_id": ["BR001", "BR002"],
            "name": ["London Central", "Leeds Central"],
            "city": _cat(["London", "Leeds"], schema.CITY_NAMES),
            "region": _cat(["London", "Yorkshire and The Humber"], schema.REGIONS),
            "lat": [51.5074, 53.8008],
            "lon": [-0.1278, -1.5491],
        }
    )


def products_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "product_id": _cat(["travel_card", "savings_account"], schema.PRODUCT_IDS),
            "family": _cat(["card", "deposit"], schema.PRODUCT_FAMILIES),
            "name": ["Travel credit card", "Easy-access savings account"],
            "value": [120.0, 50.0],
        }
    )


def product_holdings_frame(n: int = N_CUSTOMERS, months=MONTHS) -> pd.DataFrame:
    rows = []
    for m in months:
        end = (pd.Timestamp(f"{m}-01") + pd.offsets.MonthEnd(0)).date()
        for c in range(1, n + 1):
            for product in schema.PRODUCT_IDS[c % 3 : c % 3 + 1 + c % 2]:  # one or two products each
                rows.append((c, end, product, pd.Timestamp("2024-06-01").date()))
    frame = pd.DataFrame(rows, columns=["customer_id", "month_end", "product_id", "opened_on"])
    return frame.assign(product_id=_cat(frame["product_id"], schema.PRODUCT_IDS))


def campaign_contacts_frame(n: int = 10) -> pd.DataFrame:
    group = ["treatment" if k % 2 == 0 else "holdout" for k in range(n)]
    selected = pd.Timestamp("2025-02-10 09:00")
    return pd.DataFrame(
        {
            "campaign_id": ["cmp-2025-02-winback"] * n,
            "customer_id": np.arange(1, n + 1, dtype=np.int64),
            "channel": _cat(["sms"] * n, schema.CONTACT_CHANNELS),
            "group": _cat(group, schema.CONTACT_GROUPS),
            "selected_at": pd.DatetimeIndex([selected] * n).astype("datetime64[us]"),
            "sent_at": pd.DatetimeIndex(
                [selected + pd.Timedelta(hours=1) if g == "treatment" else pd.NaT for g in group]
            ).astype("datetime64[us]"),
        }
    )


def responses_frame() -> pd.DataFrame:
    rows = [
        (1, "delivered", "2025-02-10 10:05", "sms", "crm"),
        (1, "clicked", "2025-02-27 11:00", "sms", "crm"),
        (1, "converted", "2025-03-02 12:00", "sms", "crm"),
        (3, "delivered", "2025-02-10 10:06", "sms", "crm"),
        (2, "converted", "2025-03-05 15:00", None, None),
    ]
    return pd.DataFrame(
        {
            "campaign_id": ["cmp-2025-02-winback"] * len(rows),
            "customer_id": np.array([r[0] for r in rows], dtype=np.int64),
            "event_type": _cat([r[1] for r in rows], schema.RESPONSE_EVENTS),
            "event_ts": pd.DatetimeIndex([r[2] for r in rows]).astype("datetime64[us]"),
            "utm_source": _cat([r[3] for r in rows], schema.UTM_SOURCES),
            "utm_medium": _cat([r[4] for r in rows], schema.UTM_MEDIUMS),
            "utm_campaign": ["cmp-2025-02-winback" if r[3] else None for r in rows],
            "utm_content": ["v1" if r[3] else None for r in rows],
            "utm_term": [None] * len(rows),
        }
    )


FRAMES = {
    "customers": customers_frame,
    "balances": balances_frame,
    "transactions": transactions_frame,
    "app_events": app_events_frame,
    "campaign_contacts": campaign_contacts_frame,
    "responses": responses_frame,
    "branches": branches_frame,
    "products": products_frame,
    "product_holdings": product_holdings_frame,
}


def to_arrow(df: pd.DataFrame, table: str) -> pa.Table:
    nullable = pa.schema(
        [f.with_nullable(True) for f in schema.get_table(table).arrow_schema]
    )  # dirty data too
    return pa.Table.from_pandas(df, schema=nullable, preserve_index=False)


def write_lake(root: Path, frames: dict[str, pd.DataFrame]) -> Path:
    """Write the frames, typed as schema.py says, into ``root/lake``."""
    lake = root / "lake"
    for name, df in frames.items():
        storage.write_partitioned(to_arrow(df, name), schema.get_table(name), lake, part=0)
    return lake


def clean_frames() -> dict[str, pd.DataFrame]:
    return {name: make() for name, make in FRAMES.items()}


def failure(result, where: str, rule: str):
    """The one failed outcome at ``where`` (table.column) with ``rule``."""
    found = [o for o in result.failures if o.where == where and o.rule == rule]
    assert len(found) == 1, (
        f"no single failure {where} / {rule!r}; failures: {[o.message for o in result.failures]}"
    )
    return found[0]


CUSTOMER_IDS = list(range(1, N_CUSTOMERS + 1))


def check(df: pd.DataFrame, table: str = "transactions", as_of=AS_OF, **params):
    return gates.validate_frame(df, table, as_of, EXPECTATIONS, {"customer_ids": CUSTOMER_IDS, **params})


# --------------------------------------------------------------------------------------------------------------
# Single frames


@pytest.mark.parametrize("table", list(FRAMES))
def test_clean_frame_passes_without_warnings(table):
    result = check(FRAMES[table](), table)
    assert result.success, result.summary()
    assert not result.warnings, result.summary()
    assert result.rows == len(FRAMES[table]())
    evaluated = [o for o in result.outcomes if o.status == "passed"]
    assert len(evaluated) == len(result.outcomes), [o.message for o in result.skipped]


def _dup_key(df):
    df.loc[5, "txn_id"] = df.loc[4, "txn_id"]
    return df


def _null_key(df):
    df["txn_id"] = df["txn_id"].astype("Int64")
    df.loc[[3, 8], "txn_id"] = pd.NA
    return df


def _negative_amount(df):
    df.loc[[1, 2, 3], "amount"] = [-12.5, -3.0, -1.25]
    return df


def _future_ts(df):
    df.loc[[0, 1], "txn_ts"] = pd.Timestamp("2031-06-01 10:00")
    df.loc[2, "txn_ts"] = AS_OF  # at as_of is already the future
    return df


def _unknown_category(df):
    df["merchant_category"] = df["merchant_category"].cat.add_categories(["crypto"])
    df.loc[[7, 9], "merchant_category"] = "crypto"
    return df


def _orphan(df):
    df.loc[[10, 11, 12, 13], "customer_id"] = [999, 999, 1000, 1001]
    return df


# (fault, where, rule, unexpected count, an example value the message shows)
FAULTS = [
    (_dup_key, "transactions.txn_id", "txn_id unique", 2, None),
    (_null_key, "transactions.txn_id", "key txn_id not null", 2, None),
    (_negative_amount, "transactions.amount", "amount not negative", 3, "-12.5"),
    (_future_ts, "transactions.txn_ts", "no future txn_ts", 3, "2031-06-01 10:00:00"),
    (_unknown_category, "transactions.merchant_category", "known merchant_category", 2, "'crypto'"),
    (_orphan, "transactions.customer_id", "customer exists in customers", 4, "999"),
]


@pytest.mark.parametrize(
    ("fault", "where", "rule", "count", "example"), FAULTS, ids=[f[0].__name__ for f in FAULTS]
)
def test_each_fault_fails_a_critical_expectation(fault, where, rule, count, example):
    result = check(fault(transactions_frame()))
    assert not result.success
    o = failure(result, where, rule)
    assert o.severity == "critical"
    assert o.unexpected_count == count
    assert o.message.startswith(f"{where}: rule '{rule}' (critical) failed on {count} rows"), o.message
    if example:
        assert example in o.message, o.message
    with pytest.raises(gates.ValidationError, match=rule):
        gates.require_valid(result)


def test_missing_column_is_named_and_its_other_rules_are_not_evaluated():
    result = check(transactions_frame().drop(columns=["amount"]))
    o = failure(result, "transactions.amount", "amount present")
    assert o.message == "transactions.amount: column missing (critical)"
    skipped = {x.rule for x in result.skipped}
    assert {"amount not negative", "amount not zero", "amount type"} <= skipped
    assert [x.message for x in result.critical_failures] == [o.message]


def test_wrong_stored_type_is_critical():
    df = transactions_frame()
    df["amount"] = df["amount"].astype(str)
    o = failure(check(df), "transactions.amount", "amount type")
    assert o.severity == "critical"
    assert "observed str, expected float64" in o.message


def test_stale_data_fails_freshness():
    result = check(transactions_frame(), as_of="2025-06-01")
    o = failure(result, "transactions.txn_ts", "txn_ts fresh")
    assert o.severity == "critical"
    assert "observed 2025-03-31 20:00:00, expected >= 2025-05-29 00:00:00" in o.message


def test_zero_amounts_are_counted_apart_from_negative_ones():
    df = transactions_frame()
    df.loc[[0, 1], "amount"] = 0.0
    df.loc[2, "amount"] = -1.0
    result = check(df)
    assert failure(result, "transactions.amount", "amount not zero").unexpected_count == 2
    assert failure(result, "transactions.amount", "amount not negative").unexpected_count == 1


def test_compound_key_duplicates_are_counted():
    df = balances_frame()
    df = pd.concat([df, df.iloc[[0, 1]]], ignore_index=True)
    o = failure(check(df, "balances"), "balances.(customer_id, month_end)", "(customer_id, month_end) unique")
    assert o.unexpected_count == 4
    assert "e.g. [(1, 2025-01-31), (2, 2025-01-31), ...]" in o.message


def test_referential_integrity_is_reported_not_evaluated_without_customer_ids():
    result = gates.validate_frame(_orphan(transactions_frame()), "transactions", AS_OF, EXPECTATIONS)
    assert result.success
    (o,) = [x for x in result.skipped if x.rule == "customer exists in customers"]
    assert "customer_ids not given" in o.message
    assert "not evaluated (critical rules)" in result.summary()


def test_warning_rules_do_not_fail_the_run():
    df = customers_frame()
    df["marketing_opt_out"] = True
    result = check(df, "customers")
    assert result.success
    o = failure(result, "customers.marketing_opt_out", "opted-out share usual")
    assert o.severity == "warning"
    assert o.message == (
        "customers.marketing_opt_out: rule 'opted-out share usual' (warning) failed: observed 1.0, expected <= 0.4"
    )
    assert gates.require_valid(result) is result


# --------------------------------------------------------------------------------------------------------------
# Lakes


def quiet(_msg: str) -> None:
    pass


def test_clean_lake_passes_and_writes_reports(tmp_path):
    lake = write_lake(tmp_path, clean_frames())
    report = tmp_path / "runs" / "validate__2025-04-01"
    result = gates.validate_lake(lake, AS_OF, EXPECTATIONS, report_dir=report, progress=quiet)
    assert result.success, result.summary()
    assert not result.warnings, result.summary()
    assert result.tables["transactions"].partitions == list(MONTHS)
    assert result.tables["transactions"].rows == 90
    assert result.tables["customers"].rows == N_CUSTOMERS
    skipped = [o.message for t in result.tables.values() for o in t.skipped]
    assert skipped == []
    payload = json.loads((report / "validation.json").read_text())
    assert payload["success"] is True
    assert payload["as_of"] == "2025-04-01"
    assert payload["tables"]["balances"]["rows"] == 60
    assert payload["tables"]["balances"]["failed"] == 0
    assert (report / "validation.md").read_text().startswith("# Data validation as of 2025-04-01: PASSED")


def test_validate_lake_reports_the_rows_validated_as_batches_finish(tmp_path, monkeypatch):
    # every_seconds=0: a line after every batch (the default is one every 10 s)
    monkeypatch.setattr(gates, "track", functools.partial(progress.track, every_seconds=0))
    messages: list[str] = []
    result = gates.validate_lake(
        write_lake(tmp_path, clean_frames()), AS_OF, EXPECTATIONS, progress=messages.append, batch_rows=1
    )
    total = sum(t.rows for t in result.tables.values())  # nothing dated after AS_OF: every stored row is read
    batches = sum(max(1, len(t.partitions)) for t in result.tables.values())  # batch_rows=1: one per month
    counts = [re.match(r"validation: ([\d,]+)/([\d,]+) rows \(", m) for m in messages]
    done = [int(c[1].replace(",", "")) for c in counts if c]
    assert len(done) == batches == 18  # 15 month partitions, customers, branches, products
    assert {c[2] for c in counts if c} == {f"{total:,}"}
    assert done == sorted(done) and done[-1] == total
    assert any(m.startswith(f"validation: {total:,} rows done in ") for m in messages), messages
    assert messages[0].startswith("validating ") and messages[-1].startswith("validation PASSED in ")


def dirty_lake(root: Path) -> Path:
    """The generator's dirty mode, by hand: one instance of each fault it injects."""
    f = clean_frames()
    customers = f["customers"]
    f["customers"] = pd.concat([customers, customers.iloc[[2]]], ignore_index=True)  # duplicate customer_id 3
    t = f["transactions"]
    t["customer_id"] = t["customer_id"].astype("Int64")
    t.loc[3, "customer_id"] = pd.NA  # null customer_id
    t.loc[[4, 5], "amount"] = [-12.5, -3.0]  # negative amounts
    t.loc[40, "txn_id"] = t.loc[41, "txn_id"]  # duplicate txn_id within 2025-02
    t.loc[70, "txn_id"] = t.loc[10, "txn_id"]  # txn_id of 2025-01 repeated in 2025-03
    t["merchant_category"] = t["merchant_category"].cat.add_categories(["crypto"])
    t.loc[50, "merchant_category"] = "crypto"  # unknown category
    t.loc[[60, 61, 62], "customer_id"] = [777, 777, 778]  # not in customers
    lake = write_lake(root, {k: v for k, v in f.items() if k != "balances"})
    # far-future timestamps written into the latest existing month partition
    future = t.iloc[[80, 81]].assign(txn_id=[5001, 5002], txn_ts=pd.Timestamp("2099-01-01 00:00"))
    storage.write_part(to_arrow(future, "transactions"), lake, "transactions", 1, "2025-03")
    # balances without aum
    b = f["balances"].drop(columns=["aum"])
    b_schema = pa.schema([fld for fld in schema.BALANCES.arrow_schema if fld.name != "aum"])
    storage.write_partitioned(
        pa.Table.from_pandas(b, schema=b_schema, preserve_index=False), schema.BALANCES, lake, part=0
    )
    return lake


@pytest.fixture(scope="module")
def dirty(tmp_path_factory):
    """A dirty lake and its validation (shared: each validation of a lake costs GX seconds)."""
    root = tmp_path_factory.mktemp("dirty")
    lake = dirty_lake(root)
    messages: list[str] = []
    # batch_rows=1: one batch per month partition, so the checks across partitions are exercised too
    result = gates.validate_lake(
        lake, AS_OF, EXPECTATIONS, report_dir=root / "report", progress=messages.append, batch_rows=1
    )
    return lake, root / "report", result, messages


def test_dirty_lake_every_injected_fault_is_critical(dirty):
    _lake, report, result, messages = dirty
    assert not result.success
    expected = {
        ("customers.customer_id", "customer_id unique"): 2,
        ("transactions.txn_id", "txn_id unique"): 4,  # 2 within 2025-02, 2 across 2025-01 / 2025-03
        ("transactions.customer_id", "customer_id not null"): 1,
        ("transactions.amount", "amount not negative"): 2,
        ("transactions.txn_ts", "no future txn_ts"): 2,
        ("transactions.merchant_category", "known merchant_category"): 1,
        ("transactions.customer_id", "customer exists in customers"): 3,
    }
    for (where, rule), count in expected.items():
        o = failure(result, where, rule)
        assert o.severity == "critical", o.message
        assert o.unexpected_count == count, o.message
    aum = failure(result, "balances.aum", "aum present")
    assert aum.message == "balances.aum: column missing (critical)"
    crit = {(o.where, o.rule) for o in result.critical_failures}
    assert crit == set(expected) | {("balances.aum", "aum present")}, result.summary()
    assert (
        "e.g. [777, 778, ...]"
        in failure(result, "transactions.customer_id", "customer exists in customers").message
    )
    assert "2099-01-01 00:00:00" in failure(result, "transactions.txn_ts", "no future txn_ts").message
    with pytest.raises(gates.ValidationError) as err:
        gates.require_valid(result)
    assert (
        "transactions.amount: rule 'amount not negative' (critical) failed on 2 rows, e.g. [-12.5, -3.0]"
        in str(err.value)
    )
    assert any("validation FAILED" in m for m in messages)
    payload = json.loads((report / "validation.json").read_text())
    assert payload["success"] is False
    assert len(payload["critical_failures"]) == len(crit)
    assert "balances.aum: column missing (critical)" in (report / "validation.md").read_text()


def test_cross_partition_check_passes_unique_ids_in_overlapping_ranges(tmp_path):
    f = clean_frames()
    t = f["transactions"]
    t["txn_id"] = np.random.default_rng(1).permutation(len(t)) + 1  # ids not in time order: ranges overlap
    result = gates.validate_lake(write_lake(tmp_path, f), AS_OF, EXPECTATIONS, progress=quiet, batch_rows=1)
    assert result.success, result.summary()


def test_cross_partition_duplicates_of_compound_keys(tmp_path):
    f = clean_frames()
    r = f["responses"]
    r.loc[4, ["customer_id", "event_type"]] = [1, "converted"]  # the key of row 2, also in 2025-03
    extra = r.iloc[[0]].copy()
    extra["event_ts"] = pd.Timestamp("2025-03-20 10:00")  # (cmp, 1, delivered) again, one month later
    f["responses"] = pd.concat([r, extra], ignore_index=True)
    result = gates.validate_lake(write_lake(tmp_path, f), AS_OF, EXPECTATIONS, progress=quiet, batch_rows=1)
    o = failure(
        result,
        "responses.(campaign_id, customer_id, event_type)",
        "(campaign_id, customer_id, event_type) unique",
    )
    assert o.unexpected_count == 4
    assert "repeat a key held by another partition" in o.message


def test_rows_after_as_of_in_its_own_month_are_left_out_but_later_ones_are_not(tmp_path):
    f = clean_frames()
    t = f["transactions"]
    lake = write_lake(tmp_path, f)
    # as_of mid-March: March rows after it are a backfill's future, not a fault; 2099 in the same partition is.
    late = t.iloc[[89]].assign(txn_id=9999, txn_ts=pd.Timestamp("2099-01-01"))
    storage.write_part(to_arrow(late, "transactions"), lake, "transactions", 1, "2025-03")
    as_of = pd.Timestamp("2025-03-15")
    result = gates.validate_lake(lake, as_of, EXPECTATIONS, progress=quiet)
    march = t[(t["txn_ts"] >= as_of) & (t["txn_ts"] < "2025-04-01")]
    assert result.tables["transactions"].excluded_rows == len(march) > 0
    assert result.tables["transactions"].rows == len(t) - len(march) + 1
    assert result.tables["balances"].excluded_rows == N_CUSTOMERS  # March month-ends are after as_of
    o = failure(result, "transactions.txn_ts", "no future txn_ts")
    assert o.unexpected_count == 1
    assert "left out" in result.summary()


def test_lake_and_frame_agree(tmp_path):
    f = clean_frames()
    t = _negative_amount(_unknown_category(f["transactions"]))
    t.loc[[20, 21], "is_cross_border"] = True
    f["transactions"] = t
    lake = write_lake(tmp_path, {"customers": f["customers"], "transactions": t})
    lake_result = gates.validate_lake(lake, AS_OF, EXPECTATIONS, progress=quiet).tables["transactions"]
    frame_result = check(t)

    def digest(r):
        def obs(v):
            return round(float(v), 9) if isinstance(v, float | np.floating) else str(v)

        return {(o.rule, o.status, o.unexpected_count, obs(o.observed)) for o in r.outcomes}

    assert digest(lake_result) == digest(frame_result)


def test_missing_table_is_critical(tmp_path):
    f = clean_frames()
    del f["app_events"]
    result = gates.validate_lake(write_lake(tmp_path, f), AS_OF, EXPECTATIONS, progress=quiet)
    (o,) = result.critical_failures
    assert o.message.startswith("app_events: table missing (critical)")


@pytest.mark.slow
def test_process_pool_and_batching_give_the_same_result(dirty):
    lake, _report, one, _messages = dirty  # one batch per partition, in-process
    two = gates.validate_lake(lake, AS_OF, EXPECTATIONS, progress=quiet, workers=2)  # grouped, 2 processes

    def digest(result):  # what must not depend on batching (examples and notes may)
        return {
            (o.where, o.rule, o.status, o.unexpected_count, o.element_count, str(o.observed))
            for t in result.tables.values()
            for o in t.outcomes
        }

    assert digest(two) == digest(one)
    assert [t.rows for t in two.tables.values()] == [t.rows for t in one.tables.values()]
    assert len(two.critical_failures) == len(one.critical_failures) == 8
