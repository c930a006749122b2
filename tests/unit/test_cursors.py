"""Page cursors (`crm.domain.cursors`): the full key, opaque and URL-safe."""

from __future__ import annotations

import re

import pytest

from crm.domain.cursors import decode, encode
from crm.domain.errors import ValidationFailed


def test_a_cursor_is_url_safe_and_gives_back_its_key():
    key = ("2026-11-20T10:00:00.000+00:00#adj 1/é", "ent#adj 1/é")
    cursor = encode(*key)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", cursor)
    assert decode(cursor, 2) == key


@pytest.mark.parametrize(
    "cursor",
    ["", "2026-11-20T10:00:00+00:00", "@@", encode("a"), encode("a", "b", "c"), "x" * 3000],
)
def test_anything_else_is_422_on_cursor(cursor):
    with pytest.raises(ValidationFailed) as refused:
        decode(cursor, 2)
    assert refused.value.details == [{"field": "cursor", "issue": "invalid_cursor"}]
