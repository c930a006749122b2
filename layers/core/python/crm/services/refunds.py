"""Refunds and cancellations asked for through the API, and the steps of the `refund` workflow.

A refund is validated and recorded synchronously (`202` with its id): the refunded total can
never exceed what was paid, because the refund is added to the order at the version read (a
concurrent refund makes one of them read again and re-check). Its points are reversed in the
same write. The workflow then pays it out (payment adapter), puts stock back, and tells the
customer; a payout that is refused is compensated: the refund is marked failed (its points come
back) and operations are told. Stock that cannot be put back leaves the refund paid but opens a
`restock_failed` case and tells operations (crm/services/refund_stock.py).

`request_refund` and `request_cancellation` are what `POST /orders/{id}/refunds` and
`POST /orders/{id}/cancel` ask for; `STEPS` are the `refund` workflow's tasks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from crm.adapters import ops, payments
from crm.clock import now_iso
from crm.config import get_settings
from crm.domain.errors import Conflict, Unavailable, ValidationFailed
from crm.domain.money import money, to_minor
from crm.domain.order_events import Refund, RefundLine
from crm.domain.orders import SHIPPED, Order
from crm.observability import logger
from crm.services import notifications, refund_stock
from crm.services.cases import cancel_order, start_refund_workflow
from crm.services.fulfilment import message_context
from crm.services.orders import find_order, record_order_event, stop_waiting
from crm.services.workflow_steps import internal_event, order_of


def _refund_of(order: Order, refund_id: Any) -> Refund:
    for refund in order.refunds:
        if refund.refund_id == refund_id:
            return refund
    # Started right after the refund's write: if it is not visible yet, wait for it (retried).
    raise Unavailable(f"order {order.order_id} has no refund {refund_id} yet")


def pay(event: dict[str, Any]) -> dict[str, Any]:
    order = order_of(event, must_be_paid=False)
    refund = _refund_of(order, event.get("refund_id"))
    if refund.status == "completed":
        return {"payment": "already paid"}
    if refund.status == "failed":
        raise payments.PaymentRefused(f"refund {refund.refund_id} was already refused")
    currency = order.currency or get_settings().currency
    reference = payments.provider().refund(
        order.order_id, refund.refund_id, refund.amount, currency
    )
    _set_status(order, refund, "completed")
    return {"payment": reference}


def stock(event: dict[str, Any]) -> dict[str, Any]:
    """Goods back on the shelf: restocked when they had shipped and the refund says so; the
    reservation released when nothing shipped and nothing is left to ship."""
    order = order_of(event, must_be_paid=False)
    return refund_stock.put_back(order, _refund_of(order, event.get("refund_id")))


def stock_failed(event: dict[str, Any]) -> dict[str, Any]:
    """The stock step failed for good (after its retries): the money is back, so the refund
    stays paid, but the refund records `restock_status: failed`, a `restock_failed` case opens
    and operations are told, once (decision 42). The workflow then tells the customer and ends
    in `RefundedRestockFailed`."""
    order = order_of(event, must_be_paid=False)
    refund = _refund_of(order, event.get("refund_id"))
    return refund_stock.report_failure(order, refund, event.get("error"))


def notify(event: dict[str, Any]) -> dict[str, Any]:
    order = order_of(event, must_be_paid=False)
    refund = _refund_of(order, event.get("refund_id"))
    if not order.customer_id or refund.status == "failed":
        return {"notification": None}
    currency = order.currency or get_settings().currency
    amount = f"{money(refund.amount, currency)['amount']} {currency}"
    sent = notifications.send(
        order.customer_id,
        "refund_issued",
        message_context(order, amount=amount),
        f"refund_issued:{refund.refund_id}",
    )
    return {"notification": sent.get("status")}


def compensate(event: dict[str, Any]) -> dict[str, Any]:
    """The payout failed for good: the refund is marked failed (its points come back, the
    order's totals no longer count it) and operations are told."""
    order = order_of(event, must_be_paid=False)
    refund = _refund_of(order, event.get("refund_id"))
    if refund.status != "completed":
        _set_status(order, refund, "failed")
    ops.publish(
        f"Refund {refund.refund_id} failed",
        {"order_id": order.order_id, "refund_id": refund.refund_id},
    )
    logger.warning("refund failed", extra={"order_id": order.order_id})
    return {"refund": "failed"}


def _set_status(order: Order, refund: Refund, status: str) -> None:
    updated = Refund(**{**refund.__dict__, "status": status})
    record_order_event(internal_event(order, "refund", now_iso(), refunds=(updated,)), None)


STEPS = {
    "pay": pay,
    "stock": stock,
    "stock_failed": stock_failed,
    "notify": notify,
    "compensate": compensate,
}


# -- asked for through the API ------------------------------------------------------------------


MAX_KEY = 128  # characters of a refund's idempotency_key


def request_refund(order_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """A refund of a paid order (`body` as the contract's refund request), recorded and its
    workflow started: the refund's view."""
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
    return {
        "refund_id": chosen.refund_id,
        "order_id": order.order_id,
        "status": chosen.status,
        "amount": money(chosen.amount, currency),
    }


@dataclass(frozen=True)
class Cancellation:
    """What a cancellation asked for did: `view` is the answer; `already` when the order was
    cancelled before (nothing more was done)."""

    view: dict[str, Any]
    already: bool


def request_cancellation(order_id: str, reason: str) -> Cancellation:
    """The shop cancels an order that has not shipped: its waiting workflow stopped, stock
    released, the order cancelled and what was paid refunded (`cases.cancel_order`)."""
    order = find_order(order_id)
    if order.cancelled_at:
        view = {"order_id": order.order_id, "status": "cancelled", "refund_id": None}
        return Cancellation(view, already=True)
    if order.progress == SHIPPED or order.fulfilled_at:
        raise Conflict(
            f"order {order.order_id} has shipped; refund it instead",
            code="already_shipped",
        )
    stop_waiting(order, "OrderCancelled", "the order was cancelled")
    return Cancellation(cancel_order(order, reason=reason), already=False)


def _usable_key(key: Any) -> bool:
    return isinstance(key, str) and bool(key.strip()) and len(key) <= MAX_KEY


def refund_id_of(order: Order, key: str) -> str:
    """The same key on the same order is the same refund."""
    return "rf-" + hashlib.sha256(f"{order.order_id}\n{key}".encode()).hexdigest()[:16]


def _refund_request(order: Order, body: dict[str, Any]) -> Refund:
    currency = order.currency or get_settings().currency
    reason = body.get("reason")
    restock = body.get("restock", False)
    problems = []
    if reason is not None and (not isinstance(reason, str) or len(reason) > 500):
        problems.append({"field": "reason", "issue": "wrong_type"})
    if not isinstance(restock, bool):
        problems.append({"field": "restock", "issue": "wrong_type"})
    key = body.get("idempotency_key")
    if key is None:  # required: without it a client's retry would be a second refund
        problems.append({"field": "idempotency_key", "issue": "missing"})
    elif not _usable_key(key):
        problems.append({"field": "idempotency_key", "issue": "wrong_type"})
    lines: tuple[RefundLine, ...] = ()
    amount = goods = 0
    if ("lines" in body) == ("amount" in body):
        problems.append({"field": "lines", "issue": "give lines or amount"})
    elif "amount" in body:
        if not isinstance(body["amount"], str):
            problems.append({"field": "amount", "issue": "wrong_type"})
        else:
            try:
                amount = to_minor(body["amount"], currency, field="amount")
            except ValidationFailed as exc:
                problems.extend(exc.details)
            if amount <= 0:
                problems.append({"field": "amount", "issue": "must_be_positive"})
            goods = min(amount, order.subtotal)
    else:
        lines, amount, line_problems = _lines(order, body["lines"])
        goods = amount
        problems.extend(line_problems)
    if problems:
        raise ValidationFailed("the refund is not valid", details=problems)
    return Refund(
        refund_id=refund_id_of(order, str(key)),
        at=now_iso(),
        amount=amount,
        goods_amount=goods,
        lines=lines,
        reason=reason,
        restock=restock,
        status="requested",
    )


def _lines(order: Order, raw: Any) -> tuple[tuple[RefundLine, ...], int, list[dict[str, Any]]]:
    if not isinstance(raw, list) or not raw:
        return (), 0, [{"field": "lines", "issue": "wrong_type"}]
    ordered: dict[str, list[int]] = {}
    for item in order.lines:
        ordered.setdefault(item.sku, [0, item.unit_price])
        ordered[item.sku][0] += item.quantity
    refunded: dict[str, int] = {}
    for refund in order.live_refunds:
        for done in refund.lines:
            if done.sku:
                refunded[done.sku] = refunded.get(done.sku, 0) + done.quantity
    result: list[RefundLine] = []
    total = 0
    problems: list[dict[str, Any]] = []
    for i, item in enumerate(raw):
        sku = item.get("sku") if isinstance(item, dict) else None
        qty = item.get("quantity") if isinstance(item, dict) else None
        if not isinstance(sku, str) or sku not in ordered:
            problems.append({"field": f"lines[{i}].sku", "issue": "not_in_order"})
            continue
        if isinstance(qty, bool) or not isinstance(qty, int) or qty <= 0:
            problems.append({"field": f"lines[{i}].quantity", "issue": "invalid_value"})
            continue
        left = ordered[sku][0] - refunded.get(sku, 0)
        if qty > left:
            problems.append(
                {"field": f"lines[{i}].quantity", "issue": "more_than_left", "left": left}
            )
            continue
        refunded[sku] = refunded.get(sku, 0) + qty
        amount = ordered[sku][1] * qty
        result.append(RefundLine(quantity=qty, sku=sku, amount=amount))
        total += amount
    return tuple(result), total, problems
