"""The staff app through Flask's test client, over a real SQLite campaign database with a stored run: sign-in,
roles, CSRF, the audited downloads, one-line errors. The browser tests (test_browser.py) drive the same app in a
real chromium over a trained bank."""

from __future__ import annotations

import io
import re
import shutil
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from pipelines.campaigns import store_schema
from pipelines.campaigns.contact_export import read_exports
from pipelines.campaigns.spec_history import read_history
from pipelines.config import PROJECT_ROOT, Settings
from pipelines.data import storage
from pipelines.web import users
from pipelines.web.app import create_app
from tests.stored_runs import store_run
from tests.web.platform import form_values

PASSWORD = "correct horse battery"
RUN_ID = "campaign_scoring__2026-01-01__churn-retention-sms"


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    home = tmp_path_factory.mktemp("web_app")
    campaigns = home / "campaigns"
    shutil.copytree(PROJECT_ROOT / "campaigns", campaigns)
    settings = Settings(home=home, data_dir=home / "data", campaigns_dir=campaigns)
    engine = store_schema.make_engine(settings.database_url)
    store_schema.ensure_schema(engine)
    store_run(engine, RUN_ID, "churn-retention-sms", date(2026, 1, 1), list(range(1, 41)), holdout=8)
    customers = pd.DataFrame(
        {
            "customer_id": range(1, 41),
            "full_name": [f"Person {i}" for i in range(1, 41)],
            "phone": [f"+44 7700 9000{i:02d}" for i in range(1, 41)],
            "email": [f"p{i}@example.com" for i in range(1, 41)],
        }
    )
    storage.write_part(
        pa.Table.from_pandas(customers, preserve_index=False), settings.lake_dir, "customers", 0
    )
    for name, role in (("vera", "viewer"), ("mona", "manager"), ("pia", "privileged")):
        users.add_user(users.users_path(settings.web_dir), name, role, PASSWORD)
    return settings


@pytest.fixture
def app(settings):
    return create_app(settings)


