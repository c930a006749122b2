"""Entry points of inventory: parse the trigger, call the service, answer."""

from __future__ import annotations

from typing import Any

from chalice import Response
from chalice.app import Request

from crm.api import endpoint, json_response, read_json_object
from crm.domain.inventory import parse_sku, parse_stock_levels
from crm.services import inventory


@endpoint
def get_inventory(sku: str) -> Response:
    return json_response(inventory.stock_of(parse_sku(sku)))


@endpoint
def put_inventory(request: Request, sku: str) -> Response:
    sku = parse_sku(sku)
    settings = parse_stock_levels(read_json_object(request), inventory.warehouse_names())
    return json_response(inventory.set_stock_levels(sku, settings))


@endpoint
def get_warehouses() -> Response:
    return json_response(inventory.warehouses_view())


def low_stock_job(event: Any, context: Any) -> dict[str, int]:
    return inventory.check_low_stock()
