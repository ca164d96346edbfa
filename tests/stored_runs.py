"""A stored campaign run for tests that need one in the campaign database (exports, failed reruns)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import pandas as pd
from sqlalchemy import Engine

from pipelines.campaigns import store, store_frames


def store_run(
    engine: Engine,
    run_id: str,
    campaign: str,
    day: date,
    customer_ids: Sequence[int],
    *,
    holdout: int = 2,
    channel: str = "sms",
) -> pd.DataFrame:
    """Write a succeeded run of ``campaign`` scored by churn v1: the customers in rank order, the last ``holdout``
    of them in the holdout group, no exclusions. Returns the targets written."""
    n = len(customer_ids)
    targets = pd.DataFrame(
        {
            "customer_id": customer_ids,
            "score": [0.9 - 0.05 * i for i in range(n)],
            "decile": [1] * n,
            "rank": range(1, n + 1),
            "target_group": ["treatment"] * (n - holdout) + ["holdout"] * holdout,
            "channel": channel,
            "reason_1": "days_since_last_login",
            "reason_2": None,
            "reason_3": None,
            "rfm_segment": "At risk",
            "value_tier": "mid",
            "lifecycle_stage": "dormant",
            "persona": "revolver",
        }
    )
    run = store_frames.RunRecord(run_id, campaign, day, "churn", "1")
    store.write_run(
        engine, run, targets, targets.iloc[:0][["customer_id"]].assign(exclusion_reason="", detail="")
    )
    return targets
