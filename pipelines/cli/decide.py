"""``pmp decide ...``: the real-time decision service (docs/realtime.md), its online snapshot and its readout."""

from __future__ import annotations

import argparse

from pipelines.config import Settings


def decide_serve(args: argparse.Namespace, settings: Settings) -> int:
    """The decision service (pipelines.decide.service) on --host/--port until Ctrl-C."""
    from pipelines.decide.service import ServiceError, serve

    settings = settings.with_data_dir(args.data)
    try:
        serve(settings, host=args.host, port=args.port)
    except ServiceError as exc:
        raise RuntimeError(str(exc)) from None
    except KeyboardInterrupt:
        pass
    print("decision service stopped")
    return 0


def decide_refresh(args: argparse.Namespace, settings: Settings) -> int:
    """Refresh the online snapshot from a written batch run of CAMPAIGN (what the scoring DAG does after write)."""
    from pipelines.data import storage
    from pipelines.jobs.online import refresh_online_snapshot

    settings = settings.with_data_dir(args.data)
    as_of = args.as_of or storage.lake_end(settings.lake_dir)
    refresh_online_snapshot(settings, args.campaign, as_of, progress=print)
    return 0


def decide_close(args: argparse.Namespace, settings: Settings) -> int:
    """One day's decisions of a real-time campaign as a campaign run that reads out like a batch run."""
    from pipelines.jobs.realtime import decided_run

    settings = settings.with_data_dir(args.data)
    result = decided_run(settings, args.campaign, args.day, progress=print)
    print(f"run {result['run_id']}: next, after the response window: pmp readout {result['run_id']}")
    return 0
