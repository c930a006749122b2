"""The S3 drop-folder: a file under `incoming/<kind>/` is imported row by row, in chunks.

`start_imports` (for the bucket's notification) starts one `FileImport` workflow per drop. Its
`chunk` step (`import_step`) reads the file from the last checkpoint (Powertools' streaming
`S3Object`, 64 KB ranged reads, never the whole file), validates rows, hands them to the kind
(customers, orders, inventory) in batches, and checkpoints every `SEGMENT_ROWS` rows: the byte
offset to go on from, the counts, and the bad rows of the segment as a part of the error file.
It stops after `import_chunk_rows` rows or when its Lambda nears its time limit, and the
workflow loops. A crash costs the rows since the last checkpoint: the retry goes on from it,
and those rows are written again idempotently (they count as unchanged the second time). The
`finish` step writes `results/<path>.errors.csv` (row, original row, reason) from the parts,
`results/<path>.report.json`, and moves the original to `archive/<path>`.

The same content dropped again is imported again and changes nothing (every kind's writes are
idempotent: the report says unchanged). A run that failed for good leaves the file where it
was and a `failed` report; dropping the same content again resumes from its checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from crm.adapters import workflows
from crm.clock import now_iso
from crm.config import get_settings
from crm.domain import import_files
from crm.domain.import_files import FileReader, Position, Row
from crm.observability import logger, metrics
from crm.services import import_customers, import_inventory
from crm.services.import_kinds import CREATED, UNCHANGED, UPDATED, Kind, Outcome, Unit
from crm.services.workflow_steps import InjectedFault, check_fault
from crm.store.imports import (
    DONE,
    FAILED,
    RUNNING,
    ImportState,
    ImportStore,
    Superseded,
    get_import_store,
)

READ_BYTES = 64 * 1024
# Rows between two checkpoints: what a crash can cost, and one error part at most.
SEGMENT_ROWS = 1000
# A chunk stops when its Lambda has less than this left, so it can always checkpoint.
TIME_RESERVE_MS = 120_000
COUNTS = ("rows", CREATED, UPDATED, UNCHANGED, "failed")


KINDS = ("customers", "orders", "inventory")


def kind_of(name: str) -> Kind | None:
    """The kind an `incoming/<name>/` folder holds; imported on first use (cold starts of the
    other functions never load the import code)."""
    if name == "customers":
        return Kind(
            name, import_customers.units, import_customers.write, import_customers.BATCH_ROWS
        )
    if name == "orders":
        from crm.services import order_import

        return Kind(
            name, order_import.units, order_import.write, order_import.BATCH, unit_name="orders"
        )
    if name == "inventory":
        return Kind(
            name, import_inventory.units, import_inventory.write, import_inventory.BATCH_ROWS
        )
    return None


def _s3() -> Any:
    import boto3

    return boto3.client("s3")


# -- the drop -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Drop:
    """An object put in the bucket, as its notification tells it."""

    bucket: str
    key: str  # decoded
    etag: str  # without quotes; "" when the notification does not say
    at: str  # the notification's event time; "" when it does not say


def start_imports(drops: Iterable[Drop]) -> list[str]:
    """One `FileImport` workflow per file dropped under `incoming/`: the runs started. The
    execution name comes from the drop itself (key, content, time), so a repeated notification
    of the same drop starts nothing more."""
    settings = get_settings()
    started = []
    for drop in drops:
        if not drop.bucket or not drop.key.startswith("incoming/") or drop.key.endswith("/"):
            continue  # not ours, or a folder marker (what the S3 console's "Create folder" puts)
        etag = drop.etag
        if not etag:  # not in every event source's records: ask S3
            client = _s3()
            try:
                etag = client.head_object(Bucket=drop.bucket, Key=drop.key)["ETag"].strip('"')
            except client.exceptions.ClientError:
                logger.info("dropped file gone before its import started")
                continue
        name = f"{drop.key}|{etag}|{drop.at}"
        run = workflows.execution_name("import", hashlib.sha256(name.encode()).hexdigest()[:40])
        payload = {"bucket": drop.bucket, "key": drop.key, "etag": etag, "run": run}
        workflows.start(settings.import_machine, run, payload)
        started.append(run)
    return started


# -- the workflow's steps -----------------------------------------------------------------------


def _claim_step(event: dict[str, Any], context: Any) -> dict[str, Any]:
    state = claim(*_file_of(event))
    return {"resumed_from_row": state.resumed_from}


def _chunk_step(event: dict[str, Any], context: Any) -> dict[str, Any]:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    deadline = time.monotonic() + (remaining() - TIME_RESERVE_MS) / 1000 if remaining else None
    return run_chunk(*_file_of(event), deadline=deadline)


def _finish_step(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return finish(*_file_of(event))


def _fail_step(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return fail(*_file_of(event), event.get("error") or {})


def _file_of(event: dict[str, Any]) -> tuple[str, str, str, str]:
    return tuple(str(event.get(name) or "") for name in ("bucket", "key", "etag", "run"))  # type: ignore[return-value]


STEPS = {"claim": _claim_step, "chunk": _chunk_step, "finish": _finish_step, "fail": _fail_step}


def import_id(bucket: str, key: str, etag: str) -> str:
    return f"{bucket}/{key}#{etag}"


def _fresh(bucket: str, key: str, etag: str, run: str) -> ImportState:
    parts = key.split("/")
    return ImportState(
        import_id=import_id(bucket, key, etag),
        run=run,
        status=RUNNING,
        file=key,
        kind=parts[1] if len(parts) > 2 else "",
        format="",
        started_at=now_iso(),
        counts={name: 0 for name in COUNTS},
    )


@dataclass
class _Chunk:
    """One invocation's work: the state it checkpoints and the bad rows since the last one."""

    state: ImportState
    store: ImportStore
    client: Any
    bucket: str
    errors: list[str]
    crash_armed: bool = False
    saved: int = 0  # checkpoints this invocation wrote

    def count(self, name: str, rows: int, units: int = 1) -> None:
        counts = self.state.counts
        counts[name] = counts.get(name, 0) + rows
        if name != "rows":
            units_seen = counts.setdefault("units", {})
            units_seen[name] = units_seen.get(name, 0) + units

    def fail_unit(self, unit: Unit, reason: str) -> None:
        for row in unit.rows:
            self.errors.append(import_files.error_csv_line(row, reason))
        self.count("failed", len(unit.rows))

    def checkpoint(self, position: Position) -> None:
        state = self.state
        if self.errors:
            self.client.put_object(
                Bucket=self.bucket,
                Key=_part_key(state, state.error_parts),
                Body="".join(self.errors).encode(),
            )
            state.error_parts += 1
            self.errors = []
        state.position = asdict(position)
        self.store.save(state, now_iso())
        self.saved += 1


