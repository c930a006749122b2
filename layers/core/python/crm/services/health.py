"""The stage's health: does every table it configures answer?"""

from __future__ import annotations

from typing import Any

from crm.config import get_settings
from crm.store.health import check_tables

VERSION = "0.1.0"
OK, DEGRADED = "ok", "degraded"


def stage_health() -> dict[str, Any]:
    """`ok` when every table answers; `degraded` otherwise (a deploy or the local stack is not
    ready), with each table's answer."""
    checks = check_tables()
    return {
        "status": OK if all(checks.values()) else DEGRADED,
        "stage": get_settings().stage,
        "version": VERSION,
        "checks": checks,
    }
