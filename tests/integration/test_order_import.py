"""Order history imports against moto: a Shopify export recorded as orders, exactly once; the
customers' stats equal the file's own sums; points only for orders delivered in the last 12
months, active at once and expiring 12 months after delivery; no workflow started; a webhook
for an imported order afterwards moves no points twice."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import boto3

from crm.domain.errors import Unavailable
from crm.domain.import_files import read_rows
from crm.domain.loyalty import add_months
from crm.domain.order_imports import ImportedOrder, imported_orders
from crm.store.orders import OrderStore
from tests.conftest import OPERATOR
from tests.support.shopify import deliver, order_payload
from tests.support.shopify_export import export_csv, line, order_rows

NOW = datetime.now(UTC)
A, B = "history-a@example.com", "history-b@example.com"


def ago(days: int) -> datetime:
    return (NOW - timedelta(days=days)).replace(microsecond=0)


def shopify_time(moment: datetime) -> str:
    """Shopify's export form, in Shanghai time: `2025-10-07 17:50:26 +0800`."""
    return moment.astimezone(timezone(timedelta(hours=8))).strftime("%Y-%m-%d %H:%M:%S %z")


def utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def order(
    order_id: int,
    email: str,
    lines: list[dict[str, str]],
    *,
    status: str = "paid",
    paid: datetime | None = None,
    fulfilled: datetime | None = None,
    cancelled: datetime | None = None,
    refunded: str = "0.00",
    shipping: str = "10.00",
) -> list[dict[str, str]]:
    subtotal = sum(Decimal(i["Lineitem price"]) * int(i["Lineitem quantity"]) for i in lines)
    created = paid or fulfilled or ago(5)
    created -= timedelta(minutes=3)
    return order_rows(
        {
            "Name": f"#{order_id}",
            "Id": str(order_id),
            "Email": email,
            "Financial Status": status,
            "Paid at": shopify_time(paid) if paid else "",
            "Fulfillment Status": "fulfilled" if fulfilled else "unfulfilled",
            "Fulfilled at": shopify_time(fulfilled) if fulfilled else "",
            "Cancelled at": shopify_time(cancelled) if cancelled else "",
            "Currency": "CNY",
            "Subtotal": f"{subtotal:.2f}",
            "Shipping": shipping,
            "Total": f"{subtotal + Decimal(shipping):.2f}",
            "Refunded Amount": refunded,
            "Created at": shopify_time(created),
            "Billing Name": "Mei Chen",
            "Billing Phone": "'+86 139 0000 8888" if email == A else "",
        },
        lines,
    )


# Customer A: one order of each kind. Customer B: two recent multi-line orders.
RECENT, OLD, IN_FLIGHT, PARTLY = ago(40), ago(400), ago(10), ago(100)
ORDERS = [
    order(
        880001, A, [line("TEA-1", 3, "100.00")], paid=RECENT - timedelta(days=2), fulfilled=RECENT
    ),
    order(
        880002,
        A,
        [line("TEA-1", 2, "100.00"), line("CUP-2", 1, "300.00")],
        paid=OLD - timedelta(days=3),
        fulfilled=OLD,
    ),
    order(880003, A, [line("POT-3", 1, "150.00")], paid=IN_FLIGHT),
    order(
        880004,
        A,
        [line("CUP-2", 1, "300.00")],
        status="refunded",
        paid=ago(30),
        cancelled=ago(29),
        refunded="310.00",
    ),
    order(
        880005,
        A,
        [line("TEA-1", 1, "100.00"), line("SPOON", 4, "25.00")],
        status="partially_refunded",
        paid=PARTLY - timedelta(days=1),
        fulfilled=PARTLY,
        refunded="50.00",
    ),
    order(880006, A, [line("TEA-1", 1, "100.00")], status="pending"),
    order(
        880007,
        B,
        [line("TEA-1", 2, "100.00"), line("CUP-2", 2, "300.00"), line("POT-3", 1, "150.00")],
        paid=ago(200),
        fulfilled=ago(196),
    ),
    order(880008, B, [line("SPOON", 2, "25.00")], paid=ago(20), fulfilled=ago(18), shipping="0.00"),
]
BAD = order(880009, B, [line("TEA-1", 1, "100.00")], paid=ago(3))
BAD[0]["Fulfilled at"], BAD[0]["Fulfillment Status"] = "2026-02-30 10:00:00 +0800", "fulfilled"
CSV_TEXT = export_csv([*ORDERS, BAD])


def read_file(text: str = CSV_TEXT) -> list[ImportedOrder]:
    return list(imported_orders(read_rows([text.encode("utf-8")], "csv"), "CNY"))


