"""The feature catalogue: every column of the customer wide table with its definition, window and source table,
and the window contract a snapshot obeys.

Each feature also carries its plain-language wording (:class:`pipelines.features.plain.Plain`), how a reason code
naming it reads in a list export; a feature cannot be defined without one.
``wide_table.build_features`` computes exactly these columns (a test checks the two lists are the same);
``docs/features.md`` is rendered from here: ``python -m pipelines.features.catalogue``.

:data:`ATTRIBUTES` are customer columns the campaign run's wide table also carries (``features.attributes``) for
audience rules and breakdowns, never model inputs: they are not in :data:`FEATURE_NAMES`, which is what training
and scoring read.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.data.places import CITY_NAMES, REGIONS
from pipelines.data.schema import APP_EVENT_TYPES, MERCHANT_CATEGORIES, TABLES
from pipelines.features.plain import Plain

ID = "customer_id"
TXN_WINDOWS = (7, 30, 90, 180)
LOGIN_WINDOWS = (7, 30, 90)
LOOKBACK_DAYS = 180
STATIC_CATEGORIES = ("gender", "income_band", "occupation", "card_tier", "acquisition_channel")
# Without these there is no wide table; without an optional one its features are left out (not filled in). The
# gates decide which tables a lake may lack: a lake built from declared sources (``pmp ingest``) may lack any of the
# optional ones, a campaign-history source even its transactions; the synthetic bank must hold them all.
REQUIRED_TABLES = ("customers",)
OPTIONAL_TABLES = ("transactions", "app_events", "balances", "campaign_contacts", "responses")


@dataclass(frozen=True)
class WindowContract:
    """What a snapshot may see and what its label looks at.

    Features use events in ``(as_of - lookback_days, as_of)`` (age under ``lookback_days`` days, as every N-day
    window holds age < N); a label (``labels.py``) looks at
    ``[as_of + gap_days, as_of + gap_days + horizon_days)``.
    """

    lookback_days: int = LOOKBACK_DAYS
    gap_days: int = 0
    horizon_days: int = 90

    def __post_init__(self) -> None:
        if self.lookback_days < max(TXN_WINDOWS):
            raise ValueError(
                f"lookback_days must cover the longest window ({max(TXN_WINDOWS)}), got {self.lookback_days}"
            )
        if self.gap_days < 0 or self.horizon_days < 1:
            raise ValueError(
                f"gap_days must be >= 0 and horizon_days >= 1, got {self.gap_days}, {self.horizon_days}"
            )


@dataclass(frozen=True)
class Feature:
    """One column of the wide table; ``plain`` is how a reason code naming it reads to campaign staff."""

    name: str
    definition: str
    window: str
    source: str
    plain: Plain

    @property
    def inputs(self) -> tuple[str, ...]:
        """The lake tables the feature is computed from (``source``, e.g. ``"balances, customers"``)."""
        return tuple(t.strip() for t in self.source.split(","))


_CATEGORY_WORDS = {
    "gender": "gender",
    "income_band": "income band",
    "occupation": "occupation",
    "card_tier": "card tier",
    "acquisition_channel": "joined through",
}
_WINDOW_WORDS = {7: "last 7 days", 30: "last 30 days", 90: "last 3 months", 180: "last 6 months"}


def _catalogue() -> tuple[Feature, ...]:
    f: list[Feature] = []
    add = f.append
    add(
        Feature(
            "age_years",
            "as_of year minus birth year",
            "static",
            "customers",
            Plain("age", "aged {v}", "years"),
        )
    )
    add(
        Feature(
            "tenure_days",
            "days from signup to as_of",
            "static",
            "customers",
            Plain("time as a customer", "customer for {v} days", "days"),
        )
    )
    add(
        Feature(
            "city_tier",
            "city tier of the home address (1-4)",
            "static",
            "customers",
            Plain("city tier", "lives in a tier {v} city", "count"),
        )
    )
    add(
        Feature(
            "credit_limit",
            "credit limit",
            "static",
            "customers",
            Plain("credit limit", "credit limit {v}", "amount"),
        )
    )
    for c in STATIC_CATEGORIES:
        words = _CATEGORY_WORDS[c]
        add(
            Feature(
                c,
                f"{c.replace('_', ' ')} (category)",
                "static",
                "customers",
                Plain(words, f"{words}: {{v}}", "category"),
            )
        )
    for w in TXN_WINDOWS:
        when = _WINDOW_WORDS[w]
        add(
            Feature(
                f"txn_count_{w}d",
                "number of transactions",
                f"{w}d",
                "transactions",
                Plain(
                    f"number of card transactions ({when})", f"{{v}} card transactions in the {when}", "count"
                ),
            )
        )
        add(
            Feature(
                f"spend_{w}d",
                "sum of transaction amounts",
                f"{w}d",
                "transactions",
                Plain(f"card spending ({when})", f"spent {{v}} in the {when}", "amount"),
            )
        )
    add(
        Feature(
            "days_since_last_txn",
            f"days since the last transaction ({LOOKBACK_DAYS + 1} if none)",
            "180d",
            "transactions",
            Plain("days since last card transaction", "{v} days since last card transaction", "days"),
        )
    )
    for w, when in ((90, "last 3 months"), (30, "last 30 days")):
        add(
            Feature(
                f"avg_ticket_{w}d",
                f"spend_{w}d / txn_count_{w}d (null if none)",
                f"{w}d",
                "transactions",
                Plain(f"average purchase ({when})", f"average purchase {{v}} ({when})", "amount"),
            )
        )
    add(
        Feature(
            "spend_trend_30d_vs_prior_90d",
            "spend_30d / (monthly mean spend over days 31-120 before as_of + 1)",
            "120d",
            "transactions",
            Plain(
                "spending last month against the 3 months before",
                "spent {v} times the usual monthly amount last month",
                "ratio",
            ),
        )
    )
    add(
        Feature(
            "txn_trend_30d_vs_prior_90d",
            "txn_count_30d / (monthly mean count over days 31-120 + 1)",
            "120d",
            "transactions",
            Plain(
                "card use last month against the 3 months before",
                "used the card {v} times as often as usual last month",
                "ratio",
            ),
        )
    )
    add(
        Feature(
            "active_days_30d",
            "distinct days with a transaction",
            "30d",
            "transactions",
            Plain(
                "days with card use (last 30 days)", "used the card on {v} days in the last 30 days", "count"
            ),
        )
    )
    for key, definition, words in (
        ("cross_border", "with is_cross_border", "abroad"),
        ("installment", "with is_installment", "in instalments"),
        ("online", "on channel online", "online"),
        ("mobile_wallet", "on channel mobile_wallet", "by mobile wallet"),
    ):
        add(
            Feature(
                f"{key}_share_180d",
                f"share of transactions {definition}",
                "180d",
                "transactions",
                Plain(
                    f"share of purchases {words} (6 months)",
                    f"{{v}} % of purchases {words} (6 months)",
                    "share",
                ),
            )
        )
    for cat in MERCHANT_CATEGORIES:
        words = cat.replace("_", " ")
        add(
            Feature(
                f"cat_{cat}_spend_share_180d",
                f"share of spend at {cat} merchants",
                "180d",
                "transactions",
                Plain(
                    f"share of spending on {words} (6 months)",
                    f"{{v}} % of spending on {words} (6 months)",
                    "share",
                ),
            )
        )
    for w in LOGIN_WINDOWS:
        when = _WINDOW_WORDS[w]
        add(
            Feature(
                f"logins_{w}d",
                "app logins",
                f"{w}d",
                "app_events",
                Plain(f"app logins ({when})", f"{{v}} app logins in the {when}", "count"),
            )
        )
    add(
        Feature(
            "logins_trend_30d_vs_prior_90d",
            "logins_30d / (monthly mean logins over days 31-120 + 1)",
            "120d",
            "app_events",
            Plain(
                "app use last month against the 3 months before",
                "logged in {v} times as often as usual last month",
                "ratio",
            ),
        )
    )
    add(
        Feature(
            "days_since_last_login",
            f"days since the last app login ({LOOKBACK_DAYS + 1} if none)",
            "180d",
            "app_events",
            Plain("days since last app login", "{v} days since last app login", "days"),
        )
    )
    for e in APP_EVENT_TYPES:
        if e != "login":
            words = e.replace("_", " ")
            add(
                Feature(
                    f"{e}_90d",
                    f"app events of type {e}",
                    "90d",
                    "app_events",
                    Plain(
                        f"app {words}s (last 3 months)", f"{{v}} app {words}s in the last 3 months", "count"
                    ),
                )
            )
    add(
        Feature(
            "aum_last",
            "assets under management at the last month end before as_of",
            "last month",
            "balances",
            Plain("assets held with us", "assets of {v} at last month end", "amount"),
        )
    )
    add(
        Feature(
            "aum_change_1m",
            "aum_last / AUM one month earlier - 1",
            "2 months",
            "balances",
            Plain("change in assets last month", "assets {dir} {v} % last month", "change"),
        )
    )
    add(
        Feature(
            "aum_change_3m",
            "aum_last / AUM three months earlier - 1",
            "4 months",
            "balances",
            Plain("change in assets over 3 months", "assets {dir} {v} % over 3 months", "change"),
        )
    )
    add(
        Feature(
            "aum_mean_6m",
            "mean month-end AUM",
            "6 months",
            "balances",
            Plain("average assets (6 months)", "average assets {v} over 6 months", "amount"),
        )
    )
    add(
        Feature(
            "card_balance_last",
            "card balance at the last month end",
            "last month",
            "balances",
            Plain("card balance", "card balance {v} at last month end", "amount"),
        )
    )
    add(
        Feature(
            "credit_utilisation",
            "card_balance_last / credit_limit",
            "last month",
            "balances, customers",
            Plain("share of credit limit used", "{v} % of credit limit used", "share"),
        )
    )
    add(
        Feature(
            "campaign_contacts_180d",
            "campaigns the customer was contacted in (treatment, sent)",
            "180d",
            "campaign_contacts",
            Plain("campaign contacts (6 months)", "contacted in {v} campaigns in the last 6 months", "count"),
        )
    )
    add(
        Feature(
            "campaign_conversions_180d",
            "campaign conversions",
            "180d",
            "responses",
            Plain(
                "campaign responses (6 months)", "responded to {v} campaigns in the last 6 months", "count"
            ),
        )
    )
    add(
        Feature(
            "days_since_last_contact",
            f"days since the last campaign contact ({LOOKBACK_DAYS + 1} if none)",
            "180d",
            "campaign_contacts",
            Plain("days since last campaign contact", "{v} days since last campaign contact", "days"),
        )
    )
    return tuple(f)


CATALOGUE = _catalogue()
FEATURE_NAMES = tuple(f.name for f in CATALOGUE)
BY_NAME = {f.name: f for f in CATALOGUE}
CATEGORICAL_FEATURES = STATIC_CATEGORIES
assert {t for f in CATALOGUE for t in f.inputs} == {*REQUIRED_TABLES, *OPTIONAL_TABLES}, "unknown input table"


def left_out_features(absent_tables) -> dict[str, str]:
    """The features that cannot be computed without ``absent_tables``, in catalogue order, each with why:
    ``{"aum_last": "no balances table", ...}`` (the first absent table among the feature's inputs)."""
    absent = set(absent_tables)
    return {
        f.name: f"no {next(t for t in f.inputs if t in absent)} table"
        for f in CATALOGUE
        if absent.intersection(f.inputs)
    }


assert not set(FEATURE_NAMES) & {c for t in TABLES.values() for c in t.pii_columns}, (
    "PII must never be a feature"
)


@dataclass(frozen=True)
class Attribute:
    """A customer column carried beside the features for audience rules and segment breakdowns, never a model
    input: a category with the allowed ``values`` (null when the source has no such column)."""

    name: str
    definition: str
    source: str
    values: tuple[str, ...]


ATTRIBUTES = (
    Attribute("region", "region of the home address (ITL1, `places.REGIONS`)", "customers", REGIONS),
    Attribute("city", "city of the home address (`places.CITIES`)", "customers", CITY_NAMES),
)
ATTRIBUTE_NAMES = tuple(a.name for a in ATTRIBUTES)
ATTRIBUTE_BY_NAME = {a.name: a for a in ATTRIBUTES}
assert not set(ATTRIBUTE_NAMES) & set(FEATURE_NAMES), "an attribute is never a model feature"


def render_catalogue() -> str:
    """The feature table of ``docs/features.md``."""
    lines = ["| feature | definition | window | source |", "|---|---|---|---|"]
    lines += [f"| `{f.name}` | {f.definition} | {f.window} | {f.source} |" for f in CATALOGUE]
    return "\n".join(lines) + "\n"


def render_attributes() -> str:
    """The attribute table of ``docs/features.md``."""
    lines = ["| attribute | definition | source |", "|---|---|---|"]
    lines += [f"| `{a.name}` | {a.definition} | {a.source} |" for a in ATTRIBUTES]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render_catalogue(), end="")
    print()
    print(render_attributes(), end="")
