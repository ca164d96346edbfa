"""Model monitoring (docs/monitoring.md): what the scoring runs, the ``model_monitoring`` DAG and ``pmp monitor``
call.

* **Reference.** When a model is registered, the profile of its score, of its top features (by gain) and of
  their leading windows (:func:`leading_features`) on the newest snapshot it was built from (its out-of-time test
  snapshot: one row per customer at one date, the shape of a scoring run) is logged with its MLflow run
  (``monitoring/reference.json``).
* **Stability.** Every scoring run compares its score and those features with the reference
  (:func:`score_stability`: PSI, missing and unseen shares) into the run folder's ``stability.parquet``; the write
  step stores them in ``model_monitoring`` (:func:`record_stability`) and the campaign's MLflow run.
* **Realised performance.** Once a churn run's label window has passed in the lake, :func:`realised_due`
  measures the run's realised AUC, top-decile lift and calibration by decile on the customers the campaign did
  not contact (the treatment group's outcome is the campaign's doing, not the model's; its holdout stands in for
  it), graded against the model's own test AUC. Response and uplift runs are measured, ungraded, once read out.
* **Retraining.** :func:`retrain_requests` turns an alert on a run of a model's current champion into a reason to
  retrain (the DAG publishes it as the ``retrain_<model>`` asset event; the training DAG records it).
"""

from __future__ import annotations

import functools
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.config import Settings
from pipelines.data import storage
from pipelines.progress import Progress, say_to

REFERENCE_ARTIFACT = "monitoring/reference.json"
STABILITY_FILE = "stability.parquet"
TOP_FEATURES = 10
# The models whose runs the monitor grades once labels mature; the campaign models whose runs it reads out
# (ungraded: measured within the selected audience) once the campaign is read out; the models it may ask to
# retrain (an alert on their scoring runs' stability, or on graded realised performance).
MONITORED = ("churn",)
CAMPAIGN_MODELS = ("response", "uplift")
RETRAINED = ("churn", "response")


def thresholds(settings: Settings):
    """The stability thresholds of the settings (``PM_PSI_WARN``, ``PM_PSI_ALERT``)."""
    from pipelines.monitoring.stability import Thresholds

    return Thresholds(psi_warn=settings.psi_warn, psi_alert=settings.psi_alert)


def top_features(model: Any, n: int = TOP_FEATURES) -> list[str]:
    """The ``n`` features of a fitted model with the largest total gain, largest first (ties by name)."""
    gains = model.booster.feature_importance(importance_type="gain")
    ranked = sorted(zip(model.features, gains, strict=True), key=lambda fg: (-fg[1], fg[0]))
    return [f for f, _ in ranked[:n]]


# Scoring runs are monthly, so a feature's 30-day window holds only what happened since the run before.
LEADING_WINDOW_DAYS = 30
_WINDOWED = re.compile(r"(?P<base>.+)_(?P<days>\d+)d")


def leading_features(monitored: list[str], available: list[str]) -> dict[str, str]:
    """The leading window of each windowed feature in ``monitored``: ``{"avg_ticket_30d": "avg_ticket_90d"}``.

    A feature over the last N > 30 days (``<base>_<N>d``) lags a shift: the first run after it sees 30/N of the
    change. The same definition over the last 30 days (``<base>_30d``, when ``available`` has it and it is not
    monitored already) sees all of it at once, so it is monitored beside it (docs/monitoring.md)."""
    leading: dict[str, str] = {}
    for name in monitored:
        match = _WINDOWED.fullmatch(name)
        if match is None or int(match["days"]) <= LEADING_WINDOW_DAYS:
            continue
        sibling = f"{match['base']}_{LEADING_WINDOW_DAYS}d"
        if sibling in available and sibling not in monitored:
            leading.setdefault(sibling, name)
    return leading


# Features that grow with the calendar by construction (catalogue: tenure_days = days since signup, age_years = the
# year of as_of minus the birth year): how much older the reference's customers are at a later date.
CALENDAR_AGEING = {
    "tenure_days": lambda then, now: float((now - then).days),
    "age_years": lambda then, now: float(now.year - then.year),
}


def reference_for(model: Any, frame: pd.DataFrame, as_of: Any) -> dict:
    """The monitoring reference of ``model`` on ``frame`` (customers as of ``as_of``): its calibrated scores, its
    top features and their leading windows."""
    from pipelines.monitoring.stability import reference_profile

    top = top_features(model)
    leading = leading_features(top, list(model.features))
    features = [*top, *leading]
    profile = reference_profile(
        frame, model.predict_proba(frame), features, [f for f in features if f in model.categorical]
    )
    return {
        **profile,
        "top_features": top,
        "leading_features": leading,
        "as_of": f"{pd.Timestamp(as_of):%Y-%m-%d}",
    }


