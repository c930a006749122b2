"""The events queue: what happened to customers, for the flows and campaigns that act on it
(`segment_entered`, `segment_exited`). One lazy client; messages go ten to a call."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from crm.config import get_settings
from crm.domain.errors import Unavailable

BATCH = 10  # SendMessageBatch's limit


@lru_cache(maxsize=1)
def _client() -> Any:
    import boto3

    return boto3.client("sqs")


@lru_cache(maxsize=4)
def _queue_url(name: str) -> str:
    return str(_client().get_queue_url(QueueName=name)["QueueUrl"])


def publish(events: list[dict[str, Any]]) -> int:
    """Send every event; calls made. A message the queue refused is retried once, then the
    batch fails (the caller's run fails and says so)."""
    if not events:
        return 0
    calls = 0
    try:
        url = _queue_url(get_settings().events_queue)
        for start in range(0, len(events), BATCH):
            entries = [
                {"Id": str(i), "MessageBody": json.dumps(event, sort_keys=True)}
                for i, event in enumerate(events[start : start + BATCH])
            ]
            for _attempt in range(2):
                answer = _client().send_message_batch(QueueUrl=url, Entries=entries)
                calls += 1
                failed = {f["Id"] for f in answer.get("Failed", [])}
                entries = [e for e in entries if e["Id"] in failed]
                if not entries:
                    break
            if entries:
                raise Unavailable(f"the events queue refused {len(entries)} events")
    except Unavailable:
        raise
    except Exception as exc:
        raise Unavailable("the events queue could not be written") from exc
    return calls


def reset() -> None:
    _client.cache_clear()
    _queue_url.cache_clear()
