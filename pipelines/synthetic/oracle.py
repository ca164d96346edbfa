"""How close a model came to the best possible one, on synthetic data whose ground truth is known.

Only this module (and tests and benchmarks) reads the generator's ``truth/`` folder; features and models never
do. The oracle scores each test customer with the true churn probability the generator drew behaviour from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.data import storage
from pipelines.features.catalogue import ID
from pipelines.features.labels import LABEL, LabelDefinition
from pipelines.models.evaluate import score_metrics, top_decile_lift


def truth_available(data_dir: Path) -> bool:
    return (Path(data_dir) / "truth" / "churn").is_dir()


def oracle_scores(
    data_dir: Path, as_of: pd.Timestamp, customer_ids: pd.Series, definition: LabelDefinition
) -> np.ndarray:
    """True P(churn within the horizon) from the month end before ``as_of``, aligned to ``customer_ids``."""
    if definition.name != "closure" or definition.gap_days != 0:
        raise ValueError(f"the truth file holds closure probabilities without a gap, not {definition.tag}")
    month_end = pd.Timestamp(as_of) - pd.Timedelta(days=1)
    truth = storage.read_table(Path(data_dir) / "truth", "churn", months=[month_end.strftime("%Y-%m")])
    truth = truth.loc[truth["month_end"] == month_end].set_index(ID)
    column = f"p_churn_{definition.horizon_days}d"
    scores = truth[column].reindex(pd.Index(customer_ids)).to_numpy()
    if np.isnan(scores).any():
        raise ValueError(
            f"{int(np.isnan(scores).sum())} test customers have no truth row at {month_end:%Y-%m-%d}"
        )
    return scores


def oracle_metrics(
    data_dir: Path, test: pd.DataFrame, as_of: pd.Timestamp, definition: LabelDefinition
) -> dict:
    """``oracle_auc`` and ``oracle_top_decile_lift`` of the true probabilities on the test snapshot."""
    y = test[LABEL].to_numpy()
    p = oracle_scores(data_dir, as_of, test[ID], definition)
    return {"oracle_auc": score_metrics(y, p)["auc"], "oracle_top_decile_lift": top_decile_lift(y, p)}


def campaign_truth_available(data_dir: Path) -> bool:
    return (Path(data_dir) / "truth" / "campaigns").is_dir()


def oracle_uplift(data_dir: Path, contacts: pd.DataFrame, window_days: int) -> np.ndarray | None:
    """True uplift (p_treated - p_control, scaled to ``window_days``) of each ``(campaign_id, customer_id)`` row of
    ``contacts``, from the generator's ``truth/campaigns``; None when the truth is absent or misses a contact."""
    from pipelines.synthetic.campaigns import share_within

    if not campaign_truth_available(data_dir):
        return None
    keys = ["campaign_id", ID]
    truth = storage.read_table(
        Path(data_dir) / "truth", "campaigns", columns=[*keys, "p_control", "p_treated"]
    )
    matched = contacts[keys].merge(truth, on=keys, how="left", validate="many_to_one")
    if matched["p_treated"].isna().any():
        return None
    return ((matched["p_treated"] - matched["p_control"]) * share_within(window_days)).to_numpy()
