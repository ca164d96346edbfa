"""The MLflow run that goes with a campaign run or a readout: exactly one per key, whoever writes it and how often.

A key is a set of tags (the run id and the data source it was computed from). :func:`replacing_run` takes the
campaign database's write lock for that key (``store_schema.begin_write``: ``BEGIN IMMEDIATE`` on SQLite, an
advisory lock on PostgreSQL), deletes the key's earlier MLflow runs, creates the new one and yields it; the run is
ended FINISHED when the block succeeds and FAILED when it raises, so none is left RUNNING by an error. Concurrent
writers of one key take turns, so one MLflow run remains; another data folder scored for the same date is another
key and keeps its own run. Everything goes through ``MlflowClient`` with an explicit store: no process-wide MLflow
state is touched, so threads and processes can write side by side.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipelines.config import Settings

DATA_SOURCE_TAG = "pmp_data_source"


def data_source(settings: Settings) -> str:
    """A short, stable name of the lake a run read (a hash of its absolute path)."""
    return hashlib.sha256(str(Path(settings.lake_dir).resolve()).encode("utf-8")).hexdigest()[:16]


def _experiment(client: Any, name: str, tracking_uri: str) -> str:
    """The experiment's id, created (artifacts beside a SQLite store) if missing; a concurrent creator wins."""
    from mlflow.exceptions import MlflowException

    from pipelines.models.registry import _experiment_id

    try:
        return _experiment_id(client, name, tracking_uri, None)
    except MlflowException:
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


@contextmanager
def replacing_run(
    settings: Settings, experiment: str, key: Mapping[str, str], run_name: str, tags: Mapping[str, str] = ()
) -> Iterator[tuple[Any, str]]:
    """Yield ``(client, run_id)`` of a new MLflow run in ``experiment`` tagged with ``key`` (and ``tags``), after
    deleting the earlier runs of the same key, all under the campaign database's write lock for the key. The run
    ends FINISHED, or FAILED when the block raises (the error is re-raised)."""
    from mlflow import MlflowClient
    from mlflow.entities import RunStatus

    from pipelines.campaigns.store_schema import begin_write, make_engine

    uri = settings.mlflow_tracking_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    lock = "mlflow:" + experiment + ":" + ";".join(f"{k}={v}" for k, v in sorted(key.items()))
    engine = make_engine(settings.database_url)
    try:
        with begin_write(engine, lock):
            experiment_id = _experiment(client, experiment, uri)
            query = " and ".join(f"tags.{k} = '{v}'" for k, v in sorted(key.items()))
            for old in client.search_runs([experiment_id], query, max_results=1000):
                client.delete_run(old.info.run_id)
            run = client.create_run(experiment_id, run_name=run_name, tags={**dict(tags), **dict(key)})
            run_id = run.info.run_id
            try:
                yield client, run_id
            except BaseException:
                client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
                raise
            client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))
    finally:
        engine.dispose()


def log_values(client: Any, run_id: str, params: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
    """Params (as text) and metrics of a run in one call."""
    import time

    from mlflow.entities import Metric, Param

    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
        params=[Param(k, str(v)) for k, v in params.items()],
    )
