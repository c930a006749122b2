"""The points ledger: entries, lots and the balance of each customer, in one partition.

The balance (`bal`) moves only in the same transaction as the entry that explains it, with a
condition that keeps it from going below zero; each entry's id is derived from its cause, so a
replay fails its `attribute_not_exists` condition instead of counting twice.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pynamodb.connection import Connection
from pynamodb.exceptions import DoesNotExist, PynamoDBException, TransactWriteError
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from crm.config import get_settings
from crm.domain import cursors
from crm.domain.loyalty import ACTIVE, EXPIRED, Entry, Lot
from crm.store import retry
from crm.store.errors import limit_exceeded, refused_as_invalid, store_error
from crm.store.models import CustomerModel, LedgerModel, bind_models
from crm.store.retry import RetryingConnection

ACCOUNT = "bal"
LOT_PREFIX = "bal#lot#"
ENTRY_PREFIX = "ent#"
MOVED = "moved"  # a lot whose points went to another customer in a merge


class LedgerContended(Exception):
    """A lot or the balance changed since it was read: read again and redo."""


class CustomerInactive(Exception):
    """The customer was merged away or erased: their points cannot be spent."""


class EntryExists(Exception):
    """The entry (its cause) is already recorded: the request is a replay."""


def to_lot(item: LedgerModel) -> Lot:
    return Lot(
        lot_id=item.sk.removeprefix(LOT_PREFIX),
        points=int(item.points or 0),
        remaining=int(item.remaining or 0),
        status=item.status or ACTIVE,
        earned_at=item.earned_at or "",
        source=item.source or "",
        activated_at=item.activated_at,
        expires_at=item.expires_at,
    )


def lot_item(customer_id: str, lot: Lot) -> LedgerModel:
    item = LedgerModel(
        customer_id,
        LOT_PREFIX + lot.lot_id,
        points=lot.points,
        remaining=lot.remaining,
        status=lot.status,
        earned_at=lot.earned_at,
        source=lot.source,
        activated_at=lot.activated_at,
        expires_at=lot.expires_at,
    )
    # Only lots the expiry job must visit are in the sparse `expiring` index.
    if lot.status == ACTIVE and lot.remaining > 0 and lot.expires_at:
        item.expiry_month = lot.expires_at[:7]
    return item


def entry_item(customer_id: str, entry: Entry) -> LedgerModel:
    return LedgerModel(
        customer_id,
        ENTRY_PREFIX + entry.entry_id,
        entry_type=entry.entry_type,
        points=entry.points,
        reason=entry.reason,
        source=entry.source,
        entry_at=f"{entry.at}#{entry.entry_id}",
        details=entry.details,
    )


def entry_view(item: LedgerModel) -> dict[str, Any]:
    return {
        "entry_id": item.sk.removeprefix(ENTRY_PREFIX),
        "type": item.entry_type,
        "points": int(item.points or 0),
        "reason": item.reason,
        "source": item.source,
        "at": (item.entry_at or "").split("#", 1)[0],
        **({"details": item.details} if item.details else {}),
    }


def account_update(
    tx: TransactWrite, customer_id: str, balance_delta: int, pending_delta: int, now: str
) -> None:
    """Move the balance and pending points; a decrease is conditional on enough being there."""
    actions: list[Action] = [LedgerModel.updated_at.set(now)]
    if balance_delta:
        actions.append(LedgerModel.balance.add(balance_delta))
    if pending_delta:
        actions.append(LedgerModel.pending.add(pending_delta))
    condition = None
    if balance_delta < 0:
        condition = LedgerModel.balance >= -balance_delta
    if pending_delta < 0:
        enough = LedgerModel.pending >= -pending_delta
        condition = enough if condition is None else condition & enough
    tx.update(LedgerModel(customer_id, ACCOUNT), actions=actions, condition=condition)


@dataclass
class Account:
    balance: int
    pending: int
    lots: list[Lot]


class LedgerStore:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def account(self, customer_id: str) -> Account:
        """The balance and every lot: one Query (the `bal` prefix holds both)."""
        account = Account(0, 0, [])
        try:
            for item in LedgerModel.query(
                customer_id, LedgerModel.sk.startswith(ACCOUNT), consistent_read=True
            ):
                if item.sk == ACCOUNT:
                    account.balance = int(item.balance or 0)
                    account.pending = int(item.pending or 0)
                else:
                    account.lots.append(to_lot(item))
        except PynamoDBException as exc:
            raise store_error(exc, "the ledger could not be read") from exc
        return account

    def entries(
        self, customer_id: str, limit: int, before: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Entries newest first; `before` is the cursor the previous page returned: the full
        key of its last entry (`crm.domain.cursors`), where the next page starts."""
        start = None
        if before:
            entry_at, sk = cursors.decode(before, 2)
            if not sk.startswith(ENTRY_PREFIX):
                raise cursors.invalid()
            start = {
                "customer_id": {"S": customer_id},
                "sk": {"S": sk},
                "entry_at": {"S": entry_at},
            }
        try:
            page = LedgerModel.entries_by_time.query(
                customer_id,
                scan_index_forward=False,
                limit=limit,
                last_evaluated_key=start,
            )
            items = list(page)
        except PynamoDBException as exc:
            raise store_error(exc, "the ledger could not be read") from exc
        more = len(items) == limit and page.last_evaluated_key
        cursor = cursors.encode(items[-1].entry_at, items[-1].sk) if more else None
        return [entry_view(i) for i in items], cursor

    def entry(self, customer_id: str, entry_id: str) -> dict[str, Any] | None:
        try:
            return entry_view(
                LedgerModel.get(customer_id, ENTRY_PREFIX + entry_id, consistent_read=True)
            )
        except DoesNotExist:
            return None
        except PynamoDBException as exc:
            raise store_error(exc, "the ledger could not be read") from exc

    def tier_events(self, customer_id: str) -> list[dict[str, Any]]:
        try:
            return [
                {**(item.details or {}), "at": item.updated_at}
                for item in LedgerModel.query(customer_id, LedgerModel.sk.startswith("evt#tier#"))
            ]
        except PynamoDBException as exc:
            raise store_error(exc, "the ledger could not be read") from exc

    def due_lots(self, months: list[str], now: str) -> Iterator[tuple[str, Lot]]:
        """Active lots with points left whose expiry is at or before `now`."""
        try:
            for month in months:
                for item in LedgerModel.expiring.query(month, LedgerModel.expires_at <= now):
                    yield item.customer_id, to_lot(item)
        except PynamoDBException as exc:
            raise store_error(exc, "the ledger could not be read") from exc

    def apply(
        self,
        customer_id: str,
        entry: Entry,
        *,
        balance_delta: int,
        now: str,
        new_lots: Sequence[Lot] = (),
        takes: Sequence[tuple[str, int]] = (),
        expire: tuple[str, int] | None = None,
        active_customer: bool = False,
    ) -> None:
        """Record `entry`, its lots (new ones; points taken from active ones, each conditional
        on enough being left; one lot expired whole) and the balance, in one transaction."""
        try:
            with TransactWrite(connection=self._connection) as tx:
                tx.save(entry_item(customer_id, entry), condition=LedgerModel.sk.does_not_exist())
                for lot in new_lots:
                    tx.save(lot_item(customer_id, lot), condition=LedgerModel.sk.does_not_exist())
                for lot_id, take in takes:
                    tx.update(
                        LedgerModel(customer_id, LOT_PREFIX + lot_id),
                        actions=[LedgerModel.remaining.add(-take)],
                        condition=(LedgerModel.remaining >= take) & (LedgerModel.status == ACTIVE),
                    )
                if expire is not None:
                    lot_id, remaining = expire
                    tx.update(
                        LedgerModel(customer_id, LOT_PREFIX + lot_id),
                        actions=[
                            LedgerModel.remaining.set(0),
                            LedgerModel.status.set(EXPIRED),
                            LedgerModel.expiry_month.remove(),
                        ],
                        condition=(LedgerModel.remaining == remaining)
                        & (LedgerModel.status == ACTIVE),
                    )
                account_update(tx, customer_id, balance_delta, 0, now)
                if active_customer:
                    # No extra read: the check rides in the write. PynamoDB sends condition
                    # checks first, so its reason is reasons[0] and the entry's reasons[1].
                    tx.condition_check(
                        CustomerModel, customer_id, condition=CustomerModel.status == "active"
                    )
        except TransactWriteError as error:
            if refused_as_invalid(error):
                raise limit_exceeded() from error
            reasons = [r.code if r else None for r in error.cancellation_reasons]
            if active_customer and reasons and reasons[0] == "ConditionalCheckFailed":
                raise CustomerInactive() from error
            entry_at = 1 if active_customer else 0
            if len(reasons) > entry_at and reasons[entry_at] == "ConditionalCheckFailed":
                raise EntryExists() from error
            if reasons:
                raise LedgerContended() from error
            raise store_error(error, "the ledger did not accept the write") from error
        except PynamoDBException as error:
            raise store_error(error, "the ledger did not accept the write") from error

    def move_lot(self, source_id: str, target_id: str, lot: Lot, now: str) -> bool:
        """Move what is left of a lot to another customer (a merge), with an entry on each
        side, in one transaction. False when it was already moved or changed meanwhile."""
        moved = Entry(
            f"merge:{target_id}:{lot.lot_id}",
            "adjust",
            -lot.remaining,
            "merged into " + target_id,
            source_id,
            now,
            {"lot_id": lot.lot_id, "to": target_id},
        )
        received = Entry(
            f"merge:{source_id}:{lot.lot_id}",
            "adjust",
            lot.remaining,
            "merged from " + source_id,
            source_id,
            now,
            {"lot_id": lot.lot_id, "from": source_id},
        )
        active = lot.status == ACTIVE
        try:
            with TransactWrite(connection=self._connection) as tx:
                tx.update(
                    LedgerModel(source_id, LOT_PREFIX + lot.lot_id),
                    actions=[
                        LedgerModel.remaining.set(0),
                        LedgerModel.status.set(MOVED),
                        LedgerModel.expiry_month.remove(),
                    ],
                    condition=(LedgerModel.remaining == lot.remaining)
                    & (LedgerModel.status == lot.status),
                )
                tx.save(
                    lot_item(target_id, lot),
                    condition=LedgerModel.sk.does_not_exist(),
                )
                tx.save(entry_item(source_id, moved), condition=LedgerModel.sk.does_not_exist())
                tx.save(entry_item(target_id, received), condition=LedgerModel.sk.does_not_exist())
                delta = (-lot.remaining, 0) if active else (0, -lot.remaining)
                account_update(tx, source_id, *delta, now)
                account_update(tx, target_id, -delta[0], -delta[1], now)
        except TransactWriteError as error:
            if refused_as_invalid(error):
                raise limit_exceeded() from error
            reasons = [r.code if r else None for r in error.cancellation_reasons or []]
            if "ConditionalCheckFailed" in reasons:
                return False  # moved already, or changed meanwhile
            # Conflicts that outlasted the retries: not moved; a retried merge finishes it.
            raise store_error(error, "the ledger did not accept the write") from error
        except PynamoDBException as error:
            raise store_error(error, "the ledger did not accept the write") from error
        return True


@lru_cache(maxsize=1)
def get_ledger_store() -> LedgerStore:
    settings = get_settings()
    bind_models(settings)
    return LedgerStore(RetryingConnection(region=LedgerModel.Meta.region))


def reset() -> None:
    retry.reset()  # connections forgotten: their shared client too (a new endpoint, a test)
    get_ledger_store.cache_clear()
    LedgerModel._connection = None
