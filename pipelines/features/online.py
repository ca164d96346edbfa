"""Features of one customer in real time: the row of the latest batch snapshot, updated by the events since.

DEFINITION. ``apply_event(row, event, as_of)`` returns exactly what :func:`wide_table.build_features` gives the
customer at the same ``as_of`` when the event's fact (:func:`lake_fact`) is added to the lake dated on the
snapshot's last day: ``as_of`` minus one day, at the event's time of day (UTC). Events since the snapshot count as
its newest day, so one feature definition serves training, batch scoring and real-time decisions. A fact so dated
is ``age`` days old at ``as_of`` with ``0 < age <= 1`` (an event at 00:00 is exactly one day old, as a lake fact
stamped at midnight is): it falls inside every N-day window and outside the prior window of the trends, and its
day index (whole days of age, as ``days_since_*`` and ``active_days_30d`` count them) is 0, or 1 at 00:00.

- A transaction adds to ``txn_count_*d`` and ``spend_*d``, recomputes both ``avg_ticket_*d``, both trends and
  ``active_days_30d``, lowers ``days_since_last_txn`` to its day index and moves every ``*_share_180d`` (the
  counts and spend behind a share are recovered from the share and its denominator, so the new share is exact).
- A login adds to ``logins_*d``, recomputes ``logins_trend_30d_vs_prior_90d`` and lowers
  ``days_since_last_login``; any other app event adds to its ``<type>_90d`` count.
- A location event changes no feature.

A wide-table row alone cannot always be updated: a trend's denominator is lost when its numerator is 0 (no spend
in 30 days), and ``active_days_30d`` does not say which days. The online snapshot therefore carries
``STATE_COLUMNS`` beside the features, computed by :func:`online_state` from the same lake tables, and
``apply_event`` keeps them up to date. ``tests/unit/features/test_online.py`` proves the definition: on a
synthetic bank, ``apply_event`` equals ``build_features`` (and ``online_state``) of the lake with the facts
appended, on every column.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Annotated, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from pipelines.data.schema import APP_EVENT_TYPES, MERCHANT_CATEGORIES, TXN_CHANNELS
from pipelines.features.catalogue import BY_NAME, ID, LOGIN_WINDOWS, TXN_WINDOWS, WindowContract
from pipelines.features.wide_table import _bands, _is, _Sums, eligible_customers

EVENT_TYPES = (*APP_EVENT_TYPES, "transaction", "location")

# The trends compare the last RECENT_DAYS with the monthly mean over ages [PRIOR_DAYS) (wide_table's trends and
# active_days_30d); the state columns hold what a row alone cannot say.
RECENT_DAYS = 30
PRIOR_DAYS = (30, 120)
STATE_COLUMNS = ("prior_spend_30_120d", "prior_txn_count_30_120d", "prior_logins_30_120d", "txn_days_30d")
_TRENDS = {  # trend feature: (its numerator, the state column of its prior window)
    "spend_trend_30d_vs_prior_90d": ("spend_30d", "prior_spend_30_120d"),
    "txn_trend_30d_vs_prior_90d": ("txn_count_30d", "prior_txn_count_30_120d"),
    "logins_trend_30d_vs_prior_90d": ("logins_30d", "prior_logins_30_120d"),
}
# The count shares of the last 180 days: the share's key and whether a transaction counts towards it.
_COUNT_SHARES = {
    "cross_border": lambda e: e.is_cross_border,
    "installment": lambda e: e.is_installment,
    "online": lambda e: e.channel == "online",
    "mobile_wallet": lambda e: e.channel == "mobile_wallet",
}
_SHARE_DAYS = 180


# ------------------------------------------------------------------------------------------------------ events


class Event(BaseModel):
    """One customer event arriving in real time. Strict: no unknown fields, no coercion of numbers or flags from
    strings; ``ts`` is an ISO datetime (naive = UTC), kept as an aware UTC datetime. Transaction fields
    (``amount``, ``merchant_category``, ``channel``, ``is_cross_border``, ``is_installment``) belong to
    ``type="transaction"`` alone."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    type: Literal[EVENT_TYPES]  # type: ignore[valid-type]
    ts: Annotated[datetime, Field(strict=False)]
    amount: float | None = Field(None, validate_default=True)
    merchant_category: Literal[MERCHANT_CATEGORIES] | None = Field(None, validate_default=True)  # type: ignore[valid-type]
    channel: Literal[TXN_CHANNELS] | None = Field(None, validate_default=True)  # type: ignore[valid-type]
    is_cross_border: bool = Field(False, validate_default=True)
    is_installment: bool = Field(False, validate_default=True)
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180, validate_default=True)

    @field_validator("ts", mode="before")
    @classmethod
    def _iso(cls, value: object) -> object:
        if not isinstance(value, str | datetime):
            raise ValueError(f"ts must be an ISO datetime, got {type(value).__name__} {value!r}")
        return value

    @field_validator("ts")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @field_validator("amount")
    @classmethod
    def _amount(cls, value: float | None, info: ValidationInfo) -> float | None:
        if _is_transaction(info):
            if value is None:
                raise ValueError("amount is required for a transaction")
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"amount must be a finite number > 0, got {value}")
        elif value is not None:
            raise ValueError(f"amount applies to transactions only, not to a {info.data.get('type')} event")
        return value

    @field_validator("merchant_category")
    @classmethod
    def _category(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _transaction_field("merchant_category", value, info, required=True)

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str | None, info: ValidationInfo) -> str | None:
        value = _transaction_field("channel", value, info, required=False)
        return "pos" if value is None and _is_transaction(info) else value

    @field_validator("is_cross_border", "is_installment")
    @classmethod
    def _flag(cls, value: bool, info: ValidationInfo) -> bool:
        if value and "type" in info.data and not _is_transaction(info):
            raise ValueError(
                f"{info.field_name} applies to transactions only, not to a {info.data['type']} event"
            )
        return value

    @field_validator("lon")
    @classmethod
    def _both_or_neither(cls, value: float | None, info: ValidationInfo) -> float | None:
        if "lat" in info.data and (value is None) != (info.data["lat"] is None):
            raise ValueError("lat and lon come together: give both or neither")
        return value


