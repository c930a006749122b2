"""The customers import from the S3 drop-folder: rows per second, AWS calls per row, peak memory.

1. Throughput: a generated customers CSV (the project's columns, Chinese and ASCII names, 1 %
   bad rows of six kinds) imported by `crm.services.imports.import_object` (claim, `run_chunk`
   until done, `finish`: what the `FileImport` workflow does) against moto in-process, with
   the data resources of `infra/` provisioned under the local stage's names as the tests do
   (`crm_local.provision.provision_data_resources`, `crm_local.dynamodb_serial.install()`).
   The floor, measured in the same run right after: the very profile and identity items the
   import stored (scanned back, untimed), written into fresh tables of the same definitions
   with raw boto3 `transact_write_items` of 25 profiles and their identities each.
2. Calls per row (`bench.calls.CallCounter`, a `before-call` hook on every botocore client,
   boto3's and PynamoDB's) for that import and for a re-import of the same file, with the
   DynamoDB calls split by table (read from the request body).
3. Peak memory at 100,000 and 1,000,000 rows: the import runs in a child process (its peak
   resident set, VmHWM, is the function's own), S3 and the imports table served by the
   project's moto endpoint (`crm_local.endpoint.Endpoint`) in another process, and the customers
   kind's writer replaced by a stub answering "created" (moto in-process writes rows far slower
   than DynamoDB: 1M rows would take hours, and moto's storage is not the function's memory).
"""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import date
from pathlib import Path
from typing import Any

from bench.common import (
    LAYER_DIR,
    PROJECT_DIR,
    REGION,
    Failures,
    Row,
    ensure_import_paths,
    judged,
    local_stage_environment,
    machine,
    ratio,
    write_result,
)
from bench.orders import reset_caches

NAME = "imports"
MARK = "BENCH_IMPORTS "
HEADER = ("external_id", "email", "phone", "first_name", "last_name", "birthday", "city")
BAD_EVERY = 100  # 1 % of the rows: row numbers 50, 150, 250, ...
BAD_KINDS = (
    "bad_email",
    "bad_phone",
    "bad_date",
    "wrong_column_count",
    "empty_identity",
    "broken_quoting",
)
# The reason each kind must get in the error file (`crm.domain.import_files.failure_reason`).
BAD_REASONS = {
    "bad_email": "email: invalid_email",
    "bad_phone": "phone: invalid_phone",
    "bad_date": "birthday: invalid_date",
    "wrong_column_count": "wrong_column_count",
    "empty_identity": "external_id|email|phone: no_identity",
    "broken_quoting": "broken_quoting",
}
SURNAMES = "王李张刘陈杨赵黄周吴徐孙马朱胡郭何林罗高"
GIVEN = ("伟", "芳", "娜", "秀英", "敏", "静", "丽", "强", "磊", "军", "洋", "艳", "勇", "杰")
ASCII_FIRST = ("Wei", "Li", "Anna", "Tom", "Mei", "Jack", "Lina", "Chen", "Olivia", "Hao")
ASCII_LAST = ("Smith", "Wang", "Zhang", "Brown", "Liu", "Garcia", "Chen", "Miller", "Lee")
CITIES = ("杭州", "Shanghai", "北京", "Shenzhen", "广州", "Chengdu", "苏州")

WRITES = frozenset(
    f"dynamodb.{op}"
    for op in ("TransactWriteItems", "BatchWriteItem", "PutItem", "UpdateItem", "DeleteItem")
)
TARGET_WRITES_PER_ROW = 1 / 20
TARGET_PEAK_MB = 300.0
FLAT_RATIO = 1.10  # peak at 1M / peak at 100k still "flat"
FLOOR_PROFILES_PER_TRANSACTION = 25  # as crm.services.import_customers.BATCH_ROWS
SEGMENT_ROWS = 1000  # rows per checkpoint (crm.services.imports.SEGMENT_ROWS)


# -- the file -----------------------------------------------------------------------------------


