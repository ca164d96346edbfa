"""A customer table a user brings (CSV or Parquet): read it, make its columns features, split it, and train,
log and register a propensity model on it (:func:`train_table`).

What a user's table must not do silently: be binary or not UTF-8 (:func:`read_table` says which), feed personal
columns to the model (:mod:`pipelines.models.personal_columns`), repeat ids across the split (:func:`check_ids`),
turn a number column with a few blanks into a categorical (:func:`prepare_table`), or register into a model of
another input schema (:func:`check_registered_schema`).

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

from pipelines.models.personal_columns import screen_personal_columns, synthetic_example
from pipelines.models.propensity import TrainConfig, _is_categorical_like, pyfunc_input
from pipelines.models.registry import (
    CHAMPION,
    TrainResult,
    input_schema,
    mlflow_store,
    schema_columns,
    train_and_register,
)
from pipelines.progress import Progress, say_to

_UTF16_32_BOMS = {
    b"\xff\xfe\x00\x00": "UTF-32",
    b"\x00\x00\xfe\xff": "UTF-32",
    b"\xff\xfe": "UTF-16",
    b"\xfe\xff": "UTF-16",
}


# How binary files that are not a table in text start: what they are, and what to do.
_MAGIC = (
    (b"PAR1", "a Parquet file", "name it .parquet"),
    (b"PK\x03\x04", "a ZIP archive (an Excel .xlsx workbook is one)", "export the sheet as CSV (UTF-8)"),
    (
        b"\xd0\xcf\x11\xe0",
        "an Excel .xls workbook (or another OLE document)",
        "export the sheet as CSV (UTF-8)",
    ),
    (b"\x1f\x8b", "gzip-compressed", "name it .csv.gz"),
    (b"BZh", "bzip2-compressed", "decompress it, or recompress it with gzip as .csv.gz"),
    (b"\xfd7zXZ\x00", "xz-compressed", "decompress it, or recompress it with gzip as .csv.gz"),
    (b"7z\xbc\xaf", "a 7-Zip archive", "extract the CSV from it"),
    (b"%PDF", "a PDF document", "export the table as CSV (UTF-8)"),
    (b"SQLite format 3\x00", "a SQLite database", "export the table as CSV (UTF-8) or Parquet"),
    (b"ARROW1", "an Arrow/Feather file", "save it as Parquet"),
    (b"\x89PNG", "a PNG image", "give the table itself"),
    (b"\xff\xd8\xff", "a JPEG image", "give the table itself"),
)


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


def _check_text(path: Path) -> None:
    """Raise ValueError ``<path>: not a text table: ...`` when the file is binary: it starts like a known binary
    format (Parquet, ZIP/xlsx, xls, gzip without .gz, PDF, SQLite, ...) or holds NUL bytes. A UTF-16/32 file
    (with its byte-order mark) is left to :func:`_check_utf8`, which names it."""
    try:
        with _open_binary(path) as fh:
            head = fh.read(65_536)
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"{path}: not a text table: named .gz but not gzip-compressed ({exc})") from None
    if any(head.startswith(bom) for bom in _UTF16_32_BOMS):
        return
    for magic, what, fix in _MAGIC:
        if head.startswith(magic):
            raise ValueError(f"{path}: not a text table: the file is {what}; {fix}")
    nul = head.find(b"\x00")
    if nul >= 0:
        raise ValueError(
            f"{path}: not a text table: it holds NUL bytes, the first at byte offset {nul} (a binary file, "
            "or UTF-16/32 text without a byte-order mark); export it as CSV (UTF-8) or Parquet"
        )


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
    is not UTF-8, before anything is trained; a binary file (a workbook, an archive, a Parquet file named .csv)
    raises ValueError ``<path>: not a text table: ...`` saying what it is, and a file named .parquet that is not
    one ``<path>: not a readable Parquet file (...)``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"table not found: {path}")
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            return pd.read_parquet(path)
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise ValueError(f"{path}: not a readable Parquet file ({type(exc).__name__}: {first})") from None
    _check_text(path)
    try:
        return pd.read_csv(
            path, sep=_sniff_delimiter(path), encoding="utf-8-sig", compression=_compression(path)
        )
    except UnicodeError:
        _check_utf8(path)  # names the line and byte
        raise ValueError(f"{path}: not a text table: it cannot be read as UTF-8 text") from None
    except pd.errors.ParserError as exc:
        raise ValueError(f"{path}: not a readable CSV table: {str(exc).strip()}") from None


def _compression(path: Path) -> str | None:
    """gzip for a .gz file, none otherwise: a file's other suffixes (.zip, .bz2) are not taken as compression,
    so that the checks above, which read .gz files only through gzip, see what pandas reads."""
    return "gzip" if path.suffix == ".gz" else None


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _numbers_from_text(col: pd.Series) -> tuple[pd.Series, int] | None:
    """(the column as float64, its number of missing values) when ``col`` holds text whose every non-blank value
    parses as a number, else None. Blank (empty or spaces only) values become missing. Declared categoricals stay."""
    if isinstance(col.dtype, pd.CategoricalDtype) or not _is_categorical_like(col):
        return None
    values = col.astype(object)
    text = values.where(values.notna(), "").map(lambda v: str(v).strip())
    blank = (text == "").to_numpy()
    if blank.all():
        return None
    numbers = pd.to_numeric(text.where(~blank), errors="coerce")
    if bool((numbers.isna().to_numpy() & ~blank).any()):
        return None
    return numbers.astype(np.float64), int(blank.sum())


def prepare_table(
    frame: pd.DataFrame,
    label: str,
    positive: Any = None,
    id_col: str | None = None,
    exclude: Iterable[str] = (),
    *,
    progress: Progress = None,
) -> tuple[pd.DataFrame, list[str], list[str], Any]:
    """(frame with a 0/1 ``label`` column, features, categorical features, the positive value).

    Every column other than the label, the id and ``exclude`` is a feature: numeric and bool columns stay
    numeric, a text column whose non-blank values all parse as numbers becomes a number column (blanks missing;
    one line through ``progress`` names them), other string/object/categorical columns become categoricals.
    Raises ValueError naming the column for a missing label or id, an unknown excluded column, a label without
    exactly two classes, a ``positive`` that is not one of them, or a feature of an unsupported type (dates).
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
    features, categorical, as_numbers = [], [], {}
    for name in frame.columns:
        if name in (label, id_col) or name in exclude:
            continue
        col = frame[name]
        parsed = _numbers_from_text(col)
        if parsed is not None:
            as_numbers[name] = parsed
            features.append(name)
        elif pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
            features.append(name)
        elif _is_categorical_like(col):
            features.append(name)
            categorical.append(name)
        else:
            raise ValueError(
                f"column {name!r} has type {col.dtype}, which the model cannot use: exclude it or derive numbers from it"
            )
    if not features:
        raise ValueError(
            "no feature columns left after removing the label, the id, the excluded and the personal columns"
        )
    if as_numbers:
        say_to(progress)(
            "numbers stored as text, read as numbers (blank values as missing): "
            + ", ".join(f"{name!r} ({blanks:,} blank or missing)" for name, (_, blanks) in as_numbers.items())
        )
    out = frame[features].copy()
    for name in features:
        if name in as_numbers:
            out[name] = as_numbers[name][0].to_numpy()
        elif name in categorical:
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


