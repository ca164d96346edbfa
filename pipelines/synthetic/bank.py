"""Synthetic credit-card bank with known ground truth: what to generate, and the generation of a lake, chunk by chunk.

How behaviour is generated (all of it vectorised with NumPy, one chunk of customers at a time):

* :mod:`~pipelines.synthetic.customers`: each customer's static attributes, spending persona, baseline activity
  and churn-risk multiplier (observable drivers plus a small hidden frailty); the customers table with its PII.
* :mod:`~pipelines.synthetic.lifecycle`: a monthly Markov chain moves each customer through hidden lifecycle states
  ``new -> active -> loyal -> dormant -> churned``. Dormancy is the latent hazard: a dormant customer spends
  about a third as much, logs in a quarter as often and moves assets out (balance outflow) for weeks to months
  before the account is closed. Reactivation is possible. Closure happens on a uniform day of the month in which
  the chain enters ``churned``; the customer's activity stops that day.
* :mod:`~pipelines.synthetic.behaviour`: transactions, app events and month-end balances, month by month.
* A thin campaign history (here): a few past campaigns, each with a random holdout and a funnel with UTM
  parameters; how customers respond is :mod:`~pipelines.synthetic.campaigns`.
* :mod:`~pipelines.synthetic.dirty`: with ``dirty``, realistic faults injected for testing the gates.

Ground truth: because the chain's transition matrix per customer is known, the probability that the account is
closed within 90 and 150 days after each month end follows exactly from matrix powers. It is written to
``truth/`` with the hidden state; nothing in ``lake/`` reveals it.

Places: each customer's home city and region, and whether the app shares the location
(:func:`~pipelines.synthetic.customers.draw_home`), and the coarse location of each app event
(:func:`~pipelines.synthetic.behaviour.draw_event_places`); the ``branches`` table is written from
:data:`pipelines.data.places.BRANCHES`.

Products (:mod:`~pipelines.synthetic.products`): the products each customer holds at each month end
(``product_holdings``), taken up over time with known monthly probabilities and associations between products
(``truth/products``), and the ``products`` table from :data:`pipelines.data.products.PRODUCTS`.

Determinism: chunk ``k`` draws from ``SeedSequence([seed, k])``, so the output depends only on the seed, the
sizes and the chunk size — not on the number of worker processes. Within a chunk the draws happen in a fixed
order (customers, states, closures, then per month transactions, app events, balances; campaigns; PII), so moving
code between these modules must keep the order of the calls. The place columns draw from streams of their own
(``SeedSequence([seed, k, PLACE_STREAM, j])``: ``j = 0`` the customers' homes, ``j = m + 1`` month ``m``'s app
events), so every other column is the same as in a bank generated without them; the product tables likewise
(``SeedSequence([seed, k, PRODUCT_STREAM, j])``; ``generate_chunk(..., with_products=False)`` leaves them out).
Parquet is written with fixed options, so the same inputs give byte-identical files.
"""

from __future__ import annotations

import json
import os
import re
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from pipelines.data import places, storage
from pipelines.data.schema import CAMPAIGN_TRUTH, CITY_NAMES, REGIONS, TABLES
from pipelines.progress import Progress, say_to, track
from pipelines.synthetic import campaigns as sc
from pipelines.synthetic.behaviour import (
    app_events_table,
    draw_app_events,
    draw_event_places,
    draw_transactions,
    keep_active,
    month_end_balances,
    transactions_table,
)
from pipelines.synthetic.customers import customers_table, draw_customers, draw_home
from pipelines.synthetic.dirty import inject_dirty
from pipelines.synthetic.lifecycle import CHURNED, behaving_states, churn_truth_table
from pipelines.synthetic.products import ProductWorld, products_table
from pipelines.synthetic.shift import ChunkShift, closed_us, shift_record, validate_shift

# Past campaigns, in order: (kind, channel); see pipelines/synthetic/campaigns.py for how customers respond.
CAMPAIGN_PLAN = (
    ("upgrade", "email"),
    ("activation", "push"),
    ("installment", "sms"),
    ("winback", "call"),
    ("upgrade", "email"),
    ("winback", "sms"),
)
PLACE_STREAM = 7_301  # third entropy word of the place streams (the behaviour stream has two)


