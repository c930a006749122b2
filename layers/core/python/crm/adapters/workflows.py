"""Step Functions: start a workflow once per name, answer a waiting task. One lazy client."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from crm.domain.errors import CrmError, Unavailable

_NAME = re.compile(r"[^A-Za-z0-9_-]")


class TaskGone(CrmError):
    """The task token is no longer waiting (answered already, timed out, execution ended)."""

    code = "task_gone"


@lru_cache(maxsize=1)
def _client() -> Any:
    import boto3

    return boto3.client("stepfunctions")


def execution_name(*parts: str) -> str:
    """A valid, deterministic execution name: the same parts always give the same name, so a
    second start of the same work is refused by Step Functions itself."""
    return _NAME.sub("-", "-".join(parts))[:80]


def start(machine_arn: str, name: str, payload: dict[str, Any]) -> bool:
    """Start `name`; False when an execution of that name already exists (not an error)."""
    client = _client()
    try:
        client.start_execution(stateMachineArn=machine_arn, name=name, input=json.dumps(payload))
        return True
    except client.exceptions.ExecutionAlreadyExists:
        return False
    except Exception as exc:
        raise Unavailable("the workflow could not be started") from exc


def succeed(token: str, output: dict[str, Any]) -> None:
    client = _client()
    try:
        client.send_task_success(taskToken=token, output=json.dumps(output))
    except (
        client.exceptions.TaskDoesNotExist,
        client.exceptions.TaskTimedOut,
        client.exceptions.InvalidToken,
    ) as exc:
        raise TaskGone("the workflow is no longer waiting for this") from exc
    except Exception as exc:
        raise Unavailable("the workflow could not be answered") from exc


def fail(token: str, error: str, cause: str) -> None:
    client = _client()
    try:
        client.send_task_failure(taskToken=token, error=error, cause=cause[:256])
    except (
        client.exceptions.TaskDoesNotExist,
        client.exceptions.TaskTimedOut,
        client.exceptions.InvalidToken,
    ) as exc:
        raise TaskGone("the workflow is no longer waiting for this") from exc
    except Exception as exc:
        raise Unavailable("the workflow could not be answered") from exc


def describe(execution_arn: str) -> dict[str, Any]:
    try:
        return dict(_client().describe_execution(executionArn=execution_arn))
    except Exception as exc:
        raise Unavailable("the workflow could not be read") from exc


def reset() -> None:
    _client.cache_clear()
