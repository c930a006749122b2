"""The order record: details from the newest event, facts merged whatever the arrival order,
the derived status, and what an order adds to its customer's stats."""

from dataclasses import replace
from itertools import permutations

import pytest

from crm.domain.order_events import Buyer, Line, OrderEvent, Refund
from crm.domain.orders import (
    ALLOCATED,
    CANCELLED,
    DELIVERED,
    ON_HOLD,
    PAID,
    PARTIALLY_REFUNDED,
    PENDING,
    REFUNDED,
    SHIPPED,
    Contribution,
    Order,
    apply_event,
    contribution,
    derive_status,
    differs,
    new_order,
    stats_after,
)

NOW = "2026-03-10T00:00:00+00:00"
T_CREATE = "2026-03-01T10:00:00+00:00"
T_PAID = "2026-03-01T10:05:00+00:00"
T_UPDATE = "2026-03-01T11:00:00+00:00"
T_FULFIL = "2026-03-03T09:00:00+00:00"
T_REFUND = "2026-03-05T12:00:00+00:00"
T_CANCEL = "2026-03-02T08:00:00+00:00"

LINES = (Line("SKU-1", 2, 5000, "Tea", line_id="11"),)
LINES_V2 = (Line("SKU-1", 2, 5000, "Tea", line_id="11"), Line("SKU-2", 1, 0, "Gift"))
ADDRESS = {"country_code": "CN", "province": "Zhejiang", "city": "Hangzhou"}
ADDRESS_V2 = {"country_code": "CN", "province": "Shanghai", "city": "Shanghai"}


def details(**overrides):
    values = {
        "created_at": T_CREATE,
        "currency": "CNY",
        "lines": LINES,
        "subtotal": 10000,
        "shipping": 1000,
        "total": 11000,
        "shipping_address": ADDRESS,
        "buyer": Buyer(email="ana@example.com"),
        "name": "#1001",
    }
    values.update(overrides)
    return values


def event(kind, updated_at, **fields):
    return OrderEvent(
        source="shopify", platform_order_id="1001", kind=kind, updated_at=updated_at, **fields
    )


def refund(refund_id="r1", at=T_REFUND, amount=3000, goods=3000):
    return Refund(refund_id=refund_id, at=at, amount=amount, goods_amount=goods)


CREATE = event("create", T_CREATE, **details())
PAID_EV = event("paid", T_PAID, paid_at=T_PAID, **details())
UPDATE = event("update", T_UPDATE, **details(lines=LINES_V2, shipping_address=ADDRESS_V2))
FULFIL = event(
    "fulfilled",
    T_FULFIL,
    paid_at=T_PAID,
    fulfilled_at=T_FULFIL,
    **details(lines=LINES_V2, shipping_address=ADDRESS_V2, name="#1001-F"),
)
REFUND_EV = event("refund", T_REFUND, refunds=(refund(),))
CANCEL = event("cancelled", T_CANCEL, cancelled_at=T_CANCEL, cancel_reason="customer")


def run(*events, order=None):
    order = order or new_order(events[0], NOW)
    for ev in events:
        order = apply_event(order, ev)
    return order


def facts(order):
    return (
        order.status,
        order.paid_at,
        order.cancelled_at,
        order.fulfilled_at,
        tuple(order.refunds),
        order.refunded,
        order.refunded_goods,
        order.total,
        order.subtotal,
        order.updated_at,
        tuple(order.lines),
        order.shipping_address,
        order.name,
        order.created_at,
        order.currency,
    )


# -- details ----------------------------------------------------------------------------------


def test_the_first_event_sets_the_details_and_a_pending_status():
    order = run(CREATE)
    assert order.order_id == "ord_shopify_1001"
    assert order.received_at == NOW
    assert order.lines == list(LINES)
    assert (order.subtotal, order.shipping, order.total) == (10000, 1000, 11000)
    assert order.currency == "CNY"
    assert order.shipping_address == ADDRESS
    assert order.name == "#1001"
    assert order.created_at == T_CREATE
    assert order.updated_at == T_CREATE
    assert order.status == PENDING
    assert order.status_history == [{"status": PENDING, "at": T_CREATE}]


