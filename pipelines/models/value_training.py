"""The ``value`` model on the bank: labels, snapshots, training on the wide table, registration and promotion.

:func:`train_value` trains the value model (:mod:`pipelines.models.value`) on the wide table of the bank lake at
one or more snapshots, label = spend over the following months (:func:`make_value_labels`, snapshots from
:func:`plan_value_snapshots`), compares it with the BG/NBD baseline (:mod:`pipelines.models.value_baseline`), logs
and registers it in MLflow as ``value`` and promotes it by :func:`decide_value_promotion` (normalised Gini, with a
guard on the total error).

mlflow is imported inside the functions that need it: importing this module stays cheap.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from pipelines.models.personal_columns import synthetic_example
from pipelines.models.propensity import pyfunc_model
from pipelines.models.registry import Decision
from pipelines.models.value import (
    ID,
    LABEL,
    ValueConfig,
    ValueModel,
    decile_error,
    fit_value_model,
    spend_labels,
    unit_hash,
    value_metrics,
)
from pipelines.models.value_baseline import fit_btyd, predict_btyd
from pipelines.progress import Progress, say_to

SNAPSHOT = "as_of"
TEST_METRICS = ("normalised_gini", "top20_share", "total_error")


def value_window(as_of: Any, horizon_months: int) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The label window ``[as_of, as_of + horizon_months)`` of a snapshot."""
    if horizon_months < 1:
        raise ValueError(f"horizon_months must be at least 1, got {horizon_months}")
    start = pd.Timestamp(as_of)
    return start, start + pd.DateOffset(months=horizon_months)


def make_value_labels(tables: Mapping[str, pd.DataFrame], as_of: Any, horizon_months: int) -> pd.Series:
    """Spend per customer open at ``as_of`` over its label window (index ``customer_id``, name
    ``future_spend``); a customer who closes inside the window counts what they spent until then."""
    from pipelines.features.wide_table import eligible_customers

    start, end = value_window(as_of, horizon_months)
    base = eligible_customers(tables["customers"], start)
    txn = tables["transactions"]
    inside = txn.loc[(txn["txn_ts"] >= start) & (txn["txn_ts"] < end)]
    spend = inside.groupby(ID)["amount"].sum()
    return spend.reindex(pd.Index(base[ID], name=ID), fill_value=0.0).rename(LABEL)


@dataclass(frozen=True)
class ValuePlan:
    """Which snapshots a value training run uses and how it splits them."""

    test_as_of: pd.Timestamp
    train_as_of: tuple[pd.Timestamp, ...]  # earlier snapshots (out-of-time split); empty for a customer split
    split: Literal["time", "customer"]
    horizon_months: int
    lake_start: pd.Timestamp
    lake_end: pd.Timestamp

    @property
    def snapshots(self) -> list[pd.Timestamp]:
        return [*self.train_as_of, self.test_as_of]


