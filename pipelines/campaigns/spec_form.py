"""The staff app's campaign form: a spec as flat form fields and back, readable YAML, and saving it with its history.

A browser posts a flat mapping of strings (:data:`FORM_FIELDS` names and describes every field). ``spec_to_form``
fills the form from a spec; ``validate_form`` parses the strings (numbers, lists, checkboxes) and validates the
result with :class:`CampaignSpec`, in the same words the loader uses (``spec.spec_problems``), each problem keyed
by the form field it belongs to. ``spec_yaml`` writes a spec the way the files in ``campaigns/`` are written;
``save_spec`` writes ``campaigns/<name>.yaml`` atomically and records the change in ``campaign_spec_history``
(:mod:`pipelines.campaigns.spec_history`), refusing to overwrite a file changed since the editor opened it.

Nothing here imports Flask; importing this module reads and writes nothing.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Mapping
from typing import Any

import yaml

from pipelines.campaigns.place_rules import WithinKmRule
from pipelines.campaigns.spec import (
    _CATEGORY_VALUES,
    _NUMERIC_COLUMNS,
    AUDIENCE_COLUMNS,
    OPS,
    SEGMENT_COLUMNS,
    AudienceRule,
    CampaignSpec,
    ContactPolicy,
    PowerTarget,
    _satisfiable,
    spec_problems,
)

# Every form field, with the plain words that name it in messages. Audience rows are numbered from 0 (the page
# may skip numbers, and a row whose column is empty is ignored, so the page can offer blank rows). Checkboxes
# count as ticked when present (a browser sends nothing for an unticked box), unless their value is false/off/0.
FORM_FIELDS: dict[str, str] = {
    "name": "campaign name (lowercase letters, digits, hyphens)",
    "description": "description",
    "model": "model (churn, response or uplift)",
    "schedule": "schedule (an Airflow preset such as @monthly, or a cron line such as 0 6 1 * *)",
    "channel": "channel",
    # a real-time campaign's trigger (pipelines.campaigns.trigger); events empty: a batch campaign
    "trigger_events": "real-time trigger: event types, separated by commas",
    "trigger_min_amount": "real-time trigger: smallest transaction amount",
    # "2 km of BR012" or "0.5 km of 51.5, -0.12"
    "trigger_within": "real-time trigger: where the event happens",
    "audience-<i>-column": "column of audience rule <i>",
    "audience-<i>-op": "operator of audience rule <i>",
    # a number or a word; for in / not_in a comma-separated list; for between "low, high"; for the column
    # within_km (op <=) "25 km of BR012" or "10 km of 51.5, -0.12"
    "audience-<i>-value": "value of audience rule <i>",
    "selection_mode": "how to select (top_k, score_threshold or top_deciles)",
    "selection_value": "how many to select (the number of customers, the lowest score, or the number of deciles)",
    "holdout_fraction": "holdout fraction (a number below 0.5, or auto)",
    # the four power fields are read only with holdout_fraction auto; alpha and power may be left empty
    "power_baseline_rate": "baseline response rate",
    "power_min_detectable_lift": "smallest lift to detect",
    "power_alpha": "significance level (alpha)",
    "power_power": "power",
    "fallback": "fallback when the uplift model finds no difference (response or random; uplift campaigns only)",
    "policy_exclude_do_not_contact": "leave out do-not-contact customers",
    "policy_exclude_opt_out": "leave out customers who opted out of marketing",
    "policy_recent_contact_days": "days since the last contact",
    # both empty: no frequency cap
    "policy_cap_max_contacts": "frequency cap: most contacts",
    "policy_cap_window_days": "frequency cap: window in days",
    # both empty: dead accounts are not left out
    "policy_invalid_max_assets": "dead accounts: assets at most",
    "policy_invalid_inactive_months": "dead accounts: months without activity",
    "response_window_days": "response window in days (7 or 14)",
    "cost_per_contact": "cost per contact",
    "value_per_response": "value per response",
    "response_rate_floor": "response rate floor",
    "salt": "holdout salt (empty: the campaign name)",
}
ALL_ERRORS = "__all__"  # the errors key of a problem that belongs to no one field
SELECTION_MODES = ("top_k", "score_threshold", "top_deciles")
CATEGORY_OPS = ("==", "!=", "in", "not_in")
# A place rule's row: column WITHIN_KM, op <= (the distance at most), value "<km> km of <branch id or lat, lon>".
WITHIN_KM = "within_km"
_WITHIN_TEXT = re.compile(r"^(?P<km>\S+?)\s*(?:km)?\s+of\s+(?P<of>.+)$", re.IGNORECASE)
_AUDIENCE_KEY = re.compile(r"^audience-(\d+)-(column|op|value)$")
_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_INT_FIELDS = (
    "policy_recent_contact_days",
    "policy_cap_max_contacts",
    "policy_cap_window_days",
    "policy_invalid_inactive_months",
    "response_window_days",
)
_FLOAT_FIELDS = ("cost_per_contact", "value_per_response", "response_rate_floor", "policy_invalid_max_assets")
_POWER_FIELDS = ("baseline_rate", "min_detectable_lift", "alpha", "power")
_FALSE = ("false", "off", "0", "no")
_WIDTH = 110


class _Bad:
    """A number field whose text is not a number (its error is already recorded)."""


_BAD = _Bad()


# ----------------------------------------------------------------------------------------------- the form


def spec_to_form(spec: CampaignSpec) -> dict[str, str]:
    """The form fields of ``spec`` as a browser would post them back (unticked checkboxes absent, an empty salt
    when it is the name); ``validate_form(spec_to_form(spec))`` gives ``spec`` again."""
    form = {k: getattr(spec, k) for k in ("name", "description", "model", "schedule", "channel")}
    trigger = spec.trigger
    form["trigger_events"] = ", ".join(trigger.events) if trigger else ""
    amount = trigger.min_amount if trigger else None
    form["trigger_min_amount"] = "" if amount is None else _text_of(_whole(amount))
    form["trigger_within"] = _circle_text(trigger.within_km) if trigger and trigger.within_km else ""
    for i, rule in enumerate(spec.audience):
        if isinstance(rule, WithinKmRule):
            form |= {f"audience-{i}-column": WITHIN_KM, f"audience-{i}-op": "<="}
            form[f"audience-{i}-value"] = _within_text(rule)
            continue
        form |= {f"audience-{i}-column": rule.column, f"audience-{i}-op": rule.op}
        values = rule.value if isinstance(rule.value, tuple) else (rule.value,)
        form[f"audience-{i}-value"] = ", ".join(_text_of(v) for v in values)
    mode = spec.selection.mode
    form |= {"selection_mode": mode, "selection_value": _text_of(getattr(spec.selection, mode))}
    form["holdout_fraction"] = _text_of(spec.holdout_fraction)
    for key in _POWER_FIELDS:
        form[f"power_{key}"] = _text_of(getattr(spec.power, key)) if spec.power else ""
    form["fallback"] = spec.fallback if spec.model == "uplift" else ""
    policy = spec.contact_policy
    for key in ("exclude_do_not_contact", "exclude_opt_out"):
        if getattr(policy, key):
            form[f"policy_{key}"] = "on"
    form["policy_recent_contact_days"] = _text_of(policy.recent_contact_days)
    cap, invalid = policy.frequency_cap, policy.invalid_customer
    form["policy_cap_max_contacts"] = _text_of(cap.max_contacts) if cap else ""
    form["policy_cap_window_days"] = _text_of(cap.window_days) if cap else ""
    form["policy_invalid_max_assets"] = _text_of(invalid.max_assets) if invalid else ""
    form["policy_invalid_inactive_months"] = _text_of(invalid.inactive_months) if invalid else ""
    for key in ("response_window_days", "cost_per_contact", "value_per_response", "response_rate_floor"):
        form[key] = _text_of(getattr(spec, key))
    form["salt"] = "" if spec.salt == spec.name else spec.salt
    return form


def _text_of(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _whole(value: float) -> int | float:
    """A float that is a whole number as an int (``25`` rather than ``25.0`` in the form and the YAML)."""
    return int(value) if float(value).is_integer() else value


def _within_text(rule: WithinKmRule) -> str:
    """A place rule's value field: ``25 km of BR012`` or ``10 km of 51.5, -0.12``."""
    return _circle_text(rule.within_km)


