"""Exception cases: the steps of the `order_exception` workflow, and the case routes.

An order that cannot go on is put on hold, a case is opened, operations are told (the ops
topic), the customer is told, and the workflow waits for a decision (`POST /cases/{id}/resolve`)
or, when nobody decides in time, applies the default: cancel and refund in full, so a customer's
money is never held for an order nobody is working on.

A `restock_failed` case (a refund whose stock was not put back, functions/refund_stock.py)
waits for no workflow: its only action, `retry`, puts the stock back at once and resolves it.

`page_of_cases` and `resolve` are what `GET /cases` and `POST /cases/{id}/resolve` ask for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crm.adapters import ops, workflows
from crm.clock import now_iso
from crm.config import get_settings
from crm.domain.errors import Conflict, ValidationFailed
from crm.domain.orders import ON_HOLD, SHIPPED, Order
from crm.observability import logger
from crm.services import inventory, notifications, refund_stock
from crm.services.fulfilment import message_context
from crm.services.orders import change_order, record_order_event
from crm.services.workflow_steps import full_refund, internal_event, order_of
from crm.store.cases import OPEN, RESOLVED, get_case_store

ACTIONS = ("retry", "cancel", "refund")
STATUSES = (OPEN, RESOLVED)  # the cases listed, by status


def case_id_of(order_id: str, attempt: int) -> str:
    return workflows.execution_name("case", order_id, str(attempt))


def open_case(event: dict[str, Any]) -> dict[str, Any]:
    order = order_of(event, must_be_paid=False)
    attempt = int(event.get("attempt") or order.workflow.get("attempt") or 1)
    reason = str(event.get("reason") or "other")
    case = get_case_store().open(
        {
            "case_id": case_id_of(order.order_id, attempt),
            "order_id": order.order_id,
            "customer_id": order.customer_id,
            "reason": reason,
            "cause": str(event.get("cause") or "")[:300],
            "opened_at": now_iso(),
            "attempt": str(attempt),
        }
    )

    def hold(o: Order) -> Order:
        o.progress = ON_HOLD
        o.workflow = {**o.workflow, "state": "on_hold", "case_id": case["case_id"]}
        return o

    change_order(order.order_id, hold)
    ops.publish(
        f"Order {order.order_id} on hold: {reason}",
        {"case_id": case["case_id"], "order_id": order.order_id, "reason": reason},
    )
    if order.customer_id:
        notifications.send(
            order.customer_id,
            "case_opened",
            message_context(order, reason=reason if reason in KNOWN_REASONS else "other"),
            f"case_opened:{case['case_id']}",
        )
    logger.info("case opened", extra={"case_id": case["case_id"], "reason": reason})
    return {"case_id": case["case_id"]}


KNOWN_REASONS = ("out_of_stock", "address_not_routable", "delivery_failed", "customer_cancellation")


def await_decision(event: dict[str, Any]) -> dict[str, Any]:
    get_case_store().await_decision(str(event.get("case_id")), str(event.get("token")))
    return {}


def retry(event: dict[str, Any]) -> dict[str, Any]:
    order = order_of(event, must_be_paid=False)
    _close(event)
    attempt = int(order.workflow.get("attempt") or 1) + 1
    name = workflows.execution_name(order.order_id, "attempt", str(attempt))

    def resume(o: Order) -> Order:
        o.progress = None
        o.waiting = None
        o.workflow = {**o.workflow, "state": "retrying", "execution": name, "attempt": attempt}
        return o

    change_order(order.order_id, resume)
    workflows.start(
        get_settings().fulfilment_machine, name, {"order_id": order.order_id, "attempt": attempt}
    )
    return {"fulfilment": name}


def cancel(event: dict[str, Any]) -> dict[str, Any]:
    """Cancel: stock released, the order cancelled (points reversed), the money refunded."""
    order = order_of(event, must_be_paid=False)
    result = cancel_order(order, reason=_note(event, "cancelled by decision"))
    _close(event)
    return result


def refund(event: dict[str, Any]) -> dict[str, Any]:
    """Refund in full without cancelling (e.g. goods lost in transit): no restock."""
    order = order_of(event, must_be_paid=False)
    refund_id = f"{order.order_id}-case-refund"
    result: dict[str, Any] = {"refund_id": None}
    if order.progress != SHIPPED:
        inventory.release_order(order.order_id)
    if ensure_full_refund(order, refund_id, _note(event, "refund")):
        result["refund_id"] = refund_id

    def done(o: Order) -> Order:
        o.progress = None if o.progress == ON_HOLD else o.progress
        o.workflow = {**o.workflow, "state": "refunded"}
        return o

    change_order(order.order_id, done)
    _close(event)
    return result


def cancel_order(order: Order, *, reason: str) -> dict[str, Any]:
    """Shared by the exception workflow and `POST /orders/{id}/cancel`."""
    at = now_iso()
    if order.progress != SHIPPED:
        inventory.release_order(order.order_id)
    record_order_event(
        internal_event(order, "cancelled", at, cancelled_at=at, cancel_reason=reason), None
    )

    def done(o: Order) -> Order:
        o.progress = None
        o.waiting = None
        o.workflow = {**o.workflow, "state": "cancelled"}
        return o

    order = change_order(order.order_id, done)
    refund_id: str | None = f"{order.order_id}-cancel"
    if not ensure_full_refund(order, str(refund_id), reason):
        refund_id = None
    return {"order_id": order.order_id, "status": "cancelled", "refund_id": refund_id}


def ensure_full_refund(order: Order, refund_id: str, reason: str) -> bool:
    """Refund what is left to refund, once: a repeated step finds the refund recorded and only
    (re)starts its workflow, which Step Functions runs once per name."""
    if not any(r.refund_id == refund_id for r in order.refunds):
        if order.refundable <= 0:
            return False
        request = full_refund(order, refund_id, now_iso(), reason, restock=False)
        record_order_event(
            internal_event(order, "refund", request.at, refunds=(request,)),
            None,
            refund_limit=True,
        )
    start_refund_workflow(order.order_id, refund_id)
    return True


def start_refund_workflow(order_id: str, refund_id: str) -> None:
    workflows.start(
        get_settings().refund_machine,
        workflows.execution_name(order_id, refund_id),
        {"order_id": order_id, "refund_id": refund_id, "source": "api"},
    )


def _note(event: dict[str, Any], default: str) -> str:
    decision = event.get("decision") or {}
    note = decision.get("note") if isinstance(decision, dict) else None
    return str(note or default)[:300]


def _close(event: dict[str, Any]) -> None:
    raw = event.get("decision")
    decision: dict[str, Any] = raw if isinstance(raw, dict) else {}
    case_id = event.get("case_id")
    if isinstance(case_id, str):
        get_case_store().resolve(case_id, {"by": "operator", **decision}, now_iso())


STEPS = {
    "open_case": open_case,
    "await_decision": await_decision,
    "retry": retry,
    "cancel": cancel,
    "refund": refund,
}


# -- routes -------------------------------------------------------------------------------------


def page_of_cases(status: str, limit: int, cursor: str | None) -> dict[str, Any]:
    """A page of the cases in `status` (one of `STATUSES`)."""
    items, next_cursor = get_case_store().list(status, limit, cursor)
    return {"items": items, "next_cursor": next_cursor}


@dataclass(frozen=True)
class Resolution:
    """An operator's decision taken: `view` is the answer; `done` when it was carried out at
    once, else it was handed to the workflow waiting for it."""

    view: dict[str, Any]
    done: bool


def resolve(case_id: str, action: str, note: str) -> Resolution:
    """An operator's decision (`action` one of `ACTIONS`) on an open case."""
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
        return Resolution(refund_stock.retry_from_case(case, note), done=True)
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
    view = {**case, "decision": {"action": action, "note": note}, "status": "deciding"}
    return Resolution(view, done=False)
