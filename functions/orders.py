"""Entry points of orders: parse the trigger, call the service, answer."""

from __future__ import annotations

from chalice import Response

from crm.api import endpoint, json_response
from crm.config import get_settings
from crm.domain.orders import (
    order_view,
)
from crm.services.orders import find_order


@endpoint
def get_order(order_id: str) -> Response:
    return json_response(order_view(find_order(order_id), get_settings().currency))
