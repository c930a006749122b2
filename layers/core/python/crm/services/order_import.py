"""Order history imports: each order of a file recorded as an order event, without workflows.

`crm.domain.order_imports` reads the file's rows into orders (an `OrderEvent`, or why not);
here each valid order goes through `record_order_event` like a webhook's, with
`start_workflows=False` (history is not fulfilled again, refunds not paid out again) and
`history=True` (points only for orders delivered in the last 12 months: decision 34). The order
id is the webhooks' (`ord_shopify_<Id>`), so an order imported and also received by webhook is
one order, whatever came first, and an order imported twice changes nothing the second time.
The file's refunded amount is stamped with the time of the import (`as_recorded`): the
platform's own refunds replace it when they come, never count beside it (decision 41).

One order that fails (a `CrmError`: invalid, or the store unavailable after its retries) fails
alone, with its reason; the others of the batch go on.
"""

from __future__ import annotations

from collections.abc import Iterator

from crm.clock import now_iso
from crm.config import get_settings
from crm.domain.errors import CrmError, ValidationFailed
from crm.domain.import_files import Row, failure_reason
from crm.domain.order_imports import ImportedOrder, as_recorded, imported_orders
from crm.observability import logger, metrics
from crm.services.import_kinds import CREATED, FAILED, UNCHANGED, UPDATED, Outcome, Unit
from crm.services.orders import buyer_identity, record_order_event
from crm.store.orders import OrderStore, batching_order_store

# Orders per `write` call of the import loop: read in two BatchGetItems, written in as few
# transactions as their items allow (`BatchingOrderStore`).
BATCH = 100


def import_orders(
    orders: list[ImportedOrder], store: OrderStore | None = None
) -> list[tuple[ImportedOrder, str, str | None]]:
    """(order, outcome, reason) for each order, in order: "created", "updated", "unchanged", or
    "failed" with the reason (the order's own problem, or why recording it was refused).
    `store`: the order store (the configured one when None)."""
    results: list[tuple[ImportedOrder, str, str | None]] = []
    imported_at = now_iso()
    for order in orders:
        if order.event is None:
            results.append((order, FAILED, order.problem or "invalid order"))
            continue
        try:
            recorded = record_order_event(
                # Its refunded amount covers the platform's refunds made before now.
                as_recorded(order.event, imported_at),
                delivery_id=None,
                store=store,
                start_workflows=False,
                history=True,
            )
        except CrmError as exc:
            reason = failure_reason(exc) if isinstance(exc, ValidationFailed) else exc.message
            logger.warning(
                "imported order refused",
                extra={"order_id": order.event.order_id, "code": exc.code},
            )
            results.append((order, FAILED, reason))
            continue
        if recorded.outcome == "processed":
            results.append((order, CREATED if recorded.created else UPDATED, None))
        else:  # "unchanged" ("duplicate" needs a delivery id, and there is none)
            results.append((order, UNCHANGED, None))
    return results


# -- the import loop's interface (crm/services/imports.py, `Kind`) ------------------------------


def units(rows: Iterator[Row]) -> Iterator[Unit]:
    """The file's orders as the import loop's units; the value of a valid one is its event."""
    for order in imported_orders(rows, get_settings().currency):
        yield Unit(order.rows, order.event, order.problem)


def write(batch: list[Unit]) -> list[Outcome]:
    """A batch of orders: read together, recorded one by one in memory, written together. An
    order whose transaction lost a race is recorded again on its own (`redo`), from its own
    event; an order in a live workflow is recorded alone, like a webhook's."""
    orders = [ImportedOrder(unit.rows, unit.value, unit.problem) for unit in batch]
    results: list[tuple[ImportedOrder, str, str | None]] = []
    redone: dict[int, tuple[str, str | None]] = {}

    def redo(tags: list[int]) -> None:
        metrics.add_metric(name="ImportOrderBatchRedone", unit="Count", value=1)
        for index in tags:
            ((_, result, reason),) = import_orders([orders[index]])
            redone[index] = (result, reason)

    store = batching_order_store(redo)
    country = get_settings().default_country
    store.prefetch(
        [
            (o.event.order_id, buyer_identity(o.event.buyer, country)[1])
            for o in orders
            if o.event is not None
        ]
    )
    for index, order in enumerate(orders):
        store.tag = index
        if order.event is not None and store.is_live(order.event.order_id):
            store.alone()
            results.extend(import_orders([order]))
            store.forget_all()
        else:
            results.extend(import_orders([order], store))
    store.flush()
    outcomes = []
    for index, (_, result, reason) in enumerate(results):
        if index in redone:
            redone_result, reason = redone[index]
            # Created by the batch (then redone: it existed by then only if someone else wrote
            # it, which makes it an update) or failed on its own.
            result = redone_result if redone_result == FAILED or result != CREATED else result
        outcomes.append(Outcome(result, reason))
    return outcomes