@dataclass(frozen=True)
class SynthConfig:
    """What to generate. Output depends on every field except ``workers``."""

    customers: int = 20_000
    months: int = 12
    seed: int = 42
    start: str = "2025-01"  # first month of data, YYYY-MM
    chunk_size: int = 100_000
    new_customer_share: float = 0.15  # customers who sign up during the data period
    # 0-based months with a past campaign; a history shorter than the first of them gets one in its last month.
    campaign_months: tuple[int, ...] = (1, 3, 5, 7, 9, 11)
    campaign_share: float = 0.4  # share of contactable customers selected per campaign
    campaign_holdout: float = 0.5  # test-and-learn campaigns: half the audience is held out
    dirty: bool = False
    workers: int = 0  # 0: one per core, at most 2 (each worker holds one chunk, ~0.5 GB at 100k customers)
    # A behaviour shift from this month (YYYY-MM) on: "dormancy" or "spend"; see pipelines/synthetic/shift.py.
    shift_month: str | None = None
    shift: str | None = None
    shift_factor: float | None = None  # None: the kind's default (dormancy 5, spend 1.3)

    def __post_init__(self) -> None:
        if self.customers < 1:
            raise ValueError(f"customers must be at least 1, got {self.customers}")
        if not 1 <= self.months <= 120:
            raise ValueError(f"months must be between 1 and 120, got {self.months}")
        if self.chunk_size < 1_000:
            raise ValueError(f"chunk_size must be at least 1000, got {self.chunk_size}")
        if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", self.start):
            raise ValueError(f"start must be a month YYYY-MM, got {self.start!r}")
        validate_shift(self)

    @property
    def n_chunks(self) -> int:
        return -(-self.customers // self.chunk_size)

    @property
    def month_starts(self) -> pd.DatetimeIndex:
        return pd.date_range(pd.Period(self.start, freq="M").start_time, periods=self.months + 1, freq="MS")

    @property
    def end(self) -> pd.Timestamp:
        """First instant after the data: the natural as-of date for a run on this lake."""
        return self.month_starts[-1]


@dataclass
class ChunkStats:
    chunk: int
    customers: int = 0
    transactions: int = 0
    app_events: int = 0
    balances: int = 0
    product_holdings: int = 0
    closures: int = 0
    shift_affected: int = 0
    seconds: float = 0.0


# --------------------------------------------------------------------------------------------------------------
# Public entry point


def generate_bank(config: SynthConfig, out: Path, progress: Progress = print) -> dict:
    """Generate the lake and truth under ``out`` (``out/lake``, ``out/truth``) and return a summary.

    An existing lake and truth in ``out`` are replaced whole when generation succeeds, and left as they were when
    it fails. Progress goes to ``progress`` (``None``: silent): a line per chunk, and a bar with an ETA on a
    terminal (periodic status lines elsewhere) counting the customers of the finished chunks.
    """
    out = Path(out)
    say = say_to(progress)
    workers = config.workers or min(2, os.cpu_count() or 1)
    started = time.perf_counter()
    say(
        f"synth: {config.customers:,} customers x {config.months} months from {config.start}, seed {config.seed}, "
        f"{config.n_chunks} chunk(s), {workers} worker(s){', DIRTY' if config.dirty else ''}"
    )
    totals = ChunkStats(chunk=-1)
    with (
        storage.replacing_dir(out / "lake") as lake,
        storage.replacing_dir(out / "truth") as truth,
        ProcessPoolExecutor(max_workers=workers) as pool,
        track(config.customers, "synth", unit="customers", progress=progress) as tracker,
    ):
        jobs = [(config, k, lake, truth) for k in range(config.n_chunks)]
        results = pool.map(_generate_chunk_job, jobs) if workers > 1 else map(_generate_chunk_job, jobs)
        for done, stats in enumerate(results, start=1):
            for name in (
                "customers",
                "transactions",
                "app_events",
                "balances",
                "product_holdings",
                "closures",
                "shift_affected",
            ):
                setattr(totals, name, getattr(totals, name) + getattr(stats, name))
            elapsed = time.perf_counter() - started
            tracker.say(
                f"  chunk {done}/{config.n_chunks}: {totals.customers:,} customers, "
                f"{totals.transactions:,} transactions, {totals.app_events:,} app events "
                f"({elapsed:.1f} s, {totals.customers / elapsed:,.0f} customers/s)",
            )
            tracker.advance(stats.customers)
        storage.write_part(branches_table(), lake, "branches", 0)
        storage.write_part(products_table(), lake, "products", 0)
        faults = inject_dirty(config, lake) if config.dirty else {}
        manifest = {
            "config": asdict(config) | {"workers": workers},
            "as_of": config.end.strftime("%Y-%m-%d"),
            "rows": {
                "customers": totals.customers,
                "transactions": totals.transactions,
                "app_events": totals.app_events,
                "balances": totals.balances,
                "branches": len(places.BRANCHES),
                "products": len(products_table()),
                "product_holdings": totals.product_holdings,
            },
            "closures": totals.closures,
            "dirty_faults": faults,
        }
        if config.shift:
            manifest["shift"] = shift_record(config, totals.shift_affected)
            storage.write_json_atomic(truth / "shift.json", manifest["shift"])
        storage.write_json_atomic(truth / "manifest.json", manifest)
    seconds = time.perf_counter() - started
    say(
        f"synth: wrote {out / 'lake'} and {out / 'truth'} in {seconds:.1f} s "
        f"({totals.transactions / max(seconds, 1e-9):,.0f} transactions/s)"
    )
    return manifest | {"seconds": seconds}


def _generate_chunk_job(job: tuple[SynthConfig, int, Path, Path]) -> ChunkStats:
    config, chunk, lake, truth = job
    return generate_chunk(config, chunk, lake, truth)


# --------------------------------------------------------------------------------------------------------------
# One chunk of customers


def generate_chunk(
    config: SynthConfig, chunk: int, lake: Path, truth: Path, with_products: bool = True
) -> ChunkStats:
    """Generate and write every table's part ``chunk`` (customers ``chunk * chunk_size`` onwards).

    ``with_products=False`` leaves out ``product_holdings`` and ``truth/products`` (every other file is the same).
    """
    t0 = time.perf_counter()
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, chunk]))
    first = chunk * config.chunk_size
    n = min(config.chunk_size, config.customers - first)
    month_starts = config.month_starts
    stats = ChunkStats(chunk=chunk, customers=n)

    cust = draw_customers(rng, n, first, config)
    cust |= draw_home(_place_rng(config, chunk, 0), cust["city_tier"])
    shift = ChunkShift(config, cust)  # without a shift: the unshifted calls, in order
    states, signup_month, closed_date = shift.lifecycle(rng, cust)
    stats.closures = int((~np.isnat(closed_date)).sum())
    stats.shift_affected = shift.customers_affected(states)

    world = ProductWorld(config, chunk, cust, signup_month) if with_products else None
    signup_us = cust["signup_date"].astype("datetime64[us]").astype(np.int64)
    closed = closed_us(closed_date)
    aum = cust.pop("_aum_start")
    entry_at = shift.entry_probabilities(cust.pop("_transition"))

    for m in range(config.months):
        start = month_starts[m]
        days = start.days_in_month
        month = storage.month_key(start)
        # Behaviour in month m follows the state during it; in the closure month, the state before closure.
        behaving = behaving_states(states, m)
        alive = behaving >= 0
        draws, month_cust = shift.month_draws(rng, cust, m, signup_month)

        txn = draw_transactions(draws, month_cust, behaving, alive, m, start, days)
        txn = keep_active(txn, "txn_ts", signup_us, closed)
        txn_table, spend = transactions_table(txn, config, chunk, m, first, n)
        storage.write_part(txn_table, lake, "transactions", chunk, month)
        stats.transactions += txn_table.num_rows

        events = draw_app_events(draws, cust, behaving, alive, m, start, days)
        events = keep_active(events, "event_ts", signup_us, closed)
        events |= draw_event_places(
            _place_rng(config, chunk, m + 1), events["idx"], cust["city"], cust["_shares_location"]
        )
        ev_table = app_events_table(events, config, chunk, m, first)
        storage.write_part(ev_table, lake, "app_events", chunk, month)
        stats.app_events += ev_table.num_rows

        bal_table, aum, open_idx = month_end_balances(
            draws, cust, states[:, m], signup_month, aum, spend, m, start
        )
        storage.write_part(bal_table, lake, "balances", chunk, month)
        stats.balances += bal_table.num_rows
        if world is not None:
            held_table = world.month_table(m, open_idx)
            storage.write_part(held_table, lake, "product_holdings", chunk, month)
            stats.product_holdings += held_table.num_rows

        truth_table = churn_truth_table(cust, states, entry_at(m), m, open_idx, month_starts)
        storage.write_part(truth_table, truth, "churn", chunk, month)
    if world is not None:
        storage.write_part(world.truth_table(), truth, "products", chunk)

    contacts, responses, campaign_truth = shift.campaigns(
        rng, lambda r, s, c: _draw_campaigns(r, cust, s, signup_us, c, config), states, closed
    )
    for spec, table in ((TABLES["campaign_contacts"], contacts), (TABLES["responses"], responses)):
        storage.write_partitioned(table, spec, lake, chunk)
    storage.write_partitioned(campaign_truth, CAMPAIGN_TRUTH, truth, chunk)

    cust_table = customers_table(rng, cust, closed_date)
    storage.write_part(cust_table, lake, "customers", chunk)
    stats.seconds = time.perf_counter() - t0
    return stats


