"""``pmp audit pii``: looks for the lake's personal values (names, phones, e-mails, national ids) wherever the
platform writes — run folders, reports, logs, exports, the MLflow artifact store, MLflow params, tags and metric
names, the registry, and Airflow's task logs — and names each place where one is found.

The personal values come from the lake's columns marked ``pii`` in :mod:`pipelines.data.schema`. Each file is
tokenised once (e-mails, phone-like digit runs, words) and every token is looked up in a set, so a scan is linear
in the bytes read. To keep false hits out:

- e-mails are compared whole and lower-cased; phones as their digits (at least 7), whole runs only (with or without
  the country code), never a substring of a longer number;
- national ids are compared as whole upper-cased words of at least 6 characters;
- names are compared as a whole full name (two adjacent words, any case); a surname alone (at least 4 letters) is
  a hit only when it stands as a whole value — a CSV cell, a quoted JSON/YAML string, a Parquet string — never
  inside prose, where "Green", "Young" or "King" are ordinary words; first names alone are not identifying and are
  not looked for.

Exports with contact details made by ``pmp lists export --with-contact`` are personal by design: a file whose
path and SHA-256 match a row of the campaign database's ``contact_exports`` audit table is listed as a released
export, not a leak; the same content in an unrecorded file, or in a recorded file changed since (its hash differs),
is. Recorded files outside the scanned folders are scanned too. (The ``runs/exports.jsonl`` log of earlier versions
is not read: anyone could append to it.)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.config import Settings
from pipelines.models.personal_columns import EMAIL_PATTERN

# Files that cannot hold readable text (or hold it compressed, which a byte scan cannot see).
_SKIP_SUFFIXES = set(
    [".png", ".jpg", ".jpeg", ".gif", ".svg", ".ico", ".gz", ".zip", ".whl", ".pyc", ".so", ".lock"]
)
_BINARY_SUFFIXES = {".pkl", ".pickle", ".joblib", ".db", ".sqlite", ".bin", ".npy"}
_NON_PRINTABLE = re.compile(r"[^\x20-\x7e]+")
_MAX_BYTES = 200_000_000
# The lake and the generator's ground truth are where the personal values belong: not scanned.
_DATA_PARTS_SKIPPED = ("lake", "truth")

_EMAIL = re.compile(EMAIL_PATTERN)
_PHONE = re.compile(r"\+?\(?\d[\d\- ().]*\d")
_WORD = re.compile(r"[A-Za-z0-9]+")
_NAME_PAIR = re.compile(r"(?=\b([A-Za-z][A-Za-z'\-]+)[ \t]+([A-Za-z][A-Za-z'\-]+)\b)")
# A capitalised word standing alone between value delimiters (CSV cell, quoted string, line).
_WHOLE_VALUE = re.compile(
    r"""(?:^|(?<=[,;\t|"'\n:=\[]))[ ]*([A-Z][a-z'\-]{3,})[ ]*(?=$|[,;\t|"'\r\n\]])""", re.M
)


@dataclass(frozen=True)
class Hit:
    place: str
    column: str
    masked: str
    count: int = 1

    def line(self) -> str:
        more = f", {self.count} values" if self.count > 1 else ""
        return f"{self.place}: {self.column} value found ({self.masked}{more})"


@dataclass
class AuditResult:
    hits: list[Hit] = field(default_factory=list)
    released: list[str] = field(default_factory=list)  # recorded contact exports (personal by design)
    files: int = 0
    runs: int = 0  # MLflow runs whose params, tags and metric names were read
    values: int = 0  # distinct personal values looked for

    def summary(self) -> str:
        verdict = f"{len(self.hits)} places with personal values" if self.hits else "no personal values found"
        return (
            f"pii audit: {verdict}; {self.files:,} files and {self.runs:,} MLflow runs scanned for "
            f"{self.values:,} personal values; {len(self.released)} released exports"
        )


def mask(value: str) -> str:
    """A personal value shown so it can be recognised by someone who has it, useless to anyone else."""
    if "@" in value:
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}"
    digits = re.sub(r"\D", "", value)
    if len(digits) >= 7 and len(digits) >= len(value) // 2:
        return f"***{digits[-3:]}"
    return " ".join(f"{w[:1]}***" for w in value.split()) or "***"


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


class PersonalValues:
    """The distinct personal values of the lake, normalised for lookup, each mapped to its column."""

    def __init__(self, rows: dict[str, Iterable[str]]) -> None:
        self.emails: dict[str, str] = {}
        self.phones: dict[str, str] = {}
        self.ids: dict[str, str] = {}
        self.names: dict[str, str] = {}
        self.surnames: dict[str, str] = {}
        for column, values in rows.items():
            kind = _kind(column)
            for raw in values:
                if raw is None or not str(raw).strip():
                    continue
                value = str(raw).strip()
                if kind == "email":
                    self.emails[value.lower()] = column
                elif kind == "phone":
                    digits = _digits(value)
                    if len(digits) >= 7:
                        self.phones[digits] = column
                        # also without the country code, as a national number (the last ten digits)
                        if len(digits) > 10:
                            self.phones[digits[-10:]] = column
                elif kind == "name":
                    words = value.split()
                    if len(words) >= 2:
                        self.names[" ".join(w.lower() for w in words[-2:])] = column
                        self.names[" ".join(w.lower() for w in words)] = column
                    if len(words[-1]) >= 4:
                        self.surnames[words[-1]] = column
                elif len(value) >= 6:
                    self.ids[value.upper()] = column

    def __len__(self) -> int:
        return len(self.emails) + len(self.phones) + len(self.ids) + len(self.names) + len(self.surnames)

    def scan(self, text: str, whole_values: bool) -> dict[str, tuple[str, int]]:
        """Hits in ``text``: column -> (first value found, number of distinct values). ``whole_values``: the text
        is structured data, where a surname standing as a whole value counts."""
        found: dict[str, dict[str, None]] = {}

        def add(column: str, value: str) -> None:
            found.setdefault(column, {})[value] = None

        for m in _EMAIL.finditer(text):
            column = self.emails.get(m.group().lower())
            if column:
                add(column, m.group())
        text = _EMAIL.sub(" ", text)
        for m in _PHONE.finditer(text):
            digits = _digits(m.group())
            column = self.phones.get(digits) or (self.phones.get(digits[1:]) if digits[:1] == "0" else None)
            if column and len(digits) >= 7:
                add(column, m.group())
        if self.ids:
            for m in _WORD.finditer(text):
                if len(m.group()) >= 6:
                    column = self.ids.get(m.group().upper())
                    if column:
                        add(column, m.group())
        for m in _NAME_PAIR.finditer(text):
            pair = f"{m.group(1)} {m.group(2)}"
            column = self.names.get(pair.lower())
            if column:
                add(column, pair)
        if whole_values and self.surnames:
            for m in _WHOLE_VALUE.finditer(text):
                column = self.surnames.get(m.group(1))
                if column:
                    add(column, m.group(1))
        return {column: (next(iter(values)), len(values)) for column, values in found.items()}


def _kind(column: str) -> str:
    name = column.lower()
    if "mail" in name:
        return "email"
    if "phone" in name or "mobile" in name:
        return "phone"
    if "name" in name:
        return "name"
    return "id"


def personal_values(settings: Settings) -> PersonalValues:
    """The distinct values of every ``pii`` column of every lake table present."""
    from pipelines.data import schema, storage

    rows: dict[str, Iterable[str]] = {}
    for table in schema.TABLES.values():
        columns = table.pii_columns
        if not columns or not storage.table_dir(settings.lake_dir, table.name).is_dir():
            continue
        frame = storage.read_table(settings.lake_dir, table.name, columns=columns)
        for column in columns:
            rows[f"{table.name}.{column}"] = frame[column].dropna().astype(str).unique()
    return PersonalValues(rows)


def _released_exports(settings: Settings) -> dict[Path, set[str]]:
    """The contact exports recorded in the campaign database: path -> recorded SHA-256s (none without a
    database). On PostgreSQL reading them needs the contact role (or the tables' owner)."""
    from pipelines.campaigns import contact_export, store_schema

    url = settings.database_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        return {}
    engine = store_schema.make_engine(url)
    try:
        recorded = contact_export.released_exports(engine)
    finally:
        engine.dispose()
    return {path.resolve(): digests for path, digests in recorded.items()}


def _is_released(path: Path, released: dict[Path, set[str]]) -> bool:
    from pipelines.campaigns.contact_export import file_sha256

    digests = released.get(path.resolve())
    return bool(digests) and file_sha256(path) in digests


def _files(root: Path, skip: Iterable[Path] = ()) -> Iterator[Path]:
    skipped = {p.resolve() for p in skip}
    if not root.is_dir():
        return
    for path in sorted(root.rglob("*")):
        if any(parent in skipped for parent in path.parents) or path in skipped:
            continue
        if path.is_file() and path.suffix.lower() not in _SKIP_SUFFIXES and path.stat().st_size <= _MAX_BYTES:
            yield path


def _file_text(path: Path) -> tuple[str, bool]:
    """The text of a file to scan and whether it is structured data (values, not prose)."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        parts = []
        for name, column in zip(table.column_names, table.columns, strict=True):
            if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
                parts.extend(str(v) for v in column.unique().to_pylist() if v is not None)
            elif pa.types.is_dictionary(column.type):
                parts.extend(str(v) for v in column.combine_chunks().dictionary.to_pylist() if v is not None)
            parts.append(name)
        return "\n".join(parts), True
    if suffix == ".xlsx":
        return _xlsx_text(path), True
    data = path.read_bytes()
    if b"\x00" in data[:65536] or suffix in _BINARY_SUFFIXES:
        # a pickle, a database, a binary model: its strings stand between non-printable bytes, as whole values
        return _NON_PRINTABLE.sub("\n", data.decode("latin-1")), True
    prose = suffix in {".md", ".html", ".htm", ".txt", ".log", ".py"}
    return data.decode("utf-8", errors="replace"), not prose


def _xlsx_text(path: Path) -> str:
    """The cell text of an Excel workbook (a zip of XML parts, whose compressed bytes a byte scan cannot read):
    the shared strings and the sheets' inline values, one value a line."""
    import html
    import zipfile

    with zipfile.ZipFile(path) as book:
        parts = [
            book.read(name).decode("utf-8", errors="replace")
            for name in book.namelist()
            if name == "xl/sharedStrings.xml" or name.startswith("xl/worksheets/")
        ]
    cells = re.findall(r"<(?:t|v)(?:\s[^>]*)?>([^<]*)</(?:t|v)>", "\n".join(parts))
    return "\n".join(html.unescape(c) for c in cells)


def _scan_files(
    values: PersonalValues, files: Iterable[Path], released: dict[Path, set[str]], result
) -> None:
    for path in files:
        result.files += 1
        try:
            text, structured = _file_text(path)
        except Exception as exc:  # noqa: BLE001 - an unreadable file is reported, not fatal
            result.hits.append(Hit(str(path), "unreadable", type(exc).__name__))
            continue
        found = values.scan(text, structured)
        if found and _is_released(path, released):
            result.released.append(str(path))
            continue
        for column, (value, count) in sorted(found.items()):
            result.hits.append(Hit(str(path), column, mask(value), count))


def _all_runs(client, experiment_id: str, view_type) -> Iterator:
    token = None
    while True:
        page = client.search_runs(
            [experiment_id], run_view_type=view_type, max_results=1000, page_token=token
        )
        yield from page
        token = page.token
        if not token:
            return


def _scan_mlflow(settings: Settings, values: PersonalValues, result: AuditResult) -> list[Path]:
    """Scans every run's params, tags and metric names, and the registry; returns the artifact folders."""
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    uri = settings.mlflow_tracking_uri
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return []
    client = MlflowClient(tracking_uri=uri)
    folders: list[Path] = []
    for experiment in client.search_experiments(view_type=ViewType.ALL):
        location = experiment.artifact_location or ""
        if location.startswith("file://"):
            folders.append(Path(location.removeprefix("file://")))
        elif location and "://" not in location:
            folders.append(Path(location))
        for run in _all_runs(client, experiment.experiment_id, ViewType.ALL):
            result.runs += 1
            place = f"mlflow run {run.info.run_id} ({experiment.name})"
            for kind, items in (
                ("param", run.data.params.items()),
                ("tag", run.data.tags.items()),
                ("metric", ((k, "") for k in run.data.metrics)),
            ):
                for key, value in items:
                    for column, (found, count) in values.scan(f"{key}\n{value}", True).items():
                        result.hits.append(Hit(f"{place} {kind} {key}", column, mask(found), count))
    for model in client.search_registered_models():
        texts = [model.name, model.description or "", *(f"{k}\n{v}" for k, v in model.tags.items())]
        for version in client.search_model_versions(f"name = '{model.name}'"):
            texts += [version.description or "", *(f"{k}\n{v}" for k, v in version.tags.items())]
        for column, (found, count) in values.scan("\n".join(texts), True).items():
            result.hits.append(Hit(f"mlflow registered model {model.name}", column, mask(found), count))
    return folders


def audit_pii(settings: Settings, progress: Callable[[str], None] | None = print) -> AuditResult:
    """Scans everything the platform writes for the lake's personal values; ``hits`` is empty when none leaked."""
    say = progress or (lambda _line: None)
    values = personal_values(settings)
    result = AuditResult(values=len(values))
    if not len(values):
        say(f"no personal columns in the lake at {settings.lake_dir}: nothing to look for")
        return result
    say(f"looking for {len(values):,} personal values")
    released = _released_exports(settings)
    folders = _scan_mlflow(settings, values, result)
    artifact_root = None
    if settings.mlflow_tracking_uri.startswith("sqlite:///"):
        artifact_root = Path(settings.mlflow_tracking_uri.removeprefix("sqlite:///")).parent / "artifacts"
    roots: list[tuple[Path, list[Path]]] = [
        (settings.data_dir, [settings.data_dir / part for part in _DATA_PARTS_SKIPPED]),
    ]
    seen = {settings.data_dir.resolve()}
    for folder in [*([artifact_root] if artifact_root else []), *folders, settings.airflow_home / "logs"]:
        folder = folder.resolve()
        if folder in seen or any(parent in seen for parent in folder.parents):
            continue
        seen.add(folder)
        roots.append((folder, []))
    scanned: set[Path] = set()
    for root, skip in roots:
        files = list(_files(root, skip))
        scanned.update(p.resolve() for p in files)
        _scan_files(values, files, released, result)
    # Recorded exports elsewhere than the scanned folders are scanned too: released if unchanged, hits if not.
    outside = [p for p in sorted(released) if p.is_file() and p not in scanned]
    _scan_files(values, outside, released, result)
    say(result.summary())
    return result
