"""Every catalogue feature reads in plain language, and the wording holds no personal data."""

from __future__ import annotations

import pytest

from pipelines.data.schema import TABLES
from pipelines.features.catalogue import CATALOGUE
from pipelines.features.plain import Plain, format_value, reason_text

PII_COLUMNS = {c for t in TABLES.values() for c in t.pii_columns}
PII_WORDS = {"name", "phone", "e-mail", "email", "address", "national id", "birth date", "date of birth"}


@pytest.mark.parametrize("feature", CATALOGUE, ids=lambda f: f.name)
def test_every_feature_has_a_plain_label_without_personal_data(feature):
    plain = feature.plain
    assert isinstance(plain, Plain) and plain.label.strip() and plain.text.strip()
    for words in (plain.label, plain.text):
        assert "_" not in words  # no raw feature name (every multi-word name has one)
        lowered = words.lower()
        assert not any(c in lowered for c in PII_COLUMNS | PII_WORDS), words
    sample = "gold" if plain.unit == "category" else 0.25
    said = reason_text(feature.name, sample)
    assert "{" not in said and said != plain.label
    assert reason_text(feature.name) == f"{plain.label} (raised the score)"
    assert reason_text(feature.name, float("nan")) == reason_text(feature.name)


@pytest.mark.parametrize(
    ("unit", "text", "value", "expected"),
    [
        ("change", "assets {dir} {v} % last month", -0.4, "assets down 40 % last month"),
        ("change", "assets {dir} {v} % last month", 0.125, "assets up 12 % last month"),
        ("share", "{v} % of spending on grocery (6 months)", 0.31, "31 % of spending on grocery (6 months)"),
        ("days", "{v} days since last app login", 12.0, "12 days since last app login"),
        ("amount", "spent {v} in the last 30 days", 12345.6, "spent 12,346 in the last 30 days"),
        ("ratio", "spent {v} times the usual", 0.25, "spent 0.2 times the usual"),
    ],
)
def test_values_are_written_as_their_unit_says(unit, text, value, expected):
    assert format_value(Plain("label", text, unit), value) == expected


def test_a_malformed_wording_is_refused_naming_it():
    with pytest.raises(ValueError, match="unit must be one of"):
        Plain("x", "{v}", "percent")
    with pytest.raises(ValueError, match="dir"):
        Plain("assets", "assets {v} %", "change")


def test_no_reason_is_none_and_an_unknown_name_still_reads_without_underscores():
    assert reason_text(None) is None
    assert reason_text("balance_drop_30d") == "balance drop 30d (raised the score)"
