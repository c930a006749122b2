"""The loyalty program: earning, tiers, the rolling window, expiry dates, reversal, spending
lots, coupons, and what an order change writes to the ledger."""

from fractions import Fraction

import pytest

from crm.domain.errors import Conflict, ValidationFailed
from crm.domain.loyalty import (
    ACTIVE,
    DEFAULT_PROGRAM,
    EXPIRED,
    PENDING,
    VOID,
    Entry,
    Lot,
    Program,
    Tier,
    add_months,
    coupon_for,
    earn_points,
    order_points,
    plan_spend,
    reversal_due,
    rolling_spend,
    tier_for,
    window_months,
)
from crm.domain.order_events import OrderEvent, Refund
from crm.domain.orders import apply_event, new_order

P = DEFAULT_PROGRAM
REGULAR, SILVER, GOLD = P.tiers
NOW = "2026-03-01T10:00:00+00:00"
LATER = "2026-03-05T08:00:00+00:00"
FULFILLED = "2026-03-04T08:00:00+00:00"
ORDER = "ord_shopify_1001"


# -- the program ------------------------------------------------------------------------------


def test_the_default_program_has_the_contract_numbers():
    view = Program().view()
    assert view["currency"] == "CNY"
    assert view["earn"]["points_per_unit"] == 1
    assert view["redemption"]["points"] == 1000
    assert view["redemption"]["coupon"] == {"amount": "50.00", "currency": "CNY"}
    assert view["expiry"]["months_after_active"] == 12
    assert view["tiers"] == [
        {
            "name": "regular",
            "spend_12_months": {"amount": "0.00", "currency": "CNY"},
            "multiplier": "1.0",
        },
        {
            "name": "silver",
            "spend_12_months": {"amount": "2000.00", "currency": "CNY"},
            "multiplier": "1.25",
        },
        {
            "name": "gold",
            "spend_12_months": {"amount": "10000.00", "currency": "CNY"},
            "multiplier": "1.5",
        },
    ]
    assert "12" in view["tier_policy"]


def test_the_default_tiers():
    assert (REGULAR.name, REGULAR.threshold, REGULAR.multiplier) == ("regular", 0, 1)
    assert (SILVER.name, SILVER.threshold, SILVER.multiplier) == ("silver", 200000, Fraction(5, 4))
    assert (GOLD.name, GOLD.threshold, GOLD.multiplier) == ("gold", 1000000, Fraction(3, 2))


# -- earning ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("goods", "currency", "tier", "points"),
    [
        (19900, "CNY", REGULAR, 199),
        (19999, "CNY", REGULAR, 199),  # 199.99 yuan: rounded down
        (99, "CNY", REGULAR, 0),
        (0, "CNY", REGULAR, 0),
        (100000, "CNY", SILVER, 1250),
        (19999, "CNY", SILVER, 249),  # 249.9875
        (100000, "CNY", GOLD, 1500),
        (19999, "CNY", GOLD, 299),  # 299.985
        (1000, "JPY", REGULAR, 1000),  # zero-decimal currency: 1000 yen, not 10.00
        (999, "JPY", SILVER, 1248),  # 1248.75
        (1999, "KWD", REGULAR, 1),  # three decimals: 1.999 dinar
    ],
)
def test_earn_points(goods, currency, tier, points):
    assert earn_points(goods, currency, tier, P) == points


def test_earn_points_follows_the_program_rate():
    assert earn_points(10000, "CNY", REGULAR, Program(points_per_unit=3)) == 300


# -- tiers and the rolling window -------------------------------------------------------------


def test_the_window_is_twelve_calendar_months_including_the_current_one():
    window = window_months("2026-03-15T00:00:00+00:00", 12)
    assert len(window) == 12
    assert "2026-03" in window
    assert "2025-04" in window
    assert "2025-03" not in window
    assert "2026-04" not in window
    assert window_months("2026-01-01T00:00:00+00:00", 2) == {"2025-12", "2026-01"}


