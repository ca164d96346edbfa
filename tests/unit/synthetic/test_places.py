"""Places in the synthetic bank: home cities by tier, the branches table, app-event locations, and columns drawn
before places existed left exactly as they were."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipelines.config import PROJECT_ROOT
from pipelines.data import gates, places, storage
from pipelines.data.schema import TABLES
from pipelines.synthetic.bank import SynthConfig, generate_bank
from pipelines.synthetic.customers import LOCATION_OFF_SHARE, draw_home

# The bank the place tests read; generated in well under a second.
REFERENCE = SynthConfig(customers=2_000, months=8, seed=3)
PLACE_COLUMNS = {("customers", "region"), ("customers", "city"), ("app_events", "lat"), ("app_events", "lon")}
PLACE_TABLES = {"branches"}
# Drawn from streams of their own after places were added (lake/products, lake/product_holdings, truth/products).
PRODUCT_TABLES = {"products", "product_holdings"}


def _digest_without_places(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.parquet")):
        rel = path.relative_to(root)
        table = rel.parts[1]
        if table in PLACE_TABLES | PRODUCT_TABLES:
            continue
        stored = pq.read_table(path)
        names = [c for c in stored.column_names if (table, c) not in PLACE_COLUMNS]
        h.update(f"{rel}:{','.join(names)}".encode())
        frame = stored.select(names).to_pandas()
        h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def bank(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("places")
    generate_bank(REFERENCE, out, progress=None)
    return out


@pytest.fixture(scope="module")
def customers(bank) -> pd.DataFrame:
    return storage.read_table(bank / "lake", "customers")


@pytest.fixture(scope="module")
def events(bank, customers) -> pd.DataFrame:
    ev = storage.read_table(bank / "lake", "app_events", columns=["customer_id", "lat", "lon"])
    return ev.merge(customers[["customer_id", "city"]].astype({"city": str}), on="customer_id", how="left")


# ------------------------------------------------------------------------------------------ the old columns


def test_columns_drawn_before_places_are_exactly_as_they_were(bank, tmp_path, monkeypatch):
    """Every other column is what the generator writes when it draws no place at all: the place draws come from
    streams of their own. (A stored digest of the bank cannot say this portably: NumPy's exp and log differ in the
    last bits between CPUs with and without AVX-512, so the floats of a bank are exact only on one kind of CPU.)"""
    import pipelines.synthetic.bank as bank_module
    from pipelines.synthetic.customers import CITY_REGION

    def no_home(rng, city_tier):
        city = np.zeros(city_tier.size, dtype=np.int64)
        return {"city": city, "region": CITY_REGION[city], "_shares_location": np.zeros(city_tier.size, bool)}

    def no_event_places(rng, idx, home, shares_location):
        return {"lat": np.full(idx.size, np.nan), "lon": np.full(idx.size, np.nan)}

    monkeypatch.setattr(bank_module, "draw_home", no_home)
    monkeypatch.setattr(bank_module, "draw_event_places", no_event_places)
    generate_bank(replace(REFERENCE, workers=1), tmp_path, progress=None)  # in this process: the patches hold
    without = storage.read_table(tmp_path / "lake", "app_events", columns=["lat"])
    assert without["lat"].isna().all()  # the patched generator did run
    assert _digest_without_places(bank) == _digest_without_places(tmp_path)


def test_the_place_columns_are_nullable_and_not_personal():
    for table, column in PLACE_COLUMNS:
        spec = TABLES[table].column(column)
        assert spec.nullable and not spec.pii, (table, column)


# ------------------------------------------------------------------------------------------ homes


def test_each_home_city_has_the_customers_tier_and_its_region(customers):
    assert customers["city"].notna().all() and customers["region"].notna().all()
    by_name = places.CITY_BY_NAME
    tiers = customers["city"].astype(str).map(lambda c: by_name[c].tier)
    regions = customers["city"].astype(str).map(lambda c: by_name[c].region)
    assert (tiers.to_numpy() == customers["city_tier"].to_numpy()).all()
    assert (regions.to_numpy() == customers["region"].astype(str).to_numpy()).all()


def test_home_cities_follow_population_within_a_tier(customers):
    tier1 = customers.loc[customers["city_tier"] == 1, "city"].astype(str)
    assert 0.5 < (tier1 == "London").mean() < 0.75  # about 62 % by the weights
    assert set(tier1) == {c.name for c in places.cities_of_tier(1)}


def test_draw_home_names_an_unknown_tier():
    with pytest.raises(ValueError, match="city_tier"):
        draw_home(np.random.default_rng(0), np.array([1, 5], dtype=np.int8))


# ------------------------------------------------------------------------------------------ branches


def test_branches_table_is_the_catalogue(bank):
    branches = storage.read_table(bank / "lake", "branches")
    assert list(branches["branch_id"]) == [b.branch_id for b in places.BRANCHES]
    assert list(branches["city"].astype(str)) == [b.city for b in places.BRANCHES]
    assert list(branches["region"].astype(str)) == [b.region for b in places.BRANCHES]
    assert np.allclose(branches["lat"], [b.lat for b in places.BRANCHES])
    assert np.allclose(branches["lon"], [b.lon for b in places.BRANCHES])
    manifest = storage.read_json(bank / "truth" / "manifest.json")
    assert manifest["rows"]["branches"] == len(places.BRANCHES)


def test_the_generated_place_columns_pass_their_suites(bank):
    result = gates.validate_lake(bank / "lake", REFERENCE.end, PROJECT_ROOT / "expectations", progress=None)
    for table in ("customers", "app_events", "branches"):
        assert not result.tables[table].failures, result.tables[table].failures
    assert result.tables["branches"].rows == len(places.BRANCHES)


# ------------------------------------------------------------------------------------------ app events


def test_events_are_mostly_near_home_and_a_few_are_away(events):
    located = events.dropna(subset=["lat"])
    assert located["lon"].notna().all()
    home = [places.CITY_BY_NAME[c] for c in located["city"]]
    km = places.distance_km(
        located["lat"].to_numpy(), located["lon"].to_numpy(), [c.lat for c in home], [c.lon for c in home]
    )
    # designed: 80 % around the centre (3 km per axis), 12 % at a branch, 8 % in another city
    assert 0.88 < (km < 10).mean() < 0.96
    assert 0.05 < (km > 50).mean() < 0.11
    assert np.median(km) < 5
    assert np.allclose(located["lat"], located["lat"].round(2)) and np.allclose(
        located["lon"], located["lon"].round(2)
    )


def test_about_a_fifth_of_app_users_never_share_their_location(events):
    off = events["lat"].isna().groupby(events["customer_id"]).agg(["all", "any"])
    assert (off["all"] == off["any"]).all(), "location sharing is per customer, not per event"
    assert abs(off["all"].mean() - LOCATION_OFF_SHARE) < 0.05


# ------------------------------------------------------------------------------------------ determinism


def test_place_columns_repeat_with_the_seed_and_change_with_it(tmp_path):
    small = replace(REFERENCE, months=2)
    generate_bank(small, tmp_path / "a", progress=None)
    generate_bank(small, tmp_path / "b", progress=None)
    generate_bank(replace(small, seed=4), tmp_path / "c", progress=None)

    def place(root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
        cust = storage.read_table(root / "lake", "customers", columns=["customer_id", "region", "city"])
        ev = storage.read_table(root / "lake", "app_events", columns=["event_id", "lat", "lon"])
        return cust, ev

    (ca, ea), (cb, eb), (cc, _) = place(tmp_path / "a"), place(tmp_path / "b"), place(tmp_path / "c")
    pd.testing.assert_frame_equal(ca, cb)
    pd.testing.assert_frame_equal(ea, eb)
    assert (ca["city"].astype(str) != cc["city"].astype(str)).mean() > 0.3
