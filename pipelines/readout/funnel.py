"""The funnel and the UTM channel quality of one campaign, from the lake's ``campaign_contacts`` and ``responses``.

- :func:`funnel` counts the customers reaching each stage (sent, then every response event) per group, nested
  so that every rate is over the stage before and over ``sent`` and stays within 100 %.
- :func:`channel_quality` counts visits, registrations and conversions per UTM combination.

Pure functions over DataFrames; the readout's statistics are in :mod:`pipelines.readout.stats`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.data.schema import RESPONSE_EVENTS

FUNNEL_STAGES = ("sent", *RESPONSE_EVENTS)
# Stages off the main path, with the stage they branch from: they are counted among that stage's customers and
# gate nothing after them (installing the app is not a step towards registering).
SIDE_STEPS = {"app_installed": "visited"}
UTM_COLUMNS = ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term")
NO_UTM = "(none)"


def _campaign(frame: pd.DataFrame, campaign_id: str, what: str) -> pd.DataFrame:
    rows = frame[frame["campaign_id"] == campaign_id]
    if what == "campaign_contacts" and rows.empty:
        raise LookupError(f"campaign {campaign_id!r} has no rows in campaign_contacts")
    return rows


def funnel(contacts: pd.DataFrame, responses: pd.DataFrame, campaign_id: str) -> pd.DataFrame:
    """Customers reaching each stage, per group: ``sent`` (contacts with a send time) then every response event.

    The funnel is nested, so every rate has one base population and none exceeds 100 %: a customer is counted at
    a stage (``customers``) only when they also reached every earlier stage of the path (sent → delivered →
    opened → clicked → visited → registered → card_bound → converted). ``app_installed`` is a side step off
    ``visited``: counted among visitors, it gates nothing after it. Columns:

    - group, stage, customers (reached through the path), stage_rate (over the stage before on the path; for
      ``app_installed`` over ``visited``), rate_from_sent (over the group's ``sent``, the first stage);
    - recorded: customers with the event at all, off_path: those of them who skipped an earlier stage (a
      conversion without a recorded click, the holdout's organic conversions): the events are recorded
      independently, so these are what an un-nested count adds and the reason it could read over 100 %;
    - rate_from_selected: ``recorded`` over the group's selected contacts, the one base the holdout has (it is
      never sent), so the treated and holdout rates compare.

    Only responses of customers in the campaign's contacts count, each customer once per stage.
    """
    cont = _campaign(contacts, campaign_id, "campaign_contacts")[["customer_id", "group", "sent_at"]]
    resp = _campaign(responses, campaign_id, "responses")[["customer_id", "event_type"]]
    resp = resp[resp["customer_id"].isin(cont["customer_id"])]
    reached_event = {
        e: set(resp.loc[resp["event_type"].astype(str) == e, "customer_id"]) for e in RESPONSE_EVENTS
    }
    group = cont["group"].astype(str).to_numpy()
    rows = []
    for g in sorted(set(group), key=lambda v: (v != "treatment", v)):
        members = cont[group == g]
        ids = set(members["customer_id"])
        selected = len(ids)
        sent = set(members.loc[members["sent_at"].notna(), "customer_id"])
        recorded = {"sent": sent, **{e: reached_event[e] & ids for e in RESPONSE_EVENTS}}
        path = sent
        reached = {}
        for stage in FUNNEL_STAGES:
            base = reached.get(SIDE_STEPS.get(stage), path)
            here = base & recorded[stage]
            reached[stage] = here
            if stage not in SIDE_STEPS:
                path = here
        first = len(reached["sent"])
        for i, stage in enumerate(FUNNEL_STAGES):
            n, before = len(reached[stage]), _stage_before(i)
            base = len(reached[before]) if before else 0
            rows.append(
                {
                    "group": g,
                    "stage": stage,
                    "customers": n,
                    "stage_rate": n / base if base else np.nan,
                    "rate_from_sent": n / first if first else np.nan,
                    "recorded": len(recorded[stage]),
                    "off_path": len(recorded[stage]) - n,
                    "rate_from_selected": len(recorded[stage]) / selected if selected else np.nan,
                }
            )
    return pd.DataFrame(rows)


def _stage_before(index: int) -> str | None:
    """The stage a stage's rate is taken over: its side step's origin, else the last path stage before it."""
    stage = FUNNEL_STAGES[index]
    if stage in SIDE_STEPS:
        return SIDE_STEPS[stage]
    earlier = [s for s in FUNNEL_STAGES[:index] if s not in SIDE_STEPS]
    return earlier[-1] if earlier else None


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
