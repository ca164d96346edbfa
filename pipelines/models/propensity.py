"""Train, calibrate, log, register and (maybe) promote a binary propensity model.

The model is LightGBM (binary, early stopping on a validation frame) followed by a calibrator fitted on the
validation scores (isotonic or Platt). Everything learned from data travels inside :class:`CalibratedModel`: the
feature list, the category list of every categorical column (an unseen category becomes missing, never another
category's code), the booster and the calibrator.

This is the one module that talks to MLflow for training. :func:`train_and_register` logs one run, registers the
model, sets alias ``challenger`` on the new version and applies the promotion rule: the challenger becomes
``champion`` only when there is no champion yet, or when it beats the current champion, scored on the same test
frame, by the configured margins.

mlflow and lightgbm are imported inside the functions that need them: importing this module stays cheap.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import math
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from pipelines.models.evaluate import calibration_plot, decile_table, gains_chart, score_metrics

CHAMPION = "champion"
CHALLENGER = "challenger"
TEST_METRICS = ("auc", "pr_auc", "log_loss", "brier", "ks", "top_decile_lift")
# Exact pins of what the pyfunc needs at load time; listing them stops MLflow from inferring them (≈ 20 s).
PIP_REQUIREMENTS = (
    "mlflow==3.17.2",
    "lightgbm==4.7.0",
    "pandas==3.1.1",
    "numpy==2.4.6",
    "scikit-learn==1.9.1",
)

Progress = Callable[[str], None] | None


@dataclass(frozen=True)
class TrainConfig:
    """LightGBM settings, calibration, and the margins a challenger must beat the champion by."""

    model_name: str = "churn"
    learning_rate: float = 0.05
    n_estimators: int = 2000
    early_stopping_rounds: int = 100
    num_leaves: int = 31
    min_child_samples: int = 50
    feature_fraction: float = 0.9
    bagging_fraction: float = 0.8
    bagging_freq: int = 1
    lambda_l2: float = 1.0
    seed: int = 42
    num_threads: int = 2
    calibration: Literal["isotonic", "platt"] = "isotonic"
    min_auc_gain: float = 0.002
    min_top_decile_lift_gain: float = 0.02
    max_brier_worsening: float = 0.0005

    def __post_init__(self) -> None:
        if self.calibration not in ("isotonic", "platt"):
            raise ValueError(f"calibration must be 'isotonic' or 'platt', got {self.calibration!r}")
        if self.n_estimators < 1 or self.early_stopping_rounds < 1:
            raise ValueError("n_estimators and early_stopping_rounds must be >= 1")
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", self.model_name):
            raise ValueError(f"model_name may hold letters, digits, '_', '.', '-' only: {self.model_name!r}")

    def lgb_params(self) -> dict[str, Any]:
        """LightGBM parameters; deterministic for a given seed and thread count."""
        return {
            "objective": "binary",
            "metric": "binary_logloss",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": self.bagging_freq,
            "lambda_l2": self.lambda_l2,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self.num_threads,
            "verbose": -1,
        }


# --------------------------------------------------------------------------------------------------------------
# The model


def _is_categorical_like(s: pd.Series) -> bool:
    return isinstance(s.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(s) or s.dtype == object


def _category_list(s: pd.Series) -> list:
    """The categories a column is encoded with: its declared categories, or its sorted distinct values."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        return list(s.cat.categories)
    values = s.dropna().unique().tolist()
    if all(isinstance(v, str) for v in values):
        return sorted(values)
    return sorted(values, key=lambda v: (type(v).__name__, v))


def _as_category_values(col: pd.Series, cats: Sequence) -> pd.Series:
    """``col`` as plain values comparable with ``cats`` (strings when the categories are strings); values not in
    ``cats`` become missing, so they get no category's code."""
    values = col.astype(object)
    if cats and all(isinstance(c, str) for c in cats):
        values = values.map(lambda v: v if isinstance(v, str) else str(v), na_action="ignore")
    return values.where(values.isin(list(cats)))


def unseen_categories(frame: pd.DataFrame, categories: Mapping[str, Sequence]) -> dict[str, int]:
    """Per categorical column of ``categories`` (name -> fit-time list), how many non-missing values of ``frame``
    are not in its list."""
    counts = {}
    for name, cats in categories.items():
        col = frame[name]
        n = int((col.notna() & _as_category_values(col, cats).isna()).sum())
        if n:
            counts[name] = n
    return counts


