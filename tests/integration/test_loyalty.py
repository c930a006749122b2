"""The points ledger against moto: redemptions under concurrency, idempotency, expiry, tiers,
adjustments, and the program."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest

from tests.conftest import OPERATOR
from tests.support.shopify import deliver, order_payload

JSON = {**OPERATOR, "Content-Type": "application/json"}


def post(api, path, body):
    response = api.http.post(path, headers=JSON, body=json.dumps(body))
    return response.status_code, json.loads(response.body)


def get(api, path):
    response = api.http.get(path, headers=OPERATOR)
    return response.status_code, json.loads(response.body)


def new_customer(api, email="points@example.com"):
    return post(api, "/customers", {"email": email})[1]["customer_id"]


def grant(api, customer_id, points, key="grant"):
    status, body = post(
        api,
        f"/customers/{customer_id}/points/adjustments",
        {"points": points, "reason": "welcome", "idempotency_key": key},
    )
    assert status == 201, body
    return body


def ledger_sum(customer_id: str) -> tuple[int, int]:
    """(balance item, sum of entries that moved the balance) read straight from the table."""
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    items = ddb.query(
        TableName="crm-local-ledger",
        KeyConditionExpression="customer_id = :c",
        ExpressionAttributeValues={":c": {"S": customer_id}},
        ConsistentRead=True,
    )["Items"]
    balance = next((int(i["balance"]["N"]) for i in items if i["sk"]["S"] == "bal"), 0)
    lots = sum(
        int(i["remaining"]["N"])
        for i in items
        if i["sk"]["S"].startswith("bal#lot#") and i["status"]["S"] == "active"
    )
    return balance, lots


def test_the_program_is_the_contracts(api):
    status, program = get(api, "/loyalty/program")
    assert status == 200
    assert program["redemption"]["points"] == 1000
    assert program["redemption"]["coupon"] == {"amount": "50.00", "currency": "CNY"}
    assert [
        (t["name"], t["spend_12_months"]["amount"], t["multiplier"]) for t in program["tiers"]
    ] == [("regular", "0.00", "1.0"), ("silver", "2000.00", "1.25"), ("gold", "10000.00", "1.5")]


def test_fifty_concurrent_redemptions_of_1000_against_10000_make_exactly_ten_coupons(api):
    from crm.services import ledger

    customer_id = new_customer(api)
    grant(api, customer_id, 10_000)

    def attempt(i: int):
        try:
            return ledger.redeem(customer_id, 1000, f"key-{i}")
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(attempt, range(50)))
    coupons = [o for o in outcomes if isinstance(o, tuple)]
    refused = [o for o in outcomes if not isinstance(o, tuple)]
    assert len(coupons) == 10
    assert len({c["code"] for c, _ in coupons}) == 10
    assert all(getattr(e, "code", None) == "insufficient_points" for e in refused), refused
    assert ledger_sum(customer_id) == (0, 0)
    status, body = get(api, f"/customers/{customer_id}/points")
    assert status == 200 and body["balance"] == 0
    assert sum(e["points"] for e in body["entries"]) == 0


def test_the_same_idempotency_key_gives_the_same_coupon_and_insufficient_is_409(api):
    customer_id = new_customer(api)
    grant(api, customer_id, 1500)
    body = {"points": 1000, "idempotency_key": "checkout-77"}
    first = post(api, f"/customers/{customer_id}/points/redemptions", body)
    second = post(api, f"/customers/{customer_id}/points/redemptions", body)
    assert first[0] == 201 and second[0] == 200
    assert first[1]["coupon"] == second[1]["coupon"]
    assert first[1]["coupon"]["value"] == {"amount": "50.00", "currency": "CNY"}
    refused = post(
        api,
        f"/customers/{customer_id}/points/redemptions",
        {"points": 1000, "idempotency_key": "another"},
    )
    assert refused[0] == 409
    assert refused[1]["error"]["code"] == "insufficient_points"
    assert refused[1]["error"]["balance"] == 500


@pytest.mark.parametrize(
    "body",
    [
        {"points": 999, "idempotency_key": "k"},
        {"points": "1000", "idempotency_key": "k"},
        {"points": 1000},
        {"points": -1000, "idempotency_key": "k"},
    ],
)
def test_bad_redemptions_are_422(api, body):
    customer_id = new_customer(api)
    assert post(api, f"/customers/{customer_id}/points/redemptions", body)[0] == 422


def test_redemption_for_an_unknown_customer_is_404(api):
    status, _ = post(
        api, "/customers/cus_nobody/points/redemptions", {"points": 1000, "idempotency_key": "k"}
    )
    assert status == 404


def test_points_expire_after_12_months_soonest_first_and_are_spent_first(api):
    from crm.services import ledger

    # Two orders delivered two months apart.
    for order_id, day in ((2001, "2026-01-10"), (2002, "2026-03-05")):
        payload = order_payload(
            order_id,
            email="old@example.com",
            lines=[("SKU", 1, "1000.00")],
            financial_status="paid",
            fulfillment_status="fulfilled",
            created_at=f"{day}T10:00:00+08:00",
            updated_at=f"{day}T12:00:00+08:00",
        )
        api.http.post(
            "/webhooks/shopify",
            headers=deliver("orders/fulfilled", payload).headers(),
            body=deliver("orders/fulfilled", payload).body,
        )
    customer_id = get(api, "/orders/2001")[1]["customer_id"]
    status, body = get(api, f"/customers/{customer_id}/points")
    assert status == 200 and body["balance"] == 2000
    lots = body["lots"]
    assert [lot["expires_at"][:10] for lot in lots] == ["2027-01-10", "2027-03-05"]

    # A redemption spends the soonest-expiring lot first.
    ledger.redeem(customer_id, 1000, "first")
    body = get(api, f"/customers/{customer_id}/points")[1]
    assert [(lot["source"], lot["amount"]) for lot in body["lots"]] == [("ord_shopify_2002", 1000)]
    # Expiry at a date after the second lot's end: it expires, once.
    counts = ledger.expire_points("2027-03-06T00:00:00+00:00")
    assert counts == {"lots": 1, "points": 1000, "skipped": 0}
    assert ledger.expire_points("2027-03-06T00:00:00+00:00")["lots"] == 0
    body = get(api, f"/customers/{customer_id}/points")[1]
    assert body["balance"] == 0
    assert [e["type"] for e in body["entries"]].count("expire") == 1


def test_an_unexpired_lot_is_left_alone(api):
    from crm.services import ledger

    customer_id = new_customer(api)
    grant(api, customer_id, 500)
    assert ledger.expire_points()["lots"] == 0
    assert get(api, f"/customers/{customer_id}/points")[1]["balance"] == 500


def test_passing_2000_makes_silver_and_the_next_earn_is_x1_25(api):
    email = "tier@example.com"
    orders = [(3001, "1500.00"), (3002, "600.00"), (3003, "100.00")]
    for order_id, price in orders:
        payload = order_payload(
            order_id,
            email=email,
            lines=[("SKU", 1, price)],
            shipping="0.00",
            financial_status="paid",
            created_at="2026-11-20T10:00:00+08:00",
            updated_at=f"2026-11-20T10:0{order_id % 10}:00+08:00",
        )
        delivery = deliver("orders/paid", payload)
        api.http.post("/webhooks/shopify", headers=delivery.headers(), body=delivery.body)
    earned = [get(api, f"/orders/{o}")[1]["points"]["earned"] for o, _ in orders]
    assert earned == [1500, 600, 125]  # the order that crosses 2000 still earns at x1
    customer_id = get(api, "/orders/3001")[1]["customer_id"]
    assert get(api, f"/customers/{customer_id}")[1]["tier"] == "silver"
    tier = get(api, f"/customers/{customer_id}/points")[1]["tier"]
    assert tier["name"] == "silver" and tier["spend_12_months"]["amount"] == "2200.00"
    # The change is recorded once, for notifications to use.
    from crm.store.ledger import get_ledger_store

    events = get_ledger_store().tier_events(customer_id)
    assert [(e["from"], e["to"], e["order_id"]) for e in events] == [
        ("regular", "silver", "ord_shopify_3002")
    ]


def test_spend_that_leaves_the_window_drops_the_tier(api):
    payload = order_payload(
        3101,
        email="lapsed@example.com",
        lines=[("SKU", 1, "2500.00")],
        shipping="0.00",
        financial_status="paid",
        created_at="2025-09-01T10:00:00+08:00",
        updated_at="2025-09-01T10:00:00+08:00",
        processed_at="2025-09-01T10:00:00+08:00",
    )
    delivery = deliver("orders/paid", payload)
    api.http.post("/webhooks/shopify", headers=delivery.headers(), body=delivery.body)
    customer_id = get(api, "/orders/3101")[1]["customer_id"]
    # Paid 14 months ago: outside the 12-month window, so regular, and the next earn is x1.
    assert get(api, f"/customers/{customer_id}")[1]["tier"] == "regular"
    payload = order_payload(
        3102,
        email="lapsed@example.com",
        lines=[("SKU", 1, "100.00")],
        shipping="0.00",
        financial_status="paid",
    )
    delivery = deliver("orders/paid", payload)
    api.http.post("/webhooks/shopify", headers=delivery.headers(), body=delivery.body)
    assert get(api, "/orders/3102")[1]["points"]["earned"] == 100


def test_adjustments_are_idempotent_and_never_take_the_balance_below_zero(api):
    customer_id = new_customer(api)
    first = grant(api, customer_id, 300, key="adj-1")
    status, again = post(
        api,
        f"/customers/{customer_id}/points/adjustments",
        {"points": 300, "reason": "welcome", "idempotency_key": "adj-1"},
    )
    assert status == 200 and again["entry_id"] == first["entry_id"]
    status, body = post(
        api,
        f"/customers/{customer_id}/points/adjustments",
        {"points": -500, "reason": "correction", "idempotency_key": "adj-2"},
    )
    assert status == 409 and body["error"]["code"] == "insufficient_points"
    status, body = post(
        api,
        f"/customers/{customer_id}/points/adjustments",
        {"points": -200, "reason": "correction", "idempotency_key": "adj-3"},
    )
    assert status == 201
    assert get(api, f"/customers/{customer_id}/points")[1]["balance"] == 100
    assert ledger_sum(customer_id) == (100, 100)


def test_a_merge_moves_orders_points_and_spend_and_later_events_follow(api):
    target = new_customer(api, "keep@example.com")
    payload = order_payload(
        4001,
        email="dup@example.com",
        lines=[("SKU", 1, "800.00")],
        shipping="0.00",
        financial_status="paid",
    )
    delivery = deliver("orders/paid", payload)
    api.http.post("/webhooks/shopify", headers=delivery.headers(), body=delivery.body)
    source = get(api, "/orders/4001")[1]["customer_id"]
    grant(api, source, 300, key="src-grant")

    status, _ = post(api, f"/customers/{target}/merge", {"source_id": source})
    assert status == 200
    assert get(api, "/orders/4001")[1]["customer_id"] == target
    body = get(api, f"/customers/{target}/points")[1]
    assert (body["balance"], body["pending"]) == (300, 800)
    assert get(api, f"/customers/{source}/points")[1]["balance"] == 0
    view = get(api, f"/customers/{target}")[1]
    assert view["stats"]["orders_count"] == 1
    assert [o["order_id"] for o in view["recent_orders"]] == ["ord_shopify_4001"]
    # The order's delivery, arriving after the merge, activates the points on the target.
    fulfilled = dict(
        payload, fulfillment_status="fulfilled", updated_at="2026-11-21T10:00:00+08:00"
    )
    delivery = deliver("orders/fulfilled", fulfilled)
    api.http.post("/webhooks/shopify", headers=delivery.headers(), body=delivery.body)
    body = get(api, f"/customers/{target}/points")[1]
    assert (body["balance"], body["pending"]) == (1100, 0)
    assert ledger_sum(target) == (1100, 1100)
    # Retrying the merge changes nothing.
    assert post(api, f"/customers/{target}/merge", {"source_id": source})[0] == 200
    assert get(api, f"/customers/{target}/points")[1]["balance"] == 1100


def test_an_erased_customer_cannot_redeem(api):
    customer_id = new_customer(api, "gone@example.com")
    grant(api, customer_id, 2000)
    assert api.http.delete(f"/customers/{customer_id}", headers=OPERATOR).status_code == 200
    status, body = post(
        api,
        f"/customers/{customer_id}/points/redemptions",
        {"points": 1000, "idempotency_key": "after-erasure"},
    )
    assert status == 409 and body["error"]["code"] == "erased"
    assert ledger_sum(customer_id) == (2000, 2000)
