"""Carrier callbacks: `POST /logistics/events`, signed like the generic webhook.

The fulfilment workflow waits for `shipped`, then `delivered`, with a task token kept on the
order; this route answers it. `delivery_failed` fails the waiting step (the exception workflow
takes over); `in_transit` is recorded on the order. A callback for a finished order is 409 with
no effect; a repeat of what already happened is 200 with no effect.
"""

from __future__ import annotations

import time
from typing import Any

from chalice import Response
from chalice.app import Request

from crm.adapters import workflows
from crm.api import endpoint, json_response, parse_json, raw_body
from crm.config import get_secrets
from crm.domain.errors import Conflict, ValidationFailed
from crm.domain.orders import CANCELLED, DELIVERED, REFUNDED, SHIPPED, Order
from crm.domain.signatures import verify_generic
from functions.orders import change_order, find_order, now_iso

EVENTS = ("shipped", "in_transit", "delivered", "delivery_failed")
MAX_BYTES = 64 * 1024


def _parse(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise ValidationFailed(
            "the body must be a JSON object", details=[{"field": "", "issue": "wrong_type"}]
        )
    problems = []
    for name in ("order_id", "event"):
        if not isinstance(payload.get(name), str) or not payload[name].strip():
            problems.append({"field": name, "issue": "missing"})
    if isinstance(payload.get("event"), str) and payload["event"] not in EVENTS:
        problems.append({"field": "event", "issue": "unknown_value"})
    for name in ("carrier", "tracking_number", "at"):
        if payload.get(name) is not None and (
            not isinstance(payload[name], str) or len(payload[name]) > 200
        ):
            problems.append({"field": name, "issue": "wrong_type"})
    if problems:
        raise ValidationFailed("the logistics event is not valid", details=problems)
    return {
        "order_id": payload["order_id"].strip(),
        "event": payload["event"],
        "carrier": payload.get("carrier"),
        "tracking_number": payload.get("tracking_number"),
        "at": payload.get("at") or now_iso(),
    }


@endpoint
def post_event(request: Request) -> Response:
    raw = raw_body(request, MAX_BYTES)
    verify_generic(
        raw, request.headers.get("X-Signature"), get_secrets("webhook_secret"), now=time.time()
    )
    event = _parse(parse_json(raw))
    order = find_order(event["order_id"])
    kind = event["event"]
    if order.status in (DELIVERED, CANCELLED, REFUNDED) or order.cancelled_at:
        if kind == "delivered" and order.status == DELIVERED:
            return json_response({"status": "duplicate", "order_id": order.order_id})
        raise Conflict(
            f"order {order.order_id} is {order.status}; the event changes nothing",
            code="order_finished",
            extra={"order_status": order.status},
        )
    if kind == "in_transit":
        change_order(order.order_id, lambda o: _track(o, event))
        return json_response({"status": "recorded", "order_id": order.order_id})
    if kind == "shipped" and (order.progress == SHIPPED or order.fulfilment.get("shipped_at")):
        return json_response({"status": "duplicate", "order_id": order.order_id})
    last = (order.fulfilment.get("tracking_events") or [{}])[-1]
    if not order.waiting and last.get("event") == kind:
        return json_response({"status": "duplicate", "order_id": order.order_id})
    waiting = order.waiting or {}
    token = waiting.get("token")
    if not token:
        raise Conflict(
            f"order {order.order_id} is not waiting for a carrier event yet",
            code="not_ready",
            extra={"order_status": order.status},
        )
    try:
        if kind == "delivery_failed":
            workflows.fail(
                token, "DeliveryFailed", f"carrier reported delivery failed for {order.order_id}"
            )
        else:
            workflows.succeed(token, event)
    except workflows.TaskGone:
        raise Conflict(
            f"order {order.order_id} is no longer waiting for this event", code="not_ready"
        ) from None

    def answered(o: Order) -> Order | None:
        if (o.waiting or {}).get("token") != token:
            return None
        o.waiting = None
        return _track(o, event)

    change_order(order.order_id, answered)
    return json_response({"status": "accepted", "order_id": order.order_id, "event": kind}, 202)


def _track(order: Order, event: dict[str, Any]) -> Order:
    history = list(order.fulfilment.get("tracking_events") or [])
    history.append({k: event[k] for k in ("event", "carrier", "tracking_number", "at")})
    order.fulfilment = {**order.fulfilment, "tracking_events": history[-50:]}
    return order
