"""What every DAG of the project shares: default arguments (owner, retries, the failure callback), the model assets
and the lake asset, and how a champion is published on them, the settings of a task (with the campaign database from an Airflow
connection when one is named), the wrapper that runs one ``pipelines.jobs`` step inside a task, and how campaign
specs that cannot define a DAG are reported. Not a DAG itself; nothing heavy is imported here."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Asset, get_current_context

from pipelines.config import Settings, load_settings

OWNER = "marketing-data"
START_DATE = datetime(2025, 1, 1, tzinfo=UTC)


def default_args() -> dict[str, Any]:
    """Owner, retries and the failure callback of every task; the retry policy comes from the settings
    (``PM_TASK_RETRIES``, ``PM_RETRY_DELAY_SECONDS``)."""
    settings = load_settings()
    return {
        "owner": OWNER,
        "retries": settings.task_retries,
        "retry_delay": timedelta(seconds=settings.retry_delay_seconds),
        "on_failure_callback": on_task_failure,
    }


def task_settings() -> Settings:
    """The platform's settings inside a task. With ``PM_DATABASE_CONN_ID`` the campaign database URL is that
    Airflow connection's (its secrets stay in Airflow's connection store or secrets backend)."""
    settings = load_settings()
    if not settings.database_conn_id:
        return settings
    from airflow.sdk import Connection

    url = Connection.get(settings.database_conn_id).get_uri()
    return Settings(**{**settings.model_dump(), "database_url": url})


def on_task_failure(context: Any) -> None:
    """Record a failed task (after its last try) in ``runs/failures.jsonl`` and post it to the alert webhook
    (``pipelines.jobs.alerts``); operators hang their alerts on either."""
    from pipelines.jobs.alerts import failure_record, record_failure

    ti = context["ti"]
    record = failure_record(
        dag_id=ti.dag_id,
        task_id=ti.task_id,
        run_id=ti.run_id,
        try_number=getattr(ti, "try_number", None),
        error=context.get("exception"),
        log_url=getattr(ti, "log_url", None),
    )
    for problem in record_failure(load_settings(), record):
        print(f"failure callback: {problem}")


def model_asset(model: str) -> Asset:
    """Updated when a new version of ``model`` becomes champion; the campaign DAGs using it are triggered."""
    return Asset(name=f"{model}_champion", uri=f"model://{model}/champion", group="model")


def lake_asset() -> Asset:
    """Updated when an ingest DAG (``dags/ingest.py``) has written a source into the lake; the event's ``extra``
    names the source, its tables and the months written. The gates and the training DAGs may listen to it."""
    return Asset(name="lake", uri="lake://pmp/lake", group="data")


def retrain_asset(model: str) -> Asset:
    """Updated by ``model_monitoring`` when drift or decay of ``model``'s champion crosses its alert threshold; the
    event's ``extra`` says why (``reason``), on which run and as of when. The model's training DAG listens."""
    return Asset(name=f"retrain_{model}", uri=f"model://{model}/retrain", group="model")


def trigger_reason() -> str:
    """Why this DAG run runs, for the training run to record: the ``reason`` of the retrain events that triggered
    it, else ``schedule`` or ``manual``."""
    context = get_current_context()
    events = context.get("triggering_asset_events") or {}
    reasons = [
        str(e.extra["reason"]) for evs in events.values() for e in evs if (e.extra or {}).get("reason")
    ]
    if reasons:
        return "; ".join(sorted(set(reasons)))
    run_type = str(getattr(context["dag_run"], "run_type", "") or "")
    return "schedule" if "scheduled" in run_type else "manual"


def publish_champion(model: str, registered: dict) -> str:
    """Inside a task whose outlet is ``model_asset(model)``: skip (no asset event) unless the registered version was
    promoted; else the asset event carries the model name, version and MLflow run in ``extra``."""
    from airflow.sdk.exceptions import AirflowSkipException

    if not registered["promoted"]:
        raise AirflowSkipException(f"{model} v{registered['version']} was not promoted; no asset update")
    extra = {"model": model, "version": str(registered["version"]), "alias": "champion", "as_of": as_of()}
    if registered.get("mlflow_run_id"):
        extra["mlflow_run_id"] = str(registered["mlflow_run_id"])
    get_current_context()["outlet_events"][model_asset(model)].extra = extra
    return f"{model} v{registered['version']} is champion"


def as_of() -> str:
    """The run's as-of date: the ``as_of`` param when given, else (an asset-triggered run) the newest ``as_of`` of
    the champion events that triggered it, so a campaign scores as of the data its model was trained on, else the
    logical date, else the run-after date."""
    context = get_current_context()
    given = (context.get("params") or {}).get("as_of")
    if given:
        return str(given)
    events = context.get("triggering_asset_events") or {}
    published = [
        str(e.extra["as_of"]) for evs in events.values() for e in evs if (e.extra or {}).get("as_of")
    ]
    if published:
        return max(published)
    when = context.get("logical_date") or context["dag_run"].run_after
    return when.date().isoformat()


def run_step(step: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a ``pipelines.jobs`` step with the settings first; a failure no retry can fix (bad data, a bad spec,
    an unfair split) fails the task at once instead of being retried."""
    from airflow.sdk.exceptions import AirflowFailException

    from pipelines.jobs.common import permanent_errors

    try:
        return step(task_settings(), *args, progress=print, **kwargs)
    except permanent_errors() as exc:
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc


class CampaignSpecProblems(DAG):
    """A stand-in for the campaign specs that cannot define a DAG. Airflow validates every DAG a file defines before
    it keeps it; this one fails that check with the specs' problems, so they show as the DAG file's import error
    (naming each spec file and field) while the file's other DAGs load as usual."""

    def __init__(self, problems: Sequence[str], **kwargs: Any) -> None:
        super().__init__(
            dag_id="campaign_scoring__invalid_specs", schedule=None, start_date=START_DATE, **kwargs
        )
        object.__setattr__(self, "_spec_problems", tuple(problems))

    def validate(self) -> None:
        from pipelines.campaigns.spec_header import SpecError

        count = len(self._spec_problems)
        raise SpecError(
            f"{count} campaign spec(s) define no DAG until fixed (the other campaigns are not affected):\n"
            + "\n".join(self._spec_problems)
        )
