"""The analytics function (pandas): job runs, rule previews, reports, and erasure's reach into
the snapshot. Only the analytics Lambdas import this module."""

from __future__ import annotations

from typing import Any

from crm_analytics import tasks


def handle(event: Any, context: Any) -> Any:
    """`{"task": "job" | "preview" | "report" | "scrub", ...}` (from the API and erasure)."""
    return tasks.run(event if isinstance(event, dict) else {})


def segmentation_schedule(event: Any, context: Any) -> Any:
    """The nightly rule's run (its EventBridge event carries nothing the job needs)."""
    return tasks.run({"task": "job", "job": "segmentation"})


def reports_schedule(event: Any, context: Any) -> Any:
    return tasks.run({"task": "job", "job": "reports"})
