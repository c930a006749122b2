"""Make the embedded DynamoDB apply one request at a time, as DynamoDB's items appear to.

moto 5.2.5's `transact_write_items` takes a deep copy of every table it touches and, when any
condition fails, puts the copies back: a write another thread made in between is silently
undone, and the copy itself can fail with "dictionary changed size during iteration". Under
concurrent webhooks that lost orders. `install()` wraps the DynamoDB request handler in one
lock, so a transaction is all-or-nothing and isolated from every other request. Conditions are
still evaluated against whatever the concurrent clients wrote before, so concurrency tests keep
their meaning (DynamoDB itself serialises writes per item). Part of the moto pin: see
`crm_local.lambda_executor.MOTO_PIN`.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

_lock = threading.RLock()
_installed = False


def install() -> None:
    """Idempotent. Fails loudly if moto is not the pinned version."""
    global _installed
    from crm_local.lambda_executor import check_moto

    check_moto()
    if _installed:
        return
    from moto.dynamodb.responses import DynamoHandler

    original = DynamoHandler.call_action

    @functools.wraps(original)
    def call_action(self: Any) -> Any:
        with _lock:
            return original(self)

    DynamoHandler.call_action = call_action  # type: ignore[method-assign]
    _installed = True
