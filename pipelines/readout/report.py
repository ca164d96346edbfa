"""The readout's chart and its one-page report (Markdown and standalone HTML).

- :func:`lift_by_decile_chart` draws the lift by score decile (or any segment column) with its intervals.
- :func:`render_report` formats a :class:`~pipelines.readout.stats.Readout` (with the funnel, the channel quality,
  the alert …) into the templates ``templates/readout.md.j2`` and ``templates/readout.html.j2``: this module
  decides what each number reads like, the templates decide the wording and the layout. It is
  :func:`report_context` (every number as text, in plain dicts and lists that JSON keeps) then
  :func:`render_context`.
- The readout job stores that context beside the report (``report_context.json``); the staff app reads it back
  with :func:`load_report_context` and shows :func:`render_body` (``templates/readout_body.html.j2``, the same
  content as the standalone page, style in ``templates/readout_style.css.j2``) inside its own layout.
"""

from __future__ import annotations

import json
import math
import mimetypes
from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from pipelines.readout.funnel import UTM_COLUMNS
from pipelines.readout.stats import (
    MIN_GROUP_N,
    MIN_RESPONSES,
    SEGMENT_COLUMNS,
    Readout,
    require_columns,
    return_on_spend,
)
from pipelines.templating import data_uri, render

# What a segment too small to read shows instead of a lift (see pipelines.readout.stats.MIN_GROUP_N).
TOO_FEW = "too few to read"

# The report's context as JSON, beside report.html; its version changes when the templates need other keys, so an
# older file is not rendered with templates that no longer fit it (the app links its report.html instead).
CONTEXT_FILE = "report_context.json"
CONTEXT_VERSION = 1

# --------------------------------------------------------------------------------------------------------------
# Chart


def lift_by_decile_chart(
    table: pd.DataFrame,
    path: str | Path,
    *,
    by: str = "decile",
    title: str | None = None,
    level: float = 0.95,
) -> Path:
    """Write :func:`lift_by_decile_figure` as a PNG at ``path`` and return the path."""
    from pipelines.models.evaluate import _pyplot

    fig = lift_by_decile_figure(table, by=by, title=title, level=level)
    try:
        path = Path(path)
        fig.savefig(path)
    finally:
        _pyplot().close(fig)
    return path


