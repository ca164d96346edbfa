"""Training benchmark: wall time and peak memory of `train.fit_model` (LightGBM + calibration, `TrainConfig`
defaults: 2 threads, early stopping) and of one `predict_proba` pass, on ~1M customer-snapshots x ~80 features.

    python bench/bench_train.py --lake bench/out/synth1m                  # real wide tables (default 1M x 80)
    python bench/bench_train.py --lake bench/out/synth --rows 300000      # smaller, for `make bench`
    python bench/bench_train.py --rows 1000000 --features 80              # no lake: a synthetic matrix

Arguments: ``--lake`` a data folder (or lake) from ``pmp synth``; ``--rows`` training rows (default 1,000,000);
``--features`` model features (default 80); ``--snapshots`` monthly snapshots to build (default 3: the newest
is validation, the others training); ``--seed``; ``--omp-passive`` to set OMP_WAIT_POLICY=passive.

With ``--lake`` the table is real: ``labels.build_training_set`` (closure within 90 days) on the newest
label-complete snapshots, the training snapshots sampled down to ``--rows`` (all of them when fewer), validation
sampled to ``--rows / 3`` (train_churn's 3 training snapshots to 1 validation), and the 57 catalogue features
padded to ``--features`` with derived columns (logs, window ratios, products of existing features). The table is
cached under bench/out/ (keyed by the lake's files and the arguments) and the script re-executes itself, so the figures are those of a fresh process that
reads the table and trains, not of the feature build. Without ``--lake`` the matrix is synthetic: 5
categoricals, skewed counts and amounts, shares with missing values, and a label from a non-linear logistic
signal with a ~5% base rate.

The issue's floor: 1M rows x 80 features in <= 3 minutes and <= 6 GB on 2 cores. Nothing is logged to MLflow.
LightGBM's 2 OpenMP threads spin while they wait: when another process holds one of the 2 cores, training is
several times slower (about 10x measured on 50k rows); compare with ``--omp-passive`` before trusting a figure
taken on a busy machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import pandas as pd
import psutil
from _measure import measure

LABEL = "label"
CACHE = Path(__file__).resolve().parent / "out"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lake", type=Path, default=None, help="data folder or lake (default: synthetic)")
    parser.add_argument("--rows", type=int, default=1_000_000, help="training rows (default 1,000,000)")
    parser.add_argument("--features", type=int, default=80, help="model features (default 80)")
    parser.add_argument("--snapshots", type=int, default=3, help="snapshots to build with --lake (default 3)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--omp-passive",
        action="store_true",
        help="set OMP_WAIT_POLICY=passive (idle OpenMP threads sleep instead of spinning)",
    )
    args = parser.parse_args()
    if args.omp_passive:
        os.environ["OMP_WAIT_POLICY"] = (
            "passive"  # read when the OpenMP runtime loads: before any import of it
        )
    # pipelines.train imports scikit-learn, which can load the OpenMP runtime LightGBM then shares.
    from pipelines.features.catalogue import CATEGORICAL_FEATURES
    from pipelines.models.propensity import TrainConfig, fit_model

    started = time.perf_counter()
    if args.lake is None:
        train, valid, features = _synthetic(args.rows, args.features, args.seed)
        source = "synthetic matrix"
    else:
        lake = args.lake / "lake" if (args.lake / "lake").is_dir() else args.lake
        cache = CACHE / (
            f"train-table-{lake.resolve().parent.name}-{_fingerprint(lake)}-{args.snapshots}s-{args.rows}r-"
            f"{args.features}f-{args.seed}.parquet"
        )
        if not cache.exists():
            _build_cache(lake, cache, args)
            print("re-executing to train in a fresh process\n", flush=True)
            os.execv(sys.executable, [sys.executable, *sys.argv])
        table = pd.read_parquet(cache)
        features = [c for c in table.columns if c not in ("part", "as_of", "customer_id", LABEL)]
        train = table.loc[table["part"] == "train"].reset_index(drop=True)
        valid = table.loc[table["part"] == "valid"].reset_index(drop=True)
        del table
        source = f"real wide tables from {lake} (cached in {cache.name})"
    categorical = [c for c in CATEGORICAL_FEATURES if c in features]
    print(f"table: {source}, prepared in {time.perf_counter() - started:.1f} s")
    print(
        f"train {len(train):,} rows ({train[LABEL].mean():.2%} positive), valid {len(valid):,} rows, "
        f"{len(features)} features ({len(categorical)} categorical)"
    )
    config = TrainConfig()
    print(
        f"TrainConfig defaults: {config.num_threads} threads, learning rate {config.learning_rate}, up to "
        f"{config.n_estimators} trees, early stopping {config.early_stopping_rounds}, {config.calibration}"
    )
    rss = psutil.Process().memory_info().rss / 2**30
    print(f"RSS before training (the frames and the interpreter): {rss:.2f} GiB; load average {_load()}")

    with measure("fit_model") as fit:
        model = fit_model(train, valid, features, categorical, LABEL, config)
    with measure(f"predict_proba on {len(train):,} rows") as pred:
        p = model.predict_proba(train)
    assert p.shape == (len(train),) and np.isfinite(p).all()

    from pipelines.models.evaluate import score_metrics

    auc_valid = score_metrics(valid[LABEL].to_numpy(), model.predict_proba(valid))["auc"]
    print()
    print(f"rows x features:   {len(train):,} x {len(features)} ({source.split(' (')[0]})")
    print(f"trees:             {model.best_iteration} (early stopping)")
    print(f"valid AUC:         {auc_valid:.4f}")
    print(
        f"fit_model:         {fit['seconds']:.1f} s, peak {fit['peak_rss_gb']:.2f} GiB (floor: 180 s, 6 GB)"
    )
    print(
        f"predict_proba:     {pred['seconds']:.1f} s ({len(train) / pred['seconds']:,.0f} rows/s), "
        f"peak {pred['peak_rss_gb']:.2f} GiB"
    )
    print(f"load average:      {_load()}")


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in psutil.getloadavg())


# --------------------------------------------------------------------------------------------------------------
# Real wide tables


def _fingerprint(lake: Path) -> str:
    """Short hash of the lake's file names, sizes and times: a regenerated lake gets a new cache."""
    import hashlib

    stats = [
        (str(f.relative_to(lake)), f.stat().st_size, f.stat().st_mtime_ns) for f in lake.rglob("*.parquet")
    ]
    return hashlib.sha1(repr(sorted(stats)).encode()).hexdigest()[:8]


