"""Shopify order webhooks parsed into `OrderEvent`. Pure: standard library and `crm.domain` only.

Payloads are Shopify's REST JSON as Shopify sends it: an Order for the `orders/*` topics, a
Refund for `refunds/create`. The rules, shared with the generic format (`generic_orders`, which
reuses `Reader` from here):

* Every JSON value at every position gives either an `OrderEvent` or `ValidationFailed`, whose
  `details` list every problem at once (`{"field": "line_items[2].quantity", "issue": ...}`);
  never an `AttributeError`/`TypeError`/`KeyError`. Types are checked strictly (a string where
  an object is expected is a problem). A null counts as absent. Fields not read here are
  ignored, whatever their value: Shopify adds fields over time.
* Money: a decimal string (`"199.00"`, up to 15 integer digits, no exponent, no sign) is read
  as it is. Shopify's JSON prices are strings, but some fields are numbers (a refund line's
  `subtotal` is `199.0`). A JSON integer is exact and accepted. A JSON number that became a
  float is accepted only when its shortest decimal form (`str()`) has at most 15 significant
  digits: any decimal literal that short converts to a double and back unchanged, so `str()`
  gives back exactly what was sent; a longer one may not, and is refused (`wrong_type`).
  A `Decimal` (from `json.loads(..., parse_float=Decimal)`) is exact and accepted. NaN,
  infinities and negative amounts are refused. The value becomes integer minor units of the
  order's currency (`money.to_minor`), which refuses more decimals than the currency has.
* Currencies are three ASCII letters, upper-cased. Country codes are two letters, upper-cased.
* Timestamps are ISO 8601 / RFC 3339 date-times with an offset (`Z` or `±hh:mm`); a time without
  an offset is refused. They come out in UTC to the second: `2026-11-23T10:00:00+00:00`.
* Shopify ids are positive integers (a string of digits is accepted too) and become strings.
* Quantities are JSON integers from 0 to 1,000,000,000.
* Coordinates (`latitude`, `longitude`) are kept as decimal strings (`"45.41634"`), never floats.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from crm.domain.errors import ValidationFailed
from crm.domain.money import to_minor
from crm.domain.order_events import Buyer, Line, OrderEvent, Refund, RefundLine

SOURCE = "shopify"
# The order topics handled here (customer topics are handled elsewhere).
TOPICS = (
    "orders/create",
    "orders/updated",
    "orders/paid",
    "orders/cancelled",
    "orders/fulfilled",
    "refunds/create",
)
ORDER_KINDS = {
    "orders/create": "create",
    "orders/updated": "update",
    "orders/paid": "paid",
    "orders/cancelled": "cancelled",
    "orders/fulfilled": "fulfilled",
}
# financial_status values that mean the money was taken (refunds do not undo the payment).
PAID_STATUSES = ("paid", "partially_refunded", "refunded")
# refund_line_items[].restock_type values that put the goods back in stock.
RESTOCK_TYPES = ("return", "cancel", "legacy_restock")
# Shopify's shipping address keys -> the contract's address keys.
ADDRESS_KEYS = {
    "country_code": "country_code",
    "province": "province",
    "province_code": "province_code",
    "city": "city",
    "zip": "zip",
    "address1": "line1",
}

MAX_TEXT = 2000
MAX_QUANTITY = 1_000_000_000
MAX_AMOUNT = Decimal(10) ** 15  # units of currency
MAX_FLOAT_DIGITS = 15  # every decimal literal with at most 15 significant digits survives a double
_AMOUNT = re.compile(r"[0-9]{1,15}(?:\.[0-9]{1,12})?")
_DIGITS = re.compile(r"[0-9]{1,19}")
_CURRENCY = re.compile(r"[A-Za-z]{3}")
_COUNTRY = re.compile(r"[A-Za-z]{2}")
_COORDINATE = re.compile(r"-?[0-9]{1,3}(?:\.[0-9]{1,15})?")
_TIMESTAMP = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt ]([0-9]{2}:[0-9]{2})(:[0-9]{2})?(?:\.[0-9]{1,9})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def at(path: str, key: str | int) -> str:
    """The path of `key` inside `path`: `line_items[2].quantity`."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


