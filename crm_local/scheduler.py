"""Fire the endpoint's EventBridge schedule rules, as EventBridge would, on a local thread.

moto stores rules but never fires them. The scheduler reads the ENABLED rules that have a
schedule expression (and their targets) from the endpoint, and when one is due invokes each
Lambda target through the endpoint with a "Scheduled Event". The clock and the tick are
parameters, so a test can run a minute of schedule in a fraction of a second.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from crm_local.schedules import InvalidSchedule, Schedule, parse

log = logging.getLogger("stack.scheduler")

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Rule:
    name: str
    arn: str
    expression: str
    schedule: Schedule
    anchor: datetime
    targets: list[dict[str, Any]] = field(default_factory=list)
    next_fire: datetime | None = None


def scheduled_event(rule_arn: str, when: datetime) -> dict[str, Any]:
    """The event EventBridge sends a Lambda target of a schedule rule."""
    _, _, _, region, account, _ = rule_arn.split(":", 5)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


class Scheduler:
    """`start()` runs `tick()` every `interval` real seconds on a thread until `stop()`.

    `client` makes boto3 clients for the endpoint (`Endpoint.client`). Rules are re-read every
    `refresh` real seconds, so rules put while it runs are picked up."""

    def __init__(
        self,
        client: Callable[[str], Any],
        *,
        clock: Clock = utc_now,
        interval: float = 1.0,
        refresh: float = 10.0,
    ) -> None:
        self._client = client
        self._clock = clock
        self._interval = interval
        self._refresh = refresh
        self._rules: dict[str, _Rule] = {}
        self._loaded_at: float | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._in_flight: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._bad_expressions: set[tuple[str, str]] = set()
        self._lambda: Any = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> Scheduler:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="crm-scheduler", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop firing, then wait up to `timeout` for the invocations under way."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        deadline = time.monotonic() + timeout
        with self._lock:
            running = list(self._in_flight)
        for thread in running:
            thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> Scheduler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.tick()
            except Exception as exc:  # the endpoint may be stopping; keep the thread alive
                log.warning("scheduler tick failed: %s", type(exc).__name__)
            self._stopping.wait(self._interval)

    # -- one step ---------------------------------------------------------------------------

    def tick(self) -> list[str]:
        """Fire every rule that is due; returns the names of the rules fired."""
        now = self._clock()
        if self._loaded_at is None or time.monotonic() - self._loaded_at >= self._refresh:
            self.reload(now)
        fired = []
        for rule in list(self._rules.values()):
            if rule.next_fire is not None and rule.next_fire <= now:
                for target in rule.targets:
                    self._fire(rule, target, rule.next_fire)
                fired.append(rule.name)
                rule.next_fire = rule.schedule.next_after(now, rule.anchor)
        return fired

    def reload(self, now: datetime | None = None) -> None:
        """Read the schedule rules and their targets from the endpoint."""
        now = self._clock() if now is None else now
        events = self._client("events")
        found: dict[str, _Rule] = {}
        for raw in _all_rules(events):
            expression = raw.get("ScheduleExpression")
            if not expression or raw.get("State") != "ENABLED":
                continue
            rule = self._rules.get(raw["Name"])
            if rule is None or rule.expression != expression:
                try:
                    schedule = parse(expression)
                except InvalidSchedule as exc:
                    if (raw["Name"], expression) not in self._bad_expressions:
                        self._bad_expressions.add((raw["Name"], expression))
                        log.error("rule %s is not scheduled: %s", raw["Name"], exc)
                    continue
                rule = _Rule(
                    name=raw["Name"],
                    arn=raw["Arn"],
                    expression=expression,
                    schedule=schedule,
                    anchor=now,
                )
                rule.next_fire = schedule.next_after(now, now)
                log.info(
                    "rule %s scheduled on %s, next at %s",
                    rule.name,
                    expression,
                    rule.next_fire.isoformat() if rule.next_fire else "never",
                )
            rule.targets = events.list_targets_by_rule(Rule=rule.name).get("Targets", [])
            found[rule.name] = rule
        self._rules = found
        self._loaded_at = time.monotonic()

    def next_fire_times(self) -> dict[str, datetime | None]:
        return {name: rule.next_fire for name, rule in self._rules.items()}

    def _fire(self, rule: _Rule, target: dict[str, Any], when: datetime) -> None:
        arn = target["Arn"]
        if ":lambda:" not in arn:
            log.warning("rule %s: target %s is not a Lambda function; skipped", rule.name, arn)
            return
        # A target's constant `Input` replaces the event, as in EventBridge.
        event = (
            json.loads(target["Input"]) if target.get("Input") else scheduled_event(rule.arn, when)
        )
        thread = threading.Thread(
            target=self._invoke,
            args=(rule.name, arn, event),
            name=f"schedule:{rule.name}",
            daemon=True,
        )
        with self._lock:
            self._in_flight.add(thread)
        thread.start()

    def _invoke(self, rule_name: str, function_arn: str, event: dict[str, Any]) -> None:
        # On its own thread: moto runs even an `Event` invocation inside the request, and a
        # long job must not hold back the other rules.
        try:
            with self._lock:
                if self._lambda is None:
                    self._lambda = self._client("lambda")
            response = self._lambda.invoke(
                FunctionName=function_arn,
                InvocationType="RequestResponse",
                Payload=json.dumps(event).encode(),
            )
            error = response.get("FunctionError")
            if error:
                payload = json.loads(response["Payload"].read() or b"{}")
                log.error(
                    "rule %s: %s failed (%s)",
                    rule_name,
                    function_arn.rsplit(":", 1)[-1],
                    payload.get("errorType", error),
                )
            else:
                log.info("rule %s fired %s", rule_name, function_arn.rsplit(":", 1)[-1])
        except Exception as exc:
            log.error(
                "rule %s: invoking %s failed: %s", rule_name, function_arn, type(exc).__name__
            )
        finally:
            with self._lock:
                self._in_flight.discard(threading.current_thread())


def _all_rules(events: Any) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {}
    while True:
        page = events.list_rules(**kwargs)
        rules += page.get("Rules", [])
        if not page.get("NextToken"):
            return rules
        kwargs["NextToken"] = page["NextToken"]
