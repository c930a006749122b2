"""Retrying a read-change-write that lost a race: the one helper for every optimistic write.

Writers that read an item, change it and write it back on condition that nobody wrote in
between lose that race now and then under concurrency; the answer is to read again and redo the
change after a short, jittered pause (jitter: racing writers stop colliding in lockstep). After
`attempts` lost races the caller is told to retry later (`Unavailable`, a 503), never left
waiting. Failures DynamoDB itself asks to retry (throttling, transaction conflicts) are retried
below this, in `crm.store.retry`."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from crm.domain.errors import Unavailable

T = TypeVar("T")

ATTEMPTS = 16


def pause(attempt: int) -> None:
    """A jittered pause that grows with the attempt (capped: a few tens of milliseconds)."""
    time.sleep(random.uniform(0.002, 0.012) * min(attempt + 1, 6))


def retry_on_contention(
    attempt_once: Callable[[], T],
    *,
    lost: tuple[type[BaseException], ...],
    what: str,
    attempts: int = ATTEMPTS,
    on_retry: Callable[[], None] | None = None,
    plural: bool = False,
) -> T:
    """`attempt_once()` until it returns; on an exception in `lost`, pause and try again.
    `what` names what was contended in the message ("the customer"; `plural` for "the
    customers"), which callers see in the 503."""
    for attempt in range(attempts):
        try:
            return attempt_once()
        except lost:
            if on_retry is not None:
                on_retry()
            pause(attempt)
    verb = "are" if plural else "is"
    raise Unavailable(f"{what} {verb} being changed by many requests at once; retry")
