"""One MLflow run per campaign run and data source, whoever writes it: concurrent writers of one key leave exactly
one run, FINISHED; another data source keeps its own; a writer that fails leaves its run FAILED, never RUNNING.
Real MLflow on a SQLite store, the campaign database's write lock on SQLite and on PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from pipelines.config import Settings
from pipelines.jobs.tracking import DATA_SOURCE_TAG, data_source, log_values, replacing_run

WRITERS = 8


def runs_of(settings: Settings, experiment: str, key: dict[str, str]) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(settings.mlflow_tracking_uri)
    found = client.get_experiment_by_name(experiment)
    query = " and ".join(f"tags.{k} = '{v}'" for k, v in sorted(key.items()))
    return client.search_runs([found.experiment_id], query) if found else []


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def settings(request, tmp_path) -> Settings:
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else ""
    return Settings(data_dir=tmp_path / "data", mlruns_dir=tmp_path / "mlruns", database_url=url)


def test_concurrent_writers_of_one_run_leave_exactly_one_finished_mlflow_run(settings):
    key = {"pmp_run_id": "campaign_scoring__2026-01-01__x", DATA_SOURCE_TAG: data_source(settings)}

    def write(i: int) -> str:
        with replacing_run(settings, "tracking-test", key, key["pmp_run_id"], {"writer": str(i)}) as (c, run):
            log_values(c, run, params={"writer": i}, metrics={"selected": 100.0 + i})
        return run

    with ThreadPoolExecutor(WRITERS) as pool:
        written = list(pool.map(write, range(WRITERS)))

    assert len(set(written)) == WRITERS
    (left,) = runs_of(settings, "tracking-test", key)
    assert left.info.status == "FINISHED"
    assert left.info.run_id in written
    assert left.data.params["writer"] == left.data.tags["writer"]  # one writer's values, not a mix

    # Another lake scored for the same date is another run, and does not replace this one.
    other = {**key, DATA_SOURCE_TAG: "another-lake"}
    with replacing_run(settings, "tracking-test", other, key["pmp_run_id"]) as (_, other_run):
        pass
    assert [r.info.run_id for r in runs_of(settings, "tracking-test", other)] == [other_run]
    assert [r.info.run_id for r in runs_of(settings, "tracking-test", key)] == [left.info.run_id]


def test_a_failing_writer_leaves_its_run_failed_not_running(settings):
    key = {"pmp_run_id": "r1", DATA_SOURCE_TAG: data_source(settings)}
    with (
        pytest.raises(RuntimeError, match="disk full"),
        replacing_run(settings, "tracking-test", key, "r1") as (_client, _run),
    ):
        raise RuntimeError("disk full")
    (left,) = runs_of(settings, "tracking-test", key)
    assert left.info.status == "FAILED"
