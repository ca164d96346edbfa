"""The local runner (``dags/_local_run.py``, what ``pmp run`` executes) keeps the terminal for the summary a person
reads: everything else the run writes goes to its log file. And Airflow's DAG discovery, as configured by
``config.airflow_environment``, reads ``dags/.airflowignore`` without a deprecated pattern class."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings
from datetime import date
from pathlib import Path

from tests.conftest import PROJECT_ROOT, local_runner

DAGS_DIR = PROJECT_ROOT / "dags"

NOISY_RUN = textwrap.dedent(
    """
    import logging, subprocess, sys, warnings
    from pathlib import Path

    from _local_run import output_to

    with output_to(Path(sys.argv[1])) as say:
        print("a task's output")
        warnings.warn("a library's warning")
        logging.getLogger("some.library").warning("a library's log line")
        subprocess.run([sys.executable, "-c", "print('a subprocess line')"], check=True)
        print("a line to stderr", file=sys.stderr)
        say("the line for the person")
    print("after the run")
    """
)


def test_output_to_sends_everything_but_what_say_prints_to_the_log(tmp_path):
    log = tmp_path / "runs" / "pmp_run__2026-01-01" / "run.log"
    done = subprocess.run(
        [sys.executable, "-c", NOISY_RUN, str(log)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": f"{DAGS_DIR}:{PROJECT_ROOT}", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["the line for the person", "after the run"]
    assert done.stderr == ""
    written = log.read_text()
    for line in (
        "a task's output",
        "UserWarning: a library's warning",
        "a library's log line",
        "a subprocess line",
        "a line to stderr",
        "the line for the person",
    ):
        assert line in written, (line, written)
    assert "after the run" not in written


def test_the_run_log_lives_in_the_runs_folder_under_the_run_id(airflow_settings):
    path = local_runner().run_log_path(airflow_settings, date(2026, 1, 1))
    assert path == airflow_settings.runs_dir / "pmp_run__2026-01-01" / "run.log"


def test_dag_discovery_reads_the_ignore_file_without_a_deprecation_warning(airflow_settings):
    """The glob syntax (Airflow's default) builds pathspec's deprecated ``GitWildMatchPattern`` for every line of
    ``.airflowignore``; the project's environment selects the regexp syntax, and the runner stays ignored."""
    from airflow.configuration import conf
    from airflow.dag_processing.dagbag import DagBag

    assert conf.get("core", "dag_ignore_file_syntax") == "regexp"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bag = DagBag(dag_folder=str(DAGS_DIR))
    assert not [w for w in caught if "GitWildMatchPattern" in str(w.message)]
    assert not bag.import_errors, bag.import_errors
    files = {Path(d.fileloc).name for d in bag.dags.values()}
    assert "_local_run.py" not in files and "churn_training.py" in files
