"""Customer profiles: upsert with identity resolution, the 360° view, lookups, PATCH, merge,
export and erasure.

Each use case takes parsed values (a `ProfileInput`, ids) and answers a `Customer` or a view;
`functions/profiles.py` only parses the request and answers. Writes are optimistic: read,
decide in the domain, write with conditions, and on a lost race read again. Concurrent upserts
of one person therefore converge on one profile.
"""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Any

from crm.adapters import s3
from crm.clock import now_iso
from crm.config import get_settings
from crm.contention import retry_on_contention
from crm.domain.customers import (
    ACTIVE,
    ERASED,
    MERGED,
    Customer,
    ProfileInput,
    apply_profile,
    erase,
    merge_into,
    new_customer,
    profile_state,
    profile_view,
    refuse_if_erased,
    stats_view,
)
from crm.domain.errors import Conflict, NotFound, ValidationFailed
from crm.domain.identity import normalise_email, normalise_external_ids, normalise_phone
from crm.observability import logger, metrics
from crm.store.customers import (
    MAX_TRANSACTION_ITEMS,
    CustomerRepository,
    IdentityTaken,
    StaleProfile,
    get_customer_repository,
)

if TYPE_CHECKING:
    from crm.store.ledger import LedgerStore
    from crm.store.orders import OrderStore


# Orders and points are read for the 360 view, the export, a merge and an erasure, never for an
# upsert: imported when first needed, so a cold API Lambda's first upsert does not load them.
def get_order_store() -> OrderStore:
    from crm.store.orders import get_order_store as store

    return store()


def get_ledger_store() -> LedgerStore:
    from crm.store.ledger import get_ledger_store as store

    return store()


MAX_ATTEMPTS = 12
# A write that lost to a concurrent one (an identity claimed, the profile changed): read again.
LOST = (IdentityTaken, StaleProfile)
RECENT_ORDERS = 5
EXPORTS_PREFIX = "exports/"
# What may go into an export's S3 key: no "/", no "..", nothing a path or a console misreads.
_EXPORT_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")


def new_customer_id() -> str:
    return "cus_" + uuid.uuid4().hex[:20]


# -- use cases ----------------------------------------------------------------------------------


def upsert_customer(
    data: ProfileInput, repo: CustomerRepository | None = None
) -> tuple[Customer, bool]:
    """The profile for `data` created or updated; True when it was created."""
    customers = repo or get_customer_repository()
    keys = data.identity_keys().ordered()

    def attempt() -> tuple[Customer, bool]:
        now = now_iso()
        owners = customers.resolve(keys)
        owner_ids = list(dict.fromkeys(owners[k] for k in keys if k in owners))
        if not owner_ids:
            customer = apply_profile(new_customer(new_customer_id(), now), data, now, partial=False)
            return customers.save(customer, claim=keys, now=now), True
        primary = customers.get(owner_ids[0])
        if primary is None or primary.status != ACTIVE:
            raise StaleProfile()  # merged or erased since the identity was read
        foreign = {k for k in keys if owners.get(k) not in (None, primary.customer_id)}
        updated = apply_profile(primary, data.without_identities(foreign), now, partial=False)
        updated.possible_duplicates = list(
            dict.fromkeys([*primary.possible_duplicates, *owner_ids[1:]])
        )
        return _save_changes(customers, primary, updated, owners, now), False

    return retry_on_contention(
        attempt,
        lost=LOST,
        what="the customer",
        attempts=MAX_ATTEMPTS,
        on_retry=lambda: metrics.add_metric(name="ProfileWriteRetries", unit="Count", value=1),
    )


def _save_changes(
    repo: CustomerRepository, before: Customer, after: Customer, owners: dict[str, str], now: str
) -> Customer:
    old_keys = set(before.identity_keys().ordered())
    new_keys = after.identity_keys().ordered()
    claim = [k for k in new_keys if k not in old_keys and owners.get(k) != after.customer_id]
    release = [k for k in old_keys if k not in set(new_keys)]
    unchanged = profile_state(after) == profile_state(before)
    if unchanged and after.platform_seen == before.platform_seen and not claim and not release:
        return before  # nothing new: no write, and the answer is the same as the last one
    return repo.save(after, claim=claim, release=release, now=now)


