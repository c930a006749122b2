"""The drop-folder acceptance, through the running local stack (S3 notification, the FileImport
workflow, the import Lambda in chunks): a large customer file with 1% bad rows of every kind
imported exactly, the same file again changes nothing, a crash forced mid-file and the same
file again completes without duplicates, GB18030 and UTF-8 with BOM alike, a Shopify order
export with multi-line orders against an independent sum."""

from __future__ import annotations

import csv
import io
import json
import os
import time
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import requests

from tests.e2e.conftest import OPERATOR, RunningStack

BUCKET = "crm-local-drop"
HEADER = ["external_id", "email", "phone", "first_name", "last_name", "birthday", "city"]
# 100,000 with CRM_E2E_IMPORT_ROWS=100000 (~10 minutes: moto writes ~300 rows/s); the suite
# runs the same test at 4,000 to stay inside CI's time (decision 37).
ROWS = int(os.environ.get("CRM_E2E_IMPORT_ROWS", "4000"))
BAD_KINDS = (
    ("email", lambda i: f"e2e:{i},bad-email-{i},,A,B,,\r\n"),
    ("phone", lambda i: f"e2e:{i},,12345,A,B,,\r\n"),
    ("birthday", lambda i: f"e2e:{i},,,A,B,1990-02-30,\r\n"),
    ("wrong_column_count", lambda i: f"e2e:{i},x{i}@shop.example,,A\r\n"),
    ("no_identity", lambda i: ",,,No,Identity,,\r\n"),
    ("broken_quoting", lambda i: f'e2e:{i},"q{i}@shop.example"x,,A,B,,\r\n'),
)


def good_line(i: int, mobile: str = "147") -> str:
    # Mobile prefixes no other e2e file uses: they share this worker's stack.
    name = f"王{i}" if i % 2 else f"Smith{i}"
    return f"e2e:{i},p{i}@shop.example,{mobile}{i:08d},Wei,{name},1991-03-04,杭州\r\n"


def customer_file(
    rows: int, every: int = 100, mobile: str = "147"
) -> tuple[str, int, dict[int, str]]:
    """The file's text, its good row count, and {row number: kind} of its bad rows."""
    lines = [",".join(HEADER) + "\r\n"]
    bad: dict[int, str] = {}
    good = 0
    for n in range(1, rows + 1):
        if n % every == 0:
            kind, make = BAD_KINDS[(n // every) % len(BAD_KINDS)]
            lines.append(make(900_000 + n))
            bad[n] = kind
        else:
            lines.append(good_line(n, mobile))
            good += 1
    return "".join(lines), good, bad


def drop_and_wait(stack: RunningStack, key: str, body: bytes, timeout: float = 0) -> dict:
    timeout = timeout or max(240.0, ROWS / 40)
    s3 = stack.client("s3")
    report_key = "results/" + key.removeprefix("incoming/") + ".report.json"
    before = _modified(s3, report_key)
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        modified = _modified(s3, report_key)
        if modified is not None and modified != before:
            report = json.loads(s3.get_object(Bucket=BUCKET, Key=report_key)["Body"].read())
            if report["status"] in ("done", "failed"):
                return report
        time.sleep(0.5)
    raise AssertionError(f"no report for {key} within {timeout} s")


def _modified(s3, key: str) -> datetime | None:
    try:
        return s3.head_object(Bucket=BUCKET, Key=key)["LastModified"]
    except s3.exceptions.ClientError:
        return None


def errors_of(stack: RunningStack, key: str) -> list[list[str]]:
    path = "results/" + key.removeprefix("incoming/") + ".errors.csv"
    body = stack.client("s3").get_object(Bucket=BUCKET, Key=path)["Body"].read()
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))[1:]


def count_items(stack: RunningStack, table: str) -> int:
    pages = stack.client("dynamodb").get_paginator("scan")
    return sum(p["Count"] for p in pages.paginate(TableName=table, Select="COUNT"))


def find(stack: RunningStack, email: str) -> list[dict]:
    answer = requests.get(
        f"{stack.api_url}/customers", params={"email": email}, headers=OPERATOR, timeout=10
    )
    return answer.json()["items"]


def test_a_large_file_with_bad_rows_of_every_kind_then_again(stack: RunningStack) -> None:
    text, good, bad = customer_file(ROWS)
    key = "incoming/customers/e2e-large.csv"
    before = count_items(stack, "crm-local-customers")
    report = drop_and_wait(stack, key, text.encode())
    assert report["status"] == "done"
    assert (report["rows"], report["created"], report["failed"]) == (ROWS, good, len(bad))
    assert report["updated"] == report["unchanged"] == 0
    assert report["chunks"] >= 2  # 2,000 rows per chunk locally
    errors = errors_of(stack, key)
    assert {int(e[0]): e for e in errors}.keys() == bad.keys()
    reasons = {bad[int(e[0])]: e[2] for e in errors}
    for kind in ("email", "phone", "birthday", "wrong_column_count", "broken_quoting"):
        assert kind in reasons[kind], (kind, reasons[kind])
    assert "no_identity" in reasons["no_identity"]
    originals = text.split("\r\n")
    for e in errors[:20]:
        assert e[1].lstrip("'") == originals[int(e[0])]
    assert count_items(stack, "crm-local-customers") - before == good
    for i in (1, 2, ROWS // 2 + 1, ROWS - 1):
        (found,) = find(stack, f"p{i}@shop.example")
        assert found["last_name"] == (f"王{i}" if i % 2 else f"Smith{i}")
    s3 = stack.client("s3")
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix=key)["KeyCount"] == 0
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="archive/customers/e2e-large.csv")["KeyCount"]

    again = drop_and_wait(stack, key, text.encode())
    assert (again["rows"], again["unchanged"], again["failed"]) == (ROWS, good, len(bad))
    assert again["created"] == again["updated"] == 0
    assert count_items(stack, "crm-local-customers") - before == good


