"""Inventory: stock per SKU per warehouse, reservations for orders, low-stock alerts.

(Being built: see the issue 4 note.)"""

from __future__ import annotations

from typing import Any

from chalice import Response
from chalice.app import Request

from crm.api import endpoint


@endpoint
def get_inventory(sku: str) -> Response:
    raise NotImplementedError


@endpoint
def put_inventory(request: Request, sku: str) -> Response:
    raise NotImplementedError


def low_stock_job(event: Any, context: Any) -> dict[str, Any]:
    raise NotImplementedError