def test_rolling_spend_counts_only_the_window():
    now = "2026-03-31T23:59:59+00:00"
    months = {
        "2026-03": 100,  # current month
        "2025-04": 20,  # 11 months ago: in
        "2025-03": 4000,  # 12 months ago: out
        "2025-02": 8000,  # 13 months ago: out
    }
    assert rolling_spend(months, now, P) == 120
    assert rolling_spend({}, now, P) == 0
    assert rolling_spend(None, now, P) == 0


def test_spend_thirteen_months_ago_does_not_count_for_the_tier():
    now = "2026-03-10T00:00:00+00:00"
    assert tier_for({"2025-02": 5000000}, now, P).name == "regular"
    assert tier_for({"2025-04": 1000000}, now, P).name == "gold"


@pytest.mark.parametrize(
    ("spend", "tier"),
    [
        (0, "regular"),
        (199999, "regular"),
        (200000, "silver"),  # exactly 2000.00
        (999999, "silver"),
        (1000000, "gold"),
        (5000000, "gold"),
    ],
)
def test_tier_thresholds(spend, tier):
    assert tier_for({"2026-03": spend}, NOW, P).name == tier


def test_tier_sums_the_months_of_the_window():
    months = {"2025-05": 100000, "2026-01": 50000, "2026-03": 50000}
    assert tier_for(months, NOW, P) == SILVER
    assert tier_for(months, "2026-05-01T00:00:00+00:00", P) == REGULAR  # 2025-05 left


def test_tier_accepts_stored_numbers_as_strings():
    assert tier_for({"2026-03": "200000"}, NOW, P) == SILVER


# -- dates ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        ("2026-01-31T10:00:00+00:00", 1, "2026-02-28T10:00:00+00:00"),
        ("2028-01-31T10:00:00+00:00", 1, "2028-02-29T10:00:00+00:00"),
        ("2100-01-31T10:00:00+00:00", 1, "2100-02-28T10:00:00+00:00"),
        ("2000-01-31T10:00:00+00:00", 1, "2000-02-29T10:00:00+00:00"),
        ("2028-02-29T10:00:00+00:00", 12, "2029-02-28T10:00:00+00:00"),
        ("2026-03-31T10:00:00+00:00", 1, "2026-04-30T10:00:00+00:00"),
        ("2026-03-31T10:00:00+00:00", -1, "2026-02-28T10:00:00+00:00"),
        ("2026-03-04T08:00:00+00:00", 12, "2027-03-04T08:00:00+00:00"),
        ("2025-12-15T00:00:00+00:00", 1, "2026-01-15T00:00:00+00:00"),
        ("2025-12-15T00:00:00+00:00", 13, "2027-01-15T00:00:00+00:00"),
        ("2026-01-15T00:00:00Z", 1, "2026-02-15T00:00:00+00:00"),
    ],
)
def test_add_months_clamps_to_the_last_day(start, months, expected):
    assert add_months(start, months) == expected


# -- reversal ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("earned", "goods", "refunded", "so_far", "due"),
    [
        (1000, 100000, 30000, 0, 300),  # 30 %
        (999, 3, 1, 0, 333),  # exactly a third
        (1000, 3, 1, 0, 334),  # 333.33 rounded up
        (1000, 30000, 10000, 0, 334),
        (1000, 100, 50, 0, 500),  # first of two 50 % refunds
        (1000, 100, 100, 500, 500),  # the second, cumulative
        (1000, 3, 2, 334, 333),  # two thirds after a third
        (1000, 3, 3, 667, 333),
        (1000, 100, 150, 0, 1000),  # never more than earned
        (1000, 100, 100, 1000, 0),
        (1000, 100, 30, 400, 0),  # already reversed more than due
        (0, 100, 100, 0, 0),
        (1000, 0, 100, 0, 0),
        (1000, 100, 0, 0, 0),
        (1, 100000, 1, 0, 1),  # any refund of goods takes a point back
    ],
)
def test_reversal_due(earned, goods, refunded, so_far, due):
    assert reversal_due(earned, goods, refunded, so_far) == due