def _is_transaction(info: ValidationInfo) -> bool:
    return info.data.get("type") == "transaction"


def _transaction_field(name: str, value, info: ValidationInfo, *, required: bool):
    if "type" not in info.data:  # the type itself failed: its error says so
        return value
    if _is_transaction(info):
        if required and value is None:
            raise ValueError(f"{name} is required for a transaction")
    elif value is not None:
        raise ValueError(f"{name} applies to transactions only, not to a {info.data['type']} event")
    return value


def _snapshot_date(as_of: date | str | pd.Timestamp) -> pd.Timestamp:
    stamp = pd.Timestamp(as_of)
    if stamp.tzinfo is not None or stamp != stamp.normalize():
        raise ValueError(f"as_of must be a date (a snapshot's day), got {as_of!r}")
    return stamp


def lake_stamp(event: Event, as_of: date | str | pd.Timestamp) -> pd.Timestamp:
    """When the event's fact is dated in the lake: the snapshot's last day (``as_of`` minus one day) at the
    event's UTC time of day, naive as the lake's timestamps. ValueError when the event is before ``as_of`` (the
    snapshot has its day already)."""
    day = _snapshot_date(as_of)
    ts = pd.Timestamp(event.ts).tz_convert("UTC").tz_localize(None)
    if ts < day:
        raise ValueError(
            f"the event at {event.ts.isoformat()} is before the snapshot's as_of {day.date()}: "
            "only events at or after it update the snapshot"
        )
    return day - pd.Timedelta(days=1) + (ts - ts.normalize())


def lake_fact(event: Event, customer_id: int, as_of: date | str | pd.Timestamp) -> tuple[str, dict] | None:
    """The event as the fact of a lake table that ``build_features`` reads: ``(table, row)`` with the row's
    source columns (``wide_table.SOURCE_COLUMNS``), dated by :func:`lake_stamp`; None for a location event (no
    table of the lake holds it)."""
    stamp = lake_stamp(event, as_of)
    if event.type == "transaction":
        return "transactions", {
            ID: customer_id,
            "txn_ts": stamp,
            "amount": event.amount,
            "merchant_category": event.merchant_category,
            "is_cross_border": event.is_cross_border,
            "is_installment": event.is_installment,
            "channel": event.channel,
        }
    if event.type in APP_EVENT_TYPES:
        return "app_events", {ID: customer_id, "event_ts": stamp, "event_type": event.type}
    return None


