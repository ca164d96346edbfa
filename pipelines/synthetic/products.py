"""The synthetic bank's product world: who holds which product, who takes one up each month, and why (the truth).

The catalogue is :mod:`pipelines.data.products`. Everything here is vectorised NumPy over one chunk of customers.

Affinity. Each customer x product has a logit (:func:`affinity_logits`): a calibrated intercept, drivers the wide
table can see (age from ``birth_year``, income band, occupation, card tier, the spending persona through its
category mix in :data:`~pipelines.synthetic.behaviour.PERSONA_CATEGORY_MIX`, the revolving share, starting assets)
and a hidden customer x product normal term (sd :data:`HIDDEN_SD`). The travel card draws travel and airline
spenders with higher incomes; the cashback card grocery, retail and online shoppers, younger ones more; the
instalment plan revolvers and electronics buyers; the savings account customers with assets aged 30-60; the fixed
deposit large assets, age 55+ and retirees; the personal loan middle incomes aged 25-45 who revolve; travel
insurance travellers; home insurance customers aged 35+ with upper incomes. ``p_uptake_month = sigmoid(logit)``
is the organic monthly probability of taking the product up when not holding it; the intercepts make its mean
over customers :data:`MEAN_UPTAKE` (0.4 % to 1.8 % a month).

Associations (:data:`ASSOCIATIONS`). Holding the travel card multiplies the odds of taking up travel insurance by
4; the personal loan and the instalment plan multiply each other's by 3; the savings account the fixed deposit's
by 3. So the rules an association miner finds are real.

Holdings. A customer who signed up before the data start holds each product at the start with probability
``1 - (1 - p)^(INITIAL_EXPOSURE x tenure months, capped at INITIAL_MAX_MONTHS)`` (``p`` with the bumps of the
products drawn before it in :data:`INITIAL_ORDER`), opened on a uniform day of that window; about 1.3 products a
customer. From the month after signup, each month a customer open at its end takes up each product not held with
``p_uptake_month`` bumped by what it held at the end of the month before, on a uniform day. Products are never
closed. ``product_holdings`` has one row per product held by each customer open at a month end (the customers of
that month's ``balances``), so none after an account's closure month.

Offers. :func:`offer_truth` is the oracle of an offer of a product: the expected probability of taking it up within
:data:`~pipelines.synthetic.campaigns.RESPONSE_HORIZON_DAYS` without (``p_control``) and with (``p_treated``) the
offer. ``p_control`` is the bumped monthly probability over 14 days; the uplift is the generic one of the
customer's uplift type and the channel (:mod:`pipelines.synthetic.campaigns`) times ``offer_factor``: the
customer's ``p_uptake_month`` over the product's :data:`MEAN_UPTAKE`, clipped to [0.1, 5] (mean about 1 over
customers). :func:`read_offer_truth` answers it for a generated bank.

Determinism. The product world draws only from its own streams, ``SeedSequence([seed, chunk, PRODUCT_STREAM, j])``
(``j = 0``: the hidden terms and the initial holdings; ``j = m + 1``: month ``m``'s uptakes), so every other table
is byte-identical to a bank generated without products.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from pipelines.data import products, storage
from pipelines.data.schema import MERCHANT_CATEGORIES, PRODUCT_FAMILIES, PRODUCT_IDS, PRODUCT_TRUTH, TABLES
from pipelines.synthetic import campaigns as sc
from pipelines.synthetic.behaviour import PERSONA_CATEGORY_MIX

if TYPE_CHECKING:
    from pipelines.synthetic.bank import SynthConfig

PRODUCT_STREAM = 7_302  # third entropy word of the product streams (places use 7_301)
N_PRODUCTS = len(PRODUCT_IDS)
P = {name: j for j, name in enumerate(PRODUCT_IDS)}  # product id -> column index

# Mean organic monthly uptake per product (PRODUCT_IDS order); the intercepts below are calibrated to it on a
# 400k-customer draw of pipelines.synthetic.customers, and offer_factor divides by it.
MEAN_UPTAKE = np.array([0.008, 0.015, 0.018, 0.012, 0.004, 0.006, 0.007, 0.005])
INTERCEPTS = np.array([-5.731, -4.341, -4.713, -5.203, -6.392, -6.359, -5.868, -6.234])
HIDDEN_SD = 0.5
# (holding this, multiplies the odds of taking up that, by)
ASSOCIATIONS = (
    ("travel_card", "travel_insurance", 4.0),
    ("personal_loan", "instalment_plan", 3.0),
    ("instalment_plan", "personal_loan", 3.0),
    ("savings_account", "fixed_deposit", 3.0),
)
LOG_BUMP = np.zeros((N_PRODUCTS, N_PRODUCTS))  # [held, taken up] -> added log-odds
for _held, _taken, _factor in ASSOCIATIONS:
    LOG_BUMP[P[_held], P[_taken]] = np.log(_factor)
# Initial holdings: antecedents first, so a consequent's draw sees them.
INITIAL_ORDER = tuple(
    P[p]
    for p in (
        "travel_card",
        "cashback_card",
        "personal_loan",
        "savings_account",
        "home_insurance",
        "instalment_plan",
        "fixed_deposit",
        "travel_insurance",
    )
)
INITIAL_EXPOSURE = 0.8  # months of uptake-equivalent exposure per month of tenure before the data start
INITIAL_MAX_MONTHS = 60
OFFER_FACTOR_RANGE = (0.1, 5.0)
P_TREATED_RANGE = (0.0002, 0.9)  # as pipelines.synthetic.campaigns.contact_truth clips

_CATEGORY = {c: i for i, c in enumerate(MERCHANT_CATEGORIES)}
_MIX = PERSONA_CATEGORY_MIX
_TRAVEL_SHARE = _MIX[:, _CATEGORY["travel"]] + _MIX[:, _CATEGORY["airline"]]  # per persona
_SHOP_SHARE = _MIX[:, [_CATEGORY[c] for c in ("grocery", "retail", "online_shopping")]].sum(axis=1)
_ELECTRONICS_SHARE = _MIX[:, _CATEGORY["electronics"]]
RETIRED = 4  # schema.OCCUPATIONS index


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def affinity_drivers(cust: dict, start_year: int) -> np.ndarray:
    """(n, products) observable part of the affinity logits, without intercepts, from the customers' attributes
    and latent traits (``_persona``, ``_revolve``, ``_aum_start``)."""
    age = start_year - cust["birth_year"].astype(np.float64)
    income = cust["income_band"].astype(np.float64)
    tier = cust["card_tier"].astype(np.float64)
    retired = cust["occupation"] == RETIRED
    persona = cust["_persona"]
    travel, shop, electronics = _TRAVEL_SHARE[persona], _SHOP_SHARE[persona], _ELECTRONICS_SHARE[persona]
    revolve = cust["_revolve"] - 0.4  # beta(2, 3): mean 0.4
    assets = np.log(cust["_aum_start"]) - np.log(4_000) - 1.2  # about centred
    d = np.zeros((age.size, N_PRODUCTS))
    d[:, P["travel_card"]] = 6.0 * travel + 0.35 * (income - 2) + 0.2 * tier
    d[:, P["cashback_card"]] = 3.0 * (shop - 0.5) - 0.03 * (age - 40)
    d[:, P["instalment_plan"]] = 2.5 * revolve + 12.0 * electronics
    d[:, P["savings_account"]] = 0.5 * assets + 0.6 * ((age >= 30) & (age <= 60))
    d[:, P["fixed_deposit"]] = 0.8 * assets + 0.9 * (age >= 55) + 0.6 * retired
    d[:, P["personal_loan"]] = (
        0.7 * ((income >= 1) & (income <= 3)) + 0.8 * ((age >= 25) & (age <= 45)) + 2.0 * revolve
    )
    d[:, P["travel_insurance"]] = 7.0 * travel + 0.15 * income
    d[:, P["home_insurance"]] = 0.9 * (age >= 35) + 0.35 * (income - 2)
    return d


def affinity_logits(rng: np.random.Generator, cust: dict, start_year: int) -> np.ndarray:
    """(n, products) logits of the organic monthly uptake: intercepts, drivers and the hidden normal term."""
    hidden = rng.normal(0.0, HIDDEN_SD, (cust["customer_id"].size, N_PRODUCTS))
    return INTERCEPTS + affinity_drivers(cust, start_year) + hidden


def offer_factors(p_uptake_month: np.ndarray) -> np.ndarray:
    """How strongly an offer moves each customer, per product: ``p_uptake_month`` over the product's mean."""
    return np.clip(p_uptake_month / MEAN_UPTAKE, *OFFER_FACTOR_RANGE)


