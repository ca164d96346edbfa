"""Product holdings and the product-uptake model on the session bank, judged against the product truth.

* ``features.holdings``: what a customer holds at a date is the lake's newest month end before it; an uptake is a
  product held at the next month end and not before, opened within that month.
* ``models.uptake``: one LightGBM over every product (stacked customer x product rows, the product a column),
  trained through the registry, ranks next month's uptakes at a good share of the oracle's AUC (the truth's
  monthly probability with the association bumps of what the customer holds).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from pipelines.data import storage
from pipelines.data.products import PRODUCT_IDS
from pipelines.features.holdings import HOLDING_COLUMNS, holdings_at, uptakes_after
from pipelines.models.uptake import LABEL, PRODUCT, labelled_rows, train_uptake
from pipelines.synthetic.products import LOG_BUMP, P, _logit, _sigmoid

AS_OF = pd.Timestamp("2026-01-01")  # the session bank's end: 2025-01 to 2025-12


def test_holdings_are_the_month_end_before_and_uptakes_the_month_after(bank):
    lake = bank / "lake"
    held = holdings_at(lake, "2025-11-01")
    rows = storage.read_table(lake, "product_holdings", months=["2025-10"])
    assert (rows["month_end"] == pd.Timestamp("2025-10-31")).all()
    assert held.to_numpy().sum() == len(rows)
    assert held.loc[rows["customer_id"].iloc[0], f"holds_{rows['product_id'].iloc[0]}"]
    taken = uptakes_after(lake, "2025-11-01")
    after = storage.read_table(lake, "product_holdings", months=["2025-11"])
    opened = after.loc[after["opened_on"] >= pd.Timestamp("2025-11-01")]
    opened = opened.loc[opened["customer_id"].isin(taken.index)]
    expected = set(zip(opened["customer_id"], "holds_" + opened["product_id"].astype(str), strict=True))
    stacked = taken.stack()
    assert set(stacked.loc[stacked].index) == expected and expected


def test_a_missing_month_end_is_named(bank):
    with pytest.raises(ValueError, match="no month end 2024-12"):
        holdings_at(bank / "lake", "2025-01-01")


@pytest.fixture(scope="module")
def trained(bank, tmp_path_factory):
    uri = f"sqlite:///{tmp_path_factory.mktemp('uptake') / 'mlflow.db'}"
    return train_uptake(bank / "lake", AS_OF, tracking_uri=uri, snapshots=3)


def _oracle(bank, rows: pd.DataFrame) -> np.ndarray:
    truth = storage.read_table(
        bank / "truth", "products", columns=["customer_id", "product_id", "p_uptake_month"]
    )
    truth = truth.set_index(["customer_id", truth["product_id"].astype(str)])["p_uptake_month"]
    p = truth.reindex(pd.MultiIndex.from_arrays([rows["customer_id"], rows[PRODUCT].astype(str)])).to_numpy()
    held = rows[list(HOLDING_COLUMNS)].to_numpy(float)
    j = rows[PRODUCT].astype(str).map(P).to_numpy()
    return _sigmoid(_logit(p) + (held * LOG_BUMP[:, j].T).sum(axis=1))


def test_labels_are_uptakes_of_products_not_held_at_the_truths_rate(bank):
    rows = labelled_rows(bank / "lake", "2025-11-01")
    assert set(rows[PRODUCT].astype(str)) == set(PRODUCT_IDS)
    own = rows[list(HOLDING_COLUMNS)].to_numpy()[
        np.arange(len(rows)), pd.Index(PRODUCT_IDS).get_indexer(rows[PRODUCT].astype(str))
    ]
    assert not own.any()  # a product already held is not a candidate
    expected = _oracle(bank, rows)
    observed = rows[LABEL].to_numpy()
    # the number of uptakes is the sum of independent Bernoullis: within 4 standard deviations of its mean
    assert abs(observed.sum() - expected.sum()) < 4 * np.sqrt((expected * (1 - expected)).sum())


def test_the_uptake_model_ranks_next_months_uptakes_near_the_oracle(bank, trained):
    rows = labelled_rows(bank / "lake", AS_OF - pd.DateOffset(months=1))  # the test snapshot
    model = trained.model
    auc = roc_auc_score(rows[LABEL], model.predict_proba(rows))
    oracle = roc_auc_score(rows[LABEL], _oracle(bank, rows))
    print(f"product uptake: test auc {auc:.3f}, oracle {oracle:.3f} ({auc / oracle:.1%}), {len(rows):,} rows")
    assert auc == pytest.approx(trained.metrics["auc"], abs=1e-9)
    assert auc >= 0.8 * oracle and auc > 0.6
    assert trained.version == "1" and trained.promoted
