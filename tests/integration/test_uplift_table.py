"""An experiment in a flat file through ``pmp train uplift --table`` (and ``train_uplift_table``): the CLI end to end
on a CSV, the errors that name the file and the column, the campaign-history path, and ``pmp readout --table``."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.cli import main
from pipelines.models import uplift_tables
from pipelines.models.uplift import uplift_config
from pipelines.models.uplift_metrics import HETEROGENEITY
from pipelines.models.uplift_tables import train_uplift_table
from tests.unit.models.test_uplift_training import simulate

FAST = uplift_config(learning_rate=0.1, n_estimators=300, early_stopping_rounds=30, num_threads=1)


def experiment_csv(path: Path, n: int = 12_000, seed: int = 3) -> Path:
    """The simulated experiment as a campaign team would export it: group T/C (plus 30 rows of a third arm),
    response yes/no, a customer id, a noise column to exclude."""
    frame, _, _ = simulate(n, seed)
    out = pd.DataFrame(
        {
            "customer_id": [f"C{i:06d}" for i in range(n)],
            "grp": np.where(frame["treated"] == 1, "T", "C"),
            "responded": np.where(frame["converted"] == 1, "yes", "no"),
            **{c: frame[c] for c in ("x0", "x1", "x2", "x3")},
            "channel": frame["channel"].astype(str),
            "noise": np.arange(n) % 97,
        }
    )
    out.loc[out.index[:30], "grp"] = "X"
    out.to_csv(path, index=False)
    return path


@pytest.fixture
def fast_defaults(monkeypatch):
    """The CLI trains with the default settings; the test swaps in fewer, faster rounds on one thread."""
    monkeypatch.setattr(uplift_tables, "uplift_config", lambda **kw: FAST)


CLI = [
    "--treatment",
    "grp",
    "--treated",
    "T",
    "--control",
    "C",
    "--outcome",
    "responded",
    "--positive",
    "yes",
]


def test_cli_trains_registers_and_reports_an_uplift_model(tmp_path, monkeypatch, capsys, fast_defaults):
    from mlflow import MlflowClient

    path = experiment_csv(tmp_path / "exp.csv")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    args = ["train", "uplift", "--table", str(path), *CLI, "--id", "customer_id", "--exclude", "noise"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "dropped 30 rows whose 'grp' is neither 'T' nor 'C'" in out
    assert "split (stratified by treatment x outcome): train 6,732, valid 2,245, test 2,993" in out
    for learner in ("s_learner", "t_learner", "x_learner", "r_learner", "shared_t_learner"):
        assert learner in out
    assert "<- chosen" in out and "[95% CI " in out and "auuc" in out and "uplift@30" in out
    assert f"verdict: {HETEROGENEITY}" in out
    assert "exp version 1 PROMOTED to champion" in out  # named after the file, not "uplift"
    assert "champion: models:/exp@champion" in out

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run_id = out.split("mlflow run id: ")[1].split()[0]
    run = client.get_run(run_id)
    assert run.info.experiment_id == client.get_experiment_by_name("table/exp").experiment_id
    params = run.data.params
    assert params["lineage.source"] == "exp.csv"
    assert params["lineage.source_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert params["lineage.rows_dropped"] == "30"
    assert (
        params["run.treated"] == "T"
        and params["run.positive"] == "yes"
        and params["run.id_col"] == "customer_id"
    )
    assert run.data.metrics["n_test"] == 2_993
    # no personal data: the id is neither a feature nor in the logged input example
    features = json.loads(Path(client.download_artifacts(run_id, "evaluation/features.json")).read_text())
    assert features["features"] == ["x0", "x1", "x2", "x3", "channel"]
    logged = [
        f for f in (tmp_path / "artifacts").rglob("*") if f.suffix in (".json", ".csv", ".txt", ".yaml")
    ]
    assert any(f.name == "input_example.json" for f in logged)
    for f in logged:
        assert re.search(rb"C\d{6}", f.read_bytes()) is None, f"a customer id reached {f}"
    # The store is read as SQL text, value by value: its raw pages put unrelated values side by side (the control
    # label "C" of a param, then a run id that starts with six digits) and would match by chance.
    with closing(sqlite3.connect(tmp_path / "mlflow.db")) as db:
        stored = "\n".join(db.iterdump())
    assert re.search(r"(?<![0-9A-Za-z])C\d{6}(?![0-9])", stored) is None, (
        "a customer id reached the MLflow store"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifacts", "exp.csv", "mlflow.db"]
    assert run.data.params["run.personal_left_out"] == "[]"

    # the same file again: deterministic, so no gain and no promotion
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "exp version 2 NOT promoted (stays challenger)" in out and "change +0.0000" in out

    # another experiment under the same name, with other columns: refused before any fit, unless --force
    other = pd.read_csv(path).drop(columns=["x3"]).rename(columns={"x2": "age"})
    other.to_csv(other_path := tmp_path / "other_exp.csv", index=False)
    other_args = [
        "train",
        "uplift",
        "--table",
        str(other_path),
        *CLI,
        "--id",
        "customer_id",
        "--exclude",
        "noise",
    ]
    assert main([*other_args, "--name", "exp"]) == 2
    err = capsys.readouterr().err
    assert "model 'exp' v1 (champion) has another input schema (columns only in this table: age; " in err, err
    assert len(client.search_model_versions("name = 'exp'")) == 2


def test_train_uplift_table_reads_parquet_and_0_1_outcomes(tmp_path):
    frame, _, _ = simulate(6_000, 4)
    frame.insert(0, "cust", np.arange(len(frame)))
    path = tmp_path / "exp.parquet"
    frame.to_parquet(path)
    lines: list[str] = []
    result = train_uplift_table(
        path,
        treatment="treated",
        treated=1,
        control="0",  # as typed on a command line
        outcome="converted",
        id_col="cust",
        name="parquet_uplift",
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
        config=FAST,
        progress=lines.append,
    )
    assert result.model_name == "parquet_uplift" and result.promoted
    assert result.model.encoder.features == ["x0", "x1", "x2", "x3", "channel"]
    assert result.metrics["n_train"] + result.metrics["n_valid"] + result.metrics["n_test"] == 6_000
    assert not any(line.startswith("dropped") for line in lines)


def _bad(frame: pd.DataFrame, change) -> pd.DataFrame:
    frame = frame.copy()
    change(frame)
    return frame


@pytest.mark.parametrize(
    "change, kwargs, message",
    [
        (
            None,
            {"treatment": "group"},
            "exp.csv: treatment column 'group' not in the table; columns: customer_id, grp",
        ),
        (None, {"outcome": "bought"}, "exp.csv: outcome column 'bought' not in the table"),
        (None, {"id_col": "cid"}, "exp.csv: id column 'cid' not in the table"),
        (None, {"exclude": ["nope"]}, "exp.csv: excluded column(s) not in the table: nope"),
        (
            None,
            {"treated": "A"},
            "exp.csv: treated value 'A' not found in treatment column 'grp'; values seen: 'C', 'T', 'X'",
        ),
        (None, {"control": "B"}, "exp.csv: control value 'B' not found in treatment column 'grp'"),
        (None, {"positive": "maybe"}, "positive value 'maybe' is not a value of outcome column 'responded'"),
        (None, {"positive": None}, "outcome column 'responded' has values"),
        (
            lambda f: f.__setitem__("grp", f["grp"].where(f.index % 50 > 0)),
            {},
            "exp.csv: treatment column 'grp' has 240 missing values",
        ),
        (
            lambda f: f.__setitem__("responded", np.where(f.index % 3 == 0, "later", f["responded"])),
            {},
            "exp.csv: outcome column 'responded' is not binary: 3 values",
        ),
        (
            lambda f: f.__setitem__("responded", np.where(f["grp"] == "C", "no", f["responded"])),
            {},
            "exp.csv: the control group (6,040 rows) has no positive outcome in 'responded'",
        ),
        (lambda f: f.__setitem__("when", "2025-01-01"), {}, "exp.csv: column 'when' has type"),
        (
            lambda f: f.__setitem__(  # the ids of rows 5000-5999 again on rows 11000-11999
                "customer_id", np.where(f.index >= 11_000, f["customer_id"].shift(6_000), f["customer_id"])
            ),
            {},
            "exp.csv: id column 'customer_id' repeats 1,000 ids over 1,000 extra rows (e.g. 'C005000' on 2 rows): "
            "the same customer would land in train and test",
        ),
        (None, {"group_by_id": True, "id_col": None}, "--group-by-id needs --id COL"),
        (None, {"allow": ["nope"]}, "--allow-column 'nope': not a column of the table"),
    ],
)
def test_table_errors_name_the_file_and_the_column(tmp_path, change, kwargs, message):
    path = experiment_csv(tmp_path / "exp.csv")
    if change is not None:
        frame = _bad(pd.read_csv(path), change)
        if "when" in frame:
            frame["when"] = pd.to_datetime(frame["when"])
            frame.to_parquet(path := tmp_path / "exp.parquet")
            message = message.replace("exp.csv", "exp.parquet")
        else:
            frame.to_csv(path, index=False)
    base = {
        "treatment": "grp",
        "treated": "T",
        "control": "C",
        "outcome": "responded",
        "positive": "yes",
        "id_col": "customer_id",
    }
    with pytest.raises(ValueError) as exc:
        train_uplift_table(path, **{**base, **kwargs}, tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    assert message in str(exc.value)
    assert not (tmp_path / "mlflow.db").exists()


def test_cli_uplift_errors_exit_2(tmp_path, monkeypatch, capsys):
    from pipelines.jobs import campaign_models

    path = experiment_csv(tmp_path / "exp.csv", n=400)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    assert main(["train", "uplift", "--table", str(path), *CLI[:-4]]) == 2
    assert "pmp train uplift --table needs --outcome" in capsys.readouterr().err
    assert main(["train", "uplift", "--table", str(path), *CLI, "--treated", "Z"]) == 2
    assert "treated value 'Z' not found" in capsys.readouterr().err
    assert main(["train", "--table", str(path), "--outcome", "responded"]) == 2
    assert "--outcome is for uplift models" in capsys.readouterr().err

    # without --table: campaign-history training (jobs.campaign_models.uplift_train) on the --data folder
    calls = []
    monkeypatch.setattr(campaign_models, "uplift_train", lambda s, as_of, progress: calls.append((s, as_of)))
    assert main(["train", "uplift", "--as-of", "2025-06-01", "--data", str(tmp_path)]) == 0
    assert calls and str(calls[0][1]) == "2025-06-01" and calls[0][0].data_dir == tmp_path.resolve()


def test_cli_readout_of_an_experiment_file(tmp_path, capsys):
    path = experiment_csv(tmp_path / "exp.csv", n=4_000)
    argv = ["readout", "--table", str(path), *CLI, "--expected-share", "0.5"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "treated" in out and "control" in out
    assert "95% CI" in out and "p-value" in out and "SRM" in out
