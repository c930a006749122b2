"""A migrated shop's refunded orders: the order history import's refunded amount, then the
platform's own refunds of the same order (a replayed `orders/updated`, a `refunds/create`).
The refunded total, the customer's spend and the points move once, by the difference, and no
refund workflow (restock, "refund issued" message) starts for refunds the import had covered.
Through the import loop's writer and the webhook route, against moto."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3

from tests.conftest import OPERATOR
from tests.integration.test_order_import import ago, export_csv, line, order, utc
from tests.support.shopify import deliver, order_payload, refund_payload

EMAIL = "migrated@example.com"
PAID, FULFILLED = ago(20), ago(18)
R1_AT, R2_AT = ago(17), ago(16)  # refunded before the shop moved to the CRM


def after_the_import(seconds: int = 2) -> datetime:
    """A moment after the import just run (the import stamps its amount with its own time)."""
    return datetime.now(UTC) + timedelta(seconds=seconds)


def get(api, path: str):
    answer = api.http.get(path, headers=OPERATOR)
    assert answer.status_code == 200, answer.body
    return json.loads(answer.body)


def webhook(api, topic: str, payload: dict) -> None:
    delivery = deliver(topic, payload)  # a fresh webhook id each time: a replay, not a retry
    answer = api.http.post("/webhooks/shopify", headers=delivery.headers(), body=delivery.body)
    assert answer.status_code == 200, answer.body


def import_file(order_id: int, refunded: str) -> str:
    """The shop's export of one order (2 x 100.00 + 10.00 shipping, delivered 18 days ago),
    through the drop folder's writer."""
    from crm.domain.import_files import read_rows
    from crm.services import order_import

    rows = order(
        order_id,
        EMAIL,
        [line("TEA", 2, "100.00")],
        status="partially_refunded",
        paid=PAID,
        fulfilled=FULFILLED,
        refunded=refunded,
    )
    text = export_csv([rows])
    units = list(order_import.units(iter(read_rows([text.encode()], "csv"))))
    [outcome] = order_import.write(units)
    return outcome.result


def refund(refund_id: int, order_id: int, amount: str, at) -> dict:
    return refund_payload(refund_id, order_id, amount=amount, created_at=utc(at))


def shopify_order(order_id: int, updated_at, *refunds: dict) -> dict:
    """The order as Shopify sends it in `orders/updated`: listing every refund it has."""
    return order_payload(
        order_id,
        email=EMAIL,
        lines=[("TEA", 2, "100.00")],
        financial_status="partially_refunded",
        fulfillment_status="fulfilled",
        created_at=utc(PAID - timedelta(minutes=3)),
        processed_at=utc(PAID),
        updated_at=utc(updated_at),
        refunds=list(refunds),
    )


def money_view(api, order_id: int) -> dict:
    """What a refund moves: the order's refunded total, the customer's spend, the points."""
    order_view = get(api, f"/orders/{order_id}")
    customer_id = order_view["customer_id"]
    stats = get(api, f"/customers/{customer_id}")["stats"]
    points = get(api, f"/customers/{customer_id}/points")
    return {
        "refunded": order_view["totals"]["refunded"]["amount"],
        "status": order_view["status"],
        "total_spent": stats["total_spent"]["amount"],
        "orders_count": stats["orders_count"],
        "balance": points["balance"],
        "entries": sorted((e["type"], e["points"]) for e in points["entries"]),
    }


def refund_executions() -> list[str]:
    from crm.config import get_settings

    client = boto3.client("stepfunctions", region_name="us-east-1")
    arn = get_settings().refund_machine
    return sorted(e["name"] for e in client.list_executions(stateMachineArn=arn)["executions"])


def notifications(api, order_id: int) -> list[str]:
    customer_id = get(api, f"/orders/{order_id}")["customer_id"]
    return [n["kind"] for n in get(api, f"/customers/{customer_id}/notifications")["items"]]


