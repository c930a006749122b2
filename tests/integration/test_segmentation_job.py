"""The segmentation job through the API: a run on demand with `as_of`, its record, the
profiles' RFM, segments and predictions, `?segment=`, segment members and sizes, rule
segments and their preview, and a re-run on unchanged data that writes nothing."""

from __future__ import annotations

import json
import time
from datetime import date, timedelta

import boto3
import pytest

from crm_local import lambda_executor
from tests.conftest import LOCAL_ENV, OPERATOR
from tests.support.shopify import deliver, order_payload

AS_OF = date(2026, 11, 20)


@pytest.fixture
def analytics(api):
    """The API with the analytics function (provisioned by the `aws` fixture)."""
    return api


def call(api, method: str, path: str, body=None):
    send = getattr(api.http, method)
    kwargs = {"headers": {**OPERATOR, "Content-Type": "application/json"}}
    if body is not None:
        kwargs["body"] = json.dumps(body)
    answer = send(path, **kwargs)
    text = answer.body.decode() if isinstance(answer.body, bytes) else answer.body
    return answer.status_code, (json.loads(text) if text else None)


def place(api, order_id: int, email: str, day: date, amount: str, **extra) -> None:
    stamp = f"{day.isoformat()}T10:00:00+08:00"
    payload = order_payload(
        order_id,
        email=email,
        financial_status="paid",
        created_at=stamp,
        updated_at=stamp,
        lines=(("SKU-1", 1, amount),),
        shipping="0.00",
        **extra,
    )
    delivery = deliver("orders/paid", payload)
    answer = api.http.post("/webhooks/shopify", headers=delivery.headers(), body=delivery.body)
    assert answer.status_code == 200, answer.body


def run_job(api, as_of: date) -> dict:
    status, run = call(api, "post", "/jobs/segmentation/runs", {"as_of": as_of.isoformat()})
    assert status == 202, run
    assert lambda_executor.wait_for_background(60)
    for _ in range(50):
        status, done = call(api, "get", f"/jobs/segmentation/runs/{run['run_id']}")
        assert status == 200
        if done["status"] != "running":
            return done
        time.sleep(0.1)
    raise AssertionError("the run did not end")


def shop(api) -> dict[str, str]:
    """Twelve buyers: a loyal one (5 orders this year), returning ones, new ones, one churned,
    one at risk; customer ids by email."""
    n = 5000
    plan = {
        "loyal@shop.test": [(AS_OF - timedelta(days=d), "300.00") for d in (3, 40, 80, 150, 200)],
        "churned@shop.test": [(AS_OF - timedelta(days=500), "80.00")],
        "at.risk@shop.test": [(AS_OF - timedelta(days=120), "50.00")],
    }
    for i in range(6):
        plan[f"returning{i}@shop.test"] = [
            (AS_OF - timedelta(days=60 + i), "100.00"),
            (AS_OF - timedelta(days=10 + i), "120.00"),
        ]
    for i in range(3):
        plan[f"new{i}@shop.test"] = [(AS_OF - timedelta(days=5 + i), "60.00")]
    for email, orders in plan.items():
        for day, amount in orders:
            n += 1
            place(api, n, email, day, amount)
    ids = {}
    for email in plan:
        _status, found = call(api, "get", f"/customers?email={email}")
        ids[email] = found["items"][0]["customer_id"]
    return ids


def test_a_run_on_demand_scores_every_buyer_and_a_rerun_writes_nothing(analytics):
    api = analytics
    ids = shop(api)

    run = run_job(api, AS_OF)

    assert run["status"] == "succeeded", run
    summary = run["summary"]
    assert summary["as_of"] == AS_OF.isoformat()
    assert summary["customers"] == 12
    assert summary["segments"]["loyal"] == 1
    assert summary["segments"]["churned"] == 1
    assert summary["segments"]["at_risk"] == 1
    assert summary["segments"]["returning"] == 6
    assert summary["segments"]["new"] == 3
    assert summary["profiles_written"] == 12
    assert summary["segment_events"] > 12

    status, view = call(api, "get", f"/customers/{ids['loyal@shop.test']}")
    assert status == 200
    assert "loyal" in view["segments"]
    assert view["rfm"]["frequency"] == 5
    assert view["rfm"]["recency_days"] == 3
    assert view["rfm"]["monetary"] == {"amount": "1500.00", "currency": "CNY"}
    assert set(view["predicted"]) == {"p_alive", "expected_orders_90d", "clv_12m"}

    status, page = call(api, "get", "/customers?segment=new&limit=2")
    assert status == 200
    first = [c["customer_id"] for c in page["items"]]
    status, rest = call(api, "get", f"/customers?segment=new&limit=2&cursor={page['next_cursor']}")
    members = first + [c["customer_id"] for c in rest["items"]]
    assert sorted(members) == sorted(ids[f"new{i}@shop.test"] for i in range(3))
    assert rest["next_cursor"] is None

    status, segments = call(api, "get", "/segments")
    sizes = {s["name"]: s["size"] for s in segments["items"]}
    assert sizes["returning"] == 6 and sizes["rfm_champions"] is not None

    again = run_job(api, AS_OF)
    assert again["summary"]["profiles_written"] == 0
    assert again["summary"]["segment_events"] == 0
    assert again["summary"]["models"] == run["summary"]["models"]


