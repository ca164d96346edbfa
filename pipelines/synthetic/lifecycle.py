"""The hidden lifecycle of the synthetic bank's customers, and the churn ground truth that follows from it.

A monthly Markov chain moves each customer through ``new -> active -> loyal -> dormant -> churned``, with
transition probabilities scaled by the customer's churn-risk multiplier (:func:`transition_matrices`). Closure
happens on a uniform day of the month in which the chain enters ``churned`` (:func:`closure_dates`). Because each
customer's transition matrix is known, the probability that the account is closed within 90 and 150 days after a
month end follows exactly from matrix powers (:func:`churn_probabilities`, :func:`churn_truth_table`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from pipelines.data.schema import CHURN_TRUTH
from pipelines.synthetic import campaigns as sc
from pipelines.synthetic.draws import draw

if TYPE_CHECKING:
    from pipelines.synthetic.bank import SynthConfig

# Lifecycle states of the hidden Markov chain.
NEW, ACTIVE, LOYAL, DORMANT, CHURNED = range(5)
STATE_NAMES = ("new", "active", "loyal", "dormant")
NOT_YET = -1  # before signup
# Caps of the monthly probability of falling dormant, by state (new, active, loyal): high-risk customers saturate.
DORMANT_CAPS = {NEW: 0.3, ACTIVE: 0.3, LOYAL: 0.2}


def transition_matrices(risk: np.ndarray) -> np.ndarray:
    """Monthly transition matrices (n, 5, 5) over (new, active, loyal, dormant, churned) for risk multipliers."""
    n = risk.size
    t = np.zeros((n, 5, 5))
    r = risk
    t[:, NEW, ACTIVE] = 0.3
    t[:, NEW, DORMANT] = np.minimum(0.05 * r, DORMANT_CAPS[NEW])
    t[:, NEW, CHURNED] = np.minimum(0.008 * r, 0.1)
    t[:, ACTIVE, LOYAL] = 0.035
    t[:, ACTIVE, DORMANT] = np.minimum(0.022 * r, DORMANT_CAPS[ACTIVE])
    t[:, ACTIVE, CHURNED] = np.minimum(0.002 * r, 0.05)
    t[:, LOYAL, ACTIVE] = 0.02
    t[:, LOYAL, DORMANT] = np.minimum(0.008 * r, DORMANT_CAPS[LOYAL])
    t[:, LOYAL, CHURNED] = np.minimum(0.0008 * r, 0.02)
    t[:, DORMANT, ACTIVE] = 0.1
    t[:, DORMANT, CHURNED] = np.minimum(0.2 * np.sqrt(r), 0.6)
    for s in range(4):
        t[:, s, s] = 1.0 - t[:, s, :].sum(axis=1)
    t[:, CHURNED, CHURNED] = 1.0
    return t


def simulate_states(
    rng: np.random.Generator,
    cust: dict,
    config: SynthConfig,
    shifted: np.ndarray | None = None,
    first_shifted: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Hidden state per customer and month (n, months); NOT_YET before signup, CHURNED from the closure month.

    With ``shifted`` (matrices like ``cust["_transition"]``), the steps into month ``first_shifted`` and later use
    them instead: a behaviour shift (:mod:`~pipelines.synthetic.shift`). The random draws are the same either way.
    """
    n = cust["customer_id"].size
    signup_month = _period_offsets(cust["signup_date"], config)
    tenure_months = -signup_month  # for customers who predate the data
    initial = np.where(
        tenure_months < 3,
        NEW,
        draw(rng, np.array([0.0, 0.62, 0.26, 0.12]), n),
    )
    initial = np.where((tenure_months > 24) & (initial == ACTIVE) & (rng.random(n) < 0.25), LOYAL, initial)
    cum = np.cumsum(cust["_transition"], axis=2)
    cum[:, :, -1] = 1.0
    cum_shifted = cum if shifted is None else np.cumsum(shifted, axis=2)
    cum_shifted[:, :, -1] = 1.0
    states = np.full((n, config.months), NOT_YET, dtype=np.int8)
    current = np.where(signup_month <= 0, initial, NOT_YET).astype(np.int8)
    for m in range(config.months):
        if m > 0:
            prev = states[:, m - 1]
            moving = prev >= 0
            u = rng.random(n)
            rows = (cum_shifted if m >= first_shifted else cum)[np.arange(n), np.clip(prev, 0, 4)]
            nxt = (u[:, None] >= rows).sum(axis=1).astype(np.int8)
            current = np.where(moving, nxt, current)
        current = np.where(signup_month == m, NEW, current).astype(np.int8)
        states[:, m] = current
    return states, signup_month


def behaving_states(states: np.ndarray, m: int) -> np.ndarray:
    """The state that drives behaviour in month ``m``: its state, but in the closure month the state before it."""
    return np.where(states[:, m] == CHURNED, states[:, m - 1] if m else NOT_YET, states[:, m])


def _period_offsets(dates: np.ndarray, config: SynthConfig) -> np.ndarray:
    """Months between each date's month and the first data month (negative before it)."""
    d = dates.astype("datetime64[M]").astype(np.int64)
    first = np.datetime64(pd.Period(config.start, freq="M").start_time.date(), "M").astype(np.int64)
    return (d - first).astype(np.int64)


def closure_dates(rng: np.random.Generator, states: np.ndarray, month_starts: pd.DatetimeIndex) -> np.ndarray:
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
# Ground truth


MAX_HORIZON_MONTHS = 7  # enough months to cover 150 days from any month end


def closure_entry_probabilities(
    transition: np.ndarray,
    months: int = MAX_HORIZON_MONTHS,
    shifted: np.ndarray | None = None,
    first_shifted: int = 0,
) -> np.ndarray:
    """P(chain enters ``churned`` exactly k months ahead), per customer and starting state: (n, 4, months).

    Entry k = 0 is one month ahead. The transition matrix is fixed per customer, so this is computed once and
    serves every month end. With ``shifted``, steps ``k >= first_shifted`` use those matrices instead: the
    time-varying chain of a behaviour shift, exact for a month end whose horizon crosses the shift month.
    """
    n = transition.shape[0]
    dist = np.zeros((n, 4, 5))
    dist[:, np.arange(4), np.arange(4)] = 1.0
    entered = np.empty((n, 4, months))
    for k in range(months):
        new_dist = dist @ (shifted if shifted is not None and k >= first_shifted else transition)
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


def churn_truth_table(cust, states, entry, m, open_idx, month_starts) -> pa.Table:
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
