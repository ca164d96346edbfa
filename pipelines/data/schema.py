"""The canonical data model: every source table, its columns and Arrow types, keys, partitioning and PII.

This is the single definition the generator writes, ``io`` reads, the data-quality suites check and
``docs/data-model.md`` describes (a test keeps the suites and the doc in step with it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from pipelines.data import places, products

# Allowed category values. The generator draws from these, the suites check against them.
GENDERS = ("F", "M", "U")
CITY_TIERS = (1, 2, 3, 4)
INCOME_BANDS = ("low", "lower_middle", "middle", "upper_middle", "high")
OCCUPATIONS = ("salaried", "self_employed", "civil_servant", "student", "retired", "homemaker", "other")
CARD_TIERS = ("classic", "gold", "platinum", "infinite")
ACQUISITION_CHANNELS = ("branch", "online", "partner", "referral", "telesales")
MERCHANT_CATEGORIES = (
    "grocery",
    "dining",
    "fuel",
    "retail",
    "online_shopping",
    "travel",
    "airline",
    "entertainment",
    "utilities",
    "health",
    "education",
    "electronics",
)
TXN_CHANNELS = ("pos", "online", "mobile_wallet", "atm")
APP_EVENT_TYPES = (
    "login",
    "bill_view",
    "coupon_view",
    "points_redemption",
    "card_binding",
    "installment_application",
)
CONTACT_CHANNELS = ("sms", "email", "push", "call")
CONTACT_GROUPS = ("treatment", "holdout")
RESPONSE_EVENTS = (
    "delivered",
    "opened",
    "clicked",
    "visited",
    "app_installed",
    "registered",
    "card_bound",
    "converted",
)
UTM_SOURCES = ("sms", "email", "push", "call", "organic")
UTM_MEDIUMS = ("crm", "outbound", "app", "direct")
REGIONS = places.REGIONS  # the twelve UK ITL1 regions
CITY_NAMES = places.CITY_NAMES
PRODUCT_IDS = products.PRODUCT_IDS
PRODUCT_FAMILIES = products.FAMILIES

TIMESTAMP = pa.timestamp("us")


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    description: str
    nullable: bool = False
    pii: bool = False
    allowed: tuple | None = None


@dataclass(frozen=True)
class Table:
    name: str
    description: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()
    # Column whose calendar month names the partition folder (``month=YYYY-MM``); None: not partitioned.
    partition_by: str | None = None
    references: dict[str, str] = field(default_factory=dict)  # column -> "table.column"

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def pii_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.pii]

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.type, nullable=c.nullable) for c in self.columns])

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"table {self.name!r} has no column {name!r}")


def _cat(name: str, allowed: tuple, description: str, nullable: bool = False) -> Column:
    """A low-cardinality string column, stored dictionary-encoded."""
    return Column(
        name, pa.dictionary(pa.int8(), pa.string()), description, nullable=nullable, allowed=allowed
    )


CUSTOMERS = Table(
    "customers",
    "One row per card holder ever open during the data period (a snapshot taken at the end of the data).",
    (
        Column("customer_id", pa.int64(), "Customer key."),
        Column("signup_date", pa.date32(), "Card account opening date."),
        Column("birth_year", pa.int16(), "Year of birth."),
        _cat("gender", GENDERS, "F, M or U (not stated)."),
        Column(
            "city_tier",
            pa.int8(),
            "City tier of the home address, 1 (largest cities) to 4.",
            allowed=CITY_TIERS,
        ),
        _cat(
            "region",
            REGIONS,
            "Region (ITL1) of the home city; null where the source does not say. Coarse, not PII.",
            nullable=True,
        ),
        _cat(
            "city",
            CITY_NAMES,
            "Home city (its tier is city_tier); null where the source does not say. Coarse (no address), not PII.",
            nullable=True,
        ),
        _cat("income_band", INCOME_BANDS, "Declared income band at application."),
        _cat("occupation", OCCUPATIONS, "Declared occupation at application."),
        _cat("card_tier", CARD_TIERS, "Current card product tier."),
        Column("credit_limit", pa.float64(), "Credit limit in currency units."),
        _cat("acquisition_channel", ACQUISITION_CHANNELS, "Channel through which the customer was acquired."),
        Column("repayment_due_day", pa.int8(), "Day of month the card repayment is due (1-28)."),
        Column("marketing_opt_out", pa.bool_(), "Customer opted out of marketing."),
        Column("do_not_contact", pa.bool_(), "Regulatory or complaint-driven do-not-contact flag."),
        Column(
            "closed_date",
            pa.date32(),
            "Date the account was closed (attrition); null while open. Only closures before a run's as-of "
            "date are known at that date.",
            nullable=True,
        ),
        Column("full_name", pa.string(), "Customer name.", pii=True),
        Column("phone", pa.string(), "Mobile phone number.", pii=True),
        Column("email", pa.string(), "E-mail address.", pii=True),
        Column("national_id", pa.string(), "National identity number.", pii=True),
    ),
    key=("customer_id",),
)

BALANCES = Table(
    "balances",
    "Month-end position per open customer: assets under management and card balance.",
    (
        Column("customer_id", pa.int64(), "Customer key."),
        Column("month_end", pa.date32(), "Last day of the month the position is taken on."),
        Column("aum", pa.float64(), "Assets under management (deposits and investments) at month end."),
        Column("card_balance", pa.float64(), "Outstanding card balance at month end."),
    ),
    key=("customer_id", "month_end"),
    partition_by="month_end",
    references={"customer_id": "customers.customer_id"},
)

TRANSACTIONS = Table(
    "transactions",
    "Card transactions (purchases and cash withdrawals), one row each.",
    (
        Column("txn_id", pa.int64(), "Transaction key."),
        Column("customer_id", pa.int64(), "Customer key."),
        Column("txn_ts", TIMESTAMP, "Authorisation time (local time, microseconds)."),
        Column("amount", pa.float64(), "Amount in currency units, positive."),
        _cat("merchant_category", MERCHANT_CATEGORIES, "Merchant category group."),
        Column("is_cross_border", pa.bool_(), "Merchant abroad."),
        Column("is_installment", pa.bool_(), "Converted to an instalment plan."),
        _cat("channel", TXN_CHANNELS, "Point of sale, online (card not present), mobile wallet or ATM."),
    ),
    key=("txn_id",),
    partition_by="txn_ts",
    references={"customer_id": "customers.customer_id"},
)

APP_EVENTS = Table(
    "app_events",
    "Mobile banking app events.",
    (
        Column("event_id", pa.int64(), "Event key."),
        Column("customer_id", pa.int64(), "Customer key."),
        Column("event_ts", TIMESTAMP, "Event time."),
        _cat("event_type", APP_EVENT_TYPES, "What the customer did in the app."),
        Column(
            "lat",
            pa.float64(),
            "Latitude of the device, rounded to 2 decimals (about 1 km); null when location sharing is off.",
            nullable=True,
        ),
        Column(
            "lon",
            pa.float64(),
            "Longitude of the device, rounded to 2 decimals; null when location sharing is off.",
            nullable=True,
        ),
    ),
    key=("event_id",),
    partition_by="event_ts",
    references={"customer_id": "customers.customer_id"},
)

CAMPAIGN_CONTACTS = Table(
    "campaign_contacts",
    "Who was selected for each past campaign, with the randomised group: treatment customers were "
    "contacted, holdout customers were deliberately not.",
    (
        Column("campaign_id", pa.string(), "Campaign key, e.g. cmp-2025-03-reactivation."),
        Column("customer_id", pa.int64(), "Customer key."),
        _cat("channel", CONTACT_CHANNELS, "Channel the campaign used."),
        _cat("group", CONTACT_GROUPS, "treatment or holdout."),
        Column("selected_at", TIMESTAMP, "When the audience was drawn (same for both groups)."),
        Column("sent_at", TIMESTAMP, "When the message was sent; null for holdout.", nullable=True),
    ),
    key=("campaign_id", "customer_id"),
    partition_by="selected_at",
    references={"customer_id": "customers.customer_id"},
)

RESPONSES = Table(
    "responses",
    "Funnel events after a campaign (both groups: holdout customers can convert on their own), with the UTM "
    "parameters of the landing URL where the event came through a tracked link.",
    (
        Column("campaign_id", pa.string(), "Campaign key."),
        Column("customer_id", pa.int64(), "Customer key."),
        _cat("event_type", RESPONSE_EVENTS, "Funnel step."),
        Column("event_ts", TIMESTAMP, "Event time."),
        _cat("utm_source", UTM_SOURCES, "utm_source of the landing URL.", nullable=True),
        _cat("utm_medium", UTM_MEDIUMS, "utm_medium of the landing URL.", nullable=True),
        Column("utm_campaign", pa.string(), "utm_campaign (the campaign id).", nullable=True),
        Column("utm_content", pa.string(), "utm_content (creative variant).", nullable=True),
        Column("utm_term", pa.string(), "utm_term (offer term).", nullable=True),
    ),
    key=("campaign_id", "customer_id", "event_type"),
    partition_by="event_ts",
    references={"customer_id": "customers.customer_id"},
)

BRANCHES = Table(
    "branches",
    "The bank's branches, a small reference table that place rules and triggers measure distances to (a lake "
    "built from sources may lack it).",
    (
        Column("branch_id", pa.string(), "Branch key, e.g. BR001."),
        Column("name", pa.string(), "Branch name."),
        _cat("city", CITY_NAMES, "City the branch is in."),
        _cat("region", REGIONS, "Region (ITL1) of the city."),
        Column("lat", pa.float64(), "Latitude (WGS84, degrees)."),
        Column("lon", pa.float64(), "Longitude (WGS84, degrees)."),
    ),
    key=("branch_id",),
)

PRODUCTS = Table(
    "products",
    "The bank's products besides the card, a small reference table: what next-best-offer steps choose among and "
    "what one uptake earns (a lake built from sources may lack it).",
    (
        _cat("product_id", PRODUCT_IDS, "Product key."),
        _cat("family", PRODUCT_FAMILIES, "Product family."),
        Column("name", pa.string(), "Product name."),
        Column("value", pa.float64(), "The bank's margin from one uptake, GBP."),
    ),
    key=("product_id",),
)

PRODUCT_HOLDINGS = Table(
    "product_holdings",
    "Month-end snapshot of the products each open customer holds, one row per product held (a lake built from "
    "sources may lack it).",
    (
        Column("customer_id", pa.int64(), "Customer key."),
        Column("month_end", pa.date32(), "Last day of the month the holding is taken on."),
        _cat("product_id", PRODUCT_IDS, "Product held."),
        Column("opened_on", pa.date32(), "Day the customer took the product up (on or before month_end)."),
    ),
    key=("customer_id", "month_end", "product_id"),
    partition_by="month_end",
    references={"customer_id": "customers.customer_id"},
)

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        CUSTOMERS,
        BALANCES,
        TRANSACTIONS,
        APP_EVENTS,
        CAMPAIGN_CONTACTS,
        RESPONSES,
        BRANCHES,
        PRODUCTS,
        PRODUCT_HOLDINGS,
    )
}

# Ground truth written by the generator. Only tests, benchmarks and oracle metrics may read it.
CHURN_TRUTH = Table(
    "churn",
    "True churn probabilities from each month end (the oracle), and the hidden lifecycle state.",
    (
        Column("customer_id", pa.int64(), "Customer key."),
        Column("month_end", pa.date32(), "Month end the probabilities are taken from."),
        _cat("state", ("new", "active", "loyal", "dormant"), "Hidden lifecycle state during that month."),
        Column("p_churn_90d", pa.float64(), "P(account closed within 90 days after month_end)."),
        Column("p_churn_150d", pa.float64(), "P(account closed within 150 days after month_end)."),
    ),
    key=("customer_id", "month_end"),
    partition_by="month_end",
)

UPLIFT_TYPES = ("persuadable", "sure_thing", "lost_cause", "do_not_disturb")
CAMPAIGN_TRUTH = Table(
    "campaigns",
    "True response probabilities of every campaign contact (treatment and holdout), within 14 days of selection.",
    (
        Column("campaign_id", pa.string(), "Campaign key."),
        Column("customer_id", pa.int64(), "Customer key."),
        Column("selected_at", TIMESTAMP, "When the audience was drawn."),
        _cat("group", CONTACT_GROUPS, "treatment or holdout."),
        _cat("uplift_type", UPLIFT_TYPES, "The customer's hidden uplift type at selection."),
        Column("p_control", pa.float64(), "P(converted within 14 days of selection) without contact."),
        Column("p_treated", pa.float64(), "P(converted within 14 days of selection) when contacted."),
    ),
    key=("campaign_id", "customer_id"),
    partition_by="selected_at",
)

PRODUCT_TRUTH = Table(
    "products",
    "True product affinities per customer: the organic monthly uptake probability of each product and how "
    "strongly an offer of it moves the customer.",
    (
        Column("customer_id", pa.int64(), "Customer key."),
        _cat("product_id", PRODUCT_IDS, "Product."),
        Column(
            "p_uptake_month",
            pa.float64(),
            "P(taking the product up in a month without an offer, when not holding it), before the association "
            "bump of products held (pipelines.synthetic.products.ASSOCIATIONS).",
        ),
        Column(
            "offer_factor",
            pa.float64(),
            "How strongly an offer of the product moves the customer, relative to the generic persuadability "
            "(p_uptake_month over its mean for the product, clipped to [0.1, 5]).",
        ),
    ),
    key=("customer_id", "product_id"),
)

TRUTH_TABLES: dict[str, Table] = {t.name: t for t in (CHURN_TRUTH, CAMPAIGN_TRUTH, PRODUCT_TRUTH)}


def get_table(name: str) -> Table:
    """The table definition, with a clear error naming the known tables."""
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"unknown table {name!r}; known tables: {', '.join(TABLES)}") from None


def _type_name(t: pa.DataType) -> str:
    if pa.types.is_dictionary(t):
        return "category"
    return {
        "int64": "int64",
        "int16": "int16",
        "int8": "int8",
        "date32[day]": "date",
        "timestamp[us]": "timestamp",
    }.get(str(t), str(t))


def render_data_model() -> str:
    """The table reference of ``docs/data-model.md`` (between its GENERATED markers), made from this module."""
    lines: list[str] = []
    # Truth and lake may share a table name (products): the folder comes from the dict, not the name.
    tables = [("lake", t) for t in TABLES.values()] + [("truth", t) for t in TRUTH_TABLES.values()]
    for where, table in tables:
        part = f"partitioned by month of `{table.partition_by}`" if table.partition_by else "not partitioned"
        lines += [f"### `{where}/{table.name}`", "", table.description, ""]
        lines.append(f"Key: `{', '.join(table.key)}`; {part}.")
        if table.references:
            refs = ", ".join(f"`{c}` → `{t}`" for c, t in table.references.items())
            lines.append(f"References: {refs}.")
        lines += ["", "| column | type | null | description |", "|---|---|---|---|"]
        for c in table.columns:
            note = c.description
            if c.allowed is not None:
                note += " Allowed: " + ", ".join(f"`{v}`" for v in c.allowed) + "."
            if c.pii:
                note = "**PII.** " + note
            lines.append(f"| `{c.name}` | {_type_name(c.type)} | {'yes' if c.nullable else 'no'} | {note} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render_data_model(), end="")
