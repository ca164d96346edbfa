"""The churn and value training flows.

Churn: labelled snapshots from the lake, the feature gate, the fit, the registry and the promotion rule, and (on a
synthetic bank) the oracle's figures beside the model's; once as :func:`train_churn` (the CLI), and as the steps
features -> labels -> fit -> evaluate -> register that the ``churn_training`` DAG runs task by task, each writing
under ``runs/churn_training__<as_of>/``. Value: :func:`value_train`, the ``value_training`` DAG's one step.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.config import Settings, load_settings
from pipelines.data import gate_reports, gates, storage
from pipelines.data.gates import require_valid
from pipelines.features.catalogue import CATEGORICAL_FEATURES, FEATURE_NAMES, ID, WindowContract
from pipelines.features.gate import validate_features
from pipelines.features.labels import (
    LABEL,
    SNAPSHOT,
    LabelDefinition,
    Split,
    build_training_set,
    check_label_balance,
    make_labels,
    snapshot_dates,
    split_out_of_time,
)
from pipelines.features.wide_table import build_features, feature_table_spec, left_out_of, load_tables
from pipelines.jobs.common import registered_summary, resolve_as_of
from pipelines.jobs.monitoring import record_reference
from pipelines.models import tuning
from pipelines.models.propensity import TrainConfig, evaluate_model
from pipelines.models.registry import TrainResult, register_model, train_and_register
from pipelines.progress import Progress, say_to
from pipelines.runs import make_run_id, run_dir
from pipelines.synthetic import oracle

TRAINING_DAG = "churn_training"
VALUE_DAG = "value_training"
VALUE_HORIZON_MONTHS = 6


def present_features(frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The catalogued features (and, of them, the categorical ones) that ``frame`` holds, in catalogue order.

    The wide table decides what a model trains on: a source without an optional table (a retailer: no balances,
    no app events) leaves its features out of the wide table, so they are not asked for here; the fitted model
    records the list and scoring uses the model's own. ValueError when the frame has none of them.
    """
    features = [f for f in FEATURE_NAMES if f in frame.columns]
    if not features:
        raise ValueError("the training frame has none of the catalogued features (not a wide table?)")
    return features, [f for f in CATEGORICAL_FEATURES if f in features]


