"""Train, select, evaluate, log, register and (maybe) promote an uplift model.

:func:`train_uplift` fits every learner of :mod:`pipelines.uplift` on the training rows of a randomised
experiment, keeps the one with the best normalised Qini on the validation rows (:func:`uplift.select_best`),
evaluates it on the test rows (normalised Qini with a bootstrap interval, AUUC, uplift@30 %, the verdict), logs one
MLflow run and registers the learner as a pyfunc (frame in, uplift scores out) with alias ``challenger``. The
challenger becomes ``champion`` when there is none yet, or when its test Qini beats the champion's, scored on the
same test frame, by ``min_qini_gain``. The verdict travels as a tag on the run and on the model version:
:func:`champion_verdict` reads it back, so a campaign selecting by uplift can fall back to the response score when
the champion found no reliable heterogeneity.

:func:`train_uplift_table` is the same from a flat file (CSV or Parquet) holding an experiment.

MLflow goes through the helpers of :mod:`pipelines.train` (store, experiment, run inputs, registration, champion
scoring, promotion record); mlflow, lightgbm and matplotlib are imported inside the functions that need them.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.models.propensity import CHAMPION, Decision, Progress, TrainConfig, pyfunc_model
from pipelines.models.uplift import (
    HETEROGENEITY,
    QINI_COLUMNS,
    auuc,
    bootstrap_ci,
    default_learners,
    qini_coefficient,
    qini_curve,
    select_best,
    uplift_at_k,
    uplift_config,
    verdict,
)

TOP_SHARE = 0.3
TEST_METRICS = ("qini", "qini_ci_low", "qini_ci_high", "auuc", "uplift_at_30")
EVALUATION_FILES = ("learners.csv", "qini_curve.csv", "qini_curve.png", "metrics.json")
VERDICT_TAG = "verdict"


# --------------------------------------------------------------------------------------------------------------
# Evaluation


def _metric_key(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", str(name))


def incremental_at_k(y, t, s, k: float = TOP_SHARE) -> float:
    """Estimated incremental conversions from treating the top ``k`` share of rows by ``s``:
    :func:`uplift.uplift_at_k` (treated minus control response rate among them) x their number, floor(n x k).
    Among the rows scored, not scaled to a population."""
    return uplift_at_k(y, t, s, k) * int(len(np.asarray(y)) * k)


def evaluate_scores(y, t, s, *, n_bootstrap: int = 200, seed: int = 42) -> dict[str, float]:
    """``qini`` (normalised), ``qini_ci_low``/``qini_ci_high`` (stratified percentile bootstrap, 95 %), ``auuc``,
    ``uplift_at_30`` and ``incremental_at_30`` (:func:`incremental_at_k`) of scores ``s``."""
    q = qini_coefficient(y, t, s)
    low, high = bootstrap_ci(qini_coefficient, y, t, s, n_boot=n_bootstrap, seed=seed)
    return {
        "qini": q,
        "qini_ci_low": low,
        "qini_ci_high": high,
        "auuc": auuc(y, t, s),
        "uplift_at_30": uplift_at_k(y, t, s, TOP_SHARE),
        "incremental_at_30": incremental_at_k(y, t, s, TOP_SHARE),
    }


def qini_chart(curves: Mapping[str, pd.DataFrame], path: str | Path) -> Path:
    """Write Qini curves (``qini_curve`` tables, one line each, the first is the model) with the random line to
    the first curve's end as a PNG, in the style of :mod:`pipelines.evaluate`'s charts."""
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

    def summary(self) -> str:
        """The learners table, the chosen learner's test figures, the verdict and the promotion decision."""
        m = self.metrics
        decision = "PROMOTED to champion" if self.promoted else "NOT promoted (stays challenger)"
        lines = [f"run {self.run_id}: {self.model_name} version {self.version} {decision}"]
        lines.append("learners on the validation rows (normalised qini, best first):")
        lines.append(f"  {'learner':<22}{'qini':>9}{'auuc':>9}{'uplift@30':>11}{'fit s':>8}")
        for row in self.learners.itertuples(index=False):
            mark = " <- chosen" if row.learner == self.learner else ""
            lines.append(
                f"  {row.learner:<22}{row.qini:>9.4f}{row.auuc:>9.4f}{row.uplift_at_30:>11.4f}"
                f"{row.fit_seconds:>8.1f}{mark}"
            )
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
    """What :func:`train.log_run_inputs` reads of a model: features, categorical features, category lists."""

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
    pyfunc receives categoricals as strings (:func:`train.pyfunc_input`), so the fit-time lists must hold them."""
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
    n_bootstrap: int = 200,
    min_qini_gain: float = 0.005,
    artifact_location: str | None = None,
    progress: Progress = None,
) -> UpliftResult:
    """Fit every learner on ``train``, keep the best by normalised Qini on ``valid``, evaluate it on ``test``, log
    one MLflow run, register it and maybe promote it. Returns an :class:`UpliftResult`.

    The frames hold ``features`` plus 0/1 ``treatment`` and ``outcome`` columns. ``learners`` (name -> unfitted
    learner) defaults to one of each learner of :func:`uplift.default_learners` with ``config`` (default
    :func:`uplift.uplift_config`), fitted one after the other with ``config.num_threads`` threads (capped at the
    machine's cores).

    Logged metrics: ``qini``, ``qini_ci_low``, ``qini_ci_high`` (``n_bootstrap`` resamples), ``auuc``,
    ``uplift_at_30``, ``incremental_at_30`` (uplift@30 % x rows in the top 30 % of the test rows),
    ``valid_qini_<learner>``, ``n_train``/``n_valid``/``n_test``; with ``true_uplift_test`` (the true
    p(treated) - p(control) of each test row) ``oracle_qini`` and ``qini_share_of_oracle``; for each
    ``baseline_scores`` entry (name -> scores of the test rows) ``qini_by_<name>`` and
    ``incremental_at_30_by_<name>``; against a champion ``champion_qini`` and ``qini_gain``; and ``promoted``. Tag
    ``verdict`` on the run and on the model version. Artifacts under ``evaluation/``: :data:`EVALUATION_FILES`
    plus ``lineage.json`` and ``features.json``.

    Promotion (:func:`decide_uplift_promotion`): no champion -> promote; otherwise the champion is scored on the
    same test frame and the challenger is promoted only when its Qini gains at least ``min_qini_gain``. The verdict
    does not block registration or a first promotion: campaigns read it (:func:`champion_verdict`) to fall back.
    """
    import mlflow
    from mlflow import MlflowClient

    from pipelines.models.propensity import (
        _champion_metrics,
        _experiment_id,
        log_registered_pyfunc,
        log_run_inputs,
        mlflow_store,
        pyfunc_input,
        record_promotion,
    )

    say = progress or (lambda _msg: None)
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
    if learners is None:
        learners = default_learners(config, categorical)
    learners = dict(learners)

    say(
        f"uplift training: {len(learners)} learners on {len(train):,} rows, selection on {len(valid):,}, "
        f"test on {len(test):,} ({len(features)} features, {len(categorical)} categorical, "
        f"{config.num_threads} thread(s))"
    )
    name, learner, table = select_best(
        learners, X_train, y_train, t_train, X_valid, y_valid, t_valid, progress=say
    )
    say(f"selected {name} (valid qini {table['qini'].iloc[0]:.4f}); evaluating on {len(test):,} test rows")
    s_test = learner.predict_uplift(X_test)
    metrics = evaluate_scores(y_test, t_test, s_test, n_bootstrap=n_bootstrap, seed=config.seed)
    outcome_verdict = verdict(metrics["qini"], metrics["qini_ci_low"], metrics["qini_ci_high"])
    metrics.update({f"valid_qini_{_metric_key(r.learner)}": float(r.qini) for r in table.itertuples()})
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
    run_params = {"treatment": treatment, **dict(run_params or {})}
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
        summary = {**metrics, "learner": name, "verdict": outcome_verdict}
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
            example = test_input.head(5)
            version = log_registered_pyfunc(
                client,
                model_name,
                pyfunc_model(learner, "predict_uplift"),
                example,
                learner.predict_uplift(example),
            )
            client.set_model_version_tag(model_name, version, VERDICT_TAG, outcome_verdict)
            client.set_model_version_tag(model_name, version, "learner", name)

            def qini_of(y, s):
                return {"qini": qini_coefficient(y, t_test, s)}

            with warnings.catch_warnings():
                # Loading the champion re-creates its pyfunc class: the nag silenced in train.pyfunc_model.
                warnings.filterwarnings("ignore", message=".*type hints.*", category=UserWarning)
                champion_version, champion_metrics, problem = _champion_metrics(
                    client, model_name, test_input, y_test, qini_of
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
    )


def champion_verdict(tracking_uri: str, model_name: str = "uplift") -> dict[str, Any] | None:
    """``{"version", "verdict", "qini", "qini_ci_low", "qini_ci_high", "run_id"}`` of the current champion of
    ``model_name``, or None when there is none (nor a store yet, for a sqlite URI whose file does not exist).

    A campaign selecting by uplift falls back to the response score unless ``verdict`` is
    :data:`uplift.HETEROGENEITY`. ``verdict`` is None for a version registered without one.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from pipelines.models.propensity import mlflow_store

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


# --------------------------------------------------------------------------------------------------------------
# An experiment in a flat file


def _columns_text(frame: pd.DataFrame) -> str:
    return ", ".join(map(str, frame.columns))


def _value_mask(column: pd.Series, value: Any) -> pd.Series:
    """Rows of ``column`` equal to ``value`` as written on a command line: the same text, or the same number."""
    text = column.astype(object).map(str, na_action="ignore")
    mask = (text == str(value)).fillna(False)
    number = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column) and pd.notna(number):
        mask |= column == number
    return mask.astype(bool)


