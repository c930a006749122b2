"""The message timeline of each customer, and the dedup claims that keep a message to one send.

A record is `customer_id`, `sk` = `<at>#<notification id>`, so a Query newest first is the
timeline. A dedup claim is an item of its own partition, `customer_id` = `dedup#<key>`,
`sk` = `-`, written with `attribute_not_exists`: of any number of concurrent senders, one
wins. A claim is `sending` until its outcome is recorded (in the same transaction as the
record, which marks it `done`); a `sending` claim older than `CLAIM_LEASE` belongs to a sender
that died, and may be taken over, so a crash between the claim and the send does not silence
the message for good.
"""

from __future__ import annotations

import builtins
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from pynamodb.connection import Connection
from pynamodb.exceptions import (
    DeleteError,
    PutError,
    PynamoDBException,
    TransactWriteError,
    UpdateError,
)
from pynamodb.transactions import TransactWrite

from crm import clock
from crm.config import get_settings
from crm.domain import cursors
from crm.domain.errors import Unavailable
from crm.store import retry
from crm.store.models import NotificationModel, bind_models
from crm.store.retry import RetryingConnection

DEDUP_PREFIX = "dedup#"
CLAIM_SK = "-"
SENDING, DONE = "sending", "done"
# Longer than a Lambda can run (15 minutes): a live sender never loses its claim.
CLAIM_LEASE = timedelta(minutes=20)
# What erasure removes from a record: the text sent and the address it went to.
PERSONAL_ATTRIBUTES = ("to", "subject", "text")
_FIELDS = (
    "notification_id",
    "kind",
    "channel",
    "to",
    "status",
    "reason",
    "locale",
    "subject",
    "text",
    "dedup_key",
    "at",
    "provider_message_id",
)


def _condition_failed(error: PynamoDBException) -> bool:
    return getattr(error, "cause_response_code", None) == "ConditionalCheckFailedException"


def record_view(item: NotificationModel) -> dict[str, Any]:
    """A record as stored (unmasked): the caller decides what a view shows."""
    view = {name: getattr(item, name) for name in _FIELDS}
    if item.forgotten_at:
        view["forgotten_at"] = item.forgotten_at
    return view


def _claim(
    dedup_key: str, now: str, notification_id: str | None, kind: str
) -> tuple[NotificationModel, Any]:
    """The claim item and the condition under which it may be written: free, or taken over
    from a dead sender (`sending` past the lease), or ours already (this very claim was written
    and its answer lost: a 500 after the write, sent again by the SDK)."""
    item = NotificationModel(
        DEDUP_PREFIX + dedup_key,
        CLAIM_SK,
        status=SENDING,
        at=now,
        dedup_key=dedup_key,
        notification_id=notification_id,
        kind=kind or None,
    )
    condition = NotificationModel.customer_id.does_not_exist() | (
        (NotificationModel.status == SENDING) & (NotificationModel.at < _stale_before(now))
    )
    if notification_id:
        condition = condition | (
            (NotificationModel.status == SENDING)
            & (NotificationModel.notification_id == notification_id)
        )
    return item, condition


def _stale_before(now: str) -> str:
    return (datetime.fromisoformat(now) - CLAIM_LEASE).isoformat(timespec="milliseconds")


def claim_in(
    tx: TransactWrite, dedup_key: str, now: str, *, notification_id: str, kind: str
) -> None:
    """Add the claim of `dedup_key` to a transaction of other writes (a workflow step claims
    its message in the same write that records the step): the transaction is cancelled if
    the claim is not free, exactly when `NotificationStore.claim` would answer False."""
    item, condition = _claim(dedup_key, now, notification_id, kind)
    tx.save(item, condition=condition)


def claim_key(dedup_key: str) -> dict[str, Any]:
    """The claim's key, for a BatchGetItem that reads it with what a step reads."""
    return {"customer_id": {"S": DEDUP_PREFIX + dedup_key}, "sk": {"S": CLAIM_SK}}


def claim_is_free(raw: dict[str, Any] | None, now: str) -> bool:
    """Whether a claim read raw (None: absent) may be taken now: absent, or a dead sender's."""
    if raw is None:
        return True
    item = NotificationModel.from_raw_data(raw)
    return item.status == SENDING and (item.at or "") < _stale_before(now)


