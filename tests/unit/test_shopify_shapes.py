"""The shape of each Shopify topic's payload (`crm.domain.shopify.check_shape`): Shopify signs
the body only, so a body must be what the topic it arrives under sends."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from crm.domain.errors import ValidationFailed
from crm.domain.shopify import SHAPES, check_shape, customer_profile, data_request_id

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "shopify"
ORDERS = ("order_create", "order_paid", "order_cancelled", "order_fulfilled", "order_guest")
OWN_TOPICS = {
    **{name: [t for t in SHAPES if t.startswith("orders/")] for name in ORDERS},
    "refund_create": ["refunds/create"],
    "customer_create": ["customers/create", "customers/update"],
    "customers_redact": ["customers/redact"],
    "customers_data_request": ["customers/data_request"],
}


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


@pytest.mark.parametrize(
    ("name", "topic"), [(n, t) for n, topics in OWN_TOPICS.items() for t in topics]
)
def test_shopifys_own_payloads_pass_under_their_own_topics(name, topic):
    check_shape(topic, load(name), "demo-shop.myshopify.com")


@pytest.mark.parametrize(
    ("name", "topic"),
    [(n, t) for n, topics in OWN_TOPICS.items() for t in SHAPES if t not in topics],
)
def test_every_payload_is_refused_under_every_topic_of_another_shape(name, topic):
    with pytest.raises(ValidationFailed) as refused:
        check_shape(topic, load(name))
    assert refused.value.code == "payload_topic_mismatch"
    assert refused.value.details


def test_a_resource_id_of_another_kind_is_a_mismatch():
    body = {**load("customer_create"), "admin_graphql_api_id": "gid://shopify/Product/1"}
    with pytest.raises(ValidationFailed) as refused:
        check_shape("customers/update", body)
    assert {"field": "admin_graphql_api_id", "issue": "another_resource"} in (refused.value.details)


def test_the_shop_in_the_body_must_be_the_shop_in_the_header():
    body = load("customers_redact")
    check_shape("customers/redact", body, "DEMO-SHOP.myshopify.com")  # case does not matter
    check_shape("customers/redact", body, None)  # no header: nothing to compare
    with pytest.raises(ValidationFailed) as refused:
        check_shape("customers/redact", body, "other.myshopify.com")
    assert refused.value.code == "shop_domain_mismatch"


def test_an_unknown_topic_has_no_shape_to_check():
    check_shape("products/create", {"id": 1, "title": "x"})


def test_a_customer_payload_gives_its_profile_and_the_platforms_times():
    customer = customer_profile(
        {
            **load("customer_create"),
            "sms_marketing_consent": {"state": "unsubscribed", "consent_updated_at": None},
        }
    )
    assert customer.body["external_ids"] == {"shopify": "706405506930370084"}
    assert customer.body["consents"] == {"email": True, "sms": False}
    assert customer.updated_at == "2026-11-21T00:00:00+00:00"
    assert customer.consent_at == {
        "email": "2026-11-21T00:00:00+00:00",
        "sms": "2026-11-21T00:00:00+00:00",  # no time of its own: the customer's
    }


@pytest.mark.parametrize("value", ["../../x", "a/b", "9 9", "x" * 300, -4, 0, 1.5, True, None])
def test_a_data_request_id_must_be_a_shopify_id(value):
    body = {**load("customers_data_request"), "data_request": {"id": value}}
    with pytest.raises(ValidationFailed) as refused:
        data_request_id(body)
    assert refused.value.details[0]["field"] == "data_request.id"


def test_a_data_request_id_is_read():
    assert data_request_id(load("customers_data_request")) == "9999"
    assert data_request_id({"data_request": {"id": "0042"}}) == "42"
