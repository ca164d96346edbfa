"""The platform's jobs as steps. Each step takes the settings and ids, reads its inputs from files under the run's
folder (``runs/<run_id>/``), writes its outputs there and returns paths, ids or a small summary dict: what an
Airflow task hands to the next through XCom. The DAGs in ``dags/`` are wiring over these functions, and the CLI
chains them for one-shot runs, so a run behaves the same whichever starts it.

Every step is idempotent for its run id: re-running it replaces its outputs (files are written atomically, the
campaign database write is one transaction).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.config import Settings
from pipelines.data import storage
from pipelines.runs import make_run_id, run_dir

Progress = Callable[[str], None] | None

CAMPAIGN_DAG = "campaign_scoring"
TRAINING_DAG = "churn_training"


def _say(progress: Progress) -> Callable[[str], None]:
    return progress or (lambda _m: None)


def resolve_as_of(settings: Settings, as_of: Any = None) -> date:
    """``as_of`` as a date; None or "" means the end of the lake (the day after its last transaction month)."""
    if as_of in (None, ""):
        return storage.lake_end(settings.lake_dir)
    return pd.Timestamp(as_of).date()


# --------------------------------------------------------------------------------------------------------------
# Shared steps


def validate_data(settings: Settings, as_of: Any = None, progress: Progress = None) -> dict[str, Any]:
    """Run the source-data gates for ``as_of``; raise ``validate.ValidationError`` on a critical failure.

    Returns the report paths and counts. The report lives in ``runs/validate__<as_of>/validation/``, shared by
    every job of that date.
    """
    from pipelines.data.gates import require_valid, validate_lake, write_report

    say = _say(progress)
    as_of = resolve_as_of(settings, as_of)
    report_dir = run_dir(settings.runs_dir, make_run_id("validate", as_of)) / "validation"
    result = validate_lake(settings.lake_dir, as_of, settings.expectations_dir, progress=say)
    json_path, md_path = write_report(result, report_dir)
    say(result.summary())
    require_valid(result)
    return {
        "as_of": as_of.isoformat(),
        "report": str(md_path),
        "report_json": str(json_path),
        "critical_failures": len(result.critical_failures),
        "warnings": len(result.warnings),
    }


def build_wide_table(settings: Settings, as_of: Any, out: Path, progress: Progress = None) -> Path:
    """Build the customer wide table at ``as_of`` (the one feature definition), gate it with the
    ``customer_features`` suite and write it to ``out``."""
    from pipelines.data.gates import require_valid
    from pipelines.features.gate import validate_features
    from pipelines.features.wide_table import build_features, load_tables

    say = _say(progress)
    as_of = resolve_as_of(settings, as_of)
    tables = load_tables(settings.lake_dir, as_of)
    wide = build_features(tables, as_of)
    gate = validate_features(wide, tables["customers"], as_of, settings.expectations_dir)
    say(f"wide table at {as_of}: {len(wide):,} customers x {wide.shape[1] - 1} features; {gate.summary()}")
    require_valid(gate)
    return storage.write_frame(wide, out)


# --------------------------------------------------------------------------------------------------------------
# Campaign scoring: features -> score -> select and hold out -> write


def campaign_run_id(campaign: str, as_of: Any) -> str:
    """``campaign_scoring__<as_of>__<campaign>``: one run per campaign and date."""
    return make_run_id(CAMPAIGN_DAG, as_of, campaign)


def load_campaign(settings: Settings, name: str):
    """The spec ``name`` from the campaigns folder (``campaign.SpecError`` with the known names otherwise)."""
    from pipelines.campaigns.spec import SpecError, load_specs

    specs = {s.name: s for s in load_specs(settings.campaigns_dir)}
    if name not in specs:
        raise SpecError(
            f"no campaign named {name!r} in {settings.campaigns_dir}; known: {', '.join(sorted(specs)) or 'none'}"
        )
    return specs[name]


def validate_campaign(settings: Settings, name: str, as_of: Any = None, progress: Progress = None) -> dict:
    """The campaign's first step: its spec must load (a bad spec fails before any work), then the source-data
    gates of ``as_of`` (:func:`validate_data`)."""
    load_campaign(settings, name)
    return validate_data(settings, as_of, progress)


def _campaign_dir(settings: Settings, name: str, as_of: Any) -> Path:
    return run_dir(settings.runs_dir, campaign_run_id(name, resolve_as_of(settings, as_of)))


def campaign_features(settings: Settings, name: str, as_of: Any = None, progress: Progress = None) -> str:
    """Wide table of the campaign run's date -> ``runs/<run_id>/features.parquet``."""
    load_campaign(settings, name)  # a bad spec fails here, before any work
    out = _campaign_dir(settings, name, as_of) / "features.parquet"
    return str(build_wide_table(settings, as_of, out, progress))


def persona_model_path(settings: Settings) -> Path:
    """Where the persona model lives between runs: fitted once, then re-applied, so a customer whose behaviour
    has not changed keeps the same persona. Delete the file to refit."""
    return settings.data_dir / "segments" / "persona_model.json"


def campaign_segments(settings: Settings, name: str, as_of: Any = None, progress: Progress = None) -> dict:
    """RFM segment, lifecycle stage, persona, value tier and flags of every customer of the wide table ->
    ``segments.parquet``. The value tier needs a ``value`` champion; without one it is left empty."""
    from pipelines.campaigns import spec as cmp
    from pipelines.models import segmentation

    say = _say(progress)
    spec = load_campaign(settings, name)
    as_of = resolve_as_of(settings, as_of)
    folder = _campaign_dir(settings, name, as_of)
    wide = storage.read_frame(folder / "features.parquet")
    invalid = cmp.invalid_customers(
        settings.lake_dir,
        as_of,
        spec.contact_policy.invalid_customer or cmp.InvalidCustomerRule(),
    )
    model_path = persona_model_path(settings)
    known = (
        segmentation.PersonaModel.from_dict(storage.read_json(model_path)) if model_path.is_file() else None
    )
    segments, model = segmentation.assign_segments(wide, invalid_ids=invalid, persona_model=known)
    if known is None:
        storage.write_json_atomic(model_path, model.to_dict())
        say(f"persona model fitted on {len(wide):,} customers and kept in {model_path}")
    value = _predict_value(settings, wide, say)
    if value is not None:
        segments["value_tier"] = segmentation.value_tiers(value).to_numpy()
        segments["predicted_value"] = value.to_numpy()
    else:
        segments["value_tier"] = pd.Series(pd.NA, index=segments.index, dtype="str")
    storage.write_frame(segments, folder / "segments.parquet")
    mix = segments["lifecycle_stage"].value_counts(normalize=True)
    say("lifecycle mix of the base: " + ", ".join(f"{k} {v:.0%}" for k, v in mix.items() if v > 0))
    return {"segments": str(folder / "segments.parquet"), "customers": len(segments)}