def test_a_crash_mid_file_then_the_same_file_again(stack: RunningStack) -> None:
    text, good, bad = customer_file(4_000, every=250, mobile="198")
    body = text.replace("e2e:", "crash:").replace("@shop.example", "@crash.example").encode()
    key = "incoming/customers/e2e-crash.csv"
    ssm = stack.client("ssm")
    ssm.put_parameter(
        Name="/crm/local/faults",
        Value="import.crash@customers/e2e-crash.csv",
        Type="String",
        Overwrite=True,
    )
    before = count_items(stack, "crm-local-customers")
    try:
        failed = drop_and_wait(stack, key, body)
    finally:
        ssm.put_parameter(Name="/crm/local/faults", Value=" ", Type="String", Overwrite=True)
    assert failed["status"] == "failed" and "import.crash" in failed["error"]
    # Each of the three tries went on from the last checkpoint, saved one, and crashed.
    assert failed["rows"] == 3_000 and "resume" in failed
    time.sleep(1.5)  # the fault switch is cached for 1 s locally
    report = drop_and_wait(stack, key, body)
    assert report["status"] == "done"
    assert report["resumed_from_row"] == failed["rows"]
    assert (report["rows"], report["failed"], report["updated"]) == (4_000, len(bad), 0)
    assert report["created"] + report["unchanged"] == good
    assert report["unchanged"] == 3 * 25  # the batch each crash had written after its checkpoint
    assert count_items(stack, "crm-local-customers") - before == good
    assert [int(e[0]) for e in errors_of(stack, key)] == sorted(bad)


@pytest.mark.parametrize("encoding", ["gb18030", "utf-8-sig"])
def test_gb18030_and_utf8_with_bom_import_identically(stack: RunningStack, encoding: str) -> None:
    text = (
        "email,phone,first_name,last_name,city,tags\r\n"
        f'enc-{encoding}@shop.example,13700137{len(encoding):03d},芳,王,广州,"老客户,会员"\r\n'
        "not-an-email,,坏,行,北京,\r\n"
    )
    key = f"incoming/customers/enc-{encoding}.csv"
    report = drop_and_wait(stack, key, text.encode(encoding))
    assert (report["rows"], report["created"], report["failed"]) == (2, 1, 1)
    assert report["encoding"] == encoding
    (found,) = find(stack, f"enc-{encoding}@shop.example")
    assert (found["first_name"], found["last_name"]) == ("芳", "王")
    assert found["address"]["city"] == "广州" and set(found["tags"]) == {"老客户", "会员"}
    assert errors_of(stack, key)[0][1] == "not-an-email,,坏,行,北京,"


def test_a_shopify_order_export_against_an_independent_sum(stack: RunningStack) -> None:
    from crm_local.demo_data import PAID_STATUSES, generate, orders_csv

    shop = generate(seed=23, customers=40, days=365, today=datetime.now(UTC).date())
    key = "incoming/orders/e2e-shopify-orders.csv"
    report = drop_and_wait(stack, key, orders_csv(shop))
    rows = sum(len(o.lines) for o in shop.orders)
    assert report["status"] == "done" and report["failed"] == 0
    assert report["rows"] == rows > len(shop.orders)
    assert report["orders"]["created"] == len(shop.orders)

    multi = next(o for o in shop.orders if len(o.lines) > 2)
    answer = requests.get(
        f"{stack.api_url}/orders/ord_shopify_{multi.order_id}", headers=OPERATOR, timeout=10
    ).json()
    assert [(x["sku"], x["quantity"]) for x in answer["lines"]] == [
        (line.sku, line.quantity) for line in multi.lines
    ]
    assert Decimal(answer["totals"]["total"]["amount"]) == multi.total
    assert Decimal(answer["totals"]["subtotal"]["amount"]) == multi.subtotal

    spent: dict[str, Decimal] = defaultdict(Decimal)
    counted: dict[str, int] = defaultdict(int)
    first: dict[str, datetime] = {}
    for order in shop.orders:
        if not order.email:
            continue
        paid = order.financial_status in PAID_STATUSES and order.cancelled_at is None
        if paid and order.revenue > 0:
            email = order.email.lower()
            spent[email] += order.revenue
            counted[email] += 1
            first[email] = min(first.get(email, order.created_at), order.created_at)
    checked = 0
    for email in sorted(spent)[:12]:
        (found,) = find(stack, email)
        profile = requests.get(
            f"{stack.api_url}/customers/{found['customer_id']}", headers=OPERATOR, timeout=10
        ).json()
        stats = profile["stats"]
        assert Decimal(stats["total_spent"]["amount"]) == spent[email], email
        assert stats["orders_count"] == counted[email], email
        assert datetime.fromisoformat(stats["first_order_at"]) == first[email], email
        checked += 1
    assert checked >= 5

    again = drop_and_wait(stack, key, orders_csv(shop))
    assert again["orders"] == {"unchanged": len(shop.orders)}