def train_churn(
    data_dir: str | Path,
    *,
    tracking_uri: str,
    as_of: Any = None,
    definition: Any = None,
    snapshots: int = 5,
    window: Any = None,
    config: TrainConfig | None = None,
    experiment: str = "churn_training",
    min_positives: int = 500,
    min_negatives: int = 500,
    expectations_dir: str | Path | None = None,
    label_transform: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
    progress: Progress = print,
) -> TrainResult:
    """Train the churn model on the lake under ``data_dir`` with labels complete before ``as_of``.

    ``as_of`` defaults to the lake's end. The newest complete snapshot is the out-of-time test, the one before it
    validation. When the data folder has the generator's ground truth, the run also logs ``oracle_auc``,
    ``oracle_top_decile_lift`` and ``auc_to_oracle``.

    Before training, the wide table of every snapshot goes through the ``customer_features`` suite of
    ``expectations_dir`` (default: the project's): a critical failure stops the run with
    :class:`gates.ValidationError` naming snapshot, table, column and rule, before anything is fitted or logged.
    The run logs ``gx_success``, ``gx_critical_failures`` and ``gx_warnings`` (summed over snapshots) and the
    report as artifact ``validation/customer_features.json``.

    ``label_transform`` is for tests and audits only (e.g. shuffled labels, to prove the promotion rule rejects a
    model that learned nothing): it gets the training and the validation frame in turn and returns each with the
    same rows and columns, only the label changed. The out-of-time test frame keeps its real labels, so the model
    and the champion are still judged on real outcomes. Its name is logged as parameter ``run.label_transform``.
    """
    say = say_to(progress)
    data_dir = Path(data_dir)
    lake = data_dir / "lake"
    definition = definition or LabelDefinition()
    window = window or WindowContract(horizon_days=definition.horizon_days, gap_days=definition.gap_days)
    run_date = pd.Timestamp(as_of) if as_of is not None else pd.Timestamp(storage.lake_end(lake))
    dates = snapshot_dates(run_date, definition, snapshots)
    say(f"churn training: {definition.tag}, snapshots {dates[0]:%Y-%m-%d} .. {dates[-1]:%Y-%m-%d} (test)")
    data = build_training_set(lake, dates, definition, window, progress=say)

    # The feature gate: each snapshot's wide table against its suite, before anything is trained or logged.
    spec = feature_table_spec()
    expectations_dir = Path(expectations_dir or load_settings().expectations_dir)
    customers = storage.read_table(lake, "customers", columns=[ID, "signup_date", "closed_date"])
    gate: dict[str, gate_reports.TableResult] = {
        f"{d:%Y-%m-%d}": validate_features(
            data.loc[data[SNAPSHOT] == d].reset_index(drop=True),
            customers,
            d,
            expectations_dir,
            window=window,
            left_out=left_out_of(data),
        )
        for d in dates
    }
    critical = sum(len(r.critical_failures) for r in gate.values())
    warned = sum(len(r.warnings) for r in gate.values())
    say(
        f"feature gate ({spec.name}, {len(gate)} snapshots): {critical} critical failure(s), {warned} warning(s)"
    )
    if critical:
        raise gates.ValidationError(
            "churn training stopped: the wide table failed its critical expectations\n"
            + "\n".join(r.summary() for r in gate.values() if not r.success)
        )
    for r in gate.values():
        for o in r.warnings:
            say(f"  warning as of {r.as_of}: {o.message}")
    report = {
        "suite": spec.name,
        "success": all(r.success for r in gate.values()),
        "critical_failures": [
            f"as of {r.as_of}: {o.message}" for r in gate.values() for o in r.critical_failures
        ],
        "warnings": [f"as of {r.as_of}: {o.message}" for r in gate.values() for o in r.warnings],
        "snapshots": {day: r.to_dict() for day, r in gate.items()},
    }

    split = split_out_of_time(data)
    if label_transform is not None:
        parts = {}
        for part, frame in (("train", split.train), ("valid", split.valid)):
            changed = label_transform(frame)
            if len(changed) != len(frame) or list(changed.columns) != list(frame.columns):
                raise ValueError(f"label_transform must keep the rows and columns of the {part} frame")
            parts[part] = changed
        split = Split(train=parts["train"], valid=parts["valid"], test=split.test)
    check_label_balance(split.train, min_positives, min_negatives, what="training")
    check_label_balance(split.test, 1, 1, what="test")
    extra: dict[str, float] = {
        "gx_success": float(report["success"]),
        "gx_critical_failures": float(critical),
        "gx_warnings": float(warned),
    }
    if oracle.truth_available(data_dir) and definition.name == "closure" and definition.gap_days == 0:
        extra.update(oracle.oracle_metrics(data_dir, split.test, dates[-1], definition))
    config = config or TrainConfig(model_name="churn")
    features, categorical = present_features(split.train)
    result = train_and_register(
        split.train,
        split.valid,
        split.test,
        features=features,
        categorical=categorical,
        label=LABEL,
        config=config,
        tracking_uri=tracking_uri,
        experiment=experiment,
        run_params={
            "label_definition": definition.tag,
            "outflow_pct": definition.outflow_pct,
            "window.lookback_days": window.lookback_days,
            "window.gap_days": window.gap_days,
            "window.horizon_days": window.horizon_days,
            "snapshots": ",".join(f"{d:%Y-%m-%d}" for d in dates),
            **(
                {"label_transform": getattr(label_transform, "__name__", repr(label_transform))}
                if label_transform is not None
                else {}
            ),
        },
        lineage={
            "lake": str(lake),
            "run_date": f"{run_date:%Y-%m-%d}",
            "test_snapshot": f"{dates[-1]:%Y-%m-%d}",
        },
        extra_metrics=extra,
        progress=say,
    )
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    client.log_dict(result.run_id, report, f"validation/{spec.name}.json")
    record_reference(tracking_uri, result.run_id, result.model, split.test, dates[-1])
    result.metrics.update(extra)
    if "oracle_auc" in extra:
        ratio = result.metrics["auc"] / extra["oracle_auc"]
        client.log_metric(result.run_id, "auc_to_oracle", ratio)
        result.metrics["auc_to_oracle"] = ratio
        say(f"oracle AUC {extra['oracle_auc']:.4f}: the model reaches {ratio:.1%} of it")
    return result


# --------------------------------------------------------------------------------------------------------------
# The churn_training DAG's steps: features -> labels -> fit -> evaluate -> register


def label_params(params: Any = None) -> dict[str, Any]:
    """The label settings of a training run from DAG params (or defaults)."""
    params = dict(params or {})
    return {
        "definition": str(params.get("definition") or "closure"),
        "horizon_days": int(params.get("horizon_days") or 90),
        "snapshots": int(params.get("snapshots") or 5),
    }