def _predict_value(settings: Settings, wide: pd.DataFrame, say: Callable[[str], None]) -> pd.Series | None:
    """Predicted value per customer (indexed like ``wide``) from the ``value`` champion, or None without one."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from pipelines.models import value
    from pipelines.models.propensity import mlflow_store

    uri = settings.mlflow_tracking_uri
    try:
        version = MlflowClient(uri, registry_uri=uri).get_model_version_by_alias("value", "champion")
    except MlflowException:
        say("no value@champion model: value tiers left empty (train one with `pmp train value`)")
        return None
    with mlflow_store(uri):
        pyfunc = mlflow.pyfunc.load_model(f"models:/value/{version.version}")
    model = getattr(pyfunc.unwrap_python_model(), "model", None)
    predicted = value.predict_value(model, wide)
    say(f"value v{version.version}: predicted value of {len(wide):,} customers")
    return pd.Series(np.asarray(predicted, dtype=np.float64), index=wide.index)


def campaign_score(settings: Settings, name: str, as_of: Any = None, progress: Progress = None) -> dict:
    """Score every customer of the wide table with the champion of the campaign's model ->
    ``scores.parquet`` (customer_id, score, decile) and ``model.json`` (the pinned version, and for a campaign
    that selects by uplift, what it fell back to and why)."""
    from pipelines.campaigns.score import score_customers

    say = _say(progress)
    spec = load_campaign(settings, name)
    folder = _campaign_dir(settings, name, as_of)
    run_id = campaign_run_id(name, resolve_as_of(settings, as_of))
    model, note = _scoring_model(settings, spec, run_id)
    if note:
        say(note)
    wide = storage.read_frame(folder / "features.parquet")
    scored = score_customers(model, wide, progress=say)
    storage.write_frame(scored, folder / "scores.parquet")
    pinned = {
        "model_name": model.name,
        "model_version": model.version,
        "model_run_id": model.run_id,
        "selected_by": model.name,
        "fallback_reason": note,
        "salt": f"{spec.salt}:{run_id}",
    }
    storage.write_json_atomic(folder / "model.json", pinned)
    say(f"scored {len(scored):,} customers with {model.name} v{model.version}")
    return {**pinned, "scored": len(scored), "scores": str(folder / "scores.parquet")}


def _scoring_model(settings: Settings, spec: Any, run_id: str):
    """The model a campaign scores with, and a note when it is not the spec's own: a campaign with
    ``model: uplift`` uses the uplift champion only when its verdict is "heterogeneity found"; otherwise (or
    without an uplift champion) it falls back to the spec's ``fallback`` (the response champion, or random)."""
    from pipelines.campaigns.score import RandomScorer, ScoringModel, load_scoring_model

    uri = settings.mlflow_tracking_uri
    if spec.model != "uplift":
        return load_scoring_model(spec.model, uri), None
    from pipelines.models.uplift import HETEROGENEITY
    from pipelines.models.uplift_training import champion_verdict

    champion = champion_verdict(uri)
    if champion is not None and champion["verdict"] == HETEROGENEITY:
        return load_scoring_model("uplift", uri), None
    if champion is None:
        why = "no uplift champion is registered"
    else:
        why = f"uplift v{champion['version']} says {champion['verdict']!r}"
        if None not in (champion["qini"], champion["qini_ci_low"], champion["qini_ci_high"]):
            why += (
                f" (Qini {champion['qini']:.4f}, 95% CI [{champion['qini_ci_low']:.4f}, "
                f"{champion['qini_ci_high']:.4f}])"
            )
    note = f"falling back to {spec.fallback} scores: {why}"
    if spec.fallback == "random":
        return ScoringModel("random", "0", "fallback", "", RandomScorer(f"{spec.salt}:{run_id}")), note
    return load_scoring_model("response", uri), note


def _pinned_model(settings: Settings, folder: Path):
    """The model the score step used (``model.json``), so every step of a run uses the same one."""
    from pipelines.campaigns.score import RandomScorer, ScoringModel, load_scoring_model

    pinned = storage.read_json(folder / "model.json")
    if pinned["model_name"] == "random":
        return ScoringModel("random", "0", "fallback", "", RandomScorer(pinned["salt"]))
    return load_scoring_model(
        pinned["model_name"], settings.mlflow_tracking_uri, version=pinned["model_version"]
    )


