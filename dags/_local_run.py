"""Run the project's DAGs through Airflow itself on this machine: ``dag.test()`` against a SQLite metadata database
under ``.airflow/``. ``make run`` (``pmp run``) executes this file; the integration tests import it.

It lives beside the DAGs, not in ``pipelines`` (which never imports Airflow), and imports Airflow only inside its
functions. ``.airflowignore`` keeps the DAG processor from parsing it.

    python dags/_local_run.py [--data DIR] [--as-of YYYY-MM-DD] [--campaign NAME ...]

The terminal gets one line per DAG run and the summary; everything else the run writes (the tasks' output,
Airflow's and the libraries' log lines and warnings) goes to ``<data>/runs/pmp_run__<as_of>/run.log``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
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

    def headline(self) -> str:
        return f"{self.dag_id}: {self.state} in {self.seconds:.1f} s"

    def describe(self) -> str:
        lines = [self.headline()]
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
    """The project's DAGs by id; raises with every import error when a DAG file does not import. Campaign specs
    that define no DAG (``_wiring.CampaignSpecProblems``: the DAG file's ``SpecError``) are not such an error here:
    the file's other campaigns load, and ``main`` reports the bad specs itself."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(settings.dags_dir))
    errors = {path: err for path, err in bag.import_errors.items() if not str(err).startswith("SpecError: ")}
    # A bad source mapping costs only its own ingest DAG (dags/ingest.py), which the local run does not use: said,
    # not fatal.
    for path, err in list(errors.items()):
        if str(err).startswith("MappingError: "):
            print(f"warning: {str(err).splitlines()[0].removeprefix('MappingError: ')}: see {path}")
            del errors[path]
    if errors:
        detail = "\n".join(f"{path}:\n{err}" for path, err in errors.items())
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
    """Run one DAG with ``dag.test()`` for the as-of date ``as_of`` (its ``as_of`` param); raise :class:`DagRunFailed` naming the failed
    tasks unless every task succeeded or was skipped on purpose. Returns each task's state, time and result."""
    dags = load_dags(settings)
    if dag_id not in dags:
        raise DagRunFailed(f"no DAG {dag_id!r}; the project has: {', '.join(sorted(dags))}")
    # The as-of date goes in as the run's conf, not as a back-dated logical date: dag.test() starts a run at its
    # logical date, and the UI would show a demo run on last year's data as lasting a year.
    t0 = time.perf_counter()
    run = dags[dag_id].test(
        logical_date=None, run_after=datetime.now(UTC), run_conf=conf or {"as_of": as_of.isoformat()}
    )
    seconds = time.perf_counter() - t0
    tasks = sorted(run.get_task_instances(), key=lambda ti: (ti.start_date or run.run_after, ti.task_id))
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
            + f" (the task's log shows why; task logs are under {settings.airflow_home / 'logs'})\n"
            + outcome.describe(),
            failed,
        )
    return outcome


def run_log_path(settings: Settings, as_of: date) -> Path:
    """Where a run of the platform as of ``as_of`` keeps its log: ``runs/pmp_run__<as_of>/run.log`` (a rerun for
    the same date replaces it, as every run id's outputs are)."""
    from pipelines.runs import make_run_id, run_dir

    return run_dir(settings.runs_dir, make_run_id("pmp_run", as_of)) / "run.log"


