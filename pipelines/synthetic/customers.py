"""The synthetic bank's customers: static attributes, latent traits, and the customers table with its PII.

Each customer has static attributes (age, income band, card tier, acquisition channel ...), a spending persona, a
baseline activity level and a churn-risk multiplier ``r`` built from those attributes plus a small hidden frailty
(:func:`draw_customers`); names, phone numbers, e-mail addresses and national ids are drawn last, for the customers
table (:func:`customers_table`).

Each customer's home city (and so region) is drawn from the cities of the customer's ``city_tier`` in
:mod:`pipelines.data.places`, weighted by population (:data:`HOME_CITY_WEIGHTS`), together with whether the customer
shares the app's location (:func:`draw_home`). These draws come from a place stream of their own, so every other
column is the same as without them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from pipelines.data import places
from pipelines.data.schema import (
    ACQUISITION_CHANNELS,
    CARD_TIERS,
    CITY_NAMES,
    GENDERS,
    INCOME_BANDS,
    OCCUPATIONS,
    REGIONS,
    TABLES,
)
from pipelines.synthetic import campaigns as sc
from pipelines.synthetic.draws import draw
from pipelines.synthetic.lifecycle import transition_matrices

if TYPE_CHECKING:
    from pipelines.synthetic.bank import SynthConfig

CUSTOMER_ID_BASE = 1_000_000_000
# Spending personas; each has its own category mix (behaviour.PERSONA_CATEGORY_MIX, same order).
PERSONAS = ("everyday", "traveler", "online_shopper", "family")
PERSONA_SHARES = np.array([0.45, 0.12, 0.23, 0.20])

FIRST_NAMES = np.array(
    [
        "James",
        "Mary",
        "John",
        "Patricia",
        "Robert",
        "Jennifer",
        "Michael",
        "Linda",
        "David",
        "Elizabeth",
        "William",
        "Susan",
        "Richard",
        "Jessica",
        "Joseph",
        "Sarah",
        "Thomas",
        "Karen",
        "Charles",
        "Lisa",
        "Wei",
        "Fang",
        "Mohammed",
        "Fatima",
        "Priya",
        "Arjun",
        "Olga",
        "Ivan",
        "Sofia",
        "Lucas",
        "Emma",
        "Noah",
        "Aisha",
        "Omar",
        "Yuki",
        "Hana",
        "Carlos",
        "Lucia",
        "Mateo",
        "Chloe",
    ]
)
LAST_NAMES = np.array(
    [
        "Smith",
        "Johnson",
        "Williams",
        "Brown",
        "Jones",
        "Garcia",
        "Miller",
        "Davis",
        "Rodriguez",
        "Martinez",
        "Wilson",
        "Anderson",
        "Taylor",
        "Thomas",
        "Moore",
        "Jackson",
        "Martin",
        "Lee",
        "Thompson",
        "White",
        "Harris",
        "Clark",
        "Lewis",
        "Walker",
        "Hall",
        "Young",
        "King",
        "Wright",
        "Lopez",
        "Hill",
        "Scott",
        "Green",
        "Adams",
        "Baker",
        "Nelson",
        "Carter",
        "Mitchell",
        "Perez",
        "Roberts",
        "Chen",
    ]
)
# Weight of a city among the cities of its tier: its approximate built-up-area population in thousands (censuses
# of 2011, rounded; Leeds is West Yorkshire's, Newcastle Tyneside's, Southampton South Hampshire's).
HOME_CITY_WEIGHTS = {
    "London": 9_790,
    "Birmingham": 2_440,
    "Manchester": 2_550,
    "Glasgow": 990,
    "Leeds": 1_780,
    "Liverpool": 860,
    "Bristol": 620,
    "Sheffield": 690,
    "Edinburgh": 480,
    "Newcastle upon Tyne": 780,
    "Cardiff": 450,
    "Belfast": 580,
    "Nottingham": 730,
    "Leicester": 510,
    "Southampton": 860,
    "Brighton": 470,
    "Plymouth": 260,
    "Aberdeen": 200,
    "Norwich": 210,
    "Exeter": 120,
    "Derby": 270,
    "Coventry": 360,
    "Swansea": 300,
    "York": 150,
    "Oxford": 170,
    "Cambridge": 160,
    "Inverness": 60,
    "Carlisle": 75,
    "Lincoln": 115,
    "Truro": 20,
    "Hereford": 60,
    "Bangor": 20,
    "Dundee": 150,
    "Lancaster": 140,
    "Durham": 65,
    "Ipswich": 180,
    "Canterbury": 55,
    "Derry": 95,
}
LOCATION_OFF_SHARE = 0.2  # app users who never share their location
CITY_REGION = np.array([REGIONS.index(c.region) for c in places.CITIES])  # city index -> region index


def _tier_cumulative() -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per city tier: the indices of its cities (into ``places.CITIES``) and their cumulative weights."""
    if set(HOME_CITY_WEIGHTS) != set(CITY_NAMES):
        raise ValueError("HOME_CITY_WEIGHTS must weigh exactly the cities of pipelines.data.places")
    out = {}
    for tier in sorted({c.tier for c in places.CITIES}):
        members = np.array([CITY_NAMES.index(c.name) for c in places.cities_of_tier(tier)])
        weights = np.array([HOME_CITY_WEIGHTS[CITY_NAMES[i]] for i in members], dtype=float)
        cum = np.cumsum(weights / weights.sum())
        cum[-1] = 1.0
        out[tier] = (members, cum)
    return out