def _token(client, path: str = "/") -> str:
    page = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def _signed_in(app, name: str):
    client = app.test_client()
    token = _token(client, "/login")
    response = client.post("/login", data={"username": name, "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def test_pages_need_a_sign_in_and_a_wrong_password_is_refused(app):
    client = app.test_client()
    response = client.get(f"/runs/{RUN_ID}")
    assert response.status_code == 302 and "/login?next=" in response.headers["Location"]
    token = _token(client, "/login")
    refused = client.post(
        "/login", data={"username": "vera", "password": "wrong password!", "csrf_token": token}
    )
    assert refused.status_code == 401 and "Wrong user name or password" in refused.get_data(as_text=True)
    unknown = client.post("/login", data={"username": "nobody", "password": PASSWORD, "csrf_token": token})
    assert unknown.status_code == 401


def test_sign_in_returns_to_a_page_of_this_site_only(app):
    client = app.test_client()
    token = _token(client, "/login")
    form = {"username": "vera", "password": PASSWORD, "csrf_token": token}
    away = client.post("/login?next=//evil.example/x", data=form)
    assert away.headers["Location"] == "/"
    client = app.test_client()
    token = _token(client, "/login")
    back = client.post(f"/login?next=/runs/{RUN_ID}", data={**form, "csrf_token": token})
    assert back.headers["Location"] == f"/runs/{RUN_ID}"


def test_a_form_posted_without_its_csrf_token_is_refused(app):
    client = app.test_client()
    response = client.post("/login", data={"username": "vera", "password": PASSWORD})
    assert response.status_code == 400 and "CSRF" in response.get_data(as_text=True)
    manager = _signed_in(app, "mona")
    response = manager.post(f"/runs/{RUN_ID}/list/download", data={"format": "csv", "groups": "treatment"})
    assert response.status_code == 400


def test_a_viewer_reads_results_but_no_lists(app):
    viewer = _signed_in(app, "vera")
    page = viewer.get(f"/runs/{RUN_ID}").get_data(as_text=True)
    engine = app.extensions["pmp_engine"]
    viewer.get("/")
    assert app.extensions["pmp_engine"] is engine, "one engine (one connection pool) per app"
    assert 'data-group="treatment">32<' in page and 'data-group="holdout">8<' in page
    assert "Treatment list" not in page and "New campaign" not in page
    assert viewer.get(f"/runs/{RUN_ID}/list").status_code == 403
    assert viewer.get("/audit").status_code == 403
    assert viewer.get("/campaigns/new").status_code == 403
    token = _token(viewer, "/")
    asked = viewer.post(
        f"/runs/{RUN_ID}/list/download",
        data={"format": "csv", "groups": "treatment", "contact": "1", "csrf_token": token},
    )
    assert asked.status_code == 403


def test_a_manager_downloads_the_list_without_contact_details_and_it_is_audited(app, settings):
    manager = _signed_in(app, "mona")
    page = manager.get(f"/runs/{RUN_ID}/list").get_data(as_text=True)
    assert "32 customers to contact" in page and "with contact details" not in page
    token = _token(manager, f"/runs/{RUN_ID}/list")
    refused = manager.post(
        f"/runs/{RUN_ID}/list/download",
        data={"format": "csv", "groups": "treatment", "contact": "1", "csrf_token": token},
    )
    assert refused.status_code == 403
    response = manager.post(
        f"/runs/{RUN_ID}/list/download", data={"format": "csv", "groups": "treatment", "csrf_token": token}
    )
    assert response.status_code == 200
    frame = pd.read_csv(io.BytesIO(response.data))
    assert len(frame) == 32 and "phone" not in frame.columns and "score_percentile" in frame.columns
    audit = read_exports(store_schema.make_engine(settings.database_url))
    row = audit.iloc[0]
    assert row["exported_by"] == "mona (staff app)" and not row["contact"] and row["n_rows"] == 32
    assert row["sha256"] == response.headers["X-Export-Sha256"]
    assert not any((settings.web_dir / "downloads").rglob("*.csv")), "the sent file stays on disk"


def test_a_privileged_user_downloads_contact_details_as_excel_audited_by_name(app, settings):
    privileged = _signed_in(app, "pia")
    token = _token(privileged, f"/runs/{RUN_ID}/list")
    response = privileged.post(
        f"/runs/{RUN_ID}/list/download",
        data={"format": "xlsx", "groups": "all", "contact": "1", "csrf_token": token},
    )
    assert response.status_code == 200
    frame = pd.read_excel(io.BytesIO(response.data))
    assert len(frame) == 40 and {"full_name", "phone", "email"} <= set(frame.columns)
    audit = read_exports(store_schema.make_engine(settings.database_url))
    row = audit.loc[audit["contact"]].iloc[0]
    assert row["exported_by"] == "pia (staff app)" and row["target_groups"] == "treatment,holdout"
    assert row["n_rows"] == 40
    audit_page = privileged.get("/audit").get_data(as_text=True)
    assert "pia (staff app)" in audit_page and "with contact details" in audit_page


def test_signing_out_needs_the_token_and_ends_the_session(app):
    viewer = _signed_in(app, "vera")
    assert viewer.post("/logout").status_code == 400
    token = _token(viewer, "/")
    assert viewer.post("/logout", data={"csrf_token": token}).status_code == 302
    assert viewer.get("/").status_code == 302


def test_a_database_that_cannot_be_reached_is_one_line_not_a_traceback(settings):
    broken = Settings(**{**settings.model_dump(), "database_url": "postgresql://pmp@127.0.0.1:9/campaigns"})
    viewer = _signed_in(create_app(broken), "vera")
    response = viewer.get("/")
    page = response.get_data(as_text=True)
    assert response.status_code == 503 and "Campaign database unavailable" in page
    assert "Traceback" not in page and "127.0.0.1:9" in page


def test_demo_users_are_made_once_with_private_passwords(tmp_path):
    passwords, made = users.ensure_demo_users(tmp_path)
    assert made == ["viewer", "manager", "privileged"]
    assert passwords.stat().st_mode & 0o777 == 0o600
    assert users.users_path(tmp_path).stat().st_mode & 0o777 == 0o600
    text = passwords.read_text()
    found = users.load_users(users.users_path(tmp_path))
    for name in made:
        password = re.search(rf"^{name}\s+(\S+)", text, re.M).group(1)
        assert users.authenticate(found, name, password) is not None
        assert password not in users.users_path(tmp_path).read_text()
    assert users.ensure_demo_users(tmp_path) == (passwords, [])


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[users.a]\nrole = "boss"\npassword = "x$y"\n', "role must be one of"),
        ('[users.a]\nrole = "viewer"\npassword = "plain"\n', "must be a password hash"),
        ("[users\n", "not valid TOML"),
    ],
)
def test_a_bad_users_file_is_named_with_its_entry(tmp_path, text, problem):
    path = Path(tmp_path) / "users.toml"
    path.write_text(text)
    with pytest.raises(users.UsersError, match=problem) as caught:
        users.load_users(path)
    assert str(path) in str(caught.value)


