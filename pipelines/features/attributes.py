"""Audience attributes: each customer's home ``region`` and ``city`` beside the wide table's features.

A campaign run's wide table (``jobs.common.build_wide_table``) carries the columns of ``catalogue.ATTRIBUTES`` so
that spec rules (``region in [...]``, ``within_km``) and segment breakdowns can use them. They are never model
inputs: they are not in ``catalogue.FEATURE_NAMES`` (what training and scoring read) and
``wide_table.build_features``, the one feature definition, never adds them.

A lake whose customers table lacks such a column (an older lake, a source without it) gives a null column: every
rule on it fails, and the frame says why in ``attrs["attributes_absent"]``.
"""

from __future__ import annotations

import pandas as pd

from pipelines.data import storage
from pipelines.features.catalogue import ATTRIBUTES, ID

ABSENT = "attributes_absent"  # key of wide.attrs: {attribute: why it is null for every customer}


def read_attributes(lake) -> pd.DataFrame:
    """``customer_id`` and those attribute columns the lake's ``customers`` table holds (its first part file's
    schema decides, as for every lake read); :class:`storage.LakeError` when the lake has no customers table."""
    files = storage.table_files(lake, "customers")
    if not files:
        raise storage.LakeError(
            f"the lake at {lake} has no customers table: it holds the customer attributes"
        )
    present = set(storage.read_file_schema(files[0]).names)
    return storage.read_table(
        lake, "customers", columns=[ID, *(a.name for a in ATTRIBUTES if a.name in present)]
    )


def add_attributes(wide: pd.DataFrame, customers: pd.DataFrame) -> pd.DataFrame:
    """``wide`` with every attribute appended as a category of its allowed values, taken from ``customers``
    (``customer_id`` and any attribute columns) by customer id.

    A value is null where the customer has no record or a null value, where the value is not an allowed one, and
    for every customer when ``customers`` lacks the column: ``attrs["attributes_absent"]`` then names it with why
    (``{"region": "no region column in the customers table"}``). The wide table's other ``attrs`` are kept.
    """
    if customers[ID].duplicated().any():
        raise ValueError("customers frame has duplicate customer ids: attributes would be ambiguous")
    out = wide.copy()
    records = customers.set_index(ID)
    absent = {}
    for attribute in ATTRIBUTES:
        if attribute.name in records.columns:
            values = records[attribute.name].astype("object").reindex(wide[ID].to_numpy()).to_numpy()
        else:
            values = [None] * len(wide)
            absent[attribute.name] = f"no {attribute.name} column in the customers table"
        allowed = set(attribute.values)
        known = [v if v in allowed else None for v in values]
        out[attribute.name] = pd.Categorical(known, categories=list(attribute.values))
    out.attrs = {**wide.attrs, ABSENT: absent}
    return out


def attribute_notes(wide: pd.DataFrame) -> list[str]:
    """One line per attribute that is null for some customers of ``wide`` (absent from the source, or values
    outside the allowed list), e.g. ``region: no region column in the customers table; null for all 1,000
    customers (rules on it exclude everyone)``."""
    absent = wide.attrs.get(ABSENT, {})
    notes = []
    for attribute in ATTRIBUTES:
        if attribute.name not in wide.columns:
            continue
        missing = int(wide[attribute.name].isna().sum())
        if attribute.name in absent:
            notes.append(
                f"{attribute.name}: {absent[attribute.name]}; null for all {len(wide):,} customers "
                "(rules on it exclude everyone)"
            )
        elif missing:
            notes.append(
                f"{attribute.name}: null for {missing:,} of {len(wide):,} customers (unknown or no value)"
            )
    return notes
