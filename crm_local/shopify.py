"""Webhook deliveries as Shopify and a carrier send them: REST JSON bodies, `X-Shopify-*`
headers with the base64 HMAC-SHA256 of the raw body, the generic `X-Signature`, signed with the
local stage's secrets. One home for the tests and the benchmarks alike (`bench/` imports nothing
from `tests/`), so a benchmark sends what the tests exercise."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from crm.config import LOCAL_SECRET_DEFAULTS
from crm.domain.signatures import sign_generic, sign_shopify

SHOPIFY_SECRET = LOCAL_SECRET_DEFAULTS["shopify_secret"]
WEBHOOK_SECRET = LOCAL_SECRET_DEFAULTS["webhook_secret"]
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


def money(value: Decimal) -> str:
    return f"{value:.2f}"


def order_payload(
    order_id: int,
    *,
    email: str | None = "buyer@example.com",
    phone: str | None = None,
    customer_id: int | None = None,
    lines: list[tuple[str, int, str]] = (("SKU-1", 2, "100.00"),),  # type: ignore[assignment]
    shipping: str = "10.00",
    discount: str = "0.00",
    financial_status: str = "pending",
    fulfillment_status: str | None = None,
    cancelled_at: str | None = None,
    created_at: str = "2026-11-20T10:00:00+08:00",
    updated_at: str = "2026-11-20T10:00:00+08:00",
    processed_at: str | None = None,
    refunds: list[dict[str, Any]] | None = None,
    currency: str = "CNY",
) -> dict[str, Any]:
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
    subtotal = sum(Decimal(p) * q for _, q, p in lines) - Decimal(discount)
    total = subtotal + Decimal(shipping)
    customer = None
    if customer_id is not None:
        customer = {
            "id": customer_id,
            "email": email,
            "phone": phone,
            "first_name": "Mei",
            "last_name": "Chen",
        }
    return {
        "id": order_id,
        "name": f"#{order_id}",
        "email": email,
        "phone": phone,
        "created_at": created_at,
        "updated_at": updated_at,
        "processed_at": processed_at or created_at,
        "currency": currency,
        "total_price": money(total),
        "subtotal_price": money(subtotal),
        "total_discounts": discount,
        "total_shipping_price_set": {
            "shop_money": {"amount": shipping, "currency_code": currency},
            "presentment_money": {"amount": shipping, "currency_code": currency},
        },
        "financial_status": financial_status,
        "fulfillment_status": fulfillment_status,
        "cancelled_at": cancelled_at,
        "cancel_reason": "customer" if cancelled_at else None,
        "customer": customer,
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
            "phone": phone,
            "latitude": 31.2304,
            "longitude": 121.4737,
        },
        "refunds": refunds or [],
    }


def refund_payload(
    refund_id: int,
    order_id: int,
    *,
    amount: str,
    goods: str | None = None,
    created_at: str = "2026-11-22T10:00:00+08:00",
    line_item_id: int | None = None,
    quantity: int = 1,
) -> dict[str, Any]:
    goods = goods if goods is not None else amount
    return {
        "id": refund_id,
        "order_id": order_id,
        "created_at": created_at,
        "note": "customer request",
        "restock": True,
        "refund_line_items": [
            {
                "id": refund_id * 10,
                "line_item_id": line_item_id or order_id * 100,
                "quantity": quantity,
                "subtotal": goods,
                "total_tax": "0.00",
            }
        ],
        "transactions": [
            {"amount": amount, "kind": "refund", "status": "success", "currency": "CNY"}
        ],
    }


def generic_headers(body: bytes, t: int, secret: str = WEBHOOK_SECRET) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Signature": sign_generic(body, secret, t)}
