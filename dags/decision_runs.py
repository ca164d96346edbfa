"""decision_runs: yesterday's real-time decisions of each real-time campaign as a campaign run.

Daily. The decision service (``pmp decide serve``, docs/realtime.md) logs every decision to
``campaign_decisions``; this DAG turns the previous day's treatment and holdout decisions of each campaign with a
``trigger:`` into the run ``campaign_decide__<day>__<campaign>`` (targets, groups, SRM check), which
``campaign_readout`` then reads out after the response window like any batch run. The work is in
``pipelines.jobs.realtime.close_day``.
"""

from __future__ import annotations

from _wiring import START_DATE, as_of, default_args, run_step
from airflow.sdk import Param, dag, task


@dag(
    dag_id="decision_runs",
    description="Yesterday's real-time decisions as campaign runs, ready for their readout",
    doc_md=__doc__,
    schedule="@daily",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    tags=["campaign", "realtime"],
    params={"as_of": Param("", type="string", description="YYYY-MM-DD; empty: the run's logical date")},
)
def decision_runs():
    @task
    def close_day() -> dict:
        from pipelines.jobs import realtime

        return run_step(realtime.close_day, as_of())

    close_day()


decision_runs()
