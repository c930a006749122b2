"""Orders, webhook deliveries, and the one transaction that records an order event.

An order event's effects (the delivery marked done, the order, the customer's stats, new
profile and identities for a guest, the ledger's entries, lot and balance) are written in one
`TransactWriteItems`. Every item carries the condition that makes it safe to retry: the order
and the customer at the version read, identities free or ours, entries new, the lot as read,
the balance never below zero. A failed condition means "someone else moved first": read again.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from pynamodb.connection import Connection
from pynamodb.exceptions import (
    DoesNotExist,
    PynamoDBException,
    TransactWriteError,
    UpdateError,
)
from pynamodb.transactions import TransactWrite

from crm.config import get_settings
from crm.domain.customers import Customer
from crm.domain.errors import Unavailable
from crm.domain.loyalty import Lot, OrderPoints
from crm.domain.orders import (
    Order,
    lines_from_data,
    lines_to_data,
    refunds_from_data,
    refunds_to_data,
)
from crm.store.customers import to_customer, to_item
from crm.store.ledger import account_update, entry_item, lot_item, to_lot
from crm.store.models import (
    CustomerModel,
    DeliveryModel,
    IdentityModel,
    LedgerModel,
    OrderModel,
    bind_models,
)

DELIVERY_TTL = 7 * 24 * 3600  # at least the 24 h the contract asks, with room for late retries


class Contended(Exception):
    """An item changed since it was read (or another writer holds it): read again, redo."""


class DuplicateDelivery(Exception):
    """Another request recorded this delivery first: its effects are already written."""


_ORDER_SCALARS = (
    "source",
    "platform_order_id",
    "received_at",
    "customer_id",
    "name",
    "currency",
    "subtotal",
    "shipping",
    "total",
    "created_at",
    "updated_at",
    "paid_at",
    "cancelled_at",
    "cancel_reason",
    "fulfilled_at",
    "progress",
    "status",
    "points_earned",
    "points_reversed",
    "points_status",
    "counted",
    "spent",
    "spent_month",
)
_INTS = {"subtotal", "shipping", "total", "points_earned", "points_reversed", "spent"}


def to_order(item: OrderModel) -> Order:
    values = {name: getattr(item, name) for name in _ORDER_SCALARS}
    for name in _INTS:
        values[name] = int(values[name] or 0)
    return Order(
        order_id=item.order_id,
        lines=lines_from_data(item.lines or []),
        refunds=refunds_from_data(item.refunds or []),
        shipping_address=item.shipping_address,
        status_history=list(item.status_history or []),
        fulfilment=dict(item.fulfilment or {}),
        workflow=dict(item.workflow or {}),
        waiting=item.waiting,
        version=item.version,
        **values,
    )


def to_order_item(order: Order) -> OrderModel:
    item = OrderModel(order.order_id)
    for name in _ORDER_SCALARS:
        setattr(item, name, getattr(order, name))
    item.lines = lines_to_data(order.lines)
    item.refunds = refunds_to_data(order.refunds)
    item.shipping_address = order.shipping_address
    item.status_history = order.status_history
    item.fulfilment = order.fulfilment or None
    item.workflow = order.workflow or None
    item.waiting = order.waiting
    if order.version is not None:
        item.version = order.version
    return item


@dataclass
class CustomerSide:
    """What an order change needs to know of its customer, read in one round trip."""

    customer: Customer | None
    balance: int = 0
    pending: int = 0
    lot: Lot | None = None


@dataclass
class OrderChange:
    """Everything one order event writes, for `OrderStore.commit`."""

    delivery_id: str | None
    order: Order
    customer: Customer | None = None  # saved at its version (created when version is None)
    claim: list[str] = field(default_factory=list)  # identity keys a new customer claims
    points: OrderPoints | None = None
    tier_event: dict[str, Any] | None = None
    now: str = ""
    save_order: bool = True  # False: only the delivery is recorded (an event with no news)


class OrderStore:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def anonymise(self, order: Order) -> int:
        """Remove what locates the person from the order (erasure); 1 if it changed. The
        country and province stay, for the books and the reports."""
        for _ in range(10):
            address = order.shipping_address or {}
            kept = {k: address[k] for k in ("country_code", "province") if address.get(k)}
            if address == kept:
                return 0
            item = OrderModel(order.order_id)
            item.version = order.version  # PynamoDB conditions the update on it, and bumps it
            try:
                item.update(actions=[OrderModel.shipping_address.set(kept)])
                return 1
            except UpdateError as exc:
                if exc.cause_response_code != "ConditionalCheckFailedException":
                    raise Unavailable("the order could not be anonymised") from exc
            fresh = self.get(order.order_id)
            if fresh is None:
                return 0
            order = fresh
        raise Unavailable("the order is being changed by many requests at once; retry")

    def reassign(self, order: Order, from_id: str, to_id: str) -> bool:
        """Point an order at another customer (a merge); False if it no longer names `from_id`."""
        item = OrderModel(order.order_id)
        item.version = order.version
        try:
            item.update(
                actions=[OrderModel.customer_id.set(to_id)],
                condition=OrderModel.customer_id == from_id,
            )
        except UpdateError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                return False
            raise Unavailable("the order could not be moved") from exc
        return True

    # -- reads --------------------------------------------------------------------------------

    def get(self, order_id: str) -> Order | None:
        try:
            return to_order(OrderModel.get(order_id, consistent_read=True))
        except DoesNotExist:
            return None
        except PynamoDBException as exc:
            raise Unavailable("the order could not be read") from exc

    def ids_for_platform_id(self, platform_order_id: str) -> list[str]:
        try:
            return [
                item.order_id
                for item in OrderModel.by_platform_id.query(platform_order_id, limit=10)
            ]
        except PynamoDBException as exc:
            raise Unavailable("the orders could not be read") from exc

    def for_customer(self, customer_id: str, limit: int | None = None) -> Iterator[Order]:
        """The customer's orders, newest first."""
        try:
            for item in OrderModel.by_customer.query(
                customer_id, scan_index_forward=False, limit=limit
            ):
                yield to_order(item)
        except PynamoDBException as exc:
            raise Unavailable("the orders could not be read") from exc

    def read_order_and_owners(
        self, order_id: str, identity_keys: Iterable[str], delivery_id: str | None = None
    ) -> tuple[Order | None, dict[str, str], bool]:
        """The order, the owners of the buyer's identities, and whether the delivery was
        already recorded: one BatchGetItem."""
        settings = get_settings()
        keys = list(dict.fromkeys(identity_keys))
        request: dict[str, Any] = {
            settings.orders_table: {
                "Keys": [{"order_id": {"S": order_id}}],
                "ConsistentRead": True,
            }
        }
        if delivery_id:
            request[settings.deliveries_table] = {
                "Keys": [{"delivery_id": {"S": delivery_id}}],
                "ConsistentRead": True,
            }
        if keys:
            request[settings.identities_table] = {
                "Keys": [{"identity": {"S": k}} for k in keys],
                "ConsistentRead": True,
            }
        found = self._batch_get(request)
        orders = [to_order(OrderModel.from_raw_data(i)) for i in found[settings.orders_table]]
        owners = {
            i["identity"]["S"]: i["customer_id"]["S"]
            for i in found.get(settings.identities_table, [])
        }
        seen = bool(found.get(settings.deliveries_table))
        return (orders[0] if orders else None), owners, seen

    def read_customer_side(self, customer_id: str, lot_id: str) -> CustomerSide:
        """The customer, their balance and the order's lot: one BatchGetItem."""
        settings = get_settings()
        found = self._batch_get(
            {
                settings.customers_table: {
                    "Keys": [{"customer_id": {"S": customer_id}}],
                    "ConsistentRead": True,
                },
                settings.ledger_table: {
                    "Keys": [
                        {"customer_id": {"S": customer_id}, "sk": {"S": "bal"}},
                        {"customer_id": {"S": customer_id}, "sk": {"S": f"bal#lot#{lot_id}"}},
                    ],
                    "ConsistentRead": True,
                },
            }
        )
        customers = found[settings.customers_table]
        side = CustomerSide(
            to_customer(CustomerModel.from_raw_data(customers[0])) if customers else None
        )
        for raw in found[settings.ledger_table]:
            item = LedgerModel.from_raw_data(raw)
            if item.sk == "bal":
                side.balance, side.pending = int(item.balance or 0), int(item.pending or 0)
            else:
                side.lot = to_lot(item)
        return side

    def _batch_get(self, request: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {table: [] for table in request}
        client = self._connection.client
        for attempt in range(8):
            try:
                answer = client.batch_get_item(RequestItems=request)
            except Exception as exc:
                raise Unavailable("the order store could not be read") from exc
            for table, items in answer.get("Responses", {}).items():
                found[table].extend(items)
            request = answer.get("UnprocessedKeys") or {}
            if not request:
                return found
            time.sleep(0.01 * 2**attempt)
        raise Unavailable("the order store is busy; try again")

    # -- the write ----------------------------------------------------------------------------

    def commit(self, change: OrderChange) -> None:
        """Write the change in one transaction. Raises `Contended` when a condition failed."""
        try:
            with TransactWrite(connection=self._connection) as tx:
                if change.delivery_id:
                    # First, so its cancellation reason is the first: a duplicate that lost
                    # the race to record the same delivery.
                    tx.save(
                        DeliveryModel(
                            change.delivery_id,
                            order_id=change.order.order_id,
                            received_at=change.now,
                            expires_at=datetime.now(UTC) + timedelta(seconds=DELIVERY_TTL),
                        ),
                        condition=DeliveryModel.delivery_id.does_not_exist(),
                    )
                if change.save_order:
                    tx.save(to_order_item(change.order))
                if change.customer is not None:
                    tx.save(to_item(change.customer))
                    for key in change.claim:
                        tx.save(
                            IdentityModel(
                                key, customer_id=change.customer.customer_id, created_at=change.now
                            ),
                            condition=IdentityModel.identity.does_not_exist()
                            | (IdentityModel.customer_id == change.customer.customer_id),
                        )
                if change.points is not None and change.order.customer_id:
                    write_points(tx, change.order.customer_id, change.points, change.now)
                if change.tier_event and change.order.customer_id:
                    tx.save(
                        LedgerModel(
                            change.order.customer_id,
                            f"evt#tier#{change.now}#{change.order.order_id}",
                            details=change.tier_event,
                            updated_at=change.now,
                        ),
                        condition=LedgerModel.sk.does_not_exist(),
                    )
        except TransactWriteError as error:
            reasons = [r.code if r else None for r in error.cancellation_reasons]
            if change.delivery_id and reasons and reasons[0] == "ConditionalCheckFailed":
                raise DuplicateDelivery() from error
            if reasons:
                raise Contended() from error
            raise Unavailable("the order store did not accept the write") from error
        except PynamoDBException as error:
            raise Unavailable("the order store did not accept the write") from error


def write_points(tx: TransactWrite, customer_id: str, points: OrderPoints, now: str) -> None:
    """An order's ledger writes: its entries, its lot (as read), the balance (never negative)."""
    for entry in points.entries:
        tx.save(entry_item(customer_id, entry), condition=LedgerModel.sk.does_not_exist())
    if points.lot is not None and points.lot != points.lot_before:
        item = lot_item(customer_id, points.lot)
        if points.lot_before is None:
            tx.save(item, condition=LedgerModel.sk.does_not_exist())
        else:
            tx.save(
                item,
                condition=(LedgerModel.remaining == points.lot_before.remaining)
                & (LedgerModel.status == points.lot_before.status),
            )
    if points.balance_delta or points.pending_delta:
        account_update(tx, customer_id, points.balance_delta, points.pending_delta, now)


@lru_cache(maxsize=1)
def get_order_store() -> OrderStore:
    settings = get_settings()
    bind_models(settings)
    return OrderStore(Connection(region=OrderModel.Meta.region))


def reset() -> None:
    get_order_store.cache_clear()
    for model in (OrderModel, DeliveryModel):
        model._connection = None
