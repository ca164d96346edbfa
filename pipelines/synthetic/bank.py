"""Synthetic credit-card bank with known ground truth.

How behaviour is generated (all of it vectorised with NumPy, one chunk of customers at a time):

* Each customer has static attributes (age, income band, card tier, acquisition channel ...), a spending
  persona, a baseline activity level and a churn-risk multiplier ``r`` built from those attributes plus a small
  hidden frailty.
* A monthly Markov chain moves each customer through hidden lifecycle states
  ``new -> active -> loyal -> dormant -> churned``. Dormancy is the latent hazard: a dormant customer spends
  about a third as much, logs in a quarter as often and moves assets out (balance outflow) for weeks to months
  before the account is closed. Reactivation is possible. Closure happens on a uniform day of the month in which
  the chain enters ``churned``; the customer's activity stops that day.
* Transactions: Poisson counts per customer-month (state x month seasonality), days drawn from weights that
  combine weekday, holiday (late-November sales, Christmas) and salary-day effects, log-normal amounts by
  category and customer, persona-driven categories, cross-border, instalment and channel flags.
* App events: logins, bill views that bunch before the repayment due day, coupon views, points redemptions,
  card binding (mostly new customers), instalment applications.
* Balances: month-end assets under management (growing when engaged, flowing out when dormant) and the card
  balance (that month's spend times a customer's revolving share, capped by the limit).
* A thin campaign history: a few past campaigns, each with a random holdout and a funnel with UTM parameters.

Ground truth: because the chain's transition matrix per customer is known, the probability that the account is
closed within 90 and 150 days after each month end follows exactly from matrix powers. It is written to
``truth/`` with the hidden state; nothing in ``lake/`` reveals it.

Determinism: chunk ``k`` draws from ``SeedSequence([seed, k])``, so the output depends only on the seed, the
sizes and the chunk size — not on the number of worker processes. Parquet is written with fixed options, so the
same inputs give byte-identical files.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from pipelines.data import storage
from pipelines.data.schema import (
    ACQUISITION_CHANNELS,
    APP_EVENT_TYPES,
    CAMPAIGN_TRUTH,
    CARD_TIERS,
    CHURN_TRUTH,
    GENDERS,
    INCOME_BANDS,
    MERCHANT_CATEGORIES,
    OCCUPATIONS,
    TABLES,
    TXN_CHANNELS,
)
from pipelines.synthetic import campaigns as sc

US_PER_DAY = 86_400 * 1_000_000
US_PER_HOUR = 3_600 * 1_000_000
# Past campaigns, in order: (kind, channel); see pipelines/synth_campaigns.py for how customers respond.
CAMPAIGN_PLAN = (
    ("upgrade", "email"),
    ("activation", "push"),
    ("installment", "sms"),
    ("winback", "call"),
    ("upgrade", "email"),
    ("winback", "sms"),
)
CUSTOMER_ID_BASE = 1_000_000_000

# Lifecycle states of the hidden Markov chain.
NEW, ACTIVE, LOYAL, DORMANT, CHURNED = range(5)
STATE_NAMES = ("new", "active", "loyal", "dormant")
NOT_YET = -1  # before signup

# Behaviour multipliers by state (new, active, loyal, dormant).
TXN_RATE_BY_STATE = np.array([0.75, 1.0, 1.3, 0.3])
AMOUNT_SHIFT_BY_STATE = np.array([-0.05, 0.0, 0.1, -0.25])
LOGIN_RATE_BY_STATE = np.array([1.2, 1.0, 1.15, 0.2])
AUM_GROWTH_BY_STATE = np.array([1.03, 1.004, 1.008, 0.82])

MONTH_SEASONALITY = np.array([0.88, 0.9, 0.98, 1.0, 1.0, 1.02, 1.06, 1.06, 0.98, 1.0, 1.1, 1.3])
WEEKDAY_WEIGHT = np.array([0.9, 0.92, 0.95, 1.0, 1.15, 1.28, 0.95])  # Monday .. Sunday
SALARY_DAYS = np.array([1, 15, 25])
SALARY_BUMP = 1.35  # spend on the salary day and the three days after it

PERSONAS = ("everyday", "traveler", "online_shopper", "family")
PERSONA_SHARES = np.array([0.45, 0.12, 0.23, 0.20])
# Category mix by persona, in MERCHANT_CATEGORIES order.
PERSONA_CATEGORY_MIX = np.array(
    [
        [0.30, 0.17, 0.12, 0.12, 0.07, 0.01, 0.005, 0.05, 0.06, 0.04, 0.005, 0.02],
        [0.14, 0.18, 0.07, 0.08, 0.08, 0.14, 0.10, 0.07, 0.04, 0.03, 0.01, 0.06],
        [0.16, 0.12, 0.06, 0.10, 0.32, 0.01, 0.01, 0.07, 0.04, 0.03, 0.01, 0.07],
        [0.34, 0.10, 0.12, 0.14, 0.06, 0.01, 0.005, 0.04, 0.07, 0.06, 0.035, 0.02],
    ]
)
CATEGORY_AMOUNT_SHIFT = np.array([0.0, -0.2, 0.25, 0.35, 0.25, 1.4, 1.9, -0.1, 0.7, 0.5, 1.3, 1.6])
CATEGORY_CROSS_BORDER = np.array([0.005, 0.02, 0.005, 0.01, 0.08, 0.35, 0.45, 0.03, 0.0, 0.01, 0.02, 0.05])
_ONLINE_CATEGORY = np.array([c == "online_shopping" for c in MERCHANT_CATEGORIES])
# Transaction channel mix (TXN_CHANNELS order) for: in-store under 35, in-store 35+, online categories.
CHANNEL_MIX = np.array(
    [
        [0.62, 0.05, 0.30, 0.03],
        [0.85, 0.04, 0.06, 0.05],
        [0.00, 0.85, 0.15, 0.00],
    ]
)
HOUR_WEIGHT = np.array(
    [
        0.3,
        0.2,
        0.1,
        0.1,
        0.1,
        0.2,
        0.5,
        1.2,
        2.0,
        2.4,
        2.8,
        3.2,
        4.0,
        3.6,
        3.0,
        2.9,
        3.1,
        3.6,
        4.2,
        4.0,
        3.4,
        2.4,
        1.4,
        0.7,
    ]
)

FIRST_NAMES = np.array(
    [
        "James",
        "Mary",
        "John",
        "Patricia",
        "Robert",
        "Jennifer",
        "Michael",
        "Linda",
        "David",
        "Elizabeth",
        "William",
        "Susan",
        "Richard",
        "Jessica",
        "Joseph",
        "Sarah",
        "Thomas",
        "Karen",
        "Charles",
        "Lisa",
        "Wei",
        "Fang",
        "Mohammed",
        "Fatima",
        "Priya",
        "Arjun",
        "Olga",
        "Ivan",
        "Sofia",
        "Lucas",
        "Emma",
        "Noah",
        "Aisha",
        "Omar",
        "Yuki",
        "Hana",
        "Carlos",
        "Lucia",
        "Mateo",
        "Chloe",
    ]
)
LAST_NAMES = np.array(
    [
        "Smith",
        "Johnson",
        "Williams",
        "Brown",
        "Jones",
        "Garcia",
        "Miller",
        "Davis",
        "Rodriguez",
        "Martinez",
        "Wilson",
        "Anderson",
        "Taylor",
        "Thomas",
        "Moore",
        "Jackson",
        "Martin",
        "Lee",
        "Thompson",
        "White",
        "Harris",
        "Clark",
        "Lewis",
        "Walker",
        "Hall",
        "Young",
        "King",
        "Wright",
        "Lopez",
        "Hill",
        "Scott",
        "Green",
        "Adams",
        "Baker",
        "Nelson",
        "Carter",
        "Mitchell",
        "Perez",
        "Roberts",
        "Chen",
    ]
)
EMAIL_DOMAINS = np.array(["example.com", "example.org", "example.net"])


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

    def __post_init__(self) -> None:
        if self.customers < 1:
            raise ValueError(f"customers must be at least 1, got {self.customers}")
        if not 1 <= self.months <= 120:
            raise ValueError(f"months must be between 1 and 120, got {self.months}")
        if self.chunk_size < 1_000:
            raise ValueError(f"chunk_size must be at least 1000, got {self.chunk_size}")
        if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", self.start):
            raise ValueError(f"start must be a month YYYY-MM, got {self.start!r}")

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
    closures: int = 0
    seconds: float = 0.0


# --------------------------------------------------------------------------------------------------------------
# Public entry point


def generate_bank(config: SynthConfig, out: Path, progress: Callable[[str], None] | None = print) -> dict:
    """Generate the lake and truth under ``out`` (``out/lake``, ``out/truth``) and return a summary.

    An existing lake and truth in ``out`` are replaced whole when generation succeeds, and left as they were when
    it fails.
    """
    out = Path(out)
    say = progress or (lambda _msg: None)
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
    ):
        jobs = [(config, k, lake, truth) for k in range(config.n_chunks)]
        results = pool.map(_generate_chunk_job, jobs) if workers > 1 else map(_generate_chunk_job, jobs)
        for done, stats in enumerate(results, start=1):
            for name in ("customers", "transactions", "app_events", "balances", "closures"):
                setattr(totals, name, getattr(totals, name) + getattr(stats, name))
            elapsed = time.perf_counter() - started
            say(
                f"  chunk {done}/{config.n_chunks}: {totals.customers:,} customers, "
                f"{totals.transactions:,} transactions, {totals.app_events:,} app events "
                f"({elapsed:.1f} s, {totals.customers / elapsed:,.0f} customers/s)"
            )
        faults = _inject_dirty(config, lake) if config.dirty else {}
        manifest = {
            "config": asdict(config) | {"workers": workers},
            "as_of": config.end.strftime("%Y-%m-%d"),
            "rows": {
                "customers": totals.customers,
                "transactions": totals.transactions,
                "app_events": totals.app_events,
                "balances": totals.balances,
            },
            "closures": totals.closures,
            "dirty_faults": faults,
        }
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


def generate_chunk(config: SynthConfig, chunk: int, lake: Path, truth: Path) -> ChunkStats:
    """Generate and write every table's part ``chunk`` (customers ``chunk * chunk_size`` onwards)."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, chunk]))
    first = chunk * config.chunk_size
    n = min(config.chunk_size, config.customers - first)
    month_starts = config.month_starts
    stats = ChunkStats(chunk=chunk, customers=n)

    cust = _draw_customers(rng, n, first, config)
    states, signup_month = _simulate_states(rng, cust, config)
    closed_date = _closure_dates(rng, states, month_starts)
    stats.closures = int((~np.isnat(closed_date)).sum())

    signup_us = cust["signup_date"].astype("datetime64[us]").astype(np.int64)
    closed_us = np.where(
        np.isnat(closed_date), np.iinfo(np.int64).max, closed_date.astype("datetime64[us]").astype(np.int64)
    )
    aum = cust.pop("_aum_start")
    entry = closure_entry_probabilities(cust.pop("_transition"))

    for m in range(config.months):
        start = month_starts[m]
        days = start.days_in_month
        # Behaviour in month m follows the state during it; in the closure month, the state before closure.
        behaving = np.where(states[:, m] == CHURNED, states[:, m - 1] if m else NOT_YET, states[:, m])
        alive = behaving >= 0

        txn = _draw_transactions(rng, cust, behaving, alive, m, start, days)
        txn = _keep_active(txn, "txn_ts", signup_us, closed_us)
        txn_table, spend = _transactions_table(txn, config, chunk, m, first, n)
        storage.write_part(txn_table, lake, "transactions", chunk, storage.month_key(start))
        stats.transactions += txn_table.num_rows

        events = _draw_app_events(rng, cust, behaving, alive, m, start, days)
        events = _keep_active(events, "event_ts", signup_us, closed_us)
        ev_table = _app_events_table(events, config, chunk, m, first)
        storage.write_part(ev_table, lake, "app_events", chunk, storage.month_key(start))
        stats.app_events += ev_table.num_rows

        # Month-end positions for customers open at the end of the month.
        open_at_end = (states[:, m] >= 0) & (states[:, m] != CHURNED)
        growth = AUM_GROWTH_BY_STATE[np.clip(states[:, m], 0, 3)] * np.exp(rng.normal(0.0, 0.04, n))
        aum = np.where(signup_month >= m, aum, aum * growth)
        month_end = (start + pd.offsets.MonthEnd(0)).date()
        bal_idx = np.flatnonzero(open_at_end)
        card_balance = np.minimum(spend[bal_idx] * cust["_revolve"][bal_idx], cust["credit_limit"][bal_idx])
        bal_table = pa.table(
            {
                "customer_id": pa.array(cust["customer_id"][bal_idx]),
                "month_end": pa.array(np.full(bal_idx.size, np.datetime64(month_end, "D"))),
                "aum": pa.array(np.round(aum[bal_idx], 2)),
                "card_balance": pa.array(np.round(card_balance, 2)),
            },
            schema=TABLES["balances"].arrow_schema,
        )
        storage.write_part(bal_table, lake, "balances", chunk, storage.month_key(start))
        stats.balances += bal_table.num_rows

        truth_table = _churn_truth_table(cust, states, entry, m, bal_idx, month_starts)
        storage.write_part(truth_table, truth, "churn", chunk, storage.month_key(start))

    contacts, responses, campaign_truth = _draw_campaigns(rng, cust, states, signup_us, closed_us, config)
    for spec, table in ((TABLES["campaign_contacts"], contacts), (TABLES["responses"], responses)):
        storage.write_partitioned(table, spec, lake, chunk)
    storage.write_partitioned(campaign_truth, CAMPAIGN_TRUTH, truth, chunk)

    cust_table = _customers_table(rng, cust, closed_date)
    storage.write_part(cust_table, lake, "customers", chunk)
    stats.seconds = time.perf_counter() - t0
    return stats


