"""Customer profiles through the real app (Chalice's test client) against moto."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest

from tests.conftest import OPERATOR

JSON = {**OPERATOR, "Content-Type": "application/json"}


def post(api, path, body, headers=JSON):
    raw = body if isinstance(body, bytes | str) else json.dumps(body)
    return api.http.post(path, headers=headers, body=raw)


def upsert(api, body):
    return post(api, "/customers", body)


def get(api, path):
    return api.http.get(path, headers=OPERATOR)


def assert_error(response, status, code=None):
    assert response.status_code == status, response.body
    error = json.loads(response.body)["error"]
    assert set(error) >= {"code", "message", "details"}
    assert isinstance(error["message"], str) and error["message"]
    if code:
        assert error["code"] == code
    return error


# -- identity -----------------------------------------------------------------------------------


def test_the_same_person_by_email_in_any_case_is_one_profile(api):
    first = upsert(api, {"email": " Ana@Example.COM ", "first_name": "Ana"})
    second = upsert(api, {"email": "ana@example.com", "last_name": "Li"})
    assert first.status_code == 201 and second.status_code == 200
    assert first.json_body["customer_id"] == second.json_body["customer_id"]
    assert second.json_body["first_name"] == "Ana" and second.json_body["last_name"] == "Li"


def test_the_same_person_by_phone_with_or_without_country_code_is_one_profile(api):
    first = upsert(api, {"phone": "138 0013 8000"})
    second = upsert(api, {"phone": "+86 138 0013 8000"})
    assert first.status_code == 201 and second.status_code == 200
    assert first.json_body["customer_id"] == second.json_body["customer_id"]
    assert second.json_body["phone"] == "+8613800138000"


def test_external_id_wins_over_email_and_phone(api):
    a = upsert(api, {"external_ids": {"shopify": "77"}, "email": "x@shop.cn"}).json_body
    b = upsert(api, {"external_ids": {"shopify": 77}, "email": "new@shop.cn"})
    assert b.status_code == 200
    assert b.json_body["customer_id"] == a["customer_id"]
    assert b.json_body["email"] == "new@shop.cn"
    # The old address was released with the change; the new one resolves.
    assert get(api, "/customers?email=x@shop.cn").json_body["items"] == []
    found = get(api, "/customers?email=NEW@shop.cn").json_body["items"]
    assert [c["customer_id"] for c in found] == [a["customer_id"]]


def test_identities_of_two_profiles_do_not_merge_silently(api):
    by_email = upsert(api, {"email": "ana@example.com"}).json_body
    by_phone = upsert(api, {"phone": "13800138000"}).json_body
    both = upsert(api, {"email": "ana@example.com", "phone": "13800138000", "first_name": "A"})
    assert both.status_code == 200
    assert both.json_body["customer_id"] == by_email["customer_id"]
    assert both.json_body["possible_duplicates"] == [by_phone["customer_id"]]
    # The phone stays with its own profile.
    assert both.json_body["phone"] is None
    view = get(api, f"/customers/{by_email['customer_id']}").json_body
    assert view["possible_duplicates"] == [by_phone["customer_id"]]


def test_an_upsert_with_nothing_new_writes_nothing(api):
    first = upsert(api, {"email": "same@example.com", "tags": ["a"]}).json_body
    again = upsert(api, {"email": "same@example.com", "tags": ["a"]}).json_body
    assert again["updated_at"] == first["updated_at"]


def test_concurrent_upserts_of_the_same_people_leave_one_profile_each(api):
    # Warm the clients once: their first creation in a dozen threads at once is slow, not wrong.
    upsert(api, {"email": "warm@example.com"})
    people = [{"email": f"p{i}@example.com", "phone": f"1380013{8000 + i:04d}"} for i in range(5)]
    bodies = [dict(people[i % 5], tags=[f"t{i % 3}"]) for i in range(60)]
    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(lambda b: upsert(api, b), bodies))
    assert {r.status_code for r in results} <= {200, 201}
    assert sum(r.status_code == 201 for r in results) == 5
    ids = {r.json_body["customer_id"] for r in results}
    assert len(ids) == 5
    items = boto3.client("dynamodb", region_name="us-east-1").scan(TableName="crm-local-customers")[
        "Items"
    ]
    assert len(items) == 6


# -- the 360° view and lookups --------------------------------------------------------------------


def test_the_360_view_has_every_part_present_and_empty_until_filled(api):
    created = upsert(api, {"email": "v@example.com", "first_name": "Vi"}).json_body
    view = get(api, f"/customers/{created['customer_id']}")
    assert view.status_code == 200
    body = view.json_body
    assert body["profile"]["first_name"] == "Vi" and body["email"] == "v@example.com"
    assert body["tier"] == "regular"
    assert body["points"] == {"balance": 0, "pending": 0, "expiring": []}
    assert body["stats"]["orders_count"] == 0
    assert body["stats"]["total_spent"] == {"amount": "0.00", "currency": "CNY"}
    # The contract's RFM shape, unscored until a segmentation run has seen an order
    rfm_fields = ("r", "f", "m", "group", "recency_days", "frequency", "monetary")
    assert body["rfm"] == dict.fromkeys(rfm_fields)
    assert body["predicted"] == dict.fromkeys(("p_alive", "expected_orders_90d", "clv_12m"))
    for part in (
        "segments",
        "recent_orders",
        "recent_notifications",
        "open_cases",
        "possible_duplicates",
    ):
        assert body[part] == []


def test_lookups_by_each_identity(api):
    c = upsert(
        api, {"email": "l@example.com", "phone": "13900139000", "external_ids": {"shopify": "555"}}
    ).json_body
    for query in (
        "email=L@example.com",
        "phone=%2B8613900139000",
        "phone=139%200139%209000",
        "external_id=shopify:555",
    ):
        items = get(api, f"/customers?{query}").json_body["items"]
        if "9000" in query and "139%200139%209000" in query:
            assert items == []  # a different number
        else:
            assert [i["customer_id"] for i in items] == [c["customer_id"]], query
    # Before any segmentation run a built-in segment has no members; RFM groups are named
    # `rfm_<group>` (the contract), so the bare group name is no segment
    assert get(api, "/customers?segment=rfm_champions").json_body == {
        "items": [],
        "next_cursor": None,
    }
    assert get(api, "/customers?segment=champions").status_code == 404
    assert_error(get(api, "/customers?segment=nope"), 404, "not_found")
    assert_error(get(api, "/customers"), 422, "validation_failed")
    assert_error(get(api, "/customers?email=not-an-email"), 422)
    assert_error(get(api, "/customers?external_id=shopify:"), 422)
    assert_error(get(api, "/customers?email=l@example.com&limit=0"), 422)
    assert_error(get(api, "/customers?email=l@example.com&limit=abc"), 422)
    assert get(api, "/customers?email=l@example.com&limit=500").status_code == 200


def test_unknown_customer_is_404(api):
    assert_error(get(api, "/customers/cus_nope"), 404, "not_found")
    assert_error(api.http.patch("/customers/cus_nope", headers=JSON, body="{}"), 404)
    assert_error(api.http.delete("/customers/cus_nope", headers=OPERATOR), 404)
    assert_error(get(api, "/customers/cus_nope/export"), 404)


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, status, code",
    [
        (b"{not json", 400, "malformed_request"),
        (b"", 400, "malformed_request"),
        (b"\xff\xfe\x00", 400, "malformed_request"),
        (b"[1, 2]", 422, "validation_failed"),
        (b'"a string"', 422, "validation_failed"),
        (b'{"first_name": "No Identity"}', 422, "validation_failed"),
        (b'{"email": "ana@"}', 422, "validation_failed"),
        (b'{"phone": "12345"}', 422, "validation_failed"),
        (b'{"email": "a@b.co", "birthday": "1990-13-01"}', 422, "validation_failed"),
        (b'{"email": ["a@b.co"]}', 422, "validation_failed"),
        (b'{"email": "a@b.co", "tags": "vip"}', 422, "validation_failed"),
        (b'{"email": "a@b.co", "consents": {"email": "yes"}}', 422, "validation_failed"),
        (b'{"email": "a@b.co", "gender": "robot"}', 422, "validation_failed"),
    ],
)
def test_bad_upserts_get_a_4xx_in_the_contract_shape_and_store_nothing(api, raw, status, code):
    error = assert_error(post(api, "/customers", raw), status, code)
    if status == 422 and raw.startswith(b"{"):
        assert error["details"], "a 422 names the field and the issue"
    items = boto3.client("dynamodb", region_name="us-east-1").scan(TableName="crm-local-customers")[
        "Items"
    ]
    assert items == []


def test_a_one_megabyte_body_is_413(api):
    huge = json.dumps({"email": "a@b.co", "attributes": {"blob": "x" * (1024 * 1024)}})
    assert_error(post(api, "/customers", huge), 413, "payload_too_large")


def test_without_a_token_the_routes_answer_401(api):
    response = api.http.post(
        "/customers",
        headers={"Content-Type": "application/json"},
        body=json.dumps({"email": "a@b.co"}),
    )
    assert response.status_code == 401


# -- PATCH, merge, export, erasure ----------------------------------------------------------------


def test_patch_changes_only_what_is_sent_and_keeps_an_identity(api):
    c = upsert(api, {"email": "p@example.com", "first_name": "P", "tags": ["a"]}).json_body
    path = f"/customers/{c['customer_id']}"
    r = api.http.patch(
        path,
        headers=JSON,
        body=json.dumps({"tags": ["b"], "first_name": None, "phone": "13700137000"}),
    )
    assert r.status_code == 200
    assert r.json_body["tags"] == ["b"] and r.json_body["first_name"] is None
    assert r.json_body["email"] == "p@example.com"
    assert (
        get(api, "/customers?phone=13700137000").json_body["items"][0]["customer_id"]
        == c["customer_id"]
    )
    gone = api.http.patch(path, headers=JSON, body=json.dumps({"email": None, "phone": None}))
    assert_error(gone, 422, "validation_failed")
    bad = api.http.patch(path, headers=JSON, body=json.dumps({"birthday": "yesterday"}))
    assert_error(bad, 422)
    assert_error(api.http.patch(path, headers=JSON, body="{oops"), 400)


def test_patch_to_an_identity_of_another_customer_is_409(api):
    a = upsert(api, {"email": "a1@example.com"}).json_body
    upsert(api, {"email": "b1@example.com"})
    r = api.http.patch(
        f"/customers/{a['customer_id']}", headers=JSON, body=json.dumps({"email": "B1@example.com"})
    )
    assert_error(r, 409, "identity_conflict")


def test_merge_moves_identities_and_leaves_a_tombstone(api):
    target = upsert(api, {"email": "t@example.com", "first_name": "T"}).json_body
    source = upsert(
        api, {"phone": "13600136000", "last_name": "S", "external_ids": {"shopify": "5"}}
    ).json_body
    r = post(api, f"/customers/{target['customer_id']}/merge", {"source_id": source["customer_id"]})
    assert r.status_code == 200
    assert r.json_body["phone"] == "+8613600136000" and r.json_body["last_name"] == "S"
    again = post(
        api, f"/customers/{target['customer_id']}/merge", {"source_id": source["customer_id"]}
    )
    assert again.status_code == 200  # a retried merge answers the same
    tomb = get(api, f"/customers/{source['customer_id']}").json_body
    assert tomb == {
        "customer_id": source["customer_id"],
        "status": "merged",
        "merged_into": target["customer_id"],
    }
    # Every identity of the source now resolves to the target.
    for q in ("phone=13600136000", "external_id=shopify:5"):
        assert (
            get(api, f"/customers?{q}").json_body["items"][0]["customer_id"]
            == target["customer_id"]
        )
    assert upsert(api, {"phone": "13600136000"}).json_body["customer_id"] == target["customer_id"]
    assert_error(
        post(
            api, f"/customers/{target['customer_id']}/merge", {"source_id": target["customer_id"]}
        ),
        422,
    )
    assert_error(post(api, f"/customers/{target['customer_id']}/merge", {}), 422)
    # The target exists; a source that does not is wrong content, not a missing resource
    assert_error(
        post(api, f"/customers/{target['customer_id']}/merge", {"source_id": "cus_missing"}), 422
    )
    assert_error(
        post(
            api, f"/customers/{source['customer_id']}/merge", {"source_id": target["customer_id"]}
        ),
        409,
        "merged",
    )


PERSON = {
    "email": "erase.me@example.com",
    "phone": "13500135000",
    "first_name": "Eraseme",
    "last_name": "Zhangsan",
    "birthday": "1991-05-06",
    "address": {
        "country_code": "CN",
        "province": "Zhejiang",
        "city": "Hangzhou",
        "line1": "88 Wensan Road",
    },
}


def _everything_held(made) -> str:
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    s3 = boto3.client("s3", region_name="us-east-1")
    dump = [json.dumps(ddb.scan(TableName=t)["Items"], ensure_ascii=False) for t in made["tables"]]
    for bucket in made["buckets"]:
        for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
            dump.append(
                s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"]
                .read()
                .decode("utf-8", "replace")
            )
    return "\n".join(dump)


def test_export_returns_everything_and_erasure_leaves_nothing(api, aws):
    c = upsert(api, PERSON).json_body
    exported = get(api, f"/customers/{c['customer_id']}/export")
    assert exported.status_code == 200
    text = json.dumps(exported.json_body, ensure_ascii=False)
    originals = [
        "erase.me@example.com",
        "+8613500135000",
        "Eraseme",
        "Zhangsan",
        "1991-05-06",
        "88 Wensan Road",
    ]
    for value in originals:
        assert value in text
    held = _everything_held(aws)
    assert all(value in held for value in originals)

    erased = api.http.delete(f"/customers/{c['customer_id']}", headers=OPERATOR)
    assert erased.status_code == 200
    assert set(erased.json_body["erased"]) >= {
        "email",
        "phone",
        "first_name",
        "last_name",
        "birthday",
        "address",
    }
    held = _everything_held(aws)
    for value in originals:
        assert value not in held
    assert "13500135000" not in held

    # Erasure is idempotent, and the person coming back is a new profile.
    assert (
        api.http.delete(f"/customers/{c['customer_id']}", headers=OPERATOR).json_body["erased"]
        == []
    )
    again = upsert(api, {"email": PERSON["email"]})
    assert again.status_code == 201 and again.json_body["customer_id"] != c["customer_id"]


def test_a_json_body_is_read_whatever_the_content_type_says(api):
    # `curl -d` sends application/x-www-form-urlencoded; the body is still the contract's JSON.
    for content_type in ("application/x-www-form-urlencoded", "text/plain"):
        headers = {**OPERATOR, "Content-Type": content_type}
        ok = post(api, "/customers", {"email": "form@example.com"}, headers=headers)
        assert ok.status_code in (200, 201), ok.body
        assert_error(
            post(api, "/customers", b"email=form@example.com", headers=headers),
            400,
            "malformed_request",
        )


def test_chalices_own_answers_are_in_the_error_shape(api):
    # A method the route does not have: Chalice answers it before any view runs.
    error = assert_error(
        api.http.put("/customers", headers=JSON, body="{}"), 405, "method_not_allowed"
    )
    assert "PUT" in error["message"]
