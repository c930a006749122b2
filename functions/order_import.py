"""Order history imports: each order of a file recorded as an order event, without workflows.

`crm.domain.order_imports` reads the file's rows into orders (an `OrderEvent`, or why not);
here each valid order goes through `record_order_event` like a webhook's, with
`start_workflows=False` (history is not fulfilled again, refunds not paid out again) and
`history=True` (points only for orders delivered in the last 12 months: decision 34). The order
id is the webhooks' (`ord_shopify_<Id>`), so an order imported and also received by webhook is
one order, whatever came first, and an order imported twice changes nothing the second time.

One order that fails (a `CrmError`: invalid, or the store unavailable after its retries) fails
alone, with its reason; the others of the batch go on.
"""

from __future__ import annotations

from collections.abc import Iterator

from crm.config import get_settings
from crm.domain.errors import CrmError, ValidationFailed
from crm.domain.import_files import Row, failure_reason
from crm.domain.order_imports import ImportedOrder, imported_orders
from crm.observability import logger
from crm.store.orders import OrderStore
from functions.import_kinds import CREATED, FAILED, UNCHANGED, UPDATED, Outcome, Unit
from functions.orders import record_order_event

# Orders per `write` call of the import loop. Each order is its own transaction (the order,
# its customer, its points); this only sets how often the loop checkpoints between orders.
BATCH = 25


def import_orders(
    orders: list[ImportedOrder], store: OrderStore | None = None
) -> list[tuple[ImportedOrder, str, str | None]]:
    """(order, outcome, reason) for each order, in order: "created", "updated", "unchanged", or
    "failed" with the reason (the order's own problem, or why recording it was refused).
    `store`: the order store (the configured one when None)."""
    results: list[tuple[ImportedOrder, str, str | None]] = []
    for order in orders:
        if order.event is None:
            results.append((order, FAILED, order.problem or "invalid order"))
            continue
        try:
            recorded = record_order_event(
                order.event, delivery_id=None, store=store, start_workflows=False, history=True
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


# -- the import loop's interface (functions/imports.py, `Kind`) ---------------------------------


def units(rows: Iterator[Row]) -> Iterator[Unit]:
    """The file's orders as the import loop's units; the value of a valid one is its event."""
    for order in imported_orders(rows, get_settings().currency):
        yield Unit(order.rows, order.event, order.problem)


def write(batch: list[Unit]) -> list[Outcome]:
    orders = [ImportedOrder(unit.rows, unit.value, unit.problem) for unit in batch]
    return [Outcome(result, reason) for _, result, reason in import_orders(orders)]
