"""Monthly behaviour of the synthetic bank's customers: transactions, app events and month-end balances.

* Transactions: Poisson counts per customer-month (state x month seasonality), days drawn from weights that
  combine weekday, holiday (late-November sales, Christmas) and salary-day effects, log-normal amounts by
  category and customer, persona-driven categories, cross-border, instalment and channel flags.
* App events: logins, bill views that bunch before the repayment due day, coupon views, points redemptions,
  card binding (mostly new customers), instalment applications. Each event's coarse location
  (:func:`draw_event_places`): mostly around the home city's centre, some at a branch of it, a few in another
  city; none for customers who do not share their location.
* Balances: month-end assets under management (growing when engaged, flowing out when dormant) and the card
  balance (that month's spend times a customer's revolving share, capped by the limit).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from pipelines.data import places
from pipelines.data.schema import APP_EVENT_TYPES, MERCHANT_CATEGORIES, TABLES, TXN_CHANNELS
from pipelines.synthetic import campaigns as sc
from pipelines.synthetic.customers import CUSTOMER_ID_BASE, HOME_CITY_WEIGHTS
from pipelines.synthetic.draws import draw, draw_grouped
from pipelines.synthetic.lifecycle import CHURNED, LOYAL, NEW

if TYPE_CHECKING:
    from pipelines.synthetic.bank import SynthConfig

# Behaviour multipliers by state (new, active, loyal, dormant).
TXN_RATE_BY_STATE = np.array([0.75, 1.0, 1.3, 0.3])
AMOUNT_SHIFT_BY_STATE = np.array([-0.05, 0.0, 0.1, -0.25])
LOGIN_RATE_BY_STATE = np.array([1.2, 1.0, 1.15, 0.2])
AUM_GROWTH_BY_STATE = np.array([1.03, 1.004, 1.008, 0.82])

MONTH_SEASONALITY = np.array([0.88, 0.9, 0.98, 1.0, 1.0, 1.02, 1.06, 1.06, 0.98, 1.0, 1.1, 1.3])
WEEKDAY_WEIGHT = np.array([0.9, 0.92, 0.95, 1.0, 1.15, 1.28, 0.95])  # Monday .. Sunday
SALARY_DAYS = np.array([1, 15, 25])
SALARY_BUMP = 1.35  # spend on the salary day and the three days after it

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

# Where an app event happens: around the home city's centre, at one of its branches, or in another city (travel,
# drawn by HOME_CITY_WEIGHTS); spread (standard deviation per axis) around the centre or the branch, in km.
EVENT_PLACE_SHARES = np.array([0.8, 0.12, 0.08])  # home, at a branch, another city
HOME_SPREAD_KM = 3.0
BRANCH_SPREAD_KM = 0.3
KM_PER_DEGREE_LAT = 111.2
_CITY_LAT = np.array([c.lat for c in places.CITIES])
_CITY_LON = np.array([c.lon for c in places.CITIES])
_CITY_COS_LAT = np.cos(np.radians(_CITY_LAT))  # km per degree of longitude, over KM_PER_DEGREE_LAT
_BRANCH_LAT = np.array([b.lat for b in places.BRANCHES])
_BRANCH_LON = np.array([b.lon for b in places.BRANCHES])
# A city's branches are consecutive in places.BRANCHES: the first one's index and how many, per city index.
_CITY_BRANCH_FIRST = np.array(
    [next(i for i, b in enumerate(places.BRANCHES) if b.city == c.name) for c in places.CITIES]
)
_CITY_BRANCH_COUNT = np.array([sum(b.city == c.name for b in places.BRANCHES) for c in places.CITIES])
_TRAVEL_WEIGHTS = np.array([HOME_CITY_WEIGHTS[c.name] for c in places.CITIES], dtype=float)


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
    hour = draw(rng, hour_weight, day.size)
    seconds = hour * 3600 + rng.integers(0, 3600, day.size)
    return start.value // 1000 + day * sc.US_PER_DAY + seconds * 1_000_000


def draw_transactions(rng, cust, behaving, alive, m, start, days) -> dict[str, np.ndarray]:
    season = MONTH_SEASONALITY[start.month - 1]
    rate = np.where(alive, cust["_txn_rate"] * TXN_RATE_BY_STATE[np.clip(behaving, 0, 3)] * season, 0.0)
    counts = rng.poisson(rate * days / 30.4)
    idx = np.repeat(np.arange(rate.size), counts)
    day = draw_grouped(rng, _day_weights(start, days), cust["_salary_group"][idx])
    ts = _timestamps(rng, start, day, HOUR_WEIGHT)
    category = draw_grouped(rng, PERSONA_CATEGORY_MIX, cust["_persona"][idx])
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
    channel = draw_grouped(rng, CHANNEL_MIX, channel_group)
    return {
        "idx": idx,
        "txn_ts": ts,
        "amount": amount,
        "merchant_category": category,
        "is_cross_border": is_cross_border,
        "is_installment": is_installment,
        "channel": channel,
    }


def draw_app_events(rng, cust, behaving, alive, m, start, days) -> dict[str, np.ndarray]:
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


def draw_event_places(
    rng: np.random.Generator, idx: np.ndarray, home: np.ndarray, shares_location: np.ndarray
) -> dict[str, np.ndarray]:
    """``lat`` and ``lon`` of app events of customers ``idx`` (rows of ``home``, their home city indices, and of
    ``shares_location``), rounded to 2 decimals (about 1 km); NaN where the customer does not share the location.

    :data:`EVENT_PLACE_SHARES` of the located events happen around the home city's centre, at one of its branches,
    or in another city. ``rng`` is the month's place stream; only located events draw from it.
    """
    lat = np.full(idx.size, np.nan)
    lon = np.full(idx.size, np.nan)
    located = np.flatnonzero(shares_location[idx])
    city = home[idx[located]]
    where = draw(rng, EVENT_PLACE_SHARES, located.size)
    at_branch = np.flatnonzero(where == 1)
    away = np.flatnonzero(where == 2)
    n_cities = len(places.CITIES)
    other = draw(rng, _TRAVEL_WEIGHTS, away.size)
    # a trip drawn to the home city goes to a uniformly drawn other city instead
    other = np.where(other == city[away], (other + rng.integers(1, n_cities, away.size)) % n_cities, other)
    centre = city.copy()
    centre[away] = other
    y, x = _CITY_LAT[centre], _CITY_LON[centre]
    spread = np.full(located.size, HOME_SPREAD_KM / KM_PER_DEGREE_LAT)
    branch = _CITY_BRANCH_FIRST[city[at_branch]] + (
        rng.random(at_branch.size) * _CITY_BRANCH_COUNT[city[at_branch]]
    ).astype(np.int64)
    y[at_branch], x[at_branch] = _BRANCH_LAT[branch], _BRANCH_LON[branch]
    spread[at_branch] = BRANCH_SPREAD_KM / KM_PER_DEGREE_LAT
    noise = rng.standard_normal((2, located.size)) * spread
    lat[located] = np.round(y + noise[0], 2)
    lon[located] = np.round(x + noise[1] / _CITY_COS_LAT[centre], 2)
    return {"lat": lat, "lon": lon}


def keep_active(events: dict, ts_col: str, signup_us: np.ndarray, closed_us: np.ndarray) -> dict:
    """Drop events before the customer's signup or from the closure day on."""
    idx = events["idx"]
    keep = (events[ts_col] >= signup_us[idx]) & (events[ts_col] < closed_us[idx])
    return {k: v[keep] for k, v in events.items()}


