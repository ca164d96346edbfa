"""A binary propensity model: the LightGBM fit with early stopping, its calibration, and the MLflow pyfunc.

The model is LightGBM (binary, early stopping on a validation frame) followed by a calibrator fitted on the
validation scores (:mod:`pipelines.models.calibration`: Platt, centred isotonic, or ``auto`` between the two).
The booster's raw score ranks, the calibrator only maps it to a probability with a strictly increasing function.
Everything learned from data travels inside :class:`CalibratedModel`: the feature list, the category list of every
categorical column (an unseen category becomes missing, never another category's code), the booster and the
calibrator. :func:`evaluate_model` writes its test figures: ranking figures of the raw score, calibration figures
of the probability.

:func:`pyfunc_model` wraps any platform model (churn, response, value, uplift) as an MLflow pyfunc, a custom
flavour this module also loads (:func:`pyfunc_parts`, :func:`_load_pyfunc`); :mod:`pipelines.models.registry`
logs, registers and promotes it.

lightgbm and sklearn are imported inside the functions that need them: importing this module stays cheap.
"""

from __future__ import annotations

import json
import math
import pickle
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from pipelines.models.calibration import CALIBRATIONS, apply_calibrator, choose_calibration, fit_calibrator
from pipelines.models.evaluate import calibration_plot, decile_table, gains_chart, score_metrics
from pipelines.progress import Progress, track

TEST_METRICS = ("auc", "pr_auc", "log_loss", "brier", "ks", "top_decile_lift")
EVALUATION_FILES = (
    "metrics.json",
    "decile_table.csv",
    "gains_chart.png",
    "calibration_plot.png",
    "feature_importance.csv",
)


# What lgb_overrides may not change: the objective and metric, and what makes a fit deterministic and quiet.
_FIXED_LGB_PARAMS = frozenset(
    {"objective", "metric", "seed", "deterministic", "force_row_wise", "num_threads", "verbose"}
)


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
    calibration: Literal["auto", "isotonic", "platt"] = "auto"
    min_auc_gain: float = 0.002
    min_top_decile_lift_gain: float = 0.02
    max_brier_worsening: float = 0.0005
    # LightGBM parameters that replace the ones above in lgb_params(): what a hyperparameter search chose
    # (pipelines.models.tuning). Empty: the parameters above, unchanged.
    lgb_overrides: Mapping[str, Any] = field(default_factory=dict)
    # The search's budget: trials (the first is the parameters above) and a cap in seconds; either 0 = no search.
    tune_trials: int = 0
    tune_seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.calibration not in CALIBRATIONS:
            raise ValueError(
                f"calibration must be one of {', '.join(CALIBRATIONS)}, got {self.calibration!r}"
            )
        if self.tune_trials < 0 or self.tune_seconds < 0:
            raise ValueError(
                f"tune_trials and tune_seconds must be >= 0, got {self.tune_trials}, {self.tune_seconds}"
            )
        fixed = sorted(set(self.lgb_overrides) & _FIXED_LGB_PARAMS)
        if fixed:
            raise ValueError(
                f"lgb_overrides may not change {', '.join(fixed)}: they define the model and its run"
            )
        if self.n_estimators < 1 or self.early_stopping_rounds < 1:
            raise ValueError("n_estimators and early_stopping_rounds must be >= 1")
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", self.model_name):
            raise ValueError(f"model_name may hold letters, digits, '_', '.', '-' only: {self.model_name!r}")

    def lgb_params(self) -> dict[str, Any]:
        """LightGBM parameters, ``lgb_overrides`` applied last; deterministic for a given seed and thread count."""
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
            **self.lgb_overrides,
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

    def encode_row(self, row: Mapping[str, Any]) -> np.ndarray:
        """:meth:`encode` of one customer given as a mapping column -> value (a ``(1, n_features)`` matrix), without
        building a DataFrame: the real-time path's encoding, equal to the batch one value for value (a category
        compares as text when the fit-time categories are text; an unseen or missing one is NaN)."""
        codes = getattr(self, "_codes", None)
        if codes is None:  # built on first use (a pickled model from before this method has none)
            codes = {
                name: {c: float(i) for i, c in enumerate(cats)} for name, cats in self.categories.items()
            }
            self._codes = codes
        out = np.empty((1, len(self.features)), dtype=np.float64)
        for j, name in enumerate(self.features):
            try:
                value = row[name]
            except KeyError:
                raise KeyError(f"row lacks model feature column: {name}") from None
            missing = value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))
            if name in codes:
                if not missing and self._text_categories(name) and not isinstance(value, str):
                    value = str(value)
                out[0, j] = np.nan if missing else codes[name].get(value, np.nan)
            elif missing:
                out[0, j] = np.nan
            elif isinstance(value, str):
                raise ValueError(f"feature {name!r} was numeric at fit time but is text now: {value!r}")
            else:
                out[0, j] = float(value)
        return out

    def _text_categories(self, name: str) -> bool:
        cats = self.categories[name]
        return bool(cats) and all(isinstance(c, str) for c in cats)

    def predict_row(self, row: Mapping[str, Any]) -> float:
        """:meth:`predict_proba` of one customer given as a mapping (see :meth:`encode_row`)."""
        raw = self.booster.predict(self.encode_row(row), num_iteration=self.best_iteration, raw_score=True)
        return float(self.calibrate(raw)[0])

    def unseen_categories(self, frame: pd.DataFrame) -> dict[str, int]:
        """Per categorical column, how many non-missing values are not in the fit-time category list."""
        return unseen_categories(frame, self.categories)

    def raw_score(self, frame: pd.DataFrame) -> np.ndarray:
        """Uncalibrated log-odds of the booster: the score that ranks (AUC, lift, deciles)."""
        return self.booster.predict(self.encode(frame), num_iteration=self.best_iteration, raw_score=True)

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of raw scores ``raw`` (strictly increasing in them, except for a model
        pickled with step-threshold isotonic calibration)."""
        return apply_calibrator(self.calibration, self.calibrator, raw)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of the positive class, one per row."""
        return self.calibrate(self.raw_score(frame))

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


