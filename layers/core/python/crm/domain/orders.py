"""The order record and how events change it. Pure.

An order's *details* (lines, totals, address) are those of the newest event by `updated_at`;
its *facts* (paid, cancelled, fulfilled, refunds) are the union of every event ever received,
so a late or reordered delivery can add a fact but never remove one. The status is derived
from the facts (and from the fulfilment workflow's progress, later), never stored by an event.

Refunds are facts too, kept by id; which of them count, and for how much, is derived
(`counted_refunds`): an order history import's refunded amount (`import-<id>`) stands for the
platform's refunds made before the import, and the platform's own refunds replace it when they
come (decision 41), so a migrated order's refunds never count twice, whatever arrives first.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from crm.domain.money import money
from crm.domain.order_events import (
    CRM,
    IMPORT_REFUND_PREFIX,
    REFUND_RANK,
    Line,
    OrderEvent,
    Refund,
    RefundLine,
)

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
    # The newest `updated_at` of an event that listed every refund the platform had made (a
    # platform's whole order): from then on the platform's refunds replace an import's amount.
    refunds_listed_at: str | None = None
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
        """Refunds that count: completed ones and those still being paid out, but not an
        import's amount the platform's own refunds replaced (`counted_refunds`)."""
        return [c.refund for c in counted_refunds(self)]

    @property
    def refunded(self) -> int:
        return sum(c.amount for c in counted_refunds(self))

    @property
    def refunded_goods(self) -> int:
        return min(self.subtotal, sum(c.goods for c in counted_refunds(self)))

    @property
    def refundable(self) -> int:
        """What can still be refunded: what was paid, minus the live refunds."""
        return max(0, self.total - self.refunded) if self.paid_at else 0


def _earliest(a: str | None, b: str | None) -> str | None:
    return min(x for x in (a, b) if x) if (a or b) else None


def _latest(a: str | None, b: str | None) -> str | None:
    return max(x for x in (a, b) if x) if (a or b) else None


# -- which refunds count -----------------------------------------------------------------------


@dataclass(frozen=True)
class Counted:
    """A refund that counts, and for how much: money returned and goods refunded (minor
    units). An import's amount may count for less than it says (`counted_refunds`)."""

    refund: Refund
    amount: int
    goods: int


def is_import_aggregate(refund: Refund) -> bool:
    """The one refund an order history file's refunded amount became (`import-<id>`)."""
    return refund.refund_id.startswith(IMPORT_REFUND_PREFIX)


def _recorded_at(aggregate: Refund) -> str:
    """When the import recorded the aggregate (older records: the order's time in the file)."""
    return aggregate.as_of or aggregate.at


def is_superseded(order: Order, aggregate: Refund) -> bool:
    """Whether the platform has listed all the order's refunds since the import recorded the
    aggregate: its own refunds then replace the aggregate entirely, more or less."""
    listed = order.refunds_listed_at
    return listed is not None and listed >= _recorded_at(aggregate)


def counted_refunds(order: Order) -> list[Counted]:
    """The refunds that count, in time order. The rule (decision 41):

    * A failed refund counts for nothing; the CRM's own refunds (`origin` CRM) and the
      platform's count in full.
    * An import's aggregate (`import-<id>`) stands for the platform refunds made before the
      import. Once a platform event newer than the import lists all the order's refunds
      (`is_superseded`), the platform's refunds replace it: it counts for nothing.
    * Until then, the platform's refunds made before the import are taken to be part of it: it
      counts only for what they do not account for (money and goods apart), so the order's
      refunded total is the larger of the two and never their sum. A platform refund made after
      the import is new and counts in full beside it.

    Facts are only ever added (refunds, `refunds_listed_at`), so the result is the same for
    every arrival order, and adding a refund never lowers what counts: only a refund failing
    or a platform's list replacing an import's amount can (`refund_generation`)."""
    live = [r for r in order.refunds if r.status != "failed"]
    counted = [Counted(r, r.amount, r.goods_amount) for r in live if not is_import_aggregate(r)]
    platform = [r for r in live if not is_import_aggregate(r) and r.origin != CRM]
    for aggregate in (r for r in live if is_import_aggregate(r)):
        if is_superseded(order, aggregate):
            continue
        before = [r for r in platform if r.at <= _recorded_at(aggregate)]
        amount = max(0, aggregate.amount - sum(r.amount for r in before))
        goods = max(0, aggregate.goods_amount - sum(r.goods_amount for r in before))
        if amount or goods:
            counted.append(Counted(aggregate, amount, goods))
    counted.sort(key=lambda c: (c.refund.at, c.refund.refund_id))
    return counted


def is_history_refund(order: Order, refund: Refund) -> bool:
    """A platform refund made before an import recorded the order's refunded amount: the shop
    handled it before the CRM knew the order (stock, the customer's notice), so no refund
    workflow is started for it when it reaches the CRM afterwards."""
    if is_import_aggregate(refund) or refund.origin == CRM:
        return False
    return any(is_import_aggregate(r) and refund.at <= _recorded_at(r) for r in order.refunds)


def refund_generation(order: Order) -> int:
    """How many times what counts as refunded may have gone down: one per failed refund and
    per import aggregate the platform's list replaced. Between two such moments it only goes
    up, so a points entry named by (order, reversed total, generation) is named by its cause
    (decision 21): a replay is refused, and a reversal back to a total once restored is not."""
    failed = sum(1 for r in order.refunds if r.status == "failed")
    replaced = sum(1 for r in order.refunds if is_import_aggregate(r) and is_superseded(order, r))
    return failed + replaced


def restore_reason(before: Order, after: Order) -> str:
    """Why points a refund had taken come back in this change."""
    failed = sum(1 for r in after.refunds if r.status == "failed")
    if failed > sum(1 for r in before.refunds if r.status == "failed"):
        return "refund failed; points restored"
    return "the platform's refunds replaced the imported refunded amount; points restored"


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
    if event.refunds_complete:
        updated.refunds_listed_at = _latest(order.refunds_listed_at, event.updated_at)
    known = {r.refund_id: i for i, r in enumerate(updated.refunds)}
    for refund in event.refunds:
        if refund.refund_id not in known:
            if refund.status == "requested":  # asked for by the CRM itself
                refund = replace(refund, origin=CRM)
            updated.refunds.append(refund)
            known[refund.refund_id] = len(updated.refunds) - 1
        else:
            # A refund asked for through the API moves from requested to completed or failed.
            index = known[refund.refund_id]
            stored = updated.refunds[index]
            if REFUND_RANK.get(refund.status, 1) > REFUND_RANK.get(stored.status, 1):
                updated.refunds[index] = replace(
                    refund,
                    origin=stored.origin or refund.origin,
                    as_of=stored.as_of or refund.as_of,
                    restock_status=refund.restock_status or stored.restock_status,
                )
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

    live = {r.refund_id for r in order.live_refunds}
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
                "status": _refund_status(r, live),
                "restock_status": r.restock_status,
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


def _refund_status(refund: Refund, live: set[str]) -> str:
    """A refund's status as shown: an import's amount the platform's refunds replaced is
    `superseded` (kept, as what the file said, but counted for nothing)."""
    if is_import_aggregate(refund) and refund.status != "failed" and refund.refund_id not in live:
        return "superseded"
    return refund.status


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
