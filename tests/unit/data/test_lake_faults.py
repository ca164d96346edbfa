"""Nothing in the lake is lost silently: bad folders, unreadable files, rows under the wrong month and type drift
fail the gate (a data fault: ValidationError, exit 1) naming table and file; pool workers die with their parent.

Each test here backs one row of the bad-input catalogue in ``docs/data-quality.md``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from pipelines.config import Settings
from pipelines.data import gates, storage
from pipelines.data.gate_reports import LAKE_FAULT
from tests.unit.data.test_gates import AS_OF, EXPECTATIONS, clean_frames, quiet, to_arrow, write_lake


def _lake(tmp_path: Path) -> Path:
    return write_lake(tmp_path, clean_frames())


def _validate(lake: Path, **kw) -> gates.LakeResult:
    return gates.validate_lake(lake, AS_OF, EXPECTATIONS, progress=quiet, **kw)


def _only_critical(result, table: str, *needles: str) -> str:
    """The one critical failure of ``result``; it must be on ``table`` and contain every needle."""
    assert not result.success
    messages = [o.message for o in result.critical_failures]
    assert len(messages) == 1, messages
    (msg,) = messages
    assert msg.startswith(f"{table}"), msg
    for n in needles:
        assert n in msg, msg
    with pytest.raises(gates.ValidationError) as err:  # the exit-1 path of the CLI and the jobs
        gates.require_valid(result)
    assert msg in str(err.value)
    return msg


# --------------------------------------------------------------------------------------------------------------
# Folders and files that would not be read


@pytest.mark.parametrize("name", ["month=2025-1", "month=2025-13", "2025-01", "month=2025-01-01"])
def test_a_folder_that_is_not_a_month_partition_fails_the_gate_naming_it(tmp_path, name):
    lake = _lake(tmp_path)
    os.rename(lake / "transactions" / "month=2025-01", lake / "transactions" / name)
    msg = _only_critical(
        _validate(lake), "transactions", f"{lake / 'transactions' / name}", "not a month partition"
    )
    assert "1 Parquet file(s) would not be read" in msg
    assert storage.list_months(lake, "transactions") == ["2025-02", "2025-03"]  # no ValueError on 2025-13


def test_stray_files_and_empty_partitions_fail_but_temp_and_marker_files_do_not(tmp_path):
    lake = _lake(tmp_path)
    (lake / "transactions" / "_SUCCESS").write_text("")
    (lake / "transactions" / "month=2025-02" / ".part-00001.parquet.x1.tmp").write_text("half written")
    assert _validate(lake).success

    (lake / "app_events" / "month=2025-02" / "extra.csv").write_text("event_id\n1\n")
    msg = _only_critical(_validate(lake), "app_events", "extra.csv", "not a .parquet file")
    assert _validate(lake).critical_failures[0].expectation_type == LAKE_FAULT

    lake2 = _lake(tmp_path / "b")
    (lake2 / "balances" / "month=2025-04").mkdir()
    _only_critical(_validate(lake2), "balances", "month=2025-04", "holds no Parquet file")
    lake3 = _lake(tmp_path / "c")
    shutil.copy(
        lake3 / "balances" / "month=2025-01" / "part-00000.parquet", lake3 / "balances" / "loose.parquet"
    )
    _only_critical(_validate(lake3), "balances", "loose.parquet", "outside the month partitions")
    assert msg


@pytest.mark.parametrize("table", ["transactions", "customers"])
@pytest.mark.parametrize("fault", ["truncated", "csv"])
def test_an_unreadable_file_fails_the_gate_naming_table_and_file(tmp_path, table, fault):
    lake = _lake(tmp_path)
    path = storage.table_files(lake, table)[-1]
    if fault == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_text("txn_id,customer_id,amount\n1,2,3.5\n")
    result = _validate(lake)  # no exception: a data fault, not bad arguments
    found = [o for o in result.critical_failures if o.expectation_type == LAKE_FAULT]
    assert len(found) == 1, result.summary()
    assert found[0].message.startswith(f"{table}: every file readable Parquet (critical): {path}"), found[
        0
    ].message
    with pytest.raises(gates.ValidationError, match=str(path)):
        gates.require_valid(result)


@pytest.mark.parametrize("fault", ["not parquet", "month 13"])
def test_lake_faults_through_the_cli_and_the_job_exit_1_not_2(tmp_path, capsys, fault):
    from pipelines.cli import main
    from pipelines.jobs.common import validate_data

    lake = _lake(tmp_path)
    if fault == "not parquet":
        path = lake / "transactions" / "month=2025-02" / "part-00000.parquet"
        path.write_text("not,parquet\n")
    else:
        path = lake / "transactions" / "month=2025-13"
        path.mkdir()
        shutil.copy(lake / "transactions" / "month=2025-03" / "part-00000.parquet", path)
    assert main(["validate", "--data", str(tmp_path)]) == 1  # as_of: the lake's end, 2025-04-01
    out = capsys.readouterr()
    assert "transactions: every f" in out.out and str(path) in out.out, out
    assert "error" not in out.err
    with pytest.raises(gates.ValidationError, match=str(path)):
        validate_data(Settings(data_dir=tmp_path), None, progress=quiet)


# --------------------------------------------------------------------------------------------------------------
# Rows under another month's folder


@pytest.mark.parametrize("batch_rows", [1, 1_000_000])
def test_rows_under_the_wrong_month_fail_a_critical_rule(tmp_path, batch_rows):
    f = clean_frames()
    t = f["transactions"]
    lake = write_lake(tmp_path, f)
    feb = t[t["txn_ts"].dt.strftime("%Y-%m") == "2025-02"].head(3).assign(txn_id=[9001, 9002, 9003])
    storage.write_part(to_arrow(feb, "transactions"), lake, "transactions", 1, "2025-03")
    jan = t.head(2).assign(txn_id=[9101, 9102])
    storage.write_part(to_arrow(jan, "transactions"), lake, "transactions", 1, "2025-02")
    result = _validate(lake, batch_rows=batch_rows)
    msg = _only_critical(result, "transactions.txn_ts", "rule 'rows in their partition's month' (critical)")
    assert "failed on 5 rows" in msg
    assert msg.endswith("(dated outside the month of their folder: month=2025-02: 2, month=2025-03: 3)"), msg
    assert str(feb["txn_ts"].iloc[0]) in msg


def test_rows_dated_after_as_of_are_left_to_the_future_rules(tmp_path):
    # as_of mid-March: later March rows are a backfill's (left out), 2099 is "no future txn_ts" - not both rules
    f = clean_frames()
    lake = write_lake(tmp_path, f)
    late = f["transactions"].iloc[[89]].assign(txn_id=9999, txn_ts=pd.Timestamp("2099-01-01"))
    storage.write_part(to_arrow(late, "transactions"), lake, "transactions", 1, "2025-02")
    result = gates.validate_lake(lake, "2025-03-15", EXPECTATIONS, progress=quiet)
    assert [o.rule for o in result.critical_failures] == ["no future txn_ts"], result.summary()


# --------------------------------------------------------------------------------------------------------------
# Type drift between partitions


def _write_with(
    lake: Path, table: str, month: str, df: pd.DataFrame, column: str, type_: pa.DataType
) -> None:
    spec = pa.schema(
        [fld.with_type(type_) if fld.name == column else fld for fld in to_arrow(df, table).schema]
    )
    storage.write_part(pa.Table.from_pandas(df, schema=spec, preserve_index=False), lake, table, 0, month)


@pytest.mark.parametrize(
    ("column", "type_", "observed", "expected"),
    [("amount", pa.string(), "str", "float64"), ("txn_id", pa.int32(), "int32", "int64")],
)
def test_type_drift_names_the_partition_whose_type_differs(tmp_path, column, type_, observed, expected):
    f = clean_frames()
    t = f["transactions"]
    lake = write_lake(tmp_path, f)
    feb = t[t["txn_ts"].dt.strftime("%Y-%m") == "2025-02"].copy()
    if column == "amount":
        feb["amount"] = feb["amount"].map(lambda v: f"{v:.2f}")
    _write_with(lake, "transactions", "2025-02", feb, column, type_)
    result = _validate(lake)
    (o,) = [o for o in result.critical_failures if o.column == column]
    assert o.message == (
        f"transactions.{column}: rule '{o.rule}' (critical) failed: observed {observed}, expected {expected} "
        "(in month=2025-02/part-00000.parquet, 1 of 3 partitions)"
    )


# --------------------------------------------------------------------------------------------------------------
# Orphans: pool workers die with their parent


_RUN_GATE = textwrap.dedent(
    """
    import sys
    from pipelines.data import gates, storage
    lake = sys.argv[1]
    say = lambda m: print(m, flush=True)
    gates.validate_lake(lake, storage.lake_end(lake), sys.argv[2], progress=say, workers=2, batch_rows=1)
    """
)


@pytest.fixture(scope="module")
def small_bank(tmp_path_factory) -> Path:
    from pipelines.synthetic.bank import SynthConfig, generate_bank

    out = tmp_path_factory.mktemp("small_bank")
    generate_bank(SynthConfig(customers=2000, months=3, seed=1), out, progress=None)
    return out / "lake"


@pytest.mark.slow
@pytest.mark.parametrize("when", ["starting", "busy"])
def test_pool_workers_die_with_a_killed_parent(small_bank, when):
    """kill -9 of a process running the gate, while its 2 workers start (before or during their initializer)
    or once they have finished a batch and run the next ones: no worker survives it."""
    import psutil

    proc = subprocess.Popen(
        [sys.executable, "-c", _RUN_GATE, str(small_bank), str(EXPECTATIONS)],
        stdout=subprocess.PIPE,
        text=True,
    )
    children: list[psutil.Process] = []
    try:
        parent = psutil.Process(proc.pid)
        if when == "busy":  # a table's line comes after its batches ran: workers are past their initializer
            for line in proc.stdout:
                if line.startswith("  ") and "batch(es)" in line:
                    break
            else:
                pytest.fail("the gate ended before any table was checked")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None and len(children) < 3:
            children = parent.children(recursive=True)  # 2 workers and multiprocessing's resource tracker
            time.sleep(0.02)
        workers = [c for c in children if "resource_tracker" not in " ".join(c.cmdline())]
        assert len(workers) == 2, f"the gate's 2 pool workers were not found: {children}"
        assert proc.poll() is None, "the gate finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        _gone, alive = psutil.wait_procs(children, timeout=15)
        assert not alive, f"survivors of their parent: {[(p.pid, p.cmdline()) for p in alive]}"
    finally:
        for p in [*children, psutil.Process(proc.pid) if proc.poll() is None else None]:
            if p is not None:
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.kill()
        proc.wait(10)
        proc.stdout.close()
