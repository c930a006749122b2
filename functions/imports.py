"""Entry points of imports: parse the trigger, call the service, answer."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from crm.services.imports import STEPS, Drop, start_imports


def import_file(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The S3 notification handler: the drops it tells of, each imported by its workflow."""
    drops = []
    for record in event.get("Records") or []:
        s3 = record.get("s3") or {}
        obj = s3.get("object") or {}
        drops.append(
            Drop(
                bucket=str((s3.get("bucket") or {}).get("name") or ""),
                key=unquote_plus(obj.get("key") or ""),
                etag=str(obj.get("eTag") or obj.get("etag") or "").strip('"'),
                at=str(record.get("eventTime") or ""),
            )
        )
    return {"started": start_imports(drops)}


def import_step(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The `FileImport` workflow's tasks, by `step`."""
    step = STEPS.get(str(event.get("step")))
    if step is None:
        raise ValueError(f"unknown import step {event.get('step')!r}")
    return step(event, context)
