"""The store meets DynamoDB's passing failures as AWS answers them (`crm_local.chaos` in the
in-process moto) and rides them out: retried in one place, a lost answer never counted twice."""

from __future__ import annotations

import json

import boto3
import pytest

from crm.domain.errors import Unavailable
from crm.domain.loyalty import ACTIVE, Lot
from crm_local.chaos import Chaos
from tests.conftest import OPERATOR
from tests.support import chaos as chaos_support
from tests.support.shopify import deliver, order_payload

dynamodb_chaos = chaos_support.dynamodb_chaos  # the fixture
JSON = {**OPERATOR, "Content-Type": "application/json"}
PAID = dict(financial_status="paid", updated_at="2026-11-20T10:05:00+08:00")
# Conflicts and 500s (a 500 each time for all of botocore's attempts: an outage), no throttles:
# the same paths, without throttling's one-second backoffs.
FLAKY = {
    "TransactWriteItems": {"conflict": 1.0, "internal": 1.0},
    "TransactGetItems": {"conflict": 1.0, "internal": 1.0},
    "write": {"conflict": 1.0, "internal": 1.0},
    "read": {"internal": 1.0},
    "BatchGetItem": {"internal": 1.0, "unprocessed": 1.0},
}


def scan(table: str) -> list[dict]:
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    return ddb.scan(TableName=table, ConsistentRead=True)["Items"]


def test_webhooks_are_recorded_once_through_a_dynamodb_failing_a_fifth_of_its_calls(
    api, dynamodb_chaos: Chaos
):
    deliveries = [
        deliver("orders/paid", order_payload(7000 + i, email=f"flaky{i % 4}@example.com", **PAID))
        for i in range(12)
    ]
    dynamodb_chaos.configure(0.2, seed=20261123, outage=1.0, mix=FLAKY)
    answers = [
        api.http.post("/webhooks/shopify", headers=d.headers(), body=d.body)
        for d in [*deliveries, *deliveries[:4]]
    ]
    counts = dynamodb_chaos.counts()
    dynamodb_chaos.configure(0.0)

    assert [a.status_code for a in answers] == [200] * 16, [a.body for a in answers]
    assert [json.loads(a.body)["status"] for a in answers[12:]] == ["duplicate"] * 4
    orders = [i for i in scan("crm-local-orders") if i["order_id"]["S"].startswith("ord_shopify_7")]
    assert len(orders) == 12
    earns = [i["sk"]["S"] for i in scan("crm-local-ledger") if i["sk"]["S"].startswith("ent#earn")]
    assert sorted(earns) == sorted({f"ent#earn:ord_shopify_{7000 + i}" for i in range(12)})
    # The faults fired, of each kind, and some outlasted botocore's own retries.
    assert counts["conflict"] > 0 and counts["internal"] > 0 and counts["unprocessed"] > 0
    assert counts["outage_attempts"] >= 4


def test_stock_is_set_through_single_write_conflicts(api, dynamodb_chaos: Chaos):
    dynamodb_chaos.configure(0.5, seed=4, mix={"write": {"conflict": 1.0}})
    answers = [
        api.http.put(
            f"/inventory/TEA-{i}",
            headers=JSON,
            body=json.dumps({"warehouses": [{"warehouse_id": "wh-shanghai", "on_hand": i}]}),
        )
        for i in range(1, 9)
    ]
    conflicts = dynamodb_chaos.counts()["conflict"]
    dynamodb_chaos.configure(0.0)
    assert [a.status_code for a in answers] == [200] * 8, [a.body for a in answers]
    assert conflicts > 0
    for i in range(1, 9):
        view = json.loads(api.http.get(f"/inventory/TEA-{i}", headers=OPERATOR).body)
        assert view["warehouses"][0]["on_hand"] == i


def test_a_message_whose_claim_was_written_but_answered_500_is_sent(api, dynamodb_chaos: Chaos):
    from crm.services import notifications

    created = api.http.post("/customers", headers=JSON, body=json.dumps({"email": "a@x.cn"}))
    customer_id = created.json_body["customer_id"]
    # The next single write (the dedup claim) is applied, and its answer lost.
    dynamodb_chaos.configure(1.0, seed=1, mix={"write": {"applied": 1.0}}, limit=1)
    sent = notifications.send(customer_id, "order_delivered", {"order_name": "#7"}, "o:7:dlv")
    assert dynamodb_chaos.counts()["applied"] == 1
    assert sent["status"] == "sent"
    again = notifications.send(customer_id, "order_delivered", {"order_name": "#7"}, "o:7:dlv")
    assert again["status"] == "duplicate"  # still one message per key


def test_a_low_stock_mark_written_but_answered_500_is_still_ours(aws, dynamodb_chaos: Chaos):
    from crm.store.inventory import get_inventory_store

    store = get_inventory_store()
    store.set_stock("TEA-LOW", "wh-shanghai", 1, safety_stock=5)
    dynamodb_chaos.configure(1.0, seed=1, mix={"write": {"applied": 1.0}}, limit=1)
    assert store.mark_alerted("TEA-LOW", "wh-shanghai", True) is True  # so the alert goes out
    assert dynamodb_chaos.counts()["applied"] == 1
    assert store.mark_alerted("TEA-LOW", "wh-shanghai", True) is False  # once per breach


def test_a_lot_that_could_not_be_moved_for_conflicts_is_not_reported_moved(
    aws, dynamodb_chaos: Chaos
):
    from crm.store.ledger import get_ledger_store

    store = get_ledger_store()
    lot = Lot("l1", 100, 100, ACTIVE, "2026-11-20T10:00:00+00:00", "test", None, None)
    dynamodb_chaos.configure(1.0, seed=1, mix={"TransactWriteItems": {"conflict": 1.0}})
    with pytest.raises(Unavailable):  # a retried merge finishes it; False would mean "gone"
        store.move_lot("cus_a", "cus_b", lot, "2026-11-20T10:00:00+00:00")
    assert dynamodb_chaos.counts()["conflict"] >= 2  # retried before giving up
