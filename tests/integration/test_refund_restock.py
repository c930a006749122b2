"""A refund whose stock cannot be put back, against moto: the refund workflow's steps as the
workflow calls them. The refund stays paid, the refund says its restock failed, one
`restock_failed` case opens and operations get one alert (ids and SKUs only) however often the
step is retried; the case's `retry` puts the stock back, and the actions that do not apply are
refused."""

from __future__ import annotations

import json

import boto3
import pytest

from crm.domain.errors import CrmError
from tests.conftest import OPERATOR
from tests.support.shopify import deliver, order_payload

JSON = {**OPERATOR, "Content-Type": "application/json"}
SKU = "TEA-BACK"
HANGZHOU = {"country_code": "CN", "province": "Zhejiang", "province_code": "ZJ", "zip": "310000"}
BUYER = "restock-buyer@example.com"


@pytest.fixture
def ops_inbox(aws):
    """An SQS queue subscribed to the ops topic: what operations receive."""
    sns = boto3.client("sns", region_name="us-east-1")
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="restock-ops-inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=aws["topics"]["crm-local-ops"], Protocol="sqs", Endpoint=arn)

    def drain() -> list[dict]:
        received = []
        while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            for message in batch:
                envelope = json.loads(message["Body"])
                received.append({"subject": envelope["Subject"], **json.loads(envelope["Message"])})
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return received

    return drain


def call(api, method: str, path: str, body: dict | None = None):
    answer = getattr(api.http, method)(
        path, headers=JSON, **({"body": json.dumps(body)} if body is not None else {})
    )
    return answer.status_code, json.loads(answer.body)


def on_hand() -> int:
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    item = ddb.get_item(
        TableName="crm-local-inventory",
        Key={"sku": {"S": SKU}, "sk": {"S": "wh-shanghai"}},
        ConsistentRead=True,
    )["Item"]
    return int(item["on_hand"]["N"])


def delivered_order(api, platform_id: int) -> str:
    """A paid order of 2 x SKU, shipped from Shanghai and delivered."""
    from crm.services import inventory

    for topic, fulfilment in (("orders/paid", None), ("orders/fulfilled", "fulfilled")):
        payload = order_payload(
            platform_id,
            email=BUYER,
            lines=[(SKU, 2, "100.00")],
            financial_status="paid",
            fulfillment_status=fulfilment,
            updated_at="2026-11-20T10:00:00+08:00"
            if fulfilment is None
            else "2026-11-21T10:00:00+08:00",
        )
        delivery = deliver(topic, payload)
        answer = api.http.post("/webhooks/shopify", headers=delivery.headers(), body=delivery.body)
        assert answer.status_code == 200, answer.body
    order_id = f"ord_shopify_{platform_id}"
    inventory.allocate_and_reserve(order_id, [(SKU, 2)], HANGZHOU)
    inventory.ship_order(order_id)
    return order_id


def paid_refund(api, order_id: str, key: str) -> str:
    """A refund of one unit with restock, asked through the API and paid out by the workflow."""
    from functions.refunds import refund_step

    status, answer = call(
        api,
        "post",
        f"/orders/{order_id}/refunds",
        {"lines": [{"sku": SKU, "quantity": 1}], "restock": True, "idempotency_key": key},
    )
    assert status == 202, answer
    refund_id = answer["refund_id"]
    refund_step({"step": "pay", "order_id": order_id, "refund_id": refund_id}, None)
    return refund_id


def refund_of(api, order_id: str, refund_id: str) -> dict:
    status, order = call(api, "get", f"/orders/{order_id}")
    assert status == 200
    return next(r for r in order["refunds"] if r["refund_id"] == refund_id)


def open_cases(api) -> list[dict]:
    status, answer = call(api, "get", "/cases?status=open")
    assert status == 200
    return answer["items"]


