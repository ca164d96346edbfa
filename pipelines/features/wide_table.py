"""The customer wide table: one row per customer open at ``as_of``, built only from facts strictly before it.

This is the single definition of every feature; training and scoring both call :func:`build_features`. The
catalogue (``catalogue.CATALOGUE``) names each column with its definition, window and source table;
``docs/features.md`` is rendered from it and a test checks that the built columns and the catalogue are the same
list.

A source may lack an optional table (a retailer: no ``balances``, no ``app_events``): the features computed from
it are left out of the wide table, not filled with zeros, and the frame says which and why in
``wide.attrs["features_left_out"]`` (:func:`left_out_of`); :func:`write_wide_table` writes that list beside the
Parquet file. Only ``customers`` is required (a source of past campaigns alone has no transactions).

Window aggregates use ``np.bincount`` over customer positions instead of ``groupby``: one pass per column over
the events already cut to the lookback.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from pipelines.data import storage
from pipelines.data.schema import APP_EVENT_TYPES, CITY_TIERS, MERCHANT_CATEGORIES, TABLES, Column, Table
from pipelines.features.catalogue import (
    CATALOGUE,
    CATEGORICAL_FEATURES,
    FEATURE_NAMES,
    ID,
    LOGIN_WINDOWS,
    OPTIONAL_TABLES,
    REQUIRED_TABLES,
    STATIC_CATEGORIES,
    TXN_WINDOWS,
    WindowContract,
    left_out_features,
)
from pipelines.progress import Progress, track

# --------------------------------------------------------------------------------------------------------------


# The source columns features and labels read (keys of events, and personal data, are never loaded).
SOURCE_COLUMNS = {
    "customers": [
        ID,
        "signup_date",
        "closed_date",
        "birth_year",
        "city_tier",
        "credit_limit",
        *STATIC_CATEGORIES,
    ],
    "transactions": [
        ID,
        "txn_ts",
        "amount",
        "merchant_category",
        "is_cross_border",
        "is_installment",
        "channel",
    ],
    "app_events": [ID, "event_ts", "event_type"],
    "balances": [ID, "month_end", "aum", "card_balance"],
    "campaign_contacts": [ID, "group", "sent_at"],
    "responses": [ID, "event_type", "event_ts"],
}


LEFT_OUT = "features_left_out"  # key of wide.attrs and of the JSON beside the Parquet file


def available_tables(lake) -> tuple[str, ...]:
    """The source tables the lake holds (a folder with at least one Parquet part file): the required ones, then
    the optional ones present. :class:`storage.LakeError` naming the lake and the table when a required one is
    missing."""
    for name in REQUIRED_TABLES:
        if not storage.has_table(lake, name):
            raise storage.LakeError(
                f"the lake at {lake} has no {name} table (no Parquet part file under "
                f"{storage.table_dir(lake, name)}); the wide table needs {' and '.join(REQUIRED_TABLES)}"
            )
    return (*REQUIRED_TABLES, *(t for t in OPTIONAL_TABLES if storage.has_table(lake, t)))


def load_tables(
    lake,
    as_of: date | pd.Timestamp,
    window: WindowContract | None = None,
    extra_until: pd.Timestamp | None = None,
    progress: Progress = None,
) -> dict[str, pd.DataFrame]:
    """The source frames a snapshot at ``as_of`` needs, reading only the lookback's month partitions.

    ``extra_until`` also reads the months up to that date (a label window); features still ignore them.
    ``progress`` hears of the tables read. Only the tables the lake holds are returned
    (:func:`available_tables`): an optional table the source lacks is not a key, so its features are left out;
    a table the lake holds with no partition in the window is an empty frame (no events: counts of 0).
    """
    months = lookback_months(as_of, window)
    if extra_until is not None:
        later = pd.period_range(pd.Timestamp(as_of), pd.Timestamp(extra_until), freq="M")
        months = sorted(set(months) | {p.strftime("%Y-%m") for p in later})
    names = available_tables(lake)
    tables = {}
    with track(len(names), "reading the lake", unit="tables", progress=progress) as tracker:
        for name in names:
            columns = SOURCE_COLUMNS[name]
            present = (
                None
                if name == "customers"
                else [m for m in months if m in set(storage.list_months(lake, name))]
            )
            tables[name] = (
                storage.read_table(lake, name, months=present, columns=columns)
                if present is None or present
                else TABLES[name].arrow_schema.empty_table().select(columns).to_pandas(date_as_object=False)
            )
            tracker.advance()
    return tables


def eligible_customers(customers: pd.DataFrame, as_of: date | pd.Timestamp) -> pd.DataFrame:
    """Customers whose account is open at ``as_of``: signed up before it and not closed before it."""
    as_of = pd.Timestamp(as_of)
    open_ = (customers["signup_date"] < as_of) & (
        customers["closed_date"].isna() | (customers["closed_date"] >= as_of)
    )
    return customers.loc[open_].sort_values(ID).reset_index(drop=True)


def lookback_months(as_of: date | pd.Timestamp, window: WindowContract | None = None) -> list[str]:
    """Month partitions a snapshot at ``as_of`` needs (lookback plus the month of as_of itself)."""
    window = window or WindowContract()
    as_of = pd.Timestamp(as_of)
    first = as_of - pd.Timedelta(days=window.lookback_days)
    return [p.strftime("%Y-%m") for p in pd.period_range(first, as_of, freq="M")]


_CUT_SLICE = 4_000_000


def _concat(parts: list[np.ndarray], dtype) -> np.ndarray:
    """Concatenate and empty ``parts`` (so the caller's slices are freed before the next array is built)."""
    out = np.concatenate(parts) if parts else np.zeros(0, dtype)
    parts.clear()
    return out


class _Cut:
    """Events of one table inside the lookback, with each row's customer position and age in days.

    Holds the row numbers of the cut, not a copy of it: ``cut[column]`` takes the one column a feature needs
    (copying whole frames through boolean ``.loc`` was most of the time and memory on 60M transactions).
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        ts: str,
        index: pd.Index,
        as_of: pd.Timestamp,
        lookback: int,
        min_age: int = 0,
    ):
        """Events with age in ``[min_age, lookback)`` days (age > 0 when ``min_age`` is 0: strictly before
        ``as_of``)."""
        stamps = frame[ts].to_numpy()
        ids = frame[ID].to_numpy()
        end = as_of.to_datetime64()
        start = (as_of - pd.Timedelta(days=lookback)).to_datetime64()
        newest = (as_of - pd.Timedelta(days=min_age)).to_datetime64()
        unit = np.timedelta64(1, "D") / np.timedelta64(1, stamps.dtype.name[11:-1] or "us")
        row_type = np.int32 if len(frame) < 2**31 else np.int64
        rows, pos, age = [], [], []
        # In slices, keeping int32 row numbers and positions: the int64 temporaries of a whole table of tens of
        # millions of events were the peak of a 1M-customer build.
        for lo in range(0, len(frame), _CUT_SLICE):
            st = stamps[lo : lo + _CUT_SLICE]
            # age < lookback, like every N-day window; age >= min_age (or > 0)
            r = np.flatnonzero(((st <= newest) if min_age else (st < end)) & (st > start))
            p = index.get_indexer(ids[lo : lo + _CUT_SLICE][r])
            keep = p >= 0
            r, p = r[keep], p[keep]
            # (end - stamp) in days exactly as numpy's timedelta division computes it.
            a = (end - st[r]).view(np.int64).astype(np.float64)
            a /= unit
            rows.append((r + lo).astype(row_type))
            pos.append(p.astype(np.int32))
            age.append(a)
        self.source = frame
        self.rows = _concat(rows, row_type)
        self.pos = _concat(pos, np.int32)
        self.age = _concat(age, np.float64)
        self.n = len(index)

    def __getitem__(self, column: str) -> pd.Series:
        return self.source[column].take(self.rows)

    @property
    def frame(self) -> pd.DataFrame:
        """The cut's rows with every column (a copy)."""
        return self.source.take(self.rows)

    def count(self, mask: np.ndarray | None = None) -> np.ndarray:
        pos = self.pos if mask is None else self.pos[mask]
        return np.bincount(pos, minlength=self.n).astype(np.float64)

    def total(self, values: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        pos, vals = (self.pos, values) if mask is None else (self.pos[mask], values[mask])
        return np.bincount(pos, weights=vals, minlength=self.n)

    def total_by(self, values: np.ndarray, codes: np.ndarray, k: int) -> np.ndarray:
        """Sums of ``values`` per customer and code, shape ``(n, k)``; rows with code -1 count nowhere.

        One ``bincount`` over ``pos * k + code``: each cell adds the same rows in the same order as
        ``total(values, codes == j)`` would, so the sums are identical, in one pass instead of ``k``.
        """
        has = codes >= 0
        everywhere = bool(has.all())
        key = (self.pos if everywhere else self.pos[has]).astype(np.int64)
        key *= k  # in place: 60M-row temporaries were the peak of a 1M-customer build
        key += codes if everywhere else codes[has]
        weights = values if everywhere else values[has]
        return np.bincount(key, weights=weights, minlength=self.n * k).reshape(self.n, k)

    def min_days(self, mask: np.ndarray | None = None) -> np.ndarray:
        """Whole days since each customer's latest (masked) event; inf where there is none."""
        out = np.full(self.n, np.inf)
        pos, age = (self.pos, self.age) if mask is None else (self.pos[mask], self.age[mask])
        np.minimum.at(out, pos, np.floor(age))
        return out

    def days_since_last(self, mask: np.ndarray | None, cap: int) -> np.ndarray:
        return _capped(self.min_days(mask), cap)


def _capped(days: np.ndarray, cap: int) -> np.ndarray:
    return np.where(np.isinf(days), cap, days)


BAND_DAYS = 30


def _bands(frame: pd.DataFrame, ts: str, index: pd.Index, as_of: pd.Timestamp, lookback: int):
    """The lookback cut in ``BAND_DAYS``-day age bands, newest first: a 1M-customer build holds one band's arrays
    at a time instead of the whole lookback's (60M+ transactions). Bands are fixed by age, so removing events
    at or after ``as_of`` changes no band and no sum's order."""
    for lo in range(0, lookback, BAND_DAYS):
        yield _Cut(frame, ts, index, as_of, min(lo + BAND_DAYS, lookback), min_age=lo)


class _Sums:
    """Per-customer totals added band by band, in band order (deterministic floating-point sums)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.values: dict[str, np.ndarray] = {}

    def add(self, name: str, values: np.ndarray) -> None:
        if name in self.values:
            self.values[name] += values
        else:
            self.values[name] = np.array(values, dtype=np.float64)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.values.get(name, np.zeros(self.n))


def _is(column: pd.Series, value: str) -> np.ndarray:
    """Boolean mask of rows equal to ``value`` (compares category codes, not strings, when categorical)."""
    return (column == value).to_numpy(dtype=bool, na_value=False)


def _codes(column: pd.Series, values: tuple[str, ...]) -> np.ndarray:
    """Index in ``values`` of each row's value, -1 where it is none of them (the rows :func:`_is` says no to)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        lookup = [values.index(c) if c in values else -1 for c in column.cat.categories]
        return np.array([*lookup, -1], dtype=np.int64)[column.cat.codes.to_numpy()]
    return pd.Categorical(column, categories=list(values)).codes.astype(np.int64)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def build_features(
    tables: Mapping[str, pd.DataFrame], as_of: date | pd.Timestamp, window: WindowContract | None = None
) -> pd.DataFrame:
    """The wide table at ``as_of``: one row per open customer, columns ``customer_id`` + ``FEATURE_NAMES``.

    ``tables`` maps source table names to frames (only the lookback months are needed for event tables). No
    value at or after ``as_of`` can change any feature. An optional table missing from ``tables`` (or None)
    leaves out the features computed from it (``catalogue.left_out_features``): they are not columns, and
    ``wide.attrs["features_left_out"]`` lists them with why (``[{"feature": "aum_last", "reason": "no balances
    table"}, ...]``; ``wide.attrs["tables_absent"]`` the tables). Every other feature has the value it has when
    all tables are there. ``customers`` is required (ValueError naming it when missing).
    """
    given = sorted(k for k, v in tables.items() if v is not None)
    for name in REQUIRED_TABLES:
        if tables.get(name) is None:
            raise ValueError(f"the wide table needs the {name} table; the tables given are {given}")
    absent = [t for t in OPTIONAL_TABLES if tables.get(t) is None]
    left_out = left_out_features(absent)
    window = window or WindowContract()
    as_of = pd.Timestamp(as_of)
    cap = window.lookback_days + 1
    base = eligible_customers(tables["customers"], as_of)
    index = pd.Index(base[ID])
    out: dict[str, object] = {ID: base[ID].to_numpy()}

    out["age_years"] = (as_of.year - base["birth_year"].astype(np.int64)).to_numpy()
    out["tenure_days"] = ((as_of - base["signup_date"]).dt.days).to_numpy()
    out["city_tier"] = base["city_tier"].astype(np.int64).to_numpy()
    out["credit_limit"] = base["credit_limit"].to_numpy()
    for c in STATIC_CATEGORIES:
        out[c] = pd.Categorical(base[c].astype(str), categories=TABLES["customers"].column(c).allowed)

    # One helper per event table: each one's arrays are freed before the next table is cut (peak memory).
    if "transactions" not in absent:
        out.update(_transaction_features(tables["transactions"], index, as_of, window))
    if "app_events" not in absent:
        out.update(_app_features(tables["app_events"], index, as_of, window))
    if "balances" not in absent:
        out.update(_balance_features(tables["balances"], index, as_of, base["credit_limit"].to_numpy()))
    if "campaign_contacts" not in absent:
        contacts = tables["campaign_contacts"]
        contacts = contacts.loc[(contacts["group"] == "treatment") & contacts["sent_at"].notna()]
        sent = _Cut(contacts, "sent_at", index, as_of, window.lookback_days)
        out["campaign_contacts_180d"] = sent.count()
        out["days_since_last_contact"] = sent.days_since_last(None, cap)
    if "responses" not in absent:
        responses = tables["responses"]
        conv = _Cut(
            responses.loc[responses["event_type"] == "converted"],
            "event_ts",
            index,
            as_of,
            window.lookback_days,
        )
        out["campaign_conversions_180d"] = conv.count()

    kept = [f for f in FEATURE_NAMES if f not in left_out]
    if set(out) != {ID, *kept}:  # a catalogue source that does not say which table a feature reads
        raise AssertionError(f"built {sorted(set(out) ^ {ID, *kept})} against the catalogue's inputs")
    wide = pd.DataFrame(out)[[ID, *kept]]
    wide.attrs[LEFT_OUT] = [{"feature": f, "reason": why} for f, why in left_out.items()]
    wide.attrs["tables_absent"] = absent
    return wide


def left_out_of(wide: pd.DataFrame) -> dict[str, str] | None:
    """``{feature: reason}`` of the features :func:`build_features` left out of ``wide`` (``{}``: none), or None
    when the frame does not say (it was not returned by ``build_features``: read it back with
    :func:`read_left_out`)."""
    entries = wide.attrs.get(LEFT_OUT)
    return None if entries is None else {e["feature"]: e["reason"] for e in entries}


def _left_out_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.left_out.json")


def write_wide_table(wide: pd.DataFrame, path: str | Path) -> Path:
    """Write the wide table to ``path`` (Parquet) and, beside it, ``<stem>.left_out.json``: ``{"features":
    [...columns...], "features_left_out": [{"feature", "reason"}...], "tables_absent": [...]}`` (written even when
    nothing was left out, so a reader can tell "all computed" from "not recorded")."""
    path = Path(path)
    left_out = left_out_of(wide)
    if left_out is None:
        raise ValueError(
            f"the frame for {path} does not say which features were left out (build_features' attrs)"
        )
    storage.write_frame(wide, path)
    storage.write_json_atomic(
        _left_out_path(path),
        {
            "features": [c for c in wide.columns if c in FEATURE_NAMES],
            LEFT_OUT: [{"feature": f, "reason": why} for f, why in left_out.items()],
            "tables_absent": list(wide.attrs.get("tables_absent", [])),
        },
    )
    return path


def read_left_out(path: str | Path) -> dict[str, str]:
    """``{feature: reason}`` recorded by :func:`write_wide_table` beside ``path``; :class:`storage.LakeError`
    when there is no record."""
    record = _left_out_path(Path(path))
    if not record.is_file():
        raise storage.LakeError(f"{record} does not exist: write the wide table with write_wide_table")
    return {e["feature"]: e["reason"] for e in storage.read_json(record)[LEFT_OUT]}


def read_wide_table(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """A wide table written by :func:`write_wide_table`, with ``attrs["features_left_out"]`` restored (what the
    gate and the models read)."""
    wide = storage.read_frame(Path(path), columns)
    wide.attrs[LEFT_OUT] = [{"feature": f, "reason": why} for f, why in read_left_out(path).items()]
    return wide


def _transaction_features(
    transactions: pd.DataFrame, index: pd.Index, as_of: pd.Timestamp, window: WindowContract
) -> dict:
    n, k = len(index), len(MERCHANT_CATEGORIES)
    sums = _Sums(n)
    last = np.full(n, np.inf)
    seen = np.zeros((n, 30), dtype=bool)  # customer x day: no sort of 10M+ keys for a distinct count
    spend_at = np.zeros((n, k))
    for txn in _bands(transactions, "txn_ts", index, as_of, window.lookback_days):
        amount = txn["amount"].to_numpy(np.float64)
        for w in TXN_WINDOWS:
            recent = txn.age < w
            sums.add(f"txn_count_{w}d", txn.count(recent))
            sums.add(f"spend_{w}d", txn.total(amount, recent))
        np.minimum(last, txn.min_days(), out=last)
        prior = (txn.age >= 30) & (txn.age < 120)
        sums.add("prior_spend", txn.total(amount, prior))
        sums.add("prior_count", txn.count(prior))
        recent30 = txn.age < 30
        seen[txn.pos[recent30], np.floor(txn.age[recent30]).astype(np.int64)] = True
        sums.add("cross_border", txn.count(txn["is_cross_border"].to_numpy(bool)))
        sums.add("installment", txn.count(txn["is_installment"].to_numpy(bool)))
        for ch in ("online", "mobile_wallet"):
            sums.add(ch, txn.count(_is(txn["channel"], ch)))
        spend_at += txn.total_by(amount, _codes(txn["merchant_category"], MERCHANT_CATEGORIES), k)

    out: dict[str, object] = {}
    for w in TXN_WINDOWS:
        out[f"txn_count_{w}d"] = sums[f"txn_count_{w}d"]
        out[f"spend_{w}d"] = sums[f"spend_{w}d"]
    out["days_since_last_txn"] = _capped(last, window.lookback_days + 1)
    for w in (90, 30):
        out[f"avg_ticket_{w}d"] = _ratio(out[f"spend_{w}d"], out[f"txn_count_{w}d"])
    out["spend_trend_30d_vs_prior_90d"] = out["spend_30d"] / (sums["prior_spend"] / 3 + 1)
    out["txn_trend_30d_vs_prior_90d"] = out["txn_count_30d"] / (sums["prior_count"] / 3 + 1)
    out["active_days_30d"] = seen.sum(axis=1).astype(np.float64)
    n180 = out["txn_count_180d"]
    out["cross_border_share_180d"] = _ratio(sums["cross_border"], n180)
    out["installment_share_180d"] = _ratio(sums["installment"], n180)
    for ch in ("online", "mobile_wallet"):
        out[f"{ch}_share_180d"] = _ratio(sums[ch], n180)
    for j, cat in enumerate(MERCHANT_CATEGORIES):
        out[f"cat_{cat}_spend_share_180d"] = _ratio(spend_at[:, j], out["spend_180d"])
    return out


def _app_features(
    events_frame: pd.DataFrame, index: pd.Index, as_of: pd.Timestamp, window: WindowContract
) -> dict:
    n = len(index)
    sums = _Sums(n)
    last_login = np.full(n, np.inf)
    for events in _bands(events_frame, "event_ts", index, as_of, window.lookback_days):
        event_type = events["event_type"]
        login = _is(event_type, "login")
        for w in LOGIN_WINDOWS:
            sums.add(f"logins_{w}d", events.count(login & (events.age < w)))
        sums.add("prior_logins", events.count(login & (events.age >= 30) & (events.age < 120)))
        np.minimum(last_login, events.min_days(login), out=last_login)
        for e in APP_EVENT_TYPES:
            if e != "login":
                sums.add(f"{e}_90d", events.count(_is(event_type, e) & (events.age < 90)))

    out: dict[str, object] = {f"logins_{w}d": sums[f"logins_{w}d"] for w in LOGIN_WINDOWS}
    out["logins_trend_30d_vs_prior_90d"] = out["logins_30d"] / (sums["prior_logins"] / 3 + 1)
    out["days_since_last_login"] = _capped(last_login, window.lookback_days + 1)
    for e in APP_EVENT_TYPES:
        if e != "login":
            out[f"{e}_90d"] = sums[f"{e}_90d"]
    return out


def _balance_features(
    balances: pd.DataFrame, index: pd.Index, as_of: pd.Timestamp, limit: np.ndarray
) -> dict:
    known = balances.loc[
        (balances["month_end"] < as_of) & (balances["month_end"] >= as_of - pd.DateOffset(months=7))
    ]
    months = sorted(known["month_end"].unique())[-6:]
    pos = index.get_indexer(known[ID])
    keep = pos >= 0
    known, pos = known.loc[keep], pos[keep]
    n = len(index)

    def at(k: int, column: str) -> np.ndarray:
        """Value at the k-th latest month end (k=0: the last), NaN where the customer has no row then."""
        values = np.full(n, np.nan)
        if k < len(months):
            rows = (known["month_end"] == months[-1 - k]).to_numpy()
            values[pos[rows]] = known.loc[rows, column].to_numpy(np.float64)
        return values

    aum = [at(k, "aum") for k in range(6)]
    stack = np.vstack(aum)
    seen = np.isfinite(stack).sum(axis=0)
    aum_mean = np.where(seen > 0, np.nansum(stack, axis=0) / np.maximum(seen, 1), np.nan)
    card = at(0, "card_balance")
    return {
        "aum_last": aum[0],
        "aum_change_1m": _ratio(aum[0], aum[1]) - 1,
        "aum_change_3m": _ratio(aum[0], aum[3]) - 1,
        "aum_mean_6m": aum_mean,
        "card_balance_last": card,
        "credit_utilisation": _ratio(card, limit),
    }


def feature_table_spec() -> Table:
    """The wide table as a :class:`schema.Table` named ``customer_features``: ``customer_id`` (key) and every
    catalogued feature, with the types :func:`build_features` gives them and which of them may be null.

    Great Expectations checks it with ``expectations/customer_features.json`` (``validate.validate_frame(...,
    spec=feature_table_spec())``). Integers: the key, ``age_years``, ``tenure_days``, ``city_tier``; categories:
    ``STATIC_CATEGORIES`` with the customers table's allowed values; every other feature is float64. Nullable:
    ratios whose denominator can be 0 (``avg_ticket_*d``, every ``*_share_180d``) and every feature from
    ``balances`` (null when the customer has no month-end row, or the ratio's base is 0).
    """
    integers = {"age_years", "tenure_days", "city_tier"}
    columns = [Column(ID, pa.int64(), "Customer key: one row per customer open at as_of.")]
    for f in CATALOGUE:
        description = f"{f.definition[:1].upper()}{f.definition[1:]} ({f.window}; from {f.source})."
        nullable = (
            f.name.startswith("avg_ticket_")
            or f.name.endswith("_share_180d")
            or f.source.startswith("balances")
        )
        if f.name in CATEGORICAL_FEATURES:
            kind, allowed = pa.dictionary(pa.int8(), pa.string()), TABLES["customers"].column(f.name).allowed
        elif f.name in integers:
            kind, allowed = pa.int64(), CITY_TIERS if f.name == "city_tier" else None
        else:
            kind, allowed = pa.float64(), None
        columns.append(Column(f.name, kind, description, nullable=nullable, allowed=allowed))
    return Table(
        "customer_features",
        "The customer wide table (features.build_features): one row per customer open at as_of.",
        tuple(columns),
        key=(ID,),
        references={ID: "customers.customer_id"},
    )