def campaign_select(settings: Settings, name: str, as_of: Any = None, progress: Progress = None) -> dict:
    """Contact policy, audience rules, selection, holdout and reason codes -> ``targets.parquet`` and
    ``exclusions.parquet``. Fails the run on a sample-ratio mismatch."""
    from pipelines.campaigns import spec as cmp
    from pipelines.campaigns import store
    from pipelines.campaigns.score import (
        GROUP,
        HOLDOUT,
        TREATMENT,
        assign_holdout,
        check_sample_ratio,
        decile_mix,
        reason_codes,
        require_sample_ratio,
    )
    from pipelines.campaigns.store import SEGMENT_COLUMNS

    say = _say(progress)
    spec = load_campaign(settings, name)
    as_of = resolve_as_of(settings, as_of)
    run_id = campaign_run_id(name, as_of)
    folder = _campaign_dir(settings, name, as_of)
    wide = storage.read_frame(folder / "features.parquet")
    scores = storage.read_frame(folder / "scores.parquet")
    scored = wide.merge(scores, on="customer_id", how="inner", validate="one_to_one")
    segments = storage.read_frame(folder / "segments.parquet")
    scored = scored.merge(segments, on="customer_id", how="left", validate="one_to_one")

    customers = storage.read_table(
        settings.lake_dir, "customers", columns=["customer_id", "do_not_contact", "marketing_opt_out"]
    )
    policy = spec.contact_policy
    lookback = max(
        policy.recent_contact_days, policy.frequency_cap.window_days if policy.frequency_cap else 0
    )
    engine = store.make_engine(settings.database_url)
    store.ensure_schema(engine)
    since = pd.Timestamp(as_of) - pd.Timedelta(days=lookback)
    lake_history = cmp.lake_contact_history(settings.lake_dir, as_of, lookback_days=lookback)
    # Contacts of the platform's own runs reach the lake with the response feed; the database already counts them.
    lake_history = lake_history.loc[~lake_history["campaign"].isin(store.list_runs(engine)["run_id"])]
    history = pd.concat(
        [lake_history, store.contact_history(engine, before=as_of, since=since.date())], ignore_index=True
    )
    invalid = cmp.invalid_customers(settings.lake_dir, as_of, policy.invalid_customer)
    eligible, exclusions = cmp.apply_policy(scored, customers, history, invalid, spec, as_of)
    candidates = eligible
    if storage.read_json(folder / "model.json").get("selected_by") == "uplift":
        # Contact would not help (or would hurt) these customers: eligible, but never selected by uplift.
        hurt = eligible["score"].to_numpy(np.float64) <= 0
        if hurt.any():
            say(f"{int(hurt.sum()):,} eligible customers have an estimated uplift <= 0: not selected")
            candidates = eligible.loc[~hurt].reset_index(drop=True)
    selected = cmp.select_audience(candidates, spec.selection)
    say(
        f"{len(scored):,} scored, {len(exclusions):,} excluded, {len(eligible):,} eligible, "
        f"{len(selected):,} selected ({spec.selection.mode})"
    )
    if selected.empty:
        raise cmp.SpecError(
            f"campaign {name!r}: nobody selected at {as_of} ({len(eligible):,} eligible after the policy); "
            "loosen the audience rules or the selection"
        )

    fraction, holdout_note = spec.holdout_for(len(selected))
    say(f"holdout plan: {holdout_note}")
    selected[GROUP] = assign_holdout(selected, spec.salt, run_id, fraction)
    counts = selected[GROUP].value_counts()
    srm = require_sample_ratio(
        check_sample_ratio(int(counts.get(TREATMENT, 0)), int(counts.get(HOLDOUT, 0)), fraction),
        f"campaign {name!r} run {run_id}",
    )
    model = _pinned_model(settings, folder)
    reasons = reason_codes(model, selected)
    keep = ["customer_id", "score", "decile", "rank", GROUP, *SEGMENT_COLUMNS]
    if "predicted_value" in selected.columns:
        keep.append("predicted_value")
    targets = selected[keep].merge(reasons, on="customer_id", how="left", validate="one_to_one")
    targets["channel"] = spec.channel
    storage.write_frame(targets, folder / "targets.parquet")
    storage.write_frame(exclusions, folder / "exclusions.parquet")
    mix = decile_mix(targets)
    summary = {
        "run_id": run_id,
        "scored": len(scored),
        "eligible": len(eligible),
        "excluded": len(exclusions),
        "excluded_by_reason": {
            str(k): int(v) for k, v in exclusions["exclusion_reason"].value_counts().sort_index().items()
        },
        "selected": len(selected),
        "treatment": srm.treatment,
        "holdout": srm.holdout,
        "srm_p_value": srm.p_value,
        "holdout_fraction": fraction,
        "holdout_plan": holdout_note,
        "max_decile_share_difference": float(mix["difference"].abs().max()),
    }
    storage.write_json_atomic(folder / "selection.json", summary)
    say(f"holdout: {srm.describe()}")
    return summary


def campaign_write(settings: Settings, name: str, as_of: Any = None, progress: Progress = None) -> dict:
    """Write the run to the campaign database in one transaction (replacing an earlier write of the same run),
    then check the stored split against the plan (sample-ratio mismatch fails the run)."""
    from pipelines.campaigns import store
    from pipelines.campaigns.score import GROUP, HOLDOUT, TREATMENT, check_sample_ratio, require_sample_ratio

    say = _say(progress)
    spec = load_campaign(settings, name)
    as_of = resolve_as_of(settings, as_of)
    run_id = campaign_run_id(name, as_of)
    folder = _campaign_dir(settings, name, as_of)
    targets = storage.read_frame(folder / "targets.parquet")
    exclusions = storage.read_frame(folder / "exclusions.parquet")
    selection = storage.read_json(folder / "selection.json")
    pinned = storage.read_json(folder / "model.json")
    record = store.RunRecord(
        run_id=run_id,
        campaign=name,
        logical_date=as_of,
        model_name=pinned["model_name"],
        model_version=pinned["model_version"],
        n_scored=selection["scored"],
        n_eligible=selection["eligible"],
        srm_p_value=selection["srm_p_value"],
        holdout_fraction=selection["holdout_fraction"],
        details={
            "excluded_by_reason": selection["excluded_by_reason"],
            "channel": spec.channel,
            "selected_by": pinned.get("selected_by", pinned["model_name"]),
            "fallback_reason": pinned.get("fallback_reason"),
            "holdout_plan": selection["holdout_plan"],
        },
    )
    mix = segment_mix(targets)
    engine = store.make_engine(settings.database_url)
    store.ensure_schema(engine)
    store.write_run(engine, record, targets, exclusions, segments=mix)
    stored = store.group_counts(engine, run_id)
    planned = targets[GROUP].value_counts()
    if stored != {g: int(planned.get(g, 0)) for g in (TREATMENT, HOLDOUT)}:
        raise RuntimeError(f"run {run_id}: stored groups {stored} differ from the targets written")
    srm = require_sample_ratio(
        check_sample_ratio(stored[TREATMENT], stored[HOLDOUT], selection["holdout_fraction"]),
        f"run {run_id} as stored",
    )
    say(f"wrote {sum(stored.values()):,} targets and {len(exclusions):,} exclusions to {_safe_url(engine)}")
    mlflow_run = _log_campaign_run(settings, record, selection, mix, folder)
    return {
        **selection,
        "database": _safe_url(engine),
        "srm_p_value": srm.p_value,
        "campaign": name,
        "mlflow_run_id": mlflow_run,
        "segment_mix": {
            dim: {str(r["segment"]): int(r["customers"]) for _, r in part.iterrows()}
            for dim, part in mix.groupby("dimension", sort=False)
        },
    }


def segment_mix(targets: pd.DataFrame) -> pd.DataFrame:
    """The audience by segment: for each segment column present (``rfm_segment``, ``lifecycle_stage``,
    ``persona``, ``value_tier``) and value, customers, treatment, holdout, share of the audience, average score
    and average predicted value. Missing segment values count as ``unknown``."""
    from pipelines.campaigns.score import GROUP, HOLDOUT, TREATMENT
    from pipelines.campaigns.store import SEGMENT_COLUMNS

    rows = []
    total = max(len(targets), 1)
    value = targets["predicted_value"] if "predicted_value" in targets.columns else None
    for dim in SEGMENT_COLUMNS:
        if dim not in targets.columns or targets[dim].isna().all():
            continue
        keys = targets[dim].astype("object").where(targets[dim].notna(), "unknown").astype(str)
        for seg, part in targets.groupby(keys, sort=True):
            rows.append(
                {
                    "dimension": dim,
                    "segment": seg,
                    "customers": len(part),
                    "treatment": int((part[GROUP] == TREATMENT).sum()),
                    "holdout": int((part[GROUP] == HOLDOUT).sum()),
                    "share": len(part) / total,
                    "avg_score": float(part["score"].mean()),
                    "avg_value": float(value.loc[part.index].mean()) if value is not None else float("nan"),
                }
            )
    mix = pd.DataFrame(rows)
    if mix.empty:
        return mix
    return mix.sort_values(["dimension", "customers"], ascending=[True, False], ignore_index=True)


