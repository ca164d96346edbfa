"""Scoring benchmark: one campaign run at scale (features + gate, score, policy + selection + holdout + reason
codes, atomic write) on SQLite and on PostgreSQL, with the peak memory of the process, and the platform's
predict step next to raw LightGBM ``predict`` on the same matrix.

    python bench/bench_score.py bench/out/synth1m                          # 1M customers, SQLite + PostgreSQL
    python bench/bench_score.py bench/out/synth --postgres ''              # SQLite only

Arguments: the data folder of a generated bank (``pmp synth``); ``--tracking-uri`` an MLflow store with a
``churn@champion`` (default: a store under bench/out/score_mlflow, trained first on a 20k-customer bank when it
has no champion); ``--top-deciles`` the audience (default 5: half the base is written); ``--postgres`` the URL
of the PostgreSQL server ('' skips it).

The issue's floor: 1M customers scored, selected, held out and written in <= 2 minutes with peak memory <= 6 GB
on 2 cores, and the predict step within 25 % of raw LightGBM predict on the same matrix.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from _measure import measure

from pipelines.config import Settings
from pipelines.data import storage
from pipelines.jobs import campaigns as campaign_jobs
from pipelines.jobs.common import resolve_as_of

OUT = Path(__file__).resolve().parent / "out"
SPEC = """name: bench-score
description: benchmark audience
model: churn
channel: sms
selection: {{top_deciles: {deciles}}}
holdout_fraction: 0.1
contact_policy:
  recent_contact_days: 30
  frequency_cap: {{max_contacts: 4, window_days: 90}}
  invalid_customer: {{max_assets: 100.0, inactive_months: 12}}
"""


def _champion(tracking_uri: str) -> None:
    """Train a churn champion on a small bank when the store has none (the model's size, not the bank's, sets
    the scoring cost)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from pipelines.jobs.training import train_churn
    from pipelines.synthetic.bank import SynthConfig, generate_bank

    try:
        MlflowClient(tracking_uri, registry_uri=tracking_uri).get_model_version_by_alias("churn", "champion")
        return
    except MlflowException:
        pass
    bank = OUT / "score_train_bank"
    if not (bank / "lake").is_dir():
        generate_bank(SynthConfig(customers=20_000, months=12, seed=3), bank, progress=None)
    train_churn(bank, tracking_uri=tracking_uri, progress=None)


def _run(settings: Settings, label: str) -> dict:
    name = "bench-score"
    as_of = resolve_as_of(settings)
    times = {}
    with measure(f"{label}: whole run") as whole:
        for step in (
            campaign_jobs.campaign_features,
            campaign_jobs.campaign_segments,
            campaign_jobs.campaign_score,
            campaign_jobs.campaign_select,
            campaign_jobs.campaign_write,
        ):
            t0 = time.perf_counter()
            out = step(settings, name, as_of)
            times[step.__name__] = time.perf_counter() - t0
    n = out["scored"]
    print(
        f"{label}: {n:,} customers scored, {out['selected']:,} selected, {out['treatment']:,} treatment / "
        f"{out['holdout']:,} holdout written in {whole['seconds']:.1f} s = {n / whole['seconds']:,.0f} customers/s; "
        f"peak {whole['peak_rss_gb']:.2f} GiB"
    )
    print("  " + ", ".join(f"{k.removeprefix('campaign_')} {v:.1f} s" for k, v in times.items()))
    return {"seconds": whole["seconds"], "peak": whole["peak_rss_gb"], **times}


def _predict_vs_raw(settings: Settings) -> None:
    from pipelines.campaigns.score import load_scoring_model, score_customers

    folder = settings.runs_dir / campaign_jobs.campaign_run_id("bench-score", resolve_as_of(settings))
    wide = storage.read_frame(folder / "features.parquet")
    model = load_scoring_model("churn", settings.mlflow_tracking_uri)
    booster, best = model.model.booster, model.model.best_iteration
    matrix = model.model.encode(wide)
    raw, ours = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        booster.predict(matrix, num_iteration=best)
        raw.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        score_customers(model, wide)
        ours.append(time.perf_counter() - t0)
    r, o = min(raw), min(ours)
    print(
        f"predict on {len(wide):,} x {matrix.shape[1]} ({best} trees): raw LightGBM {r:.2f} s, platform step "
        f"(encode + predict + calibrate + deciles, chunked) {o:.2f} s = {o / r - 1:+.0%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", type=Path)
    parser.add_argument("--tracking-uri", default=f"sqlite:///{OUT / 'score_mlflow' / 'mlflow.db'}")
    parser.add_argument("--top-deciles", type=int, default=5)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()

    (OUT / "score_mlflow").mkdir(parents=True, exist_ok=True)
    _champion(args.tracking_uri)
    campaigns = OUT / "score_campaigns"
    campaigns.mkdir(parents=True, exist_ok=True)
    (campaigns / "bench-score.yaml").write_text(SPEC.format(deciles=args.top_deciles))
    base = Settings(
        data_dir=args.data,
        campaigns_dir=campaigns,
        mlflow_tracking_uri=args.tracking_uri,
        database_url=f"sqlite:///{OUT / 'score_campaigns.db'}",
    )
    np.seterr(all="ignore")
    _run(base, "SQLite")
    _run(base, "SQLite, rerun of the same run (replaces its rows)")
    if args.postgres:
        import psycopg

        schema = f"pmp_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.postgres, autocommit=True) as admin:
            admin.execute(f'CREATE SCHEMA "{schema}"')
            try:
                url = f"{args.postgres}?options=-csearch_path%3D{schema}"
                _run(replace(base, database_url=url), "PostgreSQL")
            finally:
                admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
    _predict_vs_raw(base)


if __name__ == "__main__":
    main()
