"""Job runs: one JSON object per run in the data bucket (`jobs/<job>/runs/<run id>.json`).

A run is written by whoever starts it (`running`) and by the function that does the work
(`succeeded` or `failed`, with its summary). S3 is read-after-write consistent, and each run has
one writer at a time, so no condition is needed; runs are few (a handful a day per job).
"""

from __future__ import annotations

import secrets
from typing import Any

from crm.adapters import s3
from crm.clock import now
from crm.config import get_settings

PREFIX = "jobs/"


def new_run_id() -> str:
    """Sortable by start time, unguessable after it."""
    return f"run_{now().strftime('%Y%m%dT%H%M%S')}_{secrets.token_hex(4)}"


def _key(job: str, run_id: str) -> str:
    return f"{PREFIX}{job}/runs/{run_id}.json"


def save(run: dict[str, Any]) -> None:
    s3.put_json(get_settings().data_bucket, _key(run["job"], run["run_id"]), run)


def get(job: str, run_id: str) -> dict[str, Any] | None:
    found = s3.get_json(get_settings().data_bucket, _key(job, run_id))
    return found if isinstance(found, dict) else None


def _lease_key(name: str) -> str:
    return f"{PREFIX}{name}.lease.json"


def claim_lease(name: str, run_id: str, at: str) -> bool:
    """Take the lease `name` for a run (S3 conditional write): False while another holds it."""
    return s3.put_if_absent(
        get_settings().data_bucket, _lease_key(name), {"run_id": run_id, "at": at}
    )


def lease(name: str) -> dict[str, Any] | None:
    found = s3.get_json(get_settings().data_bucket, _lease_key(name))
    return found if isinstance(found, dict) else None


def release_lease(name: str) -> None:
    s3.delete_keys(get_settings().data_bucket, [_lease_key(name)])
