"""Products in the synthetic bank: the catalogue, holdings and uptakes against their truth, the association bumps,
the offer oracle, and every other table left byte-identical by the product streams."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.config import PROJECT_ROOT
from pipelines.data import gates, products, storage
from pipelines.data.schema import PRODUCT_TRUTH
from pipelines.synthetic import campaigns as sc
from pipelines.synthetic import products as sp
from pipelines.synthetic.bank import SynthConfig, generate_bank, generate_chunk

# Two chunks, so the per-chunk streams and the manifest's totals are exercised; a few seconds to generate.
CONFIG = SynthConfig(customers=4_000, months=6, seed=11, chunk_size=2_000)
PRODUCT_FILES = ("lake/products", "lake/product_holdings", "truth/products")


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def bank(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("products")
    generate_bank(CONFIG, out, progress=None)
    return out


@pytest.fixture(scope="module")
def holdings(bank) -> pd.DataFrame:
    return storage.read_table(bank / "lake", "product_holdings")


@pytest.fixture(scope="module")
def truth(bank) -> pd.DataFrame:
    return storage.read_table(bank / "truth", "products")


@pytest.fixture(scope="module")
def held(bank, holdings, truth) -> tuple[pd.Index, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Customer ids, and per month: a (customers, products) matrix of what each holds at the month end, and
    whether the customer is open then (has a balances row)."""
    ids = pd.Index(np.sort(truth["customer_id"].unique()))
    balances = storage.read_table(bank / "lake", "balances", columns=["customer_id", "month_end"])
    held, open_ = {}, {}
    for month_end, rows in holdings.groupby("month_end"):
        m = np.zeros((ids.size, sp.N_PRODUCTS), dtype=bool)
        m[ids.get_indexer(rows["customer_id"]), rows["product_id"].astype(str).map(sp.P).to_numpy()] = True
        held[month_end] = m
    for month_end, rows in balances.groupby("month_end"):
        o = np.zeros(ids.size, dtype=bool)
        o[ids.get_indexer(rows["customer_id"])] = True
        open_[month_end] = o
    return ids, held, open_


# ------------------------------------------------------------------------------------------ files


def test_same_seed_gives_identical_files(bank, tmp_path):
    generate_bank(CONFIG, tmp_path, progress=None)
    again = _files(tmp_path)
    assert again == _files(bank)
    assert any(name.startswith("lake/product_holdings/month=") for name in again)


def test_every_other_table_is_byte_identical_without_products(bank, tmp_path):
    lake, truth = tmp_path / "lake", tmp_path / "truth"
    for chunk in range(CONFIG.n_chunks):
        generate_chunk(CONFIG, chunk, lake, truth, with_products=False)
    without = _files(tmp_path)
    with_products = _files(bank)
    assert without and all(with_products[name] == data for name, data in without.items())
    extra = {
        name.rsplit("/", 2)[0] if "month=" in name else name.rsplit("/", 1)[0]
        for name in set(with_products) - set(without)
    }
    assert extra == {*PRODUCT_FILES, "lake/branches", "truth"}  # truth: manifest.json
    assert not any(name.startswith(PRODUCT_FILES) for name in without)


def test_the_products_table_is_the_catalogue(bank):
    table = storage.read_table(bank / "lake", "products")
    assert list(table["product_id"].astype(str)) == list(products.PRODUCT_IDS)
    assert list(table["family"].astype(str)) == [p.family for p in products.PRODUCTS]
    assert list(table["value"]) == [p.value for p in products.PRODUCTS]
    manifest = storage.read_json(bank / "truth" / "manifest.json")
    assert manifest["rows"]["products"] == len(products.PRODUCTS)
    stored = storage.count_rows(storage.table_files(bank / "lake", "product_holdings"))
    assert manifest["rows"]["product_holdings"] == stored > 0


def test_the_product_tables_pass_their_suites(bank, holdings):
    ids = storage.read_table(bank / "lake", "customers", columns=["customer_id"])["customer_id"]
    frames = {"products": storage.read_table(bank / "lake", "products"), "product_holdings": holdings}
    for table, frame in frames.items():
        result = gates.validate_frame(
            frame, table, CONFIG.end, PROJECT_ROOT / "expectations", {"customer_ids": ids}
        )
        assert result.success and not result.warnings, result.summary()


