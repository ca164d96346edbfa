"""model_monitoring: realised -> retrain_requests -> request_retrain_churn, request_retrain_response.

Daily. Stability is measured by every scoring run itself (``model_monitoring`` rows of kind ``stability``). This
DAG measures what has become due since: the realised AUC, top-decile lift and calibration of each churn scoring run
whose label window has passed in the lake, and of each response or uplift run once read out, and charts each
model's series in MLflow (experiment ``model_monitoring``). Then, for each monitored model, an alert (PSI at or above
``PM_PSI_ALERT`` on a run of the current champion, or realised AUC ``PM_DECAY_ALERT`` below its test AUC) measured
after the model's newest version was registered updates the ``retrain_<model>`` asset with the reason; the model's
training DAG (``churn_training``, ``campaign_models_training``) listens to it besides its schedule and records the
reason with the new MLflow run. ``pmp monitor``
prints the same table.
"""

from __future__ import annotations

from _wiring import START_DATE, as_of, default_args, retrain_asset, run_step
from airflow.sdk import Param, dag, get_current_context, task

# pipelines.jobs.monitoring.RETRAINED (not imported here: the DAG file parses without pandas); their retrain assets
# are listened to by churn_training and campaign_models_training.
RETRAINED = ("churn", "response")


@dag(
    dag_id="model_monitoring",
    description="Realised performance of the scoring runs, and retraining when drift or decay alerts",
    doc_md=__doc__,
    schedule="@daily",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    tags=["monitoring"],
    params={"as_of": Param("", type="string", description="YYYY-MM-DD; empty: the run's logical date")},
)
def model_monitoring():
    @task
    def realised() -> list[dict]:
        from pipelines.jobs import monitoring

        return run_step(monitoring.realised_due, as_of())

    @task
    def retrain_requests(_realised: list[dict]) -> dict:
        from pipelines.jobs import monitoring

        return run_step(monitoring.retrain_requests, as_of())

    def request(model: str):
        @task(task_id=f"request_retrain_{model}", outlets=[retrain_asset(model)])
        def request_retrain(requests: dict) -> str:
            from airflow.sdk.exceptions import AirflowSkipException

            wanted = requests.get(model)
            if not wanted:
                raise AirflowSkipException(f"{model}: no alert asks for retraining")
            get_current_context()["outlet_events"][retrain_asset(model)].extra = {"model": model, **wanted}
            return f"{model}: retraining requested ({wanted['reason']})"

        return request_retrain

    requests = retrain_requests(realised())
    for model in RETRAINED:
        request(model)(requests)


model_monitoring()