def test_a_newer_event_replaces_the_details():
    order = run(CREATE, UPDATE)
    assert order.lines == list(LINES_V2)
    assert order.shipping_address == ADDRESS_V2
    assert order.updated_at == T_UPDATE


def test_an_older_event_does_not_replace_the_details():
    order = run(UPDATE, CREATE)
    assert order.lines == list(LINES_V2)
    assert order.shipping_address == ADDRESS_V2
    assert order.updated_at == T_UPDATE
    older_total = event("update", T_CREATE, **details(total=99999, name="#OLD"))
    after = apply_event(order, older_total)
    assert after.total == 11000
    assert after.name == "#1001"
    assert after.updated_at == T_UPDATE


def test_an_event_as_new_as_the_stored_details_replaces_them():
    order = run(UPDATE)
    same_time = event("update", T_UPDATE, **details(total=12000, subtotal=11000))
    after = apply_event(order, same_time)
    assert (after.total, after.subtotal) == (12000, 11000)


def test_a_newer_event_without_some_details_keeps_the_stored_ones():
    order = run(CREATE)
    sparse = event("update", T_UPDATE, lines=LINES_V2)
    after = apply_event(order, sparse)
    assert after.lines == list(LINES_V2)
    assert (after.subtotal, after.shipping, after.total) == (10000, 1000, 11000)
    assert after.currency == "CNY"
    assert after.name == "#1001"
    assert after.created_at == T_CREATE


def test_an_event_without_lines_never_touches_the_details():
    order = run(CREATE)
    later = event("refund", T_REFUND, total=1, subtotal=1, refunds=(refund(),))
    after = apply_event(order, later)
    assert (after.subtotal, after.total) == (10000, 11000)
    assert after.updated_at == T_CREATE
    assert [r.refund_id for r in after.refunds] == ["r1"]


def test_a_refund_first_then_the_create_takes_the_create_details():
    order = run(REFUND_EV, CREATE)
    assert order.total == 11000
    assert order.updated_at == T_CREATE
    assert order.created_at == T_CREATE
    assert [r.refund_id for r in order.refunds] == ["r1"]


# -- facts ------------------------------------------------------------------------------------


def test_a_paid_event_arriving_after_a_newer_update_still_makes_the_order_paid():
    order = run(CREATE, UPDATE, PAID_EV)
    assert order.paid_at == T_PAID
    assert order.status == PAID
    # ... while the details stay those of the newer update.
    assert order.lines == list(LINES_V2)
    assert order.updated_at == T_UPDATE


def test_a_later_update_without_facts_does_not_unset_them():
    order = run(CREATE, PAID_EV, CANCEL)
    newer = event("update", "2026-03-09T00:00:00+00:00", **details())
    after = apply_event(order, newer)
    assert after.paid_at == T_PAID
    assert after.cancelled_at == T_CANCEL
    assert after.cancel_reason == "customer"
    assert after.status == CANCELLED


def test_a_cancellation_is_never_undone():
    order = run(CREATE, PAID_EV, CANCEL, UPDATE, FULFIL, REFUND_EV)
    assert order.cancelled_at == T_CANCEL
    assert order.status == CANCELLED
    assert order.status_history[-1] == {"status": CANCELLED, "at": T_CANCEL}


def test_the_earliest_fact_time_wins():
    order = run(CREATE, event("paid", T_UPDATE, paid_at=T_UPDATE), PAID_EV)
    assert order.paid_at == T_PAID
    order = run(CREATE, PAID_EV, event("paid", T_UPDATE, paid_at=T_UPDATE))
    assert order.paid_at == T_PAID


def test_refunds_are_merged_by_refund_id_and_sorted_by_time():
    late = refund("r2", at="2026-03-07T00:00:00+00:00", amount=1000, goods=1000)
    early = refund("r0", at="2026-03-04T00:00:00+00:00", amount=500, goods=500)
    order = run(CREATE, PAID_EV, event("refund", "2026-03-07T00:00:00+00:00", refunds=(late,)))
    order = apply_event(order, event("update", T_FULFIL, refunds=(early, late)))
    order = apply_event(order, REFUND_EV)
    order = apply_event(order, REFUND_EV)
    assert [r.refund_id for r in order.refunds] == ["r0", "r1", "r2"]
    assert order.refunded == 4500
    assert order.refunded_goods == 4500


