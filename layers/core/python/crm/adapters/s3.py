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


def get_json(bucket: str, key: str) -> Any | None:
    """The JSON object at `key`, or None when there is none."""
    body = get_bytes(bucket, key)
    return None if body is None else json.loads(body)


def put_bytes(bucket: str, key: str, body: bytes, content_type: str) -> None:
    try:
        _client().put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
    except Exception as exc:
        raise Unavailable("the data bucket could not be written") from exc


def put_if_absent(bucket: str, key: str, value: Any) -> bool:
    """Write `key` only if no object is there (S3's conditional write); False if one is."""
    client = _client()
    body = json.dumps(value).encode()
    try:
        client.put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*")
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        if code in ("PreconditionFailed", "ConditionalRequestConflict"):
            return False
        raise Unavailable("the data bucket could not be written") from exc
    return True


def get_bytes(bucket: str, key: str, byte_range: tuple[int, int] | None = None) -> bytes | None:
    """The object's bytes (`byte_range`: first and last byte, inclusive), or None when there is
    no such object or the range starts past its end."""
    client = _client()
    extra = {"Range": f"bytes={byte_range[0]}-{byte_range[1]}"} if byte_range else {}
    try:
        return bytes(client.get_object(Bucket=bucket, Key=key, **extra)["Body"].read())
    except client.exceptions.NoSuchKey:
        return None
    except Exception as exc:
        if getattr(exc, "response", {}).get("Error", {}).get("Code") == "InvalidRange":
            return None
        raise Unavailable("the data bucket could not be read") from exc


def list_keys(bucket: str, prefix: str) -> list[str]:
    """Every key under `prefix`, in key order."""
    keys: list[str] = []
    try:
        pages = _client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            keys += [o["Key"] for o in page.get("Contents", [])]
    except Exception as exc:
        raise Unavailable("the data bucket could not be listed") from exc
    return keys


def delete_keys(bucket: str, keys: list[str]) -> None:
    try:
        for start in range(0, len(keys), 1000):  # DeleteObjects takes 1,000 keys at most
            chunk = [{"Key": k} for k in keys[start : start + 1000]]
            _client().delete_objects(Bucket=bucket, Delete={"Objects": chunk, "Quiet": True})
    except Exception as exc:
        raise Unavailable("the data bucket could not be cleaned") from exc


def delete_prefix(bucket: str, prefix: str) -> int:
    """Delete every object under `prefix`; how many were deleted."""
    keys = list_keys(bucket, prefix)
    delete_keys(bucket, keys)
    return len(keys)


def reset() -> None:
    _client.cache_clear()
