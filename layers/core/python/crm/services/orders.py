"""Orders: recording an order event exactly once, and the order routes.

`record_order_event` is what every order webhook comes down to. It reads the delivery, the order
and the buyer's identities in one round trip (a duplicate stops there), decides everything in
the domain (the order's details and facts, the customer's stats and tier, the points), and
writes it all in one transaction conditioned on what it read, the delivery mark first. A lost
race reads again; a copy of the delivery that lost the race to write is answered `duplicate`;
a failure writes nothing, so the platform's retry is processed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from crm.adapters import workflows
from crm.clock import now_iso
from crm.config import Settings, get_settings
from crm.contention import retry_on_contention
from crm.domain import carrier_events
from crm.domain.customers import ACTIVE, Customer, ProfileInput, apply_profile, new_customer
from crm.domain.errors import Conflict, NotFound, Unavailable, ValidationFailed
from crm.domain.identity import (
    IdentityKeys,
    normalise_email,
    normalise_external_ids,
    normalise_phone,
)
from crm.domain.loyalty import Program, order_points, tier_for
from crm.domain.money import money
from crm.domain.order_events import Buyer, OrderEvent
from crm.domain.orders import (
    Order,
    apply_event,
    contribution,
    derive_status,
    differs,
    is_history_refund,
    new_order,
    refund_generation,
    restore_reason,
    stats_after,
)
from crm.observability import logger, metrics
from crm.services.profiles import new_customer_id
from crm.store.orders import (
    Contended,
    CustomerSide,
    DuplicateDelivery,
    OrderChange,
    OrderStore,
    get_order_store,
)

MAX_ATTEMPTS = 16


def program() -> Program:
    return Program(currency=get_settings().currency)


@dataclass(frozen=True)
class Recorded:
    outcome: str  # "processed", "duplicate", "unchanged"
    order_id: str
    status: str | None = None
    created: bool = False  # "processed" and the order did not exist before


def record_order_event(
    event: OrderEvent,
    delivery_id: str | None,
    store: OrderStore | None = None,
    *,
    start_workflows: bool = True,
    refund_limit: bool = False,
    history: bool = False,
) -> Recorded:
    """Record `event` once per `delivery_id` (None: an internal event, not deduplicated).

    `start_workflows`: start fulfilment when the order becomes paid, the refund workflow for a
    platform's refund, and answer or stop the fulfilment step waiting on the order (history
    imports say False: they never touch a live workflow). `refund_limit`: refuse (409) a
    refund that would take the refunded total above what was paid (refunds asked for through
    the API).
    `history`: the order comes from a history import; it earns points only if it was delivered
    in the last 12 months (decision 34, `loyalty.order_points`)."""
    store = store or get_order_store()
    try:
        return retry_on_contention(
            lambda: _record(event, delivery_id, store, start_workflows, refund_limit, history),
            lost=(Contended,),
            what="the order",
            on_retry=lambda: metrics.add_metric(name="OrderWriteRetries", unit="Count", value=1),
        )
    except DuplicateDelivery:
        metrics.add_metric(name="DuplicateDeliveries", unit="Count", value=1)
        return Recorded("duplicate", event.order_id)


def buyer_identity(buyer: Buyer | None, default_country: str) -> tuple[dict[str, Any], list[str]]:
    """The profile fields and identity keys of a buyer. A value that does not validate is left
    out (and counted), never a reason to lose the order."""
    if buyer is None:
        return {}, []
    fields: dict[str, Any] = {}
    checks: tuple[tuple[str, Any, Callable[[Any], Any]], ...] = (
        ("external_ids", buyer.external_ids or None, normalise_external_ids),
        ("email", buyer.email, normalise_email),
        ("phone", buyer.phone, lambda v: normalise_phone(v, default_country)),
    )
    for name, value, normalise in checks:
        if not value:
            continue
        try:
            fields[name] = normalise(value)
        except ValidationFailed:
            metrics.add_metric(name="OrderIdentitiesDropped", unit="Count", value=1)
    for name in ("first_name", "last_name"):
        value = getattr(buyer, name)
        if isinstance(value, str) and value.strip():
            fields[name] = value.strip()[:100]
    keys = IdentityKeys.of(fields.get("external_ids"), fields.get("email"), fields.get("phone"))
    return fields, keys.ordered()


def _record(
    event: OrderEvent,
    delivery_id: str | None,
    store: OrderStore,
    start_workflows: bool = True,
    refund_limit: bool = False,
    history: bool = False,
) -> Recorded:
    settings = get_settings()
    now = now_iso()
    fields, keys = buyer_identity(event.buyer, settings.default_country)
    stored, owners, seen = store.read_order_and_owners(event.order_id, keys, delivery_id)
    if seen:
        if start_workflows and stored is not None:
            resume_start(stored, settings)  # a start that failed after the write, retried
            if stored.waiting:  # an answer that failed after the write (503), retried
                answer_due(stored, strict=True)
        raise DuplicateDelivery()
    before = stored or new_order(event, now)
    after = apply_event(before, event)
    if refund_limit and after.refunded > after.total:
        raise Conflict(
            f"the refunds would exceed what was paid; {money_text(before.refundable, before)}"
            " can still be refunded",
            code="refund_exceeds_paid",
            extra={"refundable": money(before.refundable, before.currency or settings.currency)},
        )

    customer_id = before.customer_id or next((owners[k] for k in keys if k in owners), None)
    new_profile: Customer | None = None
    claim: list[str] = []
    if customer_id is None and keys:
        # A guest checkout with identities nobody owns yet: the profile is born with the order.
        new_profile = apply_profile(
            new_customer(new_customer_id(), now),
            ProfileInput(fields=fields, consent_source=f"order:{event.source}"),
            now,
            partial=False,
        )
        customer_id, claim = new_profile.customer_id, keys
    after.customer_id = customer_id

    change = OrderChange(delivery_id, after, now=now)
    add_customer_effects(
        before,
        change,
        store,
        side=CustomerSide(new_profile) if new_profile is not None else None,
        new_profile=new_profile is not None,
        history=history,
    )
    if new_profile is not None and change.customer is not None:
        change.claim = claim

    if stored is not None and not differs(stored, after) and change.points is None:
        if delivery_id:  # nothing new, but the delivery is recorded so a repeat costs one read
            store.commit(OrderChange(delivery_id, stored, now=now, save_order=False))
        return Recorded("unchanged", after.order_id, after.status)
    starts = _workflows_to_start(before, after, settings) if start_workflows else []
    store.commit(change)
    # After the write, so a workflow never runs ahead of the order it works on. A start that
    # fails answers 503: the platform's retry is a duplicate, which resumes the start.
    for machine, name, payload in starts:
        workflows.start(machine, name, payload)
    # History (an import: no start_workflows) never answers or stops a live workflow; the
    # carrier's events and the platform's webhooks do (docs/imports.md).
    waiting = start_workflows and before.waiting
    if waiting and after.cancelled_at and not before.cancelled_at:
        stop_waiting(before, "OrderCancelled", "the order was cancelled")
    elif waiting and after.fulfilled_at and not before.fulfilled_at:
        # Fulfilled on the platform while our workflow waited for the carrier: let it finish
        # (stock shipped, messages sent) as if the carrier had said delivered. A step that
        # starts waiting later sees `fulfilled_at` itself. Strict: if Step Functions cannot be
        # reached, 503, and the platform's retry (a duplicate, above) answers again.
        answer_due(after, strict=True)
    logger.info(
        "order event recorded",
        extra={"order_id": after.order_id, "kind": event.kind, "status": after.status},
    )
    return Recorded("processed", after.order_id, after.status, created=stored is None)


def add_customer_effects(
    before: Order,
    change: OrderChange,
    store: OrderStore,
    *,
    side: CustomerSide | None = None,
    new_profile: bool = False,
    history: bool = False,
) -> None:
    """What `change.order` (the order after an event) does to its customer: stats, tier and
    the order's points, added to `change`. `side`: the customer's side as the caller read it
    (a new profile, or a workflow step's own read), else read here when needed."""
    after, now = change.order, change.now
    customer_id = after.customer_id
    new_contribution = contribution(after)
    moves_customer = (new_contribution.counted, new_contribution.spent, new_contribution.month) != (
        before.counted,
        before.spent,
        before.spent_month,
    )
    may_move_points = _facts(before) != _facts(after)
    if not customer_id or not (moves_customer or may_move_points or new_profile):
        return
    if side is None or (
        not new_profile and (side.customer is None or side.customer.customer_id != customer_id)
    ):
        side = store.read_customer_side(customer_id, after.order_id)
    for _ in range(3):  # a merged profile's orders follow it to the one it was merged into
        merged_into = side.customer.merged_into if side.customer else None
        if not merged_into or new_profile:
            break
        customer_id = after.customer_id = merged_into
        side = store.read_customer_side(customer_id, after.order_id)
    customer = side.customer
    if customer is None or customer.status != ACTIVE:
        # Merged or erased since the identity was read: the order stays, unattributed to a
        # live profile; its stats and points follow the profile it names.
        customer = None
    _customer_effects(before, after, customer, side, change, now, history=history)


Start = tuple[str, str, dict[str, Any]]


def _workflows_to_start(before: Order, after: Order, settings: Settings) -> list[Start]:
    starts: list[Start] = []
    if after.paid_at and not after.cancelled_at and not before.paid_at and not after.fulfilled_at:
        name = workflows.execution_name(after.order_id)
        after.workflow = {"machine": "order_fulfilment", "execution": name, "state": "starting"}
        starts.append(
            (settings.fulfilment_machine, name, {"order_id": after.order_id, "attempt": 1})
        )
    known = {r.refund_id for r in before.refunds}
    for refund in after.refunds:
        if (
            refund.refund_id not in known
            and refund.status == "completed"
            and not is_history_refund(after, refund)  # made before an import knew the order
        ):
            # The platform already returned the money: stock and the customer's notice remain.
            starts.append(
                (
                    settings.refund_machine,
                    workflows.execution_name(after.order_id, refund.refund_id),
                    {
                        "order_id": after.order_id,
                        "refund_id": refund.refund_id,
                        "source": "platform",
                    },
                )
            )
    return starts


def resume_start(order: Order, settings: Settings) -> None:
    """The fulfilment start of a recorded paid order whose workflow never reported back."""
    if order.workflow.get("state") == "starting" and order.paid_at and not order.cancelled_at:
        workflows.start(
            settings.fulfilment_machine,
            order.workflow.get("execution") or workflows.execution_name(order.order_id),
            {"order_id": order.order_id, "attempt": 1},
        )


def stop_waiting(order: Order, error: str, cause: str) -> None:
    """Fail the workflow step waiting on this order (best effort: if it is no longer waiting,
    its next step sees the order's state itself)."""
    token = (order.waiting or {}).get("token")
    if not token:
        return
    try:
        workflows.fail(token, error, cause)
    except (workflows.TaskGone, Unavailable) as exc:
        logger.warning(
            "waiting step not stopped",
            extra={"order_id": order.order_id, "why": type(exc).__name__},
        )


def answer_due(order: Order, *, strict: bool = False) -> bool:
    """Answer the step waiting on this order if what is recorded (carrier events, the
    platform's fulfilment) now decides it; True if it was answered. The waiting step and the
    event that answers it are written one after the other on the same order item, so whichever
    is written second sees the other and answers (decision 39). A token answered twice (two
    events racing) is refused by Step Functions the second time, which is fine. `strict`:
    a failure to reach Step Functions raises `Unavailable` (the caller's retry answers again)
    instead of being logged."""
    waiting = order.waiting or {}
    token = waiting.get("token")
    if not token:
        return False
    outcome = carrier_events.awaited_outcome(
        order.fulfilment.get("tracking_events") or [],
        str(waiting.get("for")),
        int(order.workflow.get("attempt") or 1),
        order.fulfilled_at,
    )
    if outcome is None:
        return False
    try:
        if outcome.error:
            workflows.fail(token, outcome.error, outcome.cause)
        else:
            workflows.succeed(token, outcome.output or {})
    except workflows.TaskGone:
        return False
    except Unavailable as exc:
        if strict:
            raise
        logger.warning(
            "waiting step not answered",
            extra={"order_id": order.order_id, "why": type(exc).__name__},
        )
        return False
    return True


def change_order(
    order_id: str,
    change: Callable[[Order], Order | None],
    store: OrderStore | None = None,
    *,
    order: Order | None = None,
) -> Order:
    """Read, change, and write the order at the version read (again on a lost race). `change`
    returns the changed order, or None for "nothing to change". `order`: the order as the
    caller just read it, used for the first attempt instead of reading it again."""
    store = store or get_order_store()
    read = [order]

    def attempt() -> Order:
        current = read.pop() if read and read[0] is not None else store.get(order_id)
        if current is None:
            raise NotFound(f"order {order_id} does not exist")
        changed = change(copy.deepcopy(current))
        if changed is None:
            return current
        with_status(changed)
        store.commit(OrderChange(None, changed, now=now_iso()))
        return changed

    return retry_on_contention(attempt, lost=(Contended,), what="the order")


def with_status(order: Order) -> Order:
    """The order with the status its facts and progress give (its history extended)."""
    status = derive_status(order)
    if status != order.status:
        order.status = status
        order.status_history = [*order.status_history, {"status": status, "at": now_iso()}]
    return order


def money_text(minor: int, order: Order) -> str:
    currency = order.currency or get_settings().currency
    return f"{money(minor, currency)['amount']} {currency}"


def _facts(order: Order) -> tuple[Any, ...]:
    return (
        order.paid_at,
        order.cancelled_at,
        order.fulfilled_at,
        tuple((r.refund_id, r.status) for r in order.refunds),
        (order.refunded, order.refunded_goods),  # what counts (an import's amount replaced)
    )


def _customer_effects(
    before: Order,
    after: Order,
    customer: Customer | None,
    side: CustomerSide,
    change: OrderChange,
    now: str,
    *,
    history: bool = False,
) -> None:
    """The customer's stats and tier, and the order's points, after this change."""
    if customer is None:
        return
    rules = program()
    spend_before = customer.stats.get("spend_months") or {}
    tier = tier_for(spend_before, now, rules)
    new_contribution = contribution(after)
    stats = stats_after(customer.stats, before, new_contribution)
    after.counted, after.spent, after.spent_month = (
        new_contribution.counted,
        new_contribution.spent,
        new_contribution.month,
    )
    tier_after = tier_for(stats.get("spend_months") or {}, now, rules)
    stats["tier"] = tier_after.name
    if tier_after.name != (customer.stats.get("tier") or tier.name):
        change.tier_event = {
            "type": "tier_changed",
            "from": customer.stats.get("tier") or tier.name,
            "to": tier_after.name,
            "order_id": after.order_id,
        }
    customer.stats = stats
    customer.updated_at = now
    change.customer = customer

    points = order_points(
        order_id=after.order_id,
        paid=after.paid_at is not None,
        cancelled=after.cancelled_at is not None,
        fulfilled_at=after.fulfilled_at,
        goods=after.subtotal,
        refunded_goods=after.refunded_goods,
        refund_ids=[r.refund_id for r in after.refunds],
        currency=after.currency or rules.currency,
        earned=before.points_earned,
        reversed_so_far=before.points_reversed,
        status=before.points_status,
        lot=side.lot,
        tier=tier,
        program=rules,
        now=now,
        history=history,
        generation=refund_generation(after),
        restore_reason=restore_reason(before, after),
    )
    after.points_earned, after.points_reversed = points.earned, points.reversed
    after.points_status = points.status
    if points.changed:
        change.points = points


# -- views and routes -------------------------------------------------------------------------


def find_order(order_id: str, store: OrderStore | None = None) -> Order:
    store = store or get_order_store()
    if order_id.startswith("ord_"):
        order = store.get(order_id)
        if order is not None:
            return order
    ids = store.ids_for_platform_id(order_id)
    if not ids:
        raise NotFound(f"order {order_id} does not exist")
    if len(ids) > 1:
        raise Conflict(
            f"several platforms have an order {order_id}; use the project's order id",
            code="ambiguous_order_id",
            extra={"order_ids": sorted(ids)},
        )
    order = store.get(ids[0])
    if order is None:
        raise NotFound(f"order {order_id} does not exist")
    return order


def order_details(order_id: str) -> dict[str, Any]:
    """`GET /orders/{id}`: the order's view, by our id or the platform's."""
    from crm.domain.orders import order_view

    return order_view(find_order(order_id), get_settings().currency)
