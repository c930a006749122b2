"""The project's generic order webhook format (`POST /webhooks/orders`), for platforms other
than Shopify, parsed into `OrderEvent`. Pure: standard library and `crm.domain` only.

The format (JSON Schema: docs/webhooks/generic-order.schema.json; guide: docs/webhooks.md)::

    {"event_id": "evt_123",               # the delivery's id: repeats are deduplicated on it
     "type": "order.created",             # see TYPES
     "occurred_at": "2026-11-23T10:00:00+08:00",
     "source": "woocommerce",             # the platform: [a-z][a-z0-9_-]{0,31}, not "shopify"
     "order": {"id": "1001", "currency": "CNY", "updated_at": "...", "created_at": "...",
               "name": "#1001", "subtotal": "199.00", "shipping": "10.00", "total": "209.00",
               "paid_at": "...", "cancelled_at": "...", "cancel_reason": "...",
               "fulfilled_at": "...",
               "customer": {"id", "email", "phone", "first_name", "last_name"},
               "lines": [{"id", "sku", "quantity", "price", "title", "product_id",
                          "variant_id"}],
               "shipping_address": {"country_code", "province", "province_code", "city", "zip",
                                    "line1", "latitude", "longitude"},
               "refunds": [REFUND, ...]},
     "refund": REFUND}                    # order.refunded only
    REFUND = {"id", "at", "amount", "goods_amount", "reason", "restock",
              "lines": [{"line_id" or "sku", "quantity", "amount"}]}

Rules:

* `order` always has `id` and `currency`. Every type but `order.refunded` sends the whole order:
  `updated_at`, `subtotal`, `total` and `lines` are required. `order.refunded` requires
  `refund` and may send only `{"id", "currency"}` as `order`: without `lines` the order's
  details are neither read nor changed (the event's `updated_at` is then the refund's `at`).
* Details (lines, totals, address, customer) are taken only from an event with a newer
  `order.updated_at`; facts (`paid_at`, `cancelled_at`, `fulfilled_at`, `refunds`) are merged
  whatever the order of arrival. The fact a type names is implied by it: an `order.paid`
  without `order.paid_at` was paid at `occurred_at` (likewise cancelled, fulfilled, and a
  `refund` without `at`).
* Money is a decimal string only (`"199.00"`; no JSON numbers, no exponent, no sign), with at
  most the currency's decimals. `goods_amount` (what points are reversed on) defaults to
  `amount`: send it when `amount` includes shipping. A refund line's `amount` defaults to "0".
* Ids are strings (or JSON integers, kept as text): `order.id` is `[A-Za-z0-9][A-Za-z0-9._-]`
  up to 64 characters (it becomes part of the project's order id); the others are up to 128
  printable ASCII characters without spaces.
* Timestamps, quantities, currencies, addresses and coordinates follow `crm.domain.shopify`'s
  rules (RFC 3339 with an offset, normalised to UTC to the second).
* Unknown fields are ignored. Every problem is reported at once in `ValidationFailed`.
* An unknown `type` (a string not in TYPES) makes `parse` fail with `unknown_value`, but
  `is_known_type` says False for it first, so the endpoint answers 200 and ignores the delivery:
  a sender newer than this CRM is not an error. A missing or non-string `type` is an error.
* The buyer's external id is `{source: customer.id}`.
"""

from __future__ import annotations

import re
from typing import Any

from crm.domain.errors import ValidationFailed
from crm.domain.order_events import Buyer, Line, OrderEvent, Refund, RefundLine
from crm.domain.shopify import Reader, at

TYPES = {
    "order.created": "create",
    "order.updated": "update",
    "order.paid": "paid",
    "order.cancelled": "cancelled",
    "order.fulfilled": "fulfilled",
    "order.refunded": "refund",
}
# Sources with an endpoint of their own: the generic format may not write their orders.
RESERVED_SOURCES = ("shopify",)
ADDRESS_KEYS = {
    key: key for key in ("country_code", "province", "province_code", "city", "zip", "line1")
}
_SOURCE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_ORDER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ID = re.compile(r"[!-~]{1,128}")
_MESSAGE = "the order event has invalid fields"


def is_known_type(payload: Any) -> bool:
    """Whether to `parse` this payload: False only for a JSON object whose `type` is a string
    that is not one of TYPES (answer 200 and ignore it). Anything else, including a payload too
    broken to have a type, is True, and `parse` reports what is wrong."""
    if not isinstance(payload, dict):
        return True
    kind = payload.get("type")
    return not isinstance(kind, str) or kind.strip() in TYPES