# ------------------------------------------------------------------------------------------------- the update


def apply_event(row: Mapping, event: Event, as_of: date | str | pd.Timestamp) -> dict:
    """The customer's snapshot row (features and ``STATE_COLUMNS``) at ``as_of`` updated by one event at or after
    ``as_of`` (module docstring: the definition). Returns a new dict; ``row`` is not changed. ValueError when the
    event is before ``as_of`` or the row lacks a column the update needs (naming them)."""
    age = (_snapshot_date(as_of) - lake_stamp(event, as_of)) / pd.Timedelta(days=1)
    out = dict(row)
    if event.type == "transaction":
        _require(out, _TRANSACTION_COLUMNS)
        _add_transaction(out, event, age)
    elif event.type == "login":
        _require(out, _LOGIN_COLUMNS)
        _add_login(out, age)
    elif event.type in APP_EVENT_TYPES:
        name = f"{event.type}_90d"
        _require(out, (name,))
        if age < _window_days(name):
            out[name] = out[name] + 1.0
    return out


def event_columns(event_type: str) -> tuple[str, ...]:
    """The snapshot columns an event of ``event_type`` may change (what :func:`apply_event` updates)."""
    if event_type == "transaction":
        return _TRANSACTION_COLUMNS
    if event_type == "login":
        return _LOGIN_COLUMNS
    if event_type in APP_EVENT_TYPES:
        return (f"{event_type}_90d",)
    if event_type == "location":
        return ()
    raise ValueError(f"unknown event type {event_type!r}; known: {', '.join(EVENT_TYPES)}")


def _window_days(feature: str) -> int:
    """The N of a feature's N-day window, from the catalogue (``"90d"`` -> 90)."""
    return int(BY_NAME[feature].window.removesuffix("d"))


_TRANSACTION_COLUMNS = (
    *(f"{kind}_{w}d" for w in TXN_WINDOWS for kind in ("txn_count", "spend")),
    "days_since_last_txn",
    "avg_ticket_90d",
    "avg_ticket_30d",
    "spend_trend_30d_vs_prior_90d",
    "txn_trend_30d_vs_prior_90d",
    "active_days_30d",
    *(f"{key}_share_{_SHARE_DAYS}d" for key in _COUNT_SHARES),
    *(f"cat_{c}_spend_share_{_SHARE_DAYS}d" for c in MERCHANT_CATEGORIES),
    "prior_spend_30_120d",
    "prior_txn_count_30_120d",
    "txn_days_30d",
)
_LOGIN_COLUMNS = (
    *(f"logins_{w}d" for w in LOGIN_WINDOWS),
    "logins_trend_30d_vs_prior_90d",
    "days_since_last_login",
    "prior_logins_30_120d",
)


def _require(row: dict, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in row]
    if missing:
        raise ValueError(
            f"the row of customer {row.get(ID)} lacks {missing}: read rows from an online snapshot "
            "(wide-table features and online.STATE_COLUMNS)"
        )


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else math.nan


