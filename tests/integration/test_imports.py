"""The customers import against moto: good rows in exactly once, bad rows explained, the
report's counts exact, the original archived, the same file again changes nothing, GB18030
and UTF-8 with BOM alike, batched calls."""

from __future__ import annotations

import csv
import io
import json

import boto3
import pytest

from tests.conftest import OPERATOR

BUCKET = "crm-local-drop"
HEADER = ["external_id", "email", "phone", "first_name", "last_name", "birthday", "city"]


def good_rows(n: int) -> list[list[str]]:
    return [
        [
            f"shopify:{7000 + i}",
            f"buyer{i}@shop.example",
            f"1390013{i:04d}",
            "Wei",
            f"李{i}",
            "1990-05-06",
            "杭州",
        ]
        for i in range(n)
    ]


BAD = [
    (["shopify:9001", "not-an-email", "", "A", "B", "", ""], "email"),
    (["", "", "12345", "A", "B", "", ""], "phone"),
    (["shopify:9003", "ok3@shop.example", "", "A", "B", "1990-02-30", ""], "birthday"),
    (["", "", "", "No", "Identity", "", ""], "identity"),
]


def csv_bytes(rows: list[list[str]], encoding: str = "utf-8") -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADER)
    writer.writerows(rows)
    return out.getvalue().encode(encoding)


def run_import(key: str, body: bytes) -> dict:
    from crm.services import imports

    boto3.client("s3", region_name="us-east-1").put_object(Bucket=BUCKET, Key=key, Body=body)
    return imports.import_object(BUCKET, key)


def s3_text(key: str) -> str:
    body = boto3.client("s3", region_name="us-east-1").get_object(Bucket=BUCKET, Key=key)["Body"]
    return body.read().decode("utf-8-sig")


def customer_count() -> int:
    pages = boto3.client("dynamodb", region_name="us-east-1").get_paginator("scan")
    return sum(p["Count"] for p in pages.paginate(TableName="crm-local-customers", Select="COUNT"))


def test_good_rows_in_bad_rows_explained_report_exact_original_archived(api):
    rows = good_rows(60)
    rows[10:10] = [r for r, _ in BAD]
    rows.append(["shopify:7003", "BUYER3@shop.example", "", "", "", "", ""])  # same person
    report = run_import("incoming/customers/day1.csv", csv_bytes(rows))

    assert report["rows"] == 65
    assert (report["created"], report["failed"]) == (60, 4)
    assert report["updated"] + report["unchanged"] == 1
    assert customer_count() == 60
    saved = json.loads(s3_text("results/customers/day1.csv.report.json"))
    assert saved["created"] == 60 and saved["failed"] == 4
    errors = list(csv.reader(io.StringIO(s3_text("results/customers/day1.csv.errors.csv"))))
    assert errors[0] == ["row", "original", "reason"]
    assert [int(e[0]) for e in errors[1:]] == [11, 12, 13, 14]
    for line, (_, word) in zip(errors[1:], BAD, strict=True):
        assert word in line[2]
    s3 = boto3.client("s3", region_name="us-east-1")
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="incoming/").get("KeyCount", 0) == 0
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="archive/customers/day1.csv")["KeyCount"] == 1
    found = api.http.get("/customers?email=buyer5@shop.example", headers=OPERATOR)
    assert json.loads(found.body)["items"][0]["last_name"] == "李5"


def test_the_same_file_again_changes_nothing(api):
    body = csv_bytes(good_rows(30))
    run_import("incoming/customers/again.csv", body)
    second = run_import("incoming/customers/again.csv", body)
    assert (second["created"], second["updated"], second["unchanged"]) == (0, 0, 30)
    assert customer_count() == 30


@pytest.mark.parametrize("encoding", ["gb18030", "utf-8-sig"])
def test_gb18030_and_utf8_with_bom_import_identically(api, encoding):
    report = run_import(f"incoming/customers/{encoding}.csv", csv_bytes(good_rows(5), encoding))
    assert report["created"] == 5 and report["failed"] == 0
    found = api.http.get("/customers?email=buyer2@shop.example", headers=OPERATOR)
    item = json.loads(found.body)["items"][0]
    assert item["last_name"] == "李2" and item["address"]["city"] == "杭州"


def test_writes_and_lookups_are_batched(api, monkeypatch):
    from botocore.client import BaseClient

    calls: list[str] = []
    original = BaseClient._make_api_call

    def counted(self, operation_name, api_params):  # every client: boto3's and PynamoDB's
        calls.append(f"{self.meta.service_model.service_name}.{operation_name}")
        return original(self, operation_name, api_params)

    with monkeypatch.context() as patched:
        patched.setattr(BaseClient, "_make_api_call", counted)
        report = run_import("incoming/customers/batched.csv", csv_bytes(good_rows(100)))
    assert report["created"] == 100
    writes = [
        c
        for c in calls
        if c.split(".")[1]
        in ("TransactWriteItems", "BatchWriteItem", "PutItem", "UpdateItem", "DeleteItem")
    ]
    # 4 transactions of 25 rows, the import's claim and its two checkpoints (end, finish).
    assert calls.count("dynamodb.TransactWriteItems") == 4, calls
    assert len(writes) * 20 <= 100 + 40, calls
    # One identities read per batch (new people: no profile to read).
    assert calls.count("dynamodb.BatchGetItem") == 4, calls
