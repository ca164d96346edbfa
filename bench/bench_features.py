"""Feature-build benchmark: `load_tables` + `build_features` for every customer at one as-of date, against the
same wide table computed by one DuckDB SQL query over the same Parquet files.

    python bench/bench_features.py bench/out/synth1m                    # a data folder (with lake/) or a lake
    python bench/bench_features.py bench/out/synth1m --as-of 2025-12-01 --threads 2

Arguments: the lake (or the data folder holding ``lake/``); ``--as-of`` (default: the lake's end,
``storage.lake_end``); ``--threads`` for DuckDB (default 2, the cores of the development machines); ``--skip-duckdb``
to time our build alone.

The issue's goal: ours within 2x of DuckDB on the 1M-customer lake (≈ 60M transactions in the 180-day lookback).
The DuckDB query reads the same month partitions ``load_tables`` reads and computes every numeric feature of the
catalogue with the same filtering (events in ``(as_of - 180d, as_of)``, customers open at ``as_of``); the script
asserts that both tables agree on every column (allclose on a join on ``customer_id``) before it prints the ratio,
so the comparison is between two builds of the same table. Peak memory is the process RSS: ours runs first in a
fresh process; DuckDB's peak is printed with the RSS it started from, since our frames are still held for the
comparison.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import psutil  # noqa: E402
from _measure import measure  # noqa: E402

from pipelines.data import storage  # noqa: E402
from pipelines.data.schema import APP_EVENT_TYPES, MERCHANT_CATEGORIES  # noqa: E402
from pipelines.features.catalogue import (
    CATEGORICAL_FEATURES,
    FEATURE_NAMES,
    ID,
    LOGIN_WINDOWS,
    TXN_WINDOWS,
    WindowContract,
)
from pipelines.features.wide_table import build_features, load_tables, lookback_months

DAY_US = 86_400_000_000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("path", type=Path, help="data folder holding lake/, or the lake folder itself")
    parser.add_argument("--as-of", default=None, help="snapshot date (default: the lake's end)")
    parser.add_argument("--threads", type=int, default=2, help="DuckDB threads (default 2)")
    parser.add_argument("--skip-duckdb", action="store_true", help="time our build only")
    args = parser.parse_args()

    lake = args.path / "lake" if (args.path / "lake").is_dir() else args.path
    as_of = pd.Timestamp(args.as_of or storage.lake_end(lake))
    window = WindowContract()
    files = _lookback_files(lake, as_of, window)
    print(f"lake {lake}, as of {as_of:%Y-%m-%d}, lookback {window.lookback_days} days")
    print(f"load average before: {_load()}")

    with measure("ours: load_tables + build_features") as ours:
        started = time.perf_counter()
        tables = load_tables(lake, as_of, window)
        loaded = time.perf_counter() - started
        wide = build_features(tables, as_of, window)
    print(f"  load_tables {loaded:.1f} s, build_features {ours['seconds'] - loaded:.1f} s")
    loaded_rows = {name: len(frame) for name, frame in tables.items()}
    print("  rows loaded: " + ", ".join(f"{t} {n:,}" for t, n in loaded_rows.items()))
    del tables
    gc.collect()
    import pyarrow as pa

    pa.default_memory_pool().release_unused()  # give the read buffers back before DuckDB's peak is taken
    print(f"  wide table: {len(wide):,} customers x {wide.shape[1] - 1} features")
    print(f"load average after ours: {_load()}")
    if args.skip_duckdb:
        return

    import duckdb

    con = duckdb.connect(config={"threads": args.threads})
    threads = con.execute("SELECT current_setting('threads')").fetchall()[0][0]
    lookback_txns = con.execute(
        "SELECT count(*) FROM read_parquet($files) WHERE txn_ts > $lo AND txn_ts < $as_of",
        {
            "files": files["transactions"],
            "lo": as_of - pd.Timedelta(days=window.lookback_days),
            "as_of": as_of,
        },
    ).fetchall()[0][0]
    sql = _feature_sql(files, as_of, window)
    start_rss = psutil.Process().memory_info().rss / 2**30
    with measure(f"duckdb ({threads} threads): one SQL query -> pandas") as duck:
        theirs = con.execute(sql).df()
    print(f"  (DuckDB started from {start_rss:.2f} GiB RSS: our wide table, the interpreter, freed heap)")
    print(f"load average after duckdb: {_load()}")

    compared, worst_col, worst = _compare(wide, theirs)
    print(
        f"checked: {compared} columns equal (allclose rtol 1e-9, atol 1e-6), max abs diff {worst:.3g} ({worst_col})"
    )
    print()
    print(f"transactions in the lookback: {lookback_txns:,} (of {loaded_rows['transactions']:,} read)")
    print(f"customers:                    {len(wide):,}")
    print(f"ours:                         {ours['seconds']:.1f} s, peak {ours['peak_rss_gb']:.2f} GiB")
    print(
        f"duckdb ({threads} threads):           {duck['seconds']:.1f} s, peak {duck['peak_rss_gb']:.2f} GiB "
        f"(+{duck['peak_rss_gb'] - start_rss:.2f} GiB over its start)"
    )
    print(f"ratio ours / duckdb:          {ours['seconds'] / duck['seconds']:.2f}x (goal <= 2x)")


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in psutil.getloadavg())


def _lookback_files(lake: Path, as_of: pd.Timestamp, window: WindowContract) -> dict[str, list[str]]:
    """The Parquet files `load_tables` reads: the lookback's month partitions (customers whole)."""
    months = lookback_months(as_of, window)
    out = {"customers": [str(f) for f in storage.table_files(lake, "customers")]}
    for name in ("transactions", "app_events", "balances", "campaign_contacts", "responses"):
        present = [m for m in months if m in set(storage.list_months(lake, name))]
        out[name] = [str(f) for f in storage.table_files(lake, name, present)] if present else []
        if not out[name]:
            raise SystemExit(f"{name} has no partition in the lookback: the SQL needs at least one file")
    return out