class NotificationStore:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    # -- dedup ---------------------------------------------------------------------------------

    def claim(
        self, dedup_key: str, now: str, *, notification_id: str | None = None, kind: str = ""
    ) -> bool:
        """Claim `dedup_key` for one send; False when another sender holds it or sent it."""
        item, condition = _claim(dedup_key, now, notification_id, kind)
        try:
            item.save(condition=condition)
        except PutError as error:
            if _condition_failed(error):
                return False
            raise Unavailable("the dedup claim could not be written") from error
        except PynamoDBException as error:
            raise Unavailable("the dedup claim could not be written") from error
        return True

    def release(self, dedup_key: str) -> None:
        """Give a claim back (the send failed in a way a retry may fix). A claim already
        marked done is kept: its message went."""
        try:
            NotificationModel(DEDUP_PREFIX + dedup_key, CLAIM_SK).delete(
                condition=NotificationModel.status == SENDING
            )
        except DeleteError as error:
            if _condition_failed(error):
                return
            raise Unavailable("the dedup claim could not be released") from error
        except PynamoDBException as error:
            raise Unavailable("the dedup claim could not be released") from error

    # -- the timeline --------------------------------------------------------------------------

    def record(self, customer_id: str, notification: dict[str, Any]) -> None:
        """Add `notification` (`notification_id`, `at`, ...) to the customer's timeline; its
        dedup claim, if any, is marked done in the same transaction."""
        item = NotificationModel(
            customer_id, f"{notification['at']}#{notification['notification_id']}"
        )
        for name in _FIELDS:
            setattr(item, name, notification.get(name))
        key = notification.get("dedup_key")
        try:
            if not key:
                item.save()
                return
            with TransactWrite(connection=self._connection) as tx:
                tx.save(item)
                tx.update(
                    NotificationModel(DEDUP_PREFIX + key, CLAIM_SK),
                    actions=[
                        NotificationModel.status.set(DONE),
                        NotificationModel.notification_id.set(notification["notification_id"]),
                    ],
                )
        except (TransactWriteError, PynamoDBException) as error:
            raise Unavailable("the notification could not be recorded") from error

    def list(
        self, customer_id: str, limit: int, cursor: str | None = None
    ) -> tuple[builtins.list[dict[str, Any]], str | None]:
        """Records newest first; `cursor` is what the previous page returned (opaque and
        URL-safe, like every list's: crm.domain.cursors)."""
        condition = NotificationModel.sk < cursors.decode(cursor, 1)[0] if cursor else None
        try:
            page = NotificationModel.query(
                customer_id, condition, scan_index_forward=False, limit=limit
            )
            items = list(page)
        except PynamoDBException as exc:
            raise Unavailable("the notifications could not be read") from exc
        more = len(items) == limit and page.last_evaluated_key
        next_cursor = cursors.encode(items[-1].sk) if more else None
        return [record_view(item) for item in items], next_cursor

    def move(self, source_id: str, target_id: str) -> int:
        """A merge: the source's records join the target's timeline (same `sk`, so in their
        place), each copied and deleted in one transaction; a record already moved is left
        alone, so a retried merge finishes an interrupted one. How many moved."""
        moved = 0
        try:
            for item in NotificationModel.query(source_id, consistent_read=True):
                copy = NotificationModel(target_id, item.sk)
                for name in (*_FIELDS, "forgotten_at"):
                    setattr(copy, name, getattr(item, name))
                try:
                    with TransactWrite(connection=self._connection) as tx:
                        tx.save(copy, condition=NotificationModel.customer_id.does_not_exist())
                        tx.delete(item, condition=NotificationModel.sk.exists())
                except TransactWriteError as error:
                    reasons = getattr(error, "cancellation_reasons", None) or []
                    if not any(r and r.code == "ConditionalCheckFailed" for r in reasons):
                        raise
                    continue
                moved += 1
        except PynamoDBException as error:
            raise Unavailable("the notifications could not be moved") from error
        return moved

    def forget(self, customer_id: str, now: str | None = None) -> int:
        """Erasure: remove the text and the address from every record of the customer, keeping
        what happened (kind, channel, status, reason, when). How many records changed."""
        forgotten_at = now or clock.now_iso()
        changed = 0
        try:
            for item in NotificationModel.query(customer_id, consistent_read=True):
                if all(getattr(item, name) is None for name in PERSONAL_ATTRIBUTES):
                    continue
                try:
                    item.update(
                        actions=[
                            NotificationModel.to.remove(),
                            NotificationModel.subject.remove(),
                            NotificationModel.text.remove(),
                            NotificationModel.forgotten_at.set(forgotten_at),
                        ],
                        condition=NotificationModel.sk.exists(),
                    )
                except UpdateError as error:
                    if not _condition_failed(error):
                        raise
                    continue
                changed += 1
        except PynamoDBException as error:
            raise Unavailable("the notifications could not be erased") from error
        return changed


@lru_cache(maxsize=1)
def get_notification_store() -> NotificationStore:
    settings = get_settings()
    bind_models(settings)
    return NotificationStore(RetryingConnection(region=NotificationModel.Meta.region))


def reset() -> None:
    retry.reset()  # connections forgotten: their shared client too (a new endpoint, a test)
    get_notification_store.cache_clear()
    NotificationModel._connection = None