_TIER_CITIES = _tier_cumulative()

EMAIL_DOMAINS = np.array(["example.com", "example.org", "example.net"])
ID_LETTERS = np.array(list("ABCEGHJKLMNPRSTWXYZ"))
ID_SUFFIX = np.array(list("ABCD"))
ID_SPACE = ID_LETTERS.size**2 * 10**6 * ID_SUFFIX.size  # 1,444,000,000 distinct ids
ID_MULTIPLIER = 1_000_003  # prime, coprime with ID_SPACE: index -> id is a bijection


def draw_customers(
    rng: np.random.Generator, n: int, first: int, config: SynthConfig
) -> dict[str, np.ndarray]:
    """The ``n`` customers from index ``first`` on, as arrays by column: the customers table's columns plus latent
    traits prefixed ``_`` (age, persona, activity rates, revolving share, starting assets, the monthly transition
    matrices and the national-id salt) that the other generators read and the lake never shows."""
    start = config.month_starts[0]
    ids = CUSTOMER_ID_BASE + first + np.arange(n, dtype=np.int64)

    # Signup: most customers predate the data (tenure up to 12 years), some join during it.
    is_new = rng.random(n) < config.new_customer_share
    tenure_days = np.ceil(rng.exponential(900.0, n)).clip(1, 12 * 365).astype(np.int64)
    span_days = (config.end - start).days
    new_offset = rng.integers(0, span_days, n)
    start_d = np.datetime64(start.date(), "D")
    signup = np.where(is_new, start_d + new_offset, start_d - tenure_days)

    age = np.clip(rng.normal(41, 13, n), 18, 88)
    birth_year = (start.year - age).astype(np.int16)
    gender = draw(rng, np.array([0.48, 0.48, 0.04]), n)
    city_tier = draw(rng, np.array([0.22, 0.34, 0.27, 0.17]), n) + 1
    income = np.clip(
        draw(rng, np.array([0.18, 0.26, 0.3, 0.17, 0.09]), n)
        + (age > 35) * rng.integers(0, 2, n)
        - (age < 25),
        0,
        4,
    )
    # Students and retirees are assigned by age below.
    occupation = draw(rng, np.array([0.52, 0.12, 0.09, 0.0, 0.0, 0.07, 0.2]), n)
    occupation = np.where(age < 24, np.where(rng.random(n) < 0.6, 3, occupation), occupation)
    occupation = np.where(age > 63, np.where(rng.random(n) < 0.75, 4, occupation), occupation)
    tier = np.clip(income - 1 + draw(rng, np.array([0.25, 0.5, 0.25]), n) - 1, 0, 3)
    credit_limit = np.round(np.array([2_000, 6_000, 15_000, 40_000])[tier] * rng.lognormal(0, 0.35, n), -2)
    acquisition = draw(rng, np.array([0.3, 0.35, 0.15, 0.1, 0.1]), n)
    due_day = rng.integers(1, 29, n).astype(np.int8)
    opt_out = rng.random(n) < 0.08
    dnc = rng.random(n) < 0.02

    persona = draw(rng, PERSONA_SHARES, n)
    txn_rate = rng.lognormal(np.log(8.5), 0.55, n) * (1 + 0.08 * income)
    log_amount = np.log(28) + 0.18 * income + 0.12 * tier + rng.normal(0, 0.25, n)
    app_user = rng.random(n) < np.clip(1.05 - 0.012 * age, 0.2, 0.9)
    login_rate = np.where(app_user, rng.lognormal(np.log(7), 0.6, n), 0.0)
    salary_group = draw(rng, np.array([0.3, 0.2, 0.5]), n)
    revolve = rng.beta(2, 3, n)
    aum_start = rng.lognormal(np.log(4_000) + 0.6 * income, 1.0, n)

    # Churn risk: observable drivers plus a small hidden frailty.
    log_risk = (
        0.45 * (income <= 1)
        - 0.35 * (tier >= 2)
        + 0.35 * np.isin(acquisition, (2, 4))  # partner and telesales acquisitions leave sooner
        - 0.25 * (age > 50)
        + 0.3 * (age < 28)
        - 0.45 * (np.log(txn_rate) - np.log(8.5))  # lighter users leave sooner
        - 0.2 * app_user
        + rng.normal(0, 0.2, n)
    )
    risk = np.exp(log_risk)
    return {
        "customer_id": ids,
        "signup_date": signup,
        "birth_year": birth_year,
        "gender": gender,
        "city_tier": city_tier.astype(np.int8),
        "income_band": income,
        "occupation": occupation,
        "card_tier": tier,
        "credit_limit": credit_limit,
        "acquisition_channel": acquisition,
        "repayment_due_day": due_day,
        "marketing_opt_out": opt_out,
        "do_not_contact": dnc,
        "_age": age,
        "_persona": persona,
        "_txn_rate": txn_rate,
        "_log_amount": log_amount,
        "_login_rate": login_rate,
        "_salary_group": salary_group,
        "_revolve": revolve,
        "_aum_start": aum_start,
        "_transition": transition_matrices(risk),
        "_id_salt": int(np.random.default_rng(config.seed).integers(0, ID_SPACE)),
    }


