"""Stock levels from a dropped file: one row per SKU and warehouse.

Columns `sku`, `warehouse` (or `warehouse_id`), `on_hand`, `safety_stock` (optional: kept as
it is when empty). A row sets what is on hand, exactly like `PUT /inventory/{sku}`: stock
reserved for orders is kept, and a row that would put less on hand than is reserved fails
with that reason. A batch's current levels are read in one BatchGetItem; only rows that change
something are written (one conditional write each, so a reservation made meanwhile is never
lost). The same file again writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from crm.clock import now_iso
from crm.domain import import_files
from crm.domain.errors import CrmError, ValidationFailed
from crm.domain.import_files import Row
from crm.domain.inventory import parse_sku, parse_stock_levels
from crm.domain.parsing import ascii_int
from crm.services.import_kinds import CREATED, FAILED, UNCHANGED, UPDATED, Outcome, Unit
from crm.services.inventory import warehouse_names
from crm.store.inventory import get_inventory_store

BATCH_ROWS = 25


def _number(value: Any) -> Any:
    """A count as the API takes it: "12" -> 12 (ASCII digits only); anything else, such as
    "²" or a full-width "12", is left for validation, which fails the row."""
    if isinstance(value, str):
        text = value.strip().lstrip("'")
        if text == "":
            return None
        number = ascii_int(text)
        return value if number is None else number
    return value


def stock_row(row: Row) -> tuple[str, str, int, int | None]:
    """(sku, warehouse id, on hand, safety stock or None) of one row; ValidationFailed else."""
    fields = {str(k).strip().lower(): v for k, v in (row.fields or {}).items()}
    sku = parse_sku(str(fields.get("sku") or ""))
    body = {
        "warehouse": str(fields.get("warehouse") or fields.get("warehouse_id") or "").strip(),
        "on_hand": _number(fields.get("on_hand")),
    }
    safety = _number(fields.get("safety_stock"))
    if safety is not None:
        body["safety_stock"] = safety
    ((warehouse, on_hand, safety_stock),) = parse_stock_levels(body, warehouse_names())
    return sku, warehouse, on_hand, safety_stock


def units(rows: Iterator[Row]) -> Iterator[Unit]:
    for row in rows:
        if row.problem:
            yield Unit((row,), problem=row.problem)
            continue
        try:
            yield Unit((row,), stock_row(row))
        except ValidationFailed as exc:
            yield Unit((row,), problem=import_files.failure_reason(exc))


def write(batch: list[Unit]) -> list[Outcome]:
    store = get_inventory_store()
    now = now_iso()
    wanted = [unit.value for unit in batch]
    current = {
        (level.sku, level.warehouse_id): level
        for level in store.levels({w[0] for w in wanted}, sorted({w[1] for w in wanted}))
    }
    results: list[Outcome] = []
    for sku, warehouse, on_hand, safety in wanted:
        level = current.get((sku, warehouse))
        if level is not None and level.on_hand == on_hand and safety in (None, level.safety_stock):
            results.append(Outcome(UNCHANGED))
            continue
        try:
            current[(sku, warehouse)] = store.set_stock(sku, warehouse, on_hand, safety, now=now)
        except CrmError as exc:
            results.append(Outcome(FAILED, exc.message))
            continue
        results.append(Outcome(CREATED if level is None else UPDATED))
    return results
