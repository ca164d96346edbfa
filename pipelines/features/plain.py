"""Plain-language wording of a feature, for the people who act on a list (call-centre agents, campaign staff).

Each catalogue entry (:mod:`pipelines.features.catalogue`) carries a :class:`Plain`: a short ``label`` naming the
feature ("days since last app login") and a ``text`` template that states the customer's own value
("12 days since last app login"). :func:`reason_text` turns a reason code (a feature name) and, when known, the
customer's value into one such phrase; without a value it says the label and that it raised the score, which is
all a stored reason code (only the name) tells.

The wording holds no personal data: templates name behaviours and windows, and the only value put in is the
customer's feature value, which is never personal data (the catalogue asserts no PII column is a feature).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# How a value is written into a template's {v} (and {dir} for changes).
UNITS = ("count", "days", "amount", "share", "change", "ratio", "category", "years")


@dataclass(frozen=True)
class Plain:
    """``label``: what the feature is, a few words; ``text``: the same with the value in ``{v}`` (and, for a
    ``change``, ``up``/``down`` in ``{dir}``), written as ``unit`` says (one of :data:`UNITS`)."""

    label: str
    text: str
    unit: str

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"Plain.unit must be one of {UNITS}, got {self.unit!r} (label {self.label!r})")
        if "{v}" not in self.text or (self.unit == "change") != ("{dir}" in self.text):
            raise ValueError(
                f"Plain.text {self.text!r} must hold {{v}}, and {{dir}} exactly when the unit is 'change'"
            )


def format_value(plain: Plain, value: object) -> str:
    """``plain.text`` with ``value`` written in; the label and "(raised the score)" when the value is missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"{plain.label} (raised the score)"
    if plain.unit == "category":
        return plain.text.format(v=str(value))
    x = float(value)
    if plain.unit == "change":
        return plain.text.format(dir="up" if x >= 0 else "down", v=f"{abs(x) * 100:.0f}")
    if plain.unit == "share":
        return plain.text.format(v=f"{x * 100:.0f}")
    if plain.unit == "ratio":
        return plain.text.format(v=f"{x:.1f}")
    return plain.text.format(v=f"{round(x):,}")  # count, days, amount, years


def plain_of(feature: str) -> Plain:
    """The wording of catalogue feature ``feature``; for a name the catalogue no longer defines (a run stored
    before a feature was renamed), its words as the label, so an old list still exports without raw names."""
    from pipelines.features.catalogue import BY_NAME

    entry = BY_NAME.get(feature)
    if entry is None:
        words = feature.replace("_", " ")
        return Plain(words, f"{words} {{v}}", "category")
    return entry.plain


def reason_text(feature: str | None, value: object = None) -> str | None:
    """The plain-language phrase of reason code ``feature`` for a customer whose value of it is ``value`` (None:
    unknown). None for no reason."""
    if feature is None or (isinstance(feature, float) and math.isnan(feature)):
        return None
    return format_value(plain_of(feature), value)
