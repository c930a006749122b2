"""Run Lambda invocations of the embedded endpoint in this process, with the project's handlers.

moto can only run Lambda code in Docker. Every invocation inside it (a Step Functions task, an
S3 notification, `aws lambda invoke`) ends in `LambdaFunction._invoke_lambda(event)`, which
returns `(payload, errored, logs)`. `install()` replaces that one method: a function named in
the registry runs here, in-process, with a Lambda-shaped context; any other function keeps
moto's own behaviour. This is the one deliberate patch of a library's internals in the
project, which is why moto is pinned exactly (requirements-dev.txt).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus, unquote_plus

MOTO_PIN = "5.2.5"

Handler = Callable[[Any, Any], Any]

log = logging.getLogger("stack.lambda")

_registry: dict[str, Handler] = {}
_background: set[threading.Thread] = set()
_background_lock = threading.Lock()
_original: Callable[..., tuple[str, bool, str]] | None = None
_original_invoke: Callable[..., Any] | None = None


class SeamBroken(RuntimeError):
    """The installed moto is not the one whose internals this module was written against."""


def check_moto() -> type:
    """The `LambdaFunction` class to patch, or `SeamBroken` saying what changed."""
    import moto
    from moto.awslambda.models import LambdaFunction

    if moto.__version__ != MOTO_PIN:
        raise SeamBroken(
            f"crm_local.lambda_executor patches moto {MOTO_PIN} internals, but moto "
            f"{moto.__version__} is installed. Install the pinned version "
            f"(requirements-dev.txt: moto[server,all]=={MOTO_PIN}), or re-check "
            "LambdaFunction._invoke_lambda in the new version and move the pin."
        )
    method = getattr(LambdaFunction, "_invoke_lambda", None)
    params = list(inspect.signature(method).parameters) if method else []
    if params[:2] != ["self", "event"]:
        raise SeamBroken(
            f"moto's LambdaFunction._invoke_lambda changed shape ({params}); "
            "crm_local.lambda_executor must be updated"
        )
    invoke = getattr(LambdaFunction, "invoke", None)
    invoke_params = list(inspect.signature(invoke).parameters) if invoke else []
    if invoke_params[:3] != ["self", "body", "request_headers"]:
        raise SeamBroken(
            f"moto's LambdaFunction.invoke changed shape ({invoke_params}); "
            "crm_local.lambda_executor must be updated"
        )
    return LambdaFunction


def install() -> None:
    """Patch moto (idempotent). Fails loudly if moto is not the pinned version."""
    global _original, _original_invoke
    lambda_function = check_moto()
    if _original is None:
        _original = lambda_function._invoke_lambda  # type: ignore[attr-defined]
        lambda_function._invoke_lambda = _invoke_lambda  # type: ignore[attr-defined]
        _original_invoke = lambda_function.invoke
        lambda_function.invoke = _invoke  # type: ignore[method-assign]


def uninstall() -> None:
    global _original, _original_invoke
    if _original is not None:
        check_moto()._invoke_lambda = _original  # type: ignore[attr-defined]
        _original = None
    if _original_invoke is not None:
        check_moto().invoke = _original_invoke  # type: ignore[method-assign]
        _original_invoke = None


def register(function_name: str, handler: Handler) -> None:
    """Run `handler(event, context)` whenever the endpoint invokes `function_name`."""
    _registry[function_name] = handler


def unregister(function_name: str) -> None:
    _registry.pop(function_name, None)


def registered() -> dict[str, Handler]:
    return dict(_registry)


def wait_for_background(timeout: float) -> bool:
    """Wait for asynchronous invocations still running; False if some outlived `timeout`."""
    deadline = time.monotonic() + timeout
    with _background_lock:
        threads = list(_background)
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return not any(t.is_alive() for t in threads)


@dataclass
class LambdaContext:
    """The attributes of the Python runtime's context object that handlers and Powertools read."""

    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    timeout_seconds: float
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = ""
    client_context: Any = None
    identity: Any = None
    _deadline: float = 0.0

    def __post_init__(self) -> None:
        self.log_group_name = self.log_group_name or f"/aws/lambda/{self.function_name}"
        if not self.log_stream_name:
            today = datetime.now(UTC).strftime("%Y/%m/%d")
            self.log_stream_name = f"{today}/[{self.function_version}]{uuid.uuid4().hex}"
        self._deadline = time.monotonic() + self.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def context_for(function: Any) -> LambdaContext:
    return LambdaContext(
        function_name=function.function_name,
        function_version=str(function.version),
        invoked_function_arn=function.function_arn,
        memory_limit_in_mb=int(function.memory_size or 128),
        timeout_seconds=float(function.timeout or 3),
    )


