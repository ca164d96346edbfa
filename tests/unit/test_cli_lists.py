"""`pmp lists export` and `pmp campaigns list`: what campaign staff pull, and who may have contact data (SQLite:
the OS accounts in PM_CONTACT_USERS), released only with its audit row."""

from __future__ import annotations

import os
import stat
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select, text

from pipelines.campaigns import store_schema
from pipelines.campaigns.contact_export import file_sha256, os_account
from pipelines.cli import main
from pipelines.data import storage
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


def test_a_failed_audit_insert_leaves_no_contact_file(staff_data, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PM_CONTACT_USERS", os_account())
    with staff_data.begin() as conn:
        conn.execute(
            text(
                "CREATE TRIGGER refuse_audit BEFORE INSERT ON contact_exports "
                "BEGIN SELECT RAISE(ABORT, 'audit store refused the row'); END"
            )
        )
    out = tmp_path / "out" / "list.csv"
    out.parent.mkdir()
    assert main(["lists", "export", "--campaign", "demo", "--out", str(out), "--with-contact"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "list.csv not written" in err and "contact_exports" in err and "audit store refused the row" in err
    assert list(out.parent.iterdir()) == []  # neither the file nor its temporary copy
    assert audit_rows(staff_data, store_schema.contact_exports) == []


def test_unknown_campaign_and_bad_suffix_are_clear_errors(staff_data, tmp_path, capsys):
    assert main(["lists", "export", "--campaign", "nope", "--out", str(tmp_path / "x.csv")]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["lists", "export", "--campaign", "demo", "--out", str(tmp_path / "x.xlsx")]) == 2
    assert ".csv or .parquet" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


def test_campaigns_list_shows_the_run_and_its_counts(staff_data, capsys):
    assert main(["campaigns", "list"]) == 0
    out = capsys.readouterr().out
    assert RUN_ID in out and "succeeded" in out
