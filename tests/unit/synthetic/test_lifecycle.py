"""The hidden lifecycle chain: the exact churn probabilities agree with a simulation of the chain."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.synthetic.lifecycle import churn_probabilities, transition_matrices


def test_churn_probabilities_match_a_simulation_of_the_chain():
    rng = np.random.default_rng(0)
    transition = transition_matrices(np.array([0.5, 1.0, 3.0]))
    month_end = pd.Timestamp("2025-01-31")
    exact = churn_probabilities(transition, month_end, 90)  # Feb 1 .. May 1: 28 + 31 + 30 + 1 days
    # Simulate: 4 months of chain steps, closure on a uniform day of the month of entry.
    n = 200_000
    cum = np.cumsum(transition, axis=2)
    for customer in range(3):
        for state in (1, 3):
            current = np.full(n, state)
            closed_within = np.zeros(n, bool)
            covered = 0
            for days in (28, 31, 30, 31):
                u = rng.random(n)
                nxt = (u[:, None] >= cum[customer][current]).sum(axis=1)
                entered = (nxt == 4) & (current != 4)
                day = rng.integers(0, days, n)
                closed_within |= entered & (covered + day < 90)
                current, covered = nxt, covered + days
            assert closed_within.mean() == pytest.approx(exact[customer, state], abs=0.004)
