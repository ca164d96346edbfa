"""Whole DAGs through Airflow itself (``dag.test()``, via ``dags/_local_run.py``'s ``run_dag``) on a small bank.

churn_training trains, registers and promotes a champion and publishes the ``churn_champion`` asset; an unchanged
retrain is registered but not promoted and publishes nothing. The campaign DAG then scores with that champion and
writes a fair, audited run to the campaign database (SQLite and a real PostgreSQL); a rerun for the same date
replaces the run instead of adding to it. A lake with a critical data-quality fault fails the run at ``validate``
at once (no retry) and writes nothing.

Tasks read the platform's settings from the environment at run time, so each run sets ``PM_*`` and
``MLFLOW_TRACKING_URI`` for its data, store and database (``Platform.run``).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import func, select

from pipelines.campaigns import store, store_schema
from pipelines.config import Settings, airflow_environment
from pipelines.data import storage
from pipelines.jobs import campaign_models, readouts
from pipelines.jobs.campaigns import campaign_run_id
from pipelines.jobs.common import load_campaign
from pipelines.jobs.training import training_run_id
from pipelines.synthetic.bank import SynthConfig, generate_bank
from tests.conftest import PROJECT_ROOT, local_runner

airflow_local = local_runner()

pytestmark = pytest.mark.slow

# Smallest bank whose training snapshots clear the 500-positive label gate with margin (≈ 1,100 positives in the
# three training snapshots at 10k customers; ≈ 870 at 8k).
SMALL_BANK = SynthConfig(customers=10_000, months=12, seed=7, chunk_size=10_000)
DIRTY_BANK = SynthConfig(customers=2_000, months=4, seed=11, chunk_size=1_000, dirty=True)
CAMPAIGN = "churn-winback"
CAMPAIGN_DAG = f"campaign_scoring__{CAMPAIGN}"
CHAMPION_URI = "model://churn/champion"
TRAINING_TASKS = ["validate", "features", "labels", "train", "evaluate", "register", "publish_champion"]
CAMPAIGN_TASKS = ["validate", "features", "segment", "score", "select", "write", "refresh_online"]


@dataclass(frozen=True)
class Platform:
    """One data folder, MLflow store and campaign database, run through the session's Airflow home."""

    settings: Settings
    # Variables the tasks see besides the settings' own (an Airflow connection, say), overriding them.
    extra_env: tuple[tuple[str, str], ...] = ()

    @contextmanager
    def environment(self) -> Iterator[None]:
        platform_vars = {
            k: v for k, v in airflow_environment(self.settings).items() if not k.startswith("AIRFLOW")
        }
        with pytest.MonkeyPatch.context() as mp:
            for key, value in {**platform_vars, **dict(self.extra_env)}.items():
                mp.setenv(key, value)
            yield

    def run(self, dag_id: str, as_of: date) -> airflow_local.DagOutcome:
        with self.environment():
            return airflow_local.run_dag(self.settings, dag_id, as_of)

    def engine(self):
        engine = store_schema.make_engine(self.settings.database_url)
        store_schema.ensure_schema(engine)
        return engine


def make_platform(
    airflow_settings: Settings, data_dir: Path, mlruns_dir: Path, database_url: str = ""
) -> Platform:
    return Platform(
        Settings(
            data_dir=data_dir,
            mlruns_dir=mlruns_dir,
            database_url=database_url,
            campaigns_dir=PROJECT_ROOT / "campaigns",
            airflow_home=airflow_settings.airflow_home,
            task_retries=2,  # retries are configured: the failure test checks none is spent on bad data
            retry_delay_seconds=1,
        )
    )


def states(outcome: airflow_local.DagOutcome) -> dict[str, str]:
    return {t.task_id: t.state for t in outcome.tasks}


