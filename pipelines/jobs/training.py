"""The churn training flow: labelled snapshots from the lake, the feature gate, the fit, the registry and the
promotion rule, and (on a synthetic bank) the oracle's figures beside the model's."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.config import load_settings
from pipelines.data import gates, storage
from pipelines.features.gate import validate_features
from pipelines.features.labels import (
    LABEL,
    SNAPSHOT,
    LabelDefinition,
    Split,
    build_training_set,
    check_label_balance,
    snapshot_dates,
    split_out_of_time,
)
from pipelines.features.wide_table import (
    CATEGORICAL_FEATURES,
    FEATURE_NAMES,
    ID,
    WindowContract,
    feature_table_spec,
)
from pipelines.models.propensity import Progress, TrainConfig, TrainResult, train_and_register
from pipelines.synthetic import oracle


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
    say = progress or (lambda _m: None)
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
    gate: dict[str, gates.TableResult] = {
        f"{d:%Y-%m-%d}": validate_features(
            data.loc[data[SNAPSHOT] == d].reset_index(drop=True),
            customers,
            d,
            expectations_dir,
            window=window,
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
    result = train_and_register(
        split.train,
        split.valid,
        split.test,
        features=list(FEATURE_NAMES),
        categorical=list(CATEGORICAL_FEATURES),
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
    result.metrics.update(extra)
    if "oracle_auc" in extra:
        ratio = result.metrics["auc"] / extra["oracle_auc"]
        client.log_metric(result.run_id, "auc_to_oracle", ratio)
        result.metrics["auc_to_oracle"] = ratio
        say(f"oracle AUC {extra['oracle_auc']:.4f}: the model reaches {ratio:.1%} of it")
    return result
