"""Report templates: Markdown escaping, inline images, strict undefined names, HTML autoescape."""

from __future__ import annotations

import base64

import pytest

from pipelines.templating import data_uri, md_escape, render


def test_md_escape_keeps_a_table_cell_a_cell():
    assert md_escape("a|b *c* [d] snake_case") == "a\\|b \\*c\\* \\[d\\] snake_case"
    assert md_escape("_lead and trail_") == "\\_lead and trail\\_"
    assert md_escape("two\nlines") == "two lines"


def test_data_uri_round_trips():
    uri = data_uri(b"\x89PNG..")
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.split(",", 1)[1]) == b"\x89PNG.."


def test_html_is_autoescaped_markdown_is_not_and_undefined_fails(tmp_path):
    (tmp_path / "t.html.j2").write_text("<p>{{ x }}</p>")
    (tmp_path / "t.md.j2").write_text("{{ x }} {{ x | md }}")
    assert render("t.html.j2", tmp_path, x="<b>") == "<p>&lt;b&gt;</p>"
    assert render("t.md.j2", tmp_path, x="a|b") == "a|b a\\|b"
    import jinja2

    with pytest.raises(jinja2.UndefinedError):
        render("t.md.j2", tmp_path)
