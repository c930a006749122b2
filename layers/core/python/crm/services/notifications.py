"""Transactional messages: the one send path, and a customer's message timeline.

`send` is what every order workflow calls (confirmed, shipped, delivered, refund issued, case
opened): it reads the customer, picks the locale and the channel (consent rules in
`crm.domain.messages`), renders the templates, claims the dedup key, sends through SES or SNS,
and records the outcome on the customer's timeline (`GET /customers/{id}/notifications`),
which is also where a local run shows what was sent.

The dedup key makes a message go at most once: a retried workflow step, or two copies of it
running at once, send one message. A send that fails in a way a retry may fix gives the key
back and raises `Unavailable`, so the step's retry sends it; a refusal for good is recorded as
failed and not raised, so the workflow goes on.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from crm.adapters import messaging
from crm.clock import now_iso
from crm.config import get_settings
from crm.domain.customers import ERASED, MERGED, Customer, refuse_if_erased
from crm.domain.errors import NotFound, Unavailable, ValidationFailed
from crm.domain.messages import EMAIL, Rendered, channel_for, locale_for, render
from crm.observability import logger, metrics
from crm.store.customers import get_customer_repository
from crm.store.notifications import NotificationStore, get_notification_store

SENT, SKIPPED, FAILED, DUPLICATE = "sent", "skipped", "failed", "duplicate"
MAX_DEDUP_KEY = 512
MAX_MERGE_HOPS = 5
PAGE = 500


def new_notification_id() -> str:
    return "ntf_" + uuid.uuid4().hex[:20]


def default_locale() -> str:
    """The shop's language for a customer whose profile has no usable locale."""
    return "zh-CN" if get_settings().default_country == "CN" else "en"


# -- views --------------------------------------------------------------------------------------


def mask_address(to: str | None) -> str | None:
    """`l***@example.com`, `+86*******5678`: enough to tell which address, not to use it."""
    if not to:
        return to
    if "@" in to:
        local, _, domain = to.rpartition("@")
        return f"{local[:1]}***@{domain}"
    return to[:3] + "*" * max(len(to) - 7, 3) + to[-4:]


def notification_view(record: dict[str, Any], *, masked: bool = True) -> dict[str, Any]:
    """A timeline record for the API (the address masked) or for an export (as stored)."""
    view = dict(record)
    if masked:
        view["to"] = mask_address(view.get("to"))
    return view


def notifications_of(customer_id: str, limit: int, cursor: str | None) -> dict[str, Any]:
    """`GET /customers/{id}/notifications`: a page of the customer's timeline, newest first,
    addresses masked."""
    customer = get_customer_repository().get(customer_id)
    if customer is None:
        raise NotFound(f"customer {customer_id} does not exist")
    refuse_if_erased(customer)
    records, next_cursor = get_notification_store().list(customer_id, limit, cursor)
    return {"items": [notification_view(r) for r in records], "next_cursor": next_cursor}


def timeline(
    customer_id: str, limit: int | None = None, *, masked: bool = True
) -> list[dict[str, Any]]:
    """The customer's records newest first: the `limit` newest, or all of them."""
    store = get_notification_store()
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        size = PAGE if limit is None else min(PAGE, limit - len(items))
        page, cursor = store.list(customer_id, size, cursor)
        items += [notification_view(r, masked=masked) for r in page]
        if not cursor or (limit is not None and len(items) >= limit):
            return items


# -- the send path ------------------------------------------------------------------------------


def recipient(customer_id: str) -> Customer:
    """The customer a message for `customer_id` goes to: a merged-away id follows its merge."""
    repo = get_customer_repository()
    for _ in range(MAX_MERGE_HOPS):
        customer = repo.get(customer_id)
        if customer is None:
            raise NotFound(f"customer {customer_id} does not exist")
        if customer.status != MERGED or not customer.merged_into:
            return customer
        customer_id = customer.merged_into
    raise NotFound(f"customer {customer_id} is merged too many times over")


def _check_key(dedup_key: Any) -> str:
    if not isinstance(dedup_key, str) or not dedup_key.strip() or len(dedup_key) > MAX_DEDUP_KEY:
        raise ValidationFailed(
            f"a dedup key (1 to {MAX_DEDUP_KEY} characters) is required",
            details=[{"field": "dedup_key", "issue": "missing"}],
        )
    return dedup_key.strip()


@dataclass
class Notice:
    """A message rendered for its customer, ready to claim and send: what `prepare` makes, so
    that a workflow step can claim it in its own write and `deliver` it after."""

    customer: Customer
    kind: str
    dedup_key: str
    notification_id: str
    at: str
    channel: str | None
    reason: str | None
    locale: str
    rendered: Rendered

    @property
    def ids(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer.customer_id,
            "notification_id": self.notification_id,
            "kind": self.kind,
        }


