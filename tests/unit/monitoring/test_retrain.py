"""When the monitor asks for retraining (``jobs.monitoring.retrain_requests``): an alert on a run of a model's current
champion, measured after the model's newest version was registered, asks once; real LightGBM and MLflow on a tmp
SQLite store, real model_monitoring rows in a tmp SQLite campaign database."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pandas as pd
import pytest

from pipelines.campaigns import store_schema
from pipelines.config import Settings
from pipelines.data import storage
from pipelines.jobs.monitoring import retrain_requests
from pipelines.models.registry import train_and_register
from pipelines.models.tables import split_frame
from pipelines.monitoring.store import write_monitoring
from tests.unit.models.test_propensity import CATEGORICAL, FAST, FEATURES, make_frame

RUN = "campaign_scoring__2025-12-01__reactivation-uplift"


def _register(settings: Settings, name: str) -> str:
    train, valid, test = split_frame(make_frame(), "churned", seed=1)
    result = train_and_register(
        train,
        valid,
        test,
        features=FEATURES,
        categorical=CATEGORICAL,
        label="churned",
        config=replace(FAST, model_name=name),
        tracking_uri=settings.mlflow_tracking_uri,
        experiment=name,
        progress=None,
    )
    return result.version


def _alert(settings: Settings, version: str, level: str = "alert") -> None:
    rows = pd.DataFrame(
        {
            "metric": ["psi", "psi"],
            "subject": ["score", "spend_30d"],
            "value": [0.02, 0.31],
            "reference": [float("nan")] * 2,
            "level": ["ok", level],
        }
    )
    engine = store_schema.make_engine(settings.database_url)
    write_monitoring(
        engine,
        run_id=RUN,
        kind="stability",
        campaign="reactivation-uplift",
        model_name="response",
        model_version=version,
        as_of=date(2025, 12, 1),
        rows=rows,
    )


@pytest.fixture
def settings(bank, tmp_path) -> Settings:
    # the session's bank only gives the lake's end (the date a retraining trains as of)
    return Settings(
        data_dir=bank, mlruns_dir=tmp_path / "mlruns", database_url=f"sqlite:///{tmp_path / 'c.db'}"
    )


def test_an_alert_on_the_champion_asks_once_and_a_warning_never(settings):
    version = _register(settings, "response")
    assert retrain_requests(settings, progress=None) == {}  # nothing measured; no churn model at all
    _alert(settings, version, level="warn")
    assert retrain_requests(settings, progress=None) == {}
    _alert(settings, version)  # replaces the run's stability rows: now an alert
    lake_end = storage.lake_end(settings.lake_dir)
    assert retrain_requests(settings, "2099-01-01", progress=None) == {
        "response": {
            "reason": f"drift: psi of spend_30d 0.310 in run {RUN}",
            "run_id": RUN,
            "as_of": lake_end.isoformat(),  # never past the data
        }
    }
    assert retrain_requests(settings, "2025-06-01", progress=None)["response"]["as_of"] == "2025-06-01"
    _register(settings, "response")  # the retrain: a newer version, promoted or not
    assert retrain_requests(settings, progress=None) == {}
