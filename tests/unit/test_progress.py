"""Progress of long work: periodic plain lines on a log sink, a bar on a terminal, silence on None."""

from __future__ import annotations

import io

import pytest

from pipelines.progress import Tracker, track, tracked


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_come_at_most_every_interval_with_counts_and_time_left():
    lines: list[str] = []
    clock = Clock()
    tracker = Tracker(
        100, "validation", unit="partitions", progress=lines.append, every_seconds=10, clock=clock
    )
    for _ in range(25):
        clock.now += 1.0
        tracker.advance()
    tracker.close()
    assert lines == [
        "validation: 10/100 partitions (10%), 10 s elapsed, about 1.5 min left",
        "validation: 20/100 partitions (20%), 20 s elapsed, about 80 s left",
        "validation: 25 partitions done in 25 s",
    ]


def test_quick_work_says_nothing_and_none_is_silent():
    lines: list[str] = []
    with track(3, "scoring", progress=lines.append) as tracker:
        tracker.advance(3)
    assert lines == []
    assert list(tracked(range(4), "silent", progress=None)) == [0, 1, 2, 3]


def test_without_a_total_the_line_has_no_share():
    clock = Clock()
    lines: list[str] = []
    tracker = Tracker(None, "reading", unit="rows", progress=lines.append, every_seconds=1, clock=clock)
    clock.now = 2.0
    tracker.advance(5_000)
    assert lines == ["reading: 5,000 rows, 2 s elapsed"]


def test_a_failure_still_closes_the_tracker():
    lines: list[str] = []
    with pytest.raises(RuntimeError), track(2, "fit", progress=lines.append, every_seconds=0) as tracker:
        tracker.advance()
        raise RuntimeError("boom")
    assert lines[-1].startswith("fit: 1 done in")


def test_the_bar_goes_to_stderr_and_leaves_no_line_on_the_sink(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    lines: list[str] = []
    with track(10, "synth", unit="chunks", progress=lines.append, bar=True, every_seconds=0) as tracker:
        tracker.advance(10)
    assert lines == [] and tracker.done == 10
    assert "synth:" in err.getvalue() and "/10" in err.getvalue()


def test_a_step_line_reaches_the_sink_with_or_without_a_bar(monkeypatch):
    monkeypatch.setattr("sys.stderr", io.StringIO())
    for bar in (False, True):
        lines: list[str] = []
        with track(2, "synth", progress=lines.append, bar=bar) as tracker:
            tracker.say("  chunk 1/2")
            tracker.advance()
        assert lines == ["  chunk 1/2"]
