"""Shopify order and refund webhooks parsed into `OrderEvent`: the facts, the details, the
money and time rules, strict validation, and a fuzz test over realistic payloads."""

from __future__ import annotations

import copy
import json
import random
import re
from dataclasses import asdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from crm.domain.errors import ValidationFailed
from crm.domain.order_events import KINDS, Line, OrderEvent, RefundLine
from crm.domain.shopify import TOPICS, parse_order, parse_refund

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "shopify"
UTC_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+00:00")


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def issues(topic: str, payload: Any) -> list[dict[str, str]]:
    with pytest.raises(ValidationFailed) as caught:
        parse_order(topic, payload)
    return caught.value.details


def first_line(event: OrderEvent) -> Line:
    assert event.lines
    return event.lines[0]


def issue_of(topic: str, payload: Any, field: str) -> str | None:
    found = [d["issue"] for d in issues(topic, payload) if d["field"] == field]
    return found[0] if found else None


# -- realistic payloads --------------------------------------------------------------------------


def test_an_order_with_three_lines_a_discount_and_shipping():
    event = parse_order("orders/create", load("order_create"))
    assert event.source == "shopify"
    assert event.platform_order_id == "820982911946154508"
    assert event.order_id == "ord_shopify_820982911946154508"
    assert event.kind == "create"
    assert event.name == "#1001"
    # -05:00 in the payload, UTC to the second here.
    assert event.created_at == "2026-11-23T15:00:00+00:00"
    assert event.updated_at == "2026-11-23T15:00:02+00:00"
    assert event.currency == "USD"
    assert event.lines == (
        Line("TEA-OOLONG-100", 2, 2450, "Oolong Tea 100g", "466157049", "632910392", "39072856"),
        Line("MUG-CERAMIC", 1, 1800, "Ceramic Mug", "518995019", "921728736", "49148385"),
        # No sku in the shop: the variant names the line.
        Line("variant-457924702", 3, 500, "Sample sachet", "703073504", "788032119", "457924702"),
    )
    lines_value = sum(line.quantity * line.unit_price for line in event.lines)
    assert lines_value == 8200
    assert event.subtotal == 7380 < lines_value  # a 10% discount code
    assert event.shipping == 1000
    assert event.total == 9044  # subtotal + shipping + 6.64 tax
    assert event.shipping_address == {
        "country_code": "US",
        "province": "New York",
        "province_code": "NY",
        "city": "New York",
        "zip": "10118",
        "line1": "350 Fifth Avenue",
        "latitude": "40.7484405",
        "longitude": "-73.9856644",
    }
    assert event.buyer is not None
    assert event.buyer.external_ids == {"shopify": "207119551"}
    assert (event.buyer.email, event.buyer.phone) == ("mei.lin@example.com", "+12127363100")
    assert (event.buyer.first_name, event.buyer.last_name) == ("Mei", "Lin")
    # Pending payment: no facts.
    assert (event.paid_at, event.cancelled_at, event.fulfilled_at, event.refunds) == (
        None,
        None,
        None,
        (),
    )


def test_a_guest_checkout_takes_the_buyer_from_the_order_and_the_address():
    event = parse_order("orders/create", load("order_guest"))
    assert event.buyer is not None
    assert event.buyer.external_ids == {}
    assert event.buyer.email == "guest.buyer@example.net"
    assert event.buyer.phone == "+55 11 91234-5678"  # the order has none: the address's
    assert (event.buyer.first_name, event.buyer.last_name) == ("Ana", "Souza")
    assert event.created_at == "2026-11-23T10:20:00+00:00"  # +08:00 in the payload
    assert "latitude" not in (event.shipping_address or {})  # null coordinates are left out
    assert event.paid_at is None  # authorized is not paid


def test_a_customer_without_contact_falls_back_to_the_order_contact():
    payload = load("order_create")
    payload["customer"] = {"id": 207119551, "email": None, "phone": None}
    payload["phone"] = "+12125550100"
    event = parse_order("orders/updated", payload)
    assert event.buyer is not None
    assert event.buyer.external_ids == {"shopify": "207119551"}
    assert event.buyer.email == "mei.lin@example.com"
    assert event.buyer.phone == "+12125550100"
    assert (event.buyer.first_name, event.buyer.last_name) == ("Mei", "Lin")  # the address's


