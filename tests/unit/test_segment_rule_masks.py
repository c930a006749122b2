"""A segment rule over a whole shop (the analytics layer's pandas mask) selects exactly the
customers the one-record evaluation selects, on generated records with missing values."""

from __future__ import annotations

import random

import pandas as pd

from crm.domain.segment_rules import matches, parse_rule

RULES = [
    {"field": "total_spent", "op": ">=", "value": "1000"},
    {"field": "tags", "op": "contains", "value": "vip"},
    {"field": "email", "op": "exists"},
    {"field": "email", "op": "exists", "value": False},
    {"field": "city", "op": "in", "value": ["Hangzhou", "Shanghai"]},
    {"field": "first_name", "op": "contains", "value": "ei"},
    {"field": "last_order_at", "op": "<", "value": "2026-06-01"},
    {"field": "orders_count", "op": "!=", "value": 1},
    {"field": "consents.email", "op": "=", "value": True},
    {
        "all": [
            {"field": "r", "op": ">=", "value": 4},
            {
                "any": [
                    {"field": "lifecycle", "op": "=", "value": "loyal"},
                    {"not": {"field": "tier", "op": "in", "value": ["bronze"]}},
                ]
            },
        ]
    },
]


def records(n: int = 2000, seed: int = 5) -> list[dict]:
    rng = random.Random(seed)

    def maybe(value):
        return value if rng.random() > 0.2 else None

    return [
        {
            "customer_id": f"cus_{i:05d}",
            "email": maybe(f"c{i}@example.com"),
            "first_name": maybe(rng.choice(["Mei", "Wei", "Li", "Meiling", ""])),
            "city": maybe(rng.choice(["Hangzhou", "Shanghai", "Beijing"])),
            "tags": rng.choice([[], ["vip"], ["vip", "wholesale"], ["wholesale"]]),
            "total_spent": maybe(rng.choice([0, 50_000, 100_000, 100_001, 999_999])),
            "orders_count": rng.randint(0, 4),
            "last_order_at": maybe(
                rng.choice(
                    ["2026-05-31T23:00:00.000+00:00", "2026-06-01", "2025-12-24T10:00:00.000+00:00"]
                )
            ),
            "consents.email": maybe(rng.choice([True, False])),
            "r": maybe(rng.randint(1, 5)),
            "lifecycle": maybe(rng.choice(["new", "loyal", "churned"])),
            "tier": maybe(rng.choice(["bronze", "silver", "gold"])),
        }
        for i in range(n)
    ]


def test_the_shop_wide_mask_selects_exactly_what_each_record_matches() -> None:
    from crm_analytics.rules import mask

    rows = records()
    frame = pd.DataFrame(rows).set_index("customer_id")
    for raw in RULES:
        rule = parse_rule(raw, "CNY")
        selected = set(frame.index[mask(rule, frame)])
        expected = {r["customer_id"] for r in rows if matches(rule, r)}
        assert selected == expected, raw
        assert 0 < len(expected) < len(rows), raw  # each rule splits the shop
