"""Loyalty points: the program, a customer's points, redemptions, adjustments, expiry.

Every write is one transaction of the ledger store: the entry (its id derived from the cause:
the idempotency key, the lot that expires), the lots it touches and the balance, conditional
on enough being there. A redemption reads once (the balance and lots, one Query) and writes
once; a lost race reads again.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from crm import clock
from crm.clock import now_iso
from crm.config import get_settings
from crm.contention import retry_on_contention
from crm.domain.customers import ACTIVE as ACTIVE_CUSTOMER
from crm.domain.customers import refuse_if_erased
from crm.domain.errors import Conflict, NotFound, Unavailable
from crm.domain.loyalty import (
    ACTIVE,
    PENDING,
    Entry,
    Lot,
    Program,
    add_months,
    coupon_for,
    iso,
    plan_spend,
    rolling_spend,
    tier_for,
    window_months,
)
from crm.domain.money import money
from crm.observability import logger, metrics
from crm.store.customers import get_customer_repository
from crm.store.ledger import (
    Account,
    CustomerInactive,
    EntryExists,
    LedgerContended,
    LedgerStore,
    get_ledger_store,
)

MAX_ATTEMPTS = 20


def program() -> Program:
    return Program(currency=get_settings().currency)


def _key_id(customer_id: str, key: str) -> str:
    # The caller's key may hold anything; the entry id is a digest of it, scoped to the customer.
    return hashlib.sha256(f"{customer_id}\n{key}".encode()).hexdigest()[:32]


def _require_customer(customer_id: str) -> None:
    customer = get_customer_repository().get(customer_id)
    if customer is None:
        raise NotFound(f"customer {customer_id} does not exist")
    if customer.status != ACTIVE_CUSTOMER:
        raise Conflict(f"customer {customer_id} is {customer.status}", code=customer.status)


# -- views --------------------------------------------------------------------------------------


def lots_view(account: Account) -> list[dict[str, Any]]:
    lots = [lot for lot in account.lots if lot.remaining > 0 and lot.status in (ACTIVE, PENDING)]
    lots.sort(key=lambda lot: (lot.status != ACTIVE, lot.expires_at or "9999", lot.lot_id))
    return [
        {
            "lot_id": lot.lot_id,
            "amount": lot.remaining,
            "status": lot.status,
            "expires_at": lot.expires_at,
            "source": lot.source,
        }
        for lot in lots
    ]


def points_summary(account: Account) -> dict[str, Any]:
    """The 360 view's `points`: balance, pending, and active lots by expiry date."""
    return {
        "balance": account.balance,
        "pending": account.pending,
        "expiring": [
            {"points": lot["amount"], "expires_at": lot["expires_at"]}
            for lot in lots_view(account)
            if lot["status"] == ACTIVE
        ],
    }


def redemption_view(customer_id: str, coupon: dict[str, Any]) -> dict[str, Any]:
    """The answer to a redemption: the coupon, nested and at the top level (the contract's)."""
    return {"customer_id": customer_id, "coupon": coupon, **coupon}


def tier_view(stats: dict[str, Any], now: str, rules: Program) -> dict[str, Any]:
    months = stats.get("spend_months") or {}
    tier = tier_for(months, now, rules)
    return {
        "name": tier.name,
        "multiplier": str(float(tier.multiplier)),
        "spend_12_months": money(rolling_spend(months, now, rules), rules.currency),
    }


# -- use cases ----------------------------------------------------------------------------------


def points_of(customer_id: str, limit: int, cursor: str | None) -> dict[str, Any]:
    """`GET /customers/{id}/points`: balance, pending, tier, lots, and a page of entries."""
    customer = get_customer_repository().get(customer_id)
    if customer is None:
        raise NotFound(f"customer {customer_id} does not exist")
    refuse_if_erased(customer)
    store = get_ledger_store()
    account = store.account(customer_id)
    entries, next_cursor = store.entries(customer_id, limit, cursor)
    return {
        "customer_id": customer_id,
        "balance": account.balance,
        "pending": account.pending,
        "tier": tier_view(customer.stats, now_iso(), program()),
        "lots": lots_view(account),
        "entries": entries,
        "items": entries,
        "next_cursor": next_cursor,
    }


