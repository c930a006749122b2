"""The demo shop generator: deterministic files, customers the importer takes (and the bad
rows it refuses, where the shop says), a consistent Shopify order export, stock for every SKU
in every warehouse, live webhooks that parse, and a realistic revenue skew."""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from crm.domain import import_files
from crm.domain.errors import ValidationFailed
from crm.domain.identity import normalise_email, normalise_phone
from crm.domain.inventory import china_regions, default_warehouses_json, load_warehouses
from crm.domain.shopify import parse_order
from crm_local import demo_data
from crm_local.demo_data import DemoShop, generate, write_files

TODAY = date(2026, 3, 15)
CUSTOMER_HEADER = (
    "Customer ID,First Name,Last Name,Email,Accepts Email Marketing,Default Address Company,"
    "Default Address Address1,Default Address Address2,Default Address City,"
    "Default Address Province Code,Default Address Country Code,Default Address Zip,"
    "Default Address Phone,Phone,Accepts SMS Marketing,Total Spent,Total Orders,Note,"
    "Tax Exempt,Tags"
)
ORDER_HEADER = (
    "Name,Email,Financial Status,Paid at,Fulfillment Status,Fulfilled at,Accepts Marketing,"
    "Currency,Subtotal,Shipping,Taxes,Total,Discount Code,Discount Amount,Shipping Method,"
    "Created at,Lineitem quantity,Lineitem name,Lineitem price,Lineitem compare at price,"
    "Lineitem sku,Lineitem requires shipping,Lineitem taxable,Lineitem fulfillment status,"
    "Billing Name,Billing Street,Billing Address1,Billing Address2,Billing Company,"
    "Billing City,Billing Zip,Billing Province,Billing Country,Billing Phone,Shipping Name,"
    "Shipping Street,Shipping Address1,Shipping Address2,Shipping Company,Shipping City,"
    "Shipping Zip,Shipping Province,Shipping Country,Shipping Phone,Notes,Note Attributes,"
    "Cancelled at,Payment Method,Payment Reference,Refunded Amount,Vendor,"
    "Outstanding Balance,Employee,Location,Device ID,Id,Tags,Risk Level,Source,"
    "Lineitem discount,Phone"
)
EXPORT_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} \+0800")
BOM = b"\xef\xbb\xbf"


@pytest.fixture(scope="module")
def shop() -> DemoShop:
    return generate(seed=7, today=TODAY)


@pytest.fixture(scope="module")
def files(shop: DemoShop, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_files(shop, tmp_path_factory.mktemp("demo"))


def export_rows(path: Path) -> list[dict[str, str]]:
    text = path.read_bytes().decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(text, newline="")))


def money(text: str) -> Decimal:
    return Decimal(text or "0")


# --- Determinism ----------------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_other_bytes(files, tmp_path):
    again = write_files(generate(seed=7, today=TODAY), tmp_path / "again")
    other = write_files(generate(seed=8, today=TODAY), tmp_path / "other")
    assert set(files) == {"customers", "orders", "inventory"}
    for name, path in files.items():
        assert path.name == f"{name}.csv"
        assert again[name].read_bytes() == path.read_bytes(), name
    assert other["customers"].read_bytes() != files["customers"].read_bytes()
    assert other["orders"].read_bytes() != files["orders"].read_bytes()


def test_sizes_follow_the_arguments():
    small = generate(seed=3, customers=40, days=30, today=TODAY)
    assert len(small.customers) == 40
    assert len(small.bad_customer_rows) == 3  # at least 3, even for a small shop
    first_day = TODAY - timedelta(days=30)
    assert all(first_day <= o.created_at.date() < TODAY for o in small.orders)
    with pytest.raises(ValueError):
        generate(customers=0)


# --- Customers ------------------------------------------------------------------------------


def test_customer_file_is_shopifys_export_with_a_bom(files):
    data = files["customers"].read_bytes()
    assert data.startswith(BOM)
    assert data[len(BOM) :].decode().splitlines()[0] == CUSTOMER_HEADER
    # Every column is one the importer understands (its private table of Shopify headers).
    known = import_files._COLUMNS
    assert all(name.lower() in known for name in CUSTOMER_HEADER.split(","))


