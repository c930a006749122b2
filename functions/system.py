"""Health and the published API description."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from chalice import Response

from crm.api import json_response
from crm.config import get_settings

OPENAPI_FILE = Path(__file__).with_name("openapi.json")
VERSION = "0.1.0"


def health() -> Response:
    """`ok` when the customer tables answer; 503 `degraded` otherwise (a deploy or the local
    stack is not ready)."""
    from crm.store.health import check_tables

    settings = get_settings()
    checks = check_tables()
    ok = all(checks.values())
    body: dict[str, Any] = {
        "status": "ok" if ok else "degraded",
        "stage": settings.stage,
        "version": VERSION,
        "checks": checks,
    }
    return json_response(body, 200 if ok else 503)


@lru_cache(maxsize=1)
def _openapi() -> dict[str, Any]:
    return json.loads(OPENAPI_FILE.read_text(encoding="utf-8"))


def openapi() -> Response:
    return json_response(_openapi())
