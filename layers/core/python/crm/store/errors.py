"""Telling DynamoDB's refusals apart: a request DynamoDB will never accept (an item over 400 KB,
more than 100 items in one transaction, any `ValidationException`) is the caller's content,
answered 422 `store_limit_exceeded`; throttling, conflicts and 5xx are `Unavailable` (503, and
a workflow step retries them). Decided by error codes and cancellation reason codes, never by
message text. Duck-typed (no PynamoDB or botocore import), so `crm.api` can use it too."""

from __future__ import annotations

from typing import Any

from crm.domain.errors import CrmError, StoreLimitExceeded, Unavailable

VALIDATION_CODES = frozenset({"ValidationException"})
# A transaction's per-item cancellation reason for an item DynamoDB refuses as it is.
VALIDATION_REASONS = frozenset({"ValidationError", "ItemCollectionSizeLimitExceeded"})


def _code(error: BaseException) -> str | None:
    code = getattr(error, "cause_response_code", None)  # PynamoDB's errors
    if code:
        return str(code)
    response = getattr(error, "response", None)  # botocore's ClientError
    if isinstance(response, dict):
        return (response.get("Error") or {}).get("Code")
    return None


def error_code(error: BaseException) -> str | None:
    """DynamoDB's error code of `error` (a PynamoDB error, or botocore's ClientError from a
    call dispatched as it is), None for anything else."""
    return _code(error)


def _reasons(error: BaseException) -> list[str]:
    reasons = getattr(error, "cancellation_reasons", None) or []
    return [str(getattr(r, "code", "") or "") for r in reasons if r is not None]


def refused_as_invalid(error: BaseException | None) -> bool:
    """True when `error`, or an error it was raised from, is DynamoDB refusing the request
    itself (no retry can succeed)."""
    seen = 0
    while error is not None and seen < 10:
        if _code(error) in VALIDATION_CODES or VALIDATION_REASONS & set(_reasons(error)):
            return True
        error = error.__cause__ or error.__context__
        seen += 1
    return False


def store_error(error: BaseException, message: str) -> CrmError:
    """The error to raise (`from error`) for a failed DynamoDB call."""
    if refused_as_invalid(error):
        return limit_exceeded()
    return Unavailable(message)


def limit_exceeded(**extra: Any) -> StoreLimitExceeded:
    return StoreLimitExceeded(
        "the data is too large to store: it breaks a DynamoDB limit (400 KB per item, "
        "100 items per transaction); retrying will not help",
        details=[{"field": "", "issue": "store_limit_exceeded", **extra}],
    )
