"""The campaign builder: a form that creates or edits a campaign spec without writing YAML.

The form's fields and their translation to and from a spec are :mod:`pipelines.campaigns.spec_form`; it validates
with the loader's own spec model, so the form shows the loader's wording, next to the field it concerns. A spec is
saved only after a preview of exactly that spec on the latest scored base (:func:`preview_campaign`: audience size,
exclusions by reason, the holdout and its minimum detectable lift); saving writes ``campaigns/<name>.yaml``
(the campaign's DAG appears on the scheduler's next parse) and a row of the spec history (who, when, diff).
Editing refuses to overwrite a file that changed since the form was opened.
"""

from __future__ import annotations

import hashlib

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from pipelines.web.app import current_user, requires, settings_of
from pipelines.web.pages import engine

blueprint = Blueprint("builder", __name__)
BLANK_RULES = 3
# Models whose spec has a block the form does not edit (yet): such specs are written in YAML.
NOT_IN_FORM = ("lookalike",)


def _new_form() -> dict[str, str]:
    """The form of a new campaign: the spec model's defaults, a monthly churn campaign by SMS."""
    from pipelines.campaigns.spec import CampaignSpec
    from pipelines.campaigns.spec_form import spec_to_form

    example = CampaignSpec.model_validate(
        {
            "name": "new-campaign",
            "description": "",
            "model": "churn",
            "channel": "sms",
            "selection": {"top_deciles": 3},
        }
    )
    form = spec_to_form(example)
    form["name"] = ""
    return form


def _rule_rows(form: dict[str, str]) -> int:
    """How many audience rows to show: the filled ones plus a few blank ones."""
    used = [
        int(k.split("-")[1]) for k in form if k.startswith("audience-") and k.endswith("-column") and form[k]
    ]
    return (max(used) + 1 if used else 0) + BLANK_RULES


def _fingerprint(spec) -> str:
    from pipelines.campaigns.spec_form import spec_yaml

    return hashlib.sha256(spec_yaml(spec).encode("utf-8")).hexdigest()[:16]


def _page(
    form: dict[str, str],
    *,
    editing: str | None,
    errors=None,
    preview=None,
    preview_error=None,
    previewed: str = "",
    status: int = 200,
):
    from pipelines.campaigns.spec_form import audience_columns
    from pipelines.campaigns.spec_header import KNOWN_MODELS, SCHEDULE_PRESETS
    from pipelines.campaigns.trigger import TRIGGER_EVENTS
    from pipelines.data.schema import CONTACT_CHANNELS

    columns = audience_columns()
    return (
        render_template(
            "web/builder.html.j2",
            form=form,
            editing=editing,
            errors=errors or {},
            preview=preview,
            preview_error=preview_error,
            previewed=previewed,
            rows=range(_rule_rows(form)),
            columns=columns,
            kinds={c["column"]: c for c in columns},
            models=[m for m in KNOWN_MODELS if m not in NOT_IN_FORM],
            channels=CONTACT_CHANNELS,
            presets=SCHEDULE_PRESETS,
            trigger_events=TRIGGER_EVENTS,
        ),
        status,
    )


@blueprint.route("/campaigns/new", methods=["GET", "POST"])
@requires("manager")
def new():
    if request.method == "GET":
        return _page(_new_form(), editing=None)
    return _submit(editing=None)


@blueprint.route("/campaigns/<name>/edit", methods=["GET", "POST"])
@requires("manager")
def edit(name: str):
    from pipelines.campaigns.spec_form import read_spec_file, spec_to_form

    path = settings_of().campaigns_dir / f"{name}.yaml"
    if not path.is_file():
        abort(404, f"no campaign spec {name}.yaml in {settings_of().campaigns_dir}")
    model = _model_in_file(path)
    if model in NOT_IN_FORM:
        abort(
            409,
            f"{name} is a model: {model} campaign: the form cannot edit its {model} block yet (saving would lose "
            f"it); edit campaigns/{name}.yaml instead (docs/campaigns.md)",
        )
    if request.method == "GET":
        spec, sha256 = read_spec_file(path)
        form = spec_to_form(spec)
        form["base_sha256"] = sha256
        return _page(form, editing=name)
    return _submit(editing=name)


def _model_in_file(path) -> str | None:
    """The ``model:`` a spec file declares, None when it cannot be read (the editor reports that itself)."""
    from pipelines.campaigns.spec_header import SpecError, read_yaml

    try:
        data = read_yaml(path)
    except SpecError:
        return None
    return data.get("model") if isinstance(data, dict) else None


def _submit(editing: str | None):
    """Validate the posted form; save it when this very spec was previewed and Save was pressed, else (or when
    saving is refused) show it again with its preview."""
    from pipelines.campaigns.spec_form import ALL_ERRORS, SaveFailed, SaveRefused, save_spec, validate_form
    from pipelines.campaigns.spec_header import SpecError
    from pipelines.jobs.campaign_preview import preview_campaign

    form = {k: v for k, v in request.form.items() if k != "csrf_token"}
    if editing is not None:
        form["name"] = editing  # a campaign keeps its name (its runs and history are filed under it)
    spec, errors = validate_form(form)
    if spec is None:
        return _page(form, editing=editing, errors=errors, status=422)
    fingerprint = _fingerprint(spec)

    def previewed_page(**extra):
        """The form again with this spec's preview (computed only when the page is shown, not on a save)."""
        preview, preview_error = None, None
        try:
            preview = preview_campaign(settings_of(), spec)
        except (LookupError, SpecError) as exc:
            preview_error = str(exc)
        return _page(
            form,
            editing=editing,
            preview=preview,
            preview_error=preview_error,
            previewed=fingerprint,
            **extra,
        )

    if request.form.get("action") != "save" or request.form.get("previewed") != fingerprint:
        if request.form.get("action") == "save":
            flash("The spec changed since its preview: check the preview below, then save.")
        return previewed_page()
    try:
        saved = save_spec(
            settings_of().campaigns_dir,
            spec,
            engine=engine(),
            who=current_user().name,
            base_sha256=form.get("base_sha256") or None,
        )
    except (SaveRefused, SaveFailed, OSError) as exc:
        return previewed_page(errors={ALL_ERRORS: str(exc)}, status=409)
    if saved["action"] == "unchanged":
        flash(f"No change: {saved['path'].name} already says this.")
    else:
        flash(
            f"Saved {saved['path'].name} ({saved['action']}). Its DAG campaign_scoring__{spec.name} appears on the "
            "scheduler's next parse."
        )
    return redirect(url_for("pages.campaign", name=spec.name))
