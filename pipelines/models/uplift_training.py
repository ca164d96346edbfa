"""Train, select, evaluate, log, register and (maybe) promote an uplift model.

:func:`train_uplift` cross-fits the learners of :mod:`pipelines.models.uplift` on the training and validation rows
of a randomised experiment, keeps the one with the best mean fold Qini and refits it on those rows
(:func:`uplift_selection.select_learner`: the choice comes with its standard error), evaluates it on the test rows
(normalised Qini with a bootstrap interval, AUUC, uplift@30 %, the verdict), logs one MLflow run and registers
the learner as a pyfunc (frame in, uplift scores out) with alias ``challenger``. The challenger becomes
``champion`` when there is none yet, or when its test Qini beats the champion's, scored on the same test frame, by
``min_qini_gain``. The verdict travels as a tag on the run and on the model version:
:func:`champion_verdict` reads it back, so a campaign selecting by uplift can fall back to the response score when
the champion found no reliable heterogeneity.

:func:`uplift_tables.train_uplift_table` is the same from a flat file (CSV or Parquet) holding an experiment.

MLflow goes through the helpers of :mod:`pipelines.models.registry` (store, experiment, run inputs, registration,
champion scoring, promotion record); mlflow, lightgbm and matplotlib are imported inside the functions that need them.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.models.propensity import TrainConfig, pyfunc_model
from pipelines.models.registry import CHAMPION, Decision
from pipelines.models.uplift import default_learners, uplift_config
from pipelines.models.uplift_metrics import (
    HETEROGENEITY,
    QINI_COLUMNS,
    evaluate_scores,
    incremental_at_k,
    qini_coefficient,
    qini_curve,
    verdict,
)
from pipelines.models.uplift_selection import SelectionConfig, select_learner
from pipelines.progress import Progress, say_to

TEST_METRICS = ("qini", "qini_ci_low", "qini_ci_high", "auuc", "uplift_at_30")
EVALUATION_FILES = ("learners.csv", "qini_curve.csv", "qini_curve.png", "metrics.json")
VERDICT_TAG = "verdict"


# --------------------------------------------------------------------------------------------------------------
# Evaluation


def _metric_key(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", str(name))


def qini_chart(curves: Mapping[str, pd.DataFrame], path: str | Path) -> Path:
    """Write Qini curves (``qini_curve`` tables, one line each, the first is the model) with the random line to
    the first curve's end as a PNG, in the style of :mod:`pipelines.models.evaluate`'s charts."""
    from pipelines.models.evaluate import _pyplot

    plt = _pyplot()
    path = Path(path)
    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    try:
        first = next(iter(curves.values()))
        for i, (label, curve) in enumerate(curves.items()):
            x = curve["fraction_targeted"] * 100
            ax.plot(x, curve["incremental_responses"], label=label, linewidth=2 if i == 0 else 1)
        end = float(first["incremental_responses"].iloc[-1])
        ax.plot([0, 100], [0, end], linestyle="--", color="grey", label="random")
        ax.set_xlabel("customers targeted (%)")
        ax.set_ylabel("incremental responses")
        ax.set_title("Qini curve (test rows)")
        ax.legend(loc="upper left", fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------------------------
# Promotion


def decide_uplift_promotion(
    challenger: Mapping[str, float], champion: Mapping[str, float] | None, min_qini_gain: float
) -> Decision:
    """Promote when there is no champion; otherwise only when the test Qini, both models scored on the same test
    frame, gains at least ``min_qini_gain``."""
    if champion is None:
        return Decision(True, ("no champion yet: the first model becomes champion",))
    gain = challenger["qini"] - champion["qini"]
    ok = gain >= min_qini_gain
    reason = (
        f"qini: challenger {challenger['qini']:.4f} vs champion {champion['qini']:.4f} "
        f"(change {gain:+.4f}, required >= {min_qini_gain:+.4f}) -> {'ok' if ok else 'FAIL'}"
    )
    return Decision(ok, (reason,), None, dict(champion))


# --------------------------------------------------------------------------------------------------------------
# Result


@dataclass(frozen=True)
class UpliftResult:
    run_id: str
    model_name: str
    version: str
    promoted: bool
    reasons: tuple[str, ...]
    learner: str
    verdict: str
    metrics: dict[str, float]
    learners: pd.DataFrame = field(repr=False)
    model: Any = field(repr=False)
    champion_version: str | None = None
    selection_note: tuple[str, ...] = ()

    def summary(self) -> str:
        """The learners table with the selection's uncertainty, the chosen learner's test figures, the verdict and
        the promotion decision."""
        m = self.metrics
        decision = "PROMOTED to champion" if self.promoted else "NOT promoted (stays challenger)"
        lines = [f"run {self.run_id}: {self.model_name} version {self.version} {decision}"]
        folds = sum(c.startswith("qini_fold_") for c in self.learners.columns)
        rows = "train rows" if "valid_qini" in m else "train and validation rows"
        lines.append(
            f"learners by {folds}-fold cross-fitting on the {rows} (normalised qini: mean ± SE over folds, best first):"
        )
        lines.append(f"  {'learner':<22}{'qini':>9}{'± SE':>8}{'auuc':>9}{'uplift@30':>11}{'fit s':>8}")
        for row in self.learners.itertuples(index=False):
            mark = " <- chosen" if row.learner == self.learner else ""
            members = f" ({row.members})" if row.members else ""
            lines.append(
                f"  {row.learner:<22}{row.qini:>9.4f}{row.qini_se:>8.4f}{row.auuc:>9.4f}{row.uplift_at_30:>11.4f}"
                f"{row.fit_seconds:>8.1f}{mark}{members}"
            )
        lines += [f"selection: {line}" for line in self.selection_note]
        if "valid_qini" in m:
            lines.append(f"validation rows (not in the folds): {self.learner} qini {m['valid_qini']:.4f}")
        lines.append(
            f"test ({self.learner}, {int(m.get('n_test', 0)):,} rows): qini {m['qini']:.4f} "
            f"[95% CI {m['qini_ci_low']:.4f}, {m['qini_ci_high']:.4f}]  auuc {m['auuc']:.4f}  "
            f"uplift@30 {m['uplift_at_30']:+.4f} ({m['incremental_at_30']:+.1f} incremental responses)"
        )
        lines.append(f"verdict: {self.verdict}")
        if self.verdict != HETEROGENEITY:
            lines.append("  campaigns selecting by this model fall back to the response score")
        if "oracle_qini" in m:
            share = m.get("qini_share_of_oracle")
            lines.append(
                f"oracle qini (true uplift) {m['oracle_qini']:.4f}"
                + (f": the model reaches {share:.1%} of it" if share is not None else "")
            )
        for key in sorted(k for k in m if k.startswith("qini_by_")):
            name = key.removeprefix("qini_by_")
            lines.append(
                f"ranking by {name}: qini {m[key]:.4f}; top 30 %: {m[f'incremental_at_30_by_{name}']:+.1f} "
                f"incremental responses vs {m['incremental_at_30']:+.1f} by the uplift model"
            )
        lines += [f"  {r}" for r in self.reasons]
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------------
# Training


class _FeatureInfo:
    """What :func:`registry.log_run_inputs` reads of a model: features, categorical features, category lists."""

    def __init__(self, encoder: Any) -> None:
        self.features = list(encoder.features)
        self.categories = dict(encoder.categories)
        self.categorical = [f for f in self.features if f in self.categories]


def _flag_column(frame: pd.DataFrame, column: str, part: str) -> np.ndarray:
    if column not in frame.columns:
        raise KeyError(f"{part} frame lacks column {column!r}")
    values = frame[column]
    if values.isna().any():
        raise ValueError(f"{part} frame: column {column!r} has {int(values.isna().sum())} missing values")
    if not set(pd.unique(values).tolist()) <= {0, 1}:
        raise ValueError(f"{part} frame: column {column!r} must be 0/1")
    return values.to_numpy(dtype=np.float64)


def _string_categories(frames: Sequence[pd.DataFrame], columns: Iterable[str]) -> list[pd.DataFrame]:
    """The frames with each of ``columns`` whose values are not all strings turned into strings: the registered
    pyfunc receives categoricals as strings (:func:`propensity.pyfunc_input`), so the fit-time lists must hold them."""
    out = list(frames)
    for c in columns:
        values = pd.unique(out[0][c].dropna())
        if all(isinstance(v, str) for v in values):
            continue
        for i, frame in enumerate(out):
            text = frame[c].astype(object).map(lambda v: v if v is None else str(v), na_action="ignore")
            out[i] = frame.assign(**{c: text.astype("category")})
    return out


def train_uplift(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    test: pd.DataFrame,
    *,
    features: Sequence[str],
    categorical: Sequence[str],
    treatment: str = "treated",
    outcome: str = "converted",
    config: TrainConfig | None = None,
    tracking_uri: str,
    experiment: str = "uplift",
    model_name: str = "uplift",
    run_params: Mapping[str, Any] | None = None,
    lineage: Mapping[str, Any] | None = None,
    true_uplift_test=None,
    baseline_scores: Mapping[str, Any] | None = None,
    learners: Mapping[str, Any] | None = None,
    selection: SelectionConfig | None = None,
    valid_in_folds: bool = True,
    n_bootstrap: int = 200,
    min_qini_gain: float = 0.005,
    artifact_location: str | None = None,
    progress: Progress = None,
    scope: Mapping[str, str] | None = None,
) -> UpliftResult:
    """Cross-fit the learners on ``train`` and ``valid`` together, keep the best by mean fold Qini and refit it on
    those rows (:func:`uplift_selection.select_learner` with ``selection``, default
    :data:`uplift_selection.DEFAULT_SELECTION`), evaluate it on ``test``, log one MLflow run, register it and maybe
    promote it. Returns an :class:`UpliftResult`. With ``valid_in_folds=False`` the folds and the refit use
    ``train`` only, and the chosen learner's Qini on ``valid`` is logged as ``valid_qini``: an out-of-time check
    when the split is in time (the campaign history).

    The frames hold ``features`` plus 0/1 ``treatment`` and ``outcome`` columns. ``learners`` (name -> unfitted
    learner) defaults to :func:`uplift.default_learners` of ``selection.learners`` with ``config`` (default
    :func:`uplift.uplift_config`), fitted one after the other with ``config.num_threads`` threads (capped at the
    machine's cores).

    Logged metrics: ``qini``, ``qini_ci_low``, ``qini_ci_high`` (``n_bootstrap`` resamples), ``auuc``,
    ``uplift_at_30``, ``incremental_at_30`` (uplift@30 % x rows in the top 30 % of the test rows),
    ``cv_qini_<learner>`` and ``cv_qini_se_<learner>`` (mean fold Qini and its standard error),
    ``selection_lead``/``selection_lead_se`` (the chosen one's lead over the runner-up, paired standard error),
    ``valid_qini`` (with ``valid_in_folds=False``),
    ``n_train``/``n_valid``/``n_test``; with ``true_uplift_test`` (the true
    p(treated) - p(control) of each test row) ``oracle_qini`` and ``qini_share_of_oracle``; for each
    ``baseline_scores`` entry (name -> scores of the test rows) ``qini_by_<name>`` and
    ``incremental_at_30_by_<name>``; against a champion ``champion_qini`` and ``qini_gain``; and ``promoted``. Tag
    ``verdict`` on the run and on the model version. Artifacts under ``evaluation/``: :data:`EVALUATION_FILES`
    plus ``lineage.json`` and ``features.json``.

    Promotion (:func:`decide_uplift_promotion`): no champion -> promote; otherwise the champion is scored on the
    same test frame and the challenger is promoted only when its Qini gains at least ``min_qini_gain``; with a
    ``scope`` (a table's experiment: treatment, groups, outcome) only a champion of the same scope, MLflow experiment
    and input schema is compared (:func:`registry.comparison_scope`), else this version stays challenger. The verdict
    does not block registration or a first promotion: campaigns read it (:func:`champion_verdict`) to fall back.
    The logged input example is synthetic (:func:`personal_columns.synthetic_example`), no test row.
    """
    import mlflow
    from mlflow import MlflowClient

    from pipelines.models.personal_columns import synthetic_example
    from pipelines.models.propensity import pyfunc_input
    from pipelines.models.registry import (
        _champion_metrics,
        _experiment_id,
        comparison_scope,
        log_registered_pyfunc,
        log_run_inputs,
        mlflow_store,
        record_promotion,
    )

    say = say_to(progress)
    features = list(features)
    if not features:
        raise ValueError("no features to train on")
    if len(set(features)) != len(features):
        raise ValueError("features contain duplicates")
    for column in (treatment, outcome):
        if column in features:
            raise ValueError(f"column {column!r} is listed as a feature")
    for part, frame in (("train", train), ("valid", valid), ("test", test)):
        absent = [c for c in features if c not in frame.columns]
        if absent:
            raise KeyError(f"{part} frame lacks feature column(s): {', '.join(absent)}")
    (y_train, t_train), (y_valid, t_valid), (y_test, t_test) = (
        (_flag_column(frame, outcome, part), _flag_column(frame, treatment, part))
        for part, frame in (("train", train), ("valid", valid), ("test", test))
    )
    config = replace(config or uplift_config(), model_name=model_name)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if config.num_threads > cores:
        say(f"num_threads {config.num_threads} > {cores} cores: using {cores}")
        config = replace(config, num_threads=cores)
    categorical = [c for c in categorical if c in features]
    # Text and category columns not listed are categorical too: the boosters cannot read them as numbers.
    categorical += [
        c
        for c in features
        if c not in categorical
        and (isinstance(train[c].dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(train[c]))
    ]
    X_train, X_valid, X_test = _string_categories(
        [train[features], valid[features], test[features]], categorical
    )
    selection = selection or SelectionConfig()
    if learners is None:
        learners = default_learners(config, categorical, selection.learners)
    learners = dict(learners)

    pool = f"{len(train):,} train + {len(valid):,} validation" if valid_in_folds else f"{len(train):,} train"
    say(
        f"uplift training: {len(learners)} learners cross-fitted over {selection.folds} folds of the {pool} rows, "
        f"test on {len(test):,} ({len(features)} features, {len(categorical)} categorical, "
        f"{config.num_threads} thread(s))"
    )
    if valid_in_folds:
        X_fit = pd.concat([X_train, X_valid], ignore_index=True)
        y_fit, t_fit = np.concatenate([y_train, y_valid]), np.concatenate([t_train, t_valid])
    else:
        X_fit, y_fit, t_fit = X_train, y_train, t_train
    chosen = select_learner(learners, X_fit, y_fit, t_fit, selection, seed=config.seed, progress=say)
    name, learner, table = chosen.name, chosen.learner, chosen.table
    best = table.iloc[0]
    say(
        f"selected {name} (cv qini {best['qini']:.4f} ± {best['qini_se']:.4f}); "
        f"evaluating on {len(test):,} test rows"
    )
    for line in chosen.note():
        say(f"  {line}")
    s_test = learner.predict_uplift(X_test)
    metrics = evaluate_scores(
        y_test, t_test, s_test, n_bootstrap=n_bootstrap, seed=config.seed, progress=progress
    )
    outcome_verdict = verdict(metrics["qini"], metrics["qini_ci_low"], metrics["qini_ci_high"])
    metrics.update(chosen.metrics(_metric_key))
    if not valid_in_folds and len(valid):
        metrics["valid_qini"] = qini_coefficient(y_valid, t_valid, learner.predict_uplift(X_valid))
    metrics.update({"n_train": float(len(train)), "n_valid": float(len(valid)), "n_test": float(len(test))})
    curves = {f"uplift model ({name})": qini_curve(y_test, t_test, s_test, bins=100)}
    if true_uplift_test is not None:
        truth = np.asarray(true_uplift_test, dtype=float).ravel()
        if truth.size != len(test):
            raise ValueError(f"true_uplift_test has {truth.size} values for {len(test)} test rows")
        metrics["oracle_qini"] = qini_coefficient(y_test, t_test, truth)
        if metrics["oracle_qini"] != 0:
            metrics["qini_share_of_oracle"] = metrics["qini"] / metrics["oracle_qini"]
        curves["oracle (true uplift)"] = qini_curve(y_test, t_test, truth, bins=100)
    for base, scores in (baseline_scores or {}).items():
        key = _metric_key(base)
        scores = np.asarray(scores, dtype=float).ravel()
        if scores.size != len(test):
            raise ValueError(f"baseline {base!r} has {scores.size} scores for {len(test)} test rows")
        metrics[f"qini_by_{key}"] = qini_coefficient(y_test, t_test, scores)
        metrics[f"incremental_at_30_by_{key}"] = incremental_at_k(y_test, t_test, scores)
        curves[f"by {base}"] = qini_curve(y_test, t_test, scores, bins=100)
    say(
        f"test qini {metrics['qini']:.4f} [{metrics['qini_ci_low']:.4f}, {metrics['qini_ci_high']:.4f}], "
        f"auuc {metrics['auuc']:.4f}, uplift@30 {metrics['uplift_at_30']:+.4f}: {outcome_verdict}"
    )

    info = _FeatureInfo(learner.encoder)
    rows = {"train": len(train), "valid": len(valid), "test": len(test)}
    run_params = {
        "treatment": treatment,
        "selection_folds": selection.folds,
        "selection_ensemble": selection.ensemble,
        "selection_fold_learning_rate": selection.fold_learning_rate,
        **dict(run_params or {}),
    }
    with tempfile.TemporaryDirectory() as tmp, mlflow_store(tracking_uri):
        out = Path(tmp)
        table.to_csv(out / "learners.csv", index=False)
        curve = next(iter(curves.values()))[list(QINI_COLUMNS)].copy()
        for label, other in list(curves.items())[1:]:
            column = (
                "incremental_oracle" if label.startswith("oracle") else f"incremental_{_metric_key(label)}"
            )
            curve[column] = other["incremental_responses"].to_numpy()
        curve.to_csv(out / "qini_curve.csv", index=False)
        qini_chart(curves, out / "qini_curve.png")
        summary = {**metrics, "learner": name, "verdict": outcome_verdict, "selection": chosen.note()}
        (out / "metrics.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")

        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        experiment_id = _experiment_id(client, experiment, tracking_uri, artifact_location)
        test_input = pyfunc_input(X_test, info.features, info.categorical)
        with mlflow.start_run(experiment_id=experiment_id) as run:
            log_run_inputs(
                config,
                outcome,
                info,
                rows,
                run_params,
                dict(lineage or {}),
                {
                    "learner": name,
                    "learners": json.dumps(list(learners)),
                    "n_bootstrap": str(n_bootstrap),
                    "min_qini_gain": str(min_qini_gain),
                },
            )
            mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
            mlflow.set_tags({VERDICT_TAG: outcome_verdict, "learner": name})
            for file in EVALUATION_FILES:
                mlflow.log_artifact(str(out / file), artifact_path="evaluation")

            say("logging and registering the uplift model")
            example = synthetic_example(test_input)
            if scope is not None:
                scope = comparison_scope(scope, example, experiment_id)
            version = log_registered_pyfunc(
                client,
                model_name,
                pyfunc_model(learner, "predict_uplift"),
                example,
                learner.predict_uplift(example),
                scope,
            )
            client.set_model_version_tag(model_name, version, VERDICT_TAG, outcome_verdict)
            client.set_model_version_tag(model_name, version, "learner", name)

            def qini_of(y, s):
                return {"qini": qini_coefficient(y, t_test, s)}

            champion_version, champion_metrics, problem = _champion_metrics(
                client, model_name, test_input, y_test, qini_of, scope=scope
            )
            if problem:
                decision = Decision(False, (problem,), champion_version)
            else:
                decision = decide_uplift_promotion(metrics, champion_metrics, min_qini_gain)
            if champion_metrics is not None:
                metrics["champion_qini"] = float(champion_metrics["qini"])
                metrics["qini_gain"] = metrics["qini"] - metrics["champion_qini"]
                mlflow.log_metrics({k: metrics[k] for k in ("champion_qini", "qini_gain")})
            decided = record_promotion(
                client, model_name, version, run.info.run_id, decision, champion_version
            )
            say(f"version {version}: {decided}")

    return UpliftResult(
        run_id=run.info.run_id,
        model_name=model_name,
        version=version,
        promoted=decision.promoted,
        reasons=decision.reasons,
        learner=name,
        verdict=outcome_verdict,
        metrics=metrics,
        learners=table,
        model=learner,
        champion_version=champion_version,
        selection_note=tuple(chosen.note()),
    )


def champion_verdict(tracking_uri: str, model_name: str = "uplift") -> dict[str, Any] | None:
    """``{"version", "verdict", "qini", "qini_ci_low", "qini_ci_high", "run_id"}`` of the current champion of
    ``model_name``, or None when there is none (nor a store yet, for a sqlite URI whose file does not exist).

    A campaign selecting by uplift falls back to the response score unless ``verdict`` is
    :data:`uplift_metrics.HETEROGENEITY`. ``verdict`` is None for a version registered without one.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from pipelines.models.registry import mlflow_store

    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri.removeprefix("sqlite:///")).is_file():
        return None
    with mlflow_store(tracking_uri):
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        try:
            current = client.get_model_version_by_alias(model_name, CHAMPION)
        except MlflowException:
            return None
        metrics = client.get_run(current.run_id).data.metrics if current.run_id else {}
    return {
        "version": str(current.version),
        "verdict": (current.tags or {}).get(VERDICT_TAG),
        "qini": metrics.get("qini"),
        "qini_ci_low": metrics.get("qini_ci_low"),
        "qini_ci_high": metrics.get("qini_ci_high"),
        "run_id": current.run_id,
    }


__all__ = [
    "EVALUATION_FILES",
    "TEST_METRICS",
    "UpliftResult",
    "champion_verdict",
    "decide_uplift_promotion",
    "qini_chart",
    "train_uplift",
]
