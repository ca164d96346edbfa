"""Hyperparameter search benchmark: test AUC of untuned LightGBM and of the platform's tuned fit, on two public
tables in the same run.

    python bench/bench_tuning.py                       # ../shared/data, 40 trials, 300 s cap per table
    python bench/bench_tuning.py --trials 20 --seconds 120 --data DIR

The tables:

* Bank Marketing (``bank-additional-full.csv.gz``, 41,188 calls, label ``y == "yes"``) without ``duration`` (the
  call's length is known only after the outcome), columns made features by ``tables.prepare_table``;
* Online Retail (``online_retail.csv.gz``) churn by inactivity: the customers with a purchase before
  2011-09-10, RFM features of those purchases (``value_baseline.rfm_features``), label = no purchase in the
  90 days from the cutoff (through 2011-12-08, the last full day of the file).

Each is split once by ``tables.split_frame`` (stratified, seeded: test 30 %, validation 20 % of the other 70 %);
every arm early-stops on that validation part, the search sees only it, and the test part is scored once per
arm. The arms: LightGBM's own defaults (learning rate 0.1, 31 leaves, 20 rows a leaf, no row or column
sampling, no L2), the platform's untuned ``TrainConfig``, its search with ``--trials``/``--seconds``, and with
``PM_TUNE_TRIALS``/``PM_TUNE_SECONDS`` when they are set. AUC is of the booster's raw score
(the ranking; the calibrator after it is monotone). Nothing is logged to MLflow.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before LightGBM's OpenMP runtime loads

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RETAIL_CUTOFF = pd.Timestamp("2011-09-10")
RETAIL_HORIZON_DAYS = 90
# LightGBM's documented defaults for the parameters the platform sets otherwise.
LIGHTGBM_DEFAULTS = {
    "learning_rate": 0.1,
    "num_leaves": 31,
    "min_child_samples": 20,
    "feature_fraction": 1.0,
    "bagging_fraction": 1.0,
    "bagging_freq": 0,
    "lambda_l2": 0.0,
}


def _load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def bank_marketing(data: Path):
    from pipelines.models.tables import prepare_table, read_table

    frame, features, categorical, _ = prepare_table(
        read_table(data / "bank-additional-full.csv.gz"), "y", positive="yes", exclude=["duration"]
    )
    return frame, features, categorical, "y"


def online_retail_churn(data: Path):
    from pipelines.data.sources import read_online_retail
    from pipelines.models.value_baseline import RFM_FEATURES, rfm_features

    tx = read_online_retail(data / "online_retail.csv.gz")
    # Purchases only: lines without a customer, cancellations and free lines are no purchase.
    tx = tx.loc[tx["customer_id"].notna() & (tx["amount"] > 0)]
    table = rfm_features(tx, RETAIL_CUTOFF, date_col="txn_ts").reset_index()
    day = tx["txn_ts"].dt.floor("D")
    end = RETAIL_CUTOFF + pd.Timedelta(days=RETAIL_HORIZON_DAYS)
    active = set(tx.loc[(day >= RETAIL_CUTOFF) & (day < end), "customer_id"].astype(int))
    table["inactive_90d"] = (~table["customer_id"].astype(int).isin(active)).astype(np.int8)
    return table, list(RFM_FEATURES), [], "inactive_90d"


def _test_auc(model, test: pd.DataFrame, label: str) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(test[label].to_numpy(), model.raw_score(test)))


def run_table(name: str, loaded, trials: int, seconds: float, settings, seed: int) -> dict[str, float]:
    from pipelines.models.propensity import TrainConfig, fit_model
    from pipelines.models.tables import split_frame
    from pipelines.models.tuning import fit_tuned

    frame, features, categorical, label = loaded
    train, valid, test = split_frame(frame, label, seed=seed, test_size=0.3, valid_size=0.2)
    print(
        f"[{name}] {len(frame):,} rows, {len(features)} features ({len(categorical)} categorical), "
        f"positive rate {frame[label].mean():.2%}; train {len(train):,}, valid {len(valid):,}, test {len(test):,}"
    )
    print(f"[{name}] load: {_load()}")
    base = TrainConfig(model_name=name, seed=seed)
    arms = {
        "lightgbm defaults": replace(base, lgb_overrides=LIGHTGBM_DEFAULTS),
        "platform untuned": base,
    }
    if settings.tune_trials and settings.tune_seconds:
        arms[f"tuned, PM_TUNE_* ({settings.tune_trials} trials, {settings.tune_seconds} s)"] = replace(
            base, tune_trials=settings.tune_trials, tune_seconds=settings.tune_seconds
        )
    arms[f"tuned ({trials} trials, {seconds:g} s)"] = replace(base, tune_trials=trials, tune_seconds=seconds)
    aucs = {}
    for arm, config in arms.items():
        started = time.perf_counter()
        if config.tune_trials:
            model, _, search = fit_tuned(train, valid, features, categorical, label, config)
            detail = (
                f"valid auc {search.best_valid_auc:.4f} (untuned {search.default_valid_auc:.4f}), "
                f"{len(search.trials)} trials{' CAPPED' if search.capped else ''}, chosen trial {search.best}"
            )
        else:
            model = fit_model(train, valid, features, categorical, label, config)
            detail = "no search"
        took = time.perf_counter() - started
        aucs[arm] = _test_auc(model, test, label)
        print(
            f"[{name}] {arm:<44} test auc {aucs[arm]:.4f}  {took:6.1f} s  {model.best_iteration} trees; {detail}"
        )
    plain, untuned = aucs["lightgbm defaults"], aucs["platform untuned"]
    for arm, auc in aucs.items():
        if arm.startswith("tuned"):
            verdict = "goal met" if auc - plain >= 0.005 else "goal NOT met"
            print(
                f"[{name}] {arm}: {auc - plain:+.4f} AUC vs LightGBM defaults ({verdict}: >= +0.005), "
                f"{auc - untuned:+.4f} vs the platform untuned"
            )
    print(f"[{name}] load: {_load()}")
    return aucs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, default=ROOT.parent / "shared" / "data", help="public data folder"
    )
    parser.add_argument("--trials", type=int, default=40, help="trials of the larger search (default 40)")
    parser.add_argument("--seconds", type=float, default=300, help="its cap in seconds (default 300)")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    from pipelines.config import load_settings

    settings = load_settings()
    missing = [
        f for f in ("bank-additional-full.csv.gz", "online_retail.csv.gz") if not (args.data / f).is_file()
    ]
    if missing:
        sys.exit(f"bench_tuning: {', '.join(missing)} not found in {args.data} (--data DIR)")
    started = time.perf_counter()
    run_table("bank_marketing", bank_marketing(args.data), args.trials, args.seconds, settings, args.seed)
    run_table("online_retail", online_retail_churn(args.data), args.trials, args.seconds, settings, args.seed)
    print(f"bench_tuning: {time.perf_counter() - started:.0f} s in all; load: {_load()}")


if __name__ == "__main__":
    main()
