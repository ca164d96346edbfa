"""What every flow's steps share: the run date, the source-data gate, the gated wide table, campaign specs, the
failures no retry can fix, and the summary of a registration.

A step (here and in the flow modules beside this one: ``campaigns``, ``training``, ``campaign_models``,
``readouts``) takes the settings and ids, reads its inputs from files under the run's folder (``runs/<run_id>/``),
writes its outputs there and returns paths, ids or a small summary dict: what an Airflow task hands to the next
through XCom. The DAGs in ``dags/`` are wiring over these functions, and the CLI chains them for one-shot runs, so a
run behaves the same whichever starts it. Every step is idempotent for its run id: re-running it replaces its
outputs (files are written atomically, the campaign database write is one transaction).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.config import Settings
from pipelines.data import storage
from pipelines.progress import Progress, say_to
from pipelines.runs import make_run_id, run_dir


def resolve_as_of(settings: Settings, as_of: Any = None) -> date:
    """``as_of`` as a date; None or "" means the end of the lake (the day after its last transaction month)."""
    if as_of in (None, ""):
        return storage.lake_end(settings.lake_dir)
    return pd.Timestamp(as_of).date()


def churn_definition(settings: Settings) -> tuple[str, str]:
    """The churn definition a run trains with when none is asked for, and why, from what the lake holds:
    ``closure`` when some customer's account was closed; ``inactivity`` (no transaction, nor app login, in the
    label window) when none ever was (a retailer's source has no accounts to close, so closure has no
    positives to learn from)."""
    customers = storage.read_table(settings.lake_dir, "customers", columns=["closed_date"])
    if customers["closed_date"].notna().any():
        return "closure", "the lake has closed accounts"
    return "inactivity", "no customer of the lake has a closed_date, so churn is inactivity"


def validate_data(settings: Settings, as_of: Any = None, progress: Progress = None) -> dict[str, Any]:
    """Run the source-data gates for ``as_of``; raise ``gates.ValidationError`` on a critical failure.

    Returns the report paths and counts. The report lives in ``runs/validate__<as_of>/validation/``, shared by
    every job of that date.
    """
    from pipelines.data.gate_reports import write_report
    from pipelines.data.gates import require_valid, validate_lake

    say = say_to(progress)
    as_of = resolve_as_of(settings, as_of)
    report_dir = run_dir(settings.runs_dir, make_run_id("validate", as_of)) / "validation"
    result = validate_lake(settings.lake_dir, as_of, settings.expectations_dir, progress=say)
    json_path, md_path = write_report(result, report_dir)
    say(result.summary())
    require_valid(result)
    return {
        "as_of": as_of.isoformat(),
        "report": str(md_path),
        "report_json": str(json_path),
        "critical_failures": len(result.critical_failures),
        "warnings": len(result.warnings),
    }


def build_wide_table(settings: Settings, as_of: Any, out: Path, progress: Progress = None) -> Path:
    """Build the customer wide table at ``as_of`` (the one feature definition), gate it with the
    ``customer_features`` suite and write it to ``out``, with the features left out for want of an input table
    beside it (``pipelines.features.wide_table.write_wide_table``). The customers' audience attributes (home
    region and city, ``pipelines.features.attributes``; never model inputs) are appended after the gate."""
    from pipelines.data.gates import require_valid
    from pipelines.features.attributes import add_attributes, attribute_notes, read_attributes
    from pipelines.features.gate import validate_features
    from pipelines.features.wide_table import build_features, load_tables, write_wide_table

    say = say_to(progress)
    as_of = resolve_as_of(settings, as_of)
    tables = load_tables(settings.lake_dir, as_of, progress=say)
    wide = build_features(tables, as_of)
    gate = validate_features(wide, tables["customers"], as_of, settings.expectations_dir)
    say(f"wide table at {as_of}: {len(wide):,} customers x {wide.shape[1] - 1} features; {gate.summary()}")
    require_valid(gate)
    wide = add_attributes(wide, read_attributes(settings.lake_dir))
    for note in attribute_notes(wide):
        say(f"audience attribute {note}")
    return write_wide_table(
        wide, out
    )  # and <stem>.left_out.json: the features a source's tables could not give


def load_campaign(settings: Settings, name: str):
    """The spec ``name`` from the campaigns folder. Only this campaign's own file has to be valid: a broken spec
    of another campaign is not this run's problem. ``SpecError`` naming the known campaigns (and the files that
    could not be read) otherwise."""
    from pipelines.campaigns.spec import SpecError, load_spec
    from pipelines.campaigns.spec_header import read_each

    specs, problems = read_each(settings.campaigns_dir, load_spec)
    found = [s for s in specs if s.name == name]
    duplicate = [p for p in problems if f"duplicate campaign name {name!r}" in p]
    if found and not duplicate:
        return found[0]
    known = ", ".join(s.name for s in specs) or "none"
    message = f"no valid campaign named {name!r} in {settings.campaigns_dir}; known: {known}"
    if duplicate:
        message = duplicate[0]
    elif problems:
        message += "; files that could not be read:\n" + "\n".join(problems)
    raise SpecError(message)


def permanent_errors() -> tuple[type[BaseException], ...]:
    """Failures that a retry cannot fix (bad data, a bad spec, no model, an unfair split): the DAGs fail these
    at once instead of retrying."""
    from pipelines.campaigns.score import SampleRatioMismatch, ScoringError
    from pipelines.campaigns.spec import SpecError
    from pipelines.campaigns.store_frames import FrameValidationError
    from pipelines.data.gates import ValidationError
    from pipelines.data.suites import SuiteError
    from pipelines.features.history import HistoryError
    from pipelines.features.labels import LabelError

    return (
        ValidationError,
        SuiteError,
        SpecError,
        LabelError,
        HistoryError,
        ScoringError,
        SampleRatioMismatch,
        FrameValidationError,
    )


def registered_summary(result: Any) -> dict:
    """What a training step returns (and writes) of a registration: version, decision, reasons, test metrics."""
    return {
        "model_name": result.model_name,
        "version": result.version,
        "promoted": result.promoted,
        "champion_version": result.champion_version,
        "mlflow_run_id": result.run_id,
        "reasons": list(result.reasons),
        "metrics": {k: float(v) for k, v in result.metrics.items()},
    }
