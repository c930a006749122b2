"""Entry points of notifications: parse the trigger, call the service, answer."""

from __future__ import annotations

from chalice import Response
from chalice.app import Request

from crm.api import endpoint, json_response, page_limit, query
from crm.domain.customers import refuse_if_erased
from crm.domain.errors import NotFound
from crm.services.notifications import notification_view
from crm.store.customers import get_customer_repository
from crm.store.notifications import get_notification_store


@endpoint
def list_notifications(request: Request, customer_id: str) -> Response:
    params = query(request)
    limit = page_limit(params)
    customer = get_customer_repository().get(customer_id)
    if customer is None:
        raise NotFound(f"customer {customer_id} does not exist")
    refuse_if_erased(customer)
    records, cursor = get_notification_store().list(customer_id, limit, params.get("cursor"))
    return json_response({"items": [notification_view(r) for r in records], "next_cursor": cursor})