def _rng(config: SynthConfig, chunk: int, stream: int) -> np.random.Generator:
    """Product stream ``stream`` of chunk ``chunk`` (0: hidden terms and initial holdings, ``m + 1``: month ``m``)."""
    return np.random.default_rng(np.random.SeedSequence([config.seed, chunk, PRODUCT_STREAM, stream]))


class ProductWorld:
    """The products of one chunk of customers: their truth, holdings carried month to month, and the tables.

    ``cust`` is the chunk's customers as :func:`~pipelines.synthetic.customers.draw_customers` gives them (before
    ``_aum_start`` is popped); ``signup_month`` each customer's signup month relative to the data start.
    """

    def __init__(self, config: SynthConfig, chunk: int, cust: dict, signup_month: np.ndarray) -> None:
        self.config, self.chunk = config, chunk
        self.customer_id = cust["customer_id"]
        self.signup_month = signup_month
        start = config.month_starts[0]
        rng = _rng(config, chunk, 0)
        self.logit = affinity_logits(rng, cust, start.year)
        self.p_uptake = _sigmoid(self.logit)
        n = self.customer_id.size
        u_hold, u_day = rng.random((n, N_PRODUCTS)), rng.random((n, N_PRODUCTS))

        start_d = np.datetime64(start.date(), "D").astype(np.int64)
        signup_d = cust["signup_date"].astype("datetime64[D]").astype(np.int64)
        before = signup_d < start_d
        window = np.minimum(start_d - signup_d, INITIAL_MAX_MONTHS * 30)  # days of tenure that count
        exposure = INITIAL_EXPOSURE * window / 30.4
        self.held = np.zeros((n, N_PRODUCTS), dtype=bool)
        for j in INITIAL_ORDER:
            p = _sigmoid(self.logit[:, j] + self.held.astype(np.float64) @ LOG_BUMP[:, j])
            self.held[:, j] = before & (u_hold[:, j] < 1.0 - (1.0 - p) ** exposure)
        self.opened = start_d - 1 - np.floor(u_day * np.maximum(window, 1)[:, None]).astype(np.int64)

    def month_table(self, m: int, open_idx: np.ndarray) -> pa.Table:
        """Draw month ``m``'s uptakes and return its ``product_holdings`` rows: the holdings at its end of the
        customers ``open_idx`` (row indices of the customers open at that month end)."""
        start = self.config.month_starts[m]
        days = start.days_in_month
        rng = _rng(self.config, self.chunk, m + 1)
        n = self.customer_id.size
        u, day = rng.random((n, N_PRODUCTS)), rng.integers(0, days, (n, N_PRODUCTS))
        is_open = np.zeros(n, dtype=bool)
        is_open[open_idx] = True
        p = _sigmoid(self.logit + self.held.astype(np.float64) @ LOG_BUMP)
        eligible = (is_open & (self.signup_month < m))[:, None] & ~self.held
        taken = eligible & (u < p)
        start_d = np.datetime64(start.date(), "D").astype(np.int64)
        self.opened = np.where(taken, start_d + day, self.opened)
        self.held |= taken

        rows, cols = np.nonzero(self.held[open_idx])
        who = open_idx[rows]
        month_end = np.datetime64((start + pd.offsets.MonthEnd(0)).date(), "D")
        return pa.table(
            {
                "customer_id": pa.array(self.customer_id[who]),
                "month_end": pa.array(np.full(who.size, month_end)),
                "product_id": sc.dict_array(cols, PRODUCT_IDS),
                "opened_on": pa.array(self.opened[who, cols].astype("datetime64[D]")),
            },
            schema=TABLES["product_holdings"].arrow_schema,
        )

    def truth_table(self) -> pa.Table:
        """The chunk's ``truth/products``: p_uptake_month and offer_factor per customer x product."""
        n = self.customer_id.size
        return pa.table(
            {
                "customer_id": pa.array(np.repeat(self.customer_id, N_PRODUCTS)),
                "product_id": sc.dict_array(np.tile(np.arange(N_PRODUCTS), n), PRODUCT_IDS),
                "p_uptake_month": pa.array(self.p_uptake.ravel()),
                "offer_factor": pa.array(offer_factors(self.p_uptake).ravel()),
            },
            schema=PRODUCT_TRUTH.arrow_schema,
        )


