"""Campaign history as training data: every past contact with its features at selection and its outcome.

A campaign's contacts (``campaign_contacts``: treatment and holdout) are joined to the wide table built at the
campaign's selection date — the same :func:`pipelines.features.build_features` as churn training and scoring, so
the response and uplift models see exactly what a scoring run sees — and to the outcome: a ``converted``
response within ``window_days`` of selection.

A campaign is usable for training at ``as_of`` only when its response window has closed by then; campaigns the
platform ran itself enter the history once their contacts and responses land in the lake (the closed loop).

The split is by campaign, in time: the newest campaign is the out-of-time test, the one before it the
validation campaign (early stopping, calibration and the uplift learner choice), the rest train. The response
model also learns from a history of one or two campaigns (:func:`split_history`: by customer within them); the
uplift model needs three.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.data import storage
from pipelines.features.catalogue import ID, WindowContract
from pipelines.features.wide_table import build_features, load_tables

CAMPAIGN = "campaign_id"
SELECTED_AT = "selected_at"
TREATED = "treated"
CONVERTED = "converted"
# Columns of the history frame besides the features.
KEYS = (CAMPAIGN, ID, SELECTED_AT, "channel", TREATED, CONVERTED)


class HistoryError(ValueError):
    """The campaign history cannot give the training set asked for."""


def campaign_outcomes(lake: Path, window_days: int, as_of: date | pd.Timestamp | None = None) -> pd.DataFrame:
    """One row per contact of every campaign whose response window closed before ``as_of`` (all, when None):
    ``campaign_id``, ``customer_id``, ``selected_at``, ``channel``, ``treated`` (1 = contacted, 0 = holdout) and
    ``converted`` (1 = a ``converted`` response in ``[selected_at, selected_at + window_days)``)."""
    if window_days < 1:
        raise HistoryError(f"window_days must be at least 1, got {window_days}")
    contacts = storage.read_table(
        lake, "campaign_contacts", columns=[CAMPAIGN, ID, "channel", "group", SELECTED_AT]
    )
    window = pd.Timedelta(days=window_days)
    if as_of is not None:
        contacts = contacts.loc[contacts[SELECTED_AT] + window <= pd.Timestamp(as_of)]
    responses = storage.read_table(lake, "responses", columns=[CAMPAIGN, ID, "event_type", "event_ts"])
    converted = responses.loc[responses["event_type"] == "converted", [CAMPAIGN, ID, "event_ts"]]
    timed = contacts[[CAMPAIGN, ID, SELECTED_AT]].merge(converted, on=[CAMPAIGN, ID], how="inner")
    inside = (timed["event_ts"] >= timed[SELECTED_AT]) & (timed["event_ts"] < timed[SELECTED_AT] + window)
    hits = timed.loc[inside, [CAMPAIGN, ID]].drop_duplicates()
    hits[CONVERTED] = 1
    out = contacts.merge(hits, on=[CAMPAIGN, ID], how="left")
    return pd.DataFrame(
        {
            CAMPAIGN: out[CAMPAIGN].astype(str),
            ID: out[ID].astype(np.int64),
            SELECTED_AT: out[SELECTED_AT],
            "channel": out["channel"].astype(str),
            TREATED: (out["group"].astype(str) == "treatment").astype(np.int8),
            CONVERTED: out[CONVERTED].fillna(0).astype(np.int8),
        }
    ).sort_values([SELECTED_AT, CAMPAIGN, ID], ignore_index=True)


def history_training_set(
    lake: Path,
    window_days: int,
    as_of: date | pd.Timestamp | None = None,
    window: WindowContract | None = None,
    gate: Callable[[pd.DataFrame, dict, pd.Timestamp], None] | None = None,
    progress: Callable[[str], None] | None = print,
) -> pd.DataFrame:
    """Features at selection + :data:`KEYS` for every contact of the campaigns usable at ``as_of``.

    ``gate(wide, tables, day)`` sees each selection day's wide table before it is used (the data-quality gate
    raises to stop). Contacts whose account was no longer open at the selection date are dropped.
    """
    say = progress or (lambda _m: None)
    outcomes = campaign_outcomes(lake, window_days, as_of)
    if outcomes.empty:
        raise HistoryError(
            f"no campaign in {lake} has a closed {window_days}-day response window"
            + (f" before {pd.Timestamp(as_of):%Y-%m-%d}" if as_of is not None else "")
        )
    frames = []
    for selected_day, contacts in outcomes.groupby(outcomes[SELECTED_AT].dt.normalize(), sort=True):
        tables = load_tables(lake, selected_day, window)
        wide = build_features(tables, selected_day, window)
        if gate is not None:
            gate(wide, tables, selected_day)
        rows = contacts.merge(wide, on=ID, how="inner", validate="many_to_one")
        frames.append(rows)
        for campaign, part in rows.groupby(CAMPAIGN, sort=True):
            t = part[TREATED] == 1
            holdout = f"{part.loc[~t, CONVERTED].mean():.2%} holdout" if (~t).any() else "no holdout"
            say(
                f"  {campaign}: {len(part):,} contacts ({int(t.sum()):,} treated), conversion "
                f"{part.loc[t, CONVERTED].mean():.2%} treated vs {holdout}"
            )
    return pd.concat(frames, ignore_index=True)


@dataclass(frozen=True)
class CampaignSplit:
    """Training, validation and test rows: by whole campaigns in time order (``by == "campaign"``: the test is
    out of time), or by customer within the campaigns (``by == "customer"``: fewer than three campaigns)."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    campaigns: dict[str, list[str]]
    by: str = "campaign"