def _files(paths: list[str]) -> str:
    return "read_parquet([" + ", ".join(f"'{p}'" for p in paths) + "])"


def _feature_sql(files: dict[str, list[str]], as_of: pd.Timestamp, window: WindowContract) -> str:
    """Every catalogue feature in SQL, with the definitions of `pipelines.features` (see its CATALOGUE).

    Mirrored to the letter, boundary included: the lookback holds events with age < 180 days (``ts > as_of -
    180d``), as every N-day window holds age < N.
    """
    a = f"TIMESTAMP '{as_of:%Y-%m-%d %H:%M:%S}'"
    lo = f"({a} - INTERVAL {window.lookback_days} DAY)"
    cap = window.lookback_days + 1

    def since(ts: str) -> str:  # age in days, floored
        return f"((epoch_us({a}) - epoch_us({ts})) // {DAY_US})"

    def within(ts: str, days: int) -> str:  # age < days
        return f"{ts} > {a} - INTERVAL {days} DAY"

    prior = f"txn_ts <= {a} - INTERVAL 30 DAY AND txn_ts > {a} - INTERVAL 120 DAY"
    txn_cols = []
    for w in TXN_WINDOWS:
        txn_cols.append(f"count(*) FILTER ({within('txn_ts', w)}) AS txn_count_{w}d")
        txn_cols.append(f"sum(amount) FILTER ({within('txn_ts', w)}) AS spend_{w}d")
    txn_cols += [
        f"min({since('txn_ts')}) AS days_since_last_txn",
        f"sum(amount) FILTER ({prior}) AS spend_prior",
        f"count(*) FILTER ({prior}) AS txn_prior",
        f"count(DISTINCT {since('txn_ts')}) FILTER ({within('txn_ts', 30)}) AS active_days_30d",
        "count(*) FILTER (is_cross_border) AS n_cross_border",
        "count(*) FILTER (is_installment) AS n_installment",
        "count(*) FILTER (channel = 'online') AS n_online",
        "count(*) FILTER (channel = 'mobile_wallet') AS n_mobile_wallet",
    ]
    txn_cols += [
        f"sum(amount) FILTER (merchant_category = '{c}') AS spend_at_{c}" for c in MERCHANT_CATEGORIES
    ]
    login = "event_type = 'login'"
    ev_cols = [f"count(*) FILTER ({login} AND {within('event_ts', w)}) AS logins_{w}d" for w in LOGIN_WINDOWS]
    ev_cols += [
        f"count(*) FILTER ({login} AND event_ts <= {a} - INTERVAL 30 DAY AND {within('event_ts', 120)}) AS logins_prior",
        f"min({since('event_ts')}) FILTER ({login}) AS days_since_last_login",
    ]
    ev_cols += [
        f"count(*) FILTER (event_type = '{e}' AND {within('event_ts', 90)}) AS {e}_90d"
        for e in APP_EVENT_TYPES
        if e != "login"
    ]

    def z(col: str) -> str:
        return f"coalesce({col}, 0)::DOUBLE"

    def ratio(num: str, den: str) -> str:
        return f"CASE WHEN {den} > 0 THEN {num} / {den} END"

    select = [
        f"c.{ID}",
        f"year({a}) - c.birth_year AS age_years",
        f"date_diff('day', c.signup_date, {a}::DATE) AS tenure_days",
        "c.city_tier::BIGINT AS city_tier",
        "c.credit_limit",
        *[f"c.{col}::VARCHAR AS {col}" for col in CATEGORICAL_FEATURES],
    ]
    for w in TXN_WINDOWS:
        select += [f"{z(f't.txn_count_{w}d')} AS txn_count_{w}d", f"{z(f't.spend_{w}d')} AS spend_{w}d"]
    select += [
        f"coalesce(t.days_since_last_txn, {cap})::DOUBLE AS days_since_last_txn",
        f"{ratio(z('t.spend_90d'), z('t.txn_count_90d'))} AS avg_ticket_90d",
        f"{ratio(z('t.spend_30d'), z('t.txn_count_30d'))} AS avg_ticket_30d",
        f"{z('t.spend_30d')} / ({z('t.spend_prior')} / 3 + 1) AS spend_trend_30d_vs_prior_90d",
        f"{z('t.txn_count_30d')} / ({z('t.txn_prior')} / 3 + 1) AS txn_trend_30d_vs_prior_90d",
        f"{z('t.active_days_30d')} AS active_days_30d",
        *[
            f"{ratio(z(f't.n_{f}'), z('t.txn_count_180d'))} AS {f}_share_180d"
            for f in ("cross_border", "installment", "online", "mobile_wallet")
        ],
        *[
            f"{ratio(z(f't.spend_at_{c}'), z('t.spend_180d'))} AS cat_{c}_spend_share_180d"
            for c in MERCHANT_CATEGORIES
        ],
        *[f"{z(f'e.logins_{w}d')} AS logins_{w}d" for w in LOGIN_WINDOWS],
        f"{z('e.logins_30d')} / ({z('e.logins_prior')} / 3 + 1) AS logins_trend_30d_vs_prior_90d",
        f"coalesce(e.days_since_last_login, {cap})::DOUBLE AS days_since_last_login",
        *[f"{z(f'e.{e}_90d')} AS {e}_90d" for e in APP_EVENT_TYPES if e != "login"],
        "b.aum_0 AS aum_last",
        f"{ratio('b.aum_0', 'b.aum_1')} - 1 AS aum_change_1m",
        f"{ratio('b.aum_0', 'b.aum_3')} - 1 AS aum_change_3m",
        "b.aum_mean_6m",
        "b.card_0 AS card_balance_last",
        f"{ratio('b.card_0', 'c.credit_limit')} AS credit_utilisation",
        f"{z('k.contacts')} AS campaign_contacts_180d",
        f"{z('r.conversions')} AS campaign_conversions_180d",
        f"coalesce(k.days_since_last_contact, {cap})::DOUBLE AS days_since_last_contact",
    ]
    return f"""
    WITH c AS (
        SELECT * FROM {_files(files["customers"])}
        WHERE signup_date < {a} AND (closed_date IS NULL OR closed_date >= {a})
    ),
    t AS (
        SELECT {ID}, {", ".join(txn_cols)}
        FROM {_files(files["transactions"])}
        WHERE txn_ts > {lo} AND txn_ts < {a}
        GROUP BY {ID}
    ),
    e AS (
        SELECT {ID}, {", ".join(ev_cols)}
        FROM {_files(files["app_events"])}
        WHERE event_ts > {lo} AND event_ts < {a}
        GROUP BY {ID}
    ),
    bk AS (
        SELECT * FROM {_files(files["balances"])}
        WHERE month_end < {a} AND month_end >= {a} - INTERVAL 7 MONTH
    ),
    months AS (
        SELECT month_end, row_number() OVER (ORDER BY month_end DESC) - 1 AS k
        FROM (SELECT DISTINCT month_end FROM bk)
        QUALIFY k < 6
    ),
    b AS (
        SELECT {ID},
            any_value(aum) FILTER (k = 0) AS aum_0,
            any_value(aum) FILTER (k = 1) AS aum_1,
            any_value(aum) FILTER (k = 3) AS aum_3,
            avg(aum) AS aum_mean_6m,
            any_value(card_balance) FILTER (k = 0) AS card_0
        FROM bk JOIN months USING (month_end)
        GROUP BY {ID}
    ),
    k AS (
        SELECT {ID}, count(*) AS contacts, min({since("sent_at")}) AS days_since_last_contact
        FROM {_files(files["campaign_contacts"])}
        WHERE "group" = 'treatment' AND sent_at IS NOT NULL AND sent_at > {lo} AND sent_at < {a}
        GROUP BY {ID}
    ),
    r AS (
        SELECT {ID}, count(*) AS conversions
        FROM {_files(files["responses"])}
        WHERE event_type = 'converted' AND event_ts > {lo} AND event_ts < {a}
        GROUP BY {ID}
    )
    SELECT {", ".join(select)}
    FROM c
    LEFT JOIN t USING ({ID}) LEFT JOIN e USING ({ID}) LEFT JOIN b USING ({ID})
    LEFT JOIN k USING ({ID}) LEFT JOIN r USING ({ID})
    ORDER BY {ID}
    """


