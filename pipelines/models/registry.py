"""The MLflow side of training: the store, experiments, a run's inputs, the registered pyfunc, the aliases
``champion`` and ``challenger``, and the promotion rule and its record.

:func:`train_and_register` fits (:func:`propensity.fit_model`), evaluates (:func:`propensity.evaluate_model`) and
hands the model to :func:`register_model`, which logs one run, registers the model, sets alias ``challenger`` on
the new version and applies the promotion rule: the challenger becomes ``champion`` only when there is no champion
yet, or when it beats the current champion, scored on the same test frame, by the configured margins. The value
and uplift flows use the same helpers.

mlflow is imported inside the functions that need it: importing this module stays cheap.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.models import packaging, tuning
from pipelines.models.personal_columns import synthetic_example
from pipelines.models.propensity import (
    EVALUATION_FILES,
    TEST_METRICS,
    CalibratedModel,
    TrainConfig,
    _labels,
    _test_metrics,
    evaluate_model,
    pyfunc_input,
    pyfunc_model,
    pyfunc_parts,
    score_and_rank,
)
from pipelines.progress import Progress, say_to

CHAMPION = "champion"
CHALLENGER = "challenger"
# Model-version tag: what versions must share to be compared (:func:`comparison_scope`).
SCOPE_TAG = "comparison_scope"


# --------------------------------------------------------------------------------------------------------------
# The store


@contextmanager
def mlflow_store(tracking_uri: str):
    """Point MLflow's tracking and registry at ``tracking_uri`` for the block, then put everything back,
    including the ``MLFLOW_TRACKING_URI``/``MLFLOW_REGISTRY_URI`` environment variables that
    ``mlflow.set_tracking_uri`` writes (left behind, they would redirect later settings in the same process).

    Both URIs are set: resolving a ``models:/`` URI also reads the logged model from the tracking store, which
    would otherwise default to ./mlflow.db in the working directory.
    """
    import mlflow

    env_before = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])
        for key, value in env_before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _sqlite_artifact_root(tracking_uri: str) -> str | None:
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri.removeprefix("sqlite:///"))
        return (db.parent / "artifacts").resolve().as_uri()
    return None


def _experiment_id(client, experiment: str, tracking_uri: str, artifact_location: str | None) -> str:
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    location = artifact_location or _sqlite_artifact_root(tracking_uri)
    if location and "://" not in location:
        location = Path(location).resolve().as_uri()
    return client.create_experiment(experiment, artifact_location=location)


def _flat(prefix: str, values: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flat(f"{name}.", value))
            continue
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        out[re.sub(r"[^A-Za-z0-9_.\-/ ]", "_", name)] = text[:6000]
    return out


# --------------------------------------------------------------------------------------------------------------
# A run and its registered model


def log_run_inputs(
    config: Any,
    label: str,
    model: Any,
    rows: Mapping[str, int],
    run_params: Mapping[str, Any],
    lineage: Mapping[str, Any],
    extra_params: Mapping[str, str],
) -> None:
    """What a training run was given, logged on the active MLflow run: LightGBM and config parameters, label,
    feature counts, row counts, run parameters and lineage (also as tags), and ``evaluation/lineage.json`` and
    ``evaluation/features.json`` (features and their category lists)."""
    import mlflow

    lgb_params = config.lgb_params()
    mlflow.log_params(
        {
            **_flat("lgb.", lgb_params),
            **_flat("", {k: v for k, v in asdict(config).items() if k not in lgb_params}),
            "label": label,
            "n_features": str(len(model.features)),
            "categorical": json.dumps(model.categorical),
            **extra_params,
            **{f"rows.{part}": str(n) for part, n in rows.items()},
            **_flat("run.", run_params),
            **_flat("lineage.", lineage),
        }
    )
    mlflow.set_tags({**_flat("lineage.", lineage), "model_name": config.model_name})
    mlflow.log_text(json.dumps(dict(lineage), indent=2, default=str), "evaluation/lineage.json")
    features = {"features": model.features, "categories": model.categories}
    mlflow.log_text(json.dumps(features, indent=2, default=str), "evaluation/features.json")


def log_registered_pyfunc(
    client,
    model_name: str,
    python_model: Any,
    example: pd.DataFrame,
    output,
    scope: Mapping[str, str] | None = None,
) -> str:
    """Log ``python_model`` (a :func:`propensity.pyfunc_model`) as the run's ``model``, a custom pyfunc flavour
    (:func:`propensity.pyfunc_parts`), with the signature ``example`` -> ``output``, ``example`` as input example
    (build it with :func:`personal_columns.synthetic_example`: no raw row belongs in MLflow), a copy of the
    platform's code and a complete pinned environment (:mod:`pipelines.models.packaging`): the model loads and
    serves without this checkout. Registers it as a new version of ``model_name`` with alias ``challenger`` and,
    with a ``scope`` (:func:`comparison_scope`), tag :data:`SCOPE_TAG`. Returns the version."""
    import mlflow
    from mlflow.models import infer_signature

    # pandas 3 gives text column labels the str dtype, which MLflow compares with a range when it writes the input
    # example (pandas warns about that comparison); object labels are what it expects, with the same names.
    example = example.set_axis(pd.Index(list(example.columns), dtype=object), axis=1)
    with tempfile.TemporaryDirectory() as tmp:
        info = mlflow.pyfunc.log_model(
            name="model",
            **pyfunc_parts(python_model, Path(tmp) / "data"),
            code_paths=[str(packaging.copy_code(Path(tmp) / "code"))],
            signature=infer_signature(example, output),
            input_example=example,
            conda_env=packaging.conda_env(),
            # Without it MLflow copies uv.lock and pyproject.toml of the working directory into the model when
            # that is a uv project (this checkout), and `--env-manager uv` would then sync the whole project
            # instead of the model's requirements.
            uv_project_path=tmp,
            registered_model_name=model_name,
        )
    version = str(info.registered_model_version)
    client.set_registered_model_alias(model_name, CHALLENGER, version)
    if scope is not None:
        client.set_model_version_tag(model_name, version, SCOPE_TAG, json.dumps(dict(scope), sort_keys=True))
    return version


def schema_columns(schema) -> dict[str, str]:
    """Column -> type name (``double``, ``string``, ...) of an MLflow input ``Schema`` (empty for None)."""
    if schema is None:
        return {}
    return {c.name: getattr(c.type, "name", str(c.type)) for c in schema.inputs}


def input_schema(example: pd.DataFrame) -> dict[str, str]:
    """Column -> MLflow type name of the signature inferred from a model's input ``example``."""
    from mlflow.models import infer_signature

    example = example.set_axis(pd.Index(list(example.columns), dtype=object), axis=1)
    return schema_columns(infer_signature(example).inputs)


