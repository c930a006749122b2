"""The analytics function (pandas): job runs, rule previews, reports, and erasure's reach into
the snapshot. Only the analytics Lambdas import this module."""

from __future__ import annotations

from typing import Any

from crm_analytics import tasks


def handle(event: Any, context: Any) -> Any:
    """`{"task": "job" | "preview" | "report" | "scrub", ...}` (from the API and erasure)."""
    return tasks.run(event if isinstance(event, dict) else {})


def scheduled(job: str, event: Any, context: Any) -> Any:
    """A nightly rule's run of `job` (its EventBridge event carries nothing it needs)."""
    return tasks.run({"task": "job", "job": job})
