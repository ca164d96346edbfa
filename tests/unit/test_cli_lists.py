"""`pmp lists export` and `pmp campaigns list`: what campaign staff pull, and who may have contact data (SQLite:
the OS accounts in PM_CONTACT_USERS), released only with its audit row; lists as staff read them (Excel as well as
CSV, reason codes in plain language from the feature catalogue, a score percentile and probability)."""

from __future__ import annotations

import os
import stat
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from openpyxl import load_workbook
from sqlalchemy import select, text

from pipelines.campaigns import contact_export, store_schema
from pipelines.campaigns.contact_export import file_sha256, os_account
from pipelines.cli import main
from pipelines.data import storage
from pipelines.features.catalogue import FEATURE_NAMES
from tests.stored_runs import store_run

PII = {"full_name", "phone", "email", "national_id"}
RUN_ID = "campaign_scoring__2025-02-01__demo"


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    data = tmp_path_factory.mktemp("staff_bank")
    assert main(["synth", "--customers", "300", "--months", "1", "--seed", "3", "--out", str(data)]) == 0
    return data


@pytest.fixture
def staff_data(bank, tmp_path, monkeypatch):
    """The small bank plus a campaign database of this test with one run of campaign 'demo': 8 treatment and 2
    holdout customers. Nobody is in PM_CONTACT_USERS."""
    database = tmp_path / "campaigns.db"
    monkeypatch.setenv("PM_DATA_DIR", str(bank))
    monkeypatch.setenv("PM_DATABASE_URL", f"sqlite:///{database}")
    monkeypatch.delenv("PM_CONTACT_USERS", raising=False)
    ids = (
        storage.read_table(bank / "lake", "customers", columns=["customer_id"])["customer_id"]
        .head(10)
        .to_numpy()
    )
    engine = store_schema.make_engine(f"sqlite:///{database}")
    store_schema.ensure_schema(engine)
    store_run(engine, RUN_ID, "demo", date(2025, 2, 1), ids)
    yield engine
    engine.dispose()


def audit_rows(engine, table) -> list:
    with engine.connect() as conn:
        return conn.execute(select(table).order_by(table.c.id)).all()


