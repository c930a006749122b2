"""Security and input findings of issue 10 (point 5), through the real app against moto: a
signed body replayed under another topic, stale customer updates, execution names, the refund
key, odd numbers and JSON, external ids, DynamoDB's own limits, what erasure reaches, paging."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import boto3

from tests.conftest import OPERATOR
from tests.support.shopify import Delivery, deliver, generic_headers, order_payload

JSON = {**OPERATOR, "Content-Type": "application/json"}
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "shopify"
PAID = dict(financial_status="paid", updated_at="2026-11-20T10:05:00+08:00")
DROP, DATA = "crm-local-drop", "crm-local-data"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def send(api, delivery: Delivery, **headers: str):
    return api.http.post(
        "/webhooks/shopify", headers={**delivery.headers(), **headers}, body=delivery.body
    )


def get(api, path):
    response = api.http.get(path, headers=OPERATOR)
    return response.status_code, json.loads(response.body)


def post(api, path, body):
    raw = body if isinstance(body, bytes | str) else json.dumps(body)
    return api.http.post(path, headers=JSON, body=raw)


def error_of(response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.body
    error = json.loads(response.body)["error"]
    assert set(error) >= {"code", "message", "details"}
    return error


def data_keys() -> list[str]:
    listed = boto3.client("s3", region_name="us-east-1").list_objects_v2(Bucket=DATA)
    return [o["Key"] for o in listed.get("Contents", [])]


def count(table: str) -> int:
    client = boto3.client("dynamodb", region_name="us-east-1")
    return client.scan(TableName=table, Select="COUNT")["Count"]


def paid_buyer(api, order_id: int, shopify_customer: int) -> tuple[dict[str, Any], str]:
    body = order_payload(
        order_id, customer_id=shopify_customer, email=f"buyer{order_id}@example.com", **PAID
    )
    assert send(api, deliver("orders/paid", body)).status_code == 200
    return body, get(api, f"/orders/{order_id}")[1]["customer_id"]


# -- 1. a signed body is only good for the topic it has the shape of ---------------------------


def test_an_order_body_replayed_under_a_customer_topic_is_refused_and_changes_nothing(api):
    # Given a paid order whose buyer has a profile
    body, customer_id = paid_buyer(api, 3001, 4242)
    before = get(api, f"/customers/{customer_id}")[1]
    customers = count("crm-local-customers")
    for topic in ("customers/redact", "customers/data_request", "customers/update"):
        # When the captured body is replayed with another topic and a fresh webhook id
        replay = send(api, deliver(topic, body))
        # Then it is refused, and the buyer, the profiles and the data bucket are as they were
        assert error_of(replay, 422)["code"] == "payload_topic_mismatch", topic
        after = get(api, f"/customers/{customer_id}")[1]
        assert (after["email"], after["external_ids"], after["status"]) == (
            before["email"],
            before["external_ids"],
            "active",
        )
        assert count("crm-local-customers") == customers
        assert data_keys() == []


def test_shopifys_own_payloads_are_refused_under_a_topic_of_another_shape(api):
    # (every payload under every other topic: tests/unit/test_shopify_shapes.py)
    for topic, body in (
        ("orders/create", "customer_create"),
        ("orders/paid", "refund_create"),
        ("refunds/create", "order_paid"),
        ("customers/create", "order_paid"),
        ("customers/redact", "customers_data_request"),
        ("customers/data_request", "customers_redact"),
    ):
        # Given Shopify's own sample payload of one topic, when it arrives under another
        answer = send(api, deliver(topic, fixture(body)))
        # Then it is a 422 that names the mismatch, and nothing was stored
        assert error_of(answer, 422)["code"] == "payload_topic_mismatch", (topic, body)
    assert count("crm-local-orders") == count("crm-local-customers") == 0


def test_shopifys_privacy_payloads_are_accepted_under_their_own_topics(api):
    # Given a profile known by Shopify's customer id
    customer = send(api, deliver("customers/create", {**fixture("customer_create"), "id": 191167}))
    customer_id = json.loads(customer.body)["customer_id"]
    # When Shopify's sample data request and redact payloads arrive under their topics
    exported = send(api, deliver("customers/data_request", fixture("customers_data_request")))
    assert exported.status_code == 200, exported.body
    assert json.loads(exported.body)["export"] == f"exports/{customer_id}/shopify-9999.json"
    redacted = send(api, deliver("customers/redact", fixture("customers_redact")))
    # Then both are processed: the export was written, then the person erased with it
    assert redacted.status_code == 200, redacted.body
    assert json.loads(redacted.body)["customer_id"] == customer_id
    # (an erased person is gone: 404 `erased`, decision 58)
    status, body = get(api, f"/customers/{customer_id}")
    assert (status, body["error"]["code"]) == (404, "erased")
    assert data_keys() == []


def test_a_privacy_request_for_another_shop_than_the_header_names_is_refused(api):
    # Given a profile known by Shopify's customer id
    created = send(api, deliver("customers/create", {**fixture("customer_create"), "id": 191167}))
    customer_id = json.loads(created.body)["customer_id"]
    # When a redact names another shop in its body than the X-Shopify-Shop-Domain header
    body = {**fixture("customers_redact"), "shop_domain": "other-shop.myshopify.com"}
    answer = send(api, deliver("customers/redact", body))
    # Then it is refused and the person is still there
    assert error_of(answer, 422)["code"] == "shop_domain_mismatch"
    assert get(api, f"/customers/{customer_id}")[1]["status"] == "active"


def test_an_older_customers_update_sent_second_changes_neither_the_name_nor_the_consent(api):
    # Given Shopify's newest state of a customer: renamed, subscribed to email
    base = fixture("customer_create")
    newer = {
        **base,
        "first_name": "Robert",
        "updated_at": "2026-11-21T10:00:00+08:00",
        "email_marketing_consent": {
            "state": "subscribed",
            "consent_updated_at": "2026-11-21T10:00:00+08:00",
        },
    }
    older = {
        **base,
        "first_name": "Bob",
        "updated_at": "2026-11-21T09:00:00+08:00",
        "email_marketing_consent": {
            "state": "unsubscribed",
            "consent_updated_at": "2026-11-21T09:00:00+08:00",
        },
    }
    first = json.loads(send(api, deliver("customers/update", newer)).body)
    # When an older update arrives second
    second = send(api, deliver("customers/update", older))
    # Then it is answered 200 "stale" and changes nothing
    assert second.status_code == 200 and json.loads(second.body)["status"] == "stale"
    profile = get(api, f"/customers/{first['customer_id']}")[1]
    assert profile["first_name"] == "Robert"
    assert profile["consents"]["email"]["granted"] is True
    # And the same update again (equal time) is still applied: a retry of the newest state
    again = send(api, deliver("customers/update", newer))
    assert json.loads(again.body)["status"] in ("processed", "unchanged")


def test_a_data_request_id_that_is_not_a_shopify_id_never_becomes_an_s3_key(api):
    created = send(api, deliver("customers/create", {**fixture("customer_create"), "id": 191167}))
    assert created.status_code == 200
    for request_id in ("../../results/x", "a/b", "9 9", "x" * 300, -4, 1.5):
        body = {**fixture("customers_data_request"), "data_request": {"id": request_id}}
        answer = send(api, deliver("customers/data_request", body))
        assert error_of(answer, 422)["details"][0]["field"] == "data_request.id", request_id
    assert data_keys() == []


# -- 2. execution names -------------------------------------------------------------------------


def generic_order(order_id: str) -> bytes:
    order = {
        "id": order_id,
        "currency": "CNY",
        "updated_at": "2026-11-23T18:04:31+08:00",
        "paid_at": "2026-11-23T18:04:30+08:00",
        "subtotal": "100.00",
        "total": "100.00",
        "lines": [{"sku": "TEA-X", "quantity": 1, "price": "100.00"}],
        "customer": {"email": "long.id@example.com"},
    }
    event = {
        "event_id": f"evt-{order_id[:40]}",
        "type": "order.paid",
        "occurred_at": "2026-11-23T18:04:31+08:00",
        "source": "woocommerce",
        "order": order,
    }
    return json.dumps(event).encode()


def test_two_refunds_of_an_order_with_a_long_id_start_two_refund_workflows(api):
    # Given a paid order whose id takes the whole of an old execution name
    body = generic_order("L" * 64)
    answer = api.http.post(
        "/webhooks/orders", headers=generic_headers(body, int(time.time())), body=body
    )
    order_id = json.loads(answer.body)["order_id"]
    # When two refunds are asked for
    for key in ("first", "second"):
        refund = post(
            api, f"/orders/{order_id}/refunds", {"amount": "10.00", "idempotency_key": key}
        )
        assert refund.status_code == 202, refund.body
    # Then each has its own refund workflow (neither start was refused as a duplicate)
    from crm.config import get_settings

    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    runs = sfn.list_executions(stateMachineArn=get_settings().refund_machine)["executions"]
    assert len({r["name"] for r in runs}) == 2


# -- 3. refunds need their idempotency key ------------------------------------------------------


def test_a_refund_without_a_usable_idempotency_key_is_422_and_a_retry_with_one_is_one_refund(api):
    # Given a paid order
    send(api, deliver("orders/paid", order_payload(3101, **PAID)))
    for key in (None, "", "   ", 7, "k" * 129):
        body: dict[str, Any] = {"amount": "10.00"}
        if key is not None:
            body["idempotency_key"] = key
        # When a refund is asked for without a usable key
        answer = post(api, "/orders/3101/refunds", body)
        # Then it is 422 naming the field, and the order has no refund
        error = error_of(answer, 422)
        assert "idempotency_key" in [d.get("field") for d in error["details"]], key
    assert get(api, "/orders/3101")[1]["refunds"] == []
    # And with a key, the client's retry is the same refund
    body = {"amount": "10.00", "idempotency_key": "retry-me"}
    first, second = (post(api, "/orders/3101/refunds", body) for _ in range(2))
    assert first.status_code == second.status_code == 202
    assert json.loads(first.body)["refund_id"] == json.loads(second.body)["refund_id"]
    assert len(get(api, "/orders/3101")[1]["refunds"]) == 1


def test_a_line_refund_retried_after_its_workflow_did_not_start_is_the_same_refund_and_starts(
    api,
):
    from tests.support.stepfunctions import StepFunctionsCalls

    # Given a paid order of one unit, and Step Functions unreachable
    send(api, deliver("orders/paid", order_payload(3102, lines=[("TEA-1", 1, "100.00")], **PAID)))
    starts = StepFunctionsCalls("StartExecution")
    starts.down = True
    body = {"lines": [{"sku": "TEA-1", "quantity": 1}], "idempotency_key": "whole-order"}

    # When the refund of the unit is asked for: recorded, but its workflow cannot start (503)
    first = post(api, "/orders/3102/refunds", body)
    assert first.status_code == 503, first.body
    # And the client retries it with the same key once Step Functions answers again
    starts.down = False
    second = post(api, "/orders/3102/refunds", body)

    # Then the retry is that refund (not 422 "more than left": the unit is its own), and its
    # workflow starts, so it will be paid
    assert second.status_code == 202, second.body
    refunds = get(api, "/orders/3102")[1]["refunds"]
    assert [r["refund_id"] for r in refunds] == [json.loads(second.body)["refund_id"]]
    assert [call for call, _ in starts.calls] == ["StartExecution"] * 2
    assert starts.calls[0][1] == starts.calls[1][1]


# -- 4. numbers and JSON ------------------------------------------------------------------------


def test_a_limit_that_is_not_an_ascii_integer_in_range_is_422(api):
    customer = post(api, "/customers", {"email": "limits@example.com"}).json_body
    for limit in ("²", "\uff11\uff10", "\u0663", "0", "501", "-1", "1e2", " 5", ""):
        answer = api.http.get(
            f"/customers/{customer['customer_id']}/points?limit={limit}", headers=OPERATOR
        )
        assert error_of(answer, 422)["details"][0]["field"] == "limit", limit


DEEP = '{"email": "deep@example.com", "attributes": {"a": ' + "[" * 50_000 + "]" * 50_000 + "}}"
NEST_65 = '{"email": "n@example.com", "attributes": {"a": ' + "[" * 63 + "]" * 63 + "}}"


NOT_PLAIN_JSON = {
    "nan": '{"email": "nan@example.com", "attributes": {"n": NaN}}',
    "infinity": '{"email": "inf@example.com", "attributes": {"n": Infinity}}',
    "minus-infinity": '{"email": "inf@example.com", "attributes": {"n": -Infinity}}',
    "overflow": '{"email": "big@example.com", "attributes": {"n": 1e999}}',
    "5000-digits": '{"email": "digits@example.com", "attributes": {"n": ' + "9" * 5000 + "}}",
    "50000-deep": DEEP,
    "65-deep": NEST_65,
}


def test_json_that_is_not_plain_json_or_too_deep_is_400_and_stores_nothing(api):
    for name, raw in NOT_PLAIN_JSON.items():
        answer = post(api, "/customers", raw)
        assert error_of(answer, 400)["code"] == "malformed_request", name
    assert count("crm-local-customers") == 0
    # while 64 deep is read
    raw = '{"email": "n64@example.com", "attributes": {"a": ' + "[" * 62 + "]" * 62 + "}}"
    assert post(api, "/customers", raw).status_code == 201


def test_a_webhook_with_nan_is_refused_before_anything_is_recorded(api):
    body = json.dumps(order_payload(3201, **PAID)).replace('"total_discounts": "0.00"', '"x": NaN')
    assert '"x": NaN' in body
    answer = send(api, Delivery("orders/paid", body.encode(), "wh-nan"))
    assert error_of(answer, 400)["code"] == "malformed_request"
    assert count("crm-local-orders") == 0


def run_import(key: str, body: bytes) -> dict[str, Any]:
    from crm.services import imports

    boto3.client("s3", region_name="us-east-1").put_object(Bucket=DROP, Key=key, Body=body)
    return imports.import_object(DROP, key)


def errors_file(key: str) -> str:
    s3 = boto3.client("s3", region_name="us-east-1")
    return s3.get_object(Bucket=DROP, Key=key)["Body"].read().decode("utf-8-sig")


def test_an_inventory_cell_with_a_unicode_digit_is_a_failed_row_and_the_rest_goes_in(api):
    rows = (
        "sku,warehouse,on_hand\r\n"
        "TEA-1,wh-shanghai,²\r\n"
        "TEA-2,wh-shanghai,\uff15\r\n"  # a full-width 5
        "TEA-3,wh-shanghai,7\r\n"
    )
    report = run_import("incoming/inventory/odd.csv", rows.encode())
    assert (report["rows"], report["created"], report["failed"]) == (3, 1, 2)
    errors = errors_file("results/inventory/odd.csv.errors.csv")
    assert "TEA-1" in errors and "TEA-2" in errors and "on_hand" in errors
    assert get(api, "/inventory/TEA-3")[1]["warehouses"][0]["on_hand"] == 7


def test_a_customer_row_with_a_unicode_digit_count_is_imported(api):
    rows = "Customer ID,Email,Total Orders\r\n501,a501@example.com,²\r\n502,a502@example.com,3\r\n"
    report = run_import("incoming/customers/odd.csv", rows.encode())
    assert (report["rows"], report["created"], report["failed"]) == (2, 2, 0)
    found = get(api, "/customers?external_id=shopify:501")[1]["items"][0]
    assert found["attributes"]["shopify_total_orders"] == "²"


def test_jsonl_rows_with_nan_or_deep_nesting_are_failed_rows_and_the_rest_goes_in(api):
    lines = [
        '{"email": "j1@example.com"}',
        '{"email": "j2@example.com", "attributes": {"n": NaN}}',
        '{"email": "j3@example.com", "attributes": {"a": ' + "[" * 5000 + "]" * 5000 + "}}",
        '{"email": "j4@example.com", "attributes": {"n": ' + "9" * 5000 + "}}",
        '{"email": "j5@example.com"}',
    ]
    report = run_import("incoming/customers/odd.jsonl", "\n".join(lines).encode())
    assert (report["rows"], report["created"], report["failed"]) == (5, 2, 3)
    errors = errors_file("results/customers/odd.jsonl.errors.csv")
    assert errors.count("invalid_json") == 3


# -- 5. external ids and DynamoDB's limits ------------------------------------------------------


def many_ids(n: int, prefix: str = "src") -> dict[str, str]:
    return {f"{prefix}{i}": str(1000 + i) for i in range(n)}


def too_many(response) -> bool:
    details = error_of(response, 422)["details"]
    return {"field": "external_ids", "issue": "too_many", "max": 20} in details


def test_more_external_ids_than_the_maximum_are_422_on_upsert_and_patch(api):
    from crm.domain.identity import MAX_EXTERNAL_IDS

    over = post(api, "/customers", {"external_ids": many_ids(MAX_EXTERNAL_IDS + 1)})
    assert too_many(over)
    full = post(api, "/customers", {"external_ids": many_ids(MAX_EXTERNAL_IDS)})
    assert full.status_code == 201
    customer_id = full.json_body["customer_id"]
    # An upsert that would add one more source to the full profile
    more = post(
        api, "/customers", {"external_ids": {"src0": "1000", "extra": "1"}, "email": "e@x.cn"}
    )
    assert too_many(more)
    patch = api.http.patch(
        f"/customers/{customer_id}",
        headers=JSON,
        body=json.dumps({"external_ids": {"extra": "1"}}),
    )
    assert too_many(patch)
    assert len(get(api, f"/customers/{customer_id}")[1]["external_ids"]) == MAX_EXTERNAL_IDS


def test_a_shopify_customer_webhook_to_a_full_profile_keeps_the_profile_and_drops_the_new_id(api):
    from crm.domain.identity import MAX_EXTERNAL_IDS

    email = "full@example.com"
    full = post(api, "/customers", {"external_ids": many_ids(MAX_EXTERNAL_IDS), "email": email})
    customer_id = full.json_body["customer_id"]
    answer = send(api, deliver("customers/update", {**fixture("customer_create"), "email": email}))
    assert answer.status_code == 200, answer.body
    profile = get(api, f"/customers/{customer_id}")[1]
    assert profile["first_name"] == "Bob"
    assert len(profile["external_ids"]) == MAX_EXTERNAL_IDS


def test_an_import_row_with_too_many_external_ids_is_imported_with_the_first_ones(api):
    from crm.domain.identity import MAX_EXTERNAL_IDS

    ids = ";".join(f"s{i}:{i}" for i in range(MAX_EXTERNAL_IDS + 5))
    rows = f"external_id,email\r\n{ids},many@example.com\r\n"
    report = run_import("incoming/customers/many.csv", rows.encode())
    assert (report["created"], report["failed"]) == (1, 0)
    found = get(api, "/customers?email=many@example.com")[1]["items"][0]
    assert len(found["external_ids"]) == MAX_EXTERNAL_IDS


def test_a_profile_with_120_external_ids_is_still_erased_with_every_identity(api):
    # Given a profile written before the maximum existed, with 120 external ids
    from crm.domain.customers import new_customer
    from crm.store.customers import get_customer_repository

    repo = get_customer_repository()
    legacy = new_customer("cus_legacy", "2026-01-01T00:00:00+00:00")
    legacy.external_ids = many_ids(120)
    legacy.email = "legacy@example.com"
    keys = legacy.identity_keys().ordered()
    repo.save(legacy, now="2026-01-01T00:00:00+00:00")
    for start in range(0, len(keys), 25):
        repo.save(repo.get("cus_legacy"), claim=keys[start : start + 25], now="2026-01-01")
    assert count("crm-local-identities") == 121
    # When it is erased
    answer = api.http.delete("/customers/cus_legacy", headers=OPERATOR)
    # Then every identity is gone and the profile is erased
    assert answer.status_code == 200, answer.body
    assert json.loads(answer.body)["identities_removed"] == 121
    assert count("crm-local-identities") == 0
    status, body = get(api, "/customers/cus_legacy")
    assert (status, body["error"]["code"]) == (404, "erased")


def test_an_order_too_large_for_one_dynamodb_item_is_422_not_503(api):
    # Given a Shopify order whose lines cannot fit DynamoDB's 400 KB item (but fit the body limit)
    lines = [(f"SKU-{i}", 1, "1.00") for i in range(240)]
    body = order_payload(3301, lines=lines, **PAID)
    for item in body["line_items"]:
        item["title"] = "T" * 1990
    answer = send(api, deliver("orders/paid", body))
    # Then it is refused as content (no retry can help), not as an outage
    error = error_of(answer, 422)
    assert error["code"] == "store_limit_exceeded"
    assert answer.headers.get("Retry-After") is None


def test_rows_with_many_external_ids_are_written_in_transactions_dynamodb_accepts(api):
    # Given 12 rows of 20 external ids each: 252 items, more than one transaction takes
    from crm.domain.identity import MAX_EXTERNAL_IDS

    lines = ["external_id,email"]
    for row in range(12):
        ids = ";".join(f"s{i}:{row}-{i}" for i in range(MAX_EXTERNAL_IDS))
        lines.append(f"{ids},row{row}@example.com")
    # When they are imported
    report = run_import("incoming/customers/wide.csv", "\r\n".join(lines).encode())
    # Then every row is a profile with every id claimed
    assert (report["created"], report["failed"]) == (12, 0)
    assert count("crm-local-identities") == 12 * (MAX_EXTERNAL_IDS + 1)


# -- 6. erasure reaches cases and exports; paging is exact ---------------------------------------


def test_erasure_removes_what_cases_say_about_the_customer(api):
    # Given a customer with an exception case whose cause and decision note name them
    from crm.store.cases import get_case_store

    customer = post(api, "/customers", {"email": "case.person@example.com"}).json_body
    store = get_case_store()
    store.open(
        {
            "case_id": "case-erase-1",
            "order_id": "ord_shopify_1",
            "customer_id": customer["customer_id"],
            "reason": "address_not_routable",
            "cause": "no route to 9 West Lake Road for case.person@example.com",
            "opened_at": "2026-11-20T10:00:00+00:00",
            "attempt": "1",
        }
    )
    store.resolve("case-erase-1", {"action": "cancel", "note": "Ms Case asked by phone"}, "t")
    # (the export of what is held shows the case)
    exported = get(api, f"/customers/{customer['customer_id']}/export")[1]
    assert [c["case_id"] for c in exported["cases"]] == ["case-erase-1"]
    # When the customer is erased
    erased = api.http.delete(f"/customers/{customer['customer_id']}", headers=OPERATOR)
    assert erased.status_code == 200, erased.body
    assert json.loads(erased.body)["cases_forgotten"] == 1
    # Then the case keeps its facts but no text about the person
    case = store.get("case-erase-1")
    assert case["reason"] == "address_not_routable" and case["decision"]["action"] == "cancel"
    text = json.dumps(case)
    assert "West Lake" not in text and "Ms Case" not in text and "case.person" not in text


def test_erasure_after_a_merge_reaches_the_cases_and_messages_of_the_merged_profile(api):
    # Given a customer A with an exception case and a message that name them
    from crm.store.cases import get_case_store
    from crm.store.notifications import get_notification_store

    a = post(api, "/customers", {"email": "merged.away@example.com"}).json_body["customer_id"]
    b = post(api, "/customers", {"email": "survivor@example.com"}).json_body["customer_id"]
    cases = get_case_store()
    cases.open(
        {
            "case_id": "case-merged-1",
            "order_id": "ord_shopify_2",
            "customer_id": a,
            "reason": "delivery_failed",
            "cause": "nobody home at 3 Lake Lane for merged.away@example.com",
            "opened_at": "2026-11-20T10:00:00+00:00",
            "attempt": "1",
        }
    )
    message = {
        "notification_id": "n-merged-1",
        "kind": "order_shipped",
        "channel": "email",
        "to": "merged.away@example.com",
        "status": "sent",
        "subject": "Your parcel to 3 Lake Lane",
        "text": "Dear Ms Away",
        "at": "2026-11-20T10:00:00.000+00:00",
    }
    get_notification_store().record(a, message)

    # When A is merged into B
    merged = post(api, f"/customers/{b}/merge", {"source_id": a})
    assert merged.status_code == 200, merged.body

    # Then B's export lists A's case and message
    exported = get(api, f"/customers/{b}/export")[1]
    assert [c["case_id"] for c in exported["cases"]] == ["case-merged-1"]
    assert [n["notification_id"] for n in exported["notifications"]] == ["n-merged-1"]
    # And erasing B removes their texts
    erased = api.http.delete(f"/customers/{b}", headers=OPERATOR)
    assert erased.status_code == 200, erased.body
    assert json.loads(erased.body)["cases_forgotten"] == 1
    assert json.loads(erased.body)["notifications_forgotten"] == 1
    case = cases.get("case-merged-1")
    assert case["reason"] == "delivery_failed" and case["cause"] is None
    [kept] = get_notification_store().list(b, 10)[0]
    assert (kept["kind"], kept["to"], kept["subject"], kept["text"]) == (
        "order_shipped",
        *[None] * 3,
    )
    assert get_notification_store().list(a, 10)[0] == []


def test_erasure_removes_the_carrier_tracking_numbers_from_the_customer_s_orders(api):
    # Given a customer's order shipped under a tracking number the carrier reported
    from crm.services.fulfilment import shipped
    from crm.store.orders import get_order_store
    from tests.support.shopify import LOGISTICS_SECRET

    _, customer_id = paid_buyer(api, 3201, 4343)
    order_id = "ord_shopify_3201"
    for event in ("shipped", "in_transit"):
        report = json.dumps(
            {"order_id": order_id, "event": event, "carrier": "SF", "tracking_number": "SF3201X"}
        )
        headers = generic_headers(report.encode(), int(time.time()), LOGISTICS_SECRET)
        assert api.http.post("/logistics/events", headers=headers, body=report).status_code == 202
    shipped({"order_id": order_id, "logistics": {}})
    assert get(api, f"/orders/{order_id}")[1]["fulfilment"]["tracking"] == "SF3201X"

    # When the customer is erased
    erased = api.http.delete(f"/customers/{customer_id}", headers=OPERATOR)
    assert erased.status_code == 200, erased.body

    # Then no tracking number is left on the order (a carrier's site shows the recipient);
    # what happened, and through which carrier, stays
    order = get_order_store().get(order_id)
    assert order is not None and "SF3201X" not in json.dumps(order.fulfilment)
    assert order.fulfilment["carrier"] == "SF"
    events = order.fulfilment["tracking_events"]
    assert [e["event"] for e in events] == ["shipped", "in_transit"]
    assert all("tracking_number" not in e for e in events)


def test_ledger_pages_return_every_entry_once_when_entries_share_a_timestamp(api):
    # Given 25 ledger entries recorded at the very same time
    from crm.domain.loyalty import Entry
    from crm.store.ledger import get_ledger_store

    customer_id = post(api, "/customers", {"email": "pages@example.com"}).json_body["customer_id"]
    ledger = get_ledger_store()
    at = "2026-11-20T10:00:00.000+00:00"
    for i in range(25):
        entry = Entry(f"adj-{i:02d}", "adjust", 1, "gift", "test", at)
        ledger.apply(customer_id, entry, balance_delta=1, now=at)
    # When they are paged 4 at a time, each cursor pasted into the URL as it was given
    seen: list[str] = []
    cursor = None
    for _ in range(20):
        path = f"/customers/{customer_id}/points?limit=4" + (f"&cursor={cursor}" if cursor else "")
        status, page = get(api, path)
        assert status == 200, page
        seen += [e["entry_id"] for e in page["entries"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    # Then every entry comes exactly once
    assert sorted(seen) == [f"adj-{i:02d}" for i in range(25)]


def test_case_pages_return_every_case_once_when_cases_share_an_opening_time(api):
    from crm.store.cases import get_case_store

    store = get_case_store()
    for i in range(7):
        store.open(
            {
                "case_id": f"case-page-{i}",
                "order_id": f"ord_shopify_{i}",
                "reason": "out_of_stock",
                "opened_at": "2026-11-20T10:00:00.000+00:00",
            }
        )
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        path = "/cases?status=open&limit=3" + (f"&cursor={cursor}" if cursor else "")
        status, page = get(api, path)
        assert status == 200, page
        seen += [c["case_id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == [f"case-page-{i}" for i in range(7)]


def test_a_cursor_no_page_gave_out_is_422(api):
    customer_id = post(api, "/customers", {"email": "cursor@example.com"}).json_body["customer_id"]
    for cursor in ("2026-11-20T10:00:00.000", "!!", "W10", "WyJhIl0"):
        for path in (f"/customers/{customer_id}/points?cursor={cursor}", f"/cases?cursor={cursor}"):
            answer = api.http.get(path, headers=OPERATOR)
            error = error_of(answer, 422)
            assert error["details"] == [{"field": "cursor", "issue": "invalid_cursor"}], path