def plan_value_snapshots(
    lake_start: Any,
    lake_end: Any,
    horizon_months: int,
    *,
    as_of: Any = None,
    lookback_days: int = 180,
    split: Literal["auto", "time", "customer"] = "auto",
) -> ValuePlan:
    """The test snapshot and, when the lake allows, earlier training snapshots.

    The test snapshot is ``as_of`` (default: the newest month start whose label window ends by ``lake_end``). A
    training snapshot must have its whole lookback inside the lake (``as_of - lookback_days >= lake_start``, or
    its features would be truncated) and its label window must end by the test snapshot (no training label sees
    the test period). ``split="auto"`` is out-of-time when at least one such snapshot exists, otherwise a customer
    split of the test snapshot (12 months of data with a 6-month horizon: only 2025-07-01 qualifies).
    """
    lake_start, lake_end = pd.Timestamp(lake_start), pd.Timestamp(lake_end)
    if as_of is None:
        as_of = (lake_end - pd.DateOffset(months=horizon_months)).to_period("M").start_time
    test, end = value_window(as_of, horizon_months)
    if end > lake_end:
        raise ValueError(
            f"the label window of {test:%Y-%m-%d} ({horizon_months} months) ends {end:%Y-%m-%d}, after the lake's end "
            f"{lake_end:%Y-%m-%d}: choose an earlier as_of or a shorter horizon"
        )
    if test <= lake_start:
        raise ValueError(
            f"as_of {test:%Y-%m-%d} leaves no history before it (the lake starts {lake_start:%Y-%m-%d})"
        )
    earliest = lake_start + pd.Timedelta(days=lookback_days)
    candidates = pd.date_range(earliest.to_period("M").start_time, test, freq="MS")
    earlier = tuple(s for s in candidates if s >= earliest and value_window(s, horizon_months)[1] <= test)
    if split not in ("auto", "time", "customer"):
        raise ValueError(f"split must be 'auto', 'time' or 'customer', got {split!r}")
    if split == "time" and not earlier:
        raise ValueError(
            f"no out-of-time training snapshot: one needs {lookback_days} days of history and a label window ending "
            f"by {test:%Y-%m-%d}; the lake runs {lake_start:%Y-%m-%d} .. {lake_end:%Y-%m-%d} (use split='customer')"
        )
    chosen = "time" if split == "time" or (split == "auto" and earlier) else "customer"
    return ValuePlan(
        test_as_of=test,
        train_as_of=earlier if chosen == "time" else (),
        split=chosen,
        horizon_months=horizon_months,
        lake_start=lake_start,
        lake_end=lake_end,
    )


def build_value_set(
    lake: Path, snapshots: Sequence[Any], horizon_months: int, window: Any = None, progress: Progress = print
) -> pd.DataFrame:
    """Wide table and future spend per snapshot, stacked: ``as_of``, ``customer_id``, features, ``future_spend``."""
    from pipelines.features.wide_table import build_features, load_tables

    say = say_to(progress)
    frames = []
    for as_of in snapshots:
        as_of = pd.Timestamp(as_of)
        tables = load_tables(lake, as_of, window, extra_until=value_window(as_of, horizon_months)[1])
        wide = build_features(tables, as_of, window)
        wide[LABEL] = make_value_labels(tables, as_of, horizon_months).reindex(wide[ID]).to_numpy()
        wide.insert(0, SNAPSHOT, as_of)
        frames.append(wide)
        say(
            f"  snapshot {as_of:%Y-%m-%d}: {len(wide):,} customers, {horizon_months}-month spend "
            f"{wide[LABEL].sum():,.0f} ({(wide[LABEL] > 0).mean():.1%} spend)"
        )
    data = pd.concat(frames, ignore_index=True)
    data.attrs = dict(frames[0].attrs)  # the features the source's tables left out (wide_table.left_out_of)
    return data


@dataclass(frozen=True)
class ValueResult:
    run_id: str
    model_name: str
    version: str
    promoted: bool
    reasons: tuple[str, ...]
    metrics: dict[str, float]
    champion_version: str | None
    model: ValueModel = field(repr=False)

    def summary(self) -> str:
        decision = "PROMOTED to champion" if self.promoted else "NOT promoted (stays challenger)"
        m = self.metrics
        lines = [
            f"run {self.run_id}: {self.model_name} version {self.version} {decision}",
            "test " + "  ".join(f"{k}={m[k]:.4f}" for k in TEST_METRICS if k in m),
        ]
        if "baseline_normalised_gini" in m:
            lines.append(
                "BG/NBD baseline " + "  ".join(f"{k}={m[f'baseline_{k}']:.4f}" for k in TEST_METRICS)
            )
        lines += [f"  {r}" for r in self.reasons]
        return "\n".join(lines)


