"""What the analytics function is asked to do, by `task`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from crm.config import get_settings
from crm.services import jobs as job_runs


def _work(job: str, run_id: str | None) -> Callable[[date], dict[str, Any]]:
    if job == "segmentation":
        from crm_analytics import jobs

        return lambda as_of: jobs.segmentation(as_of, run_id)
    if job == "reports":
        from crm_analytics import report_jobs

        return report_jobs.run
    if job == "points_expiry":
        from crm.services import ledger

        def expire(as_of: date) -> dict[str, Any]:
            # The end of `as_of` in the shop's timezone: what was due by then expires.
            end = datetime.combine(as_of, time.max, ZoneInfo(get_settings().timezone))
            return dict(ledger.expire_points(end.isoformat()))

        return expire
    if job == "low_stock":
        from crm.services import inventory

        return lambda _as_of: dict(inventory.check_low_stock())
    raise ValueError(f"no job {job!r}")


def run(event: dict[str, Any]) -> Any:
    task = event.get("task")
    if task == "job":
        job = str(event.get("job"))
        run_id = event.get("run_id")
        return job_runs.execute(job, _work(job, run_id), run_id=run_id, as_of=event.get("as_of"))
    if task == "preview":
        from crm_analytics import jobs

        return jobs.preview(event.get("rule"))
    if task == "report":
        from crm_analytics import report_jobs

        return report_jobs.report(str(event.get("report")), dict(event.get("params") or {}))
    if task == "scrub":
        from crm_analytics import jobs

        return jobs.scrub([str(c) for c in event.get("customer_ids", [])])
    raise ValueError(f"unknown task {task!r}")
