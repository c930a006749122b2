"""Order webhooks, the order record and the points they earn, through the real app against
moto: signatures, exactly-once, reordering, refunds, customer topics."""

from __future__ import annotations

import json
import time

import boto3
import pytest

from tests.conftest import OPERATOR
from tests.support.shopify import (
    WEBHOOK_SECRET,
    Delivery,
    deliver,
    generic_headers,
    order_payload,
    refund_payload,
)


def send(api, delivery: Delivery, headers=None):
    return api.http.post(
        "/webhooks/shopify", headers=headers or delivery.headers(), body=delivery.body
    )


def get(api, path):
    response = api.http.get(path, headers=OPERATOR)
    return response.status_code, json.loads(response.body)


def points(api, customer_id):
    status, body = get(api, f"/customers/{customer_id}/points")
    assert status == 200, body
    return body


def count_items(table: str) -> int:
    return boto3.client("dynamodb", region_name="us-east-1").scan(TableName=table, Select="COUNT")[
        "Count"
    ]


PAID = dict(financial_status="paid", updated_at="2026-11-20T10:05:00+08:00")


def test_a_paid_order_becomes_one_order_a_profile_stats_and_pending_points(api):
    created = send(api, deliver("orders/create", order_payload(1001, email="Guest@Example.com")))
    assert created.status_code == 200, created.body
    paid = send(api, deliver("orders/paid", order_payload(1001, email="guest@example.com", **PAID)))
    assert json.loads(paid.body)["status"] == "processed"

    status, order = get(api, "/orders/1001")
    assert status == 200
    assert order["status"] == "paid" and order["order_id"] == "ord_shopify_1001"
    assert order["totals"]["total"] == {"amount": "210.00", "currency": "CNY"}
    assert [h["status"] for h in order["status_history"]] == ["pending", "paid"]
    assert order["lines"][0]["sku"] == "SKU-1" and order["lines"][0]["quantity"] == 2
    assert get(api, "/orders/ord_shopify_1001")[1]["order_id"] == "ord_shopify_1001"

    customer_id = order["customer_id"]
    status, view = get(api, f"/customers/{customer_id}")
    assert view["email"] == "guest@example.com"
    assert view["stats"]["orders_count"] == 1
    assert view["stats"]["total_spent"]["amount"] == "210.00"
    assert view["points"] == {"balance": 0, "pending": 200, "expiring": []}
    assert [o["order_id"] for o in view["recent_orders"]] == ["ord_shopify_1001"]
    ledger = points(api, customer_id)
    assert [(e["type"], e["points"]) for e in ledger["entries"]] == [("earn", 200)]
    assert ledger["balance"] == 0 and ledger["pending"] == 200


def test_a_repeated_delivery_is_answered_200_and_changes_nothing(api):
    delivery = deliver("orders/paid", order_payload(1002, **PAID))
    assert json.loads(send(api, delivery).body)["status"] == "processed"
    before = count_items("crm-local-ledger"), get(api, "/orders/1002")[1]
    again = send(api, delivery)
    assert again.status_code == 200 and json.loads(again.body)["status"] == "duplicate"
    assert (count_items("crm-local-ledger"), get(api, "/orders/1002")[1]) == before


def test_facts_survive_reordering_and_details_come_from_the_newest_event(api):
    newer = order_payload(
        1003,
        lines=[("SKU-9", 1, "50.00")],
        updated_at="2026-11-21T09:00:00+08:00",
        **{"financial_status": "paid"},
    )
    older_pending = order_payload(1003, updated_at="2026-11-20T09:00:00+08:00")
    send(api, deliver("orders/updated", newer))
    send(api, deliver("orders/create", older_pending))
    order = get(api, "/orders/1003")[1]
    assert order["status"] == "paid"
    assert [line["sku"] for line in order["lines"]] == ["SKU-9"]
    cancelled = order_payload(
        1003, cancelled_at="2026-11-20T12:00:00+08:00", updated_at="2026-11-20T12:00:00+08:00"
    )
    send(api, deliver("orders/cancelled", cancelled))
    send(api, deliver("orders/updated", newer))  # an older view of the world arrives late
    assert get(api, "/orders/1003")[1]["status"] == "cancelled"


