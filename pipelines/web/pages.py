"""The staff app's reading pages: the campaigns, one campaign's runs, one run (counts, exclusions, segment mix and
its readout) and the audit page. Every number comes from the campaign database, the run folders or the specs, as
``pmp campaigns list`` and the readout report show them."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pandas as pd
from flask import Blueprint, abort, render_template

from pipelines.web.app import requires, settings_of

blueprint = Blueprint("pages", __name__)
SEGMENT_TITLES = {
    "rfm_segment": "RFM segment",
    "value_tier": "value tier",
    "lifecycle_stage": "lifecycle stage",
    "persona": "persona",
}


_ENGINE_LOCK = threading.Lock()


def engine():
    """The app's campaign database engine (one per app, so one connection pool), made with its schema on first
    use; an engine whose schema step failed (an unreachable server) is not kept, so the next request tries again."""
    from flask import current_app

    from pipelines.campaigns import store_schema

    with _ENGINE_LOCK:
        made = current_app.extensions.get("pmp_engine")
        if made is None:
            made = store_schema.make_engine(settings_of().database_url)
            store_schema.ensure_schema(made)
            current_app.extensions["pmp_engine"] = made
    return made


def specs() -> tuple[dict[str, Any], list[str]]:
    """The campaign specs by name, and one line per spec file that does not load."""
    from pipelines.campaigns.spec import load_spec
    from pipelines.campaigns.spec_header import read_each

    loaded, problems = read_each(settings_of().campaigns_dir, load_spec)
    return {spec.name: spec for spec in loaded}, problems


def _runs(campaign: str | None = None) -> pd.DataFrame:
    """Runs newest first, with their readout (lift and interval) where there is one."""
    from pipelines.campaigns import store

    runs = store.list_runs(engine(), campaign)
    results = store.read_results(engine())
    keep = [
        "campaign_id",
        "lift_abs",
        "lift_ci_low",
        "lift_ci_high",
        "p_value",
        "trustworthy",
        "treated_rate",
        "control_rate",
    ]
    runs = runs.merge(results[keep], left_on="run_id", right_on="campaign_id", how="left")
    return runs.drop(columns="campaign_id")


def _lift_text(row: Any) -> str:
    if pd.isna(row.get("lift_abs")):
        return ""
    return f"{100 * row['lift_abs']:+.2f} pts [{100 * row['lift_ci_low']:+.2f}, {100 * row['lift_ci_high']:+.2f}]"


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    rows = []
    for row in frame.to_dict("records"):
        row["lift_text"] = _lift_text(row)
        row["logical_date"] = pd.Timestamp(row["logical_date"]).date().isoformat()
        rows.append(row)
    return rows


@blueprint.route("/")
@requires("viewer")
def campaigns():
    found, problems = specs()
    runs = _runs()
    names = sorted(set(found) | set(runs["campaign"]))
    rows = []
    for name in names:
        spec = found.get(name)
        own = runs[runs["campaign"] == name]
        latest = _records(own.head(1))[0] if len(own) else None
        rows.append(
            {
                "name": name,
                "spec": spec,
                "description": spec.description if spec else "spec file removed; its runs remain",
                "runs": len(own),
                "latest": latest,
            }
        )
    return render_template("web/campaigns.html.j2", rows=rows, problems=problems)


@blueprint.route("/campaigns/<name>")
@requires("viewer")
def campaign(name: str):
    from pipelines.campaigns.spec_history import read_history

    found, _ = specs()
    spec = found.get(name)
    runs = _records(_runs(name))
    if spec is None and not runs:
        abort(404, f"no campaign {name!r}: no spec in {settings_of().campaigns_dir.name}/ and no runs")
    history = read_history(engine(), name, limit=20)
    return render_template(
        "web/campaign.html.j2",
        name=name,
        spec=spec,
        rules=[rule.label for rule in spec.audience] if spec else [],
        runs=runs,
        history=history.to_dict("records"),
    )


@blueprint.route("/runs/<run_id>")
@requires("viewer")
def run(run_id: str):
    from pipelines.campaigns import store
    from pipelines.readout.report import load_report_context, render_body
    from pipelines.runs import run_dir

    runs = _runs()
    found = runs[runs["run_id"] == run_id]
    if found.empty:
        abort(404, f"no run {run_id!r} in the campaign database")
    record = _records(found)[0]
    groups = store.group_counts(engine(), run_id)
    exclusions = store.exclusion_counts(engine(), run_id)
    segments = store.read_segments(engine(), run_id)
    mix = []
    for dimension, rows in segments.groupby("dimension", sort=False):
        mix.append(
            {
                "title": SEGMENT_TITLES.get(dimension, dimension),
                "rows": rows.sort_values("customers", ascending=False).to_dict("records"),
            }
        )
    readout_dir = run_dir(settings_of().runs_dir, f"readout__{run_id}")
    context = load_report_context(readout_dir)
    readout = render_body(context) if context is not None else None
    old_report = context is None and (readout_dir / "report.html").is_file()
    due = None
    if readout is None and not old_report:
        spec = specs()[0].get(record["campaign"])
        if spec is not None:
            due = pd.Timestamp(record["logical_date"]) + timedelta(days=spec.response_window_days + 1)
    return render_template(
        "web/run.html.j2",
        run=record,
        groups=groups,
        exclusions=exclusions,
        n_excluded=sum(exclusions.values()),
        mix=mix,
        readout=readout,
        old_report=old_report,
        due=None if due is None else f"{due:%Y-%m-%d}",
    )


@blueprint.route("/audit")
@requires("manager")
def audit():
    from pipelines.campaigns.contact_export import read_exports
    from pipelines.campaigns.spec_history import read_history
    from pipelines.campaigns.store_schema import CampaignDBError

    problem = None
    try:
        exports = read_exports(engine(), limit=200).to_dict("records")
    except CampaignDBError as exc:  # on PostgreSQL only the contact role may read contact_exports
        exports, problem = [], str(exc).splitlines()[0]
    history = read_history(engine(), limit=100).to_dict("records")
    return render_template("web/audit.html.j2", exports=exports, problem=problem, history=history)