def test_refunded_goods_never_exceeds_the_subtotal():
    big = refund("r9", amount=50000, goods=50000)
    order = run(CREATE, PAID_EV, event("refund", T_REFUND, refunds=(big,)))
    assert order.refunded == 50000
    assert order.refunded_goods == 10000


def test_the_same_event_applied_twice_gives_an_equal_order():
    for ev in (CREATE, PAID_EV, UPDATE, FULFIL, REFUND_EV, CANCEL):
        once = run(CREATE, PAID_EV, ev)
        twice = apply_event(once, ev)
        assert not differs(once, twice), ev.kind
        assert once == twice


def test_differs_ignores_the_version_only():
    order = run(CREATE)
    assert not differs(order, replace(order, version=7))
    assert differs(order, replace(order, total=1))


def test_apply_event_does_not_mutate_the_order_it_is_given():
    order = run(CREATE)
    snapshot = replace(
        order,
        lines=list(order.lines),
        refunds=list(order.refunds),
        status_history=list(order.status_history),
    )
    apply_event(order, PAID_EV)
    apply_event(order, REFUND_EV)
    assert order == snapshot


FIVE = (CREATE, PAID_EV, UPDATE, FULFIL, REFUND_EV)


def test_every_arrival_order_of_five_events_ends_in_the_same_status_and_facts():
    results = {}
    for perm in permutations(FIVE):
        order = run(*perm)
        results[tuple(e.kind for e in perm)] = facts(order)
        # Replaying everything changes nothing.
        assert not differs(order, run(*perm, order=order))
    expected = facts(run(*FIVE))
    assert len(results) == 120
    for kinds, got in results.items():
        assert got == expected, kinds
    order = run(*FIVE)
    assert order.status == PARTIALLY_REFUNDED
    assert order.paid_at == T_PAID
    assert order.fulfilled_at == T_FULFIL
    assert order.updated_at == T_FULFIL
    assert order.name == "#1001-F"
    assert order.shipping_address == ADDRESS_V2


def test_every_arrival_order_with_a_full_refund_ends_refunded():
    full = event("refund", T_REFUND, refunds=(refund(amount=11000, goods=10000),))
    for perm in permutations((CREATE, PAID_EV, UPDATE, FULFIL, full)):
        order = run(*perm)
        assert order.status == REFUNDED, [e.kind for e in perm]
        c = contribution(order)
        assert (c.counted, c.spent) == (False, 0)


def test_every_arrival_order_with_a_cancellation_ends_cancelled():
    for perm in permutations((CREATE, PAID_EV, FULFIL, REFUND_EV, CANCEL)):
        order = run(*perm)
        assert order.status == CANCELLED, [e.kind for e in perm]
        assert order.cancelled_at == T_CANCEL
        assert order.cancel_reason == "customer"
        assert contribution(order) == Contribution(False, 0, None)


def test_every_arrival_order_gives_the_same_contribution():
    contributions = {contribution(run(*perm)) for perm in permutations(FIVE)}
    assert contributions == {Contribution(True, 8000, "2026-03")}


# -- status -----------------------------------------------------------------------------------


def bare(**fields):
    base = {
        "order_id": "ord_x_1",
        "source": "x",
        "platform_order_id": "1",
        "received_at": NOW,
        "total": 11000,
        "subtotal": 10000,
    }
    base.update(fields)
    return Order(**base)


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({}, PENDING),
        ({"paid_at": T_PAID}, PAID),
        ({"paid_at": T_PAID, "progress": ALLOCATED}, ALLOCATED),
        ({"paid_at": T_PAID, "progress": SHIPPED}, SHIPPED),
        ({"paid_at": T_PAID, "progress": ON_HOLD}, ON_HOLD),
        ({"paid_at": T_PAID, "progress": "bogus"}, PAID),
        ({"paid_at": T_PAID, "progress": SHIPPED, "fulfilled_at": T_FULFIL}, DELIVERED),
        (
            {"paid_at": T_PAID, "fulfilled_at": T_FULFIL, "refunds": [refund()]},
            PARTIALLY_REFUNDED,
        ),
        (
            {"paid_at": T_PAID, "fulfilled_at": T_FULFIL, "refunds": [refund(amount=11000)]},
            REFUNDED,
        ),
        (
            {
                "paid_at": T_PAID,
                "refunds": [refund("a", amount=6000), refund("b", amount=5000)],
            },
            REFUNDED,
        ),
        (
            {
                "paid_at": T_PAID,
                "fulfilled_at": T_FULFIL,
                "refunds": [refund(amount=11000)],
                "cancelled_at": T_CANCEL,
            },
            CANCELLED,
        ),
        ({"cancelled_at": T_CANCEL}, CANCELLED),
        ({"cancelled_at": T_CANCEL, "progress": ON_HOLD}, CANCELLED),
    ],
)
def test_derive_status_precedence(fields, status):
    assert derive_status(bare(**fields)) == status


