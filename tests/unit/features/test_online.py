"""One definition: a snapshot row updated by events equals the wide table rebuilt with those events in the lake.

On a small synthetic bank, customers of several kinds (active, lapsed, never transacting, with and without app
use, active on the snapshot's last day) get events of every kind; ``apply_event`` on their snapshot row must equal
``build_features`` (and ``online_state``) at the same ``as_of`` of the lake tables with ``lake_fact`` of each event
appended, on every column.
"""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from pipelines.data import storage
from pipelines.features.catalogue import ID
from pipelines.features.online import (
    STATE_COLUMNS,
    Event,
    apply_event,
    lake_fact,
    lake_stamp,
    online_state,
)
from pipelines.features.wide_table import build_features, load_tables
from pipelines.synthetic.bank import SynthConfig, generate_bank


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    """The lake's tables at its end, and the snapshot (features + state) built from them."""
    data = tmp_path_factory.mktemp("online_bank")
    generate_bank(SynthConfig(customers=800, months=8, seed=13, chunk_size=1_000), data, progress=None)
    lake = data / "lake"
    as_of = pd.Timestamp(storage.lake_end(lake))
    tables = load_tables(lake, as_of)
    return tables, as_of, _snapshot(tables, as_of)


def _snapshot(tables, as_of) -> pd.DataFrame:
    wide = build_features(tables, as_of)
    state = online_state(tables, as_of)
    assert (state[ID].to_numpy() == wide[ID].to_numpy()).all()
    return pd.concat([wide, state.drop(columns=ID)], axis=1).set_index(ID)


def _kinds(snapshot: pd.DataFrame) -> dict[str, int]:
    """One customer of each kind, the first by id."""
    s = snapshot
    kinds = {
        "active": (s["txn_count_30d"] > 0) & (s["logins_30d"] > 0),
        "lapsed spender (no spend in 30 days, some before)": (s["txn_count_30d"] == 0)
        & (s["txn_count_180d"] > 0),
        "no transaction in 180 days": s["txn_count_180d"] == 0,
        "no app use": s["logins_90d"] == 0,
        "lapsed app user": (s["logins_30d"] == 0) & (s["prior_logins_30_120d"] > 0),
        "spent on the last day": s["days_since_last_txn"] == 0,
        "logged in on the last day": s["days_since_last_login"] == 0,
        "spent one day before the last": s["days_since_last_txn"] == 1,
    }
    found = {name: int(s.index[mask][0]) for name, mask in kinds.items() if mask.any()}
    assert len(found) >= 7, f"the bank lacks customer kinds: {set(kinds) - set(found)}"
    return found


def _with_facts(tables, facts: list[tuple[str, dict]]) -> dict[str, pd.DataFrame]:
    out = dict(tables)
    for table in {t for t, _ in facts}:
        rows = pd.DataFrame([row for t, row in facts if t == table])
        frame = out[table]
        out[table] = pd.concat(
            [frame, rows.astype({c: frame[c].dtype for c in rows.columns})], ignore_index=True
        )
    return out


def _same(got: dict, want: pd.Series, where: str) -> None:
    assert set(got) == set(want.index), f"{where}: columns differ {set(got) ^ set(want.index)}"
    for column, expected in want.items():
        value = got[column]
        if isinstance(expected, float | np.floating) and math.isnan(expected):
            assert isinstance(value, float) and math.isnan(value), f"{where}: {column} = {value}, want NaN"
        elif isinstance(expected, float | np.floating):
            assert value == pytest.approx(float(expected), rel=1e-9, abs=1e-12), f"{where}: {column}"
        else:
            assert value == expected, f"{where}: {column} = {value!r}, want {expected!r}"


def _check(bank, events_of: dict[int, list[Event]]) -> None:
    tables, as_of, snapshot = bank
    facts = [lake_fact(e, cid, as_of) for cid, events in events_of.items() for e in events]
    rebuilt = _snapshot(_with_facts(tables, [f for f in facts if f is not None]), as_of)
    for cid, events in events_of.items():
        row = {ID: cid, **snapshot.loc[cid].to_dict()}
        for event in events:
            row = apply_event(row, event, as_of)
        want = pd.concat([pd.Series({ID: cid}), rebuilt.loc[cid]])
        _same(row, want, f"customer {cid} after {[e.type for e in events]}")


def _at(as_of, days: int, time: str) -> str:
    return f"{(as_of + timedelta(days=days)).date()}T{time}"


