"""An exception's retry is a new fulfilment attempt, and stays one: its number survives the
new execution's allocation, a second exception opens a second case, and the carrier events of
the earlier attempt do not answer the new attempt's waits."""

from __future__ import annotations

import pytest

from tests.support.flows import Shop, open_case_of, waiting_for

pytestmark = pytest.mark.e2e


def retry(shop: Shop, case: dict) -> None:
    answer = shop.post(f"/cases/{case['case_id']}/resolve", {"action": "retry", "note": "again"})
    assert answer.status_code == 202, answer.text


def in_attempt(attempt: int, state: str):
    def check(order: dict) -> bool:
        workflow = order.get("workflow") or {}
        return workflow.get("attempt") == attempt and workflow.get("state") == state

    return check


def test_a_retry_that_meets_the_same_shortage_opens_a_second_case_and_the_next_one_allocates(
    shop: Shop,
) -> None:
    # Given a paid order held out of stock, and a retry while the stock is still not there
    sku = f"TEA-AGAIN-{shop.new_id()}"
    order_id = shop.paid_order(sku)
    first = open_case_of(shop, order_id)
    assert first["reason"] == "out_of_stock"
    retry(shop, first)

    # Then a second case of its own opens for the second attempt
    second = open_case_of(shop, order_id, other_than=first["case_id"])
    assert second["reason"] == "out_of_stock"

    # When the stock arrives and the second case is retried
    shop.stock(sku, wh_beijing=2)
    retry(shop, second)

    # Then the third attempt allocates, and the order remembers it is the third
    order = shop.wait_for(order_id, in_attempt(3, "awaiting_shipped"))
    assert order["status"] == "allocated"
    assert shop.available(sku) == {"wh-beijing": 1}


def test_after_a_failed_delivery_and_a_retry_the_order_waits_for_a_new_parcel(shop: Shop) -> None:
    # Given an order whose delivery failed, held with a delivery_failed case
    sku = f"TEA-RESEND-{shop.new_id()}"
    shop.stock(sku, wh_shanghai=5)
    order_id = shop.paid_order(sku)
    shop.wait_for(order_id, waiting_for("shipped"))
    assert shop.logistics(order_id, "shipped").status_code == 202
    shop.wait_for(order_id, waiting_for("delivered"))
    assert shop.logistics(order_id, "delivery_failed").status_code == 202
    case = open_case_of(shop, order_id)
    assert case["reason"] == "delivery_failed"

    # When the operator retries
    retry(shop, case)

    # Then the second attempt waits for a new shipment: the first parcel's events (shipped,
    # delivery_failed) do not answer it
    order = shop.wait_for(order_id, in_attempt(2, "awaiting_shipped"))
    assert order["status"] == "allocated"

    # And the new parcel's shipment and delivery end it delivered
    assert shop.logistics(order_id, "shipped", tracking_number=f"RE{order_id}").status_code == 202
    shop.wait_for(order_id, in_attempt(2, "awaiting_delivered"))
    assert shop.logistics(order_id, "delivered", tracking_number=f"RE{order_id}").status_code == 202
    order = shop.wait_for(order_id, lambda o: o["status"] == "delivered")
    assert order["fulfilment"]["tracking"] == f"RE{order_id}"
    runs = shop.wait_settled(order_id)
    assert sorted(r["machine"] for r in runs) == [
        "crm-local-order-exception",
        "crm-local-order-fulfilment",
        "crm-local-order-fulfilment",
    ]
    assert all(r["status"] == "SUCCEEDED" for r in runs)
    assert order["points"]["status"] == "active"