def test_three_third_refunds_reverse_exactly_what_was_earned():
    total = 0
    for refunded in (1, 2, 3):
        total += reversal_due(1000, 3, refunded, total)
    assert total == 1000


# -- spending lots ----------------------------------------------------------------------------


def lot(lot_id, remaining, status=ACTIVE, expires_at=None, points=None):
    return Lot(
        lot_id=lot_id,
        points=points if points is not None else remaining,
        remaining=remaining,
        status=status,
        earned_at="2025-01-01T00:00:00+00:00",
        source=lot_id,
        activated_at="2025-01-02T00:00:00+00:00" if status != PENDING else None,
        expires_at=expires_at,
    )


LATE = lot("a", 200, expires_at="2027-05-01T00:00:00+00:00")
SOON = lot("b", 100, expires_at="2027-01-01T00:00:00+00:00")
WAITING = lot("c", 5000, status=PENDING)
GONE = lot("d", 5000, status=EXPIRED, expires_at="2025-01-01T00:00:00+00:00")
VOIDED = lot("v", 5000, status=VOID, expires_at="2026-01-01T00:00:00+00:00")
EMPTY = lot("e", 0, expires_at="2026-06-01T00:00:00+00:00", points=300)
LOTS = [LATE, WAITING, GONE, EMPTY, VOIDED, SOON]


def test_plan_spend_takes_the_soonest_expiring_first():
    assert plan_spend(LOTS, 150, 300) == [(SOON, 100), (LATE, 50)]
    assert plan_spend(LOTS, 100, 300) == [(SOON, 100)]
    assert plan_spend(LOTS, 50, 300) == [(SOON, 50)]
    assert plan_spend(LOTS, 300, 300) == [(SOON, 100), (LATE, 200)]


def test_plan_spend_breaks_ties_by_lot_id_and_spends_lots_without_expiry_last():
    x = lot("x", 10, expires_at="2027-01-01T00:00:00+00:00")
    w = lot("w", 10, expires_at="2027-01-01T00:00:00+00:00")
    forever = lot("0", 10)
    assert plan_spend([forever, x, w], 25, 30) == [(w, 10), (x, 10), (forever, 5)]


def test_plan_spend_refuses_more_than_the_balance():
    with pytest.raises(Conflict) as caught:
        plan_spend(LOTS, 301, 300)
    assert caught.value.code == "insufficient_points"
    assert caught.value.extra == {"balance": 300}


def test_plan_spend_refuses_more_than_the_balance_even_when_lots_hold_more():
    with pytest.raises(Conflict) as caught:
        plan_spend(LOTS, 150, 100)
    assert caught.value.code == "insufficient_points"
    assert caught.value.extra == {"balance": 100}


def test_plan_spend_refuses_when_the_active_lots_do_not_cover_it():
    # Pending and expired lots do not pay, whatever the balance says.
    with pytest.raises(Conflict) as caught:
        plan_spend(LOTS, 1000, 5000)
    assert caught.value.code == "insufficient_points"
    assert caught.value.extra == {"balance": 5000}
    with pytest.raises(Conflict):
        plan_spend([WAITING, GONE], 1, 10000)


# -- coupons ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("points", "value"), [(1000, 5000), (3000, 15000)])
def test_coupon_for(points, value):
    assert coupon_for(points, P) == value


@pytest.mark.parametrize("points", [1500, 999, 1, 0, -1000])
def test_coupon_for_refuses_anything_but_a_positive_multiple_of_the_step(points):
    with pytest.raises(ValidationFailed) as caught:
        coupon_for(points, P)
    assert caught.value.details == [{"field": "points", "issue": "invalid_value"}]


# -- what an order does to the ledger ---------------------------------------------------------


def points(**overrides):
    values = {
        "order_id": ORDER,
        "paid": True,
        "cancelled": False,
        "fulfilled_at": None,
        "goods": 100000,  # 1000.00 CNY of goods
        "refunded_goods": 0,
        "refund_ids": [],
        "currency": "CNY",
        "earned": 0,
        "reversed_so_far": 0,
        "status": None,
        "lot": None,
        "tier": REGULAR,
        "program": P,
        "now": NOW,
    }
    values.update(overrides)
    return order_points(**values)


