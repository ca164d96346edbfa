"""The gates on lakes built from declared sources (``pmp ingest``): optional tables a source lacks are notes, the
required ones critical; a source's trading calendar explains its closed days and nothing else; the report lists the
columns the mapping defaulted. A tiny shop's CSV is ingested through a mapping written here; the real Online Retail
file too when ``../shared/data`` is present."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipelines.data import gates, storage
from pipelines.data.ingest import ingest_source
from pipelines.data.lake_checks import DAY_MISSING
from pipelines.data.mapping import load_mapping
from tests.conftest import PROJECT_ROOT
from tests.source_mappings import CUSTOMER_DEFAULTS

EXPECTATIONS = PROJECT_ROOT / "expectations"
SOURCES = PROJECT_ROOT / "sources"
AS_OF = "2024-03-01"  # the day after the shop's last order
OPTIONAL = (
    "balances",
    "app_events",
    "campaign_contacts",
    "responses",
    "branches",
    "products",
    "product_holdings",
)
LOST_DAY = "2024-01-17"  # a Wednesday the shop was open, without rows in the file


def quiet(*_args, **_kwargs) -> None:
    pass


def _orders(tmp: Path) -> Path:
    """Order lines of Jan-Feb 2024: 24 a day on every day but Saturdays and LOST_DAY, 30 customers."""
    days = [d for d in pd.date_range("2024-01-01", "2024-02-29") if d.day_name() != "Saturday"]
    days = [d for d in days if str(d.date()) != LOST_DAY]
    rng = np.random.default_rng(3)
    stamps = [d + pd.Timedelta(minutes=int(m)) for d in days for m in sorted(rng.integers(480, 1200, 24))]
    frame = pd.DataFrame(
        {
            "customer": rng.integers(1, 31, len(stamps)),
            "when": [s.strftime("%Y-%m-%d %H:%M:%S") for s in stamps],
            "qty": rng.integers(1, 5, len(stamps)),
            "price": rng.integers(100, 2000, len(stamps)) / 100,
            "country": np.where(rng.random(len(stamps)) < 0.1, "FR", "UK"),
        }
    )
    path = tmp / "orders.csv"
    frame.to_csv(path, index=False)
    return path


def _mapping(tmp: Path, *, calendar: dict | None, transactions: bool = True) -> Path:
    rows = {"files": "orders.csv", "format": "csv"}
    tables: dict = {
        "customers": {
            "from": rows,
            "group_by": "customer_id",
            "columns": {
                "customer_id": {"column": "customer", "cast": "int"},
                "signup_date": {"column": "when", "cast": "datetime", "agg": "min"},
                **CUSTOMER_DEFAULTS,
            },
        }
    }
    if transactions:
        tables["transactions"] = {
            "from": rows,
            "columns": {
                "txn_id": {"expr": "row_number()"},
                "customer_id": {"column": "customer", "cast": "int"},
                "txn_ts": {"column": "when", "cast": "datetime", "format": "%Y-%m-%d %H:%M:%S"},
                "amount": {"expr": "qty * price"},
                "is_cross_border": {"expr": "country != 'UK'"},
                "merchant_category": {"default": "retail"},
                "is_installment": {"default": False},
                "channel": {"default": "online"},
            },
        }
    data = {"name": "shop", "description": "A tiny shop.", "tables": tables}
    if calendar is not None:
        data["calendar"] = calendar
    path = tmp / "shop.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _ingest(tmp: Path, **mapping) -> Path:
    """Ingest the shop into ``tmp/data``; the lake's folder."""
    _orders(tmp)
    ingest_source(load_mapping(_mapping(tmp, **mapping)), tmp / "data", progress=None)
    return tmp / "data" / "lake"


def _validate(lake: Path, report_dir: Path | None = None, as_of: str = AS_OF) -> gates.LakeResult:
    return gates.validate_lake(lake, as_of, EXPECTATIONS, report_dir=report_dir, progress=quiet)


def _gaps(result: gates.LakeResult) -> list[str]:
    return [o.note for o in result.tables["transactions"].critical_failures if o.rule == DAY_MISSING]


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> tuple[Path, gates.LakeResult, Path]:
    """The shop ingested with Saturdays and LOST_DAY declared closed, validated: lake, result, report folder."""
    tmp = tmp_path_factory.mktemp("shop")
    lake = _ingest(tmp, calendar={"closed_weekdays": ["Sat"], "closed_dates": [LOST_DAY]})
    return lake, _validate(lake, tmp / "report"), tmp / "report"


def test_absent_optional_tables_are_one_note_each_not_failures(shop):
    _lake, result, report = shop
    assert result.success, result.summary()
    for table in OPTIONAL:
        t = result.tables[table]
        assert t.absent and t.absent.startswith(f"no {table} table: ") and t.success and not t.outcomes
    assert "no balances table: the features from it" in result.tables["balances"].absent
    summary = result.summary()
    assert sum(line.startswith("  - no ") for line in summary.splitlines()) == len(OPTIONAL), summary
    assert "table missing" not in summary and "balances." not in summary  # no line per skipped rule
    md = (report / "validation.md").read_text()
    assert "| balances | absent (optional) | 0 |" in md and "balances.aum" not in md
    payload = json.loads((report / "validation.json").read_text())
    assert payload["success"] is True and len(payload["notes"]) == len(OPTIONAL)


