"""The seam between moto and the project's handlers: Lambda invocations inside the embedded
endpoint (`aws lambda invoke`, Step Functions tasks, S3 notifications) run our Python code
in-process. moto is pinned because this patches its internals; if an upgrade moves them, these
tests are the ones that fail, loudly."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import unquote_plus

import pytest

from crm_local import lambda_executor
from crm_local.endpoint import Endpoint
from crm_local.provision import ensure_role

BUCKET = "executor-test-drop"


class Transient(Exception):
    """Fails the first attempt of a task, succeeds on retry."""


class OutOfStock(Exception):
    """A custom error name a state machine catches."""


class Calls:
    def __init__(self) -> None:
        self.events: list[Any] = []
        self.contexts: list[Any] = []
        self.threads: list[str] = []
        self.arrived = threading.Event()

    def record(self, event: Any, context: Any) -> None:
        self.events.append(event)
        self.contexts.append(context)
        self.threads.append(threading.current_thread().name)
        self.arrived.set()


@pytest.fixture(scope="module")
def endpoint() -> Iterator[Endpoint]:
    with Endpoint(port=0) as running:
        yield running


@pytest.fixture(scope="module")
def role(endpoint: Endpoint) -> str:
    return ensure_role(endpoint.client("iam"), "executor-test", "lambda.amazonaws.com")


@pytest.fixture
def make_function(endpoint: Endpoint, role: str) -> Iterator[Callable[..., str]]:
    """Create a function in the endpoint whose code is `handler`; returns its ARN."""
    lam, made = endpoint.client("lambda"), []

    def make(name: str, handler: Callable[[Any, Any], Any]) -> str:
        arn = lam.create_function(
            FunctionName=name,
            Runtime="python3.11",
            Role=role,
            Handler="app.handler",
            Code={"ZipFile": b"PK\x05\x06" + 18 * b"\0"},
            Timeout=30,
            MemorySize=256,
        )["FunctionArn"]
        lambda_executor.register(name, handler)
        made.append(name)
        return arn

    yield make
    for name in made:
        lambda_executor.unregister(name)
        lam.delete_function(FunctionName=name)


def test_the_seam_is_the_pinned_moto(endpoint: Endpoint) -> None:
    import moto
    from moto.awslambda.models import LambdaFunction

    assert moto.__version__ == lambda_executor.MOTO_PIN, (
        "moto was upgraded: re-check LambdaFunction._invoke_lambda and move the pin"
    )
    assert LambdaFunction._invoke_lambda is lambda_executor._invoke_lambda


def test_another_moto_version_is_refused_naming_the_pin(monkeypatch: pytest.MonkeyPatch) -> None:
    import moto

    monkeypatch.setattr(moto, "__version__", "9.9.9")

    with pytest.raises(lambda_executor.SeamBroken, match=r"moto\[server,all\]==5\.2\.5"):
        lambda_executor.install()


def test_lambda_invoke_runs_the_handler_in_process(
    endpoint: Endpoint, make_function: Callable[..., str]
) -> None:
    make_function("exec-echo", lambda event, context: {"echo": event, "where": "in-process"})

    response = endpoint.client("lambda").invoke(
        FunctionName="exec-echo", Payload=json.dumps({"n": 1}).encode()
    )

    assert response["StatusCode"] == 200
    assert "FunctionError" not in response
    assert json.loads(response["Payload"].read()) == {"echo": {"n": 1}, "where": "in-process"}


def test_an_invocation_without_a_payload_gets_an_empty_object(
    endpoint: Endpoint, make_function: Callable[..., str]
) -> None:
    make_function("exec-empty", lambda event, context: {"event": event})

    response = endpoint.client("lambda").invoke(FunctionName="exec-empty")

    assert json.loads(response["Payload"].read()) == {"event": {}}


def test_a_handler_exception_is_an_aws_shaped_function_error(
    endpoint: Endpoint, make_function: Callable[..., str]
) -> None:
    def fail(event: Any, context: Any) -> None:
        raise OutOfStock("sku A-1 has 0 left")

    make_function("exec-fail", fail)

    response = endpoint.client("lambda").invoke(FunctionName="exec-fail", Payload=b"{}")

    assert response["FunctionError"]
    error = json.loads(response["Payload"].read())
    assert error["errorType"] == "OutOfStock"
    assert error["errorMessage"] == "sku A-1 has 0 left"
    assert isinstance(error["stackTrace"], list) and error["stackTrace"]


def test_the_context_is_lambda_shaped(
    endpoint: Endpoint, make_function: Callable[..., str]
) -> None:
    calls = Calls()
    arn = make_function("exec-context", calls.record)

    endpoint.client("lambda").invoke(FunctionName="exec-context", Payload=b"{}")

    context = calls.contexts[0]
    assert context.function_name == "exec-context"
    assert context.function_version == "$LATEST"
    assert context.invoked_function_arn == arn
    assert context.memory_limit_in_mb == 256
    assert len(context.aws_request_id) == 36
    assert context.log_group_name == "/aws/lambda/exec-context"
    assert "[$LATEST]" in context.log_stream_name
    assert 0 < context.get_remaining_time_in_millis() <= 30_000


def test_a_function_outside_the_registry_keeps_motos_behaviour(
    endpoint: Endpoint, role: str
) -> None:
    lam = endpoint.client("lambda")
    lam.create_function(
        FunctionName="exec-unregistered",
        Runtime="python3.11",
        Role=role,
        Handler="x.y",
        Code={"ZipFile": b"PK\x05\x06" + 18 * b"\0"},
    )
    try:
        response = lam.invoke(FunctionName="exec-unregistered", Payload=b"{}")
        # No Docker here: moto's own path answers with its Docker error, not our handler.
        assert response["FunctionError"]
        assert "docker" in response["Payload"].read().decode().lower()
    finally:
        lam.delete_function(FunctionName="exec-unregistered")


def _run(
    endpoint: Endpoint, machine_arn: str, payload: dict[str, Any], deadline: float = 15.0
) -> dict[str, Any]:
    sfn = endpoint.client("stepfunctions")
    # moto 5.2.5 names an execution "None" when no name is given: always pass one.
    execution = sfn.start_execution(
        stateMachineArn=machine_arn, name=f"run-{time.time_ns()}", input=json.dumps(payload)
    )["executionArn"]
    until = time.monotonic() + deadline
    while time.monotonic() < until:
        described = sfn.describe_execution(executionArn=execution)
        if described["status"] != "RUNNING":
            return described
        time.sleep(0.05)
    raise AssertionError(f"execution still running after {deadline} s")


@pytest.fixture
def workflow(
    endpoint: Endpoint, make_function: Callable[..., str], role: str
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Reserve (Retry on Transient, Catch OutOfStock -> Compensate), then Confirm."""
    attempts: list[dict[str, Any]] = []

    def reserve(event: dict[str, Any], context: Any) -> dict[str, Any]:
        attempts.append(event)
        if event.get("mode") == "flaky" and len(attempts) == 1:
            raise Transient("warehouse timed out")
        if event.get("mode") == "out_of_stock":
            raise OutOfStock("nothing left")
        return {**event, "reserved": True}

    reserve_arn = make_function("exec-reserve", reserve)
    confirm_arn = make_function("exec-confirm", lambda event, ctx: {**event, "confirmed": True})
    definition = {
        "StartAt": "Reserve",
        "States": {
            "Reserve": {
                "Type": "Task",
                "Resource": reserve_arn,
                "Retry": [
                    {
                        "ErrorEquals": ["Transient"],
                        "IntervalSeconds": 1,
                        "MaxAttempts": 2,
                        "BackoffRate": 1.0,
                    }
                ],
                "Catch": [
                    {"ErrorEquals": ["OutOfStock"], "ResultPath": "$.error", "Next": "Compensate"}
                ],
                "Next": "Confirm",
            },
            "Confirm": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": confirm_arn, "Payload.$": "$"},
                "OutputPath": "$.Payload",
                "End": True,
            },
            "Compensate": {
                "Type": "Pass",
                "Result": "compensated",
                "ResultPath": "$.outcome",
                "End": True,
            },
        },
    }
    sfn = endpoint.client("stepfunctions")
    arn = sfn.create_state_machine(
        name="exec-order", definition=json.dumps(definition), roleArn=role, type="STANDARD"
    )["stateMachineArn"]
    yield arn, attempts
    sfn.delete_state_machine(stateMachineArn=arn)