# --------------------------------------------------------------------------------------------------------------
# Customers and their latent traits


def _draw_customers(
    rng: np.random.Generator, n: int, first: int, config: SynthConfig
) -> dict[str, np.ndarray]:
    start = config.month_starts[0]
    ids = CUSTOMER_ID_BASE + first + np.arange(n, dtype=np.int64)

    # Signup: most customers predate the data (tenure up to 12 years), some join during it.
    is_new = rng.random(n) < config.new_customer_share
    tenure_days = np.ceil(rng.exponential(900.0, n)).clip(1, 12 * 365).astype(np.int64)
    span_days = (config.end - start).days
    new_offset = rng.integers(0, span_days, n)
    start_d = np.datetime64(start.date(), "D")
    signup = np.where(is_new, start_d + new_offset, start_d - tenure_days)

    age = np.clip(rng.normal(41, 13, n), 18, 88)
    birth_year = (start.year - age).astype(np.int16)
    gender = _draw(rng, np.array([0.48, 0.48, 0.04]), n)
    city_tier = _draw(rng, np.array([0.22, 0.34, 0.27, 0.17]), n) + 1
    income = np.clip(
        _draw(rng, np.array([0.18, 0.26, 0.3, 0.17, 0.09]), n)
        + (age > 35) * rng.integers(0, 2, n)
        - (age < 25),
        0,
        4,
    )
    # Students and retirees are assigned by age below.
    occupation = _draw(rng, np.array([0.52, 0.12, 0.09, 0.0, 0.0, 0.07, 0.2]), n)
    occupation = np.where(age < 24, np.where(rng.random(n) < 0.6, 3, occupation), occupation)
    occupation = np.where(age > 63, np.where(rng.random(n) < 0.75, 4, occupation), occupation)
    tier = np.clip(income - 1 + _draw(rng, np.array([0.25, 0.5, 0.25]), n) - 1, 0, 3)
    credit_limit = np.round(np.array([2_000, 6_000, 15_000, 40_000])[tier] * rng.lognormal(0, 0.35, n), -2)
    acquisition = _draw(rng, np.array([0.3, 0.35, 0.15, 0.1, 0.1]), n)
    due_day = rng.integers(1, 29, n).astype(np.int8)
    opt_out = rng.random(n) < 0.08
    dnc = rng.random(n) < 0.02

    persona = _draw(rng, PERSONA_SHARES, n)
    txn_rate = rng.lognormal(np.log(8.5), 0.55, n) * (1 + 0.08 * income)
    log_amount = np.log(28) + 0.18 * income + 0.12 * tier + rng.normal(0, 0.25, n)
    app_user = rng.random(n) < np.clip(1.05 - 0.012 * age, 0.2, 0.9)
    login_rate = np.where(app_user, rng.lognormal(np.log(7), 0.6, n), 0.0)
    salary_group = _draw(rng, np.array([0.3, 0.2, 0.5]), n)
    revolve = rng.beta(2, 3, n)
    aum_start = rng.lognormal(np.log(4_000) + 0.6 * income, 1.0, n)

    # Churn risk: observable drivers plus a small hidden frailty.
    log_risk = (
        0.45 * (income <= 1)
        - 0.35 * (tier >= 2)
        + 0.35 * np.isin(acquisition, (2, 4))  # partner and telesales acquisitions leave sooner
        - 0.25 * (age > 50)
        + 0.3 * (age < 28)
        - 0.45 * (np.log(txn_rate) - np.log(8.5))  # lighter users leave sooner
        - 0.2 * app_user
        + rng.normal(0, 0.2, n)
    )
    risk = np.exp(log_risk)
    return {
        "customer_id": ids,
        "signup_date": signup,
        "birth_year": birth_year,
        "gender": gender,
        "city_tier": city_tier.astype(np.int8),
        "income_band": income,
        "occupation": occupation,
        "card_tier": tier,
        "credit_limit": credit_limit,
        "acquisition_channel": acquisition,
        "repayment_due_day": due_day,
        "marketing_opt_out": opt_out,
        "do_not_contact": dnc,
        "_age": age,
        "_persona": persona,
        "_txn_rate": txn_rate,
        "_log_amount": log_amount,
        "_login_rate": login_rate,
        "_salary_group": salary_group,
        "_revolve": revolve,
        "_aum_start": aum_start,
        "_transition": transition_matrices(risk),
        "_id_salt": int(np.random.default_rng(config.seed).integers(0, ID_SPACE)),
    }


