"""Entry points of notifications: parse the request, call the service, answer."""

from __future__ import annotations

from chalice import Response
from chalice.app import Request

from crm.api import endpoint, json_response, page_limit, query
from crm.services import notifications


@endpoint
def list_notifications(request: Request, customer_id: str) -> Response:
    params = query(request)
    limit = page_limit(params)
    return json_response(notifications.notifications_of(customer_id, limit, params.get("cursor")))