def patch_customer(
    customer_id: str, data: ProfileInput, repo: CustomerRepository | None = None
) -> dict[str, Any]:
    """`PATCH /customers/{id}`: the fields given changed; the profile's view."""
    customers = repo or get_customer_repository()

    def attempt() -> Customer:
        now = now_iso()
        customer = _active(customers, customer_id)
        updated = apply_profile(customer, data, now, partial=True)
        if not updated.identity_keys():
            raise ValidationFailed(
                "a customer must keep at least one identity",
                details=[{"field": "email|phone|external_ids", "issue": "missing_identity"}],
            )
        wanted = updated.identity_keys().ordered()
        owners = customers.resolve(wanted)
        taken = [k for k in wanted if owners.get(k) not in (None, customer_id)]
        if taken:
            raise Conflict(
                "an identity in the change belongs to another customer",
                code="identity_conflict",
                details=[
                    {
                        "field": k.split(":", 1)[0],
                        "issue": "owned_by_other",
                        "customer_id": owners[k],
                    }
                    for k in taken
                ],
            )
        return _save_changes(customers, customer, updated, owners, now)

    patched = retry_on_contention(attempt, lost=LOST, what="the customer", attempts=MAX_ATTEMPTS)
    return profile_view(patched)


def merge_customers(
    target_id: str, source_id: str, repo: CustomerRepository | None = None
) -> dict[str, Any]:
    """`POST /customers/{target}/merge`: the source's identities, stats and history go to the
    target, which answers (its view)."""
    customers = repo or get_customer_repository()
    if target_id == source_id:
        raise ValidationFailed(
            "a customer cannot be merged into itself",
            details=[{"field": "source_id", "issue": "same_as_target"}],
        )

    def attempt() -> Customer:
        now = now_iso()
        target = _active(customers, target_id)
        source = customers.get(source_id)
        if source is None:
            # The route's own resource (the target) exists: what is missing is named in the
            # body, so the request is refused as content (422), not as a missing resource.
            raise ValidationFailed(
                f"customer {source_id} does not exist",
                details=[{"field": "source_id", "issue": "source_not_found"}],
            )
        if source.status == MERGED and source.merged_into == target_id:
            return target  # already done: a retried merge answers the same (and finishes it)
        if source.status != ACTIVE:
            raise Conflict(
                f"customer {source_id} is {source.status} and cannot be merged",
                code="not_mergeable",
            )
        merged, tombstone = merge_into(target, source, now)
        return customers.merge(merged, tombstone, source.identity_keys().ordered(), now)

    saved = retry_on_contention(
        attempt, lost=LOST, what="the customers", plural=True, attempts=MAX_ATTEMPTS
    )
    # Also after a merge found done: finishes what an interrupted one started.
    move_history(source_id, target_id)
    forget_in_snapshot([source_id])  # the id merged away is no customer of the snapshot
    return profile_view(saved)


def move_history(source_id: str, target_id: str) -> dict[str, int]:
    """After a merge: the source's orders, what is left of its points, its cases and its
    messages go to the target (so the target's export and erasure reach them). Each move is
    conditional and idempotent, so a retried merge finishes an interrupted one. The stats were
    already merged with the profiles."""
    from crm.store.cases import get_case_store
    from crm.store.notifications import get_notification_store

    orders = get_order_store()
    moved_orders = sum(
        orders.reassign(o, source_id, target_id) for o in list(orders.for_customer(source_id))
    )
    ledger = get_ledger_store()
    now = now_iso()
    moved_lots = 0
    for lot in ledger.account(source_id).lots:
        if lot.remaining > 0 and lot.status in ("active", "pending"):
            moved_lots += ledger.move_lot(source_id, target_id, lot, now)
    moved = {
        "orders": moved_orders,
        "lots": moved_lots,
        "cases": get_case_store().move_customer(source_id, target_id),
        "notifications": get_notification_store().move(source_id, target_id),
    }
    logger.info("customer history moved", extra=moved)
    return moved


def erase_customer(customer_id: str, repo: CustomerRepository | None = None) -> dict[str, Any]:
    customers = repo or get_customer_repository()

    def attempt() -> dict[str, Any]:
        now = now_iso()
        customer = customers.get(customer_id)
        if customer is None:
            raise NotFound(f"customer {customer_id} does not exist")
        if customer.status == MERGED:
            raise Conflict(
                "this id was merged; erase the customer it was merged into",
                code="merged",
                extra={"merged_into": customer.merged_into},
            )
        # First, and again on a repeat: a run cut off halfway is finished by the next one.
        elsewhere = forget_elsewhere(customer_id)
        if customer.status == ERASED:
            return {
                "customer_id": customer_id,
                "status": ERASED,
                "erased": [],
                "identities_removed": 0,
                "erased_at": customer.erased_at,
            }
        cleared, erased_fields = erase(customer, now)
        # Only identities still ours are released (a run cut off halfway released some), and
        # those past what the profile's own transaction carries go first, in their own.
        listed = customer.identity_keys().ordered()
        owners = customers.resolve(listed)
        identities = [k for k in listed if owners.get(k) == customer_id]
        room = MAX_TRANSACTION_ITEMS - 1
        if len(identities) > room:
            customers.release(customer_id, identities[room:])
        customers.save(cleared, release=identities[:room], now=now)
        logger.info("customer erased", extra={"customer_id": customer_id, "fields": erased_fields})
        return {
            "customer_id": customer_id,
            "status": ERASED,
            "erased": erased_fields,
            "identities_removed": len(identities),
            **elsewhere,
            "erased_at": now,
        }

    return retry_on_contention(attempt, lost=LOST, what="the customer", attempts=MAX_ATTEMPTS)


