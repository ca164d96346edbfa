"""How the synthetic world answers a campaign: who converts with and without a contact, and the funnel events.

Used twice: by the generator for the bank's past campaigns (``synth.py``), and by :func:`simulate_run_responses`
for the platform's own campaign runs, standing in for the CRM's response feed after the response window.

Treatment effect model (the ground truth kept in ``truth/campaigns``)
--------------------------------------------------------------------
Every customer belongs to one of four uplift types (:data:`UPLIFT_TYPES`), drawn from a softmax over observable
attributes (age, income band, card tier, acquisition channel) and the hidden lifecycle state, with one uniform per
customer fixed by the seed, so a customer keeps its type for as long as its state does:

* persuadables (mostly dormant or younger customers) rarely convert alone but respond strongly to contact;
* sure things (mostly loyal, premium cards) convert often either way;
* lost causes convert almost never either way;
* do-not-disturb customers (mostly 60 and over, telesales acquisitions) convert less when contacted.

A contact's probability to convert within :data:`RESPONSE_HORIZON_DAYS` of selection is ``p_control`` without
contact and ``p_treated = p_control + uplift`` with it. The uplift scales with the channel (a call moves more
than an e-mail, and annoys do-not-disturb customers most) and, for repayment reminders, with timing: a reminder
that lands 1-3 days before the customer's due day works best, one that lands after it or weeks before barely
works. Both probabilities are written per contact, for treatment and holdout alike, so the true lift of any
campaign or any slice of it is the mean of ``p_treated - p_control``.

Conversions happen after a truncated exponential delay (mean :data:`MEAN_DELAY_DAYS`), always inside the horizon,
so the share of them inside a shorter readout window is :func:`share_within`. Treated customers walk a funnel
(delivered -> opened -> clicked -> visited -> app installed -> registered -> card bound -> converted) with
channel-specific drop-off; 30 % of the treated converters who opened the message come through the tracked link
(UTM parameters on the landing URL), the rest convert untracked, as do all holdout converters. About 1 % of treated customers register.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.data.schema import (
    CAMPAIGN_TRUTH,
    CONTACT_CHANNELS,
    CONTACT_GROUPS,
    RESPONSE_EVENTS,
    TABLES,
    UPLIFT_TYPES,
    UTM_MEDIUMS,
    UTM_SOURCES,
)

US_PER_DAY = 86_400 * 1_000_000
US_PER_HOUR = 3_600 * 1_000_000
RESPONSE_HORIZON_DAYS = 14
MEAN_DELAY_DAYS = 3.0

PERSUADABLE, SURE_THING, LOST_CAUSE, DO_NOT_DISTURB = range(4)
# Per type: conversion probability without contact, and the uplift of an SMS (other channels scale it).
TYPE_P_CONTROL = np.array([0.02, 0.12, 0.005, 0.05])
TYPE_UPLIFT = np.array([0.15, 0.003, 0.001, -0.04])
# How strongly each channel moves people (persuadables, sure things, lost causes) ...
CHANNEL_EFFECT = {"sms": 1.0, "email": 0.6, "push": 0.7, "call": 1.4}
# ... and how much it annoys do-not-disturb customers.
CHANNEL_ANNOYANCE = {"sms": 1.0, "email": 0.5, "push": 0.8, "call": 2.0}
# Funnel: P(delivered), P(opened | delivered) per channel.
CHANNEL_FUNNEL = {"sms": (0.97, 0.85), "email": (0.95, 0.3), "push": (0.9, 0.2), "call": (0.55, 1.0)}
TRACKED_SHARE = (
    0.3  # of treated converters who saw the message, the share converting through the tracked link
)
# Browsing without converting: P(clicked | opened), P(visited | clicked), P(registered | visited), ...
P_CLICK, P_VISIT, P_INSTALL, P_REGISTER, P_BIND = 0.08, 0.7, 0.25, 0.08, 0.5
# Kind of campaign -> utm_term of its landing URL.
KIND_TERMS = {"winback": "cashback", "upgrade": "upgrade", "activation": "welcome", "installment": "reminder"}

# Hidden lifecycle states (same codes as synth.py).
NEW, ACTIVE, LOYAL, DORMANT = range(4)
TELESALES = 4  # schema.ACQUISITION_CHANNELS index


@dataclass(frozen=True)
class Campaign:
    """One campaign: its id, kind (a key of :data:`KIND_TERMS`), channel and selection time (epoch µs)."""

    campaign_id: str
    kind: str
    channel: str
    selected_us: int

    def __post_init__(self) -> None:
        if self.kind not in KIND_TERMS:
            raise ValueError(f"unknown campaign kind {self.kind!r}; known: {', '.join(KIND_TERMS)}")
        if self.channel not in CONTACT_CHANNELS:
            raise ValueError(f"unknown channel {self.channel!r}; known: {', '.join(CONTACT_CHANNELS)}")


@dataclass
class Audience:
    """Per-contact arrays (all the same length): who was selected, their group and what drives their response.

    ``state`` is the hidden lifecycle state (0-3) at selection; ``closed_us`` the account closure time (int64 max
    when open); ``has_app`` whether the customer already uses the app.
    """

    customer_id: np.ndarray
    holdout: np.ndarray
    age: np.ndarray
    income_band: np.ndarray
    card_tier: np.ndarray
    acquisition_channel: np.ndarray
    repayment_due_day: np.ndarray
    state: np.ndarray
    closed_us: np.ndarray
    has_app: np.ndarray


# --------------------------------------------------------------------------------------------------------------
# The truth


def customer_uniforms(customer_id: np.ndarray, seed: int) -> np.ndarray:
    """One uniform in [0, 1) per customer, fixed by (seed, customer id): splitmix64 of the id."""
    salt = np.uint64(zlib.crc32(f"uplift-type:{seed}".encode()))
    with np.errstate(over="ignore"):
        z = np.asarray(customer_id).astype(np.uint64) ^ (salt << np.uint64(32))
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def type_probabilities(age, income_band, card_tier, acquisition_channel, state) -> np.ndarray:
    """(n, 4) probabilities of the four :data:`UPLIFT_TYPES`, from observable attributes and the hidden state."""
    age, income, tier = np.asarray(age), np.asarray(income_band), np.asarray(card_tier)
    acquisition, state = np.asarray(acquisition_channel), np.asarray(state)
    score = np.column_stack(
        [
            0.6 * (state == DORMANT) + 1.5 * (age < 35) + 0.8 * np.isin(income, (1, 2)),
            0.6 * (state == LOYAL) + 1.5 * (tier >= 2),
            1.5 + 1.0 * (income == 0),
            3.5 * (age >= 60) + 1.0 * (acquisition == TELESALES),
        ]
    )
    e = np.exp(5.0 * (score - score.max(axis=1, keepdims=True)))
    return e / e.sum(axis=1, keepdims=True)


def uplift_types(probabilities: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """The type index per row: the inverse CDF of each row's probabilities at its uniform."""
    cdf = np.cumsum(probabilities, axis=1)
    return np.minimum((uniforms[:, None] >= cdf).sum(axis=1), probabilities.shape[1] - 1)


