"""Jobs run on demand (`POST /jobs/{name}/runs`) and on their schedules, each run recorded
with its status and summary (`GET /jobs/{name}/runs/{run_id}`).

Starting a run records it as `running` and hands it to the analytics function as an
asynchronous invocation, so the request answers at once (202) whatever the job's size. The
function calls `execute`, which records how the run ended. A run whose function died without
saying so (its time limit) reads as `failed` once its time is up.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from crm.adapters import lambdas
from crm.clock import now, now_iso, today_in
from crm.config import get_settings
from crm.domain.errors import NotFound, ValidationFailed
from crm.observability import logger
from crm.store import job_runs

JOBS = ("segmentation", "reports", "points_expiry", "low_stock")
# Jobs that rewrite the columnar snapshot run one at a time: two runs writing the same files
# at once would leave a mix of both.
SNAPSHOT_JOBS = frozenset({"segmentation", "reports"})
SNAPSHOT_LEASE = "snapshot"
LEASE_WAIT_SECONDS = 600
# The analytics function's time limit (15 minutes) and a margin: a run still `running` after
# this never finished.
RUN_TIME_LIMIT = timedelta(minutes=16)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"


def parse_as_of(raw: Any, *, field: str = "as_of") -> date | None:
    """`YYYY-MM-DD`, not after today in the shop's timezone; None when absent."""
    if raw is None:
        return None
    problem = None
    parsed: date | None = None
    if not isinstance(raw, str) or not _DATE.match(raw):
        problem = "invalid_date"
    else:
        try:
            parsed = date.fromisoformat(raw)
        except ValueError:
            problem = "invalid_date"
    if parsed is not None and parsed > today_in(get_settings().timezone):
        problem = "in_the_future"
    if problem:
        raise ValidationFailed(
            f"{field} must be a date (YYYY-MM-DD) up to today",
            details=[{"field": field, "issue": problem}],
        )
    return parsed


def _known(job: str) -> None:
    if job not in JOBS:
        raise NotFound(f"job {job} does not exist", extra={"jobs": list(JOBS)})


def start(job: str, body: dict[str, Any]) -> dict[str, Any]:
    """Record a run and queue it; the run as recorded."""
    _known(job)
    unknown = sorted(set(body) - {"as_of"})
    if unknown:
        raise ValidationFailed(
            "unknown field", details=[{"field": name, "issue": "unknown_field"} for name in unknown]
        )
    if "as_of" in body and not isinstance(body["as_of"], str):
        raise ValidationFailed(
            "as_of must be a date (YYYY-MM-DD)", details=[{"field": "as_of", "issue": "wrong_type"}]
        )
    as_of = parse_as_of(body.get("as_of"))
    run = {
        "job": job,
        "run_id": job_runs.new_run_id(),
        "status": RUNNING,
        "as_of": (as_of or today_in(get_settings().timezone)).isoformat(),
        "trigger": "api",
        "requested_at": now_iso(),
        "started_at": None,
        "finished_at": None,
        "summary": None,
        "error": None,
    }
    job_runs.save(run)
    lambdas.invoke_async(
        get_settings().analytics_function,
        {"task": "job", "job": job, "run_id": run["run_id"], "as_of": run["as_of"]},
    )
    logger.info("job run requested", extra={"job": job, "run_id": run["run_id"]})
    return run


def get(job: str, run_id: str) -> dict[str, Any]:
    _known(job)
    run = job_runs.get(job, run_id) if re.fullmatch(r"run_[0-9T]+_[0-9a-f]+", run_id) else None
    if run is None:
        raise NotFound(f"run {run_id} of job {job} does not exist")
    if run["status"] == RUNNING:
        since = datetime.fromisoformat(run.get("started_at") or run["requested_at"])
        if now() - since > RUN_TIME_LIMIT:
            run = {**run, "status": FAILED, "error": {"type": "TimedOut", "message": "no end"}}
    return run


def execute(
    job: str, work: Callable[[date], dict[str, Any]], *, run_id: str | None, as_of: str | None
) -> dict[str, Any]:
    """Run `work(as_of)` as run `run_id` (a scheduled run gets its id here) and record how it
    ended. A failure is recorded, not raised: a retry of the same invocation would only fail
    the same way, and the next run starts from the tables again."""
    settings = get_settings()
    day = date.fromisoformat(as_of) if as_of else today_in(settings.timezone)
    recorded = job_runs.get(job, run_id) if run_id else None
    run = recorded or {
        "job": job,
        "run_id": run_id or job_runs.new_run_id(),
        "as_of": day.isoformat(),
        "trigger": "api" if run_id else "schedule",
        "requested_at": now_iso(),
        "summary": None,
        "error": None,
    }
    run.update(status=RUNNING, started_at=now_iso(), finished_at=None)
    job_runs.save(run)
    leased = job in SNAPSHOT_JOBS
    try:
        if leased:
            _wait_for_lease(run["run_id"])
        summary = work(day)
    except Exception as exc:
        logger.exception("job run failed", extra={"job": job, "run_id": run["run_id"]})
        run.update(
            status=FAILED,
            finished_at=now_iso(),
            error={"type": type(exc).__name__, "message": str(exc)[:500]},
        )
    else:
        run.update(status=SUCCEEDED, finished_at=now_iso(), summary=summary)
        logger.info("job run succeeded", extra={"job": job, "run_id": run["run_id"]})
    finally:
        if leased and (job_runs.lease(SNAPSHOT_LEASE) or {}).get("run_id") == run["run_id"]:
            job_runs.release_lease(SNAPSHOT_LEASE)
    job_runs.save(run)
    return run


class AlreadyRunning(RuntimeError):
    """Another run that rewrites the snapshot held the lease past the wait."""


def _wait_for_lease(run_id: str) -> None:
    """Take the snapshot's lease, waiting while another run holds it; a lease older than a
    run can live (its function died) is taken over."""
    import time

    deadline = time.monotonic() + LEASE_WAIT_SECONDS
    while not job_runs.claim_lease(SNAPSHOT_LEASE, run_id, now_iso()):
        held = job_runs.lease(SNAPSHOT_LEASE)
        if held and now() - datetime.fromisoformat(held["at"]) > RUN_TIME_LIMIT:
            job_runs.release_lease(SNAPSHOT_LEASE)
            continue
        if time.monotonic() > deadline:
            raise AlreadyRunning(f"run {(held or {}).get('run_id')} holds the snapshot")
        time.sleep(1)