def _circle_text(circle: Any) -> str:
    of = circle.of
    target = of if isinstance(of, str) else ", ".join(_text_of(_whole(x)) for x in of)
    return f"{_text_of(_whole(circle.km))} km of {target}"


def validate_form(form: Mapping[str, str]) -> tuple[CampaignSpec | None, dict[str, str]]:
    """(the spec, {}) when the form makes a valid spec; (None, errors) otherwise, with every problem at once.

    ``errors`` maps a form field name (``audience-2-value``, ``policy_cap_max_contacts``; :data:`ALL_ERRORS` for
    a problem of no one field) to one line: a number field that is not a number is named in plain words (from
    :data:`FORM_FIELDS`); everything else is the loader's wording (``spec.spec_problems``). Empty fields take
    the spec's defaults; the power fields are read only with holdout_fraction auto, fallback only for uplift."""
    errors: dict[str, str] = {}
    data: dict[str, Any] = {}
    for key in ("name", "model", "schedule", "channel", "salt"):
        if value := _get(form, key):
            data[key] = value
    if description := form.get("description", "").replace("\r\n", "\n").strip():
        data["description"] = description
    if trigger := _trigger(form, errors):
        data["trigger"] = trigger
    rules, row_of = _audience(form, errors)
    if rules:
        data["audience"] = rules
    mode = _get(form, "selection_mode")
    if mode not in SELECTION_MODES:
        got = f", got {mode!r}" if mode else ""
        errors["selection_mode"] = f"choose how to select: {', '.join(SELECTION_MODES)}{got}"
    else:
        value = _number(form, "selection_value", int if mode != "score_threshold" else float, errors)
        data["selection"] = {} if value is None or value is _BAD else {mode: value}
    holdout = _get(form, "holdout_fraction")
    if holdout == "auto":
        data["holdout_fraction"] = "auto"
        power = {k: _number(form, f"power_{k}", float, errors) for k in _POWER_FIELDS}
        power = {k: v for k, v in power.items() if v is not None and v is not _BAD}
        if power:
            data["power"] = power
    elif holdout:
        _put(data, "holdout_fraction", _number(form, "holdout_fraction", float, errors))
    if data.get("model") == "uplift" and (fallback := _get(form, "fallback")):
        data["fallback"] = fallback
    data["contact_policy"] = _policy(form, errors)
    for key in ("response_window_days", "cost_per_contact", "value_per_response", "response_rate_floor"):
        _put(data, key, _number(form, key, int if key in _INT_FIELDS else float, errors))

    spec, problems = spec_problems(data)
    found: dict[str, list[str]] = {}
    for path, message in problems:
        field = _field_of(path, row_of, rules)
        if path == "selection" and "selection_mode" in errors:
            continue  # "required field is missing": said better on the mode
        if field not in errors and message not in found.setdefault(field, []):
            found[field].append(message)
    errors |= {field: "; ".join(messages) for field, messages in found.items()}
    return (spec, {}) if spec is not None and not errors else (None, errors)


