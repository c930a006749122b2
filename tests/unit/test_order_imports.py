"""Order history files read into order events: Shopify's own export (multi-line orders, quoting,
Excel's apostrophes, GB18030), the project's columns, JSON Lines; every bad order explained,
never merged with another; one order at a time."""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from crm.domain import order_imports
from crm.domain.import_files import Row, read_rows
from crm.domain.order_events import Buyer, Line, Refund
from crm.domain.order_imports import (
    ImportedOrder,
    group_orders,
    imported_orders,
    parse_time,
)
from tests.support.shopify_export import export_csv, line, order_rows

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "imports" / "shopify_orders.csv"


def chunked(data: bytes, size: int = 97) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def read(data: str | bytes, fmt: str = "csv", currency: str = "CNY") -> list[ImportedOrder]:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return list(imported_orders(read_rows(chunked(raw), fmt), currency))


def fixture_orders() -> list[ImportedOrder]:
    return read(FIXTURE.read_bytes())


def one_order(**overrides: str) -> list[dict[str, str]]:
    order = {
        "Name": "#2001",
        "Email": "buyer@example.com",
        "Financial Status": "paid",
        "Paid at": "2026-03-01 10:00:00 +0800",
        "Fulfillment Status": "fulfilled",
        "Fulfilled at": "2026-03-03 10:00:00 +0800",
        "Currency": "CNY",
        "Subtotal": "150.00",
        "Shipping": "10.00",
        "Total": "160.00",
        "Created at": "2026-03-01 09:59:00 +0800",
        "Id": "7000000000001",
    }
    order.update(overrides)
    return order_rows(order, [line("A", 1, "100.00"), line("B", 2, "25.00")])


# -- Shopify's export --------------------------------------------------------------------------


def test_the_fixture_gives_one_event_per_order_with_all_its_rows():
    # Given Shopify's export of 5 orders (8 rows)
    orders = fixture_orders()
    # Then each order is one event, holding the rows it came from
    assert [o.problem for o in orders] == [None] * 5
    assert [[r.number for r in o.rows] for o in orders] == [[1, 2], [3, 4, 5], [6], [7], [8]]
    assert [o.event.order_id for o in orders if o.event] == [
        f"ord_shopify_583937409030{i}" for i in range(6, 10)
    ] + ["ord_shopify_5839374090310"]


def test_a_multi_line_order_is_read_whole():
    event = fixture_orders()[0].event
    assert event is not None
    assert event.source == "shopify" and event.platform_order_id == "5839374090306"
    assert event.kind == "update" and event.name == "#1001"
    assert event.currency == "CNY"
    assert event.lines == (
        Line(sku="TEA-001", quantity=2, unit_price=9900, title="Longjing tea, 100 g"),
        Line(sku="CUP-002", quantity=1, unit_price=20000, title='Cup "Blue & White"'),
    )
    assert (event.subtotal, event.shipping, event.total) == (39800, 1000, 40800)
    # Times in UTC; the event is as new as the newest of them.
    assert event.created_at == "2025-10-07T01:48:03+00:00"
    assert event.paid_at == "2025-10-07T01:50:26+00:00"
    assert event.fulfilled_at == "2025-10-09T08:02:11+00:00"
    assert event.updated_at == event.fulfilled_at
    assert event.cancelled_at is None and event.refunds == ()
    # Excel's apostrophes are gone; the billing name is split.
    assert event.buyer == Buyer(
        email="mei.chen@example.com",
        phone="+86 139 0000 1234",
        first_name="Mei",
        last_name="Chen",
    )
    assert event.shipping_address == {
        "line1": "1 Nanjing Road",
        "city": "Shanghai",
        "zip": "200001",
        "province_code": "SH",
        "province": "Shanghai",
        "country_code": "CN",
    }


