"""``pmp audit pii``: planted personal values are found with their place and masked; clean output gives 0."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime

import pandas as pd
import pytest

from pipelines.campaigns import store_schema
from pipelines.campaigns.contact_export import file_sha256
from pipelines.cli import main
from pipelines.config import Settings
from pipelines.data import storage
from pipelines.jobs.pii_audit import PersonalValues, audit_pii, mask
from pipelines.synthetic.bank import SynthConfig, generate_bank

VALUES = PersonalValues(
    {
        "customers.full_name": ["Charles Lewis", "Olga Green"],
        "customers.phone": ["+44 7684757109"],
        "customers.email": ["charles.lewis113@example.com"],
        "customers.national_id": ["BS219594B"],
    }
)


@pytest.mark.parametrize(
    ("text", "structured", "found"),
    [
        ("mail Charles.Lewis113@Example.com now", False, {"customers.email"}),
        ("call +44 7684757109", False, {"customers.phone"}),
        ("call 07684757109", False, {"customers.phone"}),
        ("call (+44) 768-475-7109", False, {"customers.phone"}),
        ("id bs219594b", False, {"customers.national_id"}),
        ("dear charles  lewis,", False, {"customers.full_name"}),
        ('{"surname": "Green"}', True, {"customers.full_name"}),
        ("id,surname\n1,Green\n", True, {"customers.full_name"}),
        # false hits kept out
        ("Mr Green met the King", False, set()),  # a surname inside prose is an ordinary word
        ('{"note": "Green light"}', True, set()),  # not a whole value
        ('{"colour": "green"}', True, set()),  # lower case: a word, not a name
        ("Charles met Olga", False, set()),  # first names alone
        ("amount 4476847571090", False, set()),  # a phone's digits inside a longer number
        ("x 768475710", False, set()),  # a shorter run
        ("charles.lewis113@example.org", False, set()),  # another address
    ],
)
def test_scan_finds_whole_values_only(text, structured, found):
    assert set(VALUES.scan(text, structured)) == found


def test_mask_never_shows_the_value():
    assert mask("charles.lewis113@example.com") == "c***@example.com"
    assert mask("+44 7684757109") == "***109"
    assert mask("Charles Lewis") == "C*** L***"
    assert "219594" not in mask("BS219594B")


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    out = tmp_path_factory.mktemp("pii_bank")
    generate_bank(SynthConfig(customers=2000, months=3, seed=1), out, progress=None)
    customers = storage.read_table(out / "lake", "customers")
    return out / "lake", customers


@pytest.fixture
def settings(lake, tmp_path):
    root, _ = lake
    shutil.copytree(root / "customers", tmp_path / "data" / "lake" / "customers")
    settings = Settings(home=tmp_path, data_dir=tmp_path / "data", airflow_home=tmp_path / "airflow")
    run = settings.runs_dir / "churn_training__2025-04-01"
    run.mkdir(parents=True)
    # what a run writes: ids, scores, reports with ordinary words, names of columns
    pd.DataFrame({"customer_id": [1000000001, 1000000002], "score": [0.1, 0.9]}).to_csv(
        run / "scores.csv", index=False
    )
    pd.DataFrame({"customer_id": [1000000001], "segment": ["Young professional"]}).to_parquet(
        run / "scored.parquet"
    )
    (run / "report.md").write_text("# Churn\nGreen: the champion; columns full_name, phone, email dropped.\n")
    (settings.airflow_home / "logs").mkdir(parents=True)
    (settings.airflow_home / "logs" / "attempt=1.log").write_text("INFO scored 2,000 customers\n")
    return settings


def test_a_clean_folder_gives_no_hits(settings):
    result = audit_pii(settings, progress=None)
    assert result.hits == [] and result.released == []
    assert result.files == 4 and result.values > 2000 * 3


def test_planted_values_are_found_with_their_place_and_masked(settings, lake, capsys):
    from mlflow import MlflowClient

    _, customers = lake
    person = customers.iloc[17]
    planted = settings.runs_dir / "churn_training__2025-04-01" / "features.csv"
    planted.write_text(f"customer_id,contact\n{person.customer_id},{person.email}\n")
    client = MlflowClient(settings.mlflow_tracking_uri)
    experiment = client.create_experiment("pii-test")
    run = client.create_run(experiment)
    client.log_param(run.info.run_id, "example.phone", person.phone)
    client.log_param(run.info.run_id, "rows", "2000")
    client.set_terminated(run.info.run_id)

    result = audit_pii(settings, progress=None)
    places = {(hit.place, hit.column) for hit in result.hits}
    assert places == {
        (str(planted), "customers.email"),
        (f"mlflow run {run.info.run_id} (pii-test) param example.phone", "customers.phone"),
    }
    assert result.runs == 1
    lines = "\n".join(hit.line() for hit in result.hits)
    assert person.email not in lines and person.phone not in lines and str(person.phone)[-7:] not in lines
    assert mask(person.email) in lines and mask(person.phone) in lines


def test_a_recorded_export_is_released_and_an_unrecorded_copy_is_a_hit(settings, lake):
    _, customers = lake
    contact = customers[["customer_id", "full_name", "phone", "email"]].head(50)
    exports = settings.data_dir / "exports"
    exports.mkdir()
    contact.to_csv(exports / "recorded.csv", index=False)
    contact.to_csv(exports / "unrecorded.csv", index=False)
    outside = settings.home / "staff" / "list.parquet"  # a recorded export outside the scanned folders
    outside.parent.mkdir()
    contact.to_parquet(outside)
    changed = exports / "changed.csv"  # recorded, then edited: no longer the released file
    contact.head(10).to_csv(changed, index=False)
    engine = store_schema.make_engine(settings.database_url)
    store_schema.ensure_schema(engine)
    with engine.begin() as conn:
        for path, table in (
            (exports / "recorded.csv", store_schema.contact_exports),
            (outside, store_schema.contact_exports),
            (changed, store_schema.contact_exports),
            # recorded, but as an export without contact details: holding them anyway is a leak
            (exports / "unrecorded.csv", store_schema.list_exports),
        ):
            conn.execute(
                table.insert().values(
                    exported_at=datetime.now(UTC), exported_by="tester", campaign="demo", run_id="r",
                    target_groups="treatment", n_rows=50, file_path=str(path), sha256=file_sha256(path),
                )
            )  # fmt: skip
    engine.dispose()
    contact.head(11).to_csv(changed, index=False)

    result = audit_pii(settings, progress=None)
    assert sorted(result.released) == sorted([str(exports / "recorded.csv"), str(outside)])
    assert {hit.place for hit in result.hits} == {str(exports / "unrecorded.csv"), str(changed)}
    result.hits = [hit for hit in result.hits if hit.place != str(changed)]
    assert {hit.column for hit in result.hits} == {
        "customers.full_name",
        "customers.phone",
        "customers.email",
    }
    assert all(hit.count == 50 for hit in result.hits if hit.column != "customers.full_name")


def test_the_command_exits_1_naming_the_place(settings, lake, capsys, monkeypatch):
    _, customers = lake
    leaked = settings.runs_dir / "churn_training__2025-04-01" / "notes.txt"
    leaked.write_text(f"sent to {customers.iloc[3].national_id} today\n")
    monkeypatch.setenv("PM_HOME", str(settings.home))
    monkeypatch.setenv("AIRFLOW_HOME", str(settings.airflow_home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("PM_DATA_DIR", raising=False)
    assert main(["audit", "pii", "--data", str(settings.data_dir)]) == 1
    out = capsys.readouterr().out
    assert f"{leaked}: customers.national_id value found" in out
    assert customers.iloc[3].national_id not in out
    leaked.unlink()
    assert main(["audit", "pii", "--data", str(settings.data_dir)]) == 0
    assert "no personal values found" in capsys.readouterr().out


def test_surnames_inside_a_pickle_are_found(settings, lake):
    """A model that learned a surname column keeps its categories in the pickle, between binary bytes."""
    import pickle

    _, customers = lake
    surnames = sorted(customers["full_name"].str.split().str[-1].unique())
    model = settings.runs_dir / "churn_training__2025-04-01" / "model.pkl"
    model.write_bytes(pickle.dumps({"categories": {"surname": surnames}, "weights": [0.5, 1.5]}))
    [hit] = audit_pii(settings, progress=None).hits
    long_enough = [s for s in surnames if len(s) >= 4]  # "Lee" is too short to tell from a word
    assert (hit.place, hit.column, hit.count) == (str(model), "customers.full_name", len(long_enough))
    model.write_bytes(pickle.dumps({"categories": {"segment": ["Young professional", "green"]}}))
    assert audit_pii(settings, progress=None).hits == []


def test_contact_details_inside_an_excel_file_are_found(settings, lake):
    """An .xlsx is a zip of XML: its cells are compressed, so a byte scan would see nothing."""
    _, customers = lake
    contact = customers[["customer_id", "phone", "email"]].head(20)
    book = settings.runs_dir / "churn_training__2025-04-01" / "copy.xlsx"
    contact.to_excel(book, index=False)
    assert not any(p.encode() in book.read_bytes() for p in contact["phone"])
    hits = {(hit.place, hit.column): hit.count for hit in audit_pii(settings, progress=None).hits}
    assert hits == {(str(book), "customers.phone"): 20, (str(book), "customers.email"): 20}
    pd.DataFrame({"customer_id": contact["customer_id"], "score": 0.5}).to_excel(book, index=False)
    assert audit_pii(settings, progress=None).hits == []