def _part_key(state: ImportState, number: int) -> str:
    digest = hashlib.sha256(state.import_id.encode()).hexdigest()[:32]
    return f"work/{digest}/errors-{number:06d}.csv"


def _chunks(client: Any, bucket: str, key: str, offset: int) -> Iterator[bytes]:
    from aws_lambda_powertools.utilities.streaming import S3Object

    stream = S3Object(bucket=bucket, key=key, boto3_client=client)
    if offset:
        stream.seek(offset)
    while True:
        chunk = stream.read(READ_BYTES)
        if not chunk:
            return
        yield chunk


def _position_after(unit: Unit, reader: FileReader) -> Position:
    last = unit.rows[-1]
    state = reader.position()
    return Position(last.end, last.number, reader.header, state.encoding, state.ascii_so_far)


def claim(bucket: str, key: str, etag: str, run: str) -> ImportState:
    """The run's first step: the import of this content is new, started over (it finished
    before: the same content dropped again), or taken over where an earlier run stopped."""
    return get_import_store().claim(_fresh(bucket, key, etag, run), now_iso())


def run_chunk(
    bucket: str, key: str, etag: str, run: str, *, deadline: float | None = None
) -> dict[str, Any]:
    """Import from the last checkpoint on, until the file ends, the chunk's row budget is
    spent or `deadline` (time.monotonic()) passes. {"done": bool, ...}."""
    store = get_import_store()
    state = store.get(import_id(bucket, key, etag))
    if state is None or state.run != run:
        return {"done": True, "superseded": True}  # a newer drop of the same content took over
    if state.status != RUNNING:
        return {"done": True, "rows": state.counts.get("rows", 0)}
    client = _s3()
    kind = kind_of(state.kind)
    try:
        head = client.head_object(Bucket=bucket, Key=key)
        fmt = import_files.format_for(key) if kind else ""
    except ValueError as exc:
        return _refuse(state, store, str(exc))
    except client.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return {"done": True, "gone": True}  # imported and archived already
        raise
    if head.get("ETag", "").strip('"') != etag:
        # Replaced by a newer file before this one was read to the end: the newer drop has its
        # own run (another content, another import); this one ends without a report.
        state.status, state.error = DONE, "replaced by a newer file under the same name"
        store.save(state, now_iso())
        return {"done": True, "superseded": True}
    if kind is None:
        names = ", ".join(KINDS)
        return _refuse(state, store, f"unsupported kind {state.kind!r}: {names}")
    state.format = fmt
    state.chunks += 1
    chunk = _Chunk(state, store, client, bucket, [])
    chunk.crash_armed = _crash_wanted(key)
    start = Position(**state.position) if state.position else Position()
    reader = FileReader(_chunks(client, bucket, key, start.offset), fmt, start)
    budget = get_settings().import_chunk_rows
    done_rows = 0
    since_checkpoint = 0
    batch: list[Unit] = []
    try:
        for unit in kind.units(iter(reader)):
            chunk.count("rows", len(unit.rows))
            if unit.problem is not None:
                chunk.fail_unit(unit, unit.problem)
            else:
                batch.append(unit)
                if len(batch) >= kind.batch:
                    _write(kind, batch, chunk)
                    batch = []
            since_checkpoint += len(unit.rows)
            done_rows += len(unit.rows)
            if since_checkpoint >= SEGMENT_ROWS:
                _write(kind, batch, chunk)
                batch = []
                chunk.checkpoint(_position_after(unit, reader))
                since_checkpoint = 0
                if done_rows >= budget or (deadline is not None and time.monotonic() > deadline):
                    return {"done": False, "rows": state.counts["rows"]}
        _write(kind, batch, chunk)
        chunk.checkpoint(reader.position())
    except Superseded:
        logger.info("import taken over by a newer drop", extra={"import_kind": state.kind})
        return {"done": True, "superseded": True}
    return {"done": True, "rows": state.counts["rows"]}


