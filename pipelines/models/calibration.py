"""Calibration of a booster's raw score into a probability, kept apart from the ranking.

The booster's raw score (log-odds) is what ranks customers: AUC, lift, gains and deciles are measured on it. The
calibrator only turns it into a probability, always with a strictly increasing function, so it can neither
reorder customers nor tie two customers whose raw scores differ.

- ``platt``: ``sigmoid(a * raw + b)``, a logistic regression on the validation scores (two parameters); a slope
  below :data:`MIN_PLATT_SLOPE` (a booster no better than chance there) is raised to it, at the base rate.
- ``isotonic``: centred isotonic regression (Oron & Flournoy, 2017). Plain isotonic regression is a step function:
  a few dozen steps tie thousands of customers, cost AUC against the raw score, and put probabilities of exactly
  0 and 1 on its end blocks (a top score of 1.0, an infinite log-loss on one surprise). Here each isotonic block
  becomes one point, (mean raw score of its rows, its positive rate), and the map interpolates linearly between
  the points; beyond the first and last point it continues in log-odds with the small slope :data:`TAIL_SLOPE`.
  Only the first block can have rate 0 and only the last rate 1 (block rates strictly increase): such a block
  counts half a positive (half a negative), ``0.5 / size`` from 0, kept inside its neighbour's rate. Strictly
  increasing everywhere, always in (0, 1).
- ``auto``: isotonic when the calibration frame has at least :data:`AUTO_ISOTONIC_MIN_CASES` rows of its rarer
  class, Platt otherwise (:func:`choose_calibration`).

Models pickled before this module stored isotonic calibrators as step thresholds (``x``, ``y``):
:func:`apply_calibrator` still applies them exactly as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

CALIBRATIONS = ("auto", "isotonic", "platt")

# Isotonic regression fits one free rate per block, and the number of blocks grows with the rarer class, so its
# estimates are only as good as the count of that class; Platt fits two parameters and is biased only as far as
# the booster's log-odds are not linear in the true ones (small for a LightGBM fitted on log-loss). Niculescu-Mizil
# and Caruana (ICML 2005) found isotonic overfits and loses to Platt below about 1000 calibration cases and matches
# or beats it above; for a rare outcome the count that matters is the rarer class's, hence 1000 of it. Measured on
# the UCI bank-marketing table (11 % positives; calibrators fitted on 20 draws of n positives, test log-loss of
# 12k rows), isotonic minus Platt: +0.0019 at 200, +0.0003 at 700, +0.0001 at 1000, -0.0002 at 1300 positives.
AUTO_ISOTONIC_MIN_CASES = 1000

# Log-odds per unit of raw score beyond the outermost isotonic block centres: small enough to leave the end
# blocks' rates in place (odds change 0.1 % per unit of raw log-odds), large enough that distinct raw scores
# keep distinct probabilities in float64.
TAIL_SLOPE = 1e-3


# The smallest Platt slope fitted: a map must rise with the raw score (see fit_calibrator).
MIN_PLATT_SLOPE = 1e-6


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _logit(p: float) -> float:
    return float(np.log(p / (1.0 - p)))


def choose_calibration(requested: str, y: np.ndarray) -> str:
    """The calibration to fit on labels ``y``: ``requested`` itself, or for ``auto`` isotonic when the rarer class
    of ``y`` has at least :data:`AUTO_ISOTONIC_MIN_CASES` rows and Platt otherwise."""
    if requested not in CALIBRATIONS:
        raise ValueError(f"calibration must be one of {', '.join(CALIBRATIONS)}, got {requested!r}")
    if requested != "auto":
        return requested
    positives = int(np.sum(y))
    rarer = min(positives, len(y) - positives)
    return "isotonic" if rarer >= AUTO_ISOTONIC_MIN_CASES else "platt"


def fit_calibrator(kind: str, raw: np.ndarray, y: np.ndarray, seed: int) -> dict[str, Any]:
    """The parameters of a ``kind`` (``platt`` or ``isotonic``) calibrator fitted on raw scores ``raw`` and 0/1
    labels ``y``, for :func:`apply_calibrator`."""
    raw = np.asarray(raw, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if kind == "platt":
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=1e6, solver="lbfgs", random_state=seed).fit(raw.reshape(-1, 1), y)
        a, b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
        if a < MIN_PLATT_SLOPE:
            # A booster that ranks no better than chance (or backwards) on the calibration frame: a falling map
            # would reorder its customers. Keep the order, and say what is known: about the base rate for all.
            a = MIN_PLATT_SLOPE
            b = _logit(float(np.clip(y.mean(), 1e-6, 1 - 1e-6))) - a * float(raw.mean())
        return {"a": a, "b": b}
    if kind != "isotonic":
        raise ValueError(f"no calibrator of kind {kind!r} (platt or isotonic)")
    return _fit_centred_isotonic(raw, y)


def _fit_centred_isotonic(raw: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    from sklearn.isotonic import isotonic_regression

    values, inverse, counts = np.unique(raw, return_inverse=True, return_counts=True)
    positives = np.bincount(inverse, weights=y)
    fitted = isotonic_regression(positives / counts, sample_weight=counts, increasing=True)
    # PAVA writes one value over each pooled block: a block ends where the fitted value changes.
    block = np.concatenate([[0], np.cumsum(np.diff(fitted) != 0)])
    size = np.bincount(block, weights=counts)
    centres = np.bincount(block, weights=values * counts) / size
    rates = np.bincount(block, weights=positives) / size
    if rates[0] == 0.0:
        rates[0] = min(0.5 / size[0], rates[1] / 2 if len(rates) > 1 else 0.5)
    if rates[-1] == 1.0:
        rates[-1] = max(1.0 - 0.5 / size[-1], (1.0 + rates[-2]) / 2 if len(rates) > 1 else 0.5)
    return {"centres": centres, "rates": rates, "tail_slope": TAIL_SLOPE}


def apply_calibrator(kind: str, params: Mapping[str, Any], raw: np.ndarray) -> np.ndarray:
    """Probabilities of raw scores ``raw`` under a calibrator of :func:`fit_calibrator` (or a step-threshold
    isotonic calibrator of a model pickled before centred isotonic calibration)."""
    raw = np.asarray(raw, dtype=np.float64)
    if kind == "platt":
        return _sigmoid(params["a"] * raw + params["b"])
    if "x" in params:  # a pre-centred isotonic calibrator: steps, clipped outside the fitted range as before
        return np.interp(raw, params["x"], params["y"])
    centres, rates, slope = params["centres"], params["rates"], params["tail_slope"]
    p = np.interp(raw, centres, rates)
    below, above = raw < centres[0], raw > centres[-1]
    p[below] = _sigmoid(_logit(rates[0]) - slope * (centres[0] - raw[below]))
    p[above] = _sigmoid(_logit(rates[-1]) + slope * (raw[above] - centres[-1]))
    return p


__all__ = [
    "AUTO_ISOTONIC_MIN_CASES",
    "CALIBRATIONS",
    "MIN_PLATT_SLOPE",
    "TAIL_SLOPE",
    "apply_calibrator",
    "choose_calibration",
    "fit_calibrator",
]
