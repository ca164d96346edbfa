"""The data model doc, the schema module and the PII flags agree."""

from __future__ import annotations

import re

from pipelines.data.schema import TABLES, render_data_model
from tests.conftest import PROJECT_ROOT


def test_data_model_doc_is_generated_from_the_schema():
    doc = (PROJECT_ROOT / "docs" / "data-model.md").read_text()
    match = re.search(r"<!-- BEGIN GENERATED[^>]*-->\n(.*)<!-- END GENERATED -->", doc, re.S)
    assert match, "docs/data-model.md lost its GENERATED markers"
    assert match.group(1) == render_data_model(), "regenerate with: python -m pipelines.data.schema"


def test_pii_is_flagged_on_exactly_the_contact_columns():
    pii = {(t.name, c) for t in TABLES.values() for c in t.pii_columns}
    assert pii == {("customers", c) for c in ("full_name", "phone", "email", "national_id")}


def test_every_reference_points_at_a_key():
    for table in TABLES.values():
        for column, target in table.references.items():
            other, other_column = target.split(".")
            assert column in table.column_names
            assert TABLES[other].key == (other_column,)