def _crash_wanted(key: str) -> bool:
    """The fault switch `import.crash` (or `import.crash@<path under incoming/>`): crash in the
    middle of the segment after this chunk's first checkpoint, for resume tests."""
    try:
        check_fault("import", "crash", key.removeprefix("incoming/"))
    except InjectedFault:
        return True
    return False


def _write(kind: Kind, batch: list[Unit], chunk: _Chunk) -> None:
    if not batch:
        return
    outcomes: list[Outcome] = kind.write(batch)
    for unit, outcome in zip(batch, outcomes, strict=True):
        if outcome.result == "failed":
            chunk.fail_unit(unit, outcome.reason or "failed")
        else:
            chunk.count(outcome.result, len(unit.rows))
    if chunk.crash_armed and chunk.saved:
        raise InjectedFault("fault injected at import.crash")


def _refuse(state: ImportState, store: ImportStore, reason: str) -> dict[str, Any]:
    """A file that cannot be imported at all (unknown kind or format): one failed line."""
    state.counts["failed"] = 1
    state.position = {}
    state.error = reason
    store.save(state, now_iso())
    return {"done": True, "refused": reason}


def finish(bucket: str, key: str, etag: str, run: str) -> dict[str, Any]:
    """The error file from the parts, the report, the original to `archive/`."""
    store = get_import_store()
    state = store.get(import_id(bucket, key, etag))
    if state is None or state.run != run:
        return {"superseded": True}
    client = _s3()
    path = key.removeprefix("incoming/")
    results = f"results/{path}"
    if state.status == DONE:  # finished by an attempt that failed while tidying up: tidy up
        for number in range(state.error_parts):
            client.delete_object(Bucket=bucket, Key=_part_key(state, number))
        if state.error:  # replaced by a newer file: that one's run reports
            return {"superseded": True}
        errors = f"{results}.errors.csv" if state.error_parts else None
        return _report(state, errors_file=errors, archived_as=f"archive/{path}")
    errors_file = _write_errors(client, bucket, state, f"{results}.errors.csv")
    archived = _archive(client, bucket, key, etag, f"archive/{path}")
    state.status, state.finished_at = DONE, now_iso()
    report = _report(state, errors_file=errors_file, archived_as=archived)
    client.put_object(
        Bucket=bucket,
        Key=f"{results}.report.json",
        Body=json.dumps(report, ensure_ascii=False, indent=1).encode(),
        ContentType="application/json",
    )
    try:
        store.save(state, now_iso())
    except Superseded:
        return {"superseded": True}
    # Last, so a finish retried after a crash can still build the error file from them.
    for number in range(state.error_parts):
        client.delete_object(Bucket=bucket, Key=_part_key(state, number))
    _log(report)
    return report


