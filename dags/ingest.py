"""ingest: one DAG per source mapping in ``sources/`` (dag_id ``ingest__<source>``).

One task, ``ingest``: the source is read through its mapping and written into the lake
(``pipelines.data.ingest.ingest_source``: fault rules, atomic month swaps, ``<lake>/_sources.json``, the ingest
report), then the ``lake`` asset is updated with the source, its tables and the months written in the event's
``extra``, so the gates and the training DAGs can run on the new data. Scheduled by the mapping's ``schedule`` (an
Airflow preset or a cron line); without one the DAG runs only when triggered. The ``months`` param (``2011-11,
2011-12``) ingests only those months of the month-partitioned tables.

Only the mappings' headers (name, schedule, description) are read at parse time, with YAML alone (no pandas): a
mapping whose header cannot define a DAG shows as this file's import error naming the file and the field, and the
other sources keep their DAGs. The whole mapping is validated by the task, which then fails at once (no retries)
naming the field, as it does when the ingest stops on a fault rule.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from _wiring import START_DATE, default_args, lake_asset, task_settings
from airflow.sdk import DAG, Param, dag, get_current_context, task

from pipelines.campaigns.spec_header import schedule_problem
from pipelines.config import load_settings

_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")  # as pipelines.data.mapping.SourceMapping.name
_MONTHS = r"^(\d{4}-\d{2}( *, *\d{4}-\d{2})*)?$"


def read_source_headers(folder: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """``{name, path, schedule, description}`` of each mapping file in ``folder`` that can define a DAG, and one
    line per file that cannot (not YAML, no valid name, a schedule that is neither a preset nor a firing cron
    line, a name another file already uses)."""
    headers: list[dict[str, Any]] = []
    problems: list[str] = []
    for path in sorted([*Path(folder).glob("*.yaml"), *Path(folder).glob("*.yml")]):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            problems.append(f"{path}: not readable YAML: {str(exc).splitlines()[0]}")
            continue
        if not isinstance(data, dict):
            problems.append(f"{path}: invalid source mapping: expected a mapping (name:, tables:)")
            continue
        name, schedule = data.get("name"), data.get("schedule")
        why = []
        if not isinstance(name, str) or not _NAME.match(name):
            why.append(f"name: must be lower case letters, digits, - and _, got {name!r}")
        elif any(h["name"] == name for h in headers):
            why.append(f"name: {name!r} is also the name of another mapping in {folder}")
        if schedule is not None:
            problem = schedule_problem(str(schedule))
            if problem:
                why.append(f"schedule: {problem}")
        if why:
            problems.append(f"{path}: invalid source mapping: " + "; ".join(why))
            continue
        headers.append(
            {
                "name": name,
                "path": path.resolve(),
                "schedule": None if schedule is None else str(schedule),
                "description": str(data.get("description") or ""),
            }
        )
    return headers, problems


def ingest_dag(name: str, path: Path, schedule: str | None, description: str = ""):
    @dag(
        dag_id=f"ingest__{name}",
        description=f"Ingest source {name} into the lake through {path.name}",
        doc_md=description or None,
        schedule=schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args=default_args(),
        tags=["ingest", "data", name],
        params={
            "months": Param(
                "",
                type="string",
                pattern=_MONTHS,
                description="YYYY-MM[,YYYY-MM...]: only these months of month-partitioned tables; empty: all",
            )
        },
    )
    def ingest_source_dag():
        @task(outlets=[lake_asset()])
        def ingest() -> dict:
            from airflow.sdk.exceptions import AirflowFailException

            from pipelines.data.ingest import ingest_source
            from pipelines.data.ingest_chunks import IngestError
            from pipelines.data.mapping import MappingError, load_mapping

            context = get_current_context()
            given = str((context.get("params") or {}).get("months") or "")
            months = [m.strip() for m in given.split(",") if m.strip()] or None
            settings = task_settings()
            try:
                report = ingest_source(load_mapping(path), settings.data_dir, months=months, progress=print)
            except (MappingError, IngestError) as exc:  # a bad mapping, a stop rule: a retry cannot fix them
                raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc
            written = sorted({m for t in report.tables.values() for m in t.months})
            summary = {
                "source": name,
                "tables": sorted(report.tables),
                "months": written,
                "rows_written": {t: r.rows_written for t, r in report.tables.items()},
                "report": report.report_dir,
            }
            context["outlet_events"][lake_asset()].extra = {
                k: summary[k] for k in ("source", "tables", "months")
            }
            return summary

        ingest()

    return ingest_source_dag()


class SourceMappingProblems(DAG):
    """A stand-in for the mappings whose header cannot define a DAG: it fails Airflow's check of every DAG a file
    defines, so their problems show as this file's import error while the other sources keep their DAGs."""

    def __init__(self, problems: Sequence[str], **kwargs: Any) -> None:
        super().__init__(dag_id="ingest__invalid_mappings", schedule=None, start_date=START_DATE, **kwargs)
        object.__setattr__(self, "_mapping_problems", tuple(problems))

    def validate(self) -> None:
        from pipelines.data.mapping import MappingError  # here, not at parse time (pandas)

        raise MappingError(
            f"{len(self._mapping_problems)} source mapping(s) define no ingest DAG until fixed (the other sources "
            "are not affected):\n" + "\n".join(self._mapping_problems)
        )


_headers, _problems = read_source_headers(load_settings().sources_dir)
for _header in _headers:
    ingest_dag(_header["name"], _header["path"], _header["schedule"], _header["description"])
if _problems:
    invalid_mappings = SourceMappingProblems(_problems)
