"""The recorder behind `make permissions`: which function made which AWS call, on what."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from crm_local import aws_calls
from tests.conftest import PROJECT_DIR

HERE = str(Path(__file__).resolve())


def job_entry(work):
    """Stands for a function's entry point (as app.py's functions are)."""
    return work()


@pytest.fixture
def recorder(tmp_path, monkeypatch):
    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    attribution = aws_calls.Attribution({(HERE, "job_entry"): "the_job"})
    installed = aws_calls.Recorder(tmp_path / "calls-1.json", attribution).install()
    try:
        with mock_aws():
            yield installed
    finally:
        installed.uninstall()


def test_a_call_inside_an_entry_is_recorded_with_what_it_touched(recorder) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="drop")  # the test's own set-up: no function made it

    job_entry(lambda: s3.put_object(Bucket="drop", Key="incoming/customers/a.csv", Body=b"x"))

    assert recorder.calls() == [
        {
            "function": "the_job",
            "service": "s3",
            "operation": "PutObject",
            "resources": [{"kind": "object", "name": "drop", "prefix": "incoming/"}],
        }
    ]
    on_disk = json.loads(recorder.path.read_text())["calls"]
    assert on_disk == recorder.calls()  # written as soon as it was seen


def test_keys_are_cut_at_their_first_folder_and_under_analytics_at_their_second() -> None:
    def prefix(key: str) -> str:
        [resource] = aws_calls.resources_of("s3", "GetObject", {"Bucket": "b", "Key": key})
        return resource["prefix"]

    def listed(prefix: str) -> str:
        [resource] = aws_calls.resources_of(
            "s3", "ListObjectsV2", {"Bucket": "b", "Prefix": prefix}
        )
        return resource["prefix"]

    assert prefix("incoming/customers/a.csv") == "incoming/"
    assert prefix("top.json") == ""
    # The segments' files the API serves are not the snapshot's personal data beside them.
    assert prefix("analytics/segments/definitions/vip.json") == "analytics/segments/"
    assert prefix("analytics/snapshot/customers/date=2024-05-01/part-00000.parquet") == (
        "analytics/snapshot/"
    )
    assert prefix("analytics/x.json") == "analytics/"
    assert listed("analytics/snapshot/orders/") == "analytics/snapshot/"
    assert listed("analytics/") == "analytics/"
    assert listed("jobs/segmentation/") == "jobs/"


def test_a_thread_started_inside_an_entry_belongs_to_it(recorder) -> None:
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="q")["QueueUrl"]

    def in_threads() -> None:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda i: sqs.send_message(QueueUrl=url, MessageBody=str(i)), [1, 2]))
        worker = threading.Thread(target=lambda: sqs.get_queue_url(QueueName="q"))
        worker.start()
        worker.join()

    job_entry(in_threads)
    outside = threading.Thread(target=lambda: sqs.send_message(QueueUrl=url, MessageBody="x"))
    outside.start()
    outside.join()

    assert [(c["function"], c["operation"]) for c in recorder.calls()] == [
        ("the_job", "GetQueueUrl"),
        ("the_job", "SendMessage"),
    ]


def test_pynamodb_calls_and_transaction_parts_are_seen(recorder) -> None:
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    for name in ("a", "b"):
        ddb.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )

    def write() -> None:
        from pynamodb.attributes import UnicodeAttribute
        from pynamodb.models import Model

        class A(Model):
            class Meta:
                table_name = "a"
                region = "us-east-1"

            k = UnicodeAttribute(hash_key=True)

        A("1").save()
        ddb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": "a", "Item": {"k": {"S": "2"}}}},
                {
                    "ConditionCheck": {
                        "TableName": "b",
                        "Key": {"k": {"S": "x"}},
                        "ConditionExpression": "attribute_not_exists(k)",
                    }
                },
            ]
        )

    job_entry(write)

    by_operation = {c["operation"]: c["resources"] for c in recorder.calls()}
    assert by_operation["PutItem"] == [{"kind": "table", "name": "a"}]  # PynamoDB's own client
    assert by_operation["TransactWriteItems"] == [
        {"kind": "table", "name": "a", "item": "Put"},
        {"kind": "table", "name": "b", "item": "ConditionCheck"},
    ]


def test_the_entry_points_are_every_function_app_py_declares(local_env) -> None:
    from app import app

    entries = aws_calls.entry_points(PROJECT_DIR)
    declared = (
        {"api_handler"}
        | {f.name for f in [*app.pure_lambda_functions, *app.event_sources]}
        | {a.name for a in app.builtin_auth_handlers}
    )

    assert set(entries.values()) == declared
    # Each route's view is the API Lambda, and so is what it delegates to.
    app_py = str(PROJECT_DIR / "app.py")
    assert entries[(app_py, "upsert_customer")] == "api_handler"
    assert entries[(str(PROJECT_DIR / "functions" / "profiles.py"), "upsert")] == "api_handler"
    assert entries[(str(PROJECT_DIR / "functions" / "inventory.py"), "low_stock_job")] == (
        "low_stock"
    )
    # A delegate two functions share is neither's: the frame in app.py says whose call it is.
    analytics = str(PROJECT_DIR / "functions" / "analytics.py")
    assert (analytics, "scheduled") not in entries
    assert entries[(app_py, "segmentation")] == "segmentation"
    assert entries[(app_py, "reports")] == "reports"
    assert entries[(analytics, "handle")] == "analytics"


def other_entry(work):
    """Stands for another function's entry point."""
    return work()


@pytest.mark.parametrize("invocation", ["RequestResponse", "Event"])
def test_a_function_invoked_in_process_makes_its_own_calls_not_its_invoker_s(
    tmp_path, monkeypatch, invocation
) -> None:
    from crm_local import lambda_executor

    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    attribution = aws_calls.Attribution(
        {(HERE, "job_entry"): "the_job", (HERE, "other_entry"): "other_job"}
    )
    installed = aws_calls.Recorder(tmp_path / "calls-1.json", attribution).install()
    monkeypatch.setattr(aws_calls, "_recorder", installed)
    lambda_executor.install()
    try:
        with mock_aws():
            s3 = boto3.client("s3", region_name="us-east-1")
            s3.create_bucket(Bucket="data")
            role = boto3.client("iam").create_role(RoleName="r", AssumeRolePolicyDocument="{}")[
                "Role"
            ]["Arn"]
            lam = boto3.client("lambda", region_name="us-east-1")
            lam.create_function(
                FunctionName="shop-crm-local-other_job",
                Runtime="python3.11",
                Role=role,
                Handler="app.other_job",
                Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
            )
            # Given a function whose code (run in-process) writes an object
            lambda_executor.register(
                "shop-crm-local-other_job",
                lambda e, c: s3.put_object(Bucket="data", Key="analytics/snapshot/x", Body=b""),
            )

            # When another function invokes it
            job_entry(
                lambda: lam.invoke(
                    FunctionName="shop-crm-local-other_job", InvocationType=invocation
                )
            )
            assert lambda_executor.wait_for_background(10)
    finally:
        lambda_executor.unregister("shop-crm-local-other_job")
        lambda_executor.uninstall()
        installed.uninstall()

    # Then the invoker invoked, and the write is the invoked function's
    assert [(c["function"], c["operation"]) for c in installed.calls()] == [
        ("other_job", "PutObject"),
        ("the_job", "Invoke"),
    ]
