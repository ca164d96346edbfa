"""Personal data in a table a user brings: which columns likely hold it (:func:`find_personal_columns`), keeping
them out of the features unless the user allows one by name (:func:`screen_personal_columns`), and the input
example logged with a model, built from per-column statistics instead of raw rows (:func:`synthetic_example`).

A column is personal when its header says so (names, surnames, e-mail, phone, national or tax ids, bank accounts,
street addresses and postcodes, birth dates; English headers and the common German, French, Spanish, Italian,
Portuguese and Dutch ones, and every column the lake's data model marks ``pii``), or when its text values look
like e-mail addresses, phone numbers, national ids or IBANs, street addresses, or mostly distinct personal names.
A column with at most two distinct values is a flag (``email`` = yes/no), not personal data.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

# Header words that qualify whose value it is without changing what it is: ``customer_email`` is an e-mail.
_QUALIFIERS = {
    "customer", "client", "cust", "contact", "person", "personal", "primary", "secondary", "main", "private",
    "home", "work", "holder", "owner", "member", "kunde", "kunden", "cliente", "the", "my", "of", "de", "du", "da",
    "del", "la", "le", "di",
}  # fmt: skip
_NUMBER = r"(_?(number|no|nr|num|nummer|numero|code|id))?"
# Headers (lower case, accents dropped, words joined by "_", digits split off) and what they hold.
_HEADERS: tuple[tuple[str, str], ...] = (
    (
        "names",
        r"((first|last|given|family|full|middle|maiden|sur|user|display|nick)_?)?names?"
        r"|names?_(first|last|given|family|full|middle)|forenames?|initials|nachname|vorname|familienname"
        r"|nom(_de_famille)?|prenoms?|apellidos?|nombres?(_completo)?|cognome|nome(_completo)?|achternaam"
        r"|voornaam|sobrenome|nom_complet",
    ),
    ("e-mail addresses", r"e_?mails?(_?(address|addresses|addr|adresse))?|courriel|correo(_electronico)?"),
    (
        "phone numbers",
        rf"((mobile|cell|tele?)_?)?phone{_NUMBER}|tel(efon|efono|efone)?{_NUMBER}|mobile({_NUMBER}|_phone)?"
        rf"|cell{_NUMBER}|handy{_NUMBER}|portable|fax{_NUMBER}|msisdn|whatsapp",
    ),
    (
        "national or tax ids",
        rf"ssn|sin|nin|nino|social_security{_NUMBER}|national(_insurance|_identity|_identification)?{_NUMBER}"
        rf"|passport{_NUMBER}|tax_?(id|number|no|nr|code|ident)|tin|vat{_NUMBER}|nif|nie|dni|cpf|pesel|bsn"
        rf"|aadhaa?r|steuer_?(id|nummer|identifikationsnummer)|personalausweis{_NUMBER}|ausweis{_NUMBER}"
        rf"|codice_fiscale|insee|nir|id_card{_NUMBER}|identity(_card)?{_NUMBER}|drivers?_licen[cs]e{_NUMBER}",
    ),
    (
        "bank accounts",
        rf"iban|bic|swift{_NUMBER}|bank_account{_NUMBER}|account_(number|no|nr|num)|sort_code|routing{_NUMBER}"
        r"|kontonummer|numero_de_cuenta|card_number|credit_card{_NUMBER}",
    ),
    (
        "street addresses",
        r"((street|postal|mailing|billing|shipping|residential)_?)?(address|addr)(_?line)?|street(_?name)?"
        r"|strasse|house_?(number|no|nr)|hausnummer|adresse|direccion|indirizzo|endereco|post_?code"
        r"|postal_?code|zip(_?code)?|plz|codigo_postal|code_postal",
    ),
    (
        "birth dates",
        r"dob|d_o_b|birth_?(date|day)|date_birth|birthday|born(_on)?|geburtsdatum|geburtstag|date_naissance"
        r"|naissance|fecha_(de_)?nacimiento|data_(di_)?nascita|data_(de_)?nascimento",
    ),
)
_HEADER_PATTERNS = tuple((kind, re.compile(pattern)) for kind, pattern in _HEADERS)

# Values (a sample of the column's non-blank text, stripped).
EMAIL_PATTERN = r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+"
_PHONE = r"(\+|00|0|\()[\d\s().\-/]{6,22}\d|\d{2,4}([\s\-.]\d{2,4}){2,5}"
_DATE = r"\d{1,4}[-./]\d{1,2}[-./]\d{1,4}"
_NATIONAL_ID = (
    r"\d{3}-\d{2}-\d{4}"  # US SSN
    r"|[A-Z]{2}\s?\d{2}\s?\d{2}\s?\d{2}\s?[A-D]"  # UK National Insurance number
    r"|[A-Z]{2}\d{2}(\s?[A-Z0-9]{4}){2,7}(\s?[A-Z0-9]{1,4})?"  # IBAN
)
_STREET_WORDS = (
    r"street|st|road|rd|avenue|ave|lane|ln|drive|dr|boulevard|blvd|way|close|court|ct|place|pl|square|sq|terrace"
    r"|crescent|strasse|straße|str|weg|gasse|platz|allee|rue|chemin|calle|avenida|via|viale|piazza|rua|straat"
    r"|laan|plein"
)
_STREET = (
    rf"(?i:\d+[a-z]?,?\s+(\S+\s+){{0,4}}({_STREET_WORDS})\.?\b.*|\S*({_STREET_WORDS})\.?\s+\d+[a-z]?\b.*)"
)
_NAME = r"[A-Z][a-zà-ÿ'’\-]+( [A-Z][a-zà-ÿ'’\-]+){0,3}"
_SAMPLE = 5_000


@dataclass(frozen=True)
class PersonalColumn:
    """A column that likely holds personal data: what kind, and the evidence (its header, or its values)."""

    column: str
    kind: str
    evidence: str

    def describe(self) -> str:
        return f"{self.column!r} ({self.kind}: {self.evidence})"


def _header_words(name: str) -> list[str]:
    text = unicodedata.normalize("NFKD", str(name).replace("ß", "ss"))
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = re.sub(r"([a-z])([A-Z])", r"\1_\2", text)  # lastName -> last_Name
    text = re.sub(r"([A-Za-z])(\d)|(\d)([A-Za-z])", r"\1\3_\2\4", text)  # phone2 -> phone_2
    return [w for w in re.split(r"[^a-z0-9]+", text.lower()) if w]


def _lake_personal_columns() -> set[str]:
    """The columns the lake's data model marks ``pii`` (:mod:`pipelines.data.schema`): personal by definition."""
    from pipelines.data.schema import TABLES

    return {c for table in TABLES.values() for c in table.pii_columns}


