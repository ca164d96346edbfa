"""The staff app's monitoring page through Flask's test client, over a real SQLite campaign database whose
``model_monitoring`` rows are written by the monitor's own writer: the charts (one point per run, the threshold
lines), the per-run table with its level badges and run links, the model filter, the empty state and the sign-in."""

from __future__ import annotations

import re
import shutil
from datetime import date

import pandas as pd
import pytest

from pipelines.campaigns import store_schema
from pipelines.config import PROJECT_ROOT, Settings
from pipelines.jobs.monitoring import monitor_table
from pipelines.monitoring.store import write_monitoring
from pipelines.web import users
from pipelines.web.app import create_app
from pipelines.web.monitoring import nice_ticks
from tests.stored_runs import store_run

PASSWORD = "correct horse battery"
CAMPAIGN = "churn-winback"
DAYS = [date(2025, 10, 1), date(2025, 11, 1), date(2025, 12, 1), date(2026, 1, 1)]
# Per run: score PSI, then (feature, PSI) of two top features; the worst feature PSI grades the run.
STABILITY = [
    (0.003, {"tenure_days": 0.009, "avg_ticket_90d": 0.002}),
    (0.005, {"tenure_days": 0.011, "avg_ticket_90d": 0.043}),
    (0.019, {"tenure_days": 0.012, "avg_ticket_90d": 0.145}),
    (0.032, {"tenure_days": 0.010, "avg_ticket_90d": 0.284}),
]
REALISED_AUC, TEST_AUC = 0.862, 0.873


def run_id(day: date, campaign: str = CAMPAIGN) -> str:
    return f"campaign_scoring__{day:%Y-%m-%d}__{campaign}"


def _level(value: float, warn: float, alert: float) -> str:
    return "alert" if value >= alert else "warn" if value >= warn else "ok"


def _stability_rows(score: float, features: dict[str, float], settings: Settings) -> pd.DataFrame:
    grade = [_level(v, settings.psi_warn, settings.psi_alert) for v in features.values()]
    return pd.DataFrame(
        {
            "metric": ["psi"] * (1 + len(features)) + ["missing_share"],
            "subject": ["score", *features, "tenure_days"],
            "value": [score, *features.values(), 0.0],
            "reference": [None] * (1 + len(features)) + [0.0],
            "level": [_level(score, settings.psi_warn, settings.psi_alert), *grade, "ok"],
        }
    )


def _realised_rows() -> pd.DataFrame:
    deciles = [f"decile_{i:02d}" for i in range(1, 11)]
    return pd.DataFrame(
        {
            "metric": ["auc", "top_decile_lift", "calibration_error"] + ["observed_rate"] * 10,
            "subject": ["model", "model", "model", *deciles],
            "value": [REALISED_AUC, 3.1, 0.012] + [0.3 - 0.025 * i for i in range(10)],
            "reference": [TEST_AUC, None, None] + [0.31 - 0.025 * i for i in range(10)],
            "level": ["ok"] * 13,
        }
    )


def _settings(home) -> Settings:
    campaigns = home / "campaigns"
    shutil.copytree(PROJECT_ROOT / "campaigns", campaigns)
    settings = Settings(home=home, data_dir=home / "data", campaigns_dir=campaigns)
    store_schema.ensure_schema(store_schema.make_engine(settings.database_url))
    users.add_user(users.users_path(settings.web_dir), "vera", "viewer", PASSWORD)
    return settings


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    settings = _settings(tmp_path_factory.mktemp("web_monitoring"))
    engine = store_schema.make_engine(settings.database_url)
    for day, (score, features) in zip(DAYS, STABILITY, strict=True):
        store_run(engine, run_id(day), CAMPAIGN, day, list(range(1, 11)))
        write_monitoring(
            engine,
            run_id=run_id(day),
            kind="stability",
            campaign=CAMPAIGN,
            model_name="churn",
            model_version="1",
            as_of=day,
            rows=_stability_rows(score, features, settings),
        )
    write_monitoring(
        engine,
        run_id=run_id(DAYS[0]),
        kind="realised",
        campaign=CAMPAIGN,
        model_name="churn",
        model_version="1",
        as_of=DAYS[0],
        rows=_realised_rows(),
    )
    # A second model, for the filter: one stable run of the response model.
    other = run_id(DAYS[3], "cross-sell-card")
    write_monitoring(
        engine,
        run_id=other,
        kind="stability",
        campaign="cross-sell-card",
        model_name="response",
        model_version="2",
        as_of=DAYS[3],
        rows=_stability_rows(0.004, {"spend_30d": 0.02}, settings),
    )
    return settings


