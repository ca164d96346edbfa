"""Source mappings: validation errors that name the field, and the safe expression evaluator."""

from __future__ import annotations

import copy

import pandas as pd
import pytest

from pipelines.data.mapping import Expr, ExprError, MappingError, hash_ids, parse_mapping
from tests.source_mappings import CUSTOMER_DEFAULTS as SHARED_DEFAULTS

CUSTOMER_DEFAULTS = {"signup_date": {"default": "2020-01-01"}, **SHARED_DEFAULTS}
GOOD = {
    "name": "shop",
    "tables": {
        "customers": {
            "from": {"files": "x.csv"},
            "columns": {"customer_id": "id", **CUSTOMER_DEFAULTS},
        }
    },
}


def _with(path: str, value) -> dict:
    data = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    node = data
    for p in parents:
        node = node[p]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return data


def test_a_complete_mapping_loads():
    m = parse_mapping(GOOD)
    assert m.tables["customers"].spec("customer_id").column == "id"
    assert m.tables["customers"].spec("gender").constant


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (
            "tables.customer",
            {"from": {"files": "x"}, "columns": {}},
            r"tables\.customer: unknown canonical table 'customer' \(did you mean 'customers'\?\)",
        ),
        (
            "tables.customers.columns.gendr",
            "g",
            r"tables\.customers\.columns\.gendr: customers has no column 'gendr' \(did you mean 'gender'\?\)",
        ),
        (
            "tables.customers.columns.gender",
            None,
            r"tables\.customers\.columns\.gender: required column not mapped.*allowed: F, M, U",
        ),
        (
            "tables.customers.columns.occupation",
            {"column": "job", "map": {"admin": "clerk"}},
            r"columns\.occupation\.map: value\(s\) clerk not allowed; allowed: salaried",
        ),
        ("tables.customers.columns.gender", {"default": "X"}, r"columns\.gender\.default: 'X' not allowed"),
        (
            "tables.customers.columns.birth_year",
            {"expr": "__import__('os')"},
            r"columns\.birth_year\.expr: call of '__import__' is not allowed",
        ),
        (
            "tables.customers.columns.birth_year",
            {"expr": "2020 -"},
            r"columns\.birth_year\.expr: not a valid expression",
        ),
        (
            "tables.customers.columns.birth_year",
            {"column": "a", "expr": "b"},
            r"columns\.birth_year: give column: or expr:, not both",
        ),
        (
            "tables.customers.columns.birth_year",
            {"column": "age", "agg": "min"},
            r"columns\.birth_year\.agg: only with the table's group_by",
        ),
        (
            "tables.customers.columns.birth_year",
            {"column": "age", "colour": "x"},
            r"columns\.birth_year\.colour: unknown field",
        ),
        (
            "tables.customers.from",
            {"files": "x", "sql": "select 1"},
            r"tables\.customers\.from: .*either files",
        ),
        (
            "tables.customers.faults",
            [{"name": "bad", "when": "x.y == 1"}],
            r"faults\.0\.when \(bad\): Attribute 'x\.y' is not allowed",
        ),
        ("timezone", "Mars/Olympus", r"timezone: unknown time zone 'Mars/Olympus'"),
        (  # a second source of a table is checked like the first, named by its place
            "tables.customers.also",
            [
                {
                    "from": {"files": "y.csv"},
                    "columns": {"customer_id": "id", **CUSTOMER_DEFAULTS, "gender": "sex"},
                }
            ],
            None,
        ),
        (
            "tables.customers.also",
            [{"from": {"files": "y.csv"}, "columns": {"customer_id": "id"}}],
            r"tables\.customers\.also\.0\.columns\.gender: required column not mapped",
        ),
        (
            "tables.customers.group_by",
            "customer_id",
            None,
        ),
    ],
)
def test_mapping_errors_name_the_field(path, value, message):
    if message is None:  # a valid variation: it loads
        parse_mapping(_with(path, value))
        return
    with pytest.raises(MappingError, match=message):
        parse_mapping(_with(path, value))


