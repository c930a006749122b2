"""Stock per SKU per warehouse, and each order's reservations, in one table.

Stock items (`sku`, `sk` = warehouse id) keep `available` = `on_hand` - `reserved` beside the
two numbers, because a DynamoDB condition cannot subtract: a reservation is
`ADD reserved :q, available -:q` conditional on `available >= :q`, so no number of racing
orders can take more than is there. Every change of an order's stock (reserve, release, ship,
restock) is one `TransactWriteItems` with the order's own items (`sku` = `order#<order id>`):
a header (`#order`) whose state says what the order holds, one item per reserved line
(`<sku>#<warehouse>`), and a marker per restock (`#restock#<key>`). The header and the lines
move only together and only from the state read, so a task run twice moves stock once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from pynamodb.connection import Connection
from pynamodb.exceptions import (
    DoesNotExist,
    PutError,
    PynamoDBException,
    TransactWriteError,
    UpdateError,
)
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from crm.clock import now_iso
from crm.config import get_settings
from crm.contention import retry_on_contention
from crm.domain.errors import Conflict, Unavailable, ValidationFailed
from crm.domain.inventory import ORDER_PREFIX, Allocation, StockLevel
from crm.store import retry
from crm.store.models import InventoryModel, bind_models
from crm.store.retry import RetryingConnection

HEADER = "#order"
RESTOCK_PREFIX = "#restock#"
RESERVED, RELEASED, SHIPPED = "reserved", "released", "shipped"
HELD, CONTENDED = "held", "contended"  # what `try_reserve` may answer besides RESERVED
# DynamoDB takes at most 100 items in a transaction: the header and two per line.
MAX_LINES = 49
MAX_ATTEMPTS = 10
CONDITION_FAILED = "ConditionalCheckFailed"


class RaceLost(Exception):
    """A conditional write found the item changed since it was read: read again and redo."""


def _reasons(error: TransactWriteError) -> list[str | None]:
    return [r.code if r else None for r in error.cancellation_reasons]


def to_level(item: InventoryModel) -> StockLevel:
    return StockLevel(
        sku=item.sku,
        warehouse_id=item.sk,
        on_hand=int(item.on_hand or 0),
        reserved=int(item.reserved or 0),
        safety_stock=int(item.safety_stock or 0),
        alerted=bool(item.alerted),
    )


@dataclass(frozen=True)
class Reservation:
    sku: str
    warehouse_id: str
    quantity: int
    state: str
    at: str | None = None
    restocked: int = 0

    def view(self) -> dict[str, Any]:
        return {
            "sku": self.sku,
            "warehouse_id": self.warehouse_id,
            "quantity": self.quantity,
            "state": self.state,
            "restocked": self.restocked,
            "at": self.at,
        }


@dataclass
class OrderStock:
    """What an order holds: its header (state and allocation), lines and restock markers."""

    state: str | None = None  # None: never reserved
    allocation: dict[str, Any] | None = None
    at: str | None = None
    reservations: list[Reservation] = field(default_factory=list)
    restocks: dict[str, dict[str, Any]] = field(default_factory=dict)


def _reservation(item: InventoryModel) -> Reservation:
    sku, _, warehouse_id = item.sk.rpartition("#")  # warehouse ids hold no `#`; SKUs may
    return Reservation(
        sku=sku,
        warehouse_id=warehouse_id,
        quantity=int(item.quantity or 0),
        state=item.state or RESERVED,
        at=item.at,
        restocked=int(item.restocked or 0),
    )


def _stock_update(
    tx: TransactWrite,
    sku: str,
    warehouse_id: str,
    now: str,
    *,
    on_hand: int = 0,
    reserved: int = 0,
    available: int = 0,
) -> None:
    """Move a stock item's numbers, each decrease conditional on enough being there."""
    actions: list[Action] = [
        InventoryModel.updated_at.set(now),
        InventoryModel.version.add(1),
    ]
    condition = InventoryModel.sku.exists()
    for attribute, delta in (
        (InventoryModel.on_hand, on_hand),
        (InventoryModel.reserved, reserved),
        (InventoryModel.available, available),
    ):
        if delta:
            actions.append(attribute.add(delta))
        if delta < 0:
            condition = condition & (attribute >= -delta)
    tx.update(InventoryModel(sku, warehouse_id), actions=actions, condition=condition)