def header_kind(name: str) -> str | None:
    """What a column's header says it holds ("names", "e-mail addresses", ...), or None."""
    words = _header_words(name)
    kept = [w for w in words if w not in _QUALIFIERS and not w.isdigit()]
    for candidate in dict.fromkeys(["_".join(kept), "_".join(words)]):
        for kind, pattern in _HEADER_PATTERNS:
            if candidate and pattern.fullmatch(candidate):
                return kind
    if str(name) in _lake_personal_columns():
        return "personal data of the lake's data model"
    return None


def _share(values: pd.Series, pattern: str) -> float:
    return float(values.str.fullmatch(pattern).mean()) if len(values) else 0.0


def value_kind(values: pd.Series) -> tuple[str, str] | None:
    """(kind, evidence) when a column's text values look personal, else None. Numbers are not looked at: a phone
    number or an id stored as a number is recognised by its header only."""
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        return None
    if pd.api.types.is_datetime64_any_dtype(values):
        return None
    text = values.dropna().astype(str).str.strip()
    text = text[text != ""]
    if len(text) > _SAMPLE:  # evenly spaced rows: deterministic, and spread over a sorted table
        text = text.iloc[np.linspace(0, len(text) - 1, _SAMPLE).astype(int)]
    if text.nunique() <= 2:
        return None
    checks = (
        ("e-mail addresses", EMAIL_PATTERN, 0.5),
        ("national or tax ids", _NATIONAL_ID, 0.8),
        ("street addresses", _STREET, 0.5),
    )
    for kind, pattern, threshold in checks:
        share = _share(text, pattern)
        if share >= threshold:
            return kind, f"{share:.0%} of its values look like {kind}"
    not_date = ~text.str.fullmatch(_DATE)
    digits = text.str.count(r"\d")
    phone = (text.str.fullmatch(_PHONE) & not_date & digits.between(7, 15)).mean()
    if phone >= 0.8:
        return "phone numbers", f"{phone:.0%} of its values look like phone numbers"
    names = _share(text, _NAME)
    distinct = text.nunique()
    several_words = float(text.str.contains(" ").mean())
    if (
        names >= 0.9
        and distinct >= 50
        and ((several_words >= 0.5 and distinct >= 0.2 * len(text)) or distinct >= 200)
    ):
        return "names", f"{names:.0%} of its values look like personal names, {distinct:,} distinct"
    return None