class CalibratedModel:
    """A LightGBM booster plus a calibrator, with the feature and category lists learned at fit time."""

    def __init__(
        self,
        booster: Any,
        features: Sequence[str],
        categories: Mapping[str, Sequence],
        calibration: str,
        calibrator: Mapping[str, Any],
        best_iteration: int,
    ) -> None:
        self.booster = booster
        self.features = list(features)
        self.categories = {k: list(v) for k, v in categories.items()}
        self.calibration = calibration
        self.calibrator = dict(calibrator)
        self.best_iteration = int(best_iteration)

    @property
    def categorical(self) -> list[str]:
        return [f for f in self.features if f in self.categories]

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """The float matrix the booster sees: numerics as floats, categoricals as codes of the fit-time lists
        (NaN for missing or unseen values)."""
        missing = [f for f in self.features if f not in frame.columns]
        if missing:
            raise KeyError(f"frame lacks model feature column(s): {', '.join(missing)}")
        out = np.empty((len(frame), len(self.features)), dtype=np.float64)
        for j, name in enumerate(self.features):
            col = frame[name]
            if name in self.categories:
                values = _as_category_values(col, self.categories[name])
                codes = pd.Categorical(values, categories=self.categories[name]).codes.astype(np.float64)
                codes[codes < 0] = np.nan
                out[:, j] = codes
            else:
                if _is_categorical_like(col) and not pd.api.types.is_bool_dtype(col):
                    raise ValueError(f"feature {name!r} was numeric at fit time but is {col.dtype} now")
                out[:, j] = pd.to_numeric(col, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
        return out

    def unseen_categories(self, frame: pd.DataFrame) -> dict[str, int]:
        """Per categorical column, how many non-missing values are not in the fit-time category list."""
        return unseen_categories(frame, self.categories)

    def raw_score(self, frame: pd.DataFrame) -> np.ndarray:
        """Uncalibrated log-odds of the booster."""
        return self.booster.predict(self.encode(frame), num_iteration=self.best_iteration, raw_score=True)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of the positive class, one per row."""
        return _apply_calibrator(self.calibration, self.calibrator, self.raw_score(frame))

    def raw_contributions(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Per-row SHAP contributions in log-odds (LightGBM ``pred_contrib``): one column per feature plus
        ``bias``; a row sums to :meth:`raw_score`."""
        contrib = self.booster.predict(
            self.encode(frame), num_iteration=self.best_iteration, pred_contrib=True
        )
        return pd.DataFrame(contrib, columns=[*self.features, "bias"], index=frame.index)

    def path_contributions(self, frame: pd.DataFrame, chunk_rows: int = 50_000) -> pd.DataFrame:
        """Per-row contributions in log-odds by decision path (Saabas): in every tree, each split on the row's
        path credits its feature with the change in the node's expected value. One column per feature plus
        ``bias``; a row sums to :meth:`raw_score` exactly.

        The cheap stand-in for :meth:`raw_contributions` (TreeSHAP) when many rows need reason codes: it costs a
        leaf lookup per tree instead of TreeSHAP's leaves x depth^2 (376k rows x 565 trees: TreeSHAP 364 s on 2
        cores). The top features of the two agree for most rows; SHAP is the one to use for a single customer.
        """
        import scipy.sparse as sp

        table, bias = self._leaf_table()
        out = np.empty((len(frame), len(self.features)), dtype=np.float64)
        for start in range(0, len(frame), chunk_rows):
            x = self.encode(frame.iloc[start : start + chunk_rows])
            leaves = self.booster.predict(x, num_iteration=self.best_iteration, pred_leaf=True)
            leaves = np.asarray(leaves, dtype=np.int64).reshape(len(x), -1)
            gid = (leaves + self._leaf_offsets[None, : leaves.shape[1]]).ravel()
            n = len(x)
            rows = sp.csr_matrix(
                (np.ones(gid.size), gid, np.arange(0, gid.size + 1, leaves.shape[1])),
                shape=(n, table.shape[0]),
            )
            out[start : start + n] = (rows @ table).toarray()
        result = pd.DataFrame(out, columns=self.features, index=frame.index)
        result["bias"] = bias
        return result

    def _leaf_table(self):
        """Sparse (all leaves x features) matrix of each leaf's path contributions, and the summed root values."""
        import scipy.sparse as sp

        cached = getattr(self, "_leaf_cache", None)
        if cached is not None:
            return cached
        trees = self.booster.dump_model(num_iteration=self.best_iteration)["tree_info"]
        rows, cols, vals, offsets, bias, total = [], [], [], [], 0.0, 0
        for tree in trees:
            root = tree["tree_structure"]
            offsets.append(total)
            total += tree["num_leaves"]
            if "leaf_index" in root or "split_feature" not in root:  # a single-leaf tree
                bias += float(root.get("leaf_value", 0.0))
                continue
            bias += float(root["internal_value"])
            stack = [(root, [])]
            while stack:
                node, path = stack.pop()
                value = node["internal_value"]
                for side in ("left_child", "right_child"):
                    child = node[side]
                    child_value = child["leaf_value"] if "leaf_index" in child else child["internal_value"]
                    step = [*path, (node["split_feature"], child_value - value)]
                    if "leaf_index" in child:
                        for feature, delta in step:
                            rows.append(offsets[-1] + child["leaf_index"])
                            cols.append(feature)
                            vals.append(delta)
                    else:
                        stack.append((child, step))
        table = sp.csr_matrix((vals, (rows, cols)), shape=(total, len(self.features)))  # duplicates summed
        self._leaf_offsets = np.asarray(offsets, dtype=np.int64)
        self._leaf_cache = (table, bias)
        return self._leaf_cache

    def feature_importance(self) -> pd.DataFrame:
        """Total gain and split count per feature, highest gain first."""
        gain = self.booster.feature_importance(importance_type="gain", iteration=self.best_iteration)
        split = self.booster.feature_importance(importance_type="split", iteration=self.best_iteration)
        table = pd.DataFrame({"feature": self.features, "gain": gain, "split": split})
        table["gain_share"] = table["gain"] / (table["gain"].sum() or 1.0)
        return table.sort_values(["gain", "feature"], ascending=[False, True], ignore_index=True)

    def __getstate__(self) -> dict:
        state = {k: v for k, v in self.__dict__.items() if not k.startswith("_leaf")}
        state["booster"] = self.booster.model_to_string(num_iteration=-1)
        return state

    def __setstate__(self, state: dict) -> None:
        import lightgbm as lgb

        state = dict(state)
        state["booster"] = lgb.Booster(model_str=state["booster"])
        self.__dict__.update(state)


def fit_early_stopped(params: Mapping[str, Any], dtrain, dvalid, config: TrainConfig):
    """``lgb.train`` with early stopping on ``dvalid``, cut to its best iteration so every consumer of the booster
    (scoring, contributions, the registry) sees the same trees."""
    import lightgbm as lgb

    booster = lgb.train(
        dict(params),
        dtrain,
        num_boost_round=config.n_estimators,
        valid_sets=[dvalid],
        valid_names=["valid"],
        callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False)],
    )
    best = booster.best_iteration or booster.current_iteration()
    return lgb.Booster(model_str=booster.model_to_string(num_iteration=best))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _apply_calibrator(kind: str, params: Mapping[str, Any], raw: np.ndarray) -> np.ndarray:
    if kind == "platt":
        return _sigmoid(params["a"] * raw + params["b"])
    # np.interp clips outside the fitted range, like IsotonicRegression(out_of_bounds="clip").
    return np.interp(raw, params["x"], params["y"])


