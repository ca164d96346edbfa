"""Campaign specs: declared in YAML, validated on load into a frozen :class:`CampaignSpec`.

A campaign is a ``campaigns/<name>.yaml`` file: the model it selects by, its schedule (an Airflow preset or a
cron line, checked with croniter), its channel, its audience rules, how many to select, the holdout (fixed, or
sized by power analysis), the contact policy's settings and the money figures of its readout. A spec that
cannot be used raises :class:`SpecError` naming the file, the field and the problem; every problem of a file is
reported at once. The policy that applies these settings to a scored base is ``pipelines.campaigns.policy``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    Tag,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pipelines.campaigns.lookalike_spec import Lookalike, lookalike_problem
from pipelines.campaigns.place_rules import WithinKmRule
from pipelines.campaigns.spec_header import (  # noqa: F401 (KNOWN_MODELS, SCHEDULE_PRESETS: re-exported)
    KNOWN_MODELS,
    SCHEDULE_PRESETS,
    SpecError,
    model_problem,
    name_problem,
    read_each,
    read_yaml,
    schedule_problem,
)
from pipelines.campaigns.trigger import Trigger
from pipelines.data.schema import CONTACT_CHANNELS, TABLES
from pipelines.features.catalogue import ATTRIBUTE_NAMES, ATTRIBUTES, FEATURE_NAMES, STATIC_CATEGORIES
from pipelines.models.segmentation import LIFECYCLE_STAGES, RFM_SEGMENTS, VALUE_TIERS

# What a model: uplift campaign selects by when the uplift champion found no heterogeneity (spec field fallback).
FALLBACKS = ("response", "random")
SEGMENT_COLUMNS = ("rfm_segment", "value_tier", "lifecycle_stage", "persona")
SCORE_COLUMNS = ("score", "decile")
AUDIENCE_COLUMNS = (*FEATURE_NAMES, *SCORE_COLUMNS, *SEGMENT_COLUMNS, *ATTRIBUTE_NAMES)
OPS = ("==", "!=", "<", "<=", ">", ">=", "in", "not_in", "between")

_CATEGORY_VALUES = {
    **{c: TABLES["customers"].column(c).allowed for c in STATIC_CATEGORIES},
    # Segment columns with fixed value lists (personas are named from the data, so any name is accepted).
    "rfm_segment": RFM_SEGMENTS,
    "lifecycle_stage": LIFECYCLE_STAGES,
    "value_tier": VALUE_TIERS,
    # The customer's home region and city (audience attributes, never model inputs: catalogue.ATTRIBUTES).
    **{a.name: a.values for a in ATTRIBUTES},
}
_NUMERIC_COLUMNS = frozenset(c for c in (*FEATURE_NAMES, *SCORE_COLUMNS) if c not in _CATEGORY_VALUES)
_ORDERING_OPS = ("<", "<=", ">", ">=", "between")


# --------------------------------------------------------------------------------------------------------------
# The spec


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_scalar(v: object) -> bool:
    return isinstance(v, str | int | float | bool)


def _fmt(v: object) -> str:
    """A rule value as written in reasons and messages: ``90``, ``0.5``, ``gold``, ``[gold, platinum]``."""
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


class AudienceRule(_Model):
    """One condition on the scored frame; a customer must pass every rule. A missing value fails the rule."""

    column: StrictStr
    op: StrictStr
    value: Any

    @field_validator("column")
    @classmethod
    def _known_column(cls, v: str) -> str:
        if v not in AUDIENCE_COLUMNS:
            close = difflib.get_close_matches(v, AUDIENCE_COLUMNS, n=3)
            hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
            raise ValueError(
                f"unknown audience column {v!r}{hint}; use a wide-table feature (docs/features.md), "
                f"{', '.join(SCORE_COLUMNS)}, a segment column ({', '.join(SEGMENT_COLUMNS)}) or "
                f"{' or '.join(ATTRIBUTE_NAMES)} (or a rule within_km: {{of: <branch id>, km: <N>}})"
            )
        return v

    @field_validator("op")
    @classmethod
    def _known_op(cls, v: str) -> str:
        if v not in OPS:
            raise ValueError(f"unknown op {v!r}; use one of {', '.join(OPS)}")
        return v

    @field_validator("value")
    @classmethod
    def _value_fits_op(cls, v: Any, info: ValidationInfo) -> Any:
        op, column = info.data.get("op"), info.data.get("column")
        if op is None:  # the op itself is invalid and already reported
            return v
        if op in ("in", "not_in"):
            if not isinstance(v, list) or not v or not all(_is_scalar(x) for x in v):
                raise ValueError(f"op {op!r} needs a non-empty list of values, got {v!r}")
            values = tuple(v)
        elif op == "between":
            if not isinstance(v, list) or len(v) != 2 or not all(_is_number(x) for x in v):
                raise ValueError(f"op 'between' needs a list of two numbers [low, high], got {v!r}")
            if v[0] > v[1]:
                raise ValueError(f"op 'between' needs low <= high, got {v!r}")
            values = tuple(v)
        else:
            if not _is_scalar(v):
                raise ValueError(f"op {op!r} needs a single value (a number or a string), got {v!r}")
            values = (v,)
        if column in _CATEGORY_VALUES:
            allowed = _CATEGORY_VALUES[column]
            if op in _ORDERING_OPS:
                raise ValueError(f"column {column!r} is a category: use ==, !=, in or not_in, not {op!r}")
            unknown = [x for x in values if x not in allowed]
            if unknown:
                raise ValueError(
                    f"{_fmt(unknown)} not a value of {column!r}; allowed: {', '.join(map(str, allowed))}"
                )
        elif column in _NUMERIC_COLUMNS and not all(_is_number(x) for x in values):
            raise ValueError(f"column {column!r} is numeric: compare it with numbers, got {v!r}")
        return values if op in ("in", "not_in", "between") else v

    @property
    def label(self) -> str:
        """The rule as text, e.g. ``tenure_days >= 90``."""
        return f"{self.column} {self.op} {_fmt(self.value)}"


def _rule_kind(v: Any) -> str:
    """Which kind of audience rule an entry is: ``within_km`` when it has that key, else a column rule."""
    if isinstance(v, WithinKmRule) or (isinstance(v, dict) and "within_km" in v):
        return "within_km"
    return "column"


# An entry of the audience list: a column rule (column, op, value) or a place rule (within_km: {of, km}).
Rule = Annotated[
    Annotated[AudienceRule, Tag("column")] | Annotated[WithinKmRule, Tag("within_km")],
    Discriminator(_rule_kind),
]
_RULE_MODELS = {"column": AudienceRule, "within_km": WithinKmRule}


class Selection(_Model):
    """How many eligible customers to pick: exactly one of the three modes."""

    top_k: Annotated[StrictInt, Field(ge=1)] | None = None
    score_threshold: Annotated[float, Field(ge=0.0, le=1.0, strict=True)] | None = None
    top_deciles: Annotated[StrictInt, Field(ge=1, le=10)] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Selection:
        chosen = [k for k in ("top_k", "score_threshold", "top_deciles") if getattr(self, k) is not None]
        if len(chosen) != 1:
            got = " and ".join(chosen) if chosen else "none"
            raise ValueError(f"set exactly one of top_k, score_threshold, top_deciles (got {got})")
        return self

    @property
    def mode(self) -> str:
        return next(k for k in ("top_k", "score_threshold", "top_deciles") if getattr(self, k) is not None)


class FrequencyCap(_Model):
    """At most ``max_contacts`` treatment contacts, across all campaigns, in the ``window_days`` before as_of."""

    max_contacts: Annotated[StrictInt, Field(ge=1)] = 4
    window_days: Annotated[StrictInt, Field(ge=1)] = 90


class InvalidCustomerRule(_Model):
    """A dead account: month-end assets at or below ``max_assets`` and no transaction and no app event in the
    ``inactive_months`` months before as_of."""

    max_assets: Annotated[float, Field(ge=0.0, strict=True)] = 100.0
    inactive_months: Annotated[StrictInt, Field(ge=1, le=120)] = 12


class ContactPolicy(_Model):
    exclude_do_not_contact: StrictBool = True
    exclude_opt_out: StrictBool = True
    recent_contact_days: Annotated[StrictInt, Field(ge=0)] = 30
    frequency_cap: FrequencyCap | None = FrequencyCap()
    invalid_customer: InvalidCustomerRule | None = InvalidCustomerRule()


_Rate = Annotated[float, Field(gt=0.0, lt=1.0, strict=True)]
_FIXED_HOLDOUT = TypeAdapter(Annotated[float, Field(gt=0.0, lt=0.5, strict=True)])


class PowerTarget(_Model):
    """What ``holdout_fraction: auto`` sizes the holdout for: detect an absolute lift of ``min_detectable_lift``
    over a control response rate of ``baseline_rate`` with probability ``power`` (two-sided test at ``alpha``)."""

    baseline_rate: _Rate
    min_detectable_lift: _Rate
    alpha: _Rate = 0.05
    power: _Rate = 0.8

    @model_validator(mode="after")
    def _consistent(self) -> PowerTarget:
        if self.baseline_rate + self.min_detectable_lift >= 1:
            raise ValueError(
                f"baseline_rate + min_detectable_lift must stay below 1 (got {self.baseline_rate} + "
                f"{self.min_detectable_lift}); the lift is absolute: 0.01 is one percentage point"
            )
        if self.power <= self.alpha:
            raise ValueError(f"power ({self.power}) must be greater than alpha ({self.alpha})")
        return self


class CampaignSpec(_Model):
    """A campaign as declared in ``campaigns/<name>.yaml``. See ``docs/campaigns.md`` for every field."""

    name: StrictStr
    description: StrictStr
    model: StrictStr
    schedule: StrictStr = "@monthly"
    channel: StrictStr
    audience: tuple[Rule, ...] = ()
    selection: Selection
    # A fixed share, or "auto": the smallest share that reaches the power block's target (see holdout_for).
    holdout_fraction: float | Literal["auto"] = 0.1
    power: PowerTarget | None = Field(default=None, validate_default=True)
    # What an uplift campaign selects by when the uplift champion found no heterogeneity (or there is none).
    fallback: Literal["response", "random"] = "response"
    contact_policy: ContactPolicy = ContactPolicy()
    response_window_days: Literal[7, 14] = 14
    cost_per_contact: Annotated[float, Field(ge=0.0, strict=True)] = 0.0
    value_per_response: Annotated[float, Field(ge=0.0, strict=True)] = 0.0
    response_rate_floor: Annotated[float, Field(ge=0.0, le=1.0, strict=True)] = 0.01
    # A real-time campaign: decided event by event by the decision service (pipelines.campaigns.trigger).
    trigger: Trigger | None = None
    # A lookalike campaign: who to look like and how many to pick (pipelines.campaigns.lookalike_spec).
    lookalike: Lookalike[AudienceRule] | None = Field(default=None, validate_default=True)
    # Salt of the holdout hash; defaults to the name so that two campaigns draw independent holdouts.
    salt: Annotated[StrictStr, Field(min_length=1)]

    @model_validator(mode="before")
    @classmethod
    def _salt_defaults_to_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("salt") is None and isinstance(data.get("name"), str):
            data = {**data, "salt": data["name"]}
        return data

    @model_validator(mode="before")
    @classmethod
    def _lookalike_selects_its_size(cls, data: Any) -> Any:
        """A lookalike spec leaves ``selection`` out: it is the top ``lookalike.size`` (1 while the size itself
        is invalid, which is reported on its own)."""
        if isinstance(data, dict) and data.get("model") == "lookalike" and data.get("selection") is None:
            block = data.get("lookalike")
            size = block.get("size") if isinstance(block, dict) else None
            valid = isinstance(size, int) and not isinstance(size, bool) and size >= 1
            data = {**data, "selection": {"top_k": size if valid else 1}}
        return data

    @field_validator("audience")
    @classmethod
    def _rules_can_all_hold(cls, rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
        by_column: dict[str, list[AudienceRule]] = {}
        for rule in rules:
            if isinstance(rule, AudienceRule):
                by_column.setdefault(rule.column, []).append(rule)
        for column, same in by_column.items():
            if len(same) > 1 and not _satisfiable(same, _CATEGORY_VALUES.get(column)):
                shown = " and ".join(f"'{r.label}'" for r in same)
                raise ValueError(f"rules {shown} contradict each other: no customer can pass all of them")
        return rules

    @field_validator("holdout_fraction", mode="plain")
    @classmethod
    def _holdout_fraction(cls, v: Any) -> float | str:
        if v == "auto":
            return v
        if isinstance(v, str):
            raise ValueError(f"must be a number in (0, 0.5) or 'auto', got {v!r}")
        try:
            return _FIXED_HOLDOUT.validate_python(v)
        except ValidationError as e:
            msg = e.errors()[0]["msg"]
            raise ValueError(
                f"{msg[0].lower()}{msg[1:]} (got {v!r}); or 'auto' to size it by power analysis"
            ) from None

    @field_validator("power")
    @classmethod
    def _power_goes_with_auto(cls, v: PowerTarget | None, info: ValidationInfo) -> PowerTarget | None:
        if "holdout_fraction" not in info.data:  # the fraction itself is invalid and already reported
            return v
        auto = info.data["holdout_fraction"] == "auto"
        if auto and v is None:
            raise ValueError(
                "required with holdout_fraction: auto: {baseline_rate: <control response rate>, "
                "min_detectable_lift: <absolute lift to detect>, alpha: 0.05, power: 0.8}"
            )
        if not auto and v is not None:
            raise ValueError(
                f"a power block is only used with holdout_fraction: auto (holdout_fraction is "
                f"{info.data['holdout_fraction']}); remove one of them"
            )
        return v

    @field_validator("lookalike")
    @classmethod
    def _lookalike_fits(cls, v: Lookalike | None, info: ValidationInfo) -> Lookalike | None:
        data = info.data
        problem = lookalike_problem(v, data.get("model"), data.get("selection"), data.get("trigger"))
        if problem:
            raise ValueError(problem)
        return v

    @field_validator("fallback")
    @classmethod
    def _fallback_is_for_uplift(cls, v: str, info: ValidationInfo) -> str:
        model = info.data.get("model")
        if model is not None and model != "uplift":
            raise ValueError(f"only for model: uplift campaigns (this one is model: {model}); remove it")
        return v

    @model_validator(mode="after")
    def _realtime_selects_by_threshold(self) -> CampaignSpec:
        if self.trigger is not None:
            if self.selection.score_threshold is None:
                raise ValueError(
                    "a real-time campaign (trigger) selects by score_threshold: there is no population to take "
                    f"{self.selection.mode} of"
                )
            if self.holdout_fraction == "auto":
                raise ValueError("a real-time campaign (trigger) needs a fixed holdout_fraction, not auto")
        return self

    def holdout_for(self, audience_n: int) -> tuple[float, str]:
        """The holdout fraction for an audience of ``audience_n`` selected customers, and a one-line note.

        A fixed ``holdout_fraction`` is returned as it is ("... fixed in spec"); ``auto`` gives the smallest share
        of the audience that reaches the power block's target (``pipelines.campaigns.power.holdout_fraction_for``, between
        5 % and 50 %) and the plan's ``describe()``, which starts with "UNDER-POWERED" when even 50 % does not.
        """
        if self.holdout_fraction != "auto":
            return float(self.holdout_fraction), f"holdout_fraction {self.holdout_fraction:g} fixed in spec"
        from pipelines.campaigns.power import holdout_fraction_for

        target = self.power
        plan = holdout_fraction_for(
            audience_n,
            target.baseline_rate,
            target.min_detectable_lift,
            alpha=target.alpha,
            power=target.power,
        )
        return plan.fraction, plan.describe()

    @field_validator("name")
    @classmethod
    def _slug(cls, v: str) -> str:
        return _checked(v, name_problem)

    @field_validator("model")
    @classmethod
    def _known_model(cls, v: str) -> str:
        return _checked(v, model_problem)

    @field_validator("channel")
    @classmethod
    def _known_channel(cls, v: str) -> str:
        if v not in CONTACT_CHANNELS:
            raise ValueError(f"unknown channel {v!r}; use one of {', '.join(CONTACT_CHANNELS)}")
        return v

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, v: str) -> str:
        return _checked(v, schedule_problem)


def _satisfiable(rules: list[AudienceRule], allowed: tuple | None) -> bool:
    """Whether some value passes every rule (all on one column; ``allowed``: its values, if a category)."""
    lo, lo_strict, hi, hi_strict = -math.inf, False, math.inf, False
    candidates: set | None = None if allowed is None else set(allowed)
    excluded: set = set()
    for r in rules:
        v = r.value
        if r.op in ("==", "in"):
            values = {v} if r.op == "==" else set(v)
            candidates = values if candidates is None else candidates & values
        elif r.op in ("!=", "not_in"):
            excluded |= {v} if r.op == "!=" else set(v)
        elif r.op in (">", ">=", "between"):
            low = v[0] if r.op == "between" else v
            if low > lo or (low == lo and r.op == ">"):
                lo, lo_strict = low, r.op == ">"
        if r.op in ("<", "<=", "between"):
            high = v[1] if r.op == "between" else v
            if high < hi or (high == hi and r.op == "<"):
                hi, hi_strict = high, r.op == "<"

    def inside(x: Any) -> bool:
        if not _is_number(x):
            return lo == -math.inf and hi == math.inf
        return (x > lo or (x == lo and not lo_strict)) and (x < hi or (x == hi and not hi_strict))

    if candidates is not None:
        return any(inside(x) and x not in excluded for x in candidates)
    if lo < hi:
        return True
    return lo == hi and not (lo_strict or hi_strict) and lo not in excluded


def _checked(value: str, problem_of) -> str:
    """``value`` if the header check ``problem_of`` (``spec_header``) finds no problem; else its ValueError."""
    problem = problem_of(value)
    if problem:
        raise ValueError(problem)
    return value


def _untagged(loc: Sequence[str | int]) -> tuple[tuple[str | int, ...], type[BaseModel] | None]:
    """A pydantic error location without the rule-kind tag that follows ``audience[i]`` (``column`` or
    ``within_km``), and the rule model that tag names (None when there is none)."""
    for k in range(2, len(loc)):
        if loc[k - 2] == "audience" and isinstance(loc[k - 1], int) and loc[k] in _RULE_MODELS:
            return (*loc[:k], *loc[k + 1 :]), _RULE_MODELS[loc[k]]
    return tuple(loc), None


def _model_at(loc: Sequence[str | int], rule: type[BaseModel] | None = None) -> type[BaseModel] | None:
    """The spec model that sits at a pydantic error location (list indices skipped; ``rule``: the audience
    rule model an untagged location passes through)."""
    model: type[BaseModel] = CampaignSpec
    for part in loc:
        if isinstance(part, int):
            continue
        if model is CampaignSpec and part == "audience" and rule is not None:
            model = rule
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        found = _model_in(field.annotation)
        if found is None:
            return None
        model = found
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) is Annotated:
        return _model_in(get_args(annotation)[0])
    if get_origin(annotation) in (Union, UnionType, tuple, list):
        for arg in get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def _field_path(loc: Sequence[str | int]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(spec)"


def _problem(error: dict) -> str:
    kind, (loc, rule) = error["type"], _untagged(error["loc"])
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1], rule)
        allowed = f" (allowed: {', '.join(parent.model_fields)})" if parent else ""
        return f"unknown field {loc[-1]!r}{allowed}"
    if kind == "missing":
        return "required field is missing"
    msg = error["msg"]
    if kind in ("value_error", "assertion_error"):
        return msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return f"{msg[0].lower()}{msg[1:]} (got {error.get('input')!r})"


def spec_problems(data: Any) -> tuple[CampaignSpec | None, list[tuple[str, str]]]:
    """The spec in already-parsed YAML and no problems, or None and every problem as (field path, message), e.g.
    ``("audience[0].column", "unknown audience column 'tenure' ...")``: the wording :func:`parse_spec` reports,
    shared with the staff app's campaign form (``pipelines.campaigns.spec_form``)."""
    if not isinstance(data, dict):
        return None, [("(spec)", f"a campaign spec must be a mapping of fields, got {type(data).__name__}")]
    try:
        return CampaignSpec.model_validate(data), []
    except ValidationError as e:
        return None, [(_field_path(_untagged(err["loc"])[0]), _problem(err)) for err in e.errors()]


def parse_spec(data: Any, source: str = "<spec>") -> CampaignSpec:
    """A spec from already-parsed YAML; ``source`` names it in errors."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: a campaign spec must be a mapping of fields, got {type(data).__name__}")
    spec, problems = spec_problems(data)
    if spec is None:
        lines = [f"  {path}: {message}" for path, message in problems]
        raise SpecError(f"{source}: invalid campaign spec\n" + "\n".join(lines))
    return spec


def load_spec(path: str | Path) -> CampaignSpec:
    """The spec in a YAML file; :class:`SpecError` naming the file, the field and the problem otherwise."""
    path = Path(path)
    return parse_spec(read_yaml(path), str(path))


def load_specs(directory: str | Path) -> list[CampaignSpec]:
    """Every ``*.yaml`` / ``*.yml`` spec in a folder, sorted by name.

    All invalid files are reported together in one :class:`SpecError`; two files declaring the same name are an
    error too.
    """
    specs, problems = read_each(directory, load_spec)
    if problems:
        raise SpecError("\n".join(problems))
    return specs