def _shown(values: Sequence[Any], limit: int = 10) -> str:
    head = ", ".join(repr(v) for v in values[:limit])
    return head + (f", ... ({len(values)} values)" if len(values) > limit else "")


def train_uplift_table(
    path: str | Path,
    *,
    treatment: str,
    treated: Any,
    control: Any,
    outcome: str,
    positive: Any = None,
    id_col: str | None = None,
    exclude: Iterable[str] = (),
    name: str = "uplift",
    seed: int = 42,
    test_size: float = 0.25,
    valid_size: float = 0.25,
    tracking_uri: str,
    experiment: str | None = None,
    config: TrainConfig | None = None,
    progress: Progress = None,
) -> UpliftResult:
    """Train an uplift model on a randomised experiment in a CSV or Parquet file (:func:`train.read_table`).

    ``treatment`` holds the group (``treated`` / ``control`` values; other rows are dropped, with a count),
    ``outcome`` the response (0/1 or bool, or two values with ``positive`` the response). Every other column but
    ``id_col`` and ``exclude`` is a feature (:func:`train.prepare_table`: numbers stay numbers, text becomes
    categorical); the id column never reaches the model nor MLflow. Rows are split at random, stratified by
    treatment x outcome: ``test_size`` of them for test, ``valid_size`` of the rest for selection. The run's lineage
    is the file's name and sha256; the experiment defaults to ``table/<name>``.

    Raises ValueError naming the file and the column for: a missing column, treated/control values absent (listing
    the values seen), nulls in the treatment column, an outcome that is not binary, a group without positives (or
    without negatives).
    """
    from pipelines.models.propensity import _file_sha256, prepare_table, read_table, split_frame

    path = Path(path).expanduser().resolve()
    say = progress or (lambda _msg: None)
    where = path.name
    exclude = list(exclude)
    if str(treated) == str(control):
        raise ValueError(f"--treated and --control are the same value {treated!r}")
    say(f"reading {path}")
    raw = read_table(path)
    say(f"{len(raw):,} rows x {raw.shape[1]} columns")
    for role, column in (("treatment", treatment), ("outcome", outcome), ("id", id_col)):
        if column is not None and column not in raw.columns:
            raise ValueError(
                f"{where}: {role} column {column!r} not in the table; columns: {_columns_text(raw)}"
            )
    unknown = [c for c in exclude if c not in raw.columns]
    if unknown:
        raise ValueError(f"{where}: excluded column(s) not in the table: {', '.join(map(str, unknown))}")
    if outcome == treatment:
        raise ValueError(f"{where}: the treatment and the outcome are the same column {treatment!r}")

    groups = raw[treatment]
    if groups.isna().any():
        raise ValueError(
            f"{where}: treatment column {treatment!r} has {int(groups.isna().sum()):,} missing values: "
            "fill or drop them first"
        )
    seen = sorted(pd.unique(groups).tolist(), key=str)
    is_treated, is_control = _value_mask(groups, treated), _value_mask(groups, control)
    for role, value, mask in (("treated", treated, is_treated), ("control", control, is_control)):
        if not mask.any():
            raise ValueError(
                f"{where}: {role} value {value!r} not found in treatment column {treatment!r}; "
                f"values seen: {_shown(seen)}"
            )
    keep = is_treated | is_control
    dropped = int((~keep).sum())
    if dropped:
        say(f"dropped {dropped:,} rows whose {treatment!r} is neither {treated!r} nor {control!r}")
    frame = raw.loc[keep.to_numpy()].reset_index(drop=True)
    flag = is_treated[keep].to_numpy().astype(np.int8)

    y = frame[outcome]
    if y.isna().any():
        raise ValueError(f"{where}: outcome column {outcome!r} has {int(y.isna().sum()):,} missing values")
    classes = pd.unique(y).tolist()
    if len(classes) > 2:
        raise ValueError(
            f"{where}: outcome column {outcome!r} is not binary: {len(classes)} values ({_shown(classes)})"
        )
    if positive is None:
        if not set(classes) <= {0, 1}:  # bools compare equal to 0 and 1
            raise ValueError(
                f"{where}: outcome column {outcome!r} has values {_shown(classes)}: "
                "say which is the response (--positive)"
            )
        response = (y == 1).to_numpy()
        positive = 1
    else:
        matches = [c for c in classes if c == positive or str(c) == str(positive)]
        if not matches:
            raise ValueError(
                f"{where}: positive value {positive!r} is not a value of outcome column {outcome!r} "
                f"(values: {_shown(classes)})"
            )
        positive = matches[0]
        response = (y == positive).to_numpy()
    for role, g in (("treated", 1), ("control", 0)):
        rows = flag == g
        hits = int(response[rows].sum())
        if hits == 0:
            raise ValueError(
                f"{where}: the {role} group ({int(rows.sum()):,} rows) has no positive outcome in {outcome!r}"
            )
        if hits == rows.sum():
            raise ValueError(
                f"{where}: every row of the {role} group ({hits:,}) has a positive outcome in {outcome!r}"
            )

    frame[outcome] = response.astype(np.int8)
    try:
        prepared, features, categorical, _ = prepare_table(frame, outcome, 1, id_col, [*exclude, treatment])
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    if id_col is not None:
        prepared = prepared.drop(columns=[id_col])
    prepared[treatment] = flag
    for c in categorical:
        n = len(prepared[c].cat.categories)
        if n > 200:
            say(f"warning: {c!r} has {n} distinct values; exclude it if it is an identifier")
    say(
        f"treatment {treatment!r}: {int(flag.sum()):,} treated ({treated!r}), {int((flag == 0).sum()):,} control "
        f"({control!r}); outcome {outcome!r} positive={positive!r}: treated rate "
        f"{response[flag == 1].mean():.2%}, control rate {response[flag == 0].mean():.2%}; "
        f"{len(features)} features ({len(categorical)} categorical)"
    )

    stratum = "__uplift_stratum__"
    prepared[stratum] = flag * 2 + prepared[outcome].to_numpy()
    smallest = int(prepared[stratum].value_counts().min())
    if smallest < 4:
        raise ValueError(
            f"{where}: a treatment x outcome cell has only {smallest} row(s): too few to split into train, "
            "validation and test"
        )
    parts = split_frame(prepared, stratum, seed=seed, test_size=test_size, valid_size=valid_size)
    train, valid, test = (p.drop(columns=[stratum]) for p in parts)
    say(
        f"split (stratified by treatment x outcome): train {len(train):,}, valid {len(valid):,}, test {len(test):,}"
    )

    config = replace(config or uplift_config(), model_name=name, seed=seed)
    return train_uplift(
        train,
        valid,
        test,
        features=features,
        categorical=categorical,
        treatment=treatment,
        outcome=outcome,
        config=config,
        tracking_uri=tracking_uri,
        experiment=experiment or f"table/{name}",
        model_name=name,
        run_params={
            "source": "table",
            "treated": str(treated),
            "control": str(control),
            "positive": str(positive),
            "id_col": id_col or "",
            "exclude": exclude,
            "split": "stratified by treatment x outcome",
            "test_size": test_size,
            "valid_size": valid_size,
        },
        lineage={
            "source": path.name,
            "source_sha256": _file_sha256(path),
            "rows": len(raw),
            "columns": len(raw.columns),
            "rows_dropped": dropped,
        },
        progress=progress,
    )


__all__ = [
    "EVALUATION_FILES",
    "TEST_METRICS",
    "UpliftResult",
    "champion_verdict",
    "decide_uplift_promotion",
    "incremental_at_k",
    "qini_chart",
    "evaluate_scores",
    "train_uplift",
    "train_uplift_table",
]
