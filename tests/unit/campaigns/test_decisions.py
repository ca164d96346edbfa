"""The decision log table: rows checked field by field, written in one transaction, stored once per decision id,
read back by campaign and day; on SQLite and on a real PostgreSQL server (where the staff role may read it)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest
from sqlalchemy import func, inspect, select, text

from pipelines.campaigns import store_access, store_schema
from pipelines.campaigns.decisions import DECISION_COLUMNS, read_decisions, write_decisions
from pipelines.campaigns.store_frames import FrameValidationError

T0 = datetime(2026, 3, 2, 8, 15, 0, 123000, tzinfo=UTC)


def decision(i: int, **changes) -> dict:
    """The i-th decision of a morning: campaign "card-upsell", every third one held out, every fifth no campaign."""
    held = i % 3 == 0
    none = i % 5 == 0
    row = {
        "decision_id": uuid.UUID(int=i + 1).hex,
        "decided_at": T0 + timedelta(minutes=i),
        "customer_id": 1_000_000 + i,
        "event_type": "login",
        "event_ts": T0 + timedelta(minutes=i, seconds=-1),
        "campaign": None if none else "card-upsell",
        "offer": None if none or held else "card-upsell",
        "channel": None if none else "app",
        "target_group": None if none else ("holdout" if held else "treatment"),
        "score": None if none else 0.01 * i,
        "expected_value": None if none else 1.5 * i - 2,
        "reason": "no campaign applies" if none else ("held out" if held else "best expected value"),
        "model_name": None if none else "response",
        "model_version": None if none else "3",
        "snapshot_as_of": date(2026, 3, 1),
        "latency_ms": 2.5 + i,
    }
    return {**row, **changes}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'campaigns.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = store_schema.make_engine(url)
    yield engine
    engine.dispose()


def _count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(store_schema.campaign_decisions)).scalar_one()


def test_the_table_has_the_columns_and_the_campaign_day_index(engine):
    store_schema.ensure_schema(engine)
    inspector = inspect(engine)
    columns = {c["name"]: c for c in inspector.get_columns("campaign_decisions")}
    assert tuple(columns) == DECISION_COLUMNS
    required = {name for name, c in columns.items() if not c["nullable"]}
    assert required == {"decision_id", "decided_at", "customer_id", "event_type", "event_ts", "reason"}
    assert inspector.get_pk_constraint("campaign_decisions")["constrained_columns"] == ["decision_id"]
    indexes = [i["column_names"] for i in inspector.get_indexes("campaign_decisions")]
    assert ["campaign", "event_ts"] in indexes


def test_rows_read_back_as_written(engine):
    rows = [decision(i) for i in range(12)]
    assert write_decisions(engine, rows) == 12
    back = read_decisions(engine)
    assert list(back.columns) == list(DECISION_COLUMNS)
    assert back["decision_id"].tolist() == [r["decision_id"] for r in rows]
    assert str(back["decided_at"].dtype) == "datetime64[us, UTC]"
    assert back["decided_at"].iloc[0] == pd.Timestamp(T0)  # microseconds and UTC survive
    assert back["customer_id"].tolist() == [r["customer_id"] for r in rows]
    assert back["offer"].isna().tolist() == [r["offer"] is None for r in rows]
    assert back.loc[back["target_group"] == "holdout", "offer"].isna().all()
    assert back["score"].iloc[4] == pytest.approx(0.04)
    assert pd.isna(back["score"].iloc[5])
    assert back["snapshot_as_of"].iloc[0] == pd.Timestamp("2026-03-01")


def test_a_batch_sent_twice_is_stored_once(engine):
    rows = [decision(i) for i in range(10)]
    assert write_decisions(engine, rows[:6]) == 6
    # The retry of a batch whose answer was lost, plus new rows, plus a duplicate inside the batch itself.
    assert write_decisions(engine, pd.DataFrame([*rows, rows[7]])) == 4
    assert _count(engine) == 10
    assert write_decisions(engine, rows) == 0
    assert _count(engine) == 10


def test_read_by_campaign_day_and_since(engine):
    late = [
        decision(
            100 + i, decided_at=T0 + timedelta(days=1, hours=i), event_ts=T0 + timedelta(days=1, hours=i)
        )
        for i in range(1, 4)
    ]
    # A replayed event of the first morning, decided the next day, belongs to the first day.
    replayed = decision(301, decided_at=T0 + timedelta(days=1, hours=5))
    other = [decision(200, campaign="travel-card", offer="travel-card")]
    write_decisions(engine, [decision(i) for i in range(10)] + late + other + [replayed])
    day = read_decisions(engine, campaign="card-upsell", day=date(2026, 3, 2))
    # ten events that morning minus two without a campaign, plus the replayed one; not the other campaign's
    assert len(day) == 9 and replayed["decision_id"] in set(day["decision_id"])
    assert set(day["campaign"]) == {"card-upsell"}
    assert day["decided_at"].is_monotonic_increasing
    next_day = read_decisions(engine, campaign="card-upsell", day="2026-03-03")
    assert len(next_day) == 3
    since = read_decisions(engine, since=T0 + timedelta(days=1, hours=2))
    assert since["decision_id"].tolist() == [r["decision_id"] for r in [*late[1:], replayed]]
    assert len(read_decisions(engine, since=date(2026, 3, 3))) == 4
    assert read_decisions(engine, campaign="nobody").empty
    with pytest.raises(ValueError, match="since must be a date or a timezone-aware datetime"):
        read_decisions(engine, since=datetime(2026, 3, 3, 12, 0))


@pytest.mark.parametrize(
    ("change", "column", "message"),
    [
        ({"colour": "red"}, "colour", "unknown field(s) ['colour']"),
        ({"decision_id": "not-hex"}, "decision_id", "32 lower-case hex digits"),
        ({"decided_at": datetime(2026, 3, 2, 8, 0)}, "decided_at", "timezone-aware"),
        ({"event_ts": "yesterday-ish"}, "event_ts", "not a timestamp"),
        ({"customer_id": "42"}, "customer_id", "64-bit integer"),
        ({"customer_id": True}, "customer_id", "64-bit integer"),
        ({"event_type": None}, "event_type", "must not be null"),
        ({"reason": "  "}, "reason", "non-empty string"),
        ({"target_group": "control"}, "target_group", "treatment"),
        ({"score": float("inf")}, "score", "finite"),
        ({"latency_ms": "fast"}, "latency_ms", "must be a number"),
        ({"snapshot_as_of": "soon"}, "snapshot_as_of", "not a date"),
        ({"offer": "travel-card"}, "offer", "is not the campaign 'card-upsell'"),
        ({"target_group": "holdout"}, "offer", "a held-out customer gets no offer"),
    ],
)
def test_a_broken_row_names_its_column_and_nothing_is_written(tmp_path, change, column, message):
    engine = store_schema.make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    rows = [decision(1), decision(2, **change)]
    with pytest.raises(FrameValidationError) as failed:
        write_decisions(engine, rows)
    assert str(failed.value).startswith(f"campaign_decisions.{column}: row 1 (decision ")
    assert message in str(failed.value)
    store_schema.ensure_schema(engine)
    assert _count(engine) == 0


def test_a_missing_field_is_named(tmp_path):
    row = decision(1)
    del row["model_version"]
    with pytest.raises(FrameValidationError, match=r"campaign_decisions\.model_version: .*missing field"):
        write_decisions(store_schema.make_engine(f"sqlite:///{tmp_path / 'c.db'}"), [row])


def test_one_id_given_twice_with_different_values_is_refused(tmp_path):
    engine = store_schema.make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    with pytest.raises(FrameValidationError, match="given twice, differently"):
        write_decisions(engine, [decision(1), decision(1, latency_ms=99.0)])


@pytest.mark.postgres
def test_the_staff_role_may_read_decisions_and_not_write_them(postgres_url):
    staff = f"pmp_staff_{uuid.uuid4().hex[:8]}"
    contact = f"pmp_contact_{uuid.uuid4().hex[:8]}"
    assert (staff, "campaign_decisions", "SELECT") in store_access.wanted_privileges(staff, contact)
    engine = store_schema.make_engine(postgres_url)
    try:
        store_schema.ensure_schema(engine, roles=(staff, contact))
        write_decisions(engine, [decision(1)], ensure=False)
        with engine.connect() as conn, conn.begin():
            conn.execute(text(f'SET LOCAL ROLE "{staff}"'))
            assert conn.execute(text("SELECT count(*) FROM campaign_decisions")).scalar_one() == 1
            allowed = conn.execute(
                text("SELECT has_table_privilege(current_user, 'campaign_decisions', 'INSERT')")
            ).scalar_one()
            assert allowed is False
    finally:
        with engine.connect() as conn, conn.begin():
            for role in (staff, contact):
                conn.execute(text(f'DROP OWNED BY "{role}"'))
                conn.execute(text(f'DROP ROLE "{role}"'))
        engine.dispose()
