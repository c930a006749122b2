"""The tests' Shopify deliveries: the local tooling's (`crm_local.shopify`), one home shared
with the benchmarks."""

from crm_local.shopify import (
    LOGISTICS_SECRET,
    SHOPIFY_SECRET,
    WEBHOOK_SECRET,
    Delivery,
    deliver,
    generic_headers,
    money,
    order_payload,
    refund_payload,
)

__all__ = [
    "LOGISTICS_SECRET",
    "SHOPIFY_SECRET",
    "WEBHOOK_SECRET",
    "Delivery",
    "deliver",
    "generic_headers",
    "money",
    "order_payload",
    "refund_payload",
]
