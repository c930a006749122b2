"""An order history import's refunded amount (`import-<id>`) and the platform's own refunds of
the same order: the platform's replace the import's, they never count beside it, whatever
arrives first (decision 41). Pure: `apply_event` and what it derives."""

from __future__ import annotations

from dataclasses import replace
from itertools import permutations

import pytest

from crm.domain.loyalty import DEFAULT_PROGRAM, Lot, order_points
from crm.domain.order_events import Line, OrderEvent, Refund
from crm.domain.order_imports import as_recorded
from crm.domain.orders import (
    DELIVERED,
    PARTIALLY_REFUNDED,
    REFUNDED,
    Order,
    apply_event,
    contribution,
    differs,
    new_order,
    order_view,
)

T_CREATE = "2026-03-01T10:00:00+00:00"
T_PAID = "2026-03-01T10:05:00+00:00"
T_FULFIL = "2026-03-03T09:00:00+00:00"
T_R1 = "2026-03-05T12:00:00+00:00"
T_R2 = "2026-03-06T12:00:00+00:00"
T_OLD_UPDATE = "2026-03-06T12:00:05+00:00"  # Shopify's orders/updated for r2, replayed late
T_IMPORT = "2026-03-10T00:00:00+00:00"  # when the CRM imported the shop's export
T_CRM = "2026-03-11T08:00:00+00:00"
T_R3 = "2026-03-12T09:00:00+00:00"
T_FRESH = "2026-03-12T09:00:05+00:00"  # an orders/updated after the import
NOW = "2026-03-20T00:00:00+00:00"

LINES = (Line("TEA", 2, 5000, "Tea", line_id="11"),)
DETAILS = {
    "created_at": T_CREATE,
    "currency": "CNY",
    "lines": LINES,
    "subtotal": 10000,
    "shipping": 1000,
    "total": 11000,
    "paid_at": T_PAID,
    "fulfilled_at": T_FULFIL,
}


def refund(refund_id: str, at: str, amount: int, goods: int | None = None, **more) -> Refund:
    return Refund(refund_id, at, amount, amount if goods is None else goods, **more)


R1 = refund("901", T_R1, 3000)
R2 = refund("902", T_R2, 2000)
R3 = refund("903", T_R3, 1000)
AGGREGATE = refund("import-1001", T_FULFIL, 5000, reason="imported")


def shopify_order(updated_at: str, *refunds: Refund) -> OrderEvent:
    """A Shopify `orders/*` payload: the whole order, listing all its refunds."""
    return OrderEvent(
        "shopify",
        "1001",
        "update",
        updated_at,
        refunds=tuple(refunds),
        refunds_complete=True,
        **DETAILS,
    )


def refund_created(item: Refund) -> OrderEvent:
    """A `refunds/create` payload: that refund alone, no details."""
    return OrderEvent("shopify", "1001", "refund", item.at, refunds=(item,))


def imported(amount: int = 5000, at: str = T_IMPORT) -> OrderEvent:
    """The order as the shop's export describes it, recorded by an import at `at`."""
    event = OrderEvent(
        "shopify",
        "1001",
        "update",
        T_FULFIL,
        refunds=(replace(AGGREGATE, amount=amount, goods_amount=min(amount, 10000)),),
        **DETAILS,
    )
    return as_recorded(event, at)


def crm_refund(refund_id: str, at: str, amount: int, status: str = "requested") -> OrderEvent:
    """A refund the CRM asks for itself (the API, a case), as `functions` records it."""
    item = refund(refund_id, at, amount, status=status)
    return OrderEvent("shopify", "1001", "refund", at, refunds=(item,))


IMPORT = imported()
OLD_PAID = shopify_order(T_PAID)  # orders/paid, before any refund: lists none
OLD_REPLAY = shopify_order(T_OLD_UPDATE, R1, R2)  # the refunds the export summed, sent late
FRESH = shopify_order(T_FRESH, R1, R2)  # the same, sent after the import


def run(*events: OrderEvent) -> Order:
    order = new_order(events[0], NOW)
    for event in events:
        order = apply_event(order, event)
    return order