def _fit_calibrator(kind: str, raw: np.ndarray, y: np.ndarray, seed: int) -> dict[str, Any]:
    if kind == "platt":
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=1e6, solver="lbfgs", random_state=seed).fit(raw.reshape(-1, 1), y)
        return {"a": float(lr.coef_[0, 0]), "b": float(lr.intercept_[0])}
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y)
    return {"x": iso.X_thresholds_.astype(float), "y": iso.y_thresholds_.astype(float)}


def _labels(frame: pd.DataFrame, label: str) -> np.ndarray:
    if label not in frame.columns:
        raise KeyError(f"label column {label!r} is missing")
    y = frame[label]
    if y.isna().any():
        raise ValueError(f"label column {label!r} has {int(y.isna().sum())} missing values")
    values = set(pd.unique(y).tolist())
    if not values <= {0, 1}:
        raise ValueError(
            f"label column {label!r} must be 0/1 (or bool), got values {sorted(values, key=str)[:5]}"
        )
    return y.to_numpy(dtype=np.int8)


def fit_model(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    features: Sequence[str],
    categorical: Sequence[str],
    label: str,
    config: TrainConfig,
) -> CalibratedModel:
    """LightGBM fitted on ``train`` with early stopping on ``valid``, then a calibrator fitted on the ``valid``
    scores. Category lists come from ``train`` (its declared categories when a column is Categorical)."""
    import lightgbm as lgb

    features = list(features)
    categorical = [c for c in categorical if c in features]
    if len(set(features)) != len(features):
        raise ValueError("features contain duplicates")
    if label in features:
        raise ValueError(f"label column {label!r} is also listed as a feature")
    missing = [f for f in features if f not in train.columns]
    if missing:
        raise KeyError(f"training frame lacks feature column(s): {', '.join(missing)}")
    y_train, y_valid = _labels(train, label), _labels(valid, label)
    for part, y in (("train", y_train), ("valid", y_valid)):
        if y.min() == y.max():
            raise ValueError(f"{part} frame holds a single class of {label!r}")
    categories = {c: _category_list(train[c]) for c in categorical}
    # The booster trains on codes of our own category lists: positional feature names keep arbitrary column
    # names (dots, spaces, JSON characters) away from LightGBM.
    model = CalibratedModel(None, features, categories, config.calibration, {}, 0)
    cat_idx = [features.index(c) for c in categorical]
    names = [f"f{i}" for i in range(len(features))]
    dtrain = lgb.Dataset(
        model.encode(train),
        label=y_train,
        feature_name=names,
        categorical_feature=cat_idx,
        free_raw_data=True,
    )
    dvalid = lgb.Dataset(model.encode(valid), label=y_valid, reference=dtrain)
    booster = fit_early_stopped(config.lgb_params(), dtrain, dvalid, config)
    best = booster.current_iteration()
    model.booster, model.best_iteration = booster, best
    raw_valid = model.raw_score(valid)
    model.calibrator = _fit_calibrator(config.calibration, raw_valid, y_valid, config.seed)
    return model


