"""The readout flow: which platform runs are due for a readout, the readout of a campaign after its response window
(treatment against holdout, under ``runs/readout__<campaign_id>/``, one ``campaign_results`` row and one MLflow
run), and the synthetic world's answer to a run (demo and tests only)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.config import Settings
from pipelines.data import storage
from pipelines.jobs.common import load_campaign
from pipelines.progress import Progress, say_to
from pipelines.runs import run_dir

READOUT_SEGMENTS = ("decile", "lifecycle_stage", "value_tier", "rfm_segment", "persona", "region")


def readout_segments(frame: pd.DataFrame) -> list[str]:
    """The columns of :data:`READOUT_SEGMENTS` a readout breaks the lift down by: those ``frame`` has, with a value
    for at least one customer (a lake without regions gives no region breakdown)."""
    return [c for c in READOUT_SEGMENTS if c in frame.columns and frame[c].notna().any()]


class ResponsesNotLanded(LookupError):
    """A platform run has no contacts in the lake yet: its response feed has not landed."""


def readout_campaign(
    settings: Settings,
    campaign_id: str,
    *,
    window_days: int | None = None,
    expected_share: float | None = None,
    floor: float | None = None,
    as_of: Any = None,
    progress: Progress = None,
) -> dict:
    """Read out a campaign after its response window: treatment against holdout, conversion within the window.

    ``campaign_id`` is either a platform run (a ``run_id`` of the campaign database: groups, deciles and
    segments come from ``campaign_targets``, the region from the run folder's ``features.parquet``; the window,
    floor, cost and value from its spec; the expected split from the run's holdout fraction) or a past campaign
    in the lake (groups from ``campaign_contacts``; window 14 days and floor 1 % unless given; SRM only with
    ``expected_share``). Responses come from the lake.

    Computes the lift with CI and p-value, the SRM check, lift by decile and segment, the funnel, UTM channel
    quality, the response-floor alert, the power statement, and with the generator's truth the true lift. Writes
    ``runs/readout__<campaign_id>/`` (report.md/.html, report_context.json, lift_by_decile.png, CSVs,
    readout.json), one ``campaign_results`` row and one MLflow run in ``campaign-readouts`` (all replaced on a
    re-readout).
    Refuses to read out before the window has closed (``as_of``, default today).
    """
    from pipelines.campaigns import store, store_schema
    from pipelines.campaigns.power import powered_statement
    from pipelines.jobs.audience import with_breakdowns
    from pipelines.readout.funnel import channel_quality, funnel
    from pipelines.readout.report import CONTEXT_FILE, lift_by_decile_chart, render_context, report_context
    from pipelines.readout.stats import readout, response_floor_alert, return_on_spend
    from pipelines.synthetic import oracle

    say = say_to(progress)
    lake = settings.lake_dir
    engine = store_schema.make_engine(settings.database_url)
    store_schema.ensure_schema(engine)
    runs = store.list_runs(engine)
    run = runs.loc[runs["run_id"] == campaign_id]
    platform = not run.empty
    contacts = storage.read_table(lake, "campaign_contacts")
    contacts = contacts.loc[contacts["campaign_id"] == campaign_id].reset_index(drop=True)
    if contacts.empty:
        if platform:
            raise ResponsesNotLanded(
                f"run {campaign_id!r} has no contacts in {lake / 'campaign_contacts'}: its response feed has not "
                "landed yet (read it out after the response window, once contacts and responses are in the lake)"
            )
        known = sorted(
            storage.read_table(lake, "campaign_contacts", columns=["campaign_id"])["campaign_id"].unique()
        )
        raise LookupError(f"no campaign {campaign_id!r} in campaign_contacts; known: {', '.join(known)}")

    facts: dict[str, Any] = {"campaign id": campaign_id}
    spec = None
    if platform:
        record = run.iloc[0]
        spec = load_campaign(settings, str(record["campaign"]))
        window_days = window_days or spec.response_window_days
        floor = spec.response_rate_floor if floor is None else floor
        if expected_share is None:
            expected_share = 1.0 - float(record["holdout_fraction"])
        targets = store.read_targets(
            engine, str(record["campaign"]), campaign_id, groups=("treatment", "holdout")
        )
        # Region (when the run's customers have one) from the run folder's wide table, not the database.
        frame = with_breakdowns(
            targets.rename(columns={"target_group": "group"}), run_dir(settings.runs_dir, campaign_id)
        )
        facts.update(
            {
                "campaign": spec.name,
                "channel": spec.channel,
                "model": f"{record['model_name']} v{record['model_version']}",
                "cost_per_contact": spec.cost_per_contact,
                "value_per_response": spec.value_per_response,
            }
        )
    else:
        frame = contacts[["customer_id", "group"]].copy()
    window_days = int(window_days or 14)
    floor = 0.01 if floor is None else floor
    facts["response window"] = f"{window_days} days"

    selected_at = contacts["selected_at"].min()
    closes = selected_at + pd.Timedelta(days=window_days)
    today = pd.Timestamp(as_of) if as_of is not None else pd.Timestamp(date.today())
    if closes > today:  # a readout dated D sees the data up to the start of D
        raise ResponsesNotLanded(
            f"the {window_days}-day response window of {campaign_id!r} closes at {closes:%Y-%m-%d %H:%M}; "
            f"read it out after that (as of {today:%Y-%m-%d})"
        )
    responses = storage.read_table(lake, "responses")
    responses = responses.loc[responses["campaign_id"] == campaign_id].reset_index(drop=True)
    converted = responses.loc[responses["event_type"] == "converted", ["customer_id", "event_ts"]]
    inside = (converted["event_ts"] >= selected_at) & (converted["event_ts"] < closes)
    frame["group"] = frame["group"].astype(str)
    frame["converted"] = frame["customer_id"].isin(set(converted.loc[inside, "customer_id"])).astype(int)
    segment_cols = readout_segments(frame)
    result = readout(
        frame,
        treatment_col="group",
        treated="treatment",
        control="holdout",
        outcome_col="converted",
        expected_share=expected_share,
        segment_cols=segment_cols,
    )
    o = result.overall
    alert = response_floor_alert(result, floor)
    power_note = powered_statement(o.treated_n, o.control_n, o.control_rate, o.lift_abs)
    true_lift = None
    truth = oracle.oracle_uplift(settings.data_dir, contacts[["campaign_id", "customer_id"]], window_days)
    if truth is not None:
        true_lift = float(truth.mean())

    folder = run_dir(settings.runs_dir, f"readout__{campaign_id}")
    folder.mkdir(parents=True, exist_ok=True)
    stages = funnel(contacts, responses, campaign_id)
    channels = channel_quality(responses, contacts, campaign_id)
    stages.to_csv(folder / "funnel.csv", index=False)
    channels.to_csv(folder / "channel_quality.csv", index=False)
    result.segments.to_csv(folder / "segments.csv", index=False)
    chart = None
    if "decile" in segment_cols:
        # The path: the HTML embeds the PNG, the Markdown links it by name (it sits beside the report).
        chart = lift_by_decile_chart(
            result.segments, folder / "lift_by_decile.png", title=f"{campaign_id}: lift by decile"
        )
    context = report_context(
        result,
        title=f"Readout: {campaign_id}",
        facts=facts,
        funnel=stages,
        channels=channels,
        alert=alert,
        power_note=power_note,
        true_lift=true_lift,
        chart=chart,
    )
    markdown, html = render_context(context)
    storage.write_text_atomic(folder / "report.md", markdown)
    storage.write_text_atomic(folder / "report.html", html)
    # The same report for the staff app, which renders it inside its own layout (aggregates only, no customer).
    storage.write_json_atomic(folder / CONTEXT_FILE, context)
    storage.write_text_atomic(
        folder / "readout.md", result.describe() + ("\n\n" + alert if alert else "") + "\n"
    )
    ros = None
    if spec is not None and (spec.cost_per_contact or spec.value_per_response):
        ros = return_on_spend(o, spec.cost_per_contact, spec.value_per_response)
    row = {
        "campaign_id": campaign_id,
        "response_window_days": window_days,
        **{k: v for k, v in asdict(o).items() if k in store_schema.RESULT_COLUMNS},
        "srm_p_value": result.srm.p_value if result.srm else None,
        "trustworthy": result.trustworthy,
        "alert": alert,
        "true_lift": true_lift,
        "net_return": ros.net if ros else None,
    }
    storage.write_json_atomic(folder / "readout.json", {**row, "power": power_note, "platform_run": platform})
    store.write_result(engine, row)
    row["mlflow_run_id"] = _log_readout(settings, row, folder)
    row["power"] = power_note
    row["report"] = str(folder / "report.html")
    say(result.describe())
    say(power_note)
    if true_lift is not None:
        covered = o.lift_ci_low <= true_lift <= o.lift_ci_high
        say(
            f"true lift (from truth/): {true_lift:+.3%}, {'inside' if covered else 'OUTSIDE'} the 95% interval"
        )
    if alert:
        say(alert)
    return row


def due_readouts(
    settings: Settings, as_of: Any = None, include_done: bool = False, progress: Progress = None
) -> list[str]:
    """Platform runs ready for a readout at ``as_of`` (default today): response window closed (a run of day D with
    a 14-day window is due from D + 15: the window ends during D + 14), contacts landed in the lake, and (unless
    ``include_done``) no readout stored yet. Oldest first."""
    from pipelines.campaigns import store, store_schema

    today = pd.Timestamp(as_of) if as_of is not None else pd.Timestamp(date.today())
    engine = store_schema.make_engine(settings.database_url)
    store_schema.ensure_schema(engine)
    runs = store.list_runs(engine)
    if runs.empty:
        return []
    landed = set(
        storage.read_table(settings.lake_dir, "campaign_contacts", columns=["campaign_id"])["campaign_id"]
    )
    done = set() if include_done else set(store.read_results(engine)["campaign_id"])
    due = []
    for record in runs.sort_values(["logical_date", "run_id"]).itertuples(index=False):
        try:
            window = load_campaign(settings, str(record.campaign)).response_window_days
        except Exception:  # a removed or broken spec: its runs are read out by hand (pmp readout)
            continue
        closed = pd.Timestamp(record.logical_date) + pd.Timedelta(days=window + 1) <= today
        if closed and record.run_id in landed and record.run_id not in done:
            due.append(str(record.run_id))
    return due


def simulate_responses(settings: Settings, run_id: str, progress: Progress = None) -> dict:
    """The synthetic world's response feed for one platform run (demo and tests only): contacts and responses
    of the run's targets over its response window, written to the lake, with their truth (see
    ``synthetic.campaigns.simulate_run_responses``)."""
    from pipelines.campaigns import store, store_schema
    from pipelines.synthetic.campaigns import RESPONSE_HORIZON_DAYS, simulate_run_responses

    engine = store_schema.make_engine(settings.database_url)
    runs = store.list_runs(engine)
    record = runs.loc[runs["run_id"] == run_id]
    if record.empty:
        raise LookupError(f"no run {run_id!r} in the campaign database")
    record = record.iloc[0]
    spec = load_campaign(settings, str(record["campaign"]))
    targets = store.read_targets(engine, str(record["campaign"]), run_id, groups=("treatment", "holdout"))
    summary = simulate_run_responses(
        settings.data_dir,
        run_id,
        targets[["customer_id", "target_group"]],
        channel=spec.channel,
        selected_at=pd.Timestamp(record["logical_date"]),
        seed=settings.seed,
    )
    say_to(progress)(
        f"synthetic world: {summary['contacts']:,} contacts of {run_id} answered with {summary['conversions']:,} "
        f"conversions within {RESPONSE_HORIZON_DAYS} days (true lift over that horizon {summary['true_lift']:+.3%})"
    )
    return summary


def _log_readout(settings: Settings, row: dict, folder: Path) -> str:
    """The readout's MLflow run (experiment ``campaign-readouts``; one per campaign id and data source, replaced
    when read out again: ``jobs.tracking.replacing_run``): the lift with its interval and the report's files."""
    from pipelines.jobs.tracking import DATA_SOURCE_TAG, data_source, log_values, replacing_run

    key = {"campaign_id": row["campaign_id"], DATA_SOURCE_TAG: data_source(settings)}
    tags = {"trustworthy": str(row["trustworthy"])}
    names = {"p_value": "lift_p_value"}
    measures = (
        "treated_n",
        "control_n",
        "treated_rate",
        "control_rate",
        "lift_abs",
        "lift_ci_low",
        "lift_ci_high",
        "lift_rel",
        "p_value",
        "incremental_responses",
        "srm_p_value",
        "true_lift",
        "net_return",
    )
    with replacing_run(settings, "campaign-readouts", key, row["campaign_id"], tags) as (client, run_id):
        log_values(
            client,
            run_id,
            params={"response_window_days": row["response_window_days"]},
            metrics={
                names.get(k, k): float(row[k])
                for k in measures
                if row.get(k) is not None and np.isfinite(float(row[k]))
            },
        )
        for path in sorted(folder.iterdir()):
            if path.suffix in (".md", ".html", ".json", ".csv", ".png"):
                client.log_artifact(run_id, str(path))
    return run_id
