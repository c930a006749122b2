"""The steps of the `order_fulfilment` workflow (statemachines/order_fulfilment.asl.json).

Each step reads the order, does one thing idempotently (a step may run twice), and records
where the order is. A step that cannot go on raises an error whose class name the workflow
catches: `OutOfStock`, `AddressNotRoutable`, `DeliveryFailed` hand the order to the exception
workflow; `OrderCancelled` stops it; `Unavailable` is retried with backoff.
"""

from __future__ import annotations

from typing import Any

from crm.adapters import workflows
from crm.clock import now_iso
from crm.config import get_settings
from crm.domain import carrier_events
from crm.domain.errors import ValidationFailed
from crm.domain.money import money
from crm.domain.orders import ALLOCATED, ON_HOLD, SHIPPED, Order
from crm.observability import logger
from crm.services import inventory, notifications
from crm.services.orders import answer_due, change_order, record_order_event
from crm.services.workflow_steps import (
    DeliveryFailed,
    OrderCancelled,
    internal_event,
    order_of,
)

# The error a step failed with -> the case's reason.
REASONS = {
    "OutOfStock": "out_of_stock",
    "AddressNotRoutable": "address_not_routable",
    "DeliveryFailed": "delivery_failed",
    "States.Timeout": "logistics_timeout",
}


def _live(order: Order) -> Order:
    if order.cancelled_at:
        raise OrderCancelled(f"order {order.order_id} was cancelled")
    return order


def allocate(event: dict[str, Any]) -> dict[str, Any]:
    order = _live(order_of(event))
    lines = [(line.sku, line.quantity) for line in order.lines]
    allocation = inventory.allocate_and_reserve(order.order_id, lines, order.shipping_address)

    def record(o: Order) -> Order:
        o.progress = ALLOCATED if o.progress in (None, ON_HOLD, ALLOCATED) else o.progress
        o.fulfilment = {**o.fulfilment, **_fulfilment_of(allocation)}
        # The attempt is the order's: an exception's retry numbers it before starting the
        # new execution, whose input the state machine does not pass to this step.
        attempt = event.get("attempt") or o.workflow.get("attempt") or 1
        o.workflow = {**o.workflow, "state": "allocated", "attempt": int(attempt)}
        return o

    change_order(order.order_id, record)
    return allocation


def _fulfilment_of(allocation: dict[str, Any]) -> dict[str, Any]:
    parts = allocation.get("parts") or []
    return {
        "warehouses": [p.get("warehouse_id") for p in parts],
        "parts": parts,
        "split": bool(allocation.get("split")),
    }


def confirm(event: dict[str, Any]) -> dict[str, Any]:
    order = _live(order_of(event))
    return _notify(order, "order_confirmed", f"order_confirmed:{order.order_id}")


def await_logistics(event: dict[str, Any]) -> dict[str, Any]:
    """Wait for the carrier: keep the task token on the order, unless what is recorded
    already decides the wait (events that came early, or the platform's fulfilment), in which
    case answer it now. `POST /logistics/events` answers a token kept here (decision 39)."""
    token, wanted = event.get("token"), event.get("for")
    if not isinstance(token, str) or wanted not in ("shipped", "delivered"):
        raise ValidationFailed("await_logistics needs a token and for=shipped|delivered")
    order_id = str(event.get("order_id"))

    def wait(o: Order) -> Order:
        if o.cancelled_at:
            raise OrderCancelled(f"order {o.order_id} was cancelled")
        o.waiting = {"for": wanted, "token": token, "since": now_iso()}
        o.workflow = {**o.workflow, "state": f"awaiting_{wanted}"}
        return o

    # Written before deciding: an event recorded after this write sees the token and answers
    # it; one recorded before it is seen here.
    order = change_order(order_id, wait)
    answer_due(order, strict=True)
    return {}


def shipped(event: dict[str, Any]) -> dict[str, Any]:
    order = _live(order_of(event))
    logistics = event.get("logistics") or {}
    inventory.ship_order(order.order_id)

    def record(o: Order) -> Order:
        # From the order as written now: a report recorded since the step began counts.
        attempt = int(o.workflow.get("attempt") or 1)
        recorded = carrier_events.shipment(o.fulfilment.get("tracking_events") or [], attempt)
        shipment = recorded or logistics
        o.progress = SHIPPED
        o.waiting = None
        o.fulfilment = {
            **o.fulfilment,
            "carrier": shipment.get("carrier"),
            "tracking_number": shipment.get("tracking_number"),
            "shipped_at": shipment.get("at") or now_iso(),
        }
        o.workflow = {**o.workflow, "state": "shipped"}
        return o

    order = change_order(order.order_id, record)
    return _notify(order, "order_shipped", f"order_shipped:{order.order_id}")