def test_importing_then_replaying_the_orders_webhook_counts_its_refunds_once(api):
    # Given an order imported with 50.00 refunded (200 points earned, 50 reversed)
    assert import_file(660001, "50.00") == "created"
    imported = money_view(api, 660001)
    assert imported == {
        "refunded": "50.00",
        "status": "partially_refunded",
        "total_spent": "160.00",
        "orders_count": 1,
        "balance": 150,
        "entries": [("earn", 200), ("reverse", -50)],
    }
    r1, r2 = refund(9001, 660001, "30.00", R1_AT), refund(9002, 660001, "20.00", R2_AT)

    # When Shopify's orders/updated for the second refund is replayed, listing both refunds
    webhook(api, "orders/updated", shopify_order(660001, R2_AT, r1, r2))
    # Then nothing that money moves has moved, and nobody is told of old refunds
    assert money_view(api, 660001) == imported
    statuses = {r["refund_id"]: r["status"] for r in get(api, "/orders/660001")["refunds"]}
    assert statuses == {"import-660001": "superseded", "9001": "completed", "9002": "completed"}
    assert refund_executions() == []
    assert "refund_issued" not in notifications(api, 660001)

    # When it comes again, and then as the order's next update after the import
    webhook(api, "orders/updated", shopify_order(660001, R2_AT, r1, r2))
    webhook(api, "orders/updated", shopify_order(660001, after_the_import(), r1, r2))
    # Then still nothing has moved
    assert money_view(api, 660001) == imported
    assert refund_executions() == []

    # When the file is imported again
    outcome = import_file(660001, "50.00")
    # Then nothing moves either
    assert outcome == "unchanged"
    assert money_view(api, 660001) == imported


def test_a_platform_refund_beyond_the_imported_amount_counts_once(api):
    # Given an order imported with 50.00 refunded, and the two refunds it summed replayed
    import_file(660002, "50.00")
    r1, r2 = refund(9011, 660002, "30.00", R1_AT), refund(9012, 660002, "20.00", R2_AT)
    webhook(api, "orders/updated", shopify_order(660002, R2_AT, r1, r2))
    # When a new refund of 10.00 is made after the import (refunds/create alone, then the
    # order's update listing all three, then both again)
    r3 = refund(9013, 660002, "10.00", after_the_import(1))
    webhook(api, "refunds/create", {**r3, "order_id": 660002})
    once = money_view(api, 660002)
    for _ in range(2):
        webhook(api, "orders/updated", shopify_order(660002, after_the_import(), r1, r2, r3))
        webhook(api, "refunds/create", {**r3, "order_id": 660002})
    # Then the 10.00 counts once: 60.00 refunded, 150.00 spent, 10 more points reversed once
    assert once == money_view(api, 660002)
    assert once == {
        "refunded": "60.00",
        "status": "partially_refunded",
        "total_spent": "150.00",
        "orders_count": 1,
        "balance": 140,
        "entries": [("earn", 200), ("reverse", -50), ("reverse", -10)],
    }
    # and only the new refund goes through the refund workflow (stock, the customer's notice)
    assert [name for name in refund_executions() if "9013" in name] == refund_executions()
    assert len(refund_executions()) == 1


def test_a_platform_listing_less_than_the_file_after_the_import_is_believed_once(api):
    # Given an order imported with 50.00 refunded
    import_file(660003, "50.00")
    # When the platform's update after the import lists a single refund of 30.00
    r1 = refund(9021, 660003, "30.00", R1_AT)
    later = shopify_order(660003, after_the_import(), r1)
    webhook(api, "orders/updated", later)
    webhook(api, "orders/updated", later)
    # Then the platform's refunds replace the file's: 30.00 refunded, 180.00 spent, and the 20
    # points the extra 20.00 had taken come back, once
    assert money_view(api, 660003) == {
        "refunded": "30.00",
        "status": "partially_refunded",
        "total_spent": "180.00",
        "orders_count": 1,
        "balance": 170,
        "entries": [("adjust", 20), ("earn", 200), ("reverse", -50)],
    }


def test_importing_an_order_known_from_webhooks_adds_no_refund(api):
    # Given an order the CRM knows from Shopify's webhooks, with its two refunds
    r1, r2 = refund(9031, 660004, "30.00", R1_AT), refund(9032, 660004, "20.00", R2_AT)
    webhook(api, "orders/updated", shopify_order(660004, R2_AT, r1, r2))
    known = money_view(api, 660004)
    assert (known["refunded"], known["total_spent"]) == ("50.00", "160.00")
    # When the shop's history file, exported before the move, is imported
    assert import_file(660004, "50.00") == "updated"
    # Then its refunded amount is the same refunds: nothing moves
    assert money_view(api, 660004) == known
