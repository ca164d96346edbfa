"""The staff app's monitoring page (docs/monitoring.md): per model, the stability of its scoring runs (score PSI and
the worst top-feature PSI against the warn and alert thresholds) and, once labels matured, the realised AUC against
the model's test AUC; below, one row per run as ``pmp monitor`` prints it, with its worst level.

Every figure is read from the ``model_monitoring`` table through the app's one engine. The charts are inline SVG
drawn on the server (the app's Content-Security-Policy allows no script): this module computes their geometry and
``templates/web/monitoring.html.j2`` draws it.
"""

from __future__ import annotations

import math
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
from flask import Blueprint, render_template, request

from pipelines.campaigns.store_schema import MONITORING_LEVELS
from pipelines.web.app import requires, settings_of
from pipelines.web.pages import engine

blueprint = Blueprint("monitoring", __name__)

# The drawing box of every chart, in SVG user units (the SVG scales to the page's width).
WIDTH, HEIGHT = 640, 230
LEFT, RIGHT, TOP, BOTTOM = 52, 16, 26, 34
# Room inside the plot on both sides, so the first and last points (and their date labels) are not on the edges.
PAD = 36
MAX_DATE_TICKS = 6


def nice_ticks(low: float, high: float, count: int = 4) -> list[float]:
    """About ``count`` round values (steps of 1, 2, 2.5 or 5 times a power of ten) covering [low, high]."""
    if not high > low:
        return [low]
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9) * step
    ticks, value = [], first
    while value <= high + 1e-9:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _x_scale(days: list[date]):
    """Dates to x: linear in calendar days; a single date sits in the middle."""
    low, high = min(days), max(days)
    span = (high - low).days
    width = WIDTH - LEFT - RIGHT - 2 * PAD
    if span == 0:
        return lambda d: LEFT + PAD + width / 2
    return lambda d: LEFT + PAD + width * (d - low).days / span


def _y_scale(low: float, high: float):
    height = HEIGHT - TOP - BOTTOM
    return lambda v: TOP + height * (1 - (v - low) / (high - low))


def _date_ticks(days: list[date], x) -> list[dict[str, Any]]:
    distinct = sorted(set(days))
    if len(distinct) > MAX_DATE_TICKS:
        picks = np.linspace(0, len(distinct) - 1, MAX_DATE_TICKS).round().astype(int)
        distinct = [distinct[i] for i in sorted(set(picks))]
    return [{"x": round(x(d), 1), "label": d.isoformat()} for d in distinct]


def line_chart(
    runs: pd.DataFrame,
    series: list[dict[str, Any]],
    rules: list[dict[str, Any]],
    y_range: tuple[float, float],
    digits: int = 3,
) -> dict[str, Any]:
    """The geometry of one line chart over the runs' ``as_of``: each series (``column``, ``name``, ``css``, and an
    optional ``note`` column shown in a point's tooltip) becomes a path and one point per run with a value (a run
    without one breaks the line); each rule (``value``, ``name``, ``css``) a horizontal dashed line; a change of
    model version a dotted vertical line. ``runs`` are oldest first."""
    days = list(runs["as_of"])
    x = _x_scale(days)
    low, high = y_range
    y = _y_scale(low, high)
    drawn = []
    for spec in series:
        points, path, pen_down = [], [], False
        for row in runs.to_dict("records"):
            value = row[spec["column"]]
            if value is None or pd.isna(value):
                pen_down = False
                continue
            px, py = round(x(row["as_of"]), 1), round(y(min(max(value, low), high)), 1)
            path.append(f"{'L' if pen_down else 'M'}{px},{py}")
            pen_down = True
            note = f" ({row[spec['note']]})" if spec.get("note") and row[spec["note"]] else ""
            points.append(
                {
                    "x": px,
                    "y": py,
                    "run_id": row["run_id"],
                    "title": f"{row['as_of']:%Y-%m-%d} · {spec['name']}{note} {value:.{digits}f} · {row['run_id']}",
                }
            )
        drawn.append({"name": spec["name"], "css": spec["css"], "path": " ".join(path), "points": points})
    versions = []
    previous = None
    for row in runs.to_dict("records"):
        if previous is not None and row["model_version"] != previous:
            versions.append({"x": round(x(row["as_of"]), 1), "label": f"v{row['model_version']}"})
        previous = row["model_version"]
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "left": LEFT,
        "right": WIDTH - RIGHT,
        "top": TOP,
        "bottom": HEIGHT - BOTTOM,
        "series": drawn,
        "rules": [
            {**rule, "y": round(y(rule["value"]), 1)} for rule in rules if low <= rule["value"] <= high
        ],
        "y_ticks": [{"y": round(y(v), 1), "label": f"{v:g}"} for v in nice_ticks(low, high)],
        "x_ticks": _date_ticks(days, x),
        "versions": versions,
    }