def split_by_campaign(history: pd.DataFrame) -> CampaignSplit:
    """Newest campaign -> test, the one before -> validation, the rest -> train (at least three campaigns)."""
    order = history.groupby(CAMPAIGN)[SELECTED_AT].min().sort_values(kind="stable").index.astype(str).tolist()
    if len(order) < 3:
        raise HistoryError(
            f"need at least 3 campaigns with closed response windows (train, validation, test), got {len(order)}: "
            + ", ".join(order)
        )
    parts = {"train": order[:-2], "valid": [order[-2]], "test": [order[-1]]}
    frames = {k: history.loc[history[CAMPAIGN].isin(v)].reset_index(drop=True) for k, v in parts.items()}
    return CampaignSplit(frames["train"], frames["valid"], frames["test"], parts)


# Shares of a split within campaigns: train, validation (early stopping and calibration), test.
WITHIN_SHARES = (0.6, 0.2, 0.2)


def split_history(history: pd.DataFrame, seed: int = 42) -> CampaignSplit:
    """:func:`split_by_campaign` when the history holds at least three campaigns; with fewer (a source that is
    one past campaign, such as Bank Marketing) by customer: a seeded draw puts each customer, with all their
    contacts, in train, validation or test (:data:`WITHIN_SHARES`). That test is not out of time — the split's
    ``by`` and :func:`lineage` say which one a model had."""
    if history[CAMPAIGN].nunique() >= 3:
        return split_by_campaign(history)
    customers = np.sort(history[ID].unique())
    draw = np.random.default_rng(seed).permutation(len(customers))
    cut = np.cumsum([round(share * len(customers)) for share in WITHIN_SHARES[:-1]])
    side = pd.Series(np.searchsorted(cut, draw, side="right"), index=customers)  # 0 train, 1 valid, 2 test
    part = side.reindex(history[ID]).to_numpy()
    names = sorted(history[CAMPAIGN].astype(str).unique())
    frames = [history.loc[part == k].reset_index(drop=True) for k in range(3)]
    if min(len(f) for f in frames) == 0:
        raise HistoryError(
            f"{len(customers)} customers in campaigns {', '.join(names)}: too few to split in three"
        )
    return CampaignSplit(*frames, {"train": names, "valid": names, "test": names}, by="customer")


def lineage(split: CampaignSplit) -> dict[str, str]:
    """Which campaigns fed a model and how they were split, for MLflow (``lineage.campaigns_train`` ...,
    ``lineage.split``)."""
    return {
        **{f"campaigns_{part}": ",".join(names) for part, names in split.campaigns.items()},
        "split": "by campaign, newest is the test"
        if split.by == "campaign"
        else "by customer within campaigns",
    }


def feature_columns(frame: pd.DataFrame, exclude: Sequence[str] = ()) -> list[str]:
    """The model features of a history frame: everything but the keys and ``exclude``."""
    skip = set(KEYS) | set(exclude)
    return [c for c in frame.columns if c not in skip]
