"""Campaign lists in the staff app: a preview of a run's treatment list and its download as CSV or Excel.

The list is the one ``pmp lists export`` writes (:func:`pipelines.campaigns.contact_export.read_list`: reasons in
plain language, score percentile and probability), through the same audited release (:func:`export_list`): every
download is a row of ``list_exports`` or, with contact details, ``contact_exports`` naming the signed-in user. The
file is written to a private folder under ``<web_dir>/downloads``, sent, and removed once sent; its SHA-256 stays
in the audit row, so a file found later can be matched to its download.
"""

from __future__ import annotations

import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from flask import Blueprint, Response, abort, render_template, request

from pipelines.web.app import current_user, requires, settings_of
from pipelines.web.pages import engine

blueprint = Blueprint("lists", __name__)
PREVIEW_ROWS = 50
FORMATS = {"csv": ".csv", "xlsx": ".xlsx"}
GROUPS = {"treatment": ("treatment",), "all": ("treatment", "holdout")}


def _campaign_of(run_id: str) -> str:
    from pipelines.campaigns import store

    runs = store.list_runs(engine())
    found = runs.loc[runs["run_id"] == run_id, "campaign"]
    if found.empty:
        abort(404, f"no run {run_id!r} in the campaign database")
    return str(found.iloc[0])


@blueprint.route("/runs/<run_id>/list")
@requires("manager")
def preview(run_id: str):
    from pipelines.campaigns.contact_export import read_list

    campaign = _campaign_of(run_id)
    _, frame = read_list(engine(), settings_of(), campaign, run_id, GROUPS["treatment"])
    # The preview leaves out what every row repeats (the run id) and shows scores to 4 decimals.
    shown = frame.head(PREVIEW_ROWS).drop(columns=["run_id"], errors="ignore")
    if "score" in shown.columns:
        shown = shown.assign(score=shown["score"].map("{:.4f}".format))
    return render_template(
        "web/list.html.j2",
        run_id=run_id,
        campaign=campaign,
        total=len(frame),
        columns=list(shown.columns),
        rows=shown.astype(object).where(shown.notna(), "").to_dict("records"),
        contact_allowed=current_user().may("privileged"),
    )


@blueprint.route("/runs/<run_id>/list/download", methods=["POST"])
@requires("manager")
def download(run_id: str):
    from pipelines.campaigns.contact_export import ExportRefused, export_list

    user = current_user()
    fmt = request.form.get("format", "csv")
    groups = request.form.get("groups", "treatment")
    if fmt not in FORMATS or groups not in GROUPS:
        abort(400, f"format must be one of {', '.join(FORMATS)} and groups one of {', '.join(GROUPS)}")
    with_contact = request.form.get("contact") == "1"
    if with_contact and not user.may("privileged"):
        abort(403, f"contact details need the privileged role; you are {user.role}")
    campaign = _campaign_of(run_id)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{run_id}__{groups}{'__contact' if with_contact else ''}")
    folder = settings_of().web_dir / "downloads" / secrets.token_hex(8)
    folder.mkdir(parents=True, mode=0o700)
    try:
        record = export_list(
            engine(),
            settings_of(),
            campaign,
            run_id,
            folder / f"{name}{FORMATS[fmt]}",
            groups=GROUPS[groups],
            with_contact=with_contact,
            web_user=user.name,
        )
    except ExportRefused as exc:
        shutil.rmtree(folder, ignore_errors=True)
        abort(403, str(exc))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    mimetype = (
        "text/csv" if fmt == "csv" else "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    response = Response(_send_then_remove(record.file, folder), mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{record.file.name}"'
    response.headers["Content-Length"] = str(record.file.stat().st_size)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Export-Sha256"] = record.sha256
    return response


def _send_then_remove(path: Path, folder: Path, chunk: int = 1 << 16) -> Iterator[bytes]:
    """The file's bytes; its folder is removed once they are sent, or when the client goes away."""
    try:
        with path.open("rb") as handle:
            while block := handle.read(chunk):
                yield block
    finally:
        shutil.rmtree(folder, ignore_errors=True)