def aged_by(reference: dict, as_of: Any) -> dict[str, float]:
    """How far each calendar-ageing feature of ``reference`` moved by ``as_of`` (see :data:`CALENDAR_AGEING`)."""
    if "as_of" not in reference:
        return {}
    then, now = pd.Timestamp(reference["as_of"]), pd.Timestamp(as_of)
    return {f: age(then, now) for f, age in CALENDAR_AGEING.items() if f in reference["features"]}


def record_reference(
    tracking_uri: str, mlflow_run_id: str, model: Any, frame: pd.DataFrame, as_of: Any
) -> dict:
    """Log :func:`reference_for` with the model's MLflow run (``monitoring/reference.json``)."""
    from mlflow import MlflowClient

    from pipelines.models.registry import mlflow_store

    profile = reference_for(model, frame, as_of)
    with mlflow_store(tracking_uri):
        MlflowClient(tracking_uri).log_dict(mlflow_run_id, profile, REFERENCE_ARTIFACT)
    return profile


def load_reference(tracking_uri: str, mlflow_run_id: str) -> dict | None:
    """The reference logged with a model's MLflow run, or None (a version registered before monitoring)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from pipelines.models.registry import mlflow_store

    if not mlflow_run_id:
        return None
    with mlflow_store(tracking_uri), tempfile.TemporaryDirectory() as tmp, _no_progress_bar():
        client = MlflowClient(tracking_uri)
        try:
            listed = {f.path for f in client.list_artifacts(mlflow_run_id, "monitoring")}
            if REFERENCE_ARTIFACT not in listed:
                return None
            path = client.download_artifacts(mlflow_run_id, REFERENCE_ARTIFACT, tmp)
        except MlflowException:
            return None
        return json.loads(Path(path).read_text(encoding="utf-8"))


@contextmanager
def _no_progress_bar() -> Iterator[None]:
    """MLflow draws a download bar on stderr for every artifact; a scoring run's output is lines, not bars."""
    name = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(name)
    os.environ[name] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def score_stability(
    settings: Settings,
    model: Any,
    wide: pd.DataFrame,
    scored: pd.DataFrame,
    folder: Path,
    as_of: Any,
    progress: Progress = None,
) -> pd.DataFrame | None:
    """The stability of one scoring run as of ``as_of`` (``model``: the pinned :class:`ScoringModel`) ->
    ``stability.parquet`` in ``folder``; None (and a line saying why) when the model has no reference."""
    from pipelines.monitoring.stability import stability, summary_lines

    say = say_to(progress)
    reference = load_reference(settings.mlflow_tracking_uri, model.run_id)
    if reference is None:
        say(f"stability not measured: {model.name} v{model.version} has no monitoring reference")
        (folder / STABILITY_FILE).unlink(missing_ok=True)
        return None
    rows = stability(
        reference, wide, scored["score"].to_numpy(), thresholds(settings), aged=aged_by(reference, as_of)
    )
    storage.write_frame(rows, folder / STABILITY_FILE)
    for line in summary_lines(rows):
        say(f"stability: {line}")
    return rows


def record_stability(settings: Settings, engine: Any, record: Any, folder: Path) -> pd.DataFrame | None:
    """Store a written run's ``stability.parquet`` in ``model_monitoring`` (replacing an earlier write)."""
    from pipelines.monitoring.store import write_monitoring

    path = folder / STABILITY_FILE
    if not path.is_file():
        return None
    rows = storage.read_frame(path)
    write_monitoring(
        engine,
        run_id=record.run_id,
        kind="stability",
        campaign=record.campaign,
        model_name=record.model_name,
        model_version=record.model_version,
        as_of=record.logical_date,
        rows=rows,
    )
    return rows


# ---------------------------------------------------------------- realised performance


def _label_definition(tracking_uri: str, model_name: str, version: str):
    """The churn definition a model version was trained with (its run's ``label_definition``, e.g. closure_90d)."""
    from mlflow import MlflowClient

    from pipelines.features.labels import LabelDefinition
    from pipelines.models.registry import mlflow_store

    with mlflow_store(tracking_uri):
        client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
        run_id = client.get_model_version(model_name, version).run_id
        run = client.get_run(run_id)
    tag = run.data.params.get("run.label_definition", "closure_90d")  # registry.log_run_inputs: "run." prefix
    name, _, horizon = tag.rpartition("_")
    gap = int(run.data.params.get("run.window.gap_days", 0))
    return LabelDefinition(name, int(horizon.rstrip("d")), gap_days=gap), run.data.metrics.get("test_auc")


