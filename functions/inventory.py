"""Entry points of inventory: parse the trigger, call the service, answer."""

from __future__ import annotations

from typing import Any

from chalice import Response
from chalice.app import Request

from crm.api import endpoint, json_response, read_json_object
from crm.clock import now_iso
from crm.domain.errors import Conflict, NotFound
from crm.services.inventory import (
    _check_sku,
    check_low_stock,
    inventory_view,
    parse_stock_body,
    warehouses,
)
from crm.store.inventory import (
    get_inventory_store,
)


@endpoint
def get_inventory(sku: str) -> Response:
    sku = _check_sku(sku)
    levels = get_inventory_store().levels([sku])
    if not levels:
        raise NotFound(f"no stock is recorded for SKU {sku}")
    return json_response(inventory_view(sku, levels))


@endpoint
def put_inventory(request: Request, sku: str) -> Response:
    """Set on hand (and safety stock) per warehouse. Each warehouse is its own conditional
    write; on hand below what is reserved for orders is refused (409) before anything is
    written."""
    sku = _check_sku(sku)
    entries = parse_stock_body(read_json_object(request))
    store = get_inventory_store()
    current = {s.warehouse_id: s for s in store.levels([sku], [e[0] for e in entries])}
    refused = [
        {"warehouse_id": w, "on_hand": on_hand, "reserved": current[w].reserved}
        for w, on_hand, _ in entries
        if w in current and on_hand < current[w].reserved
    ]
    if refused:
        raise Conflict(
            "on_hand cannot be less than what is reserved for orders",
            code="stock_reserved",
            details=refused,
        )
    now = now_iso()
    for warehouse_id, on_hand, safety in entries:
        store.set_stock(sku, warehouse_id, on_hand, safety, now=now)
    return json_response(inventory_view(sku, store.levels([sku])))


@endpoint
def get_warehouses() -> Response:
    """`GET /warehouses` (the contract's): the configured warehouses."""
    items = [w.view() for w in warehouses()]
    return json_response({"items": items, "next_cursor": None})


def low_stock_job(event: Any, context: Any) -> dict[str, Any]:
    return check_low_stock()