def psi_chart(runs: pd.DataFrame, warn: float, alert: float) -> dict[str, Any]:
    """Score PSI and worst-feature PSI per run, with the warn and alert thresholds."""
    values = pd.concat([runs["psi_score"], runs["psi_feature"]]).dropna()
    top = max(alert * 1.2, float(values.max()) * 1.1 if len(values) else 0.0)
    return line_chart(
        runs,
        [
            {"column": "psi_score", "name": "score PSI", "css": "psi-score"},
            {
                "column": "psi_feature",
                "name": "worst feature PSI",
                "css": "psi-feature",
                "note": "worst_feature",
            },
        ],
        [
            {"value": warn, "name": f"warn {warn:g}", "css": "warn"},
            {"value": alert, "name": f"alert {alert:g}", "css": "alert"},
        ],
        (0.0, top),
    )


def auc_chart(runs: pd.DataFrame) -> dict[str, Any] | None:
    """Realised AUC against the model's test AUC, over the runs whose labels matured; None when there are none."""
    measured = runs.loc[runs["realised_auc"].notna()]
    if measured.empty:
        return None
    values = pd.concat([measured["realised_auc"], measured["test_auc"]]).dropna()
    low = max(0.0, math.floor((float(values.min()) - 0.02) * 50) / 50)
    high = min(1.0, math.ceil((float(values.max()) + 0.02) * 50) / 50)
    return line_chart(
        measured,
        [
            {"column": "realised_auc", "name": "realised AUC", "css": "auc-realised"},
            {"column": "test_auc", "name": "test AUC", "css": "auc-test"},
        ],
        [],
        (low, high),
    )


def _figure(value: Any, digits: int = 3) -> str:
    return "–" if value is None or pd.isna(value) else f"{value:.{digits}f}"


def table_rows(runs: pd.DataFrame) -> list[dict[str, Any]]:
    """The per-run table, newest first, with its figures as text and ``worst`` set on the rows at the worst level
    present (when that level is warn or alert)."""
    if runs.empty:
        return []
    worst = max(runs["level"], key=MONITORING_LEVELS.index)
    rows = []
    for row in runs.iloc[::-1].to_dict("records"):
        auc = "–"
        if not pd.isna(row["realised_auc"]):
            auc = f"{_figure(row['realised_auc'])} / {_figure(row['test_auc'])}"
        rows.append(
            {
                "as_of": f"{row['as_of']:%Y-%m-%d}",
                "run_id": row["run_id"],
                "model": row["model"],
                "psi_score": _figure(row["psi_score"]),
                "worst_feature": row["worst_feature"],
                "psi_feature": _figure(row["psi_feature"]),
                "auc": auc,
                "level": row["level"],
                "worst": worst != "ok" and row["level"] == worst,
            }
        )
    return rows


@blueprint.route("/monitoring")
@requires("viewer")
def monitoring():
    from pipelines.monitoring.store import read_monitoring, summarise_runs

    settings = settings_of()
    chosen = request.args.get("model") or None
    rows = read_monitoring(engine())
    models = sorted(rows["model_name"].unique()) if len(rows) else []
    if chosen is not None:
        rows = rows.loc[rows["model_name"] == chosen]
    runs = summarise_runs(rows)
    sections = []
    for name in sorted(runs["model_name"].unique()) if len(runs) else []:
        own = runs.loc[runs["model_name"] == name]
        sections.append(
            {
                "name": name,
                "runs": len(own),
                "psi": psi_chart(own, settings.psi_warn, settings.psi_alert),
                "auc": auc_chart(own),
            }
        )
    return render_template(
        "web/monitoring.html.j2",
        models=models,
        chosen=chosen,
        sections=sections,
        rows=table_rows(runs),
        settings=settings,
    )
