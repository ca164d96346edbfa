"""Hand-made wide-table rows shared by the segment and persona tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

# An ordinary, transacting, mid-tenure customer: every stage test changes only what its rule looks at.
BASE = {
    "tenure_days": 400,
    "days_since_last_txn": 3.0,
    "days_since_last_login": 5.0,
    "txn_count_180d": 30.0,
    "spend_180d": 3000.0,
    "points_redemption_90d": 0.0,
    "aum_change_1m": 0.01,
    "installment_share_180d": 0.01,
    "cross_border_share_180d": 0.02,
    "coupon_view_90d": 1.0,
    "card_balance_last": 100.0,
    "spend_30d": 500.0,
    "credit_utilisation": 0.05,
}


def wide_frame(rows: list[dict]) -> pd.DataFrame:
    """One wide-table row per dict: BASE with the dict's changes; customer ids 1, 2, ..."""
    frame = pd.DataFrame([{**BASE, **r} for r in rows])
    frame.insert(0, "customer_id", np.arange(1, len(rows) + 1, dtype=np.int64))
    return frame


GROUPS = {
    # trait -> inputs that set the group apart from the ordinary customer in BASE
    "installment-heavy": {"installment_share_180d": 0.3},
    "cross-border traveller": {"cross_border_share_180d": 0.6},
    "points collector": {"points_redemption_90d": 12.0},
    "coupon hunter": {"coupon_view_90d": 40.0},
    "revolver": {"card_balance_last": 450.0},  # 90 % of spend_30d carried
    "low-engagement": {"coupon_view_90d": 0.0},
}


def persona_frame(per_group: int = 80, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """``per_group`` customers of each of GROUPS, shuffled, and the trait each was built with."""
    rng = np.random.default_rng(seed)
    rows, truth = [], []
    for trait, change in GROUPS.items():
        for _ in range(per_group):
            row = {**BASE, **change}
            for k in ("installment_share_180d", "cross_border_share_180d", "credit_utilisation"):
                row[k] = max(0.0, row[k] * (1 + 0.1 * rng.standard_normal()))
            row["card_balance_last"] *= 1 + 0.1 * rng.standard_normal()
            rows.append(row)
            truth.append(trait)
    frame = wide_frame(rows)
    order = rng.permutation(len(frame))
    return frame.iloc[order].reset_index(drop=True), np.asarray(truth)[order]
