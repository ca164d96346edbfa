"""Campaign database benchmark: ``write_run`` of a 1M-row target list into SQLite and PostgreSQL.

    python bench/bench_db.py                                  # 1M rows, SQLite in a temp folder + local PostgreSQL
    python bench/bench_db.py --rows 200000 --skip-postgres
    python bench/bench_db.py --postgres-url postgresql://postgres@127.0.0.1:5432/test

For each backend: the first write (empty tables), the rewrite of the same run (its 1M old rows deleted and
replaced in the same transaction), reading the treatment list back, and ``group_counts``. PostgreSQL runs in a
throw-away schema that is dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import measure  # noqa: E402

from pipelines.campaigns import store, store_frames, store_schema  # noqa: E402

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def make_frames(rows: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A scored list of ``rows`` customers (10 % holdout) and an exclusion audit of a tenth as many."""
    rng = np.random.default_rng(seed)
    rank = np.arange(1, rows + 1)
    reasons = np.array(["balance_drop_30d", "inactivity_60d", "complaints_90d", "card_spend_drop_90d"])
    targets = pd.DataFrame(
        {
            "customer_id": rng.permutation(rows).astype("int64") + 1,
            "score": np.sort(rng.random(rows))[::-1],
            "decile": (rank - 1) * 10 // rows + 1,
            "rank": rank,
            "target_group": np.where(rng.random(rows) < 0.1, "holdout", "treatment"),
            "channel": rng.choice(np.array(["sms", "email", "push", "call"]), rows),
            "reason_1": rng.choice(reasons, rows),
            "reason_2": rng.choice(reasons, rows),
            "reason_3": pd.Series(rng.choice(reasons, rows)).where(rng.random(rows) < 0.5, None),
        }
    )
    n_excluded = rows // 10
    exclusions = pd.DataFrame(
        {
            "customer_id": np.arange(rows + 1, rows + 1 + n_excluded, dtype="int64"),
            "exclusion_reason": rng.choice(
                np.array(["recent_contact", "frequency_cap", "opt_out"]), n_excluded
            ),
            "detail": None,
        }
    )
    return targets, exclusions


def bench(label: str, url: str, targets: pd.DataFrame, exclusions: pd.DataFrame, chunk_rows: int) -> None:
    engine = store_schema.make_engine(url)
    checkpoint = store._checkpoint
    try:
        store_schema.ensure_schema(engine)
        run = store_frames.RunRecord("campaign__bench__2026-01-01", "bench", date(2026, 1, 1), "churn", "1")
        rows = len(targets) + len(exclusions)
        steps: list[tuple[str, float]] = []
        store._checkpoint = lambda step: (
            None if ":chunk:" in step else steps.append((step, time.perf_counter()))
        )
        for phase in ("first write", "rewrite"):
            steps[:] = [("start", time.perf_counter())]
            with measure(f"{label} {phase}") as m:
                store.write_run(engine, run, targets, exclusions, chunk_rows=chunk_rows)
            steps.append(("commit", time.perf_counter()))
            print(
                f"  {label} {phase}: {len(targets):,} targets + {len(exclusions):,} exclusions in "
                f"{m['seconds']:.2f} s = {rows / m['seconds']:,.0f} rows/s"
            )
            # Time from the previous step to each step: validation and COPY end at "staged" (PostgreSQL),
            # validation ends at "deleted" on SQLite, the row inserts end at "written".
            print(
                "    "
                + ", ".join(f"{b[0]} +{b[1] - a[1]:.2f} s" for a, b in zip(steps, steps[1:], strict=False))
            )
        started = time.perf_counter()
        got = store.read_targets(engine, "bench")
        seconds = time.perf_counter() - started
        print(
            f"  {label} read_targets: {len(got):,} rows in {seconds:.2f} s = {len(got) / seconds:,.0f} rows/s"
        )
        started = time.perf_counter()
        counts = store.group_counts(engine, run.run_id)
        print(f"  {label} group_counts: {counts} in {time.perf_counter() - started:.3f} s")
        expected = targets["target_group"].value_counts().to_dict()
        assert counts == {g: expected.get(g, 0) for g in store_schema.TARGET_GROUPS}, (counts, expected)
    finally:
        store._checkpoint = checkpoint
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="target rows (default 1,000,000)")
    parser.add_argument("--chunk-rows", type=int, default=100_000, help="rows per chunk (default 100,000)")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("PM_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help=f"PostgreSQL server (default $PM_TEST_POSTGRES_URL or {DEFAULT_POSTGRES_URL})",
    )
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args()

    started = time.perf_counter()
    targets, exclusions = make_frames(args.rows)
    print(
        f"frames: {len(targets):,} targets, {len(exclusions):,} exclusions in {time.perf_counter() - started:.1f} s"
    )

    if not args.skip_sqlite:
        with tempfile.TemporaryDirectory(prefix="bench_db_") as folder:
            path = Path(folder) / "campaigns.db"
            bench("sqlite", f"sqlite:///{path}", targets, exclusions, args.chunk_rows)
            print(f"  sqlite file: {path.stat().st_size / 2**20:.0f} MiB")

    if not args.skip_postgres:
        import psycopg
        from sqlalchemy import make_url

        base = make_url(args.postgres_url).set(drivername="postgresql")
        schema = f"pmp_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(base.render_as_string(hide_password=False), autocommit=True) as admin:
            admin.execute(f'CREATE SCHEMA "{schema}"')
            try:
                url = base.update_query_dict({"options": f"-csearch_path={schema}"})
                bench(
                    "postgresql",
                    url.render_as_string(hide_password=False),
                    targets,
                    exclusions,
                    args.chunk_rows,
                )
                size = admin.execute(
                    "SELECT pg_total_relation_size(%s) + pg_total_relation_size(%s)",
                    (f"{schema}.campaign_targets", f"{schema}.campaign_exclusions"),
                ).fetchone()[0]
                print(f"  postgresql tables + indexes: {size / 2**20:.0f} MiB")
            finally:
                admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


if __name__ == "__main__":
    main()
