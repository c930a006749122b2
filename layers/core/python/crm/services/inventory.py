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
from crm.domain.errors import OutOfStock, Unavailable, ValidationFailed
from crm.domain.inventory import (
    MAX_QUANTITY,
    Allocation,
    StockLevel,
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
    ORDER_PREFIX,
    RELEASED,
    RESERVED,
    Reservation,
    get_inventory_store,
)

ALLOCATION_ATTEMPTS = 10  # each lost race means another order took units: stock only shrinks
MAX_SKU = 128
MAX_KEY = 200
STOCK_FIELDS = {"warehouse_id", "warehouse", "on_hand", "safety_stock"}


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


def _check_sku(sku: str) -> str:
    sku = (sku or "").strip()
    if (
        not sku
        or len(sku) > MAX_SKU
        or sku.startswith(ORDER_PREFIX)
        or any(ord(ch) < 32 for ch in sku)
    ):
        raise ValidationFailed(
            "the SKU must be 1 to 128 printable characters, not starting with 'order#'",
            details=[{"field": "sku", "issue": "invalid_value"}],
        )
    return sku


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_QUANTITY


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def parse_stock_body(body: dict[str, Any]) -> list[tuple[str, int, int | None]]:
    """`{"warehouses": [{"warehouse_id", "on_hand", "safety_stock"?}, ...]}`, or the contract's
    single form `{"warehouse", "on_hand", "safety_stock"?}`; `warehouse` and `warehouse_id` are
    the same field. Every problem is reported at once."""
    problems: list[dict[str, Any]] = []
    if "warehouses" in body:
        problems += [
            {"field": k, "issue": "unknown_field"} for k in sorted(set(body) - {"warehouses"})
        ]
        entries = body["warehouses"]
        if not isinstance(entries, list) or not entries:
            raise ValidationFailed(
                "warehouses must be a non-empty list",
                details=[{"field": "warehouses", "issue": "wrong_type"}, *problems],
            )
        prefixed = [(f"warehouses[{i}].", e) for i, e in enumerate(entries)]
    else:
        prefixed = [("", body)]
    known = warehouse_names()
    parsed: list[tuple[str, int, int | None]] = []
    seen: set[str] = set()
    for prefix, entry in prefixed:
        if not isinstance(entry, dict):
            problems.append({"field": prefix.rstrip("."), "issue": "wrong_type"})
            continue
        problems += [
            {"field": prefix + k, "issue": "unknown_field"}
            for k in sorted(set(entry) - STOCK_FIELDS)
        ]
        warehouse_id = entry.get("warehouse_id", entry.get("warehouse"))
        on_hand, safety = entry.get("on_hand"), entry.get("safety_stock")
        ok = True
        if not isinstance(warehouse_id, str) or not warehouse_id.strip():
            problems.append({"field": prefix + "warehouse_id", "issue": "missing"})
            ok = False
        elif warehouse_id not in known:
            problems.append(
                {
                    "field": prefix + "warehouse_id",
                    "issue": "unknown_warehouse",
                    "known": sorted(known),
                }
            )
            ok = False
        elif warehouse_id in seen:
            problems.append({"field": prefix + "warehouse_id", "issue": "duplicate"})
            ok = False
        if "on_hand" not in entry:
            problems.append({"field": prefix + "on_hand", "issue": "missing"})
            ok = False
        elif not _count(on_hand):
            problems.append({"field": prefix + "on_hand", "issue": "invalid_value"})
            ok = False
        if safety is not None and not _count(safety):
            problems.append({"field": prefix + "safety_stock", "issue": "invalid_value"})
            ok = False
        if ok:
            seen.add(str(warehouse_id))
            parsed.append((str(warehouse_id), int(on_hand or 0), _optional_int(safety)))
    if problems:
        raise ValidationFailed(
            "the stock levels are invalid (on_hand and safety_stock are integers from 0, "
            "warehouse ids are configured ones)",
            details=problems,
        )
    return parsed


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


# -- routes -------------------------------------------------------------------------------------


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