def _get(form: Mapping[str, str], key: str) -> str:
    return (form.get(key) or "").strip()


def _put(data: dict[str, Any], key: str, value: Any) -> None:
    if value is not None and value is not _BAD:
        data[key] = value


def _number(form: Mapping[str, str], key: str, kind: type, errors: dict[str, str]) -> Any:
    """The number in field ``key`` (``kind`` int: whole numbers only); None when empty; _BAD, with its error
    recorded, when the text is not such a number."""
    raw = _get(form, key)
    if not raw:
        return None
    value = _to_number(raw)
    if kind is int and not isinstance(value, int):
        errors[key] = f"{_label(key)} must be a whole number, got {raw!r}"
        return _BAD
    if value is None:
        errors[key] = f"{_label(key)} must be a number, got {raw!r}"
        return _BAD
    return float(value) if kind is float else value


def _to_number(text: str) -> int | float | None:
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text) and math.isfinite(number := float(text)):
        return number
    return None


def _label(key: str) -> str:
    return FORM_FIELDS[key].split(" (")[0]


def _checkbox(form: Mapping[str, str], key: str) -> bool:
    return key in form and _get(form, key).lower() not in _FALSE


def _audience(form: Mapping[str, str], errors: dict[str, str]) -> tuple[list[dict[str, Any]], list[int]]:
    """The audience rules of the form's rows (rows with an empty column left out) and each rule's row number. A
    within_km row whose op or value cannot be read is left out, with its error recorded in ``errors``."""
    rows = sorted({int(m.group(1)) for key in form if (m := _AUDIENCE_KEY.match(key))})
    rules, row_of = [], []
    for i in rows:
        column = _get(form, f"audience-{i}-column")
        if not column:
            continue
        if column == WITHIN_KM:
            if (place := _within_rule(form, i, errors)) is not None:
                rules.append(place)
                row_of.append(i)
            continue
        rule: dict[str, Any] = {"column": column}
        if op := _get(form, f"audience-{i}-op"):
            rule["op"] = op
        if raw := _get(form, f"audience-{i}-value"):
            rule["value"] = _rule_value(column, op, raw)
        rules.append(rule)
        row_of.append(i)
    return rules, row_of


