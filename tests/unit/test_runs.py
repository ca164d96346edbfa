"""Run folders under faults: a read-only runs/ folder is refused up front naming it, a full disk names the file that
did not fit and leaves no temporary file, and two processes of one run id take turns on its lock."""

from __future__ import annotations

import errno
import threading
import time

import pandas as pd
import pytest

from pipelines.cli import os_error
from pipelines.data import storage
from pipelines.runs import check_writable, run_lock
from tests.integration import faults


def test_check_writable_names_a_read_only_folder(tmp_path):
    runs = tmp_path / "runs"
    check_writable(runs)  # made when missing, and left empty
    assert runs.is_dir() and not any(runs.iterdir())
    with faults.read_only(runs), pytest.raises(OSError) as raised:
        check_writable(runs)
    assert (raised.value.errno, raised.value.filename) == (errno.EROFS, str(runs))
    assert os_error(raised.value) == (
        f"{runs}: Read-only file system (the file system is read-only: make the folder writable and rerun)"
    )


def test_a_full_disk_names_the_file_and_leaves_no_temporary_file(tmp_path):
    frame = pd.DataFrame({"customer_id": range(50_000), "score": [0.5] * 50_000})
    with faults.tmpfs(tmp_path / "small", 64) as small:
        for write, path in (
            (lambda p: storage.write_frame(frame, p), small / "scores.parquet"),
            (lambda p: storage.write_json_atomic(p, {"x": "y" * 200_000}), small / "selection.json"),
        ):
            with pytest.raises(OSError) as raised:
                write(path)
            assert (raised.value.errno, raised.value.filename) == (errno.ENOSPC, str(path))
            assert os_error(raised.value) == f"{path}: No space left on device (free some space and rerun)"
            assert list(small.iterdir()) == []  # neither the file nor a half-written temporary one


def test_a_second_process_of_a_run_waits_for_the_first(tmp_path):
    said: list[str] = []
    order: list[str] = []

    def second() -> None:
        with run_lock(tmp_path, "campaign_scoring__2026-01-01__x", said.append):
            order.append("second")

    with run_lock(tmp_path, "campaign_scoring__2026-01-01__x", said.append):
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.3)
        order.append("first")
    thread.join(timeout=10)
    assert order == ["first", "second"]
    assert said == [
        f"run campaign_scoring__2026-01-01__x: another process is running it over {tmp_path}; "
        "waiting for it to finish"
    ]
    # Another run id does not wait.
    with run_lock(tmp_path, "a", said.append), run_lock(tmp_path, "b", said.append):
        pass
    assert len(said) == 1
    assert sorted(p.name for p in (tmp_path / ".locks").iterdir()) == [
        "a.lock",
        "b.lock",
        "campaign_scoring__2026-01-01__x.lock",
    ]
