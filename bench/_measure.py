"""Shared by the benchmarks: wall time and peak memory of a process tree (this process and its workers)."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager, suppress

import psutil


@contextmanager
def measure(label: str):
    """Time the block and sample the summed RSS of this process and its children every 50 ms."""
    me = psutil.Process()
    peak = {"rss": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                with suppress(psutil.Error):
                    total += p.memory_info().rss
            peak["rss"] = max(peak["rss"], total)
            stop.wait(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    started = time.perf_counter()
    result: dict[str, float] = {}
    try:
        yield result
    finally:
        result["seconds"] = time.perf_counter() - started
        stop.set()
        thread.join()
        result["peak_rss_gb"] = peak["rss"] / 2**30
        print(
            f"{label}: {result['seconds']:.1f} s, peak memory {result['peak_rss_gb']:.2f} GiB (process tree RSS)"
        )
