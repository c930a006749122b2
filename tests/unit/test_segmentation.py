"""`segmentation.compute`: each customer's `segments` is the names, sorted, of the segments whose
member lists hold them (the lists are the definition; the per-customer tuples are derived from
them), `()` for a customer in none; held to a plain per-customer computation, built-in and
rule segments together, whatever the number of segments."""

from __future__ import annotations

import random

import pandas as pd
import pytest

from crm.domain.segment_rules import parse_rule
from crm_analytics.segmentation import compute, memberships
from tests.unit.test_segments import AS_OF, generated_orders

RULES = {
    "big_spenders": {"field": "total_spent", "op": ">=", "value": "500.00"},
    "vip": {"field": "tags", "op": "contains", "value": "vip"},
    "east_recent": {
        "all": [
            {"field": "province", "op": "in", "value": ["浙江", "上海"]},
            {"field": "r", "op": ">=", "value": 4},
        ]
    },
    "nobody": {"field": "orders_count", "op": ">", "value": 10_000},
}


def plain(customer_ids: list[str], members: dict[str, list[str]]) -> dict[str, tuple[str, ...]]:
    held: dict[str, list[str]] = {c: [] for c in customer_ids}
    for name in sorted(members):
        for c in members[name]:
            if c in held:
                held[c].append(name)
    return {c: tuple(names) for c, names in held.items()}


def customers_frame(seed: int, n: int) -> pd.DataFrame:
    rng = random.Random(seed)
    return pd.DataFrame(
        {
            "customer_id": [f"cus_{i:05d}" for i in range(n)],
            "tags": [rng.choice([None, [], ["vip"], ["vip", "x"], ["x"]]) for _ in range(n)],
            "consents_email": [rng.choice([None, True, False]) for _ in range(n)],
            "consents_sms": [rng.choice([None, True, False]) for _ in range(n)],
            "province": [rng.choice([None, "浙江", "上海", "广东"]) for _ in range(n)],
            "total_spent": [rng.choice([0, 10_000, 50_000, 90_000]) for _ in range(n)],
            "orders_count": [rng.randint(0, 5) for _ in range(n)],
        }
    )


@pytest.mark.parametrize("seed", [1, 2])
def test_each_customers_segments_are_the_sorted_names_of_the_lists_that_hold_them(
    seed: int,
) -> None:
    # Given a shop's orders and more customers than buyers (some never ordered)
    orders = pd.DataFrame(generated_orders(seed, customers=1500))
    customers = customers_frame(seed, 1700)
    rules = {name: parse_rule(raw, "CNY") for name, raw in RULES.items()}

    # When the shop is segmented with built-in and rule segments
    outcome = compute(orders, customers, AS_OF, rule_segments=rules)

    # Then every customer holds exactly the segments whose lists name them, sorted
    ids = list(customers["customer_id"])
    expected = plain(ids, outcome.members)
    got = outcome.profiles["segments"]
    assert list(got.index) == ids
    assert {c: got[c] for c in ids} == expected
    assert all(isinstance(v, tuple) for v in got)
    assert any(v == () for v in got) and outcome.members["nobody"] == []
    assert sum(len(v) > 3 for v in got) > 0  # rule segments on top of the built-in ones


def test_memberships_with_no_segment_many_segments_and_repeated_ids() -> None:
    ids = pd.Index([f"c{i}" for i in range(7)], name="customer_id")
    assert memberships(ids, {}).tolist() == [()] * 7
    assert memberships(ids[:0], {"a": ["c1"]}).tolist() == []

    # More segments than one 64-bit word holds, members not in the shop ignored
    many = {f"s{j:03d}": sorted({f"c{j % 7}", f"c{(j * 3) % 7}", "gone"}) for j in range(150)}
    assert memberships(ids, many).to_dict() == plain(list(ids), many)

    # An index with a repeated customer: both rows hold the same segments
    repeated = pd.Index(["c1", "c2", "c1"], name="customer_id")
    few = {"b": ["c1"], "a": ["c1", "c2"]}
    assert memberships(repeated, few).tolist() == [("a", "b"), ("a",), ("a", "b")]