def test_nobody_to_name_means_no_buyer():
    payload = load("order_guest")
    payload["email"] = ""
    payload["shipping_address"]["phone"] = None
    assert parse_order("orders/create", payload).buyer is None


def test_a_paid_order_is_paid_at_processed_at():
    event = parse_order("orders/paid", load("order_paid"))
    assert event.kind == "paid"
    assert event.paid_at == "2026-11-23T15:04:31+00:00"


def test_facts_come_from_the_payload_whatever_the_topic():
    event = parse_order("orders/updated", load("order_paid"))
    assert event.kind == "update"
    assert event.paid_at == "2026-11-23T15:04:31+00:00"
    # And an orders/paid payload that says pending (a retry racing a change) sets nothing.
    assert parse_order("orders/paid", load("order_create")).paid_at is None


@pytest.mark.parametrize(
    ("status", "paid"),
    [
        ("pending", False),
        ("authorized", False),
        ("partially_paid", False),
        ("paid", True),
        ("partially_refunded", True),
        ("refunded", True),
        ("voided", False),
        ("some_future_status", False),
        (None, False),
    ],
)
def test_paid_follows_the_financial_status(status, paid):
    payload = load("order_paid")
    payload["financial_status"] = status
    assert (parse_order("orders/updated", payload).paid_at is not None) is paid


def test_paid_at_falls_back_to_updated_at():
    payload = load("order_paid")
    del payload["processed_at"]
    assert parse_order("orders/paid", payload).paid_at == "2026-11-23T15:04:33+00:00"


def test_a_cancelled_order_carries_its_reason_and_refunds():
    event = parse_order("orders/cancelled", load("order_cancelled"))
    assert event.kind == "cancelled"
    assert event.cancelled_at == "2026-11-24T13:15:00+00:00"
    assert event.cancel_reason == "customer"
    assert event.paid_at == "2026-11-23T15:04:31+00:00"  # refunded still means it was paid
    (refund,) = event.refunds
    assert refund.refund_id == "929361462"
    assert refund.amount == 9044  # everything, shipping included
    assert refund.goods_amount == 7380
    assert refund.restock is True
    assert refund.lines[0] == RefundLine(
        quantity=2, line_id="466157049", sku="TEA-OOLONG-100", amount=4410
    )


def test_a_cancel_reason_without_cancellation_is_not_a_fact():
    payload = load("order_create")
    payload["cancel_reason"] = "other"
    assert parse_order("orders/updated", payload).cancel_reason is None


def test_a_fulfilled_order_is_fulfilled_at_updated_at():
    event = parse_order("orders/fulfilled", load("order_fulfilled"))
    assert event.kind == "fulfilled"
    assert event.fulfilled_at == "2026-11-25T19:30:00+00:00"
    partial = load("order_fulfilled")
    partial["fulfillment_status"] = "partial"
    assert parse_order("orders/fulfilled", partial).fulfilled_at is None


def test_refunds_create_with_lines_and_a_shipping_refund():
    event = parse_refund(load("refund_create"))
    assert event.kind == "refund"
    assert event.platform_order_id == "820982911946154508"
    assert event.updated_at == "2026-11-28T14:30:00+00:00"
    assert event.currency == "USD"
    assert event.lines is None  # no details: they are not replaced
    assert (event.subtotal, event.total, event.buyer) == (None, None, None)
    (refund,) = event.refunds
    assert refund.refund_id == "890088186047892319"
    assert refund.at == "2026-11-28T14:30:00+00:00"
    # The failed transaction does not count; the successful one includes 10.00 of shipping.
    assert refund.amount == 4874
    # Goods: 22.05 + 13.50 (Shopify sends `subtotal` as a JSON number, `subtotal_set` as text).
    assert refund.goods_amount == 3555
    assert refund.lines == (
        RefundLine(quantity=1, line_id="466157049", sku="TEA-OOLONG-100", amount=2205),
        RefundLine(quantity=3, line_id="703073504", sku="variant-457924702", amount=1350),
    )
    assert refund.reason == "Damaged in transit"
    assert refund.restock is True  # a line was returned to stock
    assert parse_order("refunds/create", load("refund_create")) == event


def test_a_refund_without_lines_is_all_goods_and_reads_number_subtotals():
    payload = load("refund_create")
    payload["refund_line_items"] = []
    (refund,) = parse_refund(payload).refunds
    assert refund.goods_amount == refund.amount == 4874
    assert refund.restock is False
    payload = load("refund_create")
    for item in payload["refund_line_items"]:
        del item["subtotal_set"]
    (refund,) = parse_refund(payload).refunds
    assert refund.goods_amount == 3555  # 22.05 and 13.5 as JSON numbers


