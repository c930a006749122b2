"""The orders import's batched writer (`BatchingOrderStore`): a file written in a few
transactions gives exactly what recording each order on its own gives (stats, points, one
profile per buyer); a profile changed by someone else between the batch's reads and its write
makes the batch's orders be recorded again, one by one, with nothing lost or doubled; and
the writes stay within one per 20 rows."""

from __future__ import annotations

from datetime import date

import boto3
import pytest

BUCKET = "crm-local-drop"
TABLES = (
    "crm-local-customers",
    "crm-local-identities",
    "crm-local-orders",
    "crm-local-ledger",
    "crm-local-imports",
)


def scan(table: str) -> list[dict]:
    pages = boto3.client("dynamodb", region_name="us-east-1").get_paginator("scan")
    return [i for p in pages.paginate(TableName=table) for i in p["Items"]]


def wipe() -> None:
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    for table in TABLES:
        keys = [
            k["AttributeName"] for k in ddb.describe_table(TableName=table)["Table"]["KeySchema"]
        ]
        for item in scan(table):
            ddb.delete_item(TableName=table, Key={k: item[k] for k in keys})


def state() -> dict[str, tuple]:
    """Per buyer (by email or phone): stats, balance, pending, entries, lots; and orders."""
    from crm.store.customers import get_customer_repository

    repo = get_customer_repository()
    ledger: dict[str, dict] = {}
    for item in scan("crm-local-ledger"):
        owner = ledger.setdefault(item["customer_id"]["S"], {"entries": 0, "lots": 0})
        sk = item["sk"]["S"]
        if sk == "bal":
            owner["balance"] = (int(item["balance"]["N"]), int(item.get("pending", {"N": 0})["N"]))
        elif sk.startswith("ent#"):
            owner["entries"] += 1
        elif sk.startswith("bal#lot#"):
            owner["lots"] += 1
    people = {}
    for item in scan("crm-local-customers"):
        customer = repo.get(item["customer_id"]["S"])
        assert customer is not None
        stats = {k: v for k, v in customer.stats.items() if k != "tier"}
        person = customer.email or customer.phone
        points = ledger.get(customer.customer_id, {})
        people[person] = (
            stats,
            customer.stats.get("tier"),
            points.get("balance"),
            points.get("entries"),
            points.get("lots"),
        )
    orders = sorted(
        (i["order_id"]["S"], i.get("status", {}).get("S"), i.get("points_earned", {}).get("N"))
        for i in scan("crm-local-orders")
    )
    return {"people": people, "orders": orders}


@pytest.fixture
def shopify_file():
    from crm_local.demo_data import generate, orders_csv

    shop = generate(seed=5, customers=25, days=365, today=date.today())
    return shop, orders_csv(shop)


def import_batched(body: bytes) -> dict:
    from crm.services import imports

    key = "incoming/orders/batched.csv"
    boto3.client("s3", region_name="us-east-1").put_object(Bucket=BUCKET, Key=key, Body=body)
    return imports.import_object(BUCKET, key)


def import_one_by_one(body: bytes) -> None:
    from crm.domain import import_files
    from crm.domain.order_imports import imported_orders
    from crm.services.order_import import import_orders

    rows = import_files.read_rows([body], "csv")
    results = import_orders(list(imported_orders(rows, "CNY")))
    assert all(outcome == "created" for _, outcome, _ in results)


def test_the_batched_writer_gives_what_one_by_one_gives(api, shopify_file, monkeypatch):
    from botocore.client import BaseClient

    shop, body = shopify_file
    calls: list[str] = []
    original = BaseClient._make_api_call

    def counted(self, operation_name, api_params):
        calls.append(operation_name)
        return original(self, operation_name, api_params)

    with monkeypatch.context() as patched:
        patched.setattr(BaseClient, "_make_api_call", counted)
        report = import_batched(body)
    rows = sum(len(o.lines) for o in shop.orders)
    assert report["rows"] == rows and report["orders"] == {"created": len(shop.orders)}
    assert calls.count("TransactWriteItems") * 20 <= rows, calls.count("TransactWriteItems")
    batched = state()

    wipe()
    import_one_by_one(body)
    alone = state()
    assert batched["orders"] == alone["orders"]
    assert batched["people"] == alone["people"]
    assert len(batched["people"]) >= 15  # the buyers really are many, with repeat orders


def wipe_orders_and_points() -> None:
    """Orders and points gone, profiles kept with no stats (as a customers import leaves
    them)."""
    from crm.store.customers import get_customer_repository

    ddb = boto3.client("dynamodb", region_name="us-east-1")
    for table, keys in (
        ("crm-local-orders", ["order_id"]),
        ("crm-local-ledger", ["customer_id", "sk"]),
    ):
        for item in scan(table):
            ddb.delete_item(TableName=table, Key={k: item[k] for k in keys})
    repo = get_customer_repository()
    for item in scan("crm-local-customers"):
        customer = repo.get(item["customer_id"]["S"])
        assert customer is not None
        customer.stats = {}
        repo.save(customer, now=customer.updated_at)


