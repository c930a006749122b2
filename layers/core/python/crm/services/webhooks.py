"""Order and customer webhooks: Shopify's, and the generic format for other platforms.

Order of checks, so that nothing is stored for a request that fails one: size (413), signature
over the raw bytes (401), JSON (400), content (422). Then the delivery is recorded exactly once
(`functions.orders.record_order_event`). The generic endpoint's secret depends on the body's
`source` (a source may have its own, `crm.config.get_source_secrets`): its body is parsed before
the signature is checked, but a JSON error is answered only after (see `generic_webhook`).
Deduplication is our own conditional write rather than Powertools' idempotency utility: the
"done" mark goes into the same transaction as the order and the points, which the utility
cannot do (it would add a call and a window in which the effects are written but the delivery
is still "in progress"); see docs/decisions.md.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from chalice import Response
from chalice.app import Request

from crm import clock
from crm.api import json_response
from crm.config import get_secrets, get_settings, get_source_secrets
from crm.domain import shopify
from crm.domain.customers import ProfileInput, dropped_external_ids, is_stale, parse_profile
from crm.domain.errors import ValidationFailed
from crm.domain.identity import MAX_EXTERNAL_IDS
from crm.observability import logger, metrics
from crm.services import profiles

MAX_WEBHOOK_BYTES = 1024 * 1024  # Shopify orders with hundreds of lines stay well under this
CUSTOMER_TOPICS = shopify.CUSTOMER_TOPICS


def _header(request: Request, name: str) -> str | None:
    value = request.headers.get(name)
    return value.strip() if isinstance(value, str) and value.strip() else None


def _answer(status: str, **extra: Any) -> Response:
    return json_response({"status": status, **extra}, 200)


def _generic_secrets(source: str | None) -> list[str]:
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
