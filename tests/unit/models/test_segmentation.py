"""Segments on hand-made frames: RFM scores and rules, lifecycle stages and flags, value tiers, the summary."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from pipelines.models.segmentation import (
    FLAG_COLUMNS,
    LIFECYCLE_STAGES,
    RFM_RULES,
    RFM_SEGMENTS,
    SEGMENT_FRAME_COLUMNS,
    LifecycleRules,
    assign_segments,
    lifecycle_flags,
    lifecycle_stages,
    quantile_scores,
    render_rfm_rules,
    rfm_scores,
    rfm_segment_of,
    segment_summary,
    value_tiers,
)
from tests.conftest import PROJECT_ROOT
from tests.unit.models.segment_rows import persona_frame, wide_frame

# --------------------------------------------------------------------------------------------------------------
# RFM


def test_quantile_scores_are_exact_quintiles_on_distinct_values():
    values = pd.Series(np.arange(10, dtype=float))
    assert quantile_scores(values).tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert quantile_scores(values, higher_is_better=False).tolist() == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]


def test_quantile_scores_ties_share_a_score_whatever_the_row_order():
    rng = np.random.default_rng(0)
    values = pd.Series(rng.integers(0, 6, 500).astype(float), index=rng.permutation(500))
    scores = quantile_scores(values)
    assert scores.groupby(values).nunique().max() == 1  # equal values, equal score
    shuffled = values.sample(frac=1.0, random_state=1)
    pd.testing.assert_series_equal(quantile_scores(shuffled).reindex(scores.index), scores)
    # higher value, never a lower score
    by_value = scores.groupby(values).first().sort_index()
    assert by_value.is_monotonic_increasing


def test_quantile_scores_missing_values_rank_worst():
    s = quantile_scores(pd.Series([np.nan, 1.0, 2.0, 3.0, 4.0]))
    assert s.iloc[0] == 1 and s.iloc[-1] == 5


def test_rfm_scores_columns_order_and_recency_inverted():
    wide = wide_frame(
        [
            {"days_since_last_txn": float(d), "txn_count_180d": float(f), "spend_180d": float(m)}
            for d, f, m in zip(range(10), range(10), range(10), strict=True)
        ]
    )
    wide.index = np.arange(100, 110)
    out = rfm_scores(wide)
    assert list(out.columns) == ["customer_id", "r_score", "f_score", "m_score", "rfm_segment"]
    assert out.index.tolist() == wide.index.tolist()
    assert out["r_score"].tolist() == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]  # fewest days since = best
    assert out["f_score"].tolist() == out["m_score"].tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert list(out["rfm_segment"].cat.categories) == list(RFM_SEGMENTS)


# One example per rule that no earlier rule catches: every named segment is reachable.
SEGMENT_EXAMPLES = [
    ((5, 5, 5, 1000), "Champions"),
    ((3, 1, 1, 30), "New"),
    ((1, 5, 5, 1000), "Can't lose"),
    ((2, 3, 1, 1000), "At risk"),
    ((3, 3, 3, 1000), "Loyal"),
    ((5, 1, 1, 1000), "Potential loyalists"),
    ((2, 1, 5, 1000), "Hibernating"),
    ((1, 2, 1, 1000), "Lost"),
]


@pytest.mark.parametrize(("scores", "expected"), SEGMENT_EXAMPLES, ids=[e for _, e in SEGMENT_EXAMPLES])
def test_every_named_segment_is_reachable(scores, expected):
    r, f, m, tenure = scores
    got = rfm_segment_of(np.array([r]), np.array([f]), np.array([m]), np.array([tenure]))
    assert got.tolist() == [expected]


def test_examples_cover_every_rule():
    assert {e for _, e in SEGMENT_EXAMPLES} == set(RFM_SEGMENTS)


def test_rules_table_order_decides():
    assert RFM_SEGMENTS == (
        "Champions",
        "New",
        "Can't lose",
        "At risk",
        "Loyal",
        "Potential loyalists",
        "Hibernating",
        "Lost",
    )
    one = np.array([5])
    # A brand-new top customer is a Champion (rule 1 before rule 2); a new weak one is New, not Potential loyalist.
    assert rfm_segment_of(one, one, one, np.array([10])).tolist() == ["Champions"]
    assert rfm_segment_of(one, np.array([1]), np.array([1]), np.array([10])).tolist() == ["New"]
    # Without tenure the New rule is skipped, never guessed.
    assert rfm_segment_of(one, np.array([1]), np.array([1]), None).tolist() == ["Potential loyalists"]


def test_rules_cover_every_score_combination():
    combos = np.array(list(itertools.product(range(1, 6), repeat=3)))
    for tenure in (10.0, 5000.0, np.nan):
        got = rfm_segment_of(combos[:, 0], combos[:, 1], combos[:, 2], np.full(len(combos), tenure))
        assert set(got) <= set(RFM_SEGMENTS) and None not in set(got)


def test_docs_show_the_rule_table():
    text = (PROJECT_ROOT / "docs" / "segments.md").read_text()
    assert render_rfm_rules() in text
    for rule in RFM_RULES:
        assert rule.segment in render_rfm_rules()


def test_rfm_segments_end_to_end_on_a_small_base():
    # 10 customers: 0-1 recent, frequent, big; 8-9 long gone and light; 5 opened 20 days ago.
    rows = [
        {
            "days_since_last_txn": float(i * 10),
            "txn_count_180d": float(100 - i * 10),
            "spend_180d": 1e4 - i * 1e3,
        }
        for i in range(10)
    ]
    rows[5]["tenure_days"] = 20
    out = rfm_scores(wide_frame(rows))
    assert out["rfm_segment"].tolist()[:2] == ["Champions", "Champions"]
    assert out["rfm_segment"].iloc[5] == "New"
    assert out["rfm_segment"].tolist()[8:] == ["Lost", "Lost"]
    assert out["rfm_segment"].notna().all()


def test_rfm_names_missing_columns():
    with pytest.raises(KeyError, match="spend_180d"):
        rfm_scores(wide_frame([{}]).drop(columns="spend_180d"))


# --------------------------------------------------------------------------------------------------------------
# Lifecycle

STAGE_CASES = [
    (
        "never transacted, opened 60 days ago (logins do not count)",
        {"tenure_days": 60, "days_since_last_txn": 181.0, "txn_count_180d": 0.0},
        "potential",
    ),
    (
        "silent for the whole lookback",
        {
            "tenure_days": 400,
            "days_since_last_txn": 181.0,
            "days_since_last_login": 181.0,
            "txn_count_180d": 0.0,
        },
        "churned",
    ),
    ("opened 30 days ago", {"tenure_days": 30}, "new"),
    ("tenure exactly new_max_tenure_days", {"tenure_days": 90}, "new"),
    (
        "new even when quiet",
        {"tenure_days": 80, "days_since_last_txn": 60.0, "days_since_last_login": 181.0},
        "new",
    ),
    ("one day past new", {"tenure_days": 91}, "active"),
    (
        "quiet on card and app for 45 days",
        {"days_since_last_txn": 45.0, "days_since_last_login": 50.0},
        "dormant",
    ),
    ("card quiet 50 days, app used", {"days_since_last_txn": 50.0, "days_since_last_login": 10.0}, "active"),
    ("card quiet 90 days, app used", {"days_since_last_txn": 90.0, "days_since_last_login": 2.0}, "dormant"),
    (
        "app user without card use for the whole lookback",
        {"days_since_last_txn": 181.0, "txn_count_180d": 0.0, "days_since_last_login": 3.0},
        "dormant",
    ),
    ("assets flowing out", {"aum_change_1m": -0.10}, "dormant"),
    (
        "outflow beats loyalty",
        {"aum_change_1m": -0.3, "tenure_days": 2000, "txn_count_180d": 200.0},
        "dormant",
    ),
    ("small outflow", {"aum_change_1m": -0.09}, "active"),
    ("no balance row (aum_change_1m missing)", {"aum_change_1m": np.nan}, "active"),
    ("two years and a dozen a month", {"tenure_days": 730, "txn_count_180d": 72.0}, "loyal"),
    ("two years, slightly less frequent", {"tenure_days": 730, "txn_count_180d": 71.0}, "active"),
    ("frequent but younger than two years", {"tenure_days": 729, "txn_count_180d": 150.0}, "active"),
    ("points redeemer", {"tenure_days": 200, "points_redemption_90d": 2.0}, "loyal"),
    ("ordinary", {}, "active"),
]


@pytest.mark.parametrize(("case", "row", "expected"), STAGE_CASES, ids=[c[0] for c in STAGE_CASES])
def test_lifecycle_stage(case, row, expected):
    assert lifecycle_stages(wide_frame([row])).tolist() == [expected]


def test_every_stage_is_reachable_and_series_keeps_the_index():
    wide = wide_frame([row for _, row, _ in STAGE_CASES])
    wide.index = wide.index + 1000
    stages = lifecycle_stages(wide)
    assert stages.name == "lifecycle_stage"
    assert stages.index.tolist() == wide.index.tolist()
    assert list(stages.cat.categories) == list(LIFECYCLE_STAGES)
    assert set(stages) == set(LIFECYCLE_STAGES)
    assert stages.tolist() == [e for _, _, e in STAGE_CASES]


def test_rules_are_config():
    wide = wide_frame([{"tenure_days": 100}, {"days_since_last_txn": 30.0, "days_since_last_login": 30.0}])
    assert lifecycle_stages(wide).tolist() == ["active", "active"]
    rules = LifecycleRules(new_max_tenure_days=120, dormant_quiet_days=30)
    assert lifecycle_stages(wide, rules).tolist() == ["new", "dormant"]
    with pytest.raises(ValueError, match="new_max_tenure_days"):
        LifecycleRules(new_max_tenure_days=0)
    with pytest.raises(ValueError, match="dormant_quiet_days"):
        LifecycleRules(dormant_quiet_days=100, dormant_days_since_txn=90)
    with pytest.raises(AttributeError):
        rules.new_max_tenure_days = 5  # frozen


def test_flags_exactly_one_each_and_invalid_overrides():
    stages = pd.Series(pd.Categorical(list(LIFECYCLE_STAGES) + ["active"], categories=list(LIFECYCLE_STAGES)))
    ids = pd.Series(np.arange(10, 17))
    flags = lifecycle_flags(ids, stages, invalid_ids={16, 999})
    assert list(flags.columns) == list(FLAG_COLUMNS)
    assert (flags.sum(axis=1) == 1).all()
    assert flags["is_potential"].tolist() == [True, False, False, False, False, False, False]
    assert flags["is_effective"].tolist() == [False, True, True, True, False, False, False]
    assert flags["is_dormant"].tolist() == [False, False, False, False, True, True, False]
    assert flags["is_invalid"].tolist() == [False] * 6 + [True]
    for invalid in (None, [], pd.Index([], dtype="int64"), np.array([16])):
        f = lifecycle_flags(ids, stages, invalid)
        assert int(f["is_invalid"].sum()) == (0 if invalid is None or len(invalid) == 0 else 1)


# --------------------------------------------------------------------------------------------------------------
# Value tiers, all segments, summary


def test_value_tiers_shares():
    value = pd.Series(np.random.default_rng(0).permutation(1000).astype(float), index=np.arange(1000) + 7)
    tiers = value_tiers(value)
    assert tiers.index.equals(value.index) and tiers.name == "value_tier"
    assert tiers.value_counts().to_dict() == {"low": 500, "mid": 300, "high": 200}
    assert value[tiers == "high"].min() > value[tiers == "mid"].max() > value[tiers == "low"].max()


def test_value_tiers_ties_and_missing():
    value = pd.Series([5.0, 5.0, 5.0, 1.0, np.nan, 0.0, 0.0, 0.0, 0.0, 0.0])
    assert value_tiers(value).tolist() == ["high"] * 3 + ["mid", "low"] + ["low"] * 5
    assert value_tiers(pd.Series([], dtype=float)).tolist() == []
    with pytest.raises(ValueError, match="shares"):
        value_tiers(value, shares=(0.8, 0.3))


def test_assign_segments_columns_and_alignment():
    wide, _ = persona_frame(per_group=10)
    wide.index = wide.index + 500
    invalid = wide["customer_id"].iloc[:3]
    seg, model = assign_segments(wide, invalid_ids=invalid)
    assert list(seg.columns) == list(SEGMENT_FRAME_COLUMNS)
    assert seg.index.tolist() == wide.index.tolist()
    assert (seg["customer_id"] == wide["customer_id"]).all()
    assert seg["is_invalid"].sum() == 3 and seg["is_invalid"].iloc[:3].all()
    assert (seg[list(FLAG_COLUMNS)].sum(axis=1) == 1).all()
    assert seg[["rfm_segment", "lifecycle_stage", "persona"]].notna().all().all()
    again, same = assign_segments(wide, persona_model=model)
    assert same is model
    pd.testing.assert_frame_equal(again.iloc[3:], seg.iloc[3:])
    assert again["is_invalid"].sum() == 0


def test_segment_summary():
    segments = pd.DataFrame(
        {
            "customer_id": [1, 2, 3, 4],
            "rfm_segment": pd.Categorical(
                ["Champions", "Champions", "Lost", "New"], categories=list(RFM_SEGMENTS)
            ),
            "lifecycle_stage": pd.Categorical(["active"] * 3 + ["new"], categories=list(LIFECYCLE_STAGES)),
            "persona": pd.Categorical(["revolver", "low-engagement", "revolver", "revolver"]),
        }
    )
    scores = pd.DataFrame({"customer_id": [4, 3, 2, 1], "score": [0.4, 0.3, 0.2, 0.1], "label": ["a"] * 4})
    value = pd.Series([10.0, 20.0, 30.0], index=[1, 2, 3])
    out = segment_summary(segments, scores, value)
    assert list(out.columns) == ["column", "segment", "customers", "share", "avg_score", "avg_value"]
    assert out.groupby("column")["share"].sum().round(12).eq(1.0).all()
    assert out.groupby("column")["customers"].sum().eq(4).all()
    assert len(out.loc[out["column"] == "rfm_segment"]) == len(RFM_SEGMENTS)  # empty segments too
    champ = out.loc[(out["column"] == "rfm_segment") & (out["segment"] == "Champions")].iloc[0]
    assert champ["customers"] == 2 and champ["share"] == 0.5
    assert champ["avg_score"] == pytest.approx(0.15) and champ["avg_value"] == pytest.approx(15.0)
    new = out.loc[(out["column"] == "lifecycle_stage") & (out["segment"] == "new")].iloc[0]
    assert new["avg_score"] == pytest.approx(0.4) and np.isnan(new["avg_value"])  # no value for customer 4
    hib = out.loc[(out["column"] == "rfm_segment") & (out["segment"] == "Hibernating")].iloc[0]
    assert hib["customers"] == 0 and np.isnan(hib["avg_score"])
    tiers = segment_summary(segments.assign(value_tier=value_tiers(pd.Series([4.0, 3.0, 2.0, 1.0]))))
    assert tiers.loc[tiers["column"] == "value_tier", "customers"].tolist() == [1, 1, 2]
    assert list(segment_summary(segments).columns) == ["column", "segment", "customers", "share"]