# --------------------------------------------------------------------------------------------------------------
# MLflow


def pyfunc_model(model: Any, method: str):
    """The MLflow pyfunc of one of the platform's models: a feature frame in, ``model.<method>(frame)`` out
    (``predict_proba`` for churn and response, ``predict`` for value, ``predict_uplift`` for uplift). The fitted
    model stays reachable as ``.model`` for the readers that need more than ``predict``
    (``score.load_scoring_model``, the value step)."""
    import mlflow.pyfunc

    with warnings.catch_warnings():
        # MLflow nags about type hints on predict when the class is defined; the explicit signature is the contract.
        warnings.filterwarnings("ignore", message=".*type hints.*", category=UserWarning)

        class PlatformPyfunc(mlflow.pyfunc.PythonModel):
            """MLflow wrapper of a platform model: a feature frame in, the model's scores out."""

            def __init__(self, model: Any, method: str) -> None:
                self.model = model
                self.method = method

            def predict(self, context, model_input, params=None):
                return getattr(self.model, self.method)(pd.DataFrame(model_input))

    return PlatformPyfunc(model, method)


def pyfunc_input(frame: pd.DataFrame, features: Sequence[str], categorical: Iterable[str]) -> pd.DataFrame:
    """The frame the registered pyfunc expects: model features only, categoricals as plain strings (object,
    None for missing), numerics as float64."""
    cats = set(categorical)
    out = {}
    for name in features:
        col = frame[name]
        if name in cats:
            values = col.astype(object)
            out[name] = (
                values.where(values.notna(), None).map(lambda v: v if v is None else str(v)).astype(object)
            )
        else:
            out[name] = pd.to_numeric(col).astype(np.float64)
    return pd.DataFrame(out, index=frame.index)


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


def _test_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    metrics = score_metrics(y, p)
    metrics["top_decile_lift"] = float(decile_table(y, p)["lift"].iloc[0])
    return metrics


