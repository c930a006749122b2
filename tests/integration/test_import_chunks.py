"""Large files in chunks, against moto: each chunk goes on from the last checkpoint, a crash
forced mid-file is resumed by dropping the same file again with no duplicates, a newer drop
of the same content takes over from an older run, the drop starts one workflow, stock files."""

from __future__ import annotations

import csv
import io
import json

import boto3
import pytest

from tests.integration.test_imports import BAD, BUCKET, csv_bytes, customer_count, good_rows

S3 = lambda: boto3.client("s3", region_name="us-east-1")  # noqa: E731


def put(key: str, body: bytes) -> str:
    return S3().put_object(Bucket=BUCKET, Key=key, Body=body)["ETag"].strip('"')


def report_of(key: str) -> dict:
    path = key.removeprefix("incoming/")
    body = S3().get_object(Bucket=BUCKET, Key=f"results/{path}.report.json")["Body"].read()
    return json.loads(body)


def error_rows(key: str) -> list[list[str]]:
    path = key.removeprefix("incoming/")
    body = S3().get_object(Bucket=BUCKET, Key=f"results/{path}.errors.csv")["Body"].read()
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))[1:]


@pytest.fixture
def small_chunks(monkeypatch, api):
    from crm.config import get_settings
    from crm.services import imports

    # Checkpoints every 100 rows and chunks of 100 rows: the same code paths as 1,000 and
    # 200,000, on files ten times smaller.
    monkeypatch.setattr(imports, "SEGMENT_ROWS", 100)
    monkeypatch.setenv("CRM_IMPORT_CHUNK_ROWS", "100")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def mixed_rows(good: int, every: int) -> tuple[list[list[str]], list[int]]:
    """`good` good rows with a bad one (cycling through BAD) after every `every`-th; the row
    numbers of the bad ones."""
    rows: list[list[str]] = []
    bad_numbers = []
    for i, row in enumerate(good_rows(good)):
        rows.append(row)
        if (i + 1) % every == 0:
            rows.append(BAD[(i // every) % len(BAD)][0])
            bad_numbers.append(len(rows))
    return rows, bad_numbers


def test_a_file_larger_than_a_chunk_goes_on_where_the_last_chunk_stopped(small_chunks):
    from crm.services import imports

    rows, bad = mixed_rows(340, 97)
    key = "incoming/customers/big.csv"
    put(key, csv_bytes(rows, "gb18030"))
    report = imports.import_object(BUCKET, key)
    assert report["chunks"] == 4
    assert report["rows"] == len(rows) == 340 + len(bad)
    assert (report["created"], report["failed"]) == (340, len(bad))
    assert report["encoding"] == "gb18030"
    assert [int(r[0]) for r in error_rows(key)] == bad
    assert customer_count() == 340
    etag = S3().head_object(Bucket=BUCKET, Key="archive/customers/big.csv")["ETag"].strip('"')
    run = imports.get_import_store().get(imports.import_id(BUCKET, key, etag)).run
    assert imports.finish(BUCKET, key, etag, run) == report  # a retried finish: the same
    leftovers = S3().list_objects_v2(Bucket=BUCKET, Prefix="work/").get("KeyCount", 0)
    assert leftovers == 0


def set_faults(value: str) -> None:
    import crm.config

    ssm = boto3.client("ssm", region_name="us-east-1")
    ssm.put_parameter(Name="/crm/local/faults", Value=value, Type="String", Overwrite=True)
    crm.config._faults_cache = None
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()  # Powertools keeps the value 1 s locally


def test_a_crash_mid_file_then_the_same_file_again_completes_without_duplicates(
    small_chunks, monkeypatch
):
    from crm.config import get_settings
    from crm.services import imports
    from crm.services.workflow_steps import InjectedFault

    monkeypatch.setenv("CRM_IMPORT_CHUNK_ROWS", "500")
    get_settings.cache_clear()
    rows, bad = mixed_rows(450, 101)
    body = csv_bytes(rows)
    key = "incoming/customers/crash.csv"
    etag = put(key, body)
    set_faults("import.crash@customers/crash.csv")
    imports.claim(BUCKET, key, etag, "run-1")
    try:
        for _ in range(3):  # the first try and the workflow's two retries
            with pytest.raises(InjectedFault):
                imports.run_chunk(BUCKET, key, etag, "run-1")
        failed = imports.fail(BUCKET, key, etag, "run-1", {"Error": "InjectedFault"})
    finally:
        set_faults(" ")
    assert failed["status"] == "failed" and "resume" in failed
    assert report_of(key)["status"] == "failed"
    assert S3().list_objects_v2(Bucket=BUCKET, Prefix=key)["KeyCount"] == 1  # still there
    # Each try went on from the last checkpoint, saved one more, and crashed in the next batch.
    assert failed["rows"] == 300
    good_before = 300 - len([b for b in bad if b <= 300])
    assert good_before < customer_count() <= good_before + 25  # and the crashed batch

    etag = put(key, body)  # the same content, dropped again
    report = imports.import_object(BUCKET, key)
    assert report["status"] == "done"
    assert report["resumed_from_row"] == failed["rows"] > 0
    assert report["rows"] == len(rows)
    assert report["failed"] == len(bad)
    # Rows written after the last checkpoint and before the crash are written again: unchanged.
    assert report["created"] + report["unchanged"] == 450
    # One batch of 25 per crash: written after the checkpoint, written again after it.
    assert report["unchanged"] == 3 * 25
    assert customer_count() == 450
    assert [int(r[0]) for r in error_rows(key)] == bad


def test_a_newer_drop_of_the_same_content_takes_over_an_older_run(small_chunks):
    from crm.services import imports

    key = "incoming/customers/twice.csv"
    etag = put(key, csv_bytes(good_rows(250)))
    imports.claim(BUCKET, key, etag, "old")
    assert imports.run_chunk(BUCKET, key, etag, "old")["done"] is False
    imports.claim(BUCKET, key, etag, "new")  # takes over where "old" stands
    assert imports.run_chunk(BUCKET, key, etag, "new")["done"] is False
    assert imports.run_chunk(BUCKET, key, etag, "old") == {"done": True, "superseded": True}
    assert imports.finish(BUCKET, key, etag, "old") == {"superseded": True}
    assert imports.run_chunk(BUCKET, key, etag, "new")["done"] is True
    report = imports.finish(BUCKET, key, etag, "new")
    assert (report["rows"], report["created"], report["resumed_from_row"]) == (250, 250, 100)
    assert report["chunks"] == 3
    assert customer_count() == 250


def test_the_drop_starts_one_workflow_per_drop(aws):
    from functions.imports import import_file

    key = "incoming/customers/one+file.csv"
    etag = put(key, csv_bytes(good_rows(2)))
    record = {
        "eventTime": "2026-11-23T10:00:00.000Z",
        "s3": {
            "bucket": {"name": BUCKET},
            "object": {"key": "incoming/customers/one%2Bfile.csv", "eTag": etag},
        },
    }
    folder = {"s3": {"bucket": {"name": BUCKET}, "object": {"key": "incoming/customers/"}}}
    other = {"s3": {"bucket": {"name": BUCKET}, "object": {"key": "x"}}}
    first = import_file({"Records": [record, folder, other]}, None)
    again = import_file({"Records": [record]}, None)  # S3 delivers at least once
    assert len(first["started"]) == 1 and again["started"] == first["started"]
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    machine = aws["state_machines"]["crm-local-file-import"]
    executions = sfn.list_executions(stateMachineArn=machine)["executions"]
    assert [e["name"] for e in executions] == first["started"]
    started = sfn.describe_execution(executionArn=executions[0]["executionArn"])
    assert json.loads(started["input"]) == {
        "bucket": BUCKET,
        "key": "incoming/customers/one+file.csv",
        "etag": etag,
        "run": first["started"][0],
    }


def test_an_unknown_kind_or_format_is_refused_in_the_report(aws):
    from crm.services import imports

    for key in ("incoming/suppliers/a.csv", "incoming/customers/a.xlsx"):
        put(key, b"a,b\n1,2\n")
        report = imports.import_object(BUCKET, key)
        assert (report["rows"], report["failed"]) == (0, 1)
        assert report["error"] and error_rows(key)[0][2] == report["error"]
        assert report["archived_as"] == "archive/" + key.removeprefix("incoming/")


def test_stock_levels_import_keeps_reservations_and_reports_bad_rows(api):
    from crm.domain.inventory import Allocation, AllocationPart
    from crm.services import imports
    from crm.store.inventory import get_inventory_store

    store = get_inventory_store()
    store.set_stock("TEA-1", "wh-shanghai", 10)
    store.reserve(
        "ord_x_1", Allocation([AllocationPart("wh-shanghai", [("TEA-1", 4)], 1.0)], False)
    )
    text = (
        "sku,warehouse,on_hand,safety_stock\n"
        "TEA-1,wh-shanghai,12,3\n"  # updated: 4 stay reserved
        "TEA-2,wh-beijing,5,\n"  # created
        "TEA-3,wh-mars,5,1\n"  # unknown warehouse
        "TEA-4,wh-beijing,-2,1\n"  # negative
        "TEA-1,wh-guangzhou,2\n"  # wrong column count
        "TEA-5,wh-beijing,3,\n"  # sets below reserved? no reservation: created
    )
    key = "incoming/inventory/stock.csv"
    put(key, text.encode())
    report = imports.import_object(BUCKET, key)
    assert (report["rows"], report["created"], report["updated"], report["failed"]) == (6, 2, 1, 3)
    level = next(s for s in store.levels(["TEA-1"], ["wh-shanghai"]))
    assert (level.on_hand, level.reserved, level.available, level.safety_stock) == (12, 4, 8, 3)
    assert [r[0] for r in error_rows(key)] == ["3", "4", "5"]
    put(key, b"sku,warehouse,on_hand,safety_stock\nTEA-1,wh-shanghai,3,3\n")
    below = imports.import_object(BUCKET, key)
    assert below["failed"] == 1 and "reserved" in error_rows(key)[0][2]
    put(key, text.encode())
    again = imports.import_object(BUCKET, key)
    assert (again["created"], again["updated"], again["unchanged"], again["failed"]) == (0, 0, 3, 3)


def test_a_file_replaced_before_it_was_read_ends_without_a_report(small_chunks):
    from crm.services import imports

    key = "incoming/customers/replaced.csv"
    etag = put(key, csv_bytes(good_rows(150)))
    imports.claim(BUCKET, key, etag, "first")
    assert imports.run_chunk(BUCKET, key, etag, "first")["done"] is False
    newer = put(key, csv_bytes(good_rows(3)))
    assert imports.run_chunk(BUCKET, key, etag, "first") == {"done": True, "superseded": True}
    assert imports.finish(BUCKET, key, etag, "first") == {"superseded": True}
    assert S3().list_objects_v2(Bucket=BUCKET, Prefix="results/customers/replaced")["KeyCount"] == 0
    assert S3().head_object(Bucket=BUCKET, Key=key)["ETag"].strip('"') == newer  # untouched
    report = imports.import_object(BUCKET, key)  # the newer file's own run
    assert (report["rows"], report["unchanged"]) == (3, 3)


def test_a_notification_without_an_etag_asks_s3(aws):
    from functions.imports import import_file

    key = "incoming/customers/no-etag.csv"
    etag = put(key, csv_bytes(good_rows(1)))
    record = {"s3": {"bucket": {"name": BUCKET}, "object": {"key": key}}}
    missing = {"s3": {"bucket": {"name": BUCKET}, "object": {"key": "incoming/customers/gone.csv"}}}
    started = import_file({"Records": [record, missing]}, None)["started"]
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    machine = aws["state_machines"]["crm-local-file-import"]
    (execution,) = sfn.list_executions(stateMachineArn=machine)["executions"]
    assert execution["name"] == started[0]
    described = sfn.describe_execution(executionArn=execution["executionArn"])
    assert json.loads(described["input"])["etag"] == etag