StockKey = tuple[str, str]  # (sku, warehouse id): a stock item
Line = tuple[str, str, int]  # (sku, warehouse id, quantity): a reservation line


def reserved_lines(allocation: Allocation) -> list[Line]:
    lines = [(sku, p.warehouse_id, qty) for p in allocation.parts for sku, qty in p.lines]
    if len(lines) > MAX_LINES:
        raise ValidationFailed(
            f"an order can reserve at most {MAX_LINES} SKU and warehouse lines at once",
            details=[{"field": "lines", "issue": "too_many", "limit": MAX_LINES}],
        )
    return lines


def allocated_lines(allocation_view: dict[str, Any]) -> list[Line]:
    """The reservation lines of an allocation as the order records it (`parts` of its view)."""
    return [
        (str(line["sku"]), str(part["warehouse_id"]), int(line["quantity"]))
        for part in allocation_view.get("parts") or []
        for line in part.get("lines") or []
    ]


def reserve_in(tx: TransactWrite, order_id: str, allocation: Allocation, now: str) -> int:
    """Add the reservation of `allocation` to `tx`: the order's header and lines (each free:
    new, or released before) and each stock item's numbers (never below zero). Puts go first,
    the header first of them: its cancellation reason is the first of these. How many items."""
    pk = ORDER_PREFIX + order_id
    lines = reserved_lines(allocation)
    free = InventoryModel.sk.does_not_exist() | (InventoryModel.state == RELEASED)
    tx.save(
        InventoryModel(pk, HEADER, state=RESERVED, at=now, details=allocation.view()),
        condition=free,
    )
    for sku, warehouse_id, qty in lines:
        tx.save(
            InventoryModel(
                pk, f"{sku}#{warehouse_id}", quantity=qty, state=RESERVED, restocked=0, at=now
            ),
            condition=free,
        )
    for sku, warehouse_id, qty in lines:
        _stock_update(tx, sku, warehouse_id, now, reserved=qty, available=-qty)
    return 1 + 2 * len(lines)


def move_in(
    tx: TransactWrite,
    order_id: str,
    lines: Sequence[Line],
    to_state: str,
    now: str,
    *,
    header: bool,
) -> None:
    """Add to `tx` the move of the order's reserved `lines` to `to_state` (released: stock back
    to available; shipped: stock leaves on hand), and of its header with `header`. Each line
    only if still reserved: a move done already cancels the transaction."""
    pk = ORDER_PREFIX + order_id
    if header:
        tx.update(
            InventoryModel(pk, HEADER),
            actions=[InventoryModel.state.set(to_state)],
            condition=InventoryModel.state == RESERVED,
        )
    for sku, warehouse_id, qty in lines:
        tx.update(
            InventoryModel(pk, f"{sku}#{warehouse_id}"),
            actions=[InventoryModel.state.set(to_state), InventoryModel.at.set(now)],
            condition=InventoryModel.state == RESERVED,
        )
        if to_state == RELEASED:
            _stock_update(tx, sku, warehouse_id, now, reserved=-qty, available=qty)
        else:
            _stock_update(tx, sku, warehouse_id, now, on_hand=-qty, reserved=-qty)


def level_from_raw(raw: dict[str, Any]) -> StockLevel:
    """A stock item as a BatchGetItem of several tables answers it (`crm.store.orders`)."""
    return to_level(InventoryModel.from_raw_data(raw))


def level_keys(skus: Iterable[str], warehouse_ids: Iterable[str]) -> list[dict[str, Any]]:
    """BatchGetItem keys of the stock items of `skus` in `warehouse_ids`."""
    return [
        {"sku": {"S": sku}, "sk": {"S": w}}
        for sku in dict.fromkeys(skus)
        for w in dict.fromkeys(warehouse_ids)
    ]


