"""A small, time-boxed hyperparameter search for the propensity models: Optuna's TPE on the validation split.

:func:`fit_tuned` is what the platform's trainings call. With a budget (``TrainConfig.tune_trials`` and
``tune_seconds``, both > 0) it runs :func:`search_lgb`, whose every trial is a whole :func:`propensity.fit_model`
(early stopping on the validation frame) scored by the AUC of its raw scores on that frame; the model it returns
is the best trial's, so nothing is refitted and the model is exactly what ``fit_model`` gives for the chosen
parameters (``TrainConfig.lgb_overrides``). Without a budget it is ``fit_model`` with the parameters unchanged.

* The objective is validation AUC: the promotion rule and the campaign lists rank customers, and the calibrator
  fitted afterwards on the same frame fixes the probabilities whatever the booster's log-loss (early stopping
  still watches log-loss, LightGBM's training loss).
* The first trial is the configured parameters, enqueued: the chosen parameters are never worse on validation than
  the untuned ones (a tie keeps the untuned ones).
* Deterministic for a seed and a trial count: a seeded TPE sampler, one trial at a time, deterministic LightGBM.
  The seconds cap is checked before each trial after the first (the untuned trial always runs, and no trial is
  cut short, so the search can overrun the cap by one trial); when it stops the search, the number of trials
  depends on the machine, and the result says so (``capped``).

:func:`log_search` writes the search into the active MLflow run: one nested run per trial and a summary on the
parent. optuna, mlflow and sklearn are imported inside the functions that need them: importing this module stays
cheap.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from pipelines.models.propensity import CalibratedModel, TrainConfig, _labels, fit_model
from pipelines.progress import Progress, say_to

# The search space, by LightGBM parameter (the names TrainConfig.lgb_params() uses): (low, high, kind, log scale).
# Wide enough to hold TrainConfig's defaults (the first trial), narrow enough for a few dozen trials: from small,
# heavily regularised trees to bigger ones. The learning rate stays >= 0.04 (the default is 0.05): lower rates
# need thousands of trees, and a trial must cost about what the untuned fit costs for the budget to buy trials.
SEARCH_SPACE: dict[str, tuple[float, float, str, bool]] = {
    "learning_rate": (0.04, 0.15, "float", True),
    "num_leaves": (4, 128, "int", True),
    "min_child_samples": (5, 500, "int", True),
    "feature_fraction": (0.3, 1.0, "float", False),
    "bagging_fraction": (0.5, 1.0, "float", False),
    "lambda_l2": (1e-3, 30.0, "float", True),
}


@dataclass(frozen=True)
class Trial:
    """One trial: its parameters (the search space's, as ``lgb_overrides``), validation AUC, trees, seconds."""

    number: int
    params: dict[str, Any]
    valid_auc: float
    best_iteration: int
    seconds: float


@dataclass(frozen=True)
class SearchResult:
    """The trials of a search (the first is the untuned parameters), the chosen one, and the budget it ran under."""

    trials: tuple[Trial, ...]
    best: int  # number of the chosen trial
    budget_trials: int
    budget_seconds: float
    capped: bool  # the seconds cap stopped the search before budget_trials
    seconds: float

    @property
    def best_params(self) -> dict[str, Any]:
        return dict(self.trials[self.best].params)

    @property
    def best_valid_auc(self) -> float:
        return self.trials[self.best].valid_auc

    @property
    def default_valid_auc(self) -> float:
        return self.trials[0].valid_auc

    def summary(self) -> str:
        stop = f"stopped by the {self.budget_seconds:g} s cap" if self.capped else "all trials run"
        return (
            f"hyperparameter search: {len(self.trials)}/{self.budget_trials} trials in {self.seconds:.1f} s "
            f"({stop}); valid auc {self.best_valid_auc:.4f} (trial {self.best}) vs {self.default_valid_auc:.4f} "
            "untuned"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "trials": [vars(t) for t in self.trials],
            "best": self.best,
            "budget_trials": self.budget_trials,
            "budget_seconds": self.budget_seconds,
            "capped": self.capped,
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchResult:
        """The inverse of :meth:`to_dict` (a search written by one task and logged by another)."""
        return cls(
            trials=tuple(Trial(**t) for t in data["trials"]),
            **{k: data[k] for k in ("best", "budget_trials", "budget_seconds", "capped", "seconds")},
        )


def _suggest(trial) -> dict[str, Any]:
    out = {}
    for name, (low, high, kind, log) in SEARCH_SPACE.items():
        if kind == "int":
            out[name] = trial.suggest_int(name, int(low), int(high), log=log)
        else:
            out[name] = trial.suggest_float(name, low, high, log=log)
    return out


def _valid_auc(model: CalibratedModel, valid: pd.DataFrame, y_valid) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y_valid, model.raw_score(valid)))