def _build_cache(lake: Path, cache: Path, args: argparse.Namespace) -> None:
    from pipelines.data import storage
    from pipelines.features.labels import LabelDefinition, build_training_set, snapshot_dates

    definition = LabelDefinition()
    dates = snapshot_dates(storage.lake_end(lake), definition, args.snapshots)
    if len(dates) < 2:
        raise SystemExit("--snapshots must be at least 2 (training and validation)")
    print(
        f"building {len(dates)} snapshots {dates[0]:%Y-%m-%d} .. {dates[-1]:%Y-%m-%d} (validation) from {lake}"
    )
    with measure("build_training_set"):
        data = build_training_set(lake, dates, definition)
    rng = np.random.default_rng(args.seed)
    is_valid = (data["as_of"] == dates[-1]).to_numpy()
    train_rows = np.flatnonzero(~is_valid)
    valid_rows = np.flatnonzero(is_valid)
    if len(train_rows) < args.rows:
        print(f"note: the training snapshots hold {len(train_rows):,} rows, fewer than --rows {args.rows:,}")
    train_rows = np.sort(rng.choice(train_rows, min(args.rows, len(train_rows)), replace=False))
    valid_rows = np.sort(rng.choice(valid_rows, min(max(args.rows // 3, 1), len(valid_rows)), replace=False))
    table = pd.concat(
        [
            data.iloc[train_rows].assign(part="train"),
            data.iloc[valid_rows].assign(part="valid"),
        ],
        ignore_index=True,
    )
    del data
    table = _pad(table, args.features)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    table.to_parquet(tmp, index=False)
    tmp.replace(cache)
    print(f"cached {len(table):,} rows x {table.shape[1]} columns in {cache}")


def _pad(table: pd.DataFrame, width: int) -> pd.DataFrame:
    """Add derived numeric columns until there are ``width`` model features (or drop the last ones if fewer)."""
    from pipelines.features.catalogue import CATEGORICAL_FEATURES, FEATURE_NAMES

    numeric = [f for f in FEATURE_NAMES if f not in CATEGORICAL_FEATURES]
    features = list(FEATURE_NAMES)
    if width <= len(features):
        keep = [c for c in table.columns if c not in features or c in features[:width]]
        return table[keep]
    derived: dict[str, np.ndarray] = {}
    for a, b in zip(numeric, numeric[1:], strict=False):
        x, y = table[a].to_numpy(np.float64), table[b].to_numpy(np.float64)
        derived[f"log1p_{a}"] = np.log1p(np.abs(x))
        derived[f"{a}_per_{b}"] = x / (np.abs(y) + 1)
        derived[f"{a}_x_{b}"] = x * y
        if len(features) + len(derived) >= width:
            break
    if len(features) + len(derived) < width:
        raise SystemExit(f"cannot derive {width} features from {len(features)}")
    derived = dict(list(derived.items())[: width - len(features)])
    return pd.concat([table, pd.DataFrame(derived, index=table.index)], axis=1)


# --------------------------------------------------------------------------------------------------------------
# Synthetic matrix


def _synthetic(rows: int, width: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """A training and a validation frame (rows / 3) with a learnable, non-linear signal."""
    rng = np.random.default_rng(seed)
    n = rows + rows // 3
    cats = {
        "gender": ("F", "M", "U"),
        "income_band": ("low", "lower_middle", "middle", "upper_middle", "high"),
        "occupation": (
            "salaried",
            "self_employed",
            "civil_servant",
            "student",
            "retired",
            "homemaker",
            "other",
        ),
        "card_tier": ("classic", "gold", "platinum", "infinite"),
        "acquisition_channel": ("branch", "online", "partner", "referral", "telesales"),
    }
    out: dict[str, object] = {}
    for name, values in list(cats.items())[: min(5, width)]:
        out[name] = pd.Categorical.from_codes(rng.integers(0, len(values), n), categories=list(values))
    activity = rng.gamma(2.0, 1.0, n)  # latent engagement driving many columns, as in the real table
    k = 0
    while len(out) < width:
        kind = k % 4
        if kind == 0:
            col = rng.poisson(activity * (1 + k % 7)).astype(np.float64)  # counts
        elif kind == 1:
            col = rng.lognormal(np.log1p(activity) + 3, 1.0, n)  # amounts
        elif kind == 2:
            col = rng.beta(1 + activity, 5, n)  # shares
            col[rng.random(n) < 0.02] = np.nan
        else:
            col = rng.normal(0, 1, n) + 0.3 * activity  # balances, trends
        out[f"x{k:02d}"] = col
        k += 1
    frame = pd.DataFrame(out)
    numeric = [c for c in frame.columns if c.startswith("x")]
    z = (
        -3.4
        - 0.9 * np.log1p(frame[numeric[0]].to_numpy())
        + 0.6 * (frame[numeric[1 % len(numeric)]].to_numpy() < np.median(frame[numeric[1 % len(numeric)]]))
        + 0.8 * np.nan_to_num(frame[numeric[2 % len(numeric)]].to_numpy()) ** 2
        + 0.5 * np.sin(frame[numeric[3 % len(numeric)]].to_numpy())
        + 0.4 * (frame["card_tier"].cat.codes.to_numpy() == 0 if "card_tier" in frame else 0)
    )
    frame[LABEL] = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(np.int8)
    features = [c for c in frame.columns if c != LABEL]
    return frame.iloc[:rows].reset_index(drop=True), frame.iloc[rows:].reset_index(drop=True), features


if __name__ == "__main__":
    main()