def recorded(result):
    """The state the store keeps after `result`: what the next call is given."""
    return {
        "earned": result.earned,
        "reversed_so_far": result.reversed,
        "status": result.status,
        "lot": result.lot,
    }


def assert_nothing_to_do(result):
    assert result.entries == []
    assert not result.changed
    assert result.balance_delta == 0
    assert result.pending_delta == 0
    assert result.lot == result.lot_before


EARNED = points()
ACTIVATED = points(fulfilled_at=FULFILLED, now=LATER, **recorded(EARNED))


def test_earn_on_paid_writes_an_entry_and_a_pending_lot():
    result = EARNED
    assert len(result.entries) == 1
    entry = result.entries[0]
    assert (entry.entry_id, entry.entry_type, entry.points, entry.source, entry.at) == (
        f"earn:{ORDER}",
        "earn",
        1000,
        ORDER,
        NOW,
    )
    assert entry.details["tier"] == "regular"
    assert result.lot == Lot(ORDER, 1000, 1000, PENDING, NOW, ORDER)
    assert result.lot_before is None
    assert result.pending_delta == 1000
    assert result.balance_delta == 0
    assert (result.earned, result.reversed, result.status) == (1000, 0, PENDING)
    assert result.changed


def test_earn_uses_the_tier_multiplier():
    result = points(tier=SILVER)
    assert [e.points for e in result.entries] == [1250]
    assert result.entries[0].details["tier"] == "silver"
    assert result.lot.points == result.lot.remaining == 1250
    assert result.pending_delta == 1250


def test_earn_in_a_zero_decimal_currency():
    result = points(goods=1000, currency="JPY")
    assert result.earned == 1000


@pytest.mark.parametrize(
    "overrides",
    [
        {"paid": False},
        {"paid": True, "cancelled": True},
        {"paid": False, "fulfilled_at": FULFILLED},
        {"goods": 99},  # less than a point
    ],
)
def test_nothing_is_earned_unless_paid_and_not_cancelled(overrides):
    result = points(**overrides)
    assert_nothing_to_do(result)
    assert (result.earned, result.status, result.lot) == (0, None, None)


def test_fulfilment_activates_the_lot():
    result = ACTIVATED
    assert result.entries == []
    assert result.lot == Lot(
        ORDER, 1000, 1000, ACTIVE, NOW, ORDER, FULFILLED, "2027-03-04T08:00:00+00:00"
    )
    assert result.pending_delta == -1000
    assert result.balance_delta == 1000
    assert result.status == ACTIVE
    assert result.changed


def test_activation_expires_twelve_months_later_clamped():
    earned = points()
    result = points(fulfilled_at="2028-02-29T12:00:00+00:00", **recorded(earned))
    assert result.lot.expires_at == "2029-02-28T12:00:00+00:00"


def test_a_refund_after_activation_reverses_from_the_balance():
    result = points(
        fulfilled_at=FULFILLED,
        refunded_goods=30000,
        refund_ids=["r1"],
        now=LATER,
        **recorded(ACTIVATED),
    )
    assert result.entries == [
        Entry(
            f"reverse:{ORDER}:300",
            "reverse",
            -300,
            "order refunded",
            ORDER,
            LATER,
            {"due": 300, "unrecovered": 0, "refunds": ["r1"], "cancelled": False},
        )
    ]
    assert result.balance_delta == -300
    assert result.pending_delta == 0
    assert result.lot.remaining == 700
    assert result.lot.points == 1000
    assert result.lot.status == ACTIVE
    assert result.lot.expires_at == ACTIVATED.lot.expires_at
    assert (result.earned, result.reversed, result.status) == (1000, 300, ACTIVE)


