"""The ``model_monitoring`` table of the campaign database: what the monitor measured for each scoring run.

One row per (run, kind, metric, subject): ``kind`` is ``stability`` (the run's score and top features against
the model's reference, written when the run is written) or ``realised`` (the run's performance once its labels
matured). Writing a kind for a run replaces that kind's rows in one transaction, so a rerun never duplicates.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, delete, insert, select

from pipelines.campaigns.store_frames import fail
from pipelines.campaigns.store_schema import (
    MONITORING_KINDS,
    MONITORING_LEVELS,
    begin_write,
    database_errors,
    ensure_schema,
    model_monitoring,
)

COLUMNS = tuple(c.name for c in model_monitoring.columns)
# What the caller gives per row; the run's identity (run_id, kind, campaign, model, as_of) is given once.
ROW_COLUMNS = ("metric", "subject", "value", "reference", "level")


def _number(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


@database_errors
def write_monitoring(
    engine: Engine,
    *,
    run_id: str,
    kind: str,
    campaign: str,
    model_name: str,
    model_version: str,
    as_of: date,
    rows: pd.DataFrame,
) -> int:
    """Replace the ``kind`` rows of ``run_id`` with ``rows`` (columns :data:`ROW_COLUMNS`); returns the count."""
    if kind not in MONITORING_KINDS:
        raise fail("model_monitoring", "kind", f"{kind!r} is not one of {MONITORING_KINDS}")
    missing = [c for c in ROW_COLUMNS if c not in rows.columns]
    if missing:
        raise fail("model_monitoring", missing[0], f"the rows lack {missing}")
    bad = sorted(set(rows["level"]) - set(MONITORING_LEVELS))
    if bad:
        raise fail("model_monitoring", "level", f"{bad} not in {MONITORING_LEVELS}")
    now = datetime.now(UTC)
    records = [
        {
            "run_id": run_id,
            "kind": kind,
            "metric": str(r.metric),
            "subject": str(r.subject),
            "campaign": campaign,
            "model_name": model_name,
            "model_version": str(model_version),
            "as_of": pd.Timestamp(as_of).date(),
            "value": _number(r.value),
            "reference": _number(r.reference),
            "level": str(r.level),
            "computed_at": now,
        }
        for r in rows.itertuples(index=False)
    ]
    ensure_schema(engine)
    m = model_monitoring.c
    with begin_write(engine, f"pmp.model_monitoring:{run_id}") as conn:
        conn.execute(delete(model_monitoring).where((m.run_id == run_id) & (m.kind == kind)))
        if records:
            conn.execute(insert(model_monitoring), records)
    return len(records)


@database_errors
def read_monitoring(
    engine: Engine, model_name: str | None = None, kind: str | None = None, run_id: str | None = None
) -> pd.DataFrame:
    """Monitoring rows (:data:`COLUMNS`), oldest run first; filtered by model, kind and run when given. An empty
    frame when nothing was measured yet (or the table does not exist yet)."""
    from sqlalchemy import inspect

    with engine.connect() as conn:
        if not inspect(conn).has_table(model_monitoring.name):
            return pd.DataFrame(columns=list(COLUMNS))
        m = model_monitoring.c
        query = select(model_monitoring).order_by(m.as_of, m.run_id, m.kind, m.metric, m.subject)
        if model_name is not None:
            query = query.where(m.model_name == model_name)
        if kind is not None:
            query = query.where(m.kind == kind)
        if run_id is not None:
            query = query.where(m.run_id == run_id)
        rows = conn.execute(query).all()
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["as_of"] = pd.to_datetime(frame["as_of"])
    return frame


def summarise_runs(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per run from :func:`read_monitoring` rows, oldest first: ``as_of``, ``run_id``, ``model`` ("churn
    v3"), the score's PSI, the worst top feature and its PSI, the realised AUC with the model's test AUC, the worst
    level, and ``model_name``, ``model_version``, ``campaign`` (what ``pmp monitor`` and the staff app show)."""
    out = []
    for run_id, part in rows.groupby("run_id", sort=False):
        psi = part.loc[part["metric"] == "psi"]
        score = psi.loc[psi["subject"] == "score", "value"]
        features = psi.loc[psi["subject"] != "score"].sort_values("value", ascending=False)
        auc = part.loc[(part["kind"] == "realised") & (part["metric"] == "auc")]
        first = part.iloc[0]
        out.append(
            {
                "as_of": pd.Timestamp(first["as_of"]).date(),
                "run_id": run_id,
                "model": f"{first['model_name']} v{first['model_version']}",
                "psi_score": float(score.iloc[0]) if len(score) else np.nan,
                "worst_feature": features["subject"].iloc[0] if len(features) else "",
                "psi_feature": float(features["value"].iloc[0]) if len(features) else np.nan,
                "realised_auc": float(auc["value"].iloc[0]) if len(auc) else np.nan,
                "test_auc": float(auc["reference"].iloc[0]) if len(auc) else np.nan,
                "level": max(part["level"], key=MONITORING_LEVELS.index),
                "model_name": str(first["model_name"]),
                "model_version": str(first["model_version"]),
                "campaign": str(first["campaign"]),
            }
        )
    frame = pd.DataFrame(out)
    if frame.empty:
        return frame
    return frame.sort_values(["as_of", "run_id"], kind="stable").reset_index(drop=True)