def _within_rule(form: Mapping[str, str], i: int, errors: dict[str, str]) -> dict[str, Any] | None:
    """``{"within_km": {"of": ..., "km": ...}}`` from row ``i`` (op ``<=``, value ``25 km of BR012`` or ``10 km
    of 51.5, -0.12``); None, with the error recorded, when the op or the value cannot be read. The spec checks
    the numbers and the branch id."""
    op, raw = _get(form, f"audience-{i}-op"), _get(form, f"audience-{i}-value")
    if op not in ("", "<="):
        errors[f"audience-{i}-op"] = f"a within_km rule keeps homes at most N km away: use <=, not {op!r}"
        return None
    circle = _circle(raw)
    if circle is None:
        errors[f"audience-{i}-value"] = _circle_problem(raw, "25 km of BR012", "10 km of 51.5, -0.12")
        return None
    return {"within_km": circle}


def _circle(raw: str) -> dict[str, Any] | None:
    """``{"of": ..., "km": ...}`` from ``25 km of BR012`` or ``10 km of 51.5, -0.12``; None when unreadable."""
    m = _WITHIN_TEXT.match(raw)
    km = _to_number(m.group("km")) if m else None
    if km is None:
        return None
    target = m.group("of").strip()
    parts = [x.strip() for x in target.split(",")]
    numbers = [_to_number(x) for x in parts]
    return {"of": numbers if len(parts) == 2 and None not in numbers else target, "km": km}


def _circle_problem(raw: str, branch: str, point: str) -> str:
    return (
        f"write the distance as '<km> km of <branch id>' ({branch}) or '<km> km of <lat>, <lon>' ({point}), "
        f"got {raw!r}"
    )


def _trigger(form: Mapping[str, str], errors: dict[str, str]) -> dict[str, Any] | None:
    """The ``trigger`` block of a real-time campaign, None for a batch campaign (no event types given)."""
    events = [e.strip() for e in _get(form, "trigger_events").split(",") if e.strip()]
    if not events:
        for key in ("trigger_min_amount", "trigger_within"):
            if _get(form, key):
                errors[key] = "name the trigger's event types first (a batch campaign has no trigger)"
        return None
    trigger: dict[str, Any] = {"events": events}
    _put(trigger, "min_amount", _number(form, "trigger_min_amount", float, errors))
    if raw := _get(form, "trigger_within"):
        circle = _circle(raw)
        if circle is None:
            errors["trigger_within"] = _circle_problem(raw, "2 km of BR012", "0.5 km of 51.5, -0.12")
        else:
            trigger["within_km"] = circle
    return trigger


def _rule_value(column: str, op: str, raw: str) -> Any:
    """The typed value of a rule: words for a category column, numbers where they parse otherwise (the spec says
    what is wrong with a word compared to a numeric column); a list for in, not_in and between."""
    words = column in _CATEGORY_VALUES or column in SEGMENT_COLUMNS

    def item(text: str) -> Any:
        text = text.strip()
        number = None if words else _to_number(text)
        return text if number is None else number

    if op in ("in", "not_in", "between"):
        return [item(x) for x in raw.split(",") if x.strip()]
    return item(raw)


def _policy(form: Mapping[str, str], errors: dict[str, str]) -> dict[str, Any]:
    policy: dict[str, Any] = {
        key: _checkbox(form, f"policy_{key}") for key in ("exclude_do_not_contact", "exclude_opt_out")
    }
    _put(policy, "recent_contact_days", _number(form, "policy_recent_contact_days", int, errors))
    pairs = {
        "frequency_cap": (("max_contacts", int), ("window_days", int), "no frequency cap"),
        "invalid_customer": (("max_assets", float), ("inactive_months", int), "dead accounts left in"),
    }
    for block, (first, second, none_means) in pairs.items():
        prefix = "policy_cap_" if block == "frequency_cap" else "policy_invalid_"
        keys = [prefix + first[0], prefix + second[0]]
        values = [
            _number(form, key, kind, errors) for key, (_, kind) in zip(keys, (first, second), strict=True)
        ]
        if values == [None, None]:
            policy[block] = None
        elif None in values:
            empty = keys[values.index(None)]
            errors[empty] = f"fill in {_label(empty)} too, or leave both empty for {none_means}"
        elif _BAD not in values:
            policy[block] = {first[0]: values[0], second[0]: values[1]}
    return policy


