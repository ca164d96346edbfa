"""The Online Retail worked example (docs/bring-your-own-data.md): a retailer with transactions only runs the whole
loop. The real UCI file is ingested through ``sources/online-retail.yaml``; the wide table holds the transaction
features and records the left-out ones; churn by inactivity and the value model are trained and registered in a
temporary MLflow store; segments are assigned; the ``retail-winback`` campaign of
``sources/online-retail.campaigns/`` writes a scored list with a holdout to a SQLite campaign database, and the
list exports. The steps are called directly, as ``pmp run`` chains them through Airflow (the DAG-level run is
``make run SOURCE=online-retail``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pipelines.config import PROJECT_ROOT, Settings
from pipelines.data import storage
from pipelines.data.ingest import ingest_source
from pipelines.data.mapping import load_mapping
from pipelines.features.catalogue import ATTRIBUTE_NAMES, FEATURE_NAMES, left_out_features

SHARED = PROJECT_ROOT.parent / "shared" / "data"
CAMPAIGN = "retail-winback"
# The file ends on 2011-12-09: the last whole month is November, so the run is as of 1 December 2011.
AS_OF = "2011-12-01"
ABSENT = ("app_events", "balances", "campaign_contacts", "responses")

pytestmark = pytest.mark.skipif(
    not (SHARED / "online_retail.csv.gz").is_file(),
    reason=f"the real Online Retail file is not there ({SHARED}/online_retail.csv.gz absent)",
)


@pytest.fixture(scope="module")
def loop(tmp_path_factory) -> dict:
    """The whole loop once: ingest, the source-data gates, wide table, churn (with the definition ``pmp run``
    chooses for this lake) and value training, one campaign run, one export."""
    from pipelines.campaigns import store_schema
    from pipelines.campaigns.contact_export import export_list
    from pipelines.features.wide_table import read_wide_table
    from pipelines.jobs.campaigns import run_campaign
    from pipelines.jobs.common import build_wide_table, churn_definition, validate_data
    from pipelines.jobs.training import run_training, value_train

    tmp = tmp_path_factory.mktemp("retail")
    settings = Settings(
        home=tmp,
        data_dir=tmp / "data",
        mlruns_dir=tmp / "mlruns",
        campaigns_dir=PROJECT_ROOT / "sources" / "online-retail.campaigns",
    )
    lines: list[str] = []
    ingest = ingest_source(
        load_mapping("online-retail", PROJECT_ROOT / "sources"), settings.data_dir, progress=None
    )
    gate = validate_data(settings, AS_OF, progress=lines.append)
    wide = read_wide_table(build_wide_table(settings, AS_OF, tmp / "wide.parquet", progress=lines.append))
    definition, _why = churn_definition(settings)
    churn = run_training(settings, AS_OF, {"definition": definition}, progress=lines.append)
    value = value_train(settings, AS_OF, progress=lines.append)
    run = run_campaign(settings, CAMPAIGN, AS_OF, progress=lines.append)
    engine = store_schema.make_engine(settings.database_url)
    export = export_list(engine, settings, CAMPAIGN, "latest", tmp / "list.csv")
    return {
        "settings": settings,
        "ingest": ingest,
        "gate": gate,
        "wide": wide,
        "definition": definition,
        "churn": churn,
        "value": value,
        "run": run,
        "engine": engine,
        "export": export,
        "list": pd.read_csv(tmp / "list.csv"),
        "log": "\n".join(lines),
    }


def test_ingest_gives_transactions_and_customers_only(loop):
    lake = loop["settings"].lake_dir
    assert loop["ingest"].tables["transactions"].rows_written == 397_884
    assert len(storage.read_table(lake, "customers", columns=["customer_id"])) == 4_372
    assert not any(storage.has_table(lake, t) for t in ABSENT)


def test_gates_pass_without_the_optional_tables(loop):
    gate = loop["gate"]
    assert gate["critical_failures"] == 0, gate
    assert "no balances table" in loop["log"]


def test_wide_table_has_the_transaction_features_and_records_the_rest(loop):
    wide = loop["wide"]
    left_out = {e["feature"]: e["reason"] for e in wide.attrs["features_left_out"]}
    assert left_out == left_out_features(ABSENT)
    assert left_out["aum_last"] == "no balances table" and left_out["logins_30d"] == "no app_events table"
    kept = [f for f in FEATURE_NAMES if f not in left_out]
    # The retailer's customers have no home region or city: the audience attributes are there, null.
    assert list(wide.columns) == ["customer_id", *kept, *ATTRIBUTE_NAMES]
    assert wide[list(ATTRIBUTE_NAMES)].isna().all().all()
    for f in (
        "days_since_last_txn",
        "txn_count_180d",
        "spend_180d",
        "avg_ticket_90d",
        "cross_border_share_180d",
    ):
        assert f in wide.columns
    # Customers who signed up before 1 December 2011 (their first invoice), none closed: the file has no closures.
    assert 4_000 < len(wide) < 4_372
    assert wide["txn_count_180d"].gt(0).mean() > 0.5


def test_churn_by_inactivity_is_trained_and_registered(loop):
    import mlflow

    assert loop["definition"] == "inactivity"  # no account was ever closed: closure has nothing to learn
    churn = loop["churn"]
    auc = churn["metrics"]["auc"]
    print(
        f"retail churn (inactivity_90d): test AUC {auc:.4f}, top-decile lift {churn['metrics']['top_decile_lift']:.2f}"
    )
    assert auc > 0.6, churn["metrics"]
    assert churn["promoted"] and churn["version"] == "1"
    uri = loop["settings"].mlflow_tracking_uri
    version = mlflow.MlflowClient(uri, registry_uri=uri).get_model_version_by_alias("churn", "champion")
    run = mlflow.MlflowClient(uri).get_run(version.run_id)
    assert run.data.params["run.label_definition"] == "inactivity_90d"
    # The model was fitted on the features the wide table has, none of the left-out ones.
    assert "inactivity_90d positives" in loop["log"]


def test_value_model_is_trained_against_its_baseline(loop):
    metrics = loop["value"]["metrics"]
    print(
        f"retail value: normalised Gini {metrics['normalised_gini']:.4f} (BG/NBD {metrics['baseline_normalised_gini']:.4f})"
    )
    assert loop["value"]["promoted"]
    assert metrics["normalised_gini"] > 0.5


def test_segments_are_assigned_from_transactions_alone(loop):
    folder = loop["settings"].runs_dir / f"campaign_scoring__{AS_OF}__{CAMPAIGN}"
    segments = storage.read_frame(folder / "segments.parquet")
    assert len(segments) == len(loop["wide"])
    assert segments["rfm_segment"].notna().all() and segments["lifecycle_stage"].notna().all()
    stages = segments["lifecycle_stage"].value_counts()
    for stage in ("new", "active", "dormant", "churned"):
        assert stages[stage] > 50, stages
    assert segments["value_tier"].notna().all()  # the value champion exists
    assert "invalid-customer rule not applied: the lake has no balances table" in loop["log"]


def test_campaign_writes_a_scored_list_with_a_holdout(loop):
    from pipelines.campaigns import store

    run = loop["run"]
    print(
        f"retail-winback: scored {run['scored']:,}, eligible {run['eligible']:,}, excluded {run['excluded']:,} "
        f"{run['excluded_by_reason']}, treatment {run['treatment']}, holdout {run['holdout']}, "
        f"SRM p {run['srm_p_value']:.3f}"
    )
    assert run["scored"] == len(loop["wide"])
    assert run["selected"] == 800 and run["treatment"] + run["holdout"] == 800
    assert 120 <= run["holdout"] <= 200 and run["srm_p_value"] > 0.01
    assert set(run["excluded_by_reason"]) <= {
        "audience:tenure_days >= 90",
        "audience:txn_count_180d >= 2",
        "audience:spend_180d >= 100",
    }, run["excluded_by_reason"]
    assert run["eligible"] + run["excluded"] == run["scored"]
    engine = loop["engine"]
    runs = store.list_runs(engine, CAMPAIGN)
    assert len(runs) == 1 and runs["model_name"].iloc[0] == "churn"
    assert store.group_counts(engine, runs["run_id"].iloc[0]) == {
        "treatment": run["treatment"],
        "holdout": run["holdout"],
    }


def test_the_list_exports(loop):
    export, frame = loop["export"], loop["list"]
    assert export.n_rows == loop["run"]["treatment"] == len(frame)
    assert Path(export.file).is_file() and export.groups == ("treatment",)
    assert frame["score_percentile"].between(1, 100).all()


def test_a_rule_on_a_feature_the_source_cannot_give_fails_naming_its_table(loop):
    import yaml

    from pipelines.campaigns.policy import apply_policy, empty_history
    from pipelines.campaigns.spec import parse_spec
    from pipelines.jobs.audience import read_scored

    settings = loop["settings"]
    data = yaml.safe_load((settings.campaigns_dir / f"{CAMPAIGN}.yaml").read_text(encoding="utf-8"))
    data["audience"].append({"column": "aum_last", "op": ">", "value": 500})
    spec = parse_spec(data)
    scored = read_scored(settings.runs_dir / f"campaign_scoring__{AS_OF}__{CAMPAIGN}")
    customers = storage.read_table(settings.lake_dir, "customers")
    with pytest.raises(
        ValueError, match=r"aum_last is computed from the balances table, which this source lacks"
    ) as err:
        apply_policy(scored, customers, empty_history(), pd.Index([]), spec, AS_OF)
    assert "\n" not in str(err.value)


def test_labels_without_app_events_or_balances(loop):
    from pipelines.features.labels import LabelDefinition, LabelError, make_labels
    from pipelines.features.wide_table import load_tables

    lake, as_of = loop["settings"].lake_dir, pd.Timestamp("2011-09-01")
    tables = load_tables(lake, as_of, extra_until=as_of + pd.Timedelta(days=90))
    assert "app_events" not in tables
    inactive = make_labels(tables, as_of, LabelDefinition("inactivity"))
    txn, end = tables["transactions"], as_of + pd.Timedelta(days=90)
    bought = txn.loc[(txn["txn_ts"] >= as_of) & (txn["txn_ts"] < end), "customer_id"]
    assert not inactive.loc[inactive.index.isin(bought)].any()  # a purchase in the window: not inactive
    assert inactive.loc[~inactive.index.isin(bought)].all()
    with pytest.raises(LabelError, match="'balance_outflow' needs the balances table"):
        make_labels(tables, as_of, LabelDefinition("balance_outflow"))


def test_personas_and_lifecycle_use_what_the_wide_table_has(loop):
    import numpy as np

    from pipelines.models.personas import LOW_ENGAGEMENT, available_inputs, fit_personas
    from pipelines.models.segmentation import LIFECYCLE_OPTIONAL, lifecycle_stages

    wide = loop["wide"]
    assert available_inputs(wide) == ("installment_share_180d", "cross_border_share_180d")
    # Absent app and balance columns read exactly as columns of missing values.
    padded = wide.assign(**{c: np.nan for c in LIFECYCLE_OPTIONAL})
    pd.testing.assert_series_equal(lifecycle_stages(wide), lifecycle_stages(padded))
    # Nothing to cluster on: one persona for everyone, not an error.
    bare = fit_personas(wide[["customer_id", "tenure_days"]])
    assert bare.names == (LOW_ENGAGEMENT,) and set(bare.assign(wide)) == {LOW_ENGAGEMENT}
