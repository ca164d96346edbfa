"""DAG integrity: every DAG file imports (the DagBag reports cycles as import errors too), the expected DAGs exist
with owner, tags and retries, the wiring (task chain, schedules, assets) is what the design says, and parsing is
fast and light: the scheduler parses these files every few seconds, so nothing heavy may be imported at the top."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import yaml

from tests.conftest import PROJECT_ROOT

DAGS_DIR = PROJECT_ROOT / "dags"
CAMPAIGNS_DIR = PROJECT_ROOT / "campaigns"
SOURCES_DIR = PROJECT_ROOT / "sources"
DAG_FILES = sorted(p for p in DAGS_DIR.glob("*.py") if not p.name.startswith("_"))
PARSE_BUDGET_SECONDS = 2.0
# Libraries only task bodies may import: each costs seconds at import (see docs/stack notes).
HEAVY = ("mlflow", "lightgbm", "great_expectations", "sklearn", "dask", "distributed", "scipy")

TRAINING_TASKS = ["validate", "features", "labels", "train", "evaluate", "register", "publish_champion"]
CAMPAIGN_TASKS = ["validate", "features", "segment", "score", "select", "write", "refresh_online"]


def campaign_specs() -> dict[str, dict]:
    specs = {}
    for path in sorted([*CAMPAIGNS_DIR.glob("*.yaml"), *CAMPAIGNS_DIR.glob("*.yml")]):
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        if "trigger" not in spec:  # a real-time campaign has no scoring DAG (docs/realtime.md)
            specs[f"campaign_scoring__{spec['name']}"] = spec
    return specs


def source_mappings() -> dict[str, dict]:
    """The ingest DAG each mapping in ``sources/`` defines, by dag_id."""
    mappings = {}
    for path in sorted(SOURCES_DIR.glob("*.yaml")):
        mapping = yaml.safe_load(path.read_text(encoding="utf-8"))
        mappings[f"ingest__{mapping['name']}"] = mapping
    return mappings


@pytest.fixture(scope="module")
def dagbag(airflow_settings):
    from airflow.dag_processing.dagbag import DagBag

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PM_CAMPAIGNS_DIR", str(CAMPAIGNS_DIR))
        mp.setenv("PM_SOURCES_DIR", str(SOURCES_DIR))
        yield DagBag(dag_folder=str(DAGS_DIR))


def test_every_dag_file_imports_without_errors(dagbag):
    assert DAG_FILES, f"no DAG files in {DAGS_DIR}"
    assert not dagbag.import_errors, "\n\n".join(f"{p}:\n{e}" for p, e in dagbag.import_errors.items())
    assert {dag.fileloc for dag in dagbag.dags.values()} == {str(p) for p in DAG_FILES}


def test_the_dagbag_reports_a_cycle_as_an_import_error(airflow_settings, tmp_path):
    """The import-error check above is also the cycle check: a cyclic DAG does not load."""
    from airflow.dag_processing.dagbag import DagBag

    (tmp_path / "cyclic.py").write_text(
        textwrap.dedent(
            """
            from datetime import datetime
            from airflow.sdk import DAG
            from airflow.providers.standard.operators.empty import EmptyOperator

            with DAG("cyclic", start_date=datetime(2025, 1, 1), schedule=None):
                a, b = EmptyOperator(task_id="a"), EmptyOperator(task_id="b")
                a >> b >> a
            """
        )
    )
    bag = DagBag(dag_folder=str(tmp_path))
    assert "cyclic" not in bag.dags
    (error,) = bag.import_errors.values()
    assert "cycle" in error.lower(), error


def test_a_bad_campaign_spec_disables_only_its_own_dag_and_shows_as_an_import_error(
    airflow_settings, tmp_path, monkeypatch
):
    """A spec whose header cannot define a DAG (a name with a space and capitals, an impossible cron line) is an
    import error of the campaign DAG file naming the spec file and the field; the good campaigns keep their
    DAGs and the other DAG files are not affected."""
    import shutil

    from airflow.dag_processing.dagbag import DagBag

    specs = tmp_path / "campaigns"
    specs.mkdir()
    good = sorted(CAMPAIGNS_DIR.glob("*.yaml"))
    for path in good:
        shutil.copy(path, specs / path.name)
    spring = yaml.safe_load(good[0].read_text(encoding="utf-8"))
    (specs / "spring.yaml").write_text(yaml.safe_dump({**spring, "name": "Spring Promo"}), encoding="utf-8")
    (specs / "nightly.yaml").write_text(
        yaml.safe_dump({**spring, "name": "nightly", "schedule": "0 25 * * *"}), encoding="utf-8"
    )
    monkeypatch.setenv("PM_CAMPAIGNS_DIR", str(specs))

    bag = DagBag(dag_folder=str(DAGS_DIR))

    assert set(bag.dags) >= set(campaign_specs()) | {"churn_training", "campaign_readout"}
    assert not any(d.startswith("campaign_scoring__") and d not in campaign_specs() for d in bag.dags)
    (path, error), *others = bag.import_errors.items()
    assert not others and path.endswith("campaign_scoring.py"), bag.import_errors
    assert f"{specs / 'spring.yaml'}: invalid campaign spec" in error, error
    assert "name: must be lowercase letters, digits and hyphens" in error and "'Spring Promo'" in error, error
    assert f"{specs / 'nightly.yaml'}" in error and "schedule: impossible cron line '0 25 * * *'" in error
    assert "the hour field '25' is not valid" in error, error


def test_the_expected_dags_exist(dagbag):
    specs = campaign_specs()
    assert len(specs) >= 2, f"campaign specs in {CAMPAIGNS_DIR}: {sorted(specs)}"
    assert set(dagbag.dags) == {
        "churn_training",
        "value_training",
        "campaign_models_training",
        "campaign_readout",
        "model_monitoring",
        "decision_runs",
        *specs,
        *source_mappings(),
    }


def test_every_dag_has_an_owner_tags_and_retrying_tasks(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.tasks, f"{dag_id} has no tasks"
        for task in dag.tasks:
            assert task.owner and task.owner != "airflow", f"{dag_id}.{task.task_id}: owner {task.owner!r}"
            assert task.retries >= 1, f"{dag_id}.{task.task_id}: retries {task.retries}"
            assert task.retry_delay.total_seconds() > 0, f"{dag_id}.{task.task_id}: no retry delay"
        assert dag.owner not in ("", "airflow"), f"{dag_id}: owner {dag.owner!r}"


def assert_chain(dag, steps: list[str]) -> None:
    """The DAG has exactly these tasks and each step runs after the one before it."""
    assert sorted(dag.task_ids) == sorted(steps), dag.task_ids
    for before, after in zip(steps, steps[1:], strict=False):
        assert before in dag.get_task(after).upstream_task_ids, f"{dag.dag_id}: {before} !-> {after}"
    assert dag.get_task(steps[0]).upstream_task_ids == set()
    assert dag.get_task(steps[-1]).downstream_task_ids == set()


def test_churn_training_chain_ends_in_publishing_the_champion_asset(dagbag):
    from airflow.sdk import Asset

    dag = dagbag.dags["churn_training"]
    assert_chain(dag, TRAINING_TASKS)
    publish = dag.get_task("publish_champion")
    assert publish.outlets == [Asset(name="churn_champion", uri="model://churn/champion", group="model")]
    updating = [t for t in TRAINING_TASKS if dag.get_task(t).outlets]
    assert updating == ["publish_champion"], "only publish_champion updates the asset"


@pytest.mark.parametrize(
    ("dag_id", "model"), [("churn_training", "churn"), ("campaign_models_training", "response")]
)
def test_training_runs_monthly_and_when_the_monitor_asks(dagbag, dag_id, model):
    from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable
    from airflow.sdk.definitions.timetables._cron import CRON_PRESETS

    schedule = dagbag.dags[dag_id].timetable
    assert isinstance(schedule, AssetOrTimeSchedule), type(schedule)
    assert isinstance(schedule.timetable, CronTriggerTimetable)
    assert schedule.timetable.expression == CRON_PRESETS["@monthly"]
    # the asset model_monitoring's request task updates is the one the training listens to
    request = dagbag.dags["model_monitoring"].get_task(f"request_retrain_{model}")
    assert request.outlets == [Asset(name=f"retrain_{model}", uri=f"model://{model}/retrain", group="model")]
    assert flatten_assets(schedule.asset_condition) == request.outlets


def test_model_monitoring_measures_then_decides_then_requests(dagbag):
    from airflow.sdk.definitions.timetables._cron import CRON_PRESETS

    dag = dagbag.dags["model_monitoring"]
    requests = ["request_retrain_churn", "request_retrain_response"]
    assert sorted(dag.task_ids) == sorted(["realised", "retrain_requests", *requests])
    assert dag.get_task("retrain_requests").upstream_task_ids == {"realised"}
    for task_id in requests:
        assert dag.get_task(task_id).upstream_task_ids == {"retrain_requests"}
    assert sorted(t.task_id for t in dag.tasks if t.outlets) == requests
    assert dag.timetable.expression == CRON_PRESETS["@daily"] and dag.max_active_runs == 1


def test_value_training_publishes_the_value_champion_only_from_its_last_task(dagbag):
    from airflow.sdk import Asset

    dag = dagbag.dags["value_training"]
    assert_chain(dag, ["validate", "train", "publish_champion"])
    assert dag.get_task("publish_champion").outlets == [
        Asset(name="value_champion", uri="model://value/champion", group="model")
    ]


def test_campaign_models_training_publishes_each_champion_after_its_model(dagbag):
    from airflow.sdk import Asset

    dag = dagbag.dags["campaign_models_training"]
    chain = ["validate", "history", "response", "uplift", "publish_uplift"]
    assert sorted(dag.task_ids) == sorted([*chain, "publish_response"])
    for before, after in zip(chain, chain[1:], strict=False):
        assert before in dag.get_task(after).upstream_task_ids, f"{before} !-> {after}"
    assert dag.get_task("publish_response").upstream_task_ids == {"response"}
    assert dag.get_task("publish_uplift").upstream_task_ids == {"uplift"}
    for model in ("response", "uplift"):
        assert dag.get_task(f"publish_{model}").outlets == [
            Asset(name=f"{model}_champion", uri=f"model://{model}/champion", group="model")
        ]
    assert [t.task_id for t in dag.tasks if t.outlets] == ["publish_response", "publish_uplift"]
    assert dag.params["window_days"] == 14


def test_campaign_readout_maps_one_readout_task_over_the_due_runs(dagbag):
    dag = dagbag.dags["campaign_readout"]
    assert sorted(dag.task_ids) == ["due_runs", "readout"]
    readout = dag.get_task("readout")
    assert readout.upstream_task_ids == {"due_runs"}
    assert type(readout).__name__.endswith("MappedOperator")  # one task instance per run id
    from airflow.sdk.definitions.timetables._cron import CRON_PRESETS

    assert dag.timetable.expression == CRON_PRESETS["@daily"]


def test_one_ingest_dag_per_source_mapping_updates_the_lake_asset(dagbag):
    from airflow.sdk import Asset
    from airflow.sdk.definitions.timetables.simple import NullTimetable

    mappings = source_mappings()
    assert set(mappings) >= {"ingest__online-retail", "ingest__bank-marketing"}, sorted(mappings)
    for dag_id, mapping in mappings.items():
        dag = dagbag.dags[dag_id]
        assert dag.task_ids == ["ingest"], dag.task_ids
        assert dag.get_task("ingest").outlets == [Asset(name="lake", uri="lake://pmp/lake", group="data")]
        assert {"ingest", mapping["name"]} <= set(dag.tags)
        assert dag.owner == "marketing-data" and dag.get_task("ingest").retries >= 1
        assert dag.params["months"] == ""
        if mapping.get("schedule") is None:  # the examples are run by hand
            assert isinstance(dag.timetable, NullTimetable), dag.timetable
        assert dag.max_active_runs == 1 and not dag.catchup


def test_a_bad_source_mapping_disables_only_its_own_ingest_dag(airflow_settings, tmp_path, monkeypatch):
    """A mapping whose header cannot define a DAG (an impossible cron line) is an import error of the ingest DAG
    file naming the file and the field; a good mapping with a cron schedule gets its DAG on that cron."""
    import shutil

    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.definitions.timetables._cron import CRON_PRESETS

    sources = tmp_path / "sources"
    sources.mkdir()
    shutil.copy(SOURCES_DIR / "online-retail.yaml", sources / "online-retail.yaml")
    retail = yaml.safe_load((SOURCES_DIR / "online-retail.yaml").read_text(encoding="utf-8"))
    (sources / "shop.yaml").write_text(yaml.safe_dump({**retail, "name": "shop", "schedule": "@daily"}))
    (sources / "nightly.yaml").write_text(
        yaml.safe_dump({**retail, "name": "nightly", "schedule": "0 25 * * *"})
    )
    monkeypatch.setenv("PM_SOURCES_DIR", str(sources))
    monkeypatch.setenv("PM_CAMPAIGNS_DIR", str(CAMPAIGNS_DIR))

    bag = DagBag(dag_folder=str(DAGS_DIR / "ingest.py"))

    assert set(bag.dags) == {"ingest__online-retail", "ingest__shop"}
    assert bag.dags["ingest__shop"].timetable.expression == CRON_PRESETS["@daily"]
    ((path, error),) = bag.import_errors.items()
    assert path.endswith("ingest.py") and f"{sources / 'nightly.yaml'}: invalid source mapping" in error, (
        error
    )
    assert "schedule: impossible cron line '0 25 * * *'" in error, error


PUBLISHER = {
    "churn": ("churn_training", "publish_champion"),
    "value": ("value_training", "publish_champion"),
    "response": ("campaign_models_training", "publish_response"),
    "uplift": ("campaign_models_training", "publish_uplift"),
}


def flatten_assets(condition) -> list:
    objects = getattr(condition, "objects", None)
    if objects is None:
        return [condition]
    return [a for o in objects for a in flatten_assets(o)]


@pytest.mark.parametrize("dag_id", sorted(campaign_specs()))
def test_campaign_dags_run_on_their_cron_and_on_a_new_champion(dagbag, dag_id):
    from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable
    from airflow.sdk.definitions.timetables._cron import CRON_PRESETS

    spec = campaign_specs()[dag_id]
    dag = dagbag.dags[dag_id]
    assert_chain(dag, CAMPAIGN_TASKS)
    schedule = dag.timetable
    cron = str(spec.get("schedule", "@monthly"))
    if spec.get("model") == "lookalike":  # its model is fitted by the run: no champion to listen to
        assert isinstance(schedule, CronTriggerTimetable), type(schedule)
        assert schedule.expression == CRON_PRESETS.get(cron, cron)
        assert dag.max_active_runs == 1 and not dag.catchup
        return
    assert isinstance(schedule, AssetOrTimeSchedule), type(schedule)
    assert isinstance(schedule.timetable, CronTriggerTimetable), type(schedule.timetable)
    assert schedule.timetable.expression == CRON_PRESETS.get(cron, cron)
    # The asset the model's training publishes is the one the campaign listens to.
    training, task = PUBLISHER[str(spec.get("model", "churn"))]
    published = dagbag.dags[training].get_task(task).outlets
    assert flatten_assets(schedule.asset_condition) == published
    assert dag.max_active_runs == 1
    assert not dag.catchup


PROBE = r"""
import json, sys, tempfile, time
from pathlib import Path

