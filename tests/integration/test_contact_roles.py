"""Who may see contact data on a real PostgreSQL: the staff and contact roles of the schema step, what their
members can read and write, and `pmp lists export --with-contact` refused to staff and audited for contact.

Roles are global to the cluster: every test makes its own (unique names) and drops them, also on failure. The
tables live in the per-test schema of ``postgres_url`` (search_path), which is where the grants must be.
"""

from __future__ import annotations

import logging
import stat
import uuid
from datetime import date

import pandas as pd
import psycopg
import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import make_url, select, text

from pipelines.campaigns import store, store_frames, store_schema
from pipelines.campaigns.contact_export import file_sha256
from pipelines.cli import main
from pipelines.data import storage

pytestmark = pytest.mark.postgres
RUN_ID = "campaign_scoring__2025-02-01__demo"


@pytest.fixture(scope="module")
def lake_bank(tmp_path_factory):
    data = tmp_path_factory.mktemp("roles_bank")
    assert main(["synth", "--customers", "300", "--months", "1", "--seed", "5", "--out", str(data)]) == 0
    return data


@pytest.fixture
def cluster(postgres_url, lake_bank):
    """Unique group roles (staff, contact) set up by the schema step in the test schema, one stored run, and two
    LOGIN roles: ``clerk`` (member of staff only) and ``officer`` (member of contact). All dropped at the end."""
    tag = uuid.uuid4().hex[:8]
    names = {
        "staff": f"pmpt_staff_{tag}",
        "contact": f"pmpt_contact_{tag}",
        "clerk": f"pmpt_clerk_{tag}",
        "officer": f"pmpt_officer_{tag}",
    }
    admin_dsn = make_url(postgres_url).set(query={}).render_as_string(hide_password=False)
    admin = psycopg.connect(admin_dsn, autocommit=True)
    engine = store_schema.make_engine(postgres_url)
    try:
        store_schema.ensure_schema(engine, roles=(names["staff"], names["contact"]))
        admin.execute(f"CREATE ROLE {names['clerk']} LOGIN IN ROLE {names['staff']}")
        admin.execute(f"CREATE ROLE {names['officer']} LOGIN IN ROLE {names['contact']}")
        ids = storage.read_table(lake_bank / "lake", "customers", columns=["customer_id"])["customer_id"]
        targets = pd.DataFrame(
            {
                "customer_id": ids.head(6).to_numpy(),
                "score": [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
                "decile": 1,
                "rank": range(1, 7),
                "target_group": ["treatment"] * 5 + ["holdout"],
            }
        )
        exclusions = targets.iloc[:0][["customer_id"]].assign(exclusion_reason="", detail="")
        run = store_frames.RunRecord(RUN_ID, "demo", date(2025, 2, 1), "churn", "1")
        store.write_run(engine, run, targets, exclusions)
        yield names, engine
    finally:
        engine.dispose()
        existing = [
            r[0]
            for r in admin.execute(
                "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", [list(names.values())]
            )
        ]
        if existing:
            admin.execute(f"DROP OWNED BY {', '.join(existing)}")
            for role in existing:
                admin.execute(f"DROP ROLE {role}")
        admin.close()


def as_role(postgres_url: str, role: str) -> str:
    return make_url(postgres_url).set(username=role).render_as_string(hide_password=False)


def privileges(engine, checks) -> dict:
    with engine.connect() as conn:
        return {
            (role, table, priv): conn.execute(
                text("SELECT has_table_privilege(:r, :t, :p)"), {"r": role, "t": table, "p": priv}
            ).scalar_one()
            for role, table, priv in checks
        }


def test_the_schema_step_creates_nologin_roles_and_exactly_their_grants(cluster):
    names, engine = cluster
    staff, contact = names["staff"], names["contact"]
    store_schema.ensure_schema(engine, roles=(staff, contact))  # twice is fine
    with engine.connect() as conn:
        logins = dict(
            conn.execute(
                text("SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname IN (:a, :b)"),
                {"a": staff, "b": contact},
            ).all()
        )
    assert logins == {staff: False, contact: False}
    granted = privileges(
        engine,
        [
            (role, table, priv)
            for role in (staff, contact)
            for table in (
                "campaign_runs",
                "campaign_targets",
                "campaign_results",
                "contact_exports",
                "list_exports",
            )
            for priv in ("SELECT", "INSERT", "UPDATE", "DELETE")
        ],
    )
    expected = {key: False for key in granted}
    for role in (staff, contact):
        for table in ("campaign_runs", "campaign_targets", "campaign_results"):
            expected[(role, table, "SELECT")] = True
        expected[(role, "list_exports", "INSERT")] = True
    expected[(contact, "contact_exports", "SELECT")] = True
    expected[(contact, "contact_exports", "INSERT")] = True
    expected[(contact, "list_exports", "SELECT")] = True
    assert granted == expected


def test_a_staff_member_reads_runs_but_not_the_audit_and_is_refused_contact(
    cluster, postgres_url, lake_bank, tmp_path, monkeypatch, capsys, caplog
):
    names, owner = cluster
    url = as_role(postgres_url, names["clerk"])
    clerk = store_schema.make_engine(url)
    try:
        assert store.resolve_run(clerk, "demo") == RUN_ID
        assert len(store.read_targets(clerk, "demo")) == 5
        denied = "permission denied for table {}".format
        with pytest.raises(sa_exc.ProgrammingError, match=denied("contact_exports")), clerk.connect() as conn:
            conn.execute(select(store_schema.contact_exports)).all()
        with pytest.raises(sa_exc.ProgrammingError, match=denied("campaign_targets")), clerk.begin() as conn:
            conn.execute(
                store_schema.campaign_targets.insert().values(
                    run_id="x", customer_id=1, score=0.5, decile=1, rank=1, target_group="treatment"
                )
            )
        # Without CREATEROLE the schema step does not fail on missing roles: it says so once.
        with caplog.at_level(logging.WARNING, logger="pipelines.campaigns.store_access"):
            for _ in range(2):
                store_schema.ensure_schema(clerk, roles=(f"{names['staff']}_x", f"{names['contact']}_x"))
        warned = [r.getMessage() for r in caplog.records if "CREATEROLE" in r.getMessage()]
        assert len(warned) == 1 and names["clerk"] in warned[0] and "***" not in warned[0]
    finally:
        clerk.dispose()

    monkeypatch.setenv("PM_DATA_DIR", str(lake_bank))
    monkeypatch.setenv("PM_DATABASE_URL", url)
    monkeypatch.setenv("PM_STAFF_ROLE", names["staff"])
    monkeypatch.setenv("PM_CONTACT_ROLE", names["contact"])
    monkeypatch.setenv("PM_CONTACT_USERS", names["clerk"])  # SQLite's list does not count on PostgreSQL
    out = tmp_path / "list.csv"
    assert main(["lists", "export", "--campaign", "demo", "--out", str(out), "--with-contact"]) == 1
    err = capsys.readouterr().err.strip()
    assert f"PostgreSQL role {names['clerk']} may not export contact details" in err
    assert f"GRANT {names['contact']} TO {names['clerk']}" in err and len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
    # without contact details a staff member may export, and the export is recorded
    assert main(["lists", "export", "--campaign", "demo", "--out", str(out)]) == 0
    with owner.connect() as conn:
        assert conn.execute(select(store_schema.contact_exports)).all() == []
        [row] = conn.execute(select(store_schema.list_exports)).all()
    assert (row.exported_by, row.n_rows, row.sha256) == (names["clerk"], 5, file_sha256(out))


def test_a_contact_member_exports_and_the_audit_names_its_role(
    cluster, postgres_url, lake_bank, tmp_path, monkeypatch, capsys
):
    names, owner = cluster
    monkeypatch.setenv("PM_DATA_DIR", str(lake_bank))
    monkeypatch.setenv("PM_DATABASE_URL", as_role(postgres_url, names["officer"]))
    monkeypatch.setenv("PM_STAFF_ROLE", names["staff"])
    monkeypatch.setenv("PM_CONTACT_ROLE", names["contact"])
    monkeypatch.setenv("USER", "postgres")  # not the identity
    out = tmp_path / "contact" / "list.parquet"
    args = ["lists", "export", "--campaign", "demo", "--out", str(out), "--with-contact", "--all-groups"]
    assert main(args) == 0, capsys.readouterr().err
    frame = pd.read_parquet(out)
    assert len(frame) == 6 and frame["email"].notna().all()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert [p.name for p in out.parent.iterdir()] == ["list.parquet"]
    with owner.connect() as conn:
        [row] = conn.execute(select(store_schema.contact_exports)).all()
    assert row.exported_by == names["officer"]
    assert (row.run_id, row.n_rows, row.target_groups) == (RUN_ID, 6, "treatment,holdout")
    assert row.file_path == str(out.resolve()) and row.sha256 == file_sha256(out)
    # the contact role may read the audit; nobody of the two may change it
    assert main(["lists", "exports"]) == 0
    assert names["officer"] in capsys.readouterr().out
    officer = store_schema.make_engine(as_role(postgres_url, names["officer"]))
    try:
        with (
            pytest.raises(sa_exc.ProgrammingError, match="permission denied for table contact_exports"),
            officer.begin() as conn,
        ):
            conn.execute(store_schema.contact_exports.delete())
    finally:
        officer.dispose()
