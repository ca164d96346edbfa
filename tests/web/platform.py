"""A small trained platform and a running staff app for the browser tests and bench/bench_web.py: a synthetic bank,
its churn champion, one campaign run with its responses read out, three users (one per role), and ``pmp serve`` in
its own process on a free port of 127.0.0.1 (stopped on exit, also on failure)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from pipelines.config import PROJECT_ROOT, Settings
from tests.integration.faults import free_port

PASSWORDS = {
    "viewer": "viewer-password-1",
    "manager": "manager-password-1",
    "privileged": "privileged-password-1",
}
CAMPAIGN = "churn-retention-sms"
CHROMIUM = "/usr/bin/chromium"
# As the machine's notes advise: no background connections that a closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass(frozen=True)
class Platform:
    settings: Settings
    run_id: str

    def env(self) -> dict[str, str]:
        """The environment a ``pmp`` process needs to see this platform."""
        s = self.settings
        return {
            **os.environ,
            "PM_HOME": str(s.home),
            "PM_DATA_DIR": str(s.data_dir),
            "PM_CAMPAIGNS_DIR": str(s.campaigns_dir),
            "PM_DATABASE_URL": s.database_url,
            "PM_WEB_DIR": str(s.web_dir),
            "MLFLOW_TRACKING_URI": s.mlflow_tracking_uri,
            "OMP_WAIT_POLICY": "PASSIVE",
        }


def build_platform(home: Path, customers: int = 5_000, seed: int = 5) -> Platform:
    """Bank, churn champion, a run of ``churn-retention-sms`` at the lake's end, its responses and its readout
    (about 25 s for 5,000 customers), and the three users. ``home`` gets data/, mlruns/ and a copy of campaigns/."""
    from pipelines.jobs.campaigns import run_campaign
    from pipelines.jobs.common import resolve_as_of
    from pipelines.jobs.readouts import readout_campaign, simulate_responses
    from pipelines.jobs.training import train_churn
    from pipelines.synthetic.bank import SynthConfig, generate_bank
    from pipelines.web import users

    campaigns = home / "campaigns"
    shutil.copytree(PROJECT_ROOT / "campaigns", campaigns)
    settings = Settings(home=home, data_dir=home / "data", campaigns_dir=campaigns)
    generate_bank(
        SynthConfig(customers=customers, months=12, seed=seed, chunk_size=customers),
        settings.data_dir,
        progress=None,
    )
    train_churn(settings.data_dir, tracking_uri=settings.mlflow_tracking_uri, progress=None)
    as_of = resolve_as_of(settings)
    run = run_campaign(settings, CAMPAIGN, as_of, progress=None)
    simulate_responses(settings, run["run_id"])
    readout_campaign(settings, run["run_id"], as_of=as_of + timedelta(days=9), progress=None)
    for role, password in PASSWORDS.items():
        users.add_user(users.users_path(settings.web_dir), role, role, password)
    return Platform(settings, run["run_id"])


@contextmanager
def served(platform: Platform, log: Path, timeout: float = 60) -> Iterator[str]:
    """``pmp serve`` over ``platform`` on a free port; yields its base URL; stops it (its process group)."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("pmp")), "serve", "--port", str(port)],
            env=platform.env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"pmp serve exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"{url}/login", timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"pmp serve did not answer within {timeout} s: {log.read_text()[-2000:]}"
                    ) from None
                time.sleep(0.2)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def launch_chromium(playwright):
    """Debian's chromium, headless (Playwright's own browser download is not used)."""
    if not Path(CHROMIUM).is_file():
        raise RuntimeError(
            f"{CHROMIUM} not found: the browser tests need Debian's chromium (apt-get install chromium; .ci/run "
            "installs it when absent)"
        )
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


def sign_in(page, url: str, role: str) -> None:
    page.goto(f"{url}/login")
    page.fill("#username", role)
    page.fill("#password", PASSWORDS[role])
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/")


def form_values(page: str) -> dict[str, str]:
    """What a browser would post from the forms of ``page`` (HTML text): inputs (ticked boxes only, no radio
    buttons), each select's chosen option, text areas; without the CSRF token."""
    import html
    import re

    form = {}
    for tag in re.findall(r"<input [^>]*>", page):
        field, value = re.search(r'name="([^"]+)"', tag), re.search(r'value="([^"]*)"', tag)
        if field and 'type="radio"' not in tag and ('type="checkbox"' not in tag or "checked" in tag):
            form[field.group(1)] = html.unescape(value.group(1)) if value else ""
    for field, options in re.findall(r'<select [^>]*name="([^"]+)"[^>]*>(.*?)</select>', page, re.S):
        chosen = re.search(r'<option value="([^"]*)" selected', options)
        form[field] = html.unescape(chosen.group(1)) if chosen else ""
    for field, text in re.findall(r'<textarea [^>]*name="([^"]+)"[^>]*>(.*?)</textarea>', page, re.S):
        form[field] = html.unescape(text)
    form.pop("csrf_token", None)
    return form