def _event_ids(config: SynthConfig, chunk: int, m: int, count: int) -> np.ndarray:
    """Unique, deterministic ids: month, chunk and row packed into one int64."""
    return ((m + 1) * 100_000 + chunk) * 10_000_000 + np.arange(count, dtype=np.int64)


def transactions_table(txn, config, chunk, m, first, n) -> tuple[pa.Table, np.ndarray]:
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


def app_events_table(events, config, chunk, m, first) -> pa.Table:
    order = np.argsort(events["event_ts"])
    events = {k: v[order] for k, v in events.items()}
    return pa.table(
        {
            "event_id": pa.array(_event_ids(config, chunk, m, order.size)),
            "customer_id": pa.array(CUSTOMER_ID_BASE + first + events["idx"].astype(np.int64)),
            "event_ts": pa.array(events["event_ts"].astype("datetime64[us]")),
            "event_type": sc.dict_array(events["event_type"], APP_EVENT_TYPES),
            "lat": pa.array(events["lat"], mask=np.isnan(events["lat"])),
            "lon": pa.array(events["lon"], mask=np.isnan(events["lon"])),
        },
        schema=TABLES["app_events"].arrow_schema,
    )


def month_end_balances(
    rng: np.random.Generator,
    cust: dict,
    state: np.ndarray,
    signup_month: np.ndarray,
    aum: np.ndarray,
    spend: np.ndarray,
    m: int,
    start: pd.Timestamp,
) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """``(balances table, aum, open_idx)`` for month ``m``: the month-end positions of the customers open at its end
    (``open_idx``, their row indices), and every customer's assets under management carried to the month end.

    ``state`` is each customer's state during month ``m``; ``aum`` the positions at the end of the month before
    (a customer who signs up in month ``m`` or later keeps the starting position). The card balance is the
    month's ``spend`` times the customer's revolving share, capped by the credit limit.
    """
    n = state.size
    open_at_end = (state >= 0) & (state != CHURNED)
    growth = AUM_GROWTH_BY_STATE[np.clip(state, 0, 3)] * np.exp(rng.normal(0.0, 0.04, n))
    aum = np.where(signup_month >= m, aum, aum * growth)
    month_end = (start + pd.offsets.MonthEnd(0)).date()
    open_idx = np.flatnonzero(open_at_end)
    card_balance = np.minimum(spend[open_idx] * cust["_revolve"][open_idx], cust["credit_limit"][open_idx])
    table = pa.table(
        {
            "customer_id": pa.array(cust["customer_id"][open_idx]),
            "month_end": pa.array(np.full(open_idx.size, np.datetime64(month_end, "D"))),
            "aum": pa.array(np.round(aum[open_idx], 2)),
            "card_balance": pa.array(np.round(card_balance, 2)),
        },
        schema=TABLES["balances"].arrow_schema,
    )
    return table, aum, open_idx
