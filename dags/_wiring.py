"""What every DAG of the project shares: default arguments, the model assets, and the wrapper that runs one
``pipelines.jobs`` step inside a task. Not a DAG itself; nothing heavy is imported here."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Asset, get_current_context

from pipelines.config import load_settings

OWNER = "marketing-data"
START_DATE = datetime(2025, 1, 1, tzinfo=UTC)


def default_args() -> dict[str, Any]:
    """Owner and retries for every task; the retry policy comes from the settings (``PM_TASK_RETRIES``,
    ``PM_RETRY_DELAY_SECONDS``)."""
    settings = load_settings()
    return {
        "owner": OWNER,
        "retries": settings.task_retries,
        "retry_delay": timedelta(seconds=settings.retry_delay_seconds),
    }


def model_asset(model: str) -> Asset:
    """Updated when a new version of ``model`` becomes champion; the campaign DAGs using it are triggered."""
    return Asset(name=f"{model}_champion", uri=f"model://{model}/champion", group="model")


def as_of() -> str:
    """The run's as-of date: the ``as_of`` param when given, else the logical date, else the run-after date
    (an asset-triggered run has no logical date)."""
    context = get_current_context()
    given = (context.get("params") or {}).get("as_of")
    if given:
        return str(given)
    when = context.get("logical_date") or context["dag_run"].run_after
    return when.date().isoformat()


def run_step(step: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a ``pipelines.jobs`` step with the settings first; a failure no retry can fix (bad data, a bad spec,
    an unfair split) fails the task at once instead of being retried."""
    from airflow.sdk.exceptions import AirflowFailException

    from pipelines.jobs.common import permanent_errors

    try:
        return step(load_settings(), *args, progress=print, **kwargs)
    except permanent_errors() as exc:
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc
