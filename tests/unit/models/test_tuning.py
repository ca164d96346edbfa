"""The hyperparameter search: deterministic for a seed and trial count, never worse than the untuned parameters on
validation, logged as nested MLflow runs, off with a zero budget, stopped by its seconds cap; real LightGBM,
Optuna and MLflow on small synthetic frames."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from pipelines.config import load_settings
from pipelines.models.propensity import fit_model
from pipelines.models.tables import split_frame
from pipelines.models.tuning import SEARCH_SPACE, SearchResult, fit_tuned, search_lgb
from tests.unit.models.test_propensity import CATEGORICAL, FAST, FEATURES, make_frame

TUNED = replace(FAST, num_threads=1, tune_trials=6, tune_seconds=600)


@pytest.fixture(scope="module")
def parts():
    return split_frame(make_frame(2500, seed=5), "churned", seed=2)


@pytest.fixture(scope="module")
def searched(parts):
    train, valid, _ = parts
    lines: list[str] = []
    search, model = search_lgb(train, valid, FEATURES, CATEGORICAL, "churned", TUNED, progress=lines.append)
    return search, model, lines


def test_same_seed_and_trial_count_give_the_same_params_and_predictions(parts, searched):
    train, valid, test = parts
    search, model, _ = searched
    again, again_model = search_lgb(train, valid, FEATURES, CATEGORICAL, "churned", TUNED)
    assert [t.params for t in again.trials] == [t.params for t in search.trials]
    assert [t.valid_auc for t in again.trials] == [t.valid_auc for t in search.trials]
    assert again.best == search.best
    np.testing.assert_array_equal(again_model.predict_proba(test), model.predict_proba(test))
    # Another seed explores other parameters (the first trial, the untuned one, stays the same).
    other, _ = search_lgb(train, valid, FEATURES, CATEGORICAL, "churned", replace(TUNED, seed=7))
    assert other.trials[0].params == search.trials[0].params
    assert [t.params for t in other.trials[1:]] != [t.params for t in search.trials[1:]]


def test_the_first_trial_is_the_untuned_config_and_the_choice_is_no_worse(parts, searched):
    train, valid, test = parts
    search, model, lines = searched
    assert len(search.trials) == 6 and not search.capped
    assert search.trials[0].params == {name: TUNED.lgb_params()[name] for name in SEARCH_SPACE}
    untuned = fit_model(train, valid, FEATURES, CATEGORICAL, "churned", TUNED)
    assert search.trials[0].best_iteration == untuned.best_iteration
    assert search.best_valid_auc == max(t.valid_auc for t in search.trials) >= search.default_valid_auc
    # Every other trial's parameters lie in the search space.
    for t in search.trials[1:]:
        for name, (low, high, _, _) in SEARCH_SPACE.items():
            assert low <= t.params[name] <= high, (name, t.params)
    # The returned model is fit_model with the chosen parameters, exactly.
    chosen = replace(TUNED, lgb_overrides=search.best_params)
    refit = fit_model(train, valid, FEATURES, CATEGORICAL, "churned", chosen)
    np.testing.assert_array_equal(refit.predict_proba(test), model.predict_proba(test))
    # A progress line per trial and a closing summary.
    assert sum("hyperparameter search: trial" in line for line in lines) == 6
    assert lines[-1].startswith("hyperparameter search: 6/6 trials") and "all trials run" in lines[-1]
    assert SearchResult.from_dict(search.to_dict()) == search


def test_a_zero_budget_means_no_search_and_the_previous_params(parts):
    train, valid, test = parts
    plain = fit_model(train, valid, FEATURES, CATEGORICAL, "churned", FAST)
    for budget in ({"tune_trials": 0, "tune_seconds": 600}, {"tune_trials": 6, "tune_seconds": 0}):
        config = replace(FAST, **budget)
        model, used, search = fit_tuned(train, valid, FEATURES, CATEGORICAL, "churned", config)
        assert search is None and used is config and used.lgb_params() == FAST.lgb_params()
        np.testing.assert_array_equal(model.predict_proba(test), plain.predict_proba(test))
    with pytest.raises(ValueError, match="lgb_overrides may not change objective"):
        replace(FAST, lgb_overrides={"objective": "regression"})


def test_the_seconds_cap_stops_the_search_and_is_reported(parts):
    train, valid, _ = parts
    lines: list[str] = []
    config = replace(TUNED, tune_trials=50, tune_seconds=1e-6)  # any trial takes longer than the cap
    search, _ = search_lgb(train, valid, FEATURES, CATEGORICAL, "churned", config, progress=lines.append)
    assert search.capped and len(search.trials) == 1 and search.best == 0
    assert "1/50 trials" in lines[-1] and "stopped by the 1e-06 s cap" in lines[-1]


def test_pmp_train_tune_trials_logs_nested_runs_under_the_training_run(tmp_path, monkeypatch, capsys):
    from mlflow import MlflowClient

    from pipelines.cli import main

    path = tmp_path / "customers.parquet"
    make_frame(2500, seed=5).to_parquet(path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("PM_TUNE_TRIALS", "9")  # the flag wins
    monkeypatch.chdir(tmp_path)  # nothing else may land in the working directory
    args = ["train", "--table", str(path), "--label", "churned", "--id", "customer_id", "--name", "tuned"]
    assert main([*args, "--tune-trials", "4"]) == 0
    out = capsys.readouterr().out
    assert out.count("hyperparameter search: trial") == 4 and "4/4 trials" in out
    run_id = out.split("mlflow run id: ")[1].split()[0]
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    parent = client.get_run(run_id)
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'")
    by_trial = {int(r.data.tags["tune.trial"]): r for r in children}
    assert sorted(by_trial) == [0, 1, 2, 3]
    chosen = int(parent.data.tags["tune.best_trial"])
    assert [n for n, r in by_trial.items() if r.data.tags["tune.chosen"] == "true"] == [chosen]
    assert by_trial[0].data.tags["tune.untuned"] == "true"
    aucs = {n: r.data.metrics["valid_auc"] for n, r in by_trial.items()}
    assert parent.data.metrics["tune_valid_auc"] == max(aucs.values()) == aucs[chosen]
    assert parent.data.metrics["tune_valid_auc_untuned"] == aucs[0]
    assert parent.data.metrics["tune_trials_run"] == 4 and parent.data.tags["tune.capped"] == "false"
    assert parent.data.params["tune_trials"] == "4"
    # The parent's LightGBM parameters are the chosen trial's.
    for name in SEARCH_SPACE:
        assert parent.data.params[f"lgb.{name}"] == by_trial[chosen].data.params[f"lgb.{name}"], name
    assert "tuning/search.json" in {f.path for f in client.list_artifacts(run_id, "tuning")}
    # Only the training run is registered; the trials are not models.
    assert [v.run_id for v in client.search_model_versions("name = 'tuned'")] == [run_id]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifacts", "customers.parquet", "mlflow.db"]


def test_the_budget_settings_parse_and_fail_with_the_variable_named():
    settings = load_settings({"PM_TUNE_TRIALS": "3", "PM_TUNE_SECONDS": "5"})
    assert (settings.tune_trials, settings.tune_seconds) == (3, 5)
    with pytest.raises(ValueError, match="PM_TUNE_TRIALS must be an integer >= 0, got '-1'"):
        load_settings({"PM_TUNE_TRIALS": "-1"})