dags_dir, files = sys.argv[1], sys.argv[2:]
sys.path.append(dags_dir)  # as Airflow's own processes do for the DAG folder
import airflow.sdk
from airflow.dag_processing.dagbag import DagBag

with tempfile.TemporaryDirectory() as empty:
    DagBag(dag_folder=empty)  # Airflow's own lazy imports: not the DAG files' cost
loaded_by_airflow = set(sys.modules)
result = {"seconds": {}, "dag_ids": {}, "errors": {}}
for path in files:
    t0 = time.perf_counter()
    bag = DagBag(dag_folder=path)
    result["seconds"][Path(path).name] = time.perf_counter() - t0
    result["dag_ids"][Path(path).name] = sorted(bag.dag_ids)
    result["errors"].update({str(k): str(v) for k, v in bag.import_errors.items()})
result["modules"] = sorted(sys.modules)
result["added_by_dags"] = sorted({m.split(".")[0] for m in set(sys.modules) - loaded_by_airflow})
print("PROBE " + json.dumps(result))
"""


@pytest.fixture(scope="module")
def cold_parse(airflow_settings, tmp_path_factory) -> dict:
    """Parse each DAG file in a fresh interpreter (after Airflow itself is imported): times and modules."""
    import os

    env = {**os.environ, "PM_CAMPAIGNS_DIR": str(CAMPAIGNS_DIR)}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(DAGS_DIR), *map(str, DAG_FILES)],
        cwd=tmp_path_factory.mktemp("parse"),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith("PROBE ")]
    return json.loads(line.removeprefix("PROBE "))


def test_each_dag_file_parses_within_the_budget(cold_parse):
    assert not cold_parse["errors"], cold_parse["errors"]
    assert set(cold_parse["seconds"]) == {p.name for p in DAG_FILES}
    for name, ids in cold_parse["dag_ids"].items():
        assert ids, f"{name} defines no DAG"
    slow = {n: round(s, 2) for n, s in cold_parse["seconds"].items() if s >= PARSE_BUDGET_SECONDS}
    assert not slow, f"DAG files over the {PARSE_BUDGET_SECONDS} s parse budget: {slow}"


def test_dag_files_import_nothing_heavy_at_module_level(cold_parse):
    top_level = {m.split(".")[0] for m in cold_parse["modules"]}
    heavy = sorted(set(HEAVY) & top_level)
    assert not heavy, f"imported while parsing the DAG files: {heavy}"
    # The DAG files themselves bring in the project's config and little else (no pandas, no pyarrow either).
    assert {"pandas", "pyarrow"}.isdisjoint(cold_parse["added_by_dags"]), cold_parse["added_by_dags"]