def asset_events(uri: str) -> list[tuple[str, str, str]]:
    """(source dag, source task, source run) of every event of the asset in Airflow's metadata database."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    query = (
        select(AssetEvent.source_dag_id, AssetEvent.source_task_id, AssetEvent.source_run_id)
        .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
        .where(AssetModel.uri == uri)
        .order_by(AssetEvent.id)
    )
    with create_session() as session:
        return [tuple(r) for r in session.execute(query).all()]


def queued_for(uri: str) -> set[str]:
    """DAGs the scheduler would trigger because the asset changed (Airflow's asset_dag_run_queue)."""
    from airflow.models.asset import AssetDagRunQueue, AssetModel
    from airflow.utils.session import create_session

    query = (
        select(AssetDagRunQueue.target_dag_id)
        .join(AssetModel, AssetModel.id == AssetDagRunQueue.asset_id)
        .where(AssetModel.uri == uri)
    )
    with create_session() as session:
        return set(session.scalars(query).all())


def task_instances(dag_id: str, as_of: date) -> tuple[dict[str, Any], str]:
    """The task instances (by task id) and the run id of the DAG's latest run for that as-of date."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        runs = [
            r
            for r in session.scalars(select(DagRun).where(DagRun.dag_id == dag_id))
            if (r.conf or {}).get("as_of") == as_of.isoformat()
        ]
        assert runs, f"no {dag_id} run as of {as_of}"
        latest = max(runs, key=lambda r: r.run_after)
        # The as-of date is the run's conf, not a back-dated logical date: the run starts when it is started.
        assert latest.logical_date is None and latest.start_date.date() >= date.today(), latest
        tis = {ti.task_id: ti for ti in latest.get_task_instances(session=session)}
        session.expunge_all()
        return tis, latest.run_id


def asset_event_extras(uri: str) -> list[dict]:
    """The ``extra`` of every event of the asset, oldest first."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    query = (
        select(AssetEvent.extra)
        .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
        .where(AssetModel.uri == uri)
        .order_by(AssetEvent.id)
    )
    with create_session() as session:
        return list(session.scalars(query).all())


def tries_archived(dag_id: str, run_id: str) -> list[tuple[str, int]]:
    """Earlier tries Airflow archived for the run (one row per retried attempt)."""
    from airflow.models.taskinstancehistory import TaskInstanceHistory
    from airflow.utils.session import create_session

    query = select(TaskInstanceHistory.task_id, TaskInstanceHistory.try_number).where(
        TaskInstanceHistory.dag_id == dag_id, TaskInstanceHistory.run_id == run_id
    )
    with create_session() as session:
        return [tuple(r) for r in session.execute(query).all()]


def table_rows(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (
                store_schema.campaign_runs,
                store_schema.campaign_targets,
                store_schema.campaign_exclusions,
            )
        }


