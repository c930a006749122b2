"""Entry points of webhooks: parse the trigger, call the service, answer."""

from __future__ import annotations

import hashlib
import time

from chalice import Response
from chalice.app import Request

from crm.api import endpoint, parse_json, raw_body
from crm.config import get_secrets
from crm.domain import generic_orders, shopify
from crm.domain.errors import MalformedRequest, Unauthenticated, ValidationFailed
from crm.domain.signatures import check_generic_header, verify_generic, verify_shopify
from crm.observability import logger, metrics
from crm.services import orders
from crm.services.webhooks import (
    CUSTOMER_TOPICS,
    MAX_WEBHOOK_BYTES,
    _answer,
    _generic_secrets,
    _header,
    customer_topic,
)


@endpoint
def shopify_webhook(request: Request) -> Response:
    raw = raw_body(request, MAX_WEBHOOK_BYTES)
    verify_shopify(raw, _header(request, "X-Shopify-Hmac-Sha256"), get_secrets("shopify_secret"))
    payload = parse_json(raw)
    topic = (_header(request, "X-Shopify-Topic") or "").lower()
    if not topic:
        raise MalformedRequest(
            "X-Shopify-Topic is required",
            details=[{"field": "X-Shopify-Topic", "issue": "missing"}],
        )
    if not isinstance(payload, dict):  # every Shopify topic sends an object, known or not
        raise ValidationFailed(
            "the body must be a JSON object", details=[{"field": "", "issue": "wrong_type"}]
        )
    # The signature covers the body only: the body must be what the claimed topic sends.
    shopify.check_shape(topic, payload, _header(request, "X-Shopify-Shop-Domain"))
    delivery = (
        _header(request, "X-Shopify-Webhook-Id")
        or _header(request, "X-Shopify-Event-Id")
        # Without an id, identical bodies of one topic are one delivery.
        or "sha256:" + hashlib.sha256(topic.encode() + b"\n" + raw).hexdigest()
    )
    if topic in shopify.TOPICS:
        event = (
            shopify.parse_refund(payload)
            if topic == "refunds/create"
            else shopify.parse_order(topic, payload)
        )
        recorded = orders.record_order_event(event, f"shopify:{delivery}")
        metrics.add_metric(name="OrderWebhooks", unit="Count", value=1)
        return _answer(recorded.outcome, order_id=recorded.order_id, order_status=recorded.status)
    if topic in CUSTOMER_TOPICS:
        return _answer(**customer_topic(topic, payload))
    logger.info("webhook topic ignored", extra={"topic": topic[:64], "source": "shopify"})
    metrics.add_metric(name="IgnoredWebhooks", unit="Count", value=1)
    return _answer("ignored", topic=topic)


@endpoint
def generic_webhook(request: Request) -> Response:
    raw = raw_body(request, MAX_WEBHOOK_BYTES)
    header, now = _header(request, "X-Signature"), time.time()
    # The secret depends on the body's `source`, so the body is read before it is verified,
    # and nothing read is used until it is: a header no secret could make valid is refused
    # before any secret is looked up, a body that is not JSON is verified under the shared
    # secret and refused (400) only once it is, and the source that chose the secret is the
    # one the event is recorded under (both read by `generic_orders`).
    check_generic_header(header, now)
    try:
        payload, malformed = parse_json(raw), None
    except MalformedRequest as error:
        payload, malformed = None, error
    source = generic_orders.claimed_source(payload)
    verify_generic(raw, header, _generic_secrets(source), now=now)
    if malformed is not None:
        raise malformed
    if not generic_orders.is_known_type(payload):
        kind = payload.get("type") if isinstance(payload, dict) else None
        logger.info("webhook type ignored", extra={"type": str(kind)[:64], "source": "generic"})
        metrics.add_metric(name="IgnoredWebhooks", unit="Count", value=1)
        return _answer("ignored", type=kind if isinstance(kind, str) else None)
    event_id, event = generic_orders.parse(payload)
    if event.source != source:  # cannot differ (one reader); never record under another's
        raise Unauthenticated("the event's source is not the one its signature was checked for")
    recorded = orders.record_order_event(event, f"{event.source}:{event_id}")
    metrics.add_metric(name="OrderWebhooks", unit="Count", value=1)
    return _answer(recorded.outcome, order_id=recorded.order_id, order_status=recorded.status)
