"""Orders, webhook deliveries, and the one transaction that records an order event.

An order event's effects (the delivery marked done, the order, the customer's stats, new
profile and identities for a guest, the ledger's entries, lot and balance) are written in one
`TransactWriteItems`. Every item carries the condition that makes it safe to retry: the order
and the customer at the version read, identities free or ours, entries new, the lot as read,
the balance never below zero. A failed condition means "someone else moved first": read again.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
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

from crm import clock
from crm.config import get_settings
from crm.domain import cursors
from crm.domain.customers import Customer
from crm.domain.errors import Unavailable
from crm.domain.inventory import StockLevel
from crm.domain.loyalty import Lot, OrderPoints
from crm.domain.orders import (
    Order,
    lines_from_data,
    lines_to_data,
    refunds_from_data,
    refunds_to_data,
)
from crm.store import retry
from crm.store.customers import to_customer, to_item
from crm.store.inventory import level_from_raw
from crm.store.ledger import account_update, entry_item, lot_item, to_lot
from crm.store.models import (
    CustomerModel,
    DeliveryModel,
    IdentityModel,
    LedgerModel,
    OrderModel,
    bind_models,
)
from crm.store.notifications import claim_key
from crm.store.retry import RetryingConnection

DELIVERY_TTL = 7 * 24 * 3600  # at least the 24 h the contract asks, with room for late retries


class Contended(Exception):
    """An item changed since it was read (or another writer holds it): read again, redo."""


class OrderGone(Exception):
    """The order a step works on is missing or cancelled (a conditional write said so)."""


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
    "refunds_listed_at",
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
        workflow=_workflow_of(item),
        waiting=item.waiting,
        version=item.version,
        **values,
    )


def _workflow_of(item: OrderModel) -> dict[str, Any]:
    workflow = dict(item.workflow or {})
    if item.waiting and item.waiting.get("for"):
        # A waiting step writes only `waiting` (one UpdateItem, `OrderStore.wait_on`): while a
        # step waits, that is where the workflow is.
        workflow["state"] = f"awaiting_{item.waiting['for']}"
    return workflow


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


AlsoWrite = Callable[[TransactWrite], Any]  # adds items of other stores to an order's write


@dataclass
class StepRead:
    """What `OrderStore.read_for_step` found (absent items: None, empty)."""

    order: Order | None = None
    side: CustomerSide = field(default_factory=lambda: CustomerSide(None))
    claims: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # key -> raw claim
    levels: list[StockLevel] = field(default_factory=list)


def _without_tracking_numbers(fulfilment: dict[str, Any]) -> dict[str, Any]:
    kept = {k: v for k, v in (fulfilment or {}).items() if k != "tracking_number"}
    if "tracking_events" in kept:
        kept["tracking_events"] = [
            {k: v for k, v in event.items() if k != "tracking_number"}
            for event in kept["tracking_events"] or []
        ]
    return kept


class OrderStore:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def anonymise(self, order: Order) -> int:
        """Remove what locates the person from the order (erasure); 1 if it changed. The
        country and province stay, for the books and the reports; so do the carrier and what
        it reported, without the tracking numbers (a carrier's site shows the recipient)."""
        for _ in range(10):
            address = order.shipping_address or {}
            kept = {k: address[k] for k in ("country_code", "province") if address.get(k)}
            fulfilment = _without_tracking_numbers(order.fulfilment)
            if address == kept and fulfilment == order.fulfilment:
                return 0
            item = OrderModel(order.order_id)
            item.version = order.version  # PynamoDB conditions the update on it, and bumps it
            actions: list[Any] = [OrderModel.shipping_address.set(kept)]
            if fulfilment != order.fulfilment:
                actions.append(OrderModel.fulfilment.set(fulfilment))
            try:
                item.update(actions=actions)
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

    def page_for_customer(
        self, customer_id: str, limit: int, cursor: str | None = None
    ) -> tuple[list[Order], str | None]:
        """A page of the customer's orders, newest first, and the cursor of the next page (the
        full index key of the page's last order, opaque: `crm.domain.cursors`)."""
        start = None
        if cursor:
            created_at, order_id = cursors.decode(cursor, 2)
            start = {
                "customer_id": {"S": customer_id},
                "created_at": {"S": created_at},
                "order_id": {"S": order_id},
            }
        try:
            page = OrderModel.by_customer.query(
                customer_id, scan_index_forward=False, limit=limit, last_evaluated_key=start
            )
            orders = [to_order(item) for item in page]
        except PynamoDBException as exc:
            raise Unavailable("the orders could not be read") from exc
        more = len(orders) == limit and page.last_evaluated_key
        last = orders[-1] if orders else None
        next_cursor = (
            cursors.encode(last.created_at or "", last.order_id) if more and last else None
        )
        return orders, next_cursor

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

    def read_for_step(
        self,
        order_id: str | None,
        *,
        customer_id: str | None = None,
        claims: Iterable[str] = (),
        stock: Iterable[dict[str, Any]] = (),
        lot: bool = False,
    ) -> StepRead:
        """What a workflow step needs, in one BatchGetItem: the order, its customer, the dedup
        claims of the messages it sends, stock items (`crm.store.inventory.level_keys`), and
        with `lot` the customer's balance and the order's points lot."""
        settings = get_settings()
        request: dict[str, Any] = {}

        def ask(table: str, keys: list[dict[str, Any]]) -> None:
            if keys:
                entry = request.setdefault(table, {"Keys": [], "ConsistentRead": True})
                entry["Keys"] += keys

        if order_id:
            ask(settings.orders_table, [{"order_id": {"S": order_id}}])
        if customer_id:
            ask(settings.customers_table, [{"customer_id": {"S": customer_id}}])
            if lot and order_id:
                ask(
                    settings.ledger_table,
                    [
                        {"customer_id": {"S": customer_id}, "sk": {"S": "bal"}},
                        {"customer_id": {"S": customer_id}, "sk": {"S": f"bal#lot#{order_id}"}},
                    ],
                )
        claim_keys = {key: claim_key(key) for key in dict.fromkeys(claims)}
        ask(settings.notifications_table, list(claim_keys.values()))
        ask(settings.inventory_table, list(stock))
        found = self._batch_get(request) if request else {}
        read = StepRead()
        for raw in found.get(settings.orders_table, []):
            read.order = to_order(OrderModel.from_raw_data(raw))
        for raw in found.get(settings.customers_table, []):
            read.side.customer = to_customer(CustomerModel.from_raw_data(raw))
        for raw in found.get(settings.ledger_table, []):
            item = LedgerModel.from_raw_data(raw)
            if item.sk == "bal":
                read.side.balance, read.side.pending = (
                    int(item.balance or 0),
                    int(item.pending or 0),
                )
            else:
                read.side.lot = to_lot(item)
        by_key = {
            raw["customer_id"]["S"]: raw for raw in found.get(settings.notifications_table, [])
        }
        read.claims = {key: by_key.get(k["customer_id"]["S"]) for key, k in claim_keys.items()}
        read.levels = [level_from_raw(raw) for raw in found.get(settings.inventory_table, [])]
        return read

    def wait_on(self, order_id: str, waiting: dict[str, Any]) -> Order:
        """Keep a waiting step's task token on the order, in one UpdateItem that answers the
        order as written: whichever of the waiting step and a carrier event is written second
        sees the other (decision 39). The version moves on, so a writer holding the order as
        it was before retries. `NotFound` / `OrderGone` for a missing or cancelled order."""
        item = OrderModel(order_id)
        item.version = 0  # any value: with add_version_condition=False it only adds 1
        try:
            item.update(
                actions=[OrderModel.waiting.set(waiting)],
                condition=OrderModel.order_id.exists() & OrderModel.cancelled_at.does_not_exist(),
                add_version_condition=False,
            )
        except UpdateError as exc:
            if getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException":
                raise OrderGone(order_id) from exc
            raise Unavailable("the order could not be written") from exc
        except PynamoDBException as exc:
            raise Unavailable("the order could not be written") from exc
        return to_order(item)

    def _batch_get(self, request: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {table: [] for table in request}
        for attempt in range(8):
            try:
                answer = self._connection.dispatch("BatchGetItem", {"RequestItems": request})
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

    def commit(self, change: OrderChange, *, also: Iterable[AlsoWrite] = ()) -> None:
        """Write the change in one transaction, with `also`'s writes (a workflow step's stock
        moves and message claims). Raises `Contended` when a condition failed."""
        self.commit_many([change], also=also)

    def commit_many(self, changes: list[OrderChange], *, also: Iterable[AlsoWrite] = ()) -> None:
        """Write changes that touch different items (see `change_keys`) in one transaction:
        all or none. `DuplicateDelivery` (one change with a delivery recorded meanwhile),
        `Contended` when a condition failed."""
        try:
            with TransactWrite(connection=self._connection) as tx:
                for change in changes:
                    _write_change(tx, change)
                for write in also:
                    write(tx)
        except TransactWriteError as error:
            reasons = [r.code if r else None for r in error.cancellation_reasons]
            first = changes[0]
            if (
                len(changes) == 1
                and first.delivery_id
                and reasons
                and reasons[0] == "ConditionalCheckFailed"
            ):
                raise DuplicateDelivery() from error
            if reasons:
                raise Contended() from error
            raise Unavailable("the order store did not accept the write") from error
        except PynamoDBException as error:
            raise Unavailable("the order store did not accept the write") from error


def _write_change(tx: TransactWrite, change: OrderChange, merged: bool = False) -> None:
    """The change's items; `merged`: without the customer and the balance, which the caller
    writes once for several changes of one customer."""
    if change.delivery_id:
        # First, so its cancellation reason is the first: a duplicate that lost the race to
        # record the same delivery.
        tx.save(
            DeliveryModel(
                change.delivery_id,
                order_id=change.order.order_id,
                received_at=change.now,
                expires_at=clock.now() + timedelta(seconds=DELIVERY_TTL),
            ),
            condition=DeliveryModel.delivery_id.does_not_exist(),
        )
    if change.save_order:
        tx.save(to_order_item(change.order))
    if change.customer is not None:
        if not merged:
            tx.save(to_item(change.customer))
        for key in change.claim:
            tx.save(
                IdentityModel(key, customer_id=change.customer.customer_id, created_at=change.now),
                condition=IdentityModel.identity.does_not_exist()
                | (IdentityModel.customer_id == change.customer.customer_id),
            )
    if change.points is not None and change.order.customer_id:
        write_points(tx, change.order.customer_id, change.points, change.now, account=not merged)
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


# The transaction items one history order can need: the order, three identity claims, the
# profile, its entries (earn, a reversal), its lot, the balance, a tier event.
ROOM_PER_ORDER = 11


class BatchingOrderStore(OrderStore):
    """An `OrderStore` for history imports: a batch of orders is read in two BatchGetItems
    (`prefetch`) and written in as few transactions as 100 items allow.

    `commit` buffers a change, and reads see the buffer (read your writes): a buyer's profile
    and points balance as the buffered orders left them, identities a buffered new profile
    claimed. At `flush` each order writes its own items (order, identity claims, ledger entries
    and lot), and each customer's profile and balance are written once, at their last state and
    on the version first read, with the balance moved by the sum of the orders' moves. When a
    transaction fails (someone else wrote one of its items meanwhile), none of it was written:
    `redo` gets the `tag`s the writer had set when each of its changes was buffered, so their
    orders can be recorded again, one by one, each from its own event. An order in a live
    workflow is recorded alone, after the buffer, like a webhook's (`alone`)."""

    MAX_ITEMS = 100

    def __init__(self, connection: Connection, redo: Any) -> None:
        super().__init__(connection)
        self._redo = redo
        self.tag: Any = None  # the writer's name for the order being recorded
        self._orders: dict[str, Order | None] = {}  # prefetched
        self._owners: dict[str, str | None] = {}  # prefetched
        self._sides: dict[tuple[str, str], CustomerSide] = {}  # prefetched
        self._reset_buffer()
        self.transactions = 0

    def _reset_buffer(self) -> None:
        self._pending: list[OrderChange] = []
        self._tags: list[Any] = []
        self._buffered_orders: set[str] = set()
        self._customers: dict[str, Customer] = {}  # the last state of each buffered profile
        self._moves: dict[str, list[int]] = {}  # customer id -> [balance, pending] moved
        self._claimed: dict[str, str] = {}  # identity -> the buffered new profile
        self._items = 0

    # -- reads ----------------------------------------------------------------------------

    def prefetch(self, wanted: list[tuple[str, list[str]]]) -> None:
        """Read the orders and buyer identities of a batch ((order id, identity keys) each),
        then the customer side of every order whose buyer is known."""
        settings = get_settings()
        orders = list(dict.fromkeys(order_id for order_id, _ in wanted))
        identities = list(dict.fromkeys(k for _, keys in wanted for k in keys))
        self._orders.update({order_id: None for order_id in orders})
        self._owners.update({key: None for key in identities})
        first: list[tuple[str, str, Any]] = [(settings.orders_table, "order_id", o) for o in orders]
        first += [(settings.identities_table, "identity", k) for k in identities]
        for raw_table, raw in self._get_all(first):
            if raw_table == settings.orders_table:
                order = to_order(OrderModel.from_raw_data(raw))
                self._orders[order.order_id] = order
            else:
                self._owners[raw["identity"]["S"]] = raw["customer_id"]["S"]
        sides = list(
            dict.fromkeys(
                (owner, order_id)
                for order_id, keys in wanted
                if (owner := self.buyer_of(order_id, keys))
            )
        )
        customer_ids = list(dict.fromkeys(c for c, _ in sides))
        second: list[tuple[str, str, Any]] = [
            (settings.customers_table, "customer_id", c) for c in customer_ids
        ]
        second += [(settings.ledger_table, "ledger", (c, "bal")) for c in customer_ids]
        second += [(settings.ledger_table, "ledger", (c, f"bal#lot#{o}")) for c, o in sides]
        customers: dict[str, Customer] = {}
        balances: dict[str, tuple[int, int]] = {}
        lots: dict[tuple[str, str], Lot] = {}
        for raw_table, raw in self._get_all(second):
            if raw_table == settings.customers_table:
                customer = to_customer(CustomerModel.from_raw_data(raw))
                customers[customer.customer_id] = customer
                continue
            item = LedgerModel.from_raw_data(raw)
            if item.sk == "bal":
                balances[item.customer_id] = (int(item.balance or 0), int(item.pending or 0))
            else:
                lots[(item.customer_id, item.sk.removeprefix("bal#lot#"))] = to_lot(item)
        for customer_id, lot_id in sides:
            balance, pending = balances.get(customer_id, (0, 0))
            self._sides[(customer_id, lot_id)] = CustomerSide(
                customers.get(customer_id), balance, pending, lots.get((customer_id, lot_id))
            )

    def is_live(self, order_id: str) -> bool:
        """The order is in a workflow that may be waiting for it: record it alone."""
        stored = self._orders.get(order_id)
        return stored is not None and stored.waiting is not None

    def alone(self) -> None:
        """Before an order recorded with the plain store: the buffer written, and afterwards
        (`forget_all`) nothing served from what was read before."""
        self.flush()

    def forget_all(self) -> None:
        self._orders.clear()
        self._owners.clear()
        self._sides.clear()

    def buyer_of(self, order_id: str, identity_keys: Iterable[str]) -> str | None:
        """The customer an order belongs to, as far as the prefetch and the buffer know."""
        stored = self._orders.get(order_id)
        if stored is not None and stored.customer_id:
            return stored.customer_id
        return next(
            (o for k in identity_keys if (o := self._claimed.get(k) or self._owners.get(k))),
            None,
        )

    def _get_all(self, wanted: list[tuple[str, str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
        """BatchGetItem of any number of keys, 100 at a time."""
        for start in range(0, len(wanted), 100):
            request: dict[str, Any] = {}
            for table, name, value in wanted[start : start + 100]:
                if name == "ledger":
                    key = {"customer_id": {"S": value[0]}, "sk": {"S": value[1]}}
                else:
                    key = {name: {"S": value}}
                request.setdefault(table, {"Keys": [], "ConsistentRead": True})["Keys"].append(key)
            for table, items in self._batch_get(request).items():
                for item in items:
                    yield table, item

    def read_order_and_owners(
        self, order_id: str, identity_keys: Iterable[str], delivery_id: str | None = None
    ) -> tuple[Order | None, dict[str, str], bool]:
        keys = list(identity_keys)
        # An order's first read: the buffer is written first when this order's change might
        # not fit beside it (never after its reads: the change is built on what it read), or
        # when the same order is already in it (read it as written).
        if order_id in self._buffered_orders or self._items + ROOM_PER_ORDER > self.MAX_ITEMS:
            self.flush()
        unknown = [k for k in keys if k not in self._claimed and k not in self._owners]
        if delivery_id or order_id not in self._orders or unknown:
            stored, owners, seen = super().read_order_and_owners(order_id, keys, delivery_id)
        else:
            stored, seen = self._orders[order_id], False
            owners = {k: owner for k in keys if (owner := self._owners.get(k))}
        owners.update({k: self._claimed[k] for k in keys if k in self._claimed})
        return stored, owners, seen

    def read_customer_side(self, customer_id: str, lot_id: str) -> CustomerSide:
        side = self._sides.get((customer_id, lot_id))
        if side is None:
            if customer_id in self._claimed.values():
                side = CustomerSide(None)  # born in this buffer: nothing stored yet
            else:
                side = super().read_customer_side(customer_id, lot_id)
        customer = self._customers.get(customer_id)
        moved = self._moves.get(customer_id, [0, 0])
        # A copy: the caller changes the profile it is given, and only `commit` may buffer it.
        return CustomerSide(
            copy.deepcopy(customer if customer is not None else side.customer),
            side.balance + moved[0],
            side.pending + moved[1],
            side.lot,
        )

    # -- writes ---------------------------------------------------------------------------

    def commit(self, change: OrderChange, *, also: Iterable[AlsoWrite] = ()) -> None:
        if list(also):
            raise ValueError("a history import writes orders alone")
        if change.order.waiting or change.delivery_id:
            # Not for this store (the writer records live orders alone): written now, and
            # nothing read before is trusted after it.
            self.flush()
            try:
                super().commit(change)
            finally:
                self.forget_all()
            return
        items = self._new_items(change)
        if self._items + items > self.MAX_ITEMS:
            # More than the room kept for it: it was built on the buffer's state, so write the
            # buffer and record this order again on its own.
            tag = self.tag
            self.flush()
            self._redo([tag])
            self.forget_all()
            return
        self._items += items
        self._pending.append(change)
        self._tags.append(self.tag)
        self._buffered_orders.add(change.order.order_id)
        customer_id = change.order.customer_id
        if change.customer is not None:
            self._customers[change.customer.customer_id] = change.customer
            for key in change.claim:
                self._claimed[key] = change.customer.customer_id
        points = change.points
        if points is not None and customer_id and (points.balance_delta or points.pending_delta):
            moved = self._moves.setdefault(customer_id, [0, 0])
            moved[0] += points.balance_delta
            moved[1] += points.pending_delta

    def _new_items(self, change: OrderChange) -> int:
        """The transaction items buffering `change` adds: its own, and its customer's profile
        and balance the first time that customer is buffered."""
        own = bool(change.save_order) + len(change.claim) + bool(change.tier_event)
        points = change.points
        customer_id = change.order.customer_id
        if points is not None and customer_id:
            own += len(points.entries) + (
                points.lot is not None and points.lot != points.lot_before
            )
            if customer_id not in self._moves and (points.balance_delta or points.pending_delta):
                own += 1
        if change.customer is not None and change.customer.customer_id not in self._customers:
            own += 1
        return own

    def flush(self) -> None:
        pending, tags, customers, moves = self._pending, self._tags, self._customers, self._moves
        self._reset_buffer()
        if not pending:
            return
        for customer_id in {*customers, *moves}:
            self._forget_customer(customer_id)
        for change in pending:
            self._orders.pop(change.order.order_id, None)
            for key in change.claim:
                self._owners.pop(key, None)
        now = pending[-1].now
        try:
            self.transactions += 1
            with TransactWrite(connection=self._connection) as tx:
                for change in pending:
                    _write_change(tx, change, merged=True)
                for customer in customers.values():
                    tx.save(to_item(customer))
                for customer_id, (balance, pending_points) in moves.items():
                    if balance or pending_points:
                        account_update(tx, customer_id, balance, pending_points, now)
        except TransactWriteError:
            self._redo(tags)
            self.forget_all()
        except PynamoDBException as error:
            raise Unavailable("the order store did not accept the write") from error

    def _forget_customer(self, customer_id: str | None) -> None:
        """What was written is read from the tables again, not from the prefetch."""
        for side in [s for s in self._sides if s[0] == customer_id]:
            del self._sides[side]


def write_points(
    tx: TransactWrite, customer_id: str, points: OrderPoints, now: str, account: bool = True
) -> None:
    """An order's ledger writes: its entries, its lot (as read), the balance (never negative;
    `account` False: the caller moves it, merged with other orders')."""
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
    if account and (points.balance_delta or points.pending_delta):
        account_update(tx, customer_id, points.balance_delta, points.pending_delta, now)


@lru_cache(maxsize=1)
def get_order_store() -> OrderStore:
    settings = get_settings()
    bind_models(settings)
    return OrderStore(RetryingConnection(region=OrderModel.Meta.region))


def batching_order_store(redo: Any) -> BatchingOrderStore:
    """A `BatchingOrderStore` on the stage's tables (see there for `redo`)."""
    return BatchingOrderStore(get_order_store()._connection, redo)


def reset() -> None:
    retry.reset()  # connections forgotten: their shared client too (a new endpoint, a test)
    get_order_store.cache_clear()
    for model in (OrderModel, DeliveryModel):
        model._connection = None
