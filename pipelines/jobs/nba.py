"""Next-best-action inputs (docs/next-best-action.md): what a contact on each channel adds, measured on the bank's
own randomised campaign history, and the cross-sell candidates the arbitration (``models.nba``) chooses from.

**Channel effects** (:func:`channel_effects`): every past campaign held a random part of its audience out, so the
difference between its treatment and holdout conversion rates is its true average effect. Per channel, the
effect is the mean of its campaigns' effects, weighted by their sizes, with a standard error. It is a plain
average over whatever campaigns used the channel: where a channel was used only by campaigns of one kind at one
timing (a repayment reminder sent a fortnight early), its effect carries theirs.

**Candidates** (:func:`cross_sell_candidates`): for every customer and product a campaign offers, and every channel
the campaign may use, the estimated incremental probability of an uptake is the average effect of a contact on
that channel times the customer's propensity for the product relative to the product's average (the uptake
model's ``p_uptake``): customers who are likelier to want a product are moved more by its offer.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.config import Settings
from pipelines.data import storage
from pipelines.data.products import BY_ID

ID = "customer_id"
# Cost of one contact per channel (GBP): what a campaign spec's cost_per_contact says for its channel.
CONTACT_COSTS = {"sms": 0.05, "email": 0.01, "push": 0.01, "call": 4.0}


def channel_effects(lake: Path) -> pd.DataFrame:
    """Per channel of the lake's past campaigns: ``campaigns``, ``contacts``, ``effect`` (treatment minus holdout
    conversion rate, campaigns weighted by size) and its standard error ``se``. Raises naming the table when the
    lake has no campaign history."""
    lake = Path(lake)
    for table in ("campaign_contacts", "responses"):
        if not storage.table_dir(lake, table).is_dir():
            raise ValueError(
                f"{storage.table_dir(lake, table)} is absent: channel effects need the campaign history"
            )
    contacts = storage.read_table(lake, "campaign_contacts", columns=["campaign_id", ID, "channel", "group"])
    responses = storage.read_table(lake, "responses", columns=["campaign_id", ID, "event_type"])
    converted = responses.loc[responses["event_type"].astype(str) == "converted", ["campaign_id", ID]]
    contacts = contacts.merge(
        converted.drop_duplicates().assign(converted=1.0), how="left", on=["campaign_id", ID]
    )
    contacts["converted"] = contacts["converted"].fillna(0.0)
    contacts["group"] = contacts["group"].astype(str)
    by = contacts.groupby(["campaign_id", "group"], observed=True)["converted"].agg(["mean", "var", "size"])
    rows = []
    for campaign, part in by.groupby(level="campaign_id"):
        part = part.droplevel("campaign_id")
        if not {"treatment", "holdout"} <= set(part.index):
            continue
        t, h = part.loc["treatment"], part.loc["holdout"]
        channel = str(contacts.loc[contacts["campaign_id"] == campaign, "channel"].iloc[0])
        rows.append(
            (
                channel,
                t["mean"] - h["mean"],
                t["var"] / t["size"] + h["var"] / h["size"],
                t["size"] + h["size"],
            )
        )
    if not rows:
        raise ValueError(f"{storage.table_dir(lake, 'campaign_contacts')} has no campaign with a holdout")
    per = pd.DataFrame(rows, columns=["channel", "effect", "variance", "contacts"])
    out = []
    for channel, part in per.groupby("channel"):
        w = part["contacts"] / part["contacts"].sum()
        out.append((channel, len(part), int(part["contacts"].sum()), float((w * part["effect"]).sum()),
                    float(np.sqrt((w**2 * part["variance"]).sum()))))  # fmt: skip
    return pd.DataFrame(out, columns=["channel", "campaigns", "contacts", "effect", "se"]).set_index(
        "channel"
    )


def cross_sell_candidates(
    scores: pd.DataFrame,
    campaigns: Mapping[str, str],
    effects: Mapping[str, float],
    *,
    channels: tuple[str, ...] | None = None,
    costs: Mapping[str, float] = CONTACT_COSTS,
) -> pd.DataFrame:
    """Candidates (``models.nba.CANDIDATE_COLUMNS`` plus ``own_score``) of the cross-sell ``campaigns``
    ({product: its fixed channel}) for the customers of ``scores`` (``customer_id``, ``product``, ``p_uptake``).

    Each campaign is offered on its own channel, or on every channel of ``channels`` when given (``channel:
    best``); ``effects`` is the average effect of a contact per channel (:func:`channel_effects`). ``own_score``
    is the campaign's own ranking when it runs alone: its expected value on its fixed channel."""
    unknown = [p for p in campaigns if p not in BY_ID]
    if unknown:
        raise ValueError(f"unknown product(s) {', '.join(unknown)}; known: {', '.join(BY_ID)}")
    missing = sorted({*campaigns.values(), *(channels or ())} - set(effects))
    if missing:
        raise ValueError(f"no channel effect for {', '.join(missing)}: the history never used it")
    parts = []
    for product, fixed in campaigns.items():
        own = scores.loc[scores["product"] == product]
        if own.empty:
            continue
        factor = own["p_uptake"].to_numpy() / own["p_uptake"].mean()
        value = BY_ID[product].value
        own_ev = effects[fixed] * factor * value - costs[fixed]
        for channel in channels or (fixed,):
            parts.append(
                pd.DataFrame(
                    {
                        ID: own[ID].to_numpy(),
                        "campaign": product,
                        "channel": channel,
                        "p_incremental": np.clip(effects[channel] * factor, -1.0, 1.0),
                        "value": value,
                        "cost": costs[channel],
                        "priority": 1.0,
                        "own_score": own_ev,
                    }
                )
            )
    return pd.concat(parts, ignore_index=True)


def product_rules(settings: Settings, as_of: Any = None, progress=None) -> tuple[pd.DataFrame, Path]:
    """The association rules of the customers' baskets at ``as_of`` (default: the lake's end;
    ``models.association``), also written to ``<data>/nba/rules_<as_of>.csv`` for staff to browse."""
    from pipelines.features.wide_table import build_features, load_tables
    from pipelines.jobs.common import resolve_as_of
    from pipelines.models.association import baskets, mine_rules

    as_of = resolve_as_of(settings, as_of)
    wide = build_features(load_tables(settings.lake_dir, as_of, progress=progress), as_of)
    rules = mine_rules(baskets(settings.lake_dir, wide, as_of))
    path = settings.data_dir / "nba" / f"rules_{as_of:%Y-%m-%d}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    rules.to_csv(tmp, index=False, float_format="%.6g")
    tmp.replace(path)
    return rules, path
