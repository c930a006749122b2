"""The payment provider, behind one interface: refunds are recorded through it.

`CRM_PAYMENTS` chooses it:

- `local` (the default, the placeholder of the test stages, refused elsewhere by
  `crm.config`): records each refund as a JSON object in the data bucket,
  `payments/<order id>/<refund id>.json`, idempotently, and pays nothing;
- `manual` (a shop without a payment integration): operations are told, on the ops topic, to
  pay the refund back by hand (ids and the amount, no personal data); a retried step may tell
  them twice, with the same refund id.

A real provider implements `refund` with its own idempotency key set to the refund id."""

from __future__ import annotations

import os
from typing import Any, Protocol

from crm.adapters import ops, s3
from crm.config import PLACEHOLDER_PAYMENTS, get_settings
from crm.domain.errors import CrmError
from crm.domain.money import to_decimal_string


class PaymentRefused(CrmError):
    """The provider will never pay this refund out (not retried: compensated)."""

    code = "payment_refused"


class Payments(Protocol):
    def refund(self, order_id: str, refund_id: str, amount: int, currency: str) -> str:
        """Pay `amount` back; the provider's reference. Raises Unavailable (retry) or
        PaymentRefused (compensate)."""


class LocalPayments:
    def refund(self, order_id: str, refund_id: str, amount: int, currency: str) -> str:
        if amount <= 0:
            raise PaymentRefused("nothing to pay back")
        key = f"payments/{order_id}/{refund_id}.json"
        record: dict[str, Any] = {
            "order_id": order_id,
            "refund_id": refund_id,
            "amount": amount,
            "currency": currency,
            "provider": "local",
        }
        s3.put_json(get_settings().data_bucket, key, record)
        return f"local:{refund_id}"


class ManualPayments:
    def refund(self, order_id: str, refund_id: str, amount: int, currency: str) -> str:
        if amount <= 0:
            raise PaymentRefused("nothing to pay back")
        ops.publish(
            f"Refund {refund_id}: pay it back by hand",
            {
                "event": "manual_refund",
                "order_id": order_id,
                "refund_id": refund_id,
                "amount": to_decimal_string(amount, currency),
                "currency": currency,
            },
        )
        return f"manual:{refund_id}"


PROVIDERS: dict[str, type[Payments]] = {
    PLACEHOLDER_PAYMENTS: LocalPayments,
    "manual": ManualPayments,
}


def provider() -> Payments:
    name = os.environ.get("CRM_PAYMENTS", PLACEHOLDER_PAYMENTS)
    if name not in PROVIDERS:
        raise CrmError(f"no payment provider named {name!r} is built in")
    return PROVIDERS[name]()
