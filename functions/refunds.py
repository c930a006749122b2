"""Entry points of refunds: parse the trigger, call the service, answer."""

from __future__ import annotations

from typing import Any

from chalice import Response
from chalice.app import Request

from crm.api import endpoint, json_response, read_json_object
from crm.config import get_settings
from crm.domain.errors import Conflict, ValidationFailed
from crm.domain.money import money
from crm.domain.orders import SHIPPED
from crm.services.cases import cancel_order, start_refund_workflow
from crm.services.orders import find_order, record_order_event, stop_waiting
from crm.services.refunds import STEPS, _refund_request, _usable_key, refund_id_of
from crm.services.workflow_steps import check_fault, internal_event


@endpoint
def post_refund(request: Request, order_id: str) -> Response:
    body = read_json_object(request)
    order = find_order(order_id)
    if not order.paid_at:
        raise Conflict(f"order {order.order_id} is not paid; nothing to refund", code="not_paid")
    # The key first: a retry of a refund already recorded (its first answer lost, or a 503
    # from the workflow's start) is that refund, whatever is left to refund now that it is
    # counted; only its workflow is (re)started.
    key = body.get("idempotency_key")
    existing = None
    if _usable_key(key):
        refund_id = refund_id_of(order, str(key))
        existing = next((r for r in order.refunds if r.refund_id == refund_id), None)
    chosen = existing or _refund_request(order, body)
    if existing is None:
        record_order_event(
            internal_event(order, "refund", chosen.at, refunds=(chosen,)), None, refund_limit=True
        )
    start_refund_workflow(order.order_id, chosen.refund_id)
    currency = order.currency or get_settings().currency
    return json_response(
        {
            "refund_id": chosen.refund_id,
            "order_id": order.order_id,
            "status": chosen.status,
            "amount": money(chosen.amount, currency),
        },
        202,
    )


@endpoint
def post_cancel(request: Request, order_id: str) -> Response:
    body = read_json_object(request)
    reason = body.get("reason", "cancelled by the shop")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > 500:
        raise ValidationFailed(
            "reason must be a short text", details=[{"field": "reason", "issue": "wrong_type"}]
        )
    order = find_order(order_id)
    if order.cancelled_at:
        return json_response(
            {"order_id": order.order_id, "status": "cancelled", "refund_id": None}, 200
        )
    if order.progress == SHIPPED or order.fulfilled_at:
        raise Conflict(
            f"order {order.order_id} has shipped; refund it instead",
            code="already_shipped",
        )
    stop_waiting(order, "OrderCancelled", "the order was cancelled")
    return json_response(cancel_order(order, reason=reason.strip()), 202)


def refund_step(event: dict[str, Any], context: Any) -> dict[str, Any]:
    step = event.get("step")
    if step not in STEPS:
        raise ValidationFailed(f"unknown refund step {step!r}")
    check_fault("refund", str(step), event.get("order_id"))
    return STEPS[str(step)](event)
