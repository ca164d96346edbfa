"""The online snapshot refresh after one real campaign run: a small bank, its churn champion, a run of
``churn-retention-sms``, then ``refresh_online_snapshot`` into the default folder store."""

from __future__ import annotations

import math
import shutil

import pandas as pd
import pytest

from pipelines.config import PROJECT_ROOT, Settings
from pipelines.data import storage
from pipelines.data.schema import TABLES
from pipelines.features.online import STATE_COLUMNS, Event, apply_event
from pipelines.features.online_store import open_snapshot, write_snapshot
from pipelines.synthetic.bank import SynthConfig, generate_bank

pytestmark = pytest.mark.slow

CAMPAIGN = "churn-retention-sms"


@pytest.fixture(scope="module")
def campaign_run(tmp_path_factory):
    from pipelines.jobs.campaigns import run_campaign
    from pipelines.jobs.common import resolve_as_of
    from pipelines.jobs.training import train_churn

    home = tmp_path_factory.mktemp("online_refresh")
    shutil.copytree(PROJECT_ROOT / "campaigns", home / "campaigns")
    settings = Settings(home=home, data_dir=home / "data", campaigns_dir=home / "campaigns")
    generate_bank(
        SynthConfig(customers=5_000, months=12, seed=5, chunk_size=5_000), settings.data_dir, progress=None
    )
    train_churn(settings.data_dir, tracking_uri=settings.mlflow_tracking_uri, progress=None)
    as_of = resolve_as_of(settings)
    run = run_campaign(settings, CAMPAIGN, as_of, progress=None)
    return settings, as_of, run


def test_the_refresh_writes_features_segments_state_and_contact_flags_only(campaign_run):
    from pipelines.jobs.online import refresh_online_snapshot

    settings, as_of, run = campaign_run
    said: list[str] = []
    result = refresh_online_snapshot(settings, CAMPAIGN, as_of, progress=said.append)
    folder = settings.runs_dir / run["run_id"]
    wide = storage.read_frame(folder / "features.parquet")
    segments = storage.read_frame(folder / "segments.parquet")
    assert result == {
        "as_of": as_of.isoformat(),
        "run_id": run["run_id"],
        "rows": len(wide),
        "target": str(settings.data_dir / "online"),
        "written": True,
    }
    assert said and run["run_id"] in said[-1]

    snapshot = open_snapshot(settings.online_store)
    assert (snapshot.as_of, snapshot.run_id, len(snapshot)) == (as_of, run["run_id"], len(wide))
    expected = [*wide.columns, *(c for c in segments.columns if c not in wide.columns), *STATE_COLUMNS,
                "do_not_contact", "marketing_opt_out"]  # fmt: skip
    assert list(snapshot.columns) == expected
    assert not set(snapshot.columns) & set(TABLES["customers"].pii_columns)

    customers = storage.read_table(settings.lake_dir, "customers").set_index("customer_id")
    segments = segments.set_index("customer_id")
    for i in (0, len(wide) // 2, len(wide) - 1):
        cid = int(wide["customer_id"].iloc[i])
        row = snapshot.row(cid)
        for column in ("txn_count_30d", "spend_90d", "avg_ticket_90d", "days_since_last_login"):
            want = float(wide[column].iloc[i])
            assert row[column] == want or (math.isnan(want) and math.isnan(row[column])), column
        assert row["lifecycle_stage"] == segments.loc[cid, "lifecycle_stage"]
        assert row["do_not_contact"] is bool(customers.loc[cid, "do_not_contact"])
        assert row["marketing_opt_out"] is bool(customers.loc[cid, "marketing_opt_out"])
        # the row a decision reads takes real-time events
        ts = f"{as_of.isoformat()}T09:00:00"
        event = Event.model_validate(
            {"type": "transaction", "ts": ts, "amount": 10.0, "merchant_category": "fuel"}
        )
        assert apply_event(row, event, as_of)["txn_count_30d"] == row["txn_count_30d"] + 1


def test_a_later_snapshot_in_the_store_is_left_as_it_is(campaign_run):
    from pipelines.jobs.online import refresh_online_snapshot

    settings, as_of, run = campaign_run
    later = (pd.Timestamp(as_of) + pd.Timedelta(days=31)).date()
    write_snapshot(
        pd.DataFrame({"customer_id": [1]}), as_of=later, run_id="later-run", target=settings.online_store
    )
    said: list[str] = []
    result = refresh_online_snapshot(settings, CAMPAIGN, as_of, progress=said.append)
    assert result["written"] is False and result["rows"] == 0 and result["run_id"] == run["run_id"]
    assert "later-run" in said[-1] and "left as it is" in said[-1]
    snapshot = open_snapshot(settings.online_store)
    assert (snapshot.run_id, snapshot.as_of, len(snapshot)) == ("later-run", later, 1)


def test_a_run_that_was_not_written_is_a_clear_error(campaign_run):
    from pipelines.jobs.online import refresh_online_snapshot

    settings, as_of, _ = campaign_run
    other = Settings(
        home=settings.home, data_dir=settings.data_dir, online_store=str(settings.home / "other")
    )
    with pytest.raises(storage.LakeError, match="features.parquet does not exist"):
        refresh_online_snapshot(other, "churn-winback", as_of)