@contextmanager
def output_to(path: Path) -> Iterator[Callable[[str], None]]:
    """Send everything this process writes to its stdout and stderr to the file ``path``: the tasks' output,
    Airflow's and the libraries' log lines and warnings (``py.warnings``), and what C code and subprocesses print,
    since the redirection is of the file descriptors. Yields ``say``, which prints a line on the terminal (and into
    the log, where it happened). Both are restored on exit, also when the run fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    terminal = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")

    def say(line: str) -> None:
        print(line, file=terminal, flush=True)
        print(line, flush=True)

    with open(path, "w", encoding="utf-8") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield say
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            terminal.close()


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def main(argv: list[str] | None = None) -> int:
    """churn_training, value_training, campaign_models_training, then every campaign DAG (or the ``--campaign``
    ones), then the summary. churn_training's definition follows the lake (``jobs.common.churn_definition``:
    inactivity when no account was ever closed); campaign_models_training is skipped, with the reason in the
    output, when the lake has no campaign history (a retailer's source).

    A spec that does not load (bad YAML, a bad field) stops only its own campaign: the others run, and the bad
    files are reported by file and field at the start and at the end, with exit code 1."""
    import argparse

    from pipelines.campaigns.spec import load_spec
    from pipelines.campaigns.spec_header import read_each
    from pipelines.cli.summary import run_summary
    from pipelines.data import storage
    from pipelines.jobs.common import churn_definition

    parser = argparse.ArgumentParser(description="the platform's main job through Airflow (dag.test)")
    parser.add_argument("--data", default=None, help="data folder (default PM_DATA_DIR or ./data)")
    parser.add_argument("--as-of", type=date.fromisoformat, default=None, help="run date (default: lake end)")
    parser.add_argument("--campaign", action="append", help="only this campaign (repeatable; default: all)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings().with_data_dir(args.data)
        as_of = args.as_of or storage.lake_end(settings.lake_dir)
    except (ValueError, FileNotFoundError) as exc:
        print(f"pmp run: error: {exc}", file=sys.stderr)
        return 2
    specs, spec_problems = read_each(settings.campaigns_dir, load_spec)
    # Real-time campaigns (a trigger) have no scoring DAG: the decision service decides them (docs/realtime.md).
    known = [s.name for s in specs if s.trigger is None]
    bad_specs = "campaign specs that do not load (their campaigns are not run):\n" + "\n".join(
        f"  {p}" for p in spec_problems
    )
    if spec_problems:
        print(f"pmp run: {bad_specs}", file=sys.stderr)
    unknown = sorted(set(args.campaign or ()) - set(known))
    if unknown:
        print(
            f"pmp run: error: unknown campaign(s) {', '.join(unknown)}; known: {', '.join(known) or 'none'}",
            file=sys.stderr,
        )
        return 2
    names = args.campaign or known
    log_path = run_log_path(settings, as_of)
    print(
        f"running the platform through Airflow (dag.test) as of {as_of}; Airflow home {settings.airflow_home}\n"
        f"the tasks' output goes to {log_path}",
        flush=True,
    )
    with output_to(log_path) as say:
        try:
            prepare(settings)
            definition, why = churn_definition(settings)
            say(f"churn_training: definition {definition} ({why})")
            no_history = _missing_history(settings)
            outcomes: dict[str, DagOutcome] = {}
            for dag_id in (
                "churn_training",
                "value_training",
                "campaign_models_training",
                *(f"campaign_scoring__{name}" for name in names),
                "model_monitoring",  # realised performance that is due, and retraining requests
            ):
                if dag_id == "campaign_models_training" and no_history:
                    say(f"{dag_id}: skipped, {no_history}")
                    continue
                conf = {"as_of": as_of.isoformat()}
                if dag_id == "churn_training":
                    conf["definition"] = definition
                outcomes[dag_id] = run_dag(settings, dag_id, as_of, conf)
                print(outcomes[dag_id].describe())
                say(outcomes[dag_id].headline())
            scoring = [o for d, o in outcomes.items() if d.startswith("campaign_scoring__")]
            readouts = _read_out(
                settings,
                as_of,
                {o.results["write"]["run_id"]: o.results["write"]["campaign"] for o in scoring},
                say,
            )
        except DagRunFailed as exc:
            print(f"pmp run: failed: {exc}", file=sys.stderr)
            failed = exc
        else:
            failed = None
    if failed is not None:
        print(
            f"pmp run: failed: {failed}\n\nthe end of {log_path}:\n{_tail(log_path)}\n\nfull log: {log_path}",
            file=sys.stderr,
        )
        return 1
    training, valued = outcomes["churn_training"].results, outcomes["value_training"].results
    models = outcomes["campaign_models_training"].results if "campaign_models_training" in outcomes else None
    campaigns = [o.results for o in scoring]
    print()
    print(run_summary(settings, training, campaigns, valued, models, readouts))
    print(f"log of the run (task output, Airflow and library messages): {log_path}")
    if spec_problems:
        print(f"pmp run: failed: {bad_specs}", file=sys.stderr)
        return 1
    return 0


def _missing_history(settings: Settings) -> str | None:
    """Why the campaign models (response, uplift) cannot be trained on this lake, or None when they can: they
    learn from past campaigns' contacts and responses, which a source may not have (a retailer's)."""
    from pipelines.data import storage

    absent = [t for t in ("campaign_contacts", "responses") if not storage.has_table(settings.lake_dir, t)]
    if not absent:
        return None
    return f"the lake has no {' and no '.join(absent)} table (no campaign history to learn response or uplift from)"


def _read_out(
    settings: Settings, as_of: date, runs: dict[str, str], say: Callable[[str], None] = print
) -> list[dict]:
    """On a generated bank, let the synthetic world answer each run (its contacts and responses land in the
    lake), then run ``campaign_readout`` once every window has closed. Returns the stored readouts."""
    from pipelines.data import storage
    from pipelines.jobs.common import load_campaign
    from pipelines.jobs.readouts import simulate_responses
    from pipelines.synthetic.oracle import truth_available

    if not truth_available(settings.data_dir):
        say("no synthetic world beside this lake: the readouts wait for the real response feed")
        return []
    if not runs:
        return []
    for run_id in runs:
        simulate_responses(settings, run_id, progress=print)
    window = max(load_campaign(settings, name).response_window_days for name in runs.values())
    outcome = run_dag(settings, "campaign_readout", as_of + timedelta(days=window + 1))
    print(outcome.describe())
    say(outcome.headline())
    return [storage.read_json(settings.runs_dir / f"readout__{run_id}" / "readout.json") for run_id in runs]


if __name__ == "__main__":
    sys.exit(main())
