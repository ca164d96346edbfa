"""The contact policy: who a campaign must not or should not contact, and who it picks among the rest.

A campaign's audience is picked in two steps, both pure functions over DataFrames:

1. :func:`apply_policy` removes everyone the bank must not or should not contact, and gives each removed
   customer exactly one reason — the first that applies, in the order of :data:`EXCLUSION_REASONS`;
2. :func:`select_audience` ranks the rest by score and keeps the top ones (``top_k``, ``score_threshold`` or
   ``top_deciles``).

Eligible customers who are not selected are not exclusions: nothing was wrong with them, they were simply not
chosen, so they are counted (``len(eligible) - len(selected)``) but not audited row by row.

Lake reads (:func:`invalid_customers`, :func:`lake_contact_history`) go through ``pipelines.data.storage``;
contacts made by earlier platform runs come from the campaign database (``pipelines.campaigns.store``) and share
the history format (:data:`HISTORY_COLUMNS`). The rules themselves are declared in the spec
(``pipelines.campaigns.spec``).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.campaigns import place_rules
from pipelines.campaigns.place_rules import WithinKmRule
from pipelines.campaigns.spec import AudienceRule, CampaignSpec, InvalidCustomerRule, Selection
from pipelines.data import storage
from pipelines.features.catalogue import ATTRIBUTE_BY_NAME, BY_NAME, OPTIONAL_TABLES

ID = "customer_id"
# Why a customer was excluded, in precedence order: each excluded customer carries the first that applies.
# Audience rules come last and are reported as ``audience:<column> <op> <value>`` (a place rule as
# ``audience:city within <km> km of <branch id or [lat, lon]>``).
EXCLUSION_REASONS = (
    "do_not_contact",
    "opt_out",
    "invalid_customer",
    "recent_contact",
    "frequency_cap",
    "audience",
)
# A contact history frame: one row per treatment contact (control-group customers were not contacted).
HISTORY_COLUMNS = ("customer_id", "campaign", "contact_date")
EXCLUSION_COLUMNS = ("customer_id", "exclusion_reason", "detail")
_COMPARE = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


# --------------------------------------------------------------------------------------------------------------
# Lake reads


def _empty_ids() -> pd.Index:
    return pd.Index(np.array([], dtype=np.int64), name=ID)


def empty_history() -> pd.DataFrame:
    """A contact history with no rows and the right dtypes."""
    return pd.DataFrame(
        {
            ID: np.array([], dtype=np.int64),
            "campaign": pd.Series([], dtype="str"),
            "contact_date": np.array([], dtype="datetime64[us]"),
        }
    )


def lake_contact_history(
    lake_dir: str | Path, as_of: date | pd.Timestamp, lookback_days: int | None = None
) -> pd.DataFrame:
    """Past treatment contacts from the lake's ``campaign_contacts``, sent strictly before ``as_of``.

    Columns :data:`HISTORY_COLUMNS`; ``contact_date`` is the day of ``sent_at``. Holdout rows are left out
    (those customers were not contacted). ``lookback_days`` keeps only contacts on or after
    ``as_of - lookback_days`` days.
    """
    as_of = pd.Timestamp(as_of)
    # Partitions are months of selected_at, which is never after sent_at; how long after the draw a message
    # goes out is not bounded, so earlier partitions are all read (the table is small).
    months = [m for m in storage.list_months(lake_dir, "campaign_contacts") if m <= storage.month_key(as_of)]
    if not months:
        return empty_history()
    frame = storage.read_table(
        lake_dir, "campaign_contacts", months=months, columns=["campaign_id", ID, "group", "sent_at"]
    )
    sent = frame["sent_at"]
    keep = (frame["group"] == "treatment") & sent.notna() & (sent < as_of)
    if lookback_days is not None:
        keep &= sent >= as_of.normalize() - pd.Timedelta(days=lookback_days)
    keep = keep.to_numpy(dtype=bool, na_value=False)
    frame = frame.loc[keep]
    return pd.DataFrame(
        {
            ID: frame[ID].to_numpy(np.int64),
            "campaign": frame["campaign_id"].astype("str").to_numpy(),
            "contact_date": frame["sent_at"].dt.normalize().to_numpy("datetime64[us]"),
        }
    )


# A direct lookup table over the id range is used up to this many slots (int32: 4 bytes each).
_MAX_LOOKUP_SPAN = 64_000_000


def _positions_in(sorted_ids: np.ndarray):
    """A function mapping an id array to the positions, in ``sorted_ids``, of the ids found there.

    Customer ids are dense integers, so a lookup table over their range answers in one gather per id; sparse
    ids fall back to a hash lookup.
    """
    lo, hi = int(sorted_ids[0]), int(sorted_ids[-1])
    span = hi - lo + 1
    if span <= _MAX_LOOKUP_SPAN:
        table = np.full(span, -1, dtype=np.int32)
        table[sorted_ids - lo] = np.arange(sorted_ids.size, dtype=np.int32)

        def positions(ids: np.ndarray) -> np.ndarray:
            ids = ids[(ids >= lo) & (ids <= hi)]
            pos = table[ids - lo]
            return pos[pos >= 0]

        return positions

    index = pd.Index(sorted_ids)

    def positions_hashed(ids: np.ndarray) -> np.ndarray:
        pos = index.get_indexer(ids)
        return pos[pos >= 0]

    return positions_hashed


def invalid_customers(
    lake_dir: str | Path,
    as_of: date | pd.Timestamp,
    rule: InvalidCustomerRule | None,
    progress: Callable[[str], None] | None = None,
) -> pd.Index:
    """Customer ids of dead accounts at ``as_of`` (empty when ``rule`` is None).

    Dead: AUM at the latest month end before ``as_of`` at or below ``rule.max_assets``, and no transaction and no
    app event in ``[as_of - inactive_months months, as_of)``. A customer without a balance row in that month is
    not invalid (low assets cannot be shown). Reads one balance partition, then only ``customer_id`` (plus the
    timestamp in the two edge months) of the event partitions, newest first, stopping once every low-asset
    customer has shown activity. A lake without a ``balances`` table (a retailer) cannot show low assets: nobody
    is invalid, and ``progress`` hears so in one line rather than the rule passing silently.
    """
    if rule is None:
        return _empty_ids()
    if not storage.has_table(lake_dir, "balances"):
        if progress is not None:
            progress(
                "invalid-customer rule not applied: the lake has no balances table (assets cannot be shown), "
                "so no customer is excluded as invalid"
            )
        return _empty_ids()
    as_of = pd.Timestamp(as_of)
    closed_months = [
        m
        for m in storage.list_months(lake_dir, "balances")
        if pd.Period(m, freq="M").end_time.normalize() < as_of
    ]
    if not closed_months:
        return _empty_ids()
    bal = storage.read_arrow(
        lake_dir, "balances", months=[closed_months[-1]], columns=[ID, "month_end", "aum"]
    )
    bal = bal.to_pandas(date_as_object=False)
    bal = bal.loc[bal["month_end"] < as_of].sort_values("month_end").drop_duplicates(ID, keep="last")
    candidates = np.unique(bal.loc[bal["aum"] <= rule.max_assets, ID].to_numpy(np.int64))
    if candidates.size == 0:
        return _empty_ids()

    start = as_of - pd.DateOffset(months=rule.inactive_months)
    window = [p.strftime("%Y-%m") for p in pd.period_range(start, as_of, freq="M")]
    edges = {window[0], window[-1]}
    active = np.zeros(candidates.size, dtype=bool)
    where = _positions_in(candidates)
    lo, hi = np.datetime64(start.to_datetime64(), "us"), np.datetime64(as_of.to_datetime64(), "us")
    for table, ts in (("transactions", "txn_ts"), ("app_events", "event_ts")):
        present = set(storage.list_months(lake_dir, table))
        for month in sorted((m for m in window if m in present), reverse=True):
            columns = [ID, ts] if month in edges else [ID]
            part = storage.read_arrow(lake_dir, table, months=[month], columns=columns)
            ids = part.column(ID).to_numpy().astype(np.int64, copy=False)
            if month in edges:
                t = part.column(ts).to_numpy().astype("datetime64[us]")
                ids = ids[(t >= lo) & (t < hi)]
            active[where(ids)] = True
            if active.all():
                return _empty_ids()
    return pd.Index(candidates[~active], name=ID)


# --------------------------------------------------------------------------------------------------------------
# Contact policy


def contact_counts(
    history: pd.DataFrame, as_of: date | pd.Timestamp, recent_days: int, window_days: int | None
) -> pd.DataFrame:
    """Per contacted customer: ``last_contact_date``, ``last_campaign``, ``contacts_in_window`` and
    ``recent_contact``.

    Only contacts dated strictly before ``as_of`` count. ``contacts_in_window`` counts contacts of every campaign
    dated on or after ``as_of - window_days`` days (0 when ``window_days`` is None or 0); ``recent_contact`` is
    whether the last contact is on or after ``as_of - recent_days`` days (never when ``recent_days`` is 0).
    Exact duplicate rows count once. One row per customer, sorted by ``customer_id``.
    """
    missing = [c for c in HISTORY_COLUMNS if c not in history.columns]
    if missing:
        raise ValueError(f"contact history lacks column(s) {missing}; it needs {list(HISTORY_COLUMNS)}")
    as_of = pd.Timestamp(as_of)
    h = pd.DataFrame(
        {
            ID: history[ID].to_numpy(np.int64),
            "campaign": history["campaign"].astype("str").to_numpy(),
            "contact_date": pd.to_datetime(history["contact_date"]).dt.normalize().to_numpy("datetime64[us]"),
        }
    )
    h = h.loc[h["contact_date"] < as_of].drop_duplicates()
    h = h.sort_values([ID, "contact_date", "campaign"], kind="stable")
    last = h.drop_duplicates(ID, keep="last")
    out = pd.DataFrame(
        {
            ID: last[ID].to_numpy(),
            "last_contact_date": last["contact_date"].to_numpy(),
            "last_campaign": last["campaign"].to_numpy(),
        }
    )
    ids = out[ID].to_numpy()
    if window_days:
        inside = h.loc[h["contact_date"] >= as_of - pd.Timedelta(days=window_days), ID].to_numpy()
        pos = np.searchsorted(ids, inside)
        out["contacts_in_window"] = np.bincount(pos, minlength=len(ids)).astype(np.int64)
    else:
        out["contacts_in_window"] = np.zeros(len(ids), dtype=np.int64)
    if recent_days:
        out["recent_contact"] = (
            out["last_contact_date"] >= as_of - pd.Timedelta(days=recent_days)
        ).to_numpy()
    else:
        out["recent_contact"] = np.zeros(len(ids), dtype=bool)
    return out


def _rule_passes(
    values: pd.Series, rule: AudienceRule | WithinKmRule, branches: pd.DataFrame | None = None
) -> np.ndarray:
    """Rows passing one audience rule; a missing value fails it. A place rule reads ``values`` as the home city
    (``place_rules.rule_passes``; ``branches``: the lake's branches table, None for the places catalogue)."""
    if isinstance(rule, WithinKmRule):
        return place_rules.rule_passes(rule, values, branches)
    op, v = rule.op, rule.value
    try:
        if op == "in":
            passes = values.isin(list(v))
        elif op == "not_in":
            passes = ~values.isin(list(v))
        elif op == "between":
            passes = values.between(v[0], v[1], inclusive="both")
        else:
            passes = _COMPARE[op](values, v)
    except TypeError as e:
        raise ValueError(
            f"audience rule '{rule.label}' cannot be applied to column of dtype {values.dtype}: {e}"
        ) from e
    return passes.to_numpy(dtype=bool, na_value=False) & values.notna().to_numpy()


def audience_rule_passes(
    values: pd.Series, rule: AudienceRule | WithinKmRule, branches: pd.DataFrame | None = None
) -> np.ndarray:
    """Rows of ``values`` (the rule's column) passing one audience rule, as :func:`apply_policy` applies it (the
    real-time path evaluates the rules an event may change this way, one customer at a time)."""
    return _rule_passes(values, rule, branches)


def _flag(customers: pd.DataFrame, column: str, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A customers flag aligned on ``ids``: (set, unknown), unknown where there is no record or a null flag."""
    flags = customers.set_index(ID)[column]
    if flags.index.has_duplicates:
        raise ValueError("customers frame has duplicate customer ids")
    aligned = flags.reindex(ids)
    unknown = aligned.isna().to_numpy()
    return aligned.to_numpy(dtype=bool, na_value=False), unknown


def _text(values: pd.Series | np.ndarray) -> np.ndarray:
    """Values as strings, for exclusion details."""
    return pd.Series(np.asarray(values, dtype=object)).astype("str").fillna("").to_numpy(dtype=object)


def _missing_columns(missing: list[str]) -> str:
    """Why audience rule columns are not in the scored frame, in one line: a catalogued feature the source's
    tables cannot give (a retailer has no balances) is named with the table it needs."""
    why = []
    for column in missing:
        feature = BY_NAME.get(column)
        needs = [t for t in feature.inputs if t in OPTIONAL_TABLES] if feature else []
        if needs:
            why.append(f"{column} is computed from the {' and '.join(needs)} table, which this source lacks")
        elif column in ATTRIBUTE_BY_NAME:
            why.append(
                f"{column} is a customer attribute that run folders written before it existed lack (re-run the "
                "campaign's features step)"
            )
    return f"audience rule column(s) {missing} are not in the scored frame" + (
        f" ({'; '.join(why)}): drop the rule or bring the table" if why else ""
    )


def apply_policy(
    scored: pd.DataFrame,
    customers: pd.DataFrame,
    history: pd.DataFrame,
    invalid: pd.Index,
    spec: CampaignSpec,
    as_of: date | pd.Timestamp,
    *,
    branches: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(eligible, exclusions)`` for a campaign at ``as_of``.

    ``eligible`` keeps the rows of ``scored`` that pass the contact policy and every audience rule, in their
    input order. ``exclusions`` has one row per other customer, in input order: ``customer_id``,
    ``exclusion_reason`` (the first that applies, in the order of :data:`EXCLUSION_REASONS`; an audience rule
    reads ``audience:<column> <op> <value>``) and ``detail``. A customer missing from ``customers`` or with a
    null flag is treated as flagged: consent cannot be shown. ``history`` is a contact history
    (:data:`HISTORY_COLUMNS`, treatment contacts only), ``invalid`` the ids from :func:`invalid_customers`.
    A place rule (``within_km``) resolves a branch id through ``branches`` (the lake's branches table,
    ``place_rules.lake_branches``), or the places catalogue when None; an unknown id is a ValueError naming the
    campaign, the rule and the id.
    """
    if ID not in scored.columns:
        raise ValueError(f"scored frame has no {ID!r} column")
    ids = scored[ID].to_numpy(np.int64)
    if pd.Index(ids).has_duplicates:
        raise ValueError("scored frame has duplicate customer ids")
    missing = sorted({r.column for r in spec.audience} - set(scored.columns))
    if missing:
        raise ValueError(f"campaign {spec.name!r}: {_missing_columns(missing)}")
    policy = spec.contact_policy
    n = len(ids)
    # (reason, excluded mask, detail): the detail is a string or a function of the rows given that reason,
    # so text is only built for the customers who carry the reason.
    reasons: list[tuple[str, np.ndarray, Any]] = []

    for wanted, column, reason in (
        (policy.exclude_do_not_contact, "do_not_contact", "do_not_contact"),
        (policy.exclude_opt_out, "marketing_opt_out", "opt_out"),
    ):
        if wanted:
            flagged, unknown = _flag(customers, column, ids)
            reasons.append(
                (
                    reason,
                    flagged | unknown,
                    lambda rows, u=unknown, c=column: np.where(
                        u[rows], f"no {c} flag on record", f"{c} flag set"
                    ),
                )
            )
    if policy.invalid_customer is not None:
        rule = policy.invalid_customer
        reasons.append(
            (
                "invalid_customer",
                np.isin(ids, np.asarray(invalid, dtype=np.int64)),
                f"aum <= {rule.max_assets:g} and no transaction or app event in {rule.inactive_months} months",
            )
        )
    cap = policy.frequency_cap
    if policy.recent_contact_days or cap is not None:
        counts = contact_counts(history, as_of, policy.recent_contact_days, cap.window_days if cap else None)
        pos = pd.Index(counts[ID]).get_indexer(ids)
        seen = pos >= 0
        at = np.where(seen, pos, 0)
        if policy.recent_contact_days:
            recent = np.zeros(n, dtype=bool)
            recent[seen] = counts["recent_contact"].to_numpy(bool)[pos[seen]]

            def recent_detail(rows: np.ndarray) -> np.ndarray:
                last = pd.Series(counts["last_contact_date"].to_numpy()[at[rows]]).dt.strftime("%Y-%m-%d")
                campaign = _text(counts["last_campaign"].to_numpy()[at[rows]])
                return (
                    "last contact " + last.to_numpy(dtype=object) + " (" + campaign + ")"
                    f", within {policy.recent_contact_days} days"
                )

            reasons.append(("recent_contact", recent, recent_detail))
        if cap is not None:
            in_window = np.zeros(n, dtype=np.int64)
            in_window[seen] = counts["contacts_in_window"].to_numpy(np.int64)[pos[seen]]
            reasons.append(
                (
                    "frequency_cap",
                    in_window >= cap.max_contacts,
                    lambda rows: (
                        _text(in_window[rows])
                        + f" contacts in the last {cap.window_days} days (cap {cap.max_contacts})"
                    ),
                )
            )
    for rule in spec.audience:
        values = scored[rule.column]
        missing_note = f"{rule.column} is missing"
        if rule.column in ATTRIBUTE_BY_NAME and n and values.isna().all():
            missing_note += " (no customer has one: the lake's customers table may lack the column)"
        if isinstance(rule, WithinKmRule):
            try:
                passes = _rule_passes(values, rule, branches)
            except ValueError as e:
                raise ValueError(f"campaign {spec.name!r}: {e}") from e
        else:
            passes = _rule_passes(values, rule)

        def audience_detail(
            rows: np.ndarray, values: pd.Series = values, rule=rule, note: str = missing_note
        ):
            if isinstance(rule, WithinKmRule):
                text = place_rules.exclusion_detail(rule, values, rows, branches)
                return np.where(text == "city is missing", note, text)
            picked = values.iloc[np.flatnonzero(rows)]
            return np.where(picked.isna().to_numpy(), note, f"{rule.column} = " + _text(picked))

        reasons.append((f"audience:{rule.label}", ~passes, audience_detail))

    # The first reason that applies wins: assign in reverse so that earlier reasons overwrite later ones.
    code = np.full(n, -1, dtype=np.int64)
    for i in range(len(reasons) - 1, -1, -1):
        code[reasons[i][1]] = i
    excluded = code >= 0
    names = np.array([r[0] for r in reasons] + [""], dtype=object)
    detail = np.full(n, "", dtype=object)
    for i, (_, _, text) in enumerate(reasons):
        rows = code == i
        if rows.any():
            detail[rows] = text if isinstance(text, str) else text(rows)
    exclusions = pd.DataFrame(
        {
            ID: ids[excluded],
            "exclusion_reason": pd.Series(names[code[excluded]], dtype="str"),
            "detail": pd.Series(detail[excluded], dtype="str"),
        }
    )
    eligible = scored.loc[~excluded].reset_index(drop=True)
    return eligible, exclusions


def select_audience(eligible: pd.DataFrame, selection: Selection) -> pd.DataFrame:
    """The selected customers, best first, with ``rank`` (1 = best).

    Ranked by ``score`` descending, ties by ``customer_id`` ascending. ``top_k`` keeps the first k,
    ``score_threshold`` scores at or above it, ``top_deciles`` rows whose ``decile`` (1 = highest, computed on the
    whole scored base) is at most n. Rows with a missing score are never selected. Eligible customers left out
    are not exclusions: count them as ``len(eligible) - len(selected)``.
    """
    score = eligible["score"].to_numpy(np.float64)
    order = np.lexsort((eligible[ID].to_numpy(np.int64), -score))
    order = order[~np.isnan(score[order])]
    ranked = eligible.iloc[order]
    if selection.top_k is not None:
        ranked = ranked.iloc[: selection.top_k]
    elif selection.score_threshold is not None:
        ranked = ranked.loc[ranked["score"].to_numpy(np.float64) >= selection.score_threshold]
    else:
        decile = ranked["decile"].to_numpy(np.float64)
        ranked = ranked.loc[decile <= selection.top_deciles]
    ranked = ranked.reset_index(drop=True)
    ranked["rank"] = np.arange(1, len(ranked) + 1, dtype=np.int64)
    return ranked