def run_handler(handler: Handler, event: Any, context: LambdaContext) -> tuple[str, bool]:
    """`(payload, errored)` as the Python runtime produces them: the result as JSON, or for an
    exception `{"errorMessage", "errorType", "stackTrace"}`, whose `errorType` is the error name
    Step Functions matches in `Retry`/`Catch`."""
    started = time.monotonic()
    errored = True
    # Recording AWS calls (`make permissions`): the invoked function's calls are its own.
    recording = sys.modules.get("crm_local.aws_calls")
    boundary = recording.invoked(context.function_name) if recording else contextlib.nullcontext()
    try:
        with boundary:
            result = handler(event, context)
    except Exception as exc:
        payload = _error_payload(exc)
    except BaseException as exc:  # a SystemExit in a handler must not stop the endpoint
        payload = _error_payload(exc, "Runtime.ExitError")
    else:
        try:
            payload, errored = json.dumps(result), False
        except (TypeError, ValueError) as exc:
            payload = _error_payload(exc, "Runtime.MarshalError")
    outcome = f"failed ({json.loads(payload)['errorType']})" if errored else "ok"
    log.info(
        "lambda %s %s in %.0f ms",
        context.function_name,
        outcome,
        (time.monotonic() - started) * 1000,
    )
    return payload, errored


def _error_payload(exc: BaseException, error_type: str | None = None) -> str:
    return json.dumps(
        {
            "errorMessage": str(exc),
            "errorType": error_type or type(exc).__name__,
            "stackTrace": traceback.format_tb(exc.__traceback__),
        }
    )


def _invoke_lambda(self: Any, event: Any = None) -> tuple[str, bool, str]:
    handler = _registry.get(self.function_name)
    if handler is None:
        assert _original is not None
        return _original(self, event)
    # moto hands over the parsed body, or the string "{}" when the request had none.
    if event is None or event == "{}":
        event = {}
    context = context_for(self)
    if _is_s3_notification(event):
        destination = _on_failure_destination(self)
        _start_in_background(handler, _aws_encoded_keys(event), context, destination)
        return "", False, ""
    payload, errored = run_handler(handler, event, context)
    return payload, errored, f"REPORT RequestId: {context.aws_request_id}"


def _invoke(self: Any, body: str, request_headers: Any, response_headers: Any) -> Any:
    """`Invoke` with `InvocationType=Event` queues the work in Lambda and answers 202 at once;
    moto runs it inside the call. A registered function runs on its own thread instead, with
    its on-failure destination, as in the cloud."""
    handler = _registry.get(self.function_name)
    kind = request_headers.get("x-amz-invocation-type", "RequestResponse")
    if handler is None or kind != "Event":
        assert _original_invoke is not None
        return _original_invoke(self, body, request_headers, response_headers)
    event = json.loads(body) if body else {}
    _start_in_background(handler, event, context_for(self), _on_failure_destination(self))
    return ""


def _is_s3_notification(event: Any) -> bool:
    records = event.get("Records") if isinstance(event, dict) else None
    return (
        bool(records) and isinstance(records[0], dict) and records[0].get("eventSource") == "aws:s3"
    )


def _aws_encoded_keys(event: dict[str, Any]) -> dict[str, Any]:
    """moto encodes the whole key (`in%2Fa+b.csv`); S3 keeps the slashes (`in/a+b.csv`).
    Handlers that `unquote_plus` the key are right either way; this makes it exactly S3's."""
    for record in event["Records"]:
        obj = record.get("s3", {}).get("object", {})
        if "key" in obj:
            obj["key"] = quote_plus(unquote_plus(obj["key"]), safe="/")
    return event


def _on_failure_destination(function: Any) -> str | None:
    """The queue ARN of the function's `OnFailure` destination (its event invoke config)."""
    for config in getattr(function, "event_invoke_config", None) or []:
        destination = (config.config.get("DestinationConfig") or {}).get("OnFailure") or {}
        if destination.get("Destination"):
            return str(destination["Destination"])
    return None


def _send_to_destination(destination: str, event: Any, context: LambdaContext, error: Any) -> None:
    """What Lambda sends an SQS destination after the last retry (locally there is one try)."""
    import boto3  # in the stack's process: AWS_ENDPOINT_URL is the embedded endpoint

    record = {
        "version": "1.0",
        "timestamp": datetime.now(UTC).isoformat(),
        "requestContext": {
            "requestId": context.aws_request_id,
            "functionArn": f"{context.invoked_function_arn}:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 1,
        },
        "requestPayload": event,
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "responsePayload": error,
    }
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=destination.rsplit(":", 1)[-1])["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(record))


def _start_in_background(
    handler: Handler, event: Any, context: LambdaContext, destination: str | None = None
) -> None:
    """S3 invokes Lambda asynchronously; moto calls it inside PutObject, which would make the
    uploader wait for the import. Run it on its own thread and let PutObject answer. A failure
    goes to the function's on-failure destination, if it has one, as in the cloud."""

    def run() -> None:
        from crm.observability import mask_text  # not at import: Powertools reads the stage env

        try:
            payload, errored = run_handler(handler, event, context)
            if errored:
                error = json.loads(payload)
                log.error(
                    "async invocation of %s failed: %s: %s",
                    context.function_name,
                    error["errorType"],
                    mask_text(error["errorMessage"]),
                )
                if destination:
                    try:
                        _send_to_destination(destination, event, context, error)
                    except Exception as exc:
                        log.error(
                            "the failure of %s was not sent on: %r", context.function_name, exc
                        )
        finally:
            with _background_lock:
                _background.discard(threading.current_thread())

    thread = threading.Thread(target=run, name=f"lambda:{context.function_name}", daemon=True)
    # Started under the lock: `wait_for_background` never sees a thread it cannot join yet.
    with _background_lock:
        _background.add(thread)
        thread.start()
