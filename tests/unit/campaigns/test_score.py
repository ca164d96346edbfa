"""Deciles, holdout assignment, the sample-ratio check and reason codes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.campaigns import score
from pipelines.campaigns.score import (
    HOLDOUT,
    TREATMENT,
    assign_deciles,
    assign_holdout,
    check_sample_ratio,
    decile_mix,
    require_sample_ratio,
)


def _audience(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = rng.choice(10 * n, size=n, replace=False).astype(np.int64)
    scores = rng.beta(1, 8, size=n)
    return pd.DataFrame({"customer_id": ids, "score": scores, "decile": assign_deciles(scores, ids)})


def test_deciles_are_balanced_and_ordered():
    aud = _audience(10_003)
    sizes = aud["decile"].value_counts().sort_index()
    assert list(sizes.index) == list(range(1, 11))
    assert sizes.max() - sizes.min() <= 1
    by_decile = aud.groupby("decile")["score"]
    # every score in decile k is >= every score in decile k + 1
    assert (by_decile.min().to_numpy()[:-1] >= by_decile.max().to_numpy()[1:]).all()


def test_deciles_break_ties_by_customer_id():
    scores = np.full(20, 0.5)
    ids = np.arange(20, 0, -1)
    deciles = assign_deciles(scores, ids)
    # equal scores: the lowest ids rank first
    assert deciles[ids == 1][0] == 1 and deciles[ids == 20][0] == 10


def test_holdout_is_deterministic_and_depends_on_run():
    aud = _audience(5_000)
    a = assign_holdout(aud, "winback", "run-1", 0.1)
    b = assign_holdout(aud.sample(frac=1, random_state=3), "winback", "run-1", 0.1).reindex(aud.index)
    c = assign_holdout(aud, "winback", "run-2", 0.1)
    assert a.equals(b)  # same run, any row order: same groups
    assert (a != c).sum() > 0.1 * len(aud)  # another run draws another holdout
    assert set(a.unique()) == {TREATMENT, HOLDOUT}


def test_holdout_is_exact_within_each_decile_and_passes_srm_on_100k():
    aud = _audience(100_000, seed=11)
    groups = assign_holdout(aud, "retention", "campaign_scoring__2026-01-01__retention", 0.1)
    held = groups.eq(HOLDOUT)
    per_decile = held.groupby(aud["decile"]).agg(["sum", "size"])
    assert (per_decile["sum"] - np.floor(0.1 * per_decile["size"] + 0.5)).abs().max() == 0
    srm = check_sample_ratio(int((~held).sum()), int(held.sum()), 0.1)
    assert srm.ok and srm.p_value > 0.001
    mix = decile_mix(aud.assign(target_group=groups))
    assert mix["difference"].abs().max() < 0.002


def test_holdout_is_independent_of_customer_attributes():
    aud = _audience(50_000, seed=5)
    groups = assign_holdout(aud, "c", "r", 0.2)
    held = groups.eq(HOLDOUT)
    # ids (a stand-in for any attribute) are not related to the assignment: both halves hold ~20 %
    low = aud["customer_id"] < aud["customer_id"].median()
    assert abs(held[low].mean() - 0.2) < 0.01 and abs(held[~low].mean() - 0.2) < 0.01


def test_sample_ratio_mismatch_is_detected():
    srm = check_sample_ratio(9_000, 1_300, 0.1)
    assert not srm.ok
    with pytest.raises(score.SampleRatioMismatch, match="sample-ratio mismatch"):
        require_sample_ratio(srm, "campaign x")
    assert require_sample_ratio(check_sample_ratio(9_000, 1_000, 0.1), "x").ok


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5])
def test_holdout_fraction_is_checked(fraction):
    with pytest.raises(ValueError, match="holdout fraction"):
        assign_holdout(_audience(10), "c", "r", fraction)


class _FakeContribModel:
    """Only for the reason-code arithmetic: contributions given directly."""

    features = ["a", "b", "c", "d"]

    def __init__(self, contrib: np.ndarray) -> None:
        self._contrib = contrib

    def path_contributions(self, frame):
        return pd.DataFrame(
            np.column_stack([self._contrib, np.zeros(len(frame))]),
            columns=[*self.features, "bias"],
            index=frame.index,
        )


def test_reason_codes_name_the_largest_positive_contributions():
    contrib = np.array([[0.1, 0.5, -0.2, 0.3], [-0.1, -0.2, -0.3, 0.4]])
    model = score.ScoringModel("churn", "1", "champion", "", _FakeContribModel(contrib))
    out = score.reason_codes(model, pd.DataFrame({"customer_id": [7, 8]}))
    assert out.loc[0, ["reason_1", "reason_2", "reason_3"]].tolist() == ["b", "d", "a"]
    # only one feature pushed the second score up
    assert out.loc[1, "reason_1"] == "d" and out.loc[1, "reason_2"] is None


def test_path_contributions_sum_to_the_raw_score_and_name_the_planted_driver():
    from pipelines.models.propensity import TrainConfig, fit_model

    rng = np.random.default_rng(0)
    n = 6_000
    frame = pd.DataFrame(
        {
            "customer_id": np.arange(n),
            "driver": rng.normal(size=n),
            "noise_a": rng.normal(size=n),
            "noise_b": rng.normal(size=n),
            "tier": pd.Categorical(rng.choice(["a", "b", "c"], size=n)),
        }
    )
    logit = -2.5 + 2.0 * frame["driver"] + 0.6 * (frame["tier"] == "c")
    frame["label"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    config = TrainConfig(n_estimators=200, early_stopping_rounds=20, min_child_samples=20)
    model = fit_model(
        frame[:4000], frame[4000:], ["driver", "noise_a", "noise_b", "tier"], ["tier"], "label", config
    )
    contrib = model.path_contributions(frame, chunk_rows=1_000)  # several chunks
    assert np.allclose(contrib.sum(axis=1).to_numpy(), model.raw_score(frame), atol=1e-9)
    high = frame["driver"] > 1.5
    reasons = score.reason_codes(score.ScoringModel("m", "1", "champion", "", model), frame[high])
    assert (reasons["reason_1"] == "driver").mean() > 0.9