def _good(g: int) -> list[str]:
    """The g-th person (0-based): unique external id, email and CN mobile; half the names
    Chinese, half ASCII."""
    if g % 2:
        first, last = GIVEN[g % len(GIVEN)], SURNAMES[(g // 7) % len(SURNAMES)]
    else:
        first, last = ASCII_FIRST[g % len(ASCII_FIRST)], ASCII_LAST[(g // 3) % len(ASCII_LAST)]
    return [
        f"shopify:{1_000_000 + g}",
        f"buyer{g}@shop.example",
        f"139{g:08d}",
        first,
        last,
        f"{1960 + g % 45}-{1 + g % 12:02d}-{1 + g % 28:02d}",
        CITIES[g % len(CITIES)],
    ]


def _bad(kind: str, n: int) -> str:
    """A bad row (its CSV line, no line break) of `kind`; n makes it unique. Its identities
    (`legacy:` ids, `bad...` emails) are never those of a good row."""
    ident, email, phone = f"legacy:{n}", f"bad{n}@shop.example", f"1380{n % 10_000_000:07d}"
    if kind == "bad_email":
        fields = [ident, f"bad{n}.shop.example", phone, "Lei", "王", "1985-03-04", "杭州"]
    elif kind == "bad_phone":
        fields = [ident, email, "12345", "Tom", "Brown", "1985-03-04", "Shanghai"]
    elif kind == "bad_date":
        fields = [ident, email, phone, "娜", "李", "1990-02-30", "北京"]
    elif kind == "wrong_column_count":
        fields = [ident, email, phone, "Anna", "Smith", "1985-03-04"]
    elif kind == "empty_identity":
        fields = ["", "", "", "No", "Identity", "1985-03-04", "杭州"]
    else:  # broken_quoting: text after a closing quote; one line, so one row
        fields = [ident, email, phone, '"Wei"x', "Chen", "1985-03-04", "Shenzhen"]
    return ",".join(fields)


def csv_lines(rows: int) -> Iterator[tuple[str, str | None]]:
    """(line with its CRLF, bad kind or None) for the header and `rows` data rows; data row
    number k (1-based) is bad when k % BAD_EVERY == BAD_EVERY // 2, kinds in turn."""
    yield ",".join(HEADER) + "\r\n", None
    good = bad = 0
    for number in range(1, rows + 1):
        if number % BAD_EVERY == BAD_EVERY // 2:
            kind = BAD_KINDS[bad % len(BAD_KINDS)]
            bad += 1
            yield _bad(kind, number) + "\r\n", kind
        else:
            yield ",".join(_good(good)) + "\r\n", None
            good += 1


def expected_counts(rows: int) -> dict[str, Any]:
    bad_numbers = [k for k in range(1, rows + 1) if k % BAD_EVERY == BAD_EVERY // 2]
    kinds = Counter(BAD_KINDS[i % len(BAD_KINDS)] for i in range(len(bad_numbers)))
    return {
        "rows": rows,
        "good": rows - len(bad_numbers),
        "bad": len(bad_numbers),
        "bad_by_kind": {k: kinds[k] for k in BAD_KINDS},
        "bad_numbers": bad_numbers,
    }


def csv_bytes(rows: int) -> bytes:
    return "".join(line for line, _ in csv_lines(rows)).encode("utf-8")


def write_csv(path: Path, rows: int) -> int:
    """The file on disk, streamed (never whole in memory); its size in bytes."""
    with path.open("w", encoding="utf-8", newline="") as out:
        for line, _ in csv_lines(rows):
            out.write(line)
    return path.stat().st_size


# -- calls by table -----------------------------------------------------------------------------


def _tables_of(params: Any) -> list[str]:
    """The DynamoDB tables a request names (TableName, RequestItems, TransactItems)."""
    body = params.get("body") if isinstance(params, dict) else None
    if not body:
        return []
    try:
        request = json.loads(body)
    except (TypeError, ValueError):
        return []
    tables = []
    if "TableName" in request:
        tables.append(request["TableName"])
    tables += list(request.get("RequestItems") or {})
    for item in request.get("TransactItems") or []:
        for action in item.values():
            if isinstance(action, dict) and "TableName" in action:
                tables.append(action["TableName"])
    return sorted(set(tables))


def _make_table_counter() -> Any:
    """A `bench.calls.CallCounter` that also counts each DynamoDB call by the tables it names:
    `tables[(operation, "table" or "table1+table2")]`, one per call."""
    from bench.calls import CallCounter

    class TableCounter(CallCounter):
        def __init__(self) -> None:
            super().__init__()
            self.tables: Counter[tuple[str, str]] = Counter()

        def _on_before_call(
            self, event_name: str, model: Any = None, params: Any = None, **kw: Any
        ) -> None:
            super()._on_before_call(event_name, model=model, **kw)
            name = self._name(event_name, model)
            if name.startswith("dynamodb."):
                self.tables[(name, "+".join(_tables_of(params)) or "?")] += 1

    return TableCounter()


def _calls_figures(
    tally: Any, tables: Counter[tuple[str, str]], rows: int, env: Mapping[str, str]
) -> dict[str, Any]:
    by_op = tally.breakdown()
    identities, imports_table = env["CRM_IDENTITIES_TABLE"], env["CRM_IMPORTS_TABLE"]
    data_tables = {env["CRM_CUSTOMERS_TABLE"], identities}

    def calls(ops: frozenset[str] | set[str], wanted: set[str]) -> int:
        return sum(
            n for (op, names), n in tables.items() if op in ops and wanted & set(names.split("+"))
        )

    writes = sum(v for k, v in by_op.items() if k in WRITES)
    batch_gets = by_op.get("dynamodb.BatchGetItem", 0)
    identity_gets = calls({"dynamodb.BatchGetItem"}, {identities})
    s3_calls = sum(v for k, v in by_op.items() if k.startswith("s3."))
    by_table: dict[str, dict[str, int]] = {}
    for (op, names), n in sorted(tables.items()):
        by_table.setdefault(names, {})[op.split(".", 1)[1]] = n
    return {
        "rows": rows,
        **tally.as_dict(),
        "dynamodb_by_tables_named": by_table,
        "dynamodb_writes": writes,
        "dynamodb_writes_per_row": round(writes / rows, 5),
        "rows_per_dynamodb_write": round(rows / writes, 1) if writes else None,
        "data_table_writes": calls(WRITES, data_tables),
        "imports_table_writes": calls(WRITES, {imports_table}),
        "batch_get_items": batch_gets,
        "identity_lookups": identity_gets,
        "identity_lookups_per_row": round(identity_gets / rows, 5),
        "batch_get_items_per_row": round(batch_gets / rows, 5),
        "s3_calls": s3_calls,
        "s3_calls_per_row": round(s3_calls / rows, 6),
        "in_aws_calls_s": round(tally.aws_seconds, 3),
    }


# -- 1 and 2: in-process moto -------------------------------------------------------------------


def _scan(ddb: Any, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    request: dict[str, Any] = {"TableName": table}
    while True:
        page = ddb.scan(**request)
        items += page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return items
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _error_rows(s3: Any, bucket: str, key: str) -> list[list[str]]:
    import csv
    import io

    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8-sig")
    return list(csv.reader(io.StringIO(body)))[1:]


def _check_import(
    report: Mapping[str, Any],
    expected: Mapping[str, Any],
    errors: list[list[str]] | None,
    *,
    created: int,
    unchanged: int,
) -> dict[str, Any]:
    """Is the report exact, and does the error file list exactly the bad rows, each with the
    reason its kind must get?"""
    checks: dict[str, Any] = {
        "rows": report.get("rows") == expected["rows"],
        "created": report.get("created") == created,
        "updated": report.get("updated") == 0,
        "unchanged": report.get("unchanged") == unchanged,
        "failed": report.get("failed") == expected["bad"],
        "status_done": report.get("status") == "done",
    }
    if errors is not None:
        numbers = [int(e[0]) for e in errors]
        checks["error_file_rows"] = numbers == expected["bad_numbers"]
        wrong = [
            e[0]
            for i, e in enumerate(errors)
            if BAD_REASONS[BAD_KINDS[i % len(BAD_KINDS)]] not in e[2]
        ]
        checks["error_file_reasons"] = not wrong
    checks["exact"] = all(checks.values())
    return checks


def _floor(
    ddb: Any, counter: Any, env: Mapping[str, str], run_tag: str
) -> tuple[dict[str, Any], int]:
    """The profiles and identity items the import stored, written again into fresh tables of
    the same definitions, 25 profiles with their identities per raw `transact_write_items`,
    each put conditional on the key being new (what keeps one profile per person). Only the
    writes are timed."""
    from crm_local.provision import table_request
    from infra.resources import TABLES

    by_var = {t.env_var: t for t in TABLES}
    customers_def, identities_def = by_var["CRM_CUSTOMERS_TABLE"], by_var["CRM_IDENTITIES_TABLE"]
    profiles = _scan(ddb, env["CRM_CUSTOMERS_TABLE"])
    identity_items = _scan(ddb, env["CRM_IDENTITIES_TABLE"])
    owned: dict[str, list[dict[str, Any]]] = {}
    for item in identity_items:
        owned.setdefault(item["customer_id"]["S"], []).append(item)
    customers_table = f"{env['CRM_CUSTOMERS_TABLE']}-floor-{run_tag}"
    identities_table = f"{env['CRM_IDENTITIES_TABLE']}-floor-{run_tag}"
    ddb.create_table(**table_request(customers_def, customers_table))
    ddb.create_table(**table_request(identities_def, identities_table))
    ck, ik = customers_def.hash_key, identities_def.hash_key

    transactions: list[list[dict[str, Any]]] = []
    for start in range(0, len(profiles), FLOOR_PROFILES_PER_TRANSACTION):
        actions: list[dict[str, Any]] = []
        for profile in profiles[start : start + FLOOR_PROFILES_PER_TRANSACTION]:
            actions.append(
                {
                    "Put": {
                        "TableName": customers_table,
                        "Item": profile,
                        "ConditionExpression": "attribute_not_exists(#k)",
                        "ExpressionAttributeNames": {"#k": ck},
                    }
                }
            )
            actions += [
                {
                    "Put": {
                        "TableName": identities_table,
                        "Item": identity,
                        "ConditionExpression": "attribute_not_exists(#k)",
                        "ExpressionAttributeNames": {"#k": ik},
                    }
                }
                for identity in owned.get(profile[ck]["S"], [])
            ]
        transactions.append(actions)

    with counter.measure() as tally:
        start_time = time.perf_counter()
        for actions in transactions:
            ddb.transact_write_items(TransactItems=actions)
        elapsed = time.perf_counter() - start_time
    for table in (customers_table, identities_table):
        ddb.delete_table(TableName=table)
    items = sum(len(a) for a in transactions)
    return {
        "what": "raw boto3 transact_write_items of the profile and identity items the import "
        f"stored (scanned back, untimed), {FLOOR_PROFILES_PER_TRANSACTION} profiles with their "
        "identities per transaction, each put conditional on attribute_not_exists(key), into "
        "fresh tables of the same definitions (deleted afterwards)",
        "profiles": len(profiles),
        "identity_items": len(identity_items),
        "items": items,
        "transactions": len(transactions),
        "max_items_per_transaction": max((len(a) for a in transactions), default=0),
        "seconds": round(elapsed, 3),
        "in_aws_calls_s": round(tally.aws_seconds, 3),
        "calls": tally.breakdown(),
    }, len(profiles)


def _in_process(rows: int) -> dict[str, Any]:
    import boto3
    from moto import mock_aws

    from bench.aws_calls import stage_environment
    from crm_local import dynamodb_serial
    from crm_local.provision import provision_data_resources

    env = local_stage_environment()
    expected = expected_counts(rows)
    body = csv_bytes(rows)
    key = f"incoming/customers/bench-{rows}.csv"
    out: dict[str, Any] = {
        "rows": rows,
        "good_rows": expected["good"],
        "bad_rows": expected["bad"],
        "bad_rows_by_kind": expected["bad_by_kind"],
        "file_bytes": len(body),
        "chunk_rows_setting": None,
    }
    with stage_environment(env), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        dynamodb_serial.install()  # as tests/conftest.py: transactions cost their own items
        with mock_aws(), _make_table_counter() as counter:
            provision_data_resources(lambda s: boto3.client(s, region_name=REGION), env)
            reset_caches()
            from crm.config import get_settings
            from crm.services import import_customers, imports

            bucket = get_settings().drop_bucket
            out["chunk_rows_setting"] = get_settings().import_chunk_rows
            out["batch_rows"] = import_customers.BATCH_ROWS
            out["segment_rows"] = imports.SEGMENT_ROWS
            s3 = boto3.client("s3", region_name=REGION)
            ddb = boto3.client("dynamodb", region_name=REGION)

            # What a before-call hook on boto3's default session alone would see (the
            # integration test counts that way): PynamoDB builds its own botocore sessions.
            default_seen: Counter[str] = Counter()

            def on_default(event_name: str, **_: Any) -> None:
                default_seen[".".join(event_name.split(".")[1:3])] += 1

            session = boto3.DEFAULT_SESSION
            assert session is not None  # built by the boto3.client calls above

            # (1) the import, timed, and its calls
            s3.put_object(Bucket=bucket, Key=key, Body=body)
            session.events.register("before-call", on_default)
            tables_before = Counter(counter.tables)
            try:
                with counter.measure() as tally:
                    start = time.perf_counter()
                    report = imports.import_object(bucket, key)
                    elapsed = time.perf_counter() - start
            finally:
                session.events.unregister("before-call", on_default)
            tables = counter.tables - tables_before
            errors = (
                _error_rows(s3, bucket, report["errors_file"]) if report.get("errors_file") else []
            )
            checks = _check_import(report, expected, errors, created=expected["good"], unchanged=0)
            out["import"] = {
                "seconds": round(elapsed, 3),
                "rows_per_s": round(rows / elapsed, 1),
                "in_aws_calls_s": round(tally.aws_seconds, 3),
                "outside_aws_calls_s": round(elapsed - tally.aws_seconds, 3),
                "report": {k: v for k, v in report.items() if k not in ("started_at",)},
                "checks": checks,
            }
            calls_first = _calls_figures(tally, tables, rows, env)
            default_hook = {
                "calls": sum(default_seen.values()),
                "by_operation": dict(sorted(default_seen.items())),
                "dynamodb_writes": sum(v for k, v in default_seen.items() if k in WRITES),
            }

            # The floor, right after (fresh tables, the same items).
            floor, profiles = _floor(ddb, counter, env, uuid.uuid4().hex[:6])
            floor["rows_per_s_equivalent"] = round(rows / floor["seconds"], 1)
            out["floor"] = floor
            out["ratio_import_vs_floor"] = ratio(elapsed, floor["seconds"])
            # For context: the import's time inside AWS calls (its BatchGetItems included)
            # against the floor's, i.e. with botocore's serialising outside both.
            out["ratio_import_vs_floor_in_aws_calls"] = ratio(
                tally.aws_seconds, floor["in_aws_calls_s"]
            )
            checks["profiles_stored"] = profiles == expected["good"]
            checks["exact"] = all(v for k, v in checks.items() if k != "exact")

            # (2') the same file again: everything unchanged.
            s3.put_object(Bucket=bucket, Key=key, Body=body)
            tables_before = Counter(counter.tables)
            with counter.measure() as again:
                start = time.perf_counter()
                second = imports.import_object(bucket, key)
                elapsed_again = time.perf_counter() - start
            tables = counter.tables - tables_before
            errors = (
                _error_rows(s3, bucket, second["errors_file"]) if second.get("errors_file") else []
            )
            out["reimport"] = {
                "seconds": round(elapsed_again, 3),
                "rows_per_s": round(rows / elapsed_again, 1),
                "in_aws_calls_s": round(again.aws_seconds, 3),
                "outside_aws_calls_s": round(elapsed_again - again.aws_seconds, 3),
                "report": {k: v for k, v in second.items() if k not in ("started_at",)},
                "checks": _check_import(
                    second, expected, errors, created=0, unchanged=expected["good"]
                ),
            }
            calls_again = _calls_figures(again, tables, rows, env)
        reset_caches()
    out["calls"] = {
        "import": calls_first,
        "reimport_unchanged": calls_again,
        "default_session_hook_only": {
            **default_hook,
            "what": "the first import as seen by a before-call hook registered on boto3's "
            "default session alone: PynamoDB's clients (every DynamoDB call of the import) "
            "come from their own botocore sessions and are not seen",
        },
    }
    return out


# -- 3: peak memory, in a child process ---------------------------------------------------------


SERVER = r"""
import importlib, json, os, sys
sys.path[:0] = sys.argv[2:]
if os.environ.get("BENCH_ENDPOINT_SETUP"):  # "module:function" to call first (bench's own)
    module, _, function = os.environ["BENCH_ENDPOINT_SETUP"].partition(":")
    getattr(importlib.import_module(module), function)()
from crm_local.endpoint import Endpoint
endpoint = Endpoint(port=0).start()
print(sys.argv[1] + json.dumps({"port": endpoint.port}), flush=True)
sys.stdin.read()  # until the parent closes it
endpoint.stop()
"""


def _status_mb(field: str, pid: int | str = "self") -> float:
    """A memory line of /proc/<pid>/status (VmRSS: now, VmHWM: peak), in MB."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


def _rss_now_mb() -> float:
    return _status_mb("VmRSS")


def _peak_mb() -> float:
    """The peak resident set of this process image: VmHWM, which starts afresh at exec.
    (`ru_maxrss` does not: Linux carries the parent's resident set at fork into it, so in a
    child of a large process it reports at least the parent's size.)"""
    return _status_mb("VmHWM")


def _ru_maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def child_main(bucket: str, key: str) -> None:
    """In the child: import what the function imports, then `import_object` with the
    customers writer stubbed; print the figures as one MARK line."""
    interpreter_rss, start_maxrss = _rss_now_mb(), _ru_maxrss_mb()
    ensure_import_paths()
    start = time.perf_counter()
    import boto3  # noqa: F401  (imported by crm.services.imports at first use; counted here)
    from aws_lambda_powertools.utilities.streaming import S3Object  # noqa: F401

    from bench.calls import CallCounter
    from crm.config import get_settings
    from crm.services import import_customers, imports
    from crm.services.import_kinds import CREATED, Outcome, Unit

    imports_s = time.perf_counter() - start
    baseline_rss, baseline_peak = _rss_now_mb(), _peak_mb()
    stubbed = {"batches": 0, "units": 0}

    def write(batch: list[Unit]) -> list[Outcome]:
        stubbed["batches"] += 1
        stubbed["units"] += len(batch)
        return [Outcome(CREATED)] * len(batch)

    import_customers.write = write  # the kind reads it at every chunk (crm.services.imports)
    with CallCounter() as counter, counter.measure() as tally:
        start = time.perf_counter()
        report = imports.import_object(bucket, key)
        elapsed = time.perf_counter() - start
    figures = {
        "interpreter_rss_mb": round(interpreter_rss, 1),
        "imports_s": round(imports_s, 3),
        "baseline_rss_mb": round(baseline_rss, 1),
        "baseline_peak_mb": round(baseline_peak, 1),
        "peak_rss_mb": round(_peak_mb(), 1),
        "ru_maxrss_mb": round(_ru_maxrss_mb(), 1),
        "ru_maxrss_at_start_mb": round(start_maxrss, 1),
        "final_rss_mb": round(_rss_now_mb(), 1),
        "seconds": round(elapsed, 3),
        "chunk_rows_setting": get_settings().import_chunk_rows,
        "report": report,
        "stub_writer": stubbed,
        "calls": tally.as_dict(),
        "in_aws_calls_s": round(tally.aws_seconds, 3),
    }
    print(MARK + json.dumps(figures, ensure_ascii=False, default=str), flush=True)


def _child_env(endpoint: str) -> dict[str, str]:
    """The local stage's variables pointed at the endpoint, as `crm local` runs a Lambda; the
    chunk budget left at the code's default (the local stage sets a small one)."""
    from crm_local.endpoint import DUMMY_CREDENTIALS

    home = tempfile.mkdtemp(prefix="bench-imports-")
    env = {key: os.environ[key] for key in ("PATH", "LANG", "LC_ALL", "TZ") if key in os.environ}
    env.update(local_stage_environment())
    env.pop("CRM_IMPORT_CHUNK_ROWS", None)
    env.update(
        {
            "HOME": home,
            "AWS_CONFIG_FILE": os.path.join(home, "config"),
            "AWS_SHARED_CREDENTIALS_FILE": os.path.join(home, "credentials"),
            "AWS_ENDPOINT_URL": endpoint,
            **DUMMY_CREDENTIALS,
            "POWERTOOLS_LOG_LEVEL": "WARNING",
        }
    )
    return env


class _Server:
    """The project's moto endpoint (`crm_local.endpoint.Endpoint`) in its own process."""

    def __init__(self, setup: str | None = None) -> None:
        """`setup`: "module:function" the endpoint's process calls before it starts."""
        self._logs = tempfile.TemporaryFile()  # noqa: SIM115  (closed by stop())
        env = {**os.environ, "BENCH_ENDPOINT_SETUP": setup or ""}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, MARK, str(PROJECT_DIR), str(LAYER_DIR)],
            cwd=PROJECT_DIR,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._logs,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith(MARK):
            self.stop()
            self._logs.seek(0)
            raise RuntimeError(f"moto endpoint did not start: {self._logs.read()[-3000:]!r}")
        self.url = f"http://127.0.0.1:{json.loads(line[len(MARK) :])['port']}"

    def client(self, service: str) -> Any:
        import boto3

        from crm_local.endpoint import DUMMY_CREDENTIALS

        return boto3.session.Session().client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def peak_mb(self) -> float:
        return round(_status_mb("VmHWM", self.proc.pid), 1)

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)
        self._logs.close()


def _memory_one(server: _Server, rows: int, bucket: str, workdir: Path) -> dict[str, Any]:
    expected = expected_counts(rows)
    file = workdir / f"bench-{rows}.csv"
    started = time.perf_counter()
    size = write_csv(file, rows)
    generated_s = time.perf_counter() - started
    key = f"incoming/customers/bench-memory-{rows}.csv"
    s3 = server.client("s3")
    started = time.perf_counter()
    s3.upload_file(str(file), bucket, key)  # multipart above 8 MB
    uploaded_s = time.perf_counter() - started
    file.unlink()

    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from bench.imports import child_main; child_main(*sys.argv[1:])",
            bucket,
            key,
        ],
        cwd=PROJECT_DIR,
        env=_child_env(server.url),
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"memory child failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    child = json.loads(lines[-1][len(MARK) :])
    report = child["report"]
    errors = _error_rows(s3, bucket, report["errors_file"]) if report.get("errors_file") else []
    budget = child["chunk_rows_setting"]
    checks = _check_import(report, expected, errors, created=expected["good"], unchanged=0)
    # The chunks the budget asks for; one more is accepted (and reported as a finding): a
    # chunk that reaches its budget on the file's last row may stop "not done", and the next
    # one finds nothing left.
    chunks_ideal = math.ceil(rows / budget)
    chunks_code = rows // budget + 1
    checks["chunks"] = report.get("chunks") in (chunks_ideal, chunks_code)
    checks["exact"] = all(v for k, v in checks.items() if k != "exact")
    return {
        "rows": rows,
        "file_bytes": size,
        "generated_s": round(generated_s, 1),
        "uploaded_s": round(uploaded_s, 1),
        "peak_rss_mb": child["peak_rss_mb"],
        "ru_maxrss_mb": child["ru_maxrss_mb"],
        "ru_maxrss_at_start_mb": child["ru_maxrss_at_start_mb"],
        "baseline_rss_mb": child["baseline_rss_mb"],
        "peak_above_baseline_mb": round(child["peak_rss_mb"] - child["baseline_rss_mb"], 1),
        "interpreter_rss_mb": child["interpreter_rss_mb"],
        "final_rss_mb": child["final_rss_mb"],
        "imports_s": child["imports_s"],
        "seconds": child["seconds"],
        "rows_per_s": round(rows / child["seconds"], 1),
        "in_aws_calls_s": child["in_aws_calls_s"],
        "chunk_rows_setting": budget,
        "chunks": report.get("chunks"),
        "chunks_if_budget_exact": chunks_ideal,
        "chunks_as_coded": chunks_code,
        "calls": child["calls"],
        "stub_writer": child["stub_writer"],
        "report": {k: v for k, v in report.items() if k not in ("started_at", "finished_at")},
        "checks": checks,
    }


def _memory(sizes: tuple[int, ...]) -> dict[str, Any]:
    from crm_local.provision import provision_data_resources

    env = local_stage_environment()
    server = _Server()
    try:
        provision_data_resources(server.client, env)
        bucket = env["CRM_DROP_BUCKET"]
        with tempfile.TemporaryDirectory(prefix="bench-imports-") as tmp:
            runs = {str(n): _memory_one(server, n, bucket, Path(tmp)) for n in sizes}
        server_peak = server.peak_mb()
    finally:
        server.stop()
    small, large = runs[str(min(sizes))], runs[str(max(sizes))]
    growth = ratio(large["peak_rss_mb"], small["peak_rss_mb"])
    return {
        "how": "child process (same python) per size: crm.services.imports.import_object with "
        "crm.services.import_customers.write stubbed (answers created, no DynamoDB); S3 and the "
        "imports table served by crm_local.endpoint.Endpoint (moto server) in another process; "
        "the file generated to disk and uploaded with upload_file (multipart)",
        "sizes": runs,
        f"peak_ratio_{max(sizes)}_vs_{min(sizes)}": growth,
        "peak_ratio": growth,
        "target_peak_mb": TARGET_PEAK_MB,
        "meets_target": all(r["peak_rss_mb"] <= TARGET_PEAK_MB for r in runs.values())
        and growth is not None
        and growth <= FLAT_RATIO,
        "moto_server_peak_rss_mb": server_peak,
    }


# -- run ----------------------------------------------------------------------------------------


NOTES = (
    "Throughput is one run of the import and one of the floor (with the re-import and the "
    "scans, the in-process part is the longest of all benchmarks: no median). Both run "
    "against moto in-process, whose DynamoDB costs most of the time: compare the ratio, not "
    "the rows/s, with AWS.",
    "Memory: moto in-process writes rows far slower than DynamoDB, so a million rows through "
    "the real writer would take hours, and moto's own storage would be counted as the "
    "function's memory. The memory "
    "runs therefore stub the customers writer (every unit answered 'created', no DynamoDB "
    "call) and serve S3 and the imports table from a moto server in another process: the "
    "measured path is streaming S3 ranged reads, decoding, CSV parsing, validation, batching, "
    "checkpoints (real UpdateItem on the server), error parts, the final error file, report "
    "and archive. Peak = VmHWM of the child (/proc/self/status, read at the end); baseline "
    "= its VmRSS right after the function's imports, before reading the file. ru_maxrss is "
    "reported too but is not the figure: Linux carries the parent's resident set at fork "
    "into the child's ru_maxrss (ru_maxrss_at_start_mb, read before any import, is the "
    "benchmark process's size), so it is the function's own only when that is smaller.",
    "The memory runs keep the code's default chunk budget (CRM_IMPORT_CHUNK_ROWS unset); the "
    "throughput run uses the local stage's value (chunk_rows_setting in both).",
)


def _orders_in_process() -> dict[str, Any]:
    """The orders import of the demo shop's Shopify order export (multi-line orders), in-process:
    its calls per row and per order. Each order is one `record_order_event` (decision 38)."""
    import boto3
    from moto import mock_aws

    from bench.aws_calls import stage_environment
    from crm_local import dynamodb_serial
    from crm_local.demo_data import generate, orders_csv
    from crm_local.provision import provision_data_resources

    env = local_stage_environment()
    shop = generate(seed=7, customers=200, today=date(2026, 11, 23))
    body = orders_csv(shop)
    rows = sum(len(o.lines) for o in shop.orders)
    key = "incoming/orders/bench-shopify-orders.csv"
    with stage_environment(env), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        dynamodb_serial.install()
        with mock_aws(), _make_table_counter() as counter:
            provision_data_resources(lambda s: boto3.client(s, region_name=REGION), env)
            reset_caches()
            from crm.config import get_settings
            from crm.services import imports

            bucket = get_settings().drop_bucket
            boto3.client("s3", region_name=REGION).put_object(Bucket=bucket, Key=key, Body=body)
            with counter.measure() as tally:
                start = time.perf_counter()
                report = imports.import_object(bucket, key)
                elapsed = time.perf_counter() - start
    by_op = tally.breakdown()
    writes = sum(v for k, v in by_op.items() if k in WRITES)
    orders = len(shop.orders)
    exact = (
        report.get("rows") == rows
        and report.get("failed") == 0
        and report.get("orders") == {"created": orders}
    )
    return {
        "rows": rows,
        "orders": orders,
        "report": {k: v for k, v in report.items() if k not in ("started_at", "finished_at")},
        "report_exact": exact,
        "meets_target": writes / rows <= TARGET_WRITES_PER_ROW,
        "seconds": round(elapsed, 3),
        "rows_per_s": round(rows / elapsed, 1),
        "orders_per_s": round(orders / elapsed, 1),
        "by_operation": by_op,
        "dynamodb_writes": writes,
        "dynamodb_writes_per_row": round(writes / rows, 4),
        "dynamodb_writes_per_order": round(writes / orders, 3),
        "batch_get_items_per_order": round(by_op.get("dynamodb.BatchGetItem", 0) / orders, 3),
    }


def run(
    rows: int = 20_000,
    memory_rows: tuple[int, ...] = (100_000, 1_000_000),
) -> dict[str, Any]:
    ensure_import_paths()
    started = time.perf_counter()
    throughput = _in_process(rows)
    orders = _orders_in_process()
    after_in_process = time.perf_counter()
    memory = _memory(memory_rows)
    ended = time.perf_counter()

    calls = throughput["calls"]
    first, again = calls["import"], calls["reimport_unchanged"]
    # An operation here is an import: it succeeded when its report (and error file) is exact.
    failures: dict[str, Failures] = {}
    for name in ("import", "reimport"):
        checks = throughput[name]["checks"]
        failures[name] = Failures()
        failures[name].check(
            all(checks.values()), f"{name}: " + ", ".join(k for k, ok in checks.items() if not ok)
        )
    failures["orders"] = Failures()
    failures["orders"].check(orders["report_exact"], f"orders import report {orders['report']}")
    failures["memory"] = Failures()
    for size, figures in memory["sizes"].items():
        failures["memory"].check(
            figures["checks"]["exact"],
            f"{size} rows: "
            + ", ".join(k for k, ok in figures["checks"].items() if not ok and k != "exact"),
        )
    everything = Failures()
    for f in failures.values():
        everything.add(f)
    problems: list[str] = []
    for name in ("import", "reimport"):
        checks = throughput[name]["checks"]
        if not all(checks.values()):
            problems.append(f"{name}: report or error file not exact: {checks}")
    for size, figures in memory["sizes"].items():
        if not figures["checks"]["exact"]:
            problems.append(f"memory {size}: {figures['checks']}")
    findings = []
    chunked = [(str(rows), throughput["chunk_rows_setting"], throughput["import"]["report"])]
    chunked += [(size, f["chunk_rows_setting"], f["report"]) for size, f in memory["sizes"].items()]
    for size, budget, report in chunked:
        ideal = math.ceil(int(size) / budget)
        if report.get("chunks") != ideal:
            findings.append(
                f"{size} rows with a chunk budget of {budget}: {report.get('chunks')} chunks, "
                f"not {ideal}: the chunk that reaches its budget on the file's last row stops "
                "'not done' and one more chunk (a workflow iteration, Lambda invocation, "
                "GetItem, HeadObject, SSM read, UpdateItem) finds nothing left"
            )
    if any(r.get("format") is None for _, _, r in chunked):
        findings.append(
            "the report's `format` is null although the file was read as CSV: run_chunk sets "
            "state.format, but ImportStore.save does not write `format` (only claim's first "
            "put does, with ''), so finish reads it back empty"
        )
    result = {
        "name": NAME,
        "machine": machine(),
        "seconds": round(ended - started, 1),
        "seconds_in_process": round(after_in_process - started, 1),
        "seconds_memory": round(ended - after_in_process, 1),
        "notes": list(NOTES),
        "throughput": {k: v for k, v in throughput.items() if k != "calls"},
        "calls": calls,
        "orders": orders,
        "memory": memory,
        "targets": {
            "dynamodb_writes_per_row": f"<= {TARGET_WRITES_PER_ROW:g} (1/20)",
            "reimport_dynamodb_writes_per_row": "~0: no write to the customers or identities "
            "tables (the import's own bookkeeping remains: claim, a checkpoint per "
            f"{SEGMENT_ROWS:,} rows, finish)",
            "peak_rss_mb": f"<= {TARGET_PEAK_MB:g} at every size, "
            f"flat (largest/smallest <= {FLAT_RATIO})",
        },
        "meets_targets": {
            "dynamodb_writes_per_row": first["dynamodb_writes_per_row"] <= TARGET_WRITES_PER_ROW,
            "reimport_dynamodb_writes_per_row": again["data_table_writes"] == 0,
            "peak_rss_mb": memory["meets_target"],
        },
        "findings": findings,
        "problems": problems,
        "failures_by_figure": {k: f.as_dict() for k, f in failures.items()},
        "failures": everything.as_dict(),
    }
    write_result(NAME, result)
    return result


def summary_rows(result: Mapping[str, Any]) -> list[Row]:
    """(figure, value, target, verdict) rows for the summary table."""
    t, calls, memory = result["throughput"], result["calls"], result["memory"]
    meets, failed = result["meets_targets"], result["failures_by_figure"]
    first, again = calls["import"], calls["reimport_unchanged"]
    orders = result["orders"]
    per_row = f"<= {TARGET_WRITES_PER_ROW:g} writes per row"
    rows: list[Row] = [
        (
            f"orders import ({orders['orders']} Shopify orders, {orders['rows']} rows)",
            f"{orders['orders_per_s']} orders/s; {orders['dynamodb_writes_per_order']} writes "
            f"per order = {orders['dynamodb_writes_per_row']} per row",
            f"{per_row} (decision 38), report exact",
            judged(orders["meets_target"], failed["orders"]),
        ),
        (
            f"rows/s import ({t['rows']} rows, 1 run)",
            f"{t['import']['rows_per_s']} ({t['import']['seconds']} s; outside AWS calls "
            f"{t['import']['outside_aws_calls_s']} s)",
            "",
            judged(None, failed["import"]),
        ),
        (
            "floor (raw transact_write_items)",
            f"{t['floor']['rows_per_s_equivalent']} rows/s ({t['floor']['seconds']} s, "
            f"{t['floor']['transactions']} x {t['floor']['max_items_per_transaction']} items)",
            "",
            "",
        ),
        (
            "ratio import_vs_floor",
            f"{t['ratio_import_vs_floor']}",
            "",
            judged(None, failed["import"]),
        ),
        (
            "report and error file exact (created / failed)",
            f"{t['import']['checks']['exact']} ({t['import']['report'].get('created')} / "
            f"{t['import']['report'].get('failed')}); format {t['import']['report'].get('format')}",
            "exact",
            judged(True, failed["import"]),
        ),
        (
            "DynamoDB writes/row",
            f"{first['dynamodb_writes_per_row']} [{first['dynamodb_writes']} writes, "
            f"{first['imports_table_writes']} of them on the imports table]",
            per_row,
            judged(meets["dynamodb_writes_per_row"], failed["import"]),
        ),
        (
            "identity look-ups/row (BatchGetItem)",
            f"{first['identity_lookups_per_row']} (all BatchGetItem "
            f"{first['batch_get_items_per_row']})",
            "",
            judged(None, failed["import"]),
        ),
        (
            "S3 calls/row",
            f"{first['s3_calls_per_row']} ({first['s3_calls']} calls)",
            "",
            judged(None, failed["import"]),
        ),
        (
            "re-import: DynamoDB writes/row",
            f"{again['dynamodb_writes_per_row']} [{again['data_table_writes']} data-table "
            f"writes]; BatchGetItem/row {again['batch_get_items_per_row']}; "
            f"{t['reimport']['rows_per_s']} rows/s",
            "no data-table write",
            judged(meets["reimport_dynamodb_writes_per_row"], failed["reimport"]),
        ),
    ]
    for size, figures in memory["sizes"].items():
        rows.append(
            (
                f"peak RSS {size} rows (writer stubbed)",
                f"{figures['peak_rss_mb']} MB (baseline {figures['baseline_rss_mb']}), "
                f"{figures['rows_per_s']} rows/s, {figures['chunks']} chunks of "
                f"{figures['chunk_rows_setting']} rows",
                "",
                judged(
                    None,
                    {
                        "failed": int(not figures["checks"]["exact"]),
                        "sample": f"{size} rows: "
                        + ", ".join(k for k, ok in figures["checks"].items() if not ok),
                    },
                ),
            )
        )
    rows.append(
        (
            "peak RSS ratio largest/smallest",
            f"{memory['peak_ratio']}",
            f"<= {TARGET_PEAK_MB:g} MB, flat (<= {FLAT_RATIO})",
            judged(meets["peak_rss_mb"], failed["memory"]),
        )
    )
    for finding in result["findings"]:
        rows.append(("FINDING", finding, "", ""))
    for problem in result["problems"]:
        rows.append(("PROBLEM", problem, "", ""))
    return rows
