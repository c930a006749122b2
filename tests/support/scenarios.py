"""A shop's day of Shopify deliveries for many orders, with the final state each order must
reach: used by the e2e acceptance test and the benchmarks."""

from __future__ import annotations

import random
from dataclasses import dataclass

from tests.support.shopify import Delivery, deliver, order_payload, refund_payload

# scenario -> (events in the order they happened, final status)
SCENARIOS: dict[str, tuple[tuple[str, ...], str]] = {
    "abandoned": (("create",), "pending"),
    "paid": (("create", "paid"), "paid"),
    "paid_updated": (("create", "paid", "updated"), "paid"),
    "delivered": (("create", "paid", "fulfilled"), "delivered"),
    "cancelled": (("create", "paid", "cancelled"), "cancelled"),
    "partial_refund": (("create", "paid", "fulfilled", "refund"), "partially_refunded"),
    "refunded": (("create", "paid", "refund_all"), "refunded"),
}
# 300 orders, 700 distinct deliveries.
MIX = {
    "abandoned": 60,
    "paid": 100,
    "paid_updated": 30,
    "delivered": 40,
    "cancelled": 30,
    "partial_refund": 20,
    "refunded": 20,
}


@dataclass(frozen=True)
class PlannedOrder:
    order_id: int
    scenario: str
    email: str
    final_status: str
    goods: int  # minor units
    paid: bool


def _time(step: int) -> str:
    return f"2026-11-20T{10 + step:02d}:00:00+08:00"


def order_events(order: PlannedOrder, rng: random.Random) -> list[Delivery]:
    events, _ = SCENARIOS[order.scenario]
    price = f"{order.goods // 100}.{order.goods % 100:02d}"
    base = dict(email=order.email, lines=[("SKU-A", 1, price)], shipping="10.00")
    if rng.random() < 0.5:
        base["customer_id"] = 900000 + int(order.email.split("@")[0].removeprefix("buyer"))
    state: dict = {"financial_status": "pending", "fulfillment_status": None, "cancelled_at": None}
    out = []
    for step, kind in enumerate(events):
        if kind == "paid":
            state["financial_status"] = "paid"
        if kind == "fulfilled":
            state["fulfillment_status"] = "fulfilled"
        if kind == "cancelled":
            state.update(financial_status="refunded", cancelled_at=_time(step))
        if kind in ("refund", "refund_all"):
            amount = order.goods * 3 // 10 if kind == "refund" else order.goods + 1000
            goods = order.goods * 3 // 10 if kind == "refund" else order.goods
            out.append(
                deliver(
                    "refunds/create",
                    refund_payload(
                        order.order_id * 10 + step,
                        order.order_id,
                        amount=f"{amount / 100:.2f}",
                        goods=f"{goods / 100:.2f}",
                        created_at=_time(step),
                    ),
                )
            )
            continue
        topic = {
            "create": "orders/create",
            "paid": "orders/paid",
            "updated": "orders/updated",
            "fulfilled": "orders/fulfilled",
            "cancelled": "orders/cancelled",
        }[kind]
        payload = order_payload(
            order.order_id, **base, **state, created_at=_time(0), updated_at=_time(step)
        )
        out.append(deliver(topic, payload))
    return out


def plan_day(
    seed: int = 20261123, customers: int = 100, scale: float = 1.0
) -> tuple[list[PlannedOrder], list[Delivery]]:
    """300 orders and their 700 deliveries, plus 300 re-deliveries (30 %), shuffled; `scale`
    makes every scenario's count (and the buyers) that much smaller or larger."""
    rng = random.Random(seed)
    orders: list[PlannedOrder] = []
    next_id = 5_000_001
    customers = max(1, round(customers * scale))
    for scenario, count in MIX.items():
        for _ in range(max(1, round(count * scale))):
            events, final = SCENARIOS[scenario]
            orders.append(
                PlannedOrder(
                    order_id=next_id,
                    scenario=scenario,
                    email=f"buyer{rng.randrange(customers)}@shop.example",
                    final_status=final,
                    goods=rng.randrange(50, 900) * 100 + rng.choice((0, 50, 99)),
                    paid="paid" in events,
                )
            )
            next_id += 1
    deliveries = [d for order in orders for d in order_events(order, rng)]
    duplicates = [rng.choice(deliveries) for _ in range(len(deliveries) * 3 // 7)]
    everything = deliveries + duplicates
    rng.shuffle(everything)
    return orders, everything