def claimed_source(payload: Any) -> str | None:
    """The `source` that `parse` would record for this payload, read the same way (so the
    secret chosen for it is the one of the source the event is recorded under); None when the
    payload has no valid source, which `parse` then reports."""
    if not isinstance(payload, dict):
        return None
    return _read_source(Reader(), payload)


def parse(payload: Any) -> tuple[str, OrderEvent]:
    """(`event_id`, the event) from a generic webhook payload; `ValidationFailed` listing every
    problem otherwise. See the module's rules."""
    if not isinstance(payload, dict):
        raise ValidationFailed(
            "the payload must be a JSON object", details=[{"field": "", "issue": "wrong_type"}]
        )
    r = Reader()
    event_id = _read_id(r, payload, "event_id", "", _ID, required=True)
    type_name = r.read_text(payload, "type", "", required=True, max_len=64)
    kind = TYPES.get(type_name or "")
    if type_name and kind is None:
        r.fail("type", "unknown_value")
    occurred_at = r.read_timestamp(payload, "occurred_at", "", required=True)
    source = _read_source(r, payload)
    order = r.read_object(payload, "order", "", required=True)
    if kind is None or order is None:
        r.check(_MESSAGE)
        raise AssertionError("unreachable: a problem was recorded")

    order_id = _read_id(r, order, "id", "order", _ORDER_ID, required=True)
    currency = r.read_currency(order, "currency", "order", required=True)
    details = kind != "refund" or order.get("lines") is not None
    refund: Refund | None = None
    if kind == "refund":
        top = r.read_object(payload, "refund", "", required=True)
        if top is not None:
            refund = _refund(r, top, "refund", currency, default_at=occurred_at)
    facts = _facts(r, order, currency)
    if details:
        event = _details(r, order, source, currency)
    else:
        event = {"updated_at": refund.at if refund else None, "lines": None}
    r.check(_MESSAGE)
    assert event_id and source and order_id and occurred_at and event["updated_at"]

    implied = {"paid": "paid_at", "cancelled": "cancelled_at", "fulfilled": "fulfilled_at"}
    if kind in implied and not facts[implied[kind]]:
        facts[implied[kind]] = occurred_at
    if not facts["cancelled_at"]:
        facts["cancel_reason"] = None
    refunds = facts.pop("refunds")
    if refund is not None:  # the event's own refund wins over a copy in `order.refunds`
        refunds = (*(x for x in refunds if x.refund_id != refund.refund_id), refund)
    return event_id, OrderEvent(
        source=source,
        platform_order_id=order_id,
        kind=kind,
        currency=currency,
        refunds=refunds,
        # The whole order with its `refunds` list: every refund as of its `updated_at`.
        refunds_complete=details and isinstance(order.get("refunds"), list),
        **event,
        **facts,
    )


def _read_source(r: Reader, payload: dict[str, Any]) -> str | None:
    source = r.read_text(payload, "source", "", required=True, max_len=64)
    if source is None:
        return None
    if not _SOURCE.fullmatch(source):
        r.fail("source", "invalid_source")
        return None
    if source in RESERVED_SOURCES:
        r.fail("source", "reserved_value")
        return None
    return source


def _read_id(
    r: Reader,
    data: dict[str, Any],
    key: str,
    path: str,
    pattern: re.Pattern[str],
    *,
    required: bool = False,
) -> str | None:
    """A string id matching `pattern`, or a non-negative JSON integer (kept as text)."""
    value = r.raw(data, key, path, required)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        r.fail(at(path, key), "wrong_type")
        return None
    if isinstance(value, int):
        if not 0 <= value < 10**19:
            r.fail(at(path, key), "invalid_id")
            return None
        return str(value)
    text = value.strip()
    if not text:  # a blank id is neither an id nor absent (null is absent): the schema says so
        r.fail(at(path, key), "missing" if required else "invalid_id")
        return None
    if not pattern.fullmatch(text):
        r.fail(at(path, key), "invalid_id")
        return None
    return text


def _amount(
    r: Reader,
    data: dict[str, Any],
    key: str,
    path: str,
    currency: str | None,
    *,
    required: bool = False,
) -> int | None:
    value = r.read_amount(data, key, path, required=required, numbers=False)
    return r.to_minor(value, currency, at(path, key))


