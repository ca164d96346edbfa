"""A customer table a user brings (CSV or Parquet): read it, make its columns features, split it, and train,
log and register a propensity model on it (:func:`train_table`).

sklearn is imported inside the function that needs it: importing this module stays cheap.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.models.propensity import TrainConfig, _is_categorical_like
from pipelines.models.registry import TrainResult, train_and_register
from pipelines.progress import Progress, say_to

_UTF16_32_BOMS = {
    b"\xff\xfe\x00\x00": "UTF-32",
    b"\x00\x00\xfe\xff": "UTF-32",
    b"\xff\xfe": "UTF-16",
    b"\xfe\xff": "UTF-16",
}


def _open_binary(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _check_utf8(path: Path) -> None:
    """Raise ValueError naming the file, line and byte offset of the first byte that is not UTF-8 (or the
    UTF-16/32 byte-order mark the file starts with). A UTF-8 byte-order mark is accepted."""
    with _open_binary(path) as fh:
        head = fh.read(4)
        for bom, name in _UTF16_32_BOMS.items():
            if head.startswith(bom):
                raise ValueError(
                    f"{path}: the file is {name} text (byte-order mark {bom.hex(' ')}); save it as UTF-8"
                )
        carry, offset, line = head, 0, 1  # carry: bytes not yet checked, from file offset ``offset``
        while True:
            block = fh.read(1 << 20)
            data = carry + block
            try:
                data.decode("utf-8")
                done = len(data)
            except UnicodeDecodeError as exc:
                if block and exc.reason == "unexpected end of data":
                    done = exc.start  # a character cut by the block's end: check it with the next block
                else:
                    line += data[: exc.start].count(b"\n")
                    raise ValueError(
                        f"{path}: not UTF-8 text: byte 0x{data[exc.start]:02x} at byte offset "
                        f"{offset + exc.start} (line {line}) is not valid UTF-8; re-save the file as UTF-8 (it "
                        "may be Latin-1 or Windows-1252)"
                    ) from None
            line += data[:done].count(b"\n")
            offset += done
            carry = data[done:]
            if not block:
                return


def _sniff_delimiter(path: Path) -> str:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8-sig", errors="replace", newline="") as fh:
        sample = fh.read(64_000)
    if not sample.strip():
        raise ValueError(f"{path} is empty")
    # Sniff on whole lines only: a cut last line can mislead the sniffer.
    sample = sample[: sample.rfind("\n") + 1] or sample
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        header = sample.splitlines()[0]
        return max(",;\t|", key=header.count)


def read_table(path: str | Path) -> pd.DataFrame:
    """A customer table from Parquet or CSV (optionally gzipped; the delimiter is sniffed: ``,`` ``;`` tab ``|``).

    A CSV must be UTF-8; a UTF-8 byte-order mark (what Excel writes) is accepted and dropped. Other text (Latin-1,
    Windows-1252, UTF-16) raises ValueError naming the file and the line and byte offset of the first byte that
    is not UTF-8, before anything is trained.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"table not found: {path}")
    if path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path)
    try:
        return pd.read_csv(path, sep=_sniff_delimiter(path), encoding="utf-8-sig")
    except UnicodeError:
        _check_utf8(path)  # names the line and byte
        raise


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def prepare_table(
    frame: pd.DataFrame,
    label: str,
    positive: Any = None,
    id_col: str | None = None,
    exclude: Iterable[str] = (),
) -> tuple[pd.DataFrame, list[str], list[str], Any]:
    """(frame with a 0/1 ``label`` column, features, categorical features, the positive value).

    Every column other than the label, the id and ``exclude`` is a feature: numeric and bool columns stay
    numeric, string/object/categorical columns become categoricals. Raises ValueError naming the column for a
    missing label or id, an unknown excluded column, a label without exactly two classes, a ``positive`` that is
    not one of them, or a feature of an unsupported type (dates).
    """
    columns = list(frame.columns)
    if label not in frame.columns:
        raise ValueError(f"label column {label!r} not in the table; columns: {', '.join(map(str, columns))}")
    if id_col is not None and id_col not in frame.columns:
        raise ValueError(f"id column {id_col!r} not in the table; columns: {', '.join(map(str, columns))}")
    exclude = list(exclude)
    unknown = [c for c in exclude if c not in frame.columns]
    if unknown:
        raise ValueError(f"excluded column(s) not in the table: {', '.join(unknown)}")
    y = frame[label]
    if y.isna().any():
        raise ValueError(
            f"label column {label!r} has {int(y.isna().sum())} missing values: drop or fill them first"
        )
    classes = pd.unique(y).tolist()
    if len(classes) != 2:
        shown = ", ".join(repr(c) for c in classes[:10])
        raise ValueError(f"label column {label!r} must have exactly 2 classes, found {len(classes)}: {shown}")
    if positive is None:
        if set(classes) <= {0, 1}:  # bools compare equal to 0 and 1
            positive = 1
        else:
            raise ValueError(
                f"label column {label!r} has classes {classes[0]!r} and {classes[1]!r}: say which is positive"
            )
    matches = [c for c in classes if c == positive or str(c) == str(positive)]
    if not matches:
        raise ValueError(
            f"positive value {positive!r} is not a class of {label!r} (classes: {classes[0]!r}, {classes[1]!r})"
        )
    positive = matches[0]
    features, categorical = [], []
    for name in frame.columns:
        if name in (label, id_col) or name in exclude:
            continue
        col = frame[name]
        if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
            features.append(name)
        elif _is_categorical_like(col):
            features.append(name)
            categorical.append(name)
        else:
            raise ValueError(
                f"column {name!r} has type {col.dtype}, which the model cannot use: exclude it or derive numbers from it"
            )
    if not features:
        raise ValueError("no feature columns left after removing the label, the id and the excluded columns")
    out = frame[features].copy()
    for name in features:
        if name in categorical:
            col = out[name]
            values = col.astype(object)
            values = values.where(values.notna(), None).map(lambda v: v if v is None else str(v))
            out[name] = pd.Categorical(values, categories=sorted(values.dropna().unique().tolist()))
        elif pd.api.types.is_bool_dtype(out[name]):
            out[name] = out[name].astype(np.float64)
    out[label] = (y == positive).astype(np.int8).to_numpy()
    if id_col is not None:
        out.insert(0, id_col, frame[id_col].to_numpy())
    return out, features, categorical, positive