def test_phones_are_valid_and_emails_unique(shop):
    people = [*shop.customers, *shop.new_customers]
    phones = [c.phone for c in people if c.phone]
    emails = [c.email for c in people if c.email]
    assert len(phones) > 0.8 * len(people) and len(emails) > 0.9 * len(people)
    assert all(c.phone or c.email for c in people)
    for phone in phones:
        assert re.fullmatch(r"\+861[3-9]\d{9}", phone)
        assert normalise_phone(phone, "CN") == phone
    for email in emails:
        assert email.isascii() and normalise_email(email) == email
    assert len(set(phones)) == len(phones)
    assert len(set(emails)) == len(emails)
    ids = [c.customer_id for c in people]
    assert len(set(ids)) == len(ids)


def test_names_addresses_and_consents_look_like_a_chinese_shop(shop):
    customers = shop.customers
    english = [c for c in customers if c.english_name]
    assert 0.15 < len(english) / len(customers) < 0.35
    families = {"王", "李", "张", "刘", "陈"}
    chinese = [c for c in customers if not c.english_name]
    assert sum(c.last_name in families for c in chinese) > len(chinese) / 4
    for customer in chinese:
        assert customer.address.name == customer.last_name + customer.first_name
    regions = china_regions()
    for customer in customers:
        address = customer.address
        region = regions.find(code=address.province_code)
        assert region is not None and region.country_code == address.country_code == "CN"
        assert address.zip[:2] in region.postcode_prefixes and len(address.zip) == 6
        assert abs(address.latitude - region.latitude) <= 0.31
        assert abs(address.longitude - region.longitude) <= 0.31
    assert any(c.birthday for c in customers) and any(c.birthday is None for c in customers)
    assert all(c.birthday is None or c.birthday < TODAY for c in customers)
    assert {c.accepts_email for c in customers} == {True, False}
    assert {c.accepts_sms for c in customers} == {True, False}
    assert any("vip" in c.tags for c in customers)