def check_ids(frame: pd.DataFrame, id_col: str, group_by_id: bool, where: str) -> str | None:
    """None when the values of ``id_col`` are distinct. Repeated ids raise ValueError naming the column, the
    count and an example id, unless ``group_by_id`` (the split then keeps each id's rows on one side): the line
    that says so is returned."""
    ids = frame[id_col]
    repeated = ids[ids.duplicated(keep=False) & ids.notna()]
    if repeated.empty:
        return None
    counts = repeated.value_counts()
    most = counts.max()
    example = repeated[repeated.isin(counts.index[counts == most])].iloc[0]  # the first of the most repeated
    extra = len(repeated) - len(counts)
    text = (
        f"id column {id_col!r} repeats {len(counts):,} id{'s' if len(counts) > 1 else ''} over {extra:,} extra "
        f"row{'s' if extra > 1 else ''} (e.g. '{example}' on {int(most)} rows)"
    )
    if not group_by_id:
        raise ValueError(
            f"{where}: {text}: the same customer would land in train and test; deduplicate the table, or pass "
            "--group-by-id to keep each id's rows on one side of the split"
        )
    return f"{text}: each id's rows kept on one side of the split (--group-by-id)"


def _group_codes(ids: pd.Series) -> np.ndarray:
    """An integer per id; each row without an id is a group of its own."""
    codes, _ = pd.factorize(ids)
    missing = codes < 0
    codes[missing] = -1 - np.arange(int(missing.sum()))
    return codes