def realised_churn(settings: Settings, run: pd.Series, lake_end: date) -> pd.DataFrame | None:
    """Realised rows of one churn scoring run, or None when its label window has not passed in the lake."""
    from pipelines.features.labels import label_complete, make_labels
    from pipelines.features.wide_table import load_tables
    from pipelines.monitoring.realised import decay_level, realised_classification

    definition, test_auc = _label_definition(
        settings.mlflow_tracking_uri, run["model_name"], str(run["model_version"])
    )
    as_of = pd.Timestamp(run["logical_date"])
    if not label_complete(lake_end, as_of, definition):
        return None
    folder = settings.runs_dir / run["run_id"]
    scores = storage.read_frame(folder / "scores.parquet", columns=["customer_id", "score"])
    targets = storage.read_frame(folder / "targets.parquet", columns=["customer_id", "target_group"])
    # The contacted customers' outcomes are partly the campaign's doing: leave them out, and let the holdout (a
    # random part of the same selection) stand for them, each holdout customer weighing selected / holdout.
    group = scores["customer_id"].map(targets.set_index("customer_id")["target_group"])
    n_holdout = int((group == "holdout").sum())
    weight = np.where(group == "holdout", (group.notna().sum() / n_holdout) if n_holdout else 1.0, 1.0)
    keep = (group != "treatment").to_numpy().copy()
    tables = load_tables(settings.lake_dir, as_of, extra_until=definition.window(as_of)[1])
    y = make_labels(tables, as_of, definition).reindex(scores["customer_id"].to_numpy())
    keep &= y.notna().to_numpy()
    figures = realised_classification(
        y.to_numpy()[keep].astype(int), scores["score"].to_numpy()[keep], weights=weight[keep]
    )
    level = (
        decay_level(figures["auc"], test_auc, settings.decay_warn, settings.decay_alert)
        if test_auc is not None
        else "ok"
    )
    return _classification_rows(figures, test_auc, level)


def _classification_rows(figures: dict, test_auc: float | None, level: str) -> pd.DataFrame:
    """Realised rows of a propensity model (:func:`realised_classification`'s figures): AUC graded ``level``
    against ``test_auc``, lift, calibration error, counts, and the observed rate per decile (expected beside)."""
    from pipelines.monitoring.store import ROW_COLUMNS

    rows = [
        ("auc", "model", figures["auc"], test_auc, level),
        ("top_decile_lift", "model", figures["top_decile_lift"], None, "ok"),
        ("calibration_error", "model", figures["calibration_error"], None, "ok"),
        ("rows", "model", float(figures["rows"]), None, "ok"),
        ("positives", "model", float(figures["positives"]), None, "ok"),
    ]
    rows += [
        ("observed_rate", f"decile_{int(d['decile']):02d}", d["observed"], d["expected"], "ok")
        for d in figures["calibration"]
    ]
    return pd.DataFrame(rows, columns=list(ROW_COLUMNS))


def _model_metric(tracking_uri: str, model_name: str, version: str, key: str) -> float | None:
    """A metric of the MLflow run that registered ``model_name`` ``version`` (its test figure), or None."""
    from mlflow import MlflowClient

    from pipelines.models.registry import mlflow_store

    with mlflow_store(tracking_uri):
        client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
        run_id = client.get_model_version(model_name, version).run_id
        return client.get_run(run_id).data.metrics.get(key)