def _base_summary(folder: Path) -> pd.DataFrame:
    """Size, share, average score and average predicted value of every segment over the whole scored base."""
    from pipelines.models import segmentation

    segments = storage.read_frame(folder / "segments.parquet")
    scores = storage.read_frame(folder / "scores.parquet", columns=["customer_id", "score"])
    value = None
    if "predicted_value" in segments.columns:
        value = pd.Series(segments["predicted_value"].to_numpy(), index=segments["customer_id"].to_numpy())
    return segmentation.segment_summary(segments, scores, value)


def _log_campaign_run(settings: Settings, record, selection: dict, mix: pd.DataFrame, folder: Path) -> str:
    """One MLflow run per campaign run (experiment ``campaign_scoring``, replaced on a rerun): counts, the SRM
    p-value, the exclusion reasons and the audience's segment mix as a table and a chart."""
    import mlflow
    from mlflow import MlflowClient

    from pipelines.models.evaluate import segment_chart
    from pipelines.models.propensity import _experiment_id, mlflow_store

    uri = settings.mlflow_tracking_uri
    client = MlflowClient(uri)
    with mlflow_store(uri):
        experiment_id = _experiment_id(client, CAMPAIGN_DAG, uri, None)  # artifacts beside the store
        for old in client.search_runs([experiment_id], f"tags.pmp_run_id = '{record.run_id}'"):
            client.delete_run(old.info.run_id)
        charts = folder / "charts"
        charts.mkdir(parents=True, exist_ok=True)
        mix.to_csv(charts / "segment_mix.csv", index=False)
        _base_summary(folder).to_csv(charts / "segment_summary_base.csv", index=False)
        with mlflow.start_run(experiment_id=experiment_id, run_name=record.run_id) as run:
            mlflow.set_tags(
                {
                    "pmp_run_id": record.run_id,
                    "campaign": record.campaign,
                    "selected_by": record.details.get("selected_by", record.model_name),
                    "fallback_reason": record.details.get("fallback_reason") or "",
                }
            )
            mlflow.log_params(
                {
                    "campaign": record.campaign,
                    "as_of": record.logical_date.isoformat(),
                    "model": f"{record.model_name} v{record.model_version}",
                    "holdout_fraction": record.holdout_fraction,
                }
            )
            mlflow.log_metrics(
                {
                    k: float(selection[k])
                    for k in (
                        "scored",
                        "eligible",
                        "excluded",
                        "selected",
                        "treatment",
                        "holdout",
                        "srm_p_value",
                    )
                }
            )
            mlflow.log_dict(selection["excluded_by_reason"], "excluded_by_reason.json")
            mlflow.log_artifact(str(charts / "segment_mix.csv"))
            mlflow.log_artifact(str(charts / "segment_summary_base.csv"))
            if not mix.empty:
                segment_chart(
                    mix, charts / "segment_mix.png", title=f"{record.campaign}: audience by segment"
                )
                mlflow.log_artifact(str(charts / "segment_mix.png"))
        return run.info.run_id


