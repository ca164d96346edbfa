"""Uplift against its peers: the platform's chosen learner vs scikit-uplift's S- and T-learners and causalml's
uplift random forest, on the same splits, by normalised Qini with a 95 % bootstrap interval.

    python bench/bench_uplift_peers.py                       # lenta (5 repeated splits) and the synthetic bank
    python bench/bench_uplift_peers.py --data lenta --splits 5
    python bench/bench_uplift_peers.py --data bank --customers 40000
    python bench/bench_uplift_peers.py --selection default   # the platform's default (cheap) selection
    python bench/bench_uplift_peers.py --data bank --keep bench/out/peers   # keep (and reuse) the bank

Needs the optional bench extra (``uv sync --extra bench``: scikit-uplift, causalml).

Data:
- lenta: ``../shared/data/lenta_dataset_50k.csv.gz``, a real SMS experiment (75 % treated, response 10.9 %, lift
  +0.9 points; three features: food_share_15d, age, is_women). ``--splits`` random 70/30 splits stratified by
  treatment x outcome (seeds 0, 1, ...): every method fits on the same 70 % and is scored on the same 30 %.
- bank: the synthetic bank (``--customers``, 12 months, seed 7: the integration test's bank) and its campaign
  history: the training campaigns to fit (as ``pmp train uplift`` does: the validation campaign is its
  out-of-time check, unused here), the newest campaign to test; the generator's true uplift gives the oracle's
  Qini on the same rows.

Methods: the platform (``uplift_selection.select_learner`` on the fitting rows with ``FULL_SELECTION`` or
``DEFAULT_SELECTION``, ``uplift_config()`` boosters: learning rate 0.05, early stopping 100, 2 threads, then the
chosen learner's scores of the test rows); scikit-uplift ``SoloModel`` (S) and ``TwoModels`` (T, vanilla) on
``LGBMClassifier`` with LightGBM's defaults (100 trees, learning rate 0.1, 31 leaves; 2 threads); causalml
``UpliftRandomForestClassifier`` (``--forest-trees`` trees, max depth 6, min 100 rows a leaf, KL criterion).
Categorical features reach the peers as category codes; causalml gets missing values as -1.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LENTA = ROOT.parent / "shared" / "data" / "lenta_dataset_50k.csv.gz"
PEERS = ("sklift_s", "sklift_t", "causalml_forest")


def _require_peers() -> None:
    missing = []
    for module in ("sklift", "causalml"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise SystemExit(
            f"bench_uplift_peers needs {', '.join(missing)} (the optional bench extra): uv sync --extra bench"
        )


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def _codes(X: pd.DataFrame, fill: float | None = None) -> np.ndarray:
    """The frame as a float matrix: categoricals as codes (missing NaN), optionally NaN replaced by ``fill``."""
    columns = []
    for c in X.columns:
        col = X[c]
        if isinstance(col.dtype, pd.CategoricalDtype):
            codes = col.cat.codes.to_numpy().astype(float)
            codes[codes < 0] = np.nan
            columns.append(codes)
        else:
            columns.append(pd.to_numeric(col, errors="raise").to_numpy(dtype=float, na_value=np.nan))
    out = np.column_stack(columns)
    if fill is not None:
        out = np.where(np.isnan(out), fill, out)
    return out


def _lgbm(seed: int):
    from lightgbm import LGBMClassifier

    return LGBMClassifier(random_state=seed, n_jobs=2, verbose=-1)


def fit_peer(name: str, X_fit, y, t, X_test, seed: int, forest_trees: int) -> np.ndarray:
    """Fit one peer on the fitting rows; its uplift scores of the test rows."""
    if name == "causalml_forest":
        from causalml.inference.tree import UpliftRandomForestClassifier

        forest = UpliftRandomForestClassifier(
            control_name="control",
            n_estimators=forest_trees,
            max_depth=6,
            min_samples_leaf=100,
            min_samples_treatment=25,
            n_reg=100,
            evaluationFunction="KL",
            random_state=seed,
            n_jobs=2,
        )
        arm = np.where(np.asarray(t) == 1, "treatment", "control")
        forest.fit(_codes(X_fit, -1.0), treatment=arm, y=np.asarray(y, dtype=int))
        return np.asarray(forest.predict(_codes(X_test, -1.0))).reshape(len(X_test), -1)[:, 0]
    from sklift.models import SoloModel, TwoModels

    model = (
        SoloModel(_lgbm(seed))
        if name == "sklift_s"
        else TwoModels(_lgbm(seed), _lgbm(seed), method="vanilla")
    )
    model.fit(_codes(X_fit), np.asarray(y, dtype=int), np.asarray(t, dtype=int))
    return np.asarray(model.predict(_codes(X_test)), dtype=float)


def fit_platform(X_fit, y, t, X_test, categorical, selection, seed: int):
    """The platform's selection on the fitting rows: (scores of the test rows, the Selection)."""
    from pipelines.models.uplift import default_learners, uplift_config
    from pipelines.models.uplift_selection import select_learner

    config = uplift_config(seed=seed)
    learners = default_learners(config, categorical, selection.learners)
    chosen = select_learner(learners, X_fit, y, t, selection, seed=seed)
    return chosen.learner.predict_uplift(X_test), chosen


