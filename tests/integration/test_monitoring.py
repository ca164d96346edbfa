"""Model monitoring on synthetic banks whose world moves (``pmp synth --shift``), docs/monitoring.md.

* **No shift:** a churn champion scores twelve monthly snapshots; its score, top features and their leading
  windows never cross the alert threshold (calendar-ageing features are compared at the reference customers' age
  now).
* **Spend** (prices x1.3 from October): the first scoring run after it warns on the 30-day average ticket (the
  leading window of the top feature ``avg_ticket_90d``), and the run two months later alerts as the 90-day
  window fills with new prices; the ``model_monitoring`` DAG (``dag.test()``) turns the alert into a
  ``retrain_churn`` asset event that queues ``churn_training``; the retraining records that reason in MLflow,
  and the new champion's next scoring run is stable again.
* **Dormancy** (the under-35s' dormancy hazard x5 from October): the realised AUC of the run scored at the shift
  falls below the model's test AUC, and a model retrained on post-shift data recovers at least 95 % of its
  pre-shift share of the oracle's AUC.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from pipelines.config import PROJECT_ROOT, Settings
from pipelines.features.labels import LabelDefinition
from pipelines.synthetic.bank import SynthConfig, generate_bank

pytestmark = pytest.mark.slow

CAMPAIGN = "churn-winback"
TRAIN_AT = "2025-10-01"  # the pre-shift champion: trained as the shift begins
SHIFT = "2025-10"
SNAPSHOTS = (
    3  # the fewest training snapshots (train, validation, test): half the fitting time of the default 5
)


def _bank(tmp: Path, months: int, shift: str | None = None) -> Settings:
    data = tmp / "data"
    config = SynthConfig(
        customers=10_000, months=months, seed=7, chunk_size=10_000, shift_month=shift and SHIFT, shift=shift
    )
    generate_bank(config, data, progress=None)
    return Settings(
        home=tmp, data_dir=data, mlruns_dir=tmp / "mlruns", campaigns_dir=PROJECT_ROOT / "campaigns"
    )


def _train(settings: Settings, as_of: str):
    from pipelines.jobs.training import train_churn
    from pipelines.models.propensity import TrainConfig

    return train_churn(
        settings.data_dir,
        tracking_uri=settings.mlflow_tracking_uri,
        as_of=as_of,
        definition=LabelDefinition("closure", 90),
        config=TrainConfig(model_name="churn", seed=42),
        progress=None,
    )


def _months(first: str, count: int) -> list[date]:
    return [d.date() for d in pd.date_range(first, periods=count, freq="MS")]


def _psi(settings: Settings, run_as_of: date) -> pd.Series:
    from pipelines.campaigns import store_schema
    from pipelines.jobs.campaigns import campaign_run_id
    from pipelines.monitoring.store import read_monitoring

    rows = read_monitoring(
        store_schema.make_engine(settings.database_url),
        kind="stability",
        run_id=campaign_run_id(CAMPAIGN, run_as_of),
    )
    psi = rows.loc[rows["metric"] == "psi"]
    return pd.Series(psi["value"].to_numpy(), index=psi["subject"].to_numpy())


def test_twelve_monthly_runs_without_a_shift_raise_no_alert(tmp_path):
    from pipelines.campaigns.score import load_scoring_model, score_customers
    from pipelines.features.wide_table import build_features, load_tables
    from pipelines.jobs.monitoring import load_reference, score_stability

    settings = _bank(tmp_path, months=21)
    _train(settings, TRAIN_AT)
    model = load_scoring_model("churn", settings.mlflow_tracking_uri)
    leading = load_reference(settings.mlflow_tracking_uri, model.run_id)["leading_features"]
    assert leading, "no leading window is monitored: the test would not cover their false alarms"
    worst, worst_leading = {}, {}
    for as_of in _months(TRAIN_AT, 12):
        wide = build_features(load_tables(settings.lake_dir, as_of), as_of)
        folder = tmp_path / f"run-{as_of}"
        folder.mkdir()
        rows = score_stability(settings, model, wide, score_customers(model, wide), folder, as_of)
        assert rows is not None and (folder / "stability.parquet").is_file()
        psi = rows.loc[rows["metric"] == "psi"].set_index("subject")["value"]
        worst[as_of] = (psi.idxmax(), round(float(psi.max()), 3))
        worst_leading[as_of] = round(float(psi[list(leading)].max()), 3)
        assert "alert" not in set(rows["level"]), (as_of, rows.loc[rows["level"] != "ok"].to_dict("records"))
    assert len(worst) == 12
    print("worst PSI per month without a shift:", worst)
    print(f"worst PSI of the leading windows {sorted(leading)}:", worst_leading)


@pytest.fixture(scope="module")
def spend(tmp_path_factory):
    """The spend-shifted bank, its pre-shift champion and four monthly scoring runs of ``churn-winback``."""
    from pipelines.jobs.campaigns import run_campaign

    settings = _bank(tmp_path_factory.mktemp("spend"), months=16, shift="spend")
    _train(settings, TRAIN_AT)
    runs = _months(TRAIN_AT, 4)
    for as_of in runs:
        run_campaign(settings, CAMPAIGN, as_of, progress=None)
    return settings, runs


def test_the_spend_shift_is_flagged_as_its_windows_fill_and_then_alerts(spend):
    from pipelines.jobs.monitoring import monitor_table

    settings, runs = spend
    psi = {as_of: _psi(settings, as_of) for as_of in runs}
    for subject in ("score", "avg_ticket_30d", "avg_ticket_90d"):
        print(f"{subject} PSI by run:", {str(d): round(float(p[subject]), 3) for d, p in psi.items()})
    assert psi[runs[0]].max() < 0.1  # before the new prices: stable
    # The first run after: a month of new prices fills the 30-day average ticket (the 90-day one's leading
    # window), a third of the 90-day one. Warn.
    assert 0.1 <= psi[runs[1]]["avg_ticket_30d"] < 0.25 and psi[runs[1]]["avg_ticket_90d"] < 0.1
    assert 0.1 <= psi[runs[2]]["avg_ticket_90d"] < 0.25  # two months of new prices in the 90 days: warn
    assert psi[runs[3]]["avg_ticket_90d"] >= 0.25  # three: alert
    table = monitor_table(settings, "churn")
    assert list(table["level"]) == ["ok", "warn", "warn", "alert"]
    assert list(table["worst_feature"].iloc[[1, 3]]) == ["avg_ticket_30d", "avg_ticket_90d"]


def test_the_monitoring_dag_asks_churn_training_to_retrain_and_the_retrain_says_why(
    spend, airflow_settings, capsys
):
    from mlflow import MlflowClient

    from pipelines.cli import main
    from pipelines.jobs.campaigns import run_campaign
    from pipelines.jobs.monitoring import retrain_requests
    from pipelines.jobs.training import run_training
    from tests.integration.test_dags import asset_events, make_platform, queued_for, states

    settings, runs = spend
    platform = make_platform(airflow_settings, settings.data_dir, settings.mlruns_dir)
    outcome = platform.run("model_monitoring", runs[-1])
    assert states(outcome) == {
        "realised": "success",
        "retrain_requests": "success",
        "request_retrain_churn": "success",
        "request_retrain_response": "skipped",  # no response champion on this bank
    }
    request = outcome.results["retrain_requests"]["churn"]
    assert request["reason"].startswith("drift: psi of avg_ticket_90d 0.")
    assert request["run_id"] == f"campaign_scoring__{runs[-1]}__{CAMPAIGN}"
    assert [e[:2] for e in asset_events("model://churn/retrain")] == [
        ("model_monitoring", "request_retrain_churn")
    ]
    assert "churn_training" in queued_for("model://churn/retrain")
    # The series is charted in MLflow: one run per model, one step per scoring run, at its as-of date.
    client = MlflowClient(settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name("model_monitoring")
    (series,) = client.search_runs([experiment.experiment_id], "tags.monitored_model = 'churn'")
    history = client.get_metric_history(series.info.run_id, "psi_feature")
    assert [m.step for m in history] == [0, 1, 2, 3]
    assert history[-1].value == pytest.approx(_psi(settings, runs[-1]).drop("score").max())
    assert history[0].timestamp == int(pd.Timestamp(runs[0]).timestamp() * 1000)
    # The run scored at the shift start has matured (90 days by the last run): measured, not alerting.
    assert [r["run_id"] for r in outcome.results["realised"]] == [f"campaign_scoring__{runs[0]}__{CAMPAIGN}"]

    # What churn_training runs on that event (its register step gets the reason from the triggering event).
    lake_end = "2026-05-01"
    registered = run_training(settings, lake_end, {"trigger": request["reason"]}, progress=None)
    run = MlflowClient(settings.mlflow_tracking_uri).get_run(registered["mlflow_run_id"])
    assert run.data.params["run.trigger"] == request["reason"]
    assert registered["promoted"], registered["reasons"]
    # A retrain registered a newer version: the same alert does not ask again.
    assert retrain_requests(settings, progress=None) == {}

    # The new champion's reference is post-shift: its first scoring run is stable.
    run_campaign(settings, CAMPAIGN, lake_end, progress=None)
    after = _psi(settings, date.fromisoformat(lake_end))
    assert after.max() < 0.25, after.sort_values().tail(3).to_dict()

    assert main(["monitor", "--model", "churn", "--data", str(settings.data_dir)]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("20")]
    assert len(lines) == 5 and lines[3].endswith("ALERT") and "avg_ticket_90d" in lines[3]
    assert lines[1].endswith("WARN") and "avg_ticket_30d" in lines[1]
    assert "churn v2" in lines[4] and not lines[4].endswith("ALERT")


def test_dormancy_decays_the_realised_auc_and_a_retrain_recovers_the_oracle_share(tmp_path):
    from pipelines.jobs.campaigns import campaign_run_id, run_campaign
    from pipelines.jobs.monitoring import realised_due

    settings = _bank(tmp_path, months=20, shift="dormancy")
    before = _train(settings, TRAIN_AT)
    share_before = before.metrics["auc"] / before.metrics["oracle_auc"]
    run_campaign(settings, CAMPAIGN, TRAIN_AT, progress=None)  # scored as the shift begins
    measured = realised_due(settings, "2026-01-01", progress=None)
    (first,) = measured
    assert first["run_id"] == campaign_run_id(CAMPAIGN, TRAIN_AT)
    assert before.metrics["auc"] - first["auc"] >= settings.decay_warn, (first, before.metrics["auc"])
    assert first["level"] in ("warn", "alert")

    after = _train(settings, "2026-06-01")  # its test snapshot (2026-03-03) is five months into the shift
    share_after = after.metrics["auc"] / after.metrics["oracle_auc"]
    print(
        f"oracle share before {share_before:.4f} (auc {before.metrics['auc']:.4f}), realised at the shift "
        f"{first['auc']:.4f}, after retraining {share_after:.4f} (auc {after.metrics['auc']:.4f})"
    )
    assert share_after >= 0.95 * share_before