def test_a_refund_before_delivery_reverses_from_pending_and_the_rest_activates():
    refunded = points(refunded_goods=30000, refund_ids=["r1"], **recorded(EARNED))
    assert [e.points for e in refunded.entries] == [-300]
    assert refunded.pending_delta == -300
    assert refunded.balance_delta == 0
    assert refunded.lot.remaining == 700
    assert refunded.lot.status == PENDING
    activated = points(
        refunded_goods=30000, refund_ids=["r1"], fulfilled_at=FULFILLED, **recorded(refunded)
    )
    assert activated.entries == []
    assert activated.pending_delta == -700
    assert activated.balance_delta == 700
    assert activated.lot.status == ACTIVE
    assert activated.lot.remaining == 700


def test_two_half_refunds_reverse_500_then_500():
    first = points(
        fulfilled_at=FULFILLED, refunded_goods=50000, refund_ids=["r1"], **recorded(ACTIVATED)
    )
    assert [(e.entry_id, e.points) for e in first.entries] == [(f"reverse:{ORDER}:500", -500)]
    second = points(
        fulfilled_at=FULFILLED,
        refunded_goods=100000,
        refund_ids=["r1", "r2"],
        **recorded(first),
    )
    assert [(e.entry_id, e.points) for e in second.entries] == [(f"reverse:{ORDER}:1000", -500)]
    assert second.balance_delta == -500
    assert second.lot.remaining == 0
    assert second.reversed == 1000


def test_reversal_rounds_up():
    third = points(
        fulfilled_at=FULFILLED, refunded_goods=33333, refund_ids=["r1"], **recorded(ACTIVATED)
    )
    assert [e.points for e in third.entries] == [-334]
    earned = points(goods=99900)
    assert earned.earned == 999
    third = points(goods=99900, refunded_goods=33300, refund_ids=["r1"], **recorded(earned))
    assert [e.points for e in third.entries] == [-333]


def test_cancellation_reverses_everything_pending():
    result = points(cancelled=True, now=LATER, **recorded(EARNED))
    assert result.entries == [
        Entry(
            f"reverse:{ORDER}:1000",
            "reverse",
            -1000,
            "order cancelled",
            ORDER,
            LATER,
            {"due": 1000, "unrecovered": 0, "refunds": [], "cancelled": True},
        )
    ]
    assert result.pending_delta == -1000
    assert result.balance_delta == 0
    assert result.lot.remaining == 0
    assert result.reversed == 1000


def test_cancellation_reverses_what_is_left_of_an_active_lot():
    refunded = points(
        fulfilled_at=FULFILLED, refunded_goods=30000, refund_ids=["r1"], **recorded(ACTIVATED)
    )
    result = points(
        cancelled=True,
        fulfilled_at=FULFILLED,
        refunded_goods=30000,
        refund_ids=["r1"],
        **recorded(refunded),
    )
    assert [(e.entry_id, e.points) for e in result.entries] == [(f"reverse:{ORDER}:1000", -700)]
    assert result.balance_delta == -700
    assert result.pending_delta == 0
    assert result.lot.remaining == 0
    assert result.reversed == 1000


def test_a_cancelled_pending_lot_is_never_activated():
    cancelled = points(cancelled=True, **recorded(EARNED))
    result = points(cancelled=True, fulfilled_at=FULFILLED, **recorded(cancelled))
    assert_nothing_to_do(result)
    assert result.lot.status == VOID  # a cancelled order's pending points are void, never active


def test_a_refund_larger_than_what_is_left_records_unrecovered_points():
    spent = Lot(ORDER, 1000, 200, ACTIVE, NOW, ORDER, FULFILLED, "2027-03-04T08:00:00+00:00")
    state = {"earned": 1000, "reversed_so_far": 0, "status": ACTIVE, "lot": spent}
    result = points(fulfilled_at=FULFILLED, refunded_goods=50000, refund_ids=["r1"], **state)
    assert len(result.entries) == 1
    entry = result.entries[0]
    assert entry.entry_type == "reverse"
    assert entry.details == {"due": 500, "unrecovered": 300, "refunds": ["r1"], "cancelled": False}
    assert entry.points == -200  # what left the balance: entries always sum to the balance
    assert result.balance_delta == -200
    assert result.lot.remaining == 0
    assert result.reversed == 500
    # Recorded: the next call does not try again.
    again = points(
        fulfilled_at=FULFILLED, refunded_goods=50000, refund_ids=["r1"], **recorded(result)
    )
    assert_nothing_to_do(again)


