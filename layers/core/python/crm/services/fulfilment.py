"""The steps of the `order_fulfilment` workflow (statemachines/order_fulfilment.asl.json).

Each step reads the order, does one thing idempotently (a step may run twice), and records
where the order is. A step that cannot go on raises an error whose class name the workflow
catches: `OutOfStock`, `AddressNotRoutable`, `DeliveryFailed` hand the order to the exception
workflow; `OrderCancelled` stops it; `Unavailable` is retried with backoff.

The steps on the way of every order read what they need once and write once (decision 61):
one BatchGetItem (the order, its customer, the dedup claim of the message the step sends,
the stock or the points it moves), one TransactWriteItems (the order with the stock it
reserves or ships, the customer's stats and points, the message's claim), then the message
is sent and recorded. A write that lost a race reads again; past a few, the step falls back
to the older path of separate reads and writes, which tells every kind of race apart.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from crm.adapters import workflows
from crm.clock import now_iso
from crm.config import get_settings
from crm.contention import pause
from crm.domain import carrier_events
from crm.domain.customers import MERGED, Customer
from crm.domain.errors import Unavailable, ValidationFailed
from crm.domain.money import money
from crm.domain.orders import ALLOCATED, ON_HOLD, SHIPPED, Order, apply_event
from crm.observability import logger
from crm.services import inventory, notifications
from crm.services.notifications import Notice
from crm.services.orders import (
    add_customer_effects,
    answer_due,
    change_order,
    record_order_event,
    with_status,
)
from crm.services.workflow_steps import (
    DeliveryFailed,
    InjectedFault,
    OrderCancelled,
    check_fault,
    internal_event,
    order_of,
)
from crm.store import inventory as stock_store
from crm.store import notifications as notification_store
from crm.store.orders import (
    AlsoWrite,
    Contended,
    OrderChange,
    OrderGone,
    StepRead,
    get_order_store,
)

# The error a step failed with -> the case's reason.
REASONS = {
    "OutOfStock": "out_of_stock",
    "AddressNotRoutable": "address_not_routable",
    "DeliveryFailed": "delivery_failed",
    "States.Timeout": "logistics_timeout",
}
CONFIRMED, SHIPPED_NOTICE, DELIVERED_NOTICE = "order_confirmed", "order_shipped", "order_delivered"
# Lost races before a step falls back to separate reads and writes (the stock kept being
# taken, a reservation held from an earlier attempt, the order changed under the step).
FAST_ATTEMPTS = 3
# Stock lines (SKU x warehouse) one write may move with the order: each line is two items (the
# reservation and the stock level), and a transaction holds at most 100 with the order, its
# header, the message's claim and the customer's points. A larger order takes the other path.
FAST_LINES = 40
# Stock levels (SKU x configured warehouse) one read may ask for with the customer: a
# BatchGetItem answers at most 100 keys.
FAST_LEVELS = 95


class _TooManyLines(Exception):
    """The step's one read or write would pass DynamoDB's 100 keys or items: the separate
    reads and writes it is."""


def _fits(lines: list[Any], limit: int = FAST_LINES) -> None:
    if len(lines) > limit:
        raise _TooManyLines()


def _live(order: Order) -> Order:
    if order.cancelled_at:
        raise OrderCancelled(f"order {order.order_id} was cancelled")
    return order


def _order_id(event: dict[str, Any]) -> str:
    order_id = event.get("order_id")
    if not isinstance(order_id, str):
        raise ValidationFailed("the step needs an order_id")
    return order_id


def _paid(read: StepRead, order_id: str) -> Order:
    order = read.order
    if order is None or not order.paid_at:
        # Started before the webhook's write landed: wait for it (the step is retried).
        raise Unavailable(f"order {order_id} is not recorded as paid yet")
    return order


def _notice_key(kind: str, order_id: str) -> str:
    return f"{kind}:{order_id}"


def _recipient(customer: Customer | None, order: Order) -> Customer | None:
    """Who the order's message goes to: the customer read with the order, or, when that
    profile was merged away (or not read), the one it now lives in."""
    if not order.customer_id:
        return None
    if (
        customer is not None
        and customer.customer_id == order.customer_id
        and (customer.status != MERGED or not customer.merged_into)
    ):
        return customer
    return notifications.recipient(order.customer_id)


def _notice(
    read: StepRead, order: Order, kind: str, customer: Customer | None = None
) -> Notice | None:
    """The step's message, rendered for its customer, if its claim is free (a message sent,
    or being sent, by an earlier run of the step is not sent again)."""
    key = _notice_key(kind, order.order_id)
    if not notification_store.claim_is_free(read.claims.get(key), now_iso()):
        return None
    recipient = _recipient(customer or read.side.customer, order)
    if recipient is None:
        return None
    return notifications.prepare(recipient, kind, message_context(order), key)


def _claim(notice: Notice | None) -> list[AlsoWrite]:
    if notice is None:
        return []
    return [
        lambda tx: notification_store.claim_in(
            tx,
            notice.dedup_key,
            notice.at,
            notification_id=notice.notification_id,
            kind=notice.kind,
        )
    ]


def _send(notice: Notice | None, *, confirming: str | None = None) -> dict[str, Any]:
    """Send a notice claimed in the step's write. `confirming`: the order whose confirmation
    this is; its fault-injection point is still `fulfilment.confirm` (the confirmation was a
    step of its own), and a fault there gives the claim back, as a failed send does."""
    if confirming is not None:
        try:
            check_fault("fulfilment", "confirm", confirming)
        except InjectedFault:
            if notice is not None:
                notifications.give_back(notice)
            raise
    if notice is None:
        return {"notification": None}
    return {"notification": notifications.deliver(notice).get("status")}


def _write(change: OrderChange, also: list[AlsoWrite]) -> bool:
    """The step's one write; False when it lost a race (read again)."""
    try:
        get_order_store().commit(with_change_status(change), also=also)
    except Contended:
        return False
    return True