def run(text: str = CSV_TEXT, store: OrderStore | None = None) -> list[tuple[str, str | None]]:
    from crm.services.order_import import import_orders

    return [(outcome, reason) for _, outcome, reason in import_orders(read_file(text), store)]


def expected_from_the_file(email: str) -> tuple[int, Decimal]:
    """(orders_count, total_spent) summed from the CSV itself, as the stats rule says: a paid
    order not cancelled counts for its total minus its refunds."""
    count, spent = 0, Decimal(0)
    for row in csv.DictReader(io.StringIO(CSV_TEXT)):
        if (
            row["Email"] != email
            or not row["Financial Status"]
            or row["Fulfilled at"].startswith("2026-02-30")
        ):
            continue  # a line row, or the invalid order
        if row["Financial Status"] not in ("paid", "partially_refunded", "refunded"):
            continue
        if row["Cancelled at"]:
            continue
        net = Decimal(row["Total"]) - Decimal(row["Refunded Amount"])
        count += 1 if net > 0 or Decimal(row["Refunded Amount"]) == 0 else 0
        spent += max(net, Decimal(0))
    return count, spent


def get(api, path):
    response = api.http.get(path, headers=OPERATOR)
    assert response.status_code == 200, response.body
    return json.loads(response.body)


def customer_of(api, email: str) -> str:
    return get(api, f"/customers?email={email}")["items"][0]["customer_id"]


def webhook(api, topic: str, payload: dict) -> None:
    delivery = deliver(topic, payload)
    response = api.http.post("/webhooks/shopify", headers=delivery.headers(), body=delivery.body)
    assert response.status_code == 200, response.body


def executions() -> list[str]:
    from crm.config import get_settings

    settings = get_settings()
    client = boto3.client("stepfunctions", region_name="us-east-1")
    return [
        e["name"]
        for arn in (settings.fulfilment_machine, settings.refund_machine)
        for e in client.list_executions(stateMachineArn=arn)["executions"]
    ]


def test_importing_twice_creates_once_then_changes_nothing(api):
    first = run()
    assert first[:-1] == [("created", None)] * 8
    assert first[-1] == ("failed", "Fulfilled at: invalid_timestamp")
    second = run()
    assert second[:-1] == [("unchanged", None)] * 8
    assert second[-1] == first[-1]
    order = get(api, "/orders/880002")
    assert order["status"] == "delivered" and order["customer_id"] == customer_of(api, A)
    assert [line["sku"] for line in order["lines"]] == ["TEA-1", "CUP-2"]
    # The invalid order is not recorded.
    assert api.http.get("/orders/880009", headers=OPERATOR).status_code == 404


def test_stats_equal_the_files_own_sums(api):
    run()
    for email in (A, B):
        count, spent = expected_from_the_file(email)
        stats = get(api, f"/customers/{customer_of(api, email)}")["stats"]
        assert stats["orders_count"] == count
        assert Decimal(stats["total_spent"]["amount"]) == spent
    # The sums themselves: A 310 + 510 (delivered 400 days ago) + 160 + (210 - 50 refunded);
    # the cancelled and the unpaid orders do not count. B 960 + 50.
    assert expected_from_the_file(A) == (4, Decimal("1140.00"))
    assert expected_from_the_file(B) == (2, Decimal("1010.00"))


def test_points_only_for_orders_delivered_in_the_last_12_months_expiring_from_delivery(api):
    run()
    a = get(api, f"/customers/{customer_of(api, A)}/points")
    # 880001 (300.00 of goods, delivered 40 days ago) and 880005 (200.00, delivered 100 days
    # ago, 50.00 refunded: 50 points reversed). Not the one delivered 400 days ago, the one
    # not delivered yet, the cancelled one or the unpaid one.
    assert sorted((e["type"], e["points"]) for e in a["entries"]) == [
        ("earn", 200),
        ("earn", 300),
        ("reverse", -50),
    ]
    assert a["balance"] == 450 and a["pending"] == 0
    assert sorted((lot["source"], lot["amount"], lot["expires_at"]) for lot in a["lots"]) == [
        ("ord_shopify_880001", 300, add_months(utc(RECENT), 12)),
        ("ord_shopify_880005", 150, add_months(utc(PARTLY), 12)),
    ]
    b = get(api, f"/customers/{customer_of(api, B)}/points")
    assert b["balance"] == 950 + 50  # both of B's orders were delivered in the last 12 months
    statuses = {o: get(api, f"/orders/{o}")["points"] for o in (880002, 880003, 880004, 880006)}
    assert statuses == {
        880002: {"earned": 0, "reversed": 0, "status": "expired"},
        880003: {"earned": 0, "reversed": 0, "status": None},
        880004: {"earned": 0, "reversed": 0, "status": None},
        880006: {"earned": 0, "reversed": 0, "status": None},
    }