def test_the_catalogue_rejects_a_bad_product():
    with pytest.raises(ValueError, match="unknown family 'pension'"):
        products.Product("p", "pension", "Pension", 10.0)
    assert set(products.BY_ID) == set(products.PRODUCT_IDS) and len(products.PRODUCT_IDS) == 8


# ------------------------------------------------------------------------------------------ truth


def test_truth_has_every_customer_and_product_with_calibrated_rates(truth, bank):
    customers = storage.read_table(bank / "lake", "customers", columns=["customer_id"])
    assert list(truth.columns) == PRODUCT_TRUTH.column_names
    assert len(truth) == len(customers) * len(products.PRODUCT_IDS)
    assert not truth.duplicated(["customer_id", "product_id"]).any()
    means = truth.groupby("product_id", observed=True)["p_uptake_month"].mean()
    assert ((means > 0.003) & (means < 0.02)).all(), means
    factors = truth.groupby("product_id", observed=True)["offer_factor"].mean()
    assert ((factors > 0.8) & (factors < 1.2)).all(), factors
    assert truth["offer_factor"].between(0.1, 5.0).all()


def test_affinities_follow_their_drivers(bank, truth):
    customers = storage.read_table(
        bank / "lake", "customers", columns=["customer_id", "birth_year", "occupation"]
    )
    wide = truth.pivot(index="customer_id", columns="product_id", values="p_uptake_month").join(
        customers.set_index("customer_id")
    )
    age = CONFIG.month_starts[0].year - wide["birth_year"]
    assert wide.loc[age >= 55, "fixed_deposit"].mean() > 1.5 * wide.loc[age < 40, "fixed_deposit"].mean()
    assert wide.loc[age < 30, "cashback_card"].mean() > wide.loc[age >= 60, "cashback_card"].mean()
    assert wide.loc[age >= 35, "home_insurance"].mean() > 1.5 * wide.loc[age < 30, "home_insurance"].mean()


# ------------------------------------------------------------------------------------------ holdings


def test_holdings_follow_the_open_accounts(bank, holdings):
    balances = storage.read_table(bank / "lake", "balances", columns=["customer_id", "month_end"])
    keys = holdings[["customer_id", "month_end"]].drop_duplicates()
    joined = keys.merge(balances, how="left", indicator=True)
    assert (joined["_merge"] == "both").all()  # open at that month end: after signup, before closure
    assert not holdings.duplicated(["customer_id", "month_end", "product_id"]).any()
    assert (holdings["opened_on"] <= holdings["month_end"]).all()
    customers = storage.read_table(bank / "lake", "customers", columns=["customer_id", "signup_date"])
    signed = holdings.merge(customers, on="customer_id")
    assert (signed["opened_on"] >= signed["signup_date"]).all()


def test_initial_holdings_per_customer_and_rising_with_affinity(bank, holdings, truth):
    start = pd.Timestamp(CONFIG.start)
    customers = storage.read_table(bank / "lake", "customers", columns=["customer_id", "signup_date"])
    first = holdings[(holdings["month_end"] == holdings["month_end"].min()) & (holdings["opened_on"] < start)]
    before = customers.loc[customers["signup_date"] < start, "customer_id"]
    assert set(first["customer_id"]) <= set(before)
    per_customer = len(first) / len(before)
    assert 0.5 <= per_customer <= 2.5, per_customer
    # Within each product, customers holding it at the start have a higher affinity than those who do not.
    t = truth[truth["customer_id"].isin(before)].merge(
        first[["customer_id", "product_id"]].assign(holds=True), how="left", on=["customer_id", "product_id"]
    )
    t["holds"] = t["holds"].fillna(False).astype(bool)
    by = t.groupby(["product_id", "holds"], observed=True)["p_uptake_month"].mean().unstack()
    assert (by[True] > 1.2 * by[False]).all(), by