@pytest.mark.parametrize(
    ("status", "counted"), [("success", True), (None, True), ("pending", False), ("error", False)]
)
def test_only_successful_refund_transactions_count(status, counted):
    payload = load("refund_create")
    payload["transactions"] = [
        {"kind": "refund", "status": status, "amount": "5.00", "currency": "USD"},
        {"kind": "sale", "status": "success", "amount": "90.44", "currency": "USD"},
    ]
    (refund,) = parse_refund(payload).refunds
    assert refund.amount == (500 if counted else 0)


def test_the_refund_currency_comes_from_the_payload_or_the_caller():
    payload = load("refund_create")
    payload["transactions"] = []
    assert parse_refund(payload).currency == "USD"  # the lines' shop money
    for item in payload["refund_line_items"]:
        del item["subtotal_set"]
    with pytest.raises(ValidationFailed) as caught:
        parse_refund(payload)
    assert caught.value.details == [{"field": "transactions[].currency", "issue": "missing"}]
    event = parse_refund(payload, currency="eur")
    assert event.currency == "EUR"
    assert event.refunds[0].goods_amount == 3555
    with pytest.raises(ValidationFailed):
        parse_refund(payload, currency="JPY")  # 22.05 has decimals JPY does not
    payload["refund_line_items"][0]["subtotal"] = 2205
    payload["refund_line_items"][1]["subtotal"] = 1350
    assert parse_refund(payload, currency="JPY").refunds[0].goods_amount == 3555


def test_an_empty_refund_needs_no_currency():
    event = parse_refund({"id": 1, "order_id": 2, "created_at": "2026-11-28T09:30:00Z"})
    assert event.currency is None
    assert event.refunds[0].amount == event.refunds[0].goods_amount == 0


@pytest.mark.parametrize(
    ("topic", "kind"),
    [
        ("orders/create", "create"),
        ("orders/updated", "update"),
        ("orders/paid", "paid"),
        ("orders/cancelled", "cancelled"),
        ("orders/fulfilled", "fulfilled"),
        ("refunds/create", "refund"),
    ],
)
def test_the_kind_comes_from_the_topic(topic, kind):
    payload = load("refund_create" if topic == "refunds/create" else "order_paid")
    assert topic in TOPICS
    assert kind in KINDS
    assert parse_order(topic, payload).kind == kind


def test_another_topic_is_the_callers_mistake():
    with pytest.raises(ValueError, match="not an order topic"):
        parse_order("customers/create", load("order_create"))


# -- numbers, money and time ---------------------------------------------------------------------


def with_price(value: Any, currency: str = "USD") -> dict[str, Any]:
    payload = load("order_create")
    payload["currency"] = currency
    payload["line_items"][0]["price"] = value
    return payload


@pytest.mark.parametrize(
    ("price", "minor"),
    [
        ("24.50", 2450),
        (" 24.5 ", 2450),
        ("24", 2400),
        (24, 2400),  # a JSON integer is exact
        (24.5, 2450),  # a JSON number with few digits is exactly what was sent
        (0.1, 10),
        (Decimal("24.50"), 2450),  # json.loads(..., parse_float=Decimal)
        ("0", 0),
    ],
)
def test_prices_accepted(price, minor):
    assert first_line(parse_order("orders/create", with_price(price))).unit_price == minor


@pytest.mark.parametrize(
    ("price", "issue"),
    [
        ("24.505", "too_many_decimals"),
        (24.505, "too_many_decimals"),
        (1234567890.12345678, "wrong_type"),  # more digits than a double keeps
        ("1e2", "invalid_amount"),
        ("24,50", "invalid_amount"),
        ("", "invalid_amount"),
        ("-1.00", "out_of_range"),
        (-1, "out_of_range"),
        (10**30, "out_of_range"),
        (float("nan"), "invalid_amount"),
        (float("inf"), "invalid_amount"),
        (Decimal("NaN"), "invalid_amount"),
        (True, "wrong_type"),
        ({"amount": "24.50"}, "wrong_type"),
        ([], "wrong_type"),
        ("\u0663", "invalid_amount"),  # an Arabic-Indic digit is not a price
    ],
)
def test_prices_refused(price, issue):
    assert issue_of("orders/create", with_price(price), "line_items[0].price") == issue