def test_no_workflow_is_started(api):
    run()
    assert executions() == []
    for order_id in (880001, 880003, 880004, 880005):
        assert get(api, f"/orders/{order_id}")["workflow"] is None


def test_a_webhook_for_an_imported_order_afterwards_moves_no_points_twice(api):
    run()
    customer_id = customer_of(api, A)
    before = get(api, f"/customers/{customer_id}/points")
    stats_before = get(api, f"/customers/{customer_id}")["stats"]
    now = NOW.isoformat(timespec="seconds")
    # The delivered, earning order and the old one, as Shopify sends them later.
    for order_id, lines, paid in (
        (880001, [("TEA-1", 3, "100.00")], RECENT - timedelta(days=2)),
        (880002, [("TEA-1", 2, "100.00"), ("CUP-2", 1, "300.00")], OLD - timedelta(days=3)),
    ):
        webhook(
            api,
            "orders/updated",
            order_payload(
                order_id,
                email=A,
                lines=lines,
                financial_status="paid",
                fulfillment_status="fulfilled",
                created_at=utc(paid - timedelta(minutes=3)),
                processed_at=utc(paid),
                updated_at=now,
            ),
        )
    after = get(api, f"/customers/{customer_id}/points")
    assert (after["balance"], after["entries"]) == (before["balance"], before["entries"])
    assert get(api, f"/customers/{customer_id}")["stats"] == stats_before
    assert get(api, "/orders/880001")["fulfilled_at"] == utc(RECENT)  # the earliest stays

    # The order that was paid but not yet delivered at the import earns when it is delivered.
    webhook(
        api,
        "orders/fulfilled",
        order_payload(
            880003,
            email=A,
            lines=[("POT-3", 1, "150.00")],
            financial_status="paid",
            fulfillment_status="fulfilled",
            created_at=utc(IN_FLIGHT - timedelta(minutes=3)),
            processed_at=utc(IN_FLIGHT),
            updated_at=now,
        ),
    )
    delivered = get(api, f"/customers/{customer_id}/points")
    assert delivered["balance"] == before["balance"] + 150
    assert executions() == []  # delivered already: nothing to fulfil


class FailingFor(OrderStore):
    """The real store, unavailable for one order."""

    def __init__(self, order_id: str) -> None:
        from crm.store.orders import get_order_store

        super().__init__(get_order_store()._connection)
        self.order_id = order_id

    def read_order_and_owners(self, order_id, identity_keys, delivery_id=None):
        if order_id == self.order_id:
            raise Unavailable("the order store could not be read")
        return super().read_order_and_owners(order_id, identity_keys, delivery_id)


def test_an_order_that_cannot_be_recorded_fails_alone(api):
    results = run(store=FailingFor("ord_shopify_880003"))
    assert results[2] == ("failed", "the order store could not be read")
    assert [r for i, r in enumerate(results[:-1]) if i != 2] == [("created", None)] * 7
    # The next attempt records it, and only it.
    assert [r[0] for r in run()[:-1]] == ["unchanged"] * 2 + ["created"] + ["unchanged"] * 5


def test_a_history_import_never_answers_a_live_workflow(api):
    from crm.services.fulfilment import await_logistics
    from tests.support.stepfunctions import StepFunctionsCalls

    # Given a paid order whose workflow waits for the delivery
    paid = ago(3)
    webhook(
        api,
        "orders/paid",
        order_payload(
            881001,
            email=A,
            lines=[("TEA-1", 1, "100.00")],
            financial_status="paid",
            created_at=utc(paid - timedelta(minutes=3)),
            processed_at=utc(paid),
            updated_at=utc(paid),
        ),
    )
    order_id = get(api, "/orders/881001")["order_id"]
    await_logistics({"order_id": order_id, "token": "delivery-wait", "for": "delivered"})
    answers = StepFunctionsCalls()

    # When a history file lists the same order as fulfilled
    history = order(881001, A, [line("TEA-1", 1, "100.00")], paid=paid, fulfilled=ago(1))
    assert run(export_csv([history])) == [("updated", None)]

    # Then the order records it, and the import answered no workflow (it may not: the
    # workflow finishes on its own events; docs/imports.md)
    assert get(api, "/orders/881001")["fulfilled_at"] == utc(ago(1))
    assert answers.calls == []
