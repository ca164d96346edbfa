"""The lookalike steps of a campaign run (``model: lookalike``; ``pipelines.campaigns.lookalike_spec``).

The score step (``jobs.campaigns.campaign_score``) calls :func:`fit_run_lookalike`: the seed is taken from the
whole base of the run's folder (the ids of the spec's ``seed_file``, or the customers of its ``seed_query`` over
the wide table and the segments), a seed-vs-base classifier is fitted on the wide table
(``pipelines.models.lookalike``) and pickled into the run folder, so the select step scores reason codes with the
very same fold models (:func:`load_run_lookalike`). Every customer of the base gets an out-of-fold score; the
contact policy and the audience rules then decide who is eligible, and :func:`drop_seed` moves eligible seed
customers to the exclusions (reason ``lookalike_seed``): the seed is the reference, never the audience.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.config import Settings
from pipelines.data import storage
from pipelines.progress import Progress, say_to

MODEL_FILE = "lookalike.pkl"
SEED_REASON = "lookalike_seed"


def seed_file_path(settings: Settings, spec: Any) -> Path:
    """The spec's ``lookalike.seed_file``, resolved against the campaigns folder."""
    return settings.campaigns_dir / spec.lookalike.seed_file


def check_seed_source(settings: Settings, spec: Any) -> None:
    """Fail fast (before any heavy work) on a seed file that is missing or is not a list of ids."""
    from pipelines.models.lookalike import read_seed_file

    if spec.lookalike is not None and spec.lookalike.seed_file is not None:
        read_seed_file(seed_file_path(settings, spec))


def seed_ids(settings: Settings, spec: Any, base: pd.DataFrame) -> np.ndarray:
    """The seed's customer ids: the seed file's, or those of ``base`` (wide table and segments) passing every
    rule of the seed query. :class:`LookalikeError` naming the campaign when the query matches nobody."""
    from pipelines.campaigns.policy import audience_rule_passes
    from pipelines.models.lookalike import LookalikeError, read_seed_file

    block = spec.lookalike
    if block.seed_file is not None:
        return read_seed_file(seed_file_path(settings, spec))
    missing = sorted({r.column for r in block.seed_query} - set(base.columns))
    if missing:
        raise LookalikeError(
            f"campaign {spec.name!r}: lookalike.seed_query column(s) {', '.join(missing)} are not in the run's "
            "wide table or segments"
        )
    passes = np.ones(len(base), dtype=bool)
    for rule in block.seed_query:
        passes &= audience_rule_passes(base[rule.column], rule)
    if not passes.any():
        raise LookalikeError(
            f"campaign {spec.name!r}: the seed query ({block.seed_label}) matches no customer"
        )
    return np.unique(base.loc[passes, "customer_id"].to_numpy(np.int64))


def fit_run_lookalike(settings: Settings, spec: Any, folder: Path, progress: Progress = None):
    """Fit the campaign's lookalike on the run folder's wide table -> ``lookalike.pkl``; the pinned
    :class:`ScoringModel` (``lookalike``, version = the seed's hash) and the figures a run records."""
    from pipelines.campaigns.score import ScoringModel
    from pipelines.models.lookalike import MODEL_NAME, fit_lookalike

    say = say_to(progress)
    wide = storage.read_frame(folder / "features.parquet")
    segments = storage.read_frame(folder / "segments.parquet")
    base = wide.merge(segments, on="customer_id", how="left", validate="one_to_one", suffixes=("", "_seg"))
    ids = seed_ids(settings, spec, base)
    say(f"lookalike seed: {len(ids):,} customers ({spec.lookalike.seed_label})")
    scorer = fit_lookalike(wide, ids, progress=say)
    with (folder / MODEL_FILE).open("wb") as fh:
        pickle.dump(scorer, fh, protocol=pickle.HIGHEST_PROTOCOL)
    figures = {
        "seed": spec.lookalike.seed_label,
        "seed_size": scorer.seed_size,
        "seed_auc": round(scorer.auc, 6),
        "folds": scorer.folds,
        "size": spec.lookalike.size,
    }
    return ScoringModel(MODEL_NAME, scorer.version, "seed", "", scorer), figures


def load_run_lookalike(folder: Path):
    """The lookalike the score step fitted for this run (``lookalike.pkl``), as a pinned ScoringModel."""
    from pipelines.campaigns.score import ScoringModel
    from pipelines.models.lookalike import MODEL_NAME

    with (Path(folder) / MODEL_FILE).open("rb") as fh:
        scorer = pickle.load(fh)
    return ScoringModel(MODEL_NAME, scorer.version, "seed", "", scorer)


def drop_seed(
    eligible: pd.DataFrame, exclusions: pd.DataFrame, seed: np.ndarray
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``eligible`` without the seed's customers, and ``exclusions`` with them added (reason
    ``lookalike_seed``); a seed customer the policy already excluded keeps that reason."""
    is_seed = np.isin(eligible["customer_id"].to_numpy(np.int64), np.asarray(seed, dtype=np.int64))
    added = pd.DataFrame(
        {
            "customer_id": eligible.loc[is_seed, "customer_id"].to_numpy(np.int64),
            "exclusion_reason": pd.Series([SEED_REASON] * int(is_seed.sum()), dtype="str"),
            "detail": pd.Series(
                ["in the lookalike's seed (the reference, not the audience)"] * int(is_seed.sum()),
                dtype="str",
            ),
        }
    )
    exclusions = pd.concat([exclusions, added], ignore_index=True) if len(added) else exclusions
    return eligible.loc[~is_seed].reset_index(drop=True), exclusions
