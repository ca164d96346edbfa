"""The online snapshot: the latest batch run's wide table (plus ``online.STATE_COLUMNS``, segments and contact
flags), one row per customer, for real-time decisions to read in microseconds.

Two stores behind one API (:func:`write_snapshot`, :func:`open_snapshot`, :func:`snapshot_info`), chosen by the
target (``settings.online_store``):

- a folder (the embedded default, ``<data>/online/``): each snapshot is one Parquet file ``snapshot-<version>.parquet``
  written atomically, and ``current.json`` names the current one; the pointer is switched atomically after the file
  is complete, so a reader sees the old snapshot or the new one, never half of one. The one before stays on disk
  for a reader that read the old pointer; older ones are deleted. ``open_snapshot`` loads the file into memory.
- Redis (``redis://host:port/db``): one key per customer, ``pmp:online:v:<version>:c:<customer_id>``, holding
  the row's values as a JSON array, written in pipelined batches; then the version's ``meta`` key, then the
  atomic switch of ``pmp:online:current``; the old versions' keys are deleted after the switch. A reader fetches
  the current version and the row in one server-side script, so it follows a switch and never mixes versions.

Values keep their types: ints, floats (NaN too), strings, booleans and None (a missing value of a text, integer or
boolean column).
"""

from __future__ import annotations

import json
import math
import operator
import re
import time
import uuid
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.data import storage
from pipelines.features.catalogue import ID

POINTER = "current.json"
REDIS_PREFIX = "pmp:online"
REDIS_BATCH = 2_000
REDIS_TIMEOUT_S = 3


class OnlineStoreError(RuntimeError):
    """The online store cannot be used (unreachable, or holds no snapshot); one line naming it and the cause."""


def is_redis(target: str | Path) -> bool:
    return str(target).startswith(("redis://", "rediss://", "unix://"))


def safe_target(target: str | Path) -> str:
    """The target as it may be shown: a URL's password masked."""
    return re.sub(r"(//[^:/@\s]*:)[^@/\s]+@", r"\1***@", str(target))


def _new_version(as_of: date) -> str:
    return f"{pd.Timestamp(as_of):%Y%m%d}-{time.time_ns()}-{uuid.uuid4().hex[:6]}"


def _as_date(as_of) -> date:
    return pd.Timestamp(as_of).date()


# ---------------------------------------------------------------------------------------------------- writing


def write_snapshot(frame: pd.DataFrame, *, as_of, run_id: str, target: str | Path) -> dict:
    """Write ``frame`` (one row per ``customer_id``) as the current online snapshot of ``target`` (a folder or a
    Redis URL) and switch readers to it. Returns ``{"as_of", "run_id", "rows", "target", "version"}``.
    ValueError when ``customer_id`` is missing or repeated; :class:`OnlineStoreError` when Redis is unreachable."""
    if ID not in frame.columns:
        raise ValueError(f"the online snapshot needs a {ID} column; the frame has {list(frame.columns)}")
    repeated = frame[ID].duplicated()
    if repeated.any():
        raise ValueError(
            f"{ID} must be unique in the online snapshot; repeated: {frame[ID][repeated].head(3).tolist()}"
        )
    as_of = _as_date(as_of)
    version = _new_version(as_of)
    columns = list(map(str, frame.columns))
    meta = {
        "as_of": as_of.isoformat(),
        "run_id": run_id,
        "rows": len(frame),
        "columns": columns,
        "version": version,
    }
    if is_redis(target):
        _write_redis(frame, meta, str(target))
    else:
        _write_folder(frame, meta, Path(target))
    return {
        "as_of": meta["as_of"],
        "run_id": run_id,
        "rows": len(frame),
        "target": safe_target(target),
        "version": version,
    }


def _write_folder(frame: pd.DataFrame, meta: dict, folder: Path) -> None:
    name = f"snapshot-{meta['version']}.parquet"
    storage.write_frame(frame.reset_index(drop=True), folder / name)
    previous = _pointer(folder)
    storage.write_json_atomic(folder / POINTER, {**meta, "file": name})
    keep = {name, previous["file"] if previous else None}
    for old in folder.glob("snapshot-*.parquet"):
        if old.name not in keep:
            old.unlink(missing_ok=True)


