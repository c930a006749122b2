"""Order webhooks and points: AWS calls per operation, and the paid-order webhook's time.

Runs the real app in-process through Chalice's test client against moto (`mock_aws`), with the
data resources of `infra/` provisioned under the local stage's names as `bench/aws_calls.py`
does it, plus what the order path now also needs and `tests/conftest.py` provisions too: the
Step Functions state machines (a paid order starts its fulfilment workflow, a platform's refund
its refund workflow; moto records executions without running them) and the SES sender.
Shopify deliveries are built and signed by `crm_local/shopify.py` (the tests' own).

Calls: every operation of one buyer's story, with fresh ids, once in a fresh process ("first
call") and for a few more cycles ("steady state"), counted by `bench.calls.CallCounter`.
Timing: a new paid-order webhook and its duplicate (sent once the order is left as the
workflow's first step leaves it, untimed: moto does not run workflows), interleaved with a
floor measured in the same loop: one raw `put_item` through boto3 of the very order item the
webhook stores (and, for context, one raw `batch_get_item` of what the duplicate's one call
reads).
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
import warnings
from collections.abc import Mapping
from contextlib import redirect_stdout
from typing import Any

from bench.aws_calls import _steady, stage_environment
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

NAME = "orders"
APP_NAME = "shop-crm"
STAGE = "local"
READS = frozenset(
    f"dynamodb.{op}" for op in ("GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems")
)
TRANSACT_WRITE = "dynamodb.TransactWriteItems"

OPERATIONS = {
    "paid_new_guest": "(a) orders/paid, an order never seen, a new guest email",
    "duplicate_while_starting": "(b') (a) delivered again (same X-Shopify-Webhook-Id) before "
    "its workflow reported back: the order still `starting`, so the start is resumed "
    "(decision 30; refused by name if it did start)",
    "duplicate": "(b) (a) delivered again once its workflow has reported back (the order "
    "`allocated`, as the Allocate step leaves it)",
    "create": "(c) orders/create, an existing customer (sets up (d))",
    "paid_existing": "(d) orders/paid for the order (c) created, existing customer",
    "fulfilled": "(e) orders/fulfilled after (d): the points become active",
    "refund": "(f) refunds/create, 10 % of the goods of (d)",
    "redeem": "(g) POST /customers/{id}/points/redemptions, 1000 points, enough balance",
    "redeem_replay": "(h) (g) again, same idempotency_key; the balance still covers 1000",
    "redeem_second": "(i) a second redemption of 1000, another key (leaves less than 1000)",
    "redeem_replay_spent": "(j) (g) again, same idempotency_key; the balance below 1000",
    "get_order": "(k) GET /orders/{id}, the project's id (ord_...)",
    "get_order_by_platform_id": "(l) GET /orders/{id}, Shopify's order id",
    "get_points": "(m) GET /customers/{id}/points",
}
# Targets on the calls an operation makes: at most / exactly that many, or for a redemption
# exactly one TransactWriteItems and at most one read.
TARGETS: dict[str, dict[str, int]] = {
    "paid_new_guest": {"max_calls": 4},
    "paid_existing": {"max_calls": 4},
    "duplicate": {"exact_calls": 1, "reads_only": 1},
    "redeem": {"transact_writes": 1, "max_reads": 1},
    "redeem_second": {"transact_writes": 1, "max_reads": 1},
}
# (HTTP status, the webhook's `status` field or None)
EXPECTED: dict[str, tuple[int, str | None]] = {
    "paid_new_guest": (200, "processed"),
    "duplicate_while_starting": (200, "duplicate"),
    "duplicate": (200, "duplicate"),
    "create": (200, "processed"),
    "paid_existing": (200, "processed"),
    "fulfilled": (200, "processed"),
    "refund": (200, "processed"),
    "redeem": (201, None),
    "redeem_replay": (200, None),
    "redeem_second": (201, None),
    "redeem_replay_spent": (200, None),
    "get_order": (200, None),
    "get_order_by_platform_id": (200, None),
    "get_points": (200, None),
}
# What else an operation's figure stands on: a duplicate is only one if its original was
# recorded; an order's story needs the customer (set-up) and the order it continues.
PREREQUISITES: dict[str, tuple[str, ...]] = {
    "duplicate_while_starting": ("paid_new_guest",),
    "duplicate": ("paid_new_guest",),
    "create": ("setup_customer",),
    "paid_existing": ("create",),
    "fulfilled": ("paid_existing",),
    "refund": ("paid_existing",),
    "redeem": ("fulfilled", "refund"),
    "redeem_second": ("redeem",),
}
SETUP = {"setup_customer": (201, None)}  # POST /customers before the order's story
GOODS = "2500.00"  # points earned by (d); (f) refunds 10 %: 2250 left, enough for two 1000s
REFUND = "250.00"
# One timing iteration, alternately: A B A' B', then B A B' A' (the read floor and the duplicate
# always come after the new webhook: they read what it stored).
ORDERS = (("new", "put", "duplicate", "read"), ("put", "new", "read", "duplicate"))
PAID = {"financial_status": "paid", "updated_at": "2026-11-20T10:05:00+08:00"}


def target_text(target: Mapping[str, int]) -> str:
    if "max_calls" in target:
        return f"<= {target['max_calls']} calls"
    if "exact_calls" in target:
        n = target["exact_calls"]
        reads = f" ({'a read' if n == 1 else 'reads'})" if target.get("reads_only") else ""
        return f"== {n} call{'s' if n != 1 else ''}{reads}"
    return (
        f"{target['transact_writes']} TransactWriteItems, <= {target['max_reads']} read, "
        "nothing else"
    )


def meets(target: Mapping[str, int], by_operation: Mapping[str, int]) -> bool:
    total = sum(by_operation.values())
    if "max_calls" in target:
        return total <= target["max_calls"]
    if "exact_calls" in target:
        reads_only = not target.get("reads_only") or all(k in READS for k in by_operation)
        return total == target["exact_calls"] and reads_only
    writes = by_operation.get(TRANSACT_WRITE, 0)
    reads = sum(v for k, v in by_operation.items() if k in READS)
    return (
        writes == target["transact_writes"]
        and reads <= target["max_reads"]
        and total == writes + reads
    )


def reset_caches() -> None:
    """Forget every cached setting, store and client (as the tests' `_reset_caches`), so this
    run builds its own against this run's moto."""
    import importlib

    try:
        from crm.config import get_settings

        get_settings.cache_clear()
    except (ImportError, AttributeError):
        pass
    for name in (
        "crm.store.customers",
        "crm.store.orders",
        "crm.store.ledger",
        "crm.store.inventory",
        "crm.store.cases",
        "crm.store.notifications",
        "crm.store.imports",
        "crm.adapters.s3",
        "crm.adapters.messaging",
        "crm.adapters.ops",
        "crm.adapters.workflows",
    ):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError:
            continue
        reset = getattr(module, "reset", None)
        if callable(reset):
            reset()


def provision(client: Any, env: Mapping[str, str]) -> dict[str, Any]:
    """The data resources (as `aws_calls`), then, when this version of the code has them, the
    SES sender and the state machines with placeholder functions (as `tests/conftest.py`)."""
    from crm_local import provision as p

    made: dict[str, Any] = {"data": p.provision_data_resources(client, env)}
    if hasattr(p, "provision_messaging"):
        made["messaging"] = p.provision_messaging(client, os.environ)
    machines = tuple(getattr(p, "STATE_MACHINES", ()))
    if machines and hasattr(p, "provision_state_machines"):
        names = sorted(
            {
                ref.split(":", 1)[1]
                for machine_ in machines
                for ref in machine_.substitutions.values()
                if ref.startswith("function:")
            }
        )
        functions = [
            p.AppFunction(name=n, handler_string=f"app.{n}", handler=lambda e, c: None)
            for n in names
        ]
        arns = p.provision_functions(client, functions, APP_NAME, STAGE, env)
        made["state_machines"] = p.provision_state_machines(client, env, arns, STAGE, APP_NAME)
    return made


class Runner:
    def __init__(
        self, client: Any, counter: CallCounter, ddb: Any = None, orders_table: str = ""
    ) -> None:
        self.client = client
        self.counter = counter
        self.ddb = ddb
        self.orders_table = orders_table
        self.n = 0
        self.tag = uuid.uuid4().hex[:6]
        self.sink = open(os.devnull, "w")  # noqa: SIM115  (EMF metrics printed per request)

    def request(
        self, method: str, path: str, body: bytes | None, headers: Mapping[str, str]
    ) -> tuple[Any, Tally, float]:
        kwargs: dict[str, Any] = {"headers": dict(headers)}
        if body is not None:
            kwargs["body"] = body
        with redirect_stdout(self.sink), self.counter.measure() as tally:
            start = time.perf_counter()
            response = self.client.http.request(method, path, **kwargs)
            elapsed = time.perf_counter() - start
        return response, tally, elapsed

    def webhook(self, delivery: Any) -> tuple[Any, Tally, float]:
        return self.request("POST", "/webhooks/shopify", delivery.body, delivery.headers())

    def api(self, method: str, path: str, body: Any = None) -> tuple[Any, Tally, float]:
        raw = json.dumps(body).encode() if body is not None else None
        return self.request(method, path, raw, OPERATOR_HEADERS)

    def fresh(self) -> int:
        """A number no order id or email of this process has used."""
        self.n += 1
        return self.n

    def guest_paid(self) -> tuple[Any, int]:
        """orders/paid for an order never seen, bought by a new guest email."""
        from crm_local.shopify import deliver, order_payload

        n = self.fresh()
        order_id = 7_100_000_000 + n
        payload = order_payload(order_id, email=f"guest.{n}.{self.tag}@example.com", **PAID)
        return deliver("orders/paid", payload), order_id

    def workflow_reported_back(self, order_id: str) -> None:
        """Leave the order as the workflow's first step (Allocate) does: `allocated`. moto
        records executions without running them, so without this every order would stay
        `starting`, and a duplicate of it would resume the start (decision 30) instead of
        being the one read a duplicate costs once the workflow runs. Not measured."""
        key = {"order_id": {"S": order_id}}
        item = self.ddb.get_item(TableName=self.orders_table, Key=key, ConsistentRead=True)
        stored = json.loads(item.get("Item", {}).get("workflow", {}).get("S") or "{}")
        if stored.get("state") != "starting":
            raise RuntimeError(f"{order_id}: workflow {stored} (expected `starting`)")
        self.ddb.update_item(
            TableName=self.orders_table,
            Key=key,
            UpdateExpression="SET #w = :w",
            ExpressionAttributeNames={"#w": "workflow"},
            ExpressionAttributeValues={
                ":w": {"S": json.dumps({**stored, "state": "allocated", "attempt": 1})}
            },
        )

    # -- one buyer's story, (a) to (m) ---------------------------------------------------------

    def cycle(self) -> dict[str, dict[str, Any]]:
        from crm_local.shopify import deliver, order_payload, refund_payload

        out: dict[str, dict[str, Any]] = {}

        def step(name: str, result: tuple[Any, Tally, float], modules: set[str]) -> Any:
            response, tally, elapsed = result
            body = _json(response.body)
            outcome = body.get("status") if isinstance(body, dict) else None
            out[name] = {
                "status": response.status_code,
                **({"outcome": outcome} if EXPECTED[name][1] else {}),
                **tally.as_dict(),
                "request_ms": round(elapsed * 1000, 3),
                "new_modules": sorted(set(sys.modules) - modules),
            }
            if (response.status_code, outcome if EXPECTED[name][1] else None) != EXPECTED[name]:
                out[name]["unexpected_body"] = response.body.decode(errors="replace")[:500]
            return body

        def run(name: str, call: Any, *args: Any) -> Any:
            modules = set(sys.modules)
            return step(name, call(*args), modules)

        paid, _ = self.guest_paid()
        recorded = run("paid_new_guest", self.webhook, paid)
        run("duplicate_while_starting", self.webhook, paid)
        if isinstance(recorded, dict) and recorded.get("status") == "processed":
            self.workflow_reported_back(recorded["order_id"])
        run("duplicate", self.webhook, paid)

        # An existing customer (set-up: checked, not reported), then their order's story.
        n = self.fresh()
        email = f"known.{n}.{self.tag}@example.com"
        created, _, _ = self.api("POST", "/customers", {"email": email})
        out["setup_customer"] = {"status": created.status_code}
        customer_id = (_json(created.body) or {}).get("customer_id", "cus_missing")
        order_id = 7_200_000_000 + n
        lines = [("SKU-1", 1, GOODS)]
        pending = order_payload(order_id, email=email, lines=lines)
        run("create", self.webhook, deliver("orders/create", pending))
        paid_payload = order_payload(order_id, email=email, lines=lines, **PAID)
        answer = run("paid_existing", self.webhook, deliver("orders/paid", paid_payload))
        fulfilled = dict(
            paid_payload, fulfillment_status="fulfilled", updated_at="2026-11-21T10:00:00+08:00"
        )
        run("fulfilled", self.webhook, deliver("orders/fulfilled", fulfilled))
        refund = refund_payload(order_id * 10 + 1, order_id, amount=REFUND)
        run("refund", self.webhook, deliver("refunds/create", refund))

        path = f"/customers/{customer_id}/points"
        first = {"points": 1000, "idempotency_key": f"checkout-{n}"}
        second = {"points": 1000, "idempotency_key": f"checkout-{n}-b"}
        run("redeem", self.api, "POST", f"{path}/redemptions", first)
        run("redeem_replay", self.api, "POST", f"{path}/redemptions", first)
        run("redeem_second", self.api, "POST", f"{path}/redemptions", second)
        run("redeem_replay_spent", self.api, "POST", f"{path}/redemptions", first)

        project_id = (answer or {}).get("order_id") or f"ord_shopify_{order_id}"
        run("get_order", self.api, "GET", f"/orders/{project_id}")
        run("get_order_by_platform_id", self.api, "GET", f"/orders/{order_id}")
        run("get_points", self.api, "GET", path)
        return out


def failures_of(name: str, cycles: list[dict[str, dict[str, Any]]]) -> Failures:
    """The runs of `name` in `cycles` that did not answer what they must (status, and for a
    webhook its `status` field)."""
    status, outcome = {**EXPECTED, **SETUP}[name]
    failures = Failures()
    for cycle in cycles:
        seen = cycle[name]
        got = (seen["status"], seen.get("outcome") if outcome else None)
        text = " ".join(str(x) for x in got if x is not None)
        failures.check(got == (status, outcome), f"{name} answered {text}")
    return failures


def failures_of_timing(timing: Mapping[str, Any], name: str) -> Failures:
    """The failures of the timed runs of `name` alone (the duplicate's own)."""
    outcomes: Mapping[str, int] = timing[name]["outcomes"]
    status, expected = EXPECTED[name]
    failures = Failures()
    for outcome, count in outcomes.items():
        for _ in range(count):
            failures.check(outcome == f"{status} {expected}", f"{name} answered {outcome}")
    return failures


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


# -- timing -------------------------------------------------------------------------------------


def _data_tables(env: Mapping[str, str]) -> list[tuple[str, Any]]:
    """(physical name, definition) of every table of `infra/`."""
    from infra.resources import TABLES

    return [(env[t.env_var], t) for t in TABLES]


def _clear_tables(ddb: Any, tables: list[tuple[str, Any]]) -> None:
    """Empty every table (not timed). moto's TransactWriteItems deep-copies every table it
    touches, once per item of the transaction, so its cost grows with the tables: timed
    iterations therefore all start from empty tables. A table with a sort key that held items
    is dropped and created again: moto keeps an empty partition for every hash key whose
    last item was deleted, so deleting items alone would still let it grow (one partition per
    customer in the ledger), and the new-order webhook's transaction with it."""
    from crm_local.provision import table_request

    for table, definition in tables:
        keys = [definition.hash_key] + ([definition.range_key] if definition.range_key else [])
        names = {f"#k{i}": k for i, k in enumerate(keys)}
        scan: dict[str, Any] = {
            "TableName": table,
            "ProjectionExpression": ", ".join(names),
            "ExpressionAttributeNames": names,
        }
        if definition.range_key:
            if ddb.scan(**scan, Limit=1).get("Items"):
                ddb.delete_table(TableName=table)
                ddb.create_table(**table_request(definition, table))
                if definition.ttl_attribute:
                    ddb.update_time_to_live(
                        TableName=table,
                        TimeToLiveSpecification={
                            "Enabled": True,
                            "AttributeName": definition.ttl_attribute,
                        },
                    )
            continue
        while True:
            page = ddb.scan(**scan)
            for item in page.get("Items", []):
                ddb.delete_item(TableName=table, Key={k: item[k] for k in keys})
            if "LastEvaluatedKey" not in page:
                break
            scan["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _floor_template(ddb: Any, runner: Runner, orders_table: str) -> dict[str, Any]:
    """The order item a new paid-order webhook stores, as stored (DynamoDB JSON)."""
    delivery, order_id = runner.guest_paid()
    response, _, _ = runner.webhook(delivery)
    project_id = (_json(response.body) or {}).get("order_id") or f"ord_shopify_{order_id}"
    item = ddb.get_item(
        TableName=orders_table, Key={"order_id": {"S": project_id}}, ConsistentRead=True
    ).get("Item")
    if not item:
        raise RuntimeError(f"the order item of {project_id} was not stored: {response.body!r}")
    return dict(item)


def _timing(
    runner: Runner, counter: CallCounter, env: Mapping[str, str], runs: int
) -> dict[str, Any]:
    import boto3

    ddb = boto3.client("dynamodb", region_name=REGION)
    tables = _data_tables(env)
    orders_table = env["CRM_ORDERS_TABLE"]
    _clear_tables(ddb, tables)
    template = _floor_template(ddb, runner, orders_table)

    series: dict[str, dict[str, list[float]]] = {
        name: {"request": [], "in_aws_calls": [], "outside_aws_calls": []}
        for name in ("paid_new_guest", "duplicate", "floor_put_item", "floor_read")
    }
    calls: dict[str, set[str]] = {"paid_new_guest": set(), "duplicate": set()}
    outcomes: dict[str, dict[str, int]] = {"paid_new_guest": {}, "duplicate": {}}
    failures = {"paid_new_guest": Failures(), "duplicate": Failures()}
    read_items: dict[int, int] = {}

    def record(name: str, total: float, aws: float) -> None:
        series[name]["request"].append(total)
        series[name]["in_aws_calls"].append(aws)
        series[name]["outside_aws_calls"].append(total - aws)

    def webhook(name: str, delivery: Any) -> dict[str, Any]:
        response, tally, elapsed = runner.webhook(delivery)
        body = _json(response.body)
        body = body if isinstance(body, dict) else {}
        outcome = f"{response.status_code} {body.get('status', '?')}"
        outcomes[name][outcome] = outcomes[name].get(outcome, 0) + 1
        status, expected = EXPECTED[name]
        failures[name].check(outcome == f"{status} {expected}", f"{name} answered {outcome}")
        calls[name].add(f"{tally.total} {json.dumps(tally.breakdown(), sort_keys=True)}")
        record(name, elapsed, tally.aws_seconds)
        return body

    def put_floor(i: int) -> None:
        item = {**template, "order_id": {"S": f"ord_floor_{i}"}}
        with counter.measure() as tally:
            start = time.perf_counter()
            ddb.put_item(TableName=orders_table, Item=item)
            elapsed = time.perf_counter() - start
        record("floor_put_item", elapsed, tally.aws_seconds)

    def read_floor(order_id: str, delivery: Any, email: str) -> None:
        # What the duplicate's one call reads: the order, the delivery, the buyer's identity.
        request = {
            orders_table: {"Keys": [{"order_id": {"S": order_id}}], "ConsistentRead": True},
            env["CRM_DELIVERIES_TABLE"]: {
                "Keys": [{"delivery_id": {"S": f"shopify:{delivery.webhook_id}"}}],
                "ConsistentRead": True,
            },
            env["CRM_IDENTITIES_TABLE"]: {
                "Keys": [{"identity": {"S": f"email:{email}"}}],
                "ConsistentRead": True,
            },
        }
        with counter.measure() as tally:
            start = time.perf_counter()
            answer = ddb.batch_get_item(RequestItems=request)
            elapsed = time.perf_counter() - start
        found = sum(len(v) for v in answer.get("Responses", {}).values())
        read_items[found] = read_items.get(found, 0) + 1
        record("floor_read", elapsed, tally.aws_seconds)

    for i in range(runs):
        _clear_tables(ddb, tables)
        # A new order id and a new guest email, every time.
        delivery, platform_id = runner.guest_paid()
        email = json.loads(delivery.body)["email"]
        order_id = f"ord_shopify_{platform_id}"
        for what in ORDERS[i % 2]:
            if what == "put":
                put_floor(i)
            elif what == "read":
                read_floor(order_id, delivery, email)
            elif what == "new":
                answer = webhook("paid_new_guest", delivery)
                order_id = answer.get("order_id") or order_id
                if answer.get("status") == "processed":
                    runner.workflow_reported_back(order_id)  # untimed, as in the cycles
            else:
                webhook("duplicate", delivery)
    _clear_tables(ddb, tables)

    out: dict[str, Any] = {
        "runs": runs,
        "tables": "every table emptied before every iteration (not timed)",
        "order": " / ".join(", ".join(steps) for steps in ORDERS) + ", alternately",
        "floors": {
            "floor_put_item": {
                "what": "boto3 put_item of the order item a new paid-order webhook stores "
                "(as stored, fresh key each time): the floor of the ratios",
                "table": orders_table,
                "item_attributes": len(template),
                "item_json_bytes": len(json.dumps(template)),
            },
            "floor_read": {
                "what": "boto3 batch_get_item of what the duplicate's one call reads (the "
                "order, the delivery, the buyer's identity; consistent), after the new webhook "
                "stored them",
                "items_returned": read_items,
            },
        },
    }
    for name, parts in series.items():
        out[name] = {part: summary_ms(values) for part, values in parts.items()}
        if name in calls:
            out[name]["calls_seen"] = sorted(calls[name])
            out[name]["outcomes"] = outcomes[name]
            out[name]["failures"] = failures[name].as_dict()
    out["duplicate"]["failures"] = (
        Failures().add(out["duplicate"]["failures"]).add(failures["paid_new_guest"]).as_dict()
    )
    floor_median = out["floor_put_item"]["request"]["median_ms"]
    out["ratios"] = {
        f"{name}_vs_put_item": ratio(out[name]["request"]["median_ms"], floor_median)
        for name in ("paid_new_guest", "duplicate")
    } | {
        "duplicate_vs_its_read": ratio(
            out["duplicate"]["request"]["median_ms"], out["floor_read"]["request"]["median_ms"]
        )
    }
    return out


# -- run ----------------------------------------------------------------------------------------


def run(runs: int = 300, cycles: int = 5) -> dict[str, Any]:
    ensure_import_paths()
    env = local_stage_environment()
    started = time.perf_counter()
    with stage_environment(env), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        import boto3
        from moto import mock_aws

        # Step Functions executions are recorded, never run (no Lambda runtime here).
        with (
            mock_aws(config={"stepfunctions": {"execute_state_machine": False}}),
            CallCounter() as counter,
        ):
            with counter.measure() as provisioning:
                provisioned = provision(lambda s: boto3.client(s, region_name=REGION), env)
            reset_caches()
            from chalice.test import Client

            from app import app

            with Client(app, stage_name=STAGE, project_dir=str(PROJECT_DIR)) as client:
                ddb = boto3.client("dynamodb", region_name=REGION)
                runner = Runner(client, counter, ddb, env["CRM_ORDERS_TABLE"])
                first = runner.cycle()
                steady = [runner.cycle() for _ in range(cycles)]
                timing = _timing(runner, counter, env, runs)
                runner.sink.close()
            clients_seen = counter.clients_seen
        reset_caches()

    cycles = [first, *steady]
    own = {name: failures_of(name, cycles) for name in (*EXPECTED, *SETUP)}
    operations: dict[str, Any] = {}
    for name, label in OPERATIONS.items():
        first_call = {k: v for k, v in first[name].items() if k != "new_modules"}
        behind = Failures().add(own[name])
        for before in PREREQUISITES.get(name, ()):
            behind.add(own[before])
        entry: dict[str, Any] = {
            "label": label,
            "first_call": first_call,
            "steady_state": _steady(steady, name),
            "failures": own[name].as_dict(),
            "failures_with_prerequisites": behind.as_dict(),
        }
        if name in TARGETS:
            entry["target"] = target_text(TARGETS[name])
            entry["meets_target"] = meets(TARGETS[name], first_call["by_operation"]) and all(
                meets(TARGETS[name], c[name]["by_operation"]) for c in steady
            )
        operations[name] = entry

    everything = Failures()
    for name in own:
        everything.add(own[name])
    for name in ("paid_new_guest", "duplicate"):
        everything.add(failures_of_timing(timing, name))
    problems: list[str] = []
    for name, (status, outcome) in {**EXPECTED, **SETUP}.items():
        seen = [(c[name]["status"], c[name].get("outcome")) for c in (first, *steady)]
        wrong = sorted(
            {f"{s} {o}" if o else str(s) for s, o in seen if (s, o) != (status, outcome)}
        )
        if wrong:
            expected = f"{status} {outcome}" if outcome else str(status)
            problems.append(f"{name}: got {', '.join(wrong)} (expected {expected})")
    for name, expected in (("paid_new_guest", "200 processed"), ("duplicate", "200 duplicate")):
        other = {k: v for k, v in timing[name]["outcomes"].items() if k != expected}
        if other:
            problems.append(f"timing {name}: {other} (expected {expected})")
    returned = timing["floors"]["floor_read"]["items_returned"]
    if set(returned) != {3}:
        problems.append(f"floor_read: items returned {returned} (expected 3 every time)")

    result = {
        "name": NAME,
        "machine": machine(),
        "seconds": round(time.perf_counter() - started, 1),
        "backend": "moto in-process (mock_aws), data resources of infra/ as aws_calls, "
        "plus state machines and SES sender as tests/conftest.py",
        "provisioning": {
            **provisioning.as_dict(),
            "state_machines": sorted(provisioned.get("state_machines", {})),
        },
        "clients_created": clients_seen,
        "operations": operations,
        "first_request_new_modules": first["paid_new_guest"]["new_modules"],
        "timing": timing,
        "targets": {name: target_text(t) for name, t in TARGETS.items()},
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
        target = op.get("target", "")
        rows.append(
            (
                f"calls {name}",
                f"{steady['calls']} [{breakdown}]{first_note}",
                target,
                judged(
                    op.get("meets_target") if target else None, op["failures_with_prerequisites"]
                ),
            )
        )
    timing = result["timing"]
    for name in ("paid_new_guest", "duplicate", "floor_put_item", "floor_read"):
        req, app = timing[name]["request"], timing[name]["outside_aws_calls"]
        rows.append(
            (
                f"time {name} (n={req['n']})",
                f"median {req['median_ms']:.2f} ms, p90 {req['p90_ms']:.2f}, "
                f"p99 {req['p99_ms']:.2f}, min {req['min_ms']:.2f}; "
                f"outside AWS calls: median {app['median_ms']:.2f}",
                "",
                judged(None, timing[name].get("failures")),
            )
        )
    for name, value in timing["ratios"].items():
        measured = "duplicate" if name.startswith("duplicate") else "paid_new_guest"
        rows.append((f"ratio {name}", f"{value}", "", judged(None, timing[measured]["failures"])))
    for problem in result["problems"]:
        rows.append(("PROBLEM", problem, "", ""))
    return rows
