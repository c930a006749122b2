"""Entry points of profiles: parse the trigger, call the service, answer."""

from __future__ import annotations

from chalice import Response
from chalice.app import Request

from crm.api import endpoint, json_response, page_limit, query, read_json, read_json_object
from crm.config import get_settings
from crm.domain.customers import (
    ACTIVE,
    MERGED,
    parse_profile,
    profile_view,
    refuse_if_erased,
)
from crm.domain.errors import NotFound, ValidationFailed
from crm.domain.identity import normalise_email, normalise_external_ids, normalise_phone
from crm.observability import metrics
from crm.services.profiles import (
    BUILTIN_SEGMENTS,
    _today,
    customer_360,
    erase_customer,
    export_view,
    merge_customers,
    patch_customer,
    upsert_customer,
)
from crm.store.customers import (
    get_customer_repository,
)


@endpoint
def upsert(request: Request) -> Response:
    data = parse_profile(
        read_json(request),
        default_country=get_settings().default_country,
        today=_today(),
        partial=False,
    )
    customer, created = upsert_customer(data, get_customer_repository())
    metrics.add_metric(
        name="CustomersCreated" if created else "CustomersUpdated", unit="Count", value=1
    )
    return json_response(profile_view(customer), 201 if created else 200)


@endpoint
def find(request: Request) -> Response:
    params = query(request)
    page_limit(params)  # validated for every filter; an identity matches one profile at most
    repo = get_customer_repository()
    settings = get_settings()
    if "segment" in params:
        if params["segment"] not in BUILTIN_SEGMENTS:
            raise NotFound(f"segment {params['segment']} does not exist")
        # Memberships are written by the segmentation job; none exist before its first run.
        return json_response({"items": [], "next_cursor": None})
    if "email" in params:
        key = "email:" + normalise_email(params["email"])
    elif "phone" in params:
        key = "phone:" + normalise_phone(params["phone"], settings.default_country)
    elif "external_id" in params:
        source, _, value = params["external_id"].partition(":")
        ids = normalise_external_ids({source: value})
        key = f"ext:{source}:{ids[source]}"
    else:
        raise ValidationFailed(
            "give one of email, phone, external_id or segment",
            details=[{"field": "query", "issue": "missing_filter"}],
        )
    owner = repo.owner_of(key)
    customer = repo.get(owner) if owner else None
    items = [profile_view(customer)] if customer and customer.status == ACTIVE else []
    return json_response({"items": items, "next_cursor": None})


@endpoint
def get_customer(customer_id: str) -> Response:
    customer = get_customer_repository().get(customer_id)
    if customer is None:
        raise NotFound(f"customer {customer_id} does not exist")
    if customer.status == MERGED:
        return json_response(
            {"customer_id": customer_id, "status": MERGED, "merged_into": customer.merged_into}
        )
    refuse_if_erased(customer)
    return json_response(customer_360(customer))


@endpoint
def patch(request: Request, customer_id: str) -> Response:
    data = parse_profile(
        read_json_object(request),
        default_country=get_settings().default_country,
        today=_today(),
        partial=True,
    )
    return json_response(profile_view(patch_customer(customer_id, data, get_customer_repository())))


@endpoint
def merge(request: Request, customer_id: str) -> Response:
    body = read_json_object(request)
    source_id = body.get("source_id")
    if not isinstance(source_id, str) or not source_id.strip():
        raise ValidationFailed(
            "source_id is required", details=[{"field": "source_id", "issue": "required"}]
        )
    merged = merge_customers(customer_id, source_id.strip(), get_customer_repository())
    return json_response(profile_view(merged))


@endpoint
def export(customer_id: str) -> Response:
    customer = get_customer_repository().get(customer_id)
    if customer is None:
        raise NotFound(f"customer {customer_id} does not exist")
    refuse_if_erased(customer)
    return json_response(export_view(customer))


@endpoint
def delete(customer_id: str) -> Response:
    return json_response(erase_customer(customer_id, get_customer_repository()))
