"""The built-in segments (contract, "Segments, jobs, reports") computed by the analytics layer
with pandas, against an independent computation written here in plain Python from the
contract's words, on generated data with ties, refunds, cancellations, unpaid orders and orders
after `as_of`."""

from __future__ import annotations

import random
from bisect import bisect_left, bisect_right
from datetime import date, timedelta

import pandas as pd
import pytest

AS_OF = date(2026, 11, 29)


def generated_orders(seed: int, customers: int = 3000) -> list[dict]:
    rng = random.Random(seed)
    orders = []
    for n in range(customers):
        for _ in range(rng.choice([0, 1, 1, 1, 2, 2, 3, 4, 5, 6, 9])):
            total = rng.choice([1990, 4900, 4900, 9900, 12000, 25000, 99900])
            refunded = rng.choice([0, 0, 0, 0, 0, 990, total])  # none, part, all
            orders.append(
                {
                    "customer_id": f"cus_{n:05d}",
                    "day": AS_OF - timedelta(days=rng.randint(-20, 800)),  # some after as_of
                    "paid": rng.random() > 0.05,
                    "cancelled": rng.random() < 0.05,
                    "total": total,
                    "refunded": refunded,
                }
            )
    return orders


def expected(orders: list[dict], as_of: date) -> dict[str, dict]:
    """The contract's definitions, one customer at a time."""
    counted: dict[str, list[tuple[date, int]]] = {}
    for o in orders:
        kept = o["total"] - o["refunded"]
        if o["paid"] and not o["cancelled"] and o["day"] <= as_of and kept > 0:
            counted.setdefault(o["customer_id"], []).append((o["day"], kept))
    facts = {}
    for customer, mine in counted.items():
        days = [d for d, _ in mine]
        window = [(d, k) for d, k in mine if as_of - timedelta(days=365) < d <= as_of]
        facts[customer] = {
            "recency_days": (as_of - max(days)).days,
            "frequency": len(mine),
            "monetary": sum(k for _, k in mine),
            "first": min(days),
            "window_orders": len(window),
            "window_monetary": sum(k for _, k in window),
        }
    n = len(facts)
    recencies = sorted(f["recency_days"] for f in facts.values())
    frequencies = sorted(f["frequency"] for f in facts.values())
    monetaries = sorted(f["monetary"] for f in facts.values())
    for f in facts.values():
        worse_r = n - bisect_right(recencies, f["recency_days"])  # more days: worse
        worse_f = bisect_left(frequencies, f["frequency"])  # fewer orders: worse
        worse_m = bisect_left(monetaries, f["monetary"])  # less money: worse
        r, fr, m = (1 + (5 * worse) // n for worse in (worse_r, worse_f, worse_m))
        f.update(r=r, f=fr, m=m)
        if r >= 4 and fr >= 4 and m >= 4:
            f["group"] = "champions"
        elif fr >= 4 and r >= 3:
            f["group"] = "loyal"
        elif r <= 2 and fr >= 3:
            f["group"] = "at_risk"
        elif r >= 4 and fr <= 2:
            f["group"] = "recent"
        elif r == 1 and fr <= 2:
            f["group"] = "inactive"
        else:
            f["group"] = "needs_attention"
        d = f["recency_days"]
        if d > 365:
            f["lifecycle"] = "churned"
        elif d > 90:
            f["lifecycle"] = "at_risk"
        elif f["window_orders"] >= 4:
            f["lifecycle"] = "loyal"
        elif f["frequency"] >= 2:
            f["lifecycle"] = "returning"
        elif (as_of - f["first"]).days <= 30:
            f["lifecycle"] = "new"
        else:
            f["lifecycle"] = "active"
        f["value_band"] = None
    # 80/20: the shortest head reaching 80% of the window's money, then up to 95%.
    ranked = sorted(
        (c for c, f in facts.items() if f["window_monetary"] > 0),
        key=lambda c: (-facts[c]["window_monetary"], c),
    )
    total = sum(facts[c]["window_monetary"] for c in ranked)
    running, band = 0, "high_value"
    for c in ranked:
        facts[c]["value_band"] = band
        running += facts[c]["window_monetary"]
        if band == "high_value" and running * 100 >= 80 * total:
            band = "mid_value"
        if band == "mid_value" and running * 100 >= 95 * total:
            band = "low_value"
    return facts


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_scores_groups_lifecycle_and_bands_equal_the_contracts_definitions(seed: int) -> None:
    from crm_analytics.segments import segment

    # Given a shop's orders (with ties, refunds, cancellations, unpaid and later orders)
    orders = generated_orders(seed)

    # When the segments are computed as of a date
    result = segment(pd.DataFrame(orders), AS_OF)

    # Then every customer's figures equal the contract's definitions computed one by one
    want = expected(orders, AS_OF)
    assert set(result.index) == set(want)
    fields = (
        "recency_days",
        "frequency",
        "monetary",
        "r",
        "f",
        "m",
        "group",
        "lifecycle",
        "window_monetary",
        "value_band",
    )
    got = {c: {k: row[k] for k in fields} for c, row in result.iterrows()}
    for customer, facts in want.items():
        assert got[customer] == {k: facts[k] for k in fields}, customer
    # And the data exercised every group, stage and band
    assert set(result["group"]) == {
        "champions",
        "loyal",
        "at_risk",
        "recent",
        "inactive",
        "needs_attention",
    }
    assert set(result["lifecycle"]) == {"new", "active", "returning", "loyal", "at_risk", "churned"}
    assert set(result["value_band"].dropna()) == {"high_value", "mid_value", "low_value"}


def test_ties_share_a_score_and_the_80_20_head_is_the_shortest() -> None:
    from crm_analytics.segments import segment

    # Given four customers: two tied on everything, one far ahead in money
    day = AS_OF - timedelta(days=10)
    orders = pd.DataFrame(
        [
            {
                "customer_id": c,
                "day": day,
                "paid": True,
                "cancelled": False,
                "total": total,
                "refunded": 0,
            }
            for c, total in (("a", 80_000), ("b", 10_000), ("c", 5_000), ("d", 5_000))
        ]
    )

    # When segmented
    result = segment(orders, AS_OF)

    # Then the tied customers share their scores, and the 80% head is "a" alone (80,000 of
    # 100,000), the next up to 95% are "b" and "c" (95,000 reached with "c"), the rest is low
    assert result.loc["c", "m"] == result.loc["d", "m"] == 1
    assert result.loc["a", "m"] == 4  # 3 of 4 have less: 1 + floor(15 / 4)
    assert result["value_band"].to_dict() == {
        "a": "high_value",
        "b": "mid_value",
        "c": "mid_value",
        "d": "low_value",
    }


def test_no_counted_order_no_row() -> None:
    from crm_analytics.segments import segment

    orders = pd.DataFrame(
        [
            {
                "customer_id": "a",
                "day": AS_OF,
                "paid": False,
                "cancelled": False,
                "total": 100,
                "refunded": 0,
            }
        ]
    )
    assert segment(orders, AS_OF).empty