def test_paid_fulfilled_and_refunded_in_one_go():
    result = points(fulfilled_at=FULFILLED, refunded_goods=30000, refund_ids=["r1"])
    assert [(e.entry_type, e.entry_id, e.points) for e in result.entries] == [
        ("earn", f"earn:{ORDER}", 1000),
        ("reverse", f"reverse:{ORDER}:300", -300),
    ]
    assert result.lot == Lot(
        ORDER, 1000, 700, ACTIVE, NOW, ORDER, FULFILLED, "2027-03-04T08:00:00+00:00"
    )
    assert result.lot_before is None
    assert result.pending_delta == 0
    assert result.balance_delta == 700
    assert (result.earned, result.reversed, result.status) == (1000, 300, ACTIVE)


def test_paid_and_fully_refunded_before_delivery_in_one_go():
    result = points(refunded_goods=100000, refund_ids=["r1"])
    assert [e.points for e in result.entries] == [1000, -1000]
    assert result.pending_delta == 0
    assert result.balance_delta == 0
    assert result.lot.remaining == 0


def _stages():
    refunded = points(
        fulfilled_at=FULFILLED, refunded_goods=30000, refund_ids=["r1"], **recorded(ACTIVATED)
    )
    cancelled = points(
        cancelled=True,
        fulfilled_at=FULFILLED,
        refunded_goods=30000,
        refund_ids=["r1"],
        **recorded(refunded),
    )
    return [
        ("earned", {}, EARNED),
        ("activated", {"fulfilled_at": FULFILLED}, ACTIVATED),
        (
            "refunded",
            {"fulfilled_at": FULFILLED, "refunded_goods": 30000, "refund_ids": ["r1"]},
            refunded,
        ),
        (
            "cancelled",
            {
                "cancelled": True,
                "fulfilled_at": FULFILLED,
                "refunded_goods": 30000,
                "refund_ids": ["r1"],
            },
            cancelled,
        ),
    ]


@pytest.mark.parametrize(("name", "facts", "result"), _stages(), ids=lambda v: str(v)[:10])
def test_a_second_call_with_the_recorded_state_changes_nothing(name, facts, result):
    again = points(now="2026-03-09T00:00:00+00:00", **facts, **recorded(result))
    assert_nothing_to_do(again)
    assert (again.earned, again.reversed, again.status) == (
        result.earned,
        result.reversed,
        result.status,
    )


def test_a_late_refund_with_an_earlier_time_gets_its_own_reverse_entry():
    """Refund r_late (at 12:00) is processed first; then r_early (at 09:00) arrives. The order
    sorts its refunds by time, so refund_ids is [r_early, r_late] on the second call. The second
    reversal must not reuse the first one's entry id: the store refuses a repeated entry id as a
    replay, so the points would never be reversed."""
    base = new_order(OrderEvent("shopify", "1001", "create", NOW), NOW)
    late = Refund("r_late", "2026-03-06T12:00:00+00:00", 30000, 30000)
    early = Refund("r_early", "2026-03-06T09:00:00+00:00", 30000, 30000)
    order = apply_event(base, OrderEvent("shopify", "1001", "refund", NOW, refunds=(late,)))
    first = points(
        fulfilled_at=FULFILLED,
        refunded_goods=30000,
        refund_ids=[r.refund_id for r in order.refunds],
        **recorded(ACTIVATED),
    )
    order = apply_event(order, OrderEvent("shopify", "1001", "refund", NOW, refunds=(early,)))
    assert [r.refund_id for r in order.refunds] == ["r_early", "r_late"]
    second = points(
        fulfilled_at=FULFILLED,
        refunded_goods=60000,
        refund_ids=[r.refund_id for r in order.refunds],
        **recorded(first),
    )
    assert [e.points for e in first.entries] == [-300]
    assert [e.points for e in second.entries] == [-300]
    assert second.entries[0].entry_id != first.entries[0].entry_id


