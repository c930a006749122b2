"""The generic order webhook format: parsing into `OrderEvent`, its rules, unknown types, the
documented examples and JSON Schema, and a fuzz test."""

from __future__ import annotations

import copy
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from crm.domain.errors import ValidationFailed
from crm.domain.generic_orders import TYPES, claimed_source, is_known_type, parse
from crm.domain.order_events import KINDS, Line, OrderEvent, Refund, RefundLine

ROOT = Path(__file__).resolve().parent.parent.parent
DOC = ROOT / "docs" / "webhooks.md"
SCHEMA = ROOT / "docs" / "webhooks" / "generic-order.schema.json"
UTC_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+00:00")

PAID: dict[str, Any] = {
    "event_id": "evt_01JD7Q3V2K9M",
    "type": "order.paid",
    "occurred_at": "2026-11-23T18:04:31+08:00",
    "source": "woocommerce",
    "order": {
        "id": "5120",
        "name": "#5120",
        "currency": "CNY",
        "created_at": "2026-11-23T18:00:00+08:00",
        "updated_at": "2026-11-23T18:04:31+08:00",
        "subtotal": "199.00",
        "shipping": "10.00",
        "total": "209.00",
        "paid_at": "2026-11-23T18:04:30+08:00",
        "cancelled_at": None,
        "fulfilled_at": None,
        "customer": {
            "id": "88",
            "email": "li.na@example.com",
            "phone": "+8613800138000",
            "first_name": "Na",
            "last_name": "Li",
        },
        "lines": [
            {
                "id": "901",
                "sku": "TEA-OOLONG-100",
                "quantity": 2,
                "price": "89.00",
                "title": "Oolong Tea 100g",
                "product_id": "31",
                "variant_id": "32",
            },
            {"id": "902", "sku": "MUG-CERAMIC", "quantity": 1, "price": "39.00"},
        ],
        "shipping_address": {
            "country_code": "cn",
            "province": "Zhejiang",
            "province_code": "ZJ",
            "city": "Hangzhou",
            "zip": "310000",
            "line1": "1 Wensan Road",
            "latitude": "30.2741",
            "longitude": "120.1551",
        },
        "refunds": [],
    },
}

REFUNDED: dict[str, Any] = {
    "event_id": "evt_01JD9A0B7C1D",
    "type": "order.refunded",
    "occurred_at": "2026-11-26T09:30:00+08:00",
    "source": "woocommerce",
    "order": {"id": "5120", "currency": "CNY"},
    "refund": {
        "id": "r-77",
        "at": "2026-11-26T09:30:00+08:00",
        "amount": "45.76",
        "goods_amount": "35.76",
        "reason": "Mug arrived broken",
        "restock": False,
        "lines": [{"line_id": "902", "quantity": 1, "amount": "35.76"}],
    },
}


def event(**changes: Any) -> dict[str, Any]:
    payload = copy.deepcopy(PAID)
    payload.update(changes)
    return payload


def order(**changes: Any) -> dict[str, Any]:
    payload = copy.deepcopy(PAID)
    payload["order"].update(changes)
    return payload


def issues(payload: Any) -> list[dict[str, str]]:
    with pytest.raises(ValidationFailed) as caught:
        parse(payload)
    return caught.value.details


def issue_of(payload: Any, field: str) -> str | None:
    found = [d["issue"] for d in issues(payload) if d["field"] == field]
    return found[0] if found else None


# -- parsing -------------------------------------------------------------------------------------


def test_an_order_paid():
    event_id, result = parse(copy.deepcopy(PAID))
    assert event_id == "evt_01JD7Q3V2K9M"
    assert result == OrderEvent(
        source="woocommerce",
        platform_order_id="5120",
        kind="paid",
        updated_at="2026-11-23T10:04:31+00:00",
        created_at="2026-11-23T10:00:00+00:00",
        currency="CNY",
        lines=(
            Line("TEA-OOLONG-100", 2, 8900, "Oolong Tea 100g", "901", "31", "32"),
            Line("MUG-CERAMIC", 1, 3900, "", "902"),
        ),
        subtotal=19900,
        shipping=1000,
        total=20900,
        shipping_address={
            "country_code": "CN",
            "province": "Zhejiang",
            "province_code": "ZJ",
            "city": "Hangzhou",
            "zip": "310000",
            "line1": "1 Wensan Road",
            "latitude": "30.2741",
            "longitude": "120.1551",
        },
        buyer=result.buyer,
        name="#5120",
        paid_at="2026-11-23T10:04:30+00:00",
    )
    assert result.order_id == "ord_woocommerce_5120"
    assert result.buyer is not None
    assert result.buyer.external_ids == {"woocommerce": "88"}
    assert (result.buyer.email, result.buyer.phone) == ("li.na@example.com", "+8613800138000")
    assert (result.buyer.first_name, result.buyer.last_name) == ("Na", "Li")