def test_a_failed_restock_opens_one_case_and_alerts_once_and_retry_puts_the_stock_back(
    api, ops_inbox, monkeypatch
):
    from crm import config
    from functions.refunds import refund_step

    # Given a delivered order (10 on hand, 2 shipped) and a paid refund of one unit, with
    # restock, whose stock step fails (forced through the fault switch)
    call(
        api,
        "put",
        f"/inventory/{SKU}",
        {"warehouses": [{"warehouse_id": "wh-shanghai", "on_hand": 10, "safety_stock": 0}]},
    )
    order_id = delivered_order(api, 550001)
    assert on_hand() == 8
    refund_id = paid_refund(api, order_id, "broken-cup")
    boto3.client("ssm", region_name="us-east-1").put_parameter(
        Name="/crm/local/faults", Value=f"refund.stock@{order_id}", Type="String"
    )
    monkeypatch.setattr(config, "_faults_cache", None)
    step = {"order_id": order_id, "refund_id": refund_id}
    with pytest.raises(CrmError) as failed:
        refund_step({"step": "stock", **step}, None)
    error = {
        "Error": type(failed.value).__name__,
        "Cause": json.dumps({"errorMessage": str(failed.value)}),
    }

    # When the workflow's StockFailed step runs, and runs again (a retry)
    first = refund_step({"step": "stock_failed", **step, "error": error}, None)
    again = refund_step({"step": "stock_failed", **step, "error": error}, None)

    # Then the refund is paid and says its restock failed; the stock is as it was
    assert first == again == {"outcome": "restock_failed", "case_id": first["case_id"]}
    refund = refund_of(api, order_id, refund_id)
    assert (refund["status"], refund["restock_status"]) == ("completed", "failed")
    assert on_hand() == 8
    # and one case names the order, the refund and the SKU
    [case] = open_cases(api)
    assert case["case_id"] == first["case_id"]
    assert (case["reason"], case["order_id"], case["refund_id"], case["skus"]) == (
        "restock_failed",
        order_id,
        refund_id,
        [SKU],
    )
    assert case["cause"].startswith("InjectedFault")
    # and operations got one alert, with ids and SKUs only
    assert ops_inbox() == [
        {
            "subject": f"Restock failed: order {order_id}",
            "type": "restock_failed",
            "case_id": case["case_id"],
            "order_id": order_id,
            "refund_id": refund_id,
            "skus": [SKU],
            "action": "restock",
        }
    ]

    # When an operator resolves the case with an action that does not apply
    for action in ("cancel", "refund"):
        status, answer = call(api, "post", f"/cases/{case['case_id']}/resolve", {"action": action})
        # Then it is refused, and nothing changes
        assert status == 422, answer
        assert answer["error"]["details"] == [
            {"field": "action", "issue": "not_applicable", "allowed": ["retry"]}
        ]
    assert [c["case_id"] for c in open_cases(api)] == [case["case_id"]]

    # When the operator retries (the fault switch is about the workflow's steps, not this)
    status, resolved = call(
        api, "post", f"/cases/{case['case_id']}/resolve", {"action": "retry", "note": "checked"}
    )
    # Then the unit is back on the shelf, the refund says so, and the case is resolved
    assert status == 200, resolved
    assert resolved["status"] == "resolved"
    assert resolved["decision"]["stock"]["restocked"] == [
        {"sku": SKU, "warehouse_id": "wh-shanghai", "quantity": 1}
    ]
    assert on_hand() == 9
    assert refund_of(api, order_id, refund_id)["restock_status"] == "restocked"
    assert open_cases(api) == []
    # and a second retry is refused: the case is closed, the stock moves once
    status, answer = call(api, "post", f"/cases/{case['case_id']}/resolve", {"action": "retry"})
    assert (status, answer["error"]["code"]) == (409, "case_closed")
    assert on_hand() == 9
    assert ops_inbox() == []


def test_a_failed_step_that_left_nothing_to_put_back_opens_no_case(api, ops_inbox):
    from functions.refunds import refund_step

    # Given a refund whose stock was put back before the step failed (it failed after its write)
    call(
        api,
        "put",
        f"/inventory/{SKU}",
        {"warehouses": [{"warehouse_id": "wh-shanghai", "on_hand": 10, "safety_stock": 0}]},
    )
    order_id = delivered_order(api, 550002)
    refund_id = paid_refund(api, order_id, "late-failure")
    step = {"order_id": order_id, "refund_id": refund_id}
    refund_step({"step": "stock", **step}, None)
    # When the StockFailed step runs
    outcome = refund_step(
        {"step": "stock_failed", **step, "error": {"Error": "Lambda.Unknown", "Cause": "timeout"}},
        None,
    )
    # Then there is no problem to report: no case, no alert, the stock moved once
    assert outcome == {"outcome": "stock_unchanged"}
    assert open_cases(api) == [] and ops_inbox() == []
    assert refund_of(api, order_id, refund_id)["restock_status"] is None
    assert on_hand() == 9
