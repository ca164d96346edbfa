"""Saving a campaign spec from the staff app: create, edit, optimistic concurrency, duplicate names, the history
rows and their diffs, and the order that never leaves a spec change without its row (real SQLite)."""

from __future__ import annotations

import errno
import os
from datetime import UTC, datetime

import pytest
import yaml
from sqlalchemy import inspect, text

from pipelines.campaigns import spec_history, store_access, store_schema
from pipelines.campaigns.spec import load_spec, load_specs, parse_spec
from pipelines.campaigns.spec_form import (
    SaveFailed,
    SaveRefused,
    read_spec_file,
    save_spec,
    spec_file_sha256,
)
from pipelines.campaigns.spec_history import HISTORY_COLUMNS, read_history, record_change

BASE = {
    "name": "winback",
    "description": "a test",
    "model": "churn",
    "channel": "call",
    "selection": {"top_k": 10},
}


@pytest.fixture
def engine(tmp_path):
    engine = store_schema.make_engine(f"sqlite:///{tmp_path}/c.db")
    store_schema.ensure_schema(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def folder(tmp_path):
    path = tmp_path / "campaigns"
    path.mkdir()
    return path


def _spec(**changes):
    return parse_spec({**BASE, **changes})


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_ensure_schema_creates_the_history_table_and_the_staff_role_may_read_and_insert(engine):
    columns = [c["name"] for c in inspect(engine).get_columns("campaign_spec_history")]
    assert tuple(columns) == HISTORY_COLUMNS
    wanted = store_access.wanted_privileges("staff", "contact")
    assert {
        ("staff", "campaign_spec_history", "SELECT"),
        ("staff", "campaign_spec_history", "INSERT"),
    } <= set(wanted)
    assert not [w for w in wanted if w[1] == "campaign_spec_history" and w[2] not in ("SELECT", "INSERT")]


def test_create_writes_the_file_and_one_history_row_with_the_diff(engine, folder):
    spec = _spec()
    saved = save_spec(folder, spec, engine=engine, who="alice", base_sha256=None)
    path = folder / "winback.yaml"
    assert saved["path"] == path and saved["action"] == "created"
    assert saved["sha256"] == spec_file_sha256(path)
    assert load_spec(path) == spec
    history = read_history(engine)
    assert len(history) == 1
    row = history.iloc[0]
    assert (row["id"], row["changed_by"], row["campaign"], row["action"]) == (
        saved["history_id"],
        "alice",
        "winback",
        "created",
    )
    assert row["spec_sha256"] == saved["sha256"] and row["diff"] == saved["diff"]
    assert row["diff"].startswith("--- a/campaigns/winback.yaml\n+++ b/campaigns/winback.yaml\n")
    assert "+name: winback\n" in row["diff"] and "\n-" not in row["diff"]
    assert row["changed_at"].tzinfo is not None
    assert (datetime.now(UTC) - row["changed_at"]).total_seconds() < 60
    assert _leftovers(folder) == []


def test_creating_a_campaign_that_exists_is_refused(engine, folder):
    save_spec(folder, _spec(), engine=engine, who="alice", base_sha256=None)
    before = (folder / "winback.yaml").read_bytes()
    with pytest.raises(SaveRefused, match=r"^campaign winback already exists: edit it instead$"):
        save_spec(folder, _spec(description="other"), engine=engine, who="bob", base_sha256=None)
    assert (folder / "winback.yaml").read_bytes() == before
    assert len(read_history(engine)) == 1


def test_an_edit_from_the_current_file_is_saved_keeps_the_comment_and_is_listed_newest_first(engine, folder):
    path = folder / "winback.yaml"
    path.write_text("# Why this campaign exists.\n" + yaml.safe_dump(BASE, sort_keys=False), encoding="utf-8")
    spec, sha = read_spec_file(path)
    saved = save_spec(folder, _spec(selection={"top_k": 20}), engine=engine, who="bob", base_sha256=sha)
    assert saved["action"] == "edited"
    assert "-  top_k: 10\n" in saved["diff"] and "+  top_k: 20\n" in saved["diff"]
    assert path.read_text(encoding="utf-8").startswith("# Why this campaign exists.\nname: winback\n")
    assert load_spec(path).selection.top_k == 20
    again = save_spec(
        folder, _spec(selection={"top_k": 30}), engine=engine, who="carol", base_sha256=saved["sha256"]
    )
    history = read_history(engine, campaign="winback")
    assert list(history["changed_by"]) == ["carol", "bob"]
    assert list(history["id"]) == [again["history_id"], saved["history_id"]]
    assert list(read_history(engine, "winback", limit=1)["changed_by"]) == ["carol"]
    assert read_history(engine, "other").empty and list(read_history(engine, "other").columns) == list(
        HISTORY_COLUMNS
    )


def test_an_edit_that_changes_nothing_writes_nothing(engine, folder):
    saved = save_spec(folder, _spec(), engine=engine, who="alice", base_sha256=None)
    same = save_spec(folder, _spec(), engine=engine, who="alice", base_sha256=saved["sha256"])
    assert (same["action"], same["diff"], same["sha256"]) == ("unchanged", "", saved["sha256"])
    assert len(read_history(engine)) == 1


def test_an_edit_of_a_file_changed_since_it_was_opened_is_refused_naming_who_changed_it(engine, folder):
    first = save_spec(folder, _spec(), engine=engine, who="alice", base_sha256=None)
    second = save_spec(
        folder, _spec(description="by bob"), engine=engine, who="bob", base_sha256=first["sha256"]
    )
    path = folder / "winback.yaml"
    before = path.read_bytes()
    with pytest.raises(
        SaveRefused,
        match=r"^campaigns/winback\.yaml changed since you opened it \(by bob at .* UTC\); reload$",
    ):
        save_spec(
            folder, _spec(description="by carol"), engine=engine, who="carol", base_sha256=first["sha256"]
        )
    assert path.read_bytes() == before
    path.write_text(path.read_text() + "cost_per_contact: 1.0\n")
    with pytest.raises(SaveRefused, match=r"\(by an edit outside the staff app\); reload$"):
        save_spec(folder, _spec(), engine=engine, who="carol", base_sha256=second["sha256"])
    assert len(read_history(engine)) == 2


def test_editing_a_campaign_whose_file_is_gone_is_refused(engine, folder):
    with pytest.raises(SaveRefused, match=r"campaigns/winback\.yaml does not exist"):
        save_spec(folder, _spec(), engine=engine, who="alice", base_sha256="0" * 64)
    assert list(folder.iterdir()) == [] and read_history(engine).empty


def test_a_name_another_file_already_declares_is_refused(engine, folder):
    (folder / "legacy-winback.yml").write_text(yaml.safe_dump(BASE), encoding="utf-8")
    (folder / "broken.yaml").write_text("name: [unclosed", encoding="utf-8")
    with pytest.raises(
        SaveRefused, match=r"campaigns/legacy-winback\.yml already declares campaign name 'winback'"
    ):
        save_spec(folder, _spec(), engine=engine, who="alice", base_sha256=None)
    assert not (folder / "winback.yaml").exists() and read_history(engine).empty


def test_nothing_is_written_when_the_history_row_cannot_be_inserted(engine, folder):
    saved = save_spec(folder, _spec(), engine=engine, who="alice", base_sha256=None)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE campaign_spec_history"))
    path = folder / "winback.yaml"
    before = path.read_bytes()
    with pytest.raises(
        SaveFailed, match=r"^campaigns/winback\.yaml not saved: .*campaign_spec_history.*no such table"
    ):
        save_spec(folder, _spec(description="new"), engine=engine, who="bob", base_sha256=saved["sha256"])
    assert path.read_bytes() == before
    with pytest.raises(SaveFailed, match=r"campaigns/fresh\.yaml not saved"):
        save_spec(folder, _spec(name="fresh"), engine=engine, who="bob", base_sha256=None)
    assert sorted(p.name for p in folder.iterdir()) == ["winback.yaml"]


def test_a_failed_rename_leaves_the_file_and_a_not_applied_row_after_the_change(engine, folder, monkeypatch):
    saved = save_spec(folder, _spec(), engine=engine, who="alice", base_sha256=None)
    before = (folder / "winback.yaml").read_bytes()

    def refuse(src, dst):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(dst))

    monkeypatch.setattr(spec_history.os, "replace", refuse)
    with pytest.raises(
        SaveFailed, match=r"could not be replaced \(Permission denied\); history row [0-9a-f]{32}"
    ):
        save_spec(folder, _spec(description="new"), engine=engine, who="bob", base_sha256=saved["sha256"])
    assert (folder / "winback.yaml").read_bytes() == before and _leftovers(folder) == []
    history = read_history(engine)
    assert list(history["action"]) == ["not_applied", "edited", "created"]
    assert history.iloc[0]["spec_sha256"] == saved["sha256"]


def test_saved_files_load_together_with_the_hand_written_ones(engine, folder):
    (folder / "other.yaml").write_text(yaml.safe_dump({**BASE, "name": "other"}), encoding="utf-8")
    save_spec(folder, _spec(audience=[{"column": "card_tier", "op": "in", "value": ["gold"]}]), engine=engine,
              who="alice", base_sha256=None)  # fmt: skip
    assert [s.name for s in load_specs(folder)] == ["other", "winback"]


def test_record_change_refuses_an_unknown_action_and_a_missing_identity(engine):
    with engine.begin() as conn:
        with pytest.raises(ValueError, match="action must be one of created, edited, not_applied"):
            record_change(conn, campaign="x", action="deleted", changed_by="a", spec_sha256="", diff="")
        with pytest.raises(ValueError, match="changed_by"):
            record_change(conn, campaign="x", action="edited", changed_by=" ", spec_sha256="", diff="")
    with pytest.raises(ValueError, match="who is saving is required"):
        save_spec(engine.url.database, _spec(), engine=engine, who="", base_sha256=None)
