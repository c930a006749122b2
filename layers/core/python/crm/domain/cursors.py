"""Page cursors: the full key of the last item of a page, opaque and URL-safe.

A cursor is the base64url (no padding) of a JSON list of the key's parts, so it holds only
`[A-Za-z0-9_-]`: a client may paste it into a query string as it is (a raw `+` would arrive
as a space and a `#` would end the URL, and a cursor that was only a timestamp skipped every
other item of that timestamp). Pure: standard library only."""

from __future__ import annotations

import base64
import binascii
import json

from crm.domain.errors import ValidationFailed
from crm.domain.parsing import JsonRefused, load_json

MAX_CURSOR = 2048


def encode(*parts: str) -> str:
    raw = json.dumps(list(parts), ensure_ascii=False, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def invalid() -> ValidationFailed:
    return ValidationFailed(
        "cursor is not a cursor this list gave out; start again without it",
        details=[{"field": "cursor", "issue": "invalid_cursor"}],
    )


def decode(cursor: str, size: int) -> tuple[str, ...]:
    """The `size` parts of a cursor made by `encode`; 422 on `cursor` for anything else."""
    if not cursor or len(cursor) > MAX_CURSOR or not cursor.isascii():
        raise invalid()
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = load_json(raw)
    except (binascii.Error, ValueError, JsonRefused):
        raise invalid() from None
    if (
        not isinstance(parts, list)
        or len(parts) != size
        or not all(isinstance(p, str) and p for p in parts)
    ):
        raise invalid()
    return tuple(parts)
