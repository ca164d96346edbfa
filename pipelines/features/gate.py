"""The wide table's gate: the ``customer_features`` suite, with parameters taken from the data it was built from,
and the point-in-time check that the table was computed at the run's as_of.

Features left out on purpose (their input table is absent from the source) are not checked: each expectation
reading one is reported as not evaluated, "not computed: no balances table". A feature missing without that
record still fails the suite's critical "column exists" rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.data.gate_reports import MAX_EXAMPLES, Outcome, TableResult, new_outcome, write_report
from pipelines.data.gates import validate_frame
from pipelines.data.suites import columns_of, load_suite
from pipelines.features.catalogue import ID, WindowContract
from pipelines.features.wide_table import eligible_customers, feature_table_spec, left_out_of

AS_OF_RULE = "computed at as_of"


def validate_features(
    wide: pd.DataFrame,
    customers: pd.DataFrame,
    as_of: Any,
    expectations_dir: str | Path,
    *,
    window: Any = None,
    report_dir: str | Path | None = None,
    left_out: Mapping[str, str] | None = None,
) -> TableResult:
    """The ``customer_features`` suite on a wide table built at ``as_of`` (training and scoring alike).

    The suite's parameters come from the data: the row count must equal the customers open at ``as_of`` (from
    ``customers``), every id must be one of them, and ``days_since_*`` are capped by the window's lookback + 1
    (and may not be negative: an event after as_of). A critical rule ``computed at as_of`` checks that
    ``tenure_days`` is ``as_of - signup_date`` for every row: a wide table computed at another date (from facts
    after as_of, or a stale file) fails it, naming the feature.

    ``left_out`` (``{feature: reason}``; default: what ``build_features`` recorded in ``wide.attrs``, see
    ``wide_table.left_out_of``) names features absent on purpose: every expectation reading one of them is
    skipped with the note ``not computed: <reason>`` (e.g. ``not computed: no balances table``) instead of
    failing, and ``result.skipped`` lists them.
    """
    window = window or WindowContract()
    spec = feature_table_spec()
    if left_out is None:
        left_out = left_out_of(wide) or {}
    left_out = {f: why for f, why in left_out.items() if f not in wide.columns}
    eligible = eligible_customers(customers, as_of)[ID]
    params = {
        "customer_ids": eligible,
        "expected_rows": len(eligible),
        "max_days_since": window.lookback_days + 1,
    }
    present = [c for c in spec.column_names if c in wide.columns]
    result = validate_frame(wide[present], spec.name, as_of, expectations_dir, params, spec=spec)
    if left_out:
        _skip_left_out(result, load_suite(spec.name, expectations_dir), left_out)
    result.outcomes.append(_computed_at(wide, customers, pd.Timestamp(as_of), spec.name))
    if report_dir is not None:
        write_report(result, report_dir)
    return result


def _skip_left_out(result: TableResult, suite: dict, left_out: Mapping[str, str]) -> None:
    """Replace the outcome of every expectation that reads a left-out feature by "not evaluated: not computed:
    <reason>" (their "column exists" rules failed: the column is absent on purpose)."""
    exps = suite["expectations"]
    for k, o in enumerate(result.outcomes):
        hit = [c for c in columns_of(exps[o.index]) if c in left_out] if o.index >= 0 else []
        if hit:
            result.outcomes[k] = new_outcome(
                o.table, o.index, exps[o.index], "skipped", note=f"not computed: {left_out[hit[0]]}"
            )


def _computed_at(wide: pd.DataFrame, customers: pd.DataFrame, as_of: pd.Timestamp, table: str) -> Outcome:
    """Rows whose ``tenure_days`` is not ``as_of - signup_date`` (customers unknown to ``customers`` are the
    suite's "customer open at as_of" rule's)."""
    signup = customers.drop_duplicates(ID).set_index(ID)["signup_date"]
    started = pd.to_datetime(signup.reindex(wide[ID].to_numpy()).to_numpy())
    expected = (as_of - pd.DatetimeIndex(started)).days.to_numpy(dtype=np.float64, na_value=np.nan)
    got = pd.to_numeric(wide["tenure_days"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    known = ~np.isnan(expected) & ~np.isnan(got)
    off = np.where(known, got - expected, 0.0)
    bad = off != 0
    o = Outcome(
        table=table,
        index=-1,
        expectation_type="expect_column_pair_values_to_be_equal",
        column="tenure_days",
        rule=AS_OF_RULE,
        severity="critical",
        status="failed" if bad.any() else "passed",
        unexpected_count=int(bad.sum()),
        element_count=int(known.sum()),
        partitions_total=1,
        partitions_failed=int(bad.any()),
    )
    if bad.any():
        o.examples = [int(v) for v in got[bad][:MAX_EXAMPLES]]
        shift = int(np.median(off[bad]))
        when = as_of + pd.Timedelta(days=shift)
        o.note = (
            f"tenure_days is not as_of - signup_date for as_of {as_of.date()}: the wide table was computed at "
            f"about {when.date()}, {abs(shift)} days {'after' if shift > 0 else 'before'} as_of"
        )
    return o