def timing_effect(kind: str, selected_us: int, due_day: np.ndarray) -> np.ndarray:
    """Multiplier of the uplift for the send timing: only repayment reminders (kind ``installment``) depend on it.

    The reminder goes out on the selection day; N = due day - that day. N in 1-3: x1.6; 4-7: x1.0; otherwise
    (due today, already past, or more than a week away): x0.4.
    """
    due_day = np.asarray(due_day, dtype=np.int64)
    if kind != "installment":
        return np.ones(due_day.size)
    send_day = pd.Timestamp(selected_us, unit="us").day
    n = due_day - send_day
    return np.select([(n >= 1) & (n <= 3), (n >= 4) & (n <= 7)], [1.6, 1.0], 0.4)


def contact_truth(rng: np.random.Generator, campaign: Campaign, audience: Audience, seed: int) -> dict:
    """Per contact: uplift type, p_control and p_treated (conversion within the horizon of selection)."""
    n = audience.customer_id.size
    probs = type_probabilities(
        audience.age, audience.income_band, audience.card_tier, audience.acquisition_channel, audience.state
    )
    kind = uplift_types(probs, customer_uniforms(audience.customer_id, seed))
    p_control = np.clip(TYPE_P_CONTROL[kind] * rng.lognormal(0.0, 0.2, n), 0.0005, 0.6)
    scale = np.where(
        kind == DO_NOT_DISTURB, CHANNEL_ANNOYANCE[campaign.channel], CHANNEL_EFFECT[campaign.channel]
    )
    uplift = (
        TYPE_UPLIFT[kind]
        * scale
        * timing_effect(campaign.kind, campaign.selected_us, audience.repayment_due_day)
    )
    uplift = uplift * rng.lognormal(0.0, 0.2, n)
    p_treated = np.clip(p_control + uplift, 0.0002, 0.9)
    return {"uplift_type": kind, "p_control": p_control, "p_treated": p_treated}


