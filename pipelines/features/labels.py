"""Churn labels with named definitions, and training sets stacked from monthly snapshots.

A label looks only at ``[as_of + gap, as_of + gap + horizon)``; features only before ``as_of``. A snapshot is
usable for training only when the lake covers its whole label window (``label_complete``). The newest complete
snapshot is the out-of-time test, the one before it validation (early stopping, calibration), the rest training:
never a random split across time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.features.catalogue import ID, WindowContract
from pipelines.features.wide_table import build_features, eligible_customers, load_tables

DEFINITIONS = ("closure", "inactivity", "balance_outflow")
LABEL = "label"
SNAPSHOT = "as_of"


class LabelError(ValueError):
    """A label definition that cannot be built, or a training set too thin to train on."""


@dataclass(frozen=True)
class LabelDefinition:
    """What churn means for a model.

    * ``closure``: the account is closed inside the label window;
    * ``inactivity``: no transaction and no app login inside the label window (closed accounts included); a
      source without app events (a retailer) has no logins, so this is "no transaction in the window";
    * ``balance_outflow``: assets under management at the last month end inside the window are at least
      ``outflow_pct`` % below the last month end before ``as_of`` (a closed account counts as 100 % outflow);
      needs the balances table (:class:`LabelError` without it).
    """

    name: str = "closure"
    horizon_days: int = 90
    gap_days: int = 0
    outflow_pct: float = 50.0

    def __post_init__(self) -> None:
        if self.name not in DEFINITIONS:
            raise LabelError(
                f"unknown churn definition {self.name!r}; choose one of {', '.join(DEFINITIONS)}"
            )
        if self.horizon_days not in (90, 150):
            raise LabelError(f"horizon_days must be 90 or 150, got {self.horizon_days}")
        if self.gap_days < 0:
            raise LabelError(f"gap_days must be >= 0, got {self.gap_days}")
        if not 0 < self.outflow_pct <= 100:
            raise LabelError(f"outflow_pct must be in (0, 100], got {self.outflow_pct}")

    @property
    def tag(self) -> str:
        """Short name for logs and MLflow, e.g. ``closure_90d``."""
        return f"{self.name}_{self.horizon_days}d"

    def window(self, as_of: date | pd.Timestamp) -> tuple[pd.Timestamp, pd.Timestamp]:
        start = pd.Timestamp(as_of) + pd.Timedelta(days=self.gap_days)
        return start, start + pd.Timedelta(days=self.horizon_days)


def label_complete(
    lake_end: date | pd.Timestamp, as_of: date | pd.Timestamp, definition: LabelDefinition
) -> bool:
    """Whether the lake (data up to ``lake_end``, exclusive) covers the whole label window of ``as_of``."""
    return definition.window(as_of)[1] <= pd.Timestamp(lake_end)


def make_labels(
    tables: Mapping[str, pd.DataFrame], as_of: date | pd.Timestamp, definition: LabelDefinition
) -> pd.Series:
    """0/1 label per customer open at ``as_of`` (index ``customer_id``, name ``label``)."""
    as_of = pd.Timestamp(as_of)
    start, end = definition.window(as_of)
    base = eligible_customers(tables["customers"], as_of)
    index = pd.Index(base[ID])
    closed = base["closed_date"]
    closed_in_window = (closed >= start) & (closed < end)
    if definition.name == "closure":
        y = closed_in_window.to_numpy()
    elif definition.name == "inactivity":
        if tables.get("transactions") is None:
            raise LabelError(
                "churn definition 'inactivity' needs the transactions table, which this source lacks "
                "(a lake of past campaigns alone has no activity to read); train the response model instead"
            )
        active = np.zeros(len(index), bool)
        frames = [(tables["transactions"], "txn_ts")]
        events = tables.get("app_events")
        if events is not None:  # a source without app events (a retailer): activity is transactions alone
            frames.append((events.loc[events["event_type"] == "login"], "event_ts"))
        for frame, ts in frames:
            inside = frame.loc[(frame[ts] >= start) & (frame[ts] < end), ID]
            pos = index.get_indexer(inside)
            active[pos[pos >= 0]] = True
        y = ~active
    else:
        balances = tables.get("balances")
        if balances is None:
            raise LabelError(
                "churn definition 'balance_outflow' needs the balances table, which this source lacks; "
                "use 'inactivity' (no transaction in the window) or 'closure'"
            )
        before = _last_aum(balances.loc[balances["month_end"] < as_of], index)
        after = _last_aum(
            balances.loc[(balances["month_end"] >= start) & (balances["month_end"] < end)], index
        )
        after = np.where(closed_in_window.to_numpy(), 0.0, after)
        with np.errstate(invalid="ignore", divide="ignore"):
            drop = 1 - after / before
        y = np.nan_to_num(drop, nan=0.0) >= definition.outflow_pct / 100
    return pd.Series(y.astype(np.int8), index=index, name=LABEL)


def _last_aum(balances: pd.DataFrame, index: pd.Index) -> np.ndarray:
    latest = balances.sort_values("month_end").drop_duplicates(ID, keep="last")
    return latest.set_index(ID)["aum"].reindex(index).to_numpy(np.float64)


def snapshot_dates(
    lake_end: date | pd.Timestamp, definition: LabelDefinition, count: int
) -> list[pd.Timestamp]:
    """The newest ``count`` month starts whose label window the lake covers, oldest first."""
    if count < 1:
        raise LabelError(f"count must be at least 1, got {count}")
    bound = pd.Timestamp(lake_end) - pd.Timedelta(days=definition.gap_days + definition.horizon_days)
    newest = bound.to_period("M").start_time
    return [newest - pd.DateOffset(months=k) for k in range(count - 1, -1, -1)]


def build_training_set(
    lake: Path,
    snapshots: list[pd.Timestamp],
    definition: LabelDefinition,
    window: WindowContract | None = None,
    progress=print,
) -> pd.DataFrame:
    """Features and label for each snapshot, stacked: columns ``as_of``, ``customer_id``, features, ``label``;
    ``attrs`` say which features the source's tables left out (``wide_table.left_out_of``)."""
    say = progress or (lambda _m: None)
    frames = []
    for as_of in snapshots:
        window_end = definition.window(as_of)[1]
        tables = load_tables(lake, as_of, window, extra_until=window_end)
        wide = build_features(tables, as_of, window)
        labels = make_labels(tables, as_of, definition)
        wide[LABEL] = labels.reindex(wide[ID]).to_numpy()
        wide.insert(0, SNAPSHOT, as_of)
        frames.append(wide)
        say(
            f"  snapshot {as_of:%Y-%m-%d}: {len(wide):,} customers, {int(wide[LABEL].sum()):,} {definition.tag} positives"
        )
    data = pd.concat(frames, ignore_index=True)
    data.attrs = dict(frames[0].attrs)  # the features left out (the same tables for every snapshot)
    return data


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame


def split_out_of_time(data: pd.DataFrame) -> Split:
    """Newest snapshot → test, the one before → validation, the rest → training."""
    dates = sorted(data[SNAPSHOT].unique())
    if len(dates) < 3:
        raise LabelError(f"an out-of-time split needs at least 3 snapshots, got {len(dates)}")
    return Split(
        train=data.loc[data[SNAPSHOT] < dates[-2]].reset_index(drop=True),
        valid=data.loc[data[SNAPSHOT] == dates[-2]].reset_index(drop=True),
        test=data.loc[data[SNAPSHOT] == dates[-1]].reset_index(drop=True),
    )


def check_label_balance(
    data: pd.DataFrame, min_positives: int = 500, min_negatives: int = 500, what: str = "training"
) -> None:
    """Stop with a clear message when there are too few positives or negatives to train on."""
    positives = int(data[LABEL].sum())
    negatives = int(len(data) - positives)
    if positives < min_positives or negatives < min_negatives:
        raise LabelError(
            f"{what} set has {positives:,} positives and {negatives:,} negatives; at least {min_positives:,} and "
            f"{min_negatives:,} are required (more customers, more snapshots, or another label definition)"
        )
