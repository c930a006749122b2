"""Schemathesis hooks for the contract run (`test_openapi_contract_e2e.py`).

- Sign the bodies of the webhook and carrier routes as Shopify, a platform and a carrier do, so
  generated requests reach the code behind the signature check instead of stopping at 401. A
  request is signed only when it carries the signature header at all: a case that leaves it out
  on purpose (a missing required header) must still be refused.
- Give the document's own formats (`phone`, `timezone`, `birthday`, `carrier-time`) values of
  what they name: a phone number valid in its country, a real IANA zone, a past date, a time
  inside the carrier window. No schema keyword can say "a valid Chinese mobile number"; the
  format names it, and these generators know it."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
import schemathesis
from hypothesis import strategies as st

from crm.domain.signatures import sign_generic, sign_shopify
from tests.support.shopify import LOGISTICS_SECRET, SHOPIFY_SECRET, WEBHOOK_SECRET

# path -> (header, how to sign the exact bytes sent)
SIGNED = {
    "/webhooks/shopify": ("X-Shopify-Hmac-Sha256", lambda body: sign_shopify(body, SHOPIFY_SECRET)),
    "/webhooks/orders": (
        "X-Signature",
        lambda body: sign_generic(body, WEBHOOK_SECRET, int(time.time())),
    ),
    "/logistics/events": (
        "X-Signature",
        lambda body: sign_generic(body, LOGISTICS_SECRET, int(time.time())),
    ),
}


class SignBody(requests.auth.AuthBase):
    """Runs after `requests` has encoded the body, so the signature covers the bytes sent."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        signed = SIGNED.get(urlsplit(request.url or "").path)
        if signed is None:
            return request
        header, sign = signed
        if header not in request.headers:
            return request
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        request.headers[header] = sign(body)
        return request


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    kwargs["auth"] = SignBody()


# -- the document's formats -------------------------------------------------------------------

PHONES = st.sampled_from(
    [
        "13800138000",
        "+86 139 1234 5678",
        "+8615912345678",
        "+1 212 555 0123",
        "+44 20 7946 0958",
        "+81 3-1234-5678",
        "186-0000-1234",
    ]
)
TIMEZONES = st.sampled_from(
    ["Asia/Shanghai", "Asia/Hong_Kong", "Europe/London", "America/New_York", "UTC", "Asia/Tokyo"]
)
BIRTHDAYS = st.dates(date(1900, 1, 1), date(2020, 12, 31)).map(date.isoformat)
# Times from an hour ago to a minute ago, with an offset: inside the window whatever the
# machine's speed (the window is 30 days back and 5 minutes ahead).
CARRIER_TIMES = st.integers(60, 3600).map(
    lambda seconds: (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat(timespec="seconds")
)

schemathesis.openapi.format("phone", PHONES)
schemathesis.openapi.format("timezone", TIMEZONES)
schemathesis.openapi.format("birthday", BIRTHDAYS)
schemathesis.openapi.format("carrier-time", CARRIER_TIMES)


# -- a CPython 3.11.7 bug ------------------------------------------------------------------------
# `ast.parse` raises SystemError ("AST constructor recursion depth mismatch") when called deep in
# a recursion on this interpreter (python/cpython gh-106905, fixed in later 3.11 releases).
# Hypothesis calls it only to describe a lambda in a strategy's repr, and lets only SyntaxError
# through as "unknown"; the description is cosmetic, so the same fallback is used here.
def _describe_lambda_safely() -> None:
    from hypothesis.internal import lambda_sources

    describe = lambda_sources._lambda_description

    def described(f: Any, *args: Any, **kwargs: Any) -> str:
        try:
            return describe(f, *args, **kwargs)
        except SystemError:
            return "lambda: <unknown>"

    lambda_sources._lambda_description = described


_describe_lambda_safely()
