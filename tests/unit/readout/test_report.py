"""The lift chart and the one-page report (Markdown and standalone HTML with the chart inline)."""

from __future__ import annotations

import base64
import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from pipelines.readout.funnel import channel_quality, funnel
from pipelines.readout.report import (
    CONTEXT_FILE,
    CONTEXT_VERSION,
    TOO_FEW,
    _p_phrase,
    lift_by_decile_chart,
    lift_by_decile_figure,
    load_report_context,
    render_body,
    render_context,
    render_report,
    report_context,
)
from pipelines.readout.stats import MIN_GROUP_N, readout, response_floor_alert, return_on_spend
from tests.unit.readout._frames import experiment as _experiment
from tests.unit.readout._frames import lake_frames as _lake_frames

# A stand-in for the chart: render_report only reads and embeds the file, whatever draws it.
PNG = b"\x89PNG\r\n\x1a\n stand-in chart"


def _decile_readout(treated_share=0.9, n=40_000, seed=0):
    frame = _experiment(n=n, treated_share=treated_share, seed=seed)
    frame["segment"] = frame["region"].map({"north": "at_risk <b>", "south": "loyal|core_*x*"})
    return readout(
        frame,
        treatment_col="arm",
        treated="B",
        control="A",
        outcome_col="bought",
        expected_share=0.9,
        segment_cols=("decile", "segment"),
    )


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_lift_by_decile_chart_writes_a_png_for_deciles_and_for_any_segment_column(tmp_path):
    result = _decile_readout()
    path = lift_by_decile_chart(result.segments, tmp_path / "lift.png")
    assert path == tmp_path / "lift.png"
    width, height = _png_size(path)
    assert width >= 600 and height == 400
    by_segment = lift_by_decile_chart(result.segments, tmp_path / "segment.png", by="segment", title="t")
    assert _png_size(by_segment)[1] == 400 and by_segment.read_bytes() != path.read_bytes()
    # rows in any order give the same decile chart
    shuffled = result.segments.sample(frac=1, random_state=1)
    again = lift_by_decile_chart(shuffled, tmp_path / "again.png")
    assert again.read_bytes() == path.read_bytes()