def test_bad_rows_are_where_the_shop_says(shop, files):
    bad = shop.bad_customer_rows
    total = len(shop.customers) + len(bad)
    assert 3 <= len(bad) <= max(3, total // 50)
    assert set(bad.values()) <= set(demo_data.BAD_ROW_KINDS)
    assert len(set(bad.values())) >= 3
    rows = list(import_files.read_rows([files["customers"].read_bytes()], "csv"))
    assert [row.number for row in rows] == list(range(1, total + 1))
    for number, kind in bad.items():
        row = rows[number - 1]
        assert row.raw == shop.bad_customer_lines[number]
        if kind in (import_files.WRONG_COLUMN_COUNT, import_files.BROKEN_QUOTING):
            assert row.problem == kind
        else:
            assert row.problem is None
        with pytest.raises(ValidationFailed) as caught:
            import_files.customer_row(row, "CN", TODAY)
        issues = {detail["issue"] for detail in caught.value.details}
        assert kind in issues, (number, row.raw, issues)


def test_every_good_row_is_imported_as_the_customer(shop, files):
    rows = import_files.read_rows([files["customers"].read_bytes()], "csv")
    good = [row for row in rows if row.number not in shop.bad_customer_rows]
    assert len(good) == len(shop.customers)
    for row, customer in zip(good, shop.customers, strict=True):
        profile = import_files.customer_row(row, "CN", TODAY).fields
        assert profile["external_ids"] == {"shopify": str(customer.customer_id)}
        assert profile.get("email") == customer.email
        assert profile.get("phone") == customer.phone
        assert profile["first_name"] == customer.first_name
        assert profile["last_name"] == customer.last_name
        assert profile["address"]["province"] == customer.address.province_code
        assert profile["address"]["zip"] == customer.address.zip
        assert profile["address"]["country_code"] == "CN"
        assert profile["consents"] == {
            "email": customer.accepts_email,
            "sms": customer.accepts_sms,
        }
        assert profile.get("tags", []) == list(customer.tags)
        attributes = profile["attributes"]
        assert attributes["shopify_total_orders"] == customer.orders_count
        assert Decimal(attributes["shopify_total_spent"]) == customer.total_spent


def test_customer_totals_come_from_the_history(shop):
    counts = Counter(order.customer_index for order in shop.orders)
    spent: dict[int, Decimal] = {}
    for order in shop.orders:
        spent[order.customer_index] = spent.get(order.customer_index, Decimal(0)) + order.revenue
    for customer in shop.customers:
        assert customer.orders_count == counts.get(customer.index, 0)
        assert customer.total_spent == spent.get(customer.index, Decimal(0))
    assert any(c.orders_count == 0 for c in shop.customers)


# --- Catalogue and stock --------------------------------------------------------------------


def test_catalogue(shop):
    skus = [p.sku for p in shop.products]
    assert 35 <= len(skus) <= 45 and len(set(skus)) == len(skus)
    assert "TEA-LJ-250" in skus and "MUG-CER-01" in skus
    for product in shop.products:
        assert product.price > 0 and product.price == product.price.quantize(Decimal("0.01"))
        assert product.title_zh and product.title_en.isascii()


def test_inventory_covers_every_sku_in_every_warehouse(shop, files):
    text = files["inventory"].read_text(encoding="utf-8")
    assert text.splitlines()[0] == "sku,warehouse,on_hand,safety_stock"
    rows = list(csv.DictReader(io.StringIO(text)))
    configured = [w.warehouse_id for w in load_warehouses(default_warehouses_json())]
    assert [w.warehouse_id for w in shop.warehouses] == configured
    pairs = Counter((row["sku"], row["warehouse"]) for row in rows)
    assert set(pairs) == {(p.sku, w) for p in shop.products for w in configured}
    assert set(pairs.values()) == {1}
    on_hand = {(r["sku"], r["warehouse"]): int(r["on_hand"]) for r in rows}
    safety = {(r["sku"], r["warehouse"]): int(r["safety_stock"]) for r in rows}
    assert sum(v == 0 for v in on_hand.values()) >= 2
    assert sum(0 < on_hand[k] < safety[k] for k in on_hand) >= 2
    for product in shop.products:  # somewhere, every SKU is well stocked
        assert max(on_hand[(product.sku, w)] for w in configured) >= 20


# --- Order export ---------------------------------------------------------------------------


def test_order_export_rows_are_grouped_with_order_columns_on_first_rows(shop, files):
    data = files["orders"].read_bytes()
    assert data.startswith(BOM)
    assert data[len(BOM) :].decode().splitlines()[0] == ORDER_HEADER
    rows = export_rows(files["orders"])
    assert list(rows[0]) == ORDER_HEADER.split(",")
    order_level = [c for c in ORDER_HEADER.split(",") if c not in demo_data.ORDER_LINE_COLUMNS]
    groups: dict[str, list[dict[str, str]]] = {}
    previous = None
    for row in rows:
        name = row["Name"]
        if name != previous:
            assert name not in groups, f"{name} is not contiguous"
            groups[name] = []
        groups[name].append(row)
        previous = name
    assert list(groups) == [order.name for order in shop.orders]
    assert next(iter(groups)) == "#1001"
    for order in shop.orders:
        first, *rest = groups[order.name]
        assert first["Id"] == str(order.order_id) and first["Currency"] == "CNY"
        assert EXPORT_TIME.fullmatch(first["Created at"])
        for row in rest:
            assert row["Email"] == first["Email"]
            assert all(row[c] == "" for c in order_level), (order.name, row)
        lines = [*groups[order.name]]
        assert len(lines) == len(order.lines) and 1 <= len(lines) <= 4
        gross = sum(int(r["Lineitem quantity"]) * money(r["Lineitem price"]) for r in lines)
        discount = money(first["Discount Amount"])
        assert money(first["Subtotal"]) == gross - discount == order.subtotal
        assert sum(money(r["Lineitem discount"]) for r in lines) == discount
        assert money(first["Taxes"]) == 0
        assert money(first["Total"]) == money(first["Subtotal"]) + money(first["Shipping"])
        assert money(first["Total"]) == order.total
        assert [r["Lineitem sku"] for r in lines] == [line.sku for line in order.lines]
    ids = [r["Id"] for r in rows if r["Id"]]
    assert len(set(ids)) == len(ids) == len(shop.orders) and all(i.isdigit() for i in ids)


def test_order_statuses(shop, files):
    orders = shop.orders
    statuses = Counter((o.financial_status, o.fulfillment_status) for o in orders)
    assert statuses[("paid", "fulfilled")] > 0.8 * len(orders)
    assert statuses[("paid", "unfulfilled")] > 0
    assert statuses[("partially_refunded", "fulfilled")] > 0
    assert statuses[("refunded", "unfulfilled")] + statuses[("voided", "unfulfilled")] > 0
    start = datetime.combine(TODAY, time(0), demo_data.CHINA_TIME)
    last_week = start - timedelta(days=7)
    for order in orders:
        assert order.created_at < start
        if order.fulfillment_status == "unfulfilled" and order.cancelled_at is None:
            assert order.created_at > last_week  # only recent orders wait for shipping
        if order.cancelled_at:
            assert order.financial_status in ("refunded", "voided")
            assert order.refunded == (order.total if order.paid_at else 0)
        if order.financial_status == "partially_refunded":
            assert 0 < order.refunded < order.total
        for moment in (order.paid_at, order.fulfilled_at, order.cancelled_at):
            assert moment is None or order.created_at <= moment < start
    by_name = {row["Name"]: row for row in export_rows(files["orders"]) if row["Id"]}
    for order in orders:
        row = by_name[order.name]
        assert row["Financial Status"] == order.financial_status
        assert row["Fulfillment Status"] == order.fulfillment_status
        assert money(row["Refunded Amount"]) == order.refunded
        for column in ("Paid at", "Fulfilled at", "Cancelled at"):
            assert row[column] == "" or EXPORT_TIME.fullmatch(row[column])


def test_a_minority_of_customers_makes_most_revenue(shop):
    revenue = [Decimal(0)] * len(shop.customers)
    for order in shop.orders:
        revenue[order.customer_index] += order.revenue
    ranked = sorted(revenue, reverse=True)
    top = sum(ranked[: len(ranked) // 5])
    assert top / sum(ranked) > Decimal("0.5")
    assert len(shop.orders) > len(shop.customers)  # repeat buyers


# --- Live webhooks --------------------------------------------------------------------------


def test_every_live_payload_parses(shop):
    events = shop.live_events
    assert 25 <= len(shop.live_orders) <= 35
    topics = Counter(topic for topic, _ in events)
    assert set(topics) == {"orders/create", "orders/paid"}
    assert topics["orders/create"] == len(shop.live_orders)
    seen_created: set[str] = set()
    orders = {o.order_id: o for o in shop.live_orders}
    for topic, payload in events:
        json.dumps(payload)  # a JSON body
        event = parse_order(topic, payload)
        order = orders[payload["id"]]
        assert event.platform_order_id == str(order.order_id)
        assert event.total == int(order.total * 100)
        assert event.subtotal == int(order.subtotal * 100)
        assert event.lines and [line.sku for line in event.lines] == [
            line.sku for line in order.lines
        ]
        assert event.shipping_address and event.shipping_address["country_code"] == "CN"
        assert event.buyer and event.buyer.external_ids == {"shopify": str(order.customer_id)}
        assert event.created_at and event.created_at.startswith(
            (TODAY.isoformat(), (TODAY - timedelta(days=1)).isoformat())
        )
        if topic == "orders/create":
            assert event.paid_at is None
            seen_created.add(event.platform_order_id)
        else:
            assert event.paid_at is not None
            assert event.platform_order_id in seen_created  # created before paid
    times = [payload["updated_at"] for _, payload in events]
    assert times == sorted(times)


def test_live_buyers_are_existing_and_new_customers(shop):
    known = {c.customer_id: c for c in shop.customers}
    new = {c.customer_id: c for c in shop.new_customers}
    existing = [o for o in shop.live_orders if o.customer_id in known]
    fresh = [o for o in shop.live_orders if o.customer_id in new]
    assert existing and fresh and len(existing) + len(fresh) == len(shop.live_orders)
    for order in existing:
        customer = shop.customer(order.customer_index)
        assert customer is known[order.customer_id]
        assert (order.email, order.phone) == (customer.email, customer.phone)
    history_ids = {o.order_id for o in shop.orders}
    assert not history_ids & {o.order_id for o in shop.live_orders}
    assert shop.live_orders[0].number == shop.orders[-1].number + 1
