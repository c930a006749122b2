"""What an order webhook says, as a platform-neutral event.

Every platform's payload (Shopify's REST JSON, the project's generic format) is parsed into an
`OrderEvent`: the order's details as of `updated_at`, and the *facts* it carries (paid,
cancelled, fulfilled, refunds). Details are replaced only by a newer event; facts are merged
whatever the order of arrival, so a paid or cancelled order is never lost to reordering.
Amounts are integer minor units of `currency`. Timestamps are ISO 8601 in UTC
(`2026-11-23T10:00:00+00:00`). Pure: no AWS here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# What happened, in the platform-neutral vocabulary. `update` carries details only.
KINDS = ("create", "update", "paid", "cancelled", "fulfilled", "refund")


@dataclass(frozen=True)
class Line:
    sku: str
    quantity: int
    unit_price: int  # minor units, before discounts
    title: str = ""
    line_id: str | None = None  # the platform's line item id (refunds refer to it)
    product_id: str | None = None
    variant_id: str | None = None


@dataclass(frozen=True)
class RefundLine:
    quantity: int
    line_id: str | None = None
    sku: str | None = None
    amount: int = 0  # goods value refunded for this line, minor units


@dataclass(frozen=True)
class Refund:
    refund_id: str  # the platform's refund id; the key of the refund's effects
    at: str
    amount: int  # money returned to the customer, minor units (may include shipping)
    goods_amount: int  # value of goods refunded, minor units (what points are reversed on)
    lines: tuple[RefundLine, ...] = ()
    reason: str | None = None
    restock: bool = False
    # A platform's refund is `completed` (the money is back). One asked for through the API is
    # `requested` until the payment adapter records it: `completed`, or `failed`.
    status: str = "completed"
    # An import's refunded amount (`import-<id>`, see `IMPORT_REFUND_PREFIX`): when the CRM
    # recorded it. The export it came from was made before, so it covers no refund made after.
    as_of: str | None = None
    # `CRM` for a refund the CRM asked for itself (the API, a case, a cancellation): stamped when
    # the order first records it as `requested`. None: the platform's (or an import's).
    origin: str | None = None
    # What the refund workflow could not do with the stock: None (nothing to report), "failed"
    # (the restock or release failed: a `restock_failed` case is open), "restocked" (done later,
    # when the case was resolved with `retry`).
    restock_status: str | None = None


REFUND_RANK = {"requested": 0, "completed": 1, "failed": 1}
CRM = "crm"
# The id of the one refund an order history file's refunded amount becomes: `import-<id>`. It
# stands for every refund the platform had made when the file was exported (docs/imports.md).
IMPORT_REFUND_PREFIX = "import-"


@dataclass(frozen=True)
class Buyer:
    """Who bought, as the platform identifies them; raw values, normalised by the profile."""

    external_ids: dict[str, str] = field(default_factory=dict)  # {"shopify": "207119551"}
    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None


@dataclass(frozen=True)
class OrderEvent:
    source: str  # "shopify", or the generic format's `source` ("woocommerce", ...)
    platform_order_id: str
    kind: str  # one of KINDS
    updated_at: str  # the order's updated_at as of this event
    # Details: None when the event does not carry them (a refunds/create payload).
    created_at: str | None = None
    currency: str | None = None
    lines: tuple[Line, ...] | None = None
    subtotal: int | None = None  # goods after discounts, before shipping and tax
    shipping: int | None = None
    total: int | None = None
    shipping_address: dict[str, Any] | None = None  # country_code, province, city, zip, ...
    buyer: Buyer | None = None
    name: str | None = None  # the shop's order name, e.g. "#1001"
    # Facts: set when this event says so, never unset by a later event.
    paid_at: str | None = None
    cancelled_at: str | None = None
    cancel_reason: str | None = None
    fulfilled_at: str | None = None
    refunds: tuple[Refund, ...] = ()
    # True when `refunds` is every refund the platform had made as of `updated_at` (a platform's
    # whole order, which lists its refunds), not just some (`refunds/create`, an import, the
    # CRM's own events). Says how much the payload told, not what it says: not compared.
    refunds_complete: bool = field(default=False, compare=False)

    @property
    def order_id(self) -> str:
        """The project's own id of the order: unique across platforms."""
        return order_id(self.source, self.platform_order_id)


def order_id(source: str, platform_order_id: str) -> str:
    return f"ord_{source}_{platform_order_id}"