def _champion_metrics(
    client,
    name: str,
    test_input: pd.DataFrame,
    y_test: np.ndarray,
    metrics_fn: Callable[[np.ndarray, np.ndarray], dict[str, float]] | None = None,
):
    """(version, metrics, problem) of the current champion scored on ``test_input`` (``metrics_fn(y, predicted)``,
    by default the binary test metrics).

    (None, None, None) without a champion; metrics None and a problem text when it cannot be scored here.
    """
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    try:
        current = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None, None, None
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
        p = np.asarray(champion.predict(test_input[needed]), dtype=float).ravel()
    except Exception as exc:  # a champion that cannot score blocks automatic promotion, never the run
        return (
            str(current.version),
            None,
            f"champion v{current.version} could not score the test frame: {exc}",
        )
    return str(current.version), (metrics_fn or _test_metrics)(y_test, p), None


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
) -> TrainResult:
    """Fit (:func:`fit_model`), evaluate on ``test`` (:func:`evaluate_model`), then log, register and maybe promote
    (:func:`register_model`): the three steps the training DAG runs as separate tasks, in one call."""
    say = progress or (lambda _msg: None)
    features = list(features)
    categorical = [c for c in categorical if c in features]
    say(
        f"fitting LightGBM on {len(train):,} rows, early stopping on {len(valid):,} ({len(features)} features)"
    )
    model = fit_model(train, valid, features, categorical, label, config)
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
        )


EVALUATION_FILES = (
    "metrics.json",
    "decile_table.csv",
    "gains_chart.png",
    "calibration_plot.png",
    "feature_importance.csv",
)


