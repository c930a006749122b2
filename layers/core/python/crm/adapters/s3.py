"""S3, through one lazily built client (no client at import: that is cold-start time)."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from crm.domain.errors import Unavailable


@lru_cache(maxsize=1)
def _client() -> Any:
    import boto3

    return boto3.client("s3")


def put_json(bucket: str, key: str, value: Any) -> None:
    body = json.dumps(value, ensure_ascii=False, indent=1).encode()
    try:
        _client().put_object(
            Bucket=bucket, Key=key, Body=body, ContentType="application/json; charset=utf-8"
        )
    except Exception as exc:
        raise Unavailable("the data bucket could not be written") from exc


def delete_prefix(bucket: str, prefix: str) -> int:
    """Delete every object under `prefix`; how many were deleted."""
    deleted = 0
    try:
        pages = _client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                _client().delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
                deleted += len(keys)
    except Exception as exc:
        raise Unavailable("the data bucket could not be cleaned") from exc
    return deleted


def reset() -> None:
    _client.cache_clear()
