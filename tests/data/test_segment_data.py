"""Segments on real-sized data: lifecycle stages of the synthetic bank against the generator's hidden states, and
RFM segments and lifecycle stages of the UCI Online Retail file."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.campaigns.policy import invalid_customers
from pipelines.campaigns.spec import InvalidCustomerRule
from pipelines.data import sources, storage
from pipelines.data.schema import TABLES
from pipelines.features.wide_table import build_features, load_tables
from pipelines.models import segmentation

AS_OF = pd.Timestamp("2026-01-01")  # the bank fixture's lake end
# Our stages that the generator has no state for, read as the nearest hidden state: a never-used account is a
# new customer, and an open account silent for the whole lookback is dormant (the chain's last state before
# closure; closed accounts are in neither table).
TO_HIDDEN = {"potential": "new", "churned": "dormant"}
# Floors a few points under the figures measured on this bank (docs/segments.md): overall 0.683; recall new 0.738,
# active 0.712, loyal 0.601, dormant 0.965.
MIN_AGREEMENT = 0.65
MIN_RECALL = {"new": 0.68, "active": 0.66, "loyal": 0.55, "dormant": 0.93}


@pytest.fixture(scope="module")
def bank_wide(bank) -> pd.DataFrame:
    return build_features(load_tables(bank / "lake", AS_OF), AS_OF)


@pytest.fixture(scope="module")
def hidden_state(bank, bank_wide) -> np.ndarray:
    """The generator's state at the last month end before as_of, aligned to the wide table."""
    month_end = AS_OF - pd.Timedelta(days=1)
    truth = storage.read_table(bank / "truth", "churn", months=[month_end.strftime("%Y-%m")])
    truth = truth.loc[truth["month_end"] == month_end].set_index("customer_id")["state"].astype(str)
    return truth.reindex(bank_wide["customer_id"]).to_numpy()


def test_lifecycle_stages_agree_with_the_hidden_states(bank_wide, hidden_state):
    assert not pd.isna(hidden_state).any(), "every open customer has a truth row at the month end"
    stages = segmentation.lifecycle_stages(bank_wide).astype(str)
    ours = stages.replace(TO_HIDDEN).to_numpy()
    agreement = float((ours == hidden_state).mean())
    recall = {s: float((ours[hidden_state == s] == s).mean()) for s in MIN_RECALL}
    detail = f"agreement {agreement:.3f}, recall { ({k: round(v, 3) for k, v in recall.items()}) }"
    assert agreement >= MIN_AGREEMENT, detail
    for state, floor in MIN_RECALL.items():
        assert recall[state] >= floor, f"{state}: {detail}"
    # dormancy is the hazard campaigns act on: flagged dormant customers must mostly be truly dormant
    precision = float((hidden_state[ours == "dormant"] == "dormant").mean())
    assert precision >= 0.9, f"dormant precision {precision:.3f}"


def test_all_segments_on_the_bank_with_invalid_customers(bank, bank_wide):
    invalid = invalid_customers(bank / "lake", AS_OF, InvalidCustomerRule())
    seg, model = segmentation.assign_segments(bank_wide, invalid_ids=invalid)
    assert len(seg) == len(bank_wide) and (seg["customer_id"].to_numpy() == bank_wide["customer_id"]).all()
    assert seg[["rfm_segment", "lifecycle_stage", "persona"]].notna().all().all()
    assert int(seg["is_invalid"].sum()) == int(np.isin(bank_wide["customer_id"], invalid).sum())
    assert (seg[list(segmentation.FLAG_COLUMNS)].sum(axis=1) == 1).all()
    assert set(seg["rfm_segment"]) == set(segmentation.RFM_SEGMENTS)
    assert len(model.names) == 6 and len(set(model.names)) == 6
    summary = segmentation.segment_summary(seg)
    assert summary.groupby("column")["customers"].sum().eq(len(seg)).all()


# --------------------------------------------------------------------------------------------------------------
# UCI Online Retail

RETAIL_AS_OF = pd.Timestamp("2011-12-01")  # a full 180-day lookback; the file ends on 2011-12-09


def _retail_tables(transactions: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The mapped invoice lines as a lake: sales with a customer id only (cancellations and free lines are what the
    gate stops), one customer per id who "signed up" on the day of the first invoice, no other source."""
    sales = transactions.loc[transactions["customer_id"].notna() & (transactions["amount"] > 0)]
    sales = sales.astype({"customer_id": "int64"})
    first = sales.groupby("customer_id")["txn_ts"].min().dt.normalize()
    n = len(first)

    def constant(column: str, value: str) -> pd.Categorical:
        return pd.Categorical([value] * n, categories=list(TABLES["customers"].column(column).allowed))

    customers = pd.DataFrame(
        {
            "customer_id": first.index.to_numpy(),
            "signup_date": first.to_numpy(),
            "closed_date": pd.Series(pd.NaT, index=range(n), dtype="datetime64[us]").to_numpy(),
            "birth_year": np.full(n, 1980, dtype=np.int16),
            "city_tier": np.full(n, 1, dtype=np.int8),
            "credit_limit": np.zeros(n),
            "gender": constant("gender", "U"),
            "income_band": constant("income_band", "middle"),
            "occupation": constant("occupation", "other"),
            "card_tier": constant("card_tier", "classic"),
            "acquisition_channel": constant("acquisition_channel", "online"),
        }
    )
    empty = {
        name: TABLES[name].arrow_schema.empty_table().to_pandas(date_as_object=False)
        for name in ("app_events", "balances", "campaign_contacts", "responses")
    }
    return {"customers": customers, "transactions": sales, **empty}


def test_online_retail_gets_rfm_segments_and_lifecycle_stages(shared_data):
    path = shared_data / "online_retail.csv.gz"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    tables = _retail_tables(sources.read_online_retail(path))
    wide = build_features(tables, RETAIL_AS_OF)
    first_seen = tables["customers"]["signup_date"]
    assert len(wide) == int((first_seen < RETAIL_AS_OF).sum()) > 4000

    rfm = segmentation.rfm_scores(wide)
    stages = segmentation.lifecycle_stages(wide)
    assert rfm["rfm_segment"].notna().all() and stages.notna().all()
    for score in ("r_score", "f_score", "m_score"):
        assert rfm[score].between(1, 5).all()
    # quintiles on the eligible base: each score holds roughly a fifth (ties move a few points)
    assert rfm["m_score"].value_counts(normalize=True).between(0.15, 0.25).all()
    # a retailer without app events or balances: no one is potential (signup = first purchase) or loyal (under
    # two years of history), and the silent ones are churned
    counts = stages.value_counts()
    assert counts["potential"] == 0 and counts["loyal"] == 0
    assert min(counts["new"], counts["active"], counts["dormant"], counts["churned"]) > 100
    silent = wide["days_since_last_txn"] > 180
    assert (stages[silent] == "churned").all()
    assert (rfm.loc[silent & (wide["tenure_days"] > 90), "rfm_segment"].isin(["Lost", "Hibernating"])).all()

    seg, _ = segmentation.assign_segments(wide)
    assert seg[["rfm_segment", "lifecycle_stage", "persona"]].notna().all().all()
