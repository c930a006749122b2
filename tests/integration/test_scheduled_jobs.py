"""The scheduled jobs through the entry points app.py declares, as EventBridge calls them: what
they do there is also what `make permissions` records as their IAM grants."""

from __future__ import annotations

import json

from tests.conftest import OPERATOR


def post(api, path, body):
    response = api.http.post(
        path, headers={**OPERATOR, "Content-Type": "application/json"}, body=json.dumps(body)
    )
    return response.status_code, json.loads(response.body)


def points(api, customer_id: str) -> dict:
    response = api.http.get(f"/customers/{customer_id}/points", headers=OPERATOR)
    return json.loads(response.body)


def test_the_points_expiry_job_expires_due_points_when_eventbridge_calls_it(api):
    customer_id = post(api, "/customers", {"email": "expiry-job@example.com"})[1]["customer_id"]
    status, _ = post(
        api,
        f"/customers/{customer_id}/points/adjustments",
        {"points": 700, "reason": "welcome", "idempotency_key": "expiry-job"},
    )
    [lot] = points(api, customer_id)["lots"]
    day_after = lot["expires_at"][:10] + "T23:59:59+00:00"

    # What EventBridge sends a schedule's target, with the job's `detail.now` replay.
    event = api.events.generate_cw_event(
        source="aws.events",
        detail_type="Scheduled Event",
        detail={"now": day_after},
        resources=["arn:aws:events:us-east-1:123456789012:rule/points_expiry"],
    )

    answer = api.lambda_.invoke("points_expiry", event)

    assert status == 201
    assert answer.payload == {"lots": 1, "points": 700, "skipped": 0}
    assert points(api, customer_id)["balance"] == 0
