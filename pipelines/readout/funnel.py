"""The funnel and the UTM channel quality of one campaign, from the lake's ``campaign_contacts`` and ``responses``.

- :func:`funnel` counts the customers reaching each stage (sent, then every response event) per group.
- :func:`channel_quality` counts visits, registrations and conversions per UTM combination.

Pure functions over DataFrames; the readout's statistics are in :mod:`pipelines.readout.stats`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.data.schema import RESPONSE_EVENTS

FUNNEL_STAGES = ("sent", *RESPONSE_EVENTS)
UTM_COLUMNS = ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term")
NO_UTM = "(none)"


def _campaign(frame: pd.DataFrame, campaign_id: str, what: str) -> pd.DataFrame:
    rows = frame[frame["campaign_id"] == campaign_id]
    if what == "campaign_contacts" and rows.empty:
        raise LookupError(f"campaign {campaign_id!r} has no rows in campaign_contacts")
    return rows


def funnel(contacts: pd.DataFrame, responses: pd.DataFrame, campaign_id: str) -> pd.DataFrame:
    """Customers reaching each stage, per group: ``sent`` (contacts with a send time) then every response event.

    Columns: group, stage, customers, stage_rate (over the previous stage), rate_from_sent, rate_from_selected
    (over the group's selected contacts; the holdout's only meaningful base, as it is never sent). Only
    responses of customers in the campaign's contacts count, each customer once per stage. Stages are reported
    as they happened: ``app_installed`` is a side step and ``converted`` includes organic conversions, so those
    two may exceed the stage before.
    """
    cont = _campaign(contacts, campaign_id, "campaign_contacts")[["customer_id", "group", "sent_at"]]
    resp = _campaign(responses, campaign_id, "responses")[["customer_id", "event_type"]]
    resp = resp.merge(cont[["customer_id", "group"]], on="customer_id", how="inner")
    group = cont["group"].astype(str)
    event = resp["event_type"].astype(str)
    rows = []
    for g in sorted(group.unique(), key=lambda v: (v != "treatment", v)):
        selected = int((group == g).sum())
        in_group = resp[resp["group"].astype(str) == g]
        counts = {"sent": int(cont.loc[(group == g).to_numpy(), "sent_at"].notna().sum())}
        for stage in RESPONSE_EVENTS:
            counts[stage] = int(
                in_group.loc[(event[in_group.index] == stage).to_numpy(), "customer_id"].nunique()
            )
        previous = None
        for stage in FUNNEL_STAGES:
            n = counts[stage]
            rows.append(
                {
                    "group": g,
                    "stage": stage,
                    "customers": n,
                    "stage_rate": n / previous if previous else np.nan,
                    "rate_from_sent": n / counts["sent"] if counts["sent"] else np.nan,
                    "rate_from_selected": n / selected if selected else np.nan,
                }
            )
            previous = n
    return pd.DataFrame(rows)


def channel_quality(responses: pd.DataFrame, contacts: pd.DataFrame, campaign_id: str) -> pd.DataFrame:
    """Visits → registrations → conversions per UTM source/medium/campaign/content/term of one campaign.

    Each event counts under its own UTM parameters (distinct customers); events without UTM (organic, untracked)
    form the ``(none)`` row. Only customers of the campaign's contacts count. Columns: the five UTM columns,
    visits, registrations, conversions, registration_rate and conversion_rate (both over visits; NaN without
    visits). Sorted by visits, largest first.
    """
    cont = _campaign(contacts, campaign_id, "campaign_contacts")[["customer_id"]].drop_duplicates()
    resp = _campaign(responses, campaign_id, "responses")
    resp = resp[resp["customer_id"].isin(cont["customer_id"])]
    utm = list(UTM_COLUMNS)
    frame = pd.DataFrame({c: resp[c].astype(object).where(resp[c].notna(), NO_UTM).astype(str) for c in utm})
    frame["customer_id"] = resp["customer_id"].to_numpy()
    frame["event_type"] = resp["event_type"].astype(str).to_numpy()
    measures = {"visits": "visited", "registrations": "registered", "conversions": "converted"}
    parts = []
    for name, event in measures.items():
        sub = frame[frame["event_type"] == event]
        parts.append(sub.groupby(utm, sort=False)["customer_id"].nunique().rename(name))
    table = pd.concat(parts, axis=1).fillna(0).astype(int) if parts else pd.DataFrame()
    table = table.reindex(columns=list(measures), fill_value=0).reset_index()
    if table.empty:
        table = pd.DataFrame(columns=[*utm, *measures])
    visits = table["visits"].astype(float).replace(0, np.nan)
    table["registration_rate"] = table["registrations"] / visits
    table["conversion_rate"] = table["conversions"] / visits
    return table.sort_values(["visits", *utm], ascending=[False, *[True] * len(utm)], ignore_index=True)