def test_entry_ids_of_a_whole_order_life_are_unique():
    seen = []
    state = {}
    steps = [
        {},
        {"fulfilled_at": FULFILLED},
        {"fulfilled_at": FULFILLED, "refunded_goods": 20000, "refund_ids": ["r1"]},
        {"fulfilled_at": FULFILLED, "refunded_goods": 50000, "refund_ids": ["r1", "r2"]},
        {
            "cancelled": True,
            "fulfilled_at": FULFILLED,
            "refunded_goods": 50000,
            "refund_ids": ["r1", "r2"],
        },
    ]
    total = 0
    for step in steps:
        result = points(**step, **state)
        seen += [e.entry_id for e in result.entries]
        total += result.balance_delta + result.pending_delta
        state = recorded(result)
    assert len(seen) == len(set(seen)) == 4
    assert total == 0
    assert state["reversed_so_far"] == 1000


def test_a_custom_tier_multiplier_in_the_earn_details():
    triple = Tier("vip", 0, Fraction(3))
    result = points(tier=triple)
    assert result.earned == 3000
    assert result.entries[0].details["tier"] == "vip"


# -- history imports (decision 34) -------------------------------------------------------------

IMPORTED_AT = "2026-11-23T10:00:00.000+00:00"


def test_history_delivered_within_12_months_earns_active_at_once_until_12_months_after_delivery():
    result = points(history=True, fulfilled_at="2026-01-10T04:00:00+00:00", now=IMPORTED_AT)
    assert [(e.entry_id, e.points) for e in result.entries] == [(f"earn:{ORDER}", 1000)]
    assert result.status == ACTIVE
    assert result.balance_delta == 1000 and result.pending_delta == 0
    assert result.lot is not None
    assert result.lot.activated_at == "2026-01-10T04:00:00+00:00"
    assert result.lot.expires_at == "2027-01-10T04:00:00+00:00"


@pytest.mark.parametrize(
    "overrides",
    [
        {"fulfilled_at": None},  # paid, not delivered
        {"fulfilled_at": "2026-01-10T04:00:00+00:00", "cancelled": True},
        {"fulfilled_at": "2026-01-10T04:00:00+00:00", "paid": False},
    ],
)
def test_history_not_delivered_cancelled_or_unpaid_earns_nothing_and_stays_open(overrides):
    result = points(history=True, now=IMPORTED_AT, **overrides)
    assert result.entries == [] and result.status is None and not result.changed


@pytest.mark.parametrize("delivered", ["2025-11-23T10:00:00+00:00", "2024-06-01T00:00:00+00:00"])
def test_history_delivered_12_months_ago_or_more_never_earns(delivered):
    result = points(history=True, fulfilled_at=delivered, now=IMPORTED_AT)
    assert result.entries == [] and result.lot is None and not result.changed
    assert result.status == EXPIRED
    # A later event of the same order (a webhook: not history) earns nothing either.
    later = points(fulfilled_at=delivered, now=IMPORTED_AT, **recorded(result))
    assert_nothing_to_do(later)


def test_history_paid_then_delivered_later_by_a_webhook_earns_as_usual():
    imported = points(history=True, now=IMPORTED_AT)
    delivered = points(
        fulfilled_at="2026-11-30T00:00:00+00:00",
        now="2026-11-30T01:00:00+00:00",
        **recorded(imported),
    )
    assert delivered.earned == 1000 and delivered.status == ACTIVE
    assert delivered.lot is not None and delivered.lot.expires_at == "2027-11-30T00:00:00+00:00"


def test_a_webhook_after_a_history_earn_earns_nothing_more():
    imported = points(history=True, fulfilled_at="2026-10-01T00:00:00+00:00", now=IMPORTED_AT)
    again = points(fulfilled_at="2026-10-01T00:00:00+00:00", now=LATER, **recorded(imported))
    assert_nothing_to_do(again)
