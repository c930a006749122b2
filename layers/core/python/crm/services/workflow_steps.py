"""Shared by the workflows' steps: the fault switch, reading the order a step works on, and the
order's internal events (facts the workflows establish: delivered, cancelled, a refund)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from crm.config import injected_faults
from crm.domain.errors import CrmError, Unavailable, ValidationFailed
from crm.domain.order_events import OrderEvent, Refund
from crm.domain.orders import Order
from crm.store.orders import get_order_store


class InjectedFault(CrmError):
    """A failure forced by configuration (`/crm/<stage>/faults`), for fault-injection tests."""

    code = "injected_fault"


class OrderCancelled(CrmError):
    """The order was cancelled while its workflow was under way: the workflow stops."""

    code = "order_cancelled"


class DeliveryFailed(CrmError):
    """The carrier's latest report (by its time) says the delivery failed: the order goes to
    the exception workflow."""

    code = "delivery_failed"


def check_fault(workflow: str, step: str, order_id: Any = None) -> None:
    """Fail if configuration says so: `<workflow>.<step>` for every order, or
    `<workflow>.<step>@<order id>` for one (so fault tests can run side by side)."""
    faults = injected_faults()
    if not faults:
        return
    point = f"{workflow}.{step}"
    if point in faults or f"{point}@{order_id}" in faults:
        raise InjectedFault(f"fault injected at {point}")


def run_step(
    workflow: str,
    steps: Mapping[str, Callable[..., Any]],
    event: dict[str, Any],
) -> dict[str, Any]:
    """A workflow's Lambda: the step its input names, after the fault switch's say."""
    step = event.get("step")
    if step not in steps:
        raise ValidationFailed(f"unknown {workflow} step {step!r}")
    check_fault(workflow, str(step), event.get("order_id"))
    answer: dict[str, Any] = steps[str(step)](event)
    return answer


def order_of(event: dict[str, Any], *, must_be_paid: bool = True) -> Order:
    order_id = event.get("order_id")
    if not isinstance(order_id, str):
        raise ValidationFailed("the step needs an order_id")
    order = get_order_store().get(order_id)
    if order is None or (must_be_paid and not order.paid_at):
        # Started before the webhook's write landed: wait for it (the step is retried).
        raise Unavailable(f"order {order_id} is not recorded as paid yet")
    return order


def internal_event(order: Order, kind: str, at: str, **facts: Any) -> OrderEvent:
    """A fact the workflows establish, as an order event without details."""
    return OrderEvent(
        source=order.source,
        platform_order_id=order.platform_order_id,
        kind=kind,
        updated_at=at,
        **facts,
    )


def full_refund(order: Order, refund_id: str, at: str, reason: str, *, restock: bool) -> Refund:
    return Refund(
        refund_id=refund_id,
        at=at,
        amount=order.refundable,
        goods_amount=max(0, order.subtotal - order.refunded_goods),
        reason=reason,
        restock=restock,
        status="requested",
    )
