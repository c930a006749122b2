"""The loyalty program: earning, tiers, lots, spending, reversal and expiry. Pure.

Points live in *lots*: each earn (or positive adjustment) is a lot, pending until the order is
delivered, then active for `expiry_months`. A redemption spends the soonest-expiring active lots
first. The balance is the sum of active lots' `remaining`; the store keeps both in the same
transaction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

from crm.domain.errors import Conflict, ValidationFailed
from crm.domain.money import exponent, money

PENDING, ACTIVE, EXPIRED, VOID = "pending", "active", "expired", "void"
ENTRY_TYPES = ("earn", "redeem", "reverse", "expire", "adjust")


@dataclass(frozen=True)
class Tier:
    name: str
    threshold: int  # 12-month spend, minor units
    multiplier: Fraction


@dataclass(frozen=True)
class Program:
    currency: str = "CNY"
    points_per_unit: int = 1  # per 1 unit of currency paid for goods
    expiry_months: int = 12
    redeem_step: int = 1000  # points per coupon
    coupon_value: int = 5000  # minor units per `redeem_step` points
    coupon_valid_days: int = 90
    tier_window_months: int = 12
    tiers: tuple[Tier, ...] = field(
        default_factory=lambda: (
            Tier("regular", 0, Fraction(1)),
            Tier("silver", 200000, Fraction(5, 4)),
            Tier("gold", 1000000, Fraction(3, 2)),
        )
    )

    def view(self) -> dict[str, Any]:
        return {
            "currency": self.currency,
            "earn": {
                "points_per_unit": self.points_per_unit,
                "on": "goods paid (not shipping), after discounts",
                "rounding": "down to a whole point",
                "pending_until": "delivered",
            },
            "expiry": {"months_after_active": self.expiry_months, "spend_order": "soonest first"},
            "redemption": {
                "points": self.redeem_step,
                "coupon": money(self.coupon_value, self.currency),
                "coupon_valid_days": self.coupon_valid_days,
            },
            "reversal": {
                "on": "refunds, in proportion to the goods refunded",
                "rounding": "up to a whole point, never more than the order earned",
            },
            "tiers": [
                {
                    "name": t.name,
                    "spend_12_months": money(t.threshold, self.currency),
                    "multiplier": str(float(t.multiplier)),
                }
                for t in self.tiers
            ],
            "tier_policy": (
                f"spend over the last {self.tier_window_months} calendar months including the "
                "current one, net of refunds; re-evaluated whenever spend changes and whenever "
                "it is read, so a tier drops as soon as spend leaves the window"
            ),
        }


def parse_time(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def add_months(value: str, months: int) -> str:
    """Same day and time `months` later (clamped to the month's last day)."""
    moment = parse_time(value)
    index = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    days = [
        31,
        29 if (year % 4 == 0 and (year % 100 or year % 400 == 0)) else 28,
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ][month - 1]
    return iso(moment.replace(year=year, month=month, day=min(moment.day, days)))


def window_months(now: str, months: int) -> set[str]:
    """The `months` calendar months ending with the current one, as "YYYY-MM"."""
    moment = parse_time(now)
    index = moment.year * 12 + moment.month - 1
    return {f"{i // 12:04d}-{i % 12 + 1:02d}" for i in range(index - months + 1, index + 1)}


def rolling_spend(spend_months: dict[str, Any], now: str, program: Program) -> int:
    window = window_months(now, program.tier_window_months)
    return sum(int(v) for m, v in (spend_months or {}).items() if m in window)


def tier_for(spend_months: dict[str, Any], now: str, program: Program) -> Tier:
    spend = rolling_spend(spend_months, now, program)
    return max((t for t in program.tiers if spend >= t.threshold), key=lambda t: t.threshold)


def earn_points(goods: int, currency: str, tier: Tier, program: Program) -> int:
    """Whole points for `goods` minor units at the tier's multiplier, rounded down."""
    units = Fraction(goods, 10 ** exponent(currency))
    return math.floor(units * program.points_per_unit * tier.multiplier)


def reversal_due(earned: int, goods: int, refunded_goods: int, reversed_so_far: int) -> int:
    """Points still to reverse so that the reversed total is `earned * refunded / goods`,
    rounded up (no points stay behind for money returned), never above `earned`."""
    if earned <= 0 or goods <= 0 or refunded_goods <= 0:
        return 0
    target = min(earned, math.ceil(Fraction(earned * min(refunded_goods, goods), goods)))
    return max(0, target - reversed_so_far)


@dataclass(frozen=True)
class Lot:
    lot_id: str
    points: int
    remaining: int
    status: str
    earned_at: str
    source: str  # what created it: an order id, an adjustment key
    activated_at: str | None = None
    expires_at: str | None = None


def plan_spend(lots: list[Lot], points: int, balance: int) -> list[tuple[Lot, int]]:
    """Which active lots pay for `points`, soonest-expiring first. 409 when they cannot."""
    if points > balance:
        raise insufficient(balance, points)
    plan: list[tuple[Lot, int]] = []
    left = points
    for lot in sorted(
        (lot for lot in lots if lot.status == ACTIVE and lot.remaining > 0),
        key=lambda lot: (lot.expires_at or "9999", lot.lot_id),
    ):
        take = min(lot.remaining, left)
        plan.append((lot, take))
        left -= take
        if not left:
            return plan
    raise insufficient(balance, points)


def insufficient(balance: int, wanted: int) -> Conflict:
    return Conflict(
        f"the customer has {balance} points; {wanted} are needed",
        code="insufficient_points",
        extra={"balance": balance},
    )


def coupon_for(points: int, program: Program) -> int:
    """Coupon value (minor units) for `points`; they must be a positive multiple of the step."""
    if points <= 0 or points % program.redeem_step:
        raise ValidationFailed(
            f"points must be a positive multiple of {program.redeem_step}",
            details=[{"field": "points", "issue": "invalid_value"}],
        )
    return points // program.redeem_step * program.coupon_value


DEFAULT_PROGRAM = Program()


# -- what an order change does to the ledger ---------------------------------------------------


def delivered_too_long_ago(fulfilled_at: str | None, now: str, program: Program) -> bool:
    """Whether the points of an order delivered at `fulfilled_at` would have expired by `now`
    (a history import's order of that age earns none)."""
    if not fulfilled_at:
        return False
    return add_months(fulfilled_at, program.expiry_months) <= iso(parse_time(now))


@dataclass(frozen=True)
class Entry:
    entry_id: str  # derived from the cause, so a replay is refused by the store's condition
    entry_type: str
    points: int  # signed: earned/adjusted up positive, spent/reversed/expired negative
    reason: str
    source: str
    at: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class OrderPoints:
    """The ledger writes for one change of an order, and the order's points afterwards."""

    entries: list[Entry] = field(default_factory=list)
    lot: Lot | None = None  # the order's lot after the change (new or updated)
    lot_before: Lot | None = None  # as read; None when the lot is new
    balance_delta: int = 0
    pending_delta: int = 0
    earned: int = 0
    reversed: int = 0
    status: str | None = None

    @property
    def changed(self) -> bool:
        return bool(self.entries) or self.lot != self.lot_before


def order_points(
    *,
    order_id: str,
    paid: bool,
    cancelled: bool,
    fulfilled_at: str | None,
    goods: int,
    refunded_goods: int,
    refund_ids: list[str],
    currency: str,
    earned: int,
    reversed_so_far: int,
    status: str | None,
    lot: Lot | None,
    tier: Tier,
    program: Program,
    now: str,
    history: bool = False,
    generation: int = 0,
    restore_reason: str = "refund failed; points restored",
) -> OrderPoints:
    """Earn on paid (pending), activate on delivery, reverse on refund or cancellation.

    `history` (an order imported from a file, decision 34): it earns only when it was delivered
    less than `expiry_months` before `now`, and its lot is then active at once until
    `expiry_months` after the delivery. A paid order not yet delivered earns nothing now (a
    later event of its delivery earns as usual); one delivered longer ago never earns: its
    points status becomes "expired", so no later event of it earns either.

    `generation` (`crm.domain.orders.refund_generation`): how many times the order's refunds
    may have gone down. Reversal and restore entries are named by the reversed total they bring
    the order to and, from the first time it went down, by the generation too, so an entry is
    never refused for the name of an earlier one with another cause."""
    suffix = f":{generation}" if generation else ""
    result = OrderPoints(
        lot=lot, lot_before=lot, earned=earned, reversed=reversed_so_far, status=status
    )
    old = history and delivered_too_long_ago(fulfilled_at, now, program)
    if old and status is None and paid and not cancelled:
        result.status = EXPIRED
        return result
    if status is None and paid and not cancelled and (fulfilled_at or not history):
        points = earn_points(goods, currency, tier, program)
        if points > 0:
            result.entries.append(
                Entry(
                    f"earn:{order_id}",
                    "earn",
                    points,
                    "order paid",
                    order_id,
                    now,
                    {"tier": tier.name, "multiplier": str(tier.multiplier)},
                )
            )
            result.lot = Lot(order_id, points, points, PENDING, now, order_id)
            result.pending_delta += points
            result.earned, result.status = points, PENDING
    current = result.lot
    if current is not None and current.status == PENDING and fulfilled_at and not cancelled:
        activated = Lot(
            current.lot_id,
            current.points,
            current.remaining,
            ACTIVE,
            current.earned_at,
            current.source,
            fulfilled_at,
            add_months(fulfilled_at, program.expiry_months),
        )
        result.pending_delta -= current.remaining
        result.balance_delta += current.remaining
        result.lot, result.status = activated, ACTIVE
    if result.earned:
        target = (
            result.earned if cancelled else reversal_due(result.earned, goods, refunded_goods, 0)
        )
        due = max(0, target - result.reversed)
        if target < result.reversed and result.lot is not None and not cancelled:
            # A refund that was reversed on request failed to pay out: the points come back.
            back = result.reversed - target
            lot_now = result.lot
            result.entries.append(
                Entry(
                    f"restore:{order_id}:{target}{suffix}",
                    "adjust",
                    back,
                    restore_reason,
                    order_id,
                    now,
                    {"refunds": refund_ids},
                )
            )
            result.lot = replace(lot_now, points=lot_now.points, remaining=lot_now.remaining + back)
            if lot_now.status == PENDING:
                result.pending_delta += back
            else:
                result.balance_delta += back
            result.reversed = target
        if due and result.lot is not None:
            lot_now = result.lot
            taken = min(due, lot_now.remaining)
            # The id names the reversed total this entry brings the order to: each reversal
            # raises it, so each gets its own id, and a replay of the same one is refused.
            result.entries.append(
                Entry(
                    f"reverse:{order_id}:{target}{suffix}",
                    "reverse",
                    -taken,
                    "order cancelled" if cancelled else "order refunded",
                    order_id,
                    now,
                    {
                        "due": due,
                        "unrecovered": due - taken,
                        "refunds": refund_ids,
                        "cancelled": cancelled,
                    },
                )
            )
            status_after = VOID if cancelled and lot_now.status == PENDING else lot_now.status
            result.lot = Lot(
                lot_now.lot_id,
                lot_now.points,
                lot_now.remaining - taken,
                status_after,
                lot_now.earned_at,
                lot_now.source,
                lot_now.activated_at,
                lot_now.expires_at,
            )
            if lot_now.status == PENDING:
                result.pending_delta -= taken
            else:
                result.balance_delta -= taken
            result.reversed += due
    return result


# -- what an operator asks for ------------------------------------------------------------------

MAX_IDEMPOTENCY_KEY = 128
MAX_REASON = 500


def _points_request(body: dict[str, Any], *, signed: bool) -> tuple[int, str]:
    points, key = body.get("points"), body.get("idempotency_key")
    problems = []
    if isinstance(points, bool) or not isinstance(points, int):
        problems.append({"field": "points", "issue": "wrong_type"})
    elif (points == 0 if signed else points <= 0) or abs(points) > 10**9:
        problems.append({"field": "points", "issue": "invalid_value"})
    if not isinstance(key, str) or not key.strip() or len(key) > MAX_IDEMPOTENCY_KEY:
        problems.append({"field": "idempotency_key", "issue": "missing"})
    if problems:
        raise ValidationFailed("points and idempotency_key are required", details=problems)
    return int(points), str(key).strip()  # type: ignore[arg-type]


def parse_redemption(body: dict[str, Any]) -> tuple[int, str]:
    """A redemption's `(points, idempotency key)`: points above zero."""
    return _points_request(body, signed=False)


def parse_adjustment(body: dict[str, Any]) -> tuple[int, str, str]:
    """An adjustment's `(points, reason, idempotency key)`: points other than zero, either
    sign, and a reason (the ledger says why every entry exists)."""
    points, key = _points_request(body, signed=True)
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON:
        raise ValidationFailed(
            f"reason is required (1 to {MAX_REASON} characters)",
            details=[{"field": "reason", "issue": "missing"}],
        )
    return points, reason.strip(), key
