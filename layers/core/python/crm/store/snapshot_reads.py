"""Whole-table reads for the analytics snapshot: one segment of a parallel Scan at a time.

Only the segmentation and reports jobs call these (never a request path): a Scan reads the
whole table, which is what a nightly rebuild is for and what no request may cost.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pynamodb.exceptions import PynamoDBException

from crm.config import get_settings
from crm.domain.customers import Customer
from crm.domain.orders import Order
from crm.store.customers import to_customer
from crm.store.errors import store_error
from crm.store.ledger import ACCOUNT, ENTRY_PREFIX
from crm.store.models import CustomerModel, LedgerModel, OrderModel, bind_models
from crm.store.orders import to_order


def _bound() -> None:
    bind_models(get_settings())


def customers(segment: int, total: int) -> Iterator[Customer]:
    _bound()
    try:
        for item in CustomerModel.scan(segment=segment, total_segments=total):
            yield to_customer(item)
    except PynamoDBException as exc:
        raise store_error(exc, "the customers could not be read") from exc


def orders(segment: int, total: int) -> Iterator[Order]:
    _bound()
    try:
        for item in OrderModel.scan(segment=segment, total_segments=total):
            yield to_order(item)
    except PynamoDBException as exc:
        raise store_error(exc, "the orders could not be read") from exc


def ledger(segment: int, total: int) -> Iterator[dict[str, Any]]:
    """Balances (`kind` `balance`: `balance`) and entries (`kind` `entry`: `entry_type`,
    `points`, `at`) of every customer; lots and tier events are left out."""
    _bound()
    try:
        for item in LedgerModel.scan(segment=segment, total_segments=total):
            if item.sk == ACCOUNT:
                yield {
                    "kind": "balance",
                    "customer_id": item.customer_id,
                    "balance": int(item.balance or 0),
                }
            elif item.sk.startswith(ENTRY_PREFIX):
                yield {
                    "kind": "entry",
                    "customer_id": item.customer_id,
                    "entry_type": item.entry_type,
                    "points": int(item.points or 0),
                    "at": (item.entry_at or "").partition("#")[0] or None,  # `<time>#<id>`
                }
    except PynamoDBException as exc:
        raise store_error(exc, "the ledger could not be read") from exc