def counted(order: Order) -> tuple[int, int, str, tuple[str, ...]]:
    return (
        order.refunded,
        order.refunded_goods,
        order.status,
        tuple(sorted(r.refund_id for r in order.live_refunds)),
    )


# -- import, then the platform ---------------------------------------------------------------


def test_the_import_alone_counts_its_amount():
    order = run(IMPORT)
    assert counted(order) == (5000, 5000, PARTIALLY_REFUNDED, ("import-1001",))
    assert order.refunds[0].as_of == T_IMPORT


@pytest.mark.parametrize("replayed", [OLD_REPLAY, FRESH], ids=["replayed_late", "after_import"])
def test_the_same_refunds_from_the_platform_replace_the_import_and_count_once(replayed):
    order = run(IMPORT, replayed)
    assert counted(order) == (5000, 5000, PARTIALLY_REFUNDED, ("901", "902"))
    assert contribution(order).spent == 6000
    statuses = {r["refund_id"]: r["status"] for r in order_view(order, "CNY")["refunds"]}
    assert statuses == {"import-1001": "superseded", "901": "completed", "902": "completed"}
    again = apply_event(order, replayed)
    assert not differs(order, again)


def test_a_newer_platform_list_replaces_the_import_whether_it_says_more_or_less():
    more = run(IMPORT, shopify_order(T_FRESH, R1, R2, R3))
    assert counted(more) == (6000, 6000, PARTIALLY_REFUNDED, ("901", "902", "903"))
    less = run(IMPORT, shopify_order(T_FRESH, R1))
    assert counted(less) == (3000, 3000, PARTIALLY_REFUNDED, ("901",))
    none = run(IMPORT, shopify_order(T_FRESH))
    assert counted(none) == (0, 0, DELIVERED, ())


def test_a_list_older_than_the_import_does_not_lower_it():
    # As of 6 March the platform had refunded 30.00; the export, made later, said 50.00: the
    # refunds between the two are unknown yet, and the import's amount stays the lower bound.
    order = run(IMPORT, shopify_order(T_OLD_UPDATE, R1))
    assert counted(order) == (5000, 5000, PARTIALLY_REFUNDED, ("901", "import-1001"))
    assert [(c.refund.refund_id, c.amount) for c in _counted(order)] == [
        ("import-1001", 2000),
        ("901", 3000),
    ]
    # ...but it may raise it: refunds before the import that sum to more than the file said.
    bigger = replace(R2, amount=2500, goods_amount=2500)
    order = run(IMPORT, shopify_order(T_OLD_UPDATE, R1, bigger))
    assert counted(order) == (5500, 5500, PARTIALLY_REFUNDED, ("901", "902"))


def test_the_paid_webhook_before_any_refund_does_not_clear_the_import():
    order = run(IMPORT, OLD_PAID)
    assert counted(order) == (5000, 5000, PARTIALLY_REFUNDED, ("import-1001",))


def test_a_refund_arriving_alone_after_the_import_counts_beside_it():
    order = run(IMPORT, refund_created(R3))
    assert counted(order) == (6000, 6000, PARTIALLY_REFUNDED, ("903", "import-1001"))
    # The order's next update lists every refund: the total stays.
    order = apply_event(order, shopify_order(T_FRESH, R1, R2, R3))
    assert counted(order) == (6000, 6000, PARTIALLY_REFUNDED, ("901", "902", "903"))


def test_a_refund_made_before_the_import_and_arriving_alone_is_part_of_it():
    order = run(IMPORT, refund_created(R1))
    assert counted(order) == (5000, 5000, PARTIALLY_REFUNDED, ("901", "import-1001"))
    order = apply_event(order, refund_created(R2))
    assert counted(order) == (5000, 5000, PARTIALLY_REFUNDED, ("901", "902"))


