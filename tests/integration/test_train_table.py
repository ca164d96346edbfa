"""The generic table path on a real campaign data set: UCI Bank Marketing through ``train_table``."""

from __future__ import annotations

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
