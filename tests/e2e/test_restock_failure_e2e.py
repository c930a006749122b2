"""A refund whose restock fails, through the running local stack: the fault switch
(`/crm/local/faults`, decision 33) makes the refund workflow's Stock step fail for one order.
The refund is paid, the stock is unchanged, the refund says its restock failed, a
`restock_failed` case is open, operations got the alert on the ops topic, the workflow ended in
`RefundedRestockFailed` and the customer was still told; the case's `retry` puts the unit back."""

from __future__ import annotations

import json
import os
import time

import pytest

from tests.e2e.conftest import RunningStack
from tests.support.flows import Shop, all_executions, waiting_for

pytestmark = pytest.mark.e2e

SKU = "TEA-RESTOCK-FAIL"
FAULTS = "/crm/local/faults"
SWITCH_CACHE_SECONDS = 1.0  # the steps read the switch through a 1 s cache (decision 33)


def ops_inbox(stack: RunningStack):
    """An SQS queue subscribed to the stack's ops topic; `read()` returns what arrived."""
    sns, sqs = stack.client("sns"), stack.client("sqs")
    topic = next(
        t["TopicArn"]
        for t in sns.list_topics()["Topics"]
        if t["TopicArn"].endswith(":crm-local-ops")
    )
    url = sqs.create_queue(QueueName=f"restock-ops-{os.getpid()}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)

    def read() -> list[dict]:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        for message in messages:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return [json.loads(json.loads(m["Body"])["Message"]) for m in messages]

    return read


def until(check, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"never: {what}")
        time.sleep(0.3)


def on_hand(shop: Shop) -> dict[str, int]:
    return {w["warehouse_id"]: w["on_hand"] for w in shop.get(f"/inventory/{SKU}")["warehouses"]}


def refund_run(stack: RunningStack, refund_id: str) -> dict | None:
    """The refund workflow's execution of `refund_id`, once it has ended."""
    sfn = stack.client("stepfunctions")
    machine = next(
        m["stateMachineArn"]
        for m in sfn.list_state_machines()["stateMachines"]
        if "refund" in m["name"]
    )
    for run in all_executions(sfn, machine):
        described = sfn.describe_execution(executionArn=run["executionArn"])
        if json.loads(described["input"]).get("refund_id") == refund_id:
            return described if described["status"] != "RUNNING" else None
    return None


def test_a_failed_restock_keeps_the_refund_paid_opens_a_case_and_tells_operations(
    shop: Shop, stack: RunningStack
) -> None:
    # Given a delivered order (2 of 10 units shipped from Shanghai), operations listening, and
    # the Stock step of this order's refunds made to fail
    ssm = stack.client("ssm")
    platform_id = shop.new_id()
    order_id = f"ord_shopify_{platform_id}"
    ssm.put_parameter(Name=FAULTS, Value=f"refund.stock@{order_id}", Type="String", Overwrite=True)
    switched_at = time.monotonic()
    inbox = ops_inbox(stack)
    try:
        shop.stock(SKU, wh_shanghai=10)
        shop.paid_order(SKU, qty=2, email="restock-e2e@x.cn", order_id=platform_id)
        shop.wait_for(order_id, waiting_for("shipped"))
        assert shop.logistics(order_id, "shipped").status_code == 202
        shop.wait_for(order_id, waiting_for("delivered"))
        assert shop.logistics(order_id, "delivered").status_code == 202
        order = shop.wait_for(order_id, lambda o: o["status"] == "delivered")
        assert on_hand(shop) == {"wh-shanghai": 8}
        # The switch has been read afresh since it was set (a bounded wait, not a hope).
        time.sleep(max(0.0, switched_at + SWITCH_CACHE_SECONDS + 0.2 - time.monotonic()))

        # When one broken unit is refunded, to be restocked
        answer = shop.post(
            f"/orders/{order_id}/refunds",
            {
                "lines": [{"sku": SKU, "quantity": 1}],
                "restock": True,
                "reason": "broken",
                "idempotency_key": f"restock-e2e-{platform_id}",
            },
        )
        assert answer.status_code == 202, answer.text
        refund_id = answer.json()["refund_id"]
        run = until(lambda: refund_run(stack, refund_id), "the refund workflow ended")
    finally:
        ssm.delete_parameter(Name=FAULTS)

    # Then the workflow ended in the state that shows the problem, having told the customer
    assert run["status"] == "SUCCEEDED"
    output = json.loads(run["output"])
    assert output["stock"]["outcome"] == "restock_failed"
    assert "stock_error" in output and "notification" in output
    history = stack.client("stepfunctions").get_execution_history(
        executionArn=run["executionArn"], maxResults=1000
    )["events"]
    exited = [
        e["stateExitedEventDetails"]["name"] for e in history if "stateExitedEventDetails" in e
    ]
    assert exited[-1] == "RefundedRestockFailed", exited
    # and the refund is paid and says its restock failed; the stock is as it was
    order = shop.order(order_id)
    [refund] = order["refunds"]
    assert (refund["status"], refund["restock_status"]) == ("completed", "failed")
    assert on_hand(shop) == {"wh-shanghai": 8}
    kinds = {
        n["kind"] for n in shop.get(f"/customers/{order['customer_id']}/notifications")["items"]
    }
    assert "refund_issued" in kinds
    # and a case names the order, the refund and the SKU
    [case] = [
        c for c in shop.get("/cases?status=open&limit=500")["items"] if c["order_id"] == order_id
    ]
    assert (case["reason"], case["refund_id"], case["skus"]) == ("restock_failed", refund_id, [SKU])
    assert case["case_id"] == output["stock"]["case_id"]
    # and operations were told, with ids and SKUs only
    received: list[dict] = []
    until(
        lambda: received.extend(m for m in inbox() if m.get("order_id") == order_id) or received,
        "the ops alert arrived",
        timeout=30,
    )
    assert received == [
        {
            "type": "restock_failed",
            "case_id": case["case_id"],
            "order_id": order_id,
            "refund_id": refund_id,
            "skus": [SKU],
            "action": "restock",
        }
    ]

    # When an operator answers the case with an action that does not apply, then with retry
    refused = shop.post(f"/cases/{case['case_id']}/resolve", {"action": "cancel"})
    retried = shop.post(f"/cases/{case['case_id']}/resolve", {"action": "retry", "note": "ok"})
    # Then the first is refused and the second puts the unit back and closes the case
    assert refused.status_code == 422, refused.text
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "resolved"
    assert on_hand(shop) == {"wh-shanghai": 9}
    assert shop.order(order_id)["refunds"][0]["restock_status"] == "restocked"