def split_frame(
    frame: pd.DataFrame,
    label: str,
    *,
    seed: int = 42,
    test_size: float = 0.3,
    valid_size: float = 0.2,
    ordered: bool = False,
    groups: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(train, valid, test). ``test`` is ``test_size`` of the rows; ``valid`` is ``valid_size`` of the rest.

    Stratified on the label and seeded; with ``ordered=True`` the split follows row order instead (test = the last
    rows, valid = the last rows before them) for tables sorted by time. With ``groups`` (a column, an id) every
    group's rows land in one part: the shares are of groups (stratified on the label of each group's first row),
    or with ``ordered`` a group goes where its last row falls.
    """
    if not 0 < test_size < 1 or not 0 < valid_size < 1:
        raise ValueError(f"test_size and valid_size must be in (0, 1), got {test_size}, {valid_size}")
    if groups is not None:
        return _split_groups(frame, label, groups, seed, test_size, valid_size, ordered)
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


def _split_groups(
    frame: pd.DataFrame,
    label: str,
    groups: str,
    seed: int,
    test_size: float,
    valid_size: float,
    ordered: bool,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    codes = _group_codes(frame[groups])
    if ordered:
        n = len(frame)
        rest = n - int(math.ceil(n * test_size))
        cut = rest - int(math.ceil(rest * valid_size))
        last = pd.Series(np.arange(n)).groupby(codes).transform("max").to_numpy()
        part = np.where(last >= rest, 2, np.where(last >= cut, 1, 0))
    else:
        from sklearn.model_selection import train_test_split

        first = pd.Series(frame[label].to_numpy()).groupby(codes, sort=True).first()
        fit_ids, test_ids = train_test_split(
            first.index.to_numpy(), test_size=test_size, stratify=first.to_numpy(), random_state=seed
        )
        _, valid_ids = train_test_split(
            fit_ids, test_size=valid_size, stratify=first.loc[fit_ids].to_numpy(), random_state=seed
        )
        part = np.where(np.isin(codes, test_ids), 2, np.where(np.isin(codes, valid_ids), 1, 0))
    return frame.iloc[part == 0], frame.iloc[part == 1], frame.iloc[part == 2]


def check_registered_schema(
    tracking_uri: str, model_name: str, example: pd.DataFrame, force: bool = False
) -> str | None:
    """Compare the input schema of a model about to be trained (``example``, its pyfunc input) with the one
    registered as ``model_name`` (its champion, else its newest version). None when there is no such model or the
    schemas match; when they differ, ValueError naming the columns that differ, unless ``force``: then the line
    that says the new version will not be compared with the champion. Reads the store only (a SQLite store that
    does not exist yet is not created)."""
    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri.removeprefix("sqlite:///")).is_file():
        return None
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.models import get_model_info

    with mlflow_store(tracking_uri):
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        try:
            version, role = client.get_model_version_by_alias(model_name, CHAMPION).version, CHAMPION
        except MlflowException:
            versions = client.search_model_versions(f"name = '{model_name}'")
            if not versions:
                return None
            version, role = max(int(v.version) for v in versions), "newest version"
        signature = get_model_info(f"models:/{model_name}/{version}").signature
    registered = schema_columns(signature.inputs if signature else None)
    ours = input_schema(example)
    if registered == ours:
        return None
    differences = [
        f"{label}: {', '.join(names)}"
        for label, names in (
            ("columns only in this table", [c for c in ours if c not in registered]),
            ("columns only in the registered model", [c for c in registered if c not in ours]),
            (
                "columns of another type",
                [
                    f"{c} ({ours[c]} here, {registered[c]} there)"
                    for c in ours
                    if registered.get(c, ours[c]) != ours[c]
                ],
            ),
        )
        if names
    ]
    text = f"model {model_name!r} v{version} ({role}) has another input schema ({'; '.join(differences)})"
    if not force:
        raise ValueError(
            f"{text}: registering this table under its name would mix two tables; choose another --name, or "
            "--force to register it anyway (it will not be compared with nor promoted over the models of the "
            "other schema)"
        )
    return f"{text}: registered anyway (--force); it is not compared with the models of the other schema"


def model_name_of(path: Path) -> str:
    """The registered name of a table's model when none is given: the file's stem (``customers.csv.gz`` ->
    ``customers``), characters MLflow does not take replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", Path(path).name.split(".")[0]) or "table"


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
    allow: Iterable[str] = (),
    group_by_id: bool = False,
    force: bool = False,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    config: TrainConfig | None = None,
    artifact_location: str | None = None,
    progress: Progress = None,
) -> TrainResult:
    """Train, log and register a model on any customer table (CSV or Parquet) the user brings.

    The model name defaults to the file's stem (:func:`model_name_of`; ``config.model_name`` is not used); the
    experiment to ``table/<name>``; the tracking URI to the project settings. See :func:`prepare_table` for how
    columns become features and :func:`split_frame` for the split. Columns that likely hold personal data are left
    out of the features unless named in ``allow`` (:func:`personal_columns.screen_personal_columns`); repeated ids
    are refused unless ``group_by_id`` (:func:`check_ids`); a name registered with another input schema is refused
    unless ``force`` (:func:`check_registered_schema`). The champion is compared only with models of the same input
    schema, MLflow experiment and label (``scope`` of :func:`registry.register_model`).
    """
    from dataclasses import replace

    from pipelines.config import load_settings

    path = Path(path).expanduser().resolve()
    say = say_to(progress)
    model_name = name or model_name_of(path)
    config = replace(config or TrainConfig(), model_name=model_name, seed=seed)
    tracking_uri = tracking_uri or load_settings().mlflow_tracking_uri
    exclude, allow = list(exclude), list(allow)
    if group_by_id and id_col is None:
        raise ValueError("--group-by-id needs --id COL")

    say(f"reading {path}")
    raw = read_table(path)
    say(f"{len(raw):,} rows x {raw.shape[1]} columns")
    candidates = [c for c in raw.columns if c not in (label, id_col) and c not in exclude]
    personal = screen_personal_columns(raw, candidates, allow, say)
    frame, features, categorical, positive = prepare_table(
        raw, label, positive, id_col, [*exclude, *personal], progress=progress
    )
    ids_note = check_ids(raw, id_col, group_by_id, path.name) if id_col is not None else None
    if ids_note:
        say(ids_note)
    say(
        f"label {label!r} positive={positive!r}: rate {frame[label].mean():.2%}; "
        f"{len(features)} features ({len(categorical)} categorical)"
    )
    for c in categorical:
        n = len(frame[c].cat.categories)
        if n > 200:
            say(f"warning: {c!r} has {n} distinct values; exclude it if it is an identifier")
    schema_note = check_registered_schema(
        tracking_uri, model_name, synthetic_example(pyfunc_input(frame, features, categorical)), force
    )
    if schema_note:
        say(schema_note)
    train, valid, test = split_frame(
        frame,
        label,
        seed=seed,
        test_size=test_size,
        valid_size=valid_size,
        ordered=ordered,
        groups=id_col if group_by_id else None,
    )
    by_id = f", each {id_col!r} on one side" if group_by_id else ""
    say(
        f"split ({'ordered' if ordered else 'stratified'}{by_id}): train {len(train):,}, valid {len(valid):,}, "
        f"test {len(test):,}"
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
        "exclude": exclude,
        "personal_left_out": personal,
        "allow_column": allow,
        "group_by_id": group_by_id,
        "force": force,
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
        scope={"label": label, "positive": str(positive)},
    )


__all__ = [
    "check_ids",
    "check_registered_schema",
    "model_name_of",
    "prepare_table",
    "read_table",
    "split_frame",
    "train_table",
]
