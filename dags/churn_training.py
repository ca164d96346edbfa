"""churn_training: validate -> features -> labels -> train -> evaluate -> register -> publish_champion.

Monthly, and whenever ``model_monitoring`` updates the ``retrain_churn`` asset (the MLflow run records why it ran:
``trigger`` = schedule, manual, or the monitor's reason). Builds the wide table of each training snapshot (gated by the ``customer_features`` suite), labels them,
fits LightGBM with early stopping on the out-of-time validation snapshot, evaluates on the newest snapshot, logs
and registers the model in MLflow and applies the champion/challenger rule. ``publish_champion`` updates the
``churn_champion`` asset only when the new version was promoted, which triggers the campaign DAGs using churn.
"""

from __future__ import annotations

from _wiring import START_DATE, as_of, default_args, model_asset, retrain_asset, run_step, trigger_reason
from _wiring import publish_champion as publish
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task

MODEL = "churn"


@dag(
    dag_id="churn_training",
    description="Train, evaluate and (maybe) promote the churn model",
    doc_md=__doc__,
    # Monthly, and when model_monitoring asks (drift or decay of the champion past its alert threshold).
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("@monthly", timezone="UTC"), assets=[retrain_asset(MODEL)]
    ),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    tags=["training", MODEL],
    params={
        "as_of": Param("", type="string", description="YYYY-MM-DD; empty: the run's logical date"),
        "definition": Param("closure", enum=["closure", "inactivity", "balance_outflow"]),
        "horizon_days": Param(90, enum=[90, 150]),
        "snapshots": Param(5, type="integer", minimum=3),
    },
)
def churn_training():
    @task
    def validate() -> str:
        from pipelines.jobs.common import validate_data

        return run_step(validate_data, as_of())["as_of"]

    @task
    def features(day: str, params=None) -> dict:
        from pipelines.jobs import training

        return run_step(training.training_features, day, params)

    @task
    def labels(day: str, _features: dict, params=None) -> dict:
        from pipelines.jobs import training

        return run_step(training.training_labels, day, params)

    @task
    def train(day: str, _labels: dict, params=None) -> str:
        from pipelines.jobs import training

        return run_step(training.training_fit, day, params)

    @task
    def evaluate(day: str, _model: str, params=None) -> dict:
        from pipelines.jobs import training

        return run_step(training.training_evaluate, day, params)

    @task
    def register(day: str, _evaluation: dict, params=None) -> dict:
        from pipelines.jobs import training

        return run_step(training.training_register, day, {**dict(params or {}), "trigger": trigger_reason()})

    @task(outlets=[model_asset(MODEL)])
    def publish_champion(registered: dict) -> str:
        return publish(MODEL, registered)

    day = validate()
    publish_champion(register(day, evaluate(day, train(day, labels(day, features(day))))))


churn_training()
