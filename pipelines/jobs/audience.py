"""Who a campaign picks from a scored base: the contact policy, the audience rules, the uplift rule and the
selection, in ONE definition shared by the campaign run (``jobs.campaigns.campaign_select``) and the preview of
an unsaved spec (``jobs.campaign_preview.preview_campaign``), so the preview shows what a run would pick.

:func:`read_scored` joins a run folder's ``features.parquet``, ``scores.parquet`` and ``segments.parquet``;
:func:`choose_audience` takes that frame to the eligible customers, the exclusion audit and the selected ones.
Both only read (the lake, the campaign database and the folder); neither writes anything."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from pipelines.config import Settings
from pipelines.data import storage

FEATURES, SCORES, SEGMENTS = "features.parquet", "scores.parquet", "segments.parquet"
BASE_FILES = (FEATURES, SCORES, SEGMENTS)
# Customer attributes (pipelines.features.attributes) that segment summaries and readouts break down by, read from
# the run folder's features.parquet: the campaign database's targets do not carry them.
BREAKDOWNS = ("region",)


@dataclass(frozen=True)
class Audience:
    """The outcome of a campaign's policy and selection on a scored base.

    ``eligible`` are the customers who pass the contact policy and the audience rules (input order),
    ``exclusions`` one row per other customer (``customer_id``, ``exclusion_reason``, ``detail``), ``selected``
    the picked ones best first with ``rank``; ``not_positive`` counts eligible customers an uplift selection
    left out for an estimated uplift <= 0."""

    scored_n: int
    eligible: pd.DataFrame
    exclusions: pd.DataFrame
    selected: pd.DataFrame
    not_positive: int = 0

    @property
    def excluded_by_reason(self) -> dict[str, int]:
        """Exclusions per reason, largest first (ties by reason)."""
        counts = self.exclusions["exclusion_reason"].value_counts()
        return {str(k): int(v) for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))}


def read_scored(folder: Path, columns: Iterable[str] | None = None) -> pd.DataFrame:
    """A run folder's scored base: the wide table joined one-to-one with the scores (inner) and the segments
    (left), as ``campaign_select`` uses it. With ``columns``, only ``customer_id``, ``score``, ``decile`` and
    those of ``columns`` found in the features or the segments are read (a preview needs a few)."""
    folder = Path(folder)
    if columns is None:
        wide = storage.read_frame(folder / FEATURES)
        scores = storage.read_frame(folder / SCORES)
        segments = storage.read_frame(folder / SEGMENTS)
    else:
        wanted = set(columns) - {"customer_id"}
        in_wide = [c for c in storage.read_file_schema(folder / FEATURES).names if c in wanted]
        in_segments = [c for c in storage.read_file_schema(folder / SEGMENTS).names if c in wanted]
        wide = storage.read_frame(folder / FEATURES, columns=["customer_id", *in_wide])
        scores = storage.read_frame(folder / SCORES, columns=["customer_id", "score", "decile"])
        segments = storage.read_frame(folder / SEGMENTS, columns=["customer_id", *in_segments])
    scored = wide.merge(scores, on="customer_id", how="inner", validate="one_to_one")
    return scored.merge(segments, on="customer_id", how="left", validate="one_to_one")


def with_breakdowns(frame: pd.DataFrame, folder: Path) -> pd.DataFrame:
    """``frame`` (one row per ``customer_id``, e.g. a run's targets) with the :data:`BREAKDOWNS` columns of the
    run folder's ``features.parquet`` joined on, those the file holds with a value for some customer of
    ``frame``; ``frame`` itself when there are none (a folder written before attributes existed, a lake
    without regions, or no features file)."""
    path = Path(folder) / FEATURES
    if not path.is_file():
        return frame
    wanted = [c for c in BREAKDOWNS if c in storage.read_file_schema(path).names and c not in frame.columns]
    if not wanted:
        return frame
    found = storage.read_frame(path, columns=["customer_id", *wanted])
    joined = frame.merge(found, on="customer_id", how="left", validate="many_to_one")
    empty = [c for c in wanted if not joined[c].notna().any()]
    return joined.drop(columns=empty) if empty else joined


def contact_history_at(settings: Settings, spec, as_of: date, engine: Engine) -> pd.DataFrame:
    """Treatment contacts before ``as_of`` that the spec's contact policy looks back over: the lake's
    ``campaign_contacts`` (less the platform's own runs, which the database already counts) and the campaign
    database's succeeded runs."""
    from pipelines.campaigns import store
    from pipelines.campaigns.policy import lake_contact_history

    policy = spec.contact_policy
    lookback = max(
        policy.recent_contact_days, policy.frequency_cap.window_days if policy.frequency_cap else 0
    )
    since = pd.Timestamp(as_of) - pd.Timedelta(days=lookback)
    lake_history = lake_contact_history(settings.lake_dir, as_of, lookback_days=lookback)
    # Contacts of the platform's own runs reach the lake with the response feed; the database already counts them.
    lake_history = lake_history.loc[~lake_history["campaign"].isin(store.list_runs(engine)["run_id"])]
    return pd.concat(
        [lake_history, store.contact_history(engine, before=as_of, since=since.date())], ignore_index=True
    )


def choose_audience(
    settings: Settings,
    spec,
    scored: pd.DataFrame,
    as_of: date,
    engine: Engine,
    *,
    by_uplift: bool,
    say: Callable[[str], None],
    seed: np.ndarray | None = None,
) -> Audience:
    """The spec's contact policy and audience rules over ``scored`` at ``as_of`` (consent flags from the lake's
    customers, dead accounts, contact history from the lake and ``engine``; branch ids of place rules through the
    lake's branches table when it has one), then its selection. With
    ``by_uplift`` (the base was scored by the uplift model) eligible customers with an estimated uplift <= 0 are
    never selected: contact would not help them. ``seed`` (a lookalike's seed ids) are moved from the eligible to
    the exclusions (``jobs.lookalike.drop_seed``): never selected. Says how many were scored, excluded, eligible
    and selected; an empty selection is returned, not raised (the caller decides)."""
    from pipelines.campaigns.place_rules import WithinKmRule, lake_branches
    from pipelines.campaigns.policy import apply_policy, invalid_customers, select_audience

    customers = storage.read_table(
        settings.lake_dir, "customers", columns=["customer_id", "do_not_contact", "marketing_opt_out"]
    )
    history = contact_history_at(settings, spec, as_of, engine)
    invalid = invalid_customers(settings.lake_dir, as_of, spec.contact_policy.invalid_customer)
    places_used = any(isinstance(rule, WithinKmRule) for rule in spec.audience)
    branches = lake_branches(settings.lake_dir) if places_used else None
    eligible, exclusions = apply_policy(scored, customers, history, invalid, spec, as_of, branches=branches)
    if seed is not None:
        from pipelines.jobs.lookalike import drop_seed

        eligible, exclusions = drop_seed(eligible, exclusions, seed)
    candidates, not_positive = eligible, 0
    if by_uplift:
        # Contact would not help (or would hurt) these customers: eligible, but never selected by uplift.
        hurt = eligible["score"].to_numpy(np.float64) <= 0
        not_positive = int(hurt.sum())
        if not_positive:
            say(f"{not_positive:,} eligible customers have an estimated uplift <= 0: not selected")
            candidates = eligible.loc[~hurt].reset_index(drop=True)
    selected = select_audience(candidates, spec.selection)
    say(
        f"{len(scored):,} scored, {len(exclusions):,} excluded, {len(eligible):,} eligible, "
        f"{len(selected):,} selected ({spec.selection.mode})"
    )
    return Audience(len(scored), eligible, exclusions, selected, not_positive)


def holdout_count(deciles: np.ndarray, fraction: float) -> int:
    """How many customers ``score.assign_holdout`` holds out of an audience with these deciles: within each
    decile ``floor(fraction * n_decile + 0.5)``, summed (exact, whatever the hash draws)."""
    sizes = np.bincount(np.asarray(deciles, dtype=np.int64), minlength=11)
    return int(np.floor(fraction * sizes + 0.5)[sizes > 0].sum())
