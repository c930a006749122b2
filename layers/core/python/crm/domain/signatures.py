"""Webhook signature verification: pure functions over the raw body, a header and the secrets.

Two schemes:

* Shopify: `X-Shopify-Hmac-Sha256` is base64(HMAC-SHA256(secret, raw body)).
* Generic: `X-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`; the
  timestamp must be within a tolerance of now, so a captured request cannot be replayed later.

Both accept a list of secrets: during a rotation the new and the previous secret are both valid
(see `crm.config.get_secrets`). Every secret is always tried, with constant-time comparisons,
so neither the timing nor the answer says which secret matched or how close a guess was. Every
refusal raises `Unauthenticated`; nothing here reads configuration or talks to AWS.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Sequence

from crm.domain.errors import Unauthenticated

SHOPIFY_HEADER = "X-Shopify-Hmac-Sha256"
GENERIC_HEADER = "X-Signature"
DEFAULT_TOLERANCE_SECONDS = 300

_DIGEST_SIZE = hashlib.sha256().digest_size  # 32 bytes
_TIMESTAMP = re.compile(r"[0-9]{1,15}")
_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")


def _mac(secret: str, message: bytes) -> bytes:
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()


def _usable(secrets: Sequence[str]) -> list[str]:
    """The non-empty secrets; an empty key would let anyone sign, so it never counts."""
    usable = [secret for secret in secrets if secret]
    if not usable:
        raise Unauthenticated("no webhook secret is configured; the request cannot be verified")
    return usable


def _matches_any(candidates: Sequence[bytes], secrets: Sequence[str], message: bytes) -> bool:
    """True if any candidate equals the MAC under any secret. Every pair is compared (no early
    return) so the time taken does not depend on which secret or candidate matched."""
    matched = False
    for secret in secrets:
        expected = _mac(secret, message)
        for candidate in candidates:
            matched |= hmac.compare_digest(expected, candidate)
    return matched


def sign_shopify(raw_body: bytes, secret: str) -> str:
    """The `X-Shopify-Hmac-Sha256` value Shopify would send for this body."""
    return base64.b64encode(_mac(secret, raw_body)).decode("ascii")


def verify_shopify(raw_body: bytes, header: str | None, secrets: Sequence[str]) -> None:
    """Accept the body if the header is its HMAC under any of the secrets, else raise
    `Unauthenticated`."""
    value = (header or "").strip()
    if not value:
        raise Unauthenticated(f"missing {SHOPIFY_HEADER} header")
    usable = _usable(secrets)
    try:
        candidate = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise Unauthenticated(f"the {SHOPIFY_HEADER} header is not valid base64") from None
    if len(candidate) != _DIGEST_SIZE:
        raise Unauthenticated(f"the {SHOPIFY_HEADER} header is not an HMAC-SHA256 signature")
    if not _matches_any([candidate], usable, raw_body):
        raise Unauthenticated("the webhook signature does not match")


def sign_generic(raw_body: bytes, secret: str, t: int) -> str:
    """The full `X-Signature` value (`t=...,v1=...`) for this body signed at time `t`."""
    timestamp = str(int(t))
    mac = _mac(secret, timestamp.encode("ascii") + b"." + raw_body)
    return f"t={timestamp},v1={mac.hex()}"


def _parse_generic(header: str | None) -> tuple[str, list[bytes]]:
    """The timestamp text and the decoded v1 signatures of an `X-Signature` value."""
    value = (header or "").strip()
    if not value:
        raise Unauthenticated(f"missing {GENERIC_HEADER} header")
    timestamps: list[str] = []
    signatures: list[str] = []
    for part in value.split(","):
        key, sep, item = part.partition("=")
        if not sep:
            continue
        key, item = key.strip(), item.strip()
        if key == "t":
            timestamps.append(item)
        elif key == "v1":
            signatures.append(item)
        # Unknown keys (other schemes, future versions) are ignored.
    if not timestamps:
        raise Unauthenticated(f"the {GENERIC_HEADER} header has no timestamp (t=)")
    if len(timestamps) > 1:
        raise Unauthenticated(f"the {GENERIC_HEADER} header has more than one timestamp (t=)")
    timestamp = timestamps[0]
    if not _TIMESTAMP.fullmatch(timestamp):
        raise Unauthenticated(f"the {GENERIC_HEADER} timestamp is not an integer of unix seconds")
    if not signatures:
        raise Unauthenticated(f"the {GENERIC_HEADER} header has no v1 signature")
    # A v1 entry that is not a hex SHA-256 digest cannot match; it is skipped, not fatal.
    candidates = [bytes.fromhex(sig) for sig in signatures if _HEX_DIGEST.fullmatch(sig)]
    if not candidates:
        raise Unauthenticated(f"the {GENERIC_HEADER} header has no well-formed v1 signature")
    return timestamp, candidates


def check_generic_header(
    header: str | None, now: float, tolerance: int = DEFAULT_TOLERANCE_SECONDS
) -> None:
    """Refuse an `X-Signature` that no secret could make valid: missing, malformed, or with a
    timestamp outside the tolerance. Needs no secret, so it runs before any is looked up."""
    timestamp, _ = _parse_generic(header)
    _check_timestamp(int(timestamp), now, tolerance)


def _check_timestamp(t: int, now: float, tolerance: int) -> None:
    if abs(now - t) > tolerance:
        raise Unauthenticated(
            f"the {GENERIC_HEADER} timestamp is outside the tolerance of {tolerance} seconds"
        )


def verify_generic(
    raw_body: bytes,
    header: str | None,
    secrets: Sequence[str],
    now: float,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
) -> int:
    """Verify an `X-Signature` header and return its timestamp `t`.

    The signed message is the header's `t` exactly as sent (ASCII digits), a dot, then the raw
    body. Any `v1` entry may match under any secret. The timestamp may be at most `tolerance`
    seconds away from `now`, in the past or the future (exactly `tolerance` is accepted).
    """
    timestamp, candidates = _parse_generic(header)
    usable = _usable(secrets)
    if not _matches_any(candidates, usable, timestamp.encode("ascii") + b"." + raw_body):
        raise Unauthenticated("the webhook signature does not match")
    t = int(timestamp)
    _check_timestamp(t, now, tolerance)
    return t
