"""The online snapshot refresh: after a batch campaign run, its customers' features become what real-time
decisions read (``settings.online_store``; ``pipelines.features.online_store``).

The snapshot of a run is its folder's ``features.parquet`` joined with ``segments.parquet`` (every segment
column), the state a real-time update needs (``pipelines.features.online.online_state``, from the lake at the
run's date) and the customers' ``do_not_contact`` and ``marketing_opt_out`` flags from the lake; no other column
of ``customers`` (no personal data) is read.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from pipelines.config import Settings
from pipelines.data import storage
from pipelines.features.catalogue import ID
from pipelines.jobs.audience import FEATURES, SEGMENTS
from pipelines.jobs.campaigns import campaign_run_id
from pipelines.jobs.common import resolve_as_of
from pipelines.progress import Progress, say_to
from pipelines.runs import run_dir

CONTACT_FLAGS = ("do_not_contact", "marketing_opt_out")


def online_snapshot_frame(settings: Settings, campaign: str, as_of: Any) -> tuple[str, pd.DataFrame]:
    """``(run_id, frame)``: the snapshot of the campaign's run at ``as_of`` (module docstring), one row per customer
    of its wide table. :class:`storage.LakeError` when the run has not written its folder."""
    from pipelines.features.online import online_state
    from pipelines.features.wide_table import load_tables

    as_of = resolve_as_of(settings, as_of)
    run_id = campaign_run_id(campaign, as_of)
    folder = run_dir(settings.runs_dir, run_id)
    wide = storage.read_frame(folder / FEATURES)
    segments = storage.read_frame(folder / SEGMENTS)
    state = online_state(load_tables(settings.lake_dir, as_of), as_of)
    flags = storage.read_table(settings.lake_dir, "customers", columns=[ID, *CONTACT_FLAGS])
    frame = wide
    for name, part in (
        ("segments", segments[[ID, *(c for c in segments.columns if c not in wide.columns)]]),
        ("state", state),
        ("flags", flags),
    ):
        frame = frame.merge(part, on=ID, how="left", validate="one_to_one", indicator=True)
        missing = int((frame.pop("_merge") == "left_only").sum())
        if missing:
            raise ValueError(f"{missing} customers of {folder / FEATURES} have no {name} row")
    return run_id, frame


def refresh_online_snapshot(settings: Settings, campaign: str, as_of: Any, progress: Progress = None) -> dict:
    """Write the snapshot of the campaign's run at ``as_of`` to ``settings.online_store``, unless the store holds
    one of a later date (then it is left as it is). Returns ``{"as_of", "run_id", "rows", "target", "written"}``
    (``rows``: the snapshot's customers; 0 when not written)."""
    from pipelines.features.online_store import safe_target, snapshot_info, write_snapshot

    say = say_to(progress)
    as_of = resolve_as_of(settings, as_of)
    run_id = campaign_run_id(campaign, as_of)
    target = settings.online_store
    current = snapshot_info(target)
    if current is not None and current["as_of"] > as_of.isoformat():
        say(
            f"online store {safe_target(target)} holds the snapshot of {current['run_id']} at {current['as_of']}, later than "
            f"{as_of}: left as it is"
        )
        return {
            "as_of": as_of.isoformat(),
            "run_id": run_id,
            "rows": 0,
            "target": safe_target(target),
            "written": False,
        }
    run_id, frame = online_snapshot_frame(settings, campaign, as_of)
    written = write_snapshot(frame, as_of=as_of, run_id=run_id, target=target)
    say(
        f"online snapshot of {run_id}: {written['rows']:,} customers x {frame.shape[1] - 1} columns -> {written['target']}"
    )
    return {
        "as_of": written["as_of"],
        "run_id": run_id,
        "rows": written["rows"],
        "target": written["target"],
        "written": True,
    }