def test_export_has_treatment_rows_and_no_personal_data_by_default(staff_data, tmp_path, capsys):
    out = tmp_path / "list.csv"
    assert main(["lists", "export", "--campaign", "demo", "--out", str(out)]) == 0
    frame = pd.read_csv(out)
    assert len(frame) == 8 and set(frame["target_group"]) == {"treatment"}
    assert list(frame["rank"]) == list(range(1, 9))
    assert not PII & set(frame.columns)
    assert set(frame["lifecycle_stage"]) == {"dormant"} and set(frame["rfm_segment"]) == {"At risk"}
    assert {"value_tier", "persona"} <= set(frame.columns)
    [row] = audit_rows(staff_data, store_schema.list_exports)
    assert (row.n_rows, row.run_id, row.file_path) == (8, RUN_ID, str(out.resolve()))
    assert row.sha256 == file_sha256(out) and row.exported_by == os_account()
    assert audit_rows(staff_data, store_schema.contact_exports) == []
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~_umask()  # no personal data: an ordinary file


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_contact_export_is_refused_to_an_account_not_listed(staff_data, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PM_CONTACT_USERS", "someone-else,another")
    monkeypatch.setenv("USER", os_account())  # $USER is not the identity: it does not help either
    folder = tmp_path / "exports"
    out = folder / "list.csv"
    assert main(["lists", "export", "--campaign", "demo", "--out", str(out), "--with-contact"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"OS account {os_account()} may not export contact details" in err
    assert "PM_CONTACT_USERS (now: someone-else, another)" in err and "nothing was written" in err
    assert not out.exists() and (not folder.exists() or list(folder.iterdir()) == [])
    assert audit_rows(staff_data, store_schema.contact_exports) == []
    assert audit_rows(staff_data, store_schema.list_exports) == []


def test_a_listed_account_gets_a_0600_file_with_its_audit_row(staff_data, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PM_CONTACT_USERS", f"alice, {os_account()}")
    monkeypatch.setenv("USER", "someone-else")
    monkeypatch.setenv("LOGNAME", "someone-else")
    out = tmp_path / "staff" / "list.parquet"
    args = ["lists", "export", "--campaign", "demo", "--out", str(out), "--with-contact", "--all-groups"]
    assert main(args) == 0
    frame = pd.read_parquet(out)
    assert len(frame) == 10 and set(frame["target_group"]) == {"treatment", "holdout"}
    assert {"full_name", "phone", "email"} <= set(frame.columns) and frame["phone"].notna().all()
    assert "national_id" not in frame.columns
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert sorted(p.name for p in out.parent.iterdir()) == ["list.parquet"]  # no temporary file left
    [row] = audit_rows(staff_data, store_schema.contact_exports)
    assert row.exported_by == os_account() != "someone-else"
    assert (row.campaign, row.run_id, row.target_groups, row.n_rows) == (
        "demo",
        RUN_ID,
        "treatment,holdout",
        10,
    )
    assert row.file_path == str(out.resolve()) and row.sha256 == file_sha256(out)
    assert row.exported_at.tzinfo is not None
    assert "personal contact data" in capsys.readouterr().out
    assert not (Path(os.environ["PM_DATA_DIR"]) / "runs" / "exports.jsonl").exists()  # no editable log

    assert main(["lists", "exports"]) == 0
    listed = capsys.readouterr().out
    assert os_account() in listed and str(out.resolve()) in listed and row.sha256[:12] in listed


@pytest.mark.parametrize("name", ["list.csv", "list.xlsx"])
def test_a_failed_audit_insert_leaves_no_contact_file(name, staff_data, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PM_CONTACT_USERS", os_account())
    with staff_data.begin() as conn:
        conn.execute(
            text(
                "CREATE TRIGGER refuse_audit BEFORE INSERT ON contact_exports "
                "BEGIN SELECT RAISE(ABORT, 'audit store refused the row'); END"
            )
        )
    out = tmp_path / "out" / name
    out.parent.mkdir()
    assert main(["lists", "export", "--campaign", "demo", "--out", str(out), "--with-contact"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{name} not written" in err and "contact_exports" in err and "audit store refused the row" in err
    assert list(out.parent.iterdir()) == []  # neither the file nor its temporary copy
    assert audit_rows(staff_data, store_schema.contact_exports) == []


def test_unknown_campaign_and_bad_suffix_are_clear_errors(staff_data, tmp_path, capsys):
    assert main(["lists", "export", "--campaign", "nope", "--out", str(tmp_path / "x.csv")]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["lists", "export", "--campaign", "demo", "--out", str(tmp_path / "x.txt")]) == 2
    assert ".csv, .parquet, .xlsx" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "x.txt").exists()


def test_campaigns_list_shows_the_run_and_its_counts(staff_data, capsys):
    assert main(["campaigns", "list"]) == 0
    out = capsys.readouterr().out
    assert RUN_ID in out and "succeeded" in out


REASONS = ["reason_1", "reason_2", "reason_3"]


def _export(out, *extra) -> None:
    assert main(["lists", "export", "--campaign", "demo", "--out", str(out), *extra]) == 0


def test_xlsx_export_has_the_csv_rows_a_frozen_header_and_an_audit_row(staff_data, tmp_path, capsys):
    _export(tmp_path / "list.csv")
    _export(tmp_path / "list.xlsx")
    csv = pd.read_csv(tmp_path / "list.csv")
    xlsx = pd.read_excel(tmp_path / "list.xlsx", engine="openpyxl")
    assert len(xlsx) == 8 and list(xlsx.columns) == list(csv.columns)
    pd.testing.assert_frame_equal(xlsx, csv, check_dtype=False)
    sheet = load_workbook(tmp_path / "list.xlsx").active
    assert sheet.freeze_panes == "A2" and sheet["A1"].font.bold
    widths = {
        c: sheet.column_dimensions[cell.column_letter].width
        for c, cell in zip(csv.columns, sheet[1], strict=True)
    }
    assert widths["reason_1"] >= len("days since last app login (raised the score)")
    assert widths["rank"] >= len("rank") and max(widths.values()) <= 60
    rows = {r.file_path: r for r in audit_rows(staff_data, store_schema.list_exports)}
    row = rows[str((tmp_path / "list.xlsx").resolve())]
    assert (row.n_rows, row.run_id, row.sha256) == (8, RUN_ID, file_sha256(tmp_path / "list.xlsx"))


def test_contact_xlsx_is_0600_and_audited_like_the_csv(staff_data, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PM_CONTACT_USERS", os_account())
    out = tmp_path / "staff" / "list.xlsx"
    _export(out, "--with-contact")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert sorted(p.name for p in out.parent.iterdir()) == ["list.xlsx"]  # no temporary file left
    frame = pd.read_excel(out, engine="openpyxl")
    assert {"full_name", "phone", "email"} <= set(frame.columns) and len(frame) == 8
    [row] = audit_rows(staff_data, store_schema.contact_exports)
    assert (row.file_path, row.sha256, row.exported_by) == (
        str(out.resolve()),
        file_sha256(out),
        os_account(),
    )


def test_the_temporary_excel_file_is_0600_whatever_the_umask(tmp_path):
    """The hidden file written before the audit row commits: created 0600 (contact exports), not by umask."""
    old = os.umask(0)
    try:
        partial = tmp_path / ".list.xlsx.abc.partial"
        contact_export._write_new(
            partial, pd.DataFrame({"a": [1, 2]}), ".xlsx", contact_export.CONTACT_FILE_MODE
        )
    finally:
        os.umask(old)
    assert stat.S_IMODE(partial.stat().st_mode) == 0o600
    assert pd.read_excel(partial, engine="openpyxl")["a"].tolist() == [1, 2]


def _assert_plain(frame: pd.DataFrame) -> None:
    texts = frame[REASONS].stack().dropna().astype(str)
    assert len(texts) > 0
    assert not texts.isin(FEATURE_NAMES).any() and not texts.str.contains("_").any(), texts.tolist()


def test_reasons_read_in_plain_language_without_values(staff_data, tmp_path, capsys):
    _export(tmp_path / "list.csv")
    frame = pd.read_csv(tmp_path / "list.csv")
    _assert_plain(frame)
    assert set(frame["reason_1"]) == {"days since last app login (raised the score)"}


def test_reasons_use_the_customers_own_values_from_the_run_folder(tmp_path, monkeypatch, capsys):
    """With the run's wide table in its folder, a reason states the customer's value ("assets down 40 %")."""
    data = tmp_path / "data"
    database = tmp_path / "campaigns.db"
    monkeypatch.setenv("PM_DATA_DIR", str(data))
    monkeypatch.setenv("PM_DATABASE_URL", f"sqlite:///{database}")
    engine = store_schema.make_engine(f"sqlite:///{database}")
    store_schema.ensure_schema(engine)
    ids = [11, 12, 13, 14]
    store_run(engine, RUN_ID, "demo", date(2025, 2, 1), ids, holdout=0)
    engine.dispose()
    folder = data / "runs" / RUN_ID
    folder.mkdir(parents=True)
    wide = pd.DataFrame({"customer_id": ids, "days_since_last_login": [3, 40, 181, 7], "aum_change_1m": -0.4})
    wide.to_parquet(folder / "features.parquet", index=False)
    _export(tmp_path / "list.csv")
    frame = pd.read_csv(tmp_path / "list.csv")
    _assert_plain(frame)
    assert frame.set_index("customer_id")["reason_1"].to_dict() == {
        11: "3 days since last app login",
        12: "40 days since last app login",
        13: "181 days since last app login",
        14: "7 days since last app login",
    }


def test_percentile_rises_with_the_score_from_1_to_100():
    rng = np.random.default_rng(5)
    scores = np.sort(rng.random(250))[::-1]
    targets = pd.DataFrame(
        {
            "customer_id": range(250),
            "score": scores,
            "rank": range(1, 251),
            "reason_1": "aum_change_1m",
            "reason_2": None,
            "reason_3": None,
        }
    )
    values = pd.DataFrame({"aum_change_1m": np.linspace(-0.5, 0.5, 250)}, index=range(250))
    out = contact_export.readable_list(targets, values)
    pct = out["score_percentile"].to_numpy(dtype=int)
    assert pct.min() >= 1 and pct.max() == 100 and pct[0] == 100
    assert (np.diff(pct) <= 0).all()  # rows by rank: the percentile never rises as the score falls
    assert len(np.unique(pct)) > 90
    assert out["probability"].tolist() == pytest.approx(np.round(scores, 3).tolist())
    assert list(out.columns[:4]) == ["customer_id", "score", "score_percentile", "probability"]
    assert out.loc[0, "reason_1"] == "assets down 50 % last month" and out.loc[249, "reason_1"] == (
        "assets up 50 % last month"
    )
    no_prob = contact_export.readable_list(targets, probability=False)
    assert "probability" not in no_prob.columns
    assert no_prob.loc[0, "reason_1"] == "change in assets last month (raised the score)"
