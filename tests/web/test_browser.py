"""The staff app in a real browser: Debian's chromium, headless, driven by Playwright, against ``pmp serve`` over a
trained platform (tests/web/platform.py). Each role signs in; the numbers on the pages are checked against the
campaign database; a downloaded list is compared with ``pmp lists export``; a campaign made through the form is
found as YAML and as a DAG; the forbidden paths are tried."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipelines.campaigns import store, store_schema
from pipelines.campaigns.contact_export import read_exports
from pipelines.campaigns.spec_history import read_history
from tests.web.platform import CAMPAIGN, build_platform, launch_chromium, served, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]
PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    return build_platform(tmp_path_factory.mktemp("web_platform"))


@pytest.fixture(scope="module")
def url(platform, tmp_path_factory):
    with served(platform, tmp_path_factory.mktemp("serve") / "serve.log") as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page_as(browser, url):
    """A function: a new page (own cookies) signed in as the given role."""
    contexts = []

    def make(role: str):
        context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
        contexts.append(context)
        page = context.new_page()
        sign_in(page, url, role)
        return page

    yield make
    for context in contexts:
        context.close()


def engine(platform):
    return store_schema.make_engine(platform.settings.database_url)


def _count(text: str) -> int:
    return int(text.replace(",", "").strip())


@pytest.mark.parametrize("role", ["viewer", "manager", "privileged"])
def test_each_role_signs_in_and_sees_its_menu(page_as, role, url):
    page = page_as(role)
    assert page.locator("header .who").inner_text().startswith(f"{role} · {role}")
    menu = page.locator("header nav").inner_text()
    assert ("New campaign" in menu) == (role != "viewer") and ("Audit" in menu) == (role != "viewer")
    assert page.locator("#campaigns").get_by_role("link", name=CAMPAIGN).count() == 1


def test_a_wrong_password_does_not_sign_in(browser, url):
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{url}/login")
    page.fill("#username", "manager")
    page.fill("#password", "not the password")
    page.click("button[type=submit]")
    assert "Wrong user name or password" in page.locator("[role=alert]").inner_text()
    assert page.goto(f"{url}/").url.startswith(f"{url}/login")
    context.close()


def test_a_run_page_shows_the_numbers_of_the_database(page_as, platform, url):
    page = page_as("viewer")
    page.get_by_role("link", name=CAMPAIGN).click()
    page.locator("#runs a").first.click()
    assert page.url == f"{url}/runs/{platform.run_id}"
    groups = store.group_counts(engine(platform), platform.run_id)
    assert _count(page.locator("[data-group=treatment]").inner_text()) == groups["treatment"]
    assert _count(page.locator("[data-group=holdout]").inner_text()) == groups["holdout"]
    shown = {
        row.locator("td").nth(0).inner_text(): _count(row.locator("td").nth(1).inner_text())
        for row in page.locator("#exclusions tbody tr").all()
    }
    stored = store.exclusion_counts(engine(platform), platform.run_id)
    assert shown == {reason.replace("_", " "): n for reason, n in stored.items()}
    result = store.read_results(engine(platform)).set_index("campaign_id").loc[platform.run_id]
    readout = page.locator(".readout")
    assert readout.count() == 1, "the readout report's body is on the run page"
    assert f"{100 * result['lift_abs']:+.2f}" in readout.inner_text()
    chart = readout.locator("img").first
    assert chart.get_attribute("src").startswith("data:image/png;base64,")
    assert page.evaluate("(img) => img.naturalWidth", chart.element_handle()) > 300, "the chart is drawn"


def test_a_viewer_cannot_reach_lists_or_contact_details(page_as, platform, url):
    page = page_as("viewer")
    response = page.goto(f"{url}/runs/{platform.run_id}/list")
    assert response.status == 403 and "role needed" in page.inner_text("main")
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    asked = page.request.post(
        f"{url}/runs/{platform.run_id}/list/download",
        form={"format": "csv", "groups": "treatment", "contact": "1", "csrf_token": token},
    )
    assert asked.status == 403
    assert (
        read_exports(engine(platform)).empty
        or not read_exports(engine(platform))["exported_by"].str.startswith("viewer").any()
    )


def test_a_form_posted_without_its_csrf_token_is_refused_and_writes_nothing(page_as, platform, url):
    page = page_as("manager")
    before = len(read_exports(engine(platform)))
    refused = page.request.post(
        f"{url}/runs/{platform.run_id}/list/download", form={"format": "csv", "groups": "treatment"}
    )
    assert refused.status == 400 and "CSRF" in refused.text()
    forged = page.request.post(
        f"{url}/campaigns/new",
        form={"name": "forged", "action": "save", "description": "x", "model": "churn"},
    )
    assert forged.status == 400
    assert len(read_exports(engine(platform))) == before
    assert not (platform.settings.campaigns_dir / "forged.yaml").exists()


def test_a_downloaded_list_is_the_one_pmp_lists_export_writes(page_as, platform, url, tmp_path):
    page = page_as("manager")
    page.goto(f"{url}/runs/{platform.run_id}/list")
    assert "with contact details" not in page.inner_text("#download")
    with page.expect_download() as caught:
        page.click("#download button[type=submit]")
    downloaded = tmp_path / caught.value.suggested_filename
    caught.value.save_as(downloaded)
    cli = tmp_path / "cli.csv"
    subprocess.run(
        [
            str(Path(sys.executable).with_name("pmp")),
            "lists",
            "export",
            "--campaign",
            CAMPAIGN,
            "--run",
            platform.run_id,
            "--out",
            str(cli),
        ],
        env=platform.env(),
        check=True,
        capture_output=True,
    )
    pd.testing.assert_frame_equal(pd.read_csv(downloaded), pd.read_csv(cli))
    assert downloaded.read_bytes() == cli.read_bytes()
    headers = page.locator("#preview thead th").all_inner_texts()
    first = page.locator("#preview tbody tr").first.locator("td").all_inner_texts()
    listed = pd.read_csv(cli).iloc[0]
    assert first[headers.index("customer id")] == str(listed["customer_id"]), (
        "the preview starts with the list"
    )
    assert first[headers.index("reason 1")] == listed["reason_1"]
    audit = read_exports(engine(platform))
    assert audit.iloc[1]["exported_by"] == "manager (staff app)" and not audit.iloc[1]["contact"]


def test_a_privileged_user_downloads_contact_details_in_excel_and_the_audit_page_shows_it(
    page_as, platform, url, tmp_path
):
    page = page_as("privileged")
    page.goto(f"{url}/runs/{platform.run_id}/list")
    page.check("input[name=format][value=xlsx]")
    page.check("input[name=contact]")
    with page.expect_download() as caught:
        page.click("#download button[type=submit]")
    path = tmp_path / caught.value.suggested_filename
    caught.value.save_as(path)
    frame = pd.read_excel(path)
    treatment = store.group_counts(engine(platform), platform.run_id)["treatment"]
    assert len(frame) == treatment and {"full_name", "phone", "email"} <= set(frame.columns)
    page.goto(f"{url}/audit")
    first = page.locator("#exports tbody tr").first.inner_text()
    assert "privileged (staff app)" in first and "with contact details" in first and f"{treatment:,}" in first


def test_a_campaign_made_through_the_form_has_its_yaml_history_and_dag(page_as, platform, url):
    page = page_as("manager")
    page.goto(f"{url}/campaigns/new")
    page.fill("#f-name", "gold-app-winback")
    page.fill("#f-description", "Gold card holders who still use the app, best three deciles by churn score.")
    page.select_option("#f-model", "churn")
    page.select_option("#f-channel", "email")
    page.select_option("[name=audience-0-column]", "card_tier")
    page.select_option("[name=audience-0-op]", "in")
    page.fill("[name=audience-0-value]", "gold, platinum")
    page.select_option("#f-selection_mode", "top_deciles")
    page.fill("#f-selection_value", "3")
    page.fill("#f-holdout_fraction", "0.2")
    assert page.locator("#save").is_disabled(), "Save waits for a preview"
    page.click("button[value=preview]")
    selected = _count(page.locator("#preview-selected").inner_text())
    assert selected > 0 and "percentage points" in page.locator("#preview-mde").inner_text()
    page.fill("[name=audience-0-value]", "platinum")  # a change after the preview must be previewed again
    page.click("#save")
    assert "check the preview below, then save" in page.inner_text("main")
    narrower = _count(page.locator("#preview-selected").inner_text())
    assert narrower < selected
    page.click("#save")
    page.wait_for_url(f"{url}/campaigns/gold-app-winback")
    assert "Saved" in page.inner_text("main")

    path = platform.settings.campaigns_dir / "gold-app-winback.yaml"
    spec = yaml.safe_load(path.read_text())
    assert spec["audience"] == [{"column": "card_tier", "op": "in", "value": ["platinum"]}]
    assert (
        spec["channel"] == "email"
        and spec["selection"] == {"top_deciles": 3}
        and spec["holdout_fraction"] == 0.2
    )
    history = read_history(engine(platform), "gold-app-winback")
    assert history.iloc[0]["changed_by"] == "manager" and "+channel: email" in history.iloc[0]["diff"]
    assert "manager" in page.locator("#history").inner_text()
    dags = subprocess.run(
        [
            sys.executable,
            "-c",
            "from airflow.dag_processing.dagbag import DagBag; import sys; "
            "bag = DagBag(dag_folder=sys.argv[1]); print(sorted(bag.dag_ids)); "
            "print(bag.import_errors)",
            str(PROJECT_ROOT / "dags"),
        ],
        env={
            **platform.env(),
            "AIRFLOW_HOME": str(platform.settings.home / ".airflow"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            "PYTHONPATH": str(
                PROJECT_ROOT / "dags"
            ),  # as Airflow's own processes put the DAG folder on the path
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "campaign_scoring__gold-app-winback" in dags.stdout, dags.stderr[-2000:]


def test_the_builder_shows_each_problem_beside_its_field(page_as, url):
    page = page_as("manager")
    page.goto(f"{url}/campaigns/new")
    page.fill("#f-name", "Bad Name")
    page.fill("#f-selection_value", "three")
    page.fill("#f-holdout_fraction", "auto")
    page.click("button[value=preview]")
    assert page.locator("#form-errors").is_visible()
    for field in ("name", "selection_value", "power_baseline_rate"):
        assert page.locator(f"#problem-{field}").count() == 1, field
    assert not page.locator("#preview").count()
