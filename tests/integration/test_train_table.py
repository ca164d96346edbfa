"""The generic table path on a real campaign data set: UCI Bank Marketing through ``train_table``."""

from __future__ import annotations

import pandas as pd
import pytest

from pipelines.models.tables import train_table
from tests.integration import standalone


@pytest.mark.slow
def test_bank_marketing_reaches_auc_080_and_registers_a_champion(shared_data, tmp_path):
    from mlflow import MlflowClient

    path = shared_data / "bank-additional-full.csv.gz"
    if not path.is_file():
        pytest.skip(f"UCI Bank Marketing file absent: {path}")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    lines: list[str] = []
    result = train_table(
        path,
        label="y",
        positive="yes",
        exclude=["duration"],  # known only after the call: it leaks the outcome
        name="bank_marketing",
        seed=42,
        test_size=0.3,
        tracking_uri=uri,
        progress=lines.append,
    )
    assert result.metrics["auc"] >= 0.80, result.summary()
    assert result.metrics["top_decile_lift"] > 3.0, result.summary()
    assert result.metrics["n"] == 12_357  # 30 % of 41,188
    assert result.metrics["base_rate"] == pytest.approx(4_640 / 41_188, abs=0.002)  # stratified
    assert result.promoted and result.version == "1"
    assert "duration" not in result.model.features and len(result.model.features) == 19
    assert "unknown" in result.model.categories["job"]
    assert any("41,188 rows x 21 columns" in line for line in lines)

    run = MlflowClient(tracking_uri=uri).get_run(result.run_id)
    assert run.data.params["run.exclude"] == '["duration"]'
    assert run.data.params["lineage.source_sha256"].startswith("25ef5a7f")
    assert run.data.metrics["test_auc"] == pytest.approx(result.metrics["auc"])

    # A table model loads and predicts without the project (tests/integration/standalone.py).
    standalone.check_standalone(uri, "bank_marketing", tmp_path / "standalone")


@pytest.fixture
def bank_with_contacts(tmp_path):
    """A small lake, and a customer table built from it that still holds a surname and an e-mail column."""
    import numpy as np

    from pipelines.data import storage
    from pipelines.synthetic.bank import SynthConfig, generate_bank

    data = tmp_path / "data"
    generate_bank(SynthConfig(customers=2000, months=3, seed=1), data, progress=None)
    customers = storage.read_table(data / "lake", "customers")
    rng = np.random.default_rng(1)
    limit = customers["credit_limit"].to_numpy()
    table = pd.DataFrame(
        {
            "customer_id": customers["customer_id"],
            "surname": customers["full_name"].str.split().str[-1],
            "email": customers["email"],
            "credit_limit": limit,
            "birth_year": customers["birth_year"],
            "responded": np.where(
                rng.random(len(limit)) < 0.1 + 0.3 * (limit > np.median(limit)), "yes", "no"
            ),
        }
    )
    path = tmp_path / "customers_with_contacts.csv"
    table.to_csv(path, index=False)
    return data, path


@pytest.mark.slow
def test_pmp_train_table_leaves_no_personal_values_in_mlflow(
    bank_with_contacts, tmp_path, monkeypatch, capsys
):
    from pipelines.cli import main
    from pipelines.config import Settings
    from pipelines.jobs.pii_audit import audit_pii

    data, path = bank_with_contacts
    settings = Settings(home=tmp_path, data_dir=data, airflow_home=tmp_path / "airflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", settings.mlflow_tracking_uri)
    monkeypatch.setenv("PM_HOME", str(tmp_path))
    monkeypatch.setenv("PM_TUNE_TRIALS", "0")  # no hyperparameter search: the test is about personal data
    code = main(
        ["train", "--table", str(path), "--label", "responded", "--positive", "yes", "--id", "customer_id",
         "--exclude", "email", "--data", str(data)]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    # the surname is left out by its header (the e-mail is excluded by hand); the model is named after the file
    assert "personal data: left out of the features: 'surname' (names: column name)" in out
    assert "customers_with_contacts version 1 PROMOTED to champion" in out
    result = audit_pii(settings, progress=None)
    assert result.runs >= 1 and result.files > 0
    assert result.hits == [], "\n".join(hit.line() for hit in result.hits)