def lift_by_decile_figure(
    table: pd.DataFrame, *, by: str = "decile", title: str | None = None, level: float = 0.95
):
    """A figure of the absolute lift (percentage points) per segment with its interval as error bars and a zero
    line, from the rows of a :attr:`Readout.segments` table whose ``by`` is ``by`` (score decile by default; any
    segment column works). Bars are coloured by whether the interval lies above zero, spans it, or lies below;
    a segment too small to read gets no bar, only a "too few" mark. ``level`` only labels the interval (the
    table's own level). The layout is constrained and the title wrapped until it fits inside the figure. The
    caller closes the figure. ValueError when no row has that ``by``.
    """
    from matplotlib.patches import Patch

    from pipelines.models.evaluate import _pyplot

    require_columns(table, SEGMENT_COLUMNS)
    rows = table[table["by"] == by]
    if rows.empty:
        known = ", ".join(map(str, dict.fromkeys(table["by"]))) or "none"
        raise ValueError(f"no rows with by == {by!r} in the segment table (by values: {known})")
    if by == "decile":
        rows = rows.sort_values("segment", kind="stable")
    plt = _pyplot()
    unread = rows["too_few"].astype(bool).to_numpy()
    lift_pts = np.where(unread, 0.0, rows["lift_abs"].to_numpy(dtype=float) * 100)
    low = np.where(unread, 0.0, rows["lift_ci_low"].to_numpy(dtype=float) * 100)
    high = np.where(unread, 0.0, rows["lift_ci_high"].to_numpy(dtype=float) * 100)
    labels = [str(s) for s in rows["segment"]]
    kinds = np.where(unread, "few", np.where(low > 0, "above", np.where(high < 0, "below", "spans")))
    palette = {"above": "#2e7d32", "spans": "#90a4ae", "below": "#c62828"}
    names = {"above": "interval above 0", "spans": "interval spans 0", "below": "interval below 0"}
    x = np.arange(len(rows))
    read = ~unread
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(rows) + 2), 4), dpi=100, layout="constrained")
    ax.bar(x[read], lift_pts[read], color=[palette[k] for k in kinds[read]], width=0.7)
    ax.errorbar(
        x[read],
        lift_pts[read],
        yerr=[lift_pts[read] - low[read], high[read] - lift_pts[read]],
        fmt="none",
        ecolor="black",
        capsize=3,
    )
    for i in x[unread]:
        ax.annotate("too few", (i, 0), ha="center", va="bottom", fontsize=7, color="#555", rotation=90)
    ax.axhline(0, color="black", linewidth=0.8)
    rotate = len(rows) > 12 or max(map(len, labels)) > 6
    ax.set_xticks(x, labels, rotation=30 if rotate else 0, ha="right" if rotate else "center")
    ax.set_xlabel("score decile (1 = highest scores)" if by == "decile" else by)
    ax.set_ylabel("lift, percentage points")
    handles = [Patch(color=palette[k], label=names[k]) for k in palette if k in set(kinds)]
    if handles:
        ax.legend(handles=handles, fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    _fit_title(
        fig,
        ax,
        title or f"Absolute lift by {'score decile' if by == 'decile' else by} ({level:.0%} interval)",
    )
    return fig


def _fit_title(fig, ax, text: str) -> None:
    """Set ``text`` as the axes title, wrapped onto more lines until it lies inside the figure's width: a title
    centred over the axes that is wider than the figure is cut on both sides (a long campaign id did that)."""
    import textwrap

    handle = ax.set_title(text)
    width = len(text)
    while width > 10:
        fig.canvas.draw()
        box, frame = handle.get_window_extent(), fig.bbox
        if box.x0 >= frame.x0 and box.x1 <= frame.x1:
            return
        width = min(width - 1, int(width * frame.width / box.width * 0.95))
        handle.set_text(textwrap.fill(text, max(width, 10), break_long_words=True))
    fig.canvas.draw()


# --------------------------------------------------------------------------------------------------------------
# Report: every number as text, then the two templates


@dataclass(frozen=True)
class _Table:
    """A table of the report: the header cells, the rows of cell text, and which columns hold numbers."""

    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    numeric: tuple[bool, ...]


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA or v is pd.NaT


def _rate_text(v: Any) -> str:
    return "–" if _missing(v) else f"{v:.2%}"


def _pts(v: Any) -> str:
    return "–" if _missing(v) else f"{100 * v:+.2f}"


def _int_text(v: Any) -> str:
    return "–" if _missing(v) else f"{int(v):,}"


def _p_text(p: Any) -> str:
    """A p-value for a table cell: ``< 0.0001`` below that, else 3 decimals (4 below 0.001)."""
    if _missing(p):
        return "–"
    return "< 0.0001" if p < 1e-4 else f"{p:.4f}" if p < 1e-3 else f"{p:.3f}"


def _p_phrase(p: float) -> str:
    """A p-value in a sentence: ``p < 0.0001`` or ``p = 0.034``, never ``p = < 0.0001``."""
    text = _p_text(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def _fact_text(v: Any) -> str:
    if _missing(v):
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:,.6g}"
    if isinstance(v, int | np.integer):
        return f"{int(v):,}"
    if isinstance(v, Mapping):
        return ", ".join(f"{k}: {_fact_text(x)}" for k, x in v.items())
    if isinstance(v, list | tuple):
        return ", ".join(map(_fact_text, v))
    return str(v)


def _group_name(label: str, word: str) -> str:
    return word if label in ("treated", "treatment", "control", "holdout") else f"{word} ({label})"


def _headline(result: Readout, facts: Mapping[str, Any], level: str) -> dict[str, Any]:
    o = result.overall
    treated = _group_name(result.treated_label, "treated")
    control = _group_name(result.control_label, "holdout")
    counts = _Table(
        headers=("", treated, control),
        rows=(
            ("customers", f"{o.treated_n:,}", f"{o.control_n:,}"),
            ("responses", f"{o.treated_conv:,}", f"{o.control_conv:,}"),
            ("response rate", _rate_text(o.treated_rate), _rate_text(o.control_rate)),
        ),
        numeric=(False, True, True),
    )
    spend = None
    cost, value = facts.get("cost_per_contact"), facts.get("value_per_response")
    if all(isinstance(v, Real) and not isinstance(v, bool) for v in (cost, value)):
        ros = return_on_spend(o, float(cost), float(value))
        spend = {
            "value": f"{ros.incremental_value:,.2f}",
            "value_low": f"{ros.incremental_value_ci_low:,.2f}",
            "value_high": f"{ros.incremental_value_ci_high:,.2f}",
            "cost": f"{ros.cost:,.2f}",
            "net": f"{ros.net:,.2f}",
            "roi": "n/a (no cost)" if ros.roi is None else f"{ros.roi:+.1%}",
        }
    return {
        "counts": counts,
        "lift": _pts(o.lift_abs),
        "lift_low": _pts(o.lift_ci_low),
        "lift_high": _pts(o.lift_ci_high),
        "p_value": _p_phrase(o.p_value),
        "test": "Fisher's exact test" if o.test == "fisher" else "pooled z-test",
        "verdict": f"significant at {o.alpha:g}" if o.significant else f"not significant at {o.alpha:g}",
        "relative": (
            "n/a (holdout rate 0)"
            if o.lift_rel is None
            else f"{o.lift_rel:+.1%} ({level} CI {o.lift_rel_ci_low:+.1%} to {o.lift_rel_ci_high:+.1%})"
        ),
        "incremental": f"{o.incremental_responses:,.1f}",
        "incremental_low": f"{o.incremental_ci_low:,.1f}",
        "incremental_high": f"{o.incremental_ci_high:,.1f}",
        "spend": spend,
    }


def _segment_table(rows: pd.DataFrame, level: str) -> _Table:
    return _Table(
        headers=(
            "segment",
            "treated n",
            "treated rate",
            "holdout n",
            "holdout rate",
            "lift (points)",
            f"{level} CI",
            "p-value",
            "incremental",
        ),
        rows=tuple(
            (
                str(r.segment),
                _int_text(r.treated_n),
                _rate_text(r.treated_rate),
                _int_text(r.control_n),
                _rate_text(r.control_rate),
                *(
                    (TOO_FEW, "–", "–", "–")
                    if r.too_few
                    else (
                        _pts(r.lift_abs),
                        f"{_pts(r.lift_ci_low)} to {_pts(r.lift_ci_high)}",
                        _p_text(r.p_value),
                        f"{r.incremental_responses:,.1f}",
                    )
                ),
            )
            for r in rows.itertuples(index=False)
        ),
        numeric=(False, *[True] * 8),
    )


def _funnel_tables(stages: pd.DataFrame) -> list[dict[str, Any]]:
    """One table per group: the nested count and its two rates, then the customers off the path."""
    tables = []
    for g, rows in stages.groupby(stages["group"].astype(str), sort=False):
        tables.append(
            {
                "group": g,
                "off_path": bool((rows["off_path"] > 0).any()),
                "table": _Table(
                    headers=(
                        "stage",
                        "customers",
                        "of stage before",
                        "of sent",
                        "off path",
                        "any route, of selected",
                    ),
                    rows=tuple(
                        (
                            str(r.stage),
                            _int_text(r.customers),
                            _rate_text(r.stage_rate),
                            _rate_text(r.rate_from_sent),
                            _int_text(r.off_path),
                            _rate_text(r.rate_from_selected),
                        )
                        for r in rows.itertuples(index=False)
                    ),
                    numeric=(False, *[True] * 5),
                ),
            }
        )
    return tables


def _channel_table(channels: pd.DataFrame, limit: int) -> _Table:
    utm = [c for c in UTM_COLUMNS if c in channels.columns]
    measures = ("visits", "registrations", "conversions")
    rates = ("registration_rate", "conversion_rate")
    rows = tuple(
        (
            *(str(getattr(r, c)) for c in utm),
            *(_int_text(getattr(r, m)) for m in measures),
            *("–" if _missing(getattr(r, m)) else f"{getattr(r, m):.1%}" for m in rates),
        )
        for r in channels.head(limit).itertuples(index=False)
    )
    headers = (*(c.removeprefix("utm_") for c in utm), *measures, "registration rate", "conversion rate")
    return _Table(headers=headers, rows=rows, numeric=(*[False] * len(utm), *[True] * 5))


def _chart_image(chart: str | Path) -> tuple[str, str]:
    """(link relative to the report, ``data:`` URI of the file): the Markdown links the PNG next to it, the HTML
    carries it inline so that it shows wherever the page is opened (MLflow's artifact viewer too)."""
    path = Path(chart)
    if not path.is_file():
        raise FileNotFoundError(f"chart {str(chart)!r} is not a file: pass the path of the PNG to embed it")
    link = path.name if path.is_absolute() else str(chart)
    mime = mimetypes.guess_type(path.name)[0] or "image/png"
    return quote(link), data_uri(path.read_bytes(), mime)


def render_report(
    result: Readout,
    *,
    title: str,
    facts: Mapping[str, Any] | None = None,
    funnel: pd.DataFrame | None = None,
    channels: pd.DataFrame | None = None,
    alert: str | None = None,
    power_note: str | None = None,
    true_lift: float | None = None,
    chart: str | Path | None = None,
    channel_rows: int = 15,
) -> tuple[str, str]:
    """A one-page readout report: ``(markdown, html)``, the same content twice; the HTML is standalone (inline
    style and chart, no scripts, no external reference).

    Sections: the ``facts`` (campaign id, window, model …, shown as given), a banner when the SRM check failed,
    the headline (both rates, absolute and relative lift with their intervals, p-value, incremental responses,
    and the return on spend when ``facts`` holds numeric ``cost_per_contact`` and ``value_per_response``), trust
    (SRM verdict, ``power_note``, ``true_lift`` and whether the interval covers it), the ``alert`` with its
    diagnosis, the lift by score decile (``chart``: the path of the PNG, which must exist; the HTML embeds it, the
    Markdown links it by its name when the path is absolute, as given when relative; then the table) and by every
    other segment column, the ``funnel`` (as returned by :func:`pipelines.readout.funnel.funnel`) and the UTM
    ``channels`` (:func:`pipelines.readout.funnel.channel_quality`, the first ``channel_rows`` rows). Omitted
    inputs leave their section out. All text is escaped for Markdown and for HTML (templates ``readout.md.j2``,
    ``readout.html.j2``). Raises FileNotFoundError when ``chart`` is not a file.
    """
    context = report_context(
        result,
        title=title,
        facts=facts,
        funnel=funnel,
        channels=channels,
        alert=alert,
        power_note=power_note,
        true_lift=true_lift,
        chart=chart,
        channel_rows=channel_rows,
    )
    return render_context(context)


def report_context(
    result: Readout,
    *,
    title: str,
    facts: Mapping[str, Any] | None = None,
    funnel: pd.DataFrame | None = None,
    channels: pd.DataFrame | None = None,
    alert: str | None = None,
    power_note: str | None = None,
    true_lift: float | None = None,
    chart: str | Path | None = None,
    channel_rows: int = 15,
) -> dict[str, Any]:
    """The context of the readout templates for :func:`render_report`'s arguments: every number already text, in
    plain dicts, lists, str, bool and None only (a table is ``{"headers", "rows", "numeric"}``), so it survives
    ``json.dumps``/``json.loads`` unchanged and renders the same page afterwards. It holds aggregates only (the
    facts as given, segment, funnel and channel counts), never a customer; the chart is its ``data:`` URI.
    Raises FileNotFoundError when ``chart`` is not a file.
    """
    facts = dict(facts or {})
    o = result.overall
    level = f"{1 - o.alpha:.0%}"

    truth = None
    if true_lift is not None:
        truth = {
            "lift": _pts(true_lift),
            "interval": f"[{_pts(o.lift_ci_low)}, {_pts(o.lift_ci_high)}]",
            "covered": bool(o.lift_ci_low <= true_lift <= o.lift_ci_high),
            "off": f"{100 * (o.lift_abs - true_lift):+.2f}",
        }
    lines = [line for line in (alert or "").splitlines() if line.strip()]

    segments = result.segments
    by_values = list(dict.fromkeys(segments["by"]))
    # The chart goes with the decile table, else with the first segment table, else on its own.
    chart_by = "decile" if "decile" in by_values else (by_values[0] if by_values else None)
    image = None
    if chart is not None:
        link, inline = _chart_image(chart)
        image = {
            "link": link,
            "inline": inline,
            "alt": f"absolute lift by {chart_by or 'segment'} with {level} intervals",
            "alone": chart_by is None,
        }
    sections = []
    for by in by_values:
        rows = segments[segments["by"] == by]
        if by == "decile":
            rows = rows.sort_values("segment", kind="stable")
        sections.append(
            {
                "name": "score decile (1 = highest scores)" if by == "decile" else str(by),
                "chart": image is not None and by == chart_by,
                "table": _segment_table(rows, level),
            }
        )
    context = {
        "context_version": CONTEXT_VERSION,
        "title": title,
        "facts": _Table(
            headers=("fact", "value"),
            rows=tuple((str(k), _fact_text(v)) for k, v in facts.items()),
            numeric=(False, False),
        )
        if facts
        else None,
        "trustworthy": result.trustworthy,
        "level": level,
        "headline": _headline(result, facts, level),
        "srm": result.srm_verdict(),
        "power_note": power_note or None,
        "truth": truth,
        "alert": {"headline": lines[0], "details": lines[1:]} if lines else None,
        "chart": image,
        "sections": sections,
        "small_cells": (
            f"{TOO_FEW.capitalize()}: fewer than {MIN_GROUP_N} customers in a group or fewer than {MIN_RESPONSES} "
            "responders in both groups together; one customer more or less would swing such a lift by many points, "
            "so it shows no lift, interval or p-value."
        )
        if segments["too_few"].astype(bool).any()
        else None,
        "funnel": None if funnel is None else {"tables": _funnel_tables(funnel) if len(funnel) else []},
        "channels": None
        if channels is None
        else {
            "table": _channel_table(channels, channel_rows) if len(channels) else None,
            "hidden": f"{len(channels) - channel_rows:,}" if len(channels) > channel_rows else None,
        },
    }
    return _plain(context)


def _plain(value: Any, where: str = "context") -> Any:
    """``value`` as JSON's own types: a table to a dict of lists, tuples to lists, numpy scalars to Python ones;
    TypeError naming the key for anything else, so nothing reaches the JSON file as a silent ``str()``."""
    if isinstance(value, _Table):
        value = {"headers": value.headers, "rows": value.rows, "numeric": value.numeric}
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise TypeError(
        f"report context {where} is a {type(value).__name__}, not JSON text, number, list or dict"
    )


def render_context(context: Mapping[str, Any]) -> tuple[str, str]:
    """``(markdown, html)`` of a :func:`report_context` (fresh, or read back by :func:`load_report_context`): the
    templates ``readout.md.j2`` and ``readout.html.j2`` (the standalone page: ``readout_style.css.j2`` and
    ``readout_body.html.j2`` inside ``<html>``)."""
    return render("readout.md.j2", **context), render("readout.html.j2", **context)


def render_body(context: Mapping[str, Any]) -> str:
    """Only the report's content, ``readout_body.html.j2`` (autoescaped; no ``<html>``, ``<head>`` or ``<style>``),
    for a page with its own layout: the staff app shows it with ``readout_style.css.j2`` in its ``<style>``. All
    of it sits inside ``<div class="readout">``, the scope of every style rule."""
    return render("readout_body.html.j2", **context)


def load_report_context(folder: Path) -> dict[str, Any] | None:
    """The report context that the readout job stored in ``folder`` (``runs/readout__<campaign_id>/``), or None
    when there is none: a readout written before the context was stored, or by another :data:`CONTEXT_VERSION`
    (show its ``report.html`` instead). ValueError naming the file when it is not a context."""
    path = Path(folder) / CONTEXT_FILE
    if not path.is_file():
        return None
    try:
        context = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a JSON report context: {exc}") from exc
    if not isinstance(context, dict) or not {"title", "headline", "sections"} <= context.keys():
        raise ValueError(f"{path} is not a report context: no title, headline or sections")
    return context if context.get("context_version") == CONTEXT_VERSION else None
