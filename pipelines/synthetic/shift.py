"""Behaviour shifts: the synthetic bank "moves" from a given month on, with the truth of the move recorded.

A model monitor needs data whose behaviour changes at a known time, by a known amount. ``SynthConfig.shift``
names one of two kinds, starting at ``shift_month``:

* ``dormancy``: a competitor's offer raises the hazard of falling dormant for one segment visible to the features,
  customers younger than 35 (shift year minus ``birth_year``): their monthly probabilities new -> dormant,
  active -> dormant and loyal -> dormant are multiplied by ``shift_factor`` (default 5), within the chain's caps
  (:data:`~pipelines.synthetic.lifecycle.DORMANT_CAPS`), the rest of each row left as it was and the stay
  probability taking up the difference. The churn truth stays exact: the probabilities at a month end whose
  horizon crosses the shift month chain the old matrices up to it and the shifted ones after it.
* ``spend``: a price change; from the shift month on every transaction amount is multiplied by ``shift_factor``
  (default 1.3). Transaction counts, the lifecycle and the churn truth are unchanged. (Instalments follow the
  amount, so their share rises with it.)

Both or neither of ``shift_month`` and ``shift`` must be given. Without a shift this module only routes the
unshifted path's calls, in their order, so the output is byte-identical to a bank generated without it.

With a shift, everything before the shift month is identical to the unshifted bank with the same seed, and the
shifted world draws the same random numbers as the unshifted one at each stage (common random numbers): a
dormancy shift changes how many transactions and contacts are drawn after it, so each later stage of the shifted
world draws from a copy of the generator, while the generator itself is advanced by the unshifted world's
draws (discarded). Campaigns selected before the shift month and the customers' PII therefore stay the same.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pipelines.synthetic.behaviour import draw_app_events, draw_transactions, month_end_balances
from pipelines.synthetic.lifecycle import (
    ACTIVE,
    CHURNED,
    DORMANT,
    DORMANT_CAPS,
    LOYAL,
    MAX_HORIZON_MONTHS,
    NEW,
    behaving_states,
    closure_dates,
    closure_entry_probabilities,
    simulate_states,
)

if TYPE_CHECKING:
    from pipelines.synthetic.bank import SynthConfig

SHIFT_KINDS = ("dormancy", "spend")
DEFAULT_FACTORS = {"dormancy": 5.0, "spend": 1.3}
SEGMENT_MAX_AGE = 35  # the dormancy shift hits customers younger than this in the shift year


def validate_shift(config: SynthConfig) -> None:
    """Raise ``ValueError`` naming the field when the shift fields of ``config`` are inconsistent."""
    if (config.shift_month is None) != (config.shift is None):
        raise ValueError(
            "shift_month and shift must be given together (or neither), "
            f"got shift_month={config.shift_month!r}, shift={config.shift!r}"
        )
    if config.shift is None:
        if config.shift_factor is not None:
            raise ValueError(f"shift_factor needs a shift, got shift_factor={config.shift_factor!r}")
        return
    if config.shift not in SHIFT_KINDS:
        raise ValueError(f"shift must be one of {', '.join(SHIFT_KINDS)}, got {config.shift!r}")
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", config.shift_month):
        raise ValueError(f"shift_month must be a month YYYY-MM, got {config.shift_month!r}")
    last = pd.Period(config.start, freq="M") + (config.months - 1)
    if not 1 <= shift_index(config) <= config.months - 1:
        raise ValueError(
            f"shift_month must be inside the data and not its first month "
            f"(after {config.start}, at most {last}), got {config.shift_month!r}"
        )
    factor = config.shift_factor
    if factor is not None and not (np.isfinite(factor) and factor > 0):
        raise ValueError(f"shift_factor must be a positive number, got {factor!r}")


def shift_index(config: SynthConfig) -> int:
    """The shift month as a 0-based month of the data."""
    return (pd.Period(config.shift_month, freq="M") - pd.Period(config.start, freq="M")).n


def shift_factor(config: SynthConfig) -> float:
    """The factor in force: ``shift_factor``, or the kind's default."""
    return float(DEFAULT_FACTORS[config.shift] if config.shift_factor is None else config.shift_factor)


def segment_description(config: SynthConfig) -> str:
    """Plain description of who the shift hits."""
    if config.shift == "spend":
        return "all customers"
    year = pd.Period(config.shift_month, freq="M").year
    return f"age < {SEGMENT_MAX_AGE} at {config.shift_month}-01 (birth_year > {year - SEGMENT_MAX_AGE})"


def in_segment(cust: dict, config: SynthConfig) -> np.ndarray:
    """Which customers the shift hits (boolean per customer)."""
    n = cust["customer_id"].size
    if config.shift == "spend":
        return np.ones(n, bool)
    year = pd.Period(config.shift_month, freq="M").year
    return year - cust["birth_year"].astype(np.int64) < SEGMENT_MAX_AGE


def shifted_transitions(transition: np.ndarray, hit: np.ndarray, factor: float) -> np.ndarray:
    """``transition`` (n, 5, 5) with the dormancy probabilities of the ``hit`` customers times ``factor``.

    Each new/active/loyal -> dormant probability is multiplied within its cap; the stay probability (diagonal)
    absorbs the difference, so rows still sum to one.
    """
    t = transition.copy()
    for state in (NEW, ACTIVE, LOYAL):
        raised = np.minimum(t[:, state, DORMANT] * factor, DORMANT_CAPS[state])
        t[:, state, DORMANT] = np.where(hit, raised, t[:, state, DORMANT])
        t[:, state, state] = 0.0
        t[:, state, state] = 1.0 - t[:, state, :].sum(axis=1)
    if (t[:, :4, :4].diagonal(axis1=1, axis2=2) < 0).any():
        raise ValueError(f"shift_factor {factor} leaves a negative stay probability")
    return t


