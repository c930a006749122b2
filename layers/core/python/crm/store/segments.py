"""Segments in the data bucket, under `analytics/segments/`:

- `definitions/<name>.json`: a rule segment (`name`, `rule` as given, `created_at`,
  `updated_at`);
- `members/<name>/date=<as_of>/members.txt`: a segment's members on a day, one `customer_id`
  per line, sorted (the dated membership file; pages are read by byte range);
- `latest.json`: the last run (`as_of`, `run_id`, each segment's `size`, `revenue` and file);
- `history.json`: every run's sizes and revenue, by `as_of` (the segments report).

One writer each: the API writes definitions, the segmentation job the rest.
"""

from __future__ import annotations

from typing import Any

from crm.adapters import s3
from crm.config import get_settings

PREFIX = "analytics/segments/"
DEFINITIONS = PREFIX + "definitions/"
LATEST = PREFIX + "latest.json"
HISTORY = PREFIX + "history.json"


def _bucket() -> str:
    return get_settings().data_bucket


def members_key(name: str, as_of: str) -> str:
    return f"{PREFIX}members/{name}/date={as_of}/members.txt"


def get_definition(name: str) -> dict[str, Any] | None:
    found = s3.get_json(_bucket(), f"{DEFINITIONS}{name}.json")
    return found if isinstance(found, dict) else None


def put_definition(definition: dict[str, Any]) -> None:
    s3.put_json(_bucket(), f"{DEFINITIONS}{definition['name']}.json", definition)


def delete_definition(name: str) -> None:
    s3.delete_keys(_bucket(), [f"{DEFINITIONS}{name}.json"])
    s3.delete_prefix(_bucket(), f"{PREFIX}members/{name}/")


def definitions() -> list[dict[str, Any]]:
    found = []
    for key in s3.list_keys(_bucket(), DEFINITIONS):
        definition = s3.get_json(_bucket(), key)
        if isinstance(definition, dict):
            found.append(definition)
    return sorted(found, key=lambda d: str(d.get("name")))


SNAPSHOT_MANIFEST = "analytics/manifest/snapshot.json"  # crm_analytics.snapshot.MANIFEST


def snapshot_manifest() -> dict[str, Any] | None:
    """The latest columnar snapshot's date and sizes (written by the analytics jobs)."""
    found = s3.get_json(_bucket(), SNAPSHOT_MANIFEST)
    return found if isinstance(found, dict) else None


def latest() -> dict[str, Any] | None:
    found = s3.get_json(_bucket(), LATEST)
    return found if isinstance(found, dict) else None


def history() -> list[dict[str, Any]]:
    found = s3.get_json(_bucket(), HISTORY)
    return found if isinstance(found, list) else []


def record_run(run: dict[str, Any], members: dict[str, bytes]) -> None:
    """The run's membership files, then `latest.json` (so a reader never meets a file the
    pointer names before it exists), then the history."""
    bucket = _bucket()
    for name, body in members.items():
        s3.put_bytes(bucket, members_key(name, run["as_of"]), body, "text/plain; charset=utf-8")
    s3.put_json(bucket, LATEST, run)
    kept = [h for h in history() if h.get("as_of") != run["as_of"]]
    entry = {
        "as_of": run["as_of"],
        "run_id": run["run_id"],
        "total_revenue": run["total_revenue"],
        "segments": {
            name: {"size": s["size"], "revenue": s["revenue"]}
            for name, s in run["segments"].items()
        },
    }
    s3.put_json(bucket, HISTORY, sorted([*kept, entry], key=lambda h: str(h["as_of"])))


def read_members(name: str, as_of: str, offset: int, length: int) -> bytes | None:
    """Up to `length` bytes of the membership file from `offset`; None past its end."""
    return s3.get_bytes(_bucket(), members_key(name, as_of), (offset, offset + length - 1))
