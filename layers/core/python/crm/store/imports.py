"""Where each dropped file's import stands: one item per file content (`<key>#<etag>`).

A file is imported in chunks (one Lambda invocation each, looped by the `FileImport` workflow)
and every chunk checkpoints here: the byte offset to go on from, the counts so far, how many
error parts it wrote. The item is owned by one run (the workflow execution's name): every
write is conditional on it, so when the same content is dropped again while an earlier run
still works, the newer run takes the item over and the older one stops at its next checkpoint.
A run that failed (a crash, retries exhausted) leaves the item `failed` with its checkpoint:
dropping the same content again resumes from there instead of starting over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from pynamodb.exceptions import DoesNotExist, PutError, PynamoDBException, UpdateError
from pynamodb.expressions.update import Action

from crm.config import get_settings
from crm.domain.errors import Unavailable
from crm.store import retry
from crm.store.models import ImportModel, bind_models

RUNNING, FAILED, DONE = "running", "failed", "done"
KEEP_DAYS = 30  # the record of a finished import, for reports and resumes


class Superseded(Exception):
    """Another run of the same content took the import over: this one stops."""


@dataclass
class ImportState:
    import_id: str
    run: str
    status: str
    file: str
    kind: str
    format: str
    started_at: str
    position: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    error_parts: int = 0
    chunks: int = 0
    resumed_from: int | None = None
    error: str | None = None
    finished_at: str | None = None


def _state(item: ImportModel) -> ImportState:
    return ImportState(
        import_id=item.import_id,
        run=item.run,
        status=item.status,
        file=item.file,
        kind=item.kind,
        format=item.format,
        started_at=item.started_at,
        position=dict(item.position or {}),
        counts=dict(item.counts or {}),
        error_parts=int(item.error_parts or 0),
        chunks=int(item.chunks or 0),
        resumed_from=int(item.resumed_from) if item.resumed_from is not None else None,
        error=item.error,
        finished_at=item.finished_at,
    )


def _expiry(now: str) -> datetime:
    return datetime.fromisoformat(now).astimezone(UTC) + timedelta(days=KEEP_DAYS)


class ImportStore:
    def get(self, import_id: str) -> ImportState | None:
        try:
            return _state(ImportModel.get(import_id, consistent_read=True))
        except DoesNotExist:
            return None
        except PynamoDBException as exc:
            raise Unavailable("the import could not be read") from exc

    def claim(self, fresh: ImportState, now: str) -> ImportState:
        """The import of `fresh.import_id` as run `fresh.run` will go on with it: new, the
        same run's own (a next chunk, a retry), a finished import of the same content started
        over (a new drop), or an unfinished one taken over where it stopped."""
        for _ in range(3):
            current = self.get(fresh.import_id)
            if current is not None and current.run == fresh.run:
                return current
            try:
                if current is None:
                    self._put(fresh, now, ImportModel.import_id.does_not_exist())
                    return fresh
                if current.status == DONE:
                    self._put(fresh, now, ImportModel.run == current.run)
                    return fresh
                previous = current.run
                current.run, current.status, current.error = fresh.run, RUNNING, None
                current.resumed_from = int(current.position.get("number") or 0)
                self.save(current, now, expected_run=previous)
                return current
            except (PutError, Superseded):
                continue  # someone else claimed it meanwhile: look again
        raise Unavailable("the import is being claimed by several runs at once; retry")

    def _put(self, state: ImportState, now: str, condition: Any) -> None:
        ImportModel(
            state.import_id,
            run=state.run,
            status=state.status,
            file=state.file,
            kind=state.kind,
            format=state.format,
            position=state.position,
            counts=state.counts,
            error_parts=state.error_parts,
            chunks=state.chunks,
            started_at=state.started_at,
            updated_at=now,
            expires_at=_expiry(now),
        ).save(condition=condition)

    def save(self, state: ImportState, now: str, expected_run: str | None = None) -> None:
        """Checkpoint `state`, on condition that its run still owns the import (or, for a
        take-over, that `expected_run` still does); `Superseded` otherwise."""
        item = ImportModel(state.import_id)
        actions: list[Action] = [
            ImportModel.run.set(state.run),
            ImportModel.status.set(state.status),
            ImportModel.format.set(state.format),
            ImportModel.position.set(state.position),
            ImportModel.counts.set(state.counts),
            ImportModel.error_parts.set(state.error_parts),
            ImportModel.chunks.set(state.chunks),
            ImportModel.updated_at.set(now),
            ImportModel.expires_at.set(_expiry(now)),
        ]
        if state.resumed_from is not None:
            actions.append(ImportModel.resumed_from.set(state.resumed_from))
        actions.append(
            ImportModel.error.set(state.error) if state.error else ImportModel.error.remove()
        )
        if state.finished_at:
            actions.append(ImportModel.finished_at.set(state.finished_at))
        try:
            item.update(actions=actions, condition=ImportModel.run == (expected_run or state.run))
        except UpdateError as exc:
            if getattr(exc, "cause_response_code", "") == "ConditionalCheckFailedException":
                raise Superseded() from exc
            raise Unavailable("the import could not be saved") from exc


@lru_cache(maxsize=1)
def get_import_store() -> ImportStore:
    bind_models(get_settings())
    return ImportStore()


def reset() -> None:
    retry.reset()  # connections forgotten: their shared client too (a new endpoint, a test)
    get_import_store.cache_clear()
    ImportModel._connection = None