def test_lift_by_decile_chart_errors_name_the_missing_rows(tmp_path):
    result = _decile_readout()
    with pytest.raises(ValueError, match=r"no rows with by == 'region'.*by values: decile, segment"):
        lift_by_decile_chart(result.segments, tmp_path / "x.png", by="region")
    with pytest.raises(ValueError, match="lift_ci_low"):
        lift_by_decile_chart(result.segments.drop(columns="lift_ci_low"), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


class _Html(HTMLParser):
    """Checks that every opened element is closed in order, and collects the external references and text."""

    VOID = {"meta", "img", "br", "hr", "link"}

    def __init__(self):
        super().__init__()
        self.stack, self.refs, self.text, self.tags = [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.refs += [v for k, v in attrs if k in ("src", "href")]
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack.pop() == tag, f"</{tag}> closes {self.stack}"

    def handle_data(self, data):
        self.text.append(data)


def _parse(page: str) -> _Html:
    parser = _Html()
    parser.feed(page)
    parser.close()
    assert parser.stack == []
    return parser


def _png_file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(PNG)
    return path


def _inline_images(parsed: _Html) -> list[bytes]:
    """The bytes of every ``data:image/png`` reference; fails on any other (external) reference."""
    prefix = "data:image/png;base64,"
    assert all(ref.startswith(prefix) for ref in parsed.refs), [ref[:40] for ref in parsed.refs]
    return [base64.b64decode(ref.removeprefix(prefix)) for ref in parsed.refs]


def _report(result, tmp_path, **kwargs):
    return render_report(result, **_report_args(result, tmp_path, **kwargs))


def _report_args(result, tmp_path, **kwargs) -> dict:
    """render_report's arguments for a realistic report: every section, a title and facts to escape."""
    contacts, responses = _lake_frames()
    return {
        "title": "Readout <script>alert(1)</script> & co",
        "facts": {
            "campaign_id": "cmp-1",
            "cost_per_contact": 0.5,
            "value_per_response": 40.0,
            "dry_run": False,
        },
        "funnel": funnel(contacts, responses, "c1"),
        "channels": channel_quality(responses, contacts, "c1"),
        "alert": response_floor_alert(result, floor=0.05),
        "power_note": "powered: 80% power to detect ≥ +0.90 points",
        "true_lift": 0.01,
        "chart": _png_file(tmp_path / "lift_by_decile.png"),
        **kwargs,
    }


def test_report_headline_trust_and_every_section(tmp_path):
    result = _decile_readout()
    o = result.overall
    markdown, page = _report(result, tmp_path)
    for text in (markdown, page):
        assert f"{o.treated_rate:.2%}" in text and f"{o.control_rate:.2%}" in text
        assert f"{o.treated_n:,}" in text and f"{o.control_n:,}" in text
        assert f"{100 * o.lift_abs:+.2f} percentage points" in text
        assert f"95% CI {100 * o.lift_ci_low:+.2f} to {100 * o.lift_ci_high:+.2f}" in text
        assert f"{o.lift_rel:+.1%} (95% CI {o.lift_rel_ci_low:+.1%} to {o.lift_rel_ci_high:+.1%})" in text
        assert f"p = {o.p_value:.3f} (pooled z-test)" in text
        assert f"Incremental responses: {o.incremental_responses:,.1f}" in text
        ros = return_on_spend(o, 0.5, 40.0)
        assert f"incremental value {ros.incremental_value:,.2f}" in text and f"cost {ros.cost:,.2f}" in text
        assert "SRM: ok" in text and "UNTRUSTWORTHY" not in text
        assert "powered: 80% power to detect ≥ +0.90 points" in text
        covers = o.lift_ci_low <= 0.01 <= o.lift_ci_high
        assert ("covers it" if covers else "does not cover it") in text
        for heading in ("Headline", "Trust and power", "Alert", "Lift by score decile", "Lift by segment"):
            assert heading in text
        assert "Funnel" in text and "Channel quality (UTM)" in text and "ALERT: treated response rate" in text
        assert "Below the floor by decile" in text
        assert "dry_run" in text
    # the decile table has ten rows, in decile order, and the chart sits with it
    decile_part = markdown.split("## Lift by score decile")[1].split("## ")[0]
    assert "![absolute lift by decile with 95% intervals](lift_by_decile.png)" in decile_part
    rows = [line for line in decile_part.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [int(r.split("|")[1]) for r in rows] == list(range(1, 11))
    funnel_part = markdown.split("## Funnel")[1].split("\n## ")[0]
    treated_part, holdout_part = funnel_part.split("### holdout")
    assert "| converted | 1 | 100.00% | 25.00% | 0 | 25.00% |" in treated_part
    # the holdout's organic conversion is off the path, said so, and read over the selected only
    assert "| converted | 0 | – | – | 1 | 50.00% |" in holdout_part
    assert "Some holdout customers reached a stage without a recorded earlier one" in holdout_part
    assert "Some treatment" not in treated_part


def test_report_escapes_text_and_is_standalone_html(tmp_path):
    result = _decile_readout()
    markdown, page = _report(result, tmp_path)
    parsed = _parse(page)
    # no external asset: the chart is inline, so the page shows it wherever it is opened (MLflow's viewer too)
    assert _inline_images(parsed) == [PNG]
    assert "lift_by_decile.png" not in page
    assert "script" not in parsed.tags and "<script>" not in page
    assert "Readout &lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in page
    assert "Readout <script>alert(1)</script> & co" in "".join(parsed.text)
    assert "at_risk &lt;b&gt;" in page and "<b>" not in page
    assert page.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in page
    # Markdown: a pipe cannot open a table column, a tag is not HTML, emphasis markers are literal
    assert markdown.startswith("# Readout \\<script>alert(1)\\</script> & co\n")
    assert "| loyal\\|core\\_\\*x\\* |" in markdown and "| at_risk \\<b> |" in markdown
    table_rows = [line for line in markdown.splitlines() if line.startswith("| loyal")]
    assert table_rows and all(row.count(" | ") == 8 for row in table_rows)


def test_report_flags_an_untrustworthy_readout_and_leaves_out_what_is_not_given():
    frame = _experiment(treated_share=0.93)
    result = readout(
        frame, treatment_col="arm", treated="B", control="A", outcome_col="bought", expected_share=0.9
    )
    markdown, page = render_report(result, title="biased split")
    assert "> **UNTRUSTWORTHY:** the treated/holdout split failed the sample-ratio check" in markdown
    assert '<p class="warn"><strong>UNTRUSTWORTHY:</strong>' in page
    assert "MISMATCH" in markdown and "**UNTRUSTWORTHY**: SRM: MISMATCH" in markdown
    # the banner comes before the headline
    assert markdown.index("UNTRUSTWORTHY:") < markdown.index("## Headline")
    for absent in (
        "Return on spend",
        "Power:",
        "True lift",
        "## Alert",
        "## Lift by",
        "## Funnel",
        "## Channel",
    ):
        assert absent not in markdown
    _parse(page)
    assert "<img" not in page and _parse(page).refs == []


def test_report_true_lift_outside_the_interval_and_an_absolute_chart_path(tmp_path):
    result = _decile_readout()
    chart = _png_file(tmp_path / "charts" / "lift by decile.png")
    markdown, page = _report(result, tmp_path, true_lift=0.5, chart=chart)
    assert "**does not cover it**" in markdown
    # the Markdown links the PNG next to it by name, the HTML carries it inline
    assert "](lift%20by%20decile.png)" in markdown and "lift%20by%20decile" not in page
    assert _inline_images(_parse(page)) == [PNG]


def test_report_embeds_the_drawn_chart_and_links_a_relative_path_as_given(tmp_path, monkeypatch):
    result = _decile_readout()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "charts").mkdir()
    drawn = lift_by_decile_chart(result.segments, Path("charts") / "lift.png")
    markdown, page = render_report(result, title="t", chart=drawn)
    assert "![absolute lift by decile with 95% intervals](charts/lift.png)" in markdown
    assert _inline_images(_parse(page)) == [(tmp_path / "charts" / "lift.png").read_bytes()]
    # without segments the chart gets a section of its own
    alone = readout(_experiment(n=2000), treatment_col="arm", treated="B", control="A", outcome_col="bought")
    markdown, page = render_report(alone, title="t", chart=drawn)
    assert "## Lift chart\n\n![absolute lift by segment with 95% intervals](charts/lift.png)" in markdown
    assert page.count("<img ") == 1


def test_report_refuses_a_chart_that_is_not_a_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        render_report(_decile_readout(), title="t", chart=tmp_path / "nope.png")


def test_report_of_the_cli_style_readout_keeps_describe_unchanged(tmp_path):
    result = _decile_readout()
    before = result.describe()
    _report(result, tmp_path)
    assert result.describe() == before and before.startswith("readout: B vs A\ntreated ")


@pytest.mark.parametrize(
    ("p", "text"),
    [
        (3e-9, "p < 0.0001"),
        (0.0000999, "p < 0.0001"),
        (0.00042, "p = 0.0004"),
        (0.0341, "p = 0.034"),
        (0.5, "p = 0.500"),
    ],
)
def test_p_values_read_as_a_phrase_never_p_equals_less_than(p, text):
    assert _p_phrase(p) == text


def test_a_tiny_p_value_reads_p_less_than_in_both_reports():
    result = _decile_readout(n=200_000)
    assert result.overall.p_value < 1e-4
    markdown, page = render_report(result, title="t")
    for text in (markdown, html.unescape(page)):
        assert "; p < 0.0001 (pooled z-test)" in text and "p = <" not in text
    assert "| < 0.0001 |" in markdown and '<td class="num">&lt; 0.0001</td>' in page


def test_a_small_segment_is_flagged_not_read_as_a_lift(tmp_path):
    frame = _experiment(n=20_000)
    # one holdout customer, who did not buy, in a segment of 60 treated customers: once a lift of many points
    treated_rows = frame.index[frame["arm"] == "B"][:60]
    control_row = frame.index[frame["arm"] == "A"][:1]
    frame["tier"] = "main"
    frame.loc[treated_rows.append(control_row), "tier"] = "tiny"
    frame.loc[control_row, "bought"] = 0
    result = readout(
        frame, treatment_col="arm", treated="B", control="A", outcome_col="bought", segment_cols=("tier",)
    )
    rows = result.segments.set_index("segment")
    assert rows.loc["tiny", "control_n"] == 1 < MIN_GROUP_N and bool(rows.loc["tiny", "too_few"])
    assert rows.loc["tiny", ["lift_abs", "lift_ci_low", "lift_ci_high", "p_value"]].isna().all()
    assert not rows.loc["main", "too_few"] and rows.loc["main", "lift_abs"] == pytest.approx(
        rows.loc["main", "treated_rate"] - rows.loc["main", "control_rate"]
    )
    # the figures written beside the report carry the flag and no lift
    result.segments.to_csv(tmp_path / "segments.csv", index=False)
    written = pd.read_csv(tmp_path / "segments.csv").set_index("segment")
    assert bool(written.loc["tiny", "too_few"]) and pd.isna(written.loc["tiny", "lift_abs"])
    assert "tiny" in result.describe() and "too few to read" in result.describe()
    markdown, page = render_report(result, title="t")
    tiny = [line for line in markdown.splitlines() if line.startswith("| tiny |")]
    assert tiny == [
        f"| tiny | 60 | {rows.loc['tiny', 'treated_rate']:.2%} | 1 | 0.00% | {TOO_FEW} | – | – | – |"
    ]
    assert "<td>tiny</td>" in page and f'<td class="num">{TOO_FEW}</td>' in page
    assert f"fewer than {MIN_GROUP_N} customers in a group" in markdown
    # the chart draws no bar for it
    fig = lift_by_decile_figure(result.segments, by="tier")
    try:
        assert len(fig.axes[0].patches) == 1
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def test_the_chart_title_fits_inside_the_figure_even_when_long():
    result = _decile_readout()
    title = "uplift-spring-cashback-2026-05-campaign-with-a-long-id__run_7f3a9c: lift by decile"
    fig = lift_by_decile_figure(result.segments, title=title)
    try:
        renderer = fig.canvas.get_renderer()
        handle = fig.axes[0].title
        box = handle.get_window_extent(renderer)
        assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1 and box.y1 <= fig.bbox.y1
        assert handle.get_text().replace("\n", "").replace(" ", "") == title.replace(" ", "")
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def test_the_html_report_is_self_contained_and_its_tables_fit(tmp_path):
    result = _decile_readout()
    drawn = lift_by_decile_chart(result.segments, tmp_path / "lift_by_decile.png")
    _, page = render_report(
        result, title="t", chart=drawn, channels=channel_quality(*reversed(_lake_frames()), "c1")
    )
    parsed = _parse(page)
    # every image is a data: URI of the drawn PNG, no relative link: it renders the same from any folder
    assert "img" in parsed.tags and _inline_images(parsed) == [drawn.read_bytes()]
    assert "lift_by_decile.png" not in page and len(page) < 200_000
    # every table sits in a scrolling wrapper and text cells may wrap, so a wide UTM table cannot push the page
    assert page.count("<table>") == page.count('<div class="wide"><table>') > 0
    assert ".wide { max-width: 100%; overflow-x: auto; }" in page and "overflow-wrap: anywhere" in page


# --------------------------------------------------------------------------------------------------------------
# The context as JSON, the body for the staff app, and the standalone page around it


def _css_selectors(css: str) -> list[str]:
    return [sel.strip() for rule in re.findall(r"([^{}]+)\{[^}]*\}", css) for sel in rule.split(",")]


def test_the_standalone_page_is_the_body_inside_a_page_with_the_scoped_style(tmp_path):
    from pipelines.templating import render

    result = _decile_readout()
    context = report_context(result, **_report_args(result, tmp_path))
    _, page = render_context(context)
    body, css = render_body(context), render("readout_style.css.j2")
    title = "Readout &lt;script&gt;alert(1)&lt;/script&gt; &amp; co"
    head = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{title}</title>\n<style>\nbody {{ max-width: 980px; margin: 2em auto; padding: 0 1em; }}\n"
    )
    assert page == f"{head}{css}</style>\n</head>\n<body>\n<main>\n{body}</main>\n</body>\n</html>\n"
    parsed = _parse(page)
    assert parsed.tags[:9] == ["html", "head", "meta", "meta", "title", "style", "body", "main", "div"]
    headings = re.findall(r"<h2>(.*?)</h2>", page)
    assert headings == [
        "Headline",
        "Trust and power",
        "Alert",
        "Lift by score decile (1 = highest scores)",
        "Lift by segment",
        "Funnel",
        "Channel quality (UTM)",
    ]
    # every rule is scoped under the body's wrapper, so inside the app the style cannot reach the app's nav
    selectors = _css_selectors(css)
    assert len(selectors) >= 15 and all(s.split()[0] == ".readout" for s in selectors), selectors
    assert "<" not in css and "body" not in css
    assert body.startswith('<div class="readout">\n<h1>') and body.endswith("</div>\n")


def test_the_context_is_plain_json_and_renders_the_same_report_after_a_round_trip(tmp_path):
    from pipelines.data import storage

    result = _decile_readout()
    args = _report_args(result, tmp_path)
    context = report_context(result, **args)
    text = json.dumps(
        context
    )  # no default=: a tuple, a dataclass or a numpy value would fail or not round-trip
    assert json.loads(text) == context and context["context_version"] == CONTEXT_VERSION
    assert context["headline"]["counts"] == {
        "headers": ["", "treated (B)", "holdout (A)"],
        "rows": context["headline"]["counts"]["rows"],
        "numeric": [False, True, True],
    }
    assert render_context(json.loads(text)) == render_report(result, **args)
    # stored the way the readout job stores it (sorted keys), then read back for the app
    storage.write_json_atomic(tmp_path / "run" / CONTEXT_FILE, context)
    loaded = load_report_context(tmp_path / "run")
    assert loaded == context and render_context(loaded) == render_report(result, **args)
    # the chart's data: URI is the bulk; the rest is a few dozen rows of text
    assert len(text) - len(context["chart"]["inline"]) < 30_000


def test_the_body_for_the_app_has_the_headline_and_the_inline_chart_but_no_page(tmp_path):
    result = _decile_readout()
    o = result.overall
    body = render_body(report_context(result, **_report_args(result, tmp_path)))
    for tag in ("<!DOCTYPE", "<html", "<head", "<style", "<body", "<main", "<title"):
        assert tag not in body, tag
    parsed = _parse(body)
    assert parsed.tags[:2] == ["div", "h1"] and _inline_images(parsed) == [PNG]
    assert '<p><img src="data:image/png;base64,' in body
    assert f"{o.treated_rate:.2%}" in body and f"{o.control_rate:.2%}" in body
    assert f"<strong>{100 * o.lift_abs:+.2f} percentage points</strong>" in body
    assert f"Incremental responses: {o.incremental_responses:,.1f}" in body
    # autoescaped like the page
    assert "<h1>Readout &lt;script&gt;alert(1)&lt;/script&gt; &amp; co</h1>" in body and "<script" not in body


def test_load_report_context_is_none_for_an_older_readout_and_names_a_broken_file(tmp_path):
    assert load_report_context(tmp_path) is None  # a readout written before the context was stored
    result = _decile_readout()
    context = report_context(result, title="t")
    (tmp_path / CONTEXT_FILE).write_text(json.dumps({**context, "context_version": CONTEXT_VERSION + 1}))
    assert load_report_context(tmp_path) is None  # another version: the app links report.html instead
    (tmp_path / CONTEXT_FILE).write_text('{"title": "t"')
    with pytest.raises(ValueError, match=f"{CONTEXT_FILE} is not a JSON report context"):
        load_report_context(tmp_path)
    (tmp_path / CONTEXT_FILE).write_text('{"title": "t"}')
    with pytest.raises(ValueError, match=f"{CONTEXT_FILE} is not a report context"):
        load_report_context(tmp_path)


def test_a_context_value_that_is_not_json_is_refused_by_name():
    with pytest.raises(TypeError, match=r"report context context\.title is a PosixPath"):
        report_context(_decile_readout(), title=Path("t"))


def test_the_readout_job_stores_the_context_beside_the_page_without_personal_data(
    bank, tmp_path, monkeypatch
):
    from pipelines.config import Settings
    from pipelines.data import storage
    from pipelines.jobs.readouts import readout_campaign

    data = tmp_path / "data"
    data.mkdir()
    (data / "lake").symlink_to(bank / "lake", target_is_directory=True)
    settings = Settings(data_dir=data, mlruns_dir=tmp_path / "mlruns")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", settings.mlflow_tracking_uri)
    contacts = storage.read_table(settings.lake_dir, "campaign_contacts")
    campaign = sorted(contacts["campaign_id"].unique())[0]
    row = readout_campaign(settings, campaign)
    folder = Path(row["report"]).parent
    text = (folder / CONTEXT_FILE).read_text()
    context = load_report_context(folder)
    assert context is not None and context["title"] == f"Readout: {campaign}"
    # the stored context renders exactly the page written beside it
    markdown, page = render_context(context)
    assert page == (folder / "report.html").read_text() and markdown == (folder / "report.md").read_text()
    assert f"{row['treated_n']:,}" in render_body(context)
    # aggregates only: no name, phone or e-mail of the campaign's customers
    people = storage.read_table(
        settings.lake_dir, "customers", columns=["customer_id", "full_name", "phone", "email"]
    )
    people = people[
        people["customer_id"].isin(contacts.loc[contacts["campaign_id"] == campaign, "customer_id"])
    ]
    assert len(people) > 100
    for column in ("full_name", "phone", "email"):
        assert not any(str(v) in text for v in people[column].dropna().head(300)), column