def evaluate(label: str, y, t, s, seconds: float, n_boot: int, seed: int) -> dict:
    from pipelines.models.uplift_metrics import bootstrap_ci, qini_coefficient, verdict

    q = qini_coefficient(y, t, s)
    low, high = bootstrap_ci(qini_coefficient, y, t, s, n_boot=n_boot, seed=seed)
    row = {"method": label, "qini": q, "low": low, "high": high, "verdict": verdict(q, low, high)}
    row["seconds"] = seconds
    print(f"  {label:<34} qini {q:+.4f} [{low:+.4f}, {high:+.4f}]  {row['verdict']:<26} {seconds:6.1f} s")
    return row


def compare(
    X_fit, y, t, X_test, y_test, t_test, categorical, args, seed: int, selection_name: str
) -> list[dict]:
    """Every method on one split."""
    from pipelines.models.uplift_selection import DEFAULT_SELECTION, FULL_SELECTION

    selection = FULL_SELECTION if selection_name == "full" else DEFAULT_SELECTION
    rows = []
    start = time.perf_counter()
    s, chosen = fit_platform(X_fit, y, t, X_test, categorical, selection, seed)
    best = chosen.table.iloc[0]
    print(
        f"  platform ({selection_name}) chose {chosen.name}: cv qini {best['qini']:+.4f} ± {best['qini_se']:.4f}"
        + (
            f", lead over {chosen.runner_up} {chosen.lead:+.4f} (paired SE {chosen.lead_se:.4f})"
            if chosen.runner_up
            else ""
        )
    )
    for r in chosen.table.itertuples(index=False):
        print(
            f"    {r.learner:<18} cv qini {r.qini:+.4f} ± {r.qini_se:.4f}  fold fits {r.fit_seconds:5.1f} s"
            + (f"  ({r.members})" if r.members else "")
        )
    rows.append(
        evaluate(f"platform ({chosen.name})", y_test, t_test, s, time.perf_counter() - start, args.boot, seed)
    )
    rows[-1]["method"] = "platform"
    for peer in PEERS:
        start = time.perf_counter()
        s = fit_peer(peer, X_fit, y, t, X_test, seed, args.forest_trees)
        rows.append(evaluate(peer, y_test, t_test, s, time.perf_counter() - start, args.boot, seed))
    return rows


def bench_lenta(args) -> None:
    from sklearn.model_selection import train_test_split

    if not LENTA.is_file():
        raise SystemExit(f"lenta data not found: {LENTA}")
    data = pd.read_csv(LENTA)
    features = ["food_share_15d", "age", "is_women"]
    y_all, t_all = data["response_att"].to_numpy(), data["is_treatment"].to_numpy()
    print(
        f"lenta: {len(data):,} rows, {t_all.mean():.1%} treated, response {y_all[t_all == 1].mean():.2%} treated vs "
        f"{y_all[t_all == 0].mean():.2%} control; {args.splits} splits 70/30 stratified by treatment x outcome"
    )
    results = []
    for split in range(args.splits):
        fit_idx, test_idx = train_test_split(
            np.arange(len(data)), test_size=0.3, random_state=split, stratify=2 * t_all + y_all
        )
        X = data[features]
        print(f"split {split + 1}/{args.splits} (seed {split}): fit {len(fit_idx):,}, test {len(test_idx):,}")
        rows = compare(
            X.iloc[fit_idx].reset_index(drop=True),
            y_all[fit_idx],
            t_all[fit_idx],
            X.iloc[test_idx].reset_index(drop=True),
            y_all[test_idx],
            t_all[test_idx],
            [],
            args,
            split,
            args.selection,
        )
        results += [{**r, "split": split} for r in rows]
    table = pd.DataFrame(results)
    print(f"\nlenta, {args.splits} splits: normalised Qini on the 30 % test rows (mean ± SE over splits)")
    for method, group in table.groupby("method", sort=False):
        q = group["qini"].to_numpy()
        se = q.std(ddof=1) / np.sqrt(q.size) if q.size > 1 else float("nan")
        above = int((group["low"] > 0).sum())
        print(
            f"  {method:<18} {q.mean():+.4f} ± {se:.4f}   per split {', '.join(f'{v:+.4f}' for v in q)}   "
            f"CI above 0 in {above}/{q.size}   {group['seconds'].mean():.1f} s a split"
        )