@pytest.mark.parametrize(("type_name", "kind"), list(TYPES.items()))
def test_each_type_has_its_kind(type_name, kind):
    payload = event(type=type_name)
    if kind == "refund":
        payload["refund"] = copy.deepcopy(REFUNDED["refund"])
    assert kind in KINDS
    assert parse(payload)[1].kind == kind


@pytest.mark.parametrize(
    ("type_name", "fact"),
    [("order.paid", "paid_at"), ("order.cancelled", "cancelled_at"),
     ("order.fulfilled", "fulfilled_at")],
)  # fmt: skip
def test_the_type_implies_its_fact_at_occurred_at(type_name, fact):
    payload = order(paid_at=None)
    payload["type"] = type_name
    result = parse(payload)[1]
    assert getattr(result, fact) == "2026-11-23T10:04:31+00:00"


def test_facts_in_the_order_count_whatever_the_type():
    payload = order(
        cancelled_at="2026-11-24T08:00:00Z",
        cancel_reason="out of stock",
        fulfilled_at="2026-11-25T08:00:00Z",
    )
    payload["type"] = "order.updated"
    result = parse(payload)[1]
    assert result.kind == "update"
    assert result.paid_at == "2026-11-23T10:04:30+00:00"
    assert result.cancelled_at == "2026-11-24T08:00:00+00:00"
    assert result.cancel_reason == "out of stock"
    assert result.fulfilled_at == "2026-11-25T08:00:00+00:00"
    # An update that says nothing of payment implies nothing.
    assert parse(order(paid_at=None) | {"type": "order.updated"})[1].paid_at is None


def test_a_cancel_reason_without_cancellation_is_not_a_fact():
    payload = order(cancel_reason="changed mind")
    assert parse(payload)[1].cancel_reason is None


def test_a_refund_with_only_the_order_reference():
    event_id, result = parse(copy.deepcopy(REFUNDED))
    assert event_id == "evt_01JD9A0B7C1D"
    assert result.kind == "refund"
    assert result.platform_order_id == "5120"
    assert result.currency == "CNY"
    assert result.lines is None  # details are neither read nor changed
    assert result.updated_at == "2026-11-26T01:30:00+00:00"  # the refund's
    assert result.refunds == (
        Refund(
            refund_id="r-77",
            at="2026-11-26T01:30:00+00:00",
            amount=4576,
            goods_amount=3576,
            lines=(RefundLine(quantity=1, line_id="902", amount=3576),),
            reason="Mug arrived broken",
            restock=False,
        ),
    )


def test_a_refund_with_the_whole_order_merges_its_refunds():
    payload = copy.deepcopy(REFUNDED)
    payload["order"] = copy.deepcopy(PAID["order"])
    payload["order"]["updated_at"] = "2026-11-26T09:30:00+08:00"
    payload["order"]["refunds"] = [
        {"id": "r-70", "at": "2026-11-24T09:00:00Z", "amount": "10.00"},
        {"id": "r-77", "at": "2026-11-26T09:30:00+08:00", "amount": "1.00"},  # an older copy
    ]
    result = parse(payload)[1]
    assert result.lines is not None and len(result.lines) == 2
    assert result.updated_at == "2026-11-26T01:30:00+00:00"
    assert [(r.refund_id, r.amount, r.goods_amount) for r in result.refunds] == [
        ("r-70", 1000, 1000),  # goods_amount defaults to amount
        ("r-77", 4576, 3576),  # the event's own refund wins over its copy
    ]


def test_the_events_refund_defaults_to_occurred_at_but_the_orders_refunds_need_at():
    payload = copy.deepcopy(REFUNDED)
    del payload["refund"]["at"]
    payload["occurred_at"] = "2026-11-26T10:00:00+08:00"
    assert parse(payload)[1].refunds[0].at == "2026-11-26T02:00:00+00:00"
    payload = order(refunds=[{"id": "r-1", "amount": "1.00"}])
    assert issue_of(payload, "order.refunds[0].at") == "missing"


def test_refund_lines_need_a_line_id_or_a_sku():
    payload = copy.deepcopy(REFUNDED)
    payload["refund"]["lines"] = [{"sku": "MUG-CERAMIC", "quantity": 1}, {"quantity": 1}]
    assert issues(payload) == [{"field": "refund.lines[1].line_id", "issue": "missing"}]
    del payload["refund"]["lines"][1]
    (line,) = parse(payload)[1].refunds[0].lines
    assert line == RefundLine(quantity=1, sku="MUG-CERAMIC", amount=0)