def transition_matrices(risk: np.ndarray) -> np.ndarray:
    """Monthly transition matrices (n, 5, 5) over (new, active, loyal, dormant, churned) for risk multipliers."""
    n = risk.size
    t = np.zeros((n, 5, 5))
    r = risk
    t[:, NEW, ACTIVE] = 0.3
    t[:, NEW, DORMANT] = np.minimum(0.05 * r, 0.3)
    t[:, NEW, CHURNED] = np.minimum(0.008 * r, 0.1)
    t[:, ACTIVE, LOYAL] = 0.035
    t[:, ACTIVE, DORMANT] = np.minimum(0.022 * r, 0.3)
    t[:, ACTIVE, CHURNED] = np.minimum(0.002 * r, 0.05)
    t[:, LOYAL, ACTIVE] = 0.02
    t[:, LOYAL, DORMANT] = np.minimum(0.008 * r, 0.2)
    t[:, LOYAL, CHURNED] = np.minimum(0.0008 * r, 0.02)
    t[:, DORMANT, ACTIVE] = 0.1
    t[:, DORMANT, CHURNED] = np.minimum(0.2 * np.sqrt(r), 0.6)
    for s in range(4):
        t[:, s, s] = 1.0 - t[:, s, :].sum(axis=1)
    t[:, CHURNED, CHURNED] = 1.0
    return t


