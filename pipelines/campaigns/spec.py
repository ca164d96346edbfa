"""Campaign specs (declared in YAML, validated on load) and the contact policy that turns a scored base into an
audience.

A campaign is a ``campaigns/<name>.yaml`` file read into a frozen :class:`CampaignSpec`. Its audience is
picked in two steps, both pure functions over DataFrames:

1. :func:`apply_policy` removes everyone the bank must not or should not contact, and gives each removed
   customer exactly one reason — the first that applies, in the order of :data:`EXCLUSION_REASONS`;
2. :func:`select_audience` ranks the rest by score and keeps the top ones (``top_k``, ``score_threshold`` or
   ``top_deciles``).

Eligible customers who are not selected are not exclusions: nothing was wrong with them, they were simply not
chosen, so they are counted (``len(eligible) - len(selected)``) but not audited row by row.

Lake reads (:func:`invalid_customers`, :func:`lake_contact_history`) go through ``pipelines.io``; contacts made
by earlier platform runs come from the campaign database through another module and share the history format
(:data:`HISTORY_COLUMNS`).
"""

from __future__ import annotations

import difflib
import operator
import re
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import numpy as np
import pandas as pd
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pipelines.data import storage
from pipelines.data.schema import CONTACT_CHANNELS, TABLES
from pipelines.features.wide_table import FEATURE_NAMES, STATIC_CATEGORIES
from pipelines.models.segmentation import LIFECYCLE_STAGES, RFM_SEGMENTS, VALUE_TIERS