def realised_campaign(
    settings: Settings, run: pd.Series, outcomes: Callable[[int], pd.DataFrame]
) -> pd.DataFrame:
    """Realised rows of a response or uplift campaign run that has been read out. ``outcomes(window_days)`` gives
    every contact's conversion within that window (:func:`pipelines.features.history.campaign_outcomes`, the
    definition the campaign history and training use). Within the selected audience only (nobody else was
    contacted), so they are shown, not graded: ``response``: AUC, lift and calibration of the treated customers'
    conversions; ``uplift``: the Qini and uplift@30 % of treatment against the run's own holdout.
    ``reference``: the model's test figure at registration."""
    from pipelines.features.history import CAMPAIGN, CONVERTED, TREATED
    from pipelines.jobs.common import load_campaign
    from pipelines.monitoring.realised import realised_classification, realised_uplift
    from pipelines.monitoring.store import ROW_COLUMNS

    window = load_campaign(settings, str(run["campaign"])).response_window_days
    contacts = outcomes(window)
    contacts = contacts.loc[contacts[CAMPAIGN] == run["run_id"], ["customer_id", TREATED, CONVERTED]]
    targets = storage.read_frame(
        settings.runs_dir / run["run_id"] / "targets.parquet", columns=["customer_id", "score"]
    )
    frame = targets.merge(contacts, on="customer_id", how="inner", validate="one_to_one")
    y, treated, score = frame[CONVERTED].to_numpy(), frame[TREATED].to_numpy() == 1, frame["score"].to_numpy()
    version = str(run["model_version"])
    if run["model_name"] != "uplift":
        figures = realised_classification(y[treated], score[treated])
        test_auc = _model_metric(settings.mlflow_tracking_uri, str(run["model_name"]), version, "test_auc")
        return _classification_rows(figures, test_auc, "ok")
    figures = realised_uplift(y, treated.astype(int), score)
    test_qini = _model_metric(settings.mlflow_tracking_uri, "uplift", version, "qini")
    rows = [
        ("qini", "model", figures["qini"], test_qini, "ok"),
        ("uplift_at_30", "model", figures["uplift_at_30"], None, "ok"),
        ("rows", "model", float(figures["rows"]), None, "ok"),
    ]
    return pd.DataFrame(rows, columns=list(ROW_COLUMNS))


def realised_due(settings: Settings, as_of: Any = None, progress: Progress = None) -> list[dict]:
    """Measure every succeeded run whose outcomes are known by ``as_of`` and that has no realised rows yet:
    churn runs whose label window the lake covers (never past the lake's end), response and uplift runs once
    read out. Returns what was measured; then charts every model's series in MLflow (:func:`log_series`)."""
    from pipelines.campaigns import store, store_schema
    from pipelines.features.history import campaign_outcomes
    from pipelines.monitoring.store import read_monitoring, write_monitoring

    say = say_to(progress)
    lake_end = storage.lake_end(settings.lake_dir)  # labels need the data: never past what the lake holds
    if as_of:
        lake_end = min(lake_end, pd.Timestamp(as_of).date())
    engine = store_schema.make_engine(settings.database_url)
    store_schema.ensure_schema(engine)
    runs = store.list_runs(engine)
    runs = runs.loc[(runs["status"] == "succeeded") & runs["model_name"].isin((*MONITORED, *CAMPAIGN_MODELS))]
    done = set(read_monitoring(engine, kind="realised")["run_id"])
    # a read-out run's window has closed and its responses landed (campaign_results holds its row)
    read_out = set(store.read_results(engine)["campaign_id"])
    outcomes = functools.cache(
        lambda window: campaign_outcomes(settings.lake_dir, window)
    )  # read once a window
    measured = []
    for _, run in runs.sort_values("logical_date").iterrows():
        if run["run_id"] in done or not (settings.runs_dir / run["run_id"] / "scores.parquet").is_file():
            continue
        if run["model_name"] in MONITORED:
            rows = realised_churn(settings, run, lake_end)
        elif run["run_id"] in read_out:
            rows = realised_campaign(settings, run, outcomes)
        else:
            rows = None
        if rows is None:
            continue
        write_monitoring(
            engine,
            run_id=run["run_id"],
            kind="realised",
            campaign=run["campaign"],
            model_name=run["model_name"],
            model_version=str(run["model_version"]),
            as_of=pd.Timestamp(run["logical_date"]).date(),
            rows=rows,
        )
        head = rows.iloc[0]
        test = "" if pd.isna(head["reference"]) else f" (test {head['reference']:.3f} at registration)"
        say(f"realised {run['run_id']}: {head['metric']} {head['value']:.3f}{test} {head['level'].upper()}")
        measured.append(
            {"run_id": run["run_id"], head["metric"]: float(head["value"]), "level": str(head["level"])}
        )
    engine.dispose()
    if not measured:
        say(f"realised performance: nothing due by {lake_end}")
    log_series(settings, progress)
    return measured


# ---------------------------------------------------------------- retraining


