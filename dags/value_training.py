"""value_training: validate -> train (value model vs the BG/NBD baseline, registry, promotion) -> publish_champion.

Monthly. ``publish_champion`` updates the ``value_champion`` asset only when the new version was promoted; the
campaign DAGs read the value champion for their value tiers on their next run.
"""

from __future__ import annotations

from _wiring import START_DATE, as_of, default_args, model_asset, run_step
from _wiring import publish_champion as publish
from airflow.sdk import Param, dag, task

MODEL = "value"


@dag(
    dag_id="value_training",
    description="Train, evaluate and (maybe) promote the customer value model",
    doc_md=__doc__,
    schedule="@monthly",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    tags=["training", MODEL],
    params={"as_of": Param("", type="string", description="YYYY-MM-DD; empty: the run's logical date")},
)
def value_training():
    @task
    def validate() -> str:
        from pipelines.jobs.common import validate_data

        return run_step(validate_data, as_of())["as_of"]

    @task
    def train(day: str) -> dict:
        from pipelines.jobs import training

        return run_step(training.value_train, day)

    @task(outlets=[model_asset(MODEL)])
    def publish_champion(registered: dict) -> str:
        return publish(MODEL, registered)

    publish_champion(train(validate()))


value_training()
