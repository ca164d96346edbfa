"""The harness of the bad-input catalogue (``docs/data-quality.md``): a small platform (a real churn champion in
its own MLflow store, a SQLite campaign database, a campaign spec) and :meth:`Platform.fails`, which runs one
``pmp`` command against a bad input and asserts that it stops with its message, and that nothing reached the
models, MLflow or the campaign tables.

"Nothing reached" is compared on the stores themselves, before and after the command: every MLflow run (id and
status), registered model, version and alias; every row of every campaign table; and the campaign run folders
under ``runs/``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.cli import main
from pipelines.config import PROJECT_ROOT

CAMPAIGN = "churn-winback"
_MLFLOW_LOG = re.compile(r"^\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} (INFO|WARNING) mlflow")


@dataclass
class Failure:
    """What a failed command printed: ``err`` (stderr) and ``out`` (stdout)."""

    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return f"{self.err}\n{self.out}"

    def line_with(self, *needles: str) -> str:
        """The first printed line that holds every needle (one line names table, column or file and the cause)."""
        for line in self.text.splitlines():
            if all(n in line for n in needles):
                return line
        raise AssertionError(f"no line holds all of {needles!r}:\n{self.text[-6000:]}")


def _rows(db: Path, queries: dict[str, str]) -> dict[str, list]:
    if not db.is_file():
        return {}
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {k: sorted(map(tuple, con.execute(q).fetchall())) for k, q in queries.items()}
    finally:
        con.close()


def mlflow_state(db: Path) -> dict[str, list]:
    """Every run (id, status, end time), registered model, version (and stage) and alias of an MLflow store."""
    return _rows(
        db,
        {
            "runs": "SELECT run_uuid, status, end_time FROM runs",
            "models": "SELECT name FROM registered_models",
            "versions": "SELECT name, version, current_stage, run_id FROM model_versions",
            "aliases": "SELECT name, alias, version FROM registered_model_aliases",
        },
    )


def campaign_state(db: Path) -> dict[str, str]:
    """A digest of every row of every table of the campaign database (table -> row count and SHA-256)."""
    if not db.is_file():
        return {}
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        out = {}
        for t in sorted(tables):
            rows = sorted(repr(r) for r in con.execute(f'SELECT * FROM "{t}"'))
            out[t] = f"{len(rows)} rows, {hashlib.sha256(''.join(rows).encode()).hexdigest()[:16]}"
        return out
    finally:
        con.close()


@dataclass
class Platform:
    """A small platform in ``root``: ``specs/`` (the campaign), ``mlruns/mlflow.db`` (a churn champion),
    ``campaigns.db`` (the campaign tables)."""

    root: Path

    @property
    def specs(self) -> Path:
        return self.root / "specs"

    @property
    def mlflow_db(self) -> Path:
        return self.root / "mlruns" / "mlflow.db"

    @property
    def campaign_db(self) -> Path:
        return self.root / "campaigns.db"

    def environment(self, data: Path) -> dict[str, str]:
        return {
            "PM_DATA_DIR": str(data),
            "PM_CAMPAIGNS_DIR": str(self.specs),
            "MLFLOW_TRACKING_URI": f"sqlite:///{self.mlflow_db}",
            "PM_DATABASE_URL": f"sqlite:///{self.campaign_db}",
            "PM_TUNE_TRIALS": "0",  # the champion is trained without a hyperparameter search: seconds, not more
        }

    def state(self, data: Path) -> dict:
        runs = data / "runs"
        folders = (
            sorted(p.name for p in runs.iterdir() if p.name.startswith("campaign_")) if runs.is_dir() else []
        )
        return {
            "mlflow": mlflow_state(self.mlflow_db),
            "campaign tables": campaign_state(self.campaign_db),
            "campaign run folders": folders,
        }

    def run(self, argv: list[str], data: Path, env: dict[str, str | None] | None = None) -> Failure:
        """``pmp argv`` with this platform's settings (``env`` overrides them; None unsets), output captured."""
        out, err = io.StringIO(), io.StringIO()
        with pytest.MonkeyPatch.context() as mp:
            for key in [k for k in os.environ if k.startswith("PM_")] + ["MLFLOW_TRACKING_URI"]:
                mp.delenv(key, raising=False)
            for key, value in {**self.environment(data), **(env or {})}.items():
                if value is None:
                    mp.delenv(key, raising=False)
                else:
                    mp.setenv(key, value)
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(argv)
        # MLflow's own log lines (creating a store) are not the command's messages
        err_lines = [ln for ln in err.getvalue().splitlines(keepends=True) if not _MLFLOW_LOG.match(ln)]
        return Failure(code, out.getvalue(), "".join(err_lines))

    def fails(
        self,
        argv: list[str],
        data: Path,
        *,
        code: int,
        line: tuple[str, ...] = (),
        also: tuple[str, ...] = (),
        env: dict[str, str | None] | None = None,
        one_line: bool = False,
    ) -> Failure:
        """Run ``pmp argv`` on a bad input and assert: exit ``code``; no traceback; one printed line holding
        every needle of ``line`` (and ``also`` anywhere); stderr a single line if ``one_line``; and MLflow (runs,
        models, versions, aliases), the campaign tables and the campaign run folders exactly as before."""
        before = self.state(data)
        result = self.run(argv, data, env)
        assert result.code == code, f"exit {result.code}, expected {code}:\n{result.text[-6000:]}"
        assert "Traceback" not in result.text, result.text
        assert result.err.startswith(f"pmp {argv[0]}: "), result.err
        if one_line:
            assert len(result.err.strip().splitlines()) == 1, result.err
        if line:
            result.line_with(*line)
        for needle in also:
            assert needle in result.text, f"{needle!r} not printed:\n{result.text[-6000:]}"
        assert self.state(data) == before, "a failed command changed MLflow, the campaign tables or runs/"
        return result