def find_personal_columns(frame: pd.DataFrame, columns: Iterable[str] | None = None) -> list[PersonalColumn]:
    """The columns of ``frame`` (or of ``columns``) that likely hold personal data, by header, then by values."""
    found = []
    for name in frame.columns if columns is None else columns:
        col = frame[name]
        if col.nunique(dropna=True) <= 2:
            continue  # a flag or a constant identifies no one
        kind = header_kind(name)
        if kind is not None:
            found.append(PersonalColumn(str(name), kind, "column name"))
            continue
        by_values = value_kind(col)
        if by_values is not None:
            found.append(PersonalColumn(str(name), *by_values))
    return found


def screen_personal_columns(
    frame: pd.DataFrame,
    candidates: Iterable[str],
    allow: Iterable[str] = (),
    say: Callable[[str], None] = lambda _line: None,
) -> list[str]:
    """The candidate feature columns to leave out because they likely hold personal data (not in ``allow``), each
    named in one line through ``say``; allowed ones are named too. Raises ValueError for an ``allow`` entry that is
    not a column of ``frame``."""
    allow = list(allow)
    unknown = [c for c in allow if c not in frame.columns]
    if unknown:
        raise ValueError(
            f"--allow-column {', '.join(map(repr, unknown))}: not a column of the table; columns: "
            f"{', '.join(map(str, frame.columns))}"
        )
    found = find_personal_columns(frame, candidates)
    refused = [p for p in found if p.column not in allow]
    allowed = [p for p in found if p.column in allow]
    if refused:
        say(
            "personal data: left out of the features: "
            + ", ".join(p.describe() for p in refused)
            + " (--allow-column COL to use one anyway)"
        )
    if allowed:
        say(
            "personal data: used as features because allowed (--allow-column): "
            + ", ".join(p.describe() for p in allowed)
        )
    return [p.column for p in refused]


MASKED = "masked"
# The quantiles the rows of a synthetic example take, one per row.
_EXAMPLE_QUANTILES = (0.5, 0.25, 0.75, 0.1, 0.9)


def synthetic_example(frame: pd.DataFrame, rows: int = 5) -> pd.DataFrame:
    """An input example with ``frame``'s columns and dtypes but none of its rows: row ``i`` holds, column by
    column, the ``i``-th of the quantiles 50 %, 25 %, 75 %, 10 %, 90 % of a numeric column (interpolated) and the
    ``i``-th most common value of any other column held by at least two rows (:data:`MASKED` when there is none),
    so no row of the table, and no value that a single row holds alone, is logged with a model."""
    rows = max(1, min(rows, len(_EXAMPLE_QUANTILES)))
    out = {}
    for name in frame.columns:
        col = frame[name]
        if pd.api.types.is_bool_dtype(col):
            common = col.dropna().value_counts().index.tolist() or [None]
            out[name] = pd.Series([common[i % len(common)] for i in range(rows)], dtype=col.dtype)
        elif pd.api.types.is_numeric_dtype(col):
            values = col.dropna().astype(np.float64)
            picked = (
                values.quantile(list(_EXAMPLE_QUANTILES[:rows])).to_numpy()
                if len(values)
                else np.full(rows, np.nan)
            )
            if pd.api.types.is_integer_dtype(col):
                picked = np.round(picked)
                out[name] = pd.Series(picked, dtype=col.dtype if len(values) else np.float64)
            else:
                out[name] = pd.Series(picked, dtype=col.dtype)
        else:
            counts = col.dropna().value_counts(sort=True)
            # ties broken by value, so the example does not depend on row order
            ranked = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))
            common = [v for v, n in ranked if n > 1] or [MASKED]
            values = [common[i % len(common)] for i in range(rows)]
            out[name] = pd.Series(
                values, dtype=object if isinstance(col.dtype, pd.CategoricalDtype) else col.dtype
            )
    return pd.DataFrame(out, columns=frame.columns)


__all__ = [
    "PersonalColumn",
    "find_personal_columns",
    "header_kind",
    "screen_personal_columns",
    "synthetic_example",
    "value_kind",
]
