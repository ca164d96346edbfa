"""Jinja2 rendering of the report templates in the project's ``templates/`` folder (and, later, web pages); an
installed package renders the copy it carries (``config.resource_dir``).

One environment per folder, built on first use: HTML templates (``*.html.j2``) are autoescaped, Markdown ones
(``*.md.j2``) are not (they escape with the ``md`` filter instead). Undefined names fail loudly, so a template
and its caller cannot drift apart silently. Importing this module does not import Jinja2.
"""

from __future__ import annotations

import base64
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from pipelines.config import resource_dir

TEMPLATES_DIR = resource_dir("templates")

_MD_SPECIAL = re.compile(r"([\\`*\[\]|])|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])|<(?=[A-Za-z/!?])")


def md_escape(text: object) -> str:
    """``text`` with Markdown's active characters escaped (a table cell or a line stays what it says)."""
    return _MD_SPECIAL.sub(lambda m: "\\" + m.group(0), re.sub(r"\s+", " ", str(text)))


def data_uri(data: bytes, mime: str = "image/png") -> str:
    """``data`` inline as a ``data:`` URI, so a page shows its image wherever it is opened (MLflow's viewer too)."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


@lru_cache(maxsize=4)
def environment(templates_dir: str | Path = TEMPLATES_DIR):
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2", "html"), default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["md"] = md_escape
    return env


def render(name: str, templates_dir: str | Path = TEMPLATES_DIR, **context: Any) -> str:
    """The template ``name`` (a file in ``templates_dir``) rendered with ``context``."""
    return environment(str(templates_dir)).get_template(name).render(**context)