def recheck_delivery(event: dict[str, Any]) -> dict[str, Any]:
    """After the delivery wait was answered and a short window passed (`ConfirmDelivery`):
    decide from every report recorded by now, by their times (decision 39). A `delivered`
    answers its report (`event`, `at`) for MarkDelivered; a failed delivery raises
    `DeliveryFailed`, which hands the order over."""
    order = _live(order_of(event))
    outcome = carrier_events.awaited_outcome(
        order.fulfilment.get("tracking_events") or [],
        "delivered",
        int(order.workflow.get("attempt") or 1),
        order.fulfilled_at,
    )
    if outcome is None or outcome.error or outcome.output is None:
        raise DeliveryFailed(outcome.cause if outcome else "no delivery report is recorded")
    return outcome.output


def delivered(event: dict[str, Any]) -> dict[str, Any]:
    order = order_of(event)
    logistics = event.get("logistics") or {}
    decided = carrier_events.awaited_outcome(
        order.fulfilment.get("tracking_events") or [],
        "delivered",
        int(order.workflow.get("attempt") or 1),
        order.fulfilled_at,
    )
    at = (
        ((decided.output or {}).get("at") if decided else None)
        or logistics.get("delivered_at")
        or logistics.get("at")
        or now_iso()
    )
    if order.progress != SHIPPED and not order.fulfilment.get("shipped_at"):
        inventory.ship_order(order.order_id)  # delivered without a shipped callback first
    record_order_event(internal_event(order, "fulfilled", at, fulfilled_at=at), None)

    def record(o: Order) -> Order:
        o.waiting = None
        o.fulfilment = {**o.fulfilment, "delivered_at": at}
        o.workflow = {**o.workflow, "state": "delivered"}
        return o

    order = change_order(order.order_id, record)
    return _notify(order, "order_delivered", f"order_delivered:{order.order_id}")


def release(event: dict[str, Any]) -> dict[str, Any]:
    """After a cancellation: the stock goes back."""
    order = order_of(event, must_be_paid=False)
    released = inventory.release_order(order.order_id)

    def record(o: Order) -> Order:
        o.waiting = None
        o.workflow = {**o.workflow, "state": "cancelled"}
        return o

    change_order(order.order_id, record)
    return released


def hand_over(event: dict[str, Any]) -> dict[str, Any]:
    """Start the exception workflow for the error the order stopped on."""
    order = order_of(event, must_be_paid=False)
    error = event.get("error") or {}
    name = str(error.get("Error") or "Unknown")
    reason = REASONS.get(name, "other")
    attempt = int(order.workflow.get("attempt") or 1)
    execution = workflows.execution_name(order.order_id, "exception", str(attempt))

    def hold(o: Order) -> Order:
        o.progress = ON_HOLD
        o.waiting = None
        o.workflow = {**o.workflow, "state": "exception", "exception": execution}
        return o

    change_order(order.order_id, hold)
    workflows.start(
        get_settings().exception_machine,
        execution,
        {
            "order_id": order.order_id,
            "reason": reason,
            "cause": _cause(error),
            "attempt": attempt,
        },
    )
    logger.info("order handed to exceptions", extra={"order_id": order.order_id, "reason": reason})
    return {"exception": execution, "reason": reason}


def _cause(error: dict[str, Any]) -> str:
    """The error's message, without a stack trace (Lambda's payload is JSON in `Cause`)."""
    import json

    cause = error.get("Cause") or ""
    try:
        parsed = json.loads(cause)
        cause = parsed.get("errorMessage", cause) if isinstance(parsed, dict) else cause
    except (TypeError, ValueError):
        pass
    return str(cause)[:300]


def _notify(order: Order, kind: str, dedup_key: str) -> dict[str, Any]:
    if not order.customer_id:
        return {"notification": None}
    sent = notifications.send(order.customer_id, kind, message_context(order), dedup_key)
    return {"notification": sent.get("status")}


def message_context(order: Order, **extra: Any) -> dict[str, Any]:
    currency = order.currency or get_settings().currency
    return {
        "order_name": order.name or order.platform_order_id,
        "total": f"{money(order.total, currency)['amount']} {currency}",
        "lines": [
            {"title": line.title or line.sku, "quantity": line.quantity} for line in order.lines
        ],
        "carrier": order.fulfilment.get("carrier") or "-",
        "tracking_number": order.fulfilment.get("tracking_number") or "-",
        **extra,
    }


STEPS = {
    "allocate": allocate,
    "confirm": confirm,
    "await_logistics": await_logistics,
    "shipped": shipped,
    "recheck_delivery": recheck_delivery,
    "delivered": delivered,
    "release": release,
    "hand_over": hand_over,
}