def search_lgb(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    features: Sequence[str],
    categorical: Sequence[str],
    label: str,
    config: TrainConfig,
    progress: Progress = None,
) -> tuple[SearchResult, CalibratedModel]:
    """Search :data:`SEARCH_SPACE` under ``config``'s budget; returns the search and the chosen trial's model.

    The first trial is ``config``'s own parameters; every trial is :func:`fit_model` with the trial's parameters
    as ``lgb_overrides``, scored by validation AUC. ``progress`` gets a line per trial.
    """
    import optuna

    if config.tune_trials < 1 or config.tune_seconds <= 0:
        raise ValueError(
            f"a search needs tune_trials >= 1 and tune_seconds > 0, got {config.tune_trials}, {config.tune_seconds}"
        )
    say = say_to(progress)
    y_valid = _labels(valid, label)
    base = config.lgb_params()
    untuned = {name: base[name] for name in SEARCH_SPACE}
    trials: list[Trial] = []
    best: dict[str, Any] = {}  # the best trial's number and model so far

    def objective(trial) -> float:
        started = time.monotonic()
        params = _suggest(trial)
        model = fit_model(
            train, valid, features, categorical, label, replace(config, lgb_overrides=params), progress=None
        )
        auc = _valid_auc(model, valid, y_valid)
        trials.append(Trial(trial.number, params, auc, model.best_iteration, time.monotonic() - started))
        if not best or auc > trials[best["number"]].valid_auc:  # a tie keeps the earlier trial
            best.update(number=trial.number, model=model)
        say(
            f"hyperparameter search: trial {trial.number + 1}/{config.tune_trials} valid auc {auc:.4f} "
            f"(best {trials[best['number']].valid_auc:.4f}, untuned {trials[0].valid_auc:.4f}), "
            f"{model.best_iteration} trees, {trials[-1].seconds:.1f} s"
        )
        return auc

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.monotonic()
    try:
        sampler = optuna.samplers.TPESampler(
            seed=config.seed, n_startup_trials=min(10, max(3, config.tune_trials // 3))
        )
        study = optuna.create_study(direction="maximize", sampler=sampler)
        study.enqueue_trial(untuned)
        study.optimize(objective, n_trials=1)  # the untuned trial runs whatever the cap
        left = config.tune_seconds - (time.monotonic() - started)
        if config.tune_trials > 1 and left > 0:
            study.optimize(objective, n_trials=config.tune_trials - 1, timeout=left)
    finally:
        optuna.logging.set_verbosity(verbosity)
    result = SearchResult(
        trials=tuple(trials),
        best=best["number"],
        budget_trials=config.tune_trials,
        budget_seconds=float(config.tune_seconds),
        capped=len(trials) < config.tune_trials,
        seconds=time.monotonic() - started,
    )
    say(result.summary())
    return result, best["model"]


def fit_tuned(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    features: Sequence[str],
    categorical: Sequence[str],
    label: str,
    config: TrainConfig,
    progress: Progress = None,
) -> tuple[CalibratedModel, TrainConfig, SearchResult | None]:
    """(model, config with the chosen ``lgb_overrides``, search or None): :func:`search_lgb` when ``config`` has a
    budget, else :func:`fit_model` with ``config`` unchanged."""
    if config.tune_trials < 1 or config.tune_seconds <= 0:
        return fit_model(train, valid, features, categorical, label, config, progress), config, None
    search, model = search_lgb(train, valid, features, categorical, label, config, progress)
    return model, replace(config, lgb_overrides={**config.lgb_overrides, **search.best_params}), search


def budget(settings: Any) -> dict[str, int]:
    """The search budget of the project settings (``PM_TUNE_TRIALS``, ``PM_TUNE_SECONDS``) as ``TrainConfig``
    arguments."""
    return {"tune_trials": settings.tune_trials, "tune_seconds": settings.tune_seconds}


def log_search(search: SearchResult) -> None:
    """Write ``search`` into the active MLflow run: one nested run per trial (its parameters as ``lgb.*``, metrics
    ``valid_auc``, ``best_iteration``, ``seconds``; tag ``tune.chosen``), and on the parent the metrics
    ``tune_valid_auc``, ``tune_valid_auc_untuned``, ``tune_valid_auc_gain``, ``tune_trials_run``,
    ``tune_seconds_spent``, the tags ``tune.best_trial`` and ``tune.capped``, and ``tuning/search.json``.

    The chosen parameters themselves are the parent's ``lgb.*`` parameters (the config it logs carries them)."""
    import mlflow

    parent = mlflow.active_run()
    if parent is None:
        raise RuntimeError("log_search needs an active MLflow run to nest the trials under")
    for t in search.trials:
        with mlflow.start_run(
            run_name=f"{parent.info.run_name or 'training'}-trial-{t.number}",
            experiment_id=parent.info.experiment_id,
            nested=True,
        ):
            mlflow.log_params({f"lgb.{k}": v for k, v in t.params.items()})
            mlflow.log_metrics(
                {"valid_auc": t.valid_auc, "best_iteration": float(t.best_iteration), "seconds": t.seconds}
            )
            mlflow.set_tags(
                {
                    "tune.trial": str(t.number),
                    "tune.untuned": str(t.number == 0).lower(),
                    "tune.chosen": str(t.number == search.best).lower(),
                }
            )
    mlflow.log_metrics(
        {
            "tune_valid_auc": search.best_valid_auc,
            "tune_valid_auc_untuned": search.default_valid_auc,
            "tune_valid_auc_gain": search.best_valid_auc - search.default_valid_auc,
            "tune_trials_run": float(len(search.trials)),
            "tune_seconds_spent": search.seconds,
        }
    )
    mlflow.set_tags({"tune.best_trial": str(search.best), "tune.capped": str(search.capped).lower()})
    mlflow.log_text(json.dumps(search.to_dict(), indent=2) + "\n", "tuning/search.json")


__all__ = ["SEARCH_SPACE", "SearchResult", "Trial", "budget", "fit_tuned", "log_search", "search_lgb"]