def decide_value_promotion(
    challenger: Mapping[str, float], champion: Mapping[str, float] | None, config: ValueConfig
) -> Decision:
    """Promote when there is no champion; otherwise only when the normalised Gini gains at least
    ``min_gini_gain`` and ``|total_error|`` is no more than ``max_total_error_worsening`` above the champion's
    (both scored on the same test frame)."""
    if champion is None:
        return Decision(True, ("no champion yet: the first model becomes champion",))
    gain = challenger["normalised_gini"] - champion["normalised_gini"]
    worse = abs(challenger["total_error"]) - abs(champion["total_error"])
    checks = (
        ("normalised_gini", gain, gain >= config.min_gini_gain, f">= {config.min_gini_gain:+.4f}"),
        (
            "|total_error|",
            worse,
            worse <= config.max_total_error_worsening,
            f"<= {config.max_total_error_worsening:+.4f}",
        ),
    )
    values = {
        "normalised_gini": (challenger["normalised_gini"], champion["normalised_gini"]),
        "|total_error|": (abs(challenger["total_error"]), abs(champion["total_error"])),
    }
    reasons = tuple(
        f"{metric}: challenger {values[metric][0]:.4f} vs champion {values[metric][1]:.4f} "
        f"(change {delta:+.4f}, required {need}) -> {'ok' if ok else 'FAIL'}"
        for metric, delta, ok, need in checks
    )
    return Decision(all(ok for _, _, ok, _ in checks), reasons, None, dict(champion))


