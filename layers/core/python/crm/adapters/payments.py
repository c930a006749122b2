"""The payment provider, behind one interface: refunds are recorded through it.

`LocalPayments` (the default, and the only one until a provider is chosen) records each refund
as a JSON object in the data bucket, `payments/<order id>/<refund id>.json`, idempotently: the
same refund twice is one payout. A real provider implements `refund` with its own idempotency
key set to the refund id. `CRM_PAYMENTS=local` selects it."""

from __future__ import annotations

import os
from typing import Any, Protocol

from crm.adapters import s3
from crm.config import get_settings
from crm.domain.errors import CrmError


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


def provider() -> Payments:
    name = os.environ.get("CRM_PAYMENTS", "local")
    if name != "local":
        raise CrmError(f"no payment provider named {name!r} is built in")
    return LocalPayments()
