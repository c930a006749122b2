"""Carrier events: validation, repeats, and what a waiting step is told. Pure."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from crm.domain.carrier_events import (
    MAX_EVENTS,
    CarrierEvent,
    awaited_outcome,
    is_repeat,
    parse_carrier_event,
    parse_time,
    shipment,
    with_event,
)
from crm.domain.errors import ValidationFailed

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def event(kind: str, minutes_ago: int, tracking: str | None = "SF1") -> CarrierEvent:
    return parse_carrier_event(
        {
            "order_id": "ord_shopify_1",
            "event": kind,
            "carrier": "SF",
            "tracking_number": tracking,
            "at": (NOW - timedelta(minutes=minutes_ago)).isoformat(),
        },
        NOW,
    )


def record_all(events: list[CarrierEvent], attempt: int = 1) -> list[dict]:
    recorded: list[dict] = []
    for e in events:
        if not is_repeat(recorded, e, attempt):
            recorded = with_event(recorded, e, attempt)
    return recorded


# -- parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-29T11:00:00Z",
        "2026-11-29T19:00:00+08:00",
        "2026-11-29t11:00:00z",
        "2026-11-29 11:00:00Z",
        "2026-11-29T11:00:00.123456789Z",
    ],
)
def test_rfc3339_times_are_read_with_their_offset(text):
    assert parse_time(text) == datetime(2026, 11, 29, 11, 0, tzinfo=UTC) + (
        timedelta(microseconds=123456) if "." in text else timedelta()
    )


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-29T11:00:00",  # no offset
        "2026-11-29",
        "2026-02-30T11:00:00Z",
        "2026-11-29T25:00:00Z",
        "\uff12\uff10\uff12\uff16-11-29T11:00:00Z",  # full-width digits
        "1732881600",
        "",
    ],
)
def test_other_times_are_refused(text):
    assert parse_time(text) is None


def test_a_missing_at_is_the_time_received():
    parsed = parse_carrier_event({"order_id": "1", "event": "shipped"}, NOW)
    assert parsed.at == parsed.received_at == "2026-11-29T12:00:00.000+00:00"


def test_at_is_kept_in_utc():
    parsed = parse_carrier_event(
        {"order_id": "1", "event": "shipped", "at": "2026-11-29T19:30:00+08:00"}, NOW
    )
    assert parsed.at == "2026-11-29T11:30:00.000+00:00"


@pytest.mark.parametrize(
    ("at", "issue"),
    [
        ((NOW + timedelta(minutes=6)).isoformat(), "in_the_future"),
        ((NOW - timedelta(days=31)).isoformat(), "too_old"),
        ("soon", "not_rfc3339"),
        (1732881600, "not_rfc3339"),
    ],
)
def test_a_time_outside_the_window_is_refused(at, issue):
    with pytest.raises(ValidationFailed) as refused:
        parse_carrier_event({"order_id": "1", "event": "shipped", "at": at}, NOW)
    assert refused.value.details == [{"field": "at", "issue": issue}]


def test_clock_skew_is_tolerated():
    at = (NOW + timedelta(minutes=4)).isoformat()
    assert parse_carrier_event({"order_id": "1", "event": "shipped", "at": at}, NOW)


def test_every_problem_is_listed_at_once():
    with pytest.raises(ValidationFailed) as refused:
        parse_carrier_event({"event": "lost", "carrier": 7, "colour": "red"}, NOW)
    assert {(d["field"], d["issue"]) for d in refused.value.details} == {
        ("colour", "unknown_field"),
        ("order_id", "missing"),
        ("event", "unknown_value"),
        ("carrier", "wrong_type"),
    }


# -- repeats -------------------------------------------------------------------------------


def test_a_fact_reported_twice_is_a_repeat_whatever_its_time():
    recorded = record_all([event("shipped", 30)])
    assert is_repeat(recorded, event("shipped", 10), 1)
    assert not is_repeat(recorded, event("shipped", 10, tracking="SF2"), 1)


def test_scans_repeat_only_at_the_same_time():
    recorded = record_all([event("in_transit", 30)])
    assert is_repeat(recorded, event("in_transit", 30), 1)
    assert not is_repeat(recorded, event("in_transit", 20), 1)


def test_without_tracking_numbers_a_new_attempt_is_a_new_parcel():
    recorded = record_all([event("shipped", 30, tracking=None)], attempt=1)
    assert is_repeat(recorded, event("shipped", 10, tracking=None), 1)
    assert not is_repeat(recorded, event("shipped", 10, tracking=None), 2)


def test_the_oldest_scans_go_first_past_the_cap():
    recorded = record_all([event("shipped", 2000), event("delivered", 1)])
    for minute in range(MAX_EVENTS + 10):
        recorded = with_event(recorded, event("in_transit", 1500 - minute), 1)
    assert len(recorded) == MAX_EVENTS
    assert [e["event"] for e in recorded[:2]] == ["shipped", "delivered"]


# -- what a waiting step is told -----------------------------------------------------------


@pytest.mark.parametrize(
    "arrival", list(itertools.permutations(["shipped", "in_transit", "delivered"]))
)
def test_any_order_of_arrival_decides_the_same(arrival):
    minutes = {"shipped": 30, "in_transit": 20, "delivered": 10}
    recorded = record_all([event(kind, minutes[kind]) for kind in arrival])
    shipped = awaited_outcome(recorded, "shipped", 1)
    delivered = awaited_outcome(recorded, "delivered", 1)
    assert shipped is not None and shipped.output is not None
    assert shipped.output["event"] == "delivered"
    assert shipped.output["at"] == "2026-11-29T11:30:00.000+00:00"
    assert delivered is not None and delivered.output == {
        "event": "delivered",
        "at": "2026-11-29T11:50:00.000+00:00",
    }


def test_each_event_alone_implies_the_shipment():
    for kind in ("shipped", "in_transit", "delivered", "delivery_failed"):
        outcome = awaited_outcome(record_all([event(kind, 5)]), "shipped", 1)
        assert outcome is not None and outcome.output is not None
        assert outcome.output["carrier"] == "SF"


def test_nothing_recorded_keeps_waiting():
    assert awaited_outcome([], "shipped", 1) is None
    assert awaited_outcome(record_all([event("shipped", 5)]), "delivered", 1) is None


def test_the_latest_delivery_report_decides():
    failed_then_delivered = record_all([event("delivery_failed", 20), event("delivered", 10)])
    delivered_then_failed = record_all([event("delivered", 20), event("delivery_failed", 10)])
    outcome = awaited_outcome(failed_then_delivered, "delivered", 1)
    assert outcome is not None and outcome.output is not None
    failure = awaited_outcome(delivered_then_failed, "delivered", 1)
    assert failure is not None and failure.error == "DeliveryFailed"


def test_the_platform_fulfilment_answers_like_a_delivery():
    outcome = awaited_outcome([], "delivered", 1, fulfilled_at="2026-11-29T11:00:00+00:00")
    assert outcome is not None and outcome.output == {
        "event": "delivered",
        "at": "2026-11-29T11:00:00+00:00",
    }
    shipped = awaited_outcome([], "shipped", 1, fulfilled_at="2026-11-29T11:00:00+00:00")
    assert shipped is not None and shipped.output is not None
    assert shipped.output["event"] == "delivered"


def test_an_earlier_attempt_does_not_answer_a_later_one():
    recorded = record_all([event("shipped", 30), event("delivery_failed", 20)], attempt=1)
    assert awaited_outcome(recorded, "shipped", 2) is None
    assert shipment(recorded, 2) is None
