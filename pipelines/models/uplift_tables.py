"""An uplift experiment in a flat file (CSV or Parquet): check its treatment and outcome columns, make the other
columns features, split it stratified by treatment x outcome, and train (:func:`train_uplift_table`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.models.personal_columns import screen_personal_columns, synthetic_example
from pipelines.models.propensity import TrainConfig, pyfunc_input
from pipelines.models.tables import (
    _file_sha256,
    check_ids,
    check_registered_schema,
    model_name_of,
    prepare_table,
    read_table,
    split_frame,
)
from pipelines.models.uplift import uplift_config
from pipelines.models.uplift_training import UpliftResult, train_uplift
from pipelines.progress import Progress, say_to


def _columns_text(frame: pd.DataFrame) -> str:
    return ", ".join(map(str, frame.columns))


def _value_mask(column: pd.Series, value: Any) -> pd.Series:
    """Rows of ``column`` equal to ``value`` as written on a command line: the same text, or the same number."""
    text = column.astype(object).map(str, na_action="ignore")
    mask = (text == str(value)).fillna(False)
    number = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column) and pd.notna(number):
        mask |= column == number
    return mask.astype(bool)


def _shown(values: Sequence[Any], limit: int = 10) -> str:
    head = ", ".join(repr(v) for v in values[:limit])
    return head + (f", ... ({len(values)} values)" if len(values) > limit else "")


def train_uplift_table(
    path: str | Path,
    *,
    treatment: str,
    treated: Any,
    control: Any,
    outcome: str,
    positive: Any = None,
    id_col: str | None = None,
    exclude: Iterable[str] = (),
    name: str | None = None,
    seed: int = 42,
    test_size: float = 0.25,
    valid_size: float = 0.25,
    allow: Iterable[str] = (),
    group_by_id: bool = False,
    force: bool = False,
    tracking_uri: str,
    experiment: str | None = None,
    config: TrainConfig | None = None,
    progress: Progress = None,
) -> UpliftResult:
    """Train an uplift model on a randomised experiment in a CSV or Parquet file (:func:`tables.read_table`).

    ``treatment`` holds the group (``treated`` / ``control`` values; other rows are dropped, with a count),
    ``outcome`` the response (0/1 or bool, or two values with ``positive`` the response). Every other column but
    ``id_col`` and ``exclude`` is a feature (:func:`tables.prepare_table`: numbers stay numbers, text becomes
    categorical); the id column never reaches the model nor MLflow. Rows are split at random, stratified by
    treatment x outcome: ``test_size`` of them for test, ``valid_size`` of the rest for selection. The run's lineage
    is the file's name and sha256; the model name defaults to the file's stem (:func:`tables.model_name_of`), the
    experiment to ``table/<name>``. As in :func:`tables.train_table`: personal columns are left out of the features
    unless in ``allow``, repeated ids are refused unless ``group_by_id`` (each id's rows then stay on one side of
    the split), a name registered with another input schema is refused unless ``force``, and the champion is
    compared only with models of the same experiment definition (treatment, groups, outcome), MLflow experiment
    and input schema.

    Raises ValueError naming the file and the column for: a missing column, treated/control values absent (listing
    the values seen), nulls in the treatment column, an outcome that is not binary, a group without positives (or
    without negatives).
    """
    path = Path(path).expanduser().resolve()
    say = say_to(progress)
    where = path.name
    name = name or model_name_of(path)
    exclude, allow = list(exclude), list(allow)
    if str(treated) == str(control):
        raise ValueError(f"--treated and --control are the same value {treated!r}")
    if group_by_id and id_col is None:
        raise ValueError("--group-by-id needs --id COL")
    say(f"reading {path}")
    raw = read_table(path)
    say(f"{len(raw):,} rows x {raw.shape[1]} columns")
    for role, column in (("treatment", treatment), ("outcome", outcome), ("id", id_col)):
        if column is not None and column not in raw.columns:
            raise ValueError(
                f"{where}: {role} column {column!r} not in the table; columns: {_columns_text(raw)}"
            )
    unknown = [c for c in exclude if c not in raw.columns]
    if unknown:
        raise ValueError(f"{where}: excluded column(s) not in the table: {', '.join(map(str, unknown))}")
    if outcome == treatment:
        raise ValueError(f"{where}: the treatment and the outcome are the same column {treatment!r}")

    groups = raw[treatment]
    if groups.isna().any():
        raise ValueError(
            f"{where}: treatment column {treatment!r} has {int(groups.isna().sum()):,} missing values: "
            "fill or drop them first"
        )
    seen = sorted(pd.unique(groups).tolist(), key=str)
    is_treated, is_control = _value_mask(groups, treated), _value_mask(groups, control)
    for role, value, mask in (("treated", treated, is_treated), ("control", control, is_control)):
        if not mask.any():
            raise ValueError(
                f"{where}: {role} value {value!r} not found in treatment column {treatment!r}; "
                f"values seen: {_shown(seen)}"
            )
    keep = is_treated | is_control
    dropped = int((~keep).sum())
    if dropped:
        say(f"dropped {dropped:,} rows whose {treatment!r} is neither {treated!r} nor {control!r}")
    frame = raw.loc[keep.to_numpy()].reset_index(drop=True)
    flag = is_treated[keep].to_numpy().astype(np.int8)

    y = frame[outcome]
    if y.isna().any():
        raise ValueError(f"{where}: outcome column {outcome!r} has {int(y.isna().sum()):,} missing values")
    classes = pd.unique(y).tolist()
    if len(classes) > 2:
        raise ValueError(
            f"{where}: outcome column {outcome!r} is not binary: {len(classes)} values ({_shown(classes)})"
        )
    if positive is None:
        if not set(classes) <= {0, 1}:  # bools compare equal to 0 and 1
            raise ValueError(
                f"{where}: outcome column {outcome!r} has values {_shown(classes)}: "
                "say which is the response (--positive)"
            )
        response = (y == 1).to_numpy()
        positive = 1
    else:
        matches = [c for c in classes if c == positive or str(c) == str(positive)]
        if not matches:
            raise ValueError(
                f"{where}: positive value {positive!r} is not a value of outcome column {outcome!r} "
                f"(values: {_shown(classes)})"
            )
        positive = matches[0]
        response = (y == positive).to_numpy()
    for role, g in (("treated", 1), ("control", 0)):
        rows = flag == g
        hits = int(response[rows].sum())
        if hits == 0:
            raise ValueError(
                f"{where}: the {role} group ({int(rows.sum()):,} rows) has no positive outcome in {outcome!r}"
            )
        if hits == rows.sum():
            raise ValueError(
                f"{where}: every row of the {role} group ({hits:,}) has a positive outcome in {outcome!r}"
            )

    frame[outcome] = response.astype(np.int8)
    ids_note = check_ids(frame, id_col, group_by_id, where) if id_col is not None else None
    candidates = [c for c in frame.columns if c not in (treatment, outcome, id_col) and c not in exclude]
    personal = screen_personal_columns(frame, candidates, allow, say)
    try:
        prepared, features, categorical, _ = prepare_table(
            frame, outcome, 1, id_col, [*exclude, treatment, *personal], progress=progress
        )
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    if ids_note:
        say(ids_note)
    prepared[treatment] = flag
    for c in categorical:
        n = len(prepared[c].cat.categories)
        if n > 200:
            say(f"warning: {c!r} has {n} distinct values; exclude it if it is an identifier")
    say(
        f"treatment {treatment!r}: {int(flag.sum()):,} treated ({treated!r}), {int((flag == 0).sum()):,} control "
        f"({control!r}); outcome {outcome!r} positive={positive!r}: treated rate "
        f"{response[flag == 1].mean():.2%}, control rate {response[flag == 0].mean():.2%}; "
        f"{len(features)} features ({len(categorical)} categorical)"
    )

    stratum = "__uplift_stratum__"
    prepared[stratum] = flag * 2 + prepared[outcome].to_numpy()
    smallest = int(prepared[stratum].value_counts().min())
    if smallest < 4:
        raise ValueError(
            f"{where}: a treatment x outcome cell has only {smallest} row(s): too few to split into train, "
            "validation and test"
        )
    schema_note = check_registered_schema(
        tracking_uri, name, synthetic_example(pyfunc_input(prepared, features, categorical)), force
    )
    if schema_note:
        say(schema_note)
    groups = id_col if group_by_id else None
    parts = split_frame(
        prepared, stratum, seed=seed, test_size=test_size, valid_size=valid_size, groups=groups
    )
    train, valid, test = (p.drop(columns=[c for c in (stratum, id_col) if c is not None]) for p in parts)
    by_id = f", each {id_col!r} on one side" if group_by_id else ""
    say(
        f"split (stratified by treatment x outcome{by_id}): train {len(train):,}, valid {len(valid):,}, "
        f"test {len(test):,}"
    )

    config = replace(config or uplift_config(), model_name=name, seed=seed)
    return train_uplift(
        train,
        valid,
        test,
        features=features,
        categorical=categorical,
        treatment=treatment,
        outcome=outcome,
        config=config,
        tracking_uri=tracking_uri,
        experiment=experiment or f"table/{name}",
        model_name=name,
        run_params={
            "source": "table",
            "treated": str(treated),
            "control": str(control),
            "positive": str(positive),
            "id_col": id_col or "",
            "exclude": exclude,
            "personal_left_out": personal,
            "allow_column": allow,
            "group_by_id": group_by_id,
            "force": force,
            "split": "stratified by treatment x outcome",
            "test_size": test_size,
            "valid_size": valid_size,
        },
        lineage={
            "source": path.name,
            "source_sha256": _file_sha256(path),
            "rows": len(raw),
            "columns": len(raw.columns),
            "rows_dropped": dropped,
        },
        progress=progress,
        scope={
            "treatment": treatment,
            "treated": str(treated),
            "control": str(control),
            "outcome": outcome,
            "positive": str(positive),
        },
    )


__all__ = ["train_uplift_table"]
