"""Association rules for cross-sell: "customers who use instalments also hold a personal loan" — with the support,
confidence and lift that say how often and how much more than chance.

The basket of a customer at a date (:func:`baskets`) is what they hold (``features.holdings``) and how they
spend (from the wide table, the one feature definition: a merchant category counts when it is at least
:data:`CATEGORY_SHARE` of their card spending over 180 days; instalments, paying abroad, online and by mobile
wallet when they did so at all). :func:`mine_rules` finds every rule *antecedent -> product* whose antecedent is one
item or two, where

* ``support`` = share of customers whose basket holds the antecedent and the product,
* ``confidence`` = P(product | antecedent),
* ``lift`` = confidence / P(product): 1 is chance, 2 twice as likely as an average customer.

Only products are consequents (what a campaign could offer); a rule needs :data:`MIN_CUSTOMERS` customers with
both sides and a lift above 1. Counting is exact (Boolean matrix products, no sampling), so the same baskets
always give the same rules.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.data.products import PRODUCT_IDS
from pipelines.data.schema import MERCHANT_CATEGORIES
from pipelines.features.holdings import holdings_at

ID = "customer_id"
CATEGORY_SHARE = 0.15
MIN_CUSTOMERS = 30
RULE_COLUMNS = ("antecedent", "consequent", "customers", "support", "confidence", "lift")
# Behaviour items: wide-table column -> the item's words.
BEHAVIOURS = {
    "installment_share_180d": "uses instalments",
    "cross_border_share_180d": "pays abroad",
    "online_share_180d": "shops online",
    "mobile_wallet_share_180d": "pays by mobile wallet",
}


def baskets(lake: Path, wide: pd.DataFrame, as_of) -> pd.DataFrame:
    """One Boolean column per item, one row per customer of ``wide`` (the wide table at ``as_of``) open at the
    month end before it: ``holds <product>``, ``spends on <category>`` and the :data:`BEHAVIOURS`."""
    held = holdings_at(lake, as_of)
    frame = wide.set_index(ID)
    both = frame.index.intersection(held.index)
    frame = frame.loc[both]
    items = {f"holds {p}": held.loc[both, f"holds_{p}"].to_numpy() for p in PRODUCT_IDS}
    for category in MERCHANT_CATEGORIES:
        column = f"cat_{category}_spend_share_180d"
        if column in frame.columns:
            items[f"spends on {category.replace('_', ' ')}"] = (
                frame[column].fillna(0) >= CATEGORY_SHARE
            ).to_numpy()
    for column, words in BEHAVIOURS.items():
        if column in frame.columns:
            items[words] = (frame[column].fillna(0) > 0).to_numpy()
    return pd.DataFrame(items, index=both)


def mine_rules(
    basket: pd.DataFrame, *, min_customers: int = MIN_CUSTOMERS, min_lift: float = 1.0
) -> pd.DataFrame:
    """Rules *antecedent (one or two items) -> product* of ``basket`` (:func:`baskets`), by lift then support.

    ``antecedent`` joins its items with " and "; a rule whose antecedent holds the product itself is left out."""
    if basket.empty:
        raise ValueError("no baskets to mine: the lake has no customer open at that month end")
    n = len(basket)
    names = list(basket.columns)
    matrix = basket.to_numpy(dtype=bool)
    products = [j for j, name in enumerate(names) if name.startswith("holds ")]
    rate = matrix.mean(axis=0)
    antecedents: list[tuple[tuple[int, ...], np.ndarray]] = [((i,), matrix[:, i]) for i in range(len(names))]
    common = [i for i in range(len(names)) if matrix[:, i].sum() >= min_customers]
    for i, k in combinations(common, 2):
        both = matrix[:, i] & matrix[:, k]
        if both.sum() >= min_customers:
            antecedents.append(((i, k), both))
    rows = []
    for items, mask in antecedents:
        size = int(mask.sum())
        if size < min_customers:
            continue
        with_product = matrix[mask][:, products].sum(axis=0)
        for j, count in zip(products, with_product, strict=True):
            if j in items or count < min_customers or rate[j] == 0:
                continue
            confidence = count / size
            lift = confidence / rate[j]
            if lift > min_lift:
                words = " and ".join(names[i] for i in items)
                rows.append((words, names[j].removeprefix("holds "), int(count), count / n, confidence, lift))
    rules = pd.DataFrame(rows, columns=list(RULE_COLUMNS))
    return rules.sort_values(
        ["lift", "support", "antecedent"], ascending=[False, False, True], ignore_index=True
    )
