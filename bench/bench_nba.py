"""Next-best-action against the truth: one wave of cross-sell campaigns run first come first served (each on its
fixed channel, the one due first taking its best customers first) against the same wave arbitrated by expected
value, at the same number of contacts and the same call-centre capacity, counted in the bank's true incremental
uptakes (``synthetic.products.read_offer_truth``: the expected uptakes with the offer minus without it).

    python bench/bench_nba.py                       # a 20k-customer, 12-month bank under bench/out/nba
    python bench/bench_nba.py --customers 50000 --data bench/out/nba50k

Both sides use the same estimates: the product-uptake model (``models.uptake``, trained here on the lake) for who
wants which product, and each channel's average effect measured on the bank's randomised campaign history
(``jobs.nba.channel_effects``). The rows:

* ``first come``: campaigns in order, each selecting its quota by its own expected value on its own channel;
* ``arbitrated, fixed channels``: one offer per customer by expected value, the same quotas and channels;
* ``arbitrated, best channel``: the same, each campaign free to use any channel (``channel: best``), the same
  number of contacts in all;
* ``... with the true channel effects``: the same, with the channel effects the generator uses instead of the
  history's estimate: what better channel estimates would be worth (an upper bound, not a result).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pandas as pd  # noqa: E402

from pipelines.data.products import BY_ID  # noqa: E402
from pipelines.jobs.nba import CONTACT_COSTS, channel_effects, cross_sell_candidates  # noqa: E402
from pipelines.models.nba import arbitrate, first_come  # noqa: E402
from pipelines.models.uptake import candidate_rows, train_uptake, uptake_scores  # noqa: E402
from pipelines.synthetic import campaigns as world  # noqa: E402
from pipelines.synthetic.bank import SynthConfig, generate_bank  # noqa: E402
from pipelines.synthetic.products import read_offer_truth  # noqa: E402

# The wave: product -> the channel its campaign would use alone, in the order they fall due.
WAVE = {
    "travel_card": "email",
    "personal_loan": "call",
    "savings_account": "sms",
    "cashback_card": "push",
    "home_insurance": "sms",
}


def true_outcome(data: Path, chosen: pd.DataFrame, as_of: str) -> tuple[float, float]:
    """(true incremental uptakes, true incremental value net of contact costs) of the chosen contacts."""
    uptakes = value = 0.0
    for (product, channel), part in chosen.groupby(["campaign", "channel"]):
        truth = read_offer_truth(data, part["customer_id"].to_numpy(), product, channel, as_of)
        lift = (truth["p_treated"] - truth["p_control"]).to_numpy()
        uptakes += lift.sum()
        value += (lift * BY_ID[product].value).sum() - CONTACT_COSTS[channel] * len(part)
    return uptakes, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, default=Path("bench/out/nba"), help="bank folder (made if absent)"
    )
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--quota", type=float, default=0.06, help="contacts per campaign, share of the base")
    parser.add_argument("--calls", type=float, default=0.03, help="call-centre capacity, share of the base")
    parser.add_argument(
        "--snapshots", type=int, default=6, help="monthly snapshots the uptake model trains on"
    )
    args = parser.parse_args(argv)
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (uptime)")
    data = args.data
    config = SynthConfig(customers=args.customers, months=12, seed=11)
    if not (data / "lake").is_dir():
        generate_bank(config, data, progress=None)
    as_of = f"{config.end:%Y-%m-%d}"
    started = time.perf_counter()
    uri = f"sqlite:///{(data / 'mlflow.db').resolve()}"
    model = train_uptake(data / "lake", as_of, tracking_uri=uri, snapshots=args.snapshots).model
    scores = uptake_scores(model, candidate_rows(data / "lake", as_of))
    effects = channel_effects(data / "lake")
    print(
        f"uptake model and scores: {time.perf_counter() - started:.1f} s; {len(scores):,} customer x product rows"
    )
    print("channel effects from the history (treatment - holdout conversion):")
    print(effects.round(4).to_string())
    base = scores["customer_id"].nunique()
    quotas = {p: round(args.quota * base) for p in WAVE}
    capacity = {"call": round(args.calls * base)}
    estimated = effects["effect"].to_dict()
    fixed = cross_sell_candidates(scores, WAVE, estimated)
    free = cross_sell_candidates(scores, WAVE, estimated, channels=tuple(CONTACT_COSTS))
    sms = world.CHANNEL_EFFECT["sms"]
    oracle_effects = {c: estimated["sms"] * world.CHANNEL_EFFECT[c] / sms for c in CONTACT_COSTS}
    free_oracle = cross_sell_candidates(scores, WAVE, oracle_effects, channels=tuple(CONTACT_COSTS))

    baseline = first_come(
        fixed, list(WAVE), channels=WAVE, rank_by="own_score", quotas=quotas, capacity=capacity
    )
    contacts = len(baseline)
    rows = {
        "first come": baseline,
        "arbitrated, fixed channels": arbitrate(fixed, quotas=quotas, capacity=capacity),
        "arbitrated, best channel": arbitrate(free, capacity=capacity, budget=contacts),
        "... with the true channel effects": arbitrate(free_oracle, capacity=capacity, budget=contacts),
    }
    first_uptakes, first_value = true_outcome(data, baseline, as_of)
    print(
        f"\nwave of {len(WAVE)} campaigns, quota {quotas['travel_card']:,} each, {capacity['call']:,} calls"
    )
    print(f"{'':36} {'contacts':>9} {'true uptakes':>13} {'vs first':>9} {'true value':>11} {'vs first':>9}")
    for name, chosen in rows.items():
        uptakes, value = true_outcome(data, chosen, as_of)
        print(
            f"{name:36} {len(chosen):9,} {uptakes:13.1f} {uptakes / first_uptakes - 1:+9.1%} "
            f"{value:11,.0f} {value / first_value - 1:+9.1%}"
        )
        mix = chosen.groupby("channel").size().to_dict()
        print(f"{'':36} channels: {mix}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