def training_run_id(as_of: Any) -> str:
    """``churn_training__<as_of>``: the run whose folder the churn_training steps share."""
    return make_run_id(TRAINING_DAG, as_of)


def _training(settings: Settings, as_of: Any, params: Any):
    """The run's date, label definition, window, snapshot dates and folder from the label ``params``
    (:func:`label_params`: DAG params or None for the defaults)."""
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
    say = say_to(progress)
    as_of, label, window, dates, folder = _training(settings, as_of, params)
    say(f"churn training {as_of}: {label.tag}, snapshots {dates[0]:%Y-%m-%d} .. {dates[-1]:%Y-%m-%d} (test)")
    gates = {}
    for d in dates:
        tables = load_tables(settings.lake_dir, d, window, progress=say)
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
    say = say_to(progress)
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
    return split_out_of_time(storage.read_frame(folder / "training_set.parquet"))


def training_fit(
    settings: Settings,
    as_of: Any = None,
    params: Any = None,
    *,
    progress: Progress = None,
) -> str:
    """Fit LightGBM (early stopping on the validation snapshot) and its calibrator -> ``model.pkl``; with a search
    budget (``PM_TUNE_TRIALS``, ``PM_TUNE_SECONDS``) the best trial of a hyperparameter search on the validation
    snapshot, its trials -> ``search.json`` for the register step."""
    say = say_to(progress)
    *_, folder = _training(settings, as_of, params)
    split = _split(folder)
    say(f"fitting on {len(split.train):,} rows, early stopping on {len(split.valid):,}")
    config = TrainConfig(model_name="churn", seed=settings.seed, **tuning.budget(settings))
    features, categorical = present_features(split.train)
    model, _, search = tuning.fit_tuned(
        split.train, split.valid, features, categorical, LABEL, config, progress
    )
    storage.write_json_atomic(folder / "search.json", search.to_dict() if search else {})
    path = folder / "model.pkl"
    storage.write_bytes_atomic(path, pickle.dumps(model))
    say(f"best iteration {model.best_iteration}")
    return str(path)


def _load_fitted(folder: Path):
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
    say = say_to(progress)
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
    say = say_to(progress)
    as_of, label, window, dates, folder = _training(settings, as_of, params)
    split = _split(folder)
    evaluation = folder / "evaluation"
    metrics = storage.read_json(evaluation / "metrics.json")
    # Absent in a folder fitted before searches existed (a run upgraded between its tasks): no search.
    found = storage.read_json(folder / "search.json") if (folder / "search.json").is_file() else {}
    search = tuning.SearchResult.from_dict(found) if found else None
    config = TrainConfig(model_name="churn", seed=settings.seed, **tuning.budget(settings))
    if search is not None:
        config = replace(config, lgb_overrides=search.best_params)
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
        config=config,
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
            # why this training ran: schedule, manual, or model_monitoring's drift or decay reason
            "trigger": str(dict(params or {}).get("trigger") or "manual"),
        },
        lineage={
            "lake": str(settings.lake_dir),
            "run_date": as_of.isoformat(),
            "test_snapshot": f"{dates[-1]:%Y-%m-%d}",
            "training_set": str(folder / "training_set.parquet"),
        },
        extra_metrics=extra,
        progress=say,
        search=search,
    )
    from mlflow import MlflowClient

    MlflowClient(settings.mlflow_tracking_uri).log_artifact(
        result.run_id, str(folder / "features" / "gate.json"), artifact_path="validation"
    )
    record_reference(settings.mlflow_tracking_uri, result.run_id, result.model, split.test, dates[-1])
    registered = {**registered_summary(result), **{k: float(v) for k, v in extra.items()}}
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
# The value_training DAG's step


def value_train(settings: Settings, as_of: Any = None, progress: Progress = None) -> dict:
    """Train, evaluate (against the BG/NBD + Gamma-Gamma baseline on the same customers), register and maybe
    promote the ``value`` model (``value.train_value``); returns the decision and the test metrics."""
    from pipelines.models import value_training

    as_of = resolve_as_of(settings, as_of)
    # The newest snapshot whose label window (the next HORIZON_MONTHS months of spend) ends by the run date.
    snapshot = (pd.Timestamp(as_of) - pd.DateOffset(months=VALUE_HORIZON_MONTHS)).date()
    result = value_training.train_value(
        settings.data_dir,
        tracking_uri=settings.mlflow_tracking_uri,
        as_of=snapshot,
        horizon_months=VALUE_HORIZON_MONTHS,
        expectations_dir=settings.expectations_dir,
        progress=say_to(progress),
    )
    say_to(progress)(result.summary())
    return registered_summary(result)
