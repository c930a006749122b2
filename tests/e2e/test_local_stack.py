"""`crm local` from outside: health, the token, the contract's error shape, and the embedded
endpoint answering boto3 and the `aws` CLI as AWS would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import OPERATOR, READY_WITHIN, TOKEN, RunningStack, start_stack

pytestmark = pytest.mark.e2e


def aws_cli(stack: RunningStack, *args: str) -> str:
    aws = shutil.which("aws", path=str(Path(sys.executable).parent)) or shutil.which("aws")
    assert aws, "the aws CLI is a development requirement"
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "any",
        "AWS_SECRET_ACCESS_KEY": "any",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    done = subprocess.run(
        [aws, "--endpoint-url", stack.aws_url, *args, "--output", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_stack_is_healthy_within_the_limit(stack: RunningStack) -> None:
    assert stack.ready_in < READY_WITHIN
    health = requests.get(f"{stack.api_url}/health", timeout=5)
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok" and body["stage"] == "local"
    assert body["checks"] and all(body["checks"].values())


def test_the_banner_tells_a_new_user_what_they_need(stack: RunningStack) -> None:
    banner = stack.output()
    for needed in (
        stack.api_url,
        stack.aws_url,
        TOKEN,
        "local-shopify-secret",
        "local-webhook-secret",
        "crm-local-drop",
        "crm-local-data",
    ):
        assert needed in banner
    assert banner.count("curl ") >= 2 and f"aws --endpoint-url {stack.aws_url}" in banner


def test_openapi_is_open_and_operator_routes_need_the_token(stack: RunningStack) -> None:
    assert requests.get(f"{stack.api_url}/openapi.json", timeout=5).status_code == 200
    body = {"email": "token.check@example.com"}
    for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": TOKEN}):
        refused = requests.post(f"{stack.api_url}/customers", json=body, headers=headers, timeout=5)
        assert refused.status_code == 401, headers
        assert refused.json()["error"]["code"] == "unauthenticated"
        assert (
            requests.get(f"{stack.api_url}/customers/cus_x", headers=headers, timeout=5).status_code
            == 401
        )
    created = requests.post(f"{stack.api_url}/customers", json=body, headers=OPERATOR, timeout=5)
    assert created.status_code in (200, 201)


def test_a_route_that_does_not_exist_is_404_in_the_error_shape(stack: RunningStack) -> None:
    missing = requests.get(f"{stack.api_url}/no/such/route", headers=OPERATOR, timeout=5)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


def test_upsert_then_the_360_view(stack: RunningStack) -> None:
    created = requests.post(
        f"{stack.api_url}/customers",
        headers=OPERATOR,
        timeout=5,
        json={
            "external_ids": {"shopify": "e2e-1"},
            "email": "view.360@example.com",
            "first_name": "Mei",
            "consents": {"email": True},
        },
    )
    assert created.status_code == 201, created.text
    customer_id = created.json()["customer_id"]
    view = requests.get(f"{stack.api_url}/customers/{customer_id}", headers=OPERATOR, timeout=5)
    assert view.status_code == 200
    body = view.json()
    assert body["customer_id"] == customer_id and body["email"] == "view.360@example.com"
    assert body["consents"]["email"]["granted"] is True
    for part in (
        "tier",
        "points",
        "segments",
        "rfm",
        "stats",
        "recent_orders",
        "recent_notifications",
        "open_cases",
        "possible_duplicates",
    ):
        assert part in body, part


def test_the_aws_cli_sees_the_provisioned_tables_and_buckets(stack: RunningStack) -> None:
    tables = json.loads(aws_cli(stack, "dynamodb", "list-tables"))["TableNames"]
    assert {"crm-local-customers", "crm-local-identities"} <= set(tables)
    buckets = {b["Name"] for b in json.loads(aws_cli(stack, "s3api", "list-buckets"))["Buckets"]}
    assert {"crm-local-drop", "crm-local-data"} <= buckets
    scanned = json.loads(
        aws_cli(
            stack, "dynamodb", "scan", "--table-name", "crm-local-customers", "--select", "COUNT"
        )
    )
    assert scanned["Count"] >= 0
    assert "crm-local-drop" in aws_cli(stack, "s3", "ls")


def test_boto3_works_against_the_endpoint(stack: RunningStack) -> None:
    s3 = stack.client("s3")
    s3.put_object(Bucket="crm-local-data", Key="e2e/hello.txt", Body=b"hello")
    assert s3.get_object(Bucket="crm-local-data", Key="e2e/hello.txt")["Body"].read() == b"hello"
    s3.delete_object(Bucket="crm-local-data", Key="e2e/hello.txt")
    assert stack.client("stepfunctions").list_state_machines()["stateMachines"] is not None


def test_ctrl_c_stops_the_stack_cleanly(tmp_path: Path) -> None:
    own = start_stack(tmp_path / "stop.log")
    assert own.stop() == 0
    output = own.output()
    assert "stopped" in output and "Traceback" not in output
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{own.api_url}/health", timeout=2)


def test_curl_style_bodies_and_unknown_methods_answer_in_the_contract(stack: RunningStack) -> None:
    form = {**OPERATOR, "Content-Type": "application/x-www-form-urlencoded"}
    created = requests.post(
        f"{stack.api_url}/customers", data='{"email": "curl@example.com"}', headers=form, timeout=5
    )
    assert created.status_code in (200, 201), created.text
    broken = requests.post(f"{stack.api_url}/customers", data="{not json", headers=form, timeout=5)
    assert broken.status_code == 400 and broken.json()["error"]["code"] == "malformed_request"
    wrong = requests.put(f"{stack.api_url}/customers", json={}, headers=OPERATOR, timeout=5)
    assert wrong.status_code in (404, 405) and "error" in wrong.json()


def test_the_points_expiry_job_is_a_lambda_the_endpoint_runs(stack: RunningStack) -> None:
    lam = stack.client("lambda")
    names = {f["FunctionName"] for f in lam.list_functions()["Functions"]}
    assert "shop-crm-local-points_expiry" in names
    answer = lam.invoke(
        FunctionName="shop-crm-local-points_expiry",
        Payload=json.dumps(
            {
                "version": "0",
                "id": "manual-run",
                "detail-type": "Scheduled Event",
                "source": "aws.events",
                "account": "123456789012",
                "time": "2030-01-01T00:00:00Z",
                "region": "us-east-1",
                "resources": [],
                "detail": {"now": "2030-01-01T00:00:00+00:00"},
            }
        ).encode(),
    )
    assert "FunctionError" not in answer, answer["Payload"].read()
    counts = json.loads(answer["Payload"].read())
    assert set(counts) == {"lots", "points", "skipped"}
    rules = stack.client("events").list_rules()["Rules"]
    assert any(r["ScheduleExpression"] == "cron(15 2 * * ? *)" for r in rules)


def test_a_file_dropped_in_the_bucket_is_imported(stack: RunningStack) -> None:
    s3 = stack.client("s3")
    body = (
        "email,phone,first_name,last_name\r\n"
        "drop1@shop.example,13900139001,Lin,王\r\n"
        "not-an-email,,Bad,Row\r\n"
    ).encode("gb18030")
    s3.put_object(Bucket="crm-local-drop", Key="incoming/customers/dropped file.csv", Body=body)
    deadline = time.monotonic() + 30
    while True:
        try:
            report = json.loads(
                s3.get_object(
                    Bucket="crm-local-drop", Key="results/customers/dropped file.csv.report.json"
                )["Body"].read()
            )
            break
        except s3.exceptions.NoSuchKey:
            assert time.monotonic() < deadline, "no report"
            time.sleep(0.3)
    assert (report["rows"], report["created"], report["failed"]) == (2, 1, 1)
    assert report["encoding"] == "gb18030"
    found = requests.get(
        f"{stack.api_url}/customers",
        params={"email": "drop1@shop.example"},
        headers=OPERATOR,
        timeout=10,
    ).json()["items"]
    assert found[0]["last_name"] == "王"
