"""campaign_scoring: one DAG per campaign spec in ``campaigns/`` (dag_id ``campaign_scoring__<name>``).

validate -> features -> segment -> score -> select (policy, audience, holdout) -> write -> refresh_online (the
decision service's online snapshot, docs/realtime.md). Scheduled by the spec's
``schedule`` and also triggered when the spec's model gets a new champion (a lookalike campaign, whose model the
run fits on its seed, on its schedule only). Tasks hand each other paths and small
summaries; the work is in ``pipelines.jobs.campaigns``. Only the spec headers (name, model, schedule, description)
are read at parse time (``pipelines.campaigns.spec_header``, which is light): a spec whose header cannot define a
DAG shows as this file's import error naming the spec file and field, and the other campaigns keep their DAGs. The
full spec is validated by the first task, which fails at once (no retries) naming the field. A real-time campaign
(a spec with a ``trigger:``) has no scoring DAG: the decision service decides it event by event.
"""

from __future__ import annotations

from _wiring import START_DATE, CampaignSpecProblems, as_of, default_args, model_asset, run_step
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task

from pipelines.campaigns.spec_header import read_headers
from pipelines.config import load_settings

# Models a campaign run fits itself (on its seed): no champion is published, the DAG runs on its cron only.
FITTED_BY_THE_RUN = ("lookalike",)


def campaign_dag(name: str, model: str, schedule: str, description: str = ""):
    cron = CronTriggerTimetable(schedule, timezone="UTC")

    @dag(
        dag_id=f"campaign_scoring__{name}",
        description=f"Score, select and hold out for campaign {name} ({model} model)",
        doc_md=description or None,
        schedule=(
            cron
            if model in FITTED_BY_THE_RUN
            else AssetOrTimeSchedule(timetable=cron, assets=[model_asset(model)])
        ),
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args=default_args(),
        tags=["campaign", "scoring", model],
        params={"as_of": Param("", type="string", description="YYYY-MM-DD; empty: the run's logical date")},
    )
    def scoring():
        @task
        def validate() -> str:
            from pipelines.jobs import campaigns as campaign_jobs

            return run_step(campaign_jobs.validate_campaign, name, as_of())["as_of"]

        @task
        def features(day: str) -> str:
            from pipelines.jobs import campaigns as campaign_jobs

            return run_step(campaign_jobs.campaign_features, name, day)

        @task
        def segment(day: str, _features: str) -> dict:
            from pipelines.jobs import campaigns as campaign_jobs

            return run_step(campaign_jobs.campaign_segments, name, day)

        @task
        def score(day: str, _segments: dict) -> dict:
            from pipelines.jobs import campaigns as campaign_jobs

            return run_step(campaign_jobs.campaign_score, name, day)

        @task
        def select(day: str, _scores: dict) -> dict:
            from pipelines.jobs import campaigns as campaign_jobs

            return run_step(campaign_jobs.campaign_select, name, day)

        @task
        def write(day: str, _selection: dict) -> dict:
            from pipelines.jobs import campaigns as campaign_jobs

            return run_step(campaign_jobs.campaign_write, name, day)

        @task
        def refresh_online(day: str, _written: dict) -> dict:
            from pipelines.jobs import online

            return run_step(online.refresh_online_snapshot, name, day)

        day = validate()
        refresh_online(day, write(day, select(day, score(day, segment(day, features(day))))))

    return scoring()


_headers, _problems = read_headers(load_settings().campaigns_dir)
for _header in (h for h in _headers if not h.realtime):
    campaign_dag(_header.name, _header.model, _header.schedule, _header.description)
if _problems:
    invalid_specs = CampaignSpecProblems(_problems)
