"""The S3 drop-folder: a file under `incoming/<kind>/` is imported row by row.

Customers (this slice): the file is streamed (Powertools' streaming `S3Object`, 64 KB reads,
never the whole file in memory), its encoding detected (UTF-8 with or without BOM, GB18030),
each row validated; good rows are resolved against the identity index in batches (one
BatchGetItem for a batch's identities, one for its known profiles) and written in batches (one
`TransactWriteItems` for up to 25 new or changed profiles with their identity claims, so
"one profile per person" still holds by condition). A batch that loses a race is redone row by
row through the ordinary upsert. Every bad row goes to `results/<path>.errors.csv` with its
number, the original text and the reason; `results/<path>.report.json` has the counts; the
original moves to `archive/<path>`. The same file again changes nothing (upserts of the same
data write nothing) and reports every row unchanged.

Not yet here (issue 5, next): orders and inventory files, continuing a large file in chunks
across invocations, resuming after a crash.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from crm.config import get_settings
from crm.domain import import_files
from crm.domain.customers import (
    ACTIVE,
    Customer,
    ProfileInput,
    apply_profile,
    new_customer,
    profile_state,
)
from crm.domain.errors import CrmError, ValidationFailed
from crm.observability import logger, metrics
from crm.store.customers import (
    CustomerRepository,
    IdentityTaken,
    StaleProfile,
    get_customer_repository,
)
from functions.profiles import new_customer_id, now_iso, upsert_customer

CHUNK = 64 * 1024
BATCH_ROWS = 25  # profiles per transaction: 25 x (1 profile + up to 3 identities) <= 100 items


@dataclass
class Report:
    file: str
    kind: str
    started_at: str
    encoding: str = ""
    format: str = ""
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    finished_at: str = ""
    errors_file: str | None = None
    archived_as: str | None = None
    calls: dict[str, int] = field(default_factory=dict)

    def view(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _s3() -> Any:
    import boto3

    return boto3.client("s3")


def import_file(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The S3 notification handler: each record is one dropped file."""
    reports = []
    for record in event.get("Records") or []:
        s3 = record.get("s3") or {}
        bucket = (s3.get("bucket") or {}).get("name")
        key = unquote_plus((s3.get("object") or {}).get("key") or "")
        if not bucket or not key.startswith("incoming/"):
            continue
        reports.append(import_object(bucket, key))
    return {"files": reports}


def import_object(bucket: str, key: str) -> dict[str, Any]:
    parts = key.split("/")
    kind = parts[1] if len(parts) > 2 else ""
    report = Report(file=key, kind=kind, started_at=now_iso())
    client = _s3()
    errors: list[str] = []
    if kind != "customers":
        report.failed = 1
        errors.append(
            import_files.error_csv_line(
                import_files.Row(0, "", None, None), f"unsupported kind {kind!r}: customers"
            )
        )
    else:
        try:
            _import_customers(client, bucket, key, report, errors)
        except ValueError as exc:  # an unknown file format
            report.failed += 1
            errors.append(
                import_files.error_csv_line(import_files.Row(0, "", None, None), str(exc))
            )
    _finish(client, bucket, key, report, errors)
    logger.info(
        "file imported",
        extra={
            "import_kind": report.kind,
            "rows": report.rows,
            "rows_created": report.created,
            "rows_updated": report.updated,
            "rows_unchanged": report.unchanged,
            "rows_failed": report.failed,
        },
    )
    return report.view()


def _chunks(client: Any, bucket: str, key: str) -> Iterator[bytes]:
    from aws_lambda_powertools.utilities.streaming import S3Object

    stream = S3Object(bucket=bucket, key=key, boto3_client=client)
    while True:
        chunk = stream.read(CHUNK)
        if not chunk:
            return
        yield chunk


def _import_customers(
    client: Any, bucket: str, key: str, report: Report, errors: list[str]
) -> None:
    settings = get_settings()
    fmt = import_files.format_for(key)
    chunks = _chunks(client, bucket, key)
    first = next(chunks, b"")
    report.encoding = import_files.detect_encoding(first)
    report.format = fmt

    def all_chunks() -> Iterator[bytes]:
        if first:
            yield first
        yield from chunks

    today = datetime.now(UTC).date()
    repo = get_customer_repository()
    batch: list[tuple[import_files.Row, ProfileInput]] = []
    for row in import_files.read_rows(all_chunks(), fmt, encoding=report.encoding):
        report.rows += 1
        if row.problem:
            report.failed += 1
            errors.append(import_files.error_csv_line(row, row.problem))
            continue
        try:
            data = import_files.customer_row(row, settings.default_country, today)
        except ValidationFailed as exc:
            report.failed += 1
            errors.append(import_files.error_csv_line(row, _reason(exc)))
            continue
        batch.append((row, data))
        if len(batch) >= BATCH_ROWS:
            _write_batch(repo, batch, report, errors)
            batch = []
    if batch:
        _write_batch(repo, batch, report, errors)


