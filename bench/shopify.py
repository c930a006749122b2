"""The webhook deliveries the benchmarks send, as Shopify and a carrier send them: REST JSON
bodies, `X-Shopify-*` headers with the base64 HMAC-SHA256 of the raw body, the generic
`X-Signature`, signed with the local stage's secrets (`crm.config.LOCAL_SECRET_DEFAULTS`).

The benchmarks' own copy, so that `bench/` imports nothing from `tests/`; the bodies are the
same as the tests' (`tests/unit/test_bench_harness.py` holds them equal), so figures stay
comparable with what the tests exercise."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from crm.config import LOCAL_SECRET_DEFAULTS
from crm.domain.signatures import sign_generic, sign_shopify

SHOPIFY_SECRET = LOCAL_SECRET_DEFAULTS["shopify_secret"]
LOGISTICS_SECRET = LOCAL_SECRET_DEFAULTS["logistics_secret"]


@dataclass
class Delivery:
    topic: str
    body: bytes
    webhook_id: str

    def headers(self, secret: str = SHOPIFY_SECRET) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "X-Shopify-Topic": self.topic,
            "X-Shopify-Hmac-Sha256": sign_shopify(self.body, secret),
            "X-Shopify-Webhook-Id": self.webhook_id,
            "X-Shopify-Shop-Domain": "demo-shop.myshopify.com",
            "X-Shopify-Triggered-At": "2026-11-23T10:00:00.000Z",
        }


def deliver(topic: str, payload: dict[str, Any], webhook_id: str | None = None) -> Delivery:
    return Delivery(topic, json.dumps(payload).encode(), webhook_id or str(uuid.uuid4()))


def _money(value: Decimal) -> str:
    return f"{value:.2f}"


def order_payload(
    order_id: int,
    *,
    email: str | None = "buyer@example.com",
    lines: Sequence[tuple[str, int, str]] = (("SKU-1", 2, "100.00"),),
    shipping: str = "10.00",
    financial_status: str = "pending",
    fulfillment_status: str | None = None,
    created_at: str = "2026-11-20T10:00:00+08:00",
    updated_at: str = "2026-11-20T10:00:00+08:00",
    currency: str = "CNY",
) -> dict[str, Any]:
    """An Order resource of a guest (no `customer` object), as Shopify posts it."""
    items = [
        {
            "id": order_id * 100 + i,
            "sku": sku,
            "quantity": qty,
            "price": price,
            "title": f"Product {sku}",
            "product_id": 7000 + i,
            "variant_id": 8000 + i,
        }
        for i, (sku, qty, price) in enumerate(lines)
    ]
    subtotal = sum((Decimal(p) * q for _, q, p in lines), Decimal(0))
    total = subtotal + Decimal(shipping)
    return {
        "id": order_id,
        "name": f"#{order_id}",
        "email": email,
        "phone": None,
        "created_at": created_at,
        "updated_at": updated_at,
        "processed_at": created_at,
        "currency": currency,
        "total_price": _money(total),
        "subtotal_price": _money(subtotal),
        "total_discounts": "0.00",
        "total_shipping_price_set": {
            "shop_money": {"amount": shipping, "currency_code": currency},
            "presentment_money": {"amount": shipping, "currency_code": currency},
        },
        "financial_status": financial_status,
        "fulfillment_status": fulfillment_status,
        "cancelled_at": None,
        "cancel_reason": None,
        "customer": None,
        "line_items": items,
        "shipping_address": {
            "first_name": "Mei",
            "last_name": "Chen",
            "address1": "1 Nanjing Road",
            "city": "Shanghai",
            "province": "Shanghai",
            "province_code": "SH",
            "country_code": "CN",
            "zip": "200001",
            "phone": None,
            "latitude": 31.2304,
            "longitude": 121.4737,
        },
        "refunds": [],
    }


def refund_payload(
    refund_id: int, order_id: int, *, amount: str, created_at: str = "2026-11-22T10:00:00+08:00"
) -> dict[str, Any]:
    """A Refund resource: `amount` back for one unit of the order's first line."""
    return {
        "id": refund_id,
        "order_id": order_id,
        "created_at": created_at,
        "note": "customer request",
        "restock": True,
        "refund_line_items": [
            {
                "id": refund_id * 10,
                "line_item_id": order_id * 100,
                "quantity": 1,
                "subtotal": amount,
                "total_tax": "0.00",
            }
        ],
        "transactions": [
            {"amount": amount, "kind": "refund", "status": "success", "currency": "CNY"}
        ],
    }


def generic_headers(body: bytes, t: int, secret: str) -> dict[str, str]:
    """The generic `X-Signature` (`t=<unix time>,v1=<hex HMAC>`) of a carrier's callback."""
    return {"Content-Type": "application/json", "X-Signature": sign_generic(body, secret, t)}