def test_a_refunded_amount_is_one_refund_and_a_chinese_name_stays_whole():
    event = fixture_orders()[1].event
    assert event is not None
    assert [line.quantity for line in event.lines or ()] == [1, 1, 3]
    assert event.lines and event.lines[0].title == "龙井茶, 100 克"
    assert event.refunds == (
        Refund(
            refund_id="import-5839374090307",
            at=event.updated_at,
            amount=5000,
            goods_amount=5000,
            reason="imported",
            status="completed",
        ),
    )
    assert event.buyer is not None
    assert (event.buyer.first_name, event.buyer.last_name) == ("陈美玲", None)
    assert event.buyer.phone == "13900002222"  # the order's Phone before the addresses'


def test_pending_cancelled_and_foreign_currency_orders():
    pending, cancelled, euro = (o.event for o in fixture_orders()[2:])
    assert pending is not None and cancelled is not None and euro is not None
    assert pending.paid_at is None and pending.fulfilled_at is None
    assert pending.updated_at == pending.created_at
    assert cancelled.paid_at == "2025-12-03T03:00:00+00:00"
    assert cancelled.cancelled_at == "2025-12-04T01:00:00+00:00"
    assert cancelled.fulfilled_at is None
    # Refunded in full: goods refunded are capped at the goods (shipping was refunded too).
    assert [(r.amount, r.goods_amount) for r in cancelled.refunds] == [(21000, 20000)]
    assert euro.currency == "EUR" and euro.total == 5040
    assert euro.lines == (
        Line(sku="item-1", quantity=1, unit_price=4550, title="Gift wrapping, custom"),
    )
    assert euro.buyer is not None
    assert (euro.buyer.first_name, euro.buyer.last_name) == ("Jean", "de la Tour")
    assert euro.buyer.phone == "+33 1 23 45 67 89"
    assert euro.shipping_address and euro.shipping_address["zip"] == "75008"


@pytest.mark.parametrize("encoding", ["gb18030", "utf-8-sig"])
def test_gb18030_and_utf8_with_bom_give_identical_events(encoding):
    text = FIXTURE.read_text("utf-8")
    data = text.encode(encoding)
    if encoding == "utf-8-sig":
        assert data.startswith(codecs.BOM_UTF8)
    else:
        with pytest.raises(UnicodeDecodeError):
            data.decode("utf-8")
    assert [o.event for o in read(data)] == [o.event for o in fixture_orders()]


def test_crlf_line_ends_and_unknown_columns_change_nothing():
    text = FIXTURE.read_text("utf-8")
    header, rest = text.split("\n", 1)
    widened = "\n".join(
        [header + ",Brand New Column"] + [r + ",x" if r else r for r in rest.split("\n")]
    )
    # Only the header and the record ends are changed (a quoted note keeps its own line break).
    assert [o.event for o in read(widened.replace("\n", "\r\n"))] == [
        o.event for o in fixture_orders()
    ]


def test_without_id_the_name_is_the_order_id():
    orders = read(export_csv([one_order(Id="")]))
    assert orders[0].event is not None
    assert orders[0].event.order_id == "ord_shopify_2001"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"Paid at": "2026-02-30 10:00:00 +0800"}, "Paid at: invalid_timestamp"),
        ({"Paid at": "2026-03-01 10:00:00"}, "Paid at: invalid_timestamp"),  # no offset
        ({"Created at": ""}, "Created at: missing"),
        ({"Total": "1,160.00"}, "Total: invalid_amount"),
        ({"Total": "-160.00"}, "Total: out_of_range"),
        ({"Subtotal": ""}, "Subtotal: missing"),
        ({"Shipping": "10.005"}, "Shipping: too_many_decimals"),
        ({"Currency": "RMB¥"}, "Currency: invalid_currency"),
        ({"Id": "7.00000E+12"}, "Id: invalid_id"),
        ({"Id": "", "Name": "#20 01"}, "Name: invalid_id"),
        ({"Shipping Country": "China"}, "Shipping Country: invalid_country"),
    ],
)
def test_a_bad_order_fails_whole_with_a_readable_reason(overrides, reason):
    good = one_order(Name="#2000", Id="7000000000000")
    orders = read(export_csv([good, one_order(**overrides), one_order(Name="#2002", Id="3")]))
    assert [o.problem for o in orders] == [None, reason, None]
    assert orders[1].event is None
    assert [r.number for r in orders[1].rows] == [3, 4]  # both of its rows fail with it


