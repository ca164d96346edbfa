"""The real-time decision service (``pmp decide serve``): the ASGI app and what it loads once at start.

``POST /decide`` with ``{"customer_id": 1000042, "event": {"type": "login", "ts": "2026-03-02T08:15:00"}}``
answers ``{"decision_id", "customer_id", "offer", "campaign", "channel", "group", "score", "expected_value",
"reason", "model_name", "model_version"}`` (see :class:`pipelines.decide.engine.Decision`); ``GET /health`` says
what is loaded. A malformed request is a 422 naming the field; an unexpected failure a 500 with one line.

At start the service loads the real-time campaigns (specs with a ``trigger:`` in the campaigns folder), the
champion of each campaign's model, the online snapshot (``PM_ONLINE_STORE``), the contact history the campaigns'
policies look back over and the ids their ``invalid_customer`` rules exclude; decisions go to the campaign
database's ``campaign_decisions`` table in batches (:class:`pipelines.decide.log.DecisionLog`). Served by uvicorn,
one process, on 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from pipelines.config import Settings
from pipelines.decide.engine import Decider
from pipelines.features.online import Event
from pipelines.progress import Progress, say_to

log = logging.getLogger(__name__)


class DecideRequest(BaseModel):
    """The body of ``POST /decide``."""

    model_config = ConfigDict(extra="forbid")
    customer_id: int = Field(gt=0, strict=True)
    event: Event


class ServiceError(RuntimeError):
    """The service cannot start: one line saying what is missing."""


def realtime_specs(settings: Settings, say=None) -> list[Any]:
    """The valid specs with a ``trigger:`` in the campaigns folder (a broken spec is named and left out)."""
    from pipelines.campaigns.spec import load_spec
    from pipelines.campaigns.spec_header import read_each

    specs, problems = read_each(settings.campaigns_dir, load_spec)
    for problem in problems:
        if say:
            say(f"skipped: {problem}")
    found = [s for s in specs if s.trigger is not None]
    if not found:
        raise ServiceError(
            f"no real-time campaign in {settings.campaigns_dir}: give a campaign a `trigger:` block "
            "(docs/realtime.md)"
        )
    return found


def load_decider(settings: Settings, log_row=None, progress: Progress = None, today: Any = None) -> Decider:
    """A :class:`Decider` over what ``settings`` point at (see the module docstring); ``today`` (default: the UTC
    date) is the day the contact history is read up to."""
    from pipelines.campaigns import store_schema
    from pipelines.campaigns.place_rules import lake_branches
    from pipelines.campaigns.policy import invalid_customers
    from pipelines.campaigns.score import ScoringError, load_scoring_model
    from pipelines.features.online_store import OnlineStoreError, open_snapshot
    from pipelines.jobs.audience import contact_history_at

    say = say_to(progress)
    specs = realtime_specs(settings, say)
    models = {}
    for name in sorted({s.model for s in specs}):
        try:
            models[name] = load_scoring_model(name, settings.mlflow_tracking_uri)
        except ScoringError as exc:
            raise ServiceError(str(exc)) from None
        say(f"model {name} v{models[name].version} ({models[name].alias})")
    try:
        snapshot = open_snapshot(settings.online_store)
    except OnlineStoreError as exc:
        raise ServiceError(
            f"{exc} (a batch campaign run refreshes it: `pmp run`, or `pmp decide refresh CAMPAIGN`)"
        ) from None
    say(f"online snapshot as of {snapshot.as_of} ({len(snapshot):,} customers, run {snapshot.run_id})")
    base, customers = policy_base(settings, snapshot, specs)
    day = pd.Timestamp(today or datetime.now(UTC).date()).date()
    engine = store_schema.make_engine(settings.database_url)
    store_schema.ensure_schema(engine)
    history = pd.concat(
        [contact_history_at(settings, s, day, engine) for s in specs], ignore_index=True
    ).drop_duplicates()
    invalid = {
        s.name: invalid_customers(settings.lake_dir, snapshot.as_of, s.contact_policy.invalid_customer)
        for s in specs
        if s.contact_policy.invalid_customer is not None
    }
    say(
        f"{len(specs)} real-time campaign(s): {', '.join(s.name for s in specs)}; contact history "
        f"{len(history):,} contacts"
    )
    return Decider(
        specs,
        models,
        snapshot,
        base,
        customers,
        history,
        invalid,
        lake_branches(settings.lake_dir),
        log=log_row,
    )


def policy_base(settings: Settings, snapshot: Any, specs: list[Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What the campaigns' daily policy reads, as a batch run reads it: the snapshot run's scored base with the
    columns of the campaigns' audience rules (from its run folder), and the lake's consent flags."""
    from pipelines.data import storage
    from pipelines.jobs.audience import read_scored

    folder = settings.runs_dir / snapshot.run_id
    if not folder.is_dir():
        raise ServiceError(
            f"the online snapshot's run folder {folder} is missing: refresh the snapshot from a run of this data "
            "folder (`pmp decide refresh CAMPAIGN`)"
        )
    columns = sorted({rule.column for spec in specs for rule in spec.audience})
    base = read_scored(folder, columns)[["customer_id", *columns]]
    customers = storage.read_table(
        settings.lake_dir, "customers", columns=["customer_id", "do_not_contact", "marketing_opt_out"]
    )
    return base, customers


def create_app(decider: Decider, decision_log: Any = None):
    """The ASGI app over ``decider``; ``decision_log`` (when given) is closed, flushing it, at shutdown."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    from pipelines.decide.log import DecisionLogError

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if decision_log is not None:
                decision_log.close()

    app = FastAPI(title="pmp decide", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/decide")
    async def decide(request: DecideRequest) -> dict:
        return decider.decide(request.customer_id, request.event).as_json()

    @app.get("/health")
    async def health() -> dict:
        return {
            "status": "ok",
            "snapshot_as_of": str(decider.snapshot.as_of),
            "snapshot_run_id": decider.snapshot.run_id,
            "customers": len(decider.snapshot),
            "campaigns": [s.name for s in decider.specs],
            "models": {n: m.version for n, m in decider.models.items()},
            "pending_decisions": getattr(decision_log, "pending", 0),
        }

    @app.exception_handler(DecisionLogError)
    async def unlogged(_request: Request, exc: DecisionLogError) -> JSONResponse:
        # No decision leaves the service unlogged: the caller shows no offer and may retry later.
        line = str(exc).splitlines()[0]
        log.error("%s", line)
        return JSONResponse({"error": line}, status_code=503)

    @app.exception_handler(Exception)
    async def failed(_request: Request, exc: Exception) -> JSONResponse:
        line = f"{type(exc).__name__}: {exc}".splitlines()[0]
        log.error("decision failed: %s", line)
        return JSONResponse({"error": line}, status_code=500)

    return app


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8100, progress: Progress = print) -> None:
    """Load the decider and serve it with uvicorn until interrupted; the decision log is flushed at the end."""
    import uvicorn

    from pipelines.decide.log import DecisionLog

    say = say_to(progress)
    decision_log = DecisionLog(settings.database_url)
    try:
        decider = load_decider(settings, decision_log.add, progress)
    except BaseException:
        decision_log.close()
        raise
    say(f"deciding on http://{host}:{port}/decide (Ctrl-C stops)")
    config = uvicorn.Config(
        create_app(decider, decision_log), host=host, port=port, log_level="warning", access_log=False
    )
    uvicorn.Server(config).run()
