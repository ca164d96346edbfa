"""Generator benchmark: customers/s, transactions/s and peak memory of `pmp synth`.

    python bench/bench_synth.py --customers 1000000 --months 12 --out /tmp/bench-lake

The issue's floor: 1M customers x 12 months (~120M transactions) in <= 3 minutes with peak memory <= 4 GB on
2 cores.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import measure  # noqa: E402

from pipelines.synthetic.bank import SynthConfig, generate_bank  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench/out/synth"))
    parser.add_argument(
        "--keep", action="store_true", help="keep the generated lake (e.g. for bench_validate)"
    )
    args = parser.parse_args()

    config = SynthConfig(customers=args.customers, months=args.months, seed=args.seed, workers=args.workers)
    with measure(f"synth {args.customers:,} customers x {args.months} months") as m:
        manifest = generate_bank(config, args.out, progress=print)
    rows = manifest["rows"]
    size = sum(f.stat().st_size for f in (args.out / "lake").rglob("*.parquet")) / 2**30
    print(f"customers/s:      {rows['customers'] / m['seconds']:,.0f}")
    print(
        f"transactions/s:   {rows['transactions'] / m['seconds']:,.0f}  ({rows['transactions']:,} transactions)"
    )
    print(f"app events/s:     {rows['app_events'] / m['seconds']:,.0f}  ({rows['app_events']:,} events)")
    print(f"peak memory:      {m['peak_rss_gb']:.2f} GiB")
    print(f"lake size:        {size:.2f} GiB")
    if not args.keep:
        shutil.rmtree(args.out, ignore_errors=True)


if __name__ == "__main__":
    main()