def draw_home(rng: np.random.Generator, city_tier: np.ndarray) -> dict[str, np.ndarray]:
    """Each customer's home ``city`` (an index into ``places.CITIES``: one of the cities of its ``city_tier``, by
    :data:`HOME_CITY_WEIGHTS`), its ``region`` (an index into ``REGIONS``) and ``_shares_location`` (False for about
    :data:`LOCATION_OFF_SHARE` of customers: their app events carry no location). ``rng`` is the place stream."""
    u = rng.random(city_tier.size)
    shares = rng.random(city_tier.size) >= LOCATION_OFF_SHARE
    city = np.full(city_tier.size, -1, dtype=np.int64)
    for tier, (members, cum) in _TIER_CITIES.items():
        sel = city_tier == tier
        city[sel] = members[np.minimum(np.searchsorted(cum, u[sel], side="right"), members.size - 1)]
    if (city < 0).any():
        raise ValueError(
            f"city_tier must be one of {sorted(_TIER_CITIES)}, got {np.unique(city_tier[city < 0])}"
        )
    return {"city": city, "region": CITY_REGION[city], "_shares_location": shares}


def national_ids(index: np.ndarray, salt: int) -> np.ndarray:
    """Distinct national-id strings (``AB123456C``) for distinct customer indices below ``ID_SPACE``."""
    code = (index.astype(np.int64) * ID_MULTIPLIER + salt) % ID_SPACE
    code, suffix = np.divmod(code, ID_SUFFIX.size)
    code, digits = np.divmod(code, 10**6)
    first, second = np.divmod(code, ID_LETTERS.size)
    return np.char.add(
        np.char.add(ID_LETTERS[first], ID_LETTERS[second]),
        np.char.add(np.char.zfill(digits.astype(str), 6), ID_SUFFIX[suffix]),
    )


def customers_table(rng: np.random.Generator, cust: dict, closed_date: np.ndarray) -> pa.Table:
    n = cust["customer_id"].size
    first = FIRST_NAMES[rng.integers(0, FIRST_NAMES.size, n)]
    last = LAST_NAMES[rng.integers(0, LAST_NAMES.size, n)]
    full_name = np.char.add(np.char.add(first, " "), last)
    phone = np.char.add("+44 7", np.char.zfill(rng.integers(0, 10**9, n).astype(str), 9))
    email = np.char.add(
        np.char.add(np.char.add(np.char.lower(first), "."), np.char.lower(last)),
        np.char.add(
            np.char.add(rng.integers(1, 1000, n).astype(str), "@"), EMAIL_DOMAINS[rng.integers(0, 3, n)]
        ),
    )
    national_id = national_ids(cust["customer_id"] - CUSTOMER_ID_BASE, cust["_id_salt"])
    return pa.table(
        {
            "customer_id": pa.array(cust["customer_id"]),
            "signup_date": pa.array(cust["signup_date"].astype("datetime64[D]")),
            "birth_year": pa.array(cust["birth_year"]),
            "gender": sc.dict_array(cust["gender"], GENDERS),
            "city_tier": pa.array(cust["city_tier"]),
            "region": sc.dict_array(cust["region"], REGIONS),
            "city": sc.dict_array(cust["city"], CITY_NAMES),
            "income_band": sc.dict_array(cust["income_band"], INCOME_BANDS),
            "occupation": sc.dict_array(cust["occupation"], OCCUPATIONS),
            "card_tier": sc.dict_array(cust["card_tier"], CARD_TIERS),
            "credit_limit": pa.array(cust["credit_limit"].astype(np.float64)),
            "acquisition_channel": sc.dict_array(cust["acquisition_channel"], ACQUISITION_CHANNELS),
            "repayment_due_day": pa.array(cust["repayment_due_day"]),
            "marketing_opt_out": pa.array(cust["marketing_opt_out"]),
            "do_not_contact": pa.array(cust["do_not_contact"]),
            "closed_date": pa.array(closed_date.astype("datetime64[D]")),
            "full_name": pa.array(full_name.astype(str), pa.string()),
            "phone": pa.array(phone.astype(str), pa.string()),
            "email": pa.array(email.astype(str), pa.string()),
            "national_id": pa.array(national_id.astype(str), pa.string()),
        },
        schema=TABLES["customers"].arrow_schema,
    )