def test_money_and_goods_are_accounted_apart():
    # The platform's refunds say 10.00 of the 50.00 was shipping: the goods (what points are
    # reversed on) follow the platform once it has listed its refunds after the import.
    with_shipping = replace(R2, goods_amount=1000)
    order = run(IMPORT, shopify_order(T_OLD_UPDATE, R1, with_shipping))
    assert (order.refunded, order.refunded_goods) == (5000, 5000)
    order = apply_event(order, shopify_order(T_FRESH, R1, with_shipping))
    assert (order.refunded, order.refunded_goods) == (5000, 4000)


def test_the_crms_own_refunds_are_never_part_of_the_import():
    early = run(IMPORT, crm_refund("rf-early", T_R2, 1000), OLD_REPLAY)
    assert counted(early) == (6000, 6000, PARTIALLY_REFUNDED, ("901", "902", "rf-early"))
    assert early.refunds[-1].origin == "crm"
    done = apply_event(early, crm_refund("rf-early", T_R2, 1000, status="completed"))
    assert done.refunds[-1].origin == "crm" and done.refunded == 6000
    failed = apply_event(early, crm_refund("rf-early", T_R2, 1000, status="failed"))
    assert failed.refunded == 5000


def test_a_second_import_of_the_same_file_changes_nothing():
    order = run(IMPORT)
    assert not differs(order, apply_event(order, imported(at="2026-03-15T00:00:00+00:00")))
    superseded = apply_event(order, FRESH)
    assert not differs(superseded, apply_event(superseded, imported(at=NOW)))


def test_fully_refunded_orders_stay_refunded():
    everything = refund("904", T_R1, 11000, goods=10000)
    order = run(imported(amount=11000), shopify_order(T_OLD_UPDATE, everything))
    assert counted(order) == (11000, 10000, REFUNDED, ("904",))


# -- the platform, then the import -----------------------------------------------------------


@pytest.mark.parametrize(
    ("known", "expected"),
    [
        ((R1, R2), (5000, 5000, PARTIALLY_REFUNDED, ("901", "902"))),
        # The export saw a refund the webhooks did not bring: the file's amount stands.
        ((R1,), (5000, 5000, PARTIALLY_REFUNDED, ("901", "import-1001"))),
        ((R1, R2, replace(R3, at=T_R2)), (6000, 6000, PARTIALLY_REFUNDED, ("901", "902", "903"))),
    ],
    ids=["same", "webhooks_missed_one", "webhooks_know_more"],
)
def test_importing_an_order_known_from_webhooks_never_adds_its_refunds_twice(known, expected):
    order = run(shopify_order(T_OLD_UPDATE, *known), IMPORT)
    assert counted(order) == expected


# -- any arrival order -----------------------------------------------------------------------

EVENTS = {
    "import": IMPORT,
    "orders/paid": OLD_PAID,
    "refunds/create r1": refund_created(R1),
    "orders/updated (late)": OLD_REPLAY,
    "refunds/create r3": refund_created(R3),
    "orders/updated": shopify_order(T_FRESH, R1, R2, R3),
}


def test_every_arrival_order_ends_the_same():
    results = {
        counted(run(*(EVENTS[name] for name in arrival))) for arrival in permutations(EVENTS)
    }
    assert results == {(6000, 6000, PARTIALLY_REFUNDED, ("901", "902", "903"))}


@pytest.mark.parametrize("drop", sorted(EVENTS))
def test_every_arrival_order_of_fewer_events_ends_the_same(drop):
    names = [n for n in EVENTS if n != drop]
    results = {counted(run(*(EVENTS[n] for n in arrival))) for arrival in permutations(names)}
    assert len(results) == 1, results


# -- workflows and points --------------------------------------------------------------------


def test_platform_refunds_made_before_the_import_start_no_refund_workflow():
    from crm.domain.orders import is_history_refund

    order = run(IMPORT, shopify_order(T_FRESH, R1, R2, R3))
    history = {r.refund_id: is_history_refund(order, r) for r in order.refunds}
    assert history == {"901": True, "902": True, "import-1001": False, "903": False}
    # Without an import, every platform refund is news.
    plain = run(shopify_order(T_FRESH, R1, R2, R3))
    assert not any(is_history_refund(plain, r) for r in plain.refunds)


