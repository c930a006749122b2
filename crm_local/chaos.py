"""The embedded DynamoDB failing on purpose, the way AWS's does: `crm local --chaos 0.05`.

A chosen share (`rate`) of the data calls (GetItem, PutItem, UpdateItem, DeleteItem, Query, Scan,
the batch and transaction calls; never the table management calls) is answered with one of the
failures DynamoDB itself answers, in its wire format, so botocore and PynamoDB meet exactly what
they meet in AWS:

- `conflict`: a transaction (TransactWriteItems, TransactGetItems) is cancelled with
  `TransactionCanceledException` whose `CancellationReasons` say `TransactionConflict` for one
  item and `None` for the others; a single write answers `TransactionConflictException`. HTTP
  400, nothing written. botocore does not retry either: the code's own handling meets them.
- `throttle`: `ProvisionedThroughputExceededException` or `ThrottlingException`, HTTP 400,
  nothing done. botocore retries these itself (standard mode, 4 attempts for DynamoDB, 1 s
  base backoff).
- `internal`: `InternalServerError`, HTTP 500, nothing done. botocore retries it (25 ms base).
- `applied`: writes only. The write IS applied, then answered 500, as AWS may (the answer was
  lost). botocore then sends it again: a conditional write meets its own condition, a
  transaction its `ClientRequestToken` (which `dynamodb_serial` honours as AWS does: the same
  token and payload answer success again without writing twice).
- `unprocessed`: BatchGetItem reads only some of the keys and returns the rest in
  `UnprocessedKeys`, as DynamoDB does when it throttles part of a batch.
- an *outage*: a share (`outage`) of the throttles and internal errors last for every attempt
  of the same SDK call (the `amz-sdk-invocation-id` header), so botocore's retries run out and
  the code's own handling meets them too.

Which call fails, and how, is drawn from one `random.Random(seed)`: the same seed and the same
sequence of calls give the same faults (concurrent clients make the sequence itself vary).
Every fault is counted (`calls`: data calls seen; `faults`: calls answered with a fault, each
attempt of an outage included; `drawn`: distinct faults; one count per kind; `outage_attempts`;
`token_replays`: transactions answered from their token): `counts()`, and over HTTP
`GET <endpoint>/moto-api/crm/dynamodb-chaos`
(a `POST` there with `{"rate": 0.05, "seed": 1}` changes the setting of a running stack). A
request with the header `x-crm-chaos: skip` is never failed: a test reads what the system wrote
without meeting the chaos it put there.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import random
import threading
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("stack.chaos")

ENV_RATE = "CRM_LOCAL_DYNAMODB_CHAOS"
ENV_SEED = "CRM_LOCAL_DYNAMODB_CHAOS_SEED"
SKIP_HEADER = "x-crm-chaos"
ROUTE = "/moto-api/crm/dynamodb-chaos"
DEFAULT_OUTAGE = 0.1

Response = tuple[int, dict[str, Any], Any]

TRANSACT_WRITE, TRANSACT_GET, BATCH_GET = "TransactWriteItems", "TransactGetItems", "BatchGetItem"
SINGLE_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem"})
READS = frozenset({"GetItem", "Query", "Scan"})
DATA_CALLS = frozenset(
    {*SINGLE_WRITES, *READS, TRANSACT_WRITE, TRANSACT_GET, BATCH_GET, "BatchWriteItem"}
)
KINDS = ("conflict", "throttle", "internal", "applied", "unprocessed")
_APPLIES_TO = {
    "conflict": frozenset({*SINGLE_WRITES, TRANSACT_WRITE, TRANSACT_GET}),
    "throttle": DATA_CALLS,
    "internal": DATA_CALLS,
    "applied": frozenset({*SINGLE_WRITES, TRANSACT_WRITE, "BatchWriteItem"}),
    "unprocessed": frozenset({BATCH_GET}),
}

# The failures each call can meet, and how often (relative weights). Conflicts and partial
# batches reach the code; throttles and 500s mostly meet botocore's retries, which is where
# AWS's SDKs meet them too; `applied` checks that a write sent twice counts once.
MIX: dict[str, dict[str, float]] = {
    TRANSACT_WRITE: {"conflict": 5, "throttle": 1.5, "internal": 2, "applied": 1.5},
    TRANSACT_GET: {"conflict": 5, "throttle": 2.5, "internal": 2.5},
    "write": {"conflict": 2.5, "throttle": 2.5, "internal": 2.5, "applied": 2.5},
    "read": {"throttle": 5, "internal": 5},
    BATCH_GET: {"unprocessed": 5, "throttle": 2.5, "internal": 2.5},
    "BatchWriteItem": {"throttle": 5, "internal": 5},
}

_PREFIX = "com.amazonaws.dynamodb.v20120810#"
_CONFLICT_MESSAGE = "Transaction is ongoing for the item"
_THROTTLES = (
    (
        _PREFIX + "ProvisionedThroughputExceededException",
        "Throughput exceeds the current capacity of your table or index. DynamoDB is "
        "automatically scaling your table or index so please try again shortly. If exceptions "
        "persist, check if you have a hot key: https://docs.aws.amazon.com/amazondynamodb/"
        "latest/developerguide/bp-partition-key-design.html",
    ),
    (
        "com.amazon.coral.availability#ThrottlingException",
        "Rate of requests exceeds the allowed throughput.",
    ),
)


@dataclass(frozen=True)
class Fault:
    kind: str
    operation: str
    pick: int  # which item conflicts, which throttle error
    outage: bool = False


class Chaos:
    """The setting and the counts. Thread-safe; one per process (`chaos`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.configure(0.0)

    def configure(
        self,
        rate: float,
        seed: int | None = None,
        outage: float = DEFAULT_OUTAGE,
        mix: Mapping[str, Mapping[str, float]] | None = None,
        limit: int | None = None,
    ) -> None:
        """Start over: a new share, seed and mix (None: `MIX`), and zero counts. `limit`: at
        most that many faults are drawn, then none (a test that wants exactly one)."""
        if not 0.0 <= rate <= 1.0 or not 0.0 <= outage <= 1.0:
            raise ValueError(f"chaos shares are between 0 and 1, not {rate} (outage {outage})")
        with self._lock:
            self.rate, self.seed, self.outage = float(rate), seed, float(outage)
            self.limit = limit
            self.mix = {k: dict(v) for k, v in (mix or MIX).items()}
            self._rng = random.Random(seed)
            self._outages: OrderedDict[str, Fault] = OrderedDict()
            self._counts: Counter[str] = Counter()
            self._by_operation: dict[str, Counter[str]] = {}

    def configure_from_env(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        raw = (env.get(ENV_RATE) or "").strip()
        seed = (env.get(ENV_SEED) or "").strip()
        try:
            rate = float(raw) if raw else 0.0
            self.configure(rate, int(seed) if seed else None)
        except ValueError as exc:
            raise ValueError(f"{ENV_RATE}={raw!r} / {ENV_SEED}={seed!r}: {exc}") from None

    def active(self) -> bool:
        return self.rate > 0

    @contextmanager
    def paused(self) -> Iterator[None]:
        """No faults inside (a test reading what was written); the draws and counts go on
        where they were."""
        rate, self.rate = self.rate, 0.0
        try:
            yield
        finally:
            self.rate = rate

    # -- deciding -------------------------------------------------------------------------------

    def decide(self, operation: str, headers: Mapping[str, str]) -> Fault | None:
        """The fault this call meets, or None."""
        if self.rate <= 0 or operation not in DATA_CALLS:
            return None
        if (headers.get(SKIP_HEADER) or "").lower() == "skip":
            return None
        invocation = headers.get("amz-sdk-invocation-id") or ""
        with self._lock:
            self._counts["calls"] += 1
            fault = self._outages.get(invocation) if invocation else None
            if fault is None:
                fault = self._draw(operation)
                if fault is not None and fault.outage and invocation:
                    self._outages[invocation] = fault
                    while len(self._outages) > 1000:
                        self._outages.popitem(last=False)
            if fault is not None:
                self._count(fault)
            return fault

    def _draw(self, operation: str) -> Fault | None:
        if self.limit is not None and self._counts["drawn"] >= self.limit:
            return None
        if self._rng.random() >= self.rate:
            return None
        if operation in SINGLE_WRITES:
            weights = self.mix.get("write", {})
        elif operation in READS:
            weights = self.mix.get("read", {})
        else:
            weights = self.mix.get(operation, {})
        kinds = [k for k, w in weights.items() if w > 0 and operation in _APPLIES_TO.get(k, ())]
        if not kinds:
            return None
        kind = self._rng.choices(kinds, [weights[k] for k in kinds])[0]
        outage = kind in ("throttle", "internal") and self._rng.random() < self.outage
        self._counts["drawn"] += 1
        return Fault(kind, operation, self._rng.randrange(1 << 30), outage)

    def _count(self, fault: Fault) -> None:
        self._counts["faults"] += 1
        self._counts[fault.kind] += 1
        if fault.outage:
            self._counts["outage_attempts"] += 1
        self._by_operation.setdefault(fault.operation, Counter())[fault.kind] += 1

    def note(self, what: str) -> None:
        """Count something the layers around the faults did (e.g. a token's success replayed)."""
        with self._lock:
            self._counts[what] += 1

    def counts(self) -> dict[str, Any]:
        with self._lock:
            zero = ("calls", "faults", "drawn", *KINDS, "outage_attempts", "token_replays")
            counts = {**dict.fromkeys(zero, 0), **self._counts}
            return {
                "rate": self.rate,
                "seed": self.seed,
                "outage": self.outage,
                **counts,
                "by_operation": {op: dict(c) for op, c in sorted(self._by_operation.items())},
            }

    # -- answering ------------------------------------------------------------------------------

    def around(self, handler: Any, proceed: Callable[[], Response]) -> Response:
        """Answer one DynamoDB request (`handler`: moto's DynamoHandler, set up): `proceed()` is
        the request as moto serves it."""
        if self.rate <= 0:
            return proceed()
        operation = handler._get_action()
        fault = self.decide(operation, handler.headers)
        if fault is None:
            return proceed()
        if fault.kind == "unprocessed":
            return _partial_batch_get(handler, proceed)
        if fault.kind == "applied":
            status, headers, body = proceed()
            if status != 200:  # refused anyway (a condition): nothing to lose the answer of
                return status, headers, body
            return _error(500, _PREFIX + "InternalServerError", "Internal server error")
        if fault.kind == "conflict":
            if operation in (TRANSACT_WRITE, TRANSACT_GET):
                return _cancelled(len(handler.params.get("TransactItems") or []) or 1, fault.pick)
            return _error(400, _PREFIX + "TransactionConflictException", _CONFLICT_MESSAGE)
        if fault.kind == "throttle":
            error_type, message = _THROTTLES[fault.pick % len(_THROTTLES)]
            return _error(400, error_type, message)
        return _error(500, _PREFIX + "InternalServerError", "Internal server error")


def _headers() -> dict[str, Any]:
    return {
        "Content-Type": "application/x-amz-json-1.0",
        "x-amzn-RequestId": str(uuid.uuid4()),
    }


def _error(status: int, error_type: str, message: str, **extra: Any) -> Response:
    body = {"__type": error_type, "message": message, **extra}
    return status, {**_headers(), "status": status}, json.dumps(body)


def _cancelled(items: int, pick: int) -> Response:
    """TransactionCanceledException as DynamoDB words it: one reason per item, in order."""
    conflicting = pick % items
    reasons = [
        {"Code": "TransactionConflict", "Message": _CONFLICT_MESSAGE}
        if i == conflicting
        else {"Code": "None"}
        for i in range(items)
    ]
    codes = ", ".join(r["Code"] for r in reasons)
    return _error(
        400,
        _PREFIX + "TransactionCanceledException",
        f"Transaction cancelled, please refer cancellation reasons for specific reasons [{codes}]",
        CancellationReasons=reasons,
    )


def _wire(value: Any) -> Any:
    """A parsed request value back in DynamoDB's JSON (binary values are base64)."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {k: _wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_wire(v) for v in value]
    return value


def _partial_batch_get(handler: Any, proceed: Callable[[], Response]) -> Response:
    """Serve the first half of the keys (at least one) and hand the rest back unprocessed."""
    requested: dict[str, Any] = handler.params.get("RequestItems") or {}
    keys = [(table, key) for table, spec in requested.items() for key in spec.get("Keys", [])]
    if len(keys) < 2:
        return proceed()
    served = set(range((len(keys) + 1) // 2))
    now: dict[str, Any] = {}
    later: dict[str, Any] = {}
    for i, (table, key) in enumerate(keys):
        target = now if i in served else later
        spec = requested[table]
        entry = target.setdefault(table, {k: v for k, v in spec.items() if k != "Keys"})
        entry.setdefault("Keys", []).append(key)
    handler.params["RequestItems"] = now
    status, headers, body = proceed()
    if status != 200:
        return status, headers, body
    answer = json.loads(body)
    unprocessed = answer.setdefault("UnprocessedKeys", {})
    for table, spec in later.items():
        wire = _wire(spec)
        unprocessed[table] = {
            **wire,
            "Keys": unprocessed.get(table, {}).get("Keys", []) + wire["Keys"],
        }
    return status, headers, json.dumps(answer)


chaos = Chaos()


# -- the HTTP view on the embedded endpoint ---------------------------------------------------


def _route(request: Any, full_url: str, headers: Any) -> Response:
    """GET: the setting and counts. POST `{"rate", "seed", "outage"}`: a new setting (counts
    start over)."""
    if request.method == "POST":
        try:
            raw = request.get_data() if hasattr(request, "get_data") else request.body
            wanted = json.loads(raw or b"{}")
            chaos.configure(
                float(wanted.get("rate", 0.0)),
                wanted.get("seed"),
                float(wanted.get("outage", DEFAULT_OUTAGE)),
            )
        except (TypeError, ValueError) as exc:
            return 400, {"Content-Type": "application/json"}, json.dumps({"error": str(exc)})
        log.info("DynamoDB chaos set to %s of data calls (seed %s)", chaos.rate, chaos.seed)
    return 200, {"Content-Type": "application/json"}, json.dumps(chaos.counts())


def install_route() -> None:
    """Serve `ROUTE` on the embedded endpoint (beside moto's own `/moto-api/...` routes)."""
    from moto.moto_api._internal import urls

    urls.url_paths["{0}" + ROUTE + "$"] = _route
