"""AWS calls per API operation, and the in-process time of the two upserts.

Runs the real app in-process through Chalice's test client against moto (`mock_aws`) with the
tables, buckets, topics and queues of `infra/` provisioned under the local stage's names, as
the tests do. Every AWS call is counted by `bench.calls.CallCounter` (a hook on every botocore
client, boto3's and PynamoDB's alike).

Each operation is run once on a fresh process ("first call": includes one-off work such as a
DescribeTable, if anything does one) and then for several more cycles ("steady state").
Timing: the two upserts (a) and (b), interleaved with two floors measured in the same loop:
the two raw DynamoDB calls an upsert cannot avoid (BatchGetItem + TransactWriteItems with a
plain boto3 client) and a route with no AWS call at all (GET /openapi.json: the test client,
Chalice routing and middleware).
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, redirect_stdout
from typing import Any

from bench.calls import CallCounter, Tally
from bench.common import (
    OPERATOR_HEADERS,
    PROJECT_DIR,
    REGION,
    Failures,
    Row,
    ensure_import_paths,
    judged,
    local_stage_environment,
    machine,
    ratio,
    summary_ms,
    write_result,
)

NAME = "aws_calls"
MAX_UPSERT_CALLS = 3
OPERATIONS = {
    "upsert_new": "(a) POST /customers, a new customer",
    "upsert_changed": "(b) POST /customers, existing customer with a change",
    "upsert_unchanged": "(c) POST /customers, existing customer, nothing new",
    "get_360": "(d) GET /customers/{id} (360 view)",
    "find_by_email": "(e) GET /customers?email=",
    "patch": "(f) PATCH /customers/{id}",
    "erase": "(g) DELETE /customers/{id} (erasure)",
    "health": "(h) GET /health",
}
TARGETS = {"upsert_new": MAX_UPSERT_CALLS, "upsert_changed": MAX_UPSERT_CALLS}
EXPECTED_STATUS = {
    "upsert_new": 201,
    "upsert_changed": 200,
    "upsert_unchanged": 200,
    "get_360": 200,
    "find_by_email": 200,
    "patch": 200,
    "erase": 200,
    "health": 200,
}


@contextmanager
def stage_environment(env: Mapping[str, str]) -> Iterator[None]:
    """os.environ as the local stage's Lambda sees it (as the tests' `local_env` sets it),
    restored afterwards."""
    saved = dict(os.environ)
    try:
        for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "CRM_OPERATOR_TOKEN"):
            os.environ.pop(key, None)
        os.environ.update(env)
        # Metrics stay on as in Lambda (their EMF output is sent to a null sink, see
        # Runner). Log level WARNING keeps the one INFO line (erasure) out of the report; no
        # timed operation logs at INFO.
        os.environ.pop("POWERTOOLS_METRICS_DISABLED", None)
        os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _reset_caches() -> None:
    """Forget settings and repositories built earlier in this process (none, normally)."""
    try:
        from crm.config import get_settings

        get_settings.cache_clear()
    except (ImportError, AttributeError):
        pass
    try:
        from crm.store import customers

        customers.reset()
    except (ImportError, AttributeError):
        pass


class Person:
    """A distinct customer per run: unique email and a valid CN mobile number."""

    def __init__(self, n: int) -> None:
        tag = uuid.uuid4().hex[:8]
        self.email = f"bench.{n}.{tag}@example.com"
        self.phone = f"+86138{n % 100_000_000:08d}"
        self.customer_id: str | None = None

    def body(self, first_name: str) -> dict[str, Any]:
        return {
            "email": self.email,
            "phone": self.phone,
            "first_name": first_name,
            "last_name": "Bench",
        }


class Runner:
    def __init__(self, client: Any, counter: CallCounter) -> None:
        self.client = client
        self.counter = counter
        self.n = 0
        self.sink = open(os.devnull, "w")  # noqa: SIM115  (EMF metrics printed per request)

    def request(
        self, method: str, path: str, body: Any = None, headers: Mapping[str, str] | None = None
    ) -> tuple[Any, Tally, float]:
        kwargs: dict[str, Any] = {"headers": dict(OPERATOR_HEADERS if headers is None else headers)}
        if body is not None:
            kwargs["body"] = json.dumps(body).encode()
        with redirect_stdout(self.sink), self.counter.measure() as tally:
            start = time.perf_counter()
            response = self.client.http.request(method, path, **kwargs)
            elapsed = time.perf_counter() - start
        return response, tally, elapsed

    def new_person(self) -> Person:
        self.n += 1
        return Person(self.n)

    # -- the operations, in order on one customer ----------------------------------------------

    def upsert_new(self, p: Person) -> tuple[Any, Tally, float]:
        result = self.request("POST", "/customers", p.body("Ada"))
        if result[0].status_code in (200, 201):
            p.customer_id = json.loads(result[0].body)["customer_id"]
        return result

    def upsert_changed(self, p: Person) -> tuple[Any, Tally, float]:
        return self.request("POST", "/customers", p.body("Grace"))

    def upsert_unchanged(self, p: Person) -> tuple[Any, Tally, float]:
        return self.request("POST", "/customers", p.body("Grace"))

    def get_360(self, p: Person) -> tuple[Any, Tally, float]:
        return self.request("GET", f"/customers/{p.customer_id}")

    def find_by_email(self, p: Person) -> tuple[Any, Tally, float]:
        return self.request("GET", f"/customers?email={p.email}")

    def patch(self, p: Person) -> tuple[Any, Tally, float]:
        return self.request("PATCH", f"/customers/{p.customer_id}", {"last_name": "Patched"})

    def erase(self, p: Person) -> tuple[Any, Tally, float]:
        return self.request("DELETE", f"/customers/{p.customer_id}")

    def health(self, p: Person) -> tuple[Any, Tally, float]:
        return self.request("GET", "/health", headers={})

    def cycle(self) -> dict[str, dict[str, Any]]:
        """Every operation once, (a) to (h), on one new customer."""
        person = self.new_person()
        out: dict[str, dict[str, Any]] = {}
        for name in OPERATIONS:
            modules_before = set(sys.modules)
            response, tally, elapsed = getattr(self, name)(person)
            out[name] = {
                "status": response.status_code,
                **tally.as_dict(),
                "request_ms": round(elapsed * 1000, 3),
                "new_modules": sorted(set(sys.modules) - modules_before),
            }
            if response.status_code != EXPECTED_STATUS[name]:
                out[name]["unexpected_body"] = response.body.decode(errors="replace")[:500]
        return out


def _raw_floor(
    ddb: Any,
    counter: CallCounter,
    customers: str,
    identities: str,
    customer_key: str,
    identity_key: str,
    n: int,
) -> tuple[float, float]:
    """The two DynamoDB calls any upsert needs, by hand: read the identity index, then write
    the profile and claim two identities in one conditional transaction."""
    email, phone = f"email:floor{n}@example.com", f"phone:+86139{n:08d}"
    customer_id = "cus_floor" + uuid.uuid4().hex[:16]
    now = "2024-01-01T00:00:00.000+00:00"
    with counter.measure() as tally:
        start = time.perf_counter()
        ddb.batch_get_item(
            RequestItems={
                identities: {
                    "Keys": [{identity_key: {"S": email}}, {identity_key: {"S": phone}}],
                    "ConsistentRead": True,
                }
            }
        )
        claim = [
            {
                "Put": {
                    "TableName": identities,
                    "Item": {
                        identity_key: {"S": k},
                        "customer_id": {"S": customer_id},
                        "created_at": {"S": now},
                    },
                    "ConditionExpression": "attribute_not_exists(#k)",
                    "ExpressionAttributeNames": {"#k": identity_key},
                }
            }
            for k in (email, phone)
        ]
        ddb.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": customers,
                        "Item": {
                            customer_key: {"S": customer_id},
                            "status": {"S": "active"},
                            "email": {"S": email[6:]},
                            "phone": {"S": phone[6:]},
                            "first_name": {"S": "Ada"},
                            "last_name": {"S": "Bench"},
                            "created_at": {"S": now},
                            "updated_at": {"S": now},
                            "version": {"N": "1"},
                        },
                        "ConditionExpression": "attribute_not_exists(#k)",
                        "ExpressionAttributeNames": {"#k": customer_key},
                    }
                },
                *claim,
            ]
        )
        elapsed = time.perf_counter() - start
    return elapsed, tally.aws_seconds


def _table_keys(env: Mapping[str, str]) -> tuple[str, str, str, str]:
    from infra.resources import TABLES

    by_var = {t.env_var: t for t in TABLES}
    customers, identities = by_var["CRM_CUSTOMERS_TABLE"], by_var["CRM_IDENTITIES_TABLE"]
    return (
        env["CRM_CUSTOMERS_TABLE"],
        env["CRM_IDENTITIES_TABLE"],
        customers.hash_key,
        identities.hash_key,
    )


def _clear_tables(ddb: Any, tables: tuple[str, str, str, str]) -> None:
    """Empty the two customer tables (not timed). moto's TransactWriteItems deep-copies every
    table it touches, once per item of the transaction, so its cost grows with the table:
    timed iterations therefore all start from empty tables."""
    customers, identities, customer_key, identity_key = tables
    for table, key in ((customers, customer_key), (identities, identity_key)):
        scan: dict[str, Any] = {
            "TableName": table,
            "ProjectionExpression": "#k",
            "ExpressionAttributeNames": {"#k": key},
        }
        while True:
            page = ddb.scan(**scan)
            for item in page.get("Items", []):
                ddb.delete_item(TableName=table, Key={key: item[key]})
            if "LastEvaluatedKey" not in page:
                break
            scan["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _timing(
    runner: Runner, counter: CallCounter, env: Mapping[str, str], runs: int
) -> dict[str, Any]:
    import boto3

    ddb = boto3.client("dynamodb", region_name=REGION)
    tables = _table_keys(env)
    series: dict[str, dict[str, list[float]]] = {
        name: {"request": [], "in_aws_calls": [], "outside_aws_calls": []}
        for name in ("upsert_new", "upsert_changed", "floor_raw_dynamodb", "floor_noop_route")
    }
    calls: dict[str, set[int]] = {"upsert_new": set(), "upsert_changed": set()}
    statuses: dict[str, dict[int, int]] = {"upsert_new": {}, "upsert_changed": {}}
    failures = {"upsert_new": Failures(), "upsert_changed": Failures()}

    def record(name: str, total: float, aws: float) -> None:
        series[name]["request"].append(total)
        series[name]["in_aws_calls"].append(aws)
        series[name]["outside_aws_calls"].append(total - aws)

    for i in range(runs):  # A B A' B' ...: upsert, floor, upsert, floor
        _clear_tables(ddb, tables)
        person = runner.new_person()
        for name in ("upsert_new", "floor_raw_dynamodb", "upsert_changed", "floor_noop_route"):
            if name == "floor_raw_dynamodb":
                record(name, *_raw_floor(ddb, counter, *tables, n=i))
                continue
            if name == "floor_noop_route":
                _, tally, elapsed = runner.request("GET", "/openapi.json", headers={})
            else:
                response, tally, elapsed = getattr(runner, name)(person)
                calls[name].add(tally.total)
                status = response.status_code
                statuses[name][status] = statuses[name].get(status, 0) + 1
                failures[name].check(status == EXPECTED_STATUS[name], f"{name} answered {status}")
            record(name, elapsed, tally.aws_seconds)

    out: dict[str, Any] = {
        "runs": runs,
        "tables": "emptied before every iteration (not timed)",
        "order": "upsert_new, floor_raw_dynamodb, upsert_changed, floor_noop_route, repeated",
    }
    for name, parts in series.items():
        out[name] = {part: summary_ms(values) for part, values in parts.items()}
        if name in calls:
            out[name]["calls_seen"] = sorted(calls[name])
            out[name]["statuses"] = statuses[name]
            out[name]["failures"] = failures[name].as_dict()
    floor = out["floor_raw_dynamodb"]["request"]["median_ms"]
    noop = out["floor_noop_route"]["request"]["median_ms"]
    out["ratios"] = {
        f"{name}_vs_raw_dynamodb": ratio(out[name]["request"]["median_ms"], floor)
        for name in ("upsert_new", "upsert_changed")
    } | {
        f"{name}_minus_noop_route_vs_raw_dynamodb": ratio(
            out[name]["request"]["median_ms"] - noop, floor
        )
        for name in ("upsert_new", "upsert_changed")
    }
    return out


def failures_of(name: str, cycles: list[dict[str, dict[str, Any]]]) -> Failures:
    """The runs of operation `name` in `cycles` that did not answer its expected status."""
    failures = Failures()
    for cycle in cycles:
        status = cycle[name]["status"]
        failures.check(status == EXPECTED_STATUS[name], f"{name} answered {status}")
    return failures


def _steady(cycles: list[dict[str, dict[str, Any]]], name: str) -> dict[str, Any]:
    runs = [c[name] for c in cycles]
    last = runs[-1]
    totals = [r["calls"] for r in runs]
    shapes = {json.dumps(r["by_operation"], sort_keys=True) for r in runs}
    return {
        "status": last["status"],
        "calls": last["calls"],
        "by_operation": last["by_operation"],
        "http_sends": last["http_sends"],
        "cycles": len(runs),
        "calls_min": min(totals),
        "calls_max": max(totals),
        "stable": len(shapes) == 1,
        "statuses": sorted({r["status"] for r in runs}),
    }


def run(runs: int = 200, cycles: int = 5) -> dict[str, Any]:
    ensure_import_paths()
    env = local_stage_environment()
    started = time.perf_counter()
    with stage_environment(env), warnings.catch_warnings():
        # Powertools warns on every request that adds no metric (GET routes).
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        import boto3
        from moto import mock_aws

        from crm_local.provision import provision_data_resources

        with mock_aws(), CallCounter() as counter:
            with counter.measure() as provisioning:
                provision_data_resources(lambda s: boto3.client(s, region_name=REGION), env)
            _reset_caches()
            from chalice.test import Client

            from app import app

            with Client(app, stage_name="local", project_dir=str(PROJECT_DIR)) as client:
                runner = Runner(client, counter)
                first = runner.cycle()
                steady = [runner.cycle() for _ in range(cycles)]
                timing = _timing(runner, counter, env, runs)
                runner.sink.close()
            clients_seen = counter.clients_seen
        _reset_caches()

    operations: dict[str, Any] = {}
    everything = Failures()
    for name, label in OPERATIONS.items():
        first_call = {k: v for k, v in first[name].items() if k != "new_modules"}
        entry: dict[str, Any] = {
            "label": label,
            "first_call": first_call,
            "steady_state": _steady(steady, name),
            "failures": failures_of(name, [first, *steady]).as_dict(),
        }
        if name in TARGETS:
            entry["target_max_calls"] = TARGETS[name]
            entry["meets_target"] = (
                entry["steady_state"]["calls_max"] <= TARGETS[name]
                and first_call["calls"] <= TARGETS[name]
            )
        operations[name] = entry
        everything.add(entry["failures"])
    for name in ("upsert_new", "upsert_changed"):
        everything.add(timing[name]["failures"])
    problems = [
        f"{name}: status {first[name]['status']} (expected {EXPECTED_STATUS[name]})"
        for name in OPERATIONS
        if first[name]["status"] != EXPECTED_STATUS[name]
    ]
    problems += [
        f"{name}: steady-state statuses {operations[name]['steady_state']['statuses']}"
        for name in OPERATIONS
        if operations[name]["steady_state"]["statuses"] != [EXPECTED_STATUS[name]]
    ]
    result = {
        "name": NAME,
        "machine": machine(),
        "seconds": round(time.perf_counter() - started, 1),
        "backend": "moto in-process (mock_aws), tables provisioned from infra/",
        "provisioning": provisioning.as_dict(),
        "clients_created": clients_seen,
        "operations": operations,
        "first_request_new_modules": first["upsert_new"]["new_modules"],
        "timing": timing,
        "targets": {name: f"<= {n} calls" for name, n in TARGETS.items()},
        "problems": problems,
        "failures": everything.as_dict(),
    }
    write_result(NAME, result)
    return result


def summary_rows(result: Mapping[str, Any]) -> list[Row]:
    """(figure, value, target, verdict) rows for the summary table."""
    rows: list[Row] = []
    for name, op in result["operations"].items():
        steady, first = op["steady_state"], op["first_call"]
        breakdown = (
            ", ".join(
                f"{k.split('.', 1)[1]}x{v}" if v > 1 else k.split(".", 1)[1]
                for k, v in steady["by_operation"].items()
            )
            or "none"
        )
        first_note = (
            ""
            if first["by_operation"] == steady["by_operation"]
            else f" (first call: {first['calls']})"
        )
        target = f"<= {op['target_max_calls']} calls" if "target_max_calls" in op else ""
        met = op.get("meets_target") if target else None
        rows.append(
            (
                f"calls {name}",
                f"{steady['calls']} [{breakdown}]{first_note}",
                target,
                judged(met, op["failures"]),
            )
        )
    timing = result["timing"]
    for name in ("upsert_new", "upsert_changed", "floor_raw_dynamodb", "floor_noop_route"):
        req, app = timing[name]["request"], timing[name]["outside_aws_calls"]
        rows.append(
            (
                f"time {name} (n={req['n']})",
                f"median {req['median_ms']:.2f} ms, p99 {req['p99_ms']:.2f}, "
                f"min {req['min_ms']:.2f}; outside AWS calls: median {app['median_ms']:.2f}",
                "",
                judged(None, timing[name].get("failures")),
            )
        )
    for name, value in timing["ratios"].items():
        upsert = "upsert_new" if name.startswith("upsert_new") else "upsert_changed"
        rows.append((f"ratio {name}", f"{value}", "", judged(None, timing[upsert]["failures"])))
    for problem in result["problems"]:
        rows.append(("PROBLEM", problem, "", ""))
    return rows