def _safe_url(engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def run_campaign(settings: Settings, name: str, as_of: Any = None, progress: Progress = print) -> dict:
    """The whole campaign job in one process (what the ``campaign_scoring`` DAG runs task by task), without the
    source-data gate (run :func:`validate_data` first, as the DAG does)."""
    as_of = resolve_as_of(settings, as_of)
    campaign_features(settings, name, as_of, progress)
    campaign_segments(settings, name, as_of, progress)
    campaign_score(settings, name, as_of, progress)
    campaign_select(settings, name, as_of, progress)
    return campaign_write(settings, name, as_of, progress)


def permanent_errors() -> tuple[type[BaseException], ...]:
    """Failures that a retry cannot fix (bad data, a bad spec, no model, an unfair split): the DAGs fail these
    at once instead of retrying."""
    from pipelines.campaigns.score import SampleRatioMismatch, ScoringError
    from pipelines.campaigns.spec import SpecError
    from pipelines.campaigns.store import FrameValidationError
    from pipelines.data.gates import SuiteError, ValidationError
    from pipelines.features.history import HistoryError
    from pipelines.features.labels import LabelError

    return (
        ValidationError,
        SuiteError,
        SpecError,
        LabelError,
        HistoryError,
        ScoringError,
        SampleRatioMismatch,
        FrameValidationError,
    )


# --------------------------------------------------------------------------------------------------------------
# Churn training: features -> labels -> fit -> evaluate -> register


def label_params(params: Any = None) -> dict[str, Any]:
    """The label settings of a training run from DAG params (or defaults)."""
    params = dict(params or {})
    return {
        "definition": str(params.get("definition") or "closure"),
        "horizon_days": int(params.get("horizon_days") or 90),
        "snapshots": int(params.get("snapshots") or 5),
    }


def training_run_id(as_of: Any) -> str:
    return make_run_id(TRAINING_DAG, as_of)


def _training(settings: Settings, as_of: Any, params: Any):
    """The run's date, label definition, window, snapshot dates and folder from the label ``params``
    (:func:`label_params`: DAG params or None for the defaults)."""
    from pipelines.features.labels import LabelDefinition, snapshot_dates
    from pipelines.features.wide_table import WindowContract

    args = label_params(params)
    as_of = resolve_as_of(settings, as_of)
    label = LabelDefinition(name=args["definition"], horizon_days=args["horizon_days"])
    window = WindowContract(horizon_days=label.horizon_days, gap_days=label.gap_days)
    dates = snapshot_dates(as_of, label, args["snapshots"])
    folder = run_dir(settings.runs_dir, training_run_id(as_of))
    return as_of, label, window, dates, folder


def training_features(
    settings: Settings,
    as_of: Any = None,
    params: Any = None,
    *,
    progress: Progress = None,
) -> dict:
    """The gated wide table of every training snapshot -> ``features/<snapshot>.parquet``."""
    from pipelines.data.gates import require_valid
    from pipelines.features.gate import validate_features
    from pipelines.features.wide_table import build_features, load_tables

    say = _say(progress)
    as_of, label, window, dates, folder = _training(settings, as_of, params)
    say(f"churn training {as_of}: {label.tag}, snapshots {dates[0]:%Y-%m-%d} .. {dates[-1]:%Y-%m-%d} (test)")
    gates = {}
    for d in dates:
        tables = load_tables(settings.lake_dir, d, window)
        wide = build_features(tables, d, window)
        gate = validate_features(wide, tables["customers"], d, settings.expectations_dir, window=window)
        say(f"  snapshot {d:%Y-%m-%d}: {len(wide):,} customers; {gate.summary()}")
        require_valid(gate)
        storage.write_frame(wide, folder / "features" / f"{d:%Y-%m-%d}.parquet")
        gates[f"{d:%Y-%m-%d}"] = gate.to_dict()
    storage.write_json_atomic(folder / "features" / "gate.json", gates)
    return {"snapshots": [f"{d:%Y-%m-%d}" for d in dates], "folder": str(folder / "features")}


def training_labels(
    settings: Settings,
    as_of: Any = None,
    params: Any = None,
    *,
    min_positives: int = 500,
    min_negatives: int = 500,
    progress: Progress = None,
) -> dict:
    """Label every snapshot and stack features and labels -> ``training_set.parquet``; stops when the training
    part has too few positives or negatives."""
    from pipelines.features.labels import LABEL, SNAPSHOT, check_label_balance, make_labels, split_out_of_time
    from pipelines.features.wide_table import ID, load_tables

    say = _say(progress)
    as_of, label, window, dates, folder = _training(settings, as_of, params)
    frames = []
    for d in dates:
        wide = storage.read_frame(folder / "features" / f"{d:%Y-%m-%d}.parquet")
        tables = load_tables(settings.lake_dir, d, window, extra_until=label.window(d)[1])
        wide[LABEL] = make_labels(tables, d, label).reindex(wide[ID]).to_numpy()
        wide.insert(0, SNAPSHOT, d)
        frames.append(wide)
        say(f"  snapshot {d:%Y-%m-%d}: {int(wide[LABEL].sum()):,} {label.tag} positives of {len(wide):,}")
    data = pd.concat(frames, ignore_index=True)
    split = split_out_of_time(data)
    check_label_balance(split.train, min_positives, min_negatives, what="training")
    check_label_balance(split.test, 1, 1, what="test")
    path = storage.write_frame(data, folder / "training_set.parquet")
    return {"rows": len(data), "positives": int(data[LABEL].sum()), "training_set": str(path)}


def _split(folder: Path):
    from pipelines.features.labels import split_out_of_time

    return split_out_of_time(storage.read_frame(folder / "training_set.parquet"))


def training_fit(
    settings: Settings,
    as_of: Any = None,
    params: Any = None,
    *,
    progress: Progress = None,
) -> str:
    """Fit LightGBM (early stopping on the validation snapshot) and its calibrator -> ``model.pkl``."""
    import pickle

    from pipelines.features.labels import LABEL
    from pipelines.features.wide_table import CATEGORICAL_FEATURES, FEATURE_NAMES
    from pipelines.models.propensity import TrainConfig, fit_model

    say = _say(progress)
    *_, folder = _training(settings, as_of, params)
    split = _split(folder)
    say(f"fitting on {len(split.train):,} rows, early stopping on {len(split.valid):,}")
    config = TrainConfig(model_name="churn", seed=settings.seed)
    model = fit_model(split.train, split.valid, FEATURE_NAMES, CATEGORICAL_FEATURES, LABEL, config)
    path = folder / "model.pkl"
    storage.write_bytes_atomic(path, pickle.dumps(model))
    say(f"best iteration {model.best_iteration}")
    return str(path)


def _load_fitted(folder: Path):
    import pickle

    return pickle.loads((folder / "model.pkl").read_bytes())


def training_evaluate(
    settings: Settings,
    as_of: Any = None,
    params: Any = None,
    *,
    progress: Progress = None,
) -> dict:
    """Test metrics on the newest snapshot, decile table, charts and importance -> ``evaluation/``; with the
    generator's truth beside the lake also the oracle's AUC and lift on the same snapshot."""
    from pipelines.features.labels import LABEL
    from pipelines.models.propensity import evaluate_model
    from pipelines.synthetic import oracle

    say = _say(progress)
    as_of, label, _window, dates, folder = _training(settings, as_of, params)
    test = _split(folder).test
    metrics = evaluate_model(_load_fitted(folder), test, LABEL, folder / "evaluation")
    extra: dict[str, float] = {}
    if oracle.truth_available(settings.data_dir) and label.name == "closure" and label.gap_days == 0:
        extra = oracle.oracle_metrics(settings.data_dir, test, dates[-1], label)
        extra["auc_to_oracle"] = metrics["auc"] / extra["oracle_auc"]
    storage.write_json_atomic(folder / "evaluation" / "extra_metrics.json", extra)
    say(
        f"test auc {metrics['auc']:.4f}, top-decile lift {metrics['top_decile_lift']:.2f}, "
        f"brier {metrics['brier']:.4f}"
        + (f"; {extra['auc_to_oracle']:.1%} of the oracle AUC {extra['oracle_auc']:.4f}" if extra else "")
    )
    return {**{k: float(v) for k, v in metrics.items()}, **extra}


def training_register(
    settings: Settings,
    as_of: Any = None,
    params: Any = None,
    *,
    progress: Progress = None,
) -> dict:
    """Log the run to MLflow (parameters, window, label definition, lineage, metrics, the gate's result, the
    evaluation files), register a new ``churn`` version and apply the champion/challenger rule."""
    from pipelines.features.labels import LABEL
    from pipelines.models.propensity import TrainConfig, register_model

    say = _say(progress)
    as_of, label, window, dates, folder = _training(settings, as_of, params)
    split = _split(folder)
    evaluation = folder / "evaluation"
    metrics = storage.read_json(evaluation / "metrics.json")
    gate = storage.read_json(folder / "features" / "gate.json")
    extra = {
        **storage.read_json(evaluation / "extra_metrics.json"),
        "gx_success": float(all(g["success"] for g in gate.values())),
        "gx_critical_failures": float(sum(len(g.get("critical_failures", [])) for g in gate.values())),
        "gx_warnings": float(sum(len(g.get("warnings", [])) for g in gate.values())),
    }
    result = register_model(
        _load_fitted(folder),
        split.test,
        metrics,
        evaluation,
        label=LABEL,
        config=TrainConfig(model_name="churn", seed=settings.seed),
        tracking_uri=settings.mlflow_tracking_uri,
        experiment=TRAINING_DAG,
        rows={"train": len(split.train), "valid": len(split.valid), "test": len(split.test)},
        run_params={
            "label_definition": label.tag,
            "outflow_pct": label.outflow_pct,
            "window.lookback_days": window.lookback_days,
            "window.gap_days": window.gap_days,
            "window.horizon_days": window.horizon_days,
            "snapshots": ",".join(f"{d:%Y-%m-%d}" for d in dates),
            "orchestrator_run": training_run_id(as_of),
        },
        lineage={
            "lake": str(settings.lake_dir),
            "run_date": as_of.isoformat(),
            "test_snapshot": f"{dates[-1]:%Y-%m-%d}",
            "training_set": str(folder / "training_set.parquet"),
        },
        extra_metrics=extra,
        progress=say,
    )
    from mlflow import MlflowClient

    MlflowClient(settings.mlflow_tracking_uri).log_artifact(
        result.run_id, str(folder / "features" / "gate.json"), artifact_path="validation"
    )
    registered = {**_registered(result), **{k: float(v) for k, v in extra.items()}}
    storage.write_json_atomic(folder / "registered.json", registered)
    say(result.summary())
    return registered


def run_training(
    settings: Settings, as_of: Any = None, params: Any = None, progress: Progress = print
) -> dict:
    """The whole training job in one process (what the ``churn_training`` DAG runs task by task), after the
    source-data gate."""
    as_of = resolve_as_of(settings, as_of)
    training_features(settings, as_of, params, progress=progress)
    training_labels(settings, as_of, params, progress=progress)
    training_fit(settings, as_of, params, progress=progress)
    training_evaluate(settings, as_of, params, progress=progress)
    return training_register(settings, as_of, params, progress=progress)


# --------------------------------------------------------------------------------------------------------------
# Value training


VALUE_DAG = "value_training"
VALUE_HORIZON_MONTHS = 6


def value_train(settings: Settings, as_of: Any = None, progress: Progress = None) -> dict:
    """Train, evaluate (against the BG/NBD + Gamma-Gamma baseline on the same customers), register and maybe
    promote the ``value`` model (``value.train_value``); returns the decision and the test metrics."""
    from pipelines.models import value

    as_of = resolve_as_of(settings, as_of)
    # The newest snapshot whose label window (the next HORIZON_MONTHS months of spend) ends by the run date.
    snapshot = (pd.Timestamp(as_of) - pd.DateOffset(months=VALUE_HORIZON_MONTHS)).date()
    result = value.train_value(
        settings.data_dir,
        tracking_uri=settings.mlflow_tracking_uri,
        as_of=snapshot,
        horizon_months=VALUE_HORIZON_MONTHS,
        expectations_dir=settings.expectations_dir,
        progress=_say(progress),
    )
    _say(progress)(result.summary())
    return _registered(result)


# --------------------------------------------------------------------------------------------------------------
# Response and uplift models, trained on the campaign history (the closed loop)


MODELS_DAG = "campaign_models_training"


def _models_folder(settings: Settings, as_of: Any) -> Path:
    return run_dir(settings.runs_dir, make_run_id(MODELS_DAG, resolve_as_of(settings, as_of)))


def campaign_history(
    settings: Settings, as_of: Any = None, window_days: int = 14, progress: Progress = None
) -> dict:
    """Every contact of the campaigns whose ``window_days`` response window closed by ``as_of``, with the gated
    wide table at its campaign's selection date and its outcome -> ``history.parquet`` (see ``history.py``)."""
    from pipelines.data.gates import require_valid
    from pipelines.features import history
    from pipelines.features.gate import validate_features

    say = _say(progress)
    as_of = resolve_as_of(settings, as_of)
    folder = _models_folder(settings, as_of)
    gates = {}

    def gate(wide: pd.DataFrame, tables: dict, day: pd.Timestamp) -> None:
        result = validate_features(wide, tables["customers"], day, settings.expectations_dir)
        require_valid(result)
        gates[f"{day:%Y-%m-%d}"] = result.to_dict()

    say(f"campaign history at {as_of}: campaigns with a closed {window_days}-day response window")
    data = history.history_training_set(settings.lake_dir, window_days, as_of, gate=gate, progress=say)
    split = history.split_by_campaign(data)
    storage.write_frame(data, folder / "history.parquet")
    storage.write_json_atomic(folder / "gate.json", gates)
    summary = {
        "rows": len(data),
        "campaigns": split.campaigns,
        "window_days": window_days,
        "history": str(folder / "history.parquet"),
    }
    storage.write_json_atomic(folder / "history.json", summary)
    return summary


def _history_split(folder: Path):
    from pipelines.features import history

    return history.split_by_campaign(storage.read_frame(folder / "history.parquet"))


def response_train(settings: Settings, as_of: Any = None, progress: Progress = None) -> dict:
    """The ``response`` model: LightGBM on the treated contacts, label = converted within the response window,
    with churn's fit, evaluation and champion/challenger flow; train/validation/test by campaign in time.
    Also writes the test contacts' response scores (treated and holdout) for the uplift comparison."""
    from pipelines.features import history
    from pipelines.features.wide_table import CATEGORICAL_FEATURES
    from pipelines.models.propensity import TrainConfig, train_and_register

    say = _say(progress)
    folder = _models_folder(settings, as_of)
    meta = storage.read_json(folder / "history.json")
    split = _history_split(folder)
    treated = [part.loc[part[history.TREATED] == 1] for part in (split.train, split.valid, split.test)]
    features = history.feature_columns(split.train)
    say(f"response model on {sum(len(p) for p in treated):,} treated contacts")
    result = train_and_register(
        *treated,
        features=features,
        categorical=CATEGORICAL_FEATURES,
        label=history.CONVERTED,
        config=TrainConfig(model_name="response", seed=settings.seed),
        tracking_uri=settings.mlflow_tracking_uri,
        experiment="response",
        run_params={"response_window_days": meta["window_days"], "orchestrator_run": folder.name},
        lineage={"lake": str(settings.lake_dir), **history.lineage(split)},
        progress=say,
    )
    scores = split.test[[history.CAMPAIGN, "customer_id"]].copy()
    scores["response_score"] = result.model.predict_proba(split.test)
    storage.write_frame(scores, folder / "response_test_scores.parquet")
    registered = _registered(result)
    storage.write_json_atomic(folder / "response.json", registered)
    say(result.summary())
    return registered


def uplift_train(settings: Settings, as_of: Any = None, progress: Progress = None) -> dict:
    """The ``uplift`` model: every learner on the training campaigns, the best on the validation campaign, judged
    on the out-of-time test campaign (Qini with bootstrap CI, AUUC, uplift@30, verdict) against ranking by the
    response score and, with the generator's truth, against the oracle; registered with champion/challenger on
    Qini. Runs :func:`campaign_history` first when this run has no history yet (``pmp train uplift``)."""
    from pipelines.features import history
    from pipelines.features.wide_table import CATEGORICAL_FEATURES
    from pipelines.models.uplift_training import train_uplift
    from pipelines.synthetic import oracle

    say = _say(progress)
    folder = _models_folder(settings, as_of)
    if not (folder / "history.json").is_file():
        campaign_history(settings, as_of, progress=progress)
    meta = storage.read_json(folder / "history.json")
    split = _history_split(folder)
    baselines = {}
    if (folder / "response_test_scores.parquet").is_file():
        scores = storage.read_frame(folder / "response_test_scores.parquet")
        baselines["response"] = (
            split.test[[history.CAMPAIGN, "customer_id"]]
            .merge(scores, on=[history.CAMPAIGN, "customer_id"], how="left", validate="one_to_one")[
                "response_score"
            ]
            .to_numpy()
        )
    result = train_uplift(
        split.train,
        split.valid,
        split.test,
        features=history.feature_columns(split.train),
        categorical=CATEGORICAL_FEATURES,
        treatment=history.TREATED,
        outcome=history.CONVERTED,
        tracking_uri=settings.mlflow_tracking_uri,
        run_params={"response_window_days": meta["window_days"], "orchestrator_run": folder.name},
        lineage={"lake": str(settings.lake_dir), **history.lineage(split)},
        true_uplift_test=oracle.oracle_uplift(settings.data_dir, split.test, meta["window_days"]),
        baseline_scores=baselines or None,
        progress=say,
    )
    registered = {**_registered(result), "learner": result.learner, "verdict": result.verdict}
    storage.write_json_atomic(folder / "uplift.json", registered)
    say(result.summary())
    return registered


def _registered(result: Any) -> dict:
    """What a training step returns (and writes) of a registration: version, decision, reasons, test metrics."""
    return {
        "model_name": result.model_name,
        "version": result.version,
        "promoted": result.promoted,
        "champion_version": result.champion_version,
        "mlflow_run_id": result.run_id,
        "reasons": list(result.reasons),
        "metrics": {k: float(v) for k, v in result.metrics.items()},
    }


def run_campaign_models(
    settings: Settings, as_of: Any = None, window_days: int = 14, progress: Progress = print
) -> dict:
    """History, response model, uplift model in one process (what ``campaign_models_training`` runs task by task)."""
    campaign_history(settings, as_of, window_days, progress=progress)
    return {
        "response": response_train(settings, as_of, progress=progress),
        "uplift": uplift_train(settings, as_of, progress=progress),
    }


# --------------------------------------------------------------------------------------------------------------
# Readout of a campaign in the lake (treatment against holdout after the response window)


READOUT_SEGMENTS = ("decile", "lifecycle_stage", "value_tier", "rfm_segment", "persona")


class ResponsesNotLanded(LookupError):
    """A platform run has no contacts in the lake yet: its response feed has not landed."""


def readout_campaign(
    settings: Settings,
    campaign_id: str,
    *,
    window_days: int | None = None,
    expected_share: float | None = None,
    floor: float | None = None,
    as_of: Any = None,
    progress: Progress = None,
) -> dict:
    """Read out a campaign after its response window: treatment against holdout, conversion within the window.

    ``campaign_id`` is either a platform run (a ``run_id`` of the campaign database: groups, deciles and
    segments come from ``campaign_targets``; the window, floor, cost and value from its spec; the expected
    split from the run's holdout fraction) or a past campaign in the lake (groups from ``campaign_contacts``;
    window 14 days and floor 1 % unless given; SRM only with ``expected_share``). Responses come from the lake.

    Computes the lift with CI and p-value, the SRM check, lift by decile and segment, the funnel, UTM channel
    quality, the response-floor alert, the power statement, and with the generator's truth the true lift. Writes
    ``runs/readout__<campaign_id>/`` (report.md/.html, lift_by_decile.png, CSVs, readout.json), one
    ``campaign_results`` row and one MLflow run in ``campaign-readouts`` (all replaced on a re-readout).
    Refuses to read out before the window has closed (``as_of``, default today).
    """
    from pipelines.campaigns import store
    from pipelines.campaigns.power import powered_statement
    from pipelines.readout.stats import (
        channel_quality,
        funnel,
        lift_by_decile_chart,
        readout,
        render_report,
        response_floor_alert,
        return_on_spend,
    )
    from pipelines.synthetic import oracle

    say = _say(progress)
    lake = settings.lake_dir
    engine = store.make_engine(settings.database_url)
    store.ensure_schema(engine)
    runs = store.list_runs(engine)
    run = runs.loc[runs["run_id"] == campaign_id]
    platform = not run.empty
    contacts = storage.read_table(lake, "campaign_contacts")
    contacts = contacts.loc[contacts["campaign_id"] == campaign_id].reset_index(drop=True)
    if contacts.empty:
        if platform:
            raise ResponsesNotLanded(
                f"run {campaign_id!r} has no contacts in {lake / 'campaign_contacts'}: its response feed has not "
                "landed yet (read it out after the response window, once contacts and responses are in the lake)"
            )
        known = sorted(
            storage.read_table(lake, "campaign_contacts", columns=["campaign_id"])["campaign_id"].unique()
        )
        raise LookupError(f"no campaign {campaign_id!r} in campaign_contacts; known: {', '.join(known)}")

    facts: dict[str, Any] = {"campaign id": campaign_id}
    spec = None
    if platform:
        record = run.iloc[0]
        spec = load_campaign(settings, str(record["campaign"]))
        window_days = window_days or spec.response_window_days
        floor = spec.response_rate_floor if floor is None else floor
        if expected_share is None:
            expected_share = 1.0 - float(record["holdout_fraction"])
        targets = store.read_targets(
            engine, str(record["campaign"]), campaign_id, groups=("treatment", "holdout")
        )
        frame = targets.rename(columns={"target_group": "group"})
        facts.update(
            {
                "campaign": spec.name,
                "channel": spec.channel,
                "model": f"{record['model_name']} v{record['model_version']}",
                "cost_per_contact": spec.cost_per_contact,
                "value_per_response": spec.value_per_response,
            }
        )
    else:
        frame = contacts[["customer_id", "group"]].copy()
    window_days = int(window_days or 14)
    floor = 0.01 if floor is None else floor
    facts["response window"] = f"{window_days} days"

    selected_at = contacts["selected_at"].min()
    closes = selected_at + pd.Timedelta(days=window_days)
    today = pd.Timestamp(as_of) if as_of is not None else pd.Timestamp(date.today())
    if closes > today:  # a readout dated D sees the data up to the start of D
        raise ResponsesNotLanded(
            f"the {window_days}-day response window of {campaign_id!r} closes at {closes:%Y-%m-%d %H:%M}; "
            f"read it out after that (as of {today:%Y-%m-%d})"
        )
    responses = storage.read_table(lake, "responses")
    responses = responses.loc[responses["campaign_id"] == campaign_id].reset_index(drop=True)
    converted = responses.loc[responses["event_type"] == "converted", ["customer_id", "event_ts"]]
    inside = (converted["event_ts"] >= selected_at) & (converted["event_ts"] < closes)
    frame["group"] = frame["group"].astype(str)
    frame["converted"] = frame["customer_id"].isin(set(converted.loc[inside, "customer_id"])).astype(int)
    segment_cols = [c for c in READOUT_SEGMENTS if c in frame.columns and frame[c].notna().any()]
    result = readout(
        frame,
        treatment_col="group",
        treated="treatment",
        control="holdout",
        outcome_col="converted",
        expected_share=expected_share,
        segment_cols=segment_cols,
    )
    o = result.overall
    alert = response_floor_alert(result, floor)
    power_note = powered_statement(o.treated_n, o.control_n, o.control_rate, o.lift_abs)
    true_lift = None
    truth = oracle.oracle_uplift(settings.data_dir, contacts[["campaign_id", "customer_id"]], window_days)
    if truth is not None:
        true_lift = float(truth.mean())

    folder = run_dir(settings.runs_dir, f"readout__{campaign_id}")
    folder.mkdir(parents=True, exist_ok=True)
    stages = funnel(contacts, responses, campaign_id)
    channels = channel_quality(responses, contacts, campaign_id)
    stages.to_csv(folder / "funnel.csv", index=False)
    channels.to_csv(folder / "channel_quality.csv", index=False)
    result.segments.to_csv(folder / "segments.csv", index=False)
    chart = None
    if "decile" in segment_cols:
        chart = lift_by_decile_chart(
            result.segments, folder / "lift_by_decile.png", title=f"{campaign_id}: lift by decile"
        ).name
    markdown, html = render_report(
        result,
        title=f"Readout: {campaign_id}",
        facts=facts,
        funnel=stages,
        channels=channels,
        alert=alert,
        power_note=power_note,
        true_lift=true_lift,
        chart=chart,
    )
    storage.write_text_atomic(folder / "report.md", markdown)
    storage.write_text_atomic(folder / "report.html", html)
    storage.write_text_atomic(
        folder / "readout.md", result.describe() + ("\n\n" + alert if alert else "") + "\n"
    )
    ros = None
    if spec is not None and (spec.cost_per_contact or spec.value_per_response):
        ros = return_on_spend(o, spec.cost_per_contact, spec.value_per_response)
    row = {
        "campaign_id": campaign_id,
        "response_window_days": window_days,
        **{k: v for k, v in asdict(o).items() if k in store.RESULT_COLUMNS},
        "srm_p_value": result.srm.p_value if result.srm else None,
        "trustworthy": result.trustworthy,
        "alert": alert,
        "true_lift": true_lift,
        "net_return": ros.net if ros else None,
    }
    storage.write_json_atomic(folder / "readout.json", {**row, "power": power_note, "platform_run": platform})
    store.write_result(engine, row)
    row["mlflow_run_id"] = _log_readout(settings, row, folder)
    row["power"] = power_note
    row["report"] = str(folder / "report.html")
    say(result.describe())
    say(power_note)
    if true_lift is not None:
        covered = o.lift_ci_low <= true_lift <= o.lift_ci_high
        say(
            f"true lift (from truth/): {true_lift:+.3%}, {'inside' if covered else 'OUTSIDE'} the 95% interval"
        )
    if alert:
        say(alert)
    return row


def due_readouts(
    settings: Settings, as_of: Any = None, include_done: bool = False, progress: Progress = None
) -> list[str]:
    """Platform runs ready for a readout at ``as_of`` (default today): response window closed (a run of day D with
    a 14-day window is due from D + 15: the window ends during D + 14), contacts landed in the lake, and (unless
    ``include_done``) no readout stored yet. Oldest first."""
    from pipelines.campaigns import store

    today = pd.Timestamp(as_of) if as_of is not None else pd.Timestamp(date.today())
    engine = store.make_engine(settings.database_url)
    store.ensure_schema(engine)
    runs = store.list_runs(engine)
    if runs.empty:
        return []
    landed = set(
        storage.read_table(settings.lake_dir, "campaign_contacts", columns=["campaign_id"])["campaign_id"]
    )
    done = set() if include_done else set(store.read_results(engine)["campaign_id"])
    due = []
    for record in runs.sort_values(["logical_date", "run_id"]).itertuples(index=False):
        try:
            window = load_campaign(settings, str(record.campaign)).response_window_days
        except Exception:  # a removed or broken spec: its runs are read out by hand (pmp readout)
            continue
        closed = pd.Timestamp(record.logical_date) + pd.Timedelta(days=window + 1) <= today
        if closed and record.run_id in landed and record.run_id not in done:
            due.append(str(record.run_id))
    return due


def simulate_responses(settings: Settings, run_id: str, progress: Progress = None) -> dict:
    """The synthetic world's response feed for one platform run (demo and tests only): contacts and responses
    of the run's targets over its response window, written to the lake, with their truth (see
    ``synth_campaigns.simulate_run_responses``)."""
    from pipelines.campaigns import store
    from pipelines.synthetic.campaigns import RESPONSE_HORIZON_DAYS, simulate_run_responses

    engine = store.make_engine(settings.database_url)
    runs = store.list_runs(engine)
    record = runs.loc[runs["run_id"] == run_id]
    if record.empty:
        raise LookupError(f"no run {run_id!r} in the campaign database")
    record = record.iloc[0]
    spec = load_campaign(settings, str(record["campaign"]))
    targets = store.read_targets(engine, str(record["campaign"]), run_id, groups=("treatment", "holdout"))
    summary = simulate_run_responses(
        settings.data_dir,
        run_id,
        targets[["customer_id", "target_group"]],
        channel=spec.channel,
        selected_at=pd.Timestamp(record["logical_date"]),
        seed=settings.seed,
    )
    _say(progress)(
        f"synthetic world: {summary['contacts']:,} contacts of {run_id} answered with {summary['conversions']:,} "
        f"conversions within {RESPONSE_HORIZON_DAYS} days (true lift over that horizon {summary['true_lift']:+.3%})"
    )
    return summary


def _log_readout(settings: Settings, row: dict, folder: Path) -> str:
    import mlflow
    from mlflow import MlflowClient

    from pipelines.models.propensity import _experiment_id, mlflow_store

    uri = settings.mlflow_tracking_uri
    client = MlflowClient(uri)
    with mlflow_store(uri):
        experiment_id = _experiment_id(client, "campaign-readouts", uri, None)
        for old in client.search_runs([experiment_id], f"tags.campaign_id = '{row['campaign_id']}'"):
            client.delete_run(old.info.run_id)
        with mlflow.start_run(experiment_id=experiment_id, run_name=row["campaign_id"]) as run:
            mlflow.set_tags({"campaign_id": row["campaign_id"], "trustworthy": str(row["trustworthy"])})
            mlflow.log_param("response_window_days", row["response_window_days"])
            names = {"p_value": "lift_p_value"}
            mlflow.log_metrics(
                {
                    names.get(k, k): float(row[k])
                    for k in (
                        "treated_n",
                        "control_n",
                        "treated_rate",
                        "control_rate",
                        "lift_abs",
                        "lift_ci_low",
                        "lift_ci_high",
                        "lift_rel",
                        "p_value",
                        "incremental_responses",
                        "srm_p_value",
                        "true_lift",
                        "net_return",
                    )
                    if row.get(k) is not None and np.isfinite(float(row[k]))
                }
            )
            for path in sorted(folder.iterdir()):
                if path.suffix in (".md", ".html", ".json", ".csv", ".png"):
                    mlflow.log_artifact(str(path))
        return run.info.run_id
