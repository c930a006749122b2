"""Lambda: hand work to another function of the stack (the analytics function runs jobs,
previews and reports with pandas, which the API Lambda never loads). One lazy client."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from crm.domain.errors import Unavailable


class FunctionFailed(Unavailable):
    """The function ran and raised (503: the request was fine, the work was not done)."""

    code = "analytics_failed"


@lru_cache(maxsize=1)
def _client() -> Any:
    import boto3
    from botocore.config import Config

    # A preview or a report on a large shop takes seconds: within API Gateway's 29.
    return boto3.client("lambda", config=Config(read_timeout=28, retries={"max_attempts": 2}))


def invoke_async(function_name: str, payload: dict[str, Any]) -> None:
    """Queue an invocation (Lambda retries it twice, then its on-failure destination)."""
    try:
        _client().invoke(
            FunctionName=function_name, InvocationType="Event", Payload=json.dumps(payload)
        )
    except Exception as exc:
        raise Unavailable("the job could not be started") from exc


def invoke(function_name: str, payload: dict[str, Any]) -> Any:
    """Run the function and return its result; `FunctionFailed` when it raised."""
    try:
        answer = _client().invoke(
            FunctionName=function_name,
            InvocationType="RequestResponse",
            Payload=json.dumps(payload),
        )
        body = json.loads(answer["Payload"].read() or b"null")
    except Exception as exc:
        raise Unavailable("the analytics function could not be reached") from exc
    if answer.get("FunctionError"):
        error = body if isinstance(body, dict) else {}
        raise FunctionFailed(
            f"{error.get('errorType', 'Error')}: {error.get('errorMessage', 'failed')}"
        )
    return body


def reset() -> None:
    _client.cache_clear()