def test_rule_segments_preview_store_and_fill_at_the_next_run(analytics):
    api = analytics
    ids = shop(api)
    run_job(api, AS_OF)
    rule = {"rule": {"all": [{"field": "total_spent", "op": ">=", "value": "200.00"}]}}

    status, preview = call(api, "post", "/segments/preview", rule)
    assert status == 200, preview
    assert preview["count"] == 7  # the loyal buyer and the six returning ones

    status, created = call(api, "put", "/segments/big_spenders", rule)
    assert status == 201, created
    status, bad = call(
        api, "put", "/segments/bad", {"rule": {"field": "nope", "op": "=", "value": 1}}
    )
    assert status == 422
    assert bad["error"]["details"][0]["field"].startswith("rule")

    run_job(api, AS_OF)
    status, listed = call(api, "get", "/segments/big_spenders/members?limit=500")
    assert status == 200
    assert len(listed["items"]) == 7
    assert ids["loyal@shop.test"] in [m["customer_id"] for m in listed["items"]]
    status, one = call(api, "get", "/segments/big_spenders")
    assert one["size"] == 7 and one["size_history"][-1]["size"] == 7

    status, _ = call(api, "delete", "/segments/big_spenders")
    assert status == 200
    status, _ = call(api, "get", "/segments/big_spenders")
    assert status == 404


def test_unknown_jobs_and_bad_dates_are_refused(analytics):
    api = analytics
    status, body = call(api, "post", "/jobs/nope/runs", {})
    assert status == 404
    status, body = call(api, "post", "/jobs/segmentation/runs", {"as_of": "2026-13-01"})
    assert (status, body["error"]["details"][0]["issue"]) == (422, "invalid_date")
    status, body = call(api, "post", "/jobs/segmentation/runs", {"as_of": "2999-01-01"})
    assert (status, body["error"]["details"][0]["issue"]) == (422, "in_the_future")
    status, body = call(api, "get", "/jobs/segmentation/runs/run_1_ab")
    assert status == 404


def test_the_sql_path_scores_exactly_as_pandas_does(analytics, monkeypatch):
    # Given a shop scored by pandas, and a rule segment over the scores
    api = analytics
    shop(api)
    rule = {
        "rule": {
            "any": [
                {"field": "r", "op": ">=", "value": 4},
                {"field": "lifecycle", "op": "in", "value": ["churned", "at_risk"]},
            ]
        }
    }
    assert call(api, "put", "/segments/recent_or_slipping", rule)[0] == 201
    first = run_job(api, AS_OF)
    assert first["summary"]["engine"] == "pandas"

    # When the same day runs again with the scores computed as SQL (DuckDB standing in for
    # Athena over the snapshot's Parquet files)
    monkeypatch.setenv("CRM_ANALYTICS_ENGINE", "sql")
    second = run_job(api, AS_OF)

    # Then every profile's scores and memberships are identical: nothing is written
    assert second["status"] == "succeeded", second
    assert second["summary"]["engine"] == "sql"
    assert second["summary"]["segments"] == first["summary"]["segments"]
    assert second["summary"]["profiles_written"] == 0


def test_a_change_to_one_percent_of_customers_rewrites_about_that_many(analytics):
    # Given 200 scored buyers
    api = analytics
    n = 20_000
    for i in range(200):
        for k in range(1 + i % 3):
            n += 1
            place(api, n, f"buyer{i}@shop.test", AS_OF - timedelta(days=5 + 40 * k + i), "99.00")
    first = run_job(api, AS_OF)
    assert first["summary"]["profiles_written"] == 200

    # When 2 of them (1%) order again before the same day is run again
    for i in (7, 8):
        n += 1
        place(api, n, f"buyer{i}@shop.test", AS_OF - timedelta(days=1), "500.00")
    again = run_job(api, AS_OF)

    # Then the two are rewritten, and only the few whose quintile moved with them besides
    written = again["summary"]["profiles_written"]
    assert 2 <= written <= 10, again["summary"]
    assert again["summary"]["models_reused"] is True