def test_delivery_activates_points_and_a_30_percent_refund_reverses_30_percent(api):
    order = order_payload(1004, lines=[("SKU-1", 1, "1000.00")], **PAID)
    send(api, deliver("orders/paid", order))
    fulfilled = dict(order, fulfillment_status="fulfilled", updated_at="2026-11-21T10:00:00+08:00")
    send(api, deliver("orders/fulfilled", fulfilled))
    customer_id = get(api, "/orders/1004")[1]["customer_id"]
    ledger = points(api, customer_id)
    assert (ledger["balance"], ledger["pending"]) == (1000, 0)
    assert ledger["lots"][0]["expires_at"].startswith("2027-11-21")

    send(api, deliver("refunds/create", refund_payload(501, 1004, amount="300.00")))
    order_view = get(api, "/orders/1004")[1]
    assert order_view["status"] == "partially_refunded"
    assert order_view["points"] == {"earned": 1000, "reversed": 300, "status": "active"}
    ledger = points(api, customer_id)
    assert ledger["balance"] == 700
    assert ("reverse", -300) in [(e["type"], e["points"]) for e in ledger["entries"]]
    view = get(api, f"/customers/{customer_id}")[1]
    assert view["stats"]["total_spent"]["amount"] == "710.00"


def test_cancelling_a_paid_order_reverses_its_pending_points_and_its_stats(api):
    send(api, deliver("orders/paid", order_payload(1005, email="c@example.com", **PAID)))
    cancelled = order_payload(
        1005,
        email="c@example.com",
        financial_status="refunded",
        cancelled_at="2026-11-20T11:00:00+08:00",
        updated_at="2026-11-20T11:00:00+08:00",
    )
    send(api, deliver("orders/cancelled", cancelled))
    order = get(api, "/orders/1005")[1]
    assert order["status"] == "cancelled"
    view = get(api, f"/customers/{order['customer_id']}")[1]
    assert view["stats"]["orders_count"] == 0 and view["points"]["pending"] == 0
    types = [e["type"] for e in points(api, order["customer_id"])["entries"]]
    assert sorted(types) == ["earn", "reverse"]


def test_guest_checkouts_land_on_the_same_profile_by_email_or_phone(api):
    profile = api.http.post(
        "/customers",
        headers={**OPERATOR, "Content-Type": "application/json"},
        body=json.dumps({"email": "known@example.com", "phone": "13900139000"}),
    )
    customer_id = json.loads(profile.body)["customer_id"]
    send(api, deliver("orders/paid", order_payload(1006, email=" KNOWN@example.com", **PAID)))
    send(
        api,
        deliver("orders/paid", order_payload(1007, email=None, phone="+86 139 0013 9000", **PAID)),
    )
    assert get(api, "/orders/1006")[1]["customer_id"] == customer_id
    assert get(api, "/orders/1007")[1]["customer_id"] == customer_id
    assert get(api, f"/customers/{customer_id}")[1]["stats"]["orders_count"] == 2


# -- refused ------------------------------------------------------------------------------------


def test_forged_missing_or_tampered_signatures_are_401_and_store_nothing(api):
    delivery = deliver("orders/paid", order_payload(1010, **PAID))
    forged = dict(delivery.headers(secret="not-the-secret"))
    missing = {k: v for k, v in delivery.headers().items() if k != "X-Shopify-Hmac-Sha256"}
    for headers in (forged, missing):
        answer = send(api, delivery, headers)
        assert answer.status_code == 401
        assert json.loads(answer.body)["error"]["code"] == "unauthenticated"
    tampered = api.http.post(
        "/webhooks/shopify",
        headers=delivery.headers(),
        body=delivery.body.replace(b'"100.00"', b'"1.00"'),
    )
    assert tampered.status_code == 401
    assert get(api, "/orders/1010")[0] == 404