ID = "customer_id"
KNOWN_MODELS = ("churn", "response", "uplift")
# What a model: uplift campaign selects by when the uplift champion found no heterogeneity (spec field fallback).
FALLBACKS = ("response", "random")
SEGMENT_COLUMNS = ("rfm_segment", "value_tier", "lifecycle_stage", "persona")
SCORE_COLUMNS = ("score", "decile")
AUDIENCE_COLUMNS = (*FEATURE_NAMES, *SCORE_COLUMNS, *SEGMENT_COLUMNS)
OPS = ("==", "!=", "<", "<=", ">", ">=", "in", "not_in", "between")
SCHEDULE_PRESETS = ("@once", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly", "@annually")
# Why a customer was excluded, in precedence order: each excluded customer carries the first that applies.
# Audience rules come last and are reported as ``audience:<column> <op> <value>``.
EXCLUSION_REASONS = (
    "do_not_contact",
    "opt_out",
    "invalid_customer",
    "recent_contact",
    "frequency_cap",
    "audience",
)
# A contact history frame: one row per treatment contact (control-group customers were not contacted).
HISTORY_COLUMNS = ("customer_id", "campaign", "contact_date")
EXCLUSION_COLUMNS = ("customer_id", "exclusion_reason", "detail")

_SLUG = re.compile(r"^[a-z0-9-]+$")
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*?/,#-]+$")
_CATEGORY_VALUES = {
    **{c: TABLES["customers"].column(c).allowed for c in STATIC_CATEGORIES},
    # Segment columns with fixed value lists (personas are named from the data, so any name is accepted).
    "rfm_segment": RFM_SEGMENTS,
    "lifecycle_stage": LIFECYCLE_STAGES,
    "value_tier": VALUE_TIERS,
}
_NUMERIC_COLUMNS = frozenset(c for c in (*FEATURE_NAMES, *SCORE_COLUMNS) if c not in _CATEGORY_VALUES)
_ORDERING_OPS = ("<", "<=", ">", ">=", "between")
_COMPARE = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


class SpecError(ValueError):
    """A campaign spec that cannot be used. The message names the file, the field path and the problem."""


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
                f"{', '.join(SCORE_COLUMNS)} or a segment column ({', '.join(SEGMENT_COLUMNS)})"
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
    audience: tuple[AudienceRule, ...] = ()
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
    # Salt of the holdout hash; defaults to the name so that two campaigns draw independent holdouts.
    salt: Annotated[StrictStr, Field(min_length=1)]

    @model_validator(mode="before")
    @classmethod
    def _salt_defaults_to_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("salt") is None and isinstance(data.get("name"), str):
            data = {**data, "salt": data["name"]}
        return data

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

    @field_validator("fallback")
    @classmethod
    def _fallback_is_for_uplift(cls, v: str, info: ValidationInfo) -> str:
        model = info.data.get("model")
        if model is not None and model != "uplift":
            raise ValueError(f"only for model: uplift campaigns (this one is model: {model}); remove it")
        return v

    def holdout_for(self, audience_n: int) -> tuple[float, str]:
        """The holdout fraction for an audience of ``audience_n`` selected customers, and a one-line note.

        A fixed ``holdout_fraction`` is returned as it is ("... fixed in spec"); ``auto`` gives the smallest share
        of the audience that reaches the power block's target (``pipelines.power.holdout_fraction_for``, between
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
        if not _SLUG.match(v):
            raise ValueError(f"must be lowercase letters, digits and hyphens (e.g. churn-winback), got {v!r}")
        return v

    @field_validator("model")
    @classmethod
    def _known_model(cls, v: str) -> str:
        if v not in KNOWN_MODELS:
            raise ValueError(f"unknown model {v!r}; known models: {', '.join(KNOWN_MODELS)}")
        return v

    @field_validator("channel")
    @classmethod
    def _known_channel(cls, v: str) -> str:
        if v not in CONTACT_CHANNELS:
            raise ValueError(f"unknown channel {v!r}; use one of {', '.join(CONTACT_CHANNELS)}")
        return v

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, v: str) -> str:
        if v.startswith("@"):
            if v not in SCHEDULE_PRESETS:
                raise ValueError(
                    f"unknown preset {v!r}; use one of {', '.join(SCHEDULE_PRESETS)} or a cron line"
                )
            return v
        fields = v.split()
        if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
            raise ValueError(
                f"must be an Airflow preset ({', '.join(SCHEDULE_PRESETS)}) or a 5-field cron line "
                f"such as '0 6 1 * *', got {v!r}"
            )
        return v


def _model_at(loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The spec model that sits at a pydantic error location (list indices skipped)."""
    model: type[BaseModel] = CampaignSpec
    for part in loc:
        if isinstance(part, int):
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
    kind, loc = error["type"], error["loc"]
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        allowed = f" (allowed: {', '.join(parent.model_fields)})" if parent else ""
        return f"unknown field {loc[-1]!r}{allowed}"
    if kind == "missing":
        return "required field is missing"
    msg = error["msg"]
    if kind in ("value_error", "assertion_error"):
        return msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return f"{msg[0].lower()}{msg[1:]} (got {error.get('input')!r})"


def parse_spec(data: Any, source: str = "<spec>") -> CampaignSpec:
    """A spec from already-parsed YAML; ``source`` names it in errors."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: a campaign spec must be a mapping of fields, got {type(data).__name__}")
    try:
        return CampaignSpec.model_validate(data)
    except ValidationError as e:
        lines = [f"  {_field_path(err['loc'])}: {_problem(err)}" for err in e.errors()]
        raise SpecError(f"{source}: invalid campaign spec\n" + "\n".join(lines)) from None


def load_spec(path: str | Path) -> CampaignSpec:
    """The spec in a YAML file; :class:`SpecError` naming the file, the field and the problem otherwise."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SpecError(f"{path}: cannot read campaign spec: {e.strerror or e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: not valid YAML: {e}") from None
    return parse_spec(data, str(path))


def load_specs(directory: str | Path) -> list[CampaignSpec]:
    """Every ``*.yaml`` / ``*.yml`` spec in a folder, sorted by name.

    All invalid files are reported together in one :class:`SpecError`; two files declaring the same name are an
    error too.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise SpecError(f"{directory}: campaign spec folder not found")
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    specs: dict[str, tuple[CampaignSpec, Path]] = {}
    problems: list[str] = []
    for f in files:
        try:
            spec = load_spec(f)
        except SpecError as e:
            problems.append(str(e))
            continue
        if spec.name in specs:
            problems.append(f"{f}: duplicate campaign name {spec.name!r} (also in {specs[spec.name][1]})")
            continue
        specs[spec.name] = (spec, f)
    if problems:
        raise SpecError("\n".join(problems))
    return [specs[name][0] for name in sorted(specs)]


# --------------------------------------------------------------------------------------------------------------
# Lake reads


def _empty_ids() -> pd.Index:
    return pd.Index(np.array([], dtype=np.int64), name=ID)


def empty_history() -> pd.DataFrame:
    """A contact history with no rows and the right dtypes."""
    return pd.DataFrame(
        {
            ID: np.array([], dtype=np.int64),
            "campaign": pd.Series([], dtype="str"),
            "contact_date": np.array([], dtype="datetime64[us]"),
        }
    )


def lake_contact_history(
    lake_dir: str | Path, as_of: date | pd.Timestamp, lookback_days: int | None = None
) -> pd.DataFrame:
    """Past treatment contacts from the lake's ``campaign_contacts``, sent strictly before ``as_of``.

    Columns :data:`HISTORY_COLUMNS`; ``contact_date`` is the day of ``sent_at``. Holdout rows are left out
    (those customers were not contacted). ``lookback_days`` keeps only contacts on or after
    ``as_of - lookback_days`` days.
    """
    as_of = pd.Timestamp(as_of)
    # Partitions are months of selected_at, which is never after sent_at; how long after the draw a message
    # goes out is not bounded, so earlier partitions are all read (the table is small).
    months = [m for m in storage.list_months(lake_dir, "campaign_contacts") if m <= storage.month_key(as_of)]
    if not months:
        return empty_history()
    frame = storage.read_table(
        lake_dir, "campaign_contacts", months=months, columns=["campaign_id", ID, "group", "sent_at"]
    )
    sent = frame["sent_at"]
    keep = (frame["group"] == "treatment") & sent.notna() & (sent < as_of)
    if lookback_days is not None:
        keep &= sent >= as_of.normalize() - pd.Timedelta(days=lookback_days)
    keep = keep.to_numpy(dtype=bool, na_value=False)
    frame = frame.loc[keep]
    return pd.DataFrame(
        {
            ID: frame[ID].to_numpy(np.int64),
            "campaign": frame["campaign_id"].astype("str").to_numpy(),
            "contact_date": frame["sent_at"].dt.normalize().to_numpy("datetime64[us]"),
        }
    )


# A direct lookup table over the id range is used up to this many slots (int32: 4 bytes each).
_MAX_LOOKUP_SPAN = 64_000_000


def _positions_in(sorted_ids: np.ndarray):
    """A function mapping an id array to the positions, in ``sorted_ids``, of the ids found there.

    Customer ids are dense integers, so a lookup table over their range answers in one gather per id; sparse
    ids fall back to a hash lookup.
    """
    lo, hi = int(sorted_ids[0]), int(sorted_ids[-1])
    span = hi - lo + 1
    if span <= _MAX_LOOKUP_SPAN:
        table = np.full(span, -1, dtype=np.int32)
        table[sorted_ids - lo] = np.arange(sorted_ids.size, dtype=np.int32)

        def positions(ids: np.ndarray) -> np.ndarray:
            ids = ids[(ids >= lo) & (ids <= hi)]
            pos = table[ids - lo]
            return pos[pos >= 0]

        return positions

    index = pd.Index(sorted_ids)

    def positions_hashed(ids: np.ndarray) -> np.ndarray:
        pos = index.get_indexer(ids)
        return pos[pos >= 0]

    return positions_hashed


def invalid_customers(
    lake_dir: str | Path, as_of: date | pd.Timestamp, rule: InvalidCustomerRule | None
) -> pd.Index:
    """Customer ids of dead accounts at ``as_of`` (empty when ``rule`` is None).

    Dead: AUM at the latest month end before ``as_of`` at or below ``rule.max_assets``, and no transaction and no
    app event in ``[as_of - inactive_months months, as_of)``. A customer without a balance row in that month is
    not invalid (low assets cannot be shown). Reads one balance partition, then only ``customer_id`` (plus the
    timestamp in the two edge months) of the event partitions, newest first, stopping once every low-asset
    customer has shown activity.
    """
    if rule is None:
        return _empty_ids()
    as_of = pd.Timestamp(as_of)
    closed_months = [
        m
        for m in storage.list_months(lake_dir, "balances")
        if pd.Period(m, freq="M").end_time.normalize() < as_of
    ]
    if not closed_months:
        return _empty_ids()
    bal = storage.read_arrow(
        lake_dir, "balances", months=[closed_months[-1]], columns=[ID, "month_end", "aum"]
    )
    bal = bal.to_pandas(date_as_object=False)
    bal = bal.loc[bal["month_end"] < as_of].sort_values("month_end").drop_duplicates(ID, keep="last")
    candidates = np.unique(bal.loc[bal["aum"] <= rule.max_assets, ID].to_numpy(np.int64))
    if candidates.size == 0:
        return _empty_ids()

    start = as_of - pd.DateOffset(months=rule.inactive_months)
    window = [p.strftime("%Y-%m") for p in pd.period_range(start, as_of, freq="M")]
    edges = {window[0], window[-1]}
    active = np.zeros(candidates.size, dtype=bool)
    where = _positions_in(candidates)
    lo, hi = np.datetime64(start.to_datetime64(), "us"), np.datetime64(as_of.to_datetime64(), "us")
    for table, ts in (("transactions", "txn_ts"), ("app_events", "event_ts")):
        present = set(storage.list_months(lake_dir, table))
        for month in sorted((m for m in window if m in present), reverse=True):
            columns = [ID, ts] if month in edges else [ID]
            part = storage.read_arrow(lake_dir, table, months=[month], columns=columns)
            ids = part.column(ID).to_numpy().astype(np.int64, copy=False)
            if month in edges:
                t = part.column(ts).to_numpy().astype("datetime64[us]")
                ids = ids[(t >= lo) & (t < hi)]
            active[where(ids)] = True
            if active.all():
                return _empty_ids()
    return pd.Index(candidates[~active], name=ID)


# --------------------------------------------------------------------------------------------------------------
# Contact policy


def contact_counts(
    history: pd.DataFrame, as_of: date | pd.Timestamp, recent_days: int, window_days: int | None
) -> pd.DataFrame:
    """Per contacted customer: ``last_contact_date``, ``last_campaign``, ``contacts_in_window`` and
    ``recent_contact``.

    Only contacts dated strictly before ``as_of`` count. ``contacts_in_window`` counts contacts of every campaign
    dated on or after ``as_of - window_days`` days (0 when ``window_days`` is None or 0); ``recent_contact`` is
    whether the last contact is on or after ``as_of - recent_days`` days (never when ``recent_days`` is 0).
    Exact duplicate rows count once. One row per customer, sorted by ``customer_id``.
    """
    missing = [c for c in HISTORY_COLUMNS if c not in history.columns]
    if missing:
        raise ValueError(f"contact history lacks column(s) {missing}; it needs {list(HISTORY_COLUMNS)}")
    as_of = pd.Timestamp(as_of)
    h = pd.DataFrame(
        {
            ID: history[ID].to_numpy(np.int64),
            "campaign": history["campaign"].astype("str").to_numpy(),
            "contact_date": pd.to_datetime(history["contact_date"]).dt.normalize().to_numpy("datetime64[us]"),
        }
    )
    h = h.loc[h["contact_date"] < as_of].drop_duplicates()
    h = h.sort_values([ID, "contact_date", "campaign"], kind="stable")
    last = h.drop_duplicates(ID, keep="last")
    out = pd.DataFrame(
        {
            ID: last[ID].to_numpy(),
            "last_contact_date": last["contact_date"].to_numpy(),
            "last_campaign": last["campaign"].to_numpy(),
        }
    )
    ids = out[ID].to_numpy()
    if window_days:
        inside = h.loc[h["contact_date"] >= as_of - pd.Timedelta(days=window_days), ID].to_numpy()
        pos = np.searchsorted(ids, inside)
        out["contacts_in_window"] = np.bincount(pos, minlength=len(ids)).astype(np.int64)
    else:
        out["contacts_in_window"] = np.zeros(len(ids), dtype=np.int64)
    if recent_days:
        out["recent_contact"] = (
            out["last_contact_date"] >= as_of - pd.Timedelta(days=recent_days)
        ).to_numpy()
    else:
        out["recent_contact"] = np.zeros(len(ids), dtype=bool)
    return out


def _rule_passes(values: pd.Series, rule: AudienceRule) -> np.ndarray:
    """Rows passing one audience rule; a missing value fails it."""
    op, v = rule.op, rule.value
    try:
        if op == "in":
            passes = values.isin(list(v))
        elif op == "not_in":
            passes = ~values.isin(list(v))
        elif op == "between":
            passes = values.between(v[0], v[1], inclusive="both")
        else:
            passes = _COMPARE[op](values, v)
    except TypeError as e:
        raise ValueError(
            f"audience rule '{rule.label}' cannot be applied to column of dtype {values.dtype}: {e}"
        ) from e
    return passes.to_numpy(dtype=bool, na_value=False) & values.notna().to_numpy()


def _flag(customers: pd.DataFrame, column: str, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A customers flag aligned on ``ids``: (set, unknown), unknown where there is no record or a null flag."""
    flags = customers.set_index(ID)[column]
    if flags.index.has_duplicates:
        raise ValueError("customers frame has duplicate customer ids")
    aligned = flags.reindex(ids)
    unknown = aligned.isna().to_numpy()
    return aligned.to_numpy(dtype=bool, na_value=False), unknown


def _text(values: pd.Series | np.ndarray) -> np.ndarray:
    """Values as strings, for exclusion details."""
    return pd.Series(np.asarray(values, dtype=object)).astype("str").fillna("").to_numpy(dtype=object)


def apply_policy(
    scored: pd.DataFrame,
    customers: pd.DataFrame,
    history: pd.DataFrame,
    invalid: pd.Index,
    spec: CampaignSpec,
    as_of: date | pd.Timestamp,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(eligible, exclusions)`` for a campaign at ``as_of``.

    ``eligible`` keeps the rows of ``scored`` that pass the contact policy and every audience rule, in their
    input order. ``exclusions`` has one row per other customer, in input order: ``customer_id``,
    ``exclusion_reason`` (the first that applies, in the order of :data:`EXCLUSION_REASONS`; an audience rule
    reads ``audience:<column> <op> <value>``) and ``detail``. A customer missing from ``customers`` or with a
    null flag is treated as flagged: consent cannot be shown. ``history`` is a contact history
    (:data:`HISTORY_COLUMNS`, treatment contacts only), ``invalid`` the ids from :func:`invalid_customers`.
    """
    if ID not in scored.columns:
        raise ValueError(f"scored frame has no {ID!r} column")
    ids = scored[ID].to_numpy(np.int64)
    if pd.Index(ids).has_duplicates:
        raise ValueError("scored frame has duplicate customer ids")
    missing = sorted({r.column for r in spec.audience} - set(scored.columns))
    if missing:
        raise ValueError(
            f"campaign {spec.name!r}: audience rule column(s) {missing} are not in the scored frame"
        )
    policy = spec.contact_policy
    n = len(ids)
    # (reason, excluded mask, detail): the detail is a string or a function of the rows given that reason,
    # so text is only built for the customers who carry the reason.
    reasons: list[tuple[str, np.ndarray, Any]] = []

    for wanted, column, reason in (
        (policy.exclude_do_not_contact, "do_not_contact", "do_not_contact"),
        (policy.exclude_opt_out, "marketing_opt_out", "opt_out"),
    ):
        if wanted:
            flagged, unknown = _flag(customers, column, ids)
            reasons.append(
                (
                    reason,
                    flagged | unknown,
                    lambda rows, u=unknown, c=column: np.where(
                        u[rows], f"no {c} flag on record", f"{c} flag set"
                    ),
                )
            )
    if policy.invalid_customer is not None:
        rule = policy.invalid_customer
        reasons.append(
            (
                "invalid_customer",
                np.isin(ids, np.asarray(invalid, dtype=np.int64)),
                f"aum <= {rule.max_assets:g} and no transaction or app event in {rule.inactive_months} months",
            )
        )
    cap = policy.frequency_cap
    if policy.recent_contact_days or cap is not None:
        counts = contact_counts(history, as_of, policy.recent_contact_days, cap.window_days if cap else None)
        pos = pd.Index(counts[ID]).get_indexer(ids)
        seen = pos >= 0
        at = np.where(seen, pos, 0)
        if policy.recent_contact_days:
            recent = np.zeros(n, dtype=bool)
            recent[seen] = counts["recent_contact"].to_numpy(bool)[pos[seen]]

            def recent_detail(rows: np.ndarray) -> np.ndarray:
                last = pd.Series(counts["last_contact_date"].to_numpy()[at[rows]]).dt.strftime("%Y-%m-%d")
                campaign = _text(counts["last_campaign"].to_numpy()[at[rows]])
                return (
                    "last contact " + last.to_numpy(dtype=object) + " (" + campaign + ")"
                    f", within {policy.recent_contact_days} days"
                )

            reasons.append(("recent_contact", recent, recent_detail))
        if cap is not None:
            in_window = np.zeros(n, dtype=np.int64)
            in_window[seen] = counts["contacts_in_window"].to_numpy(np.int64)[pos[seen]]
            reasons.append(
                (
                    "frequency_cap",
                    in_window >= cap.max_contacts,
                    lambda rows: (
                        _text(in_window[rows])
                        + f" contacts in the last {cap.window_days} days (cap {cap.max_contacts})"
                    ),
                )
            )
    for rule in spec.audience:
        values = scored[rule.column]

        def audience_detail(rows: np.ndarray, values: pd.Series = values, column: str = rule.column):
            picked = values.iloc[np.flatnonzero(rows)]
            return np.where(picked.isna().to_numpy(), f"{column} is missing", f"{column} = " + _text(picked))

        reasons.append((f"audience:{rule.label}", ~_rule_passes(values, rule), audience_detail))

    # The first reason that applies wins: assign in reverse so that earlier reasons overwrite later ones.
    code = np.full(n, -1, dtype=np.int64)
    for i in range(len(reasons) - 1, -1, -1):
        code[reasons[i][1]] = i
    excluded = code >= 0
    names = np.array([r[0] for r in reasons] + [""], dtype=object)
    detail = np.full(n, "", dtype=object)
    for i, (_, _, text) in enumerate(reasons):
        rows = code == i
        if rows.any():
            detail[rows] = text if isinstance(text, str) else text(rows)
    exclusions = pd.DataFrame(
        {
            ID: ids[excluded],
            "exclusion_reason": pd.Series(names[code[excluded]], dtype="str"),
            "detail": pd.Series(detail[excluded], dtype="str"),
        }
    )
    eligible = scored.loc[~excluded].reset_index(drop=True)
    return eligible, exclusions


def select_audience(eligible: pd.DataFrame, selection: Selection) -> pd.DataFrame:
    """The selected customers, best first, with ``rank`` (1 = best).

    Ranked by ``score`` descending, ties by ``customer_id`` ascending. ``top_k`` keeps the first k,
    ``score_threshold`` scores at or above it, ``top_deciles`` rows whose ``decile`` (1 = highest, computed on the
    whole scored base) is at most n. Rows with a missing score are never selected. Eligible customers left out
    are not exclusions: count them as ``len(eligible) - len(selected)``.
    """
    score = eligible["score"].to_numpy(np.float64)
    order = np.lexsort((eligible[ID].to_numpy(np.int64), -score))
    order = order[~np.isnan(score[order])]
    ranked = eligible.iloc[order]
    if selection.top_k is not None:
        ranked = ranked.iloc[: selection.top_k]
    elif selection.score_threshold is not None:
        ranked = ranked.loc[ranked["score"].to_numpy(np.float64) >= selection.score_threshold]
    else:
        decile = ranked["decile"].to_numpy(np.float64)
        ranked = ranked.loc[decile <= selection.top_deciles]
    ranked = ranked.reset_index(drop=True)
    ranked["rank"] = np.arange(1, len(ranked) + 1, dtype=np.int64)
    return ranked