def test_a_profile_saved_during_the_write_back_keeps_both_changes(aws):
    # Given a profile the job read at version 1
    from crm.domain.customers import parse_profile
    from crm.services.profiles import patch_customer, upsert_customer
    from crm.store.customers import get_customer_repository

    customer, _ = upsert_customer(
        parse_profile({"email": "both@shop.test"}, default_country="CN", today=AS_OF, partial=False)
    )
    read_version = customer.version
    # When the profile is changed first, then the job writes at the version it read
    patch_customer(
        customer.customer_id,
        parse_profile({"first_name": "Both"}, default_country="CN", today=AS_OF, partial=True),
    )
    repo = get_customer_repository()
    assert repo.write_analytics(customer.customer_id, {"segments": ["new"]}, read_version) is None
    # Then the job's retry at the version it reads again lands (it held no analytics), and
    # nothing is lost
    fresh = repo.get(customer.customer_id)
    assert repo.write_analytics(customer.customer_id, {"segments": ["new"]}, fresh.version) == {}
    # And a save from a profile read before the job's write is refused, not lost
    final = repo.get(customer.customer_id)
    assert final.first_name == "Both" and final.analytics == {"segments": ["new"]}
    assert final.version == fresh.version + 1
    from crm.store.customers import StaleProfile

    with pytest.raises(StaleProfile):
        repo.save(fresh, now="2026-11-30T00:00:00+00:00")
    # And the next write hands back exactly what it replaced
    again = repo.write_analytics(customer.customer_id, {"segments": ["loyal"]}, final.version)
    assert again == {"segments": ["new"]}
    assert repo.get(customer.customer_id).analytics == {"segments": ["loyal"]}


def test_two_runs_at_once_leave_the_profiles_as_one_run_does(analytics):
    # Given a shop, and two runs of the same day requested at once
    import concurrent.futures

    api = analytics
    shop(api)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda _: run_job(api, AS_OF), range(2)))

    # Then both succeed, and a third run finds nothing left to write
    assert [r["status"] for r in runs] == ["succeeded", "succeeded"], runs
    assert sum(r["summary"]["profiles_written"] for r in runs) >= 12
    third = run_job(api, AS_OF)
    assert third["summary"]["profiles_written"] == 0


def test_other_currencies_are_converted_at_the_configured_rate_or_left_out(api, monkeypatch):
    # Given a shop in CNY with a rate for USD and none for EUR
    from crm.config import get_settings

    monkeypatch.setenv("CRM_EXCHANGE_RATES", "USD=7.1")
    get_settings.cache_clear()
    place(api, 31001, "yuan@shop.test", AS_OF - timedelta(days=2), "100.00")
    place(api, 31002, "dollar@shop.test", AS_OF - timedelta(days=2), "10.01", currency="USD")
    place(api, 31003, "euro@shop.test", AS_OF - timedelta(days=2), "10.00", currency="EUR")

    run = run_job(api, AS_OF)

    # Then the dollars count as yuan at 7.1 (half-even to the fen), the euros not at all
    assert run["status"] == "succeeded", run
    assert run["summary"]["orders_left_out"] == {"EUR": 1}
    _, dollar = call(api, "get", "/customers?email=dollar@shop.test")
    _, view = call(api, "get", f"/customers/{dollar['items'][0]['customer_id']}")
    assert view["rfm"]["monetary"] == {"amount": "71.07", "currency": "CNY"}  # 1001 x 7.1
    _, euro = call(api, "get", "/customers?email=euro@shop.test")
    _, view = call(api, "get", f"/customers/{euro['items'][0]['customer_id']}")
    assert view["rfm"]["r"] is None and view["segments"] == []


def events_on_the_queue() -> list[dict]:
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.get_queue_url(QueueName=LOCAL_ENV["CRM_EVENTS_QUEUE"])["QueueUrl"]
    found = []
    while True:
        answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
        messages = answer.get("Messages", [])
        if not messages:
            return found
        for message in messages:
            found.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def test_one_event_per_membership_change(analytics):
    # Given a scored shop, every membership announced once
    api = analytics
    ids = shop(api)
    events_on_the_queue()  # what the webhooks queued, if anything
    first = run_job(api, AS_OF)
    entered = [e for e in events_on_the_queue() if e["type"] == "segment_entered"]
    assert len(entered) == first["summary"]["segment_events"]
    assert len(entered) == sum(first["summary"]["segments"].values())
    assert {(e["customer_id"], e["segment"]) for e in entered} == {
        (c, name)
        for name in first["summary"]["segments"]
        for c in ids.values()
        if name in call(api, "get", f"/customers/{c}")[1]["segments"]
    }

    # When a new buyer orders again, the next day
    buyer = ids["new0@shop.test"]
    place(api, 40001, "new0@shop.test", AS_OF + timedelta(days=1), "60.00")
    second = run_job(api, AS_OF + timedelta(days=1))

    # Then it leaves `new` and enters `returning`, each said once, with the run that saw it
    mine = [e for e in events_on_the_queue() if e["customer_id"] == buyer]
    moves = {(e["type"], e["segment"]) for e in mine}
    assert ("segment_exited", "new") in moves and ("segment_entered", "returning") in moves
    assert len(mine) == len(moves)
    assert {e["run_id"] for e in mine} == {second["run_id"]}