def _field_of(path: str, row_of: list[int], rules: list[dict[str, Any]]) -> str:
    """The form field a spec problem at ``path`` (``spec._field_path``) belongs to; ALL_ERRORS if none."""
    if m := re.match(r"^audience\[(\d+)\](?:\.(column|op|value|within_km))?", path):
        part = {None: "column", "within_km": "value"}.get(m.group(2), m.group(2))
        return f"audience-{row_of[int(m.group(1))]}-{part}"
    if path == "audience":
        return _contradiction_field(row_of, rules)
    head, _, rest = path.partition(".")
    if head == "trigger":
        return {"min_amount": "trigger_min_amount"}.get(
            rest, "trigger_within" if rest.startswith("within_km") else "trigger_events"
        )
    block = {
        "selection": "selection_value",
        "power": "power_baseline_rate",
        "contact_policy.frequency_cap": "policy_cap_max_contacts",
        "contact_policy.invalid_customer": "policy_invalid_max_assets",
    }
    if path in block:
        return block[path]
    if head == "selection":
        field = "selection_value"
    elif head == "power":
        field = f"power_{rest}"
    elif head == "contact_policy":
        field = "policy_" + rest.replace("frequency_cap.", "cap_").replace("invalid_customer.", "invalid_")
    else:
        field = path
    return field if field in FORM_FIELDS else ALL_ERRORS


def _contradiction_field(row_of: list[int], rules: list[dict[str, Any]]) -> str:
    """The value field of the last row of the first column whose rules contradict each other."""
    parsed = [None if WITHIN_KM in r else AudienceRule.model_validate(r) for r in rules]
    for column in dict.fromkeys(r.column for r in parsed if r is not None):
        same = [i for i, r in enumerate(parsed) if r is not None and r.column == column]
        if len(same) > 1 and not _satisfiable([parsed[i] for i in same], _CATEGORY_VALUES.get(column)):
            return f"audience-{row_of[same[-1]]}-value"
    return ALL_ERRORS


def audience_columns() -> list[dict[str, Any]]:
    """For the audience value pickers, one entry per audience column: ``column``, ``label`` (the catalogue's
    plain label, else the column), ``kind`` ("category" or "numeric"), ``values`` (a category's allowed values;
    empty for numbers and for persona, whose names come from the data) and ``ops`` (the operators it takes);
    last the place rule :data:`WITHIN_KM` (kind "place", op ``<=``)."""
    from pipelines.features.catalogue import BY_NAME
    from pipelines.features.plain import plain_of

    out = []
    for column in AUDIENCE_COLUMNS:
        numeric = column in _NUMERIC_COLUMNS
        out.append(
            {
                "column": column,
                "label": plain_of(column).label if column in BY_NAME else column,
                "kind": "numeric" if numeric else "category",
                "values": [] if numeric else list(_CATEGORY_VALUES.get(column, ())),
                "ops": list(OPS if numeric else CATEGORY_OPS),
            }
        )
    out.append(
        {
            "column": WITHIN_KM,
            "label": "home city within km of a branch or point",
            "kind": "place",
            "values": [],
            "ops": ["<="],
        }
    )
    return out


# ----------------------------------------------------------------------------------------------- the YAML