def test_minor_units_follow_the_currency():
    payload = with_price("1000", "jpy")
    for key in ("total_price", "subtotal_price"):
        payload[key] = "1000"
    payload["total_shipping_price_set"]["shop_money"]["amount"] = "0"
    for item in payload["line_items"]:
        item["price"] = "1000"
    event = parse_order("orders/create", payload)
    assert event.currency == "JPY"
    assert first_line(event).unit_price == event.total == 1000
    assert issue_of("orders/create", with_price("1000.5", "JPY"), "line_items[0].price") == (
        "too_many_decimals"
    )


@pytest.mark.parametrize("currency", ["US", "USDT", "12$", "", 840, ["USD"]])
def test_a_currency_is_three_letters(currency):
    payload = load("order_create")
    payload["currency"] = currency
    assert issue_of("orders/create", payload, "currency") in (
        "invalid_currency",
        "wrong_type",
        "missing",
    )


def test_decimal_floats_from_the_parser_are_exact():
    raw = (FIXTURES / "order_create.json").read_text()
    payload = json.loads(raw, parse_float=Decimal)
    assert parse_order("orders/create", payload) == parse_order(
        "orders/create", load("order_create")
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-23T10:00:00-05:00", "2026-11-23T15:00:00+00:00"),
        ("2026-11-23T15:00:00Z", "2026-11-23T15:00:00+00:00"),
        ("2026-11-23T15:00:00.987654+00:00", "2026-11-23T15:00:00+00:00"),
        ("2026-11-23T23:30+05:30", "2026-11-23T18:00:00+00:00"),
        ("2026-11-24T01:00:00+10:00", "2026-11-23T15:00:00+00:00"),
    ],
)
def test_timestamps_are_utc_to_the_second(value, expected):
    payload = load("order_create")
    payload["updated_at"] = value
    assert parse_order("orders/updated", payload).updated_at == expected


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-23T10:00:00",  # no offset: which time is it?
        "2026-11-23",
        "2026-02-30T10:00:00Z",
        "2026-11-23T25:00:00Z",
        "2026-11-23T10:00:00+24:00",
        "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
        "23/11/2026 10:00",
        "",
    ],
)
def test_timestamps_refused(value):
    payload = load("order_create")
    payload["updated_at"] = value
    assert issue_of("orders/updated", payload, "updated_at") == "invalid_timestamp"


@pytest.mark.parametrize(
    ("value", "kept"),
    [(40.7484405, "40.7484405"), (1e-05, "0.00001"), (-74, "-74"), ("-73.98", "-73.98")],
)
def test_coordinates_are_kept_as_decimal_strings(value, kept):
    payload = load("order_create")
    payload["shipping_address"]["latitude"] = value
    address = parse_order("orders/create", payload).shipping_address
    assert address and address["latitude"] == kept


@pytest.mark.parametrize(
    ("value", "issue"),
    [
        (91, "invalid_coordinate"),
        ("north", "invalid_coordinate"),
        (float("nan"), "invalid_coordinate"),
        (True, "wrong_type"),
        ({}, "wrong_type"),
    ],
)
def test_coordinates_refused(value, issue):
    payload = load("order_create")
    payload["shipping_address"]["latitude"] = value
    assert issue_of("orders/create", payload, "shipping_address.latitude") == issue


# -- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [None, [], "order", 1, 1.5, True])
def test_the_payload_must_be_an_object(payload):
    assert issues("orders/create", payload) == [{"field": "", "issue": "wrong_type"}]
    with pytest.raises(ValidationFailed):
        parse_refund(payload)


def test_every_problem_is_reported_at_once():
    payload = load("order_create")
    payload["id"] = "gid://shopify/Order/1"
    del payload["updated_at"]
    payload["created_at"] = "yesterday"
    payload["customer"] = "207119551"
    payload["line_items"][0]["quantity"] = "2"
    payload["line_items"][1]["quantity"] = -1
    payload["line_items"][2]["quantity"] = 2.0
    payload["line_items"][2]["price"] = "5.001"
    payload["shipping_address"]["country_code"] = "USA"
    payload["total_shipping_price_set"] = {"shop_money": "10.00"}
    payload["refunds"] = [{"id": 1, "created_at": "2026-11-24T08:15:01Z", "transactions": "x"}]
    assert sorted(issues("orders/updated", payload), key=lambda d: d["field"]) == [
        {"field": "created_at", "issue": "invalid_timestamp"},
        {"field": "customer", "issue": "wrong_type"},
        {"field": "id", "issue": "invalid_id"},
        {"field": "line_items[0].quantity", "issue": "wrong_type"},
        {"field": "line_items[1].quantity", "issue": "out_of_range"},
        {"field": "line_items[2].price", "issue": "too_many_decimals"},
        {"field": "line_items[2].quantity", "issue": "wrong_type"},
        {"field": "refunds[0].transactions", "issue": "wrong_type"},
        {"field": "shipping_address.country_code", "issue": "too_long"},
        {"field": "total_shipping_price_set.shop_money", "issue": "wrong_type"},
        {"field": "updated_at", "issue": "missing"},
    ]


