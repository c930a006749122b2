"""Order and customer webhooks: Shopify's, and the generic format for other platforms.

The entry point reads the raw body (413 past `MAX_WEBHOOK_BYTES`) and the headers; everything
else is decided here. Order of checks, so that nothing is stored for a request that fails one:
signature over the raw bytes (401), JSON (400), content (422). Then the delivery is recorded
exactly once (`crm.services.orders.record_order_event`). The generic endpoint's secret depends
on the body's `source` (a source may have its own, `crm.config.get_source_secrets`): its body is
parsed before the signature is checked, but a JSON error is answered only after (see
`receive_generic`). Deduplication is our own conditional write rather than Powertools'
idempotency utility: the "done" mark goes into the same transaction as the order and the
points, which the utility cannot do (it would add a call and a window in which the effects are
written but the delivery is still "in progress"); see docs/decisions.md.

Both return the answer's body (always 200: a delivery refused is an error raised, one ignored or
already recorded is answered so the platform stops retrying it).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any

from crm import clock
from crm.config import get_secrets, get_settings, get_source_secrets
from crm.domain import generic_orders, shopify
from crm.domain.customers import ProfileInput, dropped_external_ids, is_stale, parse_profile
from crm.domain.errors import MalformedRequest, Unauthenticated, ValidationFailed
from crm.domain.identity import MAX_EXTERNAL_IDS
from crm.domain.parsing import parse_json
from crm.domain.signatures import check_generic_header, verify_generic, verify_shopify
from crm.observability import logger, metrics
from crm.services import orders, profiles

MAX_WEBHOOK_BYTES = 1024 * 1024  # Shopify orders with hundreds of lines stay well under this
CUSTOMER_TOPICS = shopify.CUSTOMER_TOPICS


@dataclass(frozen=True)
class ShopifyHeaders:
    """The headers of a Shopify delivery that are read, each stripped, None when blank."""

    hmac: str | None
    topic: str | None
    shop_domain: str | None
    webhook_id: str | None
    event_id: str | None


def receive_shopify(raw: bytes, headers: ShopifyHeaders) -> dict[str, Any]:
    """A Shopify delivery: verified, checked against its topic, recorded once."""
    verify_shopify(raw, headers.hmac, get_secrets("shopify_secret"))
    payload = parse_json(raw)
    topic = (headers.topic or "").lower()
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
    shopify.check_shape(topic, payload, headers.shop_domain)
    delivery = (
        headers.webhook_id
        or headers.event_id
        # Without an id, identical bodies of one topic are one delivery.
        or "sha256:" + hashlib.sha256(topic.encode() + b"\n" + raw).hexdigest()
    )
    if topic in shopify.TOPICS:
        event = (
            shopify.parse_refund(payload)
            if topic == "refunds/create"
            else shopify.parse_order(topic, payload)
        )
        return _recorded(orders.record_order_event(event, f"shopify:{delivery}"))
    if topic in CUSTOMER_TOPICS:
        return customer_topic(topic, payload)
    logger.info("webhook topic ignored", extra={"topic": topic[:64], "source": "shopify"})
    metrics.add_metric(name="IgnoredWebhooks", unit="Count", value=1)
    return {"status": "ignored", "topic": topic}


def receive_generic(raw: bytes, signature: str | None, now: float) -> dict[str, Any]:
    """A generic order event (docs/webhooks), signed by `X-Signature` at epoch seconds `now`."""
    # The secret depends on the body's `source`, so the body is read before it is verified,
    # and nothing read is used until it is: a header no secret could make valid is refused
    # before any secret is looked up, a body that is not JSON is verified under the shared
    # secret and refused (400) only once it is, and the source that chose the secret is the
    # one the event is recorded under (both read by `generic_orders`).
    check_generic_header(signature, now)
    try:
        payload, malformed = parse_json(raw), None
    except MalformedRequest as error:
        payload, malformed = None, error
    source = generic_orders.claimed_source(payload)
    verify_generic(raw, signature, generic_secrets(source), now=now)
    if malformed is not None:
        raise malformed
    if not generic_orders.is_known_type(payload):
        kind = payload.get("type") if isinstance(payload, dict) else None
        logger.info("webhook type ignored", extra={"type": str(kind)[:64], "source": "generic"})
        metrics.add_metric(name="IgnoredWebhooks", unit="Count", value=1)
        return {"status": "ignored", "type": kind if isinstance(kind, str) else None}
    event_id, event = generic_orders.parse(payload)
    if event.source != source:  # cannot differ (one reader); never record under another's
        raise Unauthenticated("the event's source is not the one its signature was checked for")
    return _recorded(orders.record_order_event(event, f"{event.source}:{event_id}"))


def _recorded(recorded: orders.Recorded) -> dict[str, Any]:
    metrics.add_metric(name="OrderWebhooks", unit="Count", value=1)
    return {
        "status": recorded.outcome,
        "order_id": recorded.order_id,
        "order_status": recorded.status,
    }


def generic_secrets(source: str | None) -> list[str]:
    """A source with a secret of its own is verified with it alone (a leaked shared secret
    cannot forge its orders); any other body with the shared webhook secret."""
    own = get_source_secrets("webhook_secret", source) if source else None
    return own or get_secrets("webhook_secret")


# -- customer topics ----------------------------------------------------------------------------


def _lenient_profile(body: dict[str, Any]) -> ProfileInput:
    settings = get_settings()
    today = clock.today()
    for _ in range(len(body) + 1):
        try:
            return parse_profile(
                body,
                default_country=settings.default_country,
                today=today,
                partial=False,
                consent_source=shopify.SOURCE,
                drop_excess_ids=True,  # a platform's person is kept, extra ids are not
            )
        except ValidationFailed as error:
            bad = {str(d.get("field", "")).split(".")[0] for d in error.details}
            if not bad & set(body) or bad & {"external_ids"}:
                raise
            metrics.add_metric(name="WebhookFieldsDropped", unit="Count", value=len(bad))
            body = {k: v for k, v in body.items() if k not in bad}
    raise ValidationFailed("the customer payload has no usable identity")


def customer_topic(topic: str, payload: dict[str, Any]) -> dict[str, Any]:
    """A customer topic whose payload has its shape (`shopify.check_shape`)."""
    if topic in ("customers/create", "customers/update"):
        shopify_customer = shopify.customer_profile(payload)
        data = replace(
            _lenient_profile(shopify_customer.body),
            platform=shopify.SOURCE,
            platform_at=shopify_customer.updated_at,
            consent_at=shopify_customer.consent_at,
        )
        customer, created = profiles.upsert_customer(data, profiles.get_customer_repository())
        if is_stale(customer, data):
            metrics.add_metric(name="StaleCustomerUpdates", unit="Count", value=1)
            return {"status": "stale", "customer_id": customer.customer_id, "created": False}
        if len(customer.external_ids) >= MAX_EXTERNAL_IDS and (
            dropped := dropped_external_ids(customer, data)
        ):
            metrics.add_metric(name="ExternalIdsDropped", unit="Count", value=dropped)
            logger.info("external ids past the maximum left out", extra={"dropped": dropped})
        return {"status": "processed", "customer_id": customer.customer_id, "created": created}
    request_id = shopify.data_request_id(payload) if topic == "customers/data_request" else None
    customer_id = _find_shopify_customer(payload.get("customer"))
    if customer_id is None:
        logger.info("privacy webhook for an unknown customer", extra={"topic": topic})
        return {"status": "processed", "customer_id": None}
    if topic == "customers/redact":
        erased = profiles.erase_customer(customer_id, profiles.get_customer_repository())
        return {"status": "processed", "customer_id": customer_id, "erased": erased["erased"]}
    key = profiles.write_export(customer_id, f"shopify-{request_id}")
    return {"status": "processed", "customer_id": customer_id, "export": key}


def _find_shopify_customer(customer: Any) -> str | None:
    if not isinstance(customer, dict):
        raise ValidationFailed(
            "the payload has no customer", details=[{"field": "customer", "issue": "missing"}]
        )
    body: dict[str, Any] = {}
    if customer.get("id") not in (None, ""):
        body["external_ids"] = {"shopify": str(customer["id"])}
    for name in ("email", "phone"):
        if isinstance(customer.get(name), str) and customer[name].strip():
            body[name] = customer[name]
    if not body:
        raise ValidationFailed(
            "the customer has no identity", details=[{"field": "customer", "issue": "missing"}]
        )
    data = _lenient_profile(body)
    keys = data.identity_keys().ordered()
    owners = profiles.get_customer_repository().resolve(keys)
    return next((owners[k] for k in keys if k in owners), None)
