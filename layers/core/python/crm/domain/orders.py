"""The order record and how events change it. Pure.

An order's *details* (lines, totals, address) are those of the newest event by `updated_at`;
its *facts* (paid, cancelled, fulfilled, refunds) are the union of every event ever received,
so a late or reordered delivery can add a fact but never remove one. The status is derived
from the facts (and from the fulfilment workflow's progress, later), never stored by an event.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from crm.domain.money import money
from crm.domain.order_events import REFUND_RANK, Line, OrderEvent, Refund, RefundLine

PENDING, PAID, ALLOCATED, SHIPPED, DELIVERED = (
    "pending",
    "paid",
    "allocated",
    "shipped",
    "delivered",
)
CANCELLED, REFUNDED, PARTIALLY_REFUNDED, ON_HOLD = (
    "cancelled",
    "refunded",
    "partially_refunded",
    "on_hold",
)
STATUSES = (
    PENDING,
    PAID,
    ALLOCATED,
    SHIPPED,
    DELIVERED,
    CANCELLED,
    REFUNDED,
    PARTIALLY_REFUNDED,
    ON_HOLD,
)
# Set by the fulfilment workflow (issue 4); an event never sets them.
PROGRESS = (ALLOCATED, SHIPPED, ON_HOLD)


@dataclass
class Order:
    order_id: str
    source: str
    platform_order_id: str
    received_at: str
    customer_id: str | None = None
    name: str | None = None
    currency: str | None = None
    lines: list[Line] = field(default_factory=list)
    subtotal: int = 0
    shipping: int = 0
    total: int = 0
    shipping_address: dict[str, Any] | None = None
    created_at: str | None = None
    updated_at: str | None = None  # of the newest details applied
    paid_at: str | None = None
    cancelled_at: str | None = None
    cancel_reason: str | None = None
    fulfilled_at: str | None = None
    refunds: list[Refund] = field(default_factory=list)
    progress: str | None = None
    status: str = PENDING
    status_history: list[dict[str, str]] = field(default_factory=list)
    # Points this order earned and reversed, as the ledger recorded them.
    points_earned: int = 0
    points_reversed: int = 0
    points_status: str | None = None  # None, "pending", "active"
    # What this order adds to the customer's stats, as last applied (see `contribution`).
    counted: bool = False
    spent: int = 0
    spent_month: str | None = None
    version: int | None = None

    # The fulfilment workflow's record: warehouses and parts, carrier, tracking, shipped_at.
    fulfilment: dict[str, Any] = field(default_factory=dict)
    # The workflow that moves the order: machine, execution, state; an open case.
    workflow: dict[str, Any] = field(default_factory=dict)
    # The task token of the step waiting for a logistics callback: {"for": "shipped", "token"}.
    waiting: dict[str, Any] | None = None

    @property
    def live_refunds(self) -> list[Refund]:
        """Refunds that count: completed ones and those still being paid out."""
        return [r for r in self.refunds if r.status != "failed"]

    @property
    def refunded(self) -> int:
        return sum(r.amount for r in self.live_refunds)

    @property
    def refunded_goods(self) -> int:
        return min(self.subtotal, sum(r.goods_amount for r in self.live_refunds))

    @property
    def refundable(self) -> int:
        """What can still be refunded: what was paid, minus the live refunds."""
        return max(0, self.total - self.refunded) if self.paid_at else 0


def _earliest(a: str | None, b: str | None) -> str | None:
    return min(x for x in (a, b) if x) if (a or b) else None


def derive_status(order: Order) -> str:
    """Cancelled beats everything; then money returned; then delivery; then the workflow's
    progress; then payment."""
    if order.cancelled_at:
        return CANCELLED
    if order.live_refunds and order.paid_at and order.refunded >= order.total > 0:
        return REFUNDED
    if order.live_refunds:
        return PARTIALLY_REFUNDED
    if order.fulfilled_at:
        return DELIVERED
    if order.progress in PROGRESS:
        return order.progress
    if order.paid_at:
        return PAID
    return PENDING


def new_order(event: OrderEvent, now: str) -> Order:
    return Order(
        order_id=event.order_id,
        source=event.source,
        platform_order_id=event.platform_order_id,
        received_at=now,
    )


def apply_event(order: Order, event: OrderEvent) -> Order:
    """The order after `event`: details if the event is at least as new, facts always."""
    updated = replace(order, lines=list(order.lines), refunds=list(order.refunds))
    updated.status_history = list(order.status_history)
    newer = order.updated_at is None or event.updated_at >= order.updated_at
    if event.lines is not None and newer:
        updated.lines = list(event.lines)
        updated.currency = event.currency or order.currency
        updated.subtotal = event.subtotal if event.subtotal is not None else order.subtotal
        updated.shipping = event.shipping if event.shipping is not None else order.shipping
        updated.total = event.total if event.total is not None else order.total
        updated.shipping_address = event.shipping_address
        updated.name = event.name or order.name
        updated.created_at = event.created_at or order.created_at
        updated.updated_at = event.updated_at
    elif order.updated_at is None:
        updated.currency = updated.currency or event.currency
    if order.created_at is None and event.created_at:
        updated.created_at = event.created_at
    updated.paid_at = _earliest(order.paid_at, event.paid_at)
    updated.cancelled_at = _earliest(order.cancelled_at, event.cancelled_at)
    if updated.cancelled_at and not updated.cancel_reason:
        updated.cancel_reason = event.cancel_reason
    updated.fulfilled_at = _earliest(order.fulfilled_at, event.fulfilled_at)
    known = {r.refund_id: i for i, r in enumerate(updated.refunds)}
    for refund in event.refunds:
        if refund.refund_id not in known:
            updated.refunds.append(refund)
            known[refund.refund_id] = len(updated.refunds) - 1
        else:
            # A refund asked for through the API moves from requested to completed or failed.
            index = known[refund.refund_id]
            if REFUND_RANK.get(refund.status, 1) > REFUND_RANK.get(
                updated.refunds[index].status, 1
            ):
                updated.refunds[index] = refund
    updated.refunds.sort(key=lambda r: (r.at, r.refund_id))
    status = derive_status(updated)
    if status != order.status or not order.status_history:
        updated.status = status
        updated.status_history.append(
            {"status": status, "at": _status_time(updated, status, event)}
        )
    return updated


def _status_time(order: Order, status: str, event: OrderEvent) -> str:
    by_fact = {
        PAID: order.paid_at,
        CANCELLED: order.cancelled_at,
        DELIVERED: order.fulfilled_at,
        REFUNDED: order.live_refunds[-1].at if order.live_refunds else None,
        PARTIALLY_REFUNDED: order.live_refunds[-1].at if order.live_refunds else None,
        PENDING: order.created_at,
    }
    return by_fact.get(status) or event.updated_at


def differs(a: Order, b: Order) -> bool:
    """Whether anything stored would change (the version aside)."""
    return replace(a, version=None) != replace(b, version=None)


# -- what the order adds to the customer ------------------------------------------------------


@dataclass(frozen=True)
class Contribution:
    counted: bool  # counts in orders_count
    spent: int  # adds to total_spent and the tier's spend, minor units
    month: str | None  # the month the spend counts in (of payment), "YYYY-MM"
    # When the order was placed (first / last order dates); not part of what it contributes.
    created_at: str | None = field(default=None, compare=False)


def contribution(order: Order) -> Contribution:
    """A paid order that is not cancelled counts, for what was paid minus what was refunded."""
    if not order.paid_at or order.cancelled_at:
        return Contribution(False, 0, None, order.created_at)
    spent = max(0, order.total - order.refunded)
    return Contribution(
        spent > 0 or not order.live_refunds, spent, order.paid_at[:7], order.created_at
    )


def stats_after(stats: dict[str, Any], order: Order, new: Contribution) -> dict[str, Any]:
    """The customer's stats with this order's previous contribution replaced by `new`."""
    stats = dict(stats)
    months = dict(stats.get("spend_months") or {})
    if order.spent_month:
        months[order.spent_month] = int(months.get(order.spent_month, 0)) - order.spent
    if new.month:
        months[new.month] = int(months.get(new.month, 0)) + new.spent
    stats["spend_months"] = {m: v for m, v in months.items() if v}
    stats["orders_count"] = (
        int(stats.get("orders_count", 0)) + int(new.counted) - int(order.counted)
    )
    stats["total_spent"] = int(stats.get("total_spent", 0)) + new.spent - order.spent
    stats["currency"] = stats.get("currency") or order.currency
    # The order's own date (the previous state of a first event has none yet).
    placed = new.created_at or order.created_at
    if new.counted and placed:
        first, last = stats.get("first_order_at"), stats.get("last_order_at")
        stats["first_order_at"] = min(x for x in (first, placed) if x)
        stats["last_order_at"] = max(x for x in (last, placed) if x)
    return stats


# -- views -------------------------------------------------------------------------------------


def order_view(order: Order, default_currency: str) -> dict[str, Any]:
    """The order as `GET /orders/{id}` shows it."""
    currency = order.currency or default_currency

    def m(minor: int) -> dict[str, str]:
        return money(minor, currency)

    return {
        "order_id": order.order_id,
        "source": order.source,
        "platform_order_id": order.platform_order_id,
        "name": order.name,
        "customer_id": order.customer_id,
        "status": order.status,
        "status_history": order.status_history,
        "currency": currency,
        "lines": [
            {
                "sku": line.sku,
                "title": line.title,
                "quantity": line.quantity,
                "unit_price": m(line.unit_price),
                "line_id": line.line_id,
            }
            for line in order.lines
        ],
        "totals": {
            "subtotal": m(order.subtotal),
            "shipping": m(order.shipping),
            "total": m(order.total),
            "refunded": m(order.refunded),
        },
        "shipping_address": order.shipping_address,
        "created_at": order.created_at,
        "updated_at": order.updated_at,
        "paid_at": order.paid_at,
        "cancelled_at": order.cancelled_at,
        "cancel_reason": order.cancel_reason,
        "fulfilled_at": order.fulfilled_at,
        "fulfilment": {
            "warehouse": (order.fulfilment.get("warehouses") or [None])[0],
            "warehouses": order.fulfilment.get("warehouses", []),
            "parts": order.fulfilment.get("parts", []),
            "carrier": order.fulfilment.get("carrier"),
            "tracking": order.fulfilment.get("tracking_number"),
            "shipped_at": order.fulfilment.get("shipped_at"),
            "delivered_at": order.fulfilment.get("delivered_at"),
            # What the carrier said, in the order it was received.
            "events": [
                {k: e.get(k) for k in ("event", "carrier", "tracking_number", "at", "received_at")}
                for e in order.fulfilment.get("tracking_events") or []
            ],
        },
        "refunds": [
            {
                "refund_id": r.refund_id,
                "at": r.at,
                "amount": m(r.amount),
                "goods_amount": m(r.goods_amount),
                "reason": r.reason,
                "status": r.status,
            }
            for r in order.refunds
        ],
        "points": {
            "earned": order.points_earned,
            "reversed": order.points_reversed,
            "status": order.points_status,
        },
        "workflow": order.workflow or None,
    }


def order_summary(order: Order, default_currency: str) -> dict[str, Any]:
    """An order in a list (the 360 view's recent orders, an export)."""
    currency = order.currency or default_currency
    return {
        "order_id": order.order_id,
        "name": order.name,
        "status": order.status,
        "created_at": order.created_at,
        "total": money(order.total, currency),
        "refunded": money(order.refunded, currency),
        "points": {"earned": order.points_earned, "reversed": order.points_reversed},
    }


# -- (de)serialisation for the store and the API ----------------------------------------------


def lines_to_data(lines: list[Line]) -> list[dict[str, Any]]:
    return [asdict(line) for line in lines]


def lines_from_data(data: list[dict[str, Any]]) -> list[Line]:
    return [Line(**line) for line in data or []]


def refunds_to_data(refunds: list[Refund]) -> list[dict[str, Any]]:
    return [asdict(r) for r in refunds]


def refunds_from_data(data: list[dict[str, Any]]) -> list[Refund]:
    refunds = []
    for r in data or []:
        values = dict(r)
        values["lines"] = tuple(RefundLine(**line) for line in values.get("lines") or ())
        refunds.append(Refund(**values))
    return refunds
