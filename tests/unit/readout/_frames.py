"""Frames shared by the readout tests: a two-arm experiment and a hand-made campaign in the lake's shape."""

from __future__ import annotations

import numpy as np
import pandas as pd


def experiment(n=20_000, treated_share=0.9, p1=0.03, p0=0.02, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    treated = rng.random(n) < treated_share
    decile = rng.integers(1, 11, n)
    # decile 10 does not respond to the contact at all
    p = np.where(treated & (decile < 10), p1, p0)
    return pd.DataFrame(
        {
            "arm": np.where(treated, "B", "A"),
            "bought": (rng.random(n) < p).astype(int),
            "decile": decile,
            "region": rng.choice(["north", "south"], n),
        }
    )


def lake_frames():
    contacts = pd.DataFrame(
        {
            "campaign_id": ["c1"] * 6 + ["c2"],
            "customer_id": [1, 2, 3, 4, 5, 6, 1],
            "channel": ["sms"] * 7,
            "group": ["treatment"] * 4 + ["holdout"] * 2 + ["treatment"],
            "selected_at": pd.Timestamp("2025-03-01"),
            "sent_at": [pd.Timestamp("2025-03-01 10:00")] * 4 + [pd.NaT] * 2 + [pd.Timestamp("2025-04-01")],
        }
    )
    utm = {
        "utm_source": "sms",
        "utm_medium": "crm",
        "utm_campaign": "c1",
        "utm_content": "v1",
        "utm_term": "x",
    }
    rows = []
    for customer, events in {1: 8, 2: 4, 3: 2}.items():  # customer 1 converts, 2 visits, 3 opens
        for e in ("delivered", "opened", "clicked", "visited", "app_installed", "registered", "card_bound")[
            : min(events, 7)
        ]:
            rows.append({"customer_id": customer, "event_type": e})
    rows.append({"customer_id": 1, "event_type": "converted"})
    rows.append({"customer_id": 5, "event_type": "converted"})  # holdout converts on its own
    rows.append({"customer_id": 9, "event_type": "converted"})  # not a contact of c1
    responses = pd.DataFrame(rows).assign(campaign_id="c1", event_ts=pd.Timestamp("2025-03-02"))
    for col, value in utm.items():
        tracked = responses["event_type"].isin(["clicked", "visited", "registered", "card_bound"]) | (
            (responses["customer_id"] == 1) & (responses["event_type"] == "converted")
        )
        responses[col] = np.where(tracked, value, None)
    responses.loc[(responses["customer_id"] == 2) & responses["utm_content"].notna(), "utm_content"] = "v2"
    other = pd.DataFrame(
        [
            {
                "campaign_id": "c2",
                "customer_id": 1,
                "event_type": "delivered",
                "event_ts": pd.Timestamp("2025-04-02"),
            }
        ]
    )
    return contacts, pd.concat([responses, other], ignore_index=True)
