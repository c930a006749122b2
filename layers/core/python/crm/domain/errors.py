"""Domain error classes. `crm.api` maps each to its HTTP status and the contract's error shape;
nothing else decides a status code, and nothing matches on message text."""

from __future__ import annotations

from typing import Any


class CrmError(Exception):
    code = "error"

    def __init__(
        self,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        code: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []
        if code:
            self.code = code
        # Extra top-level fields of the error body (e.g. the balance on insufficient points).
        self.extra = extra or {}


class MalformedRequest(CrmError):
    """The request cannot be read at all (not JSON, not an object)."""

    code = "malformed_request"


class ValidationFailed(CrmError):
    """Well-formed, but the content breaks a rule; `details` says which field and why."""

    code = "validation_failed"


class StoreLimitExceeded(ValidationFailed):
    """The data breaks a limit of the store itself (an item's size, a transaction's items):
    content no retry can store."""

    code = "store_limit_exceeded"


class Unauthenticated(CrmError):
    code = "unauthenticated"


class Forbidden(CrmError):
    code = "forbidden"


class NotFound(CrmError):
    code = "not_found"


class Conflict(CrmError):
    code = "conflict"


class PayloadTooLarge(CrmError):
    code = "payload_too_large"


class Unavailable(CrmError):
    """A dependency is failing in a way a retry may fix."""

    code = "unavailable"


class Unprocessable(CrmError):
    """A workflow step cannot go on with this order as it is (a human must decide).

    Step Functions matches the class name of a task's exception (`errorType`) in its Catch
    rules, so each subclass's name is part of the state machines' contract."""

    code = "unprocessable"


class OutOfStock(Unprocessable):
    code = "out_of_stock"


class AddressNotRoutable(Unprocessable):
    code = "address_not_routable"