def fit_early_stopped(
    params: Mapping[str, Any], dtrain, dvalid, config: TrainConfig, progress: Progress = None
):
    """``lgb.train`` with early stopping on ``dvalid``, cut to its best iteration so every consumer of the booster
    (scoring, contributions, the registry) sees the same trees. ``progress`` hears of the trees as they grow."""
    import lightgbm as lgb

    with track(config.n_estimators, "LightGBM fit", unit="trees", progress=progress) as tracker:
        booster = lgb.train(
            dict(params),
            dtrain,
            num_boost_round=config.n_estimators,
            valid_sets=[dvalid],
            valid_names=["valid"],
            callbacks=[
                lgb.early_stopping(config.early_stopping_rounds, verbose=False),
                lambda _env: tracker.advance(),
            ],
        )
    best = booster.best_iteration or booster.current_iteration()
    return lgb.Booster(model_str=booster.model_to_string(num_iteration=best))


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
    progress: Progress = None,
) -> CalibratedModel:
    """LightGBM fitted on ``train`` with early stopping on ``valid``, then a calibrator fitted on the ``valid``
    scores: ``config.calibration``, or for ``auto`` the one :func:`choose_calibration` picks for ``valid``'s labels
    (the model's ``calibration`` records the one fitted). Category lists come from ``train`` (its declared
    categories when a column is Categorical)."""
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
    calibration = choose_calibration(config.calibration, y_valid)
    model = CalibratedModel(None, features, categories, calibration, {}, 0)
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
    booster = fit_early_stopped(config.lgb_params(), dtrain, dvalid, config, progress)
    best = booster.current_iteration()
    model.booster, model.best_iteration = booster, best
    raw_valid = model.raw_score(valid)
    model.calibrator = fit_calibrator(model.calibration, raw_valid, y_valid, config.seed)
    return model