@pytest.mark.parametrize("key", ["id", "updated_at", "currency", "total_price", "line_items"])
def test_required_order_fields(key):
    payload = load("order_create")
    del payload[key]
    assert issue_of("orders/create", payload, key) == "missing"


@pytest.mark.parametrize(
    ("key", "value"), [("id", "order_1"), ("id", 0), ("id", -5), ("id", True), ("id", 2**64)]
)
def test_order_ids_are_positive_integers(key, value):
    payload = load("order_create")
    payload[key] = value
    assert issue_of("orders/create", payload, key) in ("invalid_id", "wrong_type")


def test_a_string_of_digits_is_an_id():
    payload = load("order_create")
    payload["id"] = "820982911946154508"
    payload["customer"]["id"] = "207119551"
    event = parse_order("orders/create", payload)
    assert event.platform_order_id == "820982911946154508"
    assert event.buyer and event.buyer.external_ids == {"shopify": "207119551"}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("line_items", "none"),
        ("line_items", {"0": {}}),
        ("customer", ["x"]),
        ("shipping_address", "350 Fifth Avenue"),
        ("refunds", {}),
        ("total_shipping_price_set", "10.00"),
        ("name", 1001),
        ("email", ["a@example.com"]),
        ("financial_status", {"paid": True}),
    ],
)
def test_a_value_of_the_wrong_shape_is_a_problem_not_a_crash(key, value):
    payload = load("order_create")
    payload[key] = value
    assert issue_of("orders/create", payload, key) == "wrong_type"


def test_a_line_without_sku_or_variant_is_named_by_its_id_and_one_without_ids_is_refused():
    payload = load("order_create")
    payload["line_items"][0].update(sku=None, variant_id=None)
    assert first_line(parse_order("orders/create", payload)).sku == "line-466157049"
    del payload["line_items"][0]["id"]
    assert issue_of("orders/create", payload, "line_items[0].sku") == "missing"


def test_refund_validation():
    payload = load("refund_create")
    del payload["order_id"]
    payload["created_at"] = None
    payload["refund_line_items"][0]["quantity"] = "1"
    payload["refund_line_items"][1]["subtotal_set"]["shop_money"]["amount"] = "13.5.0"
    payload["transactions"][0]["amount"] = 48.744
    payload["restock"] = "yes"
    with pytest.raises(ValidationFailed) as caught:
        parse_refund(payload)
    assert sorted(caught.value.details, key=lambda d: d["field"]) == [
        {"field": "created_at", "issue": "missing"},
        {"field": "order_id", "issue": "missing"},
        {"field": "refund_line_items[0].quantity", "issue": "wrong_type"},
        {"field": "refund_line_items[1].subtotal_set.shop_money.amount", "issue": "invalid_amount"},
        {"field": "restock", "issue": "wrong_type"},
        {"field": "transactions[0].amount", "issue": "too_many_decimals"},
    ]


def test_unknown_fields_are_ignored():
    payload = load("order_create")
    payload["a_field_from_2030"] = {"anything": [1.5, None, "x"]}
    payload["line_items"][0]["new_thing"] = 3.14159265358979
    assert parse_order("orders/create", payload) == parse_order(
        "orders/create", load("order_create")
    )


# -- fuzz ----------------------------------------------------------------------------------------