def spec_yaml(spec: CampaignSpec, comment: str | None = None) -> str:
    """``spec`` as YAML, written like the files in ``campaigns/``: ``comment`` as ``#`` lines on top, the fields
    in the spec's order, audience rules one flow mapping a line, and fields equal to their default left out
    (except name, description, model, schedule, channel, selection and holdout_fraction; salt when it is the
    name). ``parse_spec(yaml.safe_load(spec_yaml(s))) == s``."""
    out = [f"# {line}".rstrip() for line in (comment or "").strip("\n").splitlines()]
    out += [_dump("name", spec.name), _description(spec.description)]
    out += [_dump(key, getattr(spec, key)) for key in ("model", "schedule", "channel")]
    if spec.trigger is not None:
        out += ["trigger:", _dump("events", list(spec.trigger.events), 1)]
        if spec.trigger.min_amount is not None:
            out.append(_dump("min_amount", _whole(spec.trigger.min_amount), 1))
        if (circle := spec.trigger.within_km) is not None:
            target = circle.of if isinstance(circle.of, str) else [_whole(x) for x in circle.of]
            out.append(_dump("within_km", {"of": target, "km": _whole(circle.km)}, 1))
    if spec.audience:
        out.append("audience:")
        for rule in spec.audience:
            if isinstance(rule, WithinKmRule):
                of = rule.within_km.of
                target = of if isinstance(of, str) else [_whole(x) for x in of]
                out.append(f"  - {_flow({WITHIN_KM: {'of': target, 'km': _whole(rule.within_km.km)}})}")
                continue
            value = list(rule.value) if isinstance(rule.value, tuple) else rule.value
            out.append(f"  - {_flow({'column': rule.column, 'op': rule.op, 'value': value})}")
    mode = spec.selection.mode
    out += ["selection:", _dump(mode, getattr(spec.selection, mode), indent=1)]
    out.append(_dump("holdout_fraction", spec.holdout_fraction))
    if spec.power is not None:
        out.append("power:")
        out += [_dump(k, v, 1) for k, v in _changed(spec.power, PowerTarget, keep=_POWER_FIELDS[:2]).items()]
    fields = CampaignSpec.model_fields
    if spec.fallback != fields["fallback"].default:
        out.append(_dump("fallback", spec.fallback))
    policy = _changed(spec.contact_policy, ContactPolicy)
    if policy:
        out.append("contact_policy:")
        for key, value in policy.items():
            value = value.model_dump() if hasattr(value, "model_dump") else value
            out.append(_dump(key, value, 1))
    for key in ("response_window_days", "cost_per_contact", "value_per_response", "response_rate_floor"):
        if getattr(spec, key) != fields[key].default:
            out.append(_dump(key, getattr(spec, key)))
    if spec.salt != spec.name:
        out.append(_dump("salt", spec.salt))
    return "\n".join(out) + "\n"


def _changed(model: Any, kind: type, keep: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields of ``model`` that differ from ``kind``'s defaults (and those in ``keep``), in field order."""
    return {
        key: getattr(model, key)
        for key, field in kind.model_fields.items()
        if key in keep or getattr(model, key) != field.default
    }


def _dump(key: str, value: Any, indent: int = 0) -> str:
    """``key: value`` as YAML lines (a mapping or list in flow style), indented by ``indent`` levels."""
    if isinstance(value, dict | list):
        text = f"{key}: {_flow(value)}"
    else:
        text = _safe_dump({key: value}, width=_WIDTH)
    return "\n".join("  " * indent + line for line in text.splitlines())


def _flow(value: dict | list) -> str:
    """A mapping or list on one line: ``{column: card_tier, op: in, value: [gold, platinum]}``."""
    return _safe_dump(value, default_flow_style=True, width=math.inf)


def _safe_dump(value: Any, **options: Any) -> str:
    """PyYAML's text of ``value``, non-ASCII letters as they are unless that would not load back (PyYAML writes
    some line-break characters, such as U+0085, raw), then escaped."""
    text = yaml.safe_dump(value, sort_keys=False, allow_unicode=True, **options).rstrip("\n")
    if yaml.safe_load(text) != value:
        text = yaml.safe_dump(value, sort_keys=False, allow_unicode=False, **options).rstrip("\n")
    return text


def _description(text: str) -> str:
    """A long one-line description as a folded block (``>-``) wrapped at the page width, as the files have it;
    anything else (or a text the fold would change) as PyYAML writes it."""
    simple = text == text.strip() and text.isprintable() and "  " not in text
    if simple and len(text) > _WIDTH - len("description: "):
        lines = textwrap.wrap(text, width=_WIDTH - 2, break_long_words=False, break_on_hyphens=False)
        block = "description: >-\n" + "\n".join(f"  {line}" for line in lines)
        if yaml.safe_load(block) == {"description": text}:
            return block
    return _dump("description", text)


# Saving lives with the history it writes; re-exported here so the web app imports the form's API from one place.
from pipelines.campaigns.spec_history import (  # noqa: E402
    SaveFailed,
    SaveRefused,
    read_spec_file,
    save_spec,
    spec_file_sha256,
)

__all__ = [
    "ALL_ERRORS",
    "FORM_FIELDS",
    "SaveFailed",
    "SaveRefused",
    "audience_columns",
    "read_spec_file",
    "save_spec",
    "spec_file_sha256",
    "spec_to_form",
    "spec_yaml",
    "validate_form",
]