def evaluate_value_model(
    model: ValueModel, test: pd.DataFrame, label: str, out_dir: Path
) -> dict[str, float]:
    """Test metrics of ``model`` on ``test`` (:func:`value_metrics`); writes ``metrics.json``,
    ``decile_error.csv`` and ``feature_importance.csv`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    y = spend_labels(test, label, "regression")
    p = model.predict(test)
    metrics = value_metrics(y, p)
    decile_error(y, p).to_csv(out_dir / "decile_error.csv", index=False)
    model.feature_importance().to_csv(out_dir / "feature_importance.csv", index=False)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return metrics


def register_value_model(
    model: ValueModel,
    test: pd.DataFrame,
    metrics: Mapping[str, float],
    evaluation_dir: Path,
    *,
    label: str,
    config: ValueConfig,
    tracking_uri: str,
    experiment: str,
    rows: Mapping[str, int],
    run_params: Mapping[str, Any] | None = None,
    lineage: Mapping[str, Any] | None = None,
    extra_metrics: Mapping[str, float] | None = None,
    artifact_location: str | None = None,
    progress: Progress = None,
) -> ValueResult:
    """Log one MLflow run (parameters, lineage, ``test_*`` metrics, the files of ``evaluation_dir`` under
    ``evaluation/``), register a new version of ``config.model_name`` with alias ``challenger``, and move alias
    ``champion`` to it only if it passes :func:`decide_value_promotion` against the current champion scored on
    the same ``test`` frame. The same pattern as :func:`registry.register_model`, with the value metrics."""
    import mlflow
    from mlflow import MlflowClient

    from pipelines.models.propensity import pyfunc_input
    from pipelines.models.registry import (
        _champion_metrics,
        _experiment_id,
        log_registered_pyfunc,
        log_run_inputs,
        mlflow_store,
        record_promotion,
    )

    say = say_to(progress)
    features, categorical = model.features, model.categorical
    metrics, extra_metrics = dict(metrics), dict(extra_metrics or {})
    run_params, lineage = dict(run_params or {}), dict(lineage or {})
    y_test = spend_labels(test, label, "regression")

    with mlflow_store(tracking_uri):
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        experiment_id = _experiment_id(client, experiment, tracking_uri, artifact_location)
        test_input = pyfunc_input(test, features, categorical)
        with mlflow.start_run(experiment_id=experiment_id) as run:
            log_run_inputs(
                config,
                label,
                model,
                rows,
                run_params,
                lineage,
                {"best_iterations": json.dumps(model.best_iterations)},
            )
            mlflow.log_metrics({f"test_{k}": float(v) for k, v in metrics.items()})
            if extra_metrics:
                mlflow.log_metrics({k: float(v) for k, v in extra_metrics.items()})
            mlflow.log_artifacts(str(evaluation_dir), artifact_path="evaluation")

            say("logging and registering the value model")
            example = synthetic_example(test_input)  # never rows of the table (personal_columns)
            version = log_registered_pyfunc(
                client, config.model_name, pyfunc_model(model, "predict"), example, model.predict(example)
            )

            champion_version, champion_metrics, problem = _champion_metrics(
                client, config.model_name, test_input, y_test, value_metrics
            )
            if problem:
                decision = Decision(False, (problem,), champion_version)
            else:
                decision = decide_value_promotion(metrics, champion_metrics, config)
            if champion_metrics is not None:
                mlflow.log_metrics({f"champion_test_{k}": float(champion_metrics[k]) for k in TEST_METRICS})
                mlflow.log_metric(
                    "gain_normalised_gini", metrics["normalised_gini"] - champion_metrics["normalised_gini"]
                )
            verdict = record_promotion(
                client, config.model_name, version, run.info.run_id, decision, champion_version
            )
            say(f"version {version}: {verdict}")

    return ValueResult(
        run_id=run.info.run_id,
        model_name=config.model_name,
        version=version,
        promoted=decision.promoted,
        reasons=decision.reasons,
        metrics={**metrics, **extra_metrics},
        champion_version=champion_version,
        model=model,
    )


def train_value(
    data_dir: str | Path,
    *,
    tracking_uri: str,
    as_of: Any = None,
    horizon_months: int = 6,
    split: Literal["auto", "time", "customer"] = "auto",
    test_share: float = 0.3,
    window: Any = None,
    config: ValueConfig | None = None,
    experiment: str = "value_training",
    baseline: bool = True,
    expectations_dir: str | Path | None = None,
    progress: Progress = print,
) -> ValueResult:
    """Train the ``value`` model on the lake under ``data_dir``: the wide table at a snapshot, label = spend over
    the following ``horizon_months`` months; log, register and maybe promote it.

    Snapshots and split come from :func:`plan_value_snapshots` (out-of-time when the lake has an earlier snapshot
    with a full lookback and a label window ending by the test snapshot; otherwise ``test_share`` of the test
    snapshot's customers, by a fixed hash of the id, are the test set). The model is cross-fitted on the rest
    (:func:`fit_value_model`). Each snapshot's wide table passes the ``customer_features`` gate first, as in churn
    training (a critical failure stops the run with :class:`gates.ValidationError`).

    With ``baseline`` the run also fits BG/NBD + Gamma-Gamma on the lake's transactions before the test snapshot
    and logs its figures on the same test customers as ``baseline_*`` (and ``baseline_decile_error.csv``);
    customers without a transaction before the snapshot get 0 from it.
    """
    from pipelines.config import load_settings
    from pipelines.data import gates, storage
    from pipelines.features.catalogue import CATEGORICAL_FEATURES, FEATURE_NAMES, WindowContract
    from pipelines.features.gate import validate_features
    from pipelines.features.wide_table import left_out_of

    say = say_to(progress)
    config = config or ValueConfig()
    window = window or WindowContract()
    data_dir = Path(data_dir)
    lake = data_dir / "lake"
    months = storage.list_months(lake, "transactions")
    if not months:
        raise storage.LakeError(f"{lake} has no transactions")
    lake_start = pd.Period(months[0], freq="M").start_time
    lake_end = pd.Timestamp(storage.lake_end(lake))
    plan = plan_value_snapshots(
        lake_start, lake_end, horizon_months, as_of=as_of, lookback_days=window.lookback_days, split=split
    )
    test_as_of = plan.test_as_of
    if test_as_of - pd.Timedelta(days=window.lookback_days) < lake_start:
        say(
            f"warning: the lake starts {lake_start:%Y-%m-%d}, less than {window.lookback_days} days before "
            f"{test_as_of:%Y-%m-%d}: long-window features are truncated"
        )
    say(
        f"value training: {horizon_months}-month spend, {plan.split} split, snapshots "
        + ", ".join(f"{d:%Y-%m-%d}" for d in plan.snapshots)
        + " (last = test)"
    )
    data = build_value_set(lake, plan.snapshots, horizon_months, window, progress=say)

    # The wide table decides: the features the source's tables allow (a retailer has no balances, no app events).
    features = [f for f in FEATURE_NAMES if f in data.columns]
    categorical = [f for f in CATEGORICAL_FEATURES if f in features]
    left_out = left_out_of(data)
    customers = storage.read_table(lake, "customers", columns=[ID, "signup_date", "closed_date"])
    gate = {
        f"{d:%Y-%m-%d}": validate_features(
            data.loc[data[SNAPSHOT] == d, [ID, *features]].reset_index(drop=True),
            customers,
            d,
            Path(expectations_dir or load_settings().expectations_dir),
            window=window,
            left_out=left_out,
        )
        for d in plan.snapshots
    }
    critical = sum(len(r.critical_failures) for r in gate.values())
    say(
        f"feature gate: {critical} critical failure(s), {sum(len(r.warnings) for r in gate.values())} warning(s)"
    )
    if critical:
        raise gates.ValidationError(
            "value training stopped: the wide table failed its critical expectations\n"
            + "\n".join(r.summary() for r in gate.values() if not r.success)
        )

    at_test = data[SNAPSHOT] == test_as_of
    if plan.split == "time":
        fit_frame, test = data.loc[~at_test], data.loc[at_test]
    else:
        is_test = unit_hash(data[ID].to_numpy(), f"test{config.seed}") < test_share
        fit_frame, test = data.loc[~is_test], data.loc[is_test]
    fit_frame, test = fit_frame.reset_index(drop=True), test.reset_index(drop=True)
    if test[LABEL].sum() <= 0:
        raise ValueError(
            "the test customers spent nothing in the label window: the value metrics are undefined"
        )
    say(
        f"fitting LightGBM ({config.objective}, {config.folds} cross-fitted folds) on {len(fit_frame):,} rows, "
        f"test {len(test):,} ({len(features)} features)"
    )
    model = fit_value_model(fit_frame, features, categorical, LABEL, config)

    extra: dict[str, float] = {
        "gx_critical_failures": float(critical),
        "gx_warnings": float(sum(len(r.warnings) for r in gate.values())),
    }
    horizon_days = (value_window(test_as_of, horizon_months)[1] - test_as_of).days
    with tempfile.TemporaryDirectory() as tmp:
        metrics = evaluate_value_model(model, test, LABEL, Path(tmp))
        say(
            f"test normalised Gini {metrics['normalised_gini']:.4f}, top-20 % share {metrics['top20_share']:.1%}, "
            f"total error {metrics['total_error']:+.1%}"
        )
        btyd_params: dict[str, float] = {}
        if baseline:
            txn_months = [m for m in months if pd.Period(m, freq="M").start_time < test_as_of]
            txn = storage.read_table(
                lake, "transactions", months=txn_months, columns=[ID, "txn_ts", "amount"]
            )
            btyd = fit_btyd(txn, test_as_of, date_col="txn_ts")
            btyd_params = btyd.params
            base_pred = predict_btyd(btyd, horizon_days, test[ID]).to_numpy()
            y = test[LABEL].to_numpy()
            extra.update({f"baseline_{k}": v for k, v in value_metrics(y, base_pred).items()})
            decile_error(y, base_pred).to_csv(Path(tmp) / "baseline_decile_error.csv", index=False)
            extra["gain_vs_baseline_normalised_gini"] = (
                metrics["normalised_gini"] - extra["baseline_normalised_gini"]
            )
            say(
                f"BG/NBD baseline: normalised Gini {extra['baseline_normalised_gini']:.4f}, top-20 % share "
                f"{extra['baseline_top20_share']:.1%}, total error {extra['baseline_total_error']:+.1%}"
            )
        return register_value_model(
            model,
            test,
            metrics,
            Path(tmp),
            label=LABEL,
            config=config,
            tracking_uri=tracking_uri,
            experiment=experiment,
            rows={"fit": len(fit_frame), "test": len(test)},
            run_params={
                "horizon_months": horizon_months,
                "split": plan.split,
                "test_share": test_share if plan.split == "customer" else "",
                "snapshots": ",".join(f"{d:%Y-%m-%d}" for d in plan.snapshots),
                "window.lookback_days": window.lookback_days,
                **{f"btyd.{k}": round(v, 6) for k, v in btyd_params.items()},
            },
            lineage={
                "lake": str(lake),
                "lake_start": f"{lake_start:%Y-%m-%d}",
                "lake_end": f"{lake_end:%Y-%m-%d}",
                "test_snapshot": f"{test_as_of:%Y-%m-%d}",
            },
            extra_metrics=extra,
            progress=say,
        )
