"""The analytics function (pandas): job runs, rule previews, reports, and erasure's reach into
the snapshot. Only the analytics Lambdas import this module."""

from __future__ import annotations

from typing import Any

from crm_analytics import tasks


def handle(event: Any, context: Any) -> Any:
    """`{"task": "job" | "preview" | "report" | "scrub", ...}` (from the API and erasure)."""
    return tasks.run(event if isinstance(event, dict) else {})


def segmentation_schedule(event: Any, context: Any) -> Any:
    """The nightly rule's run, for today; `detail.as_of` (`crm jobs run --as-of`) another day."""
    return tasks.run({"task": "job", "job": "segmentation", "as_of": _as_of(event)})


def reports_schedule(event: Any, context: Any) -> Any:
    return tasks.run({"task": "job", "job": "reports", "as_of": _as_of(event)})


def _as_of(event: Any) -> str | None:
    detail = event.get("detail") if isinstance(event, dict) else None
    value = detail.get("as_of") if isinstance(detail, dict) else None
    if value is None:
        return None
    from crm.services.jobs import parse_as_of

    parsed = parse_as_of(value)  # a bad day fails the invocation, named
    return parsed.isoformat() if parsed else None