def retrain_requests(settings: Settings, as_of: Any = None, progress: Progress = None) -> dict[str, dict]:
    """``{model: {"reason", "run_id", "as_of"}}`` for each :data:`RETRAINED` model whose current champion has an
    alert on a run measured after the newest version of the model was registered (so an alert asks once: a retrain
    registers a version, promoted or not, and the next alert must come from a newer measurement). ``as_of`` is
    the date the retraining should train as of: ``as_of`` (default the lake's end), never past the lake's end."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from pipelines.campaigns import store_schema
    from pipelines.models.registry import CHAMPION, mlflow_store
    from pipelines.monitoring.store import read_monitoring

    say = say_to(progress)
    train_as_of = storage.lake_end(settings.lake_dir)
    if as_of:
        train_as_of = min(train_as_of, pd.Timestamp(as_of).date())
    engine = store_schema.make_engine(settings.database_url)
    rows = read_monitoring(engine)
    requests: dict[str, dict] = {}
    uri = settings.mlflow_tracking_uri
    with mlflow_store(uri):
        client = MlflowClient(uri, registry_uri=uri)
        for model in RETRAINED:
            try:
                champion = client.get_model_version_by_alias(model, CHAMPION)
                versions = client.search_model_versions(f"name = '{model}'")
            except MlflowException:
                continue
            newest = max(pd.Timestamp(v.creation_timestamp, unit="ms", tz="UTC") for v in versions)
            alerts = rows.loc[
                (rows["model_name"] == model)
                & (rows["model_version"] == str(champion.version))
                & (rows["level"] == "alert")
            ]
            alerts = alerts.loc[pd.to_datetime(alerts["computed_at"], utc=True) > newest]
            if alerts.empty:
                say(f"{model}: no alert on champion v{champion.version} since its newest version")
                continue
            first = alerts.sort_values(["as_of", "kind", "value"], ascending=[False, True, False]).iloc[0]
            requests[model] = {
                "reason": _reason(first),
                "run_id": str(first["run_id"]),
                "as_of": train_as_of.isoformat(),
            }
            say(f"{model}: retrain requested: {requests[model]['reason']}")
    return requests


def _reason(row: pd.Series) -> str:
    if row["kind"] == "stability":
        return f"drift: {row['metric']} of {row['subject']} {row['value']:.3f} in run {row['run_id']}"
    return (
        f"decay: realised {row['metric']} {row['value']:.3f} vs {row['reference']:.3f} at registration "
        f"in run {row['run_id']}"
    )


SERIES_EXPERIMENT = "model_monitoring"
SERIES_METRICS = ("psi_score", "psi_feature", "realised_auc", "test_auc")


def log_series(settings: Settings, progress: Progress = None) -> list[str]:
    """One MLflow run per monitored model in experiment ``model_monitoring`` (replaced each time) holding its whole
    series: ``psi_score``, ``psi_feature`` (the worst monitored feature), ``realised_auc`` and ``test_auc`` with one
    step per scoring run, timestamped at the run's as-of date, so the MLflow UI charts them over time; the table
    as ``monitoring.csv``. Returns the models logged."""
    from mlflow.entities import Metric

    from pipelines.jobs.tracking import replacing_run
    from pipelines.models.registry import mlflow_store

    say = say_to(progress)
    table = monitor_table(settings)
    if table.empty:
        return []
    logged = []
    with mlflow_store(settings.mlflow_tracking_uri):
        for name, part in table.groupby("model_name", sort=True):
            with replacing_run(settings, SERIES_EXPERIMENT, {"monitored_model": name}, name) as (
                client,
                run_id,
            ):
                metrics = [
                    Metric(key, float(getattr(r, key)), int(pd.Timestamp(r.as_of).timestamp() * 1000), step)
                    for step, r in enumerate(part.itertuples())
                    for key in SERIES_METRICS
                    if pd.notna(getattr(r, key))
                ]
                for start in range(0, len(metrics), 1000):  # MLflow's batch limit
                    client.log_batch(run_id, metrics=metrics[start : start + 1000])
                client.log_text(run_id, part.to_csv(index=False), "monitoring.csv")
            logged.append(name)
            say(f"{name}: {len(part)} scoring run(s) charted in MLflow experiment {SERIES_EXPERIMENT!r}")
    return logged


def monitor_table(settings: Settings, model: str | None = None) -> pd.DataFrame:
    """The per-run monitoring table ``pmp monitor`` prints (:func:`pipelines.monitoring.store.summarise_runs`)."""
    from pipelines.campaigns import store_schema
    from pipelines.monitoring.store import read_monitoring, summarise_runs

    engine = store_schema.make_engine(settings.database_url)
    try:
        return summarise_runs(read_monitoring(engine, model_name=model))
    finally:
        engine.dispose()