EVENTS = {
    "pos purchase": lambda a: {"type": "transaction", "ts": _at(a, 0, "10:15:00"), "amount": 42.5,
                               "merchant_category": "grocery"},
    "online cross-border instalment, two days later": lambda a: {
        "type": "transaction", "ts": _at(a, 2, "23:59:59.5"), "amount": 1234.56, "merchant_category": "travel",
        "channel": "online", "is_cross_border": True, "is_installment": True},
    "mobile wallet at midnight (a whole day old)": lambda a: {
        "type": "transaction", "ts": _at(a, 1, "00:00:00"), "amount": 3.2, "merchant_category": "dining",
        "channel": "mobile_wallet"},
    "atm in another time zone": lambda a: {"type": "transaction", "ts": _at(a, 0, "08:00:00+08:00"),
                                           "amount": 100.0, "merchant_category": "utilities", "channel": "atm"},
    "login": lambda a: {"type": "login", "ts": _at(a, 0, "07:30:00")},
    "login at midnight": lambda a: {"type": "login", "ts": _at(a, 3, "00:00:00")},
    "coupon view": lambda a: {"type": "coupon_view", "ts": _at(a, 0, "12:00:00")},
    "installment application": lambda a: {"type": "installment_application", "ts": _at(a, 1, "18:00:00")},
    "location": lambda a: {"type": "location", "ts": _at(a, 0, "12:00:00"), "lat": 51.5, "lon": -0.12},
}  # fmt: skip


@pytest.mark.parametrize("kind", list(EVENTS))
def test_one_event_equals_the_wide_table_rebuilt_with_its_fact(bank, kind):
    _, as_of, snapshot = bank
    event = Event.model_validate(EVENTS[kind](as_of))
    _check(bank, {cid: [event] for cid in _kinds(snapshot).values()})


def test_every_feature_an_event_touches_moves(bank):
    """The equality above is not trivial: a purchase and a login change the features they should."""
    _, as_of, snapshot = bank
    cid = _kinds(snapshot)["lapsed spender (no spend in 30 days, some before)"]
    row = {ID: cid, **snapshot.loc[cid].to_dict()}
    bought = apply_event(row, Event.model_validate(EVENTS["pos purchase"](as_of)), as_of)
    changed = {c for c in row if not (row[c] == bought[c] or (row[c] != row[c] and bought[c] != bought[c]))}
    assert {"txn_count_7d", "spend_180d", "days_since_last_txn", "active_days_30d", "txn_days_30d",
            "spend_trend_30d_vs_prior_90d", "txn_trend_30d_vs_prior_90d", "cat_grocery_spend_share_180d",
            "avg_ticket_90d", "avg_ticket_30d"} <= changed  # fmt: skip
    assert bought["days_since_last_txn"] == 0 and bought["active_days_30d"] == 1
    assert row["avg_ticket_30d"] != row["avg_ticket_30d"] and bought["avg_ticket_30d"] > 0  # from none (NaN)
    assert bought["spend_trend_30d_vs_prior_90d"] > 0 == row["spend_trend_30d_vs_prior_90d"]
    located = apply_event(row, Event.model_validate(EVENTS["location"](as_of)), as_of)
    assert located == row and located is not row


def test_sequences_of_events_equal_the_wide_table_rebuilt_with_all_their_facts(bank):
    _, as_of, snapshot = bank
    make = {k: Event.model_validate(f(as_of)) for k, f in EVENTS.items()}
    sequences = [
        ["pos purchase", "mobile wallet at midnight (a whole day old)", "login"],
        ["login", "login at midnight", "coupon view"],
        ["online cross-border instalment, two days later", "pos purchase"],
        ["atm in another time zone", "installment application", "location"],
    ]
    kinds = list(_kinds(snapshot).values())
    _check(bank, {cid: [make[k] for k in sequences[i % len(sequences)]] for i, cid in enumerate(kinds)})


def test_the_state_columns_are_what_a_row_alone_cannot_say(bank):
    _, _, snapshot = bank
    assert set(STATE_COLUMNS) <= set(snapshot.columns)
    bits = snapshot["txn_days_30d"].map(int.bit_count)
    assert (bits == snapshot["active_days_30d"]).all()
    lapsed = (snapshot["txn_count_30d"] == 0) & (snapshot["prior_txn_count_30_120d"] > 0)
    assert lapsed.any() and (snapshot.loc[lapsed, "txn_trend_30d_vs_prior_90d"] == 0).all()