def test_more_sources_of_a_table_cannot_group_nor_repeat_a_fault_rule():
    other = {"from": {"files": "y.csv"}, "columns": {"customer_id": "id", **CUSTOMER_DEFAULTS}}
    grouped = _with("tables.customers.group_by", "customer_id")
    grouped["tables"]["customers"]["also"] = [other]
    with pytest.raises(
        MappingError, match=r"tables\.customers\.also: more sources of a table cannot use group_by"
    ):
        parse_mapping(grouped)
    rule = [{"name": "bad", "when": "isnull(id)"}]
    twice = _with("tables.customers.faults", rule)
    twice["tables"]["customers"]["also"] = [{**other, "faults": rule}]
    with pytest.raises(MappingError, match=r"fault rule names must be unique across the table's sources"):
        parse_mapping(twice)


def test_personal_and_nullable_columns_may_be_left_out_but_hash_needs_an_integer_column():
    m = parse_mapping(GOOD)  # full_name, email, closed_date ... not mapped
    assert m.tables["customers"].spec("email") is None
    with pytest.raises(MappingError, match=r"columns\.email\.hash: hashing makes an integer id"):
        parse_mapping(_with("tables.customers.columns.email", {"column": "mail", "hash": True}))


FRAME = pd.DataFrame(
    {
        "inv": ["C1", "2", None, "4"],
        "qty": [1, 2, 3, -1],
        "price": [2.0, 0.0, 1.5, 3.0],
        "emp.rate": [1, 2, 3, 4],
    }
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("qty * price", [2.0, 0.0, 4.5, -3.0]),
        ("-qty + 1", [0, -1, -2, 2]),
        ("qty // 2 + qty % 2 ** 1", [1, 1, 2, 0]),
        ("startswith(inv, 'C')", [True, False, False, False]),
        ("isnull(inv) or price == 0", [False, True, True, False]),
        ("not (qty > 0 and price > 0)", [False, True, False, True]),
        ("qty in [1, 3]", [True, False, True, False]),
        ("1 < qty <= 2", [False, True, False, False]),
        ("where(qty > 0, qty, 0)", [1, 2, 3, 0]),
        ("coalesce(inv, 'none')", ["C1", "2", "none", "4"]),
        ("row_number()", [10, 11, 12, 13]),
        ("col('emp.rate') * ref", [10, 20, 30, 40]),
    ],
)
def test_expressions_are_evaluated_vectorised(text, expected):
    frame = FRAME.set_axis(pd.RangeIndex(10, 14))
    got = Expr(text).evaluate(frame, {"ref": 10}, offset=10)
    assert list(got) == expected


@pytest.mark.parametrize(
    ("text", "token"),
    [
        ("qty.__class__", "Attribute"),
        ("open('/etc/passwd')", "call of 'open'"),
        ("inv.upper()", "call of 'inv.upper'"),
        ("(lambda: 1)()", "call of"),
        ("[x for x in qty]", "ListComp"),
        ("qty[0]", "Subscript"),
        ("isnull(x=qty)", "no keyword arguments"),
        ("qty if qty else 0", "IfExp"),
        ("f'{qty}'", "JoinedStr"),
        ("startswith(inv)", "startswith() takes 2..2 argument(s), got 1"),
        ("qty is None", "operator Is is not allowed"),
    ],
)
def test_expressions_refuse_anything_outside_the_whitelist(text, token):
    with pytest.raises(ExprError, match=token.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        Expr(text)


def test_unknown_and_ambiguous_names_are_named():
    with pytest.raises(ExprError, match=r"unknown name 'qtty'.*did you mean 'qty'"):
        Expr("qtty + 1").evaluate(FRAME)
    with pytest.raises(ExprError, match=r"'qty' is both a source column and a param"):
        Expr("qty + 1").evaluate(FRAME, {"qty": 2})


def test_hashed_ids_are_stable_keyed_and_never_the_raw_value():
    mails = pd.Series(["Ann@x.org", "ann@x.org ", "bob@y.org", None])
    a, b = hash_ids(mails, "salt-1"), hash_ids(mails, "salt-2")
    assert a[0] == a[1] != a[2] and pd.isna(a[3])  # case and spaces do not make a new person
    assert a[0] > 0 and str(a.dtype) == "Int64"
    assert a[0] != b[0]  # the salt is the key