def test_malformed_json_with_a_valid_signature_is_400_and_stores_nothing(api):
    raw = b'{"id": 1011, "line_items": ['
    broken = Delivery("orders/create", raw, "w-broken")
    answer = send(api, broken)
    assert answer.status_code == 400
    assert count_items("crm-local-orders") == 0 and count_items("crm-local-deliveries") == 0


def test_invalid_content_is_422_and_an_unknown_topic_is_200_ignored(api):
    invalid = deliver("orders/create", {"id": "x", "line_items": "nope"})
    answer = send(api, invalid)
    assert answer.status_code == 422
    assert json.loads(answer.body)["error"]["details"]
    ignored = send(api, deliver("products/update", {"id": 1}))
    assert ignored.status_code == 200 and json.loads(ignored.body)["status"] == "ignored"
    assert count_items("crm-local-orders") == 0


def test_the_previous_secret_is_accepted_during_rotation(api, monkeypatch):
    delivery = deliver("orders/create", order_payload(1012))
    assert send(api, delivery, delivery.headers(secret="old-secret")).status_code == 401
    monkeypatch.setenv("CRM_SHOPIFY_SECRET_PREVIOUS", "old-secret")
    assert send(api, delivery, delivery.headers(secret="old-secret")).status_code == 200


# -- the generic format -------------------------------------------------------------------------


def generic_event(event_id: str, kind: str, **order) -> bytes:
    body = {
        "event_id": event_id,
        "type": kind,
        "occurred_at": "2026-11-20T10:00:00+00:00",
        "source": "woocommerce",
        "order": {
            "id": "W-1",
            "created_at": "2026-11-20T10:00:00+00:00",
            "updated_at": "2026-11-20T10:00:00+00:00",
            "currency": "CNY",
            "subtotal": "300.00",
            "shipping": "0.00",
            "total": "300.00",
            "customer": {"id": "77", "email": "woo@example.com"},
            "lines": [{"id": "L1", "sku": "SKU-W", "quantity": 3, "price": "100.00"}],
            **order,
        },
    }
    return json.dumps(body).encode()


def test_a_generic_event_signed_now_is_recorded_and_one_signed_301_s_ago_is_401(api):
    body = generic_event("evt-1", "order.paid", paid_at="2026-11-20T10:01:00+00:00")
    stale = api.http.post(
        "/webhooks/orders", headers=generic_headers(body, int(time.time()) - 301), body=body
    )
    assert stale.status_code == 401
    fresh = api.http.post(
        "/webhooks/orders", headers=generic_headers(body, int(time.time())), body=body
    )
    assert fresh.status_code == 200, fresh.body
    order = get(api, "/orders/ord_woocommerce_W-1")[1]
    assert order["status"] == "paid" and order["points"]["earned"] == 300
    again = api.http.post(
        "/webhooks/orders", headers=generic_headers(body, int(time.time())), body=body
    )
    assert json.loads(again.body)["status"] == "duplicate"


# -- a secret per generic source ----------------------------------------------------------------

WOO_SECRET, MAGENTO_SECRET = "woo-own-secret", "magento-own-secret"


def post_generic(api, body: bytes, secret: str = WEBHOOK_SECRET):
    headers = generic_headers(body, int(time.time()), secret)
    return api.http.post("/webhooks/orders", headers=headers, body=body)


def for_source(body: bytes, source: str) -> bytes:
    return body.replace(b'"source": "woocommerce"', f'"source": "{source}"'.encode())