JUNK: list[Any] = [
    None, True, False, 0, -1, 1, 7, 2**63, 10**30, 1.5, 0.1, -0.0, 1e308, 1e-320,
    123456789012345678.9, float("nan"), float("inf"), Decimal("1.5"), Decimal("NaN"),
    Decimal("sNaN"), Decimal("1e-999999"), Decimal("1e999999"), "", " ", "abc", "12.34",
    "-1.00", "1e5", "NaN", "\u0663", "US", "usd", "paid", "fulfilled", "refund", "success",
    "2026-11-23T10:00:00Z", "2026-11-23T10:00:00", "2026-13-01T00:00:00Z",
    "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "x" * 5000, "00000000000000000001",
    [], {}, [None], {"amount": "1.00"}, {"shop_money": {"amount": "1.00"}},
]  # fmt: skip


def random_json(rng: random.Random, depth: int = 0) -> Any:
    if depth < 2 and rng.random() < 0.15:
        if rng.random() < 0.5:
            return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
        keys = ["id", "amount", "price", "quantity", "shop_money", "sku", "kind", "status"]
        return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    return copy.copy(rng.choice(JUNK))


def all_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += all_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += all_paths(item, (*path, index))
    return found


def mutate(payload: Any, rng: random.Random) -> Any:
    """`payload` with one to three random JSON values put at random paths (or keys deleted)."""
    data = copy.deepcopy(payload)
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(all_paths(data))
        if not path:
            data = random_json(rng)
            continue
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        if isinstance(parent, dict) and rng.random() < 0.2:
            del parent[path[-1]]
        else:
            parent[path[-1]] = random_json(rng)
    return data


READ_KEYS = {
    "id", "name", "email", "phone", "created_at", "updated_at", "processed_at", "currency",
    "total_price", "subtotal_price", "total_shipping_price_set", "shop_money", "amount",
    "financial_status", "fulfillment_status", "cancelled_at", "cancel_reason", "customer",
    "first_name", "last_name", "line_items", "sku", "quantity", "price", "title", "product_id",
    "variant_id", "shipping_address", "country_code", "province", "province_code", "city", "zip",
    "address1", "latitude", "longitude", "refunds", "order_id", "note", "restock",
    "refund_line_items", "line_item_id", "subtotal", "subtotal_set", "currency_code",
    "restock_type", "line_item", "transactions", "kind", "status",
}  # fmt: skip


def only_read_keys(value: Any) -> Any:
    """The payload without the fields the parser ignores, so that mutations hit what it reads."""
    if isinstance(value, dict):
        return {k: only_read_keys(v) for k, v in value.items() if k in READ_KEYS}
    if isinstance(value, list):
        return [only_read_keys(v) for v in value]
    return value


def assert_well_formed(event: OrderEvent) -> None:
    def walk(value: Any) -> None:
        assert not isinstance(value, float), event
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    data = asdict(event)
    walk(data)
    assert event.kind in KINDS
    for moment in (
        event.updated_at,
        event.created_at,
        event.paid_at,
        event.cancelled_at,
        event.fulfilled_at,
        *(r.at for r in event.refunds),
    ):
        assert moment is None or UTC_TIME.fullmatch(moment), moment
    for amount in (event.subtotal, event.shipping, event.total):
        assert amount is None or (isinstance(amount, int) and amount >= 0)
    for line in event.lines or ():
        assert line.sku and isinstance(line.unit_price, int) and isinstance(line.quantity, int)
    for refund in event.refunds:
        assert isinstance(refund.amount, int) and isinstance(refund.goods_amount, int)


@pytest.mark.parametrize(
    ("name", "topic", "seed"),
    [
        ("order_create", "orders/create", 1),
        ("order_guest", "orders/create", 2),
        ("order_cancelled", "orders/cancelled", 3),
        ("order_fulfilled", "orders/updated", 4),
        ("refund_create", "refunds/create", 5),
    ],
)
@pytest.mark.parametrize("strip", [False, True], ids=["as_sent", "read_fields_only"])
def test_fuzz_any_json_anywhere_gives_an_event_or_validation_failed(name, topic, seed, strip):
    payload = load(name)
    if strip:
        payload = only_read_keys(payload)
    rng = random.Random(seed * 1000 + strip)
    outcomes = {"event": 0, "invalid": 0}
    for _ in range(300):
        candidate = mutate(payload, rng)
        try:
            event = parse_order(topic, candidate)
        except ValidationFailed as exc:
            outcomes["invalid"] += 1
            assert exc.details
            assert all(set(d) == {"field", "issue"} for d in exc.details), exc.details
        else:
            outcomes["event"] += 1
            assert_well_formed(event)
    assert outcomes["event"] and outcomes["invalid"]  # the fuzz reaches both outcomes
