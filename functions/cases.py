"""Entry points of cases: parse the trigger, call the service, answer."""

from __future__ import annotations

from typing import Any

from chalice import Response
from chalice.app import Request

from crm.adapters import workflows
from crm.api import endpoint, json_response, page_limit, query, read_json_object
from crm.domain.errors import Conflict, ValidationFailed
from crm.services import refund_stock
from crm.services.cases import ACTIONS, STEPS
from crm.services.workflow_steps import check_fault
from crm.store.cases import OPEN, get_case_store


@endpoint
def list_cases(request: Request) -> Response:
    params = query(request)
    status = params.get("status", OPEN)
    if status not in (OPEN, "resolved"):
        raise ValidationFailed(
            "status is open or resolved", details=[{"field": "status", "issue": "unknown_value"}]
        )
    items, cursor = get_case_store().list(status, page_limit(params), params.get("cursor"))
    return json_response({"items": items, "next_cursor": cursor})


@endpoint
def resolve_case(request: Request, case_id: str) -> Response:
    body = read_json_object(request)
    action, note = body.get("action"), body.get("note", "")
    problems = []
    if action not in ACTIONS:
        problems.append({"field": "action", "issue": "unknown_value"})
    if not isinstance(note, str) or len(note) > 1000:
        problems.append({"field": "note", "issue": "wrong_type"})
    if problems:
        raise ValidationFailed("action is retry, cancel or refund", details=problems)
    store = get_case_store()
    case = store.get(case_id)
    if case["status"] != OPEN:
        raise Conflict(f"case {case_id} is already {case['status']}", code="case_closed")
    if case["reason"] == refund_stock.RESTOCK_FAILED:
        # A refund's stock that was not put back: the money is back, so only `retry` applies
        # (put the stock back now); cancel and refund would act on an order that is done.
        if action != "retry":
            raise ValidationFailed(
                "a restock_failed case is resolved with retry (put the stock back)",
                details=[{"field": "action", "issue": "not_applicable", "allowed": ["retry"]}],
            )
        return json_response(refund_stock.retry_from_case(case, note), 200)
    token = store.token_of(case_id)
    if not token:
        raise Conflict(
            f"case {case_id} is not waiting for a decision yet; retry shortly",
            code="case_not_ready",
        )
    try:
        workflows.succeed(token, {"action": action, "note": note, "by": "operator"})
    except workflows.TaskGone:
        raise Conflict(
            f"case {case_id} no longer waits for a decision", code="case_closed"
        ) from None
    return json_response(
        {**case, "decision": {"action": action, "note": note}, "status": "deciding"}, 202
    )


def exception_step(event: dict[str, Any], context: Any) -> dict[str, Any]:
    step = event.get("step")
    if step not in STEPS:
        raise ValidationFailed(f"unknown exception step {step!r}")
    check_fault("exception", str(step), event.get("order_id"))
    return STEPS[str(step)](event)
