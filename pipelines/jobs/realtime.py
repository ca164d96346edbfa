"""Real-time campaigns as campaign runs: one day's decisions of a campaign (``campaign_decisions``, logged by the
decision service) turned into a run of the campaign database, ``campaign_decide__<day>__<campaign>``, that the
readout flow reads like a batch run (``readouts.simulate_responses``, ``readouts.readout_campaign``)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from pipelines.config import Settings
from pipelines.jobs.common import load_campaign
from pipelines.progress import Progress, say_to
from pipelines.runs import make_run_id

DECIDE_RUN = "campaign_decide"


class NoDecisions(LookupError):
    """A real-time campaign has no decision in treatment or holdout on the day asked for."""


def decided_run_id(campaign: str, day: Any) -> str:
    """``campaign_decide__<YYYY-MM-DD>__<campaign>``: one run per real-time campaign and day."""
    return make_run_id(DECIDE_RUN, day, campaign)


def decided_targets(decisions: pd.DataFrame) -> pd.DataFrame:
    """The target list of a day's decisions of one campaign: each customer's first decision that day
    (``event_ts``, then ``decided_at`` and ``decision_id``) among those in treatment or holdout, with score, decile (1 = best, by
    score within the day, ``assign_deciles``), rank (1 = best, ties by customer id), target_group, channel, and the
    model_name and model_version that scored it."""
    from pipelines.campaigns.score import assign_deciles

    grouped = decisions.loc[decisions["target_group"].isin(("treatment", "holdout"))]
    first = grouped.sort_values(["event_ts", "decided_at", "decision_id"]).drop_duplicates(
        "customer_id", keep="first"
    )
    unscored = first.loc[first["score"].isna(), "decision_id"]
    if len(unscored):
        raise ValueError(
            f"campaign_decisions.score: {len(unscored)} decision(s) in treatment or holdout have no score, "
            f"e.g. {unscored.head(3).tolist()}: a run's targets need one"
        )
    ids = first["customer_id"].to_numpy(np.int64)
    scores = first["score"].to_numpy(np.float64)
    order = np.lexsort((ids, -scores))
    rank = np.empty(len(ids), dtype=np.int64)
    rank[order] = np.arange(1, len(ids) + 1)
    return pd.DataFrame(
        {
            "customer_id": ids,
            "score": scores,
            "decile": assign_deciles(scores, ids),
            "rank": rank,
            "target_group": first["target_group"].astype(str).to_numpy(),
            "channel": first["channel"].to_numpy(),
            "model_name": first["model_name"].to_numpy(),
            "model_version": first["model_version"].to_numpy(),
        }
    )


def decided_run(settings: Settings, campaign: str, day: Any, progress: Progress = None) -> dict:
    """Store one day's decisions of real-time ``campaign`` as the run ``campaign_decide__<day>__<campaign>``.

    The day is a UTC day of the decisions' ``event_ts`` (the day the offer met the customer). Targets: :func:`decided_targets` (channel defaulting to the spec's).
    The run row: logical date ``day``; the model and version of most of the day's targets; ``n_scored`` the
    campaign's decisions of the day, ``n_eligible`` the customers in the list; the holdout fraction of the spec
    (``auto``: the power plan for the day's customers), and the sample-ratio p-value of the groups against it,
    recorded rather than enforced (the decisions were made; the readout marks a mismatch as untrustworthy).
    Written by ``store.write_run`` (one transaction), so a rerun replaces the run. Raises :class:`NoDecisions`
    naming the campaign and day when it has no decision in treatment or holdout that day.
    """
    from pipelines.campaigns import store, store_schema
    from pipelines.campaigns.decisions import read_decisions
    from pipelines.campaigns.score import HOLDOUT, SRM_ALPHA, TREATMENT, check_sample_ratio
    from pipelines.campaigns.store_frames import RunRecord

    say = say_to(progress)
    spec = load_campaign(settings, campaign)
    day = pd.Timestamp(day).date()
    run_id = decided_run_id(campaign, day)
    engine = store_schema.make_engine(settings.database_url)
    try:
        store_schema.ensure_schema(engine)
        decisions = read_decisions(engine, campaign=campaign, day=day)
        targets = decided_targets(decisions)
        if targets.empty:
            raise NoDecisions(
                f"campaign {campaign!r}: no decision in treatment or holdout on {day} (UTC) in campaign_decisions of "
                f"{store_schema.safe_url(engine)} ({len(decisions)} decision(s) of the campaign that day)"
            )
        targets["channel"] = targets["channel"].fillna(spec.channel)
        if spec.holdout_fraction == "auto":
            fraction, plan = spec.holdout_for(len(targets))
        else:
            fraction, plan = (
                float(spec.holdout_fraction),
                f"holdout_fraction {spec.holdout_fraction:g} fixed in spec",
            )
        n_treatment = int((targets["target_group"] == TREATMENT).sum())
        n_holdout = int((targets["target_group"] == HOLDOUT).sum())
        srm = check_sample_ratio(n_treatment, n_holdout, fraction)
        versions = Counter(
            (n, str(v))
            for n, v in zip(targets["model_name"], targets["model_version"], strict=True)
            if isinstance(n, str)
        )
        model_name, model_version = versions.most_common(1)[0][0] if versions else (None, None)
        record = RunRecord(
            run_id=run_id,
            campaign=campaign,
            logical_date=day,
            model_name=model_name,
            model_version=model_version,
            n_scored=len(decisions),
            n_eligible=len(targets),
            srm_p_value=srm.p_value,
            holdout_fraction=fraction,
            details={
                "source": "campaign_decisions",
                "decisions": len(decisions),
                "first_decided_at": decisions["decided_at"].min().isoformat(),
                "last_decided_at": decisions["decided_at"].max().isoformat(),
                "model_versions": {f"{n} v{v}": k for (n, v), k in sorted(versions.items())},
                "channel": spec.channel,
                "holdout_plan": plan,
            },
        )
        store.write_run(engine, record, targets, None)
        stored = store.group_counts(engine, run_id)
        say(f"run {run_id}: {len(targets):,} customers of {len(decisions):,} decisions; {srm.describe()}")
        if not srm.ok:
            say(f"run {run_id}: sample-ratio mismatch (p < {SRM_ALPHA}): its readout will not be trustworthy")
    finally:
        engine.dispose()
    return {
        "run_id": run_id,
        "campaign": campaign,
        "day": day.isoformat(),
        "decisions": len(decisions),
        "customers": len(targets),
        "treatment": stored[TREATMENT],
        "holdout": stored[HOLDOUT],
        "holdout_fraction": fraction,
        "srm_p_value": srm.p_value,
        "model_name": model_name,
        "model_version": model_version,
    }


def close_day(settings: Settings, as_of: Any, progress: Progress = None) -> dict[str, dict]:
    """The ``decision_runs`` DAG's step: the decisions of the day before ``as_of`` of every real-time campaign (a
    spec with a ``trigger``) as their runs (:func:`decided_run`). A campaign without decisions that day is
    reported, not an error. Returns ``{campaign: decided_run's summary or {"skipped": why}}``."""
    from pipelines.campaigns.spec import load_spec
    from pipelines.campaigns.spec_header import read_each

    say = say_to(progress)
    day = (pd.Timestamp(as_of) - pd.Timedelta(days=1)).date()
    specs, problems = read_each(settings.campaigns_dir, load_spec)
    for problem in problems:
        say(f"skipped: {problem}")
    out: dict[str, dict] = {}
    for spec in (s for s in specs if s.trigger is not None):
        try:
            out[spec.name] = decided_run(settings, spec.name, day, progress)
        except NoDecisions as exc:
            say(str(exc))
            out[spec.name] = {"skipped": str(exc)}
    if not out:
        say(f"no real-time campaign in {settings.campaigns_dir}")
    return out
