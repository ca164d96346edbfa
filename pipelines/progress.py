"""Progress of long work: a bar with counts and ETA on a terminal, plain periodic lines everywhere else.

Every long step takes a ``progress`` sink, a callable that gets one line of text (``print`` in the CLI, the task
logger in Airflow, ``None`` for silence). :func:`track` turns a count of work into progress on that sink:

* the CLI on a terminal (the sink is ``print`` and stderr is a TTY) gets a tqdm bar on stderr, which disappears when
  the work is done, so the terminal keeps only the step's own summary line;
* any other sink (an Airflow task log, a file, a test) gets a plain line at most every ``every_seconds``
  (``validation: 12/48 partitions (25 %), 8 s elapsed, about 24 s left``) and a closing line if it said anything.

Nothing here reads the environment or prints on import.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

Progress = Callable[[str], None] | None

T = TypeVar("T")

EVERY_SECONDS = 10.0


def say_to(progress: Progress) -> Callable[[str], None]:
    """The sink as a callable that always works: ``None`` becomes one that discards."""
    return progress or (lambda _message: None)


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class Tracker:
    """Counts work done out of ``total`` and reports it on its sink (see the module docstring)."""

    def __init__(
        self,
        total: int | None,
        what: str,
        *,
        unit: str = "",
        progress: Progress = print,
        every_seconds: float = EVERY_SECONDS,
        bar: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.what = what
        self.unit = unit
        self.done = 0
        self.lines = 0
        self._say = progress
        self._every = every_seconds
        self._clock = clock
        self._start = self._last = clock()
        if bar is None:
            bar = progress is print and sys.stderr.isatty()
        self._bar = None
        if bar and progress is not None:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, desc=what, unit=f" {unit}" if unit else "it", leave=False, file=sys.stderr
            )

    def status(self) -> str:
        """One line: counts, share, elapsed time and, when a total is known, the time left at the mean rate."""
        elapsed = self._clock() - self._start
        unit = f" {self.unit}" if self.unit else ""
        if not self.total:
            return f"{self.what}: {self.done:,}{unit}, {_duration(elapsed)} elapsed"
        share = self.done / self.total
        text = f"{self.what}: {self.done:,}/{self.total:,}{unit} ({share:.0%}), {_duration(elapsed)} elapsed"
        if 0 < self.done < self.total:
            text += f", about {_duration(elapsed * (self.total - self.done) / self.done)} left"
        return text

    def say(self, line: str) -> None:
        """One line of the step's own output on the sink; on a terminal the bar is lifted while it is written
        and redrawn after, so the line does not land on the bar's."""
        if self._say is None:
            return
        if self._bar is None:
            self._say(line)
            return
        from tqdm import tqdm

        with tqdm.external_write_mode(file=sys.stderr):
            self._say(line)

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        if self._say is None:
            return
        now = self._clock()
        if now - self._last >= self._every:
            self._last = now
            self.lines += 1
            self._say(self.status())

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self._say is not None and self.lines:
            elapsed = self._clock() - self._start
            unit = f" {self.unit}" if self.unit else ""
            self._say(f"{self.what}: {self.done:,}{unit} done in {_duration(elapsed)}")


@contextmanager
def track(
    total: int | None,
    what: str,
    *,
    unit: str = "",
    progress: Progress = print,
    every_seconds: float = EVERY_SECONDS,
    bar: bool | None = None,
) -> Iterator[Tracker]:
    """A :class:`Tracker` closed on exit, also when the work fails."""
    tracker = Tracker(total, what, unit=unit, progress=progress, every_seconds=every_seconds, bar=bar)
    try:
        yield tracker
    finally:
        tracker.close()


def tracked(
    items: Iterable[T],
    what: str,
    *,
    total: int | None = None,
    unit: str = "",
    progress: Progress = print,
    every_seconds: float = EVERY_SECONDS,
) -> Iterator[T]:
    """``items`` unchanged, one step of progress after each (``total`` defaults to ``len(items)`` when it has one)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with track(total, what, unit=unit, progress=progress, every_seconds=every_seconds) as tracker:
        for item in items:
            yield item
            tracker.advance()