def comparison_scope(scope: Mapping[str, str], example: pd.DataFrame, experiment_id: str) -> dict[str, str]:
    """What two versions of a model must share to be compared on one test frame: ``scope`` (what the caller
    trains on, e.g. the label and its positive value), the MLflow experiment and a digest of the input schema."""
    schema = json.dumps(sorted(input_schema(example).items()))
    digest = hashlib.sha256(schema.encode()).hexdigest()[:16]
    return {
        **{k: str(v) for k, v in scope.items()},
        "experiment_id": str(experiment_id),
        "input_schema": digest,
    }


# --------------------------------------------------------------------------------------------------------------
# Promotion


@dataclass(frozen=True)
class Decision:
    """The promotion decision: promoted or not, and why."""

    promoted: bool
    reasons: tuple[str, ...]
    champion_version: str | None = None
    champion_metrics: dict[str, float] = field(default_factory=dict)


def decide_promotion(
    challenger: Mapping[str, float], champion: Mapping[str, float] | None, config: TrainConfig
) -> Decision:
    """The promotion rule on test metrics of both models scored on the same frame.

    Promote when there is no champion; otherwise only when AUC gains at least ``min_auc_gain``, top-decile lift
    gains at least ``min_top_decile_lift_gain`` and Brier worsens by no more than ``max_brier_worsening``.
    """
    if champion is None:
        return Decision(True, ("no champion yet: the first model becomes champion",))
    checks = (
        (
            "auc",
            challenger["auc"] - champion["auc"],
            challenger["auc"] - champion["auc"] >= config.min_auc_gain,
            f">= {config.min_auc_gain:+.4f}",
        ),
        (
            "top_decile_lift",
            challenger["top_decile_lift"] - champion["top_decile_lift"],
            challenger["top_decile_lift"] - champion["top_decile_lift"] >= config.min_top_decile_lift_gain,
            f">= {config.min_top_decile_lift_gain:+.4f}",
        ),
        (
            "brier",
            challenger["brier"] - champion["brier"],
            challenger["brier"] - champion["brier"] <= config.max_brier_worsening,
            f"<= {config.max_brier_worsening:+.4f}",
        ),
    )
    reasons = tuple(
        f"{metric}: challenger {challenger[metric]:.4f} vs champion {champion[metric]:.4f} "
        f"(change {delta:+.4f}, required {need}) -> {'ok' if ok else 'FAIL'}"
        for metric, delta, ok, need in checks
    )
    return Decision(all(ok for _, _, ok, _ in checks), reasons, None, dict(champion))


