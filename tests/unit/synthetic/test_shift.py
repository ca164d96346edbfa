"""Behaviour shifts of the synthetic bank: the past untouched, the move where and as large as recorded, the truth exact."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.cli.parser import build_parser
from pipelines.synthetic.bank import SynthConfig, generate_bank, summary_lines
from pipelines.synthetic.customers import CUSTOMER_ID_BASE, draw_customers
from pipelines.synthetic.lifecycle import DORMANT_CAPS, horizon_shares

BASE = SynthConfig(customers=4_000, months=9, seed=5, chunk_size=2_000, workers=1)
SHIFT = "2025-07"  # month index 6: January's 150-day horizon ends before it
SHIFT_START = pd.Timestamp(f"{SHIFT}-01")
STATES = ["new", "active", "loyal", "dormant"]


@pytest.fixture(scope="module")
def banks(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("shift")
    configs = {
        "none": BASE,
        "dormancy": replace(BASE, shift_month=SHIFT, shift="dormancy"),
        "spend": replace(BASE, shift_month=SHIFT, shift="spend"),
    }
    manifests = {k: generate_bank(c, root / k, progress=None) for k, c in configs.items()}
    return {k: root / k for k in configs} | {"manifests": manifests}


def _parts(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.parquet"))}


def _month(key: str) -> str | None:
    part = [p for p in key.split("/") if p.startswith("month=")]
    return part[0].removeprefix("month=") if part else None


def _truth(root: Path) -> pd.DataFrame:
    t = pd.read_parquet(root / "truth" / "churn")
    cust = pd.read_parquet(root / "lake" / "customers", columns=["customer_id", "birth_year"])
    t = t.merge(cust, on="customer_id")
    t["young"] = SHIFT_START.year - t["birth_year"].astype(int) < 35
    t["month_end"] = pd.to_datetime(t["month_end"])
    t["state"] = t["state"].astype(str)
    return t.sort_values(["customer_id", "month_end"]).reset_index(drop=True)


# ------------------------------------------------------------------------------------------- (a) the past


@pytest.mark.parametrize("kind", ["dormancy", "spend"])
def test_everything_before_the_shift_month_is_byte_identical(banks, kind):
    base, shifted = _parts(banks["none"]), _parts(banks[kind])
    assert base.keys() == shifted.keys()
    before = [
        k for k in base if _month(k) is not None and _month(k) < SHIFT and not k.startswith("truth/churn")
    ]
    assert len(before) >= 20
    assert [k for k in before if base[k] != shifted[k]] == []
    # Churn truth: identical where the 150-day horizon ends before the shift month starts.
    untouched = [
        k
        for k in base
        if k.startswith("truth/churn")
        and pd.Period(_month(k), freq="M").end_time.normalize() + pd.Timedelta(days=150) < SHIFT_START
    ]
    assert untouched and [k for k in untouched if base[k] != shifted[k]] == []
    later = [k for k in base if k.startswith("lake/transactions") and _month(k) >= SHIFT]
    assert all(base[k] != shifted[k] for k in later)
    # The customers' attributes and PII do not change; only closure dates after the shift may.
    a = pd.read_parquet(banks["none"] / "lake" / "customers")
    b = pd.read_parquet(banks[kind] / "lake" / "customers")
    pd.testing.assert_frame_equal(a.drop(columns="closed_date"), b.drop(columns="closed_date"))
    early = pd.to_datetime(a["closed_date"]) < SHIFT_START
    assert (a.loc[early, "closed_date"] == b.loc[early, "closed_date"]).all()


# ------------------------------------------------------------------------------------------- (b) dormancy


def _dormancy_entry_rates(t: pd.DataFrame) -> pd.Series:
    prev = t.groupby("customer_id")["state"].shift()
    at_risk = prev.notna() & (prev != "dormant")
    entered = t["state"] == "dormant"
    after = t["month_end"] >= SHIFT_START
    return entered[at_risk].groupby([t["young"][at_risk], after[at_risk]]).mean()


def test_dormancy_shift_raises_the_segment_s_dormancy_and_closures_only(banks):
    base, shifted = (
        _dormancy_entry_rates(_truth(banks["none"])),
        _dormancy_entry_rates(_truth(banks["dormancy"])),
    )
    assert shifted[(True, True)] > 2.5 * base[(True, True)]
    assert shifted[(True, False)] == pytest.approx(base[(True, False)])
    assert shifted[(False, True)] == pytest.approx(base[(False, True)], abs=0.003)

    def closures_after(root):
        c = pd.read_parquet(root / "lake" / "customers", columns=["birth_year", "closed_date"])
        young = SHIFT_START.year - c["birth_year"].astype(int) < 35
        after = pd.to_datetime(c["closed_date"]) >= SHIFT_START
        return (after & young).sum(), (after & ~young).sum()

    (young_base, old_base), (young_shift, old_shift) = (
        closures_after(banks["none"]),
        closures_after(banks["dormancy"]),
    )
    assert young_shift > 1.5 * young_base
    assert abs(old_shift - old_base) <= 0.1 * old_base


def test_dormancy_shift_raises_the_segment_s_churn_truth(banks):
    base, shifted = _truth(banks["none"]), _truth(banks["dormancy"])
    at_end = pd.Timestamp(f"{SHIFT}-01") + pd.offsets.MonthEnd(0)

    def mean_p(t, young):
        return t.loc[(t["month_end"] == at_end) & (t["young"] == young), "p_churn_90d"].mean()

    assert mean_p(shifted, True) > 1.5 * mean_p(base, True)
    # The others' truth does not move: same chain, same states.
    old_b, old_s = base[~base["young"]], shifted[~shifted["young"]]
    np.testing.assert_array_equal(old_b["customer_id"], old_s["customer_id"])
    np.testing.assert_allclose(old_s["p_churn_150d"], old_b["p_churn_150d"], rtol=1e-12)


def _customer_chain(config: SynthConfig, customer_id: int):
    """The customer's monthly transition matrix before and after a dormancy shift, rebuilt independently."""
    k = (customer_id - CUSTOMER_ID_BASE) // config.chunk_size
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, k]))
    first = k * config.chunk_size
    cust = draw_customers(rng, min(config.chunk_size, config.customers - first), first, config)
    (row,) = np.flatnonzero(cust["customer_id"] == customer_id)
    before = cust["_transition"][row]
    after = before.copy()
    for s, cap in DORMANT_CAPS.items():
        after[s, 3] = min(before[s, 3] * 5.0, cap)
        after[s, s] = 0.0
        after[s, s] = 1.0 - after[s].sum()
    assert np.allclose(after.sum(axis=1), 1.0) and (after >= 0).all()
    return before, after