def _kind(column: pd.Series) -> str:
    """How a column is held for lookups: ``float`` (NaN kept), ``int`` and ``bool`` (no missing value), else
    ``object`` (Python values, None where missing)."""
    kind, plain = column.dtype, not isinstance(column.dtype, pd.api.extensions.ExtensionDtype)
    if plain and pd.api.types.is_float_dtype(kind):
        return "float"
    for name, test in (("int", pd.api.types.is_integer_dtype), ("bool", pd.api.types.is_bool_dtype)):
        if test(kind) and (plain or not column.isna().any()):
            return name
    return "object"


_DTYPES = {"float": np.float64, "int": np.int64, "bool": np.bool_}


def _python_columns(frame: pd.DataFrame) -> list[list]:
    """Each column as a list of Python values: int, float (NaN kept), bool, str, or None for a missing value
    of any other type."""
    out = []
    for name in frame.columns:
        column = frame[name]
        kind = _kind(column)
        if kind == "object":
            out.append([None if _missing(v) else _plain(v) for v in column.astype(object).to_numpy()])
        else:
            out.append(column.to_numpy(_DTYPES[kind]).tolist())
    return out


def _missing(value) -> bool:
    return (
        value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value))
    )


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp | date):
        return value.isoformat()
    return value


# ------------------------------------------------------------------------------------------------- reading


class OnlineSnapshot:
    """A snapshot read for lookups: ``as_of``, ``run_id``, ``columns``, ``row(customer_id)``, ``len()``."""

    as_of: date
    run_id: str
    columns: tuple[str, ...]

    def row(self, customer_id: int) -> dict | None:
        """The customer's row (column -> value), None when the snapshot has no such customer."""
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError


class _MemorySnapshot(OnlineSnapshot):
    """A folder snapshot held in memory: columns grouped by kind into 2-D blocks (float, int, bool, object), and
    a dict from customer id to row position; a lookup is one ``tolist()`` per block and a reorder."""

    def __init__(self, frame: pd.DataFrame, meta: dict) -> None:
        self.as_of = _as_date(meta["as_of"])
        self.run_id = str(meta["run_id"])
        self.columns = tuple(map(str, frame.columns))
        groups: dict[str, list[str]] = {"float": [], "int": [], "bool": [], "object": []}
        for name in frame.columns:
            groups[_kind(frame[name])].append(name)
        self._blocks = []
        order: list[str] = []
        for kind, names in groups.items():
            if not names:
                continue
            if kind == "object":
                block = np.array(_python_columns(frame[names]), dtype=object).T.copy()
            else:
                block = np.column_stack([frame[n].to_numpy(_DTYPES[kind]) for n in names])
            self._blocks.append(block)
            order += names
        position = {name: i for i, name in enumerate(order)}
        self._reorder = operator.itemgetter(*(position[c] for c in self.columns))
        self._positions = dict(zip(frame[ID].to_numpy().tolist(), range(len(frame)), strict=True))

    def row(self, customer_id: int) -> dict | None:
        pos = self._positions.get(customer_id)
        if pos is None:
            return None
        values: list = []
        for block in self._blocks:
            values += block[pos].tolist()
        picked = self._reorder(values)
        return dict(zip(self.columns, picked if len(self.columns) > 1 else (picked,), strict=True))

    def __len__(self) -> int:
        return len(self._positions)


def _pointer(folder: Path) -> dict | None:
    path = folder / POINTER
    return storage.read_json(path) if path.is_file() else None


def snapshot_info(target: str | Path) -> dict | None:
    """The current snapshot's ``{"as_of", "run_id", "rows", "columns", "version"}`` without loading its rows, None
    when the store holds none."""
    if is_redis(target):
        client = _connect(str(target))
        version = client.get(f"{REDIS_PREFIX}:current")
        return None if version is None else _redis_meta(client, str(target), version.decode())
    pointer = _pointer(Path(target))
    return None if pointer is None else {k: v for k, v in pointer.items() if k != "file"}


