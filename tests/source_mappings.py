"""Pieces of source mappings shared by the ingest, mapping and source-gate tests."""

from __future__ import annotations

# What a retailer's customers table declares for the columns its source lacks (every required customers column
# but customer_id and signup_date).
CUSTOMER_DEFAULTS = {
    "birth_year": {"default": 1980},
    "gender": {"default": "U"},
    "city_tier": {"default": 1},
    "income_band": {"default": "middle"},
    "occupation": {"default": "other"},
    "card_tier": {"default": "classic"},
    "credit_limit": {"default": 0.0},
    "acquisition_channel": {"default": "online"},
    "repayment_due_day": {"default": 1},
    "marketing_opt_out": {"default": False},
    "do_not_contact": {"default": False},
}