def _champion_metrics(
    client,
    name: str,
    test_input: pd.DataFrame,
    y_test: np.ndarray,
    metrics_fn: Callable[[np.ndarray, np.ndarray], dict[str, float]] | None = None,
    scope: Mapping[str, str] | None = None,
):
    """(version, metrics, problem) of the current champion scored on ``test_input`` (``metrics_fn(y, predicted)``,
    by default the binary test metrics).

    (None, None, None) without a champion; metrics None and a problem text when it cannot be scored here, or, with
    a ``scope`` (:func:`comparison_scope`), when the champion's :data:`SCOPE_TAG` differs: it was trained on
    another table, experiment or label, and scoring it on this test frame would compare nothing.
    """
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    try:
        current = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None, None, None
    if scope is not None:
        theirs = json.loads((current.tags or {}).get(SCOPE_TAG) or "{}")
        differs = [k for k in dict(scope) if theirs.get(k) != scope[k]]
        if differs:
            what = ", ".join(differs) if theirs else "a model without a recorded scope"
            return (
                str(current.version),
                None,
                (
                    f"champion v{current.version} was trained on another table (differs: {what}): not compared "
                    f"and not replaced; this version stays challenger (promote it by hand if intended)"
                ),
            )
    try:
        champion = mlflow.pyfunc.load_model(f"models:/{name}@{CHAMPION}")
        schema = champion.metadata.get_input_schema()
        needed = [c.name for c in schema.inputs] if schema is not None else list(test_input.columns)
        absent = [c for c in needed if c not in test_input.columns]
        if absent:
            return (
                str(current.version),
                None,
                (
                    f"champion v{current.version} needs column(s) {', '.join(absent)} that the test frame lacks: "
                    "the two cannot be compared on the same test frame (promote by hand if intended)"
                ),
            )
        if metrics_fn is None:  # a propensity champion: ranked on its raw score, as the challenger is
            p, rank = score_and_rank(champion.unwrap_python_model().model, test_input[needed])
        else:
            p, rank = np.asarray(champion.predict(test_input[needed]), dtype=float).ravel(), None
    except Exception as exc:  # a champion that cannot score blocks automatic promotion, never the run
        return (
            str(current.version),
            None,
            f"champion v{current.version} could not score the test frame: {exc}",
        )
    if metrics_fn is not None:
        return str(current.version), metrics_fn(y_test, p), None
    # A champion pickled with step-isotonic calibration ties customers its booster tells apart: ranked on its
    # probabilities it would lose AUC to the steps, not to the challenger.
    return str(current.version), _test_metrics(y_test, p, rank=rank), None


