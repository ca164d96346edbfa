"""What a campaign spec would pick, before it is saved: on the latest scored base, the audience size, the
exclusions by reason, the holdout split and the smallest lift the readout could detect.

The base is the newest succeeded campaign run scored by the spec's model whose folder still holds its features,
scores and segments; the preview applies exactly what ``campaign_select`` applies through the same function
(:func:`pipelines.jobs.audience.choose_audience`), at that run's date. It only reads: no folder, no database
row, no MLflow run."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Engine

from pipelines.config import Settings
from pipelines.data import storage
from pipelines.jobs.audience import BASE_FILES, choose_audience, holdout_count, read_scored
from pipelines.progress import Progress, say_to
from pipelines.runs import run_dir

DEFAULT_ALPHA, DEFAULT_POWER = 0.05, 0.8


def _engine_if_any(settings: Settings) -> Engine | None:
    """The campaign database's engine, or None when it has no runs table (for SQLite: no file; nothing is made)."""
    from sqlalchemy import inspect, make_url

    from pipelines.campaigns.store_schema import campaign_runs, make_engine

    url = make_url(settings.database_url)
    database = url.database or ""
    on_disk = (
        url.get_backend_name() == "sqlite" and database != ":memory:" and not database.startswith("file:")
    )
    if on_disk and not Path(database).expanduser().is_file():
        return None
    engine = make_engine(settings.database_url)
    return engine if inspect(engine).has_table(campaign_runs.name) else None


def _no_base(model: str, reason: str = "") -> LookupError:
    how = " scored by the uplift champion" if model == "uplift" else ""
    return LookupError(
        f"no scored base for model {model} yet: the preview needs a run of a campaign with model {model}{how} "
        f"(run one, or `make run`){reason}"
    )


def find_base(settings: Settings, engine: Engine | None, model: str) -> pd.Series:
    """The newest succeeded run scored by ``model`` whose folder still holds features, scores and segments (a
    ``campaign_runs`` row); one-line LookupError when there is none."""
    from pipelines.campaigns import store

    if engine is None:
        raise _no_base(model)
    runs = store.list_runs(engine)
    runs = runs.loc[(runs["status"] == "succeeded") & (runs["model_name"] == model)]
    for _, row in runs.iterrows():
        folder = run_dir(settings.runs_dir, row["run_id"])
        if all((folder / name).is_file() for name in BASE_FILES):
            return row
    gone = (
        f"; the folders of its {len(runs):,} run(s) under {settings.runs_dir} are gone" if len(runs) else ""
    )
    raise _no_base(model, gone)


def _baseline(spec, engine: Engine) -> tuple[float, str]:
    """The control response rate the detectable lift is computed at, and where it comes from: the spec's power
    block, else the newest readout of this campaign, else the spec's ``response_rate_floor``."""
    from pipelines.campaigns import store

    if spec.power is not None:
        rate = float(spec.power.baseline_rate)
        return rate, f"baseline {100 * rate:.1f} % from the spec's power block"
    if _has_table(engine, "campaign_results"):
        results = store.read_results(engine).set_index("campaign_id")
        for run_id in store.list_runs(engine, spec.name)["run_id"]:  # newest first
            if run_id in results.index:
                row = results.loc[run_id]
                rate = float(row["control_rate"])
                if int(row["control_n"]) > 0 and not math.isnan(rate):
                    return rate, f"baseline {100 * rate:.1f} % from the readout of {run_id}"
    rate = float(spec.response_rate_floor)
    return (
        rate,
        f"baseline {100 * rate:.1f} % from the spec's response_rate_floor (no readout of {spec.name} yet)",
    )


def _has_table(engine: Engine, name: str) -> bool:
    from sqlalchemy import inspect

    return inspect(engine).has_table(name)


def _mde_text(mde: float | None, n_treatment: int, n_holdout: int) -> str:
    if n_treatment < 1 or n_holdout < 1:
        return "no lift can be measured: the treatment or the holdout group is empty"
    if mde is None:
        return "no lift is detectable at this size (not even up to a 100 % response rate)"
    return f"{100 * mde:.1f} percentage points"


def preview_campaign(settings: Settings, spec, progress: Progress = None) -> dict[str, Any]:
    """What ``spec`` (a ``CampaignSpec``, saved or not) would pick on the latest scored base, as a JSON-friendly
    dict: the base (``base_run_id``, ``base_campaign``, ``as_of``, ``model``), the counts (``n_scored`` =
    ``n_excluded`` + ``n_eligible``; ``n_selected`` <= ``n_eligible``), ``excluded_by_reason`` (largest first),
    the holdout plan (``holdout_fraction``, ``holdout_note``, ``n_treatment``, ``n_holdout`` as the run's
    per-decile assignment counts them) and the minimum detectable lift (``mde``: absolute, a fraction, None
    when nothing is detectable; ``mde_text``) at ``baseline_rate`` (``baseline_source`` says where it comes
    from). Writes nothing. One-line LookupError when no run has scored a base with the spec's model yet."""
    from pipelines.campaigns.power import minimum_detectable_lift

    started = time.perf_counter()
    say = say_to(progress)
    engine = _engine_if_any(settings)
    base = find_base(settings, engine, spec.model)
    folder = run_dir(settings.runs_dir, base["run_id"])
    as_of = pd.Timestamp(base["logical_date"]).date()
    say(f"previewing {spec.name} on {base['run_id']} (scored {as_of} by {base['model_name']})")
    pinned = storage.read_json(folder / "model.json") if (folder / "model.json").is_file() else {}
    by_uplift = pinned.get("selected_by", base["model_name"]) == "uplift"

    scored = read_scored(folder, columns=[rule.column for rule in spec.audience])
    chosen = choose_audience(settings, spec, scored, as_of, engine, by_uplift=by_uplift, say=say)
    n_selected = len(chosen.selected)

    fraction, note = spec.holdout_for(n_selected)
    n_holdout = holdout_count(chosen.selected["decile"].to_numpy(), fraction) if n_selected else 0
    n_treatment = n_selected - n_holdout
    alpha = spec.power.alpha if spec.power is not None else DEFAULT_ALPHA
    power = spec.power.power if spec.power is not None else DEFAULT_POWER
    baseline, source = _baseline(spec, engine)
    mde = None
    if n_treatment >= 1 and n_holdout >= 1:
        lift = minimum_detectable_lift(n_treatment, n_holdout, baseline, alpha, power)
        mde = None if math.isinf(lift) else float(lift)
    text = _mde_text(mde, n_treatment, n_holdout)
    say(f"holdout plan: {note}")
    say(f"minimum detectable lift: {text}; {source}")
    return {
        "campaign": spec.name,
        "base_run_id": str(base["run_id"]),
        "base_campaign": str(base["campaign"]),
        "as_of": as_of.isoformat(),
        "model": {"name": str(base["model_name"]), "version": _text_or_none(base["model_version"])},
        "n_scored": chosen.scored_n,
        "excluded_by_reason": chosen.excluded_by_reason,
        "n_excluded": len(chosen.exclusions),
        "n_eligible": len(chosen.eligible),
        "n_not_positive": chosen.not_positive,
        "n_selected": n_selected,
        "holdout_fraction": float(fraction),
        "holdout_note": note,
        "n_treatment": n_treatment,
        "n_holdout": n_holdout,
        "baseline_rate": baseline,
        "baseline_source": source,
        "alpha": float(alpha),
        "power": float(power),
        "mde": mde,
        "mde_text": text,
        "seconds": round(time.perf_counter() - started, 3),
    }


def _text_or_none(value: Any) -> str | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
