"""Uplift benchmark: wall time and peak memory of each uplift learner's fit plus the scoring of every row, on a
simulated randomised experiment (default 1M rows x 50 features, 50/50 treatment, heterogeneous effect), against a
reference of two plain LightGBM binary fits of the same size with the same config, each scoring every row too.

    python bench/bench_uplift.py                         # reference + the six learners, 1M x 50
    python bench/bench_uplift.py --rows 200000           # smaller
    python bench/bench_uplift.py --case x_learner        # one case, in this process

Every case runs in a fresh subprocess (``--case``), so one case's peak never carries into the next; the figures
are those of that process: ``peak`` is the highest RSS sampled every 50 ms during fit + scoring (the data already
in memory included), ``process peak`` the kernel's maximum RSS over the process's life (data generation included).

Settings: ``uplift.uplift_config()`` defaults (learning rate 0.05, up to 2000 trees, early stopping after 100, 2
threads); each booster stops on 20 % of its rows (stratified by treatment x outcome, the learners' own split). The
reference fits ``y ~ X`` twice with ``lgb.Dataset`` on the pandas frame (LightGBM's plain path), 80 % of the rows
each, and scores all rows with each booster. Data: 48 standard-normal float32 columns and 2 categoricals;
response logit -2.9 + 0.5 x0 - 0.4 x1 + 0.4 [x2 > 1] + 0.3 x3 x4 + channel; treatment adds +0.9 to the logit when
x5 > 0.5 (persuadables, ~31 %), -0.7 when x6 < -1 (do-not-disturb, ~16 %) and 0.15 x7 elsewhere.

The issue's goal: uplift training and scoring no slower than the reference and at most 1.2 GB peak (a peer's
two-model implementation: 64 s, 1.16 GB). LightGBM's OpenMP threads spin while they wait: on a machine where other
work holds a core, every figure here is several times slower; the load average is printed with each case.
``--omp-passive`` sets OMP_WAIT_POLICY=passive in the cases' processes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import pandas as pd
import psutil
from _measure import measure

CASES = (
    "reference",
    "s_learner",
    "t_learner",
    "x_learner",
    "class_transformation",
    "r_learner",
    "shared_t_learner",
)
GB = 1e9


def simulate(rows: int, features: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """(X, y, t, true uplift): ``features`` columns (2 categorical, the rest float32), built column by column so
    the frame holds one float32 array per column and nothing else."""
    rng = np.random.default_rng(seed)
    columns: dict[str, object] = {}
    for i in range(features - 2):
        columns[f"x{i}"] = rng.standard_normal(rows, dtype=np.float32)
    channel = rng.integers(0, 3, rows).astype(np.int8)
    columns["channel"] = pd.Categorical.from_codes(channel, categories=["email", "sms", "push"])
    columns["region"] = pd.Categorical.from_codes(
        rng.integers(0, 8, rows).astype(np.int8), categories=[f"r{i}" for i in range(8)]
    )
    X = pd.DataFrame(columns, copy=False)
    x = [columns[f"x{i}"] for i in range(8)]
    base = -2.9 + 0.5 * x[0] - 0.4 * x[1] + 0.4 * (x[2] > 1) + 0.3 * x[3] * x[4] + 0.2 * (channel == 1)
    effect = np.where(x[5] > 0.5, 0.9, np.where(x[6] < -1, -0.7, 0.15 * x[7])).astype(np.float32)
    t = (rng.random(rows) < 0.5).astype(np.int8)
    p0 = 1 / (1 + np.exp(-base))
    p1 = 1 / (1 + np.exp(-(base + effect)))
    y = (rng.random(rows, dtype=np.float32) < np.where(t == 1, p1, p0)).astype(np.int8)
    return X, y, t, (p1 - p0).astype(np.float32)


def _load() -> str:
    return ", ".join(f"{v:.2f}" for v in psutil.getloadavg())


def run_case(case: str, rows: int, features: int, seed: int) -> dict:
    """One case in this process: simulate, fit, score every row; the figures as a dict."""
    import lightgbm as lgb

    from pipelines.models.uplift import LEARNERS, _valid_mask, uplift_config
    from pipelines.models.uplift_metrics import qini_coefficient

    config = uplift_config()
    X, y, t, truth = simulate(rows, features, seed)
    rss = psutil.Process().memory_info().rss / GB
    print(
        f"[{case}] data {rows:,} x {X.shape[1]} ({y.mean():.2%} responders), RSS {rss:.2f} GB; load {_load()}"
    )
    result: dict = {"case": case, "rows": rows, "features": X.shape[1], "load_before": _load()}
    if case == "reference":
        stop = _valid_mask(y.astype(float), t.astype(float), 0.2, config.seed)
        fit_rows, stop_rows = np.flatnonzero(~stop), np.flatnonzero(stop)
        trees, fit_s, score_s, peak = [], 0.0, 0.0, 0.0
        for i in (1, 2):
            with measure(f"[reference] plain LightGBM fit {i}") as fit:
                dtrain = lgb.Dataset(X.iloc[fit_rows], label=y[fit_rows])
                dvalid = lgb.Dataset(X.iloc[stop_rows], label=y[stop_rows], reference=dtrain)
                booster = lgb.train(
                    config.lgb_params(),
                    dtrain,
                    num_boost_round=config.n_estimators,
                    valid_sets=[dvalid],
                    callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False)],
                )
                del dtrain, dvalid
            with measure(f"[reference] scoring {rows:,} rows with fit {i}") as score:
                p = booster.predict(X, num_iteration=booster.best_iteration)
            trees.append(booster.best_iteration)
            fit_s, score_s = fit_s + fit["seconds"], score_s + score["seconds"]
            peak = max(peak, fit["peak_rss_gb"], score["peak_rss_gb"])
            del booster
        scores = p
    else:
        learner = LEARNERS[case](config)
        with measure(f"[{case}] fit") as fit:
            learner.fit(X, y, t)
        with measure(f"[{case}] scoring {rows:,} rows") as score:
            scores = learner.predict_uplift(X)
        boosters = [getattr(learner, a, None) for a in ("booster", "tau1", "tau0", "tau", "base")]
        boosters += list(getattr(learner, "boosters", {}).values())
        boosters += list(getattr(learner, "groups", {}).values())
        trees = [b.num_trees() for b in boosters if b is not None]
        fit_s, score_s = fit["seconds"], score["seconds"]
        peak = max(fit["peak_rss_gb"], score["peak_rss_gb"])
    # _measure reports GiB; the goal is in GB.
    result.update(
        fit_seconds=fit_s,
        score_seconds=score_s,
        seconds=fit_s + score_s,
        trees=trees,
        peak_gb=peak * 2**30 / GB,
        process_peak_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB,
        qini_in_sample=qini_coefficient(y, t, scores) if case != "reference" else None,
        oracle_qini=qini_coefficient(y, t, truth),
        load_after=_load(),
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--case", choices=CASES, default=None, help="run one case in this process")
    parser.add_argument("--json", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--omp-passive", action="store_true", help="OMP_WAIT_POLICY=passive in each case")
    args = parser.parse_args()
    if args.features < 10:
        raise SystemExit("--features must be at least 10 (the simulation uses x0..x7 and 2 categoricals)")

    if args.case is not None:
        result = run_case(args.case, args.rows, args.features, args.seed)
        if args.json is not None:
            args.json.write_text(json.dumps(result))
        return

    env = dict(os.environ)
    if args.omp_passive:
        env["OMP_WAIT_POLICY"] = "passive"
    results = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            out = Path(tmp) / f"{case}.json"
            argv = [sys.executable, __file__, "--case", case, "--rows", str(args.rows)]
            argv += ["--features", str(args.features), "--seed", str(args.seed), "--json", str(out)]
            subprocess.run(argv, check=True, env=env)
            results.append(json.loads(out.read_text()))
    reference = results[0]
    print()
    print(
        f"{args.rows:,} rows x {args.features} features, 50/50 experiment; uplift_config() defaults; "
        f"oracle Qini on these rows {reference['oracle_qini']:.3f}; total {time.perf_counter() - started:.0f} s"
    )
    print(
        f"{'case':<22}{'fit s':>8}{'score s':>9}{'total s':>9}{'vs ref':>8}{'peak GB':>9}{'process GB':>12}"
        f"{'qini*':>8}  trees"
    )
    for r in results:
        qini = "" if r["qini_in_sample"] is None else f"{r['qini_in_sample']:.3f}"
        print(
            f"{r['case']:<22}{r['fit_seconds']:>8.1f}{r['score_seconds']:>9.1f}{r['seconds']:>9.1f}"
            f"{r['seconds'] / reference['seconds']:>7.2f}x{r['peak_gb']:>9.2f}{r['process_peak_gb']:>12.2f}"
            f"{qini:>8}  {r['trees']}"
        )
    print("* normalised Qini of the scores on the rows the learner was fitted on (in-sample; a sanity check)")
    print(
        "trees: of each fit (reference), of the boosters a learner keeps (X-learner: tau_1, tau_0; R-learner: tau; "
        "shared T-learner: the pooled booster, then treated and control)"
    )
    print(f"load average: {reference['load_before']} at the start, {results[-1]['load_after']} at the end")
    for r in results[1:]:
        problems = []
        if r["seconds"] > reference["seconds"]:
            problems.append(
                f"slower than the reference ({r['seconds']:.0f} s vs {reference['seconds']:.0f} s)"
            )
        if r["process_peak_gb"] > 1.2:
            problems.append(f"process peak {r['process_peak_gb']:.2f} GB > 1.2 GB")
        print(f"  {r['case']}: {'meets the goal' if not problems else '; '.join(problems)}")


if __name__ == "__main__":
    main()