def open_snapshot(target: str | Path) -> OnlineSnapshot:
    """The current snapshot of ``target`` (a folder: loaded into memory; a Redis URL: read key by key).
    :class:`OnlineStoreError` when the store holds no snapshot or Redis is unreachable."""
    if is_redis(target):
        return _RedisSnapshot(str(target))
    folder = Path(target)
    pointer = _pointer(folder)
    if pointer is None:
        raise OnlineStoreError(
            f"online store {folder} holds no snapshot ({POINTER} is missing): refresh it first"
        )
    return _MemorySnapshot(storage.read_frame(folder / pointer["file"]), pointer)


# --------------------------------------------------------------------------------------------------- Redis


def _connect(url: str):
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=REDIS_TIMEOUT_S, socket_timeout=REDIS_TIMEOUT_S)
    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OnlineStoreError(f"online store {safe_target(url)} is unreachable: {cause}") from None
    return client


def _keys(version: str) -> str:
    return f"{REDIS_PREFIX}:v:{version}"


def _redis_meta(client, url: str, version: str) -> dict:
    raw = client.get(f"{_keys(version)}:meta")
    if raw is None:
        raise OnlineStoreError(f"online store {safe_target(url)}: version {version} has no meta key")
    return json.loads(raw)


def _write_redis(frame: pd.DataFrame, meta: dict, url: str) -> None:
    client = _connect(url)
    base = _keys(meta["version"])
    ids = frame[ID].to_numpy().tolist()
    values = _python_columns(frame)
    with client.pipeline(transaction=False) as pipe:
        for n, (cid, row) in enumerate(zip(ids, zip(*values, strict=True), strict=True), start=1):
            pipe.set(f"{base}:c:{cid}", json.dumps(row, separators=(",", ":")))
            if n % REDIS_BATCH == 0:
                pipe.execute()
        pipe.set(f"{base}:meta", json.dumps(meta))
        pipe.execute()
    client.set(f"{REDIS_PREFIX}:current", meta["version"])  # the switch
    for old in _old_versions(client, meta["version"]):
        _delete_prefix(client, f"{_keys(old)}:")


def _old_versions(client, current: str) -> set[str]:
    found = set()
    for key in client.scan_iter(match=f"{REDIS_PREFIX}:v:*:meta", count=1_000):
        version = key.decode().removeprefix(f"{REDIS_PREFIX}:v:").removesuffix(":meta")
        if version != current:
            found.add(version)
    return found


def _delete_prefix(client, prefix: str) -> None:
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{prefix}*", count=REDIS_BATCH):
        batch.append(key)
        if len(batch) >= REDIS_BATCH:
            client.unlink(*batch)
            batch.clear()
    if batch:
        client.unlink(*batch)


# The current version and the customer's row of it, atomically (a switch between two GETs would mix versions).
_ROW_SCRIPT = """
local version = redis.call('GET', KEYS[1])
if not version then return {false, false} end
return {version, redis.call('GET', ARGV[1] .. version .. ':c:' .. ARGV[2])}
"""


class _RedisSnapshot(OnlineSnapshot):
    """The current Redis snapshot; a lookup is one round trip. It follows a switch: after one, ``row()`` reads the
    new version and ``as_of``, ``run_id`` and ``columns`` are the new version's (those of the row last read)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._client = _connect(url)
        self._script = self._client.register_script(_ROW_SCRIPT)
        version = self._client.get(f"{REDIS_PREFIX}:current")
        if version is None:
            raise OnlineStoreError(f"online store {safe_target(url)} holds no snapshot: refresh it first")
        self._use(version.decode())

    def _use(self, version: str) -> None:
        meta = _redis_meta(self._client, self._url, version)
        self._version = version
        self.as_of = _as_date(meta["as_of"])
        self.run_id = str(meta["run_id"])
        self.columns = tuple(meta["columns"])
        self._rows = int(meta["rows"])

    def row(self, customer_id: int) -> dict | None:
        version, raw = self._script(
            keys=[f"{REDIS_PREFIX}:current"], args=[f"{REDIS_PREFIX}:v:", int(customer_id)]
        )
        if version and version.decode() != self._version:
            self._use(version.decode())
        return None if raw is None else dict(zip(self.columns, json.loads(raw), strict=True))

    def __len__(self) -> int:
        return self._rows