def bench_bank(args) -> None:
    from pipelines.config import Settings
    from pipelines.data import storage
    from pipelines.features import history
    from pipelines.features.catalogue import CATEGORICAL_FEATURES
    from pipelines.jobs.campaign_models import campaign_history, models_folder
    from pipelines.synthetic import oracle
    from pipelines.synthetic.bank import SynthConfig, generate_bank

    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        data_dir = root / "bank"
        settings = Settings(data_dir=data_dir, mlruns_dir=root / "mlruns")
        started = time.perf_counter()
        if not (data_dir.is_dir() and (models_folder(settings, None) / "history.parquet").is_file()):
            generate_bank(
                SynthConfig(customers=args.customers, months=12, seed=7, chunk_size=20_000),
                data_dir,
                progress=None,
            )
            campaign_history(settings, progress=None)
        stored = models_folder(settings, None) / "history.parquet"
        split = history.split_by_campaign(storage.read_frame(stored))
        print(
            f"bank: {args.customers:,} customers with campaign history in {time.perf_counter() - started:.0f} s"
        )
        features = history.feature_columns(split.train)
        categorical = [c for c in features if c in CATEGORICAL_FEATURES]
        categorical += [
            c
            for c in features
            if c not in categorical
            and (
                isinstance(split.train[c].dtype, pd.CategoricalDtype)
                or pd.api.types.is_string_dtype(split.train[c])
            )
        ]
        fit = split.train.reset_index(drop=True)
        test = split.test.reset_index(drop=True)
        X_fit, X_test = fit[features].copy(), test[features].copy()
        for c in categorical:
            cats = sorted(pd.unique(X_fit[c].dropna().astype(str)))
            X_fit[c] = pd.Categorical(X_fit[c].astype(object).map(str, na_action="ignore"), categories=cats)
            X_test[c] = pd.Categorical(X_test[c].astype(object).map(str, na_action="ignore"), categories=cats)
        y, t = fit[history.CONVERTED].to_numpy(), fit[history.TREATED].to_numpy()
        y_test, t_test = test[history.CONVERTED].to_numpy(), test[history.TREATED].to_numpy()
        truth = oracle.oracle_uplift(data_dir, test, 14)
        print(
            f"fit on {len(fit):,} contacts (training campaigns), test on {len(test):,} (newest campaign); "
            f"{len(features)} features ({len(categorical)} categorical)"
        )
        rows = compare(X_fit, y, t, X_test, y_test, t_test, categorical, args, 7, args.selection)
        if truth is not None:
            from pipelines.models.uplift_metrics import qini_coefficient

            oracle_q = qini_coefficient(y_test, t_test, truth)
            print(f"  {'oracle (true uplift)':<34} qini {oracle_q:+.4f}")
            for r in rows:
                print(f"  {r['method']:<18} {r['qini'] / oracle_q:.1%} of the oracle's Qini")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", choices=("lenta", "bank", "both"), default="both")
    parser.add_argument("--splits", type=int, default=5, help="repeated splits on lenta")
    parser.add_argument("--customers", type=int, default=40_000, help="synthetic bank size")
    parser.add_argument("--selection", choices=("full", "default"), default="full")
    parser.add_argument("--forest-trees", type=int, default=100)
    parser.add_argument("--boot", type=int, default=200, help="bootstrap resamples of each Qini interval")
    parser.add_argument(
        "--keep", type=Path, default=None, help="keep the generated bank here (and reuse it when present)"
    )
    args = parser.parse_args()
    _require_peers()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    print(f"load at start: {_uptime()}")
    started = time.perf_counter()
    if args.data in ("lenta", "both"):
        bench_lenta(args)
    if args.data in ("bank", "both"):
        bench_bank(args)
    print(f"total {time.perf_counter() - started:.0f} s; load at the end: {_uptime()}")


if __name__ == "__main__":
    main()