def test_line_problems_name_the_row_and_every_problem_is_listed():
    rows = one_order(Currency="JPY")
    rows[1]["Lineitem quantity"] = "two"
    rows[0]["Lineitem price"] = "100.50"
    orders = read(export_csv([rows]))
    assert orders[0].problem == (
        "Lineitem price (row 1): too_many_decimals; Lineitem quantity (row 2): invalid_quantity"
    )


def test_an_order_without_lines_fails():
    rows = one_order()[:1]
    for column in ("Lineitem quantity", "Lineitem name", "Lineitem price", "Lineitem sku"):
        rows[0][column] = ""
    assert read(export_csv([rows]))[0].problem == "Lineitem quantity: missing"


def test_two_orders_with_the_same_name_are_never_merged():
    # Given two different orders (different Id) that share a Name, one after the other
    first = one_order(Id="7000000000001")
    second = one_order(Id="7000000000002", Total="999.00")
    orders = read(export_csv([first, second, one_order(Name="#2002", Id="3")]))
    # Then neither is imported: all four rows fail, saying why
    assert len(orders) == 2
    assert [r.number for r in orders[0].rows] == [1, 2, 3, 4]
    assert orders[0].event is None
    assert orders[0].problem == "Id (row 3): conflicting_value; Total (row 3): conflicting_value"
    assert orders[1].problem is None


def test_an_order_repeating_its_fields_on_every_row_is_one_order():
    rows = one_order()
    rows[1].update({k: v for k, v in rows[0].items() if not k.startswith("Lineitem")})
    orders = read(export_csv([rows]))
    assert orders[0].problem is None and orders[0].event is not None
    assert len(orders[0].event.lines or ()) == 2


def test_an_unreadable_row_inside_an_order_fails_the_order_and_between_orders_stands_alone():
    text = export_csv(
        [one_order(), one_order(Name="#2002", Id="3"), one_order(Name="#2003", Id="4")]
    )
    lines = text.split("\n")
    lines.insert(2, "broken,row")  # inside #2001 (between its two rows)
    lines.insert(6, "a,b,c")  # after #2002's rows, before #2003
    orders = read("\n".join(lines))
    assert [[r.number for r in o.rows] for o in orders] == [[1, 2, 3], [4, 5], [6], [7, 8]]
    assert orders[0].problem == "row 2: wrong_column_count"
    assert orders[1].problem is None
    assert orders[2].problem == "wrong_column_count"
    assert orders[3].problem is None


def test_rows_are_read_one_order_at_a_time():
    rows = list(
        read_rows([export_csv([one_order(), one_order(Name="#2002", Id="3")]).encode()], "csv")
    )
    taken: list[int] = []

    def feed(items: Iterable[Row]) -> Iterator[Row]:
        for row in items:
            taken.append(row.number)
            yield row

    orders = imported_orders(feed(rows), "CNY")
    first = next(orders)
    # The first order is known once the next order's first row is seen, and no later.
    assert [r.number for r in first.rows] == [1, 2] and taken == [1, 2, 3]
    assert next(orders).rows[0].number == 3 and taken == [1, 2, 3, 4]


def test_an_order_with_too_many_rows_fails_in_bounded_pieces(monkeypatch):
    monkeypatch.setattr(order_imports, "MAX_ORDER_ROWS", 3)
    big = order_rows(one_order()[0], [line(f"S{i}", 1, "1.00") for i in range(8)])
    orders = read(export_csv([big, one_order(Name="#2002", Id="3")]))
    assert [len(o.rows) for o in orders] == [4, 4, 2]
    assert all(o.problem and o.problem.startswith("too_many_rows") for o in orders[:2])
    assert orders[2].problem is None


