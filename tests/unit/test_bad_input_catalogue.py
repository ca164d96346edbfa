"""The bad-input catalogue (``docs/data-quality.md``): each class of bad input is fed to the command that meets
it (``pmp score``, ``pmp train``), which must stop with its one-line message naming the table, column or file,
and leave MLflow, the registry and the campaign tables exactly as they were (``tests/unit/bad_inputs.py``).

Lake faults are injected into three lakes, one ``pmp score`` run each (a gate run costs seconds): the faults of
one lake lie in different tables or columns so that none hides another, and each fault is its own test case.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
import yaml

from pipelines.config import PROJECT_ROOT
from pipelines.data import gates, storage
from tests.unit.bad_inputs import CAMPAIGN, Failure, Platform, make_platform
from tests.unit.data.test_gates import EXPECTATIONS, clean_frames, to_arrow, transactions_frame, write_lake

SCORE = ["score", "--campaign", CAMPAIGN]
DOC = PROJECT_ROOT / "docs" / "data-quality.md"


@pytest.fixture(scope="module")
def platform(tmp_path_factory) -> Platform:
    return make_platform(tmp_path_factory.mktemp("catalogue"))


def _rewrite(lake: Path, table: str, change, months: list[str] | None = None) -> None:
    """Rewrite each file of ``table`` (of ``months``) as ``change(arrow_table, month) -> arrow_table``."""
    for path in storage.table_files(lake, table, months):
        month = path.parent.name.removeprefix("month=") if path.parent.name.startswith("month=") else None
        storage.write_part(change(storage.read_part(path), month), lake, table, 0, month)


def _set_column(t: pa.Table, name: str, values: pa.Array | pa.ChunkedArray) -> pa.Table:
    return t.set_column(t.column_names.index(name), name, values)


def _as_zone(zone: str):
    def change(t: pa.Table, _month) -> pa.Table:
        col = next(c for c in ("txn_ts", "event_ts") if c in t.column_names)
        return _set_column(t, col, t.column(col).cast(pa.timestamp("us", tz=zone)))

    return change


# --------------------------------------------------------------------------------------------------------------
# Three lakes: the layout and file faults (catalogue rows kept from before), the new ones, the --dirty bank


def lake_with_layout_faults(data: Path) -> None:
    f = clean_frames()
    lake = write_lake(data, f)
    march = storage.table_files(lake, "transactions", ["2025-03"])[0]
    (lake / "transactions" / "month=2025-13").mkdir()
    shutil.copy(march, lake / "transactions" / "month=2025-13")
    (lake / "app_events" / "month=2025-02" / "extra.csv").write_text("event_id\n1\n")
    shutil.copy(storage.table_files(lake, "balances", ["2025-01"])[0], lake / "balances" / "loose.parquet")
    (lake / "balances" / "month=2025-04").mkdir()
    for table in ("responses", "customers"):
        path = storage.table_files(lake, table)[-1]
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    storage.table_files(lake, "campaign_contacts")[0].write_text("campaign_id,customer_id\nx,1\n")
    t = f["transactions"]
    feb = t[t["txn_ts"].dt.strftime("%Y-%m") == "2025-02"]
    storage.write_part(
        to_arrow(feb.head(3).assign(txn_id=[9001, 9002, 9003]), "transactions"),
        lake,
        "transactions",
        1,
        "2025-03",
    )
    _rewrite(
        lake,
        "transactions",
        lambda a, m: _set_column(a, "amount", a.column("amount").cast(pa.string())),
        ["2025-02"],
    )
    _rewrite(
        lake,
        "app_events",
        lambda a, m: _set_column(a, "event_id", a.column("event_id").cast(pa.int32())),
        ["2025-03"],
    )


def lake_with_new_faults(data: Path) -> None:
    f = clean_frames()
    txn = transactions_frame(per_month=800)  # ~26 a day: a day without any is a lost day
    f["transactions"] = txn[txn["txn_ts"].dt.strftime("%Y-%m-%d") != "2025-03-10"]
    lake = write_lake(data, f)
    _rewrite(lake, "transactions", _as_zone("UTC"), ["2025-02"])
    _rewrite(lake, "app_events", _as_zone("UTC"), ["2025-01"])
    _rewrite(lake, "app_events", _as_zone("Asia/Tokyo"), ["2025-02"])
    _rewrite(lake, "customers", lambda a, m: a.append_column("segment_code", pa.array(["s"] * a.num_rows)))
    _rewrite(
        lake,
        "responses",
        lambda a, m: a.rename_columns(["utm_contnt" if c == "utm_content" else c for c in a.column_names]),
    )
    _rewrite(
        lake,
        "balances",
        lambda a, m: _set_column(a, "card_balance", a.column("card_balance").cast(pa.string())),
    )
    shutil.rmtree(lake / "campaign_contacts")


def lake_of_the_dirty_bank(data: Path, dirty_bank: Path) -> None:
    shutil.copytree(dirty_bank / "lake", data / "lake")


# fault -> (lake, what one line of the output must hold besides "(critical)")
LAKE_FAULTS: dict[str, tuple[str, tuple[str, ...]]] = {
    # layout and files (tests/unit/data/test_lake_faults.py has the detailed cases)
    "folder that is not a month partition": (
        "layout",
        ("transactions: every folder a month partition", "month=2025-13", "not a month partition"),
    ),
    "non-Parquet file in a table": (
        "layout",
        ("app_events: every folder a month partition", "extra.csv", "not a .parquet file"),
    ),
    "Parquet file outside the month folders": (
        "layout",
        ("balances:", "loose.parquet", "outside the month partitions"),
    ),
    "month folder without data": ("layout", ("balances:", "month=2025-04", "holds no Parquet file")),
    "truncated or corrupt Parquet file": (
        "layout",
        ("responses: every file readable Parquet", "part-00000.parquet", "not a readable Parquet file"),
    ),
    "another format named `.parquet`": (
        "layout",
        ("campaign_contacts: every file readable Parquet", "magic bytes"),
    ),
    "unreadable customers file": ("layout", ("customers: every file readable Parquet", "part-00000.parquet")),
    "rows stored under another month's folder": (
        "layout",
        ("transactions.txn_ts: rule 'rows in their partition's month'", "month=2025-03: 3"),
    ),
    "type drift in one partition: text": (
        "layout",
        (
            "transactions.amount: rule 'amount type'",
            "observed str",
            "month=2025-02/part-00000.parquet, 1 of 3",
        ),
    ),
    "type drift in one partition: narrower integer": (
        "layout",
        (
            "app_events.event_id: rule 'event_id type'",
            "observed int32",
            "month=2025-03/part-00000.parquet, 1 of 3",
        ),
    ),
    # schema drift, time zones, a lost day, a lost table
    "extra column": (
        "new",
        (
            "customers.segment_code: columns as in the data model",
            "not a column of the data model",
            "part-00000.parquet",
        ),
    ),
    "renamed column": (
        "new",
        ("responses.utm_contnt: columns as in the data model", "renamed from utm_content, which is missing?"),
    ),
    "retyped column in every partition": (
        "new",
        ("balances.card_balance: rule 'card_balance type'", "observed str", "3 of 3 partitions"),
    ),
    "time zone in one partition only": (
        "new",
        (
            "transactions.txn_ts: rule 'txn_ts type'",
            "time zone UTC",
            "month=2025-02/part-00000.parquet, 1 of 3",
        ),
    ),
    "two time zones in one table": (
        "new",
        (
            "app_events.event_ts: rule 'event_ts type'",
            "observed timestamp with time zone UTC and timestamp with time zone Asia/Tokyo",
            "2 of 3 partitions",
        ),
    ),
    "a day missing": (
        "new",
        ("transactions.txn_ts: no day without rows", "1 day(s) of month=2025-03 without any row: 2025-03-10"),
    ),
    "table missing": ("new", ("campaign_contacts: table missing", "campaign_contacts not found")),
    # rows of the --dirty generator (tests/data/test_generated_lakes.py counts them)
    "missing column": ("dirty", ("balances.aum: column missing",)),
    "duplicate customer_id": (
        "dirty",
        ("customers.customer_id: rule 'customer_id unique'", "failed on 10 rows"),
    ),
    "duplicate txn_id": ("dirty", ("transactions.txn_id: rule 'txn_id unique'", "failed on 12 rows")),
    "null key": ("dirty", ("transactions.customer_id: rule 'customer_id not null'", "failed on 7 rows")),
    "orphan foreign key": (
        "dirty",
        ("transactions.customer_id: rule 'customer exists in customers'", "failed on 13 rows", "9000000000"),
    ),
    "negative amount": ("dirty", ("transactions.amount: rule 'amount not negative'", "failed on 11 rows")),
    "unknown category": (
        "dirty",
        ("transactions.merchant_category: rule 'known merchant_category'", "crypto_exchange"),
    ),
    "future timestamp": ("dirty", ("transactions.txn_ts: rule 'no future txn_ts'", "2031-01-01")),
}


@pytest.fixture(scope="module")
def lake_runs(platform, dirty_bank, tmp_path_factory) -> dict[str, Failure]:
    """``pmp score`` on each of the three lakes: exit 1 at the source-data gate, nothing written."""
    runs = {}
    for name, build in (
        ("layout", lake_with_layout_faults),
        ("new", lake_with_new_faults),
        ("dirty", lambda d: lake_of_the_dirty_bank(d, dirty_bank)),
    ):
        data = tmp_path_factory.mktemp(f"lake_{name}")
        build(data)
        runs[name] = platform.fails(
            [*SCORE, "--data", str(data)], data, code=1, line=("validation as of", "FAILED")
        )
        assert not (data / "runs").exists() or not list((data / "runs").glob("campaign_*")), name
    # the day rule flags the one lost day, not the dense lake's other months nor the generated banks
    days = {
        k: {ln.strip(" -") for ln in r.text.splitlines() if "no day without rows" in ln}
        for k, r in runs.items()
    }
    assert len(days["new"]) == 1 and not days["dirty"] and not days["layout"], days
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("fault", LAKE_FAULTS)
def test_a_lake_fault_stops_pmp_score_before_any_write(lake_runs, fault):
    lake, needles = LAKE_FAULTS[fault]
    line = lake_runs[lake].line_with(*needles)
    assert "(critical)" in line, line


# --------------------------------------------------------------------------------------------------------------
# A user's table (pmp train --table): encodings, labels


def _user_table(path: Path, encoding: str, label_values=(0, 1)) -> Path:
    rows = "id,city,spend,churned\n" + "".join(
        f"{i},{'Zürich' if i % 3 else 'Genève'},{i % 17},{label_values[i % len(label_values)]}\n"
        for i in range(60)
    )
    path.write_bytes(rows.encode(encoding))
    return path


@pytest.mark.parametrize(
    ("case", "encoding", "labels", "needles"),
    [
        ("latin-1", "latin-1", (0, 1), ("not UTF-8 text: byte 0xe8 at byte offset 27 (line 2)", "Latin-1")),
        (
            "cp1252",
            "cp1252",
            (0, 1),
            ("not UTF-8 text: byte 0xe8 at byte offset 27 (line 2)", "Windows-1252"),
        ),
        ("utf-16", "utf-16", (0, 1), ("the file is UTF-16 text (byte-order mark ff fe); save it as UTF-8",)),
        (
            "label of three classes",
            "utf-8",
            (0, 1, 2),
            ("label column 'churned' must have exactly 2 classes",),
        ),
    ],
)
def test_a_user_table_that_cannot_be_read_stops_pmp_train(
    platform, tmp_path, case, encoding, labels, needles
):
    path = _user_table(tmp_path / "customers.csv", encoding, labels)
    argv = ["train", "--table", str(path), "--label", "churned", "--id", "id"]
    line = platform.fails(argv, tmp_path, code=2, line=needles, one_line=True).err
    if case != "label of three classes":
        assert str(path) in line, line


def test_a_user_table_without_its_label_column_stops_pmp_train(platform, tmp_path):
    path = _user_table(tmp_path / "customers.csv", "utf-8")
    argv = ["train", "--table", str(path), "--label", "churn"]
    platform.fails(
        argv, tmp_path, code=2, line=("label column 'churn' not in the table", "churned"), one_line=True
    )


def _xlsx(path: Path) -> None:
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        z.writestr("xl/workbook.xml", "<workbook/>")


@pytest.mark.parametrize(
    ("case", "name", "write", "needles"),
    [
        (
            "an Excel workbook named .csv",
            "customers.csv",
            _xlsx,
            ("not a text table", "ZIP archive", ".xlsx"),
        ),
        (
            "a Parquet file named .csv",
            "customers.csv",
            lambda p: pd.DataFrame({"a": [1]}).to_parquet(p),
            ("not a text table: the file is a Parquet file; name it .parquet",),
        ),
        (
            "binary bytes",
            "customers.csv",
            lambda p: p.write_bytes(bytes(range(256)) * 8),
            ("not a text table: it holds NUL bytes, the first at byte offset 0",),
        ),
        (
            "a CSV named .parquet",
            "customers.parquet",
            lambda p: p.write_text("id,churned\n1,0\n"),
            ("not a readable Parquet file (ArrowInvalid",),
        ),
    ],
)
def test_a_file_that_is_not_a_text_table_stops_pmp_train(platform, tmp_path, case, name, write, needles):
    path = tmp_path / name
    write(path)
    argv = ["train", "--table", str(path), "--label", "churned"]
    line = platform.fails(argv, tmp_path, code=2, line=(str(path), *needles), one_line=True).err
    assert "codec" not in line, line


def test_repeated_ids_stop_pmp_train(platform, tmp_path):
    path = _user_table(tmp_path / "customers.csv", "utf-8")
    rows = path.read_text().splitlines()
    path.write_text("\n".join([*rows, *rows[1:21]]) + "\n")  # customers 0-19 twice
    argv = ["train", "--table", str(path), "--label", "churned", "--id", "id"]
    needles = (
        "customers.csv: id column 'id' repeats 20 ids over 20 extra rows (e.g. '0' on 2 rows)",
        "--group-by-id",
    )
    platform.fails(argv, tmp_path, code=2, line=needles, one_line=True)


def test_a_table_under_the_name_of_a_model_of_another_schema_stops_pmp_train(platform, tmp_path):
    # The platform's churn champion was trained on balance, logins and spend; this table has city and spend.
    path = _user_table(tmp_path / "customers.csv", "utf-8")
    argv = ["train", "--table", str(path), "--label", "churned", "--id", "id", "--name", "churn"]
    needles = (
        "model 'churn' v1 (champion) has another input schema (columns only in this table: city; columns only in "
        "the registered model: balance, logins)",
        "--force",
    )
    platform.fails(argv, tmp_path, code=2, line=needles, one_line=True)


def test_a_utf8_byte_order_mark_is_accepted_and_dropped(tmp_path):
    from pipelines.models.tables import read_table

    frame = read_table(_user_table(tmp_path / "excel.csv", "utf-8-sig"))
    assert list(frame.columns) == ["id", "city", "spend", "churned"]
    assert frame["city"].iloc[1] == "Zürich" and len(frame) == 60


# --------------------------------------------------------------------------------------------------------------
# Campaign specs whose rules conflict, an unknown model alias, no champion


def _spec(folder: Path, **changes) -> Path:
    spec = yaml.safe_load((PROJECT_ROOT / "campaigns" / f"{CAMPAIGN}.yaml").read_text())
    spec.update(changes)
    folder.mkdir(exist_ok=True)
    path = folder / f"{CAMPAIGN}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.parametrize(
    ("case", "changes", "needles"),
    [
        (
            "contradictory audience rules",
            {
                "audience": [
                    {"column": "tenure_days", "op": ">=", "value": 90},
                    {"column": "tenure_days", "op": "<", "value": 30},
                ]
            },
            ("audience: rules 'tenure_days >= 90' and 'tenure_days < 30' contradict each other",),
        ),
        (
            "a category both wanted and excluded",
            {
                "audience": [
                    {"column": "card_tier", "op": "in", "value": ["gold"]},
                    {"column": "card_tier", "op": "not_in", "value": ["gold", "classic"]},
                ]
            },
            ("audience: rules 'card_tier in [gold]' and 'card_tier not_in [gold, classic]' contradict",),
        ),
        (
            "holdout fraction out of range",
            {"holdout_fraction": 0.7},
            ("holdout_fraction: input should be less than 0.5",),
        ),
        (
            "two selection modes",
            {"selection": {"top_k": 100, "top_deciles": 2}},
            ("selection: set exactly one of top_k",),
        ),
        (
            "power block with a fixed holdout",
            {"power": {"baseline_rate": 0.05, "min_detectable_lift": 0.01}},
            ("power: a power block is only used with holdout_fraction: auto",),
        ),
        (
            "fallback on a campaign that is not uplift",
            {"fallback": "random"},
            ("fallback: only for model: uplift",),
        ),
        (
            "unknown model alias",
            {"model": "churn@nosuch"},
            ("model: unknown model 'churn@nosuch'; known models: churn",),
        ),
    ],
)
def test_a_spec_whose_rules_conflict_stops_pmp_score(platform, tmp_path, case, changes, needles):
    path = _spec(tmp_path / "specs", **changes)
    failed = platform.fails(
        SCORE,
        tmp_path,
        code=2,
        line=needles,
        also=(f"{path}: invalid campaign spec",),
        env={"PM_CAMPAIGNS_DIR": str(path.parent)},
    )
    assert failed.err.startswith(f"pmp score: error: no valid campaign named {CAMPAIGN!r}"), failed.err


@pytest.mark.parametrize(
    "audience",
    [
        [("tenure_days", ">=", 90), ("tenure_days", "<=", 90)],
        [("tenure_days", "between", [30, 90]), ("tenure_days", "!=", 60)],
        [("card_tier", "==", "gold"), ("card_tier", "!=", "platinum")],
        [("decile", "in", [1, 2, 3]), ("decile", ">", 2)],
        [("persona", "not_in", ["revolver"]), ("persona", "!=", "saver")],
    ],
)
def test_rules_on_one_column_that_can_all_hold_are_accepted(audience):
    from pipelines.campaigns.spec import parse_spec

    spec = yaml.safe_load((PROJECT_ROOT / "campaigns" / f"{CAMPAIGN}.yaml").read_text())
    spec["audience"] = [{"column": c, "op": op, "value": v} for c, op, v in audience]
    assert len(parse_spec(spec).audience) == len(audience)


@pytest.mark.slow
def test_pmp_score_without_a_champion_stops_before_the_gate(platform, tmp_path):
    data = tmp_path / "data"
    write_lake(data, clean_frames())
    empty = tmp_path / "empty-mlruns" / "mlflow.db"
    failed = platform.fails(
        SCORE,
        data,
        code=1,
        env={"MLFLOW_TRACKING_URI": f"sqlite:///{empty}"},
        line=(
            f"campaign {CAMPAIGN}: no model registered as churn@champion in sqlite:///{empty}",
            "pmp train churn",
        ),
        one_line=True,
    )
    assert not (data / "runs").exists(), "the gate ran: the champion must be checked before any heavy work"
    assert failed.code == 1


# --------------------------------------------------------------------------------------------------------------
# Settings that do not parse or point nowhere


SECRET = "s3cret-pw"


@pytest.mark.parametrize(
    ("env", "code", "needles"),
    [
        ({"PM_TASK_RETRIES": "x"}, 2, ("PM_TASK_RETRIES must be an integer, got 'x'",)),
        ({"PM_RETRY_DELAY_SECONDS": "5m"}, 2, ("PM_RETRY_DELAY_SECONDS must be an integer, got '5m'",)),
        ({"PM_RETRY_DELAY_SECONDS": "-5"}, 2, ("PM_RETRY_DELAY_SECONDS must be an integer >= 0, got '-5'",)),
        ({"PM_TASK_RETRIES": "-1"}, 2, ("PM_TASK_RETRIES must be an integer >= 0, got '-1'",)),
        (
            {"MLFLOW_TRACKING_URI": f"ftp://pmp:{SECRET}@host/x"},
            2,
            ("MLFLOW_TRACKING_URI must be a database URL", "got 'ftp://pmp:***@host/x'"),
        ),
        (
            {"MLFLOW_TRACKING_URI": "mlruns"},
            2,
            ("MLFLOW_TRACKING_URI must be a database URL", "refuses a plain folder", "got 'mlruns'"),
        ),
        ({"PM_DATABASE_URL": "not a url"}, 1, ("campaign database not a url: not a database URL",)),
        (
            {"PM_CAMPAIGNS_DIR": "/nonexistent/specs"},
            2,
            ("/nonexistent/specs: campaign spec folder not found",),
        ),
        (
            {"PM_EXPECTATIONS_DIR": "/nonexistent/gx"},
            2,
            ("expectation suite for table 'customers' not found", "/nonexistent/gx/customers.json"),
        ),
    ],
    ids=lambda v: "-".join(f"{k}={v[k]}" for k in v) if isinstance(v, dict) else None,
)
def test_a_setting_that_cannot_be_used_stops_pmp_score(platform, tmp_path, env, code, needles):
    data = tmp_path / "data"
    write_lake(data, clean_frames())
    failed = platform.fails(SCORE, data, code=code, env=env, line=needles)
    assert SECRET not in failed.text
    assert not (data / "runs").exists() or not any((data / "runs").iterdir()), "heavy work ran"


def test_an_empty_database_url_means_the_default_one():
    from pipelines.config import load_settings

    settings = load_settings({"PM_DATABASE_URL": "", "PM_DATA_DIR": "/tmp/pm-data"})
    assert settings.database_url == "sqlite:////tmp/pm-data/campaigns.db"


# --------------------------------------------------------------------------------------------------------------
# A feature computed after as-of


@pytest.mark.slow
def test_a_wide_table_computed_after_as_of_fails_its_gate_naming_the_feature(tmp_path):
    from pipelines.features.gate import validate_features
    from pipelines.features.wide_table import build_features, load_tables

    lake = write_lake(tmp_path, clean_frames())
    late = load_tables(lake, "2025-04-01")
    wide = build_features(late, "2025-04-01")  # computed a month after the run's as_of...
    wide.loc[0, "days_since_last_txn"] = -2.0  # ...with an event dated after it
    result = validate_features(wide, late["customers"], "2025-03-01", EXPECTATIONS)
    messages = [o.message for o in result.critical_failures]
    (tenure,) = [m for m in messages if "'computed at as_of'" in m]
    assert tenure.startswith(
        "customer_features.tenure_days: rule 'computed at as_of' (critical) failed on "
    ), tenure
    assert tenure.endswith("computed at about 2025-04-01, 31 days after as_of)"), tenure
    (event,) = [m for m in messages if m.startswith("customer_features.days_since_last_txn:")]
    assert "rule 'days_since_last_txn within lookback + 1' (critical) failed on 1 row, e.g. [-2.0]" in event
    with pytest.raises(gates.ValidationError, match="computed at as_of"):
        gates.require_valid(result)


# --------------------------------------------------------------------------------------------------------------
# The document


def test_the_catalogue_counts_its_classes_and_names_existing_tests():
    # The catalogue of bad inputs; the faults of a run that follow it (kills, disks) are not input classes.
    text = DOC.read_text(encoding="utf-8").split("\n## Faults during a run")[0]
    rows = [
        ln
        for ln in text.splitlines()
        if re.match(r"^\| [^|]", ln) and not re.match(r"^\| (class|rule) \|", ln)
    ]
    classes = [ln for ln in rows if not ln.startswith("| `")]  # the rule table lists rules, not classes
    (claimed,) = re.findall(r"\*\*(\d+) classes\*\*", text)
    assert int(claimed) == len(classes), f"the header says {claimed}, the tables have {len(classes)} rows"
    assert len(classes) >= 40
    here = Path(__file__).read_text(encoding="utf-8")
    tests = PROJECT_ROOT / "tests"
    for name in set(re.findall(r"`(test_[a-z0-9_]+)", text)):
        assert name in here or any(name in p.read_text(encoding="utf-8") for p in tests.rglob("test_*.py")), (
            name
        )
    for fault in LAKE_FAULTS:
        assert f"| {fault} |" in text, f"catalogue row missing for {fault!r}"
