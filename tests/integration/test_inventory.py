"""Inventory against moto: the routes, reservations under concurrency, idempotent workflow
tasks, release/ship/restock arithmetic, and low-stock alerts once per breach."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest

from crm.domain.errors import AddressNotRoutable, OutOfStock, Unavailable
from tests.conftest import OPERATOR

JSON = {**OPERATOR, "Content-Type": "application/json"}
TABLE = "crm-local-inventory"
HANGZHOU = {"country_code": "CN", "province": "Zhejiang", "province_code": "ZJ", "zip": "310000"}
BEIJING = {"country_code": "CN", "latitude": "39.91", "longitude": "116.39"}


def put(api, sku, body):
    response = api.http.put(f"/inventory/{sku}", headers=JSON, body=json.dumps(body))
    return response.status_code, json.loads(response.body)


def get(api, sku):
    response = api.http.get(f"/inventory/{sku}", headers=OPERATOR)
    return response.status_code, json.loads(response.body)


def set_stock(api, sku, **per_warehouse):
    """`set_stock(api, "SKU", shanghai=(10, 2))`: (on_hand, safety_stock) per warehouse."""
    body = {
        "warehouses": [
            {"warehouse_id": f"wh-{name}", "on_hand": on_hand, "safety_stock": safety}
            for name, (on_hand, safety) in per_warehouse.items()
        ]
    }
    status, answer = put(api, sku, body)
    assert status == 200, answer
    return answer


def stock_items(sku: str) -> dict[str, dict[str, int]]:
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    items = ddb.query(
        TableName=TABLE,
        KeyConditionExpression="sku = :s",
        ExpressionAttributeValues={":s": {"S": sku}},
        ConsistentRead=True,
    )["Items"]
    return {
        i["sk"]["S"]: {k: int(i[k]["N"]) for k in ("on_hand", "reserved", "available")}
        for i in items
    }


def order_items(order_id: str) -> dict[str, dict[str, object]]:
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    items = ddb.query(
        TableName=TABLE,
        KeyConditionExpression="sku = :s",
        ExpressionAttributeValues={":s": {"S": f"order#{order_id}"}},
        ConsistentRead=True,
    )["Items"]
    return {i["sk"]["S"]: {k: next(iter(v.values())) for k, v in i.items()} for i in items}


def warehouse(body, warehouse_id):
    return next(w for w in body["warehouses"] if w["warehouse_id"] == warehouse_id)


# -- routes -------------------------------------------------------------------------------------


def test_put_then_get(api):
    status, body = put(
        api,
        "TEA-001",
        {
            "warehouses": [
                {"warehouse_id": "wh-shanghai", "on_hand": 10, "safety_stock": 2},
                {"warehouse_id": "wh-beijing", "on_hand": 4},
            ]
        },
    )
    assert status == 200, body
    status, body = get(api, "TEA-001")
    assert status == 200
    assert body["sku"] == "TEA-001"
    assert body["warehouses"] == [
        {
            "warehouse_id": "wh-shanghai",
            "name": "Shanghai",
            "on_hand": 10,
            "reserved": 0,
            "available": 10,
            "safety_stock": 2,
            "low_stock": False,
        },
        {
            "warehouse_id": "wh-beijing",
            "name": "Beijing",
            "on_hand": 4,
            "reserved": 0,
            "available": 4,
            "safety_stock": 0,
            "low_stock": False,
        },
    ]
    assert body["totals"] == {"on_hand": 14, "reserved": 0, "available": 14, "safety_stock": 2}

    # The contract's single form; an omitted safety stock is kept.
    status, body = put(api, "TEA-001", {"warehouse": "wh-shanghai", "on_hand": 7})
    assert status == 200, body
    assert warehouse(body, "wh-shanghai") | {"name": None} == {
        "warehouse_id": "wh-shanghai",
        "name": None,
        "on_hand": 7,
        "reserved": 0,
        "available": 7,
        "safety_stock": 2,
        "low_stock": False,
    }


def test_an_unknown_sku_is_404(api):
    status, body = get(api, "NO-SUCH-SKU")
    assert status == 404
    assert body["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("body", "field", "issue"),
    [
        ({"warehouses": [{"warehouse_id": "wh-mars", "on_hand": 1}]}, "warehouse_id", "unknown"),
        ({"warehouses": [{"warehouse_id": "wh-shanghai", "on_hand": -1}]}, "on_hand", "invalid"),
        ({"warehouses": [{"warehouse_id": "wh-shanghai", "on_hand": 1.5}]}, "on_hand", "invalid"),
        ({"warehouses": [{"warehouse_id": "wh-shanghai", "on_hand": "3"}]}, "on_hand", "invalid"),
        ({"warehouses": [{"warehouse_id": "wh-shanghai", "on_hand": True}]}, "on_hand", "invalid"),
        ({"warehouses": [{"warehouse_id": "wh-shanghai"}]}, "on_hand", "missing"),
        (
            {"warehouses": [{"warehouse_id": "wh-shanghai", "on_hand": 1, "safety_stock": -2}]},
            "safety_stock",
            "invalid",
        ),
        (
            {"warehouses": [{"warehouse_id": "wh-shanghai", "on_hand": 1, "colour": "red"}]},
            "colour",
            "unknown_field",
        ),
        (
            {
                "warehouses": [
                    {"warehouse_id": "wh-shanghai", "on_hand": 1},
                    {"warehouse_id": "wh-shanghai", "on_hand": 2},
                ]
            },
            "warehouse_id",
            "duplicate",
        ),
        ({"warehouses": []}, "warehouses", "wrong_type"),
        ({"warehouses": [{"on_hand": 1}]}, "warehouse_id", "missing"),
        ({"on_hand": 1}, "warehouse_id", "missing"),
    ],
)
def test_bad_puts_are_422_with_details(api, body, field, issue):
    status, answer = put(api, "TEA-002", body)
    assert status == 422, answer
    assert answer["error"]["code"] == "validation_failed"
    assert any(
        d["field"].endswith(field) and d["issue"].startswith(issue)
        for d in answer["error"]["details"]
    ), answer["error"]["details"]
    assert get(api, "TEA-002")[0] == 404  # nothing was written


def test_a_put_that_is_not_an_object_or_not_json(api):
    response = api.http.put("/inventory/TEA-003", headers=JSON, body="[1, 2]")
    assert response.status_code == 422
    response = api.http.put("/inventory/TEA-003", headers=JSON, body="{not json")
    assert response.status_code == 400


def test_on_hand_below_reserved_is_409(api):
    from crm.services import inventory

    set_stock(api, "TEA-004", shanghai=(3, 0))
    inventory.allocate_and_reserve("o-409", [("TEA-004", 2)], HANGZHOU)
    status, body = put(api, "TEA-004", {"warehouse": "wh-shanghai", "on_hand": 1})
    assert status == 409
    assert body["error"]["code"] == "stock_reserved"
    assert body["error"]["details"] == [
        {"warehouse_id": "wh-shanghai", "on_hand": 1, "reserved": 2}
    ]
    status, body = put(api, "TEA-004", {"warehouse": "wh-shanghai", "on_hand": 5})
    assert status == 200
    assert warehouse(body, "wh-shanghai")["available"] == 3
    assert stock_items("TEA-004")["wh-shanghai"] == {"on_hand": 5, "reserved": 2, "available": 3}


def test_warehouses_can_be_replaced_by_configuration(api, monkeypatch):
    from crm.services import inventory

    monkeypatch.setenv(
        "CRM_WAREHOUSES",
        json.dumps([{"warehouse_id": "wh-wuhan", "name": "Wuhan", "latitude": 30.59,
                     "longitude": 114.31, "regions": ["HB"]}]),
    )  # fmt: skip
    assert [w.warehouse_id for w in inventory.warehouses()] == ["wh-wuhan"]
    assert put(api, "TEA-005", {"warehouse": "wh-shanghai", "on_hand": 1})[0] == 422
    assert put(api, "TEA-005", {"warehouse": "wh-wuhan", "on_hand": 1})[0] == 200
    result = inventory.allocate_and_reserve("o-wuhan", [("TEA-005", 1)], HANGZHOU)
    assert result["warehouse_id"] == "wh-wuhan"


# -- reservations -------------------------------------------------------------------------------


def test_twenty_concurrent_orders_for_five_units_reserve_exactly_five(api):
    from crm.services import inventory

    set_stock(api, "LAST-UNITS", shanghai=(5, 0))
    done = threading.Event()
    seen_available: list[int] = []

    def watch() -> None:
        while not done.is_set():
            seen_available.append(stock_items("LAST-UNITS")["wh-shanghai"]["available"])

    def order(i: int):
        try:
            return inventory.allocate_and_reserve(f"race-{i}", [("LAST-UNITS", 1)], HANGZHOU)
        except Exception as exc:
            return exc

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with ThreadPoolExecutor(20) as pool:
            outcomes = list(pool.map(order, range(20)))
    finally:
        done.set()
        watcher.join()

    reserved = [o for o in outcomes if isinstance(o, dict)]
    refused = [o for o in outcomes if not isinstance(o, dict)]
    assert len(reserved) == 5
    assert len(refused) == 15
    assert all(isinstance(e, OutOfStock) for e in refused), refused
    assert all(e.details[0]["sku"] == "LAST-UNITS" for e in refused)
    assert stock_items("LAST-UNITS") == {
        "wh-shanghai": {"on_hand": 5, "reserved": 5, "available": 0}
    }
    assert seen_available and min(seen_available) >= 0
    holders = [i for i in range(20) if order_items(f"race-{i}")]
    assert len(holders) == 5
    for i in holders:
        items = order_items(f"race-{i}")
        assert items["#order"]["state"] == "reserved"
        assert items["LAST-UNITS#wh-shanghai"]["quantity"] == "1"


def test_a_reservation_made_twice_for_the_same_order_reserves_once(api):
    from crm.services import inventory

    set_stock(api, "TWICE", shanghai=(5, 0), beijing=(5, 0))
    first = inventory.allocate_and_reserve("o-twice", [("TWICE", 2)], HANGZHOU)
    assert first["replay"] is False and first["warehouse_id"] == "wh-shanghai"
    # Stock changes between the two runs: the second run must not reserve elsewhere.
    set_stock(api, "TWICE", shanghai=(2, 0))
    second = inventory.allocate_and_reserve("o-twice", [("TWICE", 2)], HANGZHOU)
    assert second["replay"] is True
    assert second["parts"] == first["parts"]
    assert stock_items("TWICE") == {
        "wh-shanghai": {"on_hand": 2, "reserved": 2, "available": 0},
        "wh-beijing": {"on_hand": 5, "reserved": 0, "available": 5},
    }
    # Two runs at once: one reservation.
    with ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(
                lambda _: inventory.allocate_and_reserve("o-both", [("TWICE", 1)], BEIJING),
                range(4),
            )
        )
    assert sum(not r["replay"] for r in results) == 1
    assert stock_items("TWICE")["wh-beijing"] == {"on_hand": 5, "reserved": 1, "available": 4}


def test_a_split_order_reserves_in_each_warehouse(api):
    from crm.services import inventory

    set_stock(api, "SPLIT-A", shanghai=(1, 0))
    set_stock(api, "SPLIT-B", guangzhou=(1, 0))
    result = inventory.allocate_and_reserve(
        "o-split", [{"sku": "SPLIT-A", "quantity": 1}, {"sku": "SPLIT-B", "quantity": 1}], HANGZHOU
    )
    assert result["split"] is True and result["warehouse_id"] is None
    assert [(p["warehouse_id"], p["lines"]) for p in result["parts"]] == [
        ("wh-shanghai", [{"sku": "SPLIT-A", "quantity": 1}]),
        ("wh-guangzhou", [{"sku": "SPLIT-B", "quantity": 1}]),
    ]
    assert stock_items("SPLIT-A")["wh-shanghai"]["reserved"] == 1
    assert stock_items("SPLIT-B")["wh-guangzhou"]["reserved"] == 1


def test_out_of_stock_and_unroutable_orders_reserve_nothing(api):
    from crm.services import inventory

    set_stock(api, "SHORT", beijing=(1, 0))
    with pytest.raises(OutOfStock) as caught:
        inventory.allocate_and_reserve("o-short", [("SHORT", 2), ("NONE", 1)], HANGZHOU)
    assert caught.value.details == [
        {"sku": "SHORT", "requested": 2, "available": 1},
        {"sku": "NONE", "requested": 1, "available": 0},
    ]
    with pytest.raises(AddressNotRoutable):
        inventory.allocate_and_reserve("o-nowhere", [("SHORT", 1)], {"country_code": "CN"})
    assert order_items("o-short") == {} and order_items("o-nowhere") == {}
    assert stock_items("SHORT")["wh-beijing"]["reserved"] == 0


def test_release_ship_and_restock_move_the_numbers_right(api):
    from crm.services import inventory

    set_stock(api, "FLOW", shanghai=(10, 0))
    inventory.allocate_and_reserve("o-cancel", [("FLOW", 3)], HANGZHOU)
    inventory.allocate_and_reserve("o-ship", [("FLOW", 4)], HANGZHOU)
    assert stock_items("FLOW")["wh-shanghai"] == {"on_hand": 10, "reserved": 7, "available": 3}

    released = inventory.release_order("o-cancel")
    assert released["released"] == 3
    assert released["lines"] == [{"sku": "FLOW", "warehouse_id": "wh-shanghai", "quantity": 3}]
    assert stock_items("FLOW")["wh-shanghai"] == {"on_hand": 10, "reserved": 4, "available": 6}
    assert inventory.release_order("o-cancel")["released"] == 0  # twice: nothing more
    assert inventory.ship_order("o-cancel")["shipped"] == 0  # released: nothing to ship

    assert inventory.ship_order("o-ship")["shipped"] == 4
    assert stock_items("FLOW")["wh-shanghai"] == {"on_hand": 6, "reserved": 0, "available": 6}
    assert inventory.ship_order("o-ship")["shipped"] == 0
    assert inventory.release_order("o-ship")["released"] == 0  # shipped stock is not released
    assert order_items("o-ship")["#order"]["state"] == "shipped"
    # A task run again after shipping answers the reservation, reserves nothing.
    assert inventory.allocate_and_reserve("o-ship", [("FLOW", 4)], HANGZHOU)["replay"] is True

    back = inventory.restock_order("o-ship", "refund-1", [("FLOW", 1)])
    assert back["restocked"] == [{"sku": "FLOW", "warehouse_id": "wh-shanghai", "quantity": 1}]
    assert back["not_restocked"] == [] and back["replay"] is False
    assert stock_items("FLOW")["wh-shanghai"] == {"on_hand": 7, "reserved": 0, "available": 7}
    again = inventory.restock_order("o-ship", "refund-1", [("FLOW", 1)])
    assert again["replay"] is True and again["restocked"] == back["restocked"]
    assert stock_items("FLOW")["wh-shanghai"]["on_hand"] == 7
    # Never more than was shipped: 3 more can come back, not 5.
    more = inventory.restock_order("o-ship", "refund-2", [("FLOW", 5)])
    assert more["restocked"] == [{"sku": "FLOW", "warehouse_id": "wh-shanghai", "quantity": 3}]
    assert more["not_restocked"] == [{"sku": "FLOW", "quantity": 2}]
    assert stock_items("FLOW")["wh-shanghai"] == {"on_hand": 10, "reserved": 0, "available": 10}

    nothing = inventory.restock_order("o-ship", "refund-3", [])
    assert nothing["restocked"] == [] and nothing["not_restocked"] == []

    # A released order may be allocated again (an operator's "retry").
    again_reserved = inventory.allocate_and_reserve("o-cancel", [("FLOW", 2)], HANGZHOU)
    assert again_reserved["replay"] is False
    assert stock_items("FLOW")["wh-shanghai"] == {"on_hand": 10, "reserved": 2, "available": 8}


# -- low stock ----------------------------------------------------------------------------------


@pytest.fixture
def ops_queue(aws):
    """An SQS queue subscribed to the ops topic: what operations would receive."""
    sns = boto3.client("sns", region_name="us-east-1")
    sqs = boto3.client("sqs", region_name="us-east-1")
    topic_arn = aws["topics"]["crm-local-ops"]
    url = sqs.create_queue(QueueName="ops-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)

    def drain() -> list[dict]:
        received = []
        while True:
            batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            if not batch:
                return received
            for message in batch:
                envelope = json.loads(message["Body"])
                received.append({"subject": envelope["Subject"], **json.loads(envelope["Message"])})
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    return drain


def test_low_stock_alerts_once_per_breach(api, ops_queue):
    from crm.services import inventory
    from functions.inventory import low_stock_job

    set_stock(api, "LOW", shanghai=(10, 3), beijing=(10, 3))
    counts = low_stock_job({}, None)
    assert counts["alerted"] == 0 and counts["below_safety"] == 0
    assert ops_queue() == []

    # Reservations eat into available: 10 - 8 = 2 < 3.
    inventory.allocate_and_reserve("o-low", [("LOW", 8)], HANGZHOU)
    counts = low_stock_job({}, None)
    assert counts["alerted"] == 1 and counts["below_safety"] == 1
    assert counts["checked"] == 2  # the two stock items; the order's items are not stock
    alerts = ops_queue()
    assert alerts == [
        {
            "subject": "Low stock: LOW at wh-shanghai",
            "type": "low_stock",
            "sku": "LOW",
            "warehouse_id": "wh-shanghai",
            "on_hand": 10,
            "reserved": 8,
            "available": 2,
            "safety_stock": 3,
            "at": alerts[0]["at"],
        }
    ]
    # Every hour after: still below, no new alert.
    for _ in range(3):
        counts = low_stock_job({}, None)
        assert counts["alerted"] == 0 and counts["already_alerted"] == 1
    assert ops_queue() == []

    # Recovery clears the mark without an alert...
    set_stock(api, "LOW", shanghai=(20, 3))
    counts = low_stock_job({}, None)
    assert counts["cleared"] == 1 and counts["alerted"] == 0
    assert ops_queue() == []
    # ...so the next breach alerts again.
    set_stock(api, "LOW", shanghai=(9, 3))
    counts = low_stock_job({}, None)
    assert counts["alerted"] == 1
    assert [(a["sku"], a["available"]) for a in ops_queue()] == [("LOW", 1)]


def test_a_failed_alert_is_tried_again_next_run(api, ops_queue, monkeypatch):
    from crm.adapters import ops
    from functions.inventory import low_stock_job

    set_stock(api, "FLAKY", shanghai=(1, 5))
    publish, down = ops.publish, [True]

    def flaky(subject, message):
        if down[0]:
            raise Unavailable("sns is down")
        publish(subject, message)

    monkeypatch.setattr(ops, "publish", flaky)
    assert low_stock_job({}, None)["failed"] == 1
    down[0] = False
    assert low_stock_job({}, None)["alerted"] == 1
    assert [a["sku"] for a in ops_queue()] == ["FLAKY"]


def test_concurrent_job_runs_alert_a_breach_once(api, ops_queue):
    from functions.inventory import low_stock_job

    set_stock(api, "BUSY", shanghai=(0, 1))
    with ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(lambda _: low_stock_job({}, None), range(4)))
    assert sum(r["alerted"] for r in runs) == 1
    assert len(ops_queue()) == 1
