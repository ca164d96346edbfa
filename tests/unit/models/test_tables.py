"""A table a user brings: column checks, delimiter sniffing, and ``pmp train --table`` end to end."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

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


# --------------------------------------------------------------------------------------------------------------
# Issue 16: personal columns, numbers stored as text, binary files, repeated ids, names and schemas


@pytest.mark.parametrize(
    "header, kind",
    [
        ("surname", "names"),
        ("last_name", "names"),
        ("LastName", "names"),
        ("Nachname", "names"),
        ("prénom", "names"),
        ("Apellido", "names"),
        ("customer_name", "names"),
        ("E-Mail", "e-mail addresses"),
        ("customer_email", "e-mail addresses"),
        ("courriel", "e-mail addresses"),
        ("phone", "phone numbers"),
        ("Tel", "phone numbers"),
        ("mobile", "phone numbers"),
        ("ssn", "national or tax ids"),
        ("NIN", "national or tax ids"),
        ("passport_no", "national or tax ids"),
        ("tax_id", "national or tax ids"),
        ("national_id", "national or tax ids"),
        ("IBAN", "bank accounts"),
        ("street", "street addresses"),
        ("Straße", "street addresses"),
        ("address_line_1", "street addresses"),
        ("zip", "street addresses"),
        ("dob", "birth dates"),
        ("date_of_birth", "birth dates"),
        ("Geburtsdatum", "birth dates"),
        ("fecha_nacimiento", "birth dates"),
    ],
)
def test_personal_columns_are_recognised_by_their_header(header, kind):
    from pipelines.models.personal_columns import header_kind

    assert header_kind(header) == kind


@pytest.mark.parametrize(
    "header",
    ["customer_id", "product_name", "campaign_name", "email_opens_30d", "emails_sent", "mobile_app_logins",
     "tax", "birth_year", "city", "balance", "nombre_enfants", "channel"],
)  # fmt: skip
def test_ordinary_features_are_not_taken_for_personal_columns(header):
    from pipelines.models.personal_columns import header_kind

    assert header_kind(header) is None


FIRST = ["James", "Mary", "John", "Anna", "Lucas", "Omar", "Sofia", "Ivan", "Emma", "Noah"]
LAST = ["Smith", "Brown", "Garcia", "Chen", "Miller", "Lopez", "King", "Young", "Hill", "Adams"]


@pytest.mark.parametrize(
    "values, kind",
    [
        ([f"user{i}@example.org" for i in range(120)], "e-mail addresses"),
        ([f"+44 7{i:09d}" for i in range(120)], "phone numbers"),
        ([f"07{i:09d}" for i in range(120)], "phone numbers"),
        ([f"AB{i:06d}C" for i in range(120)], "national or tax ids"),
        ([f"{100 + i}-{10 + i % 89}-{1000 + i}" for i in range(120)], "national or tax ids"),
        ([f"{i} High Street" for i in range(120)], "street addresses"),
        ([f"Hauptstraße {i}" for i in range(120)], "street addresses"),
        ([f"{a} {b}" for a in FIRST for b in LAST] * 2, "names"),
        (["London", "Paris", "Berlin", "Madrid"] * 30, None),
        ([f"2024-01-{1 + i % 28:02d}" for i in range(120)], None),
        ([f"C{i:06d}" for i in range(120)], None),
        (["Gold card", "Silver", "Basic plan"] * 40, None),
    ],
)
def test_personal_columns_are_recognised_by_their_values(values, kind):
    from pipelines.models.personal_columns import value_kind

    found = value_kind(pd.Series(values, dtype="str"))
    assert (found[0] if found else None) == kind, found


def test_screening_leaves_personal_columns_out_unless_allowed():
    from pipelines.models.personal_columns import screen_personal_columns

    frame = pd.DataFrame(
        {
            "surname": LAST * 12,
            "reach": [f"user{i}@example.org" for i in range(120)],
            "email": ["yes", "no"] * 60,  # a flag: identifies no one
            "spend": np.arange(120.0),
        }
    )
    lines: list[str] = []
    assert screen_personal_columns(frame, frame.columns, (), lines.append) == ["surname", "reach"]
    assert lines == [
        "personal data: left out of the features: 'surname' (names: column name), 'reach' (e-mail addresses: "
        "100% of its values look like e-mail addresses) (--allow-column COL to use one anyway)"
    ]
    lines.clear()
    assert screen_personal_columns(frame, frame.columns, ["surname"], lines.append) == ["reach"]
    assert "used as features because allowed (--allow-column): 'surname'" in lines[1]
    with pytest.raises(ValueError, match="--allow-column 'nope': not a column of the table"):
        screen_personal_columns(frame, frame.columns, ["nope"])


def test_the_synthetic_input_example_fits_the_signature_and_holds_no_row():
    from pipelines.models.personal_columns import MASKED, synthetic_example
    from pipelines.models.propensity import pyfunc_input
    from pipelines.models.registry import input_schema

    rng = np.random.default_rng(5)
    frame = pd.DataFrame(
        {
            "balance": rng.normal(1000, 300, 400).round(2),
            "tier": rng.choice(["gold", "silver", "bronze"], 400),
            "ref": [f"R{i:05d}" for i in range(400)],  # every value on one row only
        }
    )
    inputs = pyfunc_input(frame, list(frame.columns), ["tier", "ref"])
    example = synthetic_example(inputs)
    assert len(example) == 5 and list(example.columns) == list(frame.columns)
    assert input_schema(example) == input_schema(inputs.head(5))
    assert example["balance"].iloc[0] == pytest.approx(frame["balance"].median())
    assert set(example["tier"]) <= {"gold", "silver", "bronze"}
    assert set(example["ref"]) == {MASKED}  # no value that a single row holds
    raw_rows = set(map(tuple, inputs.astype(str).to_numpy()))
    assert not raw_rows & set(map(tuple, example.astype(str).to_numpy()))


def test_numbers_stored_as_text_become_numbers_with_a_line():
    frame = pd.DataFrame(
        {
            "balance": pd.Series(["10.5", " ", "3", "", "7 ", "1e3"], dtype="str"),
            "code": pd.Series(["1", "2", "x", "3", "4", "5"], dtype="str"),
            "y": [0, 1, 0, 1, 0, 1],
        }
    )
    lines: list[str] = []
    out, features, categorical, _ = prepare_table(frame, "y", progress=lines.append)
    assert features == ["balance", "code"] and categorical == ["code"]
    assert out["balance"].dtype == np.float64
    assert out["balance"].iloc[0] == 10.5 and np.isnan(out["balance"].iloc[1])
    assert out["balance"].isna().sum() == 2 and out["balance"].iloc[5] == 1000.0
    assert lines == [
        "numbers stored as text, read as numbers (blank values as missing): 'balance' (2 blank or missing)"
    ]


def _zip(path):
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        z.writestr("xl/workbook.xml", "<workbook/>")


@pytest.mark.parametrize(
    "name, write, message",
    [
        ("book.csv", _zip, "not a text table: the file is a ZIP archive (an Excel .xlsx workbook is one)"),
        (
            "data.csv",
            lambda p: pd.DataFrame({"a": [1, 2]}).to_parquet(p),
            "not a text table: the file is a Parquet file; name it .parquet",
        ),
        (
            "dump.csv",
            lambda p: p.write_bytes(
                np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
            ),
            "not a text table: it holds NUL bytes",
        ),
        (
            "t.csv",
            lambda p: p.write_bytes(gzip.compress(b"a,b\n1,2\n")),
            "the file is gzip-compressed",
        ),
        ("t.parquet", lambda p: p.write_text("a,b\n1,2\n"), "not a readable Parquet file (ArrowInvalid"),
        (
            "t.csv.gz",
            lambda p: p.write_text("a,b\n1,2\n"),
            "not a text table: named .gz but not gzip-compressed",
        ),
    ],
)
def test_a_file_that_is_not_a_text_table_is_named_as_such(tmp_path, name, write, message):
    path = tmp_path / name
    write(path)
    with pytest.raises(ValueError) as exc:
        read_table(path)
    assert str(exc.value).startswith(f"{path}: ") and message in str(exc.value), str(exc.value)
    assert "codec" not in str(exc.value)


def test_repeated_ids_are_refused_or_kept_on_one_side_of_the_split():
    from pipelines.models.tables import check_ids, split_frame

    rng = np.random.default_rng(2)
    ids = np.repeat(np.arange(600), 2)  # every customer twice
    frame = pd.DataFrame({"cust": ids, "x": rng.normal(size=ids.size), "y": rng.integers(0, 2, ids.size)})
    frame.loc[5, "cust"] = 7  # customer 7 on three rows
    with pytest.raises(ValueError) as exc:
        check_ids(frame, "cust", False, "t.csv")
    assert str(exc.value).startswith(
        "t.csv: id column 'cust' repeats 599 ids over 600 extra rows (e.g. '7' on 3 rows): the same customer "
        "would land in train and test"
    ) and "--group-by-id" in str(exc.value)
    assert check_ids(frame, "cust", True, "t.csv").endswith(
        "each id's rows kept on one side of the split (--group-by-id)"
    )
    assert check_ids(frame.drop_duplicates("cust"), "cust", False, "t.csv") is None
    for ordered in (False, True):
        parts = split_frame(frame, "y", seed=3, groups="cust", ordered=ordered)
        sets = [set(p["cust"]) for p in parts]
        assert sum(len(p) for p in parts) == len(frame)
        assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2]), ordered
        assert 0.25 < len(parts[2]) / len(frame) < 0.35


def _customers(n: int = 1500, seed: int = 3) -> pd.DataFrame:
    frame = make_frame(n, seed=seed).drop(columns=["customer_id"])
    frame["tier"] = frame["tier"].astype(str)
    frame["region"] = frame["region"].astype(str)
    frame["churned"] = np.where(frame["churned"] == 1, "yes", "no")
    frame.insert(0, "cust", np.arange(len(frame)))
    return frame


def _row(values) -> tuple:
    """A row comparable across a frame and a JSON example: numbers as floats, missing as None."""
    out = []
    for v in values:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            out.append(None)
        elif isinstance(v, str):
            out.append(v)
        else:
            out.append(float(v))
    return tuple(out)


TABLE_ARGS = ["--label", "churned", "--positive", "yes", "--id", "cust"]


def test_a_table_model_is_named_after_its_file_and_a_name_of_another_schema_is_refused(
    tmp_path, monkeypatch, capsys
):
    from mlflow import MlflowClient

    from pipelines.cli import main

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("PM_TUNE_TRIALS", "0")  # no hyperparameter search: these tests are about the table
    monkeypatch.chdir(tmp_path)
    first = tmp_path / "customers.parquet"
    _customers().to_parquet(first)
    assert main(["train", "--table", str(first), *TABLE_ARGS]) == 0
    assert "customers version 1 PROMOTED to champion" in capsys.readouterr().out  # not the platform's churn

    other = tmp_path / "other_bank.csv"
    _customers(seed=4).drop(columns=["x3"]).rename(columns={"x2": "age"}).to_csv(other, index=False)
    argv = ["train", "--table", str(other), *TABLE_ARGS, "--name", "customers"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert (
        "model 'customers' v1 (champion) has another input schema (columns only in this table: age; columns "
        "only in the registered model: x2, x3)"
    ) in err, err
    assert "choose another --name, or --force" in err
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert len(client.search_model_versions("name = 'customers'")) == 1

    assert main([*argv, "--force"]) == 0
    out = capsys.readouterr().out
    assert "registered anyway (--force)" in out
    assert "customers version 2 NOT promoted (stays challenger)" in out
    assert "champion v1 was trained on another table (differs: input_schema): not compared" in out
    assert str(client.get_model_version_by_alias("customers", "champion").version) == "1"

    # the first table again: same schema, experiment and label, so the champion is compared (deterministic: no gain)
    assert main(["train", "--table", str(first), *TABLE_ARGS]) == 0
    out = capsys.readouterr().out
    assert "customers version 3 NOT promoted" in out and "auc: challenger" in out and "change +0.0000" in out


def test_personal_columns_stay_out_of_the_model_and_of_mlflow(tmp_path, monkeypatch, capsys):
    from mlflow import MlflowClient

    from pipelines.cli import main

    frame = _customers(1200, seed=5)
    rng = np.random.default_rng(5)
    personal = {
        "surname": rng.choice(LAST, len(frame)),  # by its header
        "reach": [f"{rng.choice(FIRST).lower()}.{i}@example.org" for i in range(len(frame))],  # by its values
        "holder": [  # full names, mostly distinct
            f"{rng.choice(FIRST)} {rng.choice(LAST)}{rng.choice(['', 'son', 'field', 'ley', 'ton', 'wood'])}"
            for _ in range(len(frame))
        ],
    }
    frame = frame.assign(**personal, postcode=rng.integers(1000, 1100, len(frame)))
    balance = (frame["x1"] * 100).round(2).astype(str)
    frame["balance"] = balance.where(rng.uniform(size=len(frame)) > 0.02, " ")  # numbers with a few blanks
    frame = pd.concat([frame, frame.iloc[:50]], ignore_index=True)  # 50 customers on two rows
    path = tmp_path / "contacts.csv"
    frame.to_csv(path, index=False)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("PM_TUNE_TRIALS", "0")  # no hyperparameter search: these tests are about the table
    monkeypatch.chdir(tmp_path)

    assert main(["train", "--table", str(path), *TABLE_ARGS]) == 2
    assert "id column 'cust' repeats 50 ids over 50 extra rows (e.g. '" in capsys.readouterr().err
    argv = ["train", "--table", str(path), *TABLE_ARGS, "--group-by-id", "--allow-column", "postcode"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert (
        "personal data: left out of the features: 'surname' (names: column name), 'reach' (e-mail addresses: "
        "100% of its values look like e-mail addresses), 'holder' (names: 100% of its values look like personal "
        "names" in out
    )
    assert (
        "used as features because allowed (--allow-column): 'postcode' (street addresses: column name)" in out
    )
    assert "numbers stored as text, read as numbers (blank values as missing): 'balance' (" in out
    assert "each id's rows kept on one side of the split (--group-by-id)" in out
    assert "split (stratified, each 'cust' on one side)" in out

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run_id = out.split("mlflow run id: ")[1].split()[0]
    features = json.loads(Path(client.download_artifacts(run_id, "evaluation/features.json")).read_text())
    assert features["features"] == ["x1", "x2", "x3", "noise", "tier", "region", "postcode", "balance"]
    assert "balance" not in features["categories"]
    assert client.get_run(run_id).data.params["run.personal_left_out"] == '["surname", "reach", "holder"]'
    example = json.loads(next((tmp_path / "artifacts").rglob("input_example.json")).read_text())
    assert example["columns"] == features["features"]
    raw = frame[features["features"]].assign(balance=pd.to_numeric(frame["balance"], errors="coerce"))
    assert not {_row(r) for r in raw.to_numpy()} & {_row(r) for r in example["data"]}
    artifacts = tmp_path / "artifacts"
    logged = "\n".join(
        f.read_bytes().decode("latin-1")
        for f in artifacts.rglob("*")
        if f.is_file() and "code" not in f.relative_to(artifacts).parts  # the platform's own source
    )
    for column, values in personal.items():
        leaked = [v for v in set(values) if v in logged]
        assert not leaked, f"{column} values in MLflow artifacts: {leaked[:3]}"