def champion_table(path: Path, n: int = 1_200, seed: int = 7) -> Path:
    """A small customer table (3 numeric features, a 0/1 label ``churned``) to train a real champion on."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    y = (x[:, 0] - 0.5 * x[:, 1] + rng.normal(size=n) > 0).astype(int)
    pd.DataFrame({"balance": x[:, 0], "logins": x[:, 1], "spend": x[:, 2], "churned": y}).to_csv(
        path, index=False
    )
    return path


def make_platform(root: Path) -> Platform:
    """The platform: the project's churn-winback spec, a campaign database with its tables, and a real LightGBM
    model trained by ``pmp train --table`` and registered as ``churn`` (the first version becomes champion)."""
    platform = Platform(root)
    platform.specs.mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / "campaigns" / f"{CAMPAIGN}.yaml", platform.specs)
    data = root / "data"
    table = champion_table(root / "champion.csv")
    trained = platform.run(["train", "--table", str(table), "--label", "churned", "--name", "churn"], data)
    assert trained.code == 0, trained.text
    _seed_campaign_run(f"sqlite:///{platform.campaign_db}")
    state = platform.state(data)
    assert [a[:2] for a in state["mlflow"]["aliases"] if a[1] == "champion"] == [("churn", "champion")], state
    assert len(state["mlflow"]["runs"]) >= 1, state
    assert state["campaign tables"]["campaign_targets"].startswith("10 rows"), state
    return platform


def _seed_campaign_run(url: str) -> None:
    """An earlier run of the campaign for the small lakes' date (2025-04-01), 8 treatment and 2 holdout rows: a
    failed rerun of the same run id must leave it as it is."""
    from datetime import date

    from pipelines.campaigns import store_schema
    from tests.stored_runs import store_run

    store_schema.check_database(url)
    engine = store_schema.make_engine(url)
    try:
        ids = np.arange(1, 11, dtype=np.int64)
        store_run(
            engine,
            f"campaign_scoring__2025-04-01__{CAMPAIGN}",
            CAMPAIGN,
            date(2025, 4, 1),
            ids,
            channel="call",
        )
    finally:
        engine.dispose()
