"""The exception workflow's steps may run twice (a Lambda retry, or a write whose answer was
lost): the second run finds what the first did."""

from __future__ import annotations

import json

from tests.conftest import OPERATOR
from tests.support.shopify import deliver, order_payload

PAID = dict(financial_status="paid", updated_at="2026-11-20T10:05:00+08:00")


def test_an_open_case_step_run_twice_opens_one_case(api):
    from functions.cases import exception_step

    # Given a paid order that could not be allocated
    delivery = deliver("orders/paid", order_payload(5101, **PAID))
    api.http.post("/webhooks/shopify", headers=delivery.headers(), body=delivery.body)
    step = {
        "step": "open_case",
        "order_id": "ord_shopify_5101",
        "reason": "out_of_stock",
        "cause": "TEA-1: 0 of 2",
    }

    # When the step that opens its case runs twice
    first = exception_step(step, None)
    second = exception_step(step, None)

    # Then both runs answer the same case, and one case is open
    assert first == second
    listed = json.loads(api.http.get("/cases?status=open", headers=OPERATOR).body)["items"]
    assert [c["case_id"] for c in listed] == [first["case_id"]]
    assert listed[0]["order_id"] == "ord_shopify_5101"