def _add_transaction(out: dict, event: Event, age: float) -> None:
    n_before, spend_before = out[f"txn_count_{_SHARE_DAYS}d"], out[f"spend_{_SHARE_DAYS}d"]
    # What the shares were computed from: whole counts (exact after rounding) and spend per category.
    counts = {
        k: round(out[f"{k}_share_{_SHARE_DAYS}d"] * n_before) if n_before > 0 else 0 for k in _COUNT_SHARES
    }
    spend_at = {
        c: out[f"cat_{c}_spend_share_{_SHARE_DAYS}d"] * spend_before if spend_before > 0 else 0.0
        for c in MERCHANT_CATEGORIES
    }
    for w in TXN_WINDOWS:
        if age < w:
            out[f"txn_count_{w}d"] = out[f"txn_count_{w}d"] + 1.0
            out[f"spend_{w}d"] = out[f"spend_{w}d"] + event.amount
    day = math.floor(age)
    out["days_since_last_txn"] = float(min(out["days_since_last_txn"], day))
    for w in (90, 30):
        out[f"avg_ticket_{w}d"] = _ratio(out[f"spend_{w}d"], out[f"txn_count_{w}d"])
    if day < RECENT_DAYS:
        days = int(out["txn_days_30d"]) | (1 << day)
        out["txn_days_30d"] = days
        out["active_days_30d"] = float(days.bit_count())
    for trend in ("spend_trend_30d_vs_prior_90d", "txn_trend_30d_vs_prior_90d"):
        _trend(out, trend)
    if age < _SHARE_DAYS:
        n, spend = out[f"txn_count_{_SHARE_DAYS}d"], out[f"spend_{_SHARE_DAYS}d"]
        for key, counts_towards in _COUNT_SHARES.items():
            out[f"{key}_share_{_SHARE_DAYS}d"] = _ratio(counts[key] + bool(counts_towards(event)), n)
        spend_at[event.merchant_category] += event.amount
        for c in MERCHANT_CATEGORIES:
            out[f"cat_{c}_spend_share_{_SHARE_DAYS}d"] = _ratio(spend_at[c], spend)


def _add_login(out: dict, age: float) -> None:
    for w in LOGIN_WINDOWS:
        if age < w:
            out[f"logins_{w}d"] = out[f"logins_{w}d"] + 1.0
    out["days_since_last_login"] = float(min(out["days_since_last_login"], math.floor(age)))
    _trend(out, "logins_trend_30d_vs_prior_90d")


def _trend(out: dict, trend: str) -> None:
    """The trend as wide_table computes it: the last 30 days against the monthly mean of the prior 90, plus 1."""
    numerator, prior = _TRENDS[trend]
    out[trend] = out[numerator] / (out[prior] / 3 + 1)


# ------------------------------------------------------------------------------------------------ the state


def online_state(
    tables: Mapping[str, pd.DataFrame], as_of: date | pd.Timestamp, window: WindowContract | None = None
) -> pd.DataFrame:
    """``customer_id`` + ``STATE_COLUMNS`` for the customers ``build_features`` gives at ``as_of`` (same order),
    from the same tables: the transactions' spend and count and the logins aged ``PRIOR_DAYS`` (the trends'
    denominators), and ``txn_days_30d``, a bit mask of the whole days of age under 30 with a transaction (bit d:
    a transaction d days old; ``active_days_30d`` is its bit count). A table absent from ``tables`` gives 0."""
    window = window or WindowContract()
    as_of = pd.Timestamp(as_of)
    base = eligible_customers(tables["customers"], as_of)
    index = pd.Index(base[ID])
    n = len(index)
    sums = _Sums(n)
    days = np.zeros(n, dtype=np.int64)
    lo, hi = PRIOR_DAYS
    if tables.get("transactions") is not None:
        for txn in _bands(tables["transactions"], "txn_ts", index, as_of, window.lookback_days):
            prior = (txn.age >= lo) & (txn.age < hi)
            sums.add("prior_spend_30_120d", txn.total(txn["amount"].to_numpy(np.float64), prior))
            sums.add("prior_txn_count_30_120d", txn.count(prior))
            recent = txn.age < RECENT_DAYS
            np.bitwise_or.at(days, txn.pos[recent], 1 << np.floor(txn.age[recent]).astype(np.int64))
    if tables.get("app_events") is not None:
        for events in _bands(tables["app_events"], "event_ts", index, as_of, window.lookback_days):
            login = _is(events["event_type"], "login")
            sums.add("prior_logins_30_120d", events.count(login & (events.age >= lo) & (events.age < hi)))
    return pd.DataFrame(
        {
            ID: base[ID].to_numpy(),
            **{c: sums[c] for c in STATE_COLUMNS if c != "txn_days_30d"},
            "txn_days_30d": days,
        }
    )
