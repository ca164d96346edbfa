"""Product holdings: what each customer holds at an as-of date, and what they take up after it.

The lake's ``product_holdings`` is a month-end snapshot (one row per product held by each open customer). A
customer's holdings *at* ``as_of`` are those of the newest month end before it (the snapshot the features at that
date may see); an **uptake** within the month starting at ``as_of`` is a product held at that month's end and not
at the one before. These are the inputs and labels of the product-uptake model (``models/uptake.py``) and of the
cross-sell candidates of next-best-action.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.data import storage
from pipelines.data.products import PRODUCT_IDS

ID = "customer_id"
HOLDING_COLUMNS = tuple(f"holds_{p}" for p in PRODUCT_IDS)


def _month_before(as_of) -> str:
    return storage.month_key(pd.Timestamp(as_of).normalize() - pd.Timedelta(days=1))


def _snapshot(lake: Path, month: str) -> pd.DataFrame:
    """``customer_id`` x ``holds_<product>`` (bool) of the ``month``'s month end; customers open then, none else."""
    if month not in storage.list_months(lake, "product_holdings"):
        raise ValueError(
            f"{storage.table_dir(lake, 'product_holdings')} has no month end {month}: "
            "holdings need the lake's product_holdings for that month"
        )
    rows = storage.read_table(lake, "product_holdings", months=[month], columns=[ID, "product_id"])
    customers = storage.read_table(lake, "balances", months=[month], columns=[ID])[ID].unique()
    index = pd.Index(np.sort(customers), name=ID)
    position = index.get_indexer(rows[ID])
    column = pd.Index(PRODUCT_IDS).get_indexer(rows["product_id"].astype(str))
    known = (position >= 0) & (column >= 0)
    values = np.zeros((index.size, len(PRODUCT_IDS)), dtype=bool)
    values[position[known], column[known]] = True
    return pd.DataFrame(values, index=index, columns=list(HOLDING_COLUMNS))


def holdings_at(lake: Path, as_of) -> pd.DataFrame:
    """What each customer open at the last month end before ``as_of`` holds (``holds_<product>``, bool)."""
    return _snapshot(Path(lake), _month_before(as_of))


def uptakes_after(lake: Path, as_of) -> pd.DataFrame:
    """Which products each customer took up in the month starting at ``as_of`` (``holds_<product>`` columns, True
    for a product held at that month's end and not at the one before). Customers open at both month ends."""
    lake = Path(lake)
    before = _snapshot(lake, _month_before(as_of))
    after = _snapshot(lake, storage.month_key(pd.Timestamp(as_of)))
    both = before.index.intersection(after.index)
    return after.loc[both] & ~before.loc[both]
