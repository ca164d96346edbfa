"""Run the project's DAGs through Airflow itself on this machine: ``dag.test()`` against a SQLite metadata database
under ``.airflow/``. ``make run`` (``pmp run``) executes this file; the integration tests import it.

It lives beside the DAGs, not in ``pipelines`` (which never imports Airflow), and imports Airflow only inside its
functions. ``.airflowignore`` keeps the DAG processor from parsing it.

    python dags/_local_run.py [--data DIR] [--as-of YYYY-MM-DD] [--campaign NAME ...]
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pipelines.config import Settings, airflow_environment, load_settings


class DagRunFailed(RuntimeError):
    """A DAG run ended in a state other than success; the message names the failed tasks."""

    def __init__(self, message: str, failed_tasks: list[str] | None = None) -> None:
        super().__init__(message)
        self.failed_tasks = list(failed_tasks or [])


@dataclass(frozen=True)
class TaskOutcome:
    task_id: str
    state: str
    seconds: float


@dataclass(frozen=True)
class DagOutcome:
    dag_id: str
    run_id: str
    state: str
    seconds: float
    tasks: tuple[TaskOutcome, ...]
    results: dict[str, Any]

    def describe(self) -> str:
        lines = [f"{self.dag_id}: {self.state} in {self.seconds:.1f} s"]
        lines += [f"  {t.task_id:<24} {t.state:<10} {t.seconds:6.1f} s" for t in self.tasks]
        return "\n".join(lines)


def prepare(settings: Settings, *, quiet: bool = True) -> None:
    """Point Airflow at this project (environment from :func:`config.airflow_environment`, applied before Airflow
    is first imported) and create or upgrade its metadata database. Values already set in the environment win,
    so ``AIRFLOW_HOME`` or a PostgreSQL metadata database can be given from outside."""
    for key, value in airflow_environment(settings).items():
        os.environ.setdefault(key, value)
    if quiet:
        os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    # GX logs ~200 INFO lines when imported after Airflow has configured logging.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    settings.airflow_home.mkdir(parents=True, exist_ok=True)
    # As Airflow's own processes do: modules beside the DAG files (``dags/_wiring.py``) are importable.
    if str(settings.dags_dir) not in sys.path:
        sys.path.append(str(settings.dags_dir))
    from airflow.utils import db

    db.initdb()


def load_dags(settings: Settings) -> dict[str, Any]:
    """The project's DAGs by id; raises with every import error when a DAG file does not import."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(settings.dags_dir))
    if bag.import_errors:
        detail = "\n".join(f"{path}:\n{err}" for path, err in bag.import_errors.items())
        raise DagRunFailed(f"DAG files failed to import:\n{detail}")
    return dict(bag.dags)


def _xcom(run: Any, task_id: str) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    query = XComModel.get_many(run_id=run.run_id, dag_ids=run.dag_id, task_ids=task_id, key="return_value")
    with create_session() as session:
        row = session.scalars(query).first()
        return None if row is None else XComModel.deserialize_value(row)


def run_dag(settings: Settings, dag_id: str, as_of: date, conf: dict[str, Any] | None = None) -> DagOutcome:
    """Run one DAG with ``dag.test()`` for logical date ``as_of``; raise :class:`DagRunFailed` naming the failed
    tasks unless every task succeeded or was skipped on purpose. Returns each task's state, time and result."""
    dags = load_dags(settings)
    if dag_id not in dags:
        raise DagRunFailed(f"no DAG {dag_id!r}; the project has: {', '.join(sorted(dags))}")
    logical = datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC)
    t0 = time.perf_counter()
    run = dags[dag_id].test(logical_date=logical, run_conf=conf or {"as_of": as_of.isoformat()})
    seconds = time.perf_counter() - t0
    tasks = sorted(run.get_task_instances(), key=lambda ti: (ti.start_date or logical, ti.task_id))
    outcomes = tuple(
        TaskOutcome(
            ti.task_id,
            str(ti.state),
            (ti.end_date - ti.start_date).total_seconds() if ti.start_date and ti.end_date else 0.0,
        )
        for ti in tasks
    )
    outcome = DagOutcome(
        dag_id,
        run.run_id,
        str(run.state),
        seconds,
        outcomes,
        {t.task_id: _xcom(run, t.task_id) for t in outcomes if t.state == "success"},
    )
    if str(run.state) != "success":
        failed = [t.task_id for t in outcomes if t.state == "failed"]
        not_run = [t.task_id for t in outcomes if t.state not in ("success", "skipped", "failed")]
        raise DagRunFailed(
            f"{dag_id} {run.state}: {', '.join(failed) or 'no task'} failed"
            + (f"; not run: {', '.join(not_run)}" if not_run else "")
            + f" (the log above shows why; task logs are under {settings.airflow_home / 'logs'})\n"
            + outcome.describe(),
            failed,
        )
    return outcome


