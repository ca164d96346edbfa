"""Value model vs the BG/NBD + Gamma-Gamma baseline, over several seeds: the figures of docs/value.md.

    python bench/bench_value.py                       # CDNOW (../shared/data) seeds 0-7, banks 7-9 (8k customers)
    python bench/bench_value.py --cdnow-seeds 0 1 --bank-seeds 7 --customers 20000

CDNOW: ``value.evaluate_cdnow`` per seed (the seed picks the test half). Bank: a 12-month synthetic bank per seed,
the wide table at 2025-07-01 with 6-month future spend, customer split (30 % test) as ``train_value`` does, without
MLflow. Prints normalised Gini, top-20 % share and total error of both models and the time taken.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _row(label: str, value: dict, base: dict) -> str:
    return (
        f"{label:<14} value: Gini {value['normalised_gini']:.4f}  top20 {value['top20_share']:.2%}  "
        f"total {value['total_error']:+.1%}   BG/NBD: Gini {base['normalised_gini']:.4f}  "
        f"top20 {base['top20_share']:.2%}  total {base['total_error']:+.1%}"
    )


def cdnow(seeds: list[int], data: Path) -> None:
    from pipelines.models.value_baseline import evaluate_cdnow

    for seed in seeds:
        started = time.perf_counter()
        r = evaluate_cdnow(data, seed=seed)
        print(_row(f"cdnow seed {seed}", r.value, r.baseline), f"  ({time.perf_counter() - started:.1f} s)")
    every = r.baseline_all
    print(
        f"cdnow, BG/NBD on every customer: Gini {every['normalised_gini']:.4f}  top20 {every['top20_share']:.2%}  "
        f"total {every['total_error']:+.1%}"
    )


def bank(seeds: list[int], customers: int) -> None:
    import pandas as pd

    from pipelines.data import storage
    from pipelines.features.catalogue import CATEGORICAL_FEATURES, FEATURE_NAMES
    from pipelines.models.value import ID, LABEL, ValueConfig, fit_value_model, unit_hash, value_metrics
    from pipelines.models.value_baseline import fit_btyd, predict_btyd
    from pipelines.models.value_training import build_value_set
    from pipelines.synthetic.bank import SynthConfig, generate_bank

    as_of = pd.Timestamp("2025-07-01")
    config = ValueConfig()
    for seed in seeds:
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            out = Path(tmp)
            generate_bank(SynthConfig(customers=customers, months=12, seed=seed), out, progress=None)
            lake = out / "lake"
            data = build_value_set(lake, [as_of], 6, progress=None)
            is_test = unit_hash(data[ID].to_numpy(), f"test{config.seed}") < 0.3
            fit, test = data.loc[~is_test], data.loc[is_test]
            model = fit_value_model(fit, FEATURE_NAMES, CATEGORICAL_FEATURES, LABEL, config)
            months = [m for m in storage.list_months(lake, "transactions") if m < "2025-07"]
            txn = storage.read_table(lake, "transactions", months=months, columns=[ID, "txn_ts", "amount"])
            baseline = predict_btyd(
                fit_btyd(txn, as_of, date_col="txn_ts"),
                (as_of + pd.DateOffset(months=6) - as_of).days,
                test[ID],
            )
            y = test[LABEL].to_numpy()
            print(
                _row(
                    f"bank seed {seed}",
                    value_metrics(y, model.predict(test)),
                    value_metrics(y, baseline.to_numpy()),
                ),
                f"  ({len(test):,} test customers, {time.perf_counter() - started:.1f} s)",
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cdnow-seeds", type=int, nargs="*", default=list(range(8)))
    parser.add_argument("--bank-seeds", type=int, nargs="*", default=[7, 8, 9])
    parser.add_argument("--customers", type=int, default=8_000)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    if args.cdnow_seeds:
        cdnow(args.cdnow_seeds, args.data)
    if args.bank_seeds:
        bank(args.bank_seeds, args.customers)


if __name__ == "__main__":
    main()
