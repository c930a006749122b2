"""DynamoDB's passing failures, retried in one place: every store's connection is a
`RetryingConnection`, and every model gets one through `RetryingModel`.

botocore already retries throttling (`ProvisionedThroughputExceededException`,
`ThrottlingException`) and HTTP 5xx, four attempts in all for DynamoDB. It does not retry a
transaction cancelled because another transaction held one of its items (`TransactionCanceled`
with `TransactionConflict` among the reasons, nothing else), nor a single write refused for the
same reason (`TransactionConflictException`): AWS asks the caller to back off and send it again.
That is what happens here, with backoff and jitter, for those and for what botocore gave up on;
a failure that is an answer (a condition that does not hold, a validation error) is never
retried, and after `ATTEMPTS` the last error goes to the caller as before.

A transaction is sent with one `ClientRequestToken` for all its attempts, so a transaction that
was applied but whose answer was lost (a 500 after the write) is not applied twice: DynamoDB
answers the repeat with success (the token is kept for 10 minutes).
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from typing import Any

from botocore.exceptions import ClientError
from pynamodb.connection import Connection
from pynamodb.connection.table import TableConnection
from pynamodb.models import Model

log = logging.getLogger(__name__)

ATTEMPTS = 6
BASE_DELAY = 0.02  # seconds; doubled each attempt, with full jitter
MAX_DELAY = 1.0
# Errors that say "not now" rather than "no".
PASSING_ERRORS = frozenset(
    {
        "TransactionConflictException",
        "TransactionInProgressException",
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
    }
)
# Cancellation reasons of the same kind; any other reason (ConditionalCheckFailed,
# ValidationError, ...) makes the cancellation an answer.
PASSING_REASONS = frozenset(
    {"None", "TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}
)


def is_passing(error: ClientError) -> bool:
    """The failure may not happen again: send the same request again after a pause."""
    response: dict[str, Any] = getattr(error, "response", None) or {}
    code = (response.get("Error") or {}).get("Code")
    if code in PASSING_ERRORS:
        return True
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0
    if status >= 500:
        return True
    if code == "TransactionCanceledException":
        reasons = [r.get("Code") for r in response.get("CancellationReasons") or []]
        return bool(reasons) and set(reasons) <= PASSING_REASONS and set(reasons) != {"None"}
    return False


def backoff(attempt: int) -> float:
    return random.uniform(0, min(MAX_DELAY, BASE_DELAY * 2**attempt))


class RetryingConnection(Connection):
    """A PynamoDB connection whose calls are sent again while they fail in a passing way."""

    def _make_api_call(self, operation_name: str, operation_kwargs: dict[str, Any]) -> Any:
        if operation_name == "TransactWriteItems" and not operation_kwargs.get(
            "ClientRequestToken"
        ):
            operation_kwargs = {**operation_kwargs, "ClientRequestToken": str(uuid.uuid4())}
        attempt = 0
        while True:
            try:
                return super()._make_api_call(operation_name, operation_kwargs)
            except ClientError as error:
                # PynamoDB raises its own error from botocore's, which has the whole answer.
                cause = error.__cause__
                raw = cause if isinstance(cause, ClientError) else error
                attempt += 1
                if attempt >= ATTEMPTS or not is_passing(raw):
                    raise
                log.debug(
                    "DynamoDB %s failed in passing (%s); again",
                    operation_name,
                    (raw.response.get("Error") or {}).get("Code"),
                )
            time.sleep(backoff(attempt - 1))


class RetryingModel(Model):
    """The base of the store's models: their connection is a `RetryingConnection`."""

    @classmethod
    def _get_connection(cls) -> TableConnection:
        table = super()._get_connection()
        if type(table.connection) is Connection:
            # TableConnection builds a plain Connection; this one only adds the retries.
            table.connection.__class__ = RetryingConnection
        return table
