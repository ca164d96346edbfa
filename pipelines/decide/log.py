"""The decision service's log: decisions buffered in memory and written to ``campaign_decisions`` in batches by a
background thread, so answering an event never waits for the database.

:meth:`DecisionLog.add` checks the row (``pipelines.campaigns.decisions.normalize_decision``: a broken row is
refused at once, naming the column) and appends it to the buffer. The writer thread takes the oldest rows,
``batch_size`` at a time, every ``flush_seconds`` or as soon as a batch is full, and writes each batch in one
transaction (:func:`pipelines.campaigns.decisions.write_decisions`, idempotent on ``decision_id``). A row leaves
the buffer only once its batch has committed.

When the database fails, the batch stays at the head of the buffer and is tried again at the next flush; the
failure is one warning line (``decision log: ...``, no traceback) when it starts or its cause changes, then at
most one a minute while it lasts, and one line when writes resume. The buffer is bounded (``max_pending``, default
100,000 rows): when it is full, ``add`` refuses the new row with :class:`DecisionLogFull` (counted in ``refused``)
rather than dropping older ones, so every decision the service answered without an error is in the buffer or
in the database, and the caller knows which ones are not.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from itertools import islice
from typing import Any

from sqlalchemy import Engine

from pipelines.campaigns.decisions import normalize_decision, write_decisions
from pipelines.campaigns.store_schema import ensure_schema, make_engine, mask_passwords, safe_url

MAX_PENDING = 100_000
REPEAT_WARNING_S = 60.0
_log = logging.getLogger(__name__)


class DecisionLogError(RuntimeError):
    """The decision log cannot take or keep a decision: one line saying how many are not stored and why."""


class DecisionLogFull(DecisionLogError):
    """``add`` refused a row: ``max_pending`` rows are already waiting for the database."""


class DecisionLog:
    """Batched, thread-safe writer of decision rows to the campaign database (see the module docstring).

    ``engine_or_url`` is an engine of ``make_engine`` or a database URL (the log then owns its engine and disposes
    of it on close). ``pending`` is the number of rows waiting, ``written`` the number of rows whose batch has
    committed (a decision stored before counts too), ``refused`` the rows ``add`` refused because the buffer was
    full, ``failures`` the failed flushes. Use as a context manager or call :meth:`close`.
    """

    def __init__(
        self,
        engine_or_url: Engine | str,
        batch_size: int = 500,
        flush_seconds: float = 1.0,
        *,
        max_pending: int = MAX_PENDING,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not flush_seconds > 0:
            raise ValueError(f"flush_seconds must be > 0, got {flush_seconds}")
        if max_pending < batch_size:
            raise ValueError(f"max_pending ({max_pending}) must be at least batch_size ({batch_size})")
        self._owns_engine = isinstance(engine_or_url, str)
        self.engine = make_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.max_pending = max_pending
        self.written = 0
        self.refused = 0
        self.failures = 0
        self._buffer: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()  # the buffer and the counters
        self._wake = threading.Condition(self._lock)
        self._writing = threading.Lock()  # one flush at a time: a batch is written once before it leaves
        self._schema_ready = False
        self._closed = False
        self._failing: str | None = None  # the cause of the current run of failures
        self._warned_at = 0.0
        self._thread = threading.Thread(target=self._run, name="decision-log", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------------------------- public

    @property
    def pending(self) -> int:
        """Rows waiting for the database."""
        with self._lock:
            return len(self._buffer)

    def add(self, row: dict[str, Any]) -> None:
        """Queue one decision row (never waits for the database).

        Raises ``FrameValidationError`` naming the column for a broken row, :class:`DecisionLogFull` when
        ``max_pending`` rows are waiting (the row is not kept), and :class:`DecisionLogError` after :meth:`close`.
        """
        clean = normalize_decision(row)
        with self._lock:
            if self._closed:
                raise DecisionLogError(f"decision log is closed: decision {clean['decision_id']} not logged")
            if len(self._buffer) >= self.max_pending:
                self.refused += 1
                raise DecisionLogFull(
                    f"decision log: {len(self._buffer):,} decisions are waiting for campaign database "
                    f"{safe_url(self.engine)} ({self._failing or 'writes too slow'}); decision "
                    f"{clean['decision_id']} refused ({self.refused:,} refused so far)"
                )
            self._buffer.append(clean)
            if len(self._buffer) >= self.batch_size:
                self._wake.notify()

    def flush(self) -> int:
        """Write every row waiting now, ``batch_size`` at a time, in the calling thread; returns the rows written.

        Raises one-line ``DatabaseError`` when the database fails; the rows not written stay in the buffer.
        """
        return self._drain(full_only=False)

    def close(self) -> None:
        """Stop the writer thread and flush what is left; idempotent. Raises :class:`DecisionLogError` when rows
        cannot be written (they stay in ``pending``; another ``close`` or ``flush`` tries again)."""
        with self._lock:
            self._closed = True
            self._wake.notify()
        self._thread.join()
        try:
            self.flush()
        except Exception as exc:
            raise DecisionLogError(
                f"decision log: {self.pending:,} decision(s) not written to campaign database "
                f"{safe_url(self.engine)}: {_first_line(exc)}"
            ) from None
        if self._owns_engine:
            self.engine.dispose()

    def __enter__(self) -> DecisionLog:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------------ private

    def _drain(self, full_only: bool) -> int:
        """Write the rows waiting now, oldest first, a batch per transaction (only full batches if ``full_only``)."""
        with self._writing:
            done = 0
            with self._lock:
                target = len(self._buffer)
            if full_only:
                target -= target % self.batch_size
            while done < target:
                with self._lock:
                    batch = list(islice(self._buffer, min(self.batch_size, target - done)))
                try:
                    if not self._schema_ready:
                        ensure_schema(self.engine)
                        self._schema_ready = True
                    write_decisions(self.engine, batch, ensure=False)
                except Exception as exc:
                    with self._lock:
                        self.failures += 1
                    self._report_failure(exc, len(batch))
                    raise
                with self._lock:
                    # Only a drain removes rows (one drain at a time), and add appends at the other end.
                    for _ in batch:
                        self._buffer.popleft()
                    self.written += len(batch)
                done += len(batch)
            if done and self._failing is not None:
                _log.warning(
                    "decision log: writes to campaign database %s resumed; %d pending",
                    safe_url(self.engine),
                    self.pending,
                )
                self._failing = None
            return done

    def _run(self) -> None:
        """The writer thread until closed: every ``flush_seconds`` everything waiting, and in between each batch
        as soon as it is full."""
        deadline = time.monotonic() + self.flush_seconds
        while True:
            with self._lock:
                while not self._closed:
                    left = deadline - time.monotonic()
                    # While the database fails, a full batch waits for the next flush instead of retrying at once.
                    if left <= 0 or len(self._buffer) >= self.batch_size and self._failing is None:
                        break
                    self._wake.wait(left)
                if self._closed:
                    return
                due = time.monotonic() >= deadline
                waiting = len(self._buffer)
            if due:
                deadline = time.monotonic() + self.flush_seconds
            if waiting:
                # A failure is reported by _drain in one line; its rows stay for the next try.
                with contextlib.suppress(Exception):
                    self._drain(full_only=not due)

    def _report_failure(self, exc: BaseException, rows: int) -> None:
        cause = _first_line(exc)
        now = time.monotonic()
        if cause != self._failing or now - self._warned_at >= REPEAT_WARNING_S:
            _log.warning(
                "decision log: %d decision(s) not written (%d pending, kept for the next flush in %g s): %s",
                rows,
                self.pending,
                self.flush_seconds,
                cause,
            )
            self._warned_at = now
        self._failing = cause


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    return mask_passwords(lines[0]) if lines else type(exc).__name__