def score_and_rank(model: Any, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(score, ranking key) of ``frame``: for a propensity model (:class:`CalibratedModel`) its calibrated
    probability and its raw score, predicted once; for any other scorer (uplift, random) ``predict_proba`` twice
    over. Lists (deciles) and champion comparisons rank by the key, as the model's own evaluation does."""
    if hasattr(model, "raw_score") and hasattr(model, "calibrate"):
        raw = model.raw_score(frame)
        return model.calibrate(raw), raw
    score = model.predict_proba(frame)
    return score, score


# --------------------------------------------------------------------------------------------------------------
# The MLflow pyfunc


class PlatformPyfunc:
    """The MLflow pyfunc of a platform model, a custom pyfunc flavour: a feature frame in, ``model.<method>(frame)``
    out. Logged pickled (:func:`pyfunc_parts`), loaded back by :func:`_load_pyfunc`; neither needs MLflow's
    PythonModel, so nothing is cloudpickled by value and no type-hint inference runs."""

    def __init__(self, model: Any, method: str) -> None:
        self.model = model
        self.method = method

    @property
    def python_model(self) -> PlatformPyfunc:
        # What MLflow's PyFuncModel.unwrap_python_model() returns: this wrapper, whose .model the readers use.
        return self

    def predict(self, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> np.ndarray:
        return getattr(self.model, self.method)(pd.DataFrame(model_input))


def pyfunc_model(model: Any, method: str) -> PlatformPyfunc:
    """The MLflow pyfunc of one of the platform's models: a feature frame in, ``model.<method>(frame)`` out
    (``predict_proba`` for churn and response, ``predict`` for value, ``predict_uplift`` for uplift). The fitted
    model stays reachable as ``.model`` (also through ``unwrap_python_model()`` of the loaded pyfunc) for the
    readers that need more than ``predict`` (``score.load_scoring_model``, the value step)."""
    return PlatformPyfunc(model, method)


def pyfunc_parts(python_model: PlatformPyfunc, directory: str | Path) -> dict[str, str]:
    """The arguments of ``mlflow.pyfunc.log_model`` that log ``python_model`` as a custom pyfunc flavour:
    ``data_path`` (the wrapper and its fitted model, pickled into ``directory``) and ``loader_module`` (this
    module, whose :func:`_load_pyfunc` reads it back). The pickle refers to platform classes by name: the registry
    logs a copy of ``pipelines`` with it (:mod:`pipelines.models.packaging`), so it loads without the project."""
    path = Path(directory) / "model.pkl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        pickle.dump(python_model, fh, protocol=pickle.HIGHEST_PROTOCOL)
    return {"loader_module": __name__, "data_path": str(path)}


def _load_pyfunc(data_path: str) -> PlatformPyfunc:
    """MLflow's entry point of the custom flavour: the pickled :class:`PlatformPyfunc` at ``data_path``."""
    with open(data_path, "rb") as fh:
        return pickle.load(fh)


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


# --------------------------------------------------------------------------------------------------------------
# Evaluation on the test frame


def _test_metrics(y: np.ndarray, p: np.ndarray, rank: np.ndarray | None = None) -> dict[str, float]:
    """:data:`TEST_METRICS` (and base rate, n): log-loss and Brier of probabilities ``p``, the ranking figures of
    ``rank`` (the raw score) when given, else of ``p``."""
    metrics = score_metrics(y, p, rank=rank)
    metrics["top_decile_lift"] = float(decile_table(y, p if rank is None else rank)["lift"].iloc[0])
    return metrics


def evaluate_model(model: CalibratedModel, test: pd.DataFrame, label: str, out_dir: Path) -> dict[str, float]:
    """Test metrics of ``model`` on ``test``; writes :data:`EVALUATION_FILES` (metrics, decile table, gains and
    calibration charts, feature importance) into ``out_dir`` and returns the metrics. AUC, PR-AUC, KS, lift, the
    decile table and the gains chart rank by the raw score; log-loss, Brier and the calibration chart judge the
    calibrated probability."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    y_test = _labels(test, label)
    raw_test = model.raw_score(test)
    p_test = model.calibrate(raw_test)
    metrics = _test_metrics(y_test, p_test, rank=raw_test)
    table = decile_table(y_test, raw_test)
    table.to_csv(out_dir / "decile_table.csv", index=False)
    gains_chart(table, out_dir / "gains_chart.png")
    calibration_plot(y_test, p_test, out_dir / "calibration_plot.png")
    model.feature_importance().to_csv(out_dir / "feature_importance.csv", index=False)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return metrics


__all__ = [
    "EVALUATION_FILES",
    "TEST_METRICS",
    "CalibratedModel",
    "TrainConfig",
    "evaluate_model",
    "fit_early_stopped",
    "fit_model",
    "pyfunc_input",
    "pyfunc_model",
    "PlatformPyfunc",
    "pyfunc_parts",
    "unseen_categories",
]