def products_table() -> pa.Table:
    """The ``products`` table: the catalogue of :data:`pipelines.data.products.PRODUCTS`."""
    rows = products.PRODUCTS
    return pa.table(
        {
            "product_id": sc.dict_array(
                np.array([PRODUCT_IDS.index(p.product_id) for p in rows]), PRODUCT_IDS
            ),
            "family": sc.dict_array(
                np.array([PRODUCT_FAMILIES.index(p.family) for p in rows]), PRODUCT_FAMILIES
            ),
            "name": pa.array([p.name for p in rows], pa.string()),
            "value": pa.array([p.value for p in rows], pa.float64()),
        },
        schema=TABLES["products"].arrow_schema,
    )


# --------------------------------------------------------------------------------------------------------------
# The oracle of an offer


def offer_truth(
    audience: sc.Audience,
    product_id: str,
    channel: str,
    sent_us: int,
    p_uptake_month: np.ndarray,
    offer_factor: np.ndarray,
    held: np.ndarray,
    seed: int,
) -> dict[str, np.ndarray]:
    """Per customer of ``audience``: uplift type, and the expected ``p_control`` and ``p_treated`` of taking
    ``product_id`` up within ``RESPONSE_HORIZON_DAYS`` of an offer through ``channel`` sent at ``sent_us`` (epoch µs).

    ``p_uptake_month`` and ``offer_factor`` are the customers' truth for the product; ``held`` (n, products) what
    they hold when the offer goes out (the association bumps; a customer who already holds the product, or whose
    account is closed by then, cannot take it up: both probabilities 0). No noise: these are expectations.
    """
    if product_id not in P:
        raise ValueError(f"unknown product {product_id!r}; known: {', '.join(PRODUCT_IDS)}")
    if channel not in sc.CHANNEL_EFFECT:
        raise ValueError(f"unknown channel {channel!r}; known: {', '.join(sc.CHANNEL_EFFECT)}")
    j = P[product_id]
    held = np.asarray(held, dtype=bool)
    p_month = _sigmoid(
        _logit(np.asarray(p_uptake_month, dtype=np.float64)) + held.astype(np.float64) @ LOG_BUMP[:, j]
    )
    p_control = 1.0 - (1.0 - p_month) ** (sc.RESPONSE_HORIZON_DAYS / 30)
    kind = sc.uplift_types(
        sc.type_probabilities(
            audience.age,
            audience.income_band,
            audience.card_tier,
            audience.acquisition_channel,
            audience.state,
        ),
        sc.customer_uniforms(audience.customer_id, seed),
    )
    scale = np.where(kind == sc.DO_NOT_DISTURB, sc.CHANNEL_ANNOYANCE[channel], sc.CHANNEL_EFFECT[channel])
    uplift = sc.TYPE_UPLIFT[kind] * scale * np.asarray(offer_factor, dtype=np.float64)
    p_treated = np.clip(p_control + uplift, *P_TREATED_RANGE)
    can_take = ~held[:, j] & (np.asarray(audience.closed_us) > sent_us)
    return {
        "uplift_type": kind,
        "p_control": np.where(can_take, p_control, 0.0),
        "p_treated": np.where(can_take, p_treated, 0.0),
    }


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return np.log(p) - np.log1p(-p)


