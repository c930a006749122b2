"""Customer profiles through the running local stack's HTTP API, checked in its tables and
buckets from outside."""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.e2e.conftest import OPERATOR, RunningStack

pytestmark = pytest.mark.e2e

PEOPLE = 100
UPSERTS = 1000
CLIENTS = 16


def upsert(http: requests.Session, stack: RunningStack, body: object) -> requests.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return http.post(
        f"{stack.api_url}/customers",
        data=raw,
        timeout=60,
        headers={**OPERATOR, "Content-Type": "application/json"},
    )


def customer_items(stack: RunningStack) -> list[dict]:
    ddb = stack.client("dynamodb")
    items, kwargs = [], {"TableName": "crm-local-customers"}
    while True:
        page = ddb.scan(**kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def lookup(http: requests.Session, stack: RunningStack, **query: str) -> list[dict]:
    found = http.get(f"{stack.api_url}/customers", params=query, headers=OPERATOR, timeout=10)
    assert found.status_code == 200, found.text
    return found.json()["items"]


def test_the_same_person_written_four_ways_is_one_profile(http, stack):
    a = upsert(http, stack, {"email": " Ana@Example.COM "})
    b = upsert(http, stack, {"email": "ana@example.com", "phone": "138 0013 8000"})
    c = upsert(http, stack, {"phone": "+86 138 0013 8000", "first_name": "Ana"})
    assert a.status_code == 201 and b.status_code == 200 and c.status_code == 200
    ids = {r.json()["customer_id"] for r in (a, b, c)}
    assert len(ids) == 1
    assert [p["customer_id"] for p in lookup(http, stack, phone="13800138000")] == list(ids)


def _variant(person: int, rng: random.Random) -> dict:
    """Person `person` as one of the ways a shop writes it: email in any case with stray
    spaces, phone with or without +86 and spaces."""
    email = f"person{person:03d}@shop.example"
    spelled = rng.choice([email, email.upper(), f"  {email.title()} ", f"{email}\t"])
    body: dict = {"email": spelled}
    if rng.random() < 0.5:
        digits = f"1390000{person:04d}"
        body["phone"] = rng.choice(
            [
                digits,
                f"+86 {digits[:3]} {digits[3:7]} {digits[7:]}",
                f"{digits[:3]}-{digits[3:7]}-{digits[7:]}",
            ]
        )
    if rng.random() < 0.3:
        body["first_name"] = rng.choice(["Wei", "李", "Lin"])
    return body


def test_a_thousand_concurrent_upserts_of_a_hundred_people_leave_a_hundred_profiles(http, stack):
    rng = random.Random(20261123)
    bodies = [_variant(i % PEOPLE, rng) for i in range(UPSERTS)]
    rng.shuffle(bodies)
    before = {i["customer_id"]["S"] for i in customer_items(stack)}

    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = list(pool.map(lambda body: upsert(http, stack, body), bodies))

    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {200, 201}, {s for s in statuses if s not in (200, 201)}
    assert statuses.count(201) == PEOPLE
    new = [i for i in customer_items(stack) if i["customer_id"]["S"] not in before]
    assert len(new) == PEOPLE
    assert all(i["status"]["S"] == "active" for i in new)
    ids_by_email = {}
    for person in range(PEOPLE):
        email = f"person{person:03d}@shop.example"
        found = lookup(http, stack, email=email.upper())
        assert len(found) == 1, email
        ids_by_email[email] = found[0]["customer_id"]
    assert len(set(ids_by_email.values())) == PEOPLE
    for answer, body in zip(answers, bodies, strict=True):
        email = body["email"].strip().lower()
        assert answer.json()["customer_id"] == ids_by_email[email]
        assert answer.json()["possible_duplicates"] == []


@pytest.mark.parametrize(
    "raw, status, code",
    [
        (b"{not json", 400, "malformed_request"),
        (b"", 400, "malformed_request"),
        (b'{"first_name": "No Identity"}', 422, "validation_failed"),
        (b'{"email": "ana@"}', 422, "validation_failed"),
        (b'{"phone": "12345"}', 422, "validation_failed"),
        (b'{"email": "bad.input@example.com", "birthday": "1990-02-30"}', 422, "validation_failed"),
        (b'{"email": 42}', 422, "validation_failed"),
        (b'{"email": "bad.input@example.com", "gender": "robot"}', 422, "validation_failed"),
        (b'{"email": "bad.input@example.com", "loyalty": 1}', 422, "validation_failed"),
        (
            json.dumps(
                {"email": "bad.input@example.com", "attributes": {"x": "y" * 1_048_576}}
            ).encode(),
            413,
            "payload_too_large",
        ),
    ],
)
def test_bad_input_is_a_4xx_in_the_error_shape_and_stores_nothing(http, stack, raw, status, code):
    answer = upsert(http, stack, raw)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == code and error["message"] and isinstance(error["details"], list)
    assert lookup(http, stack, email="bad.input@example.com") == []


PERSON = {
    "email": "forget.me@example.com",
    "phone": "13700137000",
    "first_name": "Forgetme",
    "last_name": "Wangwu",
    "birthday": "1988-08-18",
    "address": {
        "country_code": "CN",
        "province": "Guangdong",
        "city": "Shenzhen",
        "line1": "1 Keyuan Road",
        "zip": "518057",
    },
}
HELD = [
    "forget.me@example.com",
    "+8613700137000",
    "13700137000",
    "Forgetme",
    "Wangwu",
    "1988-08-18",
    "1 Keyuan Road",
]


def everything_held(stack: RunningStack) -> str:
    """Every item of every table and every object of every bucket, as text."""
    ddb, s3 = stack.client("dynamodb"), stack.client("s3")
    dump = []
    for table in ddb.list_tables()["TableNames"]:
        kwargs = {"TableName": table}
        while True:
            page = ddb.scan(**kwargs)
            dump.append(json.dumps(page["Items"], ensure_ascii=False))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    for bucket in s3.list_buckets()["Buckets"]:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket["Name"]):
            for obj in page.get("Contents", []):
                body = s3.get_object(Bucket=bucket["Name"], Key=obj["Key"])["Body"].read()
                dump.append(body.decode("utf-8", "replace"))
    return "\n".join(dump)


def test_export_then_erasure_leaves_nothing_in_any_table_or_bucket(http, stack):
    customer_id = upsert(http, stack, PERSON).json()["customer_id"]
    exported = http.get(
        f"{stack.api_url}/customers/{customer_id}/export", headers=OPERATOR, timeout=10
    )
    assert exported.status_code == 200
    text = json.dumps(exported.json(), ensure_ascii=False)
    assert all(value in text for value in HELD if value != "13700137000")
    assert "forget.me@example.com" in everything_held(stack)

    erased = http.delete(f"{stack.api_url}/customers/{customer_id}", headers=OPERATOR, timeout=10)
    assert erased.status_code == 200
    assert {"email", "phone", "first_name", "last_name", "birthday", "address"} <= set(
        erased.json()["erased"]
    )
    held = everything_held(stack)
    assert [value for value in HELD if value in held] == []
    assert lookup(http, stack, email=PERSON["email"]) == []
    view = http.get(f"{stack.api_url}/customers/{customer_id}", headers=OPERATOR, timeout=10)
    # An erased person is gone from every read (410 `erased`), as the integration tests say
    assert (view.status_code, view.json()["error"]["code"]) == (410, "erased")
