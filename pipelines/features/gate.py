"""The wide table's gate: the ``customer_features`` suite, with parameters taken from the data it was built from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.data.gate_reports import TableResult
from pipelines.data.gates import validate_frame
from pipelines.features.catalogue import ID, WindowContract
from pipelines.features.wide_table import eligible_customers, feature_table_spec


def validate_features(
    wide: pd.DataFrame,
    customers: pd.DataFrame,
    as_of: Any,
    expectations_dir: str | Path,
    *,
    window: Any = None,
    report_dir: str | Path | None = None,
) -> TableResult:
    """The ``customer_features`` suite on a wide table built at ``as_of`` (training and scoring alike).

    The suite's parameters come from the data: the row count must equal the customers open at ``as_of`` (from
    ``customers``), every id must be one of them, and ``days_since_*`` are capped by the window's lookback + 1.
    """
    window = window or WindowContract()
    spec = feature_table_spec()
    eligible = eligible_customers(customers, as_of)[ID]
    params = {
        "customer_ids": eligible,
        "expected_rows": len(eligible),
        "max_days_since": window.lookback_days + 1,
    }
    return validate_frame(
        wide[spec.column_names], spec.name, as_of, expectations_dir, params, report_dir=report_dir, spec=spec
    )
