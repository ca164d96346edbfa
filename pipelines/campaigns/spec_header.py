"""The header of a campaign spec: the fields a campaign's DAG is built from (name, model, schedule, description).

The campaign DAG file reads every spec's header each time Airflow parses it, so this module is light (YAML, a
regular expression and croniter; no pandas): a header that cannot define a DAG is reported as that file's problem
and the other campaigns keep their DAGs. The full spec (``pipelines.campaigns.spec``) checks these fields with the
same functions, and the rest of the spec when a run starts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import yaml

KNOWN_MODELS = ("churn", "response", "uplift", "lookalike")
SCHEDULE_PRESETS = ("@once", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly", "@annually")
DEFAULT_SCHEDULE = "@monthly"
T = TypeVar("T")

_SLUG = re.compile(r"^[a-z0-9-]+$")
_CRON_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
_CRON_RANGES = ("0-59", "0-23", "1-31 or L", "1-12 or JAN-DEC", "0-7 or SUN-SAT")
_CRON_START = datetime(2000, 1, 1)


class SpecError(ValueError):
    """A campaign spec that cannot be used. The message names the file, the field path and the problem."""


def name_problem(value: str) -> str | None:
    """Why ``value`` cannot be a campaign name (it becomes part of a DAG id and of run ids), or None."""
    if not _SLUG.match(value):
        return f"must be lowercase letters, digits and hyphens (e.g. churn-winback), got {value!r}"
    return None


def model_problem(value: str) -> str | None:
    if value not in KNOWN_MODELS:
        return f"unknown model {value!r}; known models: {', '.join(KNOWN_MODELS)}"
    return None


def schedule_problem(value: str) -> str | None:
    """Why ``value`` is neither an Airflow preset nor a cron line that fires, or None."""
    if value.startswith("@"):
        if value not in SCHEDULE_PRESETS:
            return f"unknown preset {value!r}; use one of {', '.join(SCHEDULE_PRESETS)} or a cron line"
        return None
    if len(value.split()) != 5:
        return (
            f"must be an Airflow preset ({', '.join(SCHEDULE_PRESETS)}) or a 5-field cron line "
            f"such as '0 6 1 * *', got {value!r}"
        )
    problem = cron_problem(value)
    return f"impossible cron line {value!r}: {problem}" if problem else None


def cron_problem(line: str) -> str | None:
    """What is wrong with a 5-field cron line, as croniter (the parser Airflow's cron timetables use) sees it:
    a field it refuses (``0 25 * * *``: hour 25), or a line that never fires (``0 0 31 2 *``); None if it is fine.
    """
    from croniter import CroniterBadDateError, croniter

    if not croniter.is_valid(line):
        fields = line.split()
        for i, name in enumerate(_CRON_FIELDS):
            # Each field alone, the others left at '*', names the one croniter refuses.
            if not croniter.is_valid(" ".join(fields[i] if j == i else "*" for j in range(5))):
                return f"the {name} field {fields[i]!r} is not valid (allowed: {_CRON_RANGES[i]})"
        return "croniter cannot parse it"
    try:
        # A fixed start keeps the check deterministic; every possible date recurs within a leap cycle.
        croniter(line, _CRON_START).get_next()
    except CroniterBadDateError:
        return "it never fires (no date matches its day and month fields)"
    return None


def read_yaml(path: str | Path) -> Any:
    """The parsed YAML of a spec file; :class:`SpecError` naming the file when it cannot be read or parsed."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SpecError(f"{path}: cannot read campaign spec: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise SpecError(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: not valid YAML: {e}") from None


@dataclass(frozen=True)
class SpecHeader:
    """What a campaign's DAG is built from."""

    path: Path
    name: str
    model: str
    schedule: str
    description: str
    realtime: bool = False  # the spec has a ``trigger:``: decided by the decision service, no scoring DAG


_HEADER_CHECKS = {"name": name_problem, "model": model_problem, "schedule": schedule_problem}
_HEADER_DEFAULTS = {"schedule": DEFAULT_SCHEDULE, "description": ""}


def read_header(path: str | Path) -> SpecHeader:
    """The header of the spec in ``path``; :class:`SpecError` naming the file and each bad header field."""
    path = Path(path)
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a campaign spec must be a mapping of fields, got {type(data).__name__}")
    values, problems = {}, []
    for field in ("name", "model", "schedule", "description"):
        value = data.get(field, _HEADER_DEFAULTS.get(field))
        if value is None:
            problems.append(f"  {field}: field required")
            continue
        if not isinstance(value, str):
            problems.append(f"  {field}: must be text, got {value!r}")
            continue
        problem = _HEADER_CHECKS[field](value) if field in _HEADER_CHECKS else None
        if problem:
            problems.append(f"  {field}: {problem}")
        values[field] = value
    if problems:
        raise SpecError(f"{path}: invalid campaign spec\n" + "\n".join(problems))
    return SpecHeader(path=path, **values, realtime=data.get("trigger") is not None)


def read_each(directory: str | Path, read: Callable[[Path], T]) -> tuple[list[T], list[str]]:
    """Every ``*.yaml`` / ``*.yml`` spec in a folder read with ``read`` (a header or a whole spec; anything with a
    ``name``), sorted by name, and the problems: the folder missing, a file ``read`` refuses (its
    :class:`SpecError`), a name already taken by another file."""
    directory = Path(directory)
    if not directory.is_dir():
        return [], [f"{directory}: campaign spec folder not found"]
    read_so_far: dict[str, tuple[T, Path]] = {}
    problems: list[str] = []
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        try:
            item = read(path)
        except SpecError as e:
            problems.append(str(e))
            continue
        name = item.name  # type: ignore[attr-defined]
        if name in read_so_far:
            problems.append(f"{path}: duplicate campaign name {name!r} (also in {read_so_far[name][1]})")
            continue
        read_so_far[name] = (item, path)
    return [read_so_far[name][0] for name in sorted(read_so_far)], problems


def read_headers(directory: str | Path) -> tuple[list[SpecHeader], list[str]]:
    """The headers of every spec in a folder (sorted by name), and the problems of the files that cannot define a
    DAG (an unreadable file, a bad header field, a name already taken by another file)."""
    return read_each(directory, read_header)