def mlflow_client(tracking_uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trained:
    platform: Platform
    as_of: date
    first: airflow_local.DagOutcome
    events_before: list
    events_after_first: list
    queued_after_first: set[str]


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Path:
    """Data folder of a fresh small bank (lake/ and truth/); the training runs write their runs/ here."""
    out = tmp_path_factory.mktemp("dag_bank")
    generate_bank(SMALL_BANK, out, progress=None)
    return out


@pytest.fixture(scope="module")
def trained(airflow_settings, lake, tmp_path_factory) -> Trained:
    """One churn_training run on the small bank; its MLflow store holds the champion the campaign tests use."""
    platform = make_platform(airflow_settings, lake, tmp_path_factory.mktemp("mlruns"))
    as_of = storage.lake_end(platform.settings.lake_dir)
    before = asset_events(CHAMPION_URI)
    first = platform.run("churn_training", as_of)
    return Trained(platform, as_of, first, before, asset_events(CHAMPION_URI), queued_for(CHAMPION_URI))


def test_churn_training_registers_promotes_and_publishes_the_champion(trained):
    assert list(states(trained.first)) == TRAINING_TASKS  # in run order
    assert set(states(trained.first).values()) == {"success"}, trained.first.describe()

    registered = trained.first.results["register"]
    assert registered["promoted"] is True, registered["reasons"]
    assert registered["champion_version"] is None  # the first model of an empty registry
    assert registered["gx_success"] == 1.0 and registered["gx_critical_failures"] == 0.0
    # Better than chance by a wide margin and close to what the generator's ground truth allows.
    assert registered["metrics"]["auc"] > 0.75, registered["metrics"]
    assert registered["auc_to_oracle"] > 0.9, registered
    labels = trained.first.results["labels"]
    # Five snapshots of the active book (about 84% of the customers), enough positives for the label gate.
    assert labels["rows"] > 5 * 0.8 * SMALL_BANK.customers and labels["positives"] >= 500, labels

    client = mlflow_client(trained.platform.settings.mlflow_tracking_uri)
    champion = client.get_model_version_by_alias("churn", "champion")
    assert str(champion.version) == registered["version"]
    assert champion.run_id == registered["mlflow_run_id"]
    run = client.get_run(registered["mlflow_run_id"])
    assert run.data.params["run.orchestrator_run"] == training_run_id(trained.as_of)
    assert run.data.metrics["test_auc"] == pytest.approx(registered["metrics"]["auc"])
    assert (run.data.metrics["promoted"], run.data.metrics["gx_success"]) == (1.0, 1.0)

    assert trained.first.results["publish_champion"] == f"churn v{registered['version']} is champion"
    _, run_id = task_instances("churn_training", trained.as_of)
    new_events = trained.events_after_first[len(trained.events_before) :]
    assert new_events == [("churn_training", "publish_champion", run_id)]
    # The event says which model version became champion, so a listener can pin it.
    assert asset_event_extras(CHAMPION_URI)[len(trained.events_before)] == {
        "model": "churn",
        "version": registered["version"],
        "alias": "champion",
        "mlflow_run_id": registered["mlflow_run_id"],
        # The campaign runs it triggers score as of the data the model was trained on.
        "as_of": trained.as_of.isoformat(),
    }
    # Both campaign DAGs listen to the asset: the scheduler would now trigger them.
    assert trained.queued_after_first == {
        "campaign_scoring__churn-winback",
        "campaign_scoring__churn-retention-sms",
    }


def test_an_unchanged_retrain_is_registered_but_not_promoted_or_published(trained):
    second = trained.platform.run("churn_training", trained.as_of)

    assert states(second) == {**dict.fromkeys(TRAINING_TASKS, "success"), "publish_champion": "skipped"}
    first, again = trained.first.results["register"], second.results["register"]
    assert again["promoted"] is False
    assert int(again["version"]) == int(first["version"]) + 1
    assert again["champion_version"] == first["version"]
    assert any(r.endswith("FAIL") for r in again["reasons"]), again["reasons"]
    assert again["metrics"]["auc"] == pytest.approx(first["metrics"]["auc"])  # same data, same model
    client = mlflow_client(trained.platform.settings.mlflow_tracking_uri)
    assert str(client.get_model_version_by_alias("churn", "champion").version) == first["version"]
    assert client.get_run(again["mlflow_run_id"]).data.metrics["promoted"] == 0.0
    assert asset_events(CHAMPION_URI) == trained.events_after_first  # no new event


# --------------------------------------------------------------------------------------------------------------


def campaign_platform(trained: Trained, tmp_path: Path, database_url: str, conn_id: str = "") -> Platform:
    """A fresh data folder over the trained lake (symlinked), the trained MLflow store, the given database.

    With ``conn_id`` the tasks get the database as an Airflow connection of that id (``PM_DATABASE_CONN_ID``, the
    connection in an ``AIRFLOW_CONN_*`` variable) while their ``PM_DATABASE_URL`` points at the default SQLite file:
    rows can only reach ``database_url`` through the connection."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "lake").symlink_to(trained.platform.settings.lake_dir, target_is_directory=True)
    values = {
        **trained.platform.settings.model_dump(),
        "data_dir": data.resolve(),
        "database_url": database_url,
    }
    if not conn_id:
        return Platform(Settings(**values))
    import json

    from sqlalchemy import make_url

    url = make_url(database_url)
    connection = {
        "conn_type": "postgres",
        "host": url.host,
        "port": url.port,
        "login": url.username,
        "password": url.password or "",
        "schema": url.database,
        "extra": dict(url.query),
    }
    task_env = (
        ("PM_DATABASE_URL", Settings(data_dir=data.resolve()).database_url),
        ("PM_DATABASE_CONN_ID", conn_id),
        (f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(connection)),
    )
    return Platform(Settings(**values), task_env)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_campaign_scoring_writes_a_fair_audited_run_and_a_rerun_replaces_it(
    trained, tmp_path, request, backend
):
    from pipelines.campaigns.score import check_sample_ratio

    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else ""
    # On PostgreSQL the tasks find the database through an Airflow connection, as a deployment keeps its secrets.
    platform = campaign_platform(trained, tmp_path, url, conn_id="pmp_campaigns" if url else "")
    assert platform.settings.database_url.startswith(backend)
    spec = load_campaign(platform.settings, CAMPAIGN)
    as_of = trained.as_of
    run_id = campaign_run_id(CAMPAIGN, as_of)
    champion = trained.first.results["register"]["version"]

    outcome = platform.run(CAMPAIGN_DAG, as_of)

    assert list(states(outcome)) == CAMPAIGN_TASKS
    assert set(states(outcome).values()) == {"success"}, outcome.describe()
    written = outcome.results["write"]
    assert outcome.results["score"]["model_version"] == champion
    # The decision service's online snapshot now holds this run's customers (docs/realtime.md).
    refreshed = outcome.results["refresh_online"]
    assert (refreshed["run_id"], refreshed["written"]) == (run_id, True) and refreshed["rows"] > 0
    engine = platform.engine()
    try:
        runs = store.list_runs(engine, CAMPAIGN)
        assert len(runs) == 1, runs
        run = runs.iloc[0]
        assert (run.run_id, run.status) == (run_id, "succeeded")
        assert (run.model_name, run.model_version) == ("churn", champion)
        assert pd.Timestamp(run.logical_date).date() == as_of

        targets = store.read_targets(engine, CAMPAIGN, run_id, groups=("treatment", "holdout"))
        counts = targets["target_group"].value_counts().to_dict()
        assert store.group_counts(engine, run_id) == counts
        assert (
            counts["treatment"] + counts["holdout"] == len(targets) == run.n_selected == spec.selection.top_k
        )
        assert (run.n_treatment, run.n_holdout) == (counts["treatment"], counts["holdout"])
        assert targets["customer_id"].is_unique
        assert sorted(targets["rank"]) == list(range(1, len(targets) + 1))
        # The split read back from the database is the planned one (no sample-ratio mismatch).
        srm = check_sample_ratio(counts["treatment"], counts["holdout"], spec.holdout_fraction)
        assert srm.p_value > 0.001, srm
        assert run.srm_p_value == pytest.approx(srm.p_value)
        assert counts["holdout"] / len(targets) == pytest.approx(spec.holdout_fraction, abs=0.03)

        # Segments travel with the targets, and the run's segment mix is stored and sums to the audience.
        for column in ("rfm_segment", "lifecycle_stage", "persona"):
            assert targets[column].notna().all(), column
        mix = store.read_segments(engine, run_id)
        for dim, part in mix.groupby("dimension"):
            assert part["customers"].sum() == len(targets), dim
            assert (part["treatment"] + part["holdout"] == part["customers"]).all()
        assert set(mix["dimension"]) >= {"rfm_segment", "lifecycle_stage", "persona"}

        # Exclusions are audited: every scored customer is either eligible or excluded with a reason, and no
        # excluded customer is a target.
        exclusions = store.read_exclusions(engine, run_id)
        assert len(exclusions) == run.n_excluded == written["excluded"] > 0
        assert run.n_scored == written["scored"] == run.n_eligible + run.n_excluded
        assert exclusions["exclusion_reason"].notna().all()
        assert exclusions["exclusion_reason"].value_counts().to_dict() == written["excluded_by_reason"]
        assert set(exclusions["customer_id"]).isdisjoint(targets["customer_id"])
        customers = storage.read_table(
            platform.settings.lake_dir,
            "customers",
            columns=["customer_id", "do_not_contact", "marketing_opt_out"],
        )
        blocked = customers.loc[customers["do_not_contact"] | customers["marketing_opt_out"], "customer_id"]
        assert len(blocked) > 0
        assert set(blocked).isdisjoint(targets["customer_id"])
        reasons = set(written["excluded_by_reason"])
        assert {"do_not_contact", "opt_out"} <= reasons, reasons

        if platform.extra_env:  # nothing went to the SQLite file the tasks' PM_DATABASE_URL names
            assert not (platform.settings.data_dir / "campaigns.db").exists()
        rows = table_rows(engine)
        assert rows == {
            "campaign_runs": 1,
            "campaign_targets": len(targets),
            "campaign_exclusions": len(exclusions),
        }

        # Rerun of the same campaign for the same date: the run is replaced, not added to.
        again = platform.run(CAMPAIGN_DAG, as_of)
        assert set(states(again).values()) == {"success"}, again.describe()
        assert table_rows(engine) == rows
        assert store.list_runs(engine, CAMPAIGN)["run_id"].tolist() == [run_id]
        retargeted = store.read_targets(engine, CAMPAIGN, run_id, groups=("treatment", "holdout"))
        # The persona model stored by the first run is re-applied: unchanged customers keep their persona.
        key = ["customer_id", "target_group", "rank", "rfm_segment", "lifecycle_stage", "persona"]
        pd.testing.assert_frame_equal(
            retargeted[key].sort_values("customer_id").reset_index(drop=True),
            targets[key].sort_values("customer_id").reset_index(drop=True),
        )
        reexcluded = store.read_exclusions(engine, run_id)
        assert reexcluded["customer_id"].tolist() == exclusions["customer_id"].tolist()
    finally:
        engine.dispose()


def test_a_critical_data_fault_fails_the_campaign_at_validate_without_retrying_or_writing(
    airflow_settings, trained, tmp_path
):
    data = tmp_path / "dirty"
    generate_bank(DIRTY_BANK, data, progress=None)
    # A copy of the trained store: the campaign's checks want a churn champion before they look at the data.
    shutil.copytree(trained.platform.settings.mlruns_dir, tmp_path / "mlruns")
    platform = make_platform(airflow_settings, data, tmp_path / "mlruns")
    as_of = storage.lake_end(platform.settings.lake_dir)
    engine = platform.engine()  # an empty campaign database, so "nothing written" is a row count
    before = table_rows(engine)

    with pytest.raises(airflow_local.DagRunFailed) as failed:
        platform.run(CAMPAIGN_DAG, as_of)

    message = str(failed.value)
    assert f"{CAMPAIGN_DAG} failed" in message, message
    assert re.search(r"^\s+validate\s+failed\b", message, re.MULTILINE), message  # its task table
    tis, run_id = task_instances(CAMPAIGN_DAG, as_of)
    assert {t: str(ti.state) for t, ti in tis.items()} == {
        "validate": "failed",
        **dict.fromkeys(CAMPAIGN_TASKS[1:], "upstream_failed"),
    }
    # Bad data is permanent (AirflowFailException): one try, although two retries are configured.
    assert tis["validate"].max_tries == 2
    assert tis["validate"].try_number == 1
    assert tries_archived(CAMPAIGN_DAG, run_id) == []
    # The gate wrote its report, naming the critical failures, and the campaign database is untouched.
    report = platform.settings.runs_dir / f"validate__{as_of:%Y-%m-%d}" / "validation" / "validation.json"
    gate = storage.read_json(report)
    assert gate["success"] is False and gate["critical_failures"], gate
    assert before == dict.fromkeys(("campaign_runs", "campaign_targets", "campaign_exclusions"), 0)
    assert table_rows(engine) == before
    assert not (platform.settings.runs_dir / campaign_run_id(CAMPAIGN, as_of)).exists()
    engine.dispose()
    # The failure callback recorded the failed task where alerts are hung (runs/failures.jsonl).
    from pipelines.jobs.alerts import read_failures

    (failure,) = read_failures(platform.settings)
    assert (failure["dag_id"], failure["task_id"], failure["run_id"]) == (CAMPAIGN_DAG, "validate", run_id)
    assert failure["error_type"] == "AirflowFailException" and "ValidationError" in failure["error"], failure


# --------------------------------------------------------------------------------------------------------------


def test_uplift_campaign_readout_and_the_next_training_close_the_loop(trained, airflow_settings, tmp_path):
    """campaign_models_training -> campaign_scoring (selecting by uplift, or by the response score when the
    uplift champion found no reliable heterogeneity) -> the world answers -> campaign_readout -> the next
    campaign_models_training learns from the run's realised responses."""
    import shutil

    from mlflow import MlflowClient

    from pipelines.models.uplift_metrics import HETEROGENEITY
    from pipelines.models.uplift_training import champion_verdict

    data = tmp_path / "data"
    for part in ("lake", "truth"):  # a private copy: the world's answer is written into the lake
        shutil.copytree(trained.platform.settings.data_dir / part, data / part)
    platform = make_platform(airflow_settings, data, tmp_path / "mlruns")
    settings, as_of, name = platform.settings, trained.as_of, "reactivation-uplift"
    run_id = campaign_run_id(name, as_of)

    models = platform.run("campaign_models_training", as_of)
    assert set(states(models).values()) == {"success"}, models.describe()  # first versions: both promoted
    first_campaigns = models.results["history"]["campaigns"]

    scored = platform.run(f"campaign_scoring__{name}", as_of)
    assert set(states(scored).values()) == {"success"}, scored.describe()
    verdict = champion_verdict(settings.mlflow_tracking_uri)
    pinned = scored.results["score"]
    if verdict["verdict"] == HETEROGENEITY:
        assert (pinned["selected_by"], pinned["fallback_reason"]) == ("uplift", None)
    else:  # the fallback is taken and says why
        assert pinned["selected_by"] == "response" and verdict["verdict"] in pinned["fallback_reason"]
    written = scored.results["write"]
    # holdout: auto sized the control group by power analysis, and the stored split is the planned one.
    assert "power to detect" in scored.results["select"]["holdout_plan"]
    assert written["holdout"] / written["selected"] == pytest.approx(
        scored.results["select"]["holdout_fraction"], abs=0.01
    )

    # Before the response feed lands nothing is due; then the world answers and the run is read out.
    with platform.environment():
        assert readouts.due_readouts(settings, as_of + pd.Timedelta(days=30)) == []
        world = readouts.simulate_responses(settings, run_id)
        assert readouts.due_readouts(settings, as_of + pd.Timedelta(days=14)) == []  # window still open
        assert readouts.due_readouts(settings, as_of + pd.Timedelta(days=15)) == [run_id]
    readout_day = (pd.Timestamp(as_of) + pd.Timedelta(days=15)).date()
    outcome = platform.run("campaign_readout", readout_day)
    assert set(states(outcome).values()) == {"success"}, outcome.describe()

    engine = platform.engine()
    try:
        results = store.read_results(engine).set_index("campaign_id")
    finally:
        engine.dispose()
    row = results.loc[run_id]
    assert (row.treated_n, row.control_n) == (written["treatment"], written["holdout"])
    assert row.trustworthy and row.lift_ci_low <= row.lift_abs <= row.lift_ci_high
    assert row.true_lift == pytest.approx(world["true_lift"])  # the 14-day window is the whole horizon
    folder = settings.runs_dir / f"readout__{run_id}"
    for name_ in ("report.md", "report.html", "lift_by_decile.png", "funnel.csv", "channel_quality.csv"):
        assert (folder / name_).is_file(), name_
    assert (folder / "report_context.json").is_file()  # what the staff app renders inside its own layout
    report = (folder / "report.md").read_text()
    assert (
        "Lift by score decile" in report and "(lift_by_decile.png)" in report and "Lift by persona" in report
    )
    client = MlflowClient(settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name("campaign-readouts")
    [logged] = client.search_runs([experiment.experiment_id], f"tags.campaign_id = '{run_id}'")
    for metric in ("lift_abs", "lift_ci_low", "lift_ci_high", "lift_p_value", "srm_p_value", "true_lift"):
        assert metric in logged.data.metrics, metric
    assert logged.data.metrics["lift_abs"] == pytest.approx(row.lift_abs)

    # Read out, the run's model is measured on its own outcomes (docs/monitoring.md): the Qini of treatment against
    # the run's holdout for uplift, the treated customers' AUC for the response fallback; once.
    from pipelines.jobs import monitoring
    from pipelines.models.uplift_metrics import qini_coefficient

    with platform.environment():
        (measured,) = monitoring.realised_due(settings, readout_day, progress=None)
        assert monitoring.realised_due(settings, readout_day, progress=None) == []
    assert measured["run_id"] == run_id
    targets = storage.read_frame(settings.runs_dir / run_id / "targets.parquet")
    responses = storage.read_table(settings.lake_dir, "responses")
    hit = set(
        responses.loc[
            (responses["campaign_id"] == run_id) & (responses["event_type"] == "converted"), "customer_id"
        ]
    )
    y = targets["customer_id"].isin(hit).astype(int)
    if pinned["selected_by"] == "uplift":
        treated = (targets["target_group"] == "treatment").astype(int)
        assert measured["qini"] == pytest.approx(qini_coefficient(y, treated, targets["score"]))
    else:
        assert 0.0 < measured["auc"] < 1.0

    # The next training, once the run's window has closed, learns from the run: it is now the newest, out-of-time
    # test campaign. (Called as the DAG's steps after its gate: the generated lake has no transactions after its
    # end, so the DAG's freshness gate rightly stops a run dated after it.)
    after = (pd.Timestamp(as_of) + pd.Timedelta(days=15)).date()
    with platform.environment():
        again = campaign_models.run_campaign_models(settings, after, progress=None)
    campaigns = storage.read_json(campaign_models.models_folder(settings, after) / "history.json")[
        "campaigns"
    ]
    assert campaigns["test"] == [run_id]
    assert campaigns["valid"] == first_campaigns["test"]
    assert client.get_run(again["uplift"]["mlflow_run_id"]).data.tags["lineage.campaigns_test"] == run_id
    assert client.get_run(again["response"]["mlflow_run_id"]).data.tags["lineage.campaigns_test"] == run_id

    # Nothing personal leaked where the loop wrote (issue 17): run folders, reports, MLflow, Airflow's task logs.
    from pipelines.jobs.pii_audit import audit_pii

    audit = audit_pii(settings, progress=None)
    assert audit.hits == [], "\n".join(hit.line() for hit in audit.hits)
    assert audit.files > 20 and audit.runs >= 4 and audit.values > 3 * SMALL_BANK.customers, audit.summary()
