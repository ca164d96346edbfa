"""Product uptake propensity: one LightGBM for the whole product catalogue, on stacked (customer, product) rows.

A row is a customer open at a snapshot date who does not hold the product then; its features are the customer's
wide-table features (``features.wide_table.build_features``, the one feature definition), what they hold
(``features.holdings``: the associations between products live there) and the product itself (a categorical
column). The label says whether they took the product up in the month after the snapshot. One model for every
product shares what the products have in common (who takes anything up) and still learns each product's drivers
through the product column; it is trained, registered and promoted through the same path as every model
(``models.registry.train_and_register``), under the name ``product_uptake``.

:func:`uptake_scores` gives, for every customer and product not held at a date, the calibrated probability of taking
it up within a month: the per-product propensity next-best-action weighs offers with (docs/next-best-action.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.data.products import PRODUCT_IDS
from pipelines.features.catalogue import CATEGORICAL_FEATURES, FEATURE_NAMES
from pipelines.features.holdings import HOLDING_COLUMNS, holdings_at, uptakes_after
from pipelines.progress import Progress, say_to

ID = "customer_id"
PRODUCT = "product"
LABEL = "took_up"
MODEL_NAME = "product_uptake"
SNAPSHOT = "snapshot"


def _stacked(wide: pd.DataFrame, held: pd.DataFrame) -> pd.DataFrame:
    """One row per (customer in both frames, product not held): features, holdings and the product."""
    wide = wide.set_index(ID)
    both = wide.index.intersection(held.index)
    base = wide.loc[both].join(held.loc[both])
    parts = []
    for product, column in zip(PRODUCT_IDS, HOLDING_COLUMNS, strict=True):
        part = base.loc[~base[column]].reset_index()
        part[PRODUCT] = product
        parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    out[PRODUCT] = pd.Categorical(out[PRODUCT], categories=list(PRODUCT_IDS))
    for column in HOLDING_COLUMNS:
        out[column] = out[column].astype(np.int8)
    return out


def candidate_rows(lake: Path, as_of) -> pd.DataFrame:
    """The stacked rows at ``as_of`` (no label): every open customer x every product they do not hold."""
    from pipelines.features.wide_table import build_features, load_tables

    wide = build_features(load_tables(Path(lake), as_of), as_of)
    return _stacked(wide, holdings_at(lake, as_of))


def labelled_rows(lake: Path, as_of) -> pd.DataFrame:
    """:func:`candidate_rows` of customers still open a month later, with ``took_up`` (0/1) for each product."""
    rows = candidate_rows(lake, as_of)
    taken = uptakes_after(lake, as_of)
    rows = rows.loc[rows[ID].isin(taken.index)].reset_index(drop=True)
    column = pd.Index(HOLDING_COLUMNS).get_indexer("holds_" + rows[PRODUCT].astype(str))
    position = taken.index.get_indexer(rows[ID])
    rows[LABEL] = taken.to_numpy()[position, column].astype(np.int8)
    rows[SNAPSHOT] = pd.Timestamp(as_of)
    return rows


def model_features(frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(features, categorical) of the uptake model on ``frame``: the wide-table features it has, the holdings
    and the product."""
    features = [f for f in FEATURE_NAMES if f in frame.columns] + list(HOLDING_COLUMNS) + [PRODUCT]
    categorical = [f for f in features if f in CATEGORICAL_FEATURES] + [PRODUCT]
    return features, categorical


def train_uptake(
    lake: Path,
    as_of,
    *,
    tracking_uri: str,
    snapshots: int = 3,
    seed: int = 42,
    progress: Progress = None,
) -> Any:
    """Train and register ``product_uptake`` on the ``snapshots`` month starts before ``as_of`` whose month has
    ended in the lake (labels complete): the newest is the test snapshot, the one before it validation, the rest
    training (out of time, as churn trains). Returns the registry's ``TrainResult``."""
    from pipelines.models.propensity import TrainConfig
    from pipelines.models.registry import train_and_register

    if snapshots < 3:
        raise ValueError(f"snapshots must be at least 3 (train, validation, test), got {snapshots}")
    say = say_to(progress)
    dates = [pd.Timestamp(as_of) - pd.DateOffset(months=k) for k in range(snapshots, 0, -1)]
    frames = []
    for date in dates:
        frames.append(labelled_rows(lake, date))
        say(f"uptake rows at {date:%Y-%m-%d}: {len(frames[-1]):,}, {int(frames[-1][LABEL].sum()):,} uptakes")
    train = pd.concat(frames[:-2], ignore_index=True)
    valid, test = frames[-2], frames[-1]
    features, categorical = model_features(test)
    return train_and_register(
        train,
        valid,
        test,
        features=features,
        categorical=categorical,
        label=LABEL,
        config=TrainConfig(model_name=MODEL_NAME, seed=seed, calibration="platt"),
        tracking_uri=tracking_uri,
        experiment=MODEL_NAME,
        run_params={"snapshots": ",".join(f"{d:%Y-%m-%d}" for d in dates), "products": ",".join(PRODUCT_IDS)},
        progress=progress,
    )


def uptake_scores(model: Any, rows: pd.DataFrame) -> pd.DataFrame:
    """``customer_id``, ``product`` and ``p_uptake`` (the model's calibrated monthly probability) of ``rows``."""
    return pd.DataFrame(
        {
            ID: rows[ID].to_numpy(),
            PRODUCT: rows[PRODUCT].astype(str).to_numpy(),
            "p_uptake": model.predict_proba(rows),
        }
    )
