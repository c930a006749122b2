"""Entry points of orders: parse the trigger, call the service, answer."""

from __future__ import annotations

from chalice import Response

from crm.api import endpoint, json_response
from crm.services.orders import order_details


@endpoint
def get_order(order_id: str) -> Response:
    return json_response(order_details(order_id))
