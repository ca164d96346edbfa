"""Products: the bank's catalogue of what it can offer a customer besides the card, and what one uptake earns.

The synthetic bank's customers hold and take up :data:`PRODUCTS` over time (``product_holdings``; the generator is
:mod:`pipelines.synthetic.products`); the next-best-offer steps choose among them. Each product belongs to one of
:data:`FAMILIES` and has a ``value``: the bank's margin from one uptake, in GBP, which offer arbitration weighs a
propensity with. The generator writes the ``products`` table from this catalogue, as it writes ``branches`` from
:mod:`pipelines.data.places`.
"""

from __future__ import annotations

from dataclasses import dataclass

FAMILIES = ("card", "instalment", "deposit", "loan", "insurance")


@dataclass(frozen=True)
class Product:
    product_id: str
    family: str
    name: str
    value: float  # the bank's margin from one uptake, GBP

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(
                f"product {self.product_id!r}: unknown family {self.family!r}; known: {FAMILIES}"
            )
        if self.value <= 0:
            raise ValueError(f"product {self.product_id!r}: value must be positive, got {self.value}")


PRODUCTS: tuple[Product, ...] = (
    Product("travel_card", "card", "Travel credit card", 120.0),
    Product("cashback_card", "card", "Cashback credit card", 80.0),
    Product("instalment_plan", "instalment", "Instalment plan", 60.0),
    Product("savings_account", "deposit", "Easy-access savings account", 50.0),
    Product("fixed_deposit", "deposit", "Fixed-term deposit", 90.0),
    Product("personal_loan", "loan", "Personal loan", 250.0),
    Product("travel_insurance", "insurance", "Annual travel insurance", 40.0),
    Product("home_insurance", "insurance", "Home insurance", 70.0),
)
PRODUCT_IDS: tuple[str, ...] = tuple(p.product_id for p in PRODUCTS)
BY_ID: dict[str, Product] = {p.product_id: p for p in PRODUCTS}
