"""Cross-sell association rules (``models.association``, ``pmp rules``): exact support, confidence and lift on a
basket small enough to count by hand, and on the session bank the associations the generator planted."""

from __future__ import annotations

import pandas as pd
import pytest

from pipelines.cli import main
from pipelines.config import PROJECT_ROOT, Settings
from pipelines.models.association import mine_rules


def test_support_confidence_and_lift_are_counted_exactly():
    # 10 customers: 4 use instalments, 3 of them hold the loan; 1 of the other 6 holds it.
    basket = pd.DataFrame(
        {
            "uses instalments": [True] * 4 + [False] * 6,
            "holds personal_loan": [True, True, True, False, True] + [False] * 5,
            "holds travel_card": [False] * 10,
        }
    )
    rules = mine_rules(basket, min_customers=1)
    rule = rules.loc[(rules["antecedent"] == "uses instalments") & (rules["consequent"] == "personal_loan")]
    (row,) = rule.itertuples()
    assert (row.customers, row.support, row.confidence) == (3, 0.3, 0.75)
    assert row.lift == pytest.approx(0.75 / 0.4)
    assert "travel_card" not in set(rules["consequent"])  # nobody holds it: no rule, no division by zero
    # an antecedent that holds the product itself is not a rule
    assert not (
        rules["antecedent"].str.contains("holds personal_loan") & (rules["consequent"] == "personal_loan")
    ).any()
    assert mine_rules(basket, min_customers=4).empty  # 3 customers with both sides: below the floor


def test_an_empty_basket_is_refused():
    with pytest.raises(ValueError, match="no baskets"):
        mine_rules(pd.DataFrame())


def test_pmp_rules_finds_the_banks_planted_associations(bank, tmp_path, capsys):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "lake").symlink_to(bank / "lake")
    settings = Settings(home=tmp_path, data_dir=tmp_path / "data", campaigns_dir=PROJECT_ROOT / "campaigns")
    from pipelines.jobs.nba import product_rules

    rules, path = product_rules(settings)
    assert path.is_file() and len(pd.read_csv(path)) == len(rules)
    single = rules.set_index(["antecedent", "consequent"])["lift"]
    # planted: the travel card x4 the odds of travel insurance, the savings account x3 those of the fixed deposit
    assert single[("holds travel_card", "travel_insurance")] > 2
    assert single[("holds savings_account", "fixed_deposit")] > 1.5
    assert (rules["lift"] > 1).all() and rules["lift"].is_monotonic_decreasing

    assert (
        main(["rules", "--data", str(settings.data_dir), "--product", "travel_insurance", "--top", "3"]) == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert (
        out[0].startswith("antecedent")
        and len(out) == 5
        and all("travel_insurance" in line for line in out[1:4])
    )
    assert out[-1].endswith(str(path))