def test_a_source_with_its_own_secret_is_verified_with_it_alone(api, monkeypatch):
    # Given woocommerce and magento with secrets of their own, prestashop without
    monkeypatch.setenv("CRM_WEBHOOK_SECRET_WOOCOMMERCE", WOO_SECRET)
    monkeypatch.setenv("CRM_WEBHOOK_SECRET_MAGENTO", MAGENTO_SECRET)
    body = generic_event("evt-own-1", "order.paid", paid_at="2026-11-20T10:01:00+00:00")
    # When a woocommerce order is signed with the shared secret, or with magento's
    for secret in (WEBHOOK_SECRET, MAGENTO_SECRET):
        answer = post_generic(api, body, secret)
        # Then it is refused as unauthenticated, and nothing is stored
        assert answer.status_code == 401, answer.body
        assert json.loads(answer.body)["error"]["code"] == "unauthenticated"
    # Even when it breaks a rule: a wrong secret is 401, whatever the content
    invalid = generic_event("evt-own-2", "order.paid", subtotal=300)  # money as a number
    assert post_generic(api, invalid).status_code == 401
    assert post_generic(api, invalid, WOO_SECRET).status_code == 422
    assert count_items("crm-local-orders") == 0 and count_items("crm-local-deliveries") == 0
    # When it is signed with its own secret, Then it is recorded
    accepted = post_generic(api, body, WOO_SECRET)
    assert accepted.status_code == 200, accepted.body
    assert get(api, "/orders/ord_woocommerce_W-1")[1]["status"] == "paid"
    # And a source without a secret of its own keeps the shared one, and only it
    presta = for_source(generic_event("evt-own-3", "order.created"), "prestashop")
    assert post_generic(api, presta, WOO_SECRET).status_code == 401
    assert post_generic(api, presta).status_code == 200
    assert get(api, "/orders/ord_prestashop_W-1")[0] == 200


def test_each_source_rotates_its_own_secret(api, monkeypatch):
    # Given woocommerce rotating its secret, and the shared secret rotating too
    monkeypatch.setenv("CRM_WEBHOOK_SECRET_WOOCOMMERCE", "woo-new")
    monkeypatch.setenv("CRM_WEBHOOK_SECRET_WOOCOMMERCE_PREVIOUS", "woo-old")
    monkeypatch.setenv("CRM_WEBHOOK_SECRET_PREVIOUS", "shared-old")
    bodies = [generic_event(f"evt-rot-{n}", "order.created") for n in range(3)]
    # Then its new and previous secrets are accepted, the shared previous one is not
    assert post_generic(api, bodies[0], "woo-old").status_code == 200
    assert post_generic(api, bodies[1], "woo-new").status_code == 200
    assert post_generic(api, bodies[2], "shared-old").status_code == 401


def test_in_the_cloud_secrets_are_read_after_the_header_and_absence_is_cached(api, monkeypatch):
    from aws_lambda_powertools.utilities import parameters
    from aws_lambda_powertools.utilities.parameters import base

    import crm.config
    from bench.calls import CallCounter

    # Given the secrets in SSM, woocommerce with its own, and a cold start in that environment
    ssm = boto3.client("ssm", region_name="us-east-1")
    for name, value in (("webhook_secret", "cloud-shared"), ("webhook_secret_woocommerce", "w")):
        ssm.put_parameter(Name=f"/crm/local/{name}", Value=value, Type="SecureString")
    monkeypatch.setenv("CRM_SECRETS_SOURCE", "ssm:/crm/local/")
    crm.config.get_settings.cache_clear()
    assert crm.config.get_settings().secrets_source == "ssm:/crm/local/"
    parameters.clear_caches()
    monkeypatch.setattr(base, "DEFAULT_PROVIDERS", {})  # a client the counter sees
    monkeypatch.setattr(crm.config, "_previous_absent_until", {})
    woo = generic_event("evt-cloud-1", "order.created")
    magento = [
        for_source(generic_event(f"evt-cloud-{n}", "order.created"), "magento") for n in (2, 3)
    ]
    with CallCounter() as counter:
        # When a body comes unsigned, Then it is refused before any secret is read
        with counter.measure() as unsigned:
            answer = api.http.post("/webhooks/orders", body=woo)
        # When two magento orders come (no secret of its own), Then SSM is asked once per name
        with counter.measure() as first:
            assert post_generic(api, magento[0], "cloud-shared").status_code == 200
        with counter.measure() as second:
            assert post_generic(api, magento[1], "cloud-shared").status_code == 200
        # And woocommerce's own secret is the one its orders need
        assert post_generic(api, woo, "cloud-shared").status_code == 401
        assert post_generic(api, woo, "w").status_code == 200
    assert answer.status_code == 401 and unsigned.total == 0
    ssm_reads = {k: v for k, v in first.breakdown().items() if k.startswith("ssm.")}
    assert ssm_reads == {"ssm.GetParameter": 3}  # its own (absent), the shared, its previous
    assert not any(k.startswith("ssm.") for k in second.breakdown())


