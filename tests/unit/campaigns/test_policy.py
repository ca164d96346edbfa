"""The contact policy: every exclusion and its precedence, the frequency cap's sliding window, contact history
from the lake, dead accounts on a hand-made lake, the three selection modes, and the demo specs on the demo bank."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from pipelines.campaigns import policy
from pipelines.campaigns.policy import (
    EXCLUSION_COLUMNS,
    apply_policy,
    contact_counts,
    empty_history,
    invalid_customers,
    lake_contact_history,
    select_audience,
)
from pipelines.campaigns.spec import AudienceRule, InvalidCustomerRule, Selection, load_specs
from pipelines.data import storage
from pipelines.data.schema import TABLES
from pipelines.features.wide_table import build_features, load_tables
from tests.unit.campaigns.test_spec import CAMPAIGNS, _spec

AS_OF = pd.Timestamp("2026-01-01")


# --------------------------------------------------------------------------------------------------------------
# Contact history and counts


def _history(rows: list[tuple[int, str, str]]) -> pd.DataFrame:
    if not rows:
        return empty_history()
    ids, campaigns, dates = zip(*rows, strict=True)
    return pd.DataFrame({"customer_id": ids, "campaign": campaigns, "contact_date": pd.to_datetime(dates)})


def _days_before(days: int, as_of: pd.Timestamp = AS_OF) -> str:
    return (as_of - pd.Timedelta(days=days)).strftime("%Y-%m-%d")


@pytest.mark.parametrize(
    ("as_of", "expected"),
    [
        # contacts on 2025-09-01, 10-01, 10-20, 11-15 and 12-20, from three campaigns; the window is 90 days
        ("2025-11-30", 4),  # starts 2025-09-01, inclusive: 09-01, 10-01, 10-20, 11-15
        ("2025-12-01", 3),  # starts 2025-09-02: 09-01 has slid out; 12-20 is still in the future
        ("2026-01-01", 3),  # starts 2025-10-03: 10-20, 11-15, 12-20
        ("2026-02-15", 1),  # starts 2025-11-17: 12-20 only
    ],
)
def test_frequency_window_slides_and_counts_every_campaign(as_of, expected):
    history = _history(
        [
            (7, "cmp-a", "2025-09-01"),
            (7, "cmp-b", "2025-10-01"),
            (7, "cmp-a", "2025-10-20"),
            (7, "cmp-c", "2025-11-15"),
            (7, "cmp-b", "2025-12-20"),
            (8, "cmp-a", "2025-10-20"),
        ]
    )
    counts = contact_counts(history, as_of, recent_days=30, window_days=90).set_index("customer_id")
    assert counts.loc[7, "contacts_in_window"] == expected
    assert counts.loc[8, "contacts_in_window"] == (1 if as_of < "2026-01-18" else 0)


def test_contact_counts_last_contact_recency_and_what_is_ignored():
    history = _history(
        [
            (1, "cmp-a", _days_before(30)),  # exactly 30 days before: recent
            (2, "cmp-a", _days_before(31)),  # 31 days: not recent
            (2, "cmp-b", _days_before(31)),  # same day, two campaigns: last campaign is the later name
            (3, "cmp-a", _days_before(0)),  # on as_of itself: not before it, ignored
            (4, "cmp-a", _days_before(5)),
            (4, "cmp-a", _days_before(5)),  # an exact duplicate counts once
        ]
    )
    counts = contact_counts(history, AS_OF, recent_days=30, window_days=90)
    assert counts["customer_id"].tolist() == [1, 2, 4]
    c = counts.set_index("customer_id")
    assert c["recent_contact"].tolist() == [True, False, True]
    assert c.loc[2, "last_campaign"] == "cmp-b" and c.loc[2, "contacts_in_window"] == 2
    assert c.loc[4, "contacts_in_window"] == 1
    assert c.loc[1, "last_contact_date"] == AS_OF - pd.Timedelta(days=30)
    as_dates = history.assign(contact_date=history["contact_date"].dt.date.astype(object))  # from a database
    pd.testing.assert_frame_equal(contact_counts(as_dates, AS_OF, 30, 90), counts)
    off = contact_counts(history, AS_OF, recent_days=0, window_days=None)
    assert not off["recent_contact"].any() and (off["contacts_in_window"] == 0).all()
    assert contact_counts(empty_history(), AS_OF, 30, 90).empty
    with pytest.raises(ValueError, match="lacks column"):
        contact_counts(history.drop(columns="campaign"), AS_OF, 30, 90)


def _write(lake: Path, name: str, columns: dict[str, list]) -> None:
    """One table into a lake through ``io``; columns not given get a harmless constant."""
    spec = TABLES[name]
    n = len(next(iter(columns.values())))
    arrays = []
    for col in spec.columns:
        values = columns.get(col.name)
        if values is None:
            if col.allowed is not None:
                values = [col.allowed[0]] * n
            elif pa.types.is_boolean(col.type):
                values = [False] * n
            elif pa.types.is_integer(col.type):
                values = list(range(n))
            elif pa.types.is_floating(col.type):
                values = [1.0] * n
            else:
                values = ["x"] * n
        elif pa.types.is_timestamp(col.type) or pa.types.is_date(col.type):
            ts = pd.to_datetime(pd.Series(values))
            values = [None if pd.isna(t) else (t.date() if pa.types.is_date(col.type) else t) for t in ts]
        arrays.append(pa.array(values, type=col.type))
    storage.write_partitioned(pa.Table.from_arrays(arrays, schema=spec.arrow_schema), spec, lake, part=0)


def test_lake_contact_history_keeps_treatment_contacts_sent_before_as_of(tmp_path):
    _write(
        tmp_path,
        "campaign_contacts",
        {
            "campaign_id": ["cmp-a", "cmp-a", "cmp-b", "cmp-b", "cmp-c"],
            "customer_id": [1, 2, 1, 3, 1],
            "group": ["treatment", "holdout", "treatment", "treatment", "treatment"],
            "selected_at": ["2025-06-01", "2025-06-01", "2025-12-01", "2025-12-01", "2026-01-01"],
            "sent_at": ["2025-06-02 10:30", None, "2025-12-31 23:59", "2026-01-01 09:00", "2026-01-01 09:00"],
        },
    )
    history = lake_contact_history(tmp_path, AS_OF)
    assert list(history.columns) == ["customer_id", "campaign", "contact_date"]
    assert history.to_dict("list") == {
        "customer_id": [1, 1],
        "campaign": ["cmp-a", "cmp-b"],
        "contact_date": [pd.Timestamp("2025-06-02"), pd.Timestamp("2025-12-31")],
    }
    recent = lake_contact_history(tmp_path, AS_OF, lookback_days=30)
    assert recent["campaign"].tolist() == ["cmp-b"]
    assert lake_contact_history(tmp_path / "empty", AS_OF).empty


# --------------------------------------------------------------------------------------------------------------
# The policy


def _scored(n: int) -> pd.DataFrame:
    ids = np.arange(1, n + 1)
    return pd.DataFrame(
        {
            "customer_id": ids,
            "score": np.linspace(0.9, 0.1, n),
            "decile": np.arange(n) % 10 + 1,
            "tenure_days": np.full(n, 400.0),
            "card_tier": pd.Categorical(["gold"] * n, categories=["classic", "gold", "platinum", "infinite"]),
        }
    )


RULES = [
    {"column": "tenure_days", "op": ">=", "value": 90},
    {"column": "card_tier", "op": "in", "value": ["gold", "platinum"]},
]


def test_every_exclusion_gets_the_first_reason_that_applies():
    scored = _scored(11)
    s = scored.set_index("customer_id")
    # customer: what is wrong with it (each one also has every later problem, to test precedence)
    #  1 do-not-contact  2 opted out  3 dead account  4 contacted 10 days ago  5 four contacts in 90 days
    #  6 fails both audience rules  7 fails the second rule only  8 tenure missing  9 nothing: eligible
    # 10 no customer record  11 nothing: eligible
    s.loc[[1, 2, 3, 4, 5, 6], "tenure_days"] = 30.0
    s.loc[[1, 2, 3, 4, 5, 6, 7], "card_tier"] = "classic"
    s.loc[8, "tenure_days"] = np.nan
    scored = s.reset_index()
    customers = pd.DataFrame(
        {
            "customer_id": [1, 2, 3, 4, 5, 6, 7, 8, 9, 11],
            "do_not_contact": [True, False, False, False, False, False, False, False, False, False],
            "marketing_opt_out": [True, True, False, False, False, False, False, False, False, False],
        }
    )
    history = _history(
        [(c, "cmp-old", _days_before(10)) for c in (1, 2, 3)]
        + [(4, "cmp-a", _days_before(50)), (4, "cmp-b", _days_before(10))]
        + [(c, f"cmp-{k}", _days_before(40 + 10 * k)) for c in (1, 2, 3, 4, 5) for k in range(4)]
    )
    invalid = pd.Index([1, 2, 3, 99], name="customer_id")
    spec = _spec(audience=RULES)
    eligible, exclusions = apply_policy(scored, customers, history, invalid, spec, AS_OF)

    assert eligible["customer_id"].tolist() == [9, 11]
    assert list(eligible.columns) == list(scored.columns)
    assert list(exclusions.columns) == list(EXCLUSION_COLUMNS)
    assert exclusions.to_dict("list") == {
        "customer_id": [1, 2, 3, 4, 5, 6, 7, 8, 10],
        "exclusion_reason": [
            "do_not_contact",
            "opt_out",
            "invalid_customer",
            "recent_contact",
            "frequency_cap",
            "audience:tenure_days >= 90",
            "audience:card_tier in [gold, platinum]",
            "audience:tenure_days >= 90",
            "do_not_contact",
        ],
        "detail": [
            "do_not_contact flag set",
            "marketing_opt_out flag set",
            "aum <= 100 and no transaction or app event in 12 months",
            f"last contact {_days_before(10)} (cmp-b), within 30 days",
            "4 contacts in the last 90 days (cap 4)",
            "tenure_days = 30.0",
            "card_tier = classic",
            "tenure_days is missing",
            "no do_not_contact flag on record",
        ],
    }
    assert pd.api.types.is_string_dtype(exclusions["exclusion_reason"])
    assert not set(eligible["customer_id"]) & set(exclusions["customer_id"])
    assert len(eligible) + len(exclusions) == len(scored)


def test_disabled_policy_parts_exclude_no_one():
    scored = _scored(4)
    customers = pd.DataFrame(
        {"customer_id": [1, 2, 3, 4], "do_not_contact": [True] * 4, "marketing_opt_out": [True] * 4}
    )
    history = _history([(c, f"cmp-{k}", _days_before(1 + k)) for c in (1, 2) for k in range(6)])
    spec = _spec(
        contact_policy={
            "exclude_do_not_contact": False,
            "exclude_opt_out": False,
            "recent_contact_days": 0,
            "frequency_cap": None,
            "invalid_customer": None,
        }
    )
    eligible, exclusions = apply_policy(scored, customers, history, pd.Index([1, 2, 3]), spec, AS_OF)
    assert eligible["customer_id"].tolist() == [1, 2, 3, 4] and exclusions.empty
    assert list(exclusions.columns) == list(EXCLUSION_COLUMNS)


def test_frequency_cap_alone_counts_contacts_across_campaigns_in_the_window():
    scored = _scored(3)
    customers = pd.DataFrame({"customer_id": [1, 2, 3], "do_not_contact": False, "marketing_opt_out": False})
    history = _history(
        [(1, c, _days_before(d)) for c, d in (("cmp-a", 35), ("cmp-b", 50), ("cmp-c", 80))]  # 3 in window
        + [(2, c, _days_before(d)) for c, d in (("cmp-a", 35), ("cmp-b", 50), ("cmp-c", 80), ("cmp-d", 90))]
        + [(3, c, _days_before(d)) for c, d in (("cmp-a", 35), ("cmp-b", 50), ("cmp-c", 80), ("cmp-d", 91))]
    )
    spec = _spec(
        contact_policy={"recent_contact_days": 0, "frequency_cap": {"max_contacts": 4, "window_days": 90}}
    )
    eligible, exclusions = apply_policy(scored, customers, history, pd.Index([]), spec, AS_OF)
    assert eligible["customer_id"].tolist() == [1, 3]
    assert exclusions[["customer_id", "exclusion_reason"]].values.tolist() == [[2, "frequency_cap"]]


@pytest.mark.parametrize(
    ("op", "value", "passing"),
    [
        ("==", 2.0, [2]),
        ("!=", 2.0, [1, 3, 4]),  # the missing value (customer 5) fails even "!="
        ("<", 3.0, [1, 2]),
        ("<=", 3.0, [1, 2, 3]),
        (">", 3.0, [4]),
        (">=", 3.0, [3, 4]),
        ("in", [1.0, 4.0], [1, 4]),
        ("not_in", [1.0, 4.0], [2, 3]),
        ("between", [2.0, 3.0], [2, 3]),  # inclusive at both ends
    ],
)
def test_each_audience_op_and_missing_values_fail(op, value, passing):
    scored = _scored(5).assign(tenure_days=[1.0, 2.0, 3.0, 4.0, np.nan])
    customers = pd.DataFrame(
        {"customer_id": range(1, 6), "do_not_contact": False, "marketing_opt_out": False}
    )
    spec = _spec(audience=[{"column": "tenure_days", "op": op, "value": value}])
    eligible, exclusions = apply_policy(scored, customers, empty_history(), pd.Index([]), spec, AS_OF)
    assert eligible["customer_id"].tolist() == passing
    label = AudienceRule(column="tenure_days", op=op, value=value).label
    assert set(exclusions["exclusion_reason"]) == {f"audience:{label}"}


def test_category_rules_work_on_categorical_columns():
    scored = _scored(3).assign(
        card_tier=pd.Categorical(
            ["gold", "classic", None], categories=["classic", "gold", "platinum", "infinite"]
        )
    )
    customers = pd.DataFrame({"customer_id": [1, 2, 3], "do_not_contact": False, "marketing_opt_out": False})
    spec = _spec(audience=[{"column": "card_tier", "op": "!=", "value": "classic"}])
    eligible, exclusions = apply_policy(scored, customers, empty_history(), pd.Index([]), spec, AS_OF)
    assert eligible["customer_id"].tolist() == [1]
    assert exclusions["detail"].tolist() == ["card_tier = classic", "card_tier is missing"]


def test_apply_policy_refuses_frames_it_cannot_audit():
    customers = pd.DataFrame({"customer_id": [1, 2], "do_not_contact": False, "marketing_opt_out": False})
    spec = _spec(audience=[{"column": "persona", "op": "==", "value": "traveler"}])
    with pytest.raises(ValueError, match=r"column\(s\) \['persona'\] are not in the scored frame"):
        apply_policy(_scored(2), customers, empty_history(), pd.Index([]), spec, AS_OF)
    twice = pd.concat([_scored(2), _scored(1)])
    with pytest.raises(ValueError, match="duplicate customer ids"):
        apply_policy(twice, customers, empty_history(), pd.Index([]), _spec(), AS_OF)


# --------------------------------------------------------------------------------------------------------------
# Dead accounts


@pytest.mark.parametrize("lookup_span", [64_000_000, 0], ids=["lookup-table", "hashed"])
def test_invalid_customers_on_a_hand_made_lake(tmp_path, monkeypatch, lookup_span):
    monkeypatch.setattr(policy, "_MAX_LOOKUP_SPAN", lookup_span)
    # as_of 2026-01-01, 3 inactive months: activity counts in [2025-10-01, 2026-01-01)
    _write(
        tmp_path,
        "balances",
        {
            "customer_id": [1, 2, 3, 4, 5, 6, 7, 8, 1, 7],
            "month_end": ["2025-12-31"] * 8 + ["2025-11-30"] * 2,
            "aum": [50.0, 50.0, 50.0, 500.0, 100.0, 50.0, 5000.0, 50.0, 9999.0, 10.0],
        },
    )
    _write(
        tmp_path,
        "transactions",
        {
            "customer_id": [2, 5, 6, 8],
            "txn_ts": ["2025-11-15 12:00", "2025-09-30 23:59", "2026-01-05 08:00", "2025-10-01 00:00"],
        },
    )
    _write(tmp_path, "app_events", {"customer_id": [3], "event_ts": ["2025-12-31 22:00"]})
    rule = InvalidCustomerRule(max_assets=100.0, inactive_months=3)
    # 1 low and silent; 2 bought in Nov; 3 used the app; 4 has assets; 5 at the threshold, last bought before
    # the window; 6 only bought after as_of; 7 low in Nov but not at the latest month end; 8 bought at the
    # window's first instant.
    result = invalid_customers(tmp_path, AS_OF, rule)
    assert result.tolist() == [1, 5, 6] and result.name == "customer_id"
    assert invalid_customers(tmp_path, AS_OF, None).empty
    # The latest month end before as_of 2025-12-15 is 2025-11-30: customer 7 (10.0) and 1 (9999.0) there.
    assert invalid_customers(tmp_path, "2025-12-15", InvalidCustomerRule(max_assets=100.0)).tolist() == [7]
    assert invalid_customers(tmp_path, "2025-11-30", rule).empty  # no month end before it


def test_invalid_customers_matches_a_brute_force_read_of_the_bank(bank):
    lake = bank / "lake"
    as_of = pd.Timestamp(storage.lake_end(lake))
    rule = InvalidCustomerRule(max_assets=5_000.0, inactive_months=2)
    fast = invalid_customers(lake, as_of, rule)

    balances = storage.read_table(lake, "balances")
    last = balances.loc[
        balances["month_end"] == balances.loc[balances["month_end"] < as_of, "month_end"].max()
    ]
    low = set(last.loc[last["aum"] <= rule.max_assets, "customer_id"])
    start = as_of - pd.DateOffset(months=rule.inactive_months)
    active: set[int] = set()
    for table, ts in (("transactions", "txn_ts"), ("app_events", "event_ts")):
        frame = storage.read_table(lake, table, columns=["customer_id", ts])
        active |= set(frame.loc[(frame[ts] >= start) & (frame[ts] < as_of), "customer_id"])
    expected = sorted(low - active)
    assert fast.tolist() == expected
    assert len(expected) > 0, "the rule should catch someone on the demo bank, or the test checks nothing"


# --------------------------------------------------------------------------------------------------------------
# Selection


def _eligible() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [50, 10, 40, 20, 30, 60],
            "score": [0.8, 0.8, 0.9, 0.8, 0.2, np.nan],
            "decile": [2, 2, 1, 2, 7, 10],
        }
    )


@pytest.mark.parametrize(
    ("selection", "ids"),
    [
        ({"top_k": 3}, [40, 10, 20]),  # ties at 0.8 go to the lower customer id
        ({"top_k": 100}, [40, 10, 20, 50, 30]),  # a missing score is never selected
        ({"score_threshold": 0.8}, [40, 10, 20, 50]),  # at the threshold is in
        ({"score_threshold": 0.85}, [40]),
        ({"top_deciles": 1}, [40]),
        ({"top_deciles": 2}, [40, 10, 20, 50]),
        ({"top_deciles": 10}, [40, 10, 20, 50, 30]),
    ],
)
def test_select_audience_modes_rank_and_ties(selection, ids):
    eligible = _eligible()
    chosen = select_audience(eligible, Selection(**selection))
    assert chosen["customer_id"].tolist() == ids
    assert chosen["rank"].tolist() == list(range(1, len(ids) + 1))
    shuffled = select_audience(eligible.sample(frac=1, random_state=3), Selection(**selection))
    pd.testing.assert_frame_equal(chosen, shuffled)


def test_select_audience_uses_the_given_deciles_not_recomputed_ones():
    # Eligible is a slice of the scored base: its best customer is still in decile 3 of the whole base.
    eligible = pd.DataFrame({"customer_id": [1, 2], "score": [0.5, 0.4], "decile": [3, 4]})
    assert select_audience(eligible, Selection(top_deciles=2)).empty
    empty = select_audience(eligible.iloc[:0], Selection(top_k=5))
    assert empty.empty and "rank" in empty.columns


# --------------------------------------------------------------------------------------------------------------
# The demo specs on the demo bank


def test_demo_specs_leave_a_usable_treatment_group_on_the_demo_bank(bank):
    lake = bank / "lake"
    as_of = pd.Timestamp(storage.lake_end(lake))
    wide = build_features(load_tables(lake, as_of), as_of)
    # No model here: the true 90-day churn probability stands in for a calibrated churn score.
    truth = storage.read_table(
        bank / "truth", "churn", months=[storage.month_key(as_of - pd.Timedelta(days=1))]
    )
    wide["score"] = truth.set_index("customer_id")["p_churn_90d"].reindex(wide["customer_id"]).to_numpy()
    rank = wide["score"].rank(method="first", ascending=False)
    wide["decile"] = np.ceil(rank / len(wide) * 10).astype(np.int64)
    customers = storage.read_table(
        lake, "customers", columns=["customer_id", "do_not_contact", "marketing_opt_out"]
    )
    history = lake_contact_history(lake, as_of)
    for spec in load_specs(CAMPAIGNS):
        invalid = invalid_customers(lake, as_of, spec.contact_policy.invalid_customer)
        eligible, exclusions = apply_policy(wide, customers, history, invalid, spec, as_of)
        selected = select_audience(eligible, spec.selection)
        treatment = round(len(selected) * (1 - spec.holdout_for(len(selected))[0]))
        assert 200 <= treatment <= 4_000, (spec.name, treatment)
        assert len(eligible) + len(exclusions) == len(wide)
        flagged = customers.loc[customers["do_not_contact"] | customers["marketing_opt_out"], "customer_id"]
        assert not set(selected["customer_id"]) & set(flagged)
