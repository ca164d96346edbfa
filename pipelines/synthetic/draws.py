"""Categorical draws shared by the synthetic bank's generators (one uniform per draw, so the order of draws is
the order of calls)."""

from __future__ import annotations

import numpy as np


def draw(rng: np.random.Generator, probs: np.ndarray, n: int) -> np.ndarray:
    """n draws from one categorical distribution."""
    cum = np.cumsum(probs / probs.sum())
    cum[-1] = 1.0
    return np.searchsorted(cum, rng.random(n), side="right").astype(np.int64)


def draw_grouped(rng: np.random.Generator, probs: np.ndarray, group: np.ndarray) -> np.ndarray:
    """One draw per row from the categorical distribution ``probs[group[row]]`` (one searchsorted in all)."""
    n_groups, k = probs.shape
    cum = np.cumsum(probs / probs.sum(axis=1, keepdims=True), axis=1)
    cum[:, -1] = 1.0
    flat = (cum + np.arange(n_groups)[:, None]).ravel()
    idx = np.searchsorted(flat, group + rng.random(group.size), side="right") - group * k
    return np.minimum(idx, k - 1)
