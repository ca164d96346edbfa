"""The real-time decision service (docs/realtime.md) on a small bank with a churn champion and one batch run.

* **Same score:** the service's score of a snapshot row is the batch run's score of that customer, exactly.
* **Holdout and policy:** the campaign's hash holdout gets no offer and is stable across service restarts;
  do-not-contact and opted-out customers are never offered; one real-time offer per customer per day; a trigger
  that does not match, a place trigger far away and an unknown customer give no offer with the reason.
* **Over HTTP:** ``pmp decide serve`` (uvicorn, a real process on 127.0.0.1) answers ``POST /decide``, refuses a
  malformed request naming the field, logs every decision to ``campaign_decisions`` (flushed at shutdown); the
  day's decisions become a campaign run that the synthetic world answers and the readout reads like a batch run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipelines.config import PROJECT_ROOT, Settings
from pipelines.synthetic.bank import SynthConfig, generate_bank

pytestmark = pytest.mark.slow

BATCH = "churn-retention-sms"
REALTIME = "app-login-retention"


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """A 3,000-customer bank, a churn champion, a batch run of ``churn-retention-sms`` at the lake's end and the
    online snapshot it refreshed; the project's campaigns plus a place-triggered copy of the real-time one."""
    from pipelines.data import storage
    from pipelines.features.labels import LabelDefinition
    from pipelines.jobs.campaigns import run_campaign
    from pipelines.jobs.online import refresh_online_snapshot
    from pipelines.jobs.training import train_churn
    from pipelines.models.propensity import TrainConfig

    home = tmp_path_factory.mktemp("decide")
    data = home / "data"
    generate_bank(SynthConfig(customers=3_000, months=9, seed=5, chunk_size=3_000), data, progress=None)
    campaigns = home / "campaigns"
    campaigns.mkdir()
    for path in (PROJECT_ROOT / "campaigns").glob("*.yaml"):
        (campaigns / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    spec = yaml.safe_load((campaigns / f"{REALTIME}.yaml").read_text(encoding="utf-8"))
    spec |= {
        "name": "branch-walk-by",
        "trigger": {"events": ["location"], "within_km": {"of": "BR001", "km": 1}},
    }
    (campaigns / "branch-walk-by.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    settings = Settings(home=home, data_dir=data, mlruns_dir=home / "mlruns", campaigns_dir=campaigns)
    as_of = storage.lake_end(settings.lake_dir)
    train_churn(
        data,
        tracking_uri=settings.mlflow_tracking_uri,
        as_of=as_of,
        definition=LabelDefinition("closure", 90),
        snapshots=3,
        config=TrainConfig(model_name="churn", seed=42),
        min_positives=30,
        min_negatives=30,
        progress=None,
    )
    run_campaign(settings, BATCH, as_of, progress=None)
    refresh_online_snapshot(settings, BATCH, as_of, progress=None)
    return settings, as_of


def _decider(settings: Settings, log=None):
    from pipelines.decide.service import load_decider

    return load_decider(settings, log, progress=None, today=date(2030, 1, 1))


def _event(kind: str, as_of: date, hours: int = 9, **more) -> object:
    from pipelines.features.online import Event

    return Event.model_validate({"type": kind, "ts": f"{as_of:%Y-%m-%d}T{hours:02d}:00:00", **more})


def test_the_service_scores_a_snapshot_row_exactly_as_the_batch_run_did(platform):
    from pipelines.data import storage
    from pipelines.jobs.campaigns import campaign_run_id

    settings, as_of = platform
    decider = _decider(settings)
    scores = storage.read_frame(
        settings.runs_dir / campaign_run_id(BATCH, as_of) / "scores.parquet", columns=["customer_id", "score"]
    )
    sample = scores.sample(300, random_state=1)
    online = [decider.score("churn", decider.snapshot.row(int(c))) for c in sample["customer_id"]]
    assert np.array_equal(np.asarray(online), sample["score"].to_numpy()), "online and batch scores differ"


def test_holdout_policy_and_triggers(platform):
    from pipelines.campaigns.score import online_holdout
    from pipelines.data import storage

    settings, as_of = platform
    decider = _decider(settings)
    customers = storage.read_table(
        settings.lake_dir, "customers", columns=["customer_id", "do_not_contact", "marketing_opt_out"]
    ).set_index("customer_id")
    ids = snapshot_ids(settings)
    login = _event("login", as_of)
    decisions = {cid: decider.decide(cid, login) for cid in ids}

    about = [d for d in decisions.values() if d.campaign == REALTIME]
    held = [d for d in about if d.group == "holdout"]
    treated = [d for d in about if d.group == "treatment"]
    assert len(about) > 100, f"too few customers reach the campaign to test it: {len(about)}"
    assert all(d.offer is None for d in held) and all(d.offer == REALTIME for d in treated)
    # The holdout is the campaign's hash draw, nothing else.
    salt = yaml.safe_load((settings.campaigns_dir / f"{REALTIME}.yaml").read_text(encoding="utf-8"))["name"]
    drawn = online_holdout(np.array([d.customer_id for d in about]), salt, 0.1)
    assert [d.group == "holdout" for d in about] == list(drawn)
    assert 0.05 < len(held) / len(about) < 0.16, (len(held), len(about))
    for d in treated:
        assert d.score >= 0.15 and d.expected_value == pytest.approx(d.score * 20.0 - 0.02)
        assert d.model_name == "churn" and d.channel == "push"

    # Consent: never offered, and the reason says why.
    for cid, d in decisions.items():
        if customers.at[cid, "do_not_contact"]:
            assert d.offer is None and "do_not_contact" in d.reason, d
        elif customers.at[cid, "marketing_opt_out"]:
            assert d.offer is None and "opt_out" in d.reason, d

    # One real-time offer per customer per day; the next day the 7-day recent-contact rule holds it back.
    again = decider.decide(treated[0].customer_id, _event("login", as_of, hours=15))
    assert again.offer is None and "already offered" in again.reason
    later = decider.decide(treated[0].customer_id, _event("login", as_of + timedelta(days=2)))
    assert later.offer is None and "recent_contact" in later.reason, later

    # A restarted service draws the same groups.
    fresh = _decider(settings)
    assert [fresh.decide(d.customer_id, login).group for d in held[:20]] == ["holdout"] * len(held[:20])

    # Triggers: a bill view triggers nothing; a location ping 500 km away from BR001 neither; one at the branch does.
    assert "no real-time campaign is triggered" in decider.decide(ids[0], _event("bill_view", as_of)).reason
    far = decider.decide(ids[0], _event("location", as_of, lat=55.95, lon=-3.19))
    assert far.offer is None and far.campaign is None
    near = [fresh.decide(cid, _event("location", as_of, lat=51.5074, lon=-0.1278)) for cid in ids[:400]]
    assert any(d.campaign == "branch-walk-by" for d in near)
    unknown = decider.decide(1, login)
    assert unknown.offer is None and "not in the online snapshot" in unknown.reason
    late = decider.decide(ids[0], _event("login", as_of - timedelta(days=3)))
    assert late.offer is None and "older than the online snapshot" in late.reason


def test_the_served_decisions_are_logged_and_read_out_like_a_batch_run(platform, tmp_path):
    from pipelines.campaigns import store, store_schema
    from pipelines.campaigns.decisions import read_decisions
    from pipelines.cli.supervise import free_port, http_json
    from pipelines.jobs import readouts
    from pipelines.jobs.realtime import decided_run

    settings, as_of = platform
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PM_DATA_DIR": str(settings.data_dir),
        "PM_CAMPAIGNS_DIR": str(settings.campaigns_dir),
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "PM_DATABASE_URL": settings.database_url,
    }
    log = (tmp_path / "decide.log").open("w+b")
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("pmp")), "decide", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while http_json(f"{url}/health", timeout=2.0)[0] != 200:
            assert server.poll() is None and time.monotonic() < deadline, (
                tmp_path / "decide.log"
            ).read_text()
            time.sleep(0.2)
        status, bad = http_json(
            f"{url}/decide",
            method="POST",
            body={"customer_id": 5, "event": {"type": "login", "ts": "yesterday"}},
        )
        assert status == 422 and "ts" in json.dumps(bad)
        ids = snapshot_ids(settings)
        answers = []
        for cid in ids:
            event = {"type": "login", "ts": f"{as_of}T10:00:00"}
            status, body = http_json(
                f"{url}/decide", method="POST", body={"customer_id": cid, "event": event}
            )
            assert status == 200, body
            answers.append(body)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
    assert server.returncode == 0, (tmp_path / "decide.log").read_text()

    engine = store_schema.make_engine(settings.database_url)
    logged = read_decisions(engine)
    assert sorted(logged["decision_id"]) == sorted(a["decision_id"] for a in answers)
    groups = pd.Series([a["group"] for a in answers if a["campaign"] == REALTIME]).value_counts()
    assert groups.get("treatment", 0) > 50 and groups.get("holdout", 0) > 3, groups

    run = decided_run(settings, REALTIME, as_of, progress=None)
    targets = store.read_targets(engine, REALTIME, run["run_id"], groups=("treatment", "holdout"))
    assert targets["target_group"].value_counts().to_dict() == groups.to_dict()
    readouts.simulate_responses(settings, run["run_id"])
    result = readouts.readout_campaign(settings, run["run_id"], as_of=as_of + timedelta(days=30))
    assert (result["treated_n"], result["control_n"]) == (groups["treatment"], groups["holdout"])