def main(argv: list[str] | None = None) -> int:
    """churn_training, value_training, then every campaign DAG (or the ``--campaign`` ones), then the summary."""
    import argparse

    from pipelines.campaigns.spec import load_specs
    from pipelines.cli import run_summary
    from pipelines.data import storage

    parser = argparse.ArgumentParser(description="the platform's main job through Airflow (dag.test)")
    parser.add_argument("--data", default=None, help="data folder (default PM_DATA_DIR or ./data)")
    parser.add_argument("--as-of", type=date.fromisoformat, default=None, help="run date (default: lake end)")
    parser.add_argument("--campaign", action="append", help="only this campaign (repeatable; default: all)")
    args = parser.parse_args(argv)
    settings = load_settings().with_data_dir(args.data)
    as_of = args.as_of or storage.lake_end(settings.lake_dir)
    known = [s.name for s in load_specs(settings.campaigns_dir)]
    unknown = sorted(set(args.campaign or ()) - set(known))
    if unknown:
        print(
            f"pmp run: error: unknown campaign(s) {', '.join(unknown)}; known: {', '.join(known)}",
            file=sys.stderr,
        )
        return 2
    names = args.campaign or known
    print(
        f"running the platform through Airflow (dag.test) as of {as_of}; Airflow home {settings.airflow_home}"
    )
    prepare(settings)
    try:
        outcomes = [
            run_dag(settings, "churn_training", as_of),
            run_dag(settings, "value_training", as_of),
            run_dag(settings, "campaign_models_training", as_of),
        ]
        print("\n".join(o.describe() for o in outcomes))
        for name in names:
            outcomes.append(run_dag(settings, f"campaign_scoring__{name}", as_of))
            print(outcomes[-1].describe())
        readouts = _read_out(
            settings,
            as_of,
            {o.results["write"]["run_id"]: o.results["write"]["campaign"] for o in outcomes[3:]},
        )
    except DagRunFailed as exc:
        print(f"pmp run: failed: {exc}", file=sys.stderr)
        return 1
    training, valued, models, *campaigns = (o.results for o in outcomes)
    print()
    print(run_summary(settings, training, campaigns, valued, models, readouts))
    return 0


def _read_out(settings: Settings, as_of: date, runs: dict[str, str]) -> list[dict]:
    """On a generated bank, let the synthetic world answer each run (its contacts and responses land in the
    lake), then run ``campaign_readout`` once every window has closed. Returns the stored readouts."""
    from pipelines import jobs
    from pipelines.data import storage
    from pipelines.synthetic.oracle import truth_available

    if not truth_available(settings.data_dir):
        print("no synthetic world beside this lake: the readouts wait for the real response feed")
        return []
    if not runs:
        return []
    for run_id in runs:
        jobs.simulate_responses(settings, run_id, progress=print)
    window = max(jobs.load_campaign(settings, name).response_window_days for name in runs.values())
    print(run_dag(settings, "campaign_readout", as_of + timedelta(days=window + 1)).describe())
    return [storage.read_json(settings.runs_dir / f"readout__{run_id}" / "readout.json") for run_id in runs]


if __name__ == "__main__":
    sys.exit(main())