class InventoryStore:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    # -- stock --------------------------------------------------------------------------------

    def level(self, sku: str, warehouse_id: str) -> StockLevel | None:
        try:
            return to_level(InventoryModel.get(sku, warehouse_id, consistent_read=True))
        except DoesNotExist:
            return None
        except PynamoDBException as exc:
            raise Unavailable("the stock could not be read") from exc

    def levels(
        self, skus: Iterable[str], warehouse_ids: Sequence[str] | None = None
    ) -> list[StockLevel]:
        """Stock of `skus`: with `warehouse_ids`, one BatchGetItem per 100 keys (what an
        allocation needs); without, one Query per SKU (every warehouse that has an item)."""
        skus = list(dict.fromkeys(skus))
        try:
            if warehouse_ids is not None:
                keys = [(sku, w) for sku in skus for w in dict.fromkeys(warehouse_ids)]
                if not keys:
                    return []
                found = InventoryModel.batch_get(keys, consistent_read=True)
                return sorted((to_level(i) for i in found), key=lambda s: (s.sku, s.warehouse_id))
            return [
                to_level(item)
                for sku in skus
                for item in InventoryModel.query(sku, consistent_read=True)
            ]
        except PynamoDBException as exc:
            raise Unavailable("the stock could not be read") from exc

    def all_levels(self) -> Iterator[StockLevel]:
        """Every stock item. A Scan: acceptable in the scheduled low-stock job, which must look
        at everything anyway, never on a request path."""
        try:
            for item in InventoryModel.scan(
                ~InventoryModel.sku.startswith(ORDER_PREFIX), consistent_read=True
            ):
                yield to_level(item)
        except PynamoDBException as exc:
            raise Unavailable("the stock could not be read") from exc

    def set_stock(
        self,
        sku: str,
        warehouse_id: str,
        on_hand: int,
        safety_stock: int | None = None,
        now: str | None = None,
    ) -> StockLevel:
        """Set what is on hand (and the safety stock; None keeps it). Optimistic: the write is
        conditional on `reserved` being what was read, so `available` stays exact. Refused
        (Conflict) when less would be on hand than is reserved for orders."""

        def attempt() -> StockLevel:
            stamp = now or now_iso()
            current = self.level(sku, warehouse_id)
            if current is None:
                level = StockLevel(sku, warehouse_id, on_hand, 0, safety_stock or 0)
                item = InventoryModel(
                    sku,
                    warehouse_id,
                    on_hand=on_hand,
                    reserved=0,
                    available=on_hand,
                    safety_stock=level.safety_stock,
                    alerted=False,
                    updated_at=stamp,
                    version=1,
                )
                try:
                    item.save(condition=InventoryModel.sku.does_not_exist())
                except PutError as exc:
                    if exc.cause_response_code != "ConditionalCheckFailedException":
                        raise Unavailable("the stock could not be written") from exc
                    raise RaceLost() from exc  # created meanwhile: read again
                return level
            if on_hand < current.reserved:
                raise Conflict(
                    f"{current.reserved} units of {sku} at {warehouse_id} are reserved for "
                    f"orders; on_hand cannot be {on_hand}",
                    code="stock_reserved",
                    details=[
                        {
                            "warehouse_id": warehouse_id,
                            "on_hand": on_hand,
                            "reserved": current.reserved,
                        }
                    ],
                )
            safety = current.safety_stock if safety_stock is None else safety_stock
            try:
                InventoryModel(sku, warehouse_id).update(
                    actions=[
                        InventoryModel.on_hand.set(on_hand),
                        InventoryModel.available.set(on_hand - current.reserved),
                        InventoryModel.safety_stock.set(safety),
                        InventoryModel.updated_at.set(stamp),
                        InventoryModel.version.add(1),
                    ],
                    condition=InventoryModel.reserved == current.reserved,
                )
            except UpdateError as exc:
                if exc.cause_response_code != "ConditionalCheckFailedException":
                    raise Unavailable("the stock could not be written") from exc
                raise RaceLost() from exc  # reserved changed meanwhile: read again
            return StockLevel(
                sku, warehouse_id, on_hand, current.reserved, safety, alerted=current.alerted
            )

        return retry_on_contention(
            attempt, lost=(RaceLost,), what="the stock", attempts=MAX_ATTEMPTS
        )

    def mark_alerted(self, sku: str, warehouse_id: str, alerted: bool) -> bool:
        """Set the low-stock mark; True only for the call that changed it (so two concurrent
        job runs cannot both alert the same breach)."""
        if alerted:
            condition = InventoryModel.sku.exists() & (
                InventoryModel.alerted.does_not_exist() | (InventoryModel.alerted == False)  # noqa: E712
            )
        else:
            condition = InventoryModel.alerted == True  # noqa: E712
        # The change carries a token of its own: when it was written but its answer was lost
        # (a 500 after the write, sent again by the SDK), the repeat finds its own token.
        token = uuid.uuid4().hex
        condition = condition | (
            (InventoryModel.alerted == alerted) & (InventoryModel.alert_token == token)
        )
        try:
            InventoryModel(sku, warehouse_id).update(
                actions=[
                    InventoryModel.alerted.set(alerted),
                    InventoryModel.alert_token.set(token),
                ],
                condition=condition,
            )
        except UpdateError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                return False
            raise Unavailable("the stock could not be written") from exc
        return True

    # -- an order's stock ---------------------------------------------------------------------

    def order_stock(self, order_id: str) -> OrderStock:
        """The order's header, reservations and restocks: one Query."""
        held = OrderStock()
        try:
            for item in InventoryModel.query(ORDER_PREFIX + order_id, consistent_read=True):
                if item.sk == HEADER:
                    held.state, held.allocation, held.at = item.state, item.details, item.at
                elif item.sk.startswith(RESTOCK_PREFIX):
                    held.restocks[item.sk.removeprefix(RESTOCK_PREFIX)] = item.details or {}
                else:
                    held.reservations.append(_reservation(item))
        except PynamoDBException as exc:
            raise Unavailable("the order's stock could not be read") from exc
        return held

    def reservations(self, order_id: str) -> list[Reservation]:
        return self.order_stock(order_id).reservations

    def reserve(self, order_id: str, allocation: Allocation, now: str | None = None) -> bool:
        """Reserve the allocation's lines for the order in one transaction.

        True when reserved now, and also when the order already holds stock (the header is
        there and not released: a task run twice reserves once). False when a stock condition
        failed (another order took the units since they were read): read again, allocate
        again. An order whose reservations were released may reserve again."""
        return self.try_reserve(order_id, allocation, now) != CONTENDED

    def try_reserve(self, order_id: str, allocation: Allocation, now: str | None = None) -> str:
        """`reserve`, saying which: RESERVED (now), HELD (already) or CONTENDED (lost a race)."""
        now = now or now_iso()
        lines = reserved_lines(allocation)
        try:
            with TransactWrite(connection=self._connection) as tx:
                reserve_in(tx, order_id, allocation, now)
        except TransactWriteError as error:
            reasons = _reasons(error)
            if not reasons:
                raise Unavailable("the stock did not accept the reservation") from error
            if CONDITION_FAILED in reasons[: 1 + len(lines)]:
                return HELD  # the order already holds its stock
            return CONTENDED  # a stock condition failed, or a concurrent transaction conflicted
        except PynamoDBException as error:
            raise Unavailable("the stock did not accept the reservation") from error
        return RESERVED

    def _move(self, order_id: str, to_state: str, now: str | None) -> list[Reservation]:
        """Every reserved line of the order to `to_state` (released: stock back to available;
        shipped: stock leaves on hand), with the header, in one transaction."""

        def attempt() -> list[Reservation]:
            stamp = now or now_iso()
            held = self.order_stock(order_id)
            active = [r for r in held.reservations if r.state == RESERVED]
            if not active:
                return []
            try:
                with TransactWrite(connection=self._connection) as tx:
                    move_in(
                        tx,
                        order_id,
                        [(r.sku, r.warehouse_id, r.quantity) for r in active],
                        to_state,
                        stamp,
                        header=held.state == RESERVED,
                    )
            except TransactWriteError as error:
                if not error.cancellation_reasons:
                    raise Unavailable("the stock did not accept the change") from error
                raise RaceLost() from error  # released or shipped meanwhile: read again
            except PynamoDBException as error:
                raise Unavailable("the stock did not accept the change") from error
            return active

        return retry_on_contention(
            attempt, lost=(RaceLost,), what="the order's stock", attempts=MAX_ATTEMPTS
        )

    def release(self, order_id: str, now: str | None = None) -> int:
        """Give back every unit the order holds (reserved, not shipped); how many."""
        return sum(r.quantity for r in self._move(order_id, RELEASED, now))

    def release_lines(self, order_id: str, now: str | None = None) -> list[Reservation]:
        return self._move(order_id, RELEASED, now)

    def ship(self, order_id: str, now: str | None = None) -> int:
        """The reserved units left the warehouse: on hand and reserved go down; how many."""
        return sum(r.quantity for r in self._move(order_id, SHIPPED, now))

    def ship_lines(self, order_id: str, now: str | None = None) -> list[Reservation]:
        return self._move(order_id, SHIPPED, now)

    def restock(
        self, order_id: str, key: str, lines: Sequence[tuple[str, int]], now: str | None = None
    ) -> dict[str, Any]:
        """Goods of a delivered order came back: on hand and available go up in the warehouse
        each unit was shipped from, never more than was shipped (counted per line across
        restocks). Idempotent by `key`: the marker `#restock#<key>` is written in the same
        transaction, and a replay answers what the first call did (`replay: true`)."""
        pk = ORDER_PREFIX + order_id
        marker = RESTOCK_PREFIX + key

        def attempt() -> dict[str, Any]:
            stamp = now or now_iso()
            held = self.order_stock(order_id)
            if key in held.restocks:
                return {**held.restocks[key], "replay": True}
            shipped = [r for r in held.reservations if r.state == SHIPPED]
            takes: list[tuple[Reservation, int]] = []
            missing: list[dict[str, Any]] = []
            for sku, qty in lines:
                left = qty
                for r in shipped:
                    if r.sku != sku or not left:
                        continue
                    take = min(left, r.quantity - r.restocked)
                    if take > 0:
                        takes.append((r, take))
                        left -= take
                if left:
                    missing.append({"sku": sku, "quantity": left})
            result: dict[str, Any] = {
                "restocked": [
                    {"sku": r.sku, "warehouse_id": r.warehouse_id, "quantity": take}
                    for r, take in takes
                ],
                "not_restocked": missing,
                "at": stamp,
            }
            try:
                with TransactWrite(connection=self._connection) as tx:
                    tx.save(
                        InventoryModel(pk, marker, at=stamp, details=result),
                        condition=InventoryModel.sk.does_not_exist(),
                    )
                    for r, take in takes:
                        unchanged = InventoryModel.restocked == r.restocked
                        if not r.restocked:
                            unchanged = unchanged | InventoryModel.restocked.does_not_exist()
                        tx.update(
                            InventoryModel(pk, f"{r.sku}#{r.warehouse_id}"),
                            actions=[InventoryModel.restocked.set(r.restocked + take)],
                            condition=(InventoryModel.state == SHIPPED) & unchanged,
                        )
                        _stock_update(
                            tx, r.sku, r.warehouse_id, stamp, on_hand=take, available=take
                        )
            except TransactWriteError as error:
                if not error.cancellation_reasons:
                    raise Unavailable("the stock did not accept the restock") from error
                # The same key, or another restock, moved first: read again.
                raise RaceLost() from error
            except PynamoDBException as error:
                raise Unavailable("the stock did not accept the restock") from error
            return {**result, "replay": False}

        return retry_on_contention(
            attempt, lost=(RaceLost,), what="the order's stock", attempts=MAX_ATTEMPTS
        )


@lru_cache(maxsize=1)
def get_inventory_store() -> InventoryStore:
    settings = get_settings()
    bind_models(settings)
    return InventoryStore(RetryingConnection(region=InventoryModel.Meta.region))


def reset() -> None:
    retry.reset()  # connections forgotten: their shared client too (a new endpoint, a test)
    get_inventory_store.cache_clear()
    InventoryModel._connection = None
