"""campaign_readout: due_runs -> readout (one mapped task per run).

Daily. ``due_runs`` lists the platform's campaign runs whose response window has closed and whose contacts and
responses have landed in the lake, and which have no readout yet (param ``campaign_id`` reads out one run or lake
campaign, again if it was already read out). Each ``readout`` stores the run's lift with its interval, SRM
check, lift by decile and segment, funnel and UTM channel quality in ``campaign_results``, a report under
``runs/readout__<run_id>/`` and an MLflow run in the ``campaign-readouts`` experiment. The realised responses are
in the lake, so the next ``campaign_models_training`` learns from them.
"""

from __future__ import annotations

from _wiring import START_DATE, as_of, default_args, run_step
from airflow.sdk import Param, dag, task


@dag(
    dag_id="campaign_readout",
    description="Read out campaign runs after their response window: lift with CI, SRM, deciles, funnel, channels",
    doc_md=__doc__,
    schedule="@daily",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    tags=["campaign", "readout"],
    params={
        "as_of": Param(
            "", type="string", description="YYYY-MM-DD readout date; empty: the run's logical date"
        ),
        "campaign_id": Param(
            "", type="string", description="one run id or lake campaign; empty: all due runs"
        ),
    },
)
def campaign_readout():
    @task
    def due_runs() -> list[str]:
        from airflow.sdk import get_current_context

        from pipelines.jobs import readouts

        given = (get_current_context()["params"].get("campaign_id") or "").strip()
        if given:
            return [given]
        due = run_step(readouts.due_readouts, as_of())
        print(f"{len(due)} run(s) due for a readout: {', '.join(due) or '-'}")
        return due

    @task
    def readout(campaign_id: str) -> dict:
        from pipelines.jobs import readouts

        row = run_step(readouts.readout_campaign, campaign_id, as_of=as_of())
        return {k: row[k] for k in ("campaign_id", "lift_abs", "lift_ci_low", "lift_ci_high", "trustworthy")}

    readout.expand(campaign_id=due_runs())


campaign_readout()
