"""`pmp lists export` and `pmp campaigns list`: what campaign staff pull, and that contact data needs asking."""

from __future__ import annotations

import json
from datetime import date

import pandas as pd
import pytest

from pipelines.campaigns import store, store_frames, store_schema
from pipelines.cli import main
from pipelines.data import storage

PII = {"full_name", "phone", "email", "national_id"}


@pytest.fixture
def staff_data(tmp_path, monkeypatch):
    """A small bank plus one stored run of campaign 'demo' with 8 treatment and 2 holdout customers."""
    data = tmp_path / "data"
    assert main(["synth", "--customers", "300", "--months", "1", "--seed", "3", "--out", str(data)]) == 0
    monkeypatch.setenv("PM_DATA_DIR", str(data))
    ids = (
        storage.read_table(data / "lake", "customers", columns=["customer_id"])["customer_id"]
        .head(10)
        .to_numpy()
    )
    targets = pd.DataFrame(
        {
            "customer_id": ids,
            "score": [0.9 - 0.05 * i for i in range(10)],
            "decile": [1] * 10,
            "rank": range(1, 11),
            "target_group": ["treatment"] * 8 + ["holdout"] * 2,
            "channel": "sms",
            "reason_1": "days_since_last_login",
            "reason_2": None,
            "reason_3": None,
            "rfm_segment": "At risk",
            "value_tier": "mid",
            "lifecycle_stage": "dormant",
            "persona": "revolver",
        }
    )
    engine = store_schema.make_engine(f"sqlite:///{data / 'campaigns.db'}")
    store_schema.ensure_schema(engine)
    run = store_frames.RunRecord("campaign_scoring__2025-02-01__demo", "demo", date(2025, 2, 1), "churn", "1")
    store.write_run(
        engine, run, targets, targets.iloc[:0][["customer_id"]].assign(exclusion_reason="", detail="")
    )
    return data


def test_export_has_treatment_rows_and_no_personal_data_by_default(staff_data, tmp_path, capsys):
    out = tmp_path / "list.csv"
    assert main(["lists", "export", "--campaign", "demo", "--out", str(out)]) == 0
    frame = pd.read_csv(out)
    assert len(frame) == 8 and set(frame["target_group"]) == {"treatment"}
    assert list(frame["rank"]) == list(range(1, 9))
    assert not PII & set(frame.columns)
    assert set(frame["lifecycle_stage"]) == {"dormant"} and set(frame["rfm_segment"]) == {"At risk"}
    assert {"value_tier", "persona"} <= set(frame.columns)
    logged = [json.loads(line) for line in (staff_data / "runs" / "exports.jsonl").read_text().splitlines()]
    assert logged[-1]["with_contact"] is False and logged[-1]["rows"] == 8


def test_contact_details_only_on_request_and_the_export_is_logged(staff_data, tmp_path, capsys):
    out = tmp_path / "list.parquet"
    assert (
        main(["lists", "export", "--campaign", "demo", "--out", str(out), "--with-contact", "--all-groups"])
        == 0
    )
    frame = pd.read_parquet(out)
    assert len(frame) == 10 and set(frame["target_group"]) == {"treatment", "holdout"}
    assert {"full_name", "phone", "email"} <= set(frame.columns) and frame["phone"].notna().all()
    assert "national_id" not in frame.columns
    logged = json.loads((staff_data / "runs" / "exports.jsonl").read_text().splitlines()[-1])
    assert logged["with_contact"] is True and logged["campaign"] == "demo" and logged["user"]
    assert "personal contact data" in capsys.readouterr().out


def test_unknown_campaign_and_bad_suffix_are_clear_errors(staff_data, tmp_path, capsys):
    assert main(["lists", "export", "--campaign", "nope", "--out", str(tmp_path / "x.csv")]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["lists", "export", "--campaign", "demo", "--out", str(tmp_path / "x.xlsx")]) == 2
    assert ".csv or .parquet" in capsys.readouterr().err


def test_campaigns_list_shows_the_run_and_its_counts(staff_data, capsys):
    assert main(["campaigns", "list"]) == 0
    out = capsys.readouterr().out
    assert "campaign_scoring__2025-02-01__demo" in out and "succeeded" in out
