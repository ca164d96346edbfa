"""Dirty mode of the synthetic bank: realistic faults injected into a generated lake, for testing the gates."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from pipelines.data import storage
from pipelines.data.schema import TABLES

if TYPE_CHECKING:
    from pathlib import Path

    from pipelines.synthetic.bank import SynthConfig


def inject_dirty(config: SynthConfig, lake: Path) -> dict[str, dict]:
    """Corrupt part 0 of some tables in place and return what was injected (table -> fault -> rows)."""
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 999_983]))
    faults: dict[str, dict] = {}
    first_month = storage.month_key(config.month_starts[0])
    last_month = storage.month_key(config.month_starts[-2])

    # customers: duplicated ids (whole rows copied).
    path = storage.table_dir(lake, "customers") / "part-00000.parquet"
    cust = storage.read_part(path)
    dup = cust.take(rng.choice(cust.num_rows, 5, replace=False))
    storage.write_part(pa.concat_tables([cust, dup]), lake, "customers", 0)
    faults["customers"] = {"duplicate customer_id": 5}

    # transactions: duplicate ids, null keys, negative amounts, unknown categories, orphan customers.
    path = storage.partition_dir(lake, "transactions", first_month) / "part-00000.parquet"
    txn = storage.read_part(path).to_pandas()
    rows = rng.choice(len(txn), 40, replace=False)
    dup_rows = txn.iloc[rows[:6]].copy()
    txn["customer_id"] = txn["customer_id"].astype("Int64")
    txn.loc[txn.index[rows[6:13]], "customer_id"] = pd.NA
    txn.loc[txn.index[rows[13:24]], "amount"] = -txn.loc[txn.index[rows[13:24]], "amount"]
    txn["merchant_category"] = txn["merchant_category"].cat.add_categories(["crypto_exchange"])
    txn.loc[txn.index[rows[24:27]], "merchant_category"] = "crypto_exchange"
    txn.loc[txn.index[rows[27:40]], "customer_id"] = 9_000_000_000 + np.arange(13)
    txn = pd.concat([txn, dup_rows.astype({"customer_id": "Int64"})], ignore_index=True)
    schema = TABLES["transactions"].arrow_schema
    schema = schema.set(
        schema.get_field_index("customer_id"), pa.field("customer_id", pa.int64(), nullable=True)
    )
    storage.write_part(
        pa.Table.from_pandas(txn, schema=schema, preserve_index=False), lake, "transactions", 0, first_month
    )

    # transactions: timestamps in the future, landed in the newest partition.
    path = storage.partition_dir(lake, "transactions", last_month) / "part-00000.parquet"
    last = storage.read_part(path).to_pandas()
    rows = rng.choice(len(last), 4, replace=False)
    last.loc[last.index[rows], "txn_ts"] = pd.Timestamp("2031-01-01") + pd.to_timedelta(
        np.arange(4), unit="h"
    )
    storage.write_part(
        pa.Table.from_pandas(last, schema=TABLES["transactions"].arrow_schema, preserve_index=False),
        lake,
        "transactions",
        0,
        last_month,
    )
    faults["transactions"] = {
        "duplicate txn_id": 6,
        "null customer_id": 7,
        "negative amount": 11,
        "unknown merchant_category": 3,
        "customer_id not in customers": 13,
        "future txn_ts": 4,
    }

    # balances: a column missing from every part.
    for path in storage.table_files(lake, "balances"):
        table = storage.read_part(path)
        month = path.parent.name.removeprefix("month=")
        storage.write_part(table.drop_columns(["aum"]), lake, "balances", int(path.stem.split("-")[1]), month)
    faults["balances"] = {"missing column aum": 1}
    return faults