def share_within(days: float) -> float:
    """Share of conversions (within the horizon) that happen within ``days`` of selection."""
    days = min(max(float(days), 0.0), RESPONSE_HORIZON_DAYS)
    return (1 - np.exp(-days / MEAN_DELAY_DAYS)) / (1 - np.exp(-RESPONSE_HORIZON_DAYS / MEAN_DELAY_DAYS))


# --------------------------------------------------------------------------------------------------------------
# Outcomes and the funnel


def _delays_us(rng: np.random.Generator, n: int, horizon_days: float) -> np.ndarray:
    """Truncated exponential delays (mean MEAN_DELAY_DAYS) in [0, horizon_days), in microseconds."""
    cap = 1 - np.exp(-horizon_days / MEAN_DELAY_DAYS)
    days = -MEAN_DELAY_DAYS * np.log1p(-rng.random(n) * cap)
    return (days * US_PER_DAY).astype(np.int64)


def draw_campaign(
    rng: np.random.Generator, campaign: Campaign, audience: Audience, seed: int, end_us: int
) -> tuple[dict, dict, dict]:
    """Contacts, funnel events and truth of one campaign, as column arrays.

    Events at or after ``end_us`` (the end of the data) or after the customer's account closure are dropped.
    """
    n = audience.customer_id.size
    treated = ~audience.holdout
    truth = contact_truth(rng, campaign, audience, seed)
    selected = campaign.selected_us
    # Messages go out within 8 hours of selection; conversions follow the send (or the selection, for holdout),
    # always within the horizon of the selection.
    sent = selected + rng.integers(1, 8, n) * US_PER_HOUR
    converted = rng.random(n) < np.where(treated, truth["p_treated"], truth["p_control"])
    start = np.where(treated, sent, selected)
    conv_ts = start + _delays_us(rng, n, RESPONSE_HORIZON_DAYS - 0.5)

    p_deliver, p_open = CHANNEL_FUNNEL[campaign.channel]
    delivered = treated & (rng.random(n) < p_deliver)
    opened = delivered & (rng.random(n) < p_open)
    tracked = converted & opened & (rng.random(n) < TRACKED_SHARE)
    clicked = tracked | (opened & (rng.random(n) < P_CLICK))
    visited = tracked | (clicked & (rng.random(n) < P_VISIT))
    installed = visited & ~audience.has_app & (rng.random(n) < P_INSTALL)
    registered = tracked | (visited & (rng.random(n) < P_REGISTER))
    card_bound = tracked | (registered & (rng.random(n) < P_BIND))

    # Funnel steps before a tracked conversion fall between the send and the conversion, in order; other
    # browsing follows the send by a few hours per step.
    steps = len(RESPONSE_EVENTS)
    fractions = np.sort(rng.random((n, steps - 1)), axis=1)
    tracked_ts = sent[:, None] + (fractions * (conv_ts - sent)[:, None]).astype(np.int64)
    browse_hours = np.cumsum(rng.exponential(6.0, (n, steps - 1)), axis=1)
    browse_ts = sent[:, None] + (browse_hours * US_PER_HOUR).astype(np.int64)
    step_ts = np.where(tracked[:, None], tracked_ts, browse_ts)

    variant = rng.integers(1, 3, n)
    events: dict[str, list] = {k: [] for k in ("idx", "event_type", "event_ts", "tracked")}
    happened = (delivered, opened, clicked, visited, installed, registered, card_bound)
    for e, mask in enumerate(happened):
        who = np.flatnonzero(mask)
        events["idx"].append(who)
        events["event_type"].append(np.full(who.size, e))
        events["event_ts"].append(step_ts[who, e])
        events["tracked"].append(np.full(who.size, e >= 2))  # clicks onwards came through the tracked link
    who = np.flatnonzero(converted)
    events["idx"].append(who)
    events["event_type"].append(np.full(who.size, steps - 1))
    events["event_ts"].append(conv_ts[who])
    events["tracked"].append(tracked[who])
    ev = {k: np.concatenate(v) for k, v in events.items()}
    keep = (ev["event_ts"] < audience.closed_us[ev["idx"]]) & (ev["event_ts"] < end_us)
    ev = {k: v[keep] for k, v in ev.items()}
    ev["variant"] = variant[ev["idx"]]

    contacts = {
        "customer_id": audience.customer_id,
        "group": audience.holdout.astype(np.int64),
        "sent_at": np.where(treated, sent, -1),
    }
    return contacts, ev, truth


