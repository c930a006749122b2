"""The local stack gets what the template gives the cloud where the embedded endpoint can hold
it: the buckets' expiry rules and the failures queue as every asynchronous function's
on-failure destination. (Alarms, log groups and the TLS-only bucket policy are the cloud's.)"""

from __future__ import annotations

import boto3

from crm_local.provision import AppFunction, provision_failure_destinations, provision_functions
from tests.conftest import LOCAL_ENV


def client(service: str):
    return boto3.client(service, region_name="us-east-1")


def test_the_buckets_expire_personal_data_after_the_default_retention(aws) -> None:
    rules = {
        bucket: {
            r["ID"]: r
            for r in client("s3").get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
        }
        for bucket in ("crm-local-drop", "crm-local-data")
    }

    drop, data = rules["crm-local-drop"], rules["crm-local-data"]
    assert {
        p: drop[f"expire-{p}"]["Expiration"]["Days"]
        for p in ("incoming", "archive", "results", "work")
    } == {
        "incoming": 30,
        "archive": 30,
        "results": 30,
        "work": 30,
    }
    assert data["expire-exports"]["Filter"]["Prefix"] == "exports/"
    assert "expire-payments" not in data  # ids and amounts, no personal data: kept
    for bucket in (drop, data):
        assert bucket["abort-incomplete-uploads"]["AbortIncompleteMultipartUpload"]


def test_every_asynchronous_function_fails_into_the_failures_queue(aws) -> None:
    def nothing(event, context):
        return None

    functions = [
        AppFunction("import_file", "app.import_file", nothing),  # the drop bucket notifies it
        AppFunction("low_stock", "app.low_stock", nothing, schedule="rate(1 hour)"),
        AppFunction("fulfilment_step", "app.fulfilment_step", nothing),  # Step Functions waits
    ]
    arns = provision_functions(client, functions, "shop-crm", "local", LOCAL_ENV)

    made = provision_failure_destinations(client, functions, arns, LOCAL_ENV)

    queue_arn = f"arn:aws:sqs:us-east-1:123456789012:{LOCAL_ENV['CRM_FAILURES_QUEUE']}"
    assert made == {"import_file": queue_arn, "low_stock": queue_arn}
    config = client("lambda").get_function_event_invoke_config(FunctionName=arns["low_stock"])
    assert config["DestinationConfig"]["OnFailure"]["Destination"] == queue_arn
