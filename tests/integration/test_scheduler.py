"""The local scheduler fires the endpoint's schedule rules into the app's own handlers, the way
EventBridge would, from the rules `crm_local.provision` creates for `@app.schedule`."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from chalice import Chalice, Cron, Rate

from crm_local import lambda_executor
from crm_local.endpoint import Endpoint
from crm_local.provision import (
    app_functions,
    function_name,
    provision_functions,
    provision_schedules,
)
from crm_local.scheduler import Scheduler

app = Chalice(app_name="sched-test")
fired: dict[str, list[dict[str, Any]]] = {"tick": [], "nightly": []}
arrived = threading.Condition()


@app.schedule(Rate(1, unit=Rate.MINUTES))
def tick(event: Any) -> None:
    with arrived:
        fired["tick"].append(event.to_dict())
        arrived.notify_all()


@app.schedule(Cron(30, 2, "*", "*", "?", "*"))
def nightly(event: Any) -> None:
    with arrived:
        fired["nightly"].append(event.to_dict())
        arrived.notify_all()


class ManualClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def wait_for(name: str, count: int, deadline: float = 5.0) -> list[dict[str, Any]]:
    with arrived:
        assert arrived.wait_for(lambda: len(fired[name]) >= count, deadline), (
            f"{name} fired {len(fired[name])} times, expected {count}"
        )
        return list(fired[name])


@pytest.fixture(scope="module")
def endpoint() -> Iterator[Endpoint]:
    with Endpoint(port=0) as running:
        functions = app_functions(app, sys.modules[__name__])
        arns = provision_functions(running.client, functions, app.app_name, "test", {})
        for function in functions:
            lambda_executor.register(
                function_name(app.app_name, "test", function.name), function.handler
            )
        provision_schedules(running.client, functions, arns, app.app_name, "test")
        yield running
        for function in functions:
            lambda_executor.unregister(function_name(app.app_name, "test", function.name))


@pytest.fixture(autouse=True)
def _clear() -> None:
    for calls in fired.values():
        calls.clear()


def test_the_app_schedules_become_enabled_rules_with_function_targets(endpoint: Endpoint) -> None:
    events = endpoint.client("events")
    rules = {r["Name"]: r for r in events.list_rules(NamePrefix="sched-test-")["Rules"]}

    assert rules["sched-test-test-tick"]["ScheduleExpression"] == "rate(1 minute)"
    assert rules["sched-test-test-nightly"]["ScheduleExpression"] == "cron(30 2 * * ? *)"
    assert all(r["State"] == "ENABLED" for r in rules.values())
    targets = events.list_targets_by_rule(Rule="sched-test-test-tick")["Targets"]
    assert [t["Arn"].rsplit(":", 1)[-1] for t in targets] == ["sched-test-test-tick"]


def test_a_rate_rule_fires_its_function_on_a_fast_clock(endpoint: Endpoint) -> None:
    # Ten simulated minutes a real second: rate(1 minute) fires every 0.1 s.
    real_start, simulated_start = time.monotonic(), datetime(2025, 3, 1, 9, 0, 10, tzinfo=UTC)

    def clock() -> datetime:
        return simulated_start + timedelta(seconds=(time.monotonic() - real_start) * 600)

    with Scheduler(endpoint.client, clock=clock, interval=0.02):
        events = wait_for("tick", 2)

    first = events[0]
    assert first["detail-type"] == "Scheduled Event"
    assert first["source"] == "aws.events"
    assert first["account"] == "123456789012"
    assert first["region"] == "us-east-1"
    assert first["detail"] == {}
    assert first["resources"] == ["arn:aws:events:us-east-1:123456789012:rule/sched-test-test-tick"]
    first_time, second_time = (datetime.fromisoformat(e["time"]) for e in events[:2])
    assert timedelta(minutes=1) <= first_time - simulated_start < timedelta(minutes=2)
    assert second_time - first_time == timedelta(minutes=1)


def test_a_cron_rule_fires_at_its_minute_and_not_before(endpoint: Endpoint) -> None:
    clock = ManualClock(datetime(2025, 3, 1, 2, 29, 0, tzinfo=UTC))
    scheduler = Scheduler(endpoint.client, clock=clock)

    assert scheduler.tick() == []
    assert scheduler.next_fire_times()["sched-test-test-nightly"] == datetime(
        2025, 3, 1, 2, 30, tzinfo=UTC
    )
    clock.now += timedelta(seconds=59)
    assert "sched-test-test-nightly" not in scheduler.tick()
    clock.now += timedelta(seconds=1)
    assert "sched-test-test-nightly" in scheduler.tick()

    event = wait_for("nightly", 1)[0]
    assert event["time"] == "2025-03-01T02:30:00Z"
    scheduler.stop()
    assert scheduler.next_fire_times()["sched-test-test-nightly"] == datetime(
        2025, 3, 2, 2, 30, tzinfo=UTC
    )


def test_a_disabled_rule_does_not_fire(endpoint: Endpoint) -> None:
    events = endpoint.client("events")
    events.disable_rule(Name="sched-test-test-tick")
    try:
        clock = ManualClock(datetime(2025, 3, 1, 12, 0, tzinfo=UTC))
        scheduler = Scheduler(endpoint.client, clock=clock)
        scheduler.tick()
        clock.now += timedelta(minutes=5)

        assert "sched-test-test-tick" not in scheduler.tick()
        assert "sched-test-test-tick" not in scheduler.next_fire_times()
        scheduler.stop()
    finally:
        events.enable_rule(Name="sched-test-test-tick")


def test_stop_ends_the_thread(endpoint: Endpoint) -> None:
    scheduler = Scheduler(endpoint.client, interval=0.01).start()
    started = time.monotonic()
    scheduler.stop()

    assert time.monotonic() - started < 2
    assert not any(t.name == "crm-scheduler" for t in threading.enumerate())