def _piecewise_p(before, after, state, month_end: pd.Timestamp, horizon: int) -> float:
    """P(closure within ``horizon`` days): step matrices chosen month by month, closure uniform in its month."""
    dist = np.eye(5)[state]
    shares = horizon_shares(month_end, horizon)
    p = 0.0
    for k in range(shares.size):
        month = month_end + pd.Timedelta(days=1) + pd.DateOffset(months=k)
        step = after if month >= SHIFT_START else before
        new = dist @ step
        p += (new[4] - dist[4]) * shares[k]
        dist = new
    return p


def test_dormancy_truth_is_exact_for_the_time_varying_chain(banks):
    config = replace(BASE, shift_month=SHIFT, shift="dormancy")
    t = _truth(banks["dormancy"])
    picked = []
    for month_end in (pd.Timestamp("2025-03-31"), pd.Timestamp("2025-05-31"), pd.Timestamp("2025-06-30")):
        rows = t[(t["month_end"] == month_end) & t["young"]]
        for state in ("active", "dormant", "loyal"):
            picked.append(rows[rows["state"] == state].iloc[0])
    for row in picked:
        before, after = _customer_chain(config, int(row["customer_id"]))
        state = STATES.index(row["state"])
        for horizon, col in ((90, "p_churn_90d"), (150, "p_churn_150d")):
            exact = _piecewise_p(before, after, state, row["month_end"], horizon)
            assert row[col] == pytest.approx(exact, rel=1e-9, abs=1e-12)
    # ... and agrees with a simulation of the chain: an active young customer at the end of May, 150 days.
    row = picked[3]
    before, after = _customer_chain(config, int(row["customer_id"]))
    rng = np.random.default_rng(0)
    n = 400_000
    current = np.full(n, STATES.index(row["state"]))
    closed_within = np.zeros(n, bool)
    covered = 0
    for month in pd.date_range("2025-06-01", periods=6, freq="MS"):
        cum = np.cumsum(after if month >= SHIFT_START else before, axis=1)
        nxt = (rng.random(n)[:, None] >= cum[current]).sum(axis=1)
        day = rng.integers(0, month.days_in_month, n)
        closed_within |= (nxt == 4) & (current != 4) & (covered + day < 150)
        current, covered = nxt, covered + month.days_in_month
    se = np.sqrt(row["p_churn_150d"] * (1 - row["p_churn_150d"]) / n)
    assert closed_within.mean() == pytest.approx(row["p_churn_150d"], abs=4 * se + 1e-4)