def test_the_report_lists_the_columns_the_mapping_defaulted(shop):
    _lake, result, report = shop
    t = result.tables["transactions"]
    assert t.source == "shop"
    assert t.defaulted == {"channel": "online", "is_installment": False, "merchant_category": "retail"}
    md = (report / "validation.md").read_text()
    assert "## What the sources do not provide" in md
    assert (
        "| transactions | shop | channel = 'online', is_installment = False, merchant_category = 'retail' | none |"
        in md
    )
    assert "| customers | shop | acquisition_channel = 'online', birth_year = 1980," in md
    assert "| region, city, closed_date, full_name, phone, email, national_id |" in md
    tables = json.loads((report / "validation.json").read_text())["tables"]
    assert tables["customers"]["defaulted_by_source"]["gender"] == "U"


def test_absent_required_table_and_a_table_its_source_wrote_are_critical(tmp_path, shop):
    # A source without transactions (past campaigns alone) is a note; without customers it is critical.
    lake = _ingest(tmp_path, calendar=None, transactions=False)
    result = _validate(lake)
    assert result.success and result.tables["transactions"].absent and result.tables["balances"].absent
    assert any(n.startswith("no transactions table: the features from it") for n in result.notes)
    shutil.rmtree(lake / "customers")
    failures = [o.message for o in _validate(lake).critical_failures]
    assert any(m.startswith("customers: table missing (critical)") for m in failures), failures

    # balances recorded as written by the source, and gone since: data lost, not a source without balances
    copy = tmp_path / "lake2"
    shutil.copytree(shop[0], copy)
    record = storage.read_json(copy / "_sources.json")
    record["tables"]["balances"] = {**record["tables"]["customers"], "defaulted": {}, "left_null": []}
    storage.write_json_atomic(copy / "_sources.json", record)
    (o,) = _validate(copy).critical_failures
    assert (
        o.message.startswith("balances: table missing (critical)") and "source 'shop' wrote it" in o.message
    )


def test_days_the_calendar_closes_are_no_gaps_and_other_days_are(tmp_path):
    lake = _ingest(tmp_path, calendar={"closed_weekdays": ["Sat"]})
    (gap,) = _gaps(_validate(lake))  # Saturdays explained, the lost Wednesday is not
    assert gap.startswith(f"1 day(s) of month=2024-01 without any row: {LOST_DAY} ")

    # the calendar is read from the mapping when validating: declaring the day closed needs no re-ingest
    mapping = tmp_path / "shop.yaml"
    data = yaml.safe_load(mapping.read_text())
    data["calendar"]["closed_dates"] = [{"from": LOST_DAY, "to": LOST_DAY}]
    mapping.write_text(yaml.safe_dump(data, sort_keys=False))
    assert _validate(lake).success

    # without a calendar (the mapping gone), every Saturday is a gap again, and a note says why
    mapping.unlink()
    result = _validate(lake)
    gaps = _gaps(result)
    assert len(gaps) == 2 and gaps[0].startswith("5 day(s) of month=2024-01 without any row: 2024-01-06, ")
    assert gaps[1].startswith("4 day(s) of month=2024-02 without any row: 2024-02-03, ")
    assert any("calendar of source 'shop' not read" in n for n in result.notes), result.notes


def test_the_real_online_retail_ingest_passes_the_gates(tmp_path):
    data = PROJECT_ROOT.parent / "shared" / "data" / "online_retail.csv.gz"
    if not data.is_file():
        pytest.skip(f"the Online Retail file is not available: {data} is absent")
    ingest_source(load_mapping("online-retail", SOURCES), tmp_path, progress=None)
    result = _validate(tmp_path / "lake", as_of="2011-12-10")  # the day after its last invoice
    assert result.success, result.summary()
    assert (
        result.tables["transactions"].rows == 397_884 and len(result.tables["transactions"].partitions) == 13
    )
    assert [t for t, r in result.tables.items() if r.absent] == list(OPTIONAL)
    assert not _gaps(result)
    assert {o.rule for o in result.warnings} == {
        f"{c} present for contact" for c in ("full_name", "phone", "email", "national_id")
    }


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("calendar", {"closed_weekdays": ["Saturday"]}, "calendar.closed_weekdays.0: Input should be 'Mon'"),
        (
            "calendar",
            {"closed_dates": [{"from": "2024-02-01", "to": "2024-01-01"}]},
            "to (2024-01-01) is before",
        ),
        ("calendar", {"closed_days": ["Sat"]}, "calendar.closed_days: unknown field"),
        ("schedule", "0 25 * * *", "schedule: '0 25 * * *' is neither a preset"),
        ("schedule", "0 0 31 2 *", "schedule: cron line '0 0 31 2 *' never fires"),
    ],
)
def test_a_bad_calendar_or_schedule_is_named_by_its_field(tmp_path, field, value, error):
    from pipelines.data.mapping import MappingError

    data = yaml.safe_load(_mapping(tmp_path, calendar=None).read_text())
    (tmp_path / "shop.yaml").write_text(yaml.safe_dump({**data, field: value}))
    with pytest.raises(MappingError, match=re.escape(error)):
        load_mapping(tmp_path / "shop.yaml")