def test_status_history_appends_only_on_change_with_the_fact_time():
    order = run(CREATE)
    assert [h["status"] for h in order.status_history] == [PENDING]
    order = apply_event(order, UPDATE)
    assert [h["status"] for h in order.status_history] == [PENDING]
    order = apply_event(order, PAID_EV)
    order = apply_event(order, PAID_EV)
    assert order.status_history == [
        {"status": PENDING, "at": T_CREATE},
        {"status": PAID, "at": T_PAID},
    ]
    order = apply_event(order, FULFIL)
    order = apply_event(order, REFUND_EV)
    order = apply_event(order, REFUND_EV)
    assert order.status_history == [
        {"status": PENDING, "at": T_CREATE},
        {"status": PAID, "at": T_PAID},
        {"status": DELIVERED, "at": T_FULFIL},
        {"status": PARTIALLY_REFUNDED, "at": T_REFUND},
    ]
    assert order.status == PARTIALLY_REFUNDED


# -- contribution and stats -------------------------------------------------------------------


def stored(order):
    """The order as the store keeps it once its contribution has been applied."""
    c = contribution(order)
    return replace(order, counted=c.counted, spent=c.spent, spent_month=c.month)


def test_an_unpaid_order_contributes_nothing():
    assert contribution(run(CREATE)) == Contribution(False, 0, None)


def test_a_paid_order_counts_once_for_total_minus_refunded():
    assert contribution(run(CREATE, PAID_EV)) == Contribution(True, 11000, "2026-03")
    assert contribution(run(CREATE, PAID_EV, REFUND_EV)) == Contribution(True, 8000, "2026-03")


def test_a_cancelled_order_contributes_nothing():
    assert contribution(run(CREATE, PAID_EV, CANCEL)) == Contribution(False, 0, None)


def test_a_paid_order_with_no_stats_yet():
    order = run(CREATE, PAID_EV)
    stats = stats_after({}, order, contribution(order))
    assert stats == {
        "spend_months": {"2026-03": 11000},
        "orders_count": 1,
        "total_spent": 11000,
        "currency": "CNY",
        "first_order_at": T_CREATE,
        "last_order_at": T_CREATE,
    }


def test_replacing_a_contribution_twice_is_idempotent():
    order = run(CREATE, PAID_EV)
    start = {
        "orders_count": 3,
        "total_spent": 50000,
        "spend_months": {"2026-01": 20000, "2026-03": 30000},
        "first_order_at": "2025-06-01T00:00:00+00:00",
        "last_order_at": "2026-02-01T00:00:00+00:00",
        "currency": "CNY",
    }
    once = stats_after(start, order, contribution(order))
    assert once["orders_count"] == 4
    assert once["total_spent"] == 61000
    assert once["spend_months"] == {"2026-01": 20000, "2026-03": 41000}
    twice = stats_after(once, stored(order), contribution(order))
    assert twice == once
    assert start["orders_count"] == 3  # the input is not mutated


def test_a_refund_replaces_the_spend_and_keeps_the_count():
    order = stored(run(CREATE, PAID_EV))
    stats = stats_after(
        {}, replace(order, counted=False, spent=0, spent_month=None), contribution(order)
    )
    refunded = run(REFUND_EV, order=order)
    after = stats_after(stats, refunded, contribution(refunded))
    assert after["orders_count"] == 1
    assert after["total_spent"] == 8000
    assert after["spend_months"] == {"2026-03": 8000}
    again = stats_after(after, stored(refunded), contribution(refunded))
    assert again == after


