"""Entry points of imports: parse the trigger, call the service, answer."""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import unquote_plus

from crm.adapters import workflows
from crm.config import get_settings
from crm.observability import logger
from crm.services.imports import STEPS, _s3


def import_file(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The S3 notification handler: one `FileImport` workflow per dropped file. The execution
    name comes from the drop itself (key, content, time), so a repeated notification of the
    same drop starts nothing more."""
    settings = get_settings()
    started = []
    for record in event.get("Records") or []:
        s3 = record.get("s3") or {}
        bucket = (s3.get("bucket") or {}).get("name")
        obj = s3.get("object") or {}
        key = unquote_plus(obj.get("key") or "")
        if not bucket or not key.startswith("incoming/") or key.endswith("/"):
            continue  # not ours, or a folder marker (what the S3 console's "Create folder" puts)
        etag = str(obj.get("eTag") or obj.get("etag") or "").strip('"')
        if not etag:  # not in every event source's records: ask S3
            client = _s3()
            try:
                etag = client.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
            except client.exceptions.ClientError:
                logger.info("dropped file gone before its import started")
                continue
        drop = f"{key}|{etag}|{record.get('eventTime') or ''}"
        run = workflows.execution_name("import", hashlib.sha256(drop.encode()).hexdigest()[:40])
        payload = {"bucket": bucket, "key": key, "etag": etag, "run": run}
        workflows.start(settings.import_machine, run, payload)
        started.append(run)
    return {"started": started}


def import_step(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The `FileImport` workflow's tasks, by `step`."""
    step = STEPS.get(str(event.get("step")))
    if step is None:
        raise ValueError(f"unknown import step {event.get('step')!r}")
    return step(event, context)
