"""The online snapshot store: a folder (Parquet + an atomically switched pointer) and a real Redis server.

Both stores must give back every value with its type (ints, floats incl. NaN, strings, booleans, None), switch
readers atomically from one snapshot to the next, and fail with one line when they cannot be used.
"""

from __future__ import annotations

import math
import socket
from datetime import date

import numpy as np
import pandas as pd
import pytest

from pipelines.features.online_store import (
    OnlineStoreError,
    open_snapshot,
    snapshot_info,
    write_snapshot,
)


def _frame(n: int = 50, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    spend = rng.gamma(2.0, 50.0, n) + shift
    spend[::7] = np.nan
    return pd.DataFrame(
        {
            "customer_id": np.arange(1_000, 1_000 + n, dtype=np.int64),
            "tenure_days": rng.integers(1, 900, n),
            "spend_30d": spend,
            "gender": pd.Categorical(rng.choice(["F", "M", "U"], n), categories=["F", "M", "U"]),
            "value_tier": pd.Series([None if i % 5 == 0 else "high" for i in range(n)], dtype="str"),
            "do_not_contact": rng.random(n) < 0.1,
            "marketing_opt_out": pd.array(
                [None if i == 3 else i % 2 == 0 for i in range(n)], dtype="boolean"
            ),
            "txn_days_30d": rng.integers(0, 2**30, n),
        }
    )


def _expected(frame: pd.DataFrame, i: int) -> dict:
    row = frame.iloc[i]
    return {
        "customer_id": int(row["customer_id"]),
        "tenure_days": int(row["tenure_days"]),
        "spend_30d": float(row["spend_30d"]),
        "gender": str(row["gender"]),
        "value_tier": None if i % 5 == 0 else "high",
        "do_not_contact": bool(row["do_not_contact"]),
        "marketing_opt_out": None if i == 3 else i % 2 == 0,
        "txn_days_30d": int(row["txn_days_30d"]),
    }


def _assert_round_trip(snapshot, frame: pd.DataFrame) -> None:
    assert len(snapshot) == len(frame) and snapshot.columns == tuple(frame.columns)
    for i in range(len(frame)):
        got, want = snapshot.row(int(frame["customer_id"].iloc[i])), _expected(frame, i)
        assert list(got) == list(want)
        for column, value in want.items():
            assert type(got[column]) is type(value), (i, column, got[column])
            if isinstance(value, float) and math.isnan(value):
                assert math.isnan(got[column])
            else:
                assert got[column] == value, (i, column)
    assert snapshot.row(1) is None


def test_the_folder_store_round_trips_every_value_with_its_type(tmp_path):
    frame = _frame()
    written = write_snapshot(frame, as_of=date(2026, 3, 1), run_id="campaign_scoring__x", target=tmp_path)
    assert written["rows"] == 50 and written["as_of"] == "2026-03-01"
    snapshot = open_snapshot(tmp_path)
    assert snapshot.as_of == date(2026, 3, 1) and snapshot.run_id == "campaign_scoring__x"
    _assert_round_trip(snapshot, frame)
    assert snapshot.row(np.int64(1_000))["customer_id"] == 1_000


def test_the_folder_store_switches_atomically_and_keeps_one_previous_file(tmp_path):
    write_snapshot(_frame(), as_of="2026-02-01", run_id="a", target=tmp_path)
    old = open_snapshot(tmp_path)
    write_snapshot(_frame(shift=1.0), as_of="2026-03-01", run_id="b", target=tmp_path)
    assert (
        old.run_id == "a" and old.row(1_001)["spend_30d"] == _frame()["spend_30d"].iloc[1]
    )  # still readable
    new = open_snapshot(tmp_path)
    assert (new.as_of, new.run_id) == (date(2026, 3, 1), "b")
    assert new.row(1_001)["spend_30d"] == pytest.approx(old.row(1_001)["spend_30d"] + 1.0)
    write_snapshot(_frame(), as_of="2026-04-01", run_id="c", target=tmp_path)
    files = sorted(p.name for p in tmp_path.glob("snapshot-*.parquet"))
    assert len(files) == 2 and snapshot_info(tmp_path)["run_id"] == "c"
    assert not list(tmp_path.glob(".*.tmp"))  # no half-written file left


def test_the_folder_store_refuses_a_bad_frame_and_says_when_it_is_empty(tmp_path):
    with pytest.raises(OnlineStoreError, match="holds no snapshot"):
        open_snapshot(tmp_path)
    assert snapshot_info(tmp_path) is None
    with pytest.raises(ValueError, match="needs a customer_id column"):
        write_snapshot(_frame().drop(columns="customer_id"), as_of="2026-03-01", run_id="a", target=tmp_path)
    twice = pd.concat([_frame(3), _frame(3)])
    with pytest.raises(ValueError, match=r"customer_id must be unique.*\[1000, 1001, 1002\]"):
        write_snapshot(twice, as_of="2026-03-01", run_id="a", target=tmp_path)


# ------------------------------------------------------------------------------------------------------ Redis


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_redis_round_trips_every_value_with_its_type(redis_url):
    frame = _frame()
    written = write_snapshot(frame, as_of=date(2026, 3, 1), run_id="run-1", target=redis_url)
    assert written["rows"] == 50 and written["target"] == redis_url
    snapshot = open_snapshot(redis_url)
    assert (snapshot.as_of, snapshot.run_id) == (date(2026, 3, 1), "run-1")
    _assert_round_trip(snapshot, frame)
    assert snapshot_info(redis_url)["rows"] == 50


def test_redis_switches_atomically_and_deletes_the_old_version(redis_url, monkeypatch):
    import redis

    client = redis.Redis.from_url(redis_url)
    write_snapshot(_frame(), as_of="2026-02-01", run_id="a", target=redis_url)
    reader = open_snapshot(redis_url)
    first = snapshot_info(redis_url)["version"]
    before = reader.row(1_001)["spend_30d"]

    # A writer that has written every row of the new version but not switched: readers still see the old one.
    from pipelines.features import online_store

    keys_before = set(client.keys("pmp:online:*"))
    real_set = redis.Redis.set
    switched = []

    class NoSwitch(Exception):
        pass

    def stop_at_switch(self, name, value, *args, **kwargs):
        if name == "pmp:online:current":
            switched.append(value)
            raise NoSwitch
        return real_set(self, name, value, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(redis.Redis, "set", stop_at_switch)
        with pytest.raises(NoSwitch):
            online_store.write_snapshot(_frame(shift=1.0), as_of="2026-03-01", run_id="b", target=redis_url)
    assert switched and len(set(client.keys("pmp:online:*")) - keys_before) == 51  # 50 rows + meta, written
    assert reader.row(1_001)["spend_30d"] == before and reader.run_id == "a"
    assert open_snapshot(redis_url).run_id == "a"

    write_snapshot(_frame(shift=1.0), as_of="2026-03-01", run_id="c", target=redis_url)
    assert reader.row(1_001)["spend_30d"] == pytest.approx(before + 1.0)  # the open reader follows the switch
    assert (reader.run_id, reader.as_of) == ("c", date(2026, 3, 1))
    current = snapshot_info(redis_url)["version"]
    versions = {k.decode().split(":")[3] for k in client.keys("pmp:online:v:*")}
    assert (
        versions == {current} and first != current
    )  # both older versions (a, and the unswitched b) are gone
    assert len(client.keys(f"pmp:online:v:{current}:c:*")) == 50


def test_an_unreachable_redis_is_one_clear_line():
    url = f"redis://127.0.0.1:{_free_port()}/0"
    for call in (
        lambda: open_snapshot(url),
        lambda: write_snapshot(_frame(3), as_of="2026-03-01", run_id="a", target=url),
        lambda: snapshot_info(url),
    ):
        with pytest.raises(OnlineStoreError) as caught:
            call()
        message = str(caught.value)
        assert message.startswith(f"online store {url} is unreachable: ") and "\n" not in message


def test_an_empty_redis_holds_no_snapshot(redis_url):
    assert snapshot_info(redis_url) is None
    with pytest.raises(OnlineStoreError, match="holds no snapshot"):
        open_snapshot(redis_url)


def test_the_setting_defaults_to_the_data_folder_and_takes_a_redis_url(tmp_path):
    from pipelines.config import load_settings

    settings = load_settings({"PM_DATA_DIR": str(tmp_path)})
    assert settings.online_store == str(tmp_path / "online")
    assert settings.with_data_dir(tmp_path / "b").online_store == str(tmp_path / "b" / "online")
    url = "redis://127.0.0.1:6390/2"
    assert load_settings({"PM_ONLINE_STORE": url}).with_data_dir(tmp_path).online_store == url
