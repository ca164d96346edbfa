"""The wide table: one definition, catalogued, and blind to anything at or after as_of."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from pipelines.data import storage
from pipelines.data.schema import TABLES
from pipelines.features import catalogue
from pipelines.features.catalogue import FEATURE_NAMES, WindowContract
from pipelines.features.wide_table import build_features, load_tables
from tests.conftest import PROJECT_ROOT

AS_OF = pd.Timestamp("2025-10-01")


def _empty(name: str) -> pd.DataFrame:
    return TABLES[name].arrow_schema.empty_table().to_pandas(date_as_object=False)


def _tiny_tables() -> dict[str, pd.DataFrame]:
    """Three customers: 1 active, 2 closed before as_of, 3 signs up on as_of."""
    customers = pd.DataFrame(
        {
            "customer_id": [1, 2, 3],
            "signup_date": pd.to_datetime(["2024-01-15", "2024-03-01", "2025-10-01"]),
            "birth_year": np.array([1980, 1990, 2000], dtype=np.int16),
            "gender": pd.Categorical(["F", "M", "U"]),
            "city_tier": np.array([1, 2, 3], dtype=np.int8),
            "income_band": pd.Categorical(["middle", "low", "high"]),
            "occupation": pd.Categorical(["salaried", "student", "other"]),
            "card_tier": pd.Categorical(["gold", "classic", "infinite"]),
            "credit_limit": [1000.0, 2000.0, 3000.0],
            "acquisition_channel": pd.Categorical(["branch", "online", "partner"]),
            "closed_date": pd.to_datetime([None, "2025-09-15", None]),
        }
    )
    ts = pd.to_datetime(["2025-09-30 10:00", "2025-09-20 12:00", "2025-07-01 09:00", "2025-10-01 00:00"])
    transactions = pd.DataFrame(
        {
            "txn_id": [1, 2, 3, 4],
            "customer_id": [1, 1, 1, 1],
            "txn_ts": ts,
            "amount": [10.0, 30.0, 60.0, 999.0],  # the last one is at as_of: invisible
            "merchant_category": pd.Categorical(["grocery", "travel", "grocery", "grocery"]),
            "is_cross_border": [False, True, False, False],
            "is_installment": [False, False, False, False],
            "channel": pd.Categorical(["pos", "online", "pos", "pos"]),
        }
    )
    balances = pd.DataFrame(
        {
            "customer_id": [1, 1, 1],
            "month_end": pd.to_datetime(["2025-08-31", "2025-09-30", "2025-10-31"]),
            "aum": [200.0, 150.0, 1.0],
            "card_balance": [50.0, 100.0, 0.0],
        }
    )
    return {
        "customers": customers,
        "transactions": transactions,
        "app_events": _empty("app_events"),
        "balances": balances,
        "campaign_contacts": _empty("campaign_contacts"),
        "responses": _empty("responses"),
    }


def test_columns_are_exactly_the_catalogue_and_never_pii():
    wide = build_features(_tiny_tables(), AS_OF)
    assert list(wide.columns) == ["customer_id", *FEATURE_NAMES]
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    pii = {c for t in TABLES.values() for c in t.pii_columns}
    assert not pii & set(wide.columns)


def test_feature_doc_is_generated_from_the_catalogue():
    doc = (PROJECT_ROOT / "docs" / "features.md").read_text()
    match = re.search(r"<!-- BEGIN GENERATED[^>]*-->\n(.*)<!-- END GENERATED -->", doc, re.S)
    assert match and match.group(1) == catalogue.render_catalogue(), (
        "regenerate: python -m pipelines.features.catalogue"
    )


def test_values_on_a_hand_made_customer():
    wide = build_features(_tiny_tables(), AS_OF).set_index("customer_id")
    assert list(wide.index) == [1]  # 2 closed before as_of, 3 signed up on it
    row = wide.loc[1]
    assert row["txn_count_7d"] == 1 and row["spend_7d"] == 10.0
    assert row["txn_count_30d"] == 2 and row["spend_30d"] == 40.0
    assert row["txn_count_180d"] == 3 and row["spend_180d"] == 100.0
    assert row["days_since_last_txn"] == 0
    assert row["active_days_30d"] == 2
    assert row["cross_border_share_180d"] == pytest.approx(1 / 3)
    assert row["online_share_180d"] == pytest.approx(1 / 3)
    assert row["cat_travel_spend_share_180d"] == pytest.approx(0.3)
    # 30d spend 40 against a monthly mean of 60/3 over days 31-120.
    assert row["spend_trend_30d_vs_prior_90d"] == pytest.approx(40 / (60 / 3 + 1))
    assert row["aum_last"] == 150.0 and row["aum_change_1m"] == pytest.approx(-0.25)
    assert row["credit_utilisation"] == pytest.approx(0.1)
    assert row["days_since_last_login"] == 181 and row["logins_30d"] == 0
    assert row["age_years"] == 45 and row["tenure_days"] == (AS_OF - pd.Timestamp("2024-01-15")).days
    assert row["card_tier"] == "gold" and list(wide["card_tier"].cat.categories) == list(
        TABLES["customers"].column("card_tier").allowed
    )


def test_window_contract_rejects_a_lookback_shorter_than_the_windows():
    with pytest.raises(ValueError, match="lookback_days"):
        WindowContract(lookback_days=90)


def _perturb_future(tables: dict[str, pd.DataFrame], as_of: pd.Timestamp, rng) -> dict[str, pd.DataFrame]:
    """Delete half of every event at or after as_of and change the rest (amounts, types, customers)."""
    out = {k: v.copy() for k, v in tables.items()}
    for name, ts in (
        ("transactions", "txn_ts"),
        ("app_events", "event_ts"),
        ("responses", "event_ts"),
        ("campaign_contacts", "selected_at"),
        ("balances", "month_end"),
    ):
        frame = out[name]
        future = (frame[ts] >= as_of).to_numpy()
        drop = future & (rng.random(len(frame)) < 0.5)
        frame = frame.loc[~drop].copy()
        change = (frame[ts] >= as_of).to_numpy()
        ids = frame["customer_id"].to_numpy().copy()
        ids[change] = rng.permutation(ids[change])
        frame["customer_id"] = ids
        for column in ("amount", "aum", "card_balance"):
            if column in frame:
                frame.loc[change, column] = frame.loc[change, column] * 7 + 1
        if name == "app_events":
            frame.loc[change, "event_type"] = "login"
        if name == "campaign_contacts":
            frame.loc[change, "sent_at"] = as_of - pd.Timedelta(days=1)  # a future row claiming a past send
            frame = frame.loc[~change]  # ...is dropped again: contacts are selected at or after as_of
        out[name] = frame
    customers = out["customers"]
    closes_later = customers["closed_date"] >= as_of
    customers.loc[closes_later, "closed_date"] = pd.NaT  # a later closure is unknown at as_of
    return out


def test_no_event_at_or_after_as_of_changes_any_feature(bank):
    as_of = pd.Timestamp("2025-09-01")
    lake = bank / "lake"
    tables = {name: storage.read_table(lake, name) for name in TABLES}
    before = build_features(tables, as_of)
    after = build_features(_perturb_future(tables, as_of, np.random.default_rng(1)), as_of)
    pd.testing.assert_frame_equal(before, after)
    assert len(before) > 15_000
    # The perturbation is real: features one month later do change.
    later = build_features(
        _perturb_future(tables, as_of, np.random.default_rng(1)), as_of + pd.DateOffset(months=1)
    )
    assert not later["spend_30d"].equals(build_features(tables, as_of + pd.DateOffset(months=1))["spend_30d"])


def test_load_tables_reads_only_the_lookback_and_matches_a_full_read(bank):
    lake = bank / "lake"
    tables = load_tables(lake, AS_OF)
    assert tables["transactions"]["txn_ts"].min() >= pd.Timestamp("2025-04-01")
    full = {name: storage.read_table(lake, name) for name in TABLES}
    pd.testing.assert_frame_equal(build_features(tables, AS_OF), build_features(full, AS_OF))