def test_an_event_before_the_snapshot_or_a_row_without_state_is_refused(bank):
    _, as_of, snapshot = bank
    cid = int(snapshot.index[0])
    row = {ID: cid, **snapshot.loc[cid].to_dict()}
    early = Event(type="login", ts=(as_of - timedelta(seconds=1)).to_pydatetime())
    with pytest.raises(ValueError, match="before the snapshot's as_of"):
        apply_event(row, early, as_of)
    with pytest.raises(ValueError, match=r"lacks \['prior_logins_30_120d'\]"):
        apply_event({k: v for k, v in row.items() if k != "prior_logins_30_120d"},
                    Event.model_validate(EVENTS["login"](as_of)), as_of)  # fmt: skip
    with pytest.raises(ValueError, match="as_of must be a date"):
        apply_event(row, Event.model_validate(EVENTS["login"](as_of)), as_of + timedelta(hours=6))


def test_the_lake_stamp_is_the_snapshots_last_day_at_the_events_utc_time():
    as_of = pd.Timestamp("2026-03-01")
    event = Event.model_validate({"type": "login", "ts": "2026-03-04T09:30:00+01:00"})
    assert lake_stamp(event, as_of) == pd.Timestamp("2026-02-28T08:30:00")
    assert lake_fact(Event.model_validate({"type": "location", "ts": "2026-03-04"}), 1, as_of) is None


BAD_EVENTS = [
    ({"type": "purchase", "ts": "2026-03-01T10:00"}, "type", "Input should be 'login'"),
    ({"type": "login"}, "ts", "Field required"),
    ({"type": "login", "ts": "yesterday"}, "ts", "valid datetime"),
    ({"type": "login", "ts": 1767225600}, "ts", "ts must be an ISO datetime, got int"),
    ({"type": "transaction", "ts": "2026-03-01", "merchant_category": "dining"}, "amount", "amount is required"),
    ({"type": "transaction", "ts": "2026-03-01", "amount": 0, "merchant_category": "dining"}, "amount", "> 0"),
    ({"type": "transaction", "ts": "2026-03-01", "amount": "12", "merchant_category": "dining"}, "amount",
     "valid number"),
    ({"type": "transaction", "ts": "2026-03-01", "amount": 5.0}, "merchant_category", "is required"),
    ({"type": "transaction", "ts": "2026-03-01", "amount": 5.0, "merchant_category": "yachts"},
     "merchant_category", "Input should be 'grocery'"),
    ({"type": "transaction", "ts": "2026-03-01", "amount": 5.0, "merchant_category": "fuel", "channel": "fax"},
     "channel", "Input should be 'pos'"),
    ({"type": "transaction", "ts": "2026-03-01", "amount": 5.0, "merchant_category": "fuel",
      "is_cross_border": "yes"}, "is_cross_border", "valid boolean"),
    ({"type": "login", "ts": "2026-03-01", "amount": 5.0}, "amount", "applies to transactions only"),
    ({"type": "login", "ts": "2026-03-01", "channel": "pos"}, "channel", "applies to transactions only"),
    ({"type": "login", "ts": "2026-03-01", "is_installment": True}, "is_installment", "transactions only"),
    ({"type": "location", "ts": "2026-03-01", "lat": 51.5}, "lon", "give both or neither"),
    ({"type": "location", "ts": "2026-03-01", "lon": 2.0}, "lon", "give both or neither"),
    ({"type": "location", "ts": "2026-03-01", "lat": 91.0, "lon": 0.0}, "lat", "less than or equal to 90"),
    ({"type": "location", "ts": "2026-03-01", "lat": 0.0, "lon": -181.0}, "lon", "greater than or equal"),
    ({"type": "login", "ts": "2026-03-01", "device": "ios"}, "device", "Extra inputs are not permitted"),
]  # fmt: skip


@pytest.mark.parametrize(("payload", "field", "message"), BAD_EVENTS)
def test_a_bad_event_names_its_field(payload, field, message):
    with pytest.raises(ValidationError) as caught:
        Event.model_validate(payload)
    errors = caught.value.errors()
    assert [e["loc"] for e in errors] == [(field,)], errors
    assert message in errors[0]["msg"]


def test_a_transaction_takes_defaults_and_naive_time_is_utc():
    event = Event.model_validate(
        {"type": "transaction", "ts": "2026-03-01T10:00:00", "amount": 5, "merchant_category": "fuel"}
    )
    assert (event.channel, event.is_cross_border, event.is_installment) == ("pos", False, False)
    assert event.ts.utcoffset() == timedelta(0) and event.ts.hour == 10 and event.amount == 5.0
    assert Event.model_validate({"type": "login", "ts": "2026-03-01T10:00:00"}).channel is None
