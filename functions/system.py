"""Health and the published API description."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from chalice import Response

from crm.api import json_response

OPENAPI_FILE = Path(__file__).with_name("openapi.json")


def health() -> Response:
    # Imported here, not above: `GET /openapi.json` shares this module and needs no store.
    from crm.services.health import OK, stage_health

    body = stage_health()
    return json_response(body, 200 if body["status"] == OK else 503)


@lru_cache(maxsize=1)
def _openapi() -> dict[str, Any]:
    return json.loads(OPENAPI_FILE.read_text(encoding="utf-8"))


def openapi() -> Response:
    return json_response(_openapi())