class Ledger:
    """The points of one order as the store keeps them: entries refused on a repeated id."""

    def __init__(self) -> None:
        self.entries: dict[str, int] = {}
        self.lot: Lot | None = None
        self.balance = self.pending = 0

    def record(self, before: Order, after: Order) -> None:
        from crm.domain.orders import refund_generation, restore_reason

        tier = DEFAULT_PROGRAM.tiers[0]
        points = order_points(
            order_id=after.order_id,
            paid=after.paid_at is not None,
            cancelled=after.cancelled_at is not None,
            fulfilled_at=after.fulfilled_at,
            goods=after.subtotal,
            refunded_goods=after.refunded_goods,
            refund_ids=[r.refund_id for r in after.refunds],
            currency="CNY",
            earned=before.points_earned,
            reversed_so_far=before.points_reversed,
            status=before.points_status,
            lot=self.lot,
            tier=tier,
            program=DEFAULT_PROGRAM,
            now=NOW,
            history=True,
            generation=refund_generation(after),
            restore_reason=restore_reason(before, after),
        )
        for entry in points.entries:
            assert entry.entry_id not in self.entries, f"{entry.entry_id} refused as a replay"
            self.entries[entry.entry_id] = entry.points
        self.lot = points.lot
        self.balance += points.balance_delta
        self.pending += points.pending_delta
        after.points_earned, after.points_reversed = points.earned, points.reversed
        after.points_status = points.status


def points_through(*events: OrderEvent) -> tuple[Order, Ledger]:
    ledger = Ledger()
    order = new_order(events[0], NOW)
    for event in events:
        after = apply_event(order, event)
        ledger.record(order, after)
        order = after
    return order, ledger


def test_points_move_once_by_the_difference_whatever_arrives_first():
    # 100 points earned (100.00 of goods); 50.00 refunded: 50 reversed.
    for arrival in permutations(["import", "orders/updated (late)", "refunds/create r1"]):
        order, ledger = points_through(*(EVENTS[n] for n in arrival))
        assert (order.points_earned, order.points_reversed) == (100, 50), arrival
        assert ledger.balance == 50 and sum(ledger.entries.values()) == 50
    # The platform says 60.00 after the import: 10 more points reversed, once.
    order, ledger = points_through(IMPORT, OLD_REPLAY, EVENTS["orders/updated"])
    assert (order.points_reversed, ledger.balance) == (60, 40)
    assert sorted(ledger.entries.values()) == [-50, -10, 100]


def test_points_come_back_when_the_platform_says_less_and_go_again_without_a_refused_entry():
    order, ledger = points_through(IMPORT, shopify_order(T_FRESH, R1))
    assert (order.points_reversed, ledger.balance) == (30, 70)
    assert sorted(ledger.entries.values()) == [-50, 20, 100]
    assert any(e.startswith("restore:") for e in ledger.entries)
    # A later refund takes the reversed total back to 50 (a name the first reversal had).
    later = refund("905", "2026-03-13T00:00:00+00:00", 2000)
    after = apply_event(order, refund_created(later))
    ledger.record(order, after)
    assert (after.points_reversed, ledger.balance) == (50, 50)
    assert sum(ledger.entries.values()) == ledger.balance


def test_a_failed_refund_asked_again_reverses_again_without_a_refused_entry():
    order, ledger = points_through(
        shopify_order(T_PAID),
        crm_refund("rf-1", T_CRM, 5000),
        crm_refund("rf-1", T_CRM, 5000, status="failed"),
        crm_refund("rf-2", T_R3, 5000),
    )
    assert order.points_reversed == 50 and (ledger.balance, ledger.pending) == (50, 0)
    assert sum(ledger.entries.values()) == ledger.balance + ledger.pending


def test_without_a_restore_entry_ids_keep_their_names():
    _, ledger = points_through(shopify_order(T_PAID), refund_created(R1), refund_created(R2))
    assert [e for e in ledger.entries if e.startswith("reverse:")] == [
        "reverse:ord_shopify_1001:30",
        "reverse:ord_shopify_1001:50",
    ]


def _counted(order: Order):
    from crm.domain.orders import counted_refunds

    return counted_refunds(order)