def test_order_refunded_needs_a_refund_and_other_types_the_whole_order():
    payload = copy.deepcopy(REFUNDED)
    del payload["refund"]
    assert issues(payload) == [{"field": "refund", "issue": "missing"}]
    payload = copy.deepcopy(REFUNDED)
    payload["type"] = "order.updated"
    assert sorted(d["field"] for d in issues(payload)) == [
        "order.lines",
        "order.subtotal",
        "order.total",
        "order.updated_at",
    ]


def test_lines_without_sku_are_named_by_id():
    payload = copy.deepcopy(PAID)
    payload["order"]["lines"][1]["sku"] = " "
    lines = parse(payload)[1].lines
    assert lines and lines[1].sku == "line-902"
    del payload["order"]["lines"][1]["id"]
    assert issue_of(payload, "order.lines[1].sku") == "missing"


def test_integer_ids_are_kept_as_text():
    payload = order(id=5120)
    payload["order"]["customer"]["id"] = 88
    payload["event_id"] = 123456
    event_id, result = parse(payload)
    assert (event_id, result.platform_order_id) == ("123456", "5120")
    assert result.buyer and result.buyer.external_ids == {"woocommerce": "88"}


def test_no_customer_means_no_buyer():
    assert parse(order(customer=None))[1].buyer is None
    assert parse(order(customer={"first_name": "Na"}))[1].buyer is None


# -- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [None, [], "order", 1, True])
def test_the_payload_must_be_an_object(payload):
    assert issues(payload) == [{"field": "", "issue": "wrong_type"}]


def test_unknown_types_are_ignored_by_the_caller_and_refused_by_parse():
    payload = event(type="order.archived")
    assert is_known_type(payload) is False
    assert issues(payload) == [{"field": "type", "issue": "unknown_value"}]
    assert is_known_type(event(type="")) is False
    for known in TYPES:
        assert is_known_type(event(type=known)) is True
    # Too broken to have a type: parse says what is wrong (422), rather than a silent 200.
    broken_payloads: list[Any] = [None, [], "x", event(type=None), event(type=7), {"order": {}}]
    for broken in broken_payloads:
        assert is_known_type(broken) is True
        with pytest.raises(ValidationFailed):
            parse(broken)


def test_every_problem_is_reported_at_once():
    payload = event(event_id="", occurred_at="2026-11-23 18:04", source="WooCommerce")
    payload["order"]["currency"] = "yuan"
    payload["order"]["total"] = 209.0
    payload["order"]["lines"][0]["quantity"] = "2"
    payload["order"]["lines"][1]["price"] = "39.001"
    payload["order"]["shipping_address"] = "Hangzhou"
    payload["order"]["customer"]["id"] = "has space"
    assert sorted(issues(payload), key=lambda d: d["field"]) == [
        {"field": "event_id", "issue": "missing"},
        {"field": "occurred_at", "issue": "invalid_timestamp"},
        {"field": "order.currency", "issue": "invalid_currency"},
        {"field": "order.customer.id", "issue": "invalid_id"},
        {"field": "order.lines[0].quantity", "issue": "wrong_type"},
        {"field": "order.shipping_address", "issue": "wrong_type"},
        {"field": "order.total", "issue": "wrong_type"},
        {"field": "source", "issue": "invalid_source"},
    ]


@pytest.mark.parametrize("value", [199, 199.0, "199.001", "1e2", "-1.00", True, {"amount": "1"}])
def test_money_is_a_decimal_string(value):
    assert issue_of(order(subtotal=value), "order.subtotal") in (
        "wrong_type",
        "too_many_decimals",
        "invalid_amount",
        "out_of_range",
    )


def test_money_follows_the_currency():
    payload = order(currency="JPY", subtotal="1990", shipping="0", total="1990")
    for line in payload["order"]["lines"]:
        line["price"] = "995"
    result = parse(payload)[1]
    assert result.lines and result.lines[0].unit_price == 995
    assert (result.subtotal, result.total) == (1990, 1990)


@pytest.mark.parametrize(
    ("source", "issue"),
    [("shopify", "reserved_value"), ("Woo", "invalid_source"), ("1shop", "invalid_source"),
     ("x" * 33, "invalid_source"), (7, "wrong_type"), (None, "missing")],
)  # fmt: skip
def test_the_source_is_a_short_lower_case_name_and_not_shopify(source, issue):
    assert issue_of(event(source=source), "source") == issue


@pytest.mark.parametrize(
    "claimed", [" woocommerce ", "woocommerce", "shopify", "Woo", 7, None, "../ssm"]
)
def test_the_claimed_source_is_the_one_the_event_is_recorded_under(claimed):
    # Given a payload's source as a sender wrote it (the secret is chosen by it),
    # When it is read before the signature is checked, and parsed after,
    # Then both say the same: a source that would be recorded is claimed, nothing else is.
    payload = event(source=claimed)
    try:
        recorded: str | None = parse(payload)[1].source
    except ValidationFailed:
        recorded = None
    assert claimed_source(payload) == recorded
    assert claimed_source([payload]) is None


