"""Email through SES, SMS through SNS, each through one lazily built client (no client at
import: that is cold-start time).

A failure a retry may fix (throttling, a timeout, the service down) raises `Unavailable`, so a
workflow step retries it. A refusal that will never succeed (the address or number is not
valid, SES rejects the message) raises `DeliveryRefused`: the caller records it and moves on.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

from crm.domain.errors import CrmError, Unavailable

DEFAULT_SENDER = "orders@shop.example"

# Error codes that mean "this message to this address will never go": retrying is pointless.
REFUSED_CODES = frozenset(
    {
        "MessageRejected",  # SES: content refused, or an address SES will not send to
        "InvalidParameterValue",  # SES: a malformed address; SNS: a malformed number
        "InvalidParameter",  # SNS: e.g. a phone number not in E.164
        "ValidationError",
    }
)


class DeliveryRefused(CrmError):
    """The provider refused the message for good (bad address, rejected content)."""

    code = "delivery_refused"


def sender() -> str:
    return os.environ.get("CRM_SENDER_EMAIL") or DEFAULT_SENDER


@lru_cache(maxsize=1)
def _ses() -> Any:
    import boto3

    return boto3.client("ses")


@lru_cache(maxsize=1)
def _sns() -> Any:
    import boto3

    return boto3.client("sns")


def _error_code(exc: Exception) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


def _failure(exc: Exception, what: str) -> CrmError:
    code = _error_code(exc)
    if code in REFUSED_CODES:
        return DeliveryRefused(f"the {what} was refused ({code})", details=[{"code": code}])
    return Unavailable(f"the {what} could not be sent")


def send_email(to: str, subject: str, body: str) -> str:
    """Send a plain-text email; the provider's message id."""
    try:
        answer = _ses().send_email(
            Source=sender(),
            Destination={"ToAddresses": [to]},
            Message={
                "Subject": {"Data": subject, "Charset": "UTF-8"},
                "Body": {"Text": {"Data": body, "Charset": "UTF-8"}},
            },
        )
    except Exception as exc:
        raise _failure(exc, "email") from exc
    return str(answer["MessageId"])


def send_sms(phone: str, text: str) -> str:
    """Send a transactional SMS to an E.164 number; the provider's message id."""
    try:
        answer = _sns().publish(
            PhoneNumber=phone,
            Message=text,
            MessageAttributes={
                "AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": "Transactional"}
            },
        )
    except Exception as exc:
        raise _failure(exc, "SMS") from exc
    return str(answer["MessageId"])


def reset() -> None:
    _ses.cache_clear()
    _sns.cache_clear()
