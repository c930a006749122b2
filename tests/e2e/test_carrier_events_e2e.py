"""Carrier events as carriers send them: batched, back to back, in any order, sometimes before
the workflow is ready for them. Every valid event is accepted and the order ends the same."""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.flows import Shop, open_case_of, waiting_for

pytestmark = pytest.mark.e2e

EVENTS = ("shipped", "in_transit", "delivered")
PERMUTATIONS = list(itertools.permutations(EVENTS))  # all six orders of arrival
ORDERS = 20


def _at(event: str) -> str:
    """The time the carrier says the event happened: shipped, then in transit, then delivered
    (the order of `at` is the real one, whatever order the callbacks arrive in)."""
    minutes = {"shipped": 30, "in_transit": 20, "delivered": 10}[event]
    return (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat(timespec="seconds")


def _earn_entries(shop: Shop, customer_id: str, order_id: str) -> list[dict]:
    entries = shop.get(f"/customers/{customer_id}/points?limit=500")["entries"]
    return [e for e in entries if e["type"] == "earn" and order_id in str(e.get("source"))]


def test_every_order_of_arrival_with_no_gap_ends_delivered_with_points_active_once(shop: Shop):
    # Given 20 paid orders; half of them already waiting for the carrier, the other half sent
    # their events while the workflow may still be allocating
    shop.stock("TEA-CARRIER", wh_shanghai=100)
    orders = [
        shop.paid_order("TEA-CARRIER", email=f"carrier{i}@example.cn", price="100.00")
        for i in range(ORDERS)
    ]
    for order_id in orders[: ORDERS // 2]:
        shop.wait_for(order_id, waiting_for("shipped"))

    # When each order's three events arrive back to back in one of the six orders, all the
    # orders at once
    answers: dict[str, list[int]] = {}

    def carrier(index: int, order_id: str) -> None:
        answers[order_id] = [
            shop.logistics(order_id, event, at=_at(event)).status_code
            for event in PERMUTATIONS[index % len(PERMUTATIONS)]
        ]

    with ThreadPoolExecutor(ORDERS) as pool:
        list(pool.map(carrier, range(ORDERS), orders))

    # Then every event was accepted, and every order ends delivered with its points active
    assert answers == {o: [202, 202, 202] for o in orders}
    for order_id in orders:
        order = shop.wait_for(order_id, lambda o: o["status"] == "delivered", timeout=90)
        assert [r["status"] for r in shop.wait_settled(order_id)] == ["SUCCEEDED"]
        assert order["points"] == {"earned": 100, "reversed": 0, "status": "active"}
        assert order["fulfilment"]["shipped_at"] == _parse_minutes_ago(order, "shipped")
        assert len(_earn_entries(shop, order["customer_id"], order_id)) == 1
        points = shop.get(f"/customers/{order['customer_id']}/points")
        assert (points["balance"], points["pending"]) == (100, 0)


def _parse_minutes_ago(order: dict, event: str) -> str:
    """The recorded `at` of the order's own `event` callback."""
    recorded = [e for e in order["fulfilment"]["events"] if e["event"] == event]
    assert len(recorded) == 1, order["fulfilment"]["events"]
    return recorded[0]["at"]


def test_three_events_sent_at_the_same_instant_end_delivered(shop: Shop):
    # Given orders waiting for the carrier
    shop.stock("TEA-BURST", wh_shanghai=20)
    orders = [shop.paid_order("TEA-BURST", email=f"burst{i}@example.cn") for i in range(6)]
    for order_id in orders:
        shop.wait_for(order_id, waiting_for("shipped"))

    # When all three events of each order are sent at the same instant
    start = threading.Barrier(len(orders) * len(EVENTS))

    def send(order_id: str, event: str) -> int:
        start.wait(30)
        return shop.logistics(order_id, event, at=_at(event)).status_code

    with ThreadPoolExecutor(len(orders) * len(EVENTS)) as pool:
        codes = list(pool.map(lambda args: send(*args), itertools.product(orders, EVENTS)))

    # Then all are accepted and every order is delivered once
    assert codes == [202] * len(codes)
    for order_id in orders:
        order = shop.wait_for(order_id, lambda o: o["status"] == "delivered", timeout=90)
        assert [r["status"] for r in shop.wait_settled(order_id)] == ["SUCCEEDED"]
        assert order["points"]["status"] == "active"


def test_a_repeat_is_200_and_a_late_event_changes_nothing(shop: Shop):
    shop.stock("TEA-LATE", wh_shanghai=5)
    order_id = shop.paid_order("TEA-LATE")
    assert shop.logistics(order_id, "delivered", at=_at("delivered")).status_code == 202
    order = shop.wait_for(order_id, lambda o: o["status"] == "delivered")

    # The same event again: no effect
    repeat = shop.logistics(order_id, "delivered", at=_at("delivered"))
    assert repeat.status_code == 200 and repeat.json()["status"] == "duplicate"
    # A late scan after the delivery is recorded, and the order stays delivered
    late = shop.logistics(order_id, "in_transit", at=_at("in_transit"))
    assert late.status_code == 202
    after = shop.order(order_id)
    assert after["status"] == "delivered"
    assert [e["event"] for e in after["fulfilment"]["events"]] == ["delivered", "in_transit"]
    assert after["points"] == order["points"]


@pytest.mark.parametrize(
    ("at", "issue"),
    [
        ("2026-13-01T10:00:00Z", "not_rfc3339"),
        ("yesterday", "not_rfc3339"),
        ("2026-11-20T10:00:00", "not_rfc3339"),  # no offset
        ("2026-11-20", "not_rfc3339"),
        ("\uff12\uff10\uff12\uff16-11-20T10:00:00Z", "not_rfc3339"),  # full-width digits
        (timedelta(hours=1), "in_the_future"),
        (-timedelta(days=45), "too_old"),
    ],
    ids=str,
)
def test_an_event_time_outside_the_window_is_422(shop: Shop, at: object, issue: str):
    if isinstance(at, timedelta):  # relative to now, computed when the test runs
        at = (datetime.now(UTC) + at).isoformat()
    shop.stock("TEA-AT", wh_shanghai=5)
    order_id = shop.paid_order("TEA-AT")
    answer = shop.logistics(order_id, "shipped", at=str(at))
    assert answer.status_code == 422, answer.text
    assert {"field": "at", "issue": issue} in answer.json()["error"]["details"]


def test_carriers_sign_with_their_own_secret(shop: Shop):
    shop.stock("TEA-SECRET", wh_shanghai=5)
    order_id = shop.paid_order("TEA-SECRET")
    # The generic order webhook's secret is not the carrier's
    assert shop.logistics(order_id, "shipped", secret="local-webhook-secret").status_code == 401
    assert shop.logistics(order_id, "shipped").status_code == 202


# (event, minutes after a time T) in the order they arrive, back to back -> how the order ends
DELIVERY_RACES = {
    "failed at T, then delivered at T+1": (
        (("delivery_failed", 0), ("delivered", 1)),
        "delivered",
    ),
    "delivered at T+1, then failed at T": (
        (("delivered", 1), ("delivery_failed", 0)),
        "delivered",
    ),
    "delivered at T, then failed at T+1": (
        (("delivered", 0), ("delivery_failed", 1)),
        "on_hold",
    ),
}


def test_a_delivery_and_a_failed_delivery_are_decided_by_their_times_not_their_arrival(
    shop: Shop,
):
    # Given orders waiting for their delivery
    shop.stock("TEA-DUEL", wh_shanghai=len(DELIVERY_RACES))
    orders = {name: shop.paid_order("TEA-DUEL") for name in DELIVERY_RACES}
    for order_id in orders.values():
        shop.wait_for(order_id, waiting_for("shipped"))
        assert shop.logistics(order_id, "shipped", at=_at("shipped")).status_code == 202
    for order_id in orders.values():
        shop.wait_for(order_id, waiting_for("delivered"))

    # When each gets a delivered and a delivery_failed back to back, a minute apart by `at`
    t = datetime.now(UTC) - timedelta(minutes=5)
    sent: dict[str, dict[str, str]] = {}
    for name, (arrivals, _) in DELIVERY_RACES.items():
        for event, minutes in arrivals:
            at = (t + timedelta(minutes=minutes)).isoformat(timespec="seconds")
            assert shop.logistics(orders[name], event, at=at).status_code == 202
            sent.setdefault(name, {})[event] = at

    # Then the later report by `at` decides, whichever arrived first
    for name, (_, ending) in DELIVERY_RACES.items():
        order_id = orders[name]
        if ending == "delivered":
            order = shop.wait_for(order_id, lambda o: o["status"] == "delivered")
            delivered = datetime.fromisoformat(sent[name]["delivered"])
            assert datetime.fromisoformat(order["fulfilment"]["delivered_at"]) == delivered
            assert order["points"]["status"] == "active", name
            assert [r["status"] for r in shop.wait_settled(order_id)] == ["SUCCEEDED"], name
        else:
            case = open_case_of(shop, order_id)
            assert case["reason"] == "delivery_failed", name
            assert shop.order(order_id)["status"] == "on_hold", name


def test_a_failed_delivery_recorded_before_the_delivery_wait_puts_the_order_on_hold(shop: Shop):
    # Given an order waiting for its shipment
    shop.stock("TEA-EARLYFAIL", wh_shanghai=1)
    order_id = shop.paid_order("TEA-EARLYFAIL")
    shop.wait_for(order_id, waiting_for("shipped"))

    # When the carrier reports the failed delivery first and the shipment right after, so the
    # failure is recorded before the workflow waits for the delivery
    assert shop.logistics(order_id, "delivery_failed", at=_at("delivered")).status_code == 202
    assert shop.logistics(order_id, "shipped", at=_at("shipped")).status_code == 202

    # Then the delivery wait, answered by its own step, hands the order to a delivery_failed case
    case = open_case_of(shop, order_id)
    assert case["reason"] == "delivery_failed"
    assert shop.order(order_id)["status"] == "on_hold"
