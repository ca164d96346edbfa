"""The lake's storage layer: partitioned reads, atomic writes, whole-folder swaps."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from pipelines.data import storage
from pipelines.data.schema import TABLES


def _balances(month_end: str, ids: list[int]) -> pa.Table:
    frame = pd.DataFrame(
        {
            "customer_id": ids,
            "month_end": pd.to_datetime([month_end] * len(ids)).date,
            "aum": [100.0] * len(ids),
            "card_balance": [5.0] * len(ids),
        }
    )
    return pa.Table.from_pandas(frame, schema=TABLES["balances"].arrow_schema, preserve_index=False)


def test_partitioned_write_and_read_of_selected_months(tmp_path):
    table = pa.concat_tables([_balances("2025-01-31", [1, 2]), _balances("2025-02-28", [1, 2, 3])])
    written = storage.write_partitioned(table, TABLES["balances"], tmp_path, part=0)
    assert [p.parent.name for p in written] == ["month=2025-01", "month=2025-02"]
    assert storage.list_months(tmp_path, "balances") == ["2025-01", "2025-02"]
    feb = storage.read_table(tmp_path, "balances", months=["2025-02"])
    assert len(feb) == 3 and (feb["month_end"] == pd.Timestamp("2025-02-28")).all()
    assert len(storage.read_table(tmp_path, "balances")) == 5
    assert storage.lake_end(tmp_path, "balances").isoformat() == "2025-03-01"
    assert not list(tmp_path.rglob("*.tmp"))


def test_missing_table_month_or_column_is_named(tmp_path):
    with pytest.raises(storage.LakeError, match="'transactions' not found"):
        storage.read_table(tmp_path, "transactions")
    storage.write_partitioned(_balances("2025-01-31", [1]), TABLES["balances"], tmp_path, part=0)
    with pytest.raises(storage.LakeError, match=r"no data files for months \['2024-12'\]"):
        storage.read_table(tmp_path, "balances", months=["2024-12"])
    with pytest.raises(storage.LakeError, match=r"no column\(s\) \['balance'\]"):
        storage.read_table(tmp_path, "balances", columns=["balance"])


def test_replacing_dir_keeps_the_old_folder_when_the_new_one_fails(tmp_path):
    target = tmp_path / "lake"
    with storage.replacing_dir(target) as tmp:
        (tmp / "a.txt").write_text("old")
    with pytest.raises(RuntimeError), storage.replacing_dir(target) as tmp:
        (tmp / "a.txt").write_text("half-written")
        raise RuntimeError("generator crashed")
    assert (target / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lake"]
    with storage.replacing_dir(target) as tmp:
        (tmp / "b.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]


def test_write_part_replaces_a_part_atomically(tmp_path):
    storage.write_part(_balances("2025-01-31", [1, 2]), tmp_path, "balances", 0, "2025-01")
    storage.write_part(_balances("2025-01-31", [7]), tmp_path, "balances", 0, "2025-01")
    assert storage.read_table(tmp_path, "balances")["customer_id"].tolist() == [7]