def record_promotion(
    client, model_name: str, version: str, run_id: str, decision: Decision, champion_version: str | None
) -> str:
    """Apply and record a promotion decision inside the active MLflow run: move ``champion`` when promoted, tag
    the run (decision, reasons, champion version) and the model version, log ``promoted`` and ``promotion.txt``.
    Returns ``"promoted"`` or ``"rejected"``."""
    import mlflow

    if decision.promoted:
        client.set_registered_model_alias(model_name, CHAMPION, version)
    verdict = "promoted" if decision.promoted else "rejected"
    text = "\n".join(
        [
            f"{model_name} v{version}: {verdict}"
            + (f" (champion was v{champion_version})" if champion_version else ""),
            *decision.reasons,
        ]
    )
    mlflow.set_tags(
        {
            "promotion.decision": verdict,
            "promotion.reasons": text[:5000],
            "promotion.champion_version": champion_version or "",
            "model_version": version,
        }
    )
    mlflow.log_metric("promoted", 1.0 if decision.promoted else 0.0)
    mlflow.log_text(text + "\n", "promotion.txt")
    client.set_model_version_tag(model_name, version, "promotion", verdict)
    client.set_model_version_tag(model_name, version, "run_id", run_id)
    return verdict


def load_champion(name: str, tracking_uri: str, alias: str = CHAMPION):
    """The pyfunc registered under ``models:/<name>@<alias>`` in the store at ``tracking_uri``."""
    import mlflow

    with mlflow_store(tracking_uri):
        return mlflow.pyfunc.load_model(f"models:/{name}@{alias}")


# --------------------------------------------------------------------------------------------------------------
# Train, log, register, promote


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    model_name: str
    version: str
    promoted: bool
    reasons: tuple[str, ...]
    metrics: dict[str, float]
    champion_version: str | None
    model: CalibratedModel = field(repr=False)

    def summary(self) -> str:
        decision = "PROMOTED to champion" if self.promoted else "NOT promoted (stays challenger)"
        lines = [
            f"run {self.run_id}: {self.model_name} version {self.version} {decision}",
            "test " + "  ".join(f"{k}={self.metrics[k]:.4f}" for k in TEST_METRICS if k in self.metrics),
        ]
        lines += [f"  {r}" for r in self.reasons]
        return "\n".join(lines)


def train_and_register(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    test: pd.DataFrame,
    *,
    features: Sequence[str],
    categorical: Sequence[str],
    label: str,
    config: TrainConfig,
    tracking_uri: str,
    experiment: str,
    run_params: Mapping[str, Any] | None = None,
    lineage: Mapping[str, Any] | None = None,
    extra_metrics: Mapping[str, float] | None = None,
    artifact_location: str | None = None,
    progress: Progress = None,
    scope: Mapping[str, str] | None = None,
) -> TrainResult:
    """Fit (:func:`propensity.fit_model`), evaluate on ``test`` (:func:`evaluate_model`), then log, register and maybe promote
    (:func:`register_model`): the three steps the training DAG runs as separate tasks, in one call.

    With a search budget in ``config`` (``tune_trials``, ``tune_seconds``) the fit is the best trial of a
    hyperparameter search on ``valid`` (:func:`tuning.fit_tuned`), logged as nested runs under the training run."""
    say = say_to(progress)
    features = list(features)
    categorical = [c for c in categorical if c in features]
    say(
        f"fitting LightGBM on {len(train):,} rows, early stopping on {len(valid):,} ({len(features)} features)"
    )
    model, config, search = tuning.fit_tuned(train, valid, features, categorical, label, config, progress)
    with tempfile.TemporaryDirectory() as tmp:
        metrics = evaluate_model(model, test, label, Path(tmp))
        say(
            f"best iteration {model.best_iteration}; test auc {metrics['auc']:.4f}, "
            f"top-decile lift {metrics['top_decile_lift']:.2f}, brier {metrics['brier']:.4f}"
        )
        return register_model(
            model,
            test,
            metrics,
            Path(tmp),
            label=label,
            config=config,
            tracking_uri=tracking_uri,
            experiment=experiment,
            rows={"train": len(train), "valid": len(valid), "test": len(test)},
            run_params=run_params,
            lineage=lineage,
            extra_metrics=extra_metrics,
            artifact_location=artifact_location,
            progress=progress,
            search=search,
            scope=scope,
        )