def with_change_status(change: OrderChange) -> OrderChange:
    with_status(change.order)
    return change


def _fast(attempt_once: Callable[[int], dict[str, Any] | None]) -> dict[str, Any] | None:
    """Run a step's one-read-one-write path until its write lands; None after FAST_ATTEMPTS
    lost races, or for an order too large for one write (the caller falls back to the path of
    separate reads and writes)."""
    try:
        for attempt in range(FAST_ATTEMPTS):
            done = attempt_once(attempt)
            if done is not None:
                return done
            pause(attempt)
    except _TooManyLines:
        pass
    return None


# -- Allocate: reserve the stock, confirm the order ----------------------------------------------


def allocate(event: dict[str, Any]) -> dict[str, Any]:
    """Choose the warehouse(s), reserve the stock and record it on the order in one write,
    then send the confirmation (`order_confirmed`; it was a step of its own, `confirm`)."""
    order_id = _order_id(event)
    key = _notice_key(CONFIRMED, order_id)
    store = get_order_store()

    def once(_: int) -> dict[str, Any] | None:
        read = store.read_for_step(order_id, claims=[key])
        order = _live(_paid(read, order_id))
        held = order.fulfilment.get("parts")
        if held:  # reserved already (an earlier run, or an earlier attempt of the order)
            allocation = {"split": bool(order.fulfilment.get("split")), "parts": held}
            notice = _notice(read, order, CONFIRMED)
            if not _write(
                OrderChange(None, _allocated(order, allocation, event), now=now_iso()),
                _claim(notice),
            ):
                return None
            view = inventory.allocation_view(order_id, allocation, replay=True)
        else:
            lines = [(line.sku, line.quantity) for line in order.lines]
            stock = stock_store.level_keys([sku for sku, _ in lines], inventory.warehouse_ids())
            _fits(stock, FAST_LEVELS)
            more = store.read_for_step(None, customer_id=order.customer_id, stock=stock)
            plan = inventory.plan_allocation(lines, more.levels, order.shipping_address)
            _fits(stock_store.reserved_lines(plan))
            view = inventory.allocation_view(order_id, plan.view(), replay=False)
            recorded = _allocated(order, view, event)
            notice = _notice(read, recorded, CONFIRMED, more.side.customer)
            now = now_iso()
            reserve: AlsoWrite = lambda tx: stock_store.reserve_in(tx, order_id, plan, now)  # noqa: E731
            if not _write(OrderChange(None, recorded, now=now), [reserve, *_claim(notice)]):
                return None
            inventory.reserved(order_id, plan)
        return {**view, "customer_id": order.customer_id, **_send(notice, confirming=order_id)}

    done = _fast(once)
    if done is not None:
        return done
    return _allocate_in_steps(event)


