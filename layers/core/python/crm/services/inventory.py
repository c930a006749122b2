"""Inventory: stock per SKU per warehouse, reservations for orders, low-stock alerts.

Warehouses are configuration: `crm/data/warehouses.json`, replaced by `CRM_WAREHOUSES` (a JSON
list of the same shape) when set. The fulfilment workflow's tasks call `allocate_and_reserve`,
`release_order`, `ship_order` and `restock_order`; each is safe to run twice. Stock never
goes below zero: every decrease is a conditional write (see `crm.store.inventory`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

from crm.adapters import ops
from crm.clock import now_iso
from crm.config import ConfigError
from crm.domain.errors import Conflict, NotFound, OutOfStock, Unavailable, ValidationFailed
from crm.domain.inventory import (
    Allocation,
    StockLevel,
    StockSetting,
    Warehouse,
    allocate,
    china_regions,
    default_warehouses_json,
    destination,
    load_warehouses,
    merge_lines,
)
from crm.observability import logger, metrics
from crm.store.inventory import (
    HELD,
    RELEASED,
    RESERVED,
    Reservation,
    get_inventory_store,
)

ALLOCATION_ATTEMPTS = 10  # each lost race means another order took units: stock only shrinks
MAX_KEY = 200


# -- configuration ------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _warehouses_from(raw: str | None) -> tuple[Warehouse, ...]:
    try:
        return load_warehouses(raw if raw is not None else default_warehouses_json())
    except ValueError as exc:
        raise ConfigError(f"CRM_WAREHOUSES: {exc}") from exc


def warehouses() -> tuple[Warehouse, ...]:
    """The configured warehouses (`CRM_WAREHOUSES` or the packaged default)."""
    return _warehouses_from(os.environ.get("CRM_WAREHOUSES", "").strip() or None)


def warehouse_names() -> dict[str, str]:
    return {w.warehouse_id: w.name for w in warehouses()}


# -- views ------------------------------------------------------------------------------------


def inventory_view(sku: str, levels: Iterable[StockLevel]) -> dict[str, Any]:
    names = warehouse_names()
    rank = {w: i for i, w in enumerate(names)}
    rows = sorted(levels, key=lambda s: (rank.get(s.warehouse_id, len(rank)), s.warehouse_id))
    totals = {"on_hand": 0, "reserved": 0, "available": 0, "safety_stock": 0}
    for level in rows:
        totals["on_hand"] += level.on_hand
        totals["reserved"] += level.reserved
        totals["available"] += level.available
        totals["safety_stock"] += level.safety_stock
    return {
        "sku": sku,
        "warehouses": [
            {
                "warehouse_id": level.warehouse_id,
                "name": names.get(level.warehouse_id),
                "on_hand": level.on_hand,
                "reserved": level.reserved,
                "available": level.available,
                "safety_stock": level.safety_stock,
                "low_stock": level.below_safety,
            }
            for level in rows
        ],
        "totals": totals,
    }


def _allocation_view(order_id: str, allocation: dict[str, Any], replay: bool) -> dict[str, Any]:
    names = warehouse_names()
    parts = [
        {**part, "name": names.get(part["warehouse_id"])} for part in allocation.get("parts", [])
    ]
    return {
        "order_id": order_id,
        "status": "reserved",
        "split": bool(allocation.get("split")),
        "warehouse_id": parts[0]["warehouse_id"] if len(parts) == 1 else None,
        "parts": parts,
        "replay": replay,
    }


def _lines_view(reservations: Sequence[Reservation]) -> list[dict[str, Any]]:
    return [
        {"sku": r.sku, "warehouse_id": r.warehouse_id, "quantity": r.quantity} for r in reservations
    ]


# -- input ----------------------------------------------------------------------------------


def _order_lines(lines: Iterable[Any]) -> list[tuple[str, int]]:
    """Lines as `(sku, quantity)` pairs, `[sku, quantity]` lists (JSON) or
    `{"sku", "quantity"}` objects (an order's lines as stored)."""
    pairs: list[Any] = []
    for line in lines:
        if isinstance(line, dict):
            pairs.append((line.get("sku"), line.get("quantity")))
        else:
            pairs.append(tuple(line) if isinstance(line, list | tuple) else ())
    return merge_lines(pairs)


# -- stock levels (the API) ----------------------------------------------------------------------


def stock_of(sku: str) -> dict[str, Any]:
    """`GET /inventory/{sku}`: the SKU's stock in every warehouse that records it."""
    levels = get_inventory_store().levels([sku])
    if not levels:
        raise NotFound(f"no stock is recorded for SKU {sku}")
    return inventory_view(sku, levels)


def set_stock_levels(sku: str, settings: Sequence[StockSetting]) -> dict[str, Any]:
    """Set on hand (and safety stock) per warehouse. Each warehouse is its own conditional
    write; on hand below what is reserved for orders is refused (409) before anything is
    written."""
    store = get_inventory_store()
    current = {s.warehouse_id: s for s in store.levels([sku], [w.warehouse_id for w in settings])}
    refused = [
        {"warehouse_id": w.warehouse_id, "on_hand": w.on_hand, "reserved": level.reserved}
        for w in settings
        if (level := current.get(w.warehouse_id)) is not None and w.on_hand < level.reserved
    ]
    if refused:
        raise Conflict(
            "on_hand cannot be less than what is reserved for orders",
            code="stock_reserved",
            details=refused,
        )
    now = now_iso()
    for warehouse_id, on_hand, safety in settings:
        store.set_stock(sku, warehouse_id, on_hand, safety, now=now)
    return inventory_view(sku, store.levels([sku]))


def warehouses_view() -> dict[str, Any]:
    """`GET /warehouses` (the contract's): the configured warehouses."""
    return {"items": [w.view() for w in warehouses()], "next_cursor": None}


# -- the fulfilment workflow's tasks ------------------------------------------------------------


def allocate_and_reserve(
    order_id: str, lines: list[tuple[str, int]], shipping_address: dict[str, Any] | None
) -> dict[str, Any]:
    """Choose the warehouse(s) and reserve the stock. Idempotent: an order that already holds
    stock gets its reservation back (`replay: true`). A lost race (another order took the units
    between the read and the write) reads and allocates again; `OutOfStock` (details: each
    short SKU, requested and available) when the stock is not there, `AddressNotRoutable`
    when the destination cannot be placed."""
    store = get_inventory_store()
    held = store.order_stock(order_id)
    if held.state not in (None, RELEASED) and held.allocation is not None:
        return _allocation_view(order_id, held.allocation, replay=True)
    wanted = _order_lines(lines)
    dest = destination(shipping_address, china_regions())
    configured = warehouses()
    ids = [w.warehouse_id for w in configured]
    for _ in range(ALLOCATION_ATTEMPTS):
        stock = store.levels([sku for sku, _ in wanted], ids)
        allocation = allocate(wanted, stock, configured, dest)
        outcome = store.try_reserve(order_id, allocation)
        if outcome == RESERVED:
            metrics.add_metric(name="StockReserved", unit="Count", value=1)
            if allocation.split:
                metrics.add_metric(name="SplitAllocations", unit="Count", value=1)
            logger.info(
                "stock reserved",
                extra={"order_id": order_id, "parts": len(allocation.parts)},
            )
            return _allocation_view(order_id, allocation.view(), replay=False)
        if outcome == HELD:  # the same task, run twice at once, reserved first
            held = store.order_stock(order_id)
            if held.allocation is not None:
                return _allocation_view(order_id, held.allocation, replay=True)
        metrics.add_metric(name="StockReservationRetries", unit="Count", value=1)
    raise OutOfStock(
        "the stock kept being taken by other orders while this one was reserved",
        details=[{"sku": sku, "requested": qty} for sku, qty in wanted],
    )


def release_order(order_id: str) -> dict[str, Any]:
    """Give back what the order holds (cancelled, refunded before shipping, re-allocated).
    A second call releases nothing."""
    released = get_inventory_store().release_lines(order_id)
    logger.info("stock released", extra={"order_id": order_id, "lines": len(released)})
    return {
        "order_id": order_id,
        "released": sum(r.quantity for r in released),
        "lines": _lines_view(released),
    }


def ship_order(order_id: str) -> dict[str, Any]:
    """The order left the warehouse(s): reserved units leave on hand. A second call ships
    nothing."""
    shipped = get_inventory_store().ship_lines(order_id)
    logger.info("stock shipped", extra={"order_id": order_id, "lines": len(shipped)})
    return {
        "order_id": order_id,
        "shipped": sum(r.quantity for r in shipped),
        "lines": _lines_view(shipped),
    }


def restock_order(order_id: str, key: str, lines: list[tuple[str, int]]) -> dict[str, Any]:
    """Returned goods back on the shelf of the warehouse they were shipped from, at most what
    was shipped (the rest is listed in `not_restocked`). `key` (e.g. the refund id) makes it
    idempotent: the same key again changes nothing and answers the first result."""
    if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY:
        raise ValidationFailed(
            "a restock needs a key of 1 to 200 characters",
            details=[{"field": "key", "issue": "missing"}],
        )
    if not lines:  # e.g. a refund by amount: nothing to put back
        return {
            "order_id": order_id,
            "key": key.strip(),
            "restocked": [],
            "not_restocked": [],
            "replay": False,
        }
    result = get_inventory_store().restock(order_id, key.strip(), _order_lines(lines))
    logger.info(
        "stock restocked",
        extra={"order_id": order_id, "lines": len(result["restocked"]), "replay": result["replay"]},
    )
    return {"order_id": order_id, "key": key.strip(), **result}


# -- the scheduled job --------------------------------------------------------------------------


def check_low_stock() -> dict[str, int]:
    """One alert per breach: a level whose available stock is below its safety stock is
    alerted once and marked; the mark is cleared when it is back at or above, so the next
    breach alerts again. The mark is set before publishing (only the run that sets it
    publishes) and taken back if publishing fails, so the next run tries again."""
    store = get_inventory_store()
    counts = {
        "checked": 0,
        "below_safety": 0,
        "alerted": 0,
        "already_alerted": 0,
        "cleared": 0,
        "failed": 0,
    }
    now = now_iso()
    for level in store.all_levels():
        counts["checked"] += 1
        if not level.below_safety:
            if level.alerted and store.mark_alerted(level.sku, level.warehouse_id, False):
                counts["cleared"] += 1
            continue
        counts["below_safety"] += 1
        if level.alerted or not store.mark_alerted(level.sku, level.warehouse_id, True):
            counts["already_alerted"] += 1
            continue
        try:
            ops.publish(
                f"Low stock: {level.sku} at {level.warehouse_id}",
                {
                    "type": "low_stock",
                    "sku": level.sku,
                    "warehouse_id": level.warehouse_id,
                    "on_hand": level.on_hand,
                    "reserved": level.reserved,
                    "available": level.available,
                    "safety_stock": level.safety_stock,
                    "at": now,
                },
            )
        except Unavailable:
            store.mark_alerted(level.sku, level.warehouse_id, False)
            counts["failed"] += 1
            continue
        counts["alerted"] += 1
    metrics.add_metric(name="LowStockAlerts", unit="Count", value=counts["alerted"])
    logger.info("low stock check", extra=counts)
    return counts


# -- allocation inside a workflow step's own read and write -------------------------------------


def warehouse_ids() -> list[str]:
    return [w.warehouse_id for w in warehouses()]


def plan_allocation(
    lines: list[tuple[str, int]],
    levels: Iterable[StockLevel],
    shipping_address: dict[str, Any] | None,
) -> Allocation:
    """Which warehouse(s) ship what, from stock levels the caller read (the fulfilment step
    reads them with the order's other items, and reserves in the order's own write).
    `OutOfStock` / `AddressNotRoutable` as `allocate_and_reserve`."""
    wanted = _order_lines(lines)
    return allocate(wanted, levels, warehouses(), destination(shipping_address, china_regions()))


def allocation_view(order_id: str, allocation: dict[str, Any], *, replay: bool) -> dict[str, Any]:
    return _allocation_view(order_id, allocation, replay)


def reserved(order_id: str, allocation: Allocation) -> None:
    """Count and log a reservation made in a workflow step's own write."""
    metrics.add_metric(name="StockReserved", unit="Count", value=1)
    if allocation.split:
        metrics.add_metric(name="SplitAllocations", unit="Count", value=1)
    logger.info("stock reserved", extra={"order_id": order_id, "parts": len(allocation.parts)})