def test_a_profile_changed_meanwhile_makes_the_batch_record_its_orders_again(
    api, shopify_file, monkeypatch
):
    from crm.store import orders as order_store
    from crm.store.customers import get_customer_repository

    shop, body = shopify_file
    import_one_by_one(body)
    wipe_orders_and_points()  # every buyer now has a profile, and no orders
    import_one_by_one(body)
    expected = state()
    wipe_orders_and_points()

    prefetch = order_store.BatchingOrderStore.prefetch
    edited: list[str] = []

    def prefetch_then_someone_edits(self, wanted):
        prefetch(self, wanted)
        if not edited:  # a buyer of the first batch is edited after it was read
            repo = get_customer_repository()
            owner = next(o for o in self._owners.values() if o)
            customer = repo.get(owner)
            customer.tags = [*customer.tags, "edited"]
            repo.save(customer, now=customer.updated_at)
            edited.append(owner)

    from crm.services import order_import

    recorded_alone: list[str] = []
    import_orders = order_import.import_orders

    def spy(orders, store=None):
        if store is None:  # `redo`: one order on its own, through the plain store
            recorded_alone.extend(o.event.order_id for o in orders)
        return import_orders(orders, store)

    monkeypatch.setattr(order_store.BatchingOrderStore, "prefetch", prefetch_then_someone_edits)
    monkeypatch.setattr(order_import, "import_orders", spy)
    report = import_batched(body)
    assert edited and report["failed"] == 0
    assert 0 < len(recorded_alone) < len(shop.orders)  # the failed transaction's orders only
    assert report["orders"] == {"created": len(shop.orders)}
    after = state()
    assert after["orders"] == expected["orders"]
    assert after["people"] == expected["people"]
    assert "edited" in get_customer_repository().get(edited[0]).tags  # not overwritten


def _units(text: str) -> list:
    from crm.domain.import_files import read_rows
    from crm.services import order_import

    return list(order_import.units(iter(read_rows([text.encode()], "csv"))))


def test_an_order_in_a_live_workflow_is_recorded_alone_even_twice_in_a_batch(api):
    from crm.services import order_import
    from crm.store.models import OrderModel
    from crm.store.orders import get_order_store
    from tests.integration.test_order_import import A, B, ago, export_csv, line, order

    first = order(770001, A, [line("TEA-1", 1, "100.00")], paid=ago(5))
    order_import.write(_units(export_csv([first])))
    store = get_order_store()
    stored = store.get("ord_shopify_770001")
    waiting = OrderModel("ord_shopify_770001")
    waiting.version = stored.version
    waiting.update(actions=[OrderModel.waiting.set({"token": "tok", "for": "shipped"})])
    fulfilled = order(770001, A, [line("TEA-1", 1, "100.00")], paid=ago(5), fulfilled=ago(2))
    other = order(770002, B, [line("TEA-1", 1, "100.00")], paid=ago(5))
    refunded = order(
        770001,
        A,
        [line("TEA-1", 1, "100.00")],
        paid=ago(5),
        fulfilled=ago(2),
        refunded="50.00",
        status="partially_refunded",
    )
    outcomes = order_import.write(_units(export_csv([fulfilled, other, refunded])))
    assert [o.result for o in outcomes] == ["updated", "created", "updated"], outcomes
    final = store.get("ord_shopify_770001")
    assert final.fulfilled_at and final.refunds


def test_a_redone_order_is_recorded_from_its_own_event(api, monkeypatch):
    from crm.services import order_import
    from crm.store import orders as order_store
    from crm.store.customers import get_customer_repository
    from crm.store.orders import get_order_store
    from tests.integration.test_order_import import A, B, ago, export_csv, line, order

    known = order(660009, A, [line("TEA-1", 1, "100.00")], paid=ago(50))
    order_import.write(_units(export_csv([known])))  # A has a profile
    full = order(
        660001,
        A,
        [line("TEA-1", 2, "100.00")],
        paid=ago(5),
        fulfilled=ago(3),
        refunded="50.00",
        status="partially_refunded",
    )
    other = order(660002, B, [line("TEA-1", 1, "100.00")], paid=ago(5))
    older = order(660001, A, [line("TEA-1", 2, "100.00")], paid=ago(5))  # the same, earlier
    prefetch = order_store.BatchingOrderStore.prefetch

    def prefetch_then_someone_edits(self, wanted):
        prefetch(self, wanted)
        repo = get_customer_repository()
        customer = repo.get(next(o for o in self._owners.values() if o))
        customer.tags = [*customer.tags, "edited"]
        repo.save(customer, now=customer.updated_at)

    monkeypatch.setattr(order_store.BatchingOrderStore, "prefetch", prefetch_then_someone_edits)
    outcomes = order_import.write(_units(export_csv([full, other, older])))
    assert [o.result for o in outcomes] == ["created", "created", "unchanged"], outcomes
    stored = get_order_store().get("ord_shopify_660001")
    assert stored.refunds and stored.fulfilled_at