def test_uptakes_match_the_truth_with_the_association_bumps(held, truth):
    ids, held_at, open_at = held
    p = (
        truth.assign(j=truth["product_id"].astype(str).map(sp.P))
        .pivot(index="customer_id", columns="j", values="p_uptake_month")
        .reindex(ids)
        .to_numpy()
    )
    logit = np.log(p) - np.log1p(-p)
    months = sorted(held_at)
    realised = np.zeros(sp.N_PRODUCTS)
    expected = np.zeros(sp.N_PRODUCTS)
    variance = np.zeros(sp.N_PRODUCTS)
    for prev, cur in zip(months[:-1], months[1:], strict=True):
        # open at both month ends: signed up before the month and open at its end, as the generator requires
        pop = open_at[prev] & open_at[cur]
        eligible = pop[:, None] & ~held_at[prev]
        q = 1 / (1 + np.exp(-(logit + held_at[prev].astype(float) @ sp.LOG_BUMP)))
        realised += (eligible & held_at[cur]).sum(axis=0)
        expected += np.where(eligible, q, 0).sum(axis=0)
        variance += np.where(eligible, q * (1 - q), 0).sum(axis=0)
    assert (expected > 30).all(), expected
    z = (realised - expected) / np.sqrt(variance)
    assert (np.abs(z) < 4).all(), dict(zip(sp.PRODUCT_IDS, z.round(2), strict=True))


def test_association_rules_are_visible(held):
    _ids, held_at, _open = held
    last = held_at[max(held_at)]
    holders = last.any(axis=1)
    last = last[holders]

    def lift(antecedent: str, consequent: str) -> float:
        a, c = last[:, sp.P[antecedent]], last[:, sp.P[consequent]]
        return c[a].mean() / c.mean()

    assert lift("travel_card", "travel_insurance") > 1.5
    assert lift("personal_loan", "instalment_plan") > 1.2
    assert lift("savings_account", "fixed_deposit") > 1.2
    # A pair without a rule or a shared driver shows no such lift.
    assert lift("home_insurance", "cashback_card") < 1.2


def test_uptakes_with_a_bump_exceed_those_without(held, truth):
    ids, held_at, open_at = held
    months = sorted(held_at)
    ti, tc = sp.P["travel_insurance"], sp.P["travel_card"]
    p_ti = (
        truth[truth["product_id"] == "travel_insurance"]
        .set_index("customer_id")["p_uptake_month"]
        .reindex(ids)
        .to_numpy()
    )
    rate = {}
    for with_card in (True, False):
        taken = expected = 0.0
        for prev, cur in zip(months[:-1], months[1:], strict=True):
            eligible = (
                open_at[prev] & open_at[cur] & ~held_at[prev][:, ti] & (held_at[prev][:, tc] == with_card)
            )
            taken += (eligible & held_at[cur][:, ti]).sum()
            expected += p_ti[eligible].sum()  # organic, without the bump
        rate[with_card] = taken / expected
    assert rate[True] > 2.0 * rate[False], rate


# ------------------------------------------------------------------------------------------ offers


def _audience(n: int, *, age: int, acquisition: int, state: int, closed_us: int | None = None) -> sc.Audience:
    return sc.Audience(
        customer_id=np.arange(1, n + 1, dtype=np.int64),
        holdout=np.zeros(n, dtype=bool),
        age=np.full(n, age),
        income_band=np.full(n, 1),
        card_tier=np.full(n, 0),
        acquisition_channel=np.full(n, acquisition),
        repayment_due_day=np.full(n, 10),
        state=np.full(n, state),
        closed_us=np.full(n, np.iinfo(np.int64).max if closed_us is None else closed_us),
        has_app=np.zeros(n, dtype=bool),
    )


SENT_US = pd.Timestamp("2025-06-02 09:00").value // 1000
NONE_HELD = np.zeros((4, sp.N_PRODUCTS), dtype=bool)


