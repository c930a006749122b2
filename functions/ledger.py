"""Entry points of ledger: parse the trigger, call the service, answer."""

from __future__ import annotations

from typing import Any

from chalice import Response
from chalice.app import Request

from crm.api import endpoint, json_response, page_limit, query, read_json_object
from crm.clock import now_iso
from crm.domain.customers import refuse_if_erased
from crm.domain.errors import NotFound, ValidationFailed
from crm.services.ledger import (
    _points_body,
    adjust,
    expire_points,
    lots_view,
    program,
    redeem,
    tier_view,
)
from crm.store.customers import get_customer_repository
from crm.store.ledger import (
    get_ledger_store,
)


@endpoint
def get_program() -> Response:
    return json_response(program().view())


@endpoint
def get_points(request: Request, customer_id: str) -> Response:
    params = query(request)
    limit = page_limit(params)
    customer = get_customer_repository().get(customer_id)
    if customer is None:
        raise NotFound(f"customer {customer_id} does not exist")
    refuse_if_erased(customer)
    store = get_ledger_store()
    account = store.account(customer_id)
    entries, cursor = store.entries(customer_id, limit, params.get("cursor"))
    return json_response(
        {
            "customer_id": customer_id,
            "balance": account.balance,
            "pending": account.pending,
            "tier": tier_view(customer.stats, now_iso(), program()),
            "lots": lots_view(account),
            "entries": entries,
            "items": entries,
            "next_cursor": cursor,
        }
    )


@endpoint
def post_redemption(request: Request, customer_id: str) -> Response:
    points, key = _points_body(read_json_object(request), signed=False)
    coupon, created = redeem(customer_id, points, key)
    return json_response(
        {"customer_id": customer_id, "coupon": coupon, **coupon}, 201 if created else 200
    )


@endpoint
def post_adjustment(request: Request, customer_id: str) -> Response:
    body = read_json_object(request)
    points, key = _points_body(body, signed=True)
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > 500:
        raise ValidationFailed(
            "reason is required (1 to 500 characters)",
            details=[{"field": "reason", "issue": "missing"}],
        )
    entry, created = adjust(customer_id, points, reason.strip(), key)
    return json_response(entry, 201 if created else 200)


def points_expiry_job(event: Any, context: Any) -> dict[str, int]:
    """The scheduled job. A scheduled event's `detail.now` (an ISO time) replaces the clock, to
    replay a day: `aws lambda invoke` with `{"version": "0", ..., "detail": {"now": "..."}}`."""
    detail = event.get("detail") if isinstance(event, dict) else None
    now = detail.get("now") if isinstance(detail, dict) else None
    return expire_points(now if isinstance(now, str) else None)
