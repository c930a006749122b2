"""The analytics functions through the entry points app.py declares: the nightly `segmentation`
and `reports` schedules as EventBridge calls them, and the `points_expiry` and `low_stock` jobs
run on demand by the `analytics` function. What they do here is what `make permissions` records
as their IAM grants (a path no test drives gets none)."""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime, timedelta

import boto3
import pytest

from crm_local import lambda_executor
from crm_local.provision import AppFunction, provision_functions
from tests.conftest import LOCAL_ENV, OPERATOR
from tests.support.shopify import deliver, order_payload

SHANGHAI = {"country_code": "CN", "province": "Shanghai", "province_code": "SH", "zip": "200000"}


def call(api, method: str, path: str, body=None):
    kwargs = {"headers": {**OPERATOR, "Content-Type": "application/json"}}
    if body is not None:
        kwargs["body"] = json.dumps(body)
    answer = getattr(api.http, method)(path, **kwargs)
    return answer.status_code, json.loads(answer.body) if answer.body else None


def an_order(api) -> None:
    payload = order_payload(
        7001,
        email="entry-points@shop.test",
        financial_status="paid",
        lines=(("SKU-1", 1, "90.00"),),
    )
    delivery = deliver("orders/paid", payload)
    answer = api.http.post("/webhooks/shopify", headers=delivery.headers(), body=delivery.body)
    assert answer.status_code == 200, answer.body


@pytest.fixture
def analytics(api):
    """The analytics function run in-process, through app.py, when the API invokes it."""
    import app

    lambda_executor.install()
    client = lambda s: boto3.client(s, region_name="us-east-1")  # noqa: E731
    provision_functions(
        client,
        [AppFunction(name="analytics", handler_string="app.analytics", handler=None)],
        "shop-crm",
        "local",
        LOCAL_ENV,
    )
    lambda_executor.register("shop-crm-local-analytics", app.analytics)
    yield api
    lambda_executor.unregister("shop-crm-local-analytics")


@pytest.mark.parametrize("job", ["segmentation", "reports"])
def test_a_nightly_analytics_job_runs_when_eventbridge_calls_it(api, job, monkeypatch) -> None:
    from crm import clock

    an_order(api)
    event = api.events.generate_cw_event(
        source="aws.events",
        detail_type="Scheduled Event",
        detail={},
        resources=[f"arn:aws:events:us-east-1:123456789012:rule/{job}"],
    )

    tonight = api.lambda_.invoke(job, event)
    # The next night replaces the snapshot's customers and points files of the night before.
    tomorrow = clock.now() + timedelta(days=1)
    monkeypatch.setattr(clock, "now", lambda: tomorrow)
    next_night = api.lambda_.invoke(job, event)

    for answer in (tonight, next_night):
        assert answer.payload["status"] == "succeeded", answer.payload
        assert answer.payload["trigger"] == "schedule"
    assert next_night.payload["as_of"] > tonight.payload["as_of"]


def run_on_demand(api, job: str, body: dict) -> dict:
    status, run = call(api, "post", f"/jobs/{job}/runs", body)
    assert status == 202, run
    assert lambda_executor.wait_for_background(60)
    for _ in range(50):
        status, done = call(api, "get", f"/jobs/{job}/runs/{run['run_id']}")
        if done["status"] != "running":
            return done
        time.sleep(0.1)
    raise AssertionError("the run did not end")


def test_the_analytics_function_expires_due_points_on_demand(analytics, monkeypatch) -> None:
    from crm import clock

    api = analytics
    _, customer = call(api, "post", "/customers", {"email": "expiry-on-demand@shop.test"})
    customer_id = customer["customer_id"]
    adjustment = {"points": 300, "reason": "welcome", "idempotency_key": "on-demand"}
    call(api, "post", f"/customers/{customer_id}/points/adjustments", adjustment)
    _, held = call(api, "get", f"/customers/{customer_id}/points")
    [lot] = held["lots"]
    day_after = date.fromisoformat(lot["expires_at"][:10]) + timedelta(days=1)
    # The run is asked for once the lot is due (an as_of may not be in the future).
    later = datetime.combine(day_after + timedelta(days=1), datetime.min.time(), UTC)
    monkeypatch.setattr(clock, "now", lambda: later)

    run = run_on_demand(api, "points_expiry", {"as_of": day_after.isoformat()})

    assert run["status"] == "succeeded", run
    assert run["summary"]["points"] == 300
    assert call(api, "get", f"/customers/{customer_id}/points")[1]["balance"] == 0


def test_the_analytics_function_checks_low_stock_on_demand(analytics) -> None:
    from crm.services import inventory

    api = analytics
    stock = {"warehouses": [{"warehouse_id": "wh-shanghai", "on_hand": 10, "safety_stock": 3}]}
    assert call(api, "put", "/inventory/LOW-ON-DEMAND", stock)[0] == 200
    inventory.allocate_and_reserve("o-on-demand", [("LOW-ON-DEMAND", 8)], SHANGHAI)

    run = run_on_demand(api, "low_stock", {})

    assert run["status"] == "succeeded", run
    assert run["summary"]["alerted"] == 1
