"""Driving the running local stack as a shop does: webhooks in, operator routes, carrier
callbacks, and waiting for the workflows. One module, so every test file draws order ids from
the same counter (two test files sharing one stack must never reuse an order id)."""

from __future__ import annotations

import itertools
import json
import os
import time
from typing import Any

from tests.e2e.conftest import OPERATOR, RunningStack
from tests.support.shopify import LOGISTICS_SECRET, deliver, generic_headers, order_payload

HANGZHOU = {
    "country_code": "CN",
    "province": "Zhejiang",
    "province_code": "ZJ",
    "city": "Hangzhou",
    "zip": "310000",
    "address1": "1 West Lake Road",
}
# Distinct per process too: each pytest worker may share nothing but the machine.
_next_id = itertools.count(8_000_000 + (os.getpid() % 1000) * 10_000 + 1)


class Shop:
    """The stack as a shop uses it: webhooks in, operator routes, carrier callbacks."""

    def __init__(self, http, stack: RunningStack) -> None:
        self.http, self.stack = http, stack

    def url(self, path: str) -> str:
        return f"{self.stack.api_url}{path}"

    def get(self, path: str) -> Any:
        answer = self.http.get(self.url(path), headers=OPERATOR, timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def post(self, path: str, body: dict) -> Any:
        return self.http.post(self.url(path), json=body, headers=OPERATOR, timeout=30)

    def stock(self, sku: str, **on_hand: int) -> None:
        body = {
            "warehouses": [
                {"warehouse_id": wh.replace("_", "-"), "on_hand": n, "safety_stock": 0}
                for wh, n in on_hand.items()
            ]
        }
        answer = self.http.put(
            self.url(f"/inventory/{sku}"), json=body, headers=OPERATOR, timeout=30
        )
        assert answer.status_code == 200, answer.text

    def new_id(self) -> int:
        return next(_next_id)

    def paid_order(
        self,
        sku: str,
        qty: int = 1,
        price: str = "100.00",
        address: dict | None = None,
        email: str = "flow@example.com",
        order_id: int | None = None,
    ) -> str:
        order_id = order_id or next(_next_id)
        payload = order_payload(
            order_id, email=email, lines=[(sku, qty, price)], financial_status="paid"
        )
        payload["shipping_address"] = {**payload["shipping_address"], **(address or HANGZHOU)}
        payload["shipping_address"].pop("latitude", None)
        payload["shipping_address"].pop("longitude", None)
        delivery = deliver("orders/paid", payload)
        answer = self.http.post(
            self.url("/webhooks/shopify"),
            data=delivery.body,
            headers=delivery.headers(),
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        return f"ord_shopify_{order_id}"

    def order(self, order_id: str) -> Any:
        return self.get(f"/orders/{order_id}")

    def wait_for(self, order_id: str, check, timeout: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            order = self.order(order_id)
            if check(order):
                return order
            if time.monotonic() > deadline:
                raise AssertionError(f"{order_id} never got there: {json.dumps(order)[:1500]}")
            time.sleep(0.3)

    def logistics(
        self,
        order_id: str,
        event: str,
        secret: str | None = None,
        at: str | None = None,
        tracking_number: str | None = None,
    ) -> Any:
        """A carrier callback, signed with the carrier secret (or `secret`); the parcel is
        `tracking_number` (default: one per order)."""
        payload = {
            "order_id": order_id,
            "event": event,
            "carrier": "SF Express",
            "tracking_number": tracking_number or f"SF{order_id[-6:]}",
        }
        if at is not None:
            payload["at"] = at
        body = json.dumps(payload).encode()
        headers = generic_headers(body, int(time.time()), secret or LOGISTICS_SECRET)
        return self.http.post(self.url("/logistics/events"), data=body, headers=headers, timeout=30)

    def executions(self, order_id: str) -> list[dict]:
        sfn = self.stack.client("stepfunctions")
        found = []
        for machine in sfn.list_state_machines()["stateMachines"]:
            for ex in all_executions(sfn, machine["stateMachineArn"]):
                if order_id in ex["name"]:
                    found.append({**ex, "machine": machine["name"]})
        return found

    def wait_settled(self, order_id: str, timeout: float = 60.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            runs = self.executions(order_id)
            if runs and all(r["status"] != "RUNNING" for r in runs):
                return runs
            if time.monotonic() > deadline:
                raise AssertionError(f"still running: {runs}")
            time.sleep(0.5)

    def available(self, sku: str) -> dict[str, int]:
        return {
            w["warehouse_id"]: w["available"] for w in self.get(f"/inventory/{sku}")["warehouses"]
        }


def all_executions(sfn, machine_arn: str) -> list[dict]:
    """Every execution of the machine: a page holds at most 100 (moto's and AWS's), and the
    shared stack of an e2e run starts far more."""
    pages = sfn.get_paginator("list_executions").paginate(stateMachineArn=machine_arn)
    return [ex for page in pages for ex in page["executions"]]


def waiting_for(event: str):
    return lambda o: (o.get("workflow") or {}).get("state") == f"awaiting_{event}"


def open_case_of(shop: Shop, order_id: str, other_than: str | None = None) -> dict:
    """The order's open case once it waits for a decision (`other_than`: a later one)."""
    order = shop.wait_for(
        order_id,
        lambda o: (o.get("workflow") or {}).get("case_id") not in (None, other_than),
    )
    case_id = order["workflow"]["case_id"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        cases = [
            c for c in shop.get("/cases?status=open&limit=500")["items"] if c["case_id"] == case_id
        ]
        if cases and cases[0]["awaiting_decision"]:
            return cases[0]
        time.sleep(0.3)
    raise AssertionError(f"case {case_id} never waited for a decision")