def _signed_in(app):
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post("/login", data={"username": "vera", "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def _svg(page: str, svg_id: str) -> str:
    found = re.search(rf'<svg class="chart" id="{svg_id}".*?</svg>', page, re.S)
    assert found, f"no chart {svg_id}"
    return found.group(0)


def _series(svg: str, css: str) -> list[tuple[float, float]]:
    """The (cx, cy) of the points of one series of a chart."""
    block = re.search(rf'<g class="series {css}" data-points="\d+">(.*?)</g>', svg, re.S).group(1)
    return [(float(x), float(y)) for x, y in re.findall(r'cx="([\d.]+)" cy="([\d.]+)"', block)]


def _rule_y(svg: str, css: str) -> float:
    return float(re.search(rf'<g class="rule {css}"[^>]*><line [^>]*y1="([\d.]+)"', svg).group(1))


def test_anonymous_is_sent_to_sign_in(settings):
    response = create_app(settings).test_client().get("/monitoring?model=churn")
    assert response.status_code == 302
    assert (
        response.headers["Location"].startswith("/login?next=")
        and "monitoring" in response.headers["Location"]
    )


def test_the_psi_chart_has_a_point_per_run_and_the_threshold_lines(settings):
    app = create_app(settings)
    viewer = _signed_in(app)
    page = viewer.get("/monitoring").get_data(as_text=True)
    assert 'href="/monitoring">Monitoring</a>' in page, "the nav link"
    psi = _svg(page, "psi-churn")
    score, feature = _series(psi, "psi-score"), _series(psi, "psi-feature")
    assert len(score) == len(feature) == len(DAYS)
    assert [x for x, _ in score] == sorted(x for x, _ in score) and len({x for x, _ in score}) == len(DAYS)
    warn, alert = _rule_y(psi, "warn"), _rule_y(psi, "alert")
    assert f'data-value="{settings.psi_warn}"' in psi and f'data-value="{settings.psi_alert}"' in psi
    assert alert < warn, "higher PSI is drawn higher"
    # Each run's worst feature PSI lies on the right side of the lines: below warn, warn, alert.
    ys = [y for _, y in feature]
    assert ys[0] > warn and ys[1] > warn and alert < ys[2] < warn and ys[3] < alert
    assert "avg_ticket_90d" in psi and 'stroke-dasharray="6 4"' in psi
    for day in DAYS:
        assert f'href="/runs/{run_id(day)}"' in psi
    # Read through the app's one engine, as every page is.
    engine = app.extensions["pmp_engine"]
    viewer.get("/monitoring?model=churn")
    assert app.extensions["pmp_engine"] is engine


def test_the_auc_chart_shows_the_realised_run_against_its_test_auc(settings):
    page = _signed_in(create_app(settings)).get("/monitoring").get_data(as_text=True)
    auc = _svg(page, "auc-churn")
    realised, test = _series(auc, "auc-realised"), _series(auc, "auc-test")
    assert len(realised) == len(test) == 1
    assert realised[0][0] == test[0][0] and realised[0][1] > test[0][1], "0.862 drawn below 0.873"
    assert f"realised AUC {REALISED_AUC:.3f}" in auc and f"test AUC {TEST_AUC:.3f}" in auc
    assert "auc-response" not in page, "no realised rows for the response model, so no AUC chart"


def test_the_run_table_badges_levels_and_links_the_runs(settings):
    viewer = _signed_in(create_app(settings))
    page = viewer.get("/monitoring?model=churn").get_data(as_text=True)
    table = re.search(r'<table class="data" id="runs">.*?</table>', page, re.S).group(0)
    rows = {run: css for css, run in re.findall(r'<tr class="([^"]+)" data-run="([^"]+)">', table)}
    expected = monitor_table(settings, model="churn")
    assert len(rows) == len(expected) == len(DAYS)
    for record in expected.to_dict("records"):
        assert rows[record["run_id"]].startswith(f"level-{record['level']}")
    assert [r["level"] for r in expected.sort_values("as_of").to_dict("records")] == [
        "ok",
        "ok",
        "warn",
        "alert",
    ]
    last = re.search(rf'data-run="{run_id(DAYS[3])}">(.*?)</tr>', table, re.S).group(1)
    assert (
        '<span class="pill level-alert">ALERT</span>' in last and "0.284" in last and "avg_ticket_90d" in last
    )
    assert rows[run_id(DAYS[3])] == "level-alert worst"
    assert [r for r, c in rows.items() if "worst" in c] == [run_id(DAYS[3])], (
        "only the worst level stands out"
    )
    first = re.search(rf'data-run="{run_id(DAYS[0])}">(.*?)</tr>', table, re.S).group(1)
    assert f"{REALISED_AUC:.3f} / {TEST_AUC:.3f}" in first and "level-ok" in first
    link = f'href="/runs/{run_id(DAYS[3])}"'
    assert link in last
    assert viewer.get(f"/runs/{run_id(DAYS[3])}").status_code == 200, "the link opens the run page"


def test_the_model_filter_keeps_one_model(settings):
    viewer = _signed_in(create_app(settings))
    both = viewer.get("/monitoring").get_data(as_text=True)
    assert 'id="psi-churn"' in both and 'id="psi-response"' in both
    assert len(re.findall(r"<tr class=\"level-", both)) == len(DAYS) + 1
    response = viewer.get("/monitoring?model=response").get_data(as_text=True)
    assert 'id="psi-response"' in response and 'id="psi-churn"' not in response
    assert len(_series(_svg(response, "psi-response"), "psi-score")) == 1
    assert len(re.findall(r"<tr class=\"level-", response)) == 1 and "response v2" in response
    unknown = viewer.get("/monitoring?model=uplift")
    assert (
        unknown.status_code == 200
        and "Nothing measured for model <code>uplift</code>" in unknown.get_data(as_text=True)
    )


def test_a_fresh_database_shows_the_empty_state(tmp_path):
    page = _signed_in(create_app(_settings(tmp_path))).get("/monitoring").get_data(as_text=True)
    assert "Nothing measured yet" in page
    assert "<svg" not in page and 'id="runs"' not in page


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (0.0, 0.3, [0.0, 0.1, 0.2, 0.3]),
        (0.84, 0.9, [0.84, 0.86, 0.88, 0.9]),
        (0.0, 1.0, [0.0, 0.25, 0.5, 0.75, 1.0]),
    ],
)
def test_nice_ticks_are_round_and_cover_the_range(low, high, expected):
    assert nice_ticks(low, high) == pytest.approx(expected)