# -- customer topics ----------------------------------------------------------------------------


def test_customer_topics_upsert_export_and_redact(api):
    customer = {
        "id": 555,
        "email": "Topic@Example.com",
        "phone": "+8613700137001",
        "first_name": "Lin",
        "last_name": "Wu",
        "email_marketing_consent": {"state": "subscribed"},
        "default_address": {"country_code": "CN", "city": "Hangzhou", "address1": "9 West Lake"},
    }
    created = json.loads(send(api, deliver("customers/create", customer)).body)
    customer_id = created["customer_id"]
    assert get(api, "/customers?external_id=shopify:555")[1]["items"][0]["email"] == (
        "topic@example.com"
    )
    send(api, deliver("orders/paid", order_payload(1020, email="topic@example.com", **PAID)))
    # Shopify's privacy payloads, as documented
    person = {"id": 555, "email": "topic@example.com"}
    shop = {"shop_id": 1, "shop_domain": "demo-shop.myshopify.com", "customer": person}
    request = {**shop, "orders_requested": [1020], "data_request": {"id": 9}}
    exported = json.loads(send(api, deliver("customers/data_request", request)).body)
    s3 = boto3.client("s3", region_name="us-east-1")
    body = s3.get_object(Bucket="crm-local-data", Key=exported["export"])["Body"].read()
    assert b"topic@example.com" in body and b"ord_shopify_1020" in body

    redact = {**shop, "orders_to_redact": [1020]}
    redacted = json.loads(send(api, deliver("customers/redact", redact)).body)
    assert redacted["customer_id"] == customer_id and "email" in redacted["erased"]
    assert s3.list_objects_v2(Bucket="crm-local-data").get("KeyCount", 0) == 0
    order = get(api, "/orders/1020")[1]
    assert order["shipping_address"] == {"country_code": "CN", "province": "Shanghai"}


@pytest.mark.parametrize("topic", ["customers/create", "customers/redact"])
def test_customer_topics_without_an_identity_are_422(api, topic):
    assert send(api, deliver(topic, {"note": "no id"})).status_code == 422


def test_a_fulfilment_the_waiting_workflow_could_not_hear_is_answered_by_the_platform_retry(api):
    from crm.services.fulfilment import await_logistics
    from tests.support.stepfunctions import StepFunctionsCalls

    # Given a paid order whose workflow waits for the delivery
    order = order_payload(1301, **PAID)
    send(api, deliver("orders/paid", order))
    order_id = get(api, "/orders/1301")[1]["order_id"]
    await_logistics({"order_id": order_id, "token": "delivery-wait", "for": "delivered"})
    answers = StepFunctionsCalls()

    # When the platform reports it fulfilled while Step Functions cannot be reached
    answers.down = True
    fulfilled = deliver(
        "orders/fulfilled",
        dict(order, fulfillment_status="fulfilled", updated_at="2026-11-21T10:00:00+08:00"),
    )
    first = send(api, fulfilled)

    # Then the delivery is answered 503, so the platform sends it again
    assert first.status_code == 503, first.body
    # And that retry, a duplicate, answers the waiting step
    answers.down = False
    second = send(api, fulfilled)
    assert second.status_code == 200 and json.loads(second.body)["status"] == "duplicate"
    assert answers.calls == [("SendTaskSuccess", "delivery-wait")] * 2
