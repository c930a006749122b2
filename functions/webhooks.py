"""Entry points of webhooks: read the body and the headers, call the service, answer."""

from __future__ import annotations

import time

from chalice import Response
from chalice.app import Request

from crm.api import endpoint, json_response, raw_body
from crm.services import webhooks


@endpoint
def shopify_webhook(request: Request) -> Response:
    raw = raw_body(request, webhooks.MAX_WEBHOOK_BYTES)
    headers = webhooks.ShopifyHeaders(
        hmac=_header(request, "X-Shopify-Hmac-Sha256"),
        topic=_header(request, "X-Shopify-Topic"),
        shop_domain=_header(request, "X-Shopify-Shop-Domain"),
        webhook_id=_header(request, "X-Shopify-Webhook-Id"),
        event_id=_header(request, "X-Shopify-Event-Id"),
    )
    return json_response(webhooks.receive_shopify(raw, headers))


@endpoint
def generic_webhook(request: Request) -> Response:
    raw = raw_body(request, webhooks.MAX_WEBHOOK_BYTES)
    signature = _header(request, "X-Signature")
    return json_response(webhooks.receive_generic(raw, signature, now=time.time()))


def _header(request: Request, name: str) -> str | None:
    value = request.headers.get(name)
    return value.strip() if isinstance(value, str) and value.strip() else None