def _simulate_states(
    rng: np.random.Generator, cust: dict, config: SynthConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Hidden state per customer and month (n, months); NOT_YET before signup, CHURNED from the closure month."""
    n = cust["customer_id"].size
    signup_month = _period_offsets(cust["signup_date"], config)
    tenure_months = -signup_month  # for customers who predate the data
    initial = np.where(
        tenure_months < 3,
        NEW,
        _draw(rng, np.array([0.0, 0.62, 0.26, 0.12]), n),
    )
    initial = np.where((tenure_months > 24) & (initial == ACTIVE) & (rng.random(n) < 0.25), LOYAL, initial)
    cum = np.cumsum(cust["_transition"], axis=2)
    cum[:, :, -1] = 1.0
    states = np.full((n, config.months), NOT_YET, dtype=np.int8)
    current = np.where(signup_month <= 0, initial, NOT_YET).astype(np.int8)
    for m in range(config.months):
        if m > 0:
            prev = states[:, m - 1]
            moving = prev >= 0
            u = rng.random(n)
            rows = cum[np.arange(n), np.clip(prev, 0, 4)]
            nxt = (u[:, None] >= rows).sum(axis=1).astype(np.int8)
            current = np.where(moving, nxt, current)
        current = np.where(signup_month == m, NEW, current).astype(np.int8)
        states[:, m] = current
    return states, signup_month


def _period_offsets(dates: np.ndarray, config: SynthConfig) -> np.ndarray:
    """Months between each date's month and the first data month (negative before it)."""
    d = dates.astype("datetime64[M]").astype(np.int64)
    first = np.datetime64(pd.Period(config.start, freq="M").start_time.date(), "M").astype(np.int64)
    return (d - first).astype(np.int64)


def _closure_dates(
    rng: np.random.Generator, states: np.ndarray, month_starts: pd.DatetimeIndex
) -> np.ndarray:
    """Closure date (uniform day of the month the chain enters churned), NaT when still open."""
    n, months = states.shape
    entered = (states == CHURNED) & np.concatenate(
        [np.zeros((n, 1), bool), states[:, :-1] != CHURNED], axis=1
    )
    has = entered.any(axis=1)
    month = entered.argmax(axis=1)
    starts = np.asarray(month_starts[:-1].values.astype("datetime64[D]"))
    days = np.asarray(month_starts[:-1].days_in_month)
    day = (rng.random(n) * days[month]).astype(np.int64)
    return np.where(has, starts[month] + day, np.datetime64("NaT", "D"))


# --------------------------------------------------------------------------------------------------------------
# Events


def _draw(rng: np.random.Generator, probs: np.ndarray, n: int) -> np.ndarray:
    """n draws from one categorical distribution."""
    cum = np.cumsum(probs / probs.sum())
    cum[-1] = 1.0
    return np.searchsorted(cum, rng.random(n), side="right").astype(np.int64)


def _draw_grouped(rng: np.random.Generator, probs: np.ndarray, group: np.ndarray) -> np.ndarray:
    """One draw per row from the categorical distribution ``probs[group[row]]`` (one searchsorted in all)."""
    n_groups, k = probs.shape
    cum = np.cumsum(probs / probs.sum(axis=1, keepdims=True), axis=1)
    cum[:, -1] = 1.0
    flat = (cum + np.arange(n_groups)[:, None]).ravel()
    idx = np.searchsorted(flat, group + rng.random(group.size), side="right") - group * k
    return np.minimum(idx, k - 1)


def _day_weights(start: pd.Timestamp, days: int) -> np.ndarray:
    """Spend weight per (salary group, day of month): weekday, holiday and salary-day effects."""
    dates = pd.date_range(start, periods=days, freq="D")
    w = WEEKDAY_WEIGHT[dates.day_of_week].copy()
    if start.month == 12:
        w[(dates.day >= 18) & (dates.day <= 24)] *= 1.6
        w[dates.day == 25] *= 0.35
    if start.month == 11:
        fridays = dates[(dates.day_of_week == 4)]
        black_friday = fridays[3] if len(fridays) >= 4 else fridays[-1]
        w[(dates >= black_friday) & (dates <= black_friday + pd.Timedelta(days=3))] *= 1.9
    weights = np.zeros((SALARY_DAYS.size, 31))
    for g, pay_day in enumerate(SALARY_DAYS):
        bump = np.where((dates.day >= pay_day) & (dates.day <= pay_day + 3), SALARY_BUMP, 1.0)
        weights[g, :days] = w * bump
    return weights


def _timestamps(
    rng: np.random.Generator, start: pd.Timestamp, day: np.ndarray, hour_weight: np.ndarray
) -> np.ndarray:
    hour = _draw(rng, hour_weight, day.size)
    seconds = hour * 3600 + rng.integers(0, 3600, day.size)
    return start.value // 1000 + day * US_PER_DAY + seconds * 1_000_000


def _draw_transactions(rng, cust, behaving, alive, m, start, days) -> dict[str, np.ndarray]:
    season = MONTH_SEASONALITY[start.month - 1]
    rate = np.where(alive, cust["_txn_rate"] * TXN_RATE_BY_STATE[np.clip(behaving, 0, 3)] * season, 0.0)
    counts = rng.poisson(rate * days / 30.4)
    idx = np.repeat(np.arange(rate.size), counts)
    day = _draw_grouped(rng, _day_weights(start, days), cust["_salary_group"][idx])
    ts = _timestamps(rng, start, day, HOUR_WEIGHT)
    category = _draw_grouped(rng, PERSONA_CATEGORY_MIX, cust["_persona"][idx])
    mu = (
        cust["_log_amount"][idx]
        + CATEGORY_AMOUNT_SHIFT[category]
        + AMOUNT_SHIFT_BY_STATE[np.clip(behaving[idx], 0, 3)]
    )
    amount = np.round(np.exp(mu + rng.normal(0, 0.8, idx.size)), 2).clip(0.5, None)
    cross = CATEGORY_CROSS_BORDER[category] * np.where(cust["_persona"][idx] == 1, 3.0, 1.0)
    is_cross_border = rng.random(idx.size) < cross
    p_installment = 0.35 / (1 + np.exp(-2.0 * (np.log(amount) - np.log(600))))
    is_installment = rng.random(idx.size) < p_installment
    channel_group = np.where(_ONLINE_CATEGORY[category], 2, np.where(cust["_age"][idx] < 35, 0, 1))
    channel = _draw_grouped(rng, CHANNEL_MIX, channel_group)
    return {
        "idx": idx,
        "txn_ts": ts,
        "amount": amount,
        "merchant_category": category,
        "is_cross_border": is_cross_border,
        "is_installment": is_installment,
        "channel": channel,
    }


def _draw_app_events(rng, cust, behaving, alive, m, start, days) -> dict[str, np.ndarray]:
    state = np.clip(behaving, 0, 3)
    base = np.where(alive, cust["_login_rate"] * LOGIN_RATE_BY_STATE[state], 0.0) * days / 30.4
    has_app = cust["_login_rate"] > 0
    # Expected counts per event type (APP_EVENT_TYPES order).
    rates = np.stack(
        [
            base,  # login
            np.where(has_app & alive, 0.9 * LOGIN_RATE_BY_STATE[state], 0.0),  # bill_view
            base * 0.12,  # coupon_view
            base * np.where(state == LOYAL, 0.08, 0.02),  # points_redemption
            np.where(has_app & alive, np.where(state == NEW, 0.5, 0.01), 0.0),  # card_binding
            base * 0.01 * (1 + cust["_revolve"]),  # installment_application
        ],
        axis=1,
    )
    counts = rng.poisson(rates)
    flat = counts.ravel()
    cell = np.repeat(np.arange(flat.size), flat)
    idx, event_type = np.divmod(cell, len(APP_EVENT_TYPES))
    day = rng.integers(0, days, idx.size)
    # Bill views and half the logins bunch in the five days before the repayment due day.
    due = cust["repayment_due_day"][idx].astype(np.int64) - 1
    near_due = (event_type == 1) | ((event_type == 0) & (rng.random(idx.size) < 0.3))
    day = np.where(near_due, np.clip(due - rng.integers(0, 6, idx.size), 0, days - 1), day)
    ts = _timestamps(rng, start, day, HOUR_WEIGHT)
    return {"idx": idx, "event_ts": ts, "event_type": event_type}


def _keep_active(events: dict, ts_col: str, signup_us: np.ndarray, closed_us: np.ndarray) -> dict:
    """Drop events before the customer's signup or from the closure day on."""
    idx = events["idx"]
    keep = (events[ts_col] >= signup_us[idx]) & (events[ts_col] < closed_us[idx])
    return {k: v[keep] for k, v in events.items()}


def _event_ids(config: SynthConfig, chunk: int, m: int, count: int) -> np.ndarray:
    """Unique, deterministic ids: month, chunk and row packed into one int64."""
    return ((m + 1) * 100_000 + chunk) * 10_000_000 + np.arange(count, dtype=np.int64)


def _transactions_table(txn, config, chunk, m, first, n) -> tuple[pa.Table, np.ndarray]:
    order = np.argsort(txn["txn_ts"])
    txn = {k: v[order] for k, v in txn.items()}
    spend = np.bincount(txn["idx"], weights=txn["amount"], minlength=n)
    table = pa.table(
        {
            "txn_id": pa.array(_event_ids(config, chunk, m, order.size)),
            "customer_id": pa.array(CUSTOMER_ID_BASE + first + txn["idx"].astype(np.int64)),
            "txn_ts": pa.array(txn["txn_ts"].astype("datetime64[us]")),
            "amount": pa.array(txn["amount"]),
            "merchant_category": sc.dict_array(txn["merchant_category"], MERCHANT_CATEGORIES),
            "is_cross_border": pa.array(txn["is_cross_border"]),
            "is_installment": pa.array(txn["is_installment"]),
            "channel": sc.dict_array(txn["channel"], TXN_CHANNELS),
        },
        schema=TABLES["transactions"].arrow_schema,
    )
    return table, spend


def _app_events_table(events, config, chunk, m, first) -> pa.Table:
    order = np.argsort(events["event_ts"])
    events = {k: v[order] for k, v in events.items()}
    return pa.table(
        {
            "event_id": pa.array(_event_ids(config, chunk, m, order.size)),
            "customer_id": pa.array(CUSTOMER_ID_BASE + first + events["idx"].astype(np.int64)),
            "event_ts": pa.array(events["event_ts"].astype("datetime64[us]")),
            "event_type": sc.dict_array(events["event_type"], APP_EVENT_TYPES),
        },
        schema=TABLES["app_events"].arrow_schema,
    )


# --------------------------------------------------------------------------------------------------------------
# Ground truth


MAX_HORIZON_MONTHS = 7  # enough months to cover 150 days from any month end


def closure_entry_probabilities(transition: np.ndarray, months: int = MAX_HORIZON_MONTHS) -> np.ndarray:
    """P(chain enters ``churned`` exactly k months ahead), per customer and starting state: (n, 4, months).

    Entry k = 0 is one month ahead. The transition matrix is fixed per customer, so this is computed once and
    serves every month end.
    """
    n = transition.shape[0]
    dist = np.zeros((n, 4, 5))
    dist[:, np.arange(4), np.arange(4)] = 1.0
    entered = np.empty((n, 4, months))
    for k in range(months):
        new_dist = dist @ transition
        entered[:, :, k] = new_dist[:, :, CHURNED] - dist[:, :, CHURNED]
        dist = new_dist
    return entered


def horizon_shares(
    month_end: pd.Timestamp, horizon_days: int, months: int = MAX_HORIZON_MONTHS
) -> np.ndarray:
    """Share of each of the next ``months`` calendar months' days inside ``horizon_days`` after ``month_end``."""
    shares = np.zeros(months)
    covered = 0
    first = month_end + pd.Timedelta(days=1)
    for k in range(months):
        days = (first + pd.DateOffset(months=k)).days_in_month
        shares[k] = np.clip(horizon_days - covered, 0, days) / days
        covered += days
    if covered < horizon_days:
        raise ValueError(f"horizon of {horizon_days} days exceeds {months} months")
    return shares


def churn_probabilities(transition: np.ndarray, month_end: pd.Timestamp, horizon_days: int) -> np.ndarray:
    """P(closure date within ``horizon_days`` after ``month_end``) for each customer and starting state (n, 4).

    The chain enters ``churned`` at a month boundary and the closure falls on a uniform day of that month, so the
    probability is the sum over future months k of P(enter churned in month k) times the share of month k's days
    that lie inside the horizon.
    """
    return closure_entry_probabilities(transition) @ horizon_shares(month_end, horizon_days)


def _churn_truth_table(cust, states, entry, m, open_idx, month_starts) -> pa.Table:
    month_end = month_starts[m + 1] - pd.Timedelta(days=1)
    state = states[open_idx, m].astype(np.int64)
    by_state = entry[open_idx, state]  # (n_open, months ahead)
    p90 = by_state @ horizon_shares(month_end, 90)
    p150 = by_state @ horizon_shares(month_end, 150)
    return pa.table(
        {
            "customer_id": pa.array(cust["customer_id"][open_idx]),
            "month_end": pa.array(np.full(open_idx.size, np.datetime64(month_end.date(), "D"))),
            "state": sc.dict_array(state, STATE_NAMES),
            "p_churn_90d": pa.array(p90),
            "p_churn_150d": pa.array(p150),
        },
        schema=CHURN_TRUTH.arrow_schema,
    )


# --------------------------------------------------------------------------------------------------------------
# Campaign history (thin: a later issue deepens it)


def _draw_campaigns(rng, cust, states, signup_us, closed_us, config) -> tuple[pa.Table, pa.Table, pa.Table]:
    """The bank's past campaigns: a random ``campaign_share`` of the contactable customers each, split at random
    into treatment and holdout; responses and truth from :mod:`pipelines.synth_campaigns`."""
    n = cust["customer_id"].size
    months = [m for m in config.campaign_months if m < config.months] or [config.months - 1]
    draws = []
    for j, m in enumerate(months):
        start = config.month_starts[m]
        kind, channel = CAMPAIGN_PLAN[j % len(CAMPAIGN_PLAN)]
        campaign = sc.Campaign(
            f"cmp-{start:%Y-%m}-{kind}", kind, channel, start.value // 1000 + 9 * US_PER_HOUR
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


# --------------------------------------------------------------------------------------------------------------
# Customers table (with PII)


ID_LETTERS = np.array(list("ABCEGHJKLMNPRSTWXYZ"))
ID_SUFFIX = np.array(list("ABCD"))
ID_SPACE = ID_LETTERS.size**2 * 10**6 * ID_SUFFIX.size  # 1,444,000,000 distinct ids
ID_MULTIPLIER = 1_000_003  # prime, coprime with ID_SPACE: index -> id is a bijection


def national_ids(index: np.ndarray, salt: int) -> np.ndarray:
    """Distinct national-id strings (``AB123456C``) for distinct customer indices below ``ID_SPACE``."""
    code = (index.astype(np.int64) * ID_MULTIPLIER + salt) % ID_SPACE
    code, suffix = np.divmod(code, ID_SUFFIX.size)
    code, digits = np.divmod(code, 10**6)
    first, second = np.divmod(code, ID_LETTERS.size)
    return np.char.add(
        np.char.add(ID_LETTERS[first], ID_LETTERS[second]),
        np.char.add(np.char.zfill(digits.astype(str), 6), ID_SUFFIX[suffix]),
    )


def _customers_table(rng: np.random.Generator, cust: dict, closed_date: np.ndarray) -> pa.Table:
    n = cust["customer_id"].size
    first = FIRST_NAMES[rng.integers(0, FIRST_NAMES.size, n)]
    last = LAST_NAMES[rng.integers(0, LAST_NAMES.size, n)]
    full_name = np.char.add(np.char.add(first, " "), last)
    phone = np.char.add("+44 7", np.char.zfill(rng.integers(0, 10**9, n).astype(str), 9))
    email = np.char.add(
        np.char.add(np.char.add(np.char.lower(first), "."), np.char.lower(last)),
        np.char.add(
            np.char.add(rng.integers(1, 1000, n).astype(str), "@"), EMAIL_DOMAINS[rng.integers(0, 3, n)]
        ),
    )
    national_id = national_ids(cust["customer_id"] - CUSTOMER_ID_BASE, cust["_id_salt"])
    return pa.table(
        {
            "customer_id": pa.array(cust["customer_id"]),
            "signup_date": pa.array(cust["signup_date"].astype("datetime64[D]")),
            "birth_year": pa.array(cust["birth_year"]),
            "gender": sc.dict_array(cust["gender"], GENDERS),
            "city_tier": pa.array(cust["city_tier"]),
            "income_band": sc.dict_array(cust["income_band"], INCOME_BANDS),
            "occupation": sc.dict_array(cust["occupation"], OCCUPATIONS),
            "card_tier": sc.dict_array(cust["card_tier"], CARD_TIERS),
            "credit_limit": pa.array(cust["credit_limit"].astype(np.float64)),
            "acquisition_channel": sc.dict_array(cust["acquisition_channel"], ACQUISITION_CHANNELS),
            "repayment_due_day": pa.array(cust["repayment_due_day"]),
            "marketing_opt_out": pa.array(cust["marketing_opt_out"]),
            "do_not_contact": pa.array(cust["do_not_contact"]),
            "closed_date": pa.array(closed_date.astype("datetime64[D]")),
            "full_name": pa.array(full_name.astype(str), pa.string()),
            "phone": pa.array(phone.astype(str), pa.string()),
            "email": pa.array(email.astype(str), pa.string()),
            "national_id": pa.array(national_id.astype(str), pa.string()),
        },
        schema=TABLES["customers"].arrow_schema,
    )


# --------------------------------------------------------------------------------------------------------------
# Dirty mode: realistic faults for testing the gates


def _inject_dirty(config: SynthConfig, lake: Path) -> dict[str, dict]:
    """Corrupt part 0 of some tables in place and return what was injected (table -> fault -> rows)."""
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 999_983]))
    faults: dict[str, dict] = {}
    first_month = storage.month_key(config.month_starts[0])
    last_month = storage.month_key(config.month_starts[-2])

    # customers: duplicated ids (whole rows copied).
    path = storage.table_dir(lake, "customers") / "part-00000.parquet"
    cust = storage.read_part(path)
    dup = cust.take(rng.choice(cust.num_rows, 5, replace=False))
    storage.write_part(pa.concat_tables([cust, dup]), lake, "customers", 0)
    faults["customers"] = {"duplicate customer_id": 5}

    # transactions: duplicate ids, null keys, negative amounts, unknown categories, orphan customers.
    path = storage.partition_dir(lake, "transactions", first_month) / "part-00000.parquet"
    txn = storage.read_part(path).to_pandas()
    rows = rng.choice(len(txn), 40, replace=False)
    dup_rows = txn.iloc[rows[:6]].copy()
    txn["customer_id"] = txn["customer_id"].astype("Int64")
    txn.loc[txn.index[rows[6:13]], "customer_id"] = pd.NA
    txn.loc[txn.index[rows[13:24]], "amount"] = -txn.loc[txn.index[rows[13:24]], "amount"]
    txn["merchant_category"] = txn["merchant_category"].cat.add_categories(["crypto_exchange"])
    txn.loc[txn.index[rows[24:27]], "merchant_category"] = "crypto_exchange"
    txn.loc[txn.index[rows[27:40]], "customer_id"] = 9_000_000_000 + np.arange(13)
    txn = pd.concat([txn, dup_rows.astype({"customer_id": "Int64"})], ignore_index=True)
    schema = TABLES["transactions"].arrow_schema
    schema = schema.set(
        schema.get_field_index("customer_id"), pa.field("customer_id", pa.int64(), nullable=True)
    )
    storage.write_part(
        pa.Table.from_pandas(txn, schema=schema, preserve_index=False), lake, "transactions", 0, first_month
    )

    # transactions: timestamps in the future, landed in the newest partition.
    path = storage.partition_dir(lake, "transactions", last_month) / "part-00000.parquet"
    last = storage.read_part(path).to_pandas()
    rows = rng.choice(len(last), 4, replace=False)
    last.loc[last.index[rows], "txn_ts"] = pd.Timestamp("2031-01-01") + pd.to_timedelta(
        np.arange(4), unit="h"
    )
    storage.write_part(
        pa.Table.from_pandas(last, schema=TABLES["transactions"].arrow_schema, preserve_index=False),
        lake,
        "transactions",
        0,
        last_month,
    )
    faults["transactions"] = {
        "duplicate txn_id": 6,
        "null customer_id": 7,
        "negative amount": 11,
        "unknown merchant_category": 3,
        "customer_id not in customers": 13,
        "future txn_ts": 4,
    }

    # balances: a column missing from every part.
    for path in storage.table_files(lake, "balances"):
        table = storage.read_part(path)
        month = path.parent.name.removeprefix("month=")
        storage.write_part(table.drop_columns(["aum"]), lake, "balances", int(path.stem.split("-")[1]), month)
    faults["balances"] = {"missing column aum": 1}
    return faults


def summary_lines(manifest: dict) -> list[str]:
    """Human summary of a generation manifest."""
    rows = manifest["rows"]
    lines = [f"{name}: {count:,} rows" for name, count in rows.items()]
    lines.append(f"closures during the period: {manifest['closures']:,}")
    if manifest["dirty_faults"]:
        lines.append("injected faults: " + json.dumps(manifest["dirty_faults"], sort_keys=True))
    return lines
