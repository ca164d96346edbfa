"""Lookalike scoring: a seed-vs-base LightGBM fit with out-of-fold scores, deterministic, with clear errors for a
bad seed; and, on the synthetic bank, a seed of one hidden uplift type expands to an audience rich in that type."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from pipelines.models.lookalike import (
    MIN_SEED,
    LookalikeError,
    check_seed,
    fit_lookalike,
    fold_of,
    read_seed_file,
    seed_version,
)

N = 3_000


def _wide(n: int = N, seed: int = 0) -> pd.DataFrame:
    """A small wide table: a few catalogue features, ids not in order."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer_id": rng.permutation(np.arange(1_000_000, 1_000_000 + n, dtype=np.int64)),
            "age_years": rng.integers(18, 80, n),
            "spend_180d": rng.gamma(2.0, 3_000.0, n),
            "logins_30d": rng.poisson(5, n).astype(float),
            "income_band": rng.choice(["low", "mid", "high", "very_high"], n),
            "card_tier": rng.choice(["classic", "gold", "platinum"], n),
        }
    )


@pytest.fixture(scope="module")
def wide() -> pd.DataFrame:
    return _wide()


@pytest.fixture(scope="module")
def profile_seed(wide) -> np.ndarray:
    """150 customers of a clear profile (young, high spend, platinum), drawn at random among those of it."""
    rng = np.random.default_rng(1)
    profile = (wide["age_years"] < 40) & (wide["spend_180d"] > 5_000) & (wide["card_tier"] == "platinum")
    return rng.choice(wide.loc[profile, "customer_id"].to_numpy(), 150, replace=False)


@pytest.fixture(scope="module")
def fitted(wide, profile_seed):
    return fit_lookalike(wide, profile_seed, seed=42)


def test_a_distinct_seed_is_found_again_and_the_scorer_reports_it(wide, profile_seed, fitted):
    scores = fitted.predict_proba(wide)
    is_seed = np.isin(wide["customer_id"], profile_seed)
    assert fitted.seed_size == 150 and fitted.base_n == N and fitted.folds == 5
    assert fitted.version == seed_version(profile_seed[::-1]) and len(fitted.version) == 12
    # Out-of-fold AUC as reported = the AUC of the scores the scorer gives the base.
    assert fitted.auc == pytest.approx(roc_auc_score(is_seed, scores))
    assert fitted.auc > 0.85, fitted.describe()
    # The non-seed customers of the profile score above the rest: they are the lookalikes.
    profile = (wide["age_years"] < 40) & (wide["spend_180d"] > 5_000) & (wide["card_tier"] == "platinum")
    rest = ~is_seed
    assert scores[rest & profile].mean() > 3 * scores[rest & ~profile].mean()
    assert ((scores > 0) & (scores < 1)).all()


def test_same_inputs_same_scores_in_any_row_order(wide, profile_seed, fitted):
    shuffled = wide.sample(frac=1.0, random_state=5)
    again = fit_lookalike(shuffled, list(reversed(profile_seed.tolist())), seed=42)
    np.testing.assert_array_equal(again.predict_proba(wide), fitted.predict_proba(wide))
    assert again.auc == fitted.auc
    # A customer's score does not depend on the rows scored with it.
    part = wide.iloc[::7]
    np.testing.assert_array_equal(fitted.predict_proba(part), fitted.predict_proba(wide)[::7])


def test_each_customer_is_scored_by_the_model_of_its_own_fold(wide, fitted):
    folds = fold_of(wide["customer_id"].to_numpy(), fitted.folds, fitted.seed)
    assert set(np.bincount(folds)) and min(np.bincount(folds)) > N / fitted.folds * 0.8
    scores = fitted.predict_proba(wide)
    for f, model in enumerate(fitted.models):
        rows = folds == f
        np.testing.assert_array_equal(scores[rows], model.predict_proba(wide.loc[rows]))
    contributions = fitted.path_contributions(wide.iloc[:50])
    assert list(contributions.columns) == [*fitted.features, "bias"]


def test_out_of_fold_scores_do_not_flatter_a_random_seed(wide):
    """A seed with no profile at all: in-sample scores would separate it (the models memorise their labels), the
    out-of-fold ones cannot."""
    rng = np.random.default_rng(3)
    seed = rng.choice(wide["customer_id"].to_numpy(), 300, replace=False)
    scorer = fit_lookalike(wide, seed, seed=42)
    is_seed = np.isin(wide["customer_id"], seed)
    folds = fold_of(wide["customer_id"].to_numpy(), scorer.folds, scorer.seed)
    model = scorer.models[0]
    trained_on = (folds != 0) & (folds != 1)  # fold 0's model: fitted on folds 2-4, stopped on fold 1
    in_sample = roc_auc_score(is_seed[trained_on], model.predict_proba(wide.loc[trained_on]))
    print(f"random seed: out-of-fold AUC {scorer.auc:.3f}, in-sample AUC of one fold model {in_sample:.3f}")
    assert abs(scorer.auc - 0.5) < 0.06
    assert in_sample > scorer.auc + 0.03