def _place_rng(config: SynthConfig, chunk: int, stream: int) -> np.random.Generator:
    """Place stream ``stream`` of chunk ``chunk`` (0: the customers' homes, ``m + 1``: month ``m``'s app events)."""
    return np.random.default_rng(np.random.SeedSequence([config.seed, chunk, PLACE_STREAM, stream]))


def branches_table() -> pa.Table:
    """The ``branches`` table: the bank's branches of :data:`pipelines.data.places.BRANCHES`."""
    rows = places.BRANCHES
    return pa.table(
        {
            "branch_id": pa.array([b.branch_id for b in rows], pa.string()),
            "name": pa.array([b.name for b in rows], pa.string()),
            "city": sc.dict_array(np.array([CITY_NAMES.index(b.city) for b in rows]), CITY_NAMES),
            "region": sc.dict_array(np.array([REGIONS.index(b.region) for b in rows]), REGIONS),
            "lat": pa.array([b.lat for b in rows], pa.float64()),
            "lon": pa.array([b.lon for b in rows], pa.float64()),
        },
        schema=TABLES["branches"].arrow_schema,
    )


# --------------------------------------------------------------------------------------------------------------
# Campaign history (thin: a later issue deepens it)


def _draw_campaigns(rng, cust, states, signup_us, closed_us, config) -> tuple[pa.Table, pa.Table, pa.Table]:
    """The bank's past campaigns: a random ``campaign_share`` of the contactable customers each, split at random
    into treatment and holdout; responses and truth from :mod:`pipelines.synthetic.campaigns`."""
    n = cust["customer_id"].size
    months = [m for m in config.campaign_months if m < config.months] or [config.months - 1]
    draws = []
    for j, m in enumerate(months):
        start = config.month_starts[m]
        kind, channel = CAMPAIGN_PLAN[j % len(CAMPAIGN_PLAN)]
        campaign = sc.Campaign(
            f"cmp-{start:%Y-%m}-{kind}", kind, channel, start.value // 1000 + 9 * sc.US_PER_HOUR
        )
        eligible = (
            (states[:, m] >= 0)
            & (states[:, m] != CHURNED)
            & ~cust["marketing_opt_out"]
            & ~cust["do_not_contact"]
            & (signup_us < campaign.selected_us)
            & (closed_us > campaign.selected_us)
        )
        chosen = np.flatnonzero(eligible & (rng.random(n) < config.campaign_share))
        audience = sc.Audience(
            customer_id=cust["customer_id"][chosen],
            holdout=rng.random(chosen.size) < config.campaign_holdout,
            age=start.year - cust["birth_year"][chosen].astype(np.int64),
            income_band=cust["income_band"][chosen],
            card_tier=cust["card_tier"][chosen],
            acquisition_channel=cust["acquisition_channel"][chosen],
            repayment_due_day=cust["repayment_due_day"][chosen],
            state=states[chosen, m],
            closed_us=closed_us[chosen],
            has_app=cust["_login_rate"][chosen] > 0,
        )
        contacts, events, truth = sc.draw_campaign(
            rng, campaign, audience, config.seed, config.end.value // 1000
        )
        draws.append((campaign, contacts, events, truth))
    return sc.campaign_tables(draws)


def summary_lines(manifest: dict) -> list[str]:
    """Human summary of a generation manifest."""
    rows = manifest["rows"]
    lines = [f"{name}: {count:,} rows" for name, count in rows.items()]
    lines.append(f"closures during the period: {manifest['closures']:,}")
    if manifest["dirty_faults"]:
        lines.append("injected faults: " + json.dumps(manifest["dirty_faults"], sort_keys=True))
    if manifest.get("shift"):
        s = manifest["shift"]
        lines.append(
            f"behaviour shift: {s['kind']} x{s['factor']:g} from {s['month']} for {s['segment']} "
            f"({s['customers_affected']:,} customers affected; truth/shift.json)"
        )
    return lines
