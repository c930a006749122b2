"""The fulfilment workflow's steps on the way of every order, run by hand against moto: each
reads once and writes once (decision 61), so a step that runs twice, or many times at once
(Step Functions retries, a Lambda invoked again), must still reserve, ship, award points and
send its message exactly once. The number of AWS calls of each step is pinned here too: the
benchmark measures the whole order, this says which step grew."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3

from tests.conftest import OPERATOR
from tests.integration.test_inventory import set_stock, stock_items
from tests.support.shopify import deliver, order_payload

SKU = "TEA-STEPS"
RUNS = 8  # copies of one step at once


def run_step(step: str, order_id: str, **extra: Any) -> dict[str, Any]:
    from functions.fulfilment import fulfilment_step

    return fulfilment_step({"step": step, "order_id": order_id, **extra}, None)


def at_once(step: str, order_id: str, **extra: Any) -> list[dict[str, Any]]:
    with ThreadPoolExecutor(RUNS) as pool:
        return list(pool.map(lambda _: run_step(step, order_id, **extra), range(RUNS)))


def paid_order(api, number: int) -> dict[str, Any]:
    payload = order_payload(
        number,
        financial_status="paid",
        updated_at="2026-11-20T10:05:00+08:00",
        lines=[(SKU, 2, "150.00")],
    )
    delivery = deliver("orders/paid", payload)
    answer = api.http.post("/webhooks/shopify", headers=delivery.headers(), body=delivery.body)
    assert answer.status_code == 200, answer.body
    found = api.http.get(f"/orders/{number}", headers=OPERATOR)
    return json.loads(found.body)


def order(api, order_id: str) -> dict[str, Any]:
    return json.loads(api.http.get(f"/orders/{order_id}", headers=OPERATOR).body)


def messages(customer_id: str) -> list[str]:
    """The kinds of the customer's recorded messages, one entry per record."""
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    items = ddb.query(
        TableName="crm-local-notifications",
        KeyConditionExpression="customer_id = :c",
        ExpressionAttributeValues={":c": {"S": customer_id}},
        ConsistentRead=True,
    )["Items"]
    return sorted(i["kind"]["S"] for i in items)


def points(api, customer_id: str) -> dict[str, Any]:
    return json.loads(api.http.get(f"/customers/{customer_id}/points", headers=OPERATOR).body)


def test_each_step_run_many_times_at_once_moves_stock_points_and_messages_once(api):
    # Given 10 units in one warehouse and a paid order for 2 of them
    set_stock(api, SKU, shanghai=(10, 0))
    placed = paid_order(api, 8101)
    order_id, customer_id = placed["order_id"], placed["customer_id"]

    # When Allocate runs 8 times at once
    allocated = at_once("allocate", order_id)
    # Then the 2 units are reserved once, every run answers the same warehouse, and the
    # confirmation is recorded once
    assert stock_items(SKU)["wh-shanghai"] == {"on_hand": 10, "reserved": 2, "available": 8}
    assert {a["parts"][0]["warehouse_id"] for a in allocated} == {"wh-shanghai"}
    assert {a["customer_id"] for a in allocated} == {customer_id}
    assert messages(customer_id) == ["order_confirmed"]

    # When the shipment is recorded 8 times at once
    at_once("shipped", order_id, customer_id=customer_id, logistics={"event": "shipped"})
    # Then the units leave on hand once, and one shipping notice is recorded
    assert stock_items(SKU)["wh-shanghai"] == {"on_hand": 8, "reserved": 0, "available": 8}
    assert order(api, order_id)["status"] == "shipped"
    assert messages(customer_id) == ["order_confirmed", "order_shipped"]

    # When the delivery is marked 8 times at once
    at_once("delivered", order_id, customer_id=customer_id, logistics={"event": "delivered"})
    # Then the order is delivered with its time, its 300 points are active once, and one
    # delivery notice is recorded
    delivered = order(api, order_id)
    assert delivered["status"] == "delivered"
    assert delivered["fulfilment"]["delivered_at"]
    assert delivered["workflow"]["state"] == "delivered"
    balance = points(api, customer_id)
    assert (balance["balance"], balance["pending"]) == (300, 0)
    assert messages(customer_id) == ["order_confirmed", "order_delivered", "order_shipped"]
    assert stock_items(SKU)["wh-shanghai"] == {"on_hand": 8, "reserved": 0, "available": 8}


def test_the_steps_on_the_way_of_every_order_read_once_and_write_once(api):
    from bench.calls import CallCounter

    with CallCounter() as counter:  # from the start: it sees the clients as they are built
        # Given a paid order for stock that is there
        set_stock(api, SKU, shanghai=(10, 0))
        placed = paid_order(api, 8102)
        order_id, customer_id = placed["order_id"], placed["customer_id"]

        # When each step runs once
        with counter.measure() as allocate:
            run_step("allocate", order_id)
        with counter.measure() as wait:
            run_step("await_logistics", order_id, token="t-shipped", **{"for": "shipped"})
        with counter.measure() as shipped:
            run_step("shipped", order_id, customer_id=customer_id, logistics={})
        with counter.measure() as delivered:
            run_step("delivered", order_id, customer_id=customer_id, logistics={})

    # Then Allocate reads the order, then its customer and stock; writes the reservation, the
    # order and the confirmation's claim at once; sends and records the message
    assert allocate.breakdown() == {
        "dynamodb.BatchGetItem": 2,
        "dynamodb.TransactWriteItems": 2,
        "ses.SendEmail": 1,
    }
    # And a waiting step keeps its token in one UpdateItem
    assert wait.breakdown() == {"dynamodb.UpdateItem": 1}
    # And RecordShipment and MarkDelivered read once, write once, send and record
    for step in (shipped, delivered):
        assert step.breakdown() == {
            "dynamodb.BatchGetItem": 1,
            "dynamodb.TransactWriteItems": 2,
            "ses.SendEmail": 1,
        }


def test_an_order_too_large_for_one_write_goes_the_way_of_separate_writes(api):
    from crm.services.fulfilment import FAST_LINES

    # Given a paid order of more SKUs than one transaction can move with the order
    skus = [f"TEA-WIDE-{n:02d}" for n in range(FAST_LINES + 1)]
    for sku in skus:
        set_stock(api, sku, shanghai=(5, 0))
    payload = order_payload(
        8103,
        financial_status="paid",
        updated_at="2026-11-20T10:05:00+08:00",
        lines=[(sku, 1, "10.00") for sku in skus],
    )
    delivery = deliver("orders/paid", payload)
    assert (
        api.http.post(
            "/webhooks/shopify", headers=delivery.headers(), body=delivery.body
        ).status_code
        == 200
    )
    placed = json.loads(api.http.get("/orders/8103", headers=OPERATOR).body)
    order_id, customer_id = placed["order_id"], placed["customer_id"]

    # When it is allocated, shipped and delivered
    allocated = run_step("allocate", order_id)
    run_step("shipped", order_id, customer_id=customer_id, logistics={})
    run_step("delivered", order_id, customer_id=customer_id, logistics={})

    # Then every line was reserved and shipped once, and the customer told at each step
    assert sum(len(part["lines"]) for part in allocated["parts"]) == len(skus)
    assert {stock_items(sku)["wh-shanghai"]["on_hand"] for sku in skus} == {4}
    assert {stock_items(sku)["wh-shanghai"]["reserved"] for sku in skus} == {0}
    assert order(api, order_id)["status"] == "delivered"
    assert messages(customer_id) == ["order_confirmed", "order_delivered", "order_shipped"]