def test_a_different_seed_gives_different_folds_and_the_same_ids_the_same_folds():
    ids = np.arange(10_000, dtype=np.int64)
    np.testing.assert_array_equal(fold_of(ids, 5, 42), fold_of(ids.copy(), 5, 42))
    assert (fold_of(ids, 5, 42) != fold_of(ids, 5, 43)).mean() > 0.5


def test_seed_checks_say_how_many_and_show_a_few(wide):
    ids = wide["customer_id"].to_numpy()
    strangers = np.arange(1, 8, dtype=np.int64)
    with pytest.raises(
        LookalikeError,
        match=r"7 of 107 seed ids are not in the base of 3,000 customers \(e\.g\. "
        r"1, 2, 3, 4, 5, \.\.\.\)",
    ):
        check_seed(ids, np.concatenate([ids[:100], strangers]))
    with pytest.raises(
        LookalikeError, match=f"the seed has 49 customers; a lookalike needs at least {MIN_SEED}"
    ):
        check_seed(ids, ids[:49])
    with pytest.raises(
        LookalikeError, match=r"the seed has 1,501 of the base's 3,000 customers \(more than half\)"
    ):
        check_seed(ids, ids[:1501])
    # Duplicates count once.
    assert len(check_seed(ids, np.concatenate([ids[:60], ids[:60]]))) == 60
    with pytest.raises(LookalikeError, match="at least 50"):
        fit_lookalike(wide, ids[:10])


def test_seed_files_hold_ids_only(tmp_path):
    good = tmp_path / "seed.csv"
    good.write_text("customer_id\n3\n1\n2\n3\n")
    np.testing.assert_array_equal(read_seed_file(good), [1, 2, 3])
    pd.DataFrame({"customer_id": [5, 4]}).to_parquet(tmp_path / "seed.parquet")
    np.testing.assert_array_equal(read_seed_file(tmp_path / "seed.parquet"), [4, 5])
    with pytest.raises(LookalikeError, match=r"seed file .*missing\.csv not found"):
        read_seed_file(tmp_path / "missing.csv")
    (tmp_path / "noid.csv").write_text("id\n1\n")
    with pytest.raises(LookalikeError, match=r"noid\.csv has no 'customer_id' column \(columns: id\)"):
        read_seed_file(tmp_path / "noid.csv")
    (tmp_path / "pii.csv").write_text("customer_id,email\n1,a@example.com\n")
    with pytest.raises(LookalikeError, match=r"may hold only 'customer_id'; remove column\(s\) email"):
        read_seed_file(tmp_path / "pii.csv")
    (tmp_path / "bad.csv").write_text("customer_id\n1\nx\n2.5\n")
    with pytest.raises(
        LookalikeError, match=r"bad\.csv: 2 value\(s\) of 'customer_id' are not whole numbers"
    ):
        read_seed_file(tmp_path / "bad.csv")


# --------------------------------------------------------------------------------------------------------------
# Against the synthetic truth


def test_a_seed_of_persuadables_expands_to_an_audience_rich_in_persuadables(bank):
    """Seed: 300 persuadable customers of the bank's latest campaign (truth/campaigns, hidden from the lake);
    base: that campaign's audience, every one with a known type. The 300 non-seed customers most like the seed
    are far more often persuadable than the rest of the base."""
    from pipelines.features.wide_table import build_features, load_tables

    truth = pd.read_parquet(
        bank / "truth" / "campaigns", columns=["customer_id", "selected_at", "uplift_type"]
    )
    latest = truth["selected_at"].max()
    truth = truth.loc[truth["selected_at"] == latest]
    as_of = pd.Timestamp(latest).normalize()
    wide = build_features(load_tables(bank / "lake", as_of), as_of)
    base = wide.merge(
        truth[["customer_id", "uplift_type"]], on="customer_id", how="inner", validate="one_to_one"
    )
    kind = base["uplift_type"].astype(str).to_numpy()
    persuadable = np.sort(base.loc[kind == "persuadable", "customer_id"].to_numpy())
    seed = np.random.default_rng(0).choice(persuadable, 300, replace=False)

    scorer = fit_lookalike(base.drop(columns="uplift_type"), seed, seed=42)
    scores = scorer.predict_proba(base)
    rest = ~np.isin(base["customer_id"].to_numpy(), seed)
    order = np.lexsort((base["customer_id"].to_numpy()[rest], -scores[rest]))
    expanded = kind[rest][order[: len(seed)]]
    base_rate = float((kind[rest] == "persuadable").mean())
    share = float((expanded == "persuadable").mean())
    print(
        f"persuadable seed of {len(seed)} in a base of {len(base):,}: seed-vs-base AUC {scorer.auc:.3f}; "
        f"persuadable share of the expanded {len(expanded)}: {share:.1%} vs base rate {base_rate:.1%}"
    )
    assert 0.05 < base_rate < 0.3
    assert share > 3 * base_rate and share - base_rate > 0.3
    assert scorer.auc > 0.75