@pytest.mark.parametrize("order_id", ["#5120", "a b", "-5120", "x" * 65, "", -1, 1.5])
def test_order_ids_are_url_safe(order_id):
    assert issue_of(order(id=order_id), "order.id") in ("invalid_id", "wrong_type", "missing")


@pytest.mark.parametrize("key", ["event_id", "type", "occurred_at", "source", "order"])
def test_required_envelope_fields(key):
    payload = event()
    del payload[key]
    assert issue_of(payload, key) == "missing"


def test_unknown_fields_are_ignored():
    payload = event(version=2, status="paid")
    payload["order"]["status"] = "whatever"
    payload["order"]["lines"][0]["discount"] = 1.5
    assert parse(payload) == parse(copy.deepcopy(PAID))


# -- the documentation ---------------------------------------------------------------------------


def documented_events() -> list[dict[str, Any]]:
    blocks = re.findall(r"```json\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    found = [json.loads(block) for block in blocks]
    return [item for item in found if isinstance(item, dict) and "event_id" in item]


def test_the_documented_examples_parse():
    examples = documented_events()
    assert len(examples) == 2
    paid = parse(examples[0])[1]
    assert (paid.kind, paid.subtotal, paid.total, paid.shipping) == ("paid", 19900, 20900, 1000)
    assert sum(line.quantity * line.unit_price for line in paid.lines or ()) == 21700
    assert parse(examples[1]) == parse(copy.deepcopy(REFUNDED))


@pytest.fixture(scope="module")
def validator() -> Any:
    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_schema_accepts_what_parse_accepts(validator):
    samples = [*documented_events(), PAID, REFUNDED]
    whole_refund = copy.deepcopy(REFUNDED)
    whole_refund["order"] = copy.deepcopy(PAID["order"])
    samples.append(whole_refund)
    for sample in samples:
        parse(copy.deepcopy(sample))
        assert not list(validator.iter_errors(sample)), sample


@pytest.mark.parametrize(
    "payload",
    [
        order(total=209.0),
        order(currency="yuan"),
        order(lines=None),
        order(id="#5120"),
        event(source="shopify"),
        event(occurred_at="2026-11-23T18:04:31"),
        {k: v for k, v in REFUNDED.items() if k != "refund"},
        order(lines=[{"quantity": 1, "price": "1.00"}]),
        order(refunds=[{"id": "r-1", "amount": "1.00"}]),
    ],
)
def test_the_schema_refuses_what_parse_refuses(validator, payload):
    with pytest.raises(ValidationFailed):
        parse(payload)
    assert list(validator.iter_errors(payload))


# -- fuzz ----------------------------------------------------------------------------------------

JUNK: list[Any] = [
    None, True, False, 0, -1, 7, 2**64, 1.5, float("nan"), "", " ", "abc", "12.34", "-1.00",
    "1e5", "shopify", "order.paid", "order.refunded", "woocommerce", "CNY", "cn",
    "2026-11-23T10:00:00Z", "2026-11-23T10:00:00", "0001-01-01T00:00:00+01:00", "x" * 5000,
    [], {}, [None], {"id": "1"}, {"id": "1", "currency": "CNY"},
]  # fmt: skip


def random_json(rng: random.Random, depth: int = 0) -> Any:
    if depth < 2 and rng.random() < 0.15:
        if rng.random() < 0.5:
            return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
        keys = ["id", "amount", "at", "quantity", "sku", "line_id", "currency", "lines"]
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


@pytest.mark.parametrize(("base", "seed"), [(PAID, 11), (REFUNDED, 12)], ids=["paid", "refunded"])
def test_fuzz_any_json_anywhere_gives_an_event_or_validation_failed(base, seed):
    rng = random.Random(seed)
    outcomes = {"event": 0, "invalid": 0, "ignored": 0}
    for _ in range(400):
        candidate = mutate(base, rng)
        if not is_known_type(candidate):
            outcomes["ignored"] += 1
            continue
        try:
            event_id, result = parse(candidate)
        except ValidationFailed as exc:
            outcomes["invalid"] += 1
            assert exc.details
            assert all(set(d) == {"field", "issue"} for d in exc.details), exc.details
        else:
            outcomes["event"] += 1
            assert isinstance(event_id, str) and event_id
            assert result.kind in KINDS
            assert UTC_TIME.fullmatch(result.updated_at)
            assert all(isinstance(r.amount, int) for r in result.refunds)
    assert outcomes["event"] and outcomes["invalid"]