def read_offer_truth(
    data_dir: Path, customer_ids: np.ndarray, product_id: str, channel: str, as_of: pd.Timestamp | str
) -> pd.DataFrame:
    """:func:`offer_truth` of a generated bank under ``data_dir`` (``lake/`` and ``truth/``) for an offer sent at
    9:00 on ``as_of``: columns ``customer_id``, ``p_control``, ``p_treated``, in the order of ``customer_ids``.

    The uplift type uses the hidden state of ``truth/churn`` in ``as_of``'s month (or the newest month before it),
    as :func:`~pipelines.synthetic.campaigns.simulate_run_responses` does; the holdings are those at the last month
    end before ``as_of``. Raises naming the file or table when the bank lacks what it needs.
    """
    data_dir = Path(data_dir)
    lake, truth_dir = data_dir / "lake", data_dir / "truth"
    for root, name in ((truth_dir, "products"), (truth_dir, "churn"), (lake, "product_holdings")):
        if not storage.table_dir(root, name).is_dir():
            raise FileNotFoundError(
                f"{storage.table_dir(root, name)} is absent: offer truth needs a bank generated with products"
            )
    if product_id not in P:
        raise ValueError(f"unknown product {product_id!r}; known: {', '.join(PRODUCT_IDS)}")
    as_of = pd.Timestamp(as_of)
    seed = int(storage.read_json(truth_dir / "manifest.json")["config"]["seed"])
    ids = np.asarray(customer_ids, dtype=np.int64)
    month = storage.month_key(as_of)
    audience = sc.lake_audience(data_dir, ids, as_of)
    held = np.zeros((ids.size, N_PRODUCTS), dtype=bool)
    held_months = [m for m in storage.list_months(lake, "product_holdings") if m < month]
    if held_months:
        h = storage.read_table(
            lake, "product_holdings", months=[held_months[-1]], columns=["customer_id", "product_id"]
        )
        pos = pd.Index(ids).get_indexer(h["customer_id"])
        known = pos >= 0
        held[pos[known], h["product_id"].astype(str).map(P).to_numpy()[known]] = True
    t = storage.read_table(
        truth_dir, "products", columns=["customer_id", "product_id", "p_uptake_month", "offer_factor"]
    )
    t = t[t["product_id"].astype(str) == product_id].set_index("customer_id").reindex(ids)
    if t["p_uptake_month"].isna().any():
        raise ValueError(f"truth/products lacks product {product_id!r} for some of the customers")
    sent_us = as_of.normalize().value // 1000 + 9 * sc.US_PER_HOUR
    out = offer_truth(
        audience,
        product_id,
        channel,
        sent_us,
        t["p_uptake_month"].to_numpy(),
        t["offer_factor"].to_numpy(),
        held,
        seed,
    )
    return pd.DataFrame({"customer_id": ids, "p_control": out["p_control"], "p_treated": out["p_treated"]})