def test_a_state_machine_runs_lambda_tasks_to_success(
    endpoint: Endpoint, workflow: tuple[str, list[dict[str, Any]]]
) -> None:
    arn, attempts = workflow

    result = _run(endpoint, arn, {"order": "o-1"})

    assert result["status"] == "SUCCEEDED"
    assert json.loads(result["output"]) == {"order": "o-1", "reserved": True, "confirmed": True}
    assert len(attempts) == 1


def test_a_retry_on_the_handlers_error_name_runs_the_task_again(
    endpoint: Endpoint, workflow: tuple[str, list[dict[str, Any]]]
) -> None:
    arn, attempts = workflow

    result = _run(endpoint, arn, {"order": "o-2", "mode": "flaky"})

    assert result["status"] == "SUCCEEDED"
    assert len(attempts) == 2


def test_a_catch_on_the_handlers_error_name_takes_the_compensation_branch(
    endpoint: Endpoint, workflow: tuple[str, list[dict[str, Any]]]
) -> None:
    arn, _ = workflow

    result = _run(endpoint, arn, {"order": "o-3", "mode": "out_of_stock"})

    assert result["status"] == "SUCCEEDED"
    output = json.loads(result["output"])
    assert output["outcome"] == "compensated"
    assert output["error"]["Error"] == "OutOfStock"
    assert json.loads(output["error"]["Cause"])["errorMessage"] == "nothing left"


