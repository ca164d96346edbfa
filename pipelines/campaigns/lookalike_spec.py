"""The ``lookalike:`` block of a ``model: lookalike`` campaign: the seed to look like and how many to pick.

```yaml
model: lookalike
lookalike:
  seed_file: seeds/best-travel-customers.csv        # customer ids, relative to the campaigns folder; or
  seed_query: [{column: spend_180d, op: ">=", value: 5000}]   # audience rules over the wide table
  size: 2000                                        # customers to expand to (before the holdout)
```

Exactly one of ``seed_file`` (a CSV or Parquet file with a single ``customer_id`` column) and ``seed_query``
(column rules as in ``audience:``, over the run's wide table and segments; not ``score`` or ``decile``, which a
lookalike produces). A run fits a seed-vs-base classifier (``pipelines.models.lookalike``), scores the base and
selects the ``size`` eligible non-seed customers most like the seed; the spec's ``selection`` is that top_k, so
the spec leaves it out. The rule type is a parameter (``Lookalike[AudienceRule]`` in ``spec.py``) so this module
does not import the spec it belongs to.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator, model_validator

RuleT = TypeVar("RuleT")
SEED_FILE_SUFFIXES = (".csv", ".parquet")
# Columns a seed query may not use: they are what the lookalike produces.
NOT_SEED_COLUMNS = ("score", "decile")


class Lookalike(BaseModel, Generic[RuleT]):
    """Who to look like (``seed_file`` or ``seed_query``) and how many customers to expand to (``size``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed_file: StrictStr | None = None
    seed_query: tuple[RuleT, ...] | None = None
    size: Annotated[StrictInt, Field(ge=1)]

    @field_validator("seed_file")
    @classmethod
    def _relative_seed_file(cls, v: str | None) -> str | None:
        if v is None:
            return v
        path = PurePosixPath(v.replace("\\", "/"))
        if path.is_absolute() or ".." in path.parts or not v.strip():
            raise ValueError(f"a path relative to the campaigns folder (e.g. seeds/best.csv), got {v!r}")
        if path.suffix.lower() not in SEED_FILE_SUFFIXES:
            raise ValueError(f"a {' or '.join(SEED_FILE_SUFFIXES)} file of customer ids, got {v!r}")
        return v

    @field_validator("seed_query")
    @classmethod
    def _no_score_columns(cls, v: tuple[Any, ...] | None) -> tuple[Any, ...] | None:
        if v is not None and not v:
            raise ValueError(
                "a seed query needs at least one rule, e.g. [{column: spend_180d, op: '>=', value: 5000}]"
            )
        for rule in v or ():
            if getattr(rule, "column", None) in NOT_SEED_COLUMNS:
                raise ValueError(
                    f"a seed query cannot use {rule.column!r}: the lookalike computes it; use wide-table "
                    "features, segment columns or attributes"
                )
        return v

    @model_validator(mode="after")
    def _exactly_one_seed(self) -> Lookalike:
        if (self.seed_file is None) == (self.seed_query is None):
            got = "both" if self.seed_file is not None else "neither"
            raise ValueError(f"set exactly one of seed_file, seed_query (got {got})")
        return self

    @property
    def seed_label(self) -> str:
        """The seed in a few words, for logs and run details: the file name or the rules."""
        if self.seed_file is not None:
            return f"file {self.seed_file}"
        return "query " + " and ".join(getattr(r, "label", str(r)) for r in self.seed_query or ())


def lookalike_problem(block: Lookalike | None, model: str | None, selection: Any, trigger: Any) -> str | None:
    """Why a spec's ``lookalike`` block does not fit the rest of it (its model, selection and trigger), or None.
    ``model`` None: the model itself is invalid and already reported."""
    if model is None:
        return None
    if model != "lookalike":
        if block is not None:
            return f"only for model: lookalike campaigns (this one is model: {model}); remove it"
        return None
    if block is None:
        return "required with model: lookalike: {seed_file: <ids file> or seed_query: [<rules>], size: <N>}"
    if trigger is not None:
        return (
            "a lookalike campaign is a batch campaign: remove the trigger (real-time campaigns score events)"
        )
    if selection is not None and getattr(selection, "top_k", None) != block.size:
        return (
            f"a lookalike campaign selects its top size ({block.size}) customers: remove selection "
            f"({getattr(selection, 'mode', 'given')})"
        )
    return None
