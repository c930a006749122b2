"""Segments as the API serves them: the built-in ones (lifecycle, value bands, RFM groups),
rule segments defined by operators, their sizes and members as the last segmentation run left
them, and previews. Rules are checked here (422 naming every problem) before anything is
stored; computing over a whole shop is the analytics function's (pandas), reached through
Lambda for a preview, never imported here."""

from __future__ import annotations

import re
from typing import Any

from crm.adapters import lambdas
from crm.clock import now_iso
from crm.config import get_settings
from crm.domain import cursors
from crm.domain.errors import Conflict, NotFound, ValidationFailed
from crm.domain.segment_rules import (
    BUILTIN_SEGMENTS,
    LIFECYCLE_STAGES,
    RFM_SEGMENTS,
    VALUE_BANDS,
    parse_rule,
)
from crm.observability import logger
from crm.store import segments as store

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
LONGEST_ID = 64  # a customer id is at most this many bytes (`cus_` + 20 hex today)


def _kind(name: str) -> str:
    if name in LIFECYCLE_STAGES:
        return "lifecycle"
    if name in VALUE_BANDS:
        return "value"
    return "rfm" if name in RFM_SEGMENTS else "rule"


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise ValidationFailed(
            "a segment name is 1-64 lowercase letters, digits, '_' or '-'",
            details=[{"field": "name", "issue": "invalid_name"}],
        )


def _sizes() -> dict[str, Any]:
    return store.latest() or {}


def list_segments() -> dict[str, Any]:
    latest = _sizes()
    sizes = latest.get("segments", {})
    items = [
        {"name": name, "kind": _kind(name), "size": sizes.get(name, {}).get("size")}
        for name in BUILTIN_SEGMENTS
    ]
    for definition in store.definitions():
        name = definition["name"]
        items.append({"name": name, "kind": "rule", "size": sizes.get(name, {}).get("size")})
    return {"items": items, "as_of": latest.get("as_of")}


def get_segment(name: str) -> dict[str, Any]:
    definition = None if name in BUILTIN_SEGMENTS else store.get_definition(name)
    if name not in BUILTIN_SEGMENTS and definition is None:
        raise NotFound(f"segment {name} does not exist")
    latest = _sizes()
    history = [
        {"as_of": h["as_of"], "size": h["segments"][name]["size"]}
        for h in store.history()
        if name in h.get("segments", {})
    ]
    return {
        "name": name,
        "kind": _kind(name),
        "rule": definition["rule"] if definition else None,
        "created_at": definition.get("created_at") if definition else None,
        "updated_at": definition.get("updated_at") if definition else None,
        "size": latest.get("segments", {}).get(name, {}).get("size"),
        "as_of": latest.get("as_of"),
        "size_history": history,
    }


def put_segment(name: str, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Create or replace a rule segment; its members come with the next segmentation run."""
    _check_name(name)
    if name in BUILTIN_SEGMENTS:
        raise Conflict(f"{name} is a built-in segment", code="builtin_segment")
    unknown = sorted(set(body) - {"rule"})
    if unknown:
        raise ValidationFailed(
            "unknown field", details=[{"field": f, "issue": "unknown_field"} for f in unknown]
        )
    if "rule" not in body:
        raise ValidationFailed("rule is required", details=[{"field": "rule", "issue": "required"}])
    parse_rule(body["rule"], get_settings().currency)
    existing = store.get_definition(name)
    now = now_iso()
    definition = {
        "name": name,
        "rule": body["rule"],
        "created_at": existing["created_at"] if existing else now,
        "updated_at": now,
    }
    store.put_definition(definition)
    logger.info("rule segment saved", extra={"segment": name, "new_segment": existing is None})
    return get_segment(name), existing is None


def delete_segment(name: str) -> dict[str, Any]:
    if name in BUILTIN_SEGMENTS:
        raise Conflict(f"{name} is a built-in segment", code="builtin_segment")
    if store.get_definition(name) is None:
        raise NotFound(f"segment {name} does not exist")
    store.delete_definition(name)
    return {"name": name, "deleted": True}


def preview(body: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(body) - {"rule"})
    if unknown:
        raise ValidationFailed(
            "unknown field", details=[{"field": f, "issue": "unknown_field"} for f in unknown]
        )
    if "rule" not in body:
        raise ValidationFailed("rule is required", details=[{"field": "rule", "issue": "required"}])
    parse_rule(body["rule"], get_settings().currency)  # refused here, not in the function
    require_snapshot()
    answer = lambdas.invoke(
        get_settings().analytics_function, {"task": "preview", "rule": body["rule"]}
    )
    return dict(answer)


def require_snapshot() -> None:
    """Previews and reports read the columnar snapshot, which only the jobs take (a Scan of
    the tables has no place on a request path)."""
    if store.snapshot_manifest() is None:
        raise Conflict(
            "there is no analytics snapshot yet: run the segmentation or reports job first "
            "(POST /jobs/segmentation/runs)",
            code="no_snapshot",
        )


def member_ids(name: str, limit: int, cursor: str | None) -> tuple[list[str], str | None]:
    """A page of the segment's members as the last run left them, in `customer_id` order.
    The cursor holds the run's date and a byte offset in its membership file, so paging
    through stays on one run's list even when a new run lands meanwhile."""
    if name not in BUILTIN_SEGMENTS and store.get_definition(name) is None:
        raise NotFound(f"segment {name} does not exist")
    if cursor is not None:
        as_of, offset_text = cursors.decode(cursor, 2)
        if not offset_text.isdigit():
            raise cursors.invalid()
        offset = int(offset_text)
    else:
        latest = _sizes()
        if name not in latest.get("segments", {}):
            return [], None
        as_of, offset = latest["as_of"], 0
    wanted = limit * (LONGEST_ID + 1)
    chunk = store.read_members(name, as_of, offset, wanted)
    if chunk is None:  # past the end: the previous page ended exactly there
        return [], None
    complete = len(chunk) < wanted
    lines = chunk.split(b"\n")
    if not complete or not chunk.endswith(b"\n"):
        lines = lines[:-1]  # the last line may be cut by the range
    lines = [line for line in lines if line][:limit]
    ids = [line.decode() for line in lines]
    consumed = sum(len(line) + 1 for line in lines)
    more = not complete or consumed < len(chunk)
    next_cursor = cursors.encode(as_of, str(offset + consumed)) if ids and more else None
    return ids, next_cursor


def members(name: str, limit: int, cursor: str | None) -> dict[str, Any]:
    ids, next_cursor = member_ids(name, limit, cursor)
    return {"items": [{"customer_id": c} for c in ids], "next_cursor": next_cursor}