@pytest.mark.postgres
def test_on_postgresql_downloads_and_spec_changes_are_audited_with_the_database_role(settings, postgres_url):
    on_pg = Settings(
        **{**settings.model_dump(), "database_url": postgres_url, "campaigns_dir": settings.home / "pg"}
    )
    shutil.copytree(settings.campaigns_dir, on_pg.campaigns_dir)
    engine = store_schema.make_engine(on_pg.database_url)
    store_schema.ensure_schema(engine)
    store_run(engine, RUN_ID, "churn-retention-sms", date(2026, 1, 1), list(range(1, 41)), holdout=8)
    app = create_app(on_pg)
    privileged = _signed_in(app, "pia")
    assert 'data-group="treatment">32<' in privileged.get(f"/runs/{RUN_ID}").get_data(as_text=True)
    token = _token(privileged, f"/runs/{RUN_ID}/list")
    response = privileged.post(
        f"/runs/{RUN_ID}/list/download",
        data={"format": "csv", "groups": "treatment", "contact": "1", "csrf_token": token},
    )
    assert response.status_code == 200 and "phone" in pd.read_csv(io.BytesIO(response.data)).columns
    row = read_exports(engine).iloc[0]
    assert row["exported_by"] == "pia (staff app, as postgres)" and row["contact"]

    manager = _signed_in(app, "mona")
    form = {
        "csrf_token": _token(manager, "/campaigns/churn-winback/edit"),
        **form_values(manager.get("/campaigns/churn-winback/edit").get_data(as_text=True)),
        "channel": "email",
    }
    previewed = manager.post("/campaigns/churn-winback/edit", data={**form, "action": "preview"})
    assert "no scored base for model churn" in previewed.get_data(as_text=True)
    fingerprint = re.search(r'name="previewed" value="([^"]+)"', previewed.get_data(as_text=True)).group(1)
    saved = manager.post(
        "/campaigns/churn-winback/edit", data={**form, "action": "save", "previewed": fingerprint}
    )
    assert saved.status_code == 302, saved.get_data(as_text=True)[-2000:]
    assert "channel: email" in (on_pg.campaigns_dir / "churn-winback.yaml").read_text()
    history = read_history(engine, "churn-winback")
    assert history.iloc[0]["changed_by"] == "mona" and "+channel: email" in history.iloc[0]["diff"]


def test_the_builder_loads_and_saves_a_spec_with_a_place_rule_without_losing_it(settings):
    own = Settings(**{**settings.model_dump(), "campaigns_dir": settings.home / "places"})
    shutil.copytree(settings.campaigns_dir, own.campaigns_dir)
    path = own.campaigns_dir / "churn-winback.yaml"
    text = path.read_text().replace(
        "audience:\n",
        "audience:\n  - {within_km: {of: BR012, km: 25}}\n  - {column: region, op: in, value: [Scotland]}\n",
    )
    path.write_text(text)
    manager = _signed_in(create_app(own), "mona")
    page = manager.get("/campaigns/churn-winback/edit").get_data(as_text=True)
    form = {"csrf_token": _token(manager, "/campaigns/churn-winback/edit"), **form_values(page)}
    assert (form["audience-0-column"], form["audience-0-op"], form["audience-0-value"]) == (
        "within_km",
        "<=",
        "25 km of BR012",
    )
    assert (form["audience-1-column"], form["audience-1-value"]) == ("region", "Scotland")
    form["channel"] = "email"
    previewed = manager.post("/campaigns/churn-winback/edit", data={**form, "action": "preview"})
    fingerprint = re.search(r'name="previewed" value="([^"]+)"', previewed.get_data(as_text=True)).group(1)
    saved = manager.post(
        "/campaigns/churn-winback/edit", data={**form, "action": "save", "previewed": fingerprint}
    )
    assert saved.status_code == 302, saved.get_data(as_text=True)[-2000:]
    written = path.read_text()
    assert (
        "  - {within_km: {of: BR012, km: 25}}\n  - {column: region, op: in, value: [Scotland]}\n" in written
    )
    assert "channel: email" in written


def test_the_builder_refuses_to_edit_a_lookalike_spec_and_does_not_offer_the_model(app, settings):
    manager = _signed_in(app, "mona")
    path = settings.campaigns_dir / "travel-lookalike.yaml"
    before = path.read_bytes()
    page = manager.get("/campaigns/travel-lookalike/edit")
    text = page.get_data(as_text=True)
    assert page.status_code == 409
    assert (
        "the form cannot edit its lookalike block yet" in text and "campaigns/travel-lookalike.yaml" in text
    )
    token = _token(manager, "/campaigns/new")
    posted = manager.post("/campaigns/travel-lookalike/edit", data={"csrf_token": token, "model": "churn"})
    assert posted.status_code == 409 and path.read_bytes() == before
    # The campaign itself is listed and shown like any other; the form's model list leaves lookalike out.
    assert manager.get("/campaigns/travel-lookalike").status_code == 200
    assert 'value="lookalike"' not in manager.get("/campaigns/new").get_data(as_text=True)
    assert 'value="uplift"' in manager.get("/campaigns/new").get_data(as_text=True)
