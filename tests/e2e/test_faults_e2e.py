"""Fault injection, through configuration: for each step of each workflow, a failure forced at
that step (the SSM parameter `/crm/local/faults`, scoped to one order) must leave stock, points
and the order's status consistent, and no execution RUNNING. The scenarios run side by side,
each on its own order."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

from tests.e2e.conftest import RunningStack
from tests.support.flows import Shop, open_case_of, waiting_for

pytestmark = pytest.mark.e2e

SKU = "TEA-FAULT"


@dataclass
class Scenario:
    name: str
    faults: list[str]  # steps; each is scoped to the scenario's order
    drive: list[str] = field(default_factory=list)  # shipped, delivered, cancel, decide:<action>


SCENARIOS = [
    Scenario("fulfilment.allocate", ["fulfilment.allocate"]),
    Scenario("fulfilment.confirm", ["fulfilment.confirm"]),
    Scenario("fulfilment.await_logistics", ["fulfilment.await_logistics"]),
    Scenario("fulfilment.shipped", ["fulfilment.shipped"], ["shipped"]),
    Scenario("fulfilment.delivered", ["fulfilment.delivered"], ["shipped", "delivered"]),
    Scenario("fulfilment.release", ["fulfilment.release"], ["cancel"]),
    Scenario("fulfilment.hand_over", ["fulfilment.allocate", "fulfilment.hand_over"]),
    Scenario("exception.open_case", ["fulfilment.allocate", "exception.open_case"]),
    Scenario("exception.await_decision", ["fulfilment.allocate", "exception.await_decision"]),
    Scenario("exception.retry", ["fulfilment.confirm", "exception.retry"], ["decide:retry"]),
    Scenario("exception.cancel", ["fulfilment.confirm", "exception.cancel"], ["decide:cancel"]),
    Scenario("exception.refund", ["fulfilment.confirm", "exception.refund"], ["decide:refund"]),
    Scenario("refund.pay", ["refund.pay"], ["cancel"]),
    Scenario("refund.stock", ["refund.stock"], ["cancel"]),
    Scenario("refund.notify", ["refund.notify"], ["cancel"]),
    Scenario("refund.compensate", ["refund.pay", "refund.compensate"], ["cancel"]),
]


def run(shop: Shop, scenario: Scenario, order_id: str) -> None:
    for step in scenario.drive:
        if step in ("shipped", "delivered"):
            shop.wait_for(order_id, waiting_for(step))
            assert shop.logistics(order_id, step).status_code == 202
        elif step == "cancel":
            shop.wait_for(order_id, waiting_for("shipped"))
            assert shop.post(f"/orders/{order_id}/cancel", {"reason": "test"}).status_code == 202
        elif step.startswith("decide:"):
            case = open_case_of(shop, order_id)
            action = step.split(":", 1)[1]
            answer = shop.post(f"/cases/{case['case_id']}/resolve", {"action": action})
            assert answer.status_code == 202, answer.text


def check_consistent(shop: Shop, stack: RunningStack, order_id: str) -> list[str]:
    problems = []
    runs = shop.wait_settled(order_id, timeout=90)
    problems += [f"{r['name']} {r['status']}" for r in runs if r["status"] == "RUNNING"]
    order = shop.order(order_id)
    ddb = stack.client("dynamodb")
    held = ddb.query(
        TableName="crm-local-inventory",
        KeyConditionExpression="sku = :o",
        ExpressionAttributeValues={":o": {"S": f"order#{order_id}"}},
        ConsistentRead=True,
    )["Items"]
    reserved = sum(
        int(i["quantity"]["N"])
        for i in held
        if "quantity" in i and i.get("state", {}).get("S") == "reserved"
    )
    if order["status"] in ("cancelled", "refunded") and reserved:
        problems.append(f"{order['status']} order still holds {reserved} units")
    if order["status"] == "pending":
        problems.append("a paid order went back to pending")
    points = shop.get(f"/customers/{order['customer_id']}/points?limit=500")
    if points["balance"] < 0 or points["pending"] < 0:
        problems.append("negative points")
    if points["balance"] + points["pending"] != sum(e["points"] for e in points["entries"]):
        problems.append("the balance is not the sum of the entries")
    if order["status"] == "cancelled" and order["points"]["earned"] != order["points"]["reversed"]:
        problems.append("a cancelled order kept its points")
    return problems


def test_a_fault_at_any_step_leaves_everything_consistent(http, stack: RunningStack) -> None:
    shop = Shop(http, stack)
    shop.stock(SKU, wh_shanghai=1000)
    ids = {s.name: shop.new_id() for s in SCENARIOS}
    orders = {name: f"ord_shopify_{i}" for name, i in ids.items()}
    faults = ",".join(f"{f}@{orders[s.name]}" for s in SCENARIOS for f in s.faults)
    stack.client("ssm").put_parameter(
        Name="/crm/local/faults", Value=faults, Type="String", Overwrite=True
    )
    time.sleep(1.5)  # the steps read the switch through a 1 s cache
    try:
        for n, i in enumerate(ids.values()):
            shop.paid_order(SKU, email=f"fault-{n}@x.cn", order_id=i)
        with ThreadPoolExecutor(len(SCENARIOS)) as pool:
            list(pool.map(lambda s: run(shop, s, orders[s.name]), SCENARIOS))
            found = dict(
                zip(
                    orders,
                    pool.map(lambda o: check_consistent(shop, stack, o), orders.values()),
                    strict=True,
                )
            )
    finally:
        stack.client("ssm").delete_parameter(Name="/crm/local/faults")
    assert {name: p for name, p in found.items() if p} == {}
    # The faults did fire: every step each scenario broke failed with InjectedFault in one of
    # its order's executions (without the fault, the scenario fails here).
    with ThreadPoolExecutor(8) as pool:
        evidence = pool.map(lambda o: injected(stack, shop, o), orders.values())
        fired = dict(zip(orders, evidence, strict=True))
    missing = {s.name: sorted(set(s.faults) - fired[s.name]) for s in SCENARIOS}
    assert {name: m for name, m in missing.items() if m} == {}, fired
    # And every scenario's order left the happy path.
    statuses = {name: shop.order(o)["status"] for name, o in orders.items()}
    assert "delivered" not in statuses.values(), statuses


INJECTED = re.compile(r"fault injected at ([a-z_]+\.[a-z_]+)")


def injected(stack: RunningStack, shop: Shop, order_id: str) -> set[str]:
    """The steps that failed with `InjectedFault` in the order's executions, as the execution
    histories record them (a Lambda task's LambdaFunctionFailed, a waiting task's TaskFailed)."""
    sfn = stack.client("stepfunctions")
    points = set()
    for execution in shop.executions(order_id):
        args = {"executionArn": execution["executionArn"], "maxResults": 1000}
        while True:
            page = sfn.get_execution_history(**args)
            for event in page["events"]:
                details = next(
                    (v for k, v in event.items() if k.endswith("FailedEventDetails")), {}
                )
                if details.get("error") == "InjectedFault":
                    points.update(INJECTED.findall(details.get("cause", "")))
            if not page.get("nextToken"):
                break
            args["nextToken"] = page["nextToken"]
    return points
