"""The HTTP edge: reading request bodies, the operator token, and the one mapping from domain
errors to the contract's error shape. Kept light: the API Lambda imports it at cold start."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from typing import Any

from chalice import Response
from chalice.app import Request

from crm.config import get_secret, get_settings
from crm.domain.errors import (
    Conflict,
    CrmError,
    Forbidden,
    MalformedRequest,
    NotFound,
    PayloadTooLarge,
    Unauthenticated,
    Unavailable,
    Unprocessable,
    ValidationFailed,
)
from crm.domain.parsing import ascii_int, parse_json
from crm.observability import logger
from crm.store.errors import limit_exceeded, refused_as_invalid

STATUS: dict[type[CrmError], int] = {
    MalformedRequest: 400,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    Unprocessable: 409,
    PayloadTooLarge: 413,
    ValidationFailed: 422,
    Unavailable: 503,
}


def status_of(error: CrmError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_body(
    code: str, message: str, details: list[Any] | None = None, **extra: Any
) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or [], **extra}}


def error_response(error: CrmError) -> Response:
    status = status_of(error)
    headers: dict[str, str | list[str]] = {"Content-Type": "application/json"}
    if status == 503:
        headers["Retry-After"] = "1"
    return Response(
        body=error_body(error.code, error.message, error.details, **error.extra),
        status_code=status,
        headers=headers,
    )


def json_response(body: Any, status: int = 200) -> Response:
    return Response(body=body, status_code=status, headers={"Content-Type": "application/json"})


def read_json(request: Request) -> Any:
    """The request body as JSON. 413 past the size limit, 400 when it is not JSON."""
    return parse_json(raw_body(request, get_settings().max_body_bytes))


def raw_body(request: Request, limit: int) -> bytes:
    """The body's bytes as sent (what a signature is computed over); 413 past `limit`."""
    raw = request.raw_body or b""
    if isinstance(raw, str):
        raw = raw.encode()
    if len(raw) > limit:
        raise PayloadTooLarge(f"the body is {len(raw)} bytes; the limit is {limit}")
    return raw


def read_json_object(request: Request) -> dict[str, Any]:
    body = read_json(request)
    if not isinstance(body, dict):
        raise ValidationFailed(
            "the body must be a JSON object", details=[{"field": "", "issue": "wrong_type"}]
        )
    return body


def query(request: Request) -> dict[str, str]:
    return dict(request.query_params or {})


DEFAULT_LIMIT, MAX_LIMIT = 50, 500


def page_limit(params: dict[str, str]) -> int:
    """`?limit=` per the contract: default 50, 1 to 500; anything else is a 422."""
    raw = params.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    limit = ascii_int(raw, minimum=1, maximum=MAX_LIMIT)
    if limit is None:
        raise ValidationFailed(
            f"limit must be an integer from 1 to {MAX_LIMIT} in ASCII digits",
            details=[{"field": "limit", "issue": "out_of_range"}],
        )
    return limit


def endpoint(view: Callable[..., Response]) -> Callable[..., Response]:
    """Turn domain errors into contract responses. An unexpected exception is logged (masked)
    and answered 500 without internals: that is a bug of ours, never the caller's input."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Response:
        try:
            return view(*args, **kwargs)
        except CrmError as error:
            if isinstance(error, Unavailable) and refused_as_invalid(error.__cause__):
                # A store that has not told DynamoDB's refusals apart from outages yet: a
                # request DynamoDB will never accept is the caller's content, not an outage.
                logger.info("refused by the store as invalid", extra={"code": error.code})
                return error_response(limit_exceeded())
            if status_of(error) >= 500:
                cause = error.__cause__
                logger.warning(
                    "dependency unavailable",
                    extra={
                        "code": error.code,
                        "cause": type(cause).__name__ if cause else None,
                        "cause_detail": str(getattr(cause, "cause", "") or "")[:200],
                    },
                )
            return error_response(error)
        except Exception:
            logger.exception("unhandled error")
            return Response(
                body=error_body("internal_error", "an unexpected error occurred"),
                status_code=500,
                headers={"Content-Type": "application/json"},
            )

    return wrapper


# Chalice answers some requests itself (a method the route lacks, an unhandled exception) with
# `{"Code": ..., "Message": ...}`; `contract_errors` rewrites those into the contract's shape.
_CHALICE_CODES = {
    "BadRequest": "malformed_request",
    "BadRequestError": "malformed_request",
    "UnauthorizedError": "unauthenticated",
    "ForbiddenError": "forbidden",
    "NotFoundError": "not_found",
    "MethodNotAllowedError": "method_not_allowed",
    "ConflictError": "conflict",
    "UnprocessableEntityError": "validation_failed",
    "UnsupportedMediaType": "unsupported_media_type",
    "TooManyRequestsError": "too_many_requests",
    "InternalServerError": "internal_error",
}


def contract_errors(request: Request, get_response: Callable[[Request], Response]) -> Response:
    """HTTP middleware: every error answer in the contract's shape, whoever produced it."""
    response = get_response(request)
    body = response.body
    if response.status_code >= 400 and isinstance(body, dict) and set(body) == {"Code", "Message"}:
        code = _CHALICE_CODES.get(str(body["Code"]), "error")
        message = str(body["Message"])
        if response.status_code >= 500:
            message = "an unexpected error occurred"
        response.body = error_body(code, message)
        response.headers = {**(response.headers or {}), "Content-Type": "application/json"}
    return response


def check_operator_token(authorization: str | None) -> None:
    """Raise `Unauthenticated` unless `authorization` is `Bearer <the operator token>`.

    The message is exactly "Unauthorized": that is what makes API Gateway answer 401."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    expected = get_secret("operator_token")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode(), expected.encode()
    ):
        raise Unauthenticated("Unauthorized")
