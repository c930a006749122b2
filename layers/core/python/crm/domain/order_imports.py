"""Order history files (`incoming/orders/`) read into `OrderEvent`s. Pure and streaming.

Rows come from `import_files.read_rows` (CSV: column -> text; JSON Lines: one object each).
Three shapes are read (guide: docs/imports.md, "Orders"):

* **Shopify's order export** (Admin > Orders > Export), as it is: one row per line item, the
  order's own fields (Financial Status, Currency, Total, Id, Billing ...) only on the first row
  of the order; consecutive rows with the same `Name` are one order. The order's platform id is
  `Id`, so the order is `ord_shopify_<Id>`, the same order a Shopify webhook records; only when
  `Id` is empty (older exports) is the `Name` without "#" used instead, and such an order will
  not meet its webhooks. Timestamps look like `2025-10-07 09:50:26 +0200`.
* **The project's columns** (`ORDER_COLUMNS` and `LINE_COLUMNS`), one row per line item too,
  consecutive rows with the same `order_id` being one order. Order columns may be repeated on
  every row or given on the first row only.
* **JSON Lines**: one object per order with the project's column names as keys and its lines
  in `lines: [{"sku", "title", "quantity", "unit_price"}]`; a flat object (a line's keys next
  to the order's) is a one-line order, and consecutive flat objects of the same `order_id` are
  one order, as in CSV.

Rules:

* Consecutive rows of one order are read together and never more than one order at a time
  (`MAX_ORDER_ROWS` at most). A row that cannot be read (`Row.problem`) is a group of its own,
  except when rows of the same order come on both sides of it: the order is then incomplete
  and fails with it.
* An order's field is the first non-empty value among its rows; a later row with another
  non-empty value (say a second order with the same `Name` but another `Id`) fails the whole
  order (`conflicting_value`): rows are never merged silently.
* Every problem of an order is reported at once; all its rows fail with the same reason, as
  "Paid at: invalid_timestamp; Lineitem price (row 12): invalid_amount".
* Money follows `crm.domain.shopify`'s rules (a decimal string, or an exact JSON number) in
  integer minor units of the order's currency (`Currency`/`currency`, else the shop's default).
* Timestamps: RFC 3339 with an offset, or Shopify's export form (`2025-10-07 09:50:26 +0200`);
  a time without an offset is refused. They come out in UTC to the second.
* Values Excel protects with a leading apostrophe (`'75008`, `'+8613900000000`, `="0012"`)
  are cleaned in ids, phones, zips and SKUs. Unknown columns are ignored.
* The event is of kind "update", with `updated_at` the newest of the order's timestamps: an
  order already known from a newer webhook keeps its details, and gains the file's facts.
* A refunded amount above zero is one completed refund `import-<id>`: the aggregate of the
  platform's refunds when the file was exported. The importer stamps it with the time of the
  import (`as_recorded`); the platform's own refunds of the order replace it when they come
  (`crm.domain.orders.counted_refunds`), so a migrated order's refunds never count twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from crm.domain.errors import ValidationFailed
from crm.domain.import_files import UNREADABLE, Row, failure_reason
from crm.domain.money import to_minor
from crm.domain.order_events import IMPORT_REFUND_PREFIX, Buyer, Line, OrderEvent, Refund
from crm.domain.shopify import PAID_STATUSES, decimal_amount, parse_timestamp

SHOPIFY = "shopify"
DEFAULT_SOURCE = "import"  # the source of a project-shape order that names none
REFUND_PREFIX = IMPORT_REFUND_PREFIX  # the id of the refund a file's refunded amount becomes
MAX_ORDER_ROWS = 1000  # rows of one order held at once; more fail the order (too_many_rows)
MAX_QUANTITY = 1_000_000_000

# The project's own columns (CSV header names, JSON Lines keys).
ORDER_COLUMNS = (
    "order_id",  # required: the platform's order id, [A-Za-z0-9][A-Za-z0-9._-]{0,63}
    "source",  # the platform, [a-z][a-z0-9_-]{0,31}; else the external_id's; else "import"
    "name",  # the shop's order name, "#1001"
    "created_at",  # required
    "paid_at",
    "fulfilled_at",  # delivered
    "cancelled_at",
    "currency",  # else the shop's default
    "subtotal",  # goods after discounts; else the sum of the lines
    "shipping",
    "total",  # else subtotal + shipping
    "refunded",  # money returned so far
    "external_id",  # the buyer's "source:id" ("a:1;b:2" for several)
    "email",
    "phone",
    "first_name",
    "last_name",
    "country_code",
    "province",
    "city",
    "zip",
)
LINE_COLUMNS = ("sku", "title", "quantity", "unit_price")

# Shopify's order export: header (trimmed, lower-cased) -> the name used here.
_SHOPIFY_ORDER = {
    "id": "id",
    "name": "name",
    "email": "email",
    "phone": "phone",
    "billing phone": "billing_phone",
    "shipping phone": "shipping_phone",
    "billing name": "billing_name",
    "shipping name": "shipping_name",
    "financial status": "financial_status",
    "paid at": "paid_at",
    "fulfillment status": "fulfillment_status",
    "fulfilled at": "fulfilled_at",
    "cancelled at": "cancelled_at",
    "created at": "created_at",
    "currency": "currency",
    "subtotal": "subtotal",
    "shipping": "shipping",
    "total": "total",
    "refunded amount": "refunded",
    "shipping address1": "line1",
    "shipping city": "city",
    "shipping zip": "zip",
    "shipping province": "province_code",
    "shipping province name": "province",
    "shipping country": "country_code",
}
_SHOPIFY_LINE = {
    "lineitem sku": "sku",
    "lineitem name": "title",
    "lineitem quantity": "quantity",
    "lineitem price": "unit_price",
}
# Shopify's order export header (Admin > Orders > Export > CSV), every column in Shopify's order:
# the one copy the tests, the demo shop and the benchmarks write files with. The importer reads
# the columns above and ignores the others.
SHOPIFY_EXPORT_COLUMNS = (
    "Name",
    "Email",
    "Financial Status",
    "Paid at",
    "Fulfillment Status",
    "Fulfilled at",
    "Accepts Marketing",
    "Currency",
    "Subtotal",
    "Shipping",
    "Taxes",
    "Total",
    "Discount Code",
    "Discount Amount",
    "Shipping Method",
    "Created at",
    "Lineitem quantity",
    "Lineitem name",
    "Lineitem price",
    "Lineitem compare at price",
    "Lineitem sku",
    "Lineitem requires shipping",
    "Lineitem taxable",
    "Lineitem fulfillment status",
    "Billing Name",
    "Billing Street",
    "Billing Address1",
    "Billing Address2",
    "Billing Company",
    "Billing City",
    "Billing Zip",
    "Billing Province",
    "Billing Country",
    "Billing Phone",
    "Shipping Name",
    "Shipping Street",
    "Shipping Address1",
    "Shipping Address2",
    "Shipping Company",
    "Shipping City",
    "Shipping Zip",
    "Shipping Province",
    "Shipping Country",
    "Shipping Phone",
    "Notes",
    "Note Attributes",
    "Cancelled at",
    "Payment Method",
    "Payment Reference",
    "Refunded Amount",
    "Vendor",
    "Outstanding Balance",
    "Employee",
    "Location",
    "Device ID",
    "Id",
    "Tags",
    "Risk Level",
    "Source",
    "Lineitem discount",
    "Tax 1 Name",
    "Tax 1 Value",
    "Tax 2 Name",
    "Tax 2 Value",
    "Tax 3 Name",
    "Tax 3 Value",
    "Tax 4 Name",
    "Tax 4 Value",
    "Tax 5 Name",
    "Tax 5 Value",
    "Phone",
    "Receipt Number",
    "Duties",
    "Billing Province Name",
    "Shipping Province Name",
    "Payment ID",
    "Payment Terms Name",
    "Next Payment Due At",
    "Payment References",
)
# The line item's columns, which Shopify writes on every row of an order (one row per line),
# with these order columns; every other column is on the order's first row only.
SHOPIFY_LINE_ITEM_COLUMNS = (
    "Lineitem quantity",
    "Lineitem name",
    "Lineitem price",
    "Lineitem compare at price",
    "Lineitem sku",
    "Lineitem requires shipping",
    "Lineitem taxable",
    "Lineitem fulfillment status",
    "Vendor",
    "Lineitem discount",
)
SHOPIFY_REPEATED_COLUMNS = ("Name", "Email", "Created at")
_PROJECT_ORDER = {name: name for name in ORDER_COLUMNS}
_PROJECT_LINE = {name: name for name in LINE_COLUMNS}
# Values Excel may have protected with a leading apostrophe.
_PROTECTED = {
    "id",
    "order_id",
    "external_id",
    "phone",
    "billing_phone",
    "shipping_phone",
    "zip",
    "sku",
}
_ADDRESS = ("line1", "city", "zip", "province_code", "province", "country_code")
_TEXT_LIMITS = {"email": 320, "phone": 64, "sku": 255, "name": 200, "title": 2000}
_DEFAULT_LIMIT = 200

_SHOPIFY_ID = re.compile(r"[0-9]{1,19}")
_ORDER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SOURCE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_SOURCE_ID = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_-]*)\s*:\s*(\S.*?)\s*$")
_CURRENCY = re.compile(r"[A-Za-z]{3}")
_COUNTRY = re.compile(r"[A-Za-z]{2}")
_QUANTITY = re.compile(r"[0-9]{1,10}")
_TIME = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt ]([0-9]{2}:[0-9]{2}(?::[0-9]{2})?(?:\.[0-9]{1,9})?)"
    r"\s*(?:([Zz]|UTC)|([+-][0-9]{2}):?([0-9]{2}))"
)

TOO_MANY_ROWS = "too_many_rows"
CONFLICTING = "conflicting_value"
_MESSAGE = "the order has invalid fields"


@dataclass(frozen=True)
class ImportedOrder:
    """One order of a file: its rows, and either its event or why it fails (every row of it
    fails with that reason)."""

    rows: tuple[Row, ...]
    event: OrderEvent | None
    problem: str | None = None


def as_recorded(event: OrderEvent, imported_at: str) -> OrderEvent:
    """The file's order as the CRM records it at `imported_at`: its refunded amount says what
    the platform had refunded *before* then (the file was exported earlier), so the platform's
    refunds made after `imported_at` are never taken to be part of it."""
    if not event.refunds:
        return event
    return replace(
        event,
        refunds=tuple(
            replace(r, as_of=imported_at) if r.refund_id.startswith(REFUND_PREFIX) else r
            for r in event.refunds
        ),
    )


def group_orders(rows: Iterable[Row]) -> Iterator[list[Row]]:
    """The rows of each order, one order at a time (see the module's rules)."""
    for group, _ in _groups(rows):
        yield group


def imported_orders(rows: Iterable[Row], default_currency: str) -> Iterator[ImportedOrder]:
    """Each order of the file, validated, in file order."""
    for group, too_long in _groups(rows):
        yield _imported(group, too_long, default_currency)


# -- grouping ----------------------------------------------------------------------------------


def _lower(fields: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    """Column (trimmed, lower-cased; a BOM dropped) -> (the column as written, its value)."""
    return {str(k).strip().lstrip("\ufeff").lower(): (str(k).strip(), v) for k, v in fields.items()}


def _key(fields: dict[str, Any]) -> tuple[str, str] | None:
    """What the consecutive rows of one order share: the project's `order_id`, or Shopify's
    `Name` (`Id` when the Name is empty). None: the row names no order."""
    lower = _lower(fields)
    columns = ("order_id",) if "order_id" in lower else ("name", "id")
    for column in columns:
        value = _clean(lower.get(column, ("", None))[1], column != "name")
        if value is not None and value != "":
            return column, str(value)  # a JSON number groups with the same id as text
    return None


def _clean(value: Any, protected: bool) -> Any:
    """A value with its edges trimmed (and, when `protected`, Excel's protection removed);
    None when empty. Non-strings are left as they are (a JSON number stays a number)."""
    if value is None:
        return None
    if not isinstance(value, str):
        return value
    text = value.strip()
    if protected:
        if text.startswith('="') and text.endswith('"'):
            text = text[2:-1].strip()
        text = text.lstrip("'").strip()
    return text or None


def _groups(rows: Iterable[Row]) -> Iterator[tuple[list[Row], bool]]:
    """(rows of one order, whether the order had too many rows and was cut). An order over
    `MAX_ORDER_ROWS` comes in several pieces, each flagged, so memory stays bounded."""
    current: list[Row] = []
    pending: list[Row] = []  # unreadable rows after the last row of `current`
    key: tuple[str, str] | None = None
    too_long = False
    for row in rows:
        if row.problem is not None or row.fields is None:
            if key is None:
                yield [row], False
            else:
                pending.append(row)
                if len(current) + len(pending) > MAX_ORDER_ROWS:
                    yield [*current, *pending], True
                    current, pending, too_long = [], [], True
            continue
        row_key = _key(row.fields)
        if key is not None and row_key == key:
            current.extend(pending)
            current.append(row)
            pending = []
            if len(current) > MAX_ORDER_ROWS:
                yield current, True
                current, too_long = [], True
            continue
        if current:
            yield current, too_long
        for lone in pending:
            yield [lone], False
        current, pending, too_long = [row], [], False
        key = row_key
        if key is None:  # names no order: fails on its own
            yield current, False
            current = []
    if current:
        yield current, too_long
    for lone in pending:
        yield [lone], False


# -- validation --------------------------------------------------------------------------------


def _imported(group: list[Row], too_long: bool, default_currency: str) -> ImportedOrder:
    rows = tuple(group)
    if too_long:
        return ImportedOrder(rows, None, f"{TOO_MANY_ROWS} (an order may have {MAX_ORDER_ROWS})")
    broken = [r for r in rows if r.problem is not None or r.fields is None]
    if broken:
        if len(rows) == 1:
            return ImportedOrder(rows, None, broken[0].problem or UNREADABLE)
        reason = "; ".join(f"row {r.number}: {r.problem or UNREADABLE}" for r in broken)
        return ImportedOrder(rows, None, reason)
    try:
        event = _event(rows, default_currency)
    except ValidationFailed as exc:
        return ImportedOrder(rows, None, failure_reason(exc))
    return ImportedOrder(rows, event, None)


class _Reader:
    """An order's values gathered from its rows, and every problem found on the way."""

    def __init__(self, rows: Sequence[Row], shopify: bool) -> None:
        self.problems: list[dict[str, str]] = []
        self.values: dict[str, tuple[str, Any]] = {}  # name -> (label, value)
        # Each line's (where it is: "" or "lines[0].", after its labels: "" or " (row 3)", values).
        self.lines: list[tuple[str, str, dict[str, tuple[str, Any]]]] = []
        order_map = _SHOPIFY_ORDER if shopify else _PROJECT_ORDER
        line_map = _SHOPIFY_LINE if shopify else _PROJECT_LINE
        conflicts: set[str] = set()
        several = len(rows) > 1
        for row in rows:
            assert row.fields is not None
            lower = _lower(row.fields)
            for column, name in order_map.items():
                label, raw = lower.get(column, (column, None))
                value = _clean(raw, name in _PROTECTED)
                if value is None:
                    continue
                seen = self.values.get(name)
                if seen is None:
                    self.values[name] = (label, value)
                elif str(seen[1]) != str(value) and name not in conflicts:  # 7 is "7"
                    conflicts.add(name)
                    self.fail(f"{label} (row {row.number})", CONFLICTING)
            suffix = f" (row {row.number})" if several else ""
            items = lower.get("lines", ("lines", None))
            if not shopify and items[1] is not None:
                self._nested_lines(items[0], items[1], suffix)
                continue
            line = {}
            for column, name in line_map.items():
                label, raw = lower.get(column, (column, None))
                value = _clean(raw, name in _PROTECTED)
                if value is not None:
                    line[name] = (label, value)
            if line:
                self.lines.append(("", suffix, line))

    def _nested_lines(self, label: str, items: Any, suffix: str) -> None:
        if not isinstance(items, list):
            self.fail(label + suffix, "wrong_type")
            return
        for index, item in enumerate(items):
            path = f"{label}[{index}]"
            if not isinstance(item, dict):
                self.fail(path + suffix, "wrong_type")
                continue
            lower = _lower(item)
            line = {}
            for name in LINE_COLUMNS:
                column, raw = lower.get(name, (name, None))
                value = _clean(raw, name in _PROTECTED)
                if value is not None:
                    line[name] = (f"{path}.{column}", value)
            self.lines.append((f"{path}.", suffix, line))

    def fail(self, field: str, issue: str) -> None:
        self.problems.append({"field": field, "issue": issue})

    def label(self, name: str, default: str) -> str:
        return self.values[name][0] if name in self.values else default

    # -- typed reads: None when absent or wrong (and then a problem is recorded) -------------

    def text(self, name: str) -> str | None:
        return self.line_text(self.values, name, "")

    def line_text(self, values: dict[str, tuple[str, Any]], name: str, suffix: str) -> str | None:
        if name not in values:
            return None
        label, value = values[name]
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            self.fail(label + suffix, "wrong_type")
            return None
        if len(value) > _TEXT_LIMITS.get(name, _DEFAULT_LIMIT):
            self.fail(label + suffix, "too_long")
            return None
        return value

    def timestamp(self, name: str, default: str, *, required: bool = False) -> str | None:
        if name not in self.values:
            if required:
                self.fail(default, "missing")
            return None
        label, value = self.values[name]
        moment = parse_time(value) if isinstance(value, str) else None
        if moment is None:
            self.fail(label, "invalid_timestamp" if isinstance(value, str) else "wrong_type")
        return moment

    def amount(
        self,
        values: dict[str, tuple[str, Any]],
        name: str,
        default: str,
        currency: str | None,
        *,
        suffix: str = "",
        required: bool = False,
    ) -> int | None:
        if name not in values:
            if required:
                self.fail(default + suffix, "missing")
            return None
        label, value = values[name]
        amount, issue = decimal_amount(value)
        if issue:
            self.fail(label + suffix, issue)
            return None
        if amount is None or currency is None:
            return None
        try:
            return to_minor(amount, currency, field=label + suffix)
        except ValidationFailed as exc:
            self.problems.extend(exc.details)
            return None

    def quantity(self, values: dict[str, tuple[str, Any]], default: str, suffix: str) -> int | None:
        if "quantity" not in values:
            self.fail(default + suffix, "missing")
            return None
        label, value = values["quantity"]
        if isinstance(value, str) and _QUANTITY.fullmatch(value):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(label + suffix, "invalid_quantity")
            return None
        if not 0 <= value <= MAX_QUANTITY:
            self.fail(label + suffix, "out_of_range")
            return None
        return value

    def check(self) -> None:
        if self.problems:
            raise ValidationFailed(_MESSAGE, details=list(self.problems))


def parse_time(value: str) -> str | None:
    """An RFC 3339 time, or Shopify's export form `2025-10-07 09:50:26 +0200`, in UTC to the
    second (`2025-10-07T07:50:26+00:00`); None when it is neither or has no offset."""
    match = _TIME.fullmatch(value.strip())
    if match is None:
        return None
    day, clock, utc, hours, minutes = match.groups()
    return parse_timestamp(f"{day}T{clock}{'Z' if utc else f'{hours}:{minutes}'}")


def _event(rows: Sequence[Row], default_currency: str) -> OrderEvent:
    """The order of `rows` (readable rows of one order) as an `OrderEvent`; `ValidationFailed`
    listing every problem otherwise."""
    assert rows[0].fields is not None
    shopify = "order_id" not in _lower(rows[0].fields)
    r = _Reader(rows, shopify)
    source, platform_id = _identity(r, shopify)
    currency = _currency(r, default_currency)
    created_at = r.timestamp("created_at", "Created at" if shopify else "created_at", required=True)
    cancelled_at = r.timestamp("cancelled_at", "")
    if shopify:
        paid = (r.text("financial_status") or "").lower() in PAID_STATUSES
        fulfilled = (r.text("fulfillment_status") or "").lower() == "fulfilled"
        paid_at = r.timestamp("paid_at", "")
        fulfilled_at = r.timestamp("fulfilled_at", "")
        # Older exports have no "Fulfilled at": the payment, else the order, dates it.
        paid_at = (paid_at or created_at) if paid else None
        fulfilled_at = (fulfilled_at or paid_at or created_at) if fulfilled else None
    else:
        paid_at = r.timestamp("paid_at", "")
        fulfilled_at = r.timestamp("fulfilled_at", "")

    lines = _lines(r, currency, shopify)
    # Shopify's export always has its totals; the project's columns may leave them out.
    subtotal = r.amount(r.values, "subtotal", "Subtotal", currency, required=shopify)
    shipping = r.amount(r.values, "shipping", "Shipping", currency)
    total = r.amount(r.values, "total", "Total", currency, required=shopify)
    refunded = r.amount(r.values, "refunded", "refunded", currency)
    if not lines and not r.problems:
        r.fail("Lineitem quantity" if shopify else "lines", "missing")
    buyer = _buyer(r, shopify)
    address = _address(r)
    name = r.text("name")
    r.check()
    assert source and platform_id and currency and created_at

    if subtotal is None:
        subtotal = sum(line.quantity * line.unit_price for line in lines)
    if total is None:
        total = subtotal + (shipping or 0)
    updated_at = max(t for t in (created_at, paid_at, fulfilled_at, cancelled_at) if t)
    refunds: tuple[Refund, ...] = ()
    if refunded:
        refunds = (
            Refund(
                refund_id=f"{REFUND_PREFIX}{platform_id}",
                at=updated_at,
                amount=refunded,
                goods_amount=min(refunded, subtotal),
                reason="imported",
                status="completed",
            ),
        )
    return OrderEvent(
        source=source,
        platform_order_id=platform_id,
        kind="update",
        updated_at=updated_at,
        created_at=created_at,
        currency=currency,
        lines=tuple(lines),
        subtotal=subtotal,
        shipping=shipping,
        total=total,
        shipping_address=address,
        buyer=buyer,
        name=name,
        paid_at=paid_at,
        cancelled_at=cancelled_at,
        fulfilled_at=fulfilled_at,
        refunds=refunds,
    )


def _identity(r: _Reader, shopify: bool) -> tuple[str | None, str | None]:
    """(source, platform order id)."""
    if shopify:
        order_id = r.text("id")
        if order_id is not None:
            if _SHOPIFY_ID.fullmatch(order_id) and 0 < int(order_id) < 2**63:
                return SHOPIFY, str(int(order_id))
            r.fail(r.label("id", "Id"), "invalid_id")
            return SHOPIFY, None
        name = r.text("name")
        if name is None:
            r.fail("Id", "missing")
            return SHOPIFY, None
        fallback = name.lstrip("#").strip()
        if not _ORDER_ID.fullmatch(fallback):
            r.fail(r.label("name", "Name"), "invalid_id")
            return SHOPIFY, None
        return SHOPIFY, fallback
    order_id = r.text("order_id")
    if order_id is None:
        r.fail("order_id", "missing")
    elif not _ORDER_ID.fullmatch(order_id):
        r.fail(r.label("order_id", "order_id"), "invalid_id")
        order_id = None
    source = r.text("source")
    if source is not None:
        source = source.lower()
        if not _SOURCE.fullmatch(source):
            r.fail(r.label("source", "source"), "invalid_source")
            source = None
        return source, order_id
    external = _external_ids(r)
    return (next(iter(external), None) or DEFAULT_SOURCE), order_id


def _external_ids(r: _Reader) -> dict[str, str]:
    text = r.text("external_id")
    found: dict[str, str] = {}
    for part in (text or "").split(";"):
        if not part.strip():
            continue
        match = _SOURCE_ID.match(part)
        if match is None:
            r.fail(r.label("external_id", "external_id"), "invalid_external_id")
            continue
        found.setdefault(match.group(1).lower(), match.group(2))
    return found


def _currency(r: _Reader, default_currency: str) -> str | None:
    text = r.text("currency")
    if text is None:
        return default_currency.strip().upper()
    if not _CURRENCY.fullmatch(text):
        r.fail(r.label("currency", "currency"), "invalid_currency")
        return None
    return text.upper()


def _lines(r: _Reader, currency: str | None, shopify: bool) -> list[Line]:
    labels = {v: k for k, v in (_SHOPIFY_LINE if shopify else _PROJECT_LINE).items()}
    if shopify:
        labels = {name: column.capitalize() for name, column in labels.items()}
    lines: list[Line] = []
    for index, (where, suffix, values) in enumerate(r.lines, start=1):
        sku = r.line_text(values, "sku", suffix)
        title = r.line_text(values, "title", suffix) or ""
        quantity = r.quantity(values, where + labels["quantity"], suffix)
        price = r.amount(
            values,
            "unit_price",
            where + labels["unit_price"],
            currency,
            suffix=suffix,
            required=True,
        )
        if quantity is not None and price is not None:
            # Without a SKU (a custom item) the line is named by its place in the order.
            lines.append(
                Line(sku=sku or f"item-{index}", quantity=quantity, unit_price=price, title=title)
            )
    return lines


def _split_name(full: str | None) -> tuple[str | None, str | None]:
    """ "Mei Chen" -> ("Mei", "Chen"); "Jean de la Tour" -> ("Jean", "de la Tour"); a name
    without a space ("陈美玲") is kept whole as the first name."""
    if not full:
        return None, None
    parts = full.split(None, 1)
    return parts[0], (parts[1] if len(parts) > 1 else None)


def _buyer(r: _Reader, shopify: bool) -> Buyer | None:
    email = r.text("email")
    if shopify:
        phone = r.text("phone") or r.text("billing_phone") or r.text("shipping_phone")
        first, last = _split_name(r.text("billing_name") or r.text("shipping_name"))
        external: dict[str, str] = {}
    else:
        phone = r.text("phone")
        first, last = r.text("first_name"), r.text("last_name")
        external = _external_ids(r)
    buyer = Buyer(external_ids=external, email=email, phone=phone, first_name=first, last_name=last)
    return buyer if buyer.external_ids or buyer.email or buyer.phone else None


def _address(r: _Reader) -> dict[str, Any] | None:
    address: dict[str, Any] = {}
    for name in _ADDRESS:
        text = r.text(name)
        if text is None:
            continue
        if name == "country_code":
            if not _COUNTRY.fullmatch(text):
                r.fail(r.label(name, name), "invalid_country")
                continue
            text = text.upper()
        address[name] = text
    return address or None
