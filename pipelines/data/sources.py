"""Public data sets mapped onto the canonical tables of ``schema``, faults and all, so the gates can be run on them.

A mapping renames and derives columns only: it never drops or repairs rows, so whatever is wrong in the source
(missing keys, cancellations, zero prices) reaches the data-quality gate and is reported there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.data import schema

ONLINE_RETAIL_HOME_COUNTRY = "United Kingdom"


def read_online_retail(path: str | Path) -> pd.DataFrame:
    """The UCI Online Retail file (CSV, optionally gzipped) as a frame of the ``transactions`` table.

    One row per invoice line, in file order:

    ==================  ==========================================================================
    txn_id              row number in the file (0-based), int64
    customer_id         ``CustomerID``, nullable Int64 (empty in 135,080 rows of the full file)
    txn_ts              ``InvoiceDate``, datetime64[us]
    amount              ``Quantity * UnitPrice``: negative for cancellations (invoice ``C...``), zero for free lines
    merchant_category   ``retail``
    is_cross_border     ``Country != 'United Kingdom'`` (the retailer is in the UK)
    is_installment      False
    channel             ``online``
    ==================  ==========================================================================

    Category columns carry the full category set of the schema.
    """
    raw = pd.read_csv(
        path,
        usecols=["InvoiceNo", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"],
        dtype={
            "InvoiceNo": "str",
            "Quantity": "int64",
            "UnitPrice": "float64",
            "CustomerID": "Int64",
            "Country": "str",
        },
    )
    n = len(raw)
    return pd.DataFrame(
        {
            "txn_id": np.arange(n, dtype=np.int64),
            "customer_id": raw["CustomerID"].astype("Int64"),
            "txn_ts": pd.to_datetime(raw["InvoiceDate"], format="%Y-%m-%d %H:%M:%S").astype("datetime64[us]"),
            "amount": raw["Quantity"].astype("float64") * raw["UnitPrice"],
            "merchant_category": _constant_category("retail", schema.MERCHANT_CATEGORIES, n),
            "is_cross_border": (raw["Country"] != ONLINE_RETAIL_HOME_COUNTRY).to_numpy(),
            "is_installment": np.zeros(n, dtype=bool),
            "channel": _constant_category("online", schema.TXN_CHANNELS, n),
        }
    )


def _constant_category(value: str, categories: tuple, n: int) -> pd.Categorical:
    return pd.Categorical.from_codes(
        np.full(n, categories.index(value), dtype=np.int8), categories=list(categories)
    )
