"""Shopify's order export (Admin > Orders > Export > CSV) as Shopify writes it: every column of
the real header, one row per line item, the order's own fields on its first row only (Name,
Email, Created at, the line's columns and Vendor are on every row). Used by the order import
tests to build files like the fixture `tests/fixtures/imports/shopify_orders.csv`; the header is
the importer's own (`crm.domain.order_imports.SHOPIFY_EXPORT_COLUMNS`)."""

from __future__ import annotations

import csv
import io
from typing import Any

from crm.domain.order_imports import (
    SHOPIFY_EXPORT_COLUMNS,
    SHOPIFY_LINE_ITEM_COLUMNS,
    SHOPIFY_REPEATED_COLUMNS,
)

HEADER = list(SHOPIFY_EXPORT_COLUMNS)

EVERY_ROW = SHOPIFY_REPEATED_COLUMNS  # on every row of an order, with the line's columns
LINE = SHOPIFY_LINE_ITEM_COLUMNS


def line(sku: str, quantity: int, price: str, name: str = "") -> dict[str, str]:
    return {
        "Lineitem quantity": str(quantity),
        "Lineitem name": name or f"Product {sku}",
        "Lineitem price": price,
        "Lineitem compare at price": "",
        "Lineitem sku": sku,
        "Lineitem requires shipping": "true",
        "Lineitem taxable": "true",
        "Lineitem fulfillment status": "pending",
        "Vendor": "Demo Shop",
        "Lineitem discount": "0.00",
    }


def order_rows(order: dict[str, Any], lines: list[dict[str, str]]) -> list[dict[str, str]]:
    """The rows of one order: `order` (column -> value) on the first row, then one row per
    further line with only the columns Shopify repeats."""
    defaults = {
        "Accepts Marketing": "no",
        "Taxes": "0.00",
        "Discount Amount": "0.00",
        "Shipping Method": "Standard",
        "Payment Method": "alipay",
        "Refunded Amount": "0.00",
        "Outstanding Balance": "0.00",
        "Risk Level": "Low",
        "Source": "web",
        "Payment Terms Name": "",
    }
    first = {**defaults, **{k: str(v) for k, v in order.items()}, **lines[0]}
    rows = [first]
    for item in lines[1:]:
        rows.append({**{k: first.get(k, "") for k in EVERY_ROW}, **item})
    return rows


def export_csv(orders: list[list[dict[str, str]]], header: list[str] = HEADER) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header, restval="", lineterminator="\n")
    writer.writeheader()
    for rows in orders:
        writer.writerows(rows)
    return out.getvalue()
