"""The snapshot's rebuild turns each scanned item into its rows as it is read, in Arrow
batches: however many orders the shop has, the job never holds more than a batch of rows and
one order per Scan segment as Python objects (an order as objects is kilobytes; as Arrow, a
few dozen bytes). And what it writes is what the items say."""

from __future__ import annotations

import gc
import threading
import weakref
from datetime import date

import pyarrow as pa

from crm.config import get_settings
from crm.domain.customers import Customer
from crm.domain.loyalty import Program
from crm.domain.order_events import Line
from crm.domain.orders import Order
from crm_analytics import snapshot

AS_OF = date(2026, 11, 20)
ORDERS = 6000


def test_the_rebuild_holds_a_batch_of_rows_never_the_orders(monkeypatch, local_env) -> None:
    monkeypatch.setattr(snapshot, "BATCH", 250)
    alive, most, lock = [0], [0], threading.Lock()

    def gone() -> None:
        with lock:
            alive[0] -= 1

    def orders(segment: int, total: int):
        for n in range(segment, ORDERS, total):
            gc.collect(0)
            order = Order(
                order_id=f"ord_{n:05d}",
                source="shopify",
                platform_order_id=str(n),
                received_at="2026-11-01T10:00:00+08:00",
                customer_id=f"cus_{n % 700:04d}",
                currency="CNY",
                lines=[Line(sku=f"SKU-{n % 9}", quantity=1 + n % 3, unit_price=1000)],
                total=1000 * (1 + n % 3),
                created_at=f"2026-{1 + n % 11:02d}-{1 + n % 28:02d}T10:00:00+08:00",
                paid_at="2026-11-01T10:00:00+08:00",
            )
            with lock:
                alive[0] += 1
                most[0] = max(most[0], alive[0])
            weakref.finalize(order, gone)
            yield order

    def customers(segment: int, total: int):
        for n in range(segment, 600, total):  # 100 buyers are no longer customers
            yield Customer(
                customer_id=f"cus_{n:04d}",
                created_at="2025-01-01T00:00:00+00:00",
                updated_at="2025-01-01T00:00:00+00:00",
                email=f"c{n}@shop.test",
                version=1,
            )

    def ledger(segment: int, total: int):
        for n in range(segment, 600, total):
            yield {"kind": "balance", "customer_id": f"cus_{n:04d}", "balance": n}

    monkeypatch.setattr(snapshot.snapshot_reads, "orders", orders)
    monkeypatch.setattr(snapshot.snapshot_reads, "customers", customers)
    monkeypatch.setattr(snapshot.snapshot_reads, "ledger", ledger)

    taken = snapshot.take(AS_OF, get_settings(), Program(currency="CNY"))

    # Then every order and line is there, as Arrow, and at most two orders a segment were
    # alive at once (the one read and the one being made), whatever the number of orders
    assert most[0] <= 2 * snapshot.SEGMENTS
    assert isinstance(taken.orders, pa.Table) and taken.orders.num_rows == ORDERS
    assert taken.lines.num_rows == ORDERS
    assert taken.orders["order_id"].num_chunks >= ORDERS // 250  # batch by batch
    rows = {r["order_id"]: r for r in taken.orders.to_pylist()}
    assert rows["ord_00042"]["day"] == date(2026, 10, 15)
    assert rows["ord_00042"]["total"] == 1000
    assert rows["ord_00042"]["customer_active"] is True  # cus_0042
    assert rows["ord_00650"]["customer_active"] is False  # cus_0650: not a customer
    assert sum(r["customer_active"] for r in rows.values()) == sum(
        1 for n in range(ORDERS) if n % 700 < 600
    )
    customers_rows = {r["customer_id"]: r for r in taken.customers.to_pylist()}
    assert len(customers_rows) == 600 and customers_rows["cus_0123"]["points_balance"] == 123

    # And the pandas engine's frames are the active customers' orders and the customers
    orders_frame, customers_frame = snapshot.frames(taken)
    assert len(orders_frame) == sum(r["customer_active"] for r in rows.values())
    assert len(customers_frame) == 600


def test_the_files_are_one_a_day_each_days_orders_in_the_order_read() -> None:
    rows = [{"order_id": f"o{n}", "day": date(2026, 1, 1 + n % 3), "n": n} for n in range(30)]
    table = pa.concat_tables([pa.Table.from_pylist(rows[:13]), pa.Table.from_pylist(rows[13:])])

    parts = snapshot._partitioned("orders", table)

    assert sorted(parts) == [
        f"{snapshot.PREFIX}orders/date=2026-01-0{d}/part-00000.parquet" for d in (1, 2, 3)
    ]
    for day, part in zip((1, 2, 3), sorted(parts), strict=True):
        assert parts[part]["n"].to_pylist() == [n for n in range(30) if n % 3 == day - 1]