def evaluate_model(model: CalibratedModel, test: pd.DataFrame, label: str, out_dir: Path) -> dict[str, float]:
    """Test metrics of ``model`` on ``test``; writes :data:`EVALUATION_FILES` (metrics, decile table, gains and
    calibration charts, feature importance) into ``out_dir`` and returns the metrics."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    y_test = _labels(test, label)
    p_test = model.predict_proba(test)
    metrics = _test_metrics(y_test, p_test)
    table = decile_table(y_test, p_test)
    table.to_csv(out_dir / "decile_table.csv", index=False)
    gains_chart(table, out_dir / "gains_chart.png")
    calibration_plot(y_test, p_test, out_dir / "calibration_plot.png")
    model.feature_importance().to_csv(out_dir / "feature_importance.csv", index=False)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return metrics


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
) -> TrainResult:
    """Log one MLflow run (parameters, lineage, test ``metrics``, the files of ``evaluation_dir``), register a new
    version of ``config.model_name`` with alias ``challenger``, and move alias ``champion`` to it only if it passes
    :func:`decide_promotion` against the current champion scored on the same ``test`` frame.

    ``tracking_uri`` is required (no dependence on the working directory); for a sqlite store without an
    ``artifact_location`` the artifacts go to ``artifacts/`` next to the database file.
    """
    import mlflow
    from mlflow import MlflowClient

    say = progress or (lambda _msg: None)
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
                config, label, model, rows, run_params, lineage, {"best_iteration": str(model.best_iteration)}
            )
            mlflow.log_metrics({f"test_{k}": float(metrics[k]) for k in TEST_METRICS})
            mlflow.log_metrics({"test_base_rate": metrics["base_rate"], "test_n": float(metrics["n"])})
            if extra_metrics:
                mlflow.log_metrics({k: float(v) for k, v in extra_metrics.items()})

            for name in EVALUATION_FILES:
                if (Path(evaluation_dir) / name).is_file():
                    mlflow.log_artifact(str(Path(evaluation_dir) / name), artifact_path="evaluation")

            say("logging and registering the model")
            example = test_input.head(5)
            version = log_registered_pyfunc(
                client,
                config.model_name,
                pyfunc_model(model, "predict_proba"),
                example,
                model.predict_proba(example),
            )

            champion_version, champion_metrics, problem = _champion_metrics(
                client, config.model_name, test_input, y_test
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


def log_registered_pyfunc(client, model_name: str, python_model: Any, example: pd.DataFrame, output) -> str:
    """Log ``python_model`` as the run's ``model`` (signature from ``example`` -> ``output``, explicit pip
    requirements), register it as a new version of ``model_name`` with alias ``challenger``; returns the version."""
    import mlflow
    from mlflow.models import infer_signature

    with warnings.catch_warnings():
        # MLflow nags about type hints on predict; the explicit signature is the contract.
        warnings.filterwarnings("ignore", message=".*type hints.*", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*CloudPickle.*")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=python_model,
            signature=infer_signature(example, output),
            input_example=example,
            pip_requirements=list(PIP_REQUIREMENTS),
            registered_model_name=model_name,
        )
    version = str(info.registered_model_version)
    client.set_registered_model_alias(model_name, CHALLENGER, version)
    return version


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


# --------------------------------------------------------------------------------------------------------------
# Any customer table


def _sniff_delimiter(path: Path) -> str:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace", newline="") as fh:
        sample = fh.read(64_000)
    if not sample.strip():
        raise ValueError(f"{path} is empty")
    # Sniff on whole lines only: a cut last line can mislead the sniffer.
    sample = sample[: sample.rfind("\n") + 1] or sample
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        header = sample.splitlines()[0]
        return max(",;\t|", key=header.count)


def read_table(path: str | Path) -> pd.DataFrame:
    """A customer table from Parquet or CSV (optionally gzipped; the delimiter is sniffed: ``,`` ``;`` tab ``|``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"table not found: {path}")
    if path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path)
    return pd.read_csv(path, sep=_sniff_delimiter(path))


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def prepare_table(
    frame: pd.DataFrame,
    label: str,
    positive: Any = None,
    id_col: str | None = None,
    exclude: Iterable[str] = (),
) -> tuple[pd.DataFrame, list[str], list[str], Any]:
    """(frame with a 0/1 ``label`` column, features, categorical features, the positive value).

    Every column other than the label, the id and ``exclude`` is a feature: numeric and bool columns stay
    numeric, string/object/categorical columns become categoricals. Raises ValueError naming the column for a
    missing label or id, an unknown excluded column, a label without exactly two classes, a ``positive`` that is
    not one of them, or a feature of an unsupported type (dates).
    """
    columns = list(frame.columns)
    if label not in frame.columns:
        raise ValueError(f"label column {label!r} not in the table; columns: {', '.join(map(str, columns))}")
    if id_col is not None and id_col not in frame.columns:
        raise ValueError(f"id column {id_col!r} not in the table; columns: {', '.join(map(str, columns))}")
    exclude = list(exclude)
    unknown = [c for c in exclude if c not in frame.columns]
    if unknown:
        raise ValueError(f"excluded column(s) not in the table: {', '.join(unknown)}")
    y = frame[label]
    if y.isna().any():
        raise ValueError(
            f"label column {label!r} has {int(y.isna().sum())} missing values: drop or fill them first"
        )
    classes = pd.unique(y).tolist()
    if len(classes) != 2:
        shown = ", ".join(repr(c) for c in classes[:10])
        raise ValueError(f"label column {label!r} must have exactly 2 classes, found {len(classes)}: {shown}")
    if positive is None:
        if set(classes) <= {0, 1}:  # bools compare equal to 0 and 1
            positive = 1
        else:
            raise ValueError(
                f"label column {label!r} has classes {classes[0]!r} and {classes[1]!r}: say which is positive"
            )
    matches = [c for c in classes if c == positive or str(c) == str(positive)]
    if not matches:
        raise ValueError(
            f"positive value {positive!r} is not a class of {label!r} (classes: {classes[0]!r}, {classes[1]!r})"
        )
    positive = matches[0]
    features, categorical = [], []
    for name in frame.columns:
        if name in (label, id_col) or name in exclude:
            continue
        col = frame[name]
        if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
            features.append(name)
        elif _is_categorical_like(col):
            features.append(name)
            categorical.append(name)
        else:
            raise ValueError(
                f"column {name!r} has type {col.dtype}, which the model cannot use: exclude it or derive numbers from it"
            )
    if not features:
        raise ValueError("no feature columns left after removing the label, the id and the excluded columns")
    out = frame[features].copy()
    for name in features:
        if name in categorical:
            col = out[name]
            values = col.astype(object)
            values = values.where(values.notna(), None).map(lambda v: v if v is None else str(v))
            out[name] = pd.Categorical(values, categories=sorted(values.dropna().unique().tolist()))
        elif pd.api.types.is_bool_dtype(out[name]):
            out[name] = out[name].astype(np.float64)
    out[label] = (y == positive).astype(np.int8).to_numpy()
    if id_col is not None:
        out.insert(0, id_col, frame[id_col].to_numpy())
    return out, features, categorical, positive