def snapshot_ids(settings: Settings) -> list[int]:
    """The lake's customers that the online snapshot holds, in the lake's order."""
    from pipelines.data import storage
    from pipelines.features.online_store import open_snapshot

    snapshot = open_snapshot(settings.online_store)
    ids = storage.read_table(settings.lake_dir, "customers", columns=["customer_id"])["customer_id"]
    return [c for c in ids.tolist() if snapshot.row(c) is not None]


def test_with_the_snapshot_in_redis_the_decisions_are_the_same(platform, redis_url):
    from pipelines.jobs.online import refresh_online_snapshot

    settings, as_of = platform
    in_redis = settings.model_copy(update={"online_store": redis_url})
    assert refresh_online_snapshot(in_redis, BATCH, as_of, progress=None)["written"]
    folder, redis = _decider(settings), _decider(in_redis)
    assert redis.snapshot.as_of == folder.snapshot.as_of and len(redis.snapshot) == len(folder.snapshot)
    login = _event("login", as_of)
    for cid in snapshot_ids(settings)[:300]:
        a, b = folder.decide(cid, login), redis.decide(cid, login)
        assert (a.offer, a.group, a.score, a.reason) == (b.offer, b.group, b.score, b.reason), cid


def test_an_offer_the_log_refuses_does_not_count_as_a_contact(platform):
    from pipelines.decide.log import DecisionLogFull

    settings, as_of = platform
    login = _event("login", as_of)
    first = _decider(settings)
    offered = next(d for d in (first.decide(c, login) for c in snapshot_ids(settings)) if d.offer)

    def full(_row: dict) -> None:
        raise DecisionLogFull("decision log: 100,000 decisions are waiting")

    refusing = _decider(settings, log=full)
    with pytest.raises(DecisionLogFull):
        refusing.decide(offered.customer_id, login)
    refusing.log = None  # the database is back
    again = refusing.decide(offered.customer_id, login)
    assert again.offer == offered.offer, again  # not "already offered": the refused offer never left
