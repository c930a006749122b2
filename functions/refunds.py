"""Entry points of refunds: parse the trigger, call the service, answer."""

from __future__ import annotations

from typing import Any

from chalice import Response
from chalice.app import Request

from crm.api import endpoint, json_response, read_json_object
from crm.domain.errors import ValidationFailed
from crm.services.refunds import STEPS, request_cancellation, request_refund
from crm.services.workflow_steps import run_step


@endpoint
def post_refund(request: Request, order_id: str) -> Response:
    body = read_json_object(request)
    return json_response(request_refund(order_id, body), 202)


@endpoint
def post_cancel(request: Request, order_id: str) -> Response:
    body = read_json_object(request)
    reason = body.get("reason", "cancelled by the shop")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > 500:
        raise ValidationFailed(
            "reason must be a short text", details=[{"field": "reason", "issue": "wrong_type"}]
        )
    cancellation = request_cancellation(order_id, reason.strip())
    return json_response(cancellation.view, 200 if cancellation.already else 202)


def refund_step(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return run_step("refund", STEPS, event)