def test_group_orders_keeps_consecutive_rows_of_one_order():
    rows = read_rows([export_csv([one_order(), one_order(Name="#2002", Id="3")]).encode()], "csv")
    assert [[r.number for r in g] for g in group_orders(rows)] == [[1, 2], [3, 4]]


# -- the project's columns and JSON Lines ------------------------------------------------------

PROJECT_CSV = (
    "order_id,source,created_at,paid_at,fulfilled_at,currency,email,phone,external_id,"
    "first_name,last_name,subtotal,shipping,total,refunded,sku,title,quantity,unit_price,"
    "country_code,province,city,zip\n"
    "A-100,woocommerce,2026-05-01T10:00:00+08:00,2026-05-01T10:05:00+08:00,"
    "2026-05-04T12:00:00+08:00,CNY,wu@example.com,'13900003333,woocommerce:77,Wu,Lei,"
    "250.00,10.00,260.00,20.00,TEA-001,Tea,2,100.00,cn,Zhejiang,杭州,'310000\n"
    'A-100,,,,,,,,,,,,,,,CUP-002,"Cup, blue",1,50.00,,,,\n'
    "B-7,,2026-06-01T00:00:00Z,,,,,,wechat:o_abc,,,,,,,SKU-9,,1,9.90,,,,\n"
)


def test_the_projects_columns_one_row_per_line():
    first, second = read(PROJECT_CSV)
    assert first.problem is None and second.problem is None
    a, b = first.event, second.event
    assert a is not None and b is not None
    assert a.order_id == "ord_woocommerce_A-100"
    assert a.lines == (
        Line(sku="TEA-001", quantity=2, unit_price=10000, title="Tea"),
        Line(sku="CUP-002", quantity=1, unit_price=5000, title="Cup, blue"),
    )
    assert (a.subtotal, a.shipping, a.total) == (25000, 1000, 26000)
    assert a.paid_at == "2026-05-01T02:05:00+00:00"
    assert a.fulfilled_at == a.updated_at == "2026-05-04T04:00:00+00:00"
    assert [(r.refund_id, r.amount, r.goods_amount) for r in a.refunds] == [
        ("import-A-100", 2000, 2000)
    ]
    assert a.buyer == Buyer(
        external_ids={"woocommerce": "77"},
        email="wu@example.com",
        phone="13900003333",
        first_name="Wu",
        last_name="Lei",
    )
    assert a.shipping_address == {
        "city": "杭州",
        "zip": "310000",
        "province": "Zhejiang",
        "country_code": "CN",
    }
    # Without a source, the buyer's external id names it; totals default from the lines.
    assert b.order_id == "ord_wechat_B-7"
    assert (b.subtotal, b.shipping, b.total) == (990, None, 990)
    assert b.paid_at is None and b.updated_at == "2026-06-01T00:00:00+00:00"


def test_the_projects_columns_default_source_and_problems():
    text = (
        "order_id,created_at,sku,quantity,unit_price,currency,paid_at\n"
        "X1,2026-05-01T10:00:00+08:00,S,1,5.00,,\n"
        "X1,2026-05-01T10:00:00+08:00,S,1,5.00,,\n"
        ",2026-05-01T10:00:00+08:00,S,1,5.00,,\n"
        "X/2,2026-05-01,S,0.5,5.00,CNY,yesterday\n"
        "X3,2026-05-01T10:00:00+08:00,S,1,5.00,USD,\n"
        "X3,2026-05-01T10:00:00+08:00,T,1,5.00,EUR,\n"
    )
    orders = read(text)
    assert orders[0].event is not None and orders[0].event.order_id == "ord_import_X1"
    assert len(orders[0].event.lines or ()) == 2
    assert [o.problem for o in orders[1:]] == [
        "order_id: missing",
        "order_id: invalid_id; created_at: invalid_timestamp; paid_at: invalid_timestamp;"
        " quantity: invalid_quantity",
        "currency (row 6): conflicting_value",
    ]