def test_cancellation_removes_the_order_from_the_stats():
    order = stored(run(CREATE, PAID_EV))
    stats = {
        "orders_count": 2,
        "total_spent": 31000,
        "spend_months": {"2026-02": 20000, "2026-03": 11000},
        "currency": "CNY",
    }
    cancelled = run(CANCEL, order=order)
    after = stats_after(stats, cancelled, contribution(cancelled))
    assert after["orders_count"] == 1
    assert after["total_spent"] == 20000
    assert after["spend_months"] == {"2026-02": 20000}
    again = stats_after(after, stored(cancelled), contribution(cancelled))
    assert again == after


def test_a_full_refund_removes_the_count_and_the_spend():
    order = stored(run(CREATE, PAID_EV))
    stats = {"orders_count": 1, "total_spent": 11000, "spend_months": {"2026-03": 11000}}
    full = event("refund", T_REFUND, refunds=(refund(amount=11000, goods=10000),))
    refunded = run(full, order=order)
    after = stats_after(stats, refunded, contribution(refunded))
    assert after["orders_count"] == 0
    assert after["total_spent"] == 0
    assert after["spend_months"] == {}


def test_spend_is_bucketed_by_the_month_of_payment():
    created_in_feb = event(
        "create", "2026-02-28T23:00:00+00:00", **details(created_at="2026-02-28T23:00:00+00:00")
    )
    paid_in_march = event("paid", "2026-03-01T00:10:00+00:00", paid_at="2026-03-01T00:10:00+00:00")
    order = run(created_in_feb, paid_in_march)
    c = contribution(order)
    assert c.month == "2026-03"
    stats = stats_after({}, order, c)
    assert stats["spend_months"] == {"2026-03": 11000}
    assert stats["first_order_at"] == "2026-02-28T23:00:00+00:00"


def test_an_earlier_payment_moves_the_spend_to_its_month():
    order = stored(
        run(
            CREATE,
            event("paid", "2026-04-01T00:00:00+00:00", paid_at="2026-04-01T00:00:00+00:00"),
        )
    )
    stats = {"orders_count": 1, "total_spent": 11000, "spend_months": {"2026-04": 11000}}
    moved = run(PAID_EV, order=order)
    assert moved.paid_at == T_PAID
    after = stats_after(stats, moved, contribution(moved))
    assert after["spend_months"] == {"2026-03": 11000}
    assert after["orders_count"] == 1
    assert after["total_spent"] == 11000


def test_first_and_last_order_dates():
    stats = {
        "orders_count": 1,
        "total_spent": 5000,
        "first_order_at": "2026-02-01T00:00:00+00:00",
        "last_order_at": "2026-02-01T00:00:00+00:00",
    }
    later = run(CREATE, PAID_EV)
    after = stats_after(stats, later, contribution(later))
    assert after["first_order_at"] == "2026-02-01T00:00:00+00:00"
    assert after["last_order_at"] == T_CREATE
    earlier_at = "2026-01-15T00:00:00+00:00"
    earlier = run(
        event("create", earlier_at, **details(created_at=earlier_at)),
        event("paid", earlier_at, paid_at=earlier_at),
    )
    after = stats_after(after, earlier, contribution(earlier))
    assert after["first_order_at"] == earlier_at
    assert after["last_order_at"] == T_CREATE
    assert after["orders_count"] == 3


def test_an_unpaid_order_does_not_set_order_dates():
    order = run(CREATE)
    stats = stats_after({}, order, contribution(order))
    assert "first_order_at" not in stats
    assert "last_order_at" not in stats
    assert stats["orders_count"] == 0
    assert stats["total_spent"] == 0


def test_an_order_first_seen_paid_sets_the_order_dates_from_its_own_date():
    # An imported order (or a first webhook that is already paid) has no previous state with a
    # date: the dates come from the order itself, not from the previous state.
    before = new_order(PAID_EV, "2026-11-23T00:00:00+00:00")
    after = apply_event(before, PAID_EV)
    stats = stats_after({}, before, contribution(after))
    assert after.created_at is not None
    assert stats["first_order_at"] == stats["last_order_at"] == after.created_at
    older = {"first_order_at": "2020-01-01T00:00:00+00:00", "orders_count": 1}
    stats = stats_after(older, before, contribution(after))
    assert stats["first_order_at"] == "2020-01-01T00:00:00+00:00"
    assert stats["last_order_at"] == after.created_at