# ------------------------------------------------------------------------------------------- (c) spend


def test_spend_shift_scales_amounts_after_the_shift_month_only(banks):
    cols = ["txn_ts", "customer_id", "amount"]
    a = pd.read_parquet(banks["none"] / "lake" / "transactions", columns=cols)
    b = pd.read_parquet(banks["spend"] / "lake" / "transactions", columns=cols)
    assert len(a) == len(b) > 10_000
    np.testing.assert_array_equal(a["customer_id"], b["customer_id"])
    after = (a["txn_ts"] >= SHIFT_START).to_numpy()
    assert 0.2 < after.mean() < 0.8
    assert b["amount"][after].mean() / a["amount"][after].mean() == pytest.approx(1.3, abs=0.002)
    np.testing.assert_array_equal(a["amount"][~after], b["amount"][~after])
    big = after & (a["amount"] > 1).to_numpy()
    assert np.abs(b["amount"][big] - 1.3 * a["amount"][big]).max() < 0.02
    pd.testing.assert_frame_equal(_truth(banks["none"]), _truth(banks["spend"]))


# ------------------------------------------------------------------------------------------- (d) config


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"shift_month": "2025-07"}, "shift_month and shift must be given together"),
        ({"shift": "dormancy"}, "shift_month and shift must be given together"),
        ({"shift_month": "2025-07", "shift": "price"}, "shift must be one of dormancy, spend"),
        ({"shift_month": "2025/05", "shift": "spend"}, "shift_month must be a month YYYY-MM"),
        (
            {"shift_month": "2025-01", "shift": "spend"},
            "shift_month must be inside the data and not its first",
        ),
        ({"shift_month": "2025-10", "shift": "spend"}, "shift_month must be inside the data"),
        ({"shift_month": "2024-12", "shift": "spend"}, "shift_month must be inside the data"),
        (
            {"shift_month": "2025-07", "shift": "spend", "shift_factor": 0.0},
            "shift_factor must be a positive",
        ),
        (
            {"shift_month": "2025-07", "shift": "spend", "shift_factor": -1.3},
            "shift_factor must be a positive",
        ),
        ({"shift_factor": 2.0}, "shift_factor needs a shift"),
    ],
)
def test_bad_shift_configs_are_refused_naming_the_field(fields, message):
    with pytest.raises(ValueError, match=message):
        replace(BASE, **fields)


def test_last_month_of_the_data_is_a_valid_shift_month():
    assert replace(BASE, shift_month="2025-09", shift="dormancy", shift_factor=0.5).shift_factor == 0.5


# ------------------------------------------------------------------------------------------- (e) the record


def test_shift_truth_is_recorded(banks):
    record = json.loads((banks["dormancy"] / "truth" / "shift.json").read_text())
    assert record.keys() == {"kind", "month", "factor", "segment", "customers_affected"}
    assert (record["kind"], record["month"], record["factor"]) == ("dormancy", SHIFT, 5.0)
    assert record["segment"] == "age < 35 at 2025-07-01 (birth_year > 1990)"
    # Affected: in the segment and open at the end of the month before the shift or at any later month end.
    t = _truth(banks["dormancy"])
    exposed = t[t["young"] & (t["month_end"] >= pd.Timestamp("2025-06-30"))]["customer_id"].nunique()
    assert record["customers_affected"] == exposed > 500
    manifest = banks["manifests"]["dormancy"]
    assert manifest["shift"] == record
    assert any("behaviour shift: dormancy x5 from 2025-07" in line for line in summary_lines(manifest))
    spend = json.loads((banks["spend"] / "truth" / "shift.json").read_text())
    assert (spend["kind"], spend["factor"], spend["segment"]) == ("spend", 1.3, "all customers")
    assert not (banks["none"] / "truth" / "shift.json").exists()
    assert "shift" not in banks["manifests"]["none"]


def test_cli_passes_the_shift_flags():
    args = build_parser().parse_args(
        ["synth", "--shift-month", "2025-07", "--shift", "dormancy", "--shift-factor", "3"]
    )
    assert (args.shift_month, args.shift, args.shift_factor) == ("2025-07", "dormancy", 3.0)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["synth", "--shift-month", "2025-07", "--shift", "price"])
