"""Entry points of cases: parse the trigger, call the service, answer."""

from __future__ import annotations

from typing import Any

from chalice import Response
from chalice.app import Request

from crm.api import endpoint, json_response, page_limit, query, read_json_object
from crm.domain.errors import ValidationFailed
from crm.services.cases import ACTIONS, OPEN, STATUSES, STEPS, page_of_cases, resolve
from crm.services.workflow_steps import run_step


@endpoint
def list_cases(request: Request) -> Response:
    params = query(request)
    status = params.get("status", OPEN)
    if status not in STATUSES:
        raise ValidationFailed(
            "status is open or resolved", details=[{"field": "status", "issue": "unknown_value"}]
        )
    return json_response(page_of_cases(status, page_limit(params), params.get("cursor")))


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
    resolution = resolve(case_id, str(action), note)
    return json_response(resolution.view, 200 if resolution.done else 202)


def exception_step(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return run_step("exception", STEPS, event)
