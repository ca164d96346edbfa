"""`pmp` fails fast and clean: a bad setting, a campaign database or MLflow store that cannot be used, or a bad
spec is one line on stderr (passwords masked) with exit 1 (2 for bad inputs), found before any heavy work; and a
failed `pmp score` never touches the folder of an earlier succeeded run of the same id."""

from __future__ import annotations

import hashlib
import socket
import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import make_url

from pipelines.campaigns import store, store_schema
from pipelines.cli import main
from pipelines.config import PROJECT_ROOT

SECRET = "s3cret-pw"
CAMPAIGN = "churn-winback"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def env(tmp_path, monkeypatch) -> Path:
    """An empty data folder, the project's specs and an MLflow store in tmp_path; returns the data folder."""
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("PM_DATA_DIR", str(data))
    monkeypatch.setenv("PM_CAMPAIGNS_DIR", str(PROJECT_ROOT / "campaigns"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    monkeypatch.delenv("PM_DATABASE_URL", raising=False)
    return data


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    assert SECRET not in err, err
    return err


def score_fails(capsys, data: Path, code: int = 1, seconds: float = 10) -> str:
    t0 = time.perf_counter()
    assert main(["score", "--campaign", CAMPAIGN]) == code
    elapsed = time.perf_counter() - t0
    assert elapsed < seconds, f"took {elapsed:.1f} s"
    assert not (data / "runs").exists() or not any((data / "runs").iterdir())  # failed before any work
    return one_line(capsys)


def test_a_bad_setting_is_one_line_exit_2(env, monkeypatch, capsys):
    monkeypatch.setenv("PM_SEED", "abc")
    assert main(["score", "--campaign", CAMPAIGN]) == 2
    assert one_line(capsys) == "pmp score: error: PM_SEED must be an integer, got 'abc'"


def _text_file(tmp_path: Path) -> str:
    (tmp_path / "list.db").write_text("customer_id\n1\n" * 100)
    return f"sqlite:///{tmp_path / 'list.db'}"


@pytest.mark.parametrize(
    ("make", "cause"),
    [
        (lambda tmp: "not a url", "campaign database not a url: not a database URL"),
        (_text_file, "list.db: file is not a database"),
        (lambda tmp: f"mysql://pmp:{SECRET}@db/c", "campaign database mysql://pmp:***@db/c: unsupported"),
    ],
)
def test_score_with_an_unusable_sqlite_or_url_fails_before_the_features(
    env, tmp_path, monkeypatch, capsys, make, cause
):
    monkeypatch.setenv("PM_DATABASE_URL", make(tmp_path))
    err = score_fails(capsys, env)
    assert err.startswith("pmp score: failed: campaign database "), err
    assert cause in err, err


def test_score_with_a_locked_sqlite_names_the_busy_timeout(env, tmp_path, monkeypatch, capsys):
    path = tmp_path / "campaigns.db"
    store_schema.check_database(f"sqlite:///{path}")
    monkeypatch.setenv("PM_DATABASE_URL", f"sqlite:///{path}")
    monkeypatch.setattr(store_schema, "SQLITE_BUSY_TIMEOUT_S", 0.3)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        err = score_fails(capsys, env)
    finally:
        holder.close()
    assert err == (
        f"pmp score: failed: campaign database sqlite:///{path}: database is locked "
        "(another writer held it past the busy timeout of 0.3 s)"
    )


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("change", "cause"),
    [
        ({"username": "no_such_role"}, 'FATAL: role "no_such_role" does not exist'),
        ({"database": "no_such_db"}, 'FATAL: database "no_such_db" does not exist'),
        ({"host": "127.0.0.1", "port": "closed"}, "Connection refused"),
    ],
)
def test_score_with_an_unusable_postgresql_fails_in_seconds(
    env, postgres_url, monkeypatch, capsys, change, cause
):
    change = {k: closed_port() if v == "closed" else v for k, v in change.items()}
    url = make_url(postgres_url).set(query={}, password=SECRET, **change)
    monkeypatch.setenv("PM_DATABASE_URL", url.render_as_string(hide_password=False))
    err = score_fails(capsys, env, seconds=5)
    shown = url.set(drivername="postgresql+psycopg").render_as_string(hide_password=True)
    assert err.startswith(f"pmp score: failed: campaign database {shown}: "), err
    assert ":***@" in err and err.endswith(cause), err


def test_score_with_an_unreachable_mlflow_server_fails_in_seconds(env, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PM_DATABASE_URL", f"sqlite:///{tmp_path / 'campaigns.db'}")
    port = closed_port()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://pmp:{SECRET}@127.0.0.1:{port}")
    err = score_fails(capsys, env, seconds=30)  # the first import of mlflow takes ~6 s
    assert err.startswith(f"pmp score: failed: MLflow store http://pmp:***@127.0.0.1:{port}: "), err
    assert "Connection refused" in err, err


def test_a_broken_spec_stops_only_its_own_campaign(env, tmp_path, monkeypatch, capsys):
    specs = tmp_path / "campaigns"
    specs.mkdir()
    (specs / f"{CAMPAIGN}.yaml").write_text((PROJECT_ROOT / "campaigns" / f"{CAMPAIGN}.yaml").read_text())
    (specs / "broken.yaml").write_text("name: broken\nmodel: churn\nselection: {top_k: [\n")
    monkeypatch.setenv("PM_CAMPAIGNS_DIR", str(specs))
    # The good campaign gets past its spec (and fails on the next check, the database).
    monkeypatch.setenv("PM_DATABASE_URL", "not a url")
    assert "campaign database not a url" in score_fails(capsys, env)
    # The broken one is reported by file.
    assert main(["score", "--campaign", "broken"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pmp score: error: no valid campaign named 'broken'"), err
    assert "broken.yaml" in err and "Traceback" not in err, err


# ------------------------------------------------------------------------------------------- attempt folders


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


class InjectedFailure(RuntimeError):
    pass


@pytest.mark.slow
def test_a_failed_run_never_touches_the_folder_of_a_succeeded_run(tmp_path, monkeypatch, capsys):
    data, specs = tmp_path / "data", tmp_path / "campaigns"
    specs.mkdir()
    spec = (PROJECT_ROOT / "campaigns" / f"{CAMPAIGN}.yaml").read_text()
    (specs / f"{CAMPAIGN}.yaml").write_text(spec.replace("top_k: 1500", "top_k: 100"))
    monkeypatch.setenv("PM_DATA_DIR", str(data))
    monkeypatch.setenv("PM_CAMPAIGNS_DIR", str(specs))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    db = f"sqlite:///{data / 'campaigns.db'}"
    monkeypatch.setenv("PM_DATABASE_URL", db)
    assert main(["synth", "--customers", "6000", "--months", "12", "--seed", "3", "--out", str(data)]) == 0
    assert main(["train", "churn"]) == 0
    assert main(["score", "--campaign", CAMPAIGN]) == 0
    (run_dir,) = [p for p in (data / "runs").iterdir() if p.name.startswith("campaign_scoring__")]
    before = _hashes(run_dir)
    assert {"features.parquet", "scores.parquet", "targets.parquet", "model.json"} <= set(before)
    engine = store_schema.make_engine(db)
    runs_before = store.list_runs(engine)
    attempt = run_dir.with_name(run_dir.name + ".attempt")
    assert not attempt.exists() and not run_dir.with_name(run_dir.name + ".previous").exists()
    capsys.readouterr()

    # A bad database URL: fails at the checks, in seconds, writing nothing.
    monkeypatch.setenv("PM_DATABASE_URL", f"postgresql://pmp:{SECRET}@127.0.0.1:{closed_port()}/c")
    t0 = time.perf_counter()
    assert main(["score", "--campaign", CAMPAIGN]) == 1
    assert time.perf_counter() - t0 < 5
    assert "campaign database postgresql+psycopg://pmp:***@" in one_line(capsys)
    assert _hashes(run_dir) == before and not attempt.exists()

    # A failure in the database write itself, after every step has written its files: they stay in the attempt.
    monkeypatch.setenv("PM_DATABASE_URL", db)

    def fail_at(step: str) -> None:
        if step == "written":
            raise InjectedFailure("the write failed")

    monkeypatch.setattr(store, "_checkpoint", fail_at)
    assert main(["score", "--campaign", CAMPAIGN]) == 1
    assert capsys.readouterr().err.strip() == "pmp score: failed: the write failed"
    assert _hashes(run_dir) == before
    assert {"features.parquet", "targets.parquet"} <= set(_hashes(attempt))
    assert store.list_runs(engine).equals(runs_before)  # rolled back: the row still matches the folder

    # A succeeded rerun swaps its attempt in and leaves nothing beside it.
    monkeypatch.undo()
    monkeypatch.setenv("PM_DATA_DIR", str(data))
    monkeypatch.setenv("PM_CAMPAIGNS_DIR", str(specs))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    monkeypatch.setenv("PM_DATABASE_URL", db)
    assert main(["score", "--campaign", CAMPAIGN]) == 0
    assert sorted(p.name for p in (data / "runs").iterdir() if p.name.startswith("campaign_scoring__")) == [
        run_dir.name
    ]
    after = _hashes(run_dir)
    assert set(after) == set(before)
    assert store.list_runs(engine)["created_at"].iloc[0] > runs_before["created_at"].iloc[0]
    engine.dispose()


# ------------------------------------------------------------------------------------------------ pmp run


def test_pmp_run_reports_a_broken_spec_by_file_and_a_bad_setting_in_one_line(tmp_path, monkeypatch, capsys):
    from tests.conftest import local_runner

    runner = local_runner()
    data, specs = tmp_path / "data", tmp_path / "campaigns"
    assert main(["synth", "--customers", "300", "--months", "1", "--seed", "3", "--out", str(data)]) == 0
    specs.mkdir()
    (specs / f"{CAMPAIGN}.yaml").write_text((PROJECT_ROOT / "campaigns" / f"{CAMPAIGN}.yaml").read_text())
    (specs / "broken.yaml").write_text("name: broken\nmodel: churn\nselection: {top_k: [\n")
    monkeypatch.setenv("PM_CAMPAIGNS_DIR", str(specs))
    capsys.readouterr()
    # The broken campaign is not known (its file is named), the good one still is.
    assert runner.main(["--data", str(data), "--campaign", "broken"]) == 2
    err = capsys.readouterr().err
    assert "broken.yaml" in err and f"known: {CAMPAIGN}" in err and "Traceback" not in err, err

    monkeypatch.setenv("PM_SEED", "abc")
    assert runner.main(["--data", str(data)]) == 2
    assert one_line(capsys) == "pmp run: error: PM_SEED must be an integer, got 'abc'"