def register_model(
    model: CalibratedModel,
    test: pd.DataFrame,
    metrics: Mapping[str, float],
    evaluation_dir: Path,
    *,
    label: str,
    config: TrainConfig,
    tracking_uri: str,
    experiment: str,
    rows: Mapping[str, int],
    run_params: Mapping[str, Any] | None = None,
    lineage: Mapping[str, Any] | None = None,
    extra_metrics: Mapping[str, float] | None = None,
    artifact_location: str | None = None,
    progress: Progress = None,
    search: tuning.SearchResult | None = None,
    scope: Mapping[str, str] | None = None,
) -> TrainResult:
    """Log one MLflow run (parameters, lineage, test ``metrics``, the files of ``evaluation_dir``, and ``search``,
    the hyperparameter search that chose ``config.lgb_overrides``, as nested runs), register a new
    version of ``config.model_name`` with alias ``challenger``, and move alias ``champion`` to it only if it passes
    :func:`decide_promotion` against the current champion scored on the same ``test`` frame. With a ``scope``
    (e.g. the label of a user's table) the champion is compared only when it shares it, the MLflow experiment
    and the input schema (:func:`comparison_scope`); otherwise the new version stays challenger. The logged input
    example is synthetic (:func:`personal_columns.synthetic_example`), never rows of ``test``.

    ``tracking_uri`` is required (no dependence on the working directory); for a sqlite store without an
    ``artifact_location`` the artifacts go to ``artifacts/`` next to the database file.
    """
    import mlflow
    from mlflow import MlflowClient

    say = say_to(progress)
    features, categorical = model.features, model.categorical
    metrics = dict(metrics)
    run_params, lineage, extra_metrics = (
        dict(run_params or {}),
        dict(lineage or {}),
        dict(extra_metrics or {}),
    )
    y_test = _labels(test, label)

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
                {"best_iteration": str(model.best_iteration), "calibration_fitted": model.calibration},
            )
            mlflow.log_metrics({f"test_{k}": float(metrics[k]) for k in TEST_METRICS})
            mlflow.log_metrics({"test_base_rate": metrics["base_rate"], "test_n": float(metrics["n"])})
            if extra_metrics:
                mlflow.log_metrics({k: float(v) for k, v in extra_metrics.items()})
            if search is not None:
                tuning.log_search(search)

            for name in EVALUATION_FILES:
                if (Path(evaluation_dir) / name).is_file():
                    mlflow.log_artifact(str(Path(evaluation_dir) / name), artifact_path="evaluation")

            say("logging and registering the model")
            example = synthetic_example(test_input)
            if scope is not None:
                scope = comparison_scope(scope, example, experiment_id)
            version = log_registered_pyfunc(
                client,
                config.model_name,
                pyfunc_model(model, "predict_proba"),
                example,
                model.predict_proba(example),
                scope,
            )

            champion_version, champion_metrics, problem = _champion_metrics(
                client, config.model_name, test_input, y_test, scope=scope
            )
            if problem:
                decision = Decision(False, (problem,), champion_version)
            else:
                decision = decide_promotion(metrics, champion_metrics, config)
            if champion_metrics is not None:
                mlflow.log_metrics({f"champion_test_{k}": float(champion_metrics[k]) for k in TEST_METRICS})
                mlflow.log_metrics(
                    {
                        f"gain_{k}": float(metrics[k] - champion_metrics[k])
                        for k in ("auc", "top_decile_lift", "brier")
                    }
                )
            verdict = record_promotion(
                client, config.model_name, version, run.info.run_id, decision, champion_version
            )
            say(f"version {version}: {verdict}")

    return TrainResult(
        run_id=run.info.run_id,
        model_name=config.model_name,
        version=version,
        promoted=decision.promoted,
        reasons=decision.reasons,
        metrics=metrics,
        champion_version=champion_version,
        model=model,
    )


__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "SCOPE_TAG",
    "Decision",
    "TrainResult",
    "comparison_scope",
    "decide_promotion",
    "input_schema",
    "load_champion",
    "log_registered_pyfunc",
    "log_run_inputs",
    "mlflow_store",
    "record_promotion",
    "register_model",
    "schema_columns",
    "train_and_register",
]
