"""Failed tasks, recorded where operators look: one JSON line per failure in ``runs/failures.jsonl``, and a JSON POST
to ``PM_ALERT_WEBHOOK_URL`` when one is set (a chat or incident tool's incoming webhook).

The DAGs' failure callback (``dags/_wiring.on_task_failure``) calls :func:`record_failure`; anything else that wants
alerts (a cron check, the staff app) reads the file. Recording never raises: a failure to alert is logged and the
task's own failure stays what Airflow reports.
"""

from __future__ import annotations

import json
import os
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.config import Settings

FAILURES_FILE = "failures.jsonl"
# The part of an error message kept in the record (the task log has all of it).
MAX_ERROR_CHARS = 2000


def failures_path(settings: Settings) -> Path:
    return settings.runs_dir / FAILURES_FILE


def failure_record(
    dag_id: str,
    task_id: str,
    run_id: str,
    try_number: int | None = None,
    error: BaseException | str | None = None,
    log_url: str | None = None,
    when: datetime | None = None,
) -> dict[str, Any]:
    """The record of one failed task try: ids, the error's type and first line(s), the log's address."""
    if isinstance(error, BaseException):
        kind, message = type(error).__name__, str(error)
    else:
        kind, message = ("", str(error)) if error else ("", "")
    return {
        "at": (when or datetime.now(UTC)).isoformat(timespec="seconds"),
        "dag_id": dag_id,
        "task_id": task_id,
        "run_id": run_id,
        "try_number": try_number,
        "error_type": kind,
        "error": message[:MAX_ERROR_CHARS],
        "log_url": log_url or "",
    }


def record_failure(settings: Settings, record: dict[str, Any], timeout: float = 10.0) -> list[str]:
    """Append ``record`` to ``runs/failures.jsonl`` and POST it to the alert webhook if one is configured.
    Returns what could not be done (empty when everything worked); never raises."""
    problems = []
    path = failures_path(settings)
    line = json.dumps(record, sort_keys=True, default=str) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # One write of a short line in append mode: concurrent tasks do not interleave their records.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)
    except OSError as exc:
        problems.append(f"cannot append to {path}: {exc.strerror or exc}")
    if settings.alert_webhook_url:
        request = urllib.request.Request(
            settings.alert_webhook_url,
            data=json.dumps({"text": describe(record), **record}, default=str).encode("utf-8"),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                response.read()
        except (OSError, ValueError) as exc:
            problems.append(f"alert webhook {settings.alert_webhook_url!r} failed: {exc}")
    return problems


def describe(record: dict[str, Any]) -> str:
    """One line for a chat message: which task of which run failed, and why."""
    error = record.get("error", "").splitlines()[0] if record.get("error") else "no error message"
    kind = f"{record['error_type']}: " if record.get("error_type") else ""
    tries = f" (try {record['try_number']})" if record.get("try_number") else ""
    return f"{record['dag_id']}.{record['task_id']} failed in {record['run_id']}{tries}: {kind}{error}"


def read_failures(settings: Settings) -> list[dict[str, Any]]:
    """Every recorded failure, oldest first."""
    path = failures_path(settings)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
