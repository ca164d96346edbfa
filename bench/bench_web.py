"""Staff app page timings, and screenshots of its main pages, over the data folder of ``make run``.

    python bench/bench_web.py                          # ./data (after make run); 5 requests a page
    python bench/bench_web.py --data DIR --screenshots docs/screenshots

Starts ``pmp serve`` (waitress, as deployed) on a free port of 127.0.0.1 with a throw-away users file (the demo's
users are not touched), signs in as a privileged user and times each page with ``urllib``: the first request
after the server started (cold: imports, the first database connection) and the median of the next requests. The
goal (issue 15) is the first page in under 2 s; the same run times the command-line equivalents as references
(``pmp campaigns list``, ``pmp lists export``), each a new process. With ``--screenshots`` Debian's chromium
(Playwright) saves the main pages as PNG.
"""

from __future__ import annotations

import argparse
import http.cookiejar
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.campaigns import store, store_schema  # noqa: E402
from pipelines.config import load_settings  # noqa: E402
from pipelines.web import users  # noqa: E402
from tests.web.platform import Platform, form_values, launch_chromium, served  # noqa: E402

PASSWORD = "bench-password-1"
GOAL_S = 2.0


class Client:
    """A signed-in HTTP client (cookies, CSRF token) that times each request."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def get(self, path: str) -> tuple[float, str]:
        started = time.perf_counter()
        with self.opener.open(self.url + path, timeout=60) as response:
            body = response.read().decode("utf-8", "replace")
        return time.perf_counter() - started, body

    def post(self, path: str, form: dict[str, str]) -> tuple[float, bytes]:
        started = time.perf_counter()
        data = urllib.parse.urlencode(form).encode()
        with self.opener.open(self.url + path, data=data, timeout=120) as response:
            body = response.read()
        return time.perf_counter() - started, body

    def token(self, page: str) -> str:
        return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data", help="data folder of make run (default ./data)")
    parser.add_argument("--repeat", type=int, default=5, help="timed requests per page after the first")
    parser.add_argument("--screenshots", default=None, help="folder for PNG screenshots of the main pages")
    args = parser.parse_args()

    web_dir = Path(tempfile.mkdtemp(prefix="bench_web_"))
    settings = load_settings().with_data_dir(args.data)
    settings = settings.model_copy(update={"web_dir": web_dir})
    engine = store_schema.make_engine(settings.database_url)
    runs = store.list_runs(engine)
    if runs.empty:
        sys.exit(f"no campaign runs in {settings.database_url}: run make run first")
    results = set(store.read_results(engine)["campaign_id"])
    read_out = runs[runs["run_id"].isin(results)]
    run = (read_out if len(read_out) else runs).iloc[0]
    users.add_user(users.users_path(web_dir), "bench", "privileged", PASSWORD)
    platform = Platform(settings, str(run["run_id"]))
    print(
        f"load: {os.getloadavg()[0]:.2f} (uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()})"
    )
    print(
        f"data: {settings.data_dir}, {len(runs)} runs; timing run {run['run_id']} ({int(run['n_selected']):,} selected)"
    )

    with served(platform, web_dir / "serve.log") as url:
        client = Client(url)
        cold, login = client.get("/login")
        client.post("/login", {"username": "bench", "password": PASSWORD, "csrf_token": client.token(login)})
        pages = {
            "campaigns (first page)": "/",
            "campaign": f"/campaigns/{run['campaign']}",
            "run with readout": f"/runs/{run['run_id']}",
            "list preview": f"/runs/{run['run_id']}/list",
            "campaign builder": "/campaigns/new",
            "audit": "/audit",
            "monitoring": "/monitoring",
        }
        print(f"\n{'page':<26}{'first (s)':>11}{'median (s)':>12}   goal < {GOAL_S:g} s for the first page")
        print(f"{'sign-in page, cold':<26}{cold:>11.3f}")
        for name, path in pages.items():
            first, _ = client.get(path)
            rest = [client.get(path)[0] for _ in range(args.repeat)]
            print(f"{name:<26}{first:>11.3f}{statistics.median(rest):>12.3f}")
        _, edit = client.get(f"/campaigns/{run['campaign']}/edit")
        form = {**form_values(edit), "csrf_token": client.token(edit)}
        preview = [
            client.post(f"/campaigns/{run['campaign']}/edit", {**form, "action": "preview"})[0]
            for _ in range(args.repeat)
        ]
        print(f"{'builder preview (POST)':<26}{preview[0]:>11.3f}{statistics.median(preview[1:]):>12.3f}")
        _, listing = client.get(pages["list preview"])
        download = [
            client.post(
                f"{pages['list preview']}/download",
                {"format": "csv", "groups": "treatment", "csrf_token": client.token(listing)},
            )
            for _ in range(3)
        ]
        print(
            f"{'list download (CSV)':<26}{download[0][0]:>11.3f}{statistics.median(d[0] for d in download):>12.3f}"
            f"   {len(download[0][1]):,} bytes"
        )
        _references(platform, run, web_dir)
        if args.screenshots:
            _screenshots(url, run, Path(args.screenshots))
    return 0


def _references(platform: Platform, run, web_dir: Path) -> None:
    pmp = str(Path(sys.executable).with_name("pmp"))
    print("\nreferences (command line, a new process each):")
    for name, argv in (
        ("pmp campaigns list", [pmp, "campaigns", "list"]),
        (
            "pmp lists export (CSV)",
            [
                pmp,
                "lists",
                "export",
                "--campaign",
                str(run["campaign"]),
                "--run",
                str(run["run_id"]),
                "--out",
                str(web_dir / "cli.csv"),
            ],
        ),
    ):
        started = time.perf_counter()
        subprocess.run(argv, env=platform.env(), check=True, capture_output=True)
        print(f"{name:<26}{time.perf_counter() - started:>11.3f}")


def _screenshots(url: str, run, folder: Path) -> None:
    from playwright.sync_api import sync_playwright

    folder.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.goto(f"{url}/login")
        page.fill("#username", "bench")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{url}/")
        shots = {
            "campaigns.png": "/",
            "campaign.png": f"/campaigns/{run['campaign']}",
            "run-readout.png": f"/runs/{run['run_id']}",
            "list.png": f"/runs/{run['run_id']}/list",
            "audit.png": "/audit",
            "monitoring.png": "/monitoring",
        }
        for name, path in shots.items():
            page.goto(url + path)
            page.screenshot(path=str(folder / name), full_page=name in ("run-readout.png", "monitoring.png"))
        page.goto(f"{url}/campaigns/{run['campaign']}/edit")
        page.click("button[value=preview]")
        page.screenshot(path=str(folder / "builder-preview.png"), full_page=True)
        browser.close()
    print(f"\nscreenshots: {', '.join(sorted(p.name for p in folder.glob('*.png')))} in {folder}")


if __name__ == "__main__":
    raise SystemExit(main())
