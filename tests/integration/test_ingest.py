"""Ingest through a declared mapping: a small CSV, a SQLite query and (when ../shared/data is there) the Online
Retail file, into a lake ``storage.read_table`` reads with the schema's types (Bank Marketing: test_bank_marketing)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipelines.config import PROJECT_ROOT
from pipelines.data import schema, storage
from pipelines.data.ingest import IngestError, ingest_source, read_chunks
from pipelines.data.mapping import load_mapping
from tests.source_mappings import CUSTOMER_DEFAULTS

SHARED = PROJECT_ROOT.parent / "shared" / "data"
EXPECTATIONS = PROJECT_ROOT / "expectations"

CSV = """inv,email,when,qty,price,country
1,ann@x.org,2024-01-05T10:00:00Z,2,5.0,JP
2,bob@y.org,2024-01-20T10:00:00Z,1,3.5,FR
C3,ann@x.org,2024-01-21T10:00:00Z,-1,5.0,JP
4,,2024-01-25T10:00:00Z,1,2.0,JP
5,bob@y.org,2024-01-31T20:00:00Z,1,0.0,JP
6,cy@z.org,2024-02-02T09:00:00Z,3,1.0,JP
7,ann@x.org,2024-02-10T09:00:00Z,1,9.0,JP
"""
FAULTS = [
    {"name": "missing_customer", "when": "isnull(email)", "action": "quarantine"},
    {"name": "cancellation", "when": "startswith(inv, 'C')", "action": "quarantine"},
    {"name": "zero_price", "when": "price <= 0", "action": "quarantine"},
]


def _mapping(tmp: Path, files: str = "shop*.csv", faults=None, **extra) -> dict:
    source = {"files": files, "chunk_rows": 2}
    return {
        "name": "shop",
        "timezone": "Asia/Tokyo",
        "params": {"home": "JP"},
        "tables": {
            "transactions": {
                "from": source,
                "columns": {
                    "txn_id": {"expr": "row_number()"},
                    "customer_id": {"column": "email", "hash": True},
                    "txn_ts": {"column": "when", "cast": "datetime"},
                    "amount": {"expr": "qty * price"},
                    "is_cross_border": {"expr": "country != home"},
                    "merchant_category": {"default": "retail"},
                    "is_installment": {"default": False},
                    "channel": {"default": "online"},
                },
                "faults": FAULTS if faults is None else faults,
            },
            "customers": {
                "from": source,
                "group_by": "customer_id",
                "columns": {
                    "customer_id": {"column": "email", "hash": True},
                    "signup_date": {"column": "when", "cast": "datetime", "agg": "min"},
                    **CUSTOMER_DEFAULTS,
                },
                "faults": [FAULTS[0]],
            },
        },
        **extra,
    }


def _write(tmp: Path, data: dict, csv: str = CSV) -> Path:
    (tmp / "shop1.csv").write_text(csv)
    path = tmp / "shop.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _lake_bytes(data: Path) -> dict[str, bytes]:
    lake = data / "lake"
    return {str(p.relative_to(lake)): p.read_bytes() for p in sorted(lake.rglob("*.parquet"))}


def test_csv_ingest_writes_typed_month_partitions_customers_and_quarantine(tmp_path):
    m = load_mapping(_write(tmp_path, _mapping(tmp_path)))
    data = tmp_path / "data"
    report = ingest_source(m, data, progress=None)

    lake = data / "lake"
    assert storage.list_months(lake, "transactions") == ["2024-01", "2024-02"]
    txns = storage.read_table(lake, "transactions")
    arrow = storage.read_arrow(lake, "transactions")
    for f in schema.TRANSACTIONS.arrow_schema:
        assert arrow.schema.field(f.name).type == f.type, f.name
    # inv 5 at 20:00 UTC on Jan 31 is 05:00 on Feb 1 in Tokyo, but it is quarantined for its zero price
    assert sorted(txns["txn_id"]) == [0, 1, 5, 6]
    assert txns.loc[txns.txn_id == 0, "txn_ts"].iloc[0] == pd.Timestamp("2024-01-05 19:00")
    assert txns.loc[txns.txn_id == 1, "is_cross_border"].iloc[0]
    assert set(txns["merchant_category"]) == {"retail"}
    assert txns.loc[txns.txn_id == 6, "amount"].iloc[0] == 9.0
    assert report.tables["transactions"].quarantined == {
        "missing_customer": 1,
        "cancellation": 1,
        "zero_price": 1,
    }

    customers = storage.read_table(lake, "customers")
    assert len(customers) == 3 and customers["customer_id"].is_unique
    assert set(txns["customer_id"]) <= set(customers["customer_id"])
    ann = customers.set_index("customer_id").loc[txns.loc[txns.txn_id == 0, "customer_id"].iloc[0]]
    assert ann["signup_date"] == pd.Timestamp("2024-01-05") and ann["gender"] == "U"
    assert not any("@" in str(v) for v in txns.astype(str).to_numpy().ravel())  # hashed, never the e-mail

    q = pd.read_parquet(data / "quarantine" / "shop" / "transactions" / "cancellation.parquet")
    assert list(q["inv"]) == ["C3"] and "email" not in q.columns  # the hashed identifier stays out
    sources = storage.read_json(lake / "_sources.json")
    assert sources["tables"]["customers"]["defaulted"]["gender"] == "U"
    assert "full_name" in sources["tables"]["customers"]["left_null"]
    run = next((data / "runs").glob("ingest__shop__*"))
    assert storage.read_json(run / "report.json")["tables"]["transactions"]["rows_written"] == 4
    assert "zero_price 1" in (run / "report.md").read_text()
    assert not [p for p in lake.iterdir() if p.name.startswith(".ingest-")]  # no staging left


def test_reingest_is_idempotent_and_months_replace_only_their_partitions(tmp_path):
    m = load_mapping(_write(tmp_path, _mapping(tmp_path)))
    data = tmp_path / "data"
    ingest_source(m, data, progress=None)
    first = _lake_bytes(data)
    ingest_source(m, data, progress=None)
    assert _lake_bytes(data) == first

    # the source's February changes; re-ingesting February alone replaces it and leaves January as it was
    _write(
        tmp_path,
        _mapping(tmp_path),
        CSV.replace("7,ann@x.org,2024-02-10T09:00:00Z,1,9.0", "7,ann@x.org,2024-02-10T09:00:00Z,2,9.0"),
    )
    report = ingest_source(m, data, months=["2024-02"], progress=None)
    assert report.tables["transactions"].months == ["2024-02"]
    after = _lake_bytes(data)
    assert (
        after["transactions/month=2024-01/part-00000.parquet"]
        == first["transactions/month=2024-01/part-00000.parquet"]
    )
    feb = storage.read_table(data / "lake", "transactions", months=["2024-02"])
    assert sorted(feb["amount"]) == [3.0, 18.0]


def test_a_month_asked_for_that_keeps_no_row_is_emptied(tmp_path):
    m = load_mapping(_write(tmp_path, _mapping(tmp_path)))
    data = tmp_path / "data"
    ingest_source(m, data, progress=None)
    first = _lake_bytes(data)
    # every February row now has a zero price: quarantined, so February keeps nothing
    _write(
        tmp_path, _mapping(tmp_path), CSV.replace(",1.0,JP\n", ",0.0,JP\n").replace(",9.0,JP\n", ",0.0,JP\n")
    )
    report = ingest_source(m, data, months=["2024-02", "2024-03"], progress=None)
    t = report.tables["transactions"]
    assert t.months == [] and t.emptied == ["2024-02"]  # March was never there: nothing to empty
    assert t.quarantined["zero_price"] == 3
    assert storage.list_months(data / "lake", "transactions") == ["2024-01"]
    after = _lake_bytes(data)
    assert (
        after["transactions/month=2024-01/part-00000.parquet"]
        == first["transactions/month=2024-01/part-00000.parquet"]
    )
    assert "emptied (asked for, no row kept; old partition removed): 2024-02" in "\n".join(report.lines())


def test_one_ingest_writes_a_lake_at_a_time(tmp_path, capsys):
    from pipelines.cli import main
    from pipelines.data.ingest import _lake_lock

    path = _write(tmp_path, _mapping(tmp_path))
    data = tmp_path / "data"
    ingest_source(load_mapping(path), data, progress=None)
    before = _lake_bytes(data)
    with _lake_lock(data / "lake", "other"):  # flock: a second open file conflicts even in this process
        with pytest.raises(IngestError, match=r"being written by another ingest \(source 'other', pid \d+"):
            ingest_source(load_mapping(path), data, progress=None)
        assert main(["ingest", "--source", str(path), "--data", str(data)]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("pmp ingest: failed: ") and "\n" not in err and "wait for it to finish" in err
    assert _lake_bytes(data) == before
    ingest_source(load_mapping(path), data, progress=None)  # released: the next ingest runs
    assert (data / "lake" / ".ingest.lock").read_text() == ""


def test_a_table_from_two_sources_takes_the_rows_of_both(tmp_path):
    data = _mapping(tmp_path)
    # The shop's card terminal exports its own file, with its own names (and a fault rule of its own).
    (tmp_path / "terminal.csv").write_text(
        "client,ts,total\nann@x.org,2024-01-07T10:00:00Z,7.5\n,2024-01-08T10:00:00Z,1.0\n"
        "cy@z.org,2024-02-03T10:00:00Z,4.0\n"
    )
    data["tables"]["transactions"]["also"] = [
        {
            "from": {"files": "terminal.csv"},
            "columns": {
                "txn_id": {"expr": "1000000 + row_number()"},  # row_number() counts this source's rows
                "customer_id": {"column": "client", "hash": True},
                "txn_ts": {"column": "ts", "cast": "datetime"},
                "amount": {"column": "total"},
                "is_cross_border": {"default": False},
                "merchant_category": {"default": "retail"},
                "is_installment": {"default": False},
                "channel": {"default": "pos"},
            },
            "faults": [{"name": "no_client", "when": "isnull(client)"}],
        }
    ]
    report = ingest_source(load_mapping(_write(tmp_path, data)), tmp_path / "data", progress=None)
    txns = storage.read_table(tmp_path / "data" / "lake", "transactions").set_index("txn_id")
    assert sorted(txns.index) == [0, 1, 5, 6, 1_000_000, 1_000_002]
    assert txns.loc[1_000_000, "customer_id"] == txns.loc[0, "customer_id"]  # ann, hashed alike in both
    assert txns.loc[1_000_002, "channel"] == "pos" and txns.loc[6, "channel"] == "online"
    t = report.tables["transactions"]
    assert (t.rows_read, t.rows_written, t.sources) == (7 + 3, 6, 2)
    assert t.quarantined == {"missing_customer": 1, "cancellation": 1, "zero_price": 1, "no_client": 1}
    assert "    from 2 sources (also:); what is mapped and defaulted below is the first's" in report.lines()
    q = pd.read_parquet(tmp_path / "data" / "quarantine" / "shop" / "transactions" / "no_client.parquet")
    assert len(q) == 1 and "client" not in q.columns  # the hashed identifier stays out


def test_a_failure_midway_leaves_the_previous_lake(tmp_path):
    m = load_mapping(_write(tmp_path, _mapping(tmp_path)))
    data = tmp_path / "data"
    ingest_source(m, data, progress=None)
    before = _lake_bytes(data)
    # a second file, read after the first one's chunks were staged, lacks the price column
    (tmp_path / "shop2.csv").write_text("inv,email,when,qty,country\n8,dan@x.org,2024-03-01T00:00:00Z,1,JP\n")
    with pytest.raises(IngestError, match=r"tables\.transactions\..*unknown name 'price'"):
        ingest_source(m, data, progress=None)
    assert _lake_bytes(data) == before
    assert not [p for p in (data / "lake").iterdir() if p.name.startswith(".ingest-")]


def test_rows_without_a_month_or_a_key_are_set_aside_and_counted(tmp_path):
    bad = CSV + "8,dan@x.org,not a date,1,1.0,JP\n"
    m = load_mapping(_write(tmp_path, _mapping(tmp_path), bad))
    report = ingest_source(m, tmp_path / "data", progress=None)
    assert report.tables["transactions"].quarantined["no_partition_date"] == 1
    assert report.tables["customers"].quarantined == {"missing_customer": 1}  # dan has a key, a null signup
    q = pd.read_parquet(
        tmp_path / "data" / "quarantine" / "shop" / "transactions" / "no_partition_date.parquet"
    )
    assert list(q["txn_id"]) == ["7"]


def test_a_stop_rule_fails_naming_the_rule_and_count_and_writes_nothing(tmp_path):
    faults = [{"name": "cancellation", "when": "startswith(inv, 'C') or qty < 0", "action": "stop"}]
    m = load_mapping(_write(tmp_path, _mapping(tmp_path, faults=faults)))
    data = tmp_path / "data"
    with pytest.raises(
        IngestError, match=r"fault rule 'cancellation' \(action stop\) matched 1 row\(s\); nothing written"
    ):
        ingest_source(m, data, progress=None)
    assert not list((data / "lake").rglob("*.parquet")) and not (data / "quarantine").exists()


def test_cli_ingest_exit_codes_and_one_line_errors(tmp_path, capsys):
    from pipelines.cli import main

    path = _write(tmp_path, _mapping(tmp_path))
    data = tmp_path / "data"
    assert main(["ingest", "--source", str(path), "--data", str(data), "--months", "2024-01"]) == 0
    assert storage.list_months(data / "lake", "transactions") == ["2024-01"]
    assert "report: " in capsys.readouterr().out
    stop = _write(tmp_path, _mapping(tmp_path, faults=[{"name": "cxl", "when": "qty < 0", "action": "stop"}]))
    assert main(["ingest", "--source", str(stop), "--data", str(data)]) == 1
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("fault rule 'cxl' (action stop) matched 1 row(s); nothing written")
    )
    bad = _mapping(tmp_path)
    bad["tables"]["transactions"]["columns"]["channel"] = {"default": "fax"}
    _write(tmp_path, bad)
    assert main(["ingest", "--source", str(path), "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert (
        "tables.transactions.columns.channel.default: 'fax' not allowed" in err and len(err.splitlines()) == 1
    )
    assert main(["ingest", "--source", "nope", "--data", str(data)]) == 2
    assert "known: bank-marketing, online-retail" in capsys.readouterr().err


def test_dry_run_reports_mapping_faults_and_gates_and_writes_nothing(tmp_path):
    m = load_mapping(_write(tmp_path, _mapping(tmp_path)))
    data = tmp_path / "data"
    lines: list[str] = []
    report = ingest_source(m, data, dry_run=True, expectations_dir=EXPECTATIONS, progress=lines.append)
    assert not data.exists()
    t = report.tables["transactions"]
    assert t.defaulted == {"merchant_category": "retail", "is_installment": False, "channel": "online"}
    assert t.quarantined["cancellation"] == 1 and t.rows_written == 4
    assert t.gate is not None and t.gate["success"], t.gate
    assert report.tables["customers"].missing == [
        "region",
        "city",
        "closed_date",
        "full_name",
        "phone",
        "email",
        "national_id",
    ]
    text = "\n".join(lines)
    assert "defaulted: merchant_category='retail'" in text and "@" not in text


def test_sql_source_is_read_in_chunks(tmp_path):
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as conn:
        conn.execute("create table t (id integer, opened text, job text)")
        conn.executemany(
            "insert into t values (?, ?, ?)", [(i, f"2024-01-{i + 1:02d}", "x") for i in range(10)]
        )
    data = {
        "name": "crm",
        "tables": {
            "customers": {
                "from": {
                    "sql": "select * from t order by id",
                    "url": "sqlite:///${SHOP_DB}",
                    "chunk_rows": 3,
                },
                "columns": {
                    "customer_id": "id",
                    "signup_date": {"column": "opened", "cast": "date"},
                    **{
                        **CUSTOMER_DEFAULTS,
                        "occupation": {"column": "job", "map": {"y": "student"}, "default": "other"},
                    },
                },
            }
        },
    }
    path = tmp_path / "crm.yaml"
    path.write_text(yaml.safe_dump(data))
    m = load_mapping(path)
    import os

    os.environ["SHOP_DB"] = str(db)
    try:
        sizes = [len(c) for c in read_chunks(m, m.tables["customers"])]
        assert sizes == [3, 3, 3, 1]
        ingest_source(m, tmp_path / "data", progress=None)
    finally:
        del os.environ["SHOP_DB"]
    customers = storage.read_table(tmp_path / "data" / "lake", "customers")
    assert list(customers["customer_id"]) == list(range(10))
    assert customers["signup_date"].iloc[9] == pd.Timestamp("2024-01-10")
    assert set(customers["occupation"]) == {"other"} and str(customers["occupation"].dtype) == "category"


@pytest.mark.skipif(
    not (SHARED / "online_retail.csv.gz").is_file(), reason=f"{SHARED}/online_retail.csv.gz absent"
)
def test_real_online_retail_mapping(tmp_path):
    m = load_mapping("online-retail", PROJECT_ROOT / "sources")
    report = ingest_source(m, tmp_path, progress=None)
    t = report.tables["transactions"]
    assert t.rows_read == 541_909
    assert t.quarantined == {
        "missing_customer_id": 135_080,
        "cancellation": 8_905,
        "zero_or_negative_price": 40,
        "negative_quantity": 0,
    }
    assert t.rows_written == 541_909 - 135_080 - 8_905 - 40 == 397_884
    assert len(t.months) == 13 and t.months[0] == "2010-12" and t.months[-1] == "2011-12"
    customers = storage.read_table(tmp_path / "lake", "customers")
    assert len(customers) == 4_372 and customers["customer_id"].is_unique
    txns = storage.read_table(tmp_path / "lake", "transactions", columns=["amount", "customer_id"])
    assert (txns["amount"] > 0).all() and txns["customer_id"].isin(customers["customer_id"]).all()


def test_quarantined_rows_never_keep_a_personal_value(tmp_path):
    data = _mapping(tmp_path)
    # A source column mapped onto a personal canonical column (not hashed) is personal too.
    data["tables"]["customers"]["columns"]["full_name"] = {"column": "country"}
    data["tables"]["customers"]["faults"] = [
        {"name": "french", "when": "country == 'FR'", "action": "quarantine"}
    ]
    report = ingest_source(load_mapping(_write(tmp_path, data)), tmp_path / "data", progress=None)
    assert report.tables["customers"].quarantined["french"] == 1
    q = pd.read_parquet(tmp_path / "data" / "quarantine" / "shop" / "customers" / "french.parquet")
    assert len(q) == 1 and list(q["when"]) == ["2024-01-20T10:00:00Z"]  # bob's line, without his columns
    assert not {"country", "email"} & set(q.columns)


def test_churn_means_inactivity_for_a_source_without_closed_accounts(tmp_path, bank):
    from pipelines.config import Settings
    from pipelines.jobs.common import churn_definition

    ingest_source(load_mapping(_write(tmp_path, _mapping(tmp_path))), tmp_path / "data", progress=None)
    assert churn_definition(Settings(data_dir=tmp_path / "data"))[0] == "inactivity"
    assert churn_definition(Settings(data_dir=bank))[0] == "closure"  # the synthetic bank closes accounts