def split_frame(
    frame: pd.DataFrame,
    label: str,
    *,
    seed: int = 42,
    test_size: float = 0.3,
    valid_size: float = 0.2,
    ordered: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(train, valid, test). ``test`` is ``test_size`` of the rows; ``valid`` is ``valid_size`` of the rest.

    Stratified on the label and seeded; with ``ordered=True`` the split follows row order instead (test = the last
    rows, valid = the last rows before them) for tables sorted by time.
    """
    if not 0 < test_size < 1 or not 0 < valid_size < 1:
        raise ValueError(f"test_size and valid_size must be in (0, 1), got {test_size}, {valid_size}")
    n = len(frame)
    if ordered:
        n_test = int(math.ceil(n * test_size))
        rest = n - n_test
        n_valid = int(math.ceil(rest * valid_size))
        return (
            frame.iloc[: rest - n_valid],
            frame.iloc[rest - n_valid : rest],
            frame.iloc[rest:],
        )
    from sklearn.model_selection import train_test_split

    fit_part, test = train_test_split(frame, test_size=test_size, stratify=frame[label], random_state=seed)
    train, valid = train_test_split(
        fit_part, test_size=valid_size, stratify=fit_part[label], random_state=seed
    )
    return train, valid, test


def train_table(
    path: str | Path,
    label: str,
    positive: Any = None,
    id_col: str | None = None,
    exclude: Iterable[str] = (),
    *,
    name: str | None = None,
    seed: int = 42,
    test_size: float = 0.3,
    valid_size: float = 0.2,
    ordered: bool = False,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    config: TrainConfig | None = None,
    artifact_location: str | None = None,
    progress: Progress = None,
) -> TrainResult:
    """Train, log and register a model on any customer table (CSV or Parquet) the user brings.

    The model name defaults to the file's stem; the experiment to ``table/<name>``; the tracking URI to the
    project settings. See :func:`prepare_table` for how columns become features and :func:`split_frame` for the
    split.
    """
    from dataclasses import replace

    from pipelines.config import load_settings

    path = Path(path).expanduser().resolve()
    say = progress or (lambda _msg: None)
    stem = path.name.split(".")[0]
    model_name = name or (config.model_name if config else re.sub(r"[^A-Za-z0-9_.\-]", "_", stem))
    config = replace(config or TrainConfig(), model_name=model_name, seed=seed)
    tracking_uri = tracking_uri or load_settings().mlflow_tracking_uri

    say(f"reading {path}")
    raw = read_table(path)
    say(f"{len(raw):,} rows x {raw.shape[1]} columns")
    frame, features, categorical, positive = prepare_table(raw, label, positive, id_col, exclude)
    say(
        f"label {label!r} positive={positive!r}: rate {frame[label].mean():.2%}; "
        f"{len(features)} features ({len(categorical)} categorical)"
    )
    for c in categorical:
        n = len(frame[c].cat.categories)
        if n > 200:
            say(f"warning: {c!r} has {n} distinct values; exclude it if it is an identifier")
    train, valid, test = split_frame(
        frame, label, seed=seed, test_size=test_size, valid_size=valid_size, ordered=ordered
    )
    say(
        f"split ({'ordered' if ordered else 'stratified'}): train {len(train):,}, valid {len(valid):,}, test {len(test):,}"
    )
    lineage = {
        "source": str(path),
        "source_sha256": _file_sha256(path),
        "rows": len(raw),
        "columns": len(raw.columns),
    }
    run_params = {
        "source": "table",
        "positive": str(positive),
        "id_col": id_col or "",
        "exclude": list(exclude),
        "split": "ordered" if ordered else "stratified",
        "test_size": test_size,
        "valid_size": valid_size,
    }
    return train_and_register(
        train,
        valid,
        test,
        features=features,
        categorical=categorical,
        label=label,
        config=config,
        tracking_uri=tracking_uri,
        experiment=experiment or f"table/{model_name}",
        run_params=run_params,
        lineage=lineage,
        artifact_location=artifact_location,
        progress=progress,
    )


__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "CalibratedModel",
    "Decision",
    "TrainConfig",
    "TrainResult",
    "decide_promotion",
    "fit_model",
    "load_champion",
    "prepare_table",
    "pyfunc_input",
    "read_table",
    "split_frame",
    "train_and_register",
    "train_table",
]


# --------------------------------------------------------------------------------------------------------------
# Churn on the lake: snapshots -> features + labels -> out-of-time split -> train, log, register, promote