# --------------------------------------------------------------------------------------------------------------
# Arrow tables


def dict_array(codes: np.ndarray, values: Sequence, mask: np.ndarray | None = None) -> pa.DictionaryArray:
    """A dictionary column (int8 codes into ``values``), as the schema stores categories."""
    return pa.DictionaryArray.from_arrays(
        pa.array(np.asarray(codes).astype(np.int8), mask=mask),
        pa.array([str(v) for v in values], pa.string()),
    )


def _timestamps(us: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    return pa.array(np.asarray(us, dtype=np.int64).astype("datetime64[us]"), mask=mask)


def campaign_tables(
    draws: Sequence[tuple[Campaign, dict, dict, dict]],
) -> tuple[pa.Table, pa.Table, pa.Table]:
    """``campaign_contacts``, ``responses`` (sorted by time) and ``truth/campaigns`` tables of drawn campaigns."""
    contact_parts, response_parts, truth_parts = [], [], []
    for campaign, contacts, ev, truth in draws:
        n = contacts["customer_id"].size
        sent = contacts["sent_at"]
        contact_parts.append(
            pa.table(
                {
                    "campaign_id": pa.array(np.full(n, campaign.campaign_id), pa.string()),
                    "customer_id": pa.array(contacts["customer_id"].astype(np.int64)),
                    "channel": dict_array(
                        np.full(n, CONTACT_CHANNELS.index(campaign.channel)), CONTACT_CHANNELS
                    ),
                    "group": dict_array(contacts["group"], CONTACT_GROUPS),
                    "selected_at": _timestamps(np.full(n, campaign.selected_us)),
                    "sent_at": _timestamps(sent, mask=sent < 0),
                },
                schema=TABLES["campaign_contacts"].arrow_schema,
            )
        )
        m = ev["idx"].size
        untracked = ~ev["tracked"].astype(bool)
        medium = UTM_MEDIUMS.index("outbound" if campaign.channel == "call" else "crm")
        response_parts.append(
            pa.table(
                {
                    "campaign_id": pa.array(np.full(m, campaign.campaign_id), pa.string()),
                    "customer_id": pa.array(contacts["customer_id"][ev["idx"]].astype(np.int64)),
                    "event_type": dict_array(ev["event_type"], RESPONSE_EVENTS),
                    "event_ts": _timestamps(ev["event_ts"]),
                    "utm_source": dict_array(
                        np.full(m, UTM_SOURCES.index(campaign.channel)), UTM_SOURCES, untracked
                    ),
                    "utm_medium": dict_array(np.full(m, medium), UTM_MEDIUMS, untracked),
                    "utm_campaign": pa.array(np.full(m, campaign.campaign_id), pa.string(), mask=untracked),
                    "utm_content": pa.array(
                        np.char.add("v", ev["variant"].astype(str)), pa.string(), mask=untracked
                    ),
                    "utm_term": pa.array(np.full(m, KIND_TERMS[campaign.kind]), pa.string(), mask=untracked),
                },
                schema=TABLES["responses"].arrow_schema,
            )
        )
        truth_parts.append(
            pa.table(
                {
                    "campaign_id": pa.array(np.full(n, campaign.campaign_id), pa.string()),
                    "customer_id": pa.array(contacts["customer_id"].astype(np.int64)),
                    "selected_at": _timestamps(np.full(n, campaign.selected_us)),
                    "group": dict_array(contacts["group"], CONTACT_GROUPS),
                    "uplift_type": dict_array(truth["uplift_type"], UPLIFT_TYPES),
                    "p_control": pa.array(truth["p_control"]),
                    "p_treated": pa.array(truth["p_treated"]),
                },
                schema=CAMPAIGN_TRUTH.arrow_schema,
            )
        )
    contacts = _concat(contact_parts, TABLES["campaign_contacts"].arrow_schema)
    responses = _concat(response_parts, TABLES["responses"].arrow_schema)
    truth = _concat(truth_parts, CAMPAIGN_TRUTH.arrow_schema)
    return contacts, responses.sort_by([("event_ts", "ascending")]), truth


def _concat(parts: list[pa.Table], schema: pa.Schema) -> pa.Table:
    if not parts:
        return schema.empty_table()
    return pa.concat_tables(parts).unify_dictionaries().combine_chunks()


# --------------------------------------------------------------------------------------------------------------
# The world's answer to the platform's own runs


def hidden_states(truth_dir: Path, ids: np.ndarray, when: pd.Timestamp) -> tuple[np.ndarray, str]:
    """The hidden lifecycle state (code) of customers ``ids`` during ``when``'s month, as the generator draws
    responses with, or in the newest month before it the truth holds (a customer it lacks counts as active); and
    that month's key. Raises naming the folder when the truth holds no month that early."""
    from pipelines.data import storage

    months = [m for m in storage.list_months(truth_dir, "churn") if m <= storage.month_key(when)]
    if not months:
        raise ValueError(f"{truth_dir / 'churn'} holds no month at or before {when:%Y-%m-%d}")
    states = storage.read_table(truth_dir, "churn", months=[months[-1]], columns=["customer_id", "state"])
    state = (
        states.set_index("customer_id")["state"]
        .astype(str)
        .map({"new": NEW, "active": ACTIVE, "loyal": LOYAL, "dormant": DORMANT})
        .reindex(ids)
        .fillna(ACTIVE)
        .to_numpy(np.int64)
    )
    return state, months[-1]


def lake_audience(
    data_dir: Path, ids: np.ndarray, when: pd.Timestamp, holdout: np.ndarray | None = None
) -> Audience:
    """The :class:`Audience` of customers ``ids`` of a generated bank at ``when``: their attributes from
    ``lake/customers``, their hidden state (:func:`hidden_states`) and whether they used the app that month.
    ``holdout`` defaults to nobody. Raises naming the table when a customer is not in the lake."""
    from pipelines.data import storage

    data_dir = Path(data_dir)
    lake, truth_dir = data_dir / "lake", data_dir / "truth"
    columns = ["customer_id", "birth_year", "income_band", "card_tier", "acquisition_channel"]
    customers = storage.read_table(
        lake, "customers", columns=[*columns, "repayment_due_day", "closed_date"]
    ).set_index("customer_id")
    missing = np.setdiff1d(ids, customers.index.to_numpy())
    if missing.size:
        raise ValueError(
            f"{missing.size} target customer(s) are not in lake/customers, e.g. {missing[:3].tolist()}"
        )
    rows = customers.loc[ids]
    state, month = hidden_states(truth_dir, ids, when)
    app = storage.read_table(lake, "app_events", months=[month], columns=["customer_id"])["customer_id"]
    closed = rows["closed_date"]
    return Audience(
        customer_id=ids,
        holdout=np.zeros(ids.size, dtype=bool) if holdout is None else holdout,
        age=when.year - rows["birth_year"].to_numpy(np.int64),
        income_band=_codes(rows["income_band"], "income_band"),
        card_tier=_codes(rows["card_tier"], "card_tier"),
        acquisition_channel=_codes(rows["acquisition_channel"], "acquisition_channel"),
        repayment_due_day=rows["repayment_due_day"].to_numpy(np.int64),
        state=state,
        closed_us=np.where(
            closed.isna(), np.iinfo(np.int64).max, closed.to_numpy("datetime64[us]").astype(np.int64)
        ),
        has_app=np.isin(ids, app.to_numpy(np.int64)),
    )


def simulate_run_responses(
    data_dir: Path,
    campaign_id: str,
    targets: pd.DataFrame,
    *,
    channel: str,
    selected_at: pd.Timestamp,
    seed: int,
    kind: str = "winback",
) -> dict:
    """Stand-in for the CRM's response feed after a platform run's response window: draw the run's contacts and
    responses with the same treatment-effect model as the generator, and write them to the lake
    (``campaign_contacts``, ``responses``) and their truth to ``truth/campaigns``, all under ``campaign_id``.

    ``targets`` has ``customer_id`` and ``target_group`` (treatment/holdout). Deterministic for the same inputs;
    a rerun replaces the run's files. Returns counts and the true lift (mean p_treated - p_control).
    """
    from pipelines.data import storage

    data_dir = Path(data_dir)
    lake, truth_dir = data_dir / "lake", data_dir / "truth"
    if not (truth_dir / "churn").is_dir():
        raise FileNotFoundError(
            f"{truth_dir / 'churn'} is absent: responses can only be simulated for a generated bank"
        )
    selected = pd.Timestamp(selected_at)
    ids = targets["customer_id"].to_numpy(np.int64)
    audience = lake_audience(
        data_dir, ids, selected, holdout=(targets["target_group"].astype(str) == "holdout").to_numpy()
    )
    selected_us = selected.value // 1000 + 9 * US_PER_HOUR
    campaign = Campaign(campaign_id, kind, channel, selected_us)
    rng = np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(campaign_id.encode())]))
    end_us = selected_us + RESPONSE_HORIZON_DAYS * US_PER_DAY
    contacts, events, truth = draw_campaign(rng, campaign, audience, seed, end_us)
    tables = campaign_tables([(campaign, contacts, events, truth)])
    # One part number per run, beyond the generator's chunk numbers, so a rerun replaces exactly its own files.
    part = 50_000 + zlib.crc32(campaign_id.encode()) % 40_000
    specs = (TABLES["campaign_contacts"], TABLES["responses"], CAMPAIGN_TRUTH)
    for table, root, spec in zip(tables, (lake, lake, truth_dir), specs, strict=True):
        storage.remove_part(root, spec.name, part)
        storage.write_partitioned(table, spec, root, part)
    tau = truth["p_treated"] - truth["p_control"]
    converted = tables[1].filter(pc.equal(tables[1]["event_type"].cast(pa.string()), "converted"))
    return {
        "campaign_id": campaign_id,
        "contacts": int(ids.size),
        "treated": int((~audience.holdout).sum()),
        "conversions": converted.num_rows,
        "true_lift": float(tau.mean()),
    }


def _codes(column: pd.Series, name: str) -> np.ndarray:
    values = TABLES["customers"].column(name).allowed
    codes = pd.Categorical(column.astype(str), categories=list(values)).codes
    if (codes < 0).any():
        raise ValueError(f"lake/customers.{name} holds values outside {values}")
    return codes.astype(np.int64)
