"""DynamoDB's passing failures, retried in one place: every store's connection is a
`RetryingConnection`, and every model gets one through `RetryingModel`.

botocore already retries throttling (`ProvisionedThroughputExceededException`,
`ThrottlingException`) and HTTP 5xx, four attempts in all for DynamoDB. It does not retry a
transaction cancelled because another transaction held one of its items (`TransactionCanceled`
with `TransactionConflict` among the reasons, nothing else), nor a single write refused for the
same reason (`TransactionConflictException`): AWS asks the caller to back off and send it again.
That is what happens here, with backoff and jitter, for those and for what botocore gave up on
(`ATTEMPTS`: fewer for throttling, which botocore already waited seconds for); a failure that
is an answer (a condition that does not hold, a validation error) is never retried, and after
the last attempt the error goes to the caller as before.

A transaction is sent with one `ClientRequestToken` for all its attempts, so a transaction that
was applied but whose answer was lost (a 500 after the write) is not applied twice: DynamoDB
answers the repeat with success (the token is kept for 10 minutes).
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import uuid
from typing import Any

from botocore.exceptions import ClientError
from pynamodb.connection import Connection
from pynamodb.connection.table import TableConnection
from pynamodb.models import Model

log = logging.getLogger(__name__)

BASE_DELAY = 0.02  # seconds; doubled each attempt, with full jitter
MAX_DELAY = 1.0
CONFLICT, SERVER, THROTTLE = "conflict", "server", "throttle"
# Attempts in all, by what the last failure was. A conflict is not retried by botocore and
# costs a few milliseconds; a 5xx was already sent 4 times by botocore with a 25 ms base
# backoff. A throttle was too, but botocore's backoff for it starts at 1 s: one more round
# (up to ~7 s more), then the caller answers 503 or its workflow retries later, which keeps a
# webhook inside the platform's few seconds and stops adding load to a throttled table.
ATTEMPTS = {CONFLICT: 6, SERVER: 6, THROTTLE: 2}
_KIND_OF_CODE = {
    "TransactionConflictException": CONFLICT,
    "TransactionInProgressException": CONFLICT,
    "InternalServerError": SERVER,
    "ServiceUnavailable": SERVER,
    "ProvisionedThroughputExceededException": THROTTLE,
    "ThrottlingException": THROTTLE,
    "RequestLimitExceeded": THROTTLE,
}
# A cancellation whose reasons are only these is passing; any other reason
# (ConditionalCheckFailed, ValidationError, ...) makes it an answer.
_KIND_OF_REASON = {
    "TransactionConflict": CONFLICT,
    "ThrottlingError": THROTTLE,
    "ProvisionedThroughputExceeded": THROTTLE,
}


def passing_kind(error: ClientError) -> str | None:
    """CONFLICT, SERVER or THROTTLE when the failure may not happen again (send the same
    request again after a pause); None when it is an answer."""
    response: dict[str, Any] = getattr(error, "response", None) or {}
    code = (response.get("Error") or {}).get("Code")
    if code in _KIND_OF_CODE:
        return _KIND_OF_CODE[code]
    if code == "TransactionCanceledException":
        reasons = {r.get("Code") for r in response.get("CancellationReasons") or []} - {"None"}
        if reasons and reasons <= _KIND_OF_REASON.keys():
            return THROTTLE if THROTTLE in {_KIND_OF_REASON[r] for r in reasons} else CONFLICT
        return None
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0
    return SERVER if status >= 500 else None


def backoff(attempt: int) -> float:
    return random.uniform(0, min(MAX_DELAY, BASE_DELAY * 2**attempt))


# One botocore client per endpoint for the whole process (see `RetryingConnection.client`).
_CLIENTS: dict[tuple[str | None, str | None], Any] = {}
_CLIENTS_LOCK = threading.Lock()


def _usable(client: Any) -> bool:
    # PynamoDB's own test: a client built while credentials were unavailable never gets them.
    signer = getattr(client, "_request_signer", None)
    return client is not None and not (signer and not signer._credentials)


class RetryingConnection(Connection):
    """A PynamoDB connection whose calls are sent again while they fail in a passing way, over
    the process's one DynamoDB client."""

    @property
    def client(self) -> Any:
        """PynamoDB builds a client per connection, each from a new botocore session that parses
        the DynamoDB service model again (about 90 ms on a cold Lambda), and a request touches
        several tables: every connection of the process shares one client per endpoint instead
        (botocore clients are thread-safe once built; building one is not, hence the lock)."""
        if _usable(self._client):
            return self._client
        # The endpoint botocore would resolve from the environment counts too: a process
        # that moves to another endpoint (a local stack, a test) gets a client for it.
        key = (
            self.region,
            self.host
            or os.environ.get("AWS_ENDPOINT_URL_DYNAMODB")
            or os.environ.get("AWS_ENDPOINT_URL"),
        )
        with _CLIENTS_LOCK:
            shared = _CLIENTS.get(key)
            if not _usable(shared):
                self._client = None
                shared = _CLIENTS[key] = super().client
            self._client = shared
        return shared

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
                kind = passing_kind(raw)
                if kind is None or attempt >= ATTEMPTS[kind]:
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


def reset() -> None:
    """Forget the shared clients (tests; a process that moves to another endpoint)."""
    with _CLIENTS_LOCK:
        _CLIENTS.clear()