def shift_record(config: SynthConfig, customers_affected: int) -> dict:
    """The truth of the shift, as written to ``truth/shift.json`` and the manifest."""
    return {
        "kind": config.shift,
        "month": config.shift_month,
        "factor": shift_factor(config),
        "segment": segment_description(config),
        "customers_affected": int(customers_affected),
    }


def _open(states: np.ndarray) -> np.ndarray:
    return (states >= 0) & (states != CHURNED)


class ChunkShift:
    """One chunk's view of the shift, asked by :func:`~pipelines.synthetic.bank.generate_chunk` at each stage.

    Without a shift every method makes exactly the unshifted path's calls on the generator it is given.
    """

    def __init__(self, config: SynthConfig, cust: dict) -> None:
        self.config = config
        self.kind = config.shift
        self.month = shift_index(config) if config.shift else config.months
        self.factor = shift_factor(config) if config.shift else 1.0
        self.hit = in_segment(cust, config) if config.shift else np.zeros(cust["customer_id"].size, bool)
        self.moves_chain = self.kind == "dormancy"
        self.transition_after = (
            shifted_transitions(cust["_transition"], self.hit, self.factor) if self.moves_chain else None
        )
        self.base_states: np.ndarray | None = None  # the unshifted world's states (dormancy only)
        self.base_closed_us: np.ndarray | None = None

    def lifecycle(self, rng: np.random.Generator, cust: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(states, signup_month, closed_date)`` of the shifted world; ``rng`` advanced as without a shift."""
        config = self.config
        if not self.moves_chain:
            states, signup_month = simulate_states(rng, cust, config)
            return states, signup_month, closure_dates(rng, states, config.month_starts)
        twin = copy.deepcopy(rng)
        self.base_states, _ = simulate_states(twin, cust, config)
        states, signup_month = simulate_states(rng, cust, config, self.transition_after, self.month)
        twin = copy.deepcopy(rng)
        self.base_closed_us = closed_us(closure_dates(twin, self.base_states, config.month_starts))
        return states, signup_month, closure_dates(rng, states, config.month_starts)

    def customers_affected(self, states: np.ndarray) -> int:
        """Customers in the segment with an account open at some time from the shift month on."""
        if self.kind is None:
            return 0
        s = self.month
        exposed = _open(states[:, s - 1]) | _open(states[:, s:]).any(axis=1)
        return int((exposed & self.hit).sum())

    def entry_probabilities(self, transition: np.ndarray) -> Callable[[int], np.ndarray]:
        """Closure-entry probabilities for the month end of each month ``m`` (a function of ``m``).

        Step ``k`` from the end of month ``m`` is the step into month ``m + 1 + k``: shifted when that month is
        the shift month or later.
        """
        before = closure_entry_probabilities(transition)
        if not self.moves_chain:
            return lambda m: before
        after = closure_entry_probabilities(self.transition_after)

        def at(m: int) -> np.ndarray:
            first_shifted = self.month - m - 1
            if first_shifted >= MAX_HORIZON_MONTHS:
                return before
            if first_shifted <= 0:
                return after
            return closure_entry_probabilities(
                transition, shifted=self.transition_after, first_shifted=first_shifted
            )

        return at

    def month_draws(
        self, rng: np.random.Generator, cust: dict, m: int, signup_month: np.ndarray
    ) -> tuple[np.random.Generator, dict]:
        """The generator and customer attributes the shifted world draws month ``m``'s behaviour with.

        Dormancy from the shift month on: a copy of ``rng``, which itself draws the unshifted world's month
        (discarded). Spend from the shift month on: log amounts raised by ``log(factor)``.
        """
        if m < self.month:
            return rng, cust
        if self.kind == "spend":
            return rng, cust | {"_log_amount": cust["_log_amount"] + np.log(self.factor)}
        twin = copy.deepcopy(rng)
        start = self.config.month_starts[m]
        days = start.days_in_month
        behaving = behaving_states(self.base_states, m)
        draw_transactions(rng, cust, behaving, behaving >= 0, m, start, days)
        draw_app_events(rng, cust, behaving, behaving >= 0, m, start, days)
        n = behaving.size
        month_end_balances(
            rng, cust, self.base_states[:, m], signup_month, np.zeros(n), np.zeros(n), m, start
        )
        return twin, cust

    def campaigns(self, rng: np.random.Generator, draw: Callable, states: np.ndarray, closed: np.ndarray):
        """``draw(generator, states, closed_us)`` for the shifted world; ``rng`` advanced as without a shift."""
        if not self.moves_chain:
            return draw(rng, states, closed)
        twin = copy.deepcopy(rng)
        draw(rng, self.base_states, self.base_closed_us)
        return draw(twin, states, closed)


def closed_us(closed_date: np.ndarray) -> np.ndarray:
    """Closure dates as microseconds since the epoch; int64 max when still open."""
    return np.where(
        np.isnat(closed_date), np.iinfo(np.int64).max, closed_date.astype("datetime64[us]").astype(np.int64)
    )