def _reason(error: CrmError) -> str:
    if isinstance(error, ValidationFailed):
        return import_files.failure_reason(error)
    return error.message


def _write_batch(
    repo: CustomerRepository,
    batch: list[tuple[import_files.Row, ProfileInput]],
    report: Report,
    errors: list[str],
) -> None:
    """Resolve the batch's identities in one read, its known profiles in one more, decide every
    row in memory (two rows of one person become one profile), and write once."""
    now = now_iso()
    keys = [k for _, data in batch for k in data.identity_keys().ordered()]
    owners = repo.resolve(keys)
    profiles = repo.get_many(set(owners.values()))
    pending: dict[str, Customer] = {}  # customer id -> the profile as this batch leaves it
    claims: dict[str, list[str]] = {}
    outcome: dict[int, str] = {}
    for row, data in batch:
        row_keys = data.identity_keys().ordered()
        owner_ids = [owners[k] for k in row_keys if k in owners]
        owner = owner_ids[0] if owner_ids else None
        if owner is None:
            customer = apply_profile(new_customer(new_customer_id(), now), data, now, partial=False)
            pending[customer.customer_id] = customer
            claims[customer.customer_id] = row_keys
            for k in row_keys:
                owners[k] = customer.customer_id
            outcome[row.number] = "created"
            continue
        base = pending.get(owner) or profiles.get(owner)
        if base is None or base.status != ACTIVE:
            outcome[row.number] = "fallback"
            continue
        foreign = {k for k in row_keys if owners.get(k) not in (None, owner)}
        updated = apply_profile(base, data.without_identities(foreign), now, partial=False)
        new_keys = [k for k in row_keys if k not in owners]
        if profile_state(updated) == profile_state(base) and not new_keys:
            outcome[row.number] = "unchanged"
            continue
        pending[owner] = updated
        claims[owner] = list(dict.fromkeys([*claims.get(owner, []), *new_keys]))
        for k in new_keys:
            owners[k] = owner
        outcome[row.number] = "updated"
    changes = [(c, claims.get(cid, [])) for cid, c in pending.items()]
    try:
        if changes:
            repo.save_many(changes, now)
    except (IdentityTaken, StaleProfile):
        # Someone wrote one of these people meanwhile: redo this batch row by row.
        metrics.add_metric(name="ImportBatchFallbacks", unit="Count", value=1)
        outcome = {row.number: "fallback" for row, _ in batch}
    for row, data in batch:
        result = outcome[row.number]
        if result == "fallback":
            try:
                _, created = upsert_customer(data, repo)
                result = "created" if created else "updated"
            except CrmError as exc:
                report.failed += 1
                errors.append(import_files.error_csv_line(row, _reason(exc)))
                continue
        setattr(report, result, getattr(report, result) + 1)


def _finish(client: Any, bucket: str, key: str, report: Report, errors: list[str]) -> None:
    path = key.removeprefix("incoming/")
    results = f"results/{path}"
    if errors:
        # With a BOM: Excel, which most shops open it with, then reads it as UTF-8.
        body = "\ufeff" + import_files.ERROR_CSV_HEADER + "".join(errors)
        client.put_object(
            Bucket=bucket,
            Key=f"{results}.errors.csv",
            Body=body.encode(),
            ContentType="text/csv; charset=utf-8",
        )
        report.errors_file = f"{results}.errors.csv"
    else:
        client.delete_object(Bucket=bucket, Key=f"{results}.errors.csv")
    archived = f"archive/{path}"
    client.copy_object(Bucket=bucket, Key=archived, CopySource={"Bucket": bucket, "Key": key})
    client.delete_object(Bucket=bucket, Key=key)
    report.archived_as = archived
    report.finished_at = now_iso()
    client.put_object(
        Bucket=bucket,
        Key=f"{results}.report.json",
        Body=json.dumps(report.view(), ensure_ascii=False, indent=1).encode(),
        ContentType="application/json",
    )
