"""The campaign scoring flow: features -> segments -> score -> select and hold out -> write, one run per campaign
and date under ``runs/campaign_scoring__<as_of>__<campaign>/``; the audience's segment mix; one MLflow run per
campaign run. ``run_campaign`` chains the steps in one process, as the ``campaign_scoring__<name>`` DAGs do task by
task.

Fail fast, lose nothing: the first step (:func:`validate_campaign`) checks the spec, the campaign database and the
MLflow store before any heavy work. The steps write into an attempt folder ``runs/<run_id>.attempt/``; only the
write step, once the database has committed the run, swaps it in for ``runs/<run_id>/``, so a failed run never
touches the files of an earlier succeeded run of the same id."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.config import Settings
from pipelines.data import storage
from pipelines.jobs import monitoring
from pipelines.jobs.common import build_wide_table, load_campaign, resolve_as_of, validate_data
from pipelines.progress import Progress, say_to
from pipelines.runs import attempt_dir, check_writable, make_run_id, run_dir, run_lock, swap_in

CAMPAIGN_DAG = "campaign_scoring"
MLFLOW_CHECK_TIMEOUT_S = 10


class TrackingStoreError(RuntimeError):
    """The MLflow store cannot be reached or used; one line naming the URI (password masked) and the cause."""


def campaign_run_id(campaign: str, as_of: Any) -> str:
    """``campaign_scoring__<as_of>__<campaign>``: one run per campaign and date."""
    return make_run_id(CAMPAIGN_DAG, as_of, campaign)


def check_mlflow(uri: str) -> None:
    """Raise one-line :class:`TrackingStoreError` unless the MLflow store at ``uri`` answers a query (one try,
    ``MLFLOW_CHECK_TIMEOUT_S`` for a server, instead of MLflow's minutes of retries)."""
    from pipelines.campaigns.store_schema import mask_passwords, safe_url

    with _environment(
        MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT=str(MLFLOW_CHECK_TIMEOUT_S)
    ):
        try:
            from mlflow import MlflowClient

            MlflowClient(uri).search_experiments(max_results=1)
        except (
            Exception
        ) as exc:  # MLflow raises many kinds (MlflowException, requests', SQLAlchemy's, OSError)
            lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
            cause = mask_passwords(lines[0] if lines else type(exc).__name__)
            raise TrackingStoreError(f"MLflow store {safe_url(uri)}: {cause}") from exc


@contextmanager
def _environment(**values: str) -> Iterator[None]:
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def check_campaign(settings: Settings, name: str, progress: Progress = None) -> None:
    """What a campaign run needs before any heavy work: its spec loads, the campaign database takes a
    connection and its tables (:func:`store_schema.check_database`), the MLflow store answers, and the model the
    campaign scores with has a champion. Each failure is one line: ``SpecError`` (a ValueError) naming the file
    and field, ``DatabaseError``, :class:`TrackingStoreError` or ``ScoringError`` (RuntimeErrors) naming the URL
    with its password masked (and the model and alias)."""
    from pipelines.campaigns.score import ScoringError
    from pipelines.campaigns.store_schema import check_database, safe_url
    from pipelines.models.uplift_metrics import HETEROGENEITY
    from pipelines.models.uplift_training import champion_verdict

    say = say_to(progress)
    spec = load_campaign(settings, name)
    check_database(settings.database_url)
    uri = settings.mlflow_tracking_uri
    check_mlflow(uri)
    needed = spec.model  # as _scoring_model chooses: uplift needs its fallback unless it found heterogeneity
    if spec.model == "lookalike":  # fitted by the run itself on its seed: no champion needed
        from pipelines.jobs.lookalike import check_seed_source

        check_seed_source(settings, spec)
        needed = None
    elif spec.model == "uplift":
        uplift = champion_verdict(uri)
        found = uplift is not None and uplift["verdict"] == HETEROGENEITY
        needed = None if found or spec.fallback == "random" else "response"
    if needed is not None and champion_verdict(uri, needed) is None:
        how = "`pmp train churn`" if needed == "churn" else "the campaign_models_training DAG"
        raise ScoringError(
            f"campaign {name}: no model registered as {needed}@champion in {safe_url(uri)}: train and promote "
            f"one first ({how})"
        )
    say(
        f"campaign {name}: spec, database {safe_url(settings.database_url)} and MLflow store "
        f"{safe_url(settings.mlflow_tracking_uri)} checked"
    )


def validate_campaign(settings: Settings, name: str, as_of: Any = None, progress: Progress = None) -> dict:
    """The campaign's first step: the spec, the database, the MLflow store and that the runs/ folder takes files
    are checked (:func:`check_campaign`, :func:`runs.check_writable`; a bad one fails in seconds, before any
    work), then the source-data gates of ``as_of`` (:func:`validate_data`)."""
    check_campaign(settings, name, progress)
    check_writable(settings.runs_dir)
    return validate_data(settings, as_of, progress)


def _campaign_dir(settings: Settings, name: str, as_of: Any) -> Path:
    """The run's folder, ``runs/<run_id>/``: what the last succeeded run wrote (the write step swaps it in)."""
    return run_dir(settings.runs_dir, campaign_run_id(name, resolve_as_of(settings, as_of)))


def _attempt_dir(settings: Settings, name: str, as_of: Any) -> Path:
    """Where the steps of the current attempt write, ``runs/<run_id>.attempt/``, until the write step swaps it in."""
    return attempt_dir(settings.runs_dir, campaign_run_id(name, resolve_as_of(settings, as_of)))


def campaign_features(settings: Settings, name: str, as_of: Any = None, progress: Progress = None) -> str:
    """Wide table of the campaign run's date -> ``features.parquet`` of a fresh attempt folder (whatever an
    earlier failed attempt left there is removed first)."""
    load_campaign(settings, name)  # a bad spec fails here, before any work
    attempt = _attempt_dir(settings, name, as_of)
    shutil.rmtree(attempt, ignore_errors=True)
    return str(build_wide_table(settings, as_of, attempt / "features.parquet", progress))


def persona_model_path(settings: Settings) -> Path:
    """Where the persona model lives between runs: fitted once, then re-applied, so a customer whose behaviour
    has not changed keeps the same persona. Delete the file to refit."""
    return settings.data_dir / "segments" / "persona_model.json"


def campaign_segments(settings: Settings, name: str, as_of: Any = None, progress: Progress = None) -> dict:
    """RFM segment, lifecycle stage, persona, value tier and flags of every customer of the wide table ->
    ``segments.parquet``. The value tier needs a ``value`` champion; without one it is left empty."""
    from pipelines.campaigns import policy
    from pipelines.campaigns.spec import InvalidCustomerRule
    from pipelines.models import segmentation
    from pipelines.models.personas import PersonaModel

    say = say_to(progress)
    spec = load_campaign(settings, name)
    as_of = resolve_as_of(settings, as_of)
    folder = _attempt_dir(settings, name, as_of)
    wide = storage.read_frame(folder / "features.parquet")
    invalid = policy.invalid_customers(
        settings.lake_dir,
        as_of,
        spec.contact_policy.invalid_customer or InvalidCustomerRule(),
        progress=say,
    )
    model_path = persona_model_path(settings)
    known = PersonaModel.from_dict(storage.read_json(model_path)) if model_path.is_file() else None
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
    from pipelines.models.registry import mlflow_store

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

    say = say_to(progress)
    spec = load_campaign(settings, name)
    folder = _attempt_dir(settings, name, as_of)
    run_id = campaign_run_id(name, resolve_as_of(settings, as_of))
    lookalike = None
    if spec.model == "lookalike":
        from pipelines.jobs.lookalike import fit_run_lookalike

        (model, lookalike), note = fit_run_lookalike(settings, spec, folder, say), None
    else:
        model, note = _scoring_model(settings, spec, run_id)
    if note:
        say(note)
    wide = storage.read_frame(folder / "features.parquet")
    scored = score_customers(model, wide, progress=say)
    storage.write_frame(scored, folder / "scores.parquet")
    monitoring.score_stability(settings, model, wide, scored, folder, resolve_as_of(settings, as_of), say)
    pinned = {
        "model_name": model.name,
        "model_version": model.version,
        "model_run_id": model.run_id,
        "selected_by": model.name,
        "fallback_reason": note,
        "salt": f"{spec.salt}:{run_id}",
    }
    if lookalike is not None:
        pinned["lookalike"] = lookalike
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
    from pipelines.models.uplift_metrics import HETEROGENEITY
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
    if pinned["model_name"] == "lookalike":
        from pipelines.jobs.lookalike import load_run_lookalike

        return load_run_lookalike(folder)
    if pinned["model_name"] == "random":
        return ScoringModel("random", "0", "fallback", "", RandomScorer(pinned["salt"]))
    return load_scoring_model(
        pinned["model_name"], settings.mlflow_tracking_uri, version=pinned["model_version"]
    )


def campaign_select(settings: Settings, name: str, as_of: Any = None, progress: Progress = None) -> dict:
    """Contact policy, audience rules, selection, holdout and reason codes -> ``targets.parquet`` and
    ``exclusions.parquet``. Fails the run on a sample-ratio mismatch."""
    from pipelines.campaigns import store_schema
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
    from pipelines.campaigns.spec import SpecError
    from pipelines.campaigns.store_schema import SEGMENT_COLUMNS
    from pipelines.jobs.audience import choose_audience, read_scored

    say = say_to(progress)
    spec = load_campaign(settings, name)
    as_of = resolve_as_of(settings, as_of)
    run_id = campaign_run_id(name, as_of)
    folder = _attempt_dir(settings, name, as_of)
    scored = read_scored(folder)
    engine = store_schema.make_engine(settings.database_url)
    store_schema.ensure_schema(engine)
    pinned = storage.read_json(folder / "model.json")
    by_uplift = pinned.get("selected_by") == "uplift"
    seed = _pinned_model(settings, folder).model.seed_ids if pinned["model_name"] == "lookalike" else None
    chosen = choose_audience(settings, spec, scored, as_of, engine, by_uplift=by_uplift, say=say, seed=seed)
    eligible, exclusions, selected = chosen.eligible, chosen.exclusions, chosen.selected
    if selected.empty:
        raise SpecError(
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
    swap the attempt folder in as the run's folder once that has committed, then check the stored split against
    the plan (sample-ratio mismatch fails the run) and log the MLflow run."""
    from pipelines.campaigns import store, store_schema
    from pipelines.campaigns.score import GROUP, HOLDOUT, TREATMENT, check_sample_ratio, require_sample_ratio
    from pipelines.campaigns.store_frames import RunRecord
    from pipelines.jobs.audience import with_breakdowns

    say = say_to(progress)
    spec = load_campaign(settings, name)
    as_of = resolve_as_of(settings, as_of)
    run_id = campaign_run_id(name, as_of)
    folder = _campaign_dir(settings, name, as_of)
    attempt = _attempt_dir(settings, name, as_of)
    if not attempt.is_dir() and (folder / "targets.parquet").is_file():
        attempt = folder  # a retry of this step after the swap: the attempt is already the run's folder
    targets = storage.read_frame(attempt / "targets.parquet")
    exclusions = storage.read_frame(attempt / "exclusions.parquet")
    selection = storage.read_json(attempt / "selection.json")
    pinned = storage.read_json(attempt / "model.json")
    record = RunRecord(
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
            **({"lookalike": pinned["lookalike"]} if "lookalike" in pinned else {}),
        },
    )
    # Region comes from the folder's wide table: the stored targets carry only the segment columns.
    mix = segment_mix(with_breakdowns(targets, attempt))
    engine = store_schema.make_engine(settings.database_url)
    store_schema.ensure_schema(engine)
    store.write_run(engine, record, targets, exclusions, segments=mix)
    # Committed: the attempt's files now match the stored run and replace the folder of the earlier one.
    if attempt != folder:
        swap_in(attempt, folder)
    monitoring.record_stability(settings, engine, record, folder)
    stored = store.group_counts(engine, run_id)
    planned = targets[GROUP].value_counts()
    if stored != {g: int(planned.get(g, 0)) for g in (TREATMENT, HOLDOUT)}:
        raise RuntimeError(f"run {run_id}: stored groups {stored} differ from the targets written")
    srm = require_sample_ratio(
        check_sample_ratio(stored[TREATMENT], stored[HOLDOUT], selection["holdout_fraction"]),
        f"run {run_id} as stored",
    )
    say(f"wrote {sum(stored.values()):,} targets and {len(exclusions):,} exclusions to {_safe_url(engine)}")
    try:
        mlflow_run = _log_campaign_run(settings, record, selection, mix, folder)
    except Exception as exc:
        # The list is in the database and its folder in place: say so, so a retry (which replaces both with the
        # same rows) is the fix, not a re-investigation of the list.
        first = (str(exc).strip().splitlines() or [""])[0]
        raise RuntimeError(
            f"run {run_id}: the list is committed ({sum(stored.values()):,} targets in {_safe_url(engine)}), "
            f"but its MLflow run failed: {type(exc).__name__}: {first}"
        ) from exc
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
    ``persona``, ``value_tier``, and ``region`` when ``targets`` carries it: ``audience.with_breakdowns``) and
    value, customers, treatment, holdout, share of the audience, average score and average predicted value.
    Missing segment values count as ``unknown``; a column with no value at all is left out."""
    from pipelines.campaigns.score import GROUP, HOLDOUT, TREATMENT
    from pipelines.campaigns.store_schema import SEGMENT_COLUMNS
    from pipelines.jobs.audience import BREAKDOWNS

    rows = []
    total = max(len(targets), 1)
    value = targets["predicted_value"] if "predicted_value" in targets.columns else None
    for dim in (*SEGMENT_COLUMNS, *BREAKDOWNS):
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
    """The campaign run's MLflow run (experiment ``campaign_scoring``; one per run id and data source, replaced on
    a rerun: ``jobs.tracking.replacing_run``): counts, the SRM p-value, the exclusion reasons and the audience's
    segment mix as a table and a chart."""
    from pipelines.jobs.tracking import DATA_SOURCE_TAG, data_source, log_values, replacing_run
    from pipelines.models.evaluate import segment_chart

    charts = folder / "charts"
    charts.mkdir(parents=True, exist_ok=True)
    mix.to_csv(charts / "segment_mix.csv", index=False)
    _base_summary(folder).to_csv(charts / "segment_summary_base.csv", index=False)
    if not mix.empty:
        segment_chart(mix, charts / "segment_mix.png", title=f"{record.campaign}: audience by segment")
    key = {"pmp_run_id": record.run_id, DATA_SOURCE_TAG: data_source(settings)}
    tags = {
        "campaign": record.campaign,
        "selected_by": record.details.get("selected_by", record.model_name),
        "fallback_reason": record.details.get("fallback_reason") or "",
    }
    with replacing_run(settings, CAMPAIGN_DAG, key, record.run_id, tags) as (client, run_id):
        counts = ("scored", "eligible", "excluded", "selected", "treatment", "holdout", "srm_p_value")
        log_values(
            client,
            run_id,
            params={
                "campaign": record.campaign,
                "as_of": record.logical_date.isoformat(),
                "model": f"{record.model_name} v{record.model_version}",
                "holdout_fraction": record.holdout_fraction,
                **{f"lookalike_{k}": v for k, v in record.details.get("lookalike", {}).items()},
            },
            metrics={k: float(selection[k]) for k in counts},
        )
        client.log_dict(run_id, selection["excluded_by_reason"], "excluded_by_reason.json")
        if (
            folder / monitoring.STABILITY_FILE
        ).is_file():  # the score's and features' PSI against the reference
            rows = storage.read_frame(folder / monitoring.STABILITY_FILE)
            psi = rows.loc[rows["metric"] == "psi"]
            log_values(
                client,
                run_id,
                params={},
                metrics={f"psi_{r.subject}": float(r.value) for r in psi.itertuples()},
            )
            client.log_text(run_id, rows.to_csv(index=False), "monitoring/stability.csv")
        for name in ("segment_mix.csv", "segment_summary_base.csv", "segment_mix.png"):
            if (charts / name).exists():
                client.log_artifact(run_id, str(charts / name))
    return run_id


def _safe_url(engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def run_campaign(settings: Settings, name: str, as_of: Any = None, progress: Progress = print) -> dict:
    """The whole campaign job in one process (what the ``campaign_scoring`` DAG runs task by task), without the
    source-data gate (run :func:`validate_data` first, as the DAG does)."""
    as_of = resolve_as_of(settings, as_of)
    # Another `pmp score` of this run id over the same data folder would share the attempt folder: take turns.
    with run_lock(settings.runs_dir, campaign_run_id(name, as_of), say_to(progress)):
        campaign_features(settings, name, as_of, progress)
        campaign_segments(settings, name, as_of, progress)
        campaign_score(settings, name, as_of, progress)
        campaign_select(settings, name, as_of, progress)
        return campaign_write(settings, name, as_of, progress)