def _allocated(order: Order, allocation: dict[str, Any], event: dict[str, Any]) -> Order:
    o = copy.deepcopy(order)
    o.progress = ALLOCATED if o.progress in (None, ON_HOLD, ALLOCATED) else o.progress
    o.fulfilment = {**o.fulfilment, **_fulfilment_of(allocation)}
    # The attempt is the order's: an exception's retry numbers it before starting the
    # new execution, whose input the state machine does not pass to this step.
    attempt = event.get("attempt") or o.workflow.get("attempt") or 1
    o.workflow = {**o.workflow, "state": "allocated", "attempt": int(attempt)}
    return o


def _allocate_in_steps(event: dict[str, Any]) -> dict[str, Any]:
    """The path of separate reads and writes: reserve (telling a reservation already held
    from a stock race, `inventory.allocate_and_reserve`), record, then confirm."""
    order = _live(order_of(event))
    lines = [(line.sku, line.quantity) for line in order.lines]
    allocation = inventory.allocate_and_reserve(order.order_id, lines, order.shipping_address)
    order = change_order(order.order_id, lambda o: _allocated(o, allocation, event))
    check_fault("fulfilment", "confirm", order.order_id)
    sent = _notify(order, CONFIRMED, _notice_key(CONFIRMED, order.order_id))
    return {**allocation, "customer_id": order.customer_id, **sent}


def _fulfilment_of(allocation: dict[str, Any]) -> dict[str, Any]:
    parts = allocation.get("parts") or []
    return {
        "warehouses": [p.get("warehouse_id") for p in parts],
        "parts": parts,
        "split": bool(allocation.get("split")),
    }


def confirm(event: dict[str, Any]) -> dict[str, Any]:
    """The confirmation as a step of its own: executions started before Allocate confirmed
    the order themselves still call it."""
    order = _live(order_of(event))
    return _notify(order, CONFIRMED, _notice_key(CONFIRMED, order.order_id))


# -- waiting for the carrier ---------------------------------------------------------------------


def await_logistics(event: dict[str, Any]) -> dict[str, Any]:
    """Wait for the carrier: keep the task token on the order, unless what is recorded
    already decides the wait (events that came early, or the platform's fulfilment), in which
    case answer it now. `POST /logistics/events` answers a token kept here (decision 39)."""
    token, wanted = event.get("token"), event.get("for")
    if not isinstance(token, str) or wanted not in ("shipped", "delivered"):
        raise ValidationFailed("await_logistics needs a token and for=shipped|delivered")
    order_id = _order_id(event)
    # Written before deciding, in one UpdateItem that answers the order as written: an event
    # recorded after this write sees the token and answers it; one recorded before is seen here.
    try:
        order = get_order_store().wait_on(
            order_id, {"for": wanted, "token": token, "since": now_iso()}
        )
    except OrderGone:
        _live(order_of(event, must_be_paid=False))  # cancelled: OrderCancelled; missing: retried
        raise Unavailable(f"order {order_id} could not be marked waiting; again") from None
    answer_due(order, strict=True)
    return {}


# -- RecordShipment ------------------------------------------------------------------------------