def _facts(r: Reader, order: dict[str, Any], currency: str | None) -> dict[str, Any]:
    refunds: list[Refund] = []
    seen: set[str] = set()
    for path, item in r.read_objects(order, "refunds", "order"):
        refund = _refund(r, item, path, currency)
        if refund is not None and refund.refund_id not in seen:
            refunds.append(refund)
            seen.add(refund.refund_id)
    return {
        "paid_at": r.read_timestamp(order, "paid_at", "order"),
        "cancelled_at": r.read_timestamp(order, "cancelled_at", "order"),
        "cancel_reason": r.read_text(order, "cancel_reason", "order", max_len=200),
        "fulfilled_at": r.read_timestamp(order, "fulfilled_at", "order"),
        "refunds": tuple(refunds),
    }


def _details(
    r: Reader, order: dict[str, Any], source: str | None, currency: str | None
) -> dict[str, Any]:
    lines: list[Line] = []
    for path, item in r.read_objects(order, "lines", "order", required=True):
        line = _line(r, item, path, currency)
        if line is not None:
            lines.append(line)
    address, _ = r.read_address(order, "shipping_address", "order", ADDRESS_KEYS)
    return {
        "updated_at": r.read_timestamp(order, "updated_at", "order", required=True),
        "created_at": r.read_timestamp(order, "created_at", "order"),
        "name": r.read_text(order, "name", "order", max_len=200),
        "subtotal": _amount(r, order, "subtotal", "order", currency, required=True),
        "shipping": _amount(r, order, "shipping", "order", currency),
        "total": _amount(r, order, "total", "order", currency, required=True),
        "lines": tuple(lines),
        "shipping_address": address,
        "buyer": _buyer(r, order, source),
    }


def _line(r: Reader, item: dict[str, Any], path: str, currency: str | None) -> Line | None:
    line_id = _read_id(r, item, "id", path, _ID)
    sku = r.read_text(item, "sku", path, max_len=255)
    title = r.read_text(item, "title", path) or ""
    product_id = _read_id(r, item, "product_id", path, _ID)
    variant_id = _read_id(r, item, "variant_id", path, _ID)
    quantity = r.read_quantity(item, "quantity", path, required=True)
    price = _amount(r, item, "price", path, currency, required=True)
    if not sku and line_id:
        sku = f"line-{line_id}"
    if not sku:
        r.fail(at(path, "sku"), "missing")
    if not sku or quantity is None or price is None:
        return None
    return Line(
        sku=sku,
        quantity=quantity,
        unit_price=price,
        title=title,
        line_id=line_id,
        product_id=product_id,
        variant_id=variant_id,
    )


def _buyer(r: Reader, order: dict[str, Any], source: str | None) -> Buyer | None:
    customer = r.read_object(order, "customer", "order")
    if customer is None:
        return None
    path = "order.customer"
    customer_id = _read_id(r, customer, "id", path, _ID)
    buyer = Buyer(
        external_ids={source: customer_id} if source and customer_id else {},
        email=r.read_text(customer, "email", path, max_len=320),
        phone=r.read_text(customer, "phone", path, max_len=64),
        first_name=r.read_text(customer, "first_name", path, max_len=200),
        last_name=r.read_text(customer, "last_name", path, max_len=200),
    )
    return buyer if buyer.external_ids or buyer.email or buyer.phone else None


def _refund(
    r: Reader,
    data: dict[str, Any],
    path: str,
    currency: str | None,
    *,
    default_at: str | None = None,
) -> Refund | None:
    refund_id = _read_id(r, data, "id", path, _ID, required=True)
    when = r.read_timestamp(data, "at", path, required=default_at is None) or default_at
    amount = _amount(r, data, "amount", path, currency, required=True)
    goods_amount = _amount(r, data, "goods_amount", path, currency)
    reason = r.read_text(data, "reason", path)
    restock = bool(r.read_flag(data, "restock", path))
    lines: list[RefundLine] = []
    for line_path, item in r.read_objects(data, "lines", path):
        line_id = _read_id(r, item, "line_id", line_path, _ID)
        sku = r.read_text(item, "sku", line_path, max_len=255)
        quantity = r.read_quantity(item, "quantity", line_path, required=True)
        line_amount = _amount(r, item, "amount", line_path, currency)
        if not (line_id or sku):
            r.fail(at(line_path, "line_id"), "missing")
        if quantity is not None:
            lines.append(
                RefundLine(quantity=quantity, line_id=line_id, sku=sku, amount=line_amount or 0)
            )
    if refund_id is None or when is None or amount is None:
        return None
    return Refund(
        refund_id=refund_id,
        at=when,
        amount=amount,
        goods_amount=amount if goods_amount is None else goods_amount,
        lines=tuple(lines),
        reason=reason,
        restock=restock,
    )
