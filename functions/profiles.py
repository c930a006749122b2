"""Entry points of profiles: parse the request, call the service, answer."""

from __future__ import annotations

from typing import Any

from chalice import Response
from chalice.app import Request

from crm import clock
from crm.api import endpoint, json_response, page_limit, query, read_json, read_json_object
from crm.config import get_settings
from crm.domain.customers import ProfileInput, parse_profile
from crm.domain.errors import ValidationFailed
from crm.services import profiles

FILTERS = ("segment", "email", "phone", "external_id")


def _profile(body: Any, *, partial: bool) -> ProfileInput:
    return parse_profile(
        body, default_country=get_settings().default_country, today=clock.today(), partial=partial
    )


@endpoint
def upsert(request: Request) -> Response:
    profile, created = profiles.upsert_profile(_profile(read_json(request), partial=False))
    return json_response(profile, 201 if created else 200)


@endpoint
def find(request: Request) -> Response:
    params = query(request)
    limit = page_limit(params)  # validated for every filter; an identity matches one at most
    filters = {name: params[name] for name in FILTERS if name in params}
    return json_response(
        profiles.find_customers(**filters, limit=limit, cursor=params.get("cursor"))
    )


@endpoint
def get_customer(customer_id: str) -> Response:
    return json_response(profiles.customer_record(customer_id))


@endpoint
def patch(request: Request, customer_id: str) -> Response:
    data = _profile(read_json_object(request), partial=True)
    return json_response(profiles.patch_customer(customer_id, data))


@endpoint
def merge(request: Request, customer_id: str) -> Response:
    source_id = read_json_object(request).get("source_id")
    if not isinstance(source_id, str) or not source_id.strip():
        raise ValidationFailed(
            "source_id is required", details=[{"field": "source_id", "issue": "required"}]
        )
    return json_response(profiles.merge_customers(customer_id, source_id.strip()))


@endpoint
def export(customer_id: str) -> Response:
    return json_response(profiles.export_customer(customer_id))


@endpoint
def delete(customer_id: str) -> Response:
    return json_response(profiles.erase_customer(customer_id))


@endpoint
def list_orders(request: Request, customer_id: str) -> Response:
    params = query(request)
    return json_response(profiles.orders_of(customer_id, page_limit(params), params.get("cursor")))