def test_an_s3_put_under_a_notified_prefix_runs_the_handler_asynchronously(
    endpoint: Endpoint, make_function: Callable[..., str]
) -> None:
    calls = Calls()
    release = threading.Event()

    def slow_import(event: Any, context: Any) -> None:
        calls.record(event, context)
        release.wait(10)  # holds the handler: PutObject must not wait for it

    arn = make_function("exec-drop", slow_import)
    s3 = endpoint.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_notification_configuration(
        Bucket=BUCKET,
        NotificationConfiguration={
            "LambdaFunctionConfigurations": [
                {
                    "LambdaFunctionArn": arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {
                        "Key": {
                            "FilterRules": [
                                {"Name": "prefix", "Value": "incoming/"},
                                {"Name": "suffix", "Value": ".csv"},
                            ]
                        }
                    },
                }
            ]
        },
    )
    try:
        started = time.monotonic()
        s3.put_object(Bucket=BUCKET, Key="elsewhere/x.csv", Body=b"a")
        s3.put_object(Bucket=BUCKET, Key="incoming/customers/May list+1 (ok).csv", Body=b"a,b\n")
        assert time.monotonic() - started < 5, "PutObject waited for the handler"

        assert calls.arrived.wait(10), "the notification never reached the handler"
    finally:
        release.set()
    assert lambda_executor.wait_for_background(10)
    assert len(calls.events) == 1
    record = calls.events[0]["Records"][0]
    assert record["eventSource"] == "aws:s3"
    assert record["s3"]["bucket"]["name"] == BUCKET
    # URL-encoded as S3 sends it: spaces as '+', slashes kept.
    assert record["s3"]["object"]["key"] == "incoming/customers/May+list%2B1+%28ok%29.csv"
    assert unquote_plus(record["s3"]["object"]["key"]) == "incoming/customers/May list+1 (ok).csv"
    assert calls.threads[0].startswith("lambda:")
    assert calls.contexts[0].function_name == "exec-drop"


def test_an_asynchronous_invocation_that_fails_lands_in_its_on_failure_queue(
    endpoint: Endpoint, make_function: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in endpoint.environment().items():
        monkeypatch.setenv(key, value)

    def broken_import(event: Any, context: Any) -> None:
        raise OutOfStock("the file could not be read")

    arn = make_function("exec-broken-drop", broken_import)
    sqs, s3 = endpoint.client("sqs"), endpoint.client("s3")
    url = sqs.create_queue(QueueName="exec-failures")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    endpoint.client("lambda").put_function_event_invoke_config(
        FunctionName=arn,
        DestinationConfig={"OnFailure": {"Destination": queue_arn["Attributes"]["QueueArn"]}},
    )
    s3.create_bucket(Bucket="exec-broken-drop")
    s3.put_bucket_notification_configuration(
        Bucket="exec-broken-drop",
        NotificationConfiguration={
            "LambdaFunctionConfigurations": [
                {"LambdaFunctionArn": arn, "Events": ["s3:ObjectCreated:*"]}
            ]
        },
    )

    s3.put_object(Bucket="exec-broken-drop", Key="incoming/a.csv", Body=b"a")

    assert lambda_executor.wait_for_background(10)
    [message] = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5)["Messages"]
    record = json.loads(message["Body"])
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["functionArn"] == f"{arn}:$LATEST"
    assert record["requestPayload"]["Records"][0]["s3"]["object"]["key"] == "incoming/a.csv"
    assert record["responsePayload"]["errorType"] == "OutOfStock"