def test_json_lines_nested_flat_and_grouped_orders():
    objects = [
        {
            "order_id": "J1",
            "source": "woocommerce",
            "created_at": "2026-05-01T10:00:00+08:00",
            "paid_at": "2026-05-01T10:00:00+08:00",
            "currency": "CNY",
            "email": "j1@example.com",
            "subtotal": "30.00",
            "total": 30,  # an exact JSON number is accepted
            "lines": [
                {"sku": "A", "title": "A", "quantity": 1, "unit_price": "10.00"},
                {"sku": "B", "quantity": "2", "unit_price": 10},
            ],
        },
        {
            "order_id": "J2",
            "created_at": "2026-05-01T10:00:00Z",
            "sku": "C",
            "quantity": 1,
            "unit_price": "5.00",
        },
        {
            "order_id": "J3",
            "created_at": "2026-05-01T10:00:00Z",
            "sku": "D",
            "quantity": 1,
            "unit_price": "5.00",
        },
        {"order_id": "J3", "sku": "E", "quantity": 2, "unit_price": "1.50"},
        {"order_id": "J4", "created_at": "2026-05-01T10:00:00Z", "lines": [{"sku": "F"}]},
        {"order_id": "J5", "created_at": "2026-05-01T10:00:00Z", "lines": "none"},
    ]
    text = "\n".join(json.dumps(o, ensure_ascii=False) for o in objects) + "\n"
    orders = read(text, fmt="jsonl")
    assert [[r.number for r in o.rows] for o in orders] == [[1], [2], [3, 4], [5], [6]]
    j1, j2, j3 = (o.event for o in orders[:3])
    assert j1 is not None and j2 is not None and j3 is not None
    assert j1.order_id == "ord_woocommerce_J1" and j1.total == 3000
    assert j1.lines == (
        Line(sku="A", quantity=1, unit_price=1000, title="A"),
        Line(sku="B", quantity=2, unit_price=1000, title=""),
    )
    assert j2.lines == (Line(sku="C", quantity=1, unit_price=500),)
    assert [line.sku for line in j3.lines or ()] == ["D", "E"] and j3.total == 800
    assert orders[3].problem == "lines[0].quantity: missing; lines[0].unit_price: missing"
    assert orders[4].problem == "lines: wrong_type"


def test_a_json_line_that_is_not_an_object_fails_alone():
    good = {
        "order_id": "J9",
        "created_at": "2026-05-01T10:00:00Z",
        "sku": "A",
        "quantity": 1,
        "unit_price": "1",
    }
    text = "[1, 2]\n" + json.dumps(good) + "\n"
    orders = read(text, fmt="jsonl")
    assert [o.problem for o in orders] == ["not_an_object", None]


def test_a_json_number_id_is_the_same_order_as_its_text():
    objects = [
        {
            "order_id": 10,
            "created_at": "2026-05-01T10:00:00Z",
            "sku": "A",
            "quantity": 1,
            "unit_price": "1.00",
        },
        {
            "order_id": "10",
            "created_at": "2026-05-01T10:00:00Z",
            "sku": "B",
            "quantity": 1,
            "unit_price": "2.00",
        },
    ]
    text = "".join(json.dumps(o) + "\n" for o in objects)
    (only,) = read(text, fmt="jsonl")
    assert only.event is not None and only.event.order_id == "ord_import_10"
    assert only.event.total == 300


# -- timestamps --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-10-07 09:50:26 +0200", "2025-10-07T07:50:26+00:00"),
        ("2025-10-07 09:50:26 -0530", "2025-10-07T15:20:26+00:00"),
        ("2025-10-07 09:50 +02:00", "2025-10-07T07:50:00+00:00"),
        ("2025-10-07T09:50:26.123Z", "2025-10-07T09:50:26+00:00"),
        ("2025-10-07 09:50:26 UTC", "2025-10-07T09:50:26+00:00"),
        ("2025-10-07 09:50:26", None),
        ("2025-10-07", None),
        ("07/10/2025 09:50", None),
        ("2025-02-29 09:50:26 +0000", None),
    ],
)
def test_parse_time(text, expected):
    assert parse_time(text) == expected