def _compare(ours: pd.DataFrame, theirs: pd.DataFrame) -> tuple[int, str, float]:
    """Assert both wide tables hold the same customers and values; return (columns, worst column, its diff)."""
    assert list(theirs.columns) == list(ours.columns), set(ours.columns) ^ set(theirs.columns)
    joined = ours.merge(theirs, on=ID, how="outer", suffixes=("", "_duckdb"), indicator=True)
    only = joined["_merge"].value_counts()
    assert (joined["_merge"] == "both").all(), f"customers differ: {only.to_dict()}"
    worst_col, worst = "", 0.0
    for name in FEATURE_NAMES:
        mine, other = joined[name], joined[f"{name}_duckdb"]
        if name in CATEGORICAL_FEATURES:
            same = mine.astype(str).to_numpy() == other.astype(str).to_numpy()
            assert same.all(), f"{name}: {int((~same).sum())} rows differ"
            continue
        x = mine.to_numpy(np.float64, na_value=np.nan)
        y = pd.to_numeric(other).to_numpy(np.float64, na_value=np.nan)
        ok = np.isclose(x, y, rtol=1e-9, atol=1e-6, equal_nan=True)
        assert ok.all(), (
            f"{name}: {int((~ok).sum()):,} rows differ, e.g. ours {x[~ok][:3]} duckdb {y[~ok][:3]}"
        )
        both = np.isfinite(x) & np.isfinite(y)
        diff = float(np.max(np.abs(x[both] - y[both]), initial=0.0))
        if diff >= worst:
            worst_col, worst = name, diff
    return len(FEATURE_NAMES), worst_col, worst


if __name__ == "__main__":
    main()
