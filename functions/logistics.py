"""Carrier callbacks: `POST /logistics/events`, signed like the generic webhook with the
carrier's own secret (`logistics_secret`): the body's signature is checked and the event parsed
here; `crm.services.logistics` records it and answers the waiting workflow step."""

from __future__ import annotations

import time
from typing import Any

from chalice import Response
from chalice.app import Request

from crm import clock
from crm.api import endpoint, json_response, parse_json, raw_body
from crm.config import get_secrets
from crm.domain import carrier_events
from crm.domain.signatures import verify_generic
from crm.services.logistics import MAX_BYTES, record_carrier_event


@endpoint
def post_event(request: Request) -> Response:
    raw = raw_body(request, MAX_BYTES)
    verify_generic(
        raw, request.headers.get("X-Signature"), get_secrets("logistics_secret"), now=time.time()
    )
    event = carrier_events.parse_carrier_event(parse_json(raw), clock.now())
    recorded = record_carrier_event(event)
    body: dict[str, Any] = {
        "status": "accepted" if recorded.new else "duplicate",
        "order_id": recorded.order.order_id,
        "event": event.event,
        "order_status": recorded.order.status,
    }
    return json_response(body, 202 if recorded.new else 200)
