"""Latency and throughput of the real-time decision service under a bounded load, over the data folder of ``make run``.

    python bench/bench_decide.py                      # ./data (after make run): 200 requests/s for 30 s
    python bench/bench_decide.py --data DIR --rate 400 --seconds 20

Starts ``pmp decide serve`` (uvicorn, one process, as deployed) on a free port of 127.0.0.1 and sends ``POST
/decide`` at a fixed rate from this process (open loop: request i is due at ``start + i / rate`` whatever the
answers before it did, and its latency counts from when it was due, so a stall is not hidden by the sender waiting
for it). Customers are drawn from the online snapshot (seeded), events are a mix of logins, transactions and
location pings dated after the snapshot. Prints p50/p90/p99/max latency, the achieved rate and the error count,
with the machine's load (``uptime``). The goal (issue 20) is p99 <= 20 ms at 200 requests/s on 2 cores.

The reference in the same run: the same decisions made in-process by the same :class:`Decider` (no HTTP, no
server), and the batch path's scoring rate (``score_customers`` over the snapshot's customers).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.cli.supervise import Component, Supervisor, free_port, http_ok  # noqa: E402
from pipelines.config import load_settings  # noqa: E402

GOAL_P99_MS = 20.0
EVENTS = ("login", "transaction", "location")
EVENT_SHARES = (0.6, 0.3, 0.1)
CATEGORIES = ("grocery", "dining", "retail", "fuel", "online_shopping")


def _events(customer_ids: np.ndarray, as_of, n: int, seed: int) -> list[dict]:
    """``n`` request bodies: random customers, a mix of event types, times within the day after the snapshot."""
    from pipelines.data import places

    rng = np.random.default_rng(seed)
    who = rng.choice(customer_ids, n)
    kinds = rng.choice(len(EVENTS), n, p=EVENT_SHARES)
    minutes = rng.integers(0, 24 * 60, n)
    city = rng.integers(0, len(places.CITIES), n)
    bodies = []
    for cid, kind, minute, c in zip(who, kinds, minutes, city, strict=True):
        ts = f"{as_of + timedelta(minutes=int(minute)):%Y-%m-%dT%H:%M:%S}"
        event: dict = {"type": EVENTS[kind], "ts": ts}
        if EVENTS[kind] == "transaction":
            event |= {
                "amount": round(float(rng.lognormal(3.5, 0.8)), 2),
                "merchant_category": CATEGORIES[c % 5],
            }
        if EVENTS[kind] != "transaction" or c % 2:
            event |= {"lat": places.CITIES[c].lat, "lon": places.CITIES[c].lon}
        bodies.append({"customer_id": int(cid), "event": event})
    return bodies


async def _load(url: str, bodies: list[dict], rate: float) -> tuple[list[float], int, float, dict]:
    import httpx

    latencies: list[float] = []
    errors = 0
    groups: dict[str, int] = {}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10.0) as client:

        async def one(body: dict, due: float) -> None:
            nonlocal errors
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                response = await client.post("/decide", json=body)
                if response.status_code != 200:
                    errors += 1
                else:
                    group = response.json()["group"] or "no campaign"
                    groups[group] = groups.get(group, 0) + 1
            except httpx.HTTPError:
                errors += 1
            latencies.append((time.perf_counter() - due) * 1000.0)

        start = time.perf_counter() + 0.2
        tasks = [asyncio.create_task(one(b, start + i / rate)) for i, b in enumerate(bodies)]
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return latencies, errors, elapsed, groups


def _describe(label: str, ms: list[float]) -> str:
    q = np.percentile(ms, [50, 90, 99])
    return f"{label}: p50 {q[0]:.2f} ms, p90 {q[1]:.2f} ms, p99 {q[2]:.2f} ms, max {max(ms):.2f} ms ({len(ms):,} decisions)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data", help="data folder of make run (default ./data)")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second (default 200)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the timed load (default 30)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    settings = load_settings().with_data_dir(Path(args.data).resolve())
    from pipelines.campaigns.score import score_customers
    from pipelines.data import storage
    from pipelines.decide.service import load_decider
    from pipelines.features.online_store import open_snapshot

    snapshot = open_snapshot(settings.online_store)
    lake_ids = storage.read_table(settings.lake_dir, "customers", columns=["customer_id"])["customer_id"]
    ids = np.array([c for c in lake_ids.tolist() if snapshot.row(c) is not None])
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    print(f"snapshot as of {snapshot.as_of}: {len(snapshot):,} customers (run {snapshot.run_id})")

    # The reference: the same decider in this process, no HTTP.
    from pipelines.features.online import Event

    decider = load_decider(settings, progress=None)
    bodies = _events(ids, snapshot.as_of, 2_000, args.seed + 1)
    events = [(b["customer_id"], Event.model_validate(b["event"])) for b in bodies]
    in_process = []
    for cid, event in events:
        started = time.perf_counter()
        decider.decide(cid, event)
        in_process.append((time.perf_counter() - started) * 1000.0)
    wide = storage.read_frame(settings.runs_dir / snapshot.run_id / "features.parquet")
    model = next(iter(decider.models.values()))
    started = time.perf_counter()
    score_customers(model, wide)
    batch_rate = len(wide) / (time.perf_counter() - started)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PM_DATA_DIR": str(settings.data_dir), "OMP_WAIT_POLICY": "PASSIVE"}
    argv = (str(Path(sys.executable).with_name("pmp")), "decide", "serve", "--port", str(port))
    with tempfile.TemporaryDirectory() as logs, Supervisor(Path(logs), env, say=None) as supervisor:
        supervisor.start(Component("decide", argv, ready=http_ok(f"{url}/health"), timeout=120))
        warmup = _events(ids, snapshot.as_of, int(args.rate * 3), args.seed + 2)
        asyncio.run(_load(url, warmup, args.rate))
        timed = _events(ids, snapshot.as_of, int(args.rate * args.seconds), args.seed)
        latencies, errors, elapsed, groups = asyncio.run(_load(url, timed, args.rate))
    print(
        f"load: {len(timed):,} requests at {args.rate:g}/s planned, {len(timed) / elapsed:.1f}/s achieved, "
        f"{errors} errors"
    )
    print("groups of the answers: " + ", ".join(f"{g} {n:,}" for g, n in sorted(groups.items())))
    print(_describe("over HTTP (from when each request was due)", latencies))
    print(_describe("reference, in-process Decider.decide", in_process))
    print(f"reference, batch score_customers: {batch_rate:,.0f} customers/s ({len(wide):,} customers)")
    p99 = float(np.percentile(latencies, 99))
    verdict = "met" if p99 <= GOAL_P99_MS and errors == 0 else "NOT met"
    print(
        f"goal p99 <= {GOAL_P99_MS:g} ms at {args.rate:g}/s: {verdict} (p99 {p99:.2f} ms, median "
        f"{statistics.median(latencies):.2f} ms)"
    )
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