def test_a_call_moves_persuadables_more_than_an_email():
    audience = _audience(4, age=25, acquisition=0, state=sc.DORMANT)
    p, f = np.full(4, 0.01), np.ones(4)
    call = sp.offer_truth(audience, "personal_loan", "call", SENT_US, p, f, NONE_HELD, 1)
    email = sp.offer_truth(audience, "personal_loan", "email", SENT_US, p, f, NONE_HELD, 1)
    assert (call["uplift_type"] == sc.PERSUADABLE).all()
    assert np.allclose(call["p_control"], email["p_control"])
    assert np.allclose(call["p_control"], 1 - 0.99 ** (14 / 30))
    assert ((call["p_treated"] - call["p_control"]) > (email["p_treated"] - email["p_control"]) + 0.05).all()


def test_do_not_disturb_customers_take_up_less_when_offered():
    audience = _audience(4, age=72, acquisition=sc.TELESALES, state=sc.ACTIVE)
    out = sp.offer_truth(
        audience, "savings_account", "call", SENT_US, np.full(4, 0.03), np.ones(4), NONE_HELD, 1
    )
    assert (out["uplift_type"] == sc.DO_NOT_DISTURB).all()
    assert (out["p_treated"] < out["p_control"]).all()


def test_a_higher_offer_factor_means_a_higher_uplift():
    audience = _audience(4, age=25, acquisition=0, state=sc.DORMANT)
    factor = np.array([0.2, 0.5, 1.0, 2.0])
    out = sp.offer_truth(audience, "cashback_card", "sms", SENT_US, np.full(4, 0.01), factor, NONE_HELD, 1)
    assert np.all(np.diff(out["p_treated"] - out["p_control"]) > 0)


def test_holdings_bump_the_control_and_a_held_or_closed_product_cannot_be_taken():
    audience = _audience(4, age=25, acquisition=0, state=sc.DORMANT)
    held = NONE_HELD.copy()
    held[1, sp.P["travel_card"]] = True
    held[2, sp.P["travel_insurance"]] = True
    out = sp.offer_truth(audience, "travel_insurance", "sms", SENT_US, np.full(4, 0.01), np.ones(4), held, 1)
    assert out["p_control"][1] > 3 * out["p_control"][0]
    assert out["p_control"][2] == out["p_treated"][2] == 0.0
    closed = _audience(4, age=25, acquisition=0, state=sc.DORMANT, closed_us=SENT_US - 1)
    out = sp.offer_truth(
        closed, "travel_insurance", "sms", SENT_US, np.full(4, 0.01), np.ones(4), NONE_HELD, 1
    )
    assert (out["p_treated"] == 0).all()
    with pytest.raises(ValueError, match="unknown product 'pension'"):
        sp.offer_truth(audience, "pension", "sms", SENT_US, np.full(4, 0.01), np.ones(4), NONE_HELD, 1)


def test_read_offer_truth_agrees_with_the_campaign_truth_types(bank):
    contacts = storage.read_table(bank / "truth", "campaigns")
    first = contacts[contacts["campaign_id"] == contacts["campaign_id"].min()]
    as_of = first["selected_at"].iloc[0].normalize()
    out = sp.read_offer_truth(bank, first["customer_id"].to_numpy(), "cashback_card", "call", as_of)
    assert list(out.columns) == ["customer_id", "p_control", "p_treated"]
    assert (out["customer_id"].to_numpy() == first["customer_id"].to_numpy()).all()
    kind = first["uplift_type"].astype(str).to_numpy()
    can_take = (out["p_control"] > 0).to_numpy()
    tau = (out["p_treated"] - out["p_control"]).to_numpy()
    assert (tau[(kind == "persuadable") & can_take] > 0).all()
    assert (tau[(kind == "do_not_disturb") & can_take] < 0).all()
    # Customers who hold the card already at the month end before cannot take it up.
    holdings = storage.read_table(bank / "lake", "product_holdings")
    before = holdings[(holdings["month_end"] < as_of) & (holdings["product_id"] == "cashback_card")]
    latest = before[before["month_end"] == before["month_end"].max()]
    holders = out["customer_id"].isin(latest["customer_id"])
    assert holders.any() and (out.loc[holders, "p_treated"] == 0).all()


def test_read_offer_truth_names_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="truth/products is absent"):
        sp.read_offer_truth(tmp_path, np.array([1]), "cashback_card", "sms", "2025-03-01")
