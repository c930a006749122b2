"""The rule language of rule segments (contract: `PUT /segments/{name}`): checked whole, every
problem named by its path, and evaluated on a customer's record."""

from __future__ import annotations

import pytest

from crm.domain.errors import ValidationFailed
from crm.domain.segment_rules import matches, parse_rule

BIG_SPENDER = {
    "all": [
        {"field": "total_spent", "op": ">=", "value": "1000"},
        {
            "any": [
                {"field": "tags", "op": "contains", "value": "vip"},
                {"field": "orders_count", "op": ">", "value": 5},
            ]
        },
        {"not": {"field": "lifecycle", "op": "in", "value": ["churned", "at_risk"]}},
    ]
}


def problems(rule) -> list[dict]:
    with pytest.raises(ValidationFailed) as refused:
        parse_rule(rule, "CNY")
    return refused.value.details


def test_a_valid_rule_is_normalised_and_evaluated() -> None:
    # Given the contract's example shape, money as a decimal string
    rule = parse_rule(BIG_SPENDER, "CNY")

    # Then money is compared in minor units, and the rule selects exactly who it says
    customer = {"total_spent": 150_000, "tags": ["vip"], "orders_count": 2, "lifecycle": "loyal"}
    assert matches(rule, customer)
    assert not matches(rule, {**customer, "total_spent": 99_999})  # 999.99 < 1000
    assert not matches(rule, {**customer, "tags": [], "orders_count": 5})  # neither of the any
    assert matches(rule, {**customer, "tags": [], "orders_count": 6})
    assert not matches(rule, {**customer, "lifecycle": "churned"})


def test_every_problem_is_named_by_its_path() -> None:
    details = problems(
        {
            "all": [
                {"field": "shoe_size", "op": "=", "value": 42},
                {"field": "orders_count", "op": "~", "value": 1},
                {"field": "orders_count", "op": ">", "value": "5"},
                {"any": [{"field": "total_spent", "op": ">=", "value": 1000}]},
                {"field": "birthday", "op": "<", "value": "not a date"},
                {"field": "tier", "op": "in", "value": []},
                {"oops": []},
            ]
        }
    )
    assert [(d["field"], d["issue"]) for d in details] == [
        ("rule.all[0].field", "unknown_field"),
        ("rule.all[1].op", "unknown_operator"),
        ("rule.all[2].value", "wrong_type"),
        ("rule.all[3].any[0].value", "wrong_type"),
        ("rule.all[4].value", "wrong_type"),
        ("rule.all[5].value", "wrong_type"),
        ("rule.all[6]", "unknown_node"),
    ]


@pytest.mark.parametrize(
    ("rule", "issue"),
    [
        ([], "wrong_type"),
        ({"all": []}, "wrong_type"),
        ({"field": "tags", "op": ">", "value": "x"}, "unknown_operator"),  # a list is not ordered
        ({"field": "email", "op": "exists", "value": "yes"}, "wrong_type"),
        ({"field": "orders_count", "op": ">", "value": True}, "wrong_type"),  # not an integer
        ({"field": "total_spent", "op": ">", "value": "10.001"}, "wrong_type"),  # CNY has 2
        ({"field": "orders_count", "op": ">"}, "missing"),
    ],
)
def test_malformed_rules_are_refused(rule, issue: str) -> None:
    assert problems(rule)[0]["issue"] == issue


def test_depth_and_size_are_bounded() -> None:
    deep: dict = {"field": "r", "op": "=", "value": 5}
    for _ in range(8):
        deep = {"not": deep}
    assert problems(deep)[0]["issue"] == "too_deep"
    wide = {"any": [{"field": "r", "op": "=", "value": 5}] * 51}
    assert problems(wide)[0]["issue"] == "too_many_conditions"


def test_missing_values_match_only_exists_false_and_times_compare_by_date() -> None:
    no_email = parse_rule({"field": "email", "op": "exists", "value": False}, "CNY")
    assert matches(no_email, {"email": None}) and not matches(no_email, {"email": "a@b.cn"})
    recent = parse_rule({"field": "last_order_at", "op": ">=", "value": "2026-11-01"}, "CNY")
    assert matches(recent, {"last_order_at": "2026-11-01T08:30:00.000+00:00"})
    assert not matches(recent, {"last_order_at": "2026-10-31T23:59:59.999+00:00"})
    assert not matches(recent, {})
    named = parse_rule({"field": "first_name", "op": "contains", "value": "Mei"}, "CNY")
    assert matches(named, {"first_name": "Meiling"}) and not matches(named, {"first_name": "Li"})