def _archive(client: Any, bucket: str, key: str, etag: str, archived: str) -> str | None:
    """Move the original to `archive/` (a managed copy: multipart above 5 GB), unless a newer
    drop replaced it meanwhile (its own run archives it). Moved already by an attempt that
    crashed after it: fine."""
    try:
        client.copy(
            {"Bucket": bucket, "Key": key},
            bucket,
            archived,
            ExtraArgs={"CopySourceIfMatch": f'"{etag}"'} if etag else None,
        )
    except client.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            try:
                client.head_object(Bucket=bucket, Key=archived)
                return archived
            except client.exceptions.ClientError:
                return None
        if exc.response.get("Error", {}).get("Code") in ("412", "PreconditionFailed"):
            return None
        raise
    client.delete_object(Bucket=bucket, Key=key)
    return archived


def _write_errors(client: Any, bucket: str, state: ImportState, target: str) -> str | None:
    """Concatenate the error parts into the error file, streamed through a temporary file
    (a file of a million bad rows is still written in constant memory)."""
    refusal = state.error if state.counts.get("rows", 0) == 0 and state.error else None
    if not state.error_parts and not refusal:
        client.delete_object(Bucket=bucket, Key=target)
        return None
    with tempfile.TemporaryFile() as out:
        # With a BOM: Excel, which most shops open it with, then reads it as UTF-8.
        out.write(("\ufeff" + import_files.ERROR_CSV_HEADER).encode())
        if refusal:
            out.write(import_files.error_csv_line(Row(0, "", None), refusal).encode())
        for number in range(state.error_parts):
            body = client.get_object(Bucket=bucket, Key=_part_key(state, number))["Body"]
            shutil.copyfileobj(body, out, READ_BYTES)
        out.seek(0)
        client.upload_fileobj(
            out, bucket, target, ExtraArgs={"ContentType": "text/csv; charset=utf-8"}
        )
    return target


def fail(bucket: str, key: str, etag: str, run: str, error: dict[str, Any]) -> dict[str, Any]:
    """A run that failed for good: the report says so and where it stopped; the file stays in
    incoming/ and the checkpoint stays, so dropping the same content again resumes."""
    store = get_import_store()
    state = store.get(import_id(bucket, key, etag)) or _fresh(bucket, key, etag, run)
    if state.run != run:
        return {"superseded": True}
    cause = str(error.get("Cause") or error.get("Error") or "unknown error")
    try:
        detail = json.loads(cause)
        cause = str(detail.get("errorMessage") or detail.get("errorType") or cause)
    except (ValueError, AttributeError):
        pass
    state.status, state.error = FAILED, cause[:500]
    try:
        store.save(state, now_iso())
    except Superseded:
        return {"superseded": True}
    report = _report(state) | {
        "resume": "put the same file in the same place again: the import goes on from row "
        f"{int(state.position.get('number') or 0) + 1}",
    }
    _s3().put_object(
        Bucket=bucket,
        Key=f"results/{key.removeprefix('incoming/')}.report.json",
        Body=json.dumps(report, ensure_ascii=False, indent=1).encode(),
        ContentType="application/json",
    )
    metrics.add_metric(name="ImportsFailed", unit="Count", value=1)
    _log(report)
    return report


def _report(
    state: ImportState, *, errors_file: str | None = None, archived_as: str | None = None
) -> dict[str, Any]:
    counts = state.counts
    report: dict[str, Any] = {
        "file": state.file,
        "kind": state.kind,
        "status": state.status,
        **{name: int(counts.get(name, 0)) for name in COUNTS},
        "started_at": state.started_at,
        "finished_at": state.finished_at,
        "format": state.format or None,
        "encoding": state.position.get("encoding"),
        "chunks": state.chunks,
        "errors_file": errors_file,
        "archived_as": archived_as,
    }
    kind = kind_of(state.kind)
    if kind is not None and kind.unit_name:
        report[kind.unit_name] = dict(counts.get("units") or {})
    if state.resumed_from is not None:
        report["resumed_from_row"] = state.resumed_from
    if state.error:
        report["error"] = state.error
    return report


def _log(report: dict[str, Any]) -> None:
    logger.info(
        "file import ended",
        extra={
            "import_kind": report["kind"],
            "import_status": report["status"],
            "rows": report["rows"],
            "rows_created": report[CREATED],
            "rows_updated": report[UPDATED],
            "rows_unchanged": report[UNCHANGED],
            "rows_failed": report["failed"],
        },
    )


# -- without the workflow -----------------------------------------------------------------------


def import_object(bucket: str, key: str, run: str | None = None) -> dict[str, Any]:
    """The whole import of one object in this process: chunk after chunk, then finish (what
    the workflow does, for tests, benchmarks and tools). Each call is a new drop."""
    run = run or f"inline-{uuid.uuid4().hex}"
    client = _s3()
    etag = client.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
    claim(bucket, key, etag, run)
    while not run_chunk(bucket, key, etag, run)["done"]:
        pass
    return finish(bucket, key, etag, run)
