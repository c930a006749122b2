"""Alerts for operations, published to the ops SNS topic through one lazily built client.

Messages carry ids, SKUs and counts only, never personal data: an operator follows the ids.

`CRM_OPS_TOPIC` holds the topic's name (locally, and in the cloud too: the template binds it
to the topic's `TopicName`) or its ARN. A name is turned into the ARN once per container,
from the caller's account (STS `GetCallerIdentity`, which needs no permission) and the
client's region, so the function needs `sns:Publish` and nothing else.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from crm.config import get_settings
from crm.domain.errors import Unavailable

SUBJECT_LIMIT = 100  # SNS: at most 100 printable ASCII characters, no line breaks


@lru_cache(maxsize=1)
def _client() -> Any:
    import boto3

    return boto3.client("sns")


def _partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


@lru_cache(maxsize=1)
def topic_arn() -> str:
    topic = get_settings().ops_topic
    if topic.startswith("arn:"):
        return topic
    import boto3

    try:
        account = boto3.client("sts").get_caller_identity()["Account"]
    except Exception as exc:
        raise Unavailable("the ops topic could not be resolved") from exc
    region = _client().meta.region_name
    return f"arn:{_partition(region)}:sns:{region}:{account}:{topic}"


def _subject(subject: str) -> str:
    text = "".join(ch if " " <= ch <= "~" else "?" for ch in subject).strip()
    return text[:SUBJECT_LIMIT] or "CRM alert"


def publish(subject: str, message: dict[str, Any]) -> None:
    """Publish one alert (JSON body). AWS failures are `Unavailable` (a retry may succeed)."""
    try:
        _client().publish(
            TopicArn=topic_arn(),
            Subject=_subject(subject),
            Message=json.dumps(message, ensure_ascii=False, sort_keys=True, default=str),
        )
    except Unavailable:
        raise
    except Exception as exc:
        raise Unavailable("the ops alert could not be published") from exc


def reset() -> None:
    _client.cache_clear()
    topic_arn.cache_clear()
