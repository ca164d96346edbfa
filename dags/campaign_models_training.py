"""campaign_models_training: validate -> history -> response -> uplift -> publish_champions.

Monthly, and whenever ``model_monitoring`` updates the ``retrain_response`` asset (each model's MLflow run records
why it ran: ``run.trigger``). ``history`` joins every campaign contact whose response window has closed (the bank's past campaigns
and, once their responses land in the lake, the platform's own runs) to the gated wide table at its selection
date. ``response`` trains the response model on the treated contacts; ``uplift`` compares the uplift learners
on the validation campaign and judges the best on the newest campaign, against ranking by response score.
Each model updates its champion asset only when its new version was promoted.
"""

from __future__ import annotations

from _wiring import START_DATE, as_of, default_args, model_asset, retrain_asset, run_step, trigger_reason
from _wiring import publish_champion as publish
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task


@dag(
    dag_id="campaign_models_training",
    description="Train, evaluate and (maybe) promote the response and uplift models on the campaign history",
    doc_md=__doc__,
    # Monthly, and when model_monitoring asks (drift of the response champion's scoring runs past the alert).
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("@monthly", timezone="UTC"), assets=[retrain_asset("response")]
    ),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    tags=["training", "response", "uplift"],
    params={
        "as_of": Param("", type="string", description="YYYY-MM-DD; empty: the run's logical date"),
        "window_days": Param(14, type="integer", enum=[7, 14], description="response window in days"),
    },
)
def campaign_models_training():
    @task
    def validate() -> str:
        from pipelines.jobs.common import validate_data

        return run_step(validate_data, as_of())["as_of"]

    @task
    def history(day: str) -> dict:
        from airflow.sdk import get_current_context

        from pipelines.jobs import campaign_models

        window = int(get_current_context()["params"].get("window_days") or 14)
        return run_step(campaign_models.campaign_history, day, window)

    @task
    def response(day: str, _history: dict) -> dict:
        from pipelines.jobs import campaign_models

        return run_step(campaign_models.response_train, day, trigger=trigger_reason())

    @task
    def uplift(day: str, _response: dict) -> dict:
        from pipelines.jobs import campaign_models

        return run_step(campaign_models.uplift_train, day, trigger=trigger_reason())

    @task(outlets=[model_asset("response")])
    def publish_response(registered: dict) -> str:
        return publish("response", registered)

    @task(outlets=[model_asset("uplift")])
    def publish_uplift(registered: dict) -> str:
        return publish("uplift", registered)

    day = validate()
    fitted_response = response(day, history(day))
    publish_response(fitted_response)
    publish_uplift(uplift(day, fitted_response))


campaign_models_training()