class Reader:
    """Reads fields out of untrusted JSON, collecting every problem instead of raising.

    Each `read_*` method takes the object, the key and the path of the object, returns the
    value (or None when it is absent or wrong) and records a problem when it is wrong, or when
    it is absent and `required`. `check` raises `ValidationFailed` with all of them.
    """

    def __init__(self) -> None:
        self.problems: list[dict[str, str]] = []

    def fail(self, path: str, issue: str) -> None:
        self.problems.append({"field": path, "issue": issue})

    def check(self, message: str) -> None:
        if self.problems:
            raise ValidationFailed(message, details=list(self.problems))

    def raw(self, data: dict[str, Any], key: str, path: str, required: bool) -> Any:
        value = data.get(key)
        if value is None and required:
            self.fail(at(path, key), "missing")
        return value

    def read_object(
        self, data: dict[str, Any], key: str, path: str, *, required: bool = False
    ) -> dict[str, Any] | None:
        value = self.raw(data, key, path, required)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.fail(at(path, key), "wrong_type")
            return None
        return value

    def read_objects(
        self, data: dict[str, Any], key: str, path: str, *, required: bool = False
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """The (path, object) of each entry of an array of objects; a non-object entry is a
        problem and is skipped."""
        value = self.raw(data, key, path, required)
        if value is None:
            return
        if not isinstance(value, list):
            self.fail(at(path, key), "wrong_type")
            return
        for index, item in enumerate(value):
            item_path = at(at(path, key), index)
            if isinstance(item, dict):
                yield item_path, item
            else:
                self.fail(item_path, "wrong_type")

    def read_text(
        self,
        data: dict[str, Any],
        key: str,
        path: str,
        *,
        required: bool = False,
        max_len: int = MAX_TEXT,
    ) -> str | None:
        """A string, stripped; an empty one counts as absent."""
        value = self.raw(data, key, path, required)
        if value is None:
            return None
        if not isinstance(value, str):
            self.fail(at(path, key), "wrong_type")
            return None
        text = value.strip()
        if len(text) > max_len:
            self.fail(at(path, key), "too_long")
            return None
        if not text and required:
            self.fail(at(path, key), "missing")
        return text or None

    def read_flag(self, data: dict[str, Any], key: str, path: str) -> bool | None:
        value = self.raw(data, key, path, False)
        if value is None:
            return None
        if not isinstance(value, bool):
            self.fail(at(path, key), "wrong_type")
            return None
        return value

    def read_timestamp(
        self, data: dict[str, Any], key: str, path: str, *, required: bool = False
    ) -> str | None:
        value = self.raw(data, key, path, required)
        if value is None:
            return None
        if not isinstance(value, str):
            self.fail(at(path, key), "wrong_type")
            return None
        moment = parse_timestamp(value)
        if moment is None:
            self.fail(at(path, key), "invalid_timestamp")
        return moment

    def read_currency(
        self, data: dict[str, Any], key: str, path: str, *, required: bool = False
    ) -> str | None:
        value = self.raw(data, key, path, required)
        if value is None:
            return None
        if not isinstance(value, str):
            self.fail(at(path, key), "wrong_type")
            return None
        if not _CURRENCY.fullmatch(value.strip()):
            self.fail(at(path, key), "invalid_currency")
            return None
        return value.strip().upper()

    def read_quantity(
        self, data: dict[str, Any], key: str, path: str, *, required: bool = False
    ) -> int | None:
        value = self.raw(data, key, path, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(at(path, key), "wrong_type")
            return None
        if not 0 <= value <= MAX_QUANTITY:
            self.fail(at(path, key), "out_of_range")
            return None
        return value

    def read_amount(
        self,
        data: dict[str, Any],
        key: str,
        path: str,
        *,
        required: bool = False,
        numbers: bool = True,
    ) -> Decimal | None:
        """A non-negative amount as an exact `Decimal` (see the module's rules). With
        `numbers=False` only decimal strings are accepted."""
        value = self.raw(data, key, path, required)
        if value is None:
            return None
        amount, issue = decimal_amount(value, numbers=numbers)
        if issue:
            self.fail(at(path, key), issue)
        return amount

    def to_minor(self, amount: Decimal | None, currency: str | None, path: str) -> int | None:
        """`amount` in minor units of `currency`; None when either is unknown."""
        if amount is None or currency is None:
            return None
        try:
            return to_minor(amount, currency, field=path)
        except ValidationFailed as exc:
            self.problems.extend(exc.details)
            return None

    def read_shopify_id(
        self, data: dict[str, Any], key: str, path: str, *, required: bool = False
    ) -> str | None:
        value = self.raw(data, key, path, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | str):
            self.fail(at(path, key), "wrong_type")
            return None
        if isinstance(value, str):
            if not _DIGITS.fullmatch(value.strip()):
                self.fail(at(path, key), "invalid_id")
                return None
            value = int(value.strip())
        if not 0 < value < 2**63:
            self.fail(at(path, key), "invalid_id")
            return None
        return str(value)

    def read_coordinate(
        self, data: dict[str, Any], key: str, path: str, *, limit: int
    ) -> str | None:
        """A latitude (`limit` 90) or longitude (180) as a decimal string."""
        value = self.raw(data, key, path, False)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
            self.fail(at(path, key), "wrong_type")
            return None
        text = coordinate_text(value, limit)
        if text is None:
            self.fail(at(path, key), "invalid_coordinate")
        return text

    def read_address(
        self, data: dict[str, Any], key: str, path: str, keys: dict[str, str]
    ) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """(the address as the contract keeps it, or None; the raw object, or {})."""
        raw = self.read_object(data, key, path)
        if raw is None:
            return None, {}
        path = at(path, key)
        address: dict[str, Any] = {}
        for source_key, target_key in keys.items():
            if source_key == "country_code":
                text = self.read_text(raw, source_key, path, max_len=2)
                if text is not None:
                    if _COUNTRY.fullmatch(text):
                        address[target_key] = text.upper()
                    else:
                        self.fail(at(path, source_key), "invalid_country")
                continue
            text = self.read_text(raw, source_key, path, max_len=200)
            if text is not None:
                address[target_key] = text
        for name, limit in (("latitude", 90), ("longitude", 180)):
            coordinate = self.read_coordinate(raw, name, path, limit=limit)
            if coordinate is not None:
                address[name] = coordinate
        return address or None, raw


def parse_timestamp(value: str) -> str | None:
    """An ISO 8601 date-time with an offset, in UTC to the second; None if it is not one."""
    match = _TIMESTAMP.fullmatch(value.strip())
    if not match:
        return None
    day, hour_minute, seconds, offset = match.groups()
    offset = "+00:00" if offset in ("Z", "z") else offset
    try:
        moment = datetime.fromisoformat(f"{day}T{hour_minute}{seconds or ':00'}{offset}")
        return moment.astimezone(UTC).isoformat(timespec="seconds")
    except (ValueError, OverflowError):
        return None


def coordinate_text(value: int | float | Decimal | str, limit: int) -> str | None:
    """A coordinate as a decimal string of at most 15 decimals within +-`limit`, or None."""
    if isinstance(value, str):
        text = value.strip()
        if not _COORDINATE.fullmatch(text) or abs(Decimal(text)) > limit:
            return None
        return text
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        value = Decimal(repr(value))
    elif isinstance(value, int):
        if abs(value) > limit:
            return None
        value = Decimal(value)
    if not value.is_finite() or abs(value) > limit:
        return None
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int) or exponent < -15:
        return None
    return f"{value:f}"


def decimal_amount(value: Any, *, numbers: bool = True) -> tuple[Decimal | None, str | None]:
    """(the amount, None) or (None, the issue): see the module's rules on money."""
    amount: Decimal
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("-") and _AMOUNT.fullmatch(text[1:]):
            return None, "out_of_range"
        if not _AMOUNT.fullmatch(text):
            return None, "invalid_amount"
        amount = Decimal(text)
    elif not numbers or isinstance(value, bool):
        return None, "wrong_type"
    elif isinstance(value, int):
        if not 0 <= value <= MAX_AMOUNT:
            return None, "out_of_range"
        amount = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            return None, "invalid_amount"
        amount = Decimal(repr(value))
        if len(amount.normalize().as_tuple().digits) > MAX_FLOAT_DIGITS:
            return None, "wrong_type"
    elif isinstance(value, Decimal):
        if not value.is_finite():
            return None, "invalid_amount"
        amount = value
    else:
        return None, "wrong_type"
    if amount < 0 or amount > MAX_AMOUNT:
        return None, "out_of_range"
    return amount, None


def _sku(sku: str | None, variant_id: str | None, line_id: str | None) -> str | None:
    if sku:
        return sku
    if variant_id:
        return f"variant-{variant_id}"
    if line_id:
        return f"line-{line_id}"
    return None


def _not_an_object(payload: Any) -> None:
    if not isinstance(payload, dict):
        raise ValidationFailed(
            "the payload must be a JSON object", details=[{"field": "", "issue": "wrong_type"}]
        )


def parse_order(topic: str, payload: Any) -> OrderEvent:
    """An `orders/*` payload (a Shopify REST Order) as an `OrderEvent`.

    The kind comes from the topic; the facts come from the payload whatever the topic:
    `paid_at` when `financial_status` is paid, partially_refunded or refunded (the order's
    `processed_at`, else `updated_at`); `cancelled_at` and `cancel_reason` from the order;
    `fulfilled_at` (= `updated_at`) when `fulfillment_status` is "fulfilled"; `refunds` from
    `refunds`. An unknown `financial_status` or `fulfillment_status` string implies no fact.
    `refunds/create` is passed to `parse_refund`. Another topic is the caller's mistake
    (check `topic in TOPICS` first) and raises `ValueError`.
    """
    if topic == "refunds/create":
        return parse_refund(payload)
    kind = ORDER_KINDS.get(topic)
    if kind is None:
        raise ValueError(f"not an order topic: {topic!r}")
    _not_an_object(payload)
    r = Reader()
    order_id = r.read_shopify_id(payload, "id", "", required=True)
    updated_at = r.read_timestamp(payload, "updated_at", "", required=True)
    created_at = r.read_timestamp(payload, "created_at", "")
    processed_at = r.read_timestamp(payload, "processed_at", "")
    cancelled_at = r.read_timestamp(payload, "cancelled_at", "")
    cancel_reason = r.read_text(payload, "cancel_reason", "", max_len=200)
    name = r.read_text(payload, "name", "", max_len=200)
    currency = r.read_currency(payload, "currency", "", required=True)
    total = r.read_amount(payload, "total_price", "", required=True)
    subtotal = r.read_amount(payload, "subtotal_price", "", required=True)
    shipping: Decimal | None = None
    shipping_set = r.read_object(payload, "total_shipping_price_set", "")
    if shipping_set is not None:
        shop_money = r.read_object(shipping_set, "shop_money", "total_shipping_price_set")
        if shop_money is not None:
            shipping = r.read_amount(
                shop_money, "amount", "total_shipping_price_set.shop_money", required=True
            )
    financial_status = r.read_text(payload, "financial_status", "", max_len=64)
    fulfillment_status = r.read_text(payload, "fulfillment_status", "", max_len=64)

    lines: list[Line] = []
    for path, item in r.read_objects(payload, "line_items", "", required=True):
        line = _line(r, item, path, currency)
        if line is not None:
            lines.append(line)

    address, raw_address = r.read_address(payload, "shipping_address", "", ADDRESS_KEYS)
    buyer = _buyer(r, payload, raw_address)
    refunds: list[Refund] = []
    for path, item in r.read_objects(payload, "refunds", ""):
        refund, _ = _refund(r, item, path, currency)
        if refund is not None:
            refunds.append(refund)
    minor_total = r.to_minor(total, currency, "total_price")
    minor_subtotal = r.to_minor(subtotal, currency, "subtotal_price")
    minor_shipping = r.to_minor(shipping, currency, "total_shipping_price_set.shop_money.amount")
    r.check("the Shopify order has invalid fields")
    assert order_id is not None and updated_at is not None

    paid_at = (processed_at or updated_at) if financial_status in PAID_STATUSES else None
    return OrderEvent(
        source=SOURCE,
        platform_order_id=order_id,
        kind=kind,
        updated_at=updated_at,
        created_at=created_at,
        currency=currency,
        lines=tuple(lines),
        subtotal=minor_subtotal,
        shipping=minor_shipping,
        total=minor_total,
        shipping_address=address,
        buyer=buyer,
        name=name,
        paid_at=paid_at,
        cancelled_at=cancelled_at,
        cancel_reason=cancel_reason if cancelled_at else None,
        fulfilled_at=updated_at if fulfillment_status == "fulfilled" else None,
        refunds=tuple(refunds),
        # A Shopify Order lists all its refunds: what the platform had refunded at `updated_at`.
        refunds_complete=isinstance(payload.get("refunds"), list),
    )


def _line(r: Reader, item: dict[str, Any], path: str, currency: str | None) -> Line | None:
    line_id = r.read_shopify_id(item, "id", path)
    variant_id = r.read_shopify_id(item, "variant_id", path)
    product_id = r.read_shopify_id(item, "product_id", path)
    sku = r.read_text(item, "sku", path, max_len=255)
    title = r.read_text(item, "title", path) or ""
    quantity = r.read_quantity(item, "quantity", path, required=True)
    price = r.to_minor(
        r.read_amount(item, "price", path, required=True), currency, at(path, "price")
    )
    sku = _sku(sku, variant_id, line_id)
    if sku is None:
        r.fail(at(path, "sku"), "missing")
    if sku is None or quantity is None or price is None:
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


def _buyer(r: Reader, order: dict[str, Any], address: dict[str, Any]) -> Buyer | None:
    """Who bought: the customer object, else the order's own contact, else the address."""
    customer = r.read_object(order, "customer", "") or {}
    customer_id = r.read_shopify_id(customer, "id", "customer")
    email = r.read_text(customer, "email", "customer", max_len=320)
    phone = r.read_text(customer, "phone", "customer", max_len=64)
    first = r.read_text(customer, "first_name", "customer", max_len=200)
    last = r.read_text(customer, "last_name", "customer", max_len=200)
    order_email = r.read_text(order, "email", "", max_len=320)
    order_phone = r.read_text(order, "phone", "", max_len=64)
    address_phone = r.read_text(address, "phone", "shipping_address", max_len=64)
    address_first = r.read_text(address, "first_name", "shipping_address", max_len=200)
    address_last = r.read_text(address, "last_name", "shipping_address", max_len=200)
    if not (first or last):  # a name is taken whole from one place, never mixed
        first, last = address_first, address_last
    buyer = Buyer(
        external_ids={SOURCE: customer_id} if customer_id else {},
        email=email or order_email,
        phone=phone or order_phone or address_phone,
        first_name=first,
        last_name=last,
    )
    return buyer if buyer.external_ids or buyer.email or buyer.phone else None


def parse_refund(payload: Any, *, currency: str | None = None) -> OrderEvent:
    """A `refunds/create` payload (a Shopify Refund) as an `OrderEvent` of kind "refund".

    `amount` is the sum of the `transactions` of kind "refund" whose status is "success" (or
    absent); `goods_amount` the sum of the `refund_line_items` subtotals (`subtotal_set`'s shop
    money, else `subtotal`), or `amount` when there are no refund lines (the caller caps it at
    the order's subtotal). A shipping refund shows in `amount` only. `restock` is the payload's
    `restock`, or any refund line's `restock_type` of return/cancel. The event carries no
    details (`lines` is None); `updated_at` is the refund's `created_at`.

    The currency (for the minor units, and the event's `currency`) is the transactions', else
    the refund lines' shop money's, else the `currency` argument (the order's, if the caller
    knows it); when none is known and there are amounts, that is a problem.
    """
    _not_an_object(payload)
    r = Reader()
    order_id = r.read_shopify_id(payload, "order_id", "", required=True)
    fallback = currency.strip().upper() if currency else None
    refund, found = _refund(r, payload, "", None, fallback_currency=fallback)
    r.check("the Shopify refund has invalid fields")
    assert order_id is not None and refund is not None
    return OrderEvent(
        source=SOURCE,
        platform_order_id=order_id,
        kind="refund",
        updated_at=refund.at,
        currency=found,
        lines=None,
        refunds=(refund,),
    )


def _refund(
    r: Reader,
    data: dict[str, Any],
    path: str,
    order_currency: str | None,
    *,
    fallback_currency: str | None = None,
) -> tuple[Refund | None, str | None]:
    """(the refund, the currency its amounts were read in). Inside an order, `order_currency`
    is the order's and wins; alone, the currency is looked for in the payload."""
    refund_id = r.read_shopify_id(data, "id", path, required=True)
    created_at = r.read_timestamp(data, "created_at", path, required=True)
    note = r.read_text(data, "note", path)
    restock = bool(r.read_flag(data, "restock", path))
    currencies: list[str] = []
    paid: list[tuple[Decimal, str]] = []
    for tx_path, tx in r.read_objects(data, "transactions", path):
        kind = r.read_text(tx, "kind", tx_path, max_len=64)
        status = r.read_text(tx, "status", tx_path, max_len=64)
        tx_currency = r.read_currency(tx, "currency", tx_path)
        counts = kind == "refund" and status in ("success", None)
        tx_amount = r.read_amount(tx, "amount", tx_path, required=counts)
        if tx_currency and counts:
            currencies.append(tx_currency)
        if counts and tx_amount is not None:
            paid.append((tx_amount, at(tx_path, "amount")))

    goods: list[tuple[Decimal, str]] = []
    raw_lines: list[tuple[int, str | None, str | None, Decimal | None, str]] = []
    for line_path, item in r.read_objects(data, "refund_line_items", path):
        quantity = r.read_quantity(item, "quantity", line_path, required=True)
        line_item_id = r.read_shopify_id(item, "line_item_id", line_path)
        subtotal, subtotal_path = _refund_line_subtotal(r, item, line_path, currencies)
        restock_type = r.read_text(item, "restock_type", line_path, max_len=64)
        restock = restock or restock_type in RESTOCK_TYPES
        line_item = r.read_object(item, "line_item", line_path) or {}
        item_path = at(line_path, "line_item")
        sku = _sku(
            r.read_text(line_item, "sku", item_path, max_len=255),
            r.read_shopify_id(line_item, "variant_id", item_path),
            line_item_id or r.read_shopify_id(line_item, "id", item_path),
        )
        if subtotal is not None:
            goods.append((subtotal, subtotal_path))
        if quantity is not None:
            raw_lines.append((quantity, line_item_id, sku, subtotal, subtotal_path))

    currency = order_currency or (currencies[0] if currencies else None) or fallback_currency
    if currency is None and (paid or goods):
        r.fail(at(path, "transactions[].currency"), "missing")
    amount = sum(r.to_minor(value, currency, p) or 0 for value, p in paid)
    lines = tuple(
        RefundLine(
            quantity=quantity,
            line_id=line_id,
            sku=sku,
            amount=r.to_minor(subtotal, currency, p) or 0,
        )
        for quantity, line_id, sku, subtotal, p in raw_lines
    )
    goods_amount = sum(line.amount for line in lines) if raw_lines else amount
    if refund_id is None or created_at is None:
        return None, currency
    refund = Refund(
        refund_id=refund_id,
        at=created_at,
        amount=amount,
        goods_amount=goods_amount,
        lines=lines,
        reason=note,
        restock=restock,
    )
    return refund, currency


def _refund_line_subtotal(
    r: Reader, item: dict[str, Any], path: str, currencies: list[str]
) -> tuple[Decimal | None, str]:
    """(the goods value of a refund line, its path): `subtotal_set.shop_money.amount`, else
    `subtotal` (which Shopify sends as a JSON number). Its currency code joins `currencies`."""
    subtotal_set = r.read_object(item, "subtotal_set", path) or {}
    set_path = at(path, "subtotal_set")
    shop_money = r.read_object(subtotal_set, "shop_money", set_path) or {}
    money_path = at(set_path, "shop_money")
    code = r.read_currency(shop_money, "currency_code", money_path)
    if code:
        currencies.append(code)
    if shop_money.get("amount") is None:
        return r.read_amount(item, "subtotal", path, required=True), at(path, "subtotal")
    r.read_amount(item, "subtotal", path)  # checked, but the shop money's string wins
    return r.read_amount(shop_money, "amount", money_path), at(money_path, "amount")


# -- the shape of each topic's payload ----------------------------------------------------------
#
# Shopify signs the body, not the headers: a body captured for one topic verifies under any
# `X-Shopify-Topic`. So every payload must have the shape of the topic it claims, from
# Shopify's documented payloads: an Order for `orders/*`, a Refund for `refunds/create`, a
# Customer for `customers/create|update`, and the privacy payloads
# `{"shop_id", "shop_domain", "customer", "orders_to_redact"}` (`customers/redact`) and
# `{"shop_id", "shop_domain", "customer", "orders_requested", "data_request"}`
# (`customers/data_request`). Each shape names keys it must have and keys that only other
# resources carry; and where Shopify says what the resource is (`admin_graphql_api_id`,
# `gid://shopify/Order/...`), that must agree too.

CUSTOMER_TOPICS = (
    "customers/create",
    "customers/update",
    "customers/data_request",
    "customers/redact",
)
PRIVACY_KEYS = ("orders_to_redact", "orders_requested", "data_request", "shop_domain")


@dataclass(frozen=True)
class Shape:
    resource: str | None  # what admin_graphql_api_id names, when the payload has one
    required: tuple[tuple[str, type | tuple[type, ...]], ...]
    one_of: tuple[str, ...] = ()  # at least one of these keys must be present
    foreign: tuple[str, ...] = ()  # keys only other topics' payloads have


_ORDER = Shape(
    "Order",
    (("id", (int, str)), ("line_items", list), ("created_at", str)),
    foreign=(
        "order_id",
        "refund_line_items",
        "abandoned_checkout_url",
        *PRIVACY_KEYS,
    ),
)
SHAPES: dict[str, Shape] = {
    **{topic: _ORDER for topic in ORDER_KINDS},
    "refunds/create": Shape(
        "Refund",
        (("id", (int, str)), ("order_id", (int, str))),
        one_of=("refund_line_items", "transactions"),
        foreign=("line_items", "customer", "financial_status", *PRIVACY_KEYS),
    ),
    **{
        topic: Shape(
            "Customer",
            (("id", (int, str)),),
            # keys of Shopify's Customer (any one: an app without access to protected
            # customer data may not see the contact fields)
            one_of=(
                "email",
                "phone",
                "first_name",
                "last_name",
                "verified_email",
                "addresses",
                "default_address",
                "email_marketing_consent",
                "sms_marketing_consent",
                "tax_exemptions",
            ),
            foreign=(
                "line_items",
                "order_id",
                "refund_line_items",
                "transactions",
                "customer",
                "financial_status",
                "variants",
                "abandoned_checkout_url",
                "myshopify_domain",
                *PRIVACY_KEYS,
            ),
        )
        for topic in ("customers/create", "customers/update")
    },
    "customers/redact": Shape(
        None,
        (("customer", dict), ("orders_to_redact", list), ("shop_domain", str)),
        foreign=("id", "line_items", "order_id", "orders_requested", "data_request"),
    ),
    "customers/data_request": Shape(
        None,
        (
            ("customer", dict),
            ("orders_requested", list),
            ("shop_domain", str),
            ("data_request", dict),
        ),
        foreign=("id", "line_items", "order_id", "orders_to_redact"),
    ),
}


def check_shape(topic: str, payload: Any, shop_domain: str | None = None) -> None:
    """Raise `ValidationFailed` (code `payload_topic_mismatch`) unless `payload` has the shape
    of `topic`'s payload, listing what is missing, what belongs to another topic, and a
    resource id of another kind; or (code `shop_domain_mismatch`) when the
    `X-Shopify-Shop-Domain` header (`shop_domain`) names another shop than the body's own
    `shop_domain`. A topic without a known shape passes (it is ignored anyway)."""
    shape = SHAPES.get(topic)
    if shape is None:
        return
    problems: list[dict[str, str]] = []
    if not isinstance(payload, dict):
        problems.append({"field": "", "issue": "wrong_type"})
    else:
        for key, kind in shape.required:
            value = payload.get(key)
            if value is None or value == "":
                problems.append({"field": key, "issue": "missing"})
            elif isinstance(value, bool) or not isinstance(value, kind):
                problems.append({"field": key, "issue": "wrong_type"})
        if shape.one_of and not any(key in payload for key in shape.one_of):
            problems.append({"field": "|".join(shape.one_of), "issue": "missing"})
        problems += [
            {"field": key, "issue": "belongs_to_another_topic"}
            for key in shape.foreign
            if payload.get(key) is not None
        ]
        gid = payload.get("admin_graphql_api_id")
        resource = f"gid://shopify/{shape.resource}/"
        if shape.resource and isinstance(gid, str) and not gid.startswith(resource):
            problems.append({"field": "admin_graphql_api_id", "issue": "another_resource"})
    if problems:
        raise ValidationFailed(
            f"the payload does not have the shape of a {topic} payload",
            details=problems,
            code="payload_topic_mismatch",
        )
    body_domain = payload.get("shop_domain")
    if (
        shop_domain
        and isinstance(body_domain, str)
        and body_domain.strip().lower() != shop_domain.strip().lower()
    ):
        raise ValidationFailed(
            "the payload is for another shop than X-Shopify-Shop-Domain names",
            details=[{"field": "shop_domain", "issue": "does_not_match_header"}],
            code="shop_domain_mismatch",
        )


# -- customers ----------------------------------------------------------------------------------

CONSENT_KEYS = (("email", "email_marketing_consent"), ("sms", "sms_marketing_consent"))
CUSTOMER_ADDRESS_KEYS = (
    ("country_code", "country_code"),
    ("province", "province"),
    ("city", "city"),
    ("zip", "zip"),
    ("line1", "address1"),
)


@dataclass(frozen=True)
class ShopifyCustomer:
    """A `customers/create|update` payload as a profile body for `parse_profile`, with the
    platform's own times: the customer's `updated_at` and each consent's
    `consent_updated_at` (else the customer's), in UTC; None when absent or not a time."""

    body: dict[str, Any]
    updated_at: str | None
    consent_at: dict[str, str]


def customer_profile(payload: dict[str, Any]) -> ShopifyCustomer:
    """Read leniently: a field that does not validate is the caller's to drop. The id must be
    there (`check_shape` makes sure of it)."""
    body: dict[str, Any] = {"external_ids": {SOURCE: str(payload["id"])}}
    for name in ("email", "phone", "first_name", "last_name"):
        value = payload.get(name)
        if isinstance(value, str) and value.strip():
            body[name] = value
    updated_at = payload.get("updated_at")
    updated = parse_timestamp(updated_at) if isinstance(updated_at, str) else None
    consents: dict[str, bool] = {}
    consent_at: dict[str, str] = {}
    for channel, key in CONSENT_KEYS:
        state = payload.get(key)
        if isinstance(state, dict) and isinstance(state.get("state"), str):
            consents[channel] = state["state"] == "subscribed"
            raw_at = state.get("consent_updated_at")
            at = parse_timestamp(raw_at) if isinstance(raw_at, str) else None
            if at or updated:
                consent_at[channel] = at or updated  # type: ignore[assignment]
    if consents:
        body["consents"] = consents
    address = payload.get("default_address")
    if isinstance(address, dict):
        body["address"] = {
            ours: str(address[theirs])
            for ours, theirs in CUSTOMER_ADDRESS_KEYS
            if address.get(theirs) not in (None, "")
        }
    return ShopifyCustomer(body=body, updated_at=updated, consent_at=consent_at)


def data_request_id(payload: dict[str, Any]) -> str:
    """The id of a `customers/data_request` (`data_request.id`): a Shopify id (a positive
    integer, or a string of ASCII digits), since it becomes part of an S3 key; else
    `ValidationFailed` on `data_request.id`."""
    r = Reader()
    request = r.read_object(payload, "data_request", "", required=True) or {}
    request_id = r.read_shopify_id(request, "id", "data_request", required=True)
    r.check("the data request has no usable id")
    assert request_id is not None
    return request_id