def split_frame(
    frame: pd.DataFrame,
    label: str,
    *,
    seed: int = 42,
    test_size: float = 0.3,
    valid_size: float = 0.2,
    ordered: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(train, valid, test). ``test`` is ``test_size`` of the rows; ``valid`` is ``valid_size`` of the rest.

    Stratified on the label and seeded; with ``ordered=True`` the split follows row order instead (test = the last
    rows, valid = the last rows before them) for tables sorted by time.
    """
    if not 0 < test_size < 1 or not 0 < valid_size < 1:
        raise ValueError(f"test_size and valid_size must be in (0, 1), got {test_size}, {valid_size}")
    n = len(frame)
    if ordered:
        n_test = int(math.ceil(n * test_size))
        rest = n - n_test
        n_valid = int(math.ceil(rest * valid_size))
        return (
            frame.iloc[: rest - n_valid],
            frame.iloc[rest - n_valid : rest],
            frame.iloc[rest:],
        )
    from sklearn.model_selection import train_test_split

    fit_part, test = train_test_split(frame, test_size=test_size, stratify=frame[label], random_state=seed)
    train, valid = train_test_split(
        fit_part, test_size=valid_size, stratify=fit_part[label], random_state=seed
    )
    return train, valid, test


def train_table(
    path: str | Path,
    label: str,
    positive: Any = None,
    id_col: str | None = None,
    exclude: Iterable[str] = (),
    *,
    name: str | None = None,
    seed: int = 42,
    test_size: float = 0.3,
    valid_size: float = 0.2,
    ordered: bool = False,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    config: TrainConfig | None = None,
    artifact_location: str | None = None,
    progress: Progress = None,
) -> TrainResult:
    """Train, log and register a model on any customer table (CSV or Parquet) the user brings.

    The model name defaults to the file's stem; the experiment to ``table/<name>``; the tracking URI to the
    project settings. See :func:`prepare_table` for how columns become features and :func:`split_frame` for the
    split.
    """
    from dataclasses import replace

    from pipelines.config import load_settings

    path = Path(path).expanduser().resolve()
    say = say_to(progress)
    stem = path.name.split(".")[0]
    model_name = name or (config.model_name if config else re.sub(r"[^A-Za-z0-9_.\-]", "_", stem))
    config = replace(config or TrainConfig(), model_name=model_name, seed=seed)
    tracking_uri = tracking_uri or load_settings().mlflow_tracking_uri

    say(f"reading {path}")
    raw = read_table(path)
    say(f"{len(raw):,} rows x {raw.shape[1]} columns")
    frame, features, categorical, positive = prepare_table(raw, label, positive, id_col, exclude)
    say(
        f"label {label!r} positive={positive!r}: rate {frame[label].mean():.2%}; "
        f"{len(features)} features ({len(categorical)} categorical)"
    )
    for c in categorical:
        n = len(frame[c].cat.categories)
        if n > 200:
            say(f"warning: {c!r} has {n} distinct values; exclude it if it is an identifier")
    train, valid, test = split_frame(
        frame, label, seed=seed, test_size=test_size, valid_size=valid_size, ordered=ordered
    )
    say(
        f"split ({'ordered' if ordered else 'stratified'}): train {len(train):,}, valid {len(valid):,}, test {len(test):,}"
    )
    lineage = {
        "source": str(path),
        "source_sha256": _file_sha256(path),
        "rows": len(raw),
        "columns": len(raw.columns),
    }
    run_params = {
        "source": "table",
        "positive": str(positive),
        "id_col": id_col or "",
        "exclude": list(exclude),
        "split": "ordered" if ordered else "stratified",
        "test_size": test_size,
        "valid_size": valid_size,
    }
    return train_and_register(
        train,
        valid,
        test,
        features=features,
        categorical=categorical,
        label=label,
        config=config,
        tracking_uri=tracking_uri,
        experiment=experiment or f"table/{model_name}",
        run_params=run_params,
        lineage=lineage,
        artifact_location=artifact_location,
        progress=progress,
    )


__all__ = ["prepare_table", "read_table", "split_frame", "train_table"]