def prepare(customer: Customer, kind: str, context: dict[str, Any], dedup_key: str) -> Notice:
    """Render `kind` for `customer` and pick the channel. Raises `ValidationFailed` for an
    unknown kind or an incomplete context, before anything is claimed."""
    key = _check_key(dedup_key)
    locale = locale_for(customer.locale, default_locale())
    rendered = render(kind, locale, context)
    channel: str | None
    reason: str | None
    if customer.status == ERASED:
        channel, reason = None, "erased"
    else:
        channel, reason = channel_for(customer.email, customer.phone, customer.consents)
    return Notice(
        customer, kind, key, new_notification_id(), now_iso(), channel, reason, locale, rendered
    )


def duplicate(notice: Notice) -> dict[str, Any]:
    """The answer for a message whose key was claimed already: nothing is sent."""
    logger.info("notification duplicate", extra=notice.ids)
    metrics.add_metric(name="NotificationsDuplicate", unit="Count", value=1)
    return {
        "status": DUPLICATE,
        "customer_id": notice.customer.customer_id,
        "kind": notice.kind,
        "dedup_key": notice.dedup_key,
    }


def deliver(notice: Notice, store: NotificationStore | None = None) -> dict[str, Any]:
    """Send a claimed `notice` and record the outcome on the timeline (which marks the claim
    done). A failure a retry may fix gives the key back and raises `Unavailable`; a refusal
    for good is recorded as failed. A failed record after a send keeps the key (a retry
    answers duplicate: one message, never two)."""
    store = store or get_notification_store()
    channel, rendered = notice.channel, notice.rendered
    record: dict[str, Any] = {
        "notification_id": notice.notification_id,
        "kind": notice.kind,
        "channel": channel,
        "to": None,
        "status": SKIPPED,
        "reason": notice.reason,
        "locale": notice.locale,
        "subject": None,
        "text": None,
        "dedup_key": notice.dedup_key,
        "at": notice.at,
        "provider_message_id": None,
    }
    if channel is not None:
        email = channel == EMAIL
        to = notice.customer.email if email else notice.customer.phone
        assert to is not None  # channel_for picks a channel only with its address
        record.update(
            to=to,
            subject=rendered.subject if email else None,
            text=rendered.body if email else rendered.sms,
        )
        try:
            if email:
                message_id = messaging.send_email(to, rendered.subject, rendered.body)
            else:
                message_id = messaging.send_sms(to, rendered.sms)
        except messaging.DeliveryRefused as refused:
            code = refused.details[0].get("code") if refused.details else None
            record.update(status=FAILED, reason=f"delivery_refused:{code or 'unknown'}")
        except Unavailable:
            give_back(notice, store)
            raise
        else:
            record.update(status=SENT, provider_message_id=message_id)
    store.record(notice.customer.customer_id, record)
    logger.info(
        "notification " + record["status"],
        extra={**notice.ids, "channel": channel, "reason": record["reason"]},
    )
    metrics.add_metric(
        name={SENT: "NotificationsSent", SKIPPED: "NotificationsSkipped"}.get(
            record["status"], "NotificationsFailed"
        ),
        unit="Count",
        value=1,
    )
    return {"customer_id": notice.customer.customer_id, **notification_view(record)}


def give_back(notice: Notice, store: NotificationStore | None = None) -> None:
    """Release a claimed notice that was not sent, so that the step's retry sends it."""
    (store or get_notification_store()).release(notice.dedup_key)
    logger.warning(
        "notification not sent; will retry", extra={**notice.ids, "channel": notice.channel}
    )
    metrics.add_metric(name="NotificationsRetried", unit="Count", value=1)


def send(
    customer_id: str,
    kind: str,
    context: dict[str, Any],
    dedup_key: str,
    store: NotificationStore | None = None,
) -> dict[str, Any]:
    """Send the message `kind` to the customer, once per `dedup_key`; the outcome as recorded
    (address masked), or `{"status": "duplicate", ...}` when the key was already used.

    Raises `NotFound` for an unknown customer, `ValidationFailed` for an unknown kind or an
    incomplete context (nothing is claimed then), and `Unavailable` when the store or the
    provider fails in a way a retry may fix (`deliver`)."""
    store = store or get_notification_store()
    notice = prepare(recipient(customer_id), kind, context, dedup_key)
    if not store.claim(
        notice.dedup_key, notice.at, notification_id=notice.notification_id, kind=kind
    ):
        return duplicate(notice)
    return deliver(notice, store)


# -- routes -------------------------------------------------------------------------------------
