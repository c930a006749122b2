"""`GET /customers/{id}/orders`: every order of a customer, newest first, a page at a time."""

from __future__ import annotations

import json

from tests.conftest import OPERATOR
from tests.support.shopify import deliver, order_payload


def get(api, path: str):
    answer = api.http.get(path, headers=OPERATOR)
    return answer.status_code, json.loads(answer.body)


def test_a_customers_orders_page_newest_first(api):
    # Given one buyer's 7 orders, placed on 7 days
    for n in range(7):
        stamp = f"2026-11-{10 + n:02d}T10:00:00+08:00"
        payload = order_payload(
            9200 + n, financial_status="paid", created_at=stamp, updated_at=stamp
        )
        delivery = deliver("orders/paid", payload)
        sent = api.http.post("/webhooks/shopify", headers=delivery.headers(), body=delivery.body)
        assert sent.status_code == 200
    _, order = get(api, "/orders/9200")
    customer_id = order["customer_id"]

    # When the orders are read 3 at a time
    pages, cursor = [], None
    while True:
        status, page = get(
            api,
            f"/customers/{customer_id}/orders?limit=3" + (f"&cursor={cursor}" if cursor else ""),
        )
        assert status == 200, page
        pages.append([o["order_id"] for o in page["items"]])
        cursor = page["next_cursor"]
        if not cursor:
            break

    # Then every order comes once, newest first, in pages of 3
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [o for p in pages for o in p] == [f"ord_shopify_{9206 - n}" for n in range(7)]
    # And the 360 view's recent orders are the first 5 of them
    _, view = get(api, f"/customers/{customer_id}")
    assert [o["order_id"] for o in view["recent_orders"]] == [
        f"ord_shopify_{9206 - n}" for n in range(5)
    ]


def test_unknown_customers_and_foreign_cursors_are_refused(api):
    status, body = get(api, "/customers/cus_nobody/orders")
    assert (status, body["error"]["code"]) == (404, "not_found")
    payload = order_payload(9300, financial_status="paid")
    delivery = deliver("orders/paid", payload)
    api.http.post("/webhooks/shopify", headers=delivery.headers(), body=delivery.body)
    _, order = get(api, "/orders/9300")
    status, body = get(api, f"/customers/{order['customer_id']}/orders?cursor=bm90LWEtY3Vyc29y")
    assert (status, body["error"]["details"][0]["issue"]) == (422, "invalid_cursor")
    status, body = get(api, f"/customers/{order['customer_id']}/orders?limit=0")
    assert status == 422
