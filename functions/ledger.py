"""Entry points of ledger: parse the trigger, call the service, answer."""

from __future__ import annotations

from typing import Any

from chalice import Response
from chalice.app import Request

from crm.api import endpoint, json_response, page_limit, query, read_json_object
from crm.domain.loyalty import parse_adjustment, parse_redemption
from crm.services import ledger


@endpoint
def get_program() -> Response:
    return json_response(ledger.program().view())


@endpoint
def get_points(request: Request, customer_id: str) -> Response:
    params = query(request)
    return json_response(ledger.points_of(customer_id, page_limit(params), params.get("cursor")))


@endpoint
def post_redemption(request: Request, customer_id: str) -> Response:
    points, key = parse_redemption(read_json_object(request))
    redemption, created = ledger.redeem(customer_id, points, key)
    return json_response(redemption, 201 if created else 200)


@endpoint
def post_adjustment(request: Request, customer_id: str) -> Response:
    points, reason, key = parse_adjustment(read_json_object(request))
    entry, created = ledger.adjust(customer_id, points, reason, key)
    return json_response(entry, 201 if created else 200)


def points_expiry_job(event: Any, context: Any) -> dict[str, int]:
    """The scheduled job. A scheduled event's `detail.now` (an ISO time) replaces the clock, to
    replay a day: `aws lambda invoke` with `{"version": "0", ..., "detail": {"now": "..."}}`."""
    detail = event.get("detail") if isinstance(event, dict) else None
    now = detail.get("now") if isinstance(detail, dict) else None
    return ledger.expire_points(now if isinstance(now, str) else None)
