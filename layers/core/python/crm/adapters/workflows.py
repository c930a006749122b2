"""Step Functions: start a workflow once per name, answer a waiting task. One lazy client."""

from __future__ import annotations

import hashlib
import json
import re
from functools import lru_cache
from typing import Any

from crm.domain.errors import CrmError, Unavailable

_NAME = re.compile(r"[^A-Za-z0-9_-]+")
MAX_NAME = 80  # Step Functions' limit
HASH_CHARS = 24  # 96 bits of SHA-256: no two identities meet in any shop's lifetime
PREFIX_CHARS = MAX_NAME - HASH_CHARS - 1


class TaskGone(CrmError):
    """The task token is no longer waiting (answered already, timed out, execution ended)."""

    code = "task_gone"


@lru_cache(maxsize=1)
def _client() -> Any:
    import boto3

    return boto3.client("stepfunctions")


def execution_name(*parts: str) -> str:
    """A valid, deterministic execution name: the same parts always give the same name, so a
    second start of the same work is refused by Step Functions itself, and different parts
    never do (`A.1` and `A-1`, or two ids that share their first 80 characters).

    `<readable prefix>-<hash>`: the prefix is the parts joined by `-` with every run of other
    characters than `[A-Za-z0-9_-]` made one `-`, cut to 55 characters (for people reading
    the console); the hash is the first 24 hex digits of the SHA-256 of the parts exactly as
    given (as a JSON list, so `("a-b",)` and `("a", "b")` differ too). Nothing parses a name
    back: the ids a workflow needs travel in its input."""
    identity = json.dumps(list(parts), ensure_ascii=False, separators=(",", ":"))
    digest = hashlib.sha256(identity.encode()).hexdigest()[:HASH_CHARS]
    prefix = _NAME.sub("-", "-".join(parts))[:PREFIX_CHARS].strip("-")
    return f"{prefix}-{digest}" if prefix else digest


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