def shipped(event: dict[str, Any]) -> dict[str, Any]:
    """The parcel left: the reserved stock leaves on hand, the order records the shipment,
    in one write; then the shipping notice."""
    order_id = _order_id(event)
    key = _notice_key(SHIPPED_NOTICE, order_id)
    logistics = event.get("logistics") or {}
    store = get_order_store()

    def once(_: int) -> dict[str, Any] | None:
        read = store.read_for_step(order_id, customer_id=_customer_id(event), claims=[key])
        order = _live(_paid(read, order_id))
        recorded = _shipped(order, logistics)
        notice = _notice(read, recorded, SHIPPED_NOTICE)
        also = _claim(notice)
        if order.progress != SHIPPED:
            lines = stock_store.allocated_lines({"parts": order.fulfilment.get("parts") or []})
            _fits(lines)
            now = now_iso()
            also.insert(
                0,
                lambda tx: stock_store.move_in(
                    tx, order_id, lines, stock_store.SHIPPED, now, header=True
                ),
            )
        if not _write(OrderChange(None, recorded, now=now_iso()), also):
            return None
        return _send(notice)

    done = _fast(once)
    if done is not None:
        return done
    # Separate writes: ships whatever the order still holds, however it was reserved.
    order = _live(order_of(event))
    inventory.ship_order(order.order_id)
    order = change_order(order.order_id, lambda o: _shipped(o, logistics))
    return _notify(order, SHIPPED_NOTICE, key)


def _customer_id(event: dict[str, Any]) -> str | None:
    """The customer Allocate found (the workflow passes it on), read with the order."""
    value = event.get("customer_id")
    return value if isinstance(value, str) and value else None


def _shipped(order: Order, logistics: dict[str, Any]) -> Order:
    o = copy.deepcopy(order)
    # From the order as read now: a report recorded since the step began counts.
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
    """Delivered: the order is fulfilled (the customer's stats, tier and points move: pending
    points become active) and records the delivery, in one write with the delivery notice's
    claim; stock still reserved (a delivery with no shipment before) ships in it too."""
    order_id = _order_id(event)
    key = _notice_key(DELIVERED_NOTICE, order_id)
    logistics = event.get("logistics") or {}
    store = get_order_store()

    def once(_: int) -> dict[str, Any] | None:
        read = store.read_for_step(
            order_id, customer_id=_customer_id(event), claims=[key], lot=True
        )
        order = _paid(read, order_id)
        at = _delivered_at(order, logistics)
        fulfilled = internal_event(order, "fulfilled", at, fulfilled_at=at)
        change = OrderChange(None, apply_event(order, fulfilled), now=now_iso())
        side = read.side if read.side.customer is not None else None
        add_customer_effects(order, change, store, side=side)
        _record_delivery(change.order, at)
        notice = _notice(read, change.order, DELIVERED_NOTICE)
        also = _claim(notice)
        if order.progress != SHIPPED and not order.fulfilment.get("shipped_at"):
            lines = stock_store.allocated_lines({"parts": order.fulfilment.get("parts") or []})
            _fits(lines)
            now = change.now
            also.insert(
                0,
                lambda tx: stock_store.move_in(
                    tx, order_id, lines, stock_store.SHIPPED, now, header=True
                ),
            )
        if not _write(change, also):
            return None
        return _send(notice)

    done = _fast(once)
    if done is not None:
        return done
    return _delivered_in_steps(event)


def _delivered_at(order: Order, logistics: dict[str, Any]) -> str:
    decided = carrier_events.awaited_outcome(
        order.fulfilment.get("tracking_events") or [],
        "delivered",
        int(order.workflow.get("attempt") or 1),
        order.fulfilled_at,
    )
    return str(
        ((decided.output or {}).get("at") if decided else None)
        or logistics.get("delivered_at")
        or logistics.get("at")
        or now_iso()
    )


def _record_delivery(o: Order, at: str) -> Order:
    o.waiting = None
    o.fulfilment = {**o.fulfilment, "delivered_at": at}
    o.workflow = {**o.workflow, "state": "delivered"}
    return o


def _delivered_in_steps(event: dict[str, Any]) -> dict[str, Any]:
    order = order_of(event)
    at = _delivered_at(order, event.get("logistics") or {})
    if order.progress != SHIPPED and not order.fulfilment.get("shipped_at"):
        inventory.ship_order(order.order_id)  # delivered without a shipped callback first
    record_order_event(internal_event(order, "fulfilled", at, fulfilled_at=at), None)
    order = change_order(order.order_id, lambda o: _record_delivery(o, at))
    return _notify(order, DELIVERED_NOTICE, _notice_key(DELIVERED_NOTICE, order.order_id))


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
