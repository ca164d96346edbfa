"""The ``lookalike:`` block of a campaign spec: what it accepts, the selection it implies, and its errors (each
naming the field, as the loader's other errors do)."""

from __future__ import annotations

import pytest

from pipelines.campaigns.spec import SpecError, parse_spec
from pipelines.campaigns.spec_header import KNOWN_MODELS

BASE = {"name": "travel-like", "description": "a test", "model": "lookalike", "channel": "email"}
QUERY = [{"column": "spend_180d", "op": ">=", "value": 5000}]


def _problems(**changes) -> str:
    with pytest.raises(SpecError) as err:
        parse_spec({**BASE, **changes}, "travel.yaml")
    return str(err.value)


def test_a_lookalike_spec_selects_its_size_and_keeps_its_seed():
    spec = parse_spec({**BASE, "lookalike": {"seed_query": QUERY, "size": 2000}})
    assert "lookalike" in KNOWN_MODELS
    assert spec.selection.mode == "top_k" and spec.selection.top_k == 2000
    assert spec.lookalike.seed_query[0].label == "spend_180d >= 5000" and spec.lookalike.seed_file is None
    assert spec.lookalike.seed_label == "query spend_180d >= 5000"
    by_file = parse_spec({**BASE, "lookalike": {"seed_file": "seeds/best.csv", "size": 300}})
    assert (by_file.lookalike.seed_file, by_file.selection.top_k) == ("seeds/best.csv", 300)
    # A selection equal to the size is redundant but consistent.
    same = parse_spec({**BASE, "lookalike": {"seed_query": QUERY, "size": 5}, "selection": {"top_k": 5}})
    assert same.selection.top_k == 5


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, "lookalike: required with model: lookalike"),
        ({"lookalike": {"size": 10}}, "lookalike: set exactly one of seed_file, seed_query (got neither)"),
        (
            {"lookalike": {"seed_file": "a.csv", "seed_query": QUERY, "size": 10}},
            "lookalike: set exactly one of seed_file, seed_query (got both)",
        ),
        (
            {"lookalike": {"seed_query": QUERY, "size": 0}},
            "lookalike.size: input should be greater than or equal to 1",
        ),
        (
            {"lookalike": {"seed_query": QUERY, "size": "many"}},
            "lookalike.size: input should be a valid integer",
        ),
        ({"lookalike": {"seed_query": QUERY}}, "lookalike.size: required field is missing"),
        (
            {"lookalike": {"seed_query": [], "size": 10}},
            "lookalike.seed_query: a seed query needs at least one rule",
        ),
        (
            {"lookalike": {"seed_file": "/etc/ids.csv", "size": 10}},
            "lookalike.seed_file: a path relative to the campaigns folder",
        ),
        ({"lookalike": {"seed_file": "../ids.csv", "size": 10}}, "lookalike.seed_file: a path relative to"),
        ({"lookalike": {"seed_file": "ids.txt", "size": 10}}, "lookalike.seed_file: a .csv or .parquet file"),
        (
            {"lookalike": {"seed_query": [{"column": "spend", "op": ">=", "value": 1}], "size": 10}},
            "lookalike.seed_query[0].column: unknown audience column 'spend'",
        ),
        (
            {"lookalike": {"seed_query": [{"column": "score", "op": ">=", "value": 0.5}], "size": 10}},
            "lookalike.seed_query: a seed query cannot use 'score'",
        ),
        (
            {"lookalike": {"seed_query": QUERY, "size": 10, "seeds": 3}},
            "lookalike.seeds: unknown field 'seeds' (allowed: seed_file, seed_query, size)",
        ),
        (
            {"lookalike": {"seed_query": QUERY, "size": 10}, "selection": {"top_deciles": 3}},
            "lookalike: a lookalike campaign selects its top size (10) customers: remove selection (top_deciles)",
        ),
        (
            {"lookalike": {"seed_query": QUERY, "size": 10}, "trigger": {"events": ["login"]}},
            "lookalike: a lookalike campaign is a batch campaign: remove the trigger",
        ),
        (
            {"model": "churn", "selection": {"top_k": 10}, "lookalike": {"seed_query": QUERY, "size": 10}},
            "lookalike: only for model: lookalike campaigns (this one is model: churn); remove it",
        ),
    ],
)
def test_lookalike_block_errors_name_the_field(changes, expected):
    message = _problems(**changes)
    assert message.startswith("travel.yaml: invalid campaign spec")
    assert f"  {expected}" in message, message