def redeem(
    customer_id: str, points: int, key: str, store: LedgerStore | None = None
) -> tuple[dict[str, Any], bool]:
    """A coupon for `points` (the redemption's view); True when it was created now, False for
    a replay of `key`."""
    store = store or get_ledger_store()
    rules = program()
    value = coupon_for(points, rules)
    entry_id = "redeem:" + _key_id(customer_id, key)

    def attempt() -> tuple[dict[str, Any], bool]:
        now = now_iso()
        account = store.account(customer_id)
        try:
            plan = plan_spend(account.lots, points, account.balance)
        except Conflict:
            replay = store.entry(customer_id, entry_id)
            if replay is not None:
                return replay["details"]["coupon"], False
            if not account.lots:
                _require_customer(customer_id)
            raise
        code = "PTS-" + hashlib.sha256(entry_id.encode()).hexdigest()[:12].upper()
        coupon = {
            "code": code,
            "value": money(value, rules.currency),
            "points": points,
            "expires_at": iso(clock.now() + timedelta(days=rules.coupon_valid_days)),
        }
        entry = Entry(
            entry_id,
            "redeem",
            -points,
            "redeemed for a coupon",
            f"coupon:{code}",
            now,
            {"coupon": coupon, "lots": [[lot.lot_id, take] for lot, take in plan]},
        )
        try:
            store.apply(
                customer_id,
                entry,
                balance_delta=-points,
                now=now,
                takes=[(lot.lot_id, take) for lot, take in plan],
                active_customer=True,
            )
        except EntryExists:
            replay = store.entry(customer_id, entry_id)
            if replay is None:
                raise Unavailable("the redemption could not be read back; retry") from None
            return replay["details"]["coupon"], False
        except CustomerInactive:
            _require_customer(customer_id)  # says which: merged or erased
            raise Conflict(f"customer {customer_id} cannot redeem", code="inactive") from None
        metrics.add_metric(name="PointsRedeemed", unit="Count", value=points)
        return coupon, True

    coupon, created = retry_on_contention(
        attempt,
        lost=(LedgerContended,),
        what="the points",
        plural=True,
        attempts=MAX_ATTEMPTS,
        on_retry=lambda: metrics.add_metric(name="LedgerWriteRetries", unit="Count", value=1),
    )
    return redemption_view(customer_id, coupon), created


def adjust(
    customer_id: str, points: int, reason: str, key: str, store: LedgerStore | None = None
) -> tuple[dict[str, Any], bool]:
    """An operator's correction: positive adds an active lot, negative spends like a
    redemption. Returns the entry and whether it was created now."""
    store = store or get_ledger_store()
    rules = program()
    entry_id = "adjust:" + _key_id(customer_id, key)
    _require_customer(customer_id)

    def attempt() -> tuple[dict[str, Any], bool]:
        now = now_iso()
        entry = Entry(entry_id, "adjust", points, reason, "operator", now)
        try:
            if points > 0:
                lot = Lot(
                    entry_id.replace(":", "-"),
                    points,
                    points,
                    ACTIVE,
                    now,
                    entry_id,
                    now,
                    add_months(now, rules.expiry_months),
                )
                store.apply(customer_id, entry, balance_delta=points, now=now, new_lots=[lot])
            else:
                account = store.account(customer_id)
                try:
                    plan = plan_spend(account.lots, -points, account.balance)
                except Conflict:
                    replay = store.entry(customer_id, entry_id)
                    if replay is not None:
                        return replay, False
                    raise
                store.apply(
                    customer_id,
                    entry,
                    balance_delta=points,
                    now=now,
                    takes=[(lot.lot_id, take) for lot, take in plan],
                )
        except EntryExists:
            replay = store.entry(customer_id, entry_id)
            if replay is None:
                raise Unavailable("the adjustment could not be read back; retry") from None
            return replay, False
        return {
            "entry_id": entry_id,
            "type": "adjust",
            "points": points,
            "reason": reason,
            "source": "operator",
            "at": now,
        }, True

    return retry_on_contention(
        attempt, lost=(LedgerContended,), what="the points", plural=True, attempts=MAX_ATTEMPTS
    )


def expire_points(now: str | None = None, store: LedgerStore | None = None) -> dict[str, int]:
    """Expire every active lot whose date has passed: each its own transaction, entry
    `expire:<lot>`, so a second run (or a concurrent one) expires nothing twice."""
    store = store or get_ledger_store()
    now = now or now_iso()
    months = sorted(window_months(now, 36))
    counts = {"lots": 0, "points": 0, "skipped": 0}
    for customer_id, lot in store.due_lots(months, now):
        if lot.remaining <= 0 or lot.status != ACTIVE:
            continue
        entry = Entry(
            f"expire:{lot.lot_id}",
            "expire",
            -lot.remaining,
            f"points earned {lot.earned_at[:10]} expired",
            lot.source,
            now,
            {"lot_id": lot.lot_id, "expires_at": lot.expires_at},
        )
        try:
            store.apply(
                customer_id,
                entry,
                balance_delta=-lot.remaining,
                now=now,
                expire=(lot.lot_id, lot.remaining),
            )
        except (EntryExists, LedgerContended):
            counts["skipped"] += 1  # expired by another run, or spent meanwhile: next run
            continue
        counts["lots"] += 1
        counts["points"] += lot.remaining
    metrics.add_metric(name="PointsExpired", unit="Count", value=counts["points"])
    logger.info("points expiry", extra=counts)
    return counts
