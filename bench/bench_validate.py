"""Validation benchmark: wall time and peak memory of `validate_lake` on a lake.

    python bench/bench_validate.py bench/out/synth            # a data folder (with lake/) or a lake folder
    python bench/bench_validate.py /tmp/bench-lake --workers 2 --as-of 2026-01-01

The target: the 1M-customer lake (~120M transactions, 12 months) in <= 1 minute on 2 cores. The time includes
starting the worker processes and importing Great Expectations in them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import measure  # noqa: E402

from pipelines.config import PROJECT_ROOT  # noqa: E402
from pipelines.data import storage  # noqa: E402
from pipelines.data.gates import BATCH_ROWS, validate_lake  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("path", type=Path, help="data folder holding lake/, or the lake folder itself")
    parser.add_argument(
        "--as-of", default=None, help="run date (default: the day after the lake's last month)"
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: one per core, max 4)"
    )
    parser.add_argument(
        "--batch-rows", type=int, default=BATCH_ROWS, help=f"rows per batch (default {BATCH_ROWS:,})"
    )
    parser.add_argument("--expectations", type=Path, default=PROJECT_ROOT / "expectations")
    parser.add_argument("--report-dir", type=Path, default=None, help="also write validation.json/.md here")
    args = parser.parse_args()

    lake = args.path / "lake" if (args.path / "lake").is_dir() else args.path
    as_of = args.as_of or storage.lake_end(lake)
    rows = {
        t: sum(_rows(f) for f in storage.table_files(lake, t))
        for t in sorted(p.name for p in lake.iterdir() if p.is_dir())
    }
    print(f"lake {lake}: " + ", ".join(f"{t} {n:,}" for t, n in rows.items()))
    with measure(f"validate_lake as of {as_of}") as m:
        result = validate_lake(
            lake,
            as_of,
            args.expectations,
            report_dir=args.report_dir,
            progress=print,
            workers=args.workers,
            batch_rows=args.batch_rows,
        )
    checked = sum(t.rows for t in result.tables.values())
    print(result.summary())
    print(f"rows checked:  {checked:,}  ({checked / m['seconds']:,.0f} rows/s)")
    print(f"seconds:       {m['seconds']:.1f}")
    print(f"peak memory:   {m['peak_rss_gb']:.2f} GiB (process tree RSS)")


def _rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


if __name__ == "__main__":
    main()