def upsert_profile(data: ProfileInput) -> tuple[dict[str, Any], bool]:
    """`POST /customers`: `upsert_customer`, counted as an operator's create or update; the
    profile's view, and True when it was created."""
    customer, created = upsert_customer(data)
    metrics.add_metric(
        name="CustomersCreated" if created else "CustomersUpdated", unit="Count", value=1
    )
    return profile_view(customer), created


def find_customers(
    *,
    segment: str | None = None,
    email: str | None = None,
    phone: str | None = None,
    external_id: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """`GET /customers`: a segment's members, or the active profile an identity belongs to (one
    at most). The first filter given, in this order, is the one used."""
    if segment is not None:
        return _segment_members(segment, limit, cursor)
    if email is not None:
        key = "email:" + normalise_email(email)
    elif phone is not None:
        key = "phone:" + normalise_phone(phone, get_settings().default_country)
    elif external_id is not None:
        source, _, value = external_id.partition(":")
        ids = normalise_external_ids({source: value})
        key = f"ext:{source}:{ids[source]}"
    else:
        raise ValidationFailed(
            "give one of email, phone, external_id or segment",
            details=[{"field": "query", "issue": "missing_filter"}],
        )
    repo = get_customer_repository()
    owner = repo.owner_of(key)
    customer = repo.get(owner) if owner else None
    items = [profile_view(customer)] if customer and customer.status == ACTIVE else []
    return {"items": items, "next_cursor": None}


def _segment_members(segment: str, limit: int, cursor: str | None) -> dict[str, Any]:
    """A page of a segment's members as profiles (as the last segmentation run listed them;
    one erased or merged since is left out of the page)."""
    from crm.services.segments import member_ids

    ids, next_cursor = member_ids(segment, limit, cursor)
    found = get_customer_repository().get_many(ids)
    items = [profile_view(found[c]) for c in ids if c in found and found[c].status == ACTIVE]
    return {"items": items, "next_cursor": next_cursor}


def customer_record(customer_id: str) -> dict[str, Any]:
    """`GET /customers/{id}`: the 360° view; for an id merged away, where it went."""
    customer = _existing(get_customer_repository(), customer_id)
    if customer.status == MERGED:
        return {"customer_id": customer_id, "status": MERGED, "merged_into": customer.merged_into}
    refuse_if_erased(customer)
    return customer_360(customer)


def orders_of(customer_id: str, limit: int, cursor: str | None) -> dict[str, Any]:
    """`GET /customers/{id}/orders`: a page of the customer's orders, newest first, as the 360
    view lists its five most recent."""
    from crm.domain.orders import order_summary

    customer = _existing(get_customer_repository(), customer_id)
    refuse_if_erased(customer)
    orders, next_cursor = get_order_store().page_for_customer(customer_id, limit, cursor)
    currency = get_settings().currency
    return {"items": [order_summary(o, currency) for o in orders], "next_cursor": next_cursor}


def export_customer(customer_id: str) -> dict[str, Any]:
    """`GET /customers/{id}/export`: everything held about the person (`export_view`)."""
    customer = _existing(get_customer_repository(), customer_id)
    refuse_if_erased(customer)
    return export_view(customer)


def _existing(repo: CustomerRepository, customer_id: str) -> Customer:
    customer = repo.get(customer_id)
    if customer is None:
        raise NotFound(f"customer {customer_id} does not exist")
    return customer


def _active(repo: CustomerRepository, customer_id: str) -> Customer:
    customer = _existing(repo, customer_id)
    if customer.status == MERGED:
        raise Conflict(
            f"customer {customer_id} was merged",
            code="merged",
            extra={"merged_into": customer.merged_into},
        )
    if customer.status == ERASED:
        raise Conflict(f"customer {customer_id} was erased", code="erased")
    return customer


# -- views --------------------------------------------------------------------------------------


def customer_360(customer: Customer) -> dict[str, Any]:
    """The 360° view. Segments, RFM, notifications and cases are filled in by their own
    capabilities; until a customer has any, they are present and empty."""
    from crm.services.ledger import points_summary, program, tier_view
    from crm.services.notifications import timeline

    settings = get_settings()
    profile = profile_view(customer)
    from crm.domain.orders import order_summary

    orders = get_order_store().for_customer(customer.customer_id, limit=RECENT_ORDERS)
    return {
        **profile,
        "profile": profile,
        "tier": tier_view(customer.stats, now_iso(), program())["name"],
        "points": points_summary(get_ledger_store().account(customer.customer_id)),
        **analytics_view(customer.analytics),
        "stats": stats_view(customer.stats, settings.currency),
        "recent_orders": [order_summary(o, settings.currency) for o in orders],
        "recent_notifications": timeline(customer.customer_id, 5),
        "open_cases": _open_cases(customer.customer_id),
        "possible_duplicates": customer.possible_duplicates,
    }


def analytics_view(analytics: dict[str, Any]) -> dict[str, Any]:
    """What the last segmentation run wrote: the segments, the RFM and the predictions (empty
    and null until a run has scored the customer)."""
    currency = get_settings().currency
    rfm = dict(analytics.get("rfm") or {})
    if rfm.get("monetary") is not None:
        rfm["monetary"] = {"amount": rfm["monetary"], "currency": currency}
    predicted = dict(analytics.get("predicted") or {})
    if predicted.get("clv_12m") is not None:
        predicted["clv_12m"] = {"amount": predicted["clv_12m"], "currency": currency}
    empty_rfm = dict.fromkeys(("r", "f", "m", "group", "recency_days", "frequency", "monetary"))
    return {
        "segments": list(analytics.get("segments") or []),
        "rfm": {**empty_rfm, **rfm},
        "predicted": predicted or dict.fromkeys(("p_alive", "expected_orders_90d", "clv_12m")),
    }


def _open_cases(customer_id: str) -> list[dict[str, Any]]:
    from crm.store.cases import OPEN, get_case_store

    cases = get_case_store().for_customer(customer_id)
    return [c for c in reversed(cases) if c["status"] == OPEN]


def export_view(customer: Customer) -> dict[str, Any]:
    """Everything held about the person: profile, identities, orders, points, messages,
    cases."""
    from crm.domain.orders import order_view
    from crm.services.notifications import timeline
    from crm.store.cases import get_case_store

    settings = get_settings()
    ledger = get_ledger_store()
    account = ledger.account(customer.customer_id)
    entries: list[dict[str, Any]] = []
    cursor = None
    while True:
        page, cursor = ledger.entries(customer.customer_id, 500, cursor)
        entries += page
        if not cursor:
            break
    return {
        "exported_at": now_iso(),
        "customer": profile_view(customer),
        "identities": customer.identity_keys().ordered(),
        "stats": stats_view(customer.stats, settings.currency),
        "orders": [
            order_view(o, settings.currency)
            for o in get_order_store().for_customer(customer.customer_id)
        ],
        "points": {"balance": account.balance, "pending": account.pending, "entries": entries},
        # As stored (addresses unmasked): the export is the person's own data.
        "notifications": timeline(customer.customer_id, masked=False),
        "cases": get_case_store().for_customer(customer.customer_id),
    }


def write_export(customer_id: str, name: str) -> str:
    """The export, as a JSON object in the data bucket (a platform's data request); its key.
    Erasure deletes everything under the customer's `exports/` prefix."""
    if not _EXPORT_NAME.fullmatch(name) or not _EXPORT_NAME.fullmatch(customer_id):
        raise ValueError("an export is named by letters, digits, '.', '_' and '-' only")
    customer = _existing(get_customer_repository(), customer_id)
    key = f"{EXPORTS_PREFIX}{customer_id}/{name}.json"
    s3.put_json(get_settings().data_bucket, key, export_view(customer))
    return key


def forget_elsewhere(customer_id: str) -> dict[str, int]:
    """What erasure removes outside the profile: order addresses, written exports, the text
    and address of every message sent, and the free texts of the customer's cases."""
    from crm.store.cases import get_case_store
    from crm.store.notifications import get_notification_store

    orders = get_order_store()
    anonymised = sum(orders.anonymise(o) for o in orders.for_customer(customer_id))
    exports = s3.delete_prefix(get_settings().data_bucket, f"{EXPORTS_PREFIX}{customer_id}/")
    return {
        "orders_anonymised": anonymised,
        "exports_deleted": exports,
        "notifications_forgotten": get_notification_store().forget(customer_id),
        "cases_forgotten": get_case_store().forget_customer(customer_id, now_iso()),
        "snapshot_scrub_requested": forget_in_snapshot([customer_id]),
    }


def forget_in_snapshot(customer_ids: list[str]) -> bool:
    """Ask the analytics function to rewrite the snapshot's customers file without these
    profiles (erasure; the id a merge took away). Queued, not awaited: if the request cannot
    be queued, the next segmentation run, which keeps only its own customers file, removes
    them within a day; that is logged, and the erasure itself stands."""
    from crm.adapters import lambdas
    from crm.domain.errors import Unavailable

    try:
        lambdas.invoke_async(
            get_settings().analytics_function, {"task": "scrub", "customer_ids": customer_ids}
        )
    except Unavailable:
        logger.warning("snapshot scrub not queued", extra={"customers": len(customer_ids)})
        return False
    return True
