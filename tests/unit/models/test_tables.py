"""A table a user brings: column checks, delimiter sniffing, and ``pmp train --table`` end to end."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.models.tables import prepare_table, read_table
from tests.unit.models.test_propensity import make_frame


def test_prepare_table_errors_name_the_column():
    frame = pd.DataFrame(
        {"a": [1, 2, 3, 4], "y": ["yes", "no", "no", "maybe"], "when": pd.date_range("2025", periods=4)}
    )
    with pytest.raises(ValueError, match="'target' not in the table"):
        prepare_table(frame, "target")
    with pytest.raises(ValueError, match="'y' must have exactly 2 classes, found 3"):
        prepare_table(frame, "y")
    two = frame.assign(y=["yes", "no", "no", "yes"])
    with pytest.raises(ValueError, match="say which is positive"):
        prepare_table(two, "y")
    with pytest.raises(ValueError, match="'si' is not a class of 'y'"):
        prepare_table(two, "y", positive="si")
    with pytest.raises(ValueError, match="'when' has type datetime"):
        prepare_table(two, "y", positive="yes")
    with pytest.raises(ValueError, match="excluded column.*nope"):
        prepare_table(two, "y", positive="yes", exclude=["nope"])
    with pytest.raises(ValueError, match="'y' has 1 missing"):
        prepare_table(two.assign(y=["yes", None, "no", "no"]), "y", positive="yes", exclude=["when"])
    out, features, categorical, positive = prepare_table(two, "y", positive="yes", exclude=["when"])
    assert features == ["a"] and categorical == [] and positive == "yes"
    assert out["y"].tolist() == [1, 0, 0, 1]


@pytest.mark.parametrize("sep", [";", ",", "\t"])
def test_read_table_sniffs_the_delimiter(tmp_path, sep):
    frame = pd.DataFrame(
        {"age": [31, 45, 27], "job": ["admin.", "blue-collar", "unknown"], "y": ["no", "yes", "no"]}
    )
    path = tmp_path / "t.csv.gz"
    frame.to_csv(path, sep=sep, index=False)
    back = read_table(path)
    assert list(back.columns) == ["age", "job", "y"] and back["job"].tolist() == frame["job"].tolist()


def test_cli_train_prints_run_version_and_decision(tmp_path, monkeypatch, capsys):
    from pipelines.cli import main

    frame = make_frame(2000, seed=3).drop(columns=["customer_id"])
    frame["tier"] = frame["tier"].astype(str)
    frame["region"] = frame["region"].astype(str)
    frame["churned"] = np.where(frame["churned"] == 1, "yes", "no")
    frame.insert(0, "cust", np.arange(len(frame)))
    path = tmp_path / "customers.parquet"
    frame.to_parquet(path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.chdir(tmp_path)
    args = ["train", "--table", str(path), "--label", "churned", "--positive", "yes", "--id", "cust"]
    assert main([*args, "--exclude", "noise", "--name", "cli_model"]) == 0
    out = capsys.readouterr().out
    assert "version 1 PROMOTED to champion" in out
    assert "mlflow run id: " in out and "5 features (2 categorical)" in out
    assert main([*args, "--label", "missing"]) == 2
    assert "'missing' not in the table" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifacts", "customers.parquet", "mlflow.db"]
