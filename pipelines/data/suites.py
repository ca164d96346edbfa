"""The expectation suites in ``expectations/``: loading and checking their JSON, and their run-time parameters.

A suite is the contract of one table, a Great Expectations 1.x suite named after the table (file stem == suite
name == table). Every expectation carries ``meta.severity`` (``critical`` fails the run, ``warning`` is reported)
and ``meta.rule`` (the short name messages use), and has one of the types the gates can evaluate and aggregate
across partitions (:data:`SUPPORTED_TYPES`).

A run date ``as_of`` fills the suites' parameters (``{"$PARAMETER": ...}``):

``as_of``                    no timestamp or date may be at or after it ("future timestamps")
``freshness_min_ts``         ``as_of`` minus the suite's ``meta.freshness_days``: the newest row must be this recent
``unknown_customer_ids``     ids in the batch that ``customers`` lacks (referential integrity, taken per batch)
``min_rows``, ``max_rows``   the usual row-count band: ``meta.rows_per_customer_month`` x customers x months read
``min_birth_year``, ``max_birth_year``   plausible birth years: ``as_of.year - 110`` to ``as_of.year - 16``
``expected_rows``            the exact row count of a derived table (the wide table: customers open at as_of)
``max_days_since``           the cap of the wide table's ``days_since_*`` columns (its lookback + 1)

The last two have no default: the caller that builds the derived table passes them in ``parameters``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

SEVERITIES = ("critical", "warning")

# Checked on a zero-row frame built from the stored schema.
SCHEMA_TYPES = frozenset({"expect_column_to_exist", "expect_column_values_to_be_of_type"})
# Whole-table aggregates: in the lake they are combined across partitions and evaluated by the gates (row counts
# summed, min of minima, max of maxima, mean = sum of sums / sum of counts); on a single frame GX evaluates them.
AGGREGATE_TYPES = frozenset(
    {
        "expect_table_row_count_to_be_between",
        "expect_column_max_to_be_between",
        "expect_column_min_to_be_between",
        "expect_column_mean_to_be_between",
    }
)
# Row-level: each row passes or fails on its own, so unexpected counts add up across partitions. Uniqueness is the
# exception that needs the cross-partition check of the lake.
ROW_TYPES = frozenset(
    {
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_null",
        "expect_column_values_to_be_unique",
        "expect_compound_columns_to_be_unique",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_not_be_in_set",
        "expect_column_values_to_be_between",
        "expect_column_values_to_match_regex",
        "expect_column_pair_values_a_to_be_greater_than_b",
        "expect_column_pair_values_to_be_equal",
    }
)
SUPPORTED_TYPES = SCHEMA_TYPES | AGGREGATE_TYPES | ROW_TYPES
UNIQUENESS_TYPES = frozenset({"expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique"})
PARAMETERS = (
    "as_of",
    "freshness_min_ts",
    "unknown_customer_ids",
    "min_rows",
    "max_rows",
    "min_birth_year",
    "max_birth_year",
    "expected_rows",
    "max_days_since",
)


class SuiteError(ValueError):
    """An expectation suite file is missing or is not a valid GX 1.x suite for this project."""


def load_suite(table: str, expectations_dir: str | Path) -> dict:
    """The suite JSON of ``table`` from ``expectations_dir/<table>.json``, checked for this project's rules.

    Raises :class:`SuiteError` naming the file and the problem: missing file, invalid JSON, a name that is not the
    file stem, the 0.x ``expectation_type`` key, an expectation type validate_lake cannot aggregate, or an
    expectation without ``meta.severity`` (critical|warning) and ``meta.rule``.
    """
    path = Path(expectations_dir) / f"{table}.json"
    if not path.is_file():
        raise SuiteError(f"expectation suite for table {table!r} not found: {path} does not exist")
    try:
        suite = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SuiteError(f"expectation suite {path} is not valid JSON: {exc}") from exc
    if not isinstance(suite, dict) or not isinstance(suite.get("expectations"), list):
        raise SuiteError(f"expectation suite {path} must be an object with an 'expectations' list")
    if suite.get("name") != table:
        raise SuiteError(
            f"expectation suite {path} is named {suite.get('name')!r}; it must be named {table!r}"
        )
    for i, exp in enumerate(suite["expectations"]):
        where = f"{path} expectation #{i}"
        if not isinstance(exp, dict):
            raise SuiteError(f"{where} is not an object")
        if "expectation_type" in exp:
            raise SuiteError(f"{where} uses the GX 0.x key 'expectation_type'; GX 1.x suites use 'type'")
        etype = exp.get("type")
        if etype not in SUPPORTED_TYPES:
            raise SuiteError(
                f"{where} has type {etype!r}; supported types: {', '.join(sorted(SUPPORTED_TYPES))}"
            )
        if not isinstance(exp.get("kwargs"), dict):
            raise SuiteError(f"{where} ({etype}) has no 'kwargs' object")
        meta = exp.get("meta") or {}
        if meta.get("severity") not in SEVERITIES:
            raise SuiteError(
                f"{where} ({etype}) needs meta.severity 'critical' or 'warning', got {meta.get('severity')!r}"
            )
        if not isinstance(meta.get("rule"), str) or not meta["rule"].strip():
            raise SuiteError(f"{where} ({etype}) needs a meta.rule naming the rule")
        unknown = set(parameters_of(exp["kwargs"])) - set(PARAMETERS)
        if unknown:
            raise SuiteError(
                f"{where} ({etype}) uses unknown parameter(s) {sorted(unknown)}; known: {list(PARAMETERS)}"
            )
    return suite


def expected_gx_type(arrow_type: pa.DataType) -> str:
    """The ``type_`` of ``expect_column_values_to_be_of_type`` that a column stored as ``arrow_type`` must match.

    It names the pandas dtype's scalar type, as GX compares it: dictionary columns are categoricals, dates and
    timestamps both datetime64.
    """
    if pa.types.is_dictionary(arrow_type):
        return "CategoricalDtypeType"
    if pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type):
        return "datetime64"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "str"
    if pa.types.is_boolean(arrow_type):
        return "bool"
    if pa.types.is_integer(arrow_type):
        return str(arrow_type)
    if pa.types.is_floating(arrow_type):
        return {16: "float16", 32: "float32", 64: "float64"}[arrow_type.bit_width]
    raise ValueError(f"no GX type name for Arrow type {arrow_type}")


def parameters_of(value: Any) -> list[str]:
    """The names of the ``$PARAMETER``s that ``value`` (an expectation's kwargs, or part of them) refers to."""
    if isinstance(value, dict):
        if "$PARAMETER" in value:
            return [value["$PARAMETER"]]
        return [p for v in value.values() for p in parameters_of(v)]
    if isinstance(value, list):
        return [p for v in value for p in parameters_of(v)]
    return []


def value_columns(exp: dict) -> list[str]:
    """The columns whose values an expectation checks."""
    kw = exp["kwargs"]
    cols = [kw[k] for k in ("column", "column_A", "column_B") if k in kw]
    return cols + list(kw.get("column_list") or [])


def columns_of(exp: dict) -> list[str]:
    """Every column an expectation reads, including the one of its row condition."""
    cols = value_columns(exp)
    cond = exp["kwargs"].get("row_condition")
    if isinstance(cond, dict) and isinstance(cond.get("column"), dict):
        cols.append(cond["column"]["name"])
    return list(dict.fromkeys(cols))


def label_column(exp: dict) -> str | None:
    """The column a message names for an expectation: its column, the first of a pair, or ``(a, b)`` of a list."""
    kw = exp["kwargs"]
    if "column" in kw:
        return kw["column"]
    if "column_A" in kw:
        return kw["column_A"]
    if "column_list" in kw:
        return "(" + ", ".join(kw["column_list"]) + ")"
    return None


def resolve(value: Any, params: Mapping[str, Any]) -> Any:
    """``value``, or the parameter's value if it is a ``{"$PARAMETER": name}`` (KeyError if not in ``params``)."""
    if isinstance(value, dict) and "$PARAMETER" in value:
        return params[value["$PARAMETER"]]
    return value


def suite_parameters(
    suite: dict,
    as_of: Any,
    *,
    n_customers: int | None = None,
    n_months: int | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The run-time values of a suite's ``$PARAMETER``s for a run date (``unknown_customer_ids`` excepted: that one
    is taken per batch). The row-count band needs ``n_customers`` and ``n_months``; ``overrides`` win."""
    as_of = pd.Timestamp(as_of)
    params: dict[str, Any] = {
        "as_of": as_of.to_pydatetime(),
        "min_birth_year": as_of.year - 110,
        "max_birth_year": as_of.year - 16,
    }
    meta = suite.get("meta") or {}
    if meta.get("freshness_days") is not None:
        params["freshness_min_ts"] = (
            as_of - pd.Timedelta(days=float(meta["freshness_days"]))
        ).to_pydatetime()
    band = meta.get("rows_per_customer_month")
    if band and n_customers and n_months:
        params["min_rows"] = int(math.floor(band[0] * n_customers * n_months))
        params["max_rows"] = int(math.ceil(band[1] * n_customers * n_months))
    for k, v in (overrides or {}).items():
        if k != "customer_ids":
            params[k] = pd.Timestamp(v).to_pydatetime() if isinstance(v, pd.Timestamp) else v
    return params
