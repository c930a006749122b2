"""EventBridge schedule expressions as the local scheduler reads them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crm_local.schedules import Cron, InvalidSchedule, Rate, aws_weekday, parse


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def fires(expression: str, after: str, count: int = 1) -> list[str]:
    schedule = parse(expression)
    moment, found = at(after), []
    for _ in range(count):
        nxt = schedule.next_after(moment)
        assert nxt is not None
        found.append(nxt.strftime("%Y-%m-%d %H:%M %a"))
        moment = nxt
    return found


@pytest.mark.parametrize(
    ("expression", "period"),
    [
        ("rate(1 minute)", timedelta(minutes=1)),
        ("rate(5 minutes)", timedelta(minutes=5)),
        ("rate(1 hour)", timedelta(hours=1)),
        ("rate(12 hours)", timedelta(hours=12)),
        ("rate(1 day)", timedelta(days=1)),
        ("rate(7 days)", timedelta(days=7)),
    ],
)
def test_rate_units(expression: str, period: timedelta) -> None:
    assert parse(expression) == Rate(period)


def test_a_rate_fires_one_period_after_its_anchor_and_skips_missed_firings() -> None:
    rate = parse("rate(5 minutes)")
    anchor = at("2025-03-01T10:00:00")
    assert rate.next_after(anchor, anchor) == at("2025-03-01T10:05:00")
    assert rate.next_after(at("2025-03-01T10:05:00"), anchor) == at("2025-03-01T10:10:00")
    # Asleep for an hour: the next firing is on the grid, not a burst of twelve.
    assert rate.next_after(at("2025-03-01T11:02:30"), anchor) == at("2025-03-01T11:05:00")


@pytest.mark.parametrize(
    "expression",
    [
        "rate(1 minutes)",
        "rate(5 minute)",
        "rate(0 minutes)",
        "rate(2 weeks)",
        "rate(five minutes)",
    ],
)
def test_rates_eventbridge_refuses_are_refused(expression: str) -> None:
    with pytest.raises(InvalidSchedule):
        parse(expression)


def test_daily_at_noon() -> None:
    assert fires("cron(0 12 * * ? *)", "2025-03-01T12:00:00", 2) == [
        "2025-03-02 12:00 Sun",
        "2025-03-03 12:00 Mon",
    ]
    assert fires("cron(0 12 * * ? *)", "2025-03-01T11:59:59") == ["2025-03-01 12:00 Sat"]


def test_aws_day_of_week_numbering_is_1_sunday_to_7_saturday() -> None:
    assert fires("cron(0 9 ? * 1 *)", "2025-03-03T00:00:00") == ["2025-03-09 09:00 Sun"]
    assert fires("cron(0 9 ? * 7 *)", "2025-03-03T00:00:00") == ["2025-03-08 09:00 Sat"]
    assert fires("cron(0 9 ? * 2 *)", "2025-03-03T00:00:00") == ["2025-03-03 09:00 Mon"]
    assert [aws_weekday(at(f"2025-03-0{d}T00:00:00")) for d in range(2, 9)] == [1, 2, 3, 4, 5, 6, 7]


def test_weekday_names_and_ranges() -> None:
    assert fires("cron(0 18 ? * MON-FRI *)", "2025-03-07T18:00:00", 3) == [
        "2025-03-10 18:00 Mon",
        "2025-03-11 18:00 Tue",
        "2025-03-12 18:00 Wed",
    ]
    assert fires("cron(30 6 ? * sat,SUN *)", "2025-03-03T00:00:00", 3) == [
        "2025-03-08 06:30 Sat",
        "2025-03-09 06:30 Sun",
        "2025-03-15 06:30 Sat",
    ]


def test_steps_lists_and_ranges_in_minutes_and_hours() -> None:
    assert fires("cron(0/15 * * * ? *)", "2025-03-01T10:07:00", 4) == [
        "2025-03-01 10:15 Sat",
        "2025-03-01 10:30 Sat",
        "2025-03-01 10:45 Sat",
        "2025-03-01 11:00 Sat",
    ]
    assert fires("cron(*/20 8-9 * * ? *)", "2025-03-01T09:41:00", 2) == [
        "2025-03-02 08:00 Sun",
        "2025-03-02 08:20 Sun",
    ]
    assert fires("cron(5,35 1,13 * * ? *)", "2025-03-01T01:05:00", 3) == [
        "2025-03-01 01:35 Sat",
        "2025-03-01 13:05 Sat",
        "2025-03-01 13:35 Sat",
    ]
    assert fires("cron(0 10-20/5 * * ? *)", "2025-03-01T10:00:00", 3) == [
        "2025-03-01 15:00 Sat",
        "2025-03-01 20:00 Sat",
        "2025-03-02 10:00 Sun",
    ]


def test_month_names_days_of_month_and_years() -> None:
    assert fires("cron(0 0 1 JAN,JUL ? *)", "2025-03-01T00:00:00", 2) == [
        "2025-07-01 00:00 Tue",
        "2026-01-01 00:00 Thu",
    ]
    assert fires("cron(15 10 ? * FRI *)", "2025-12-31T23:59:00") == ["2026-01-02 10:15 Fri"]
    assert fires("cron(0 0 29 2 ? *)", "2025-01-01T00:00:00") == ["2028-02-29 00:00 Tue"]
    assert fires("cron(0 8 1 * ? 2027-2028)", "2025-06-01T00:00:00") == ["2027-01-01 08:00 Fri"]
    assert parse("cron(0 0 1 1 ? 2020)").next_after(at("2025-01-01T00:00:00")) is None


def test_last_day_of_month_and_nth_weekday() -> None:
    assert fires("cron(0 23 L * ? *)", "2025-02-01T00:00:00", 2) == [
        "2025-02-28 23:00 Fri",
        "2025-03-31 23:00 Mon",
    ]
    # `3#2`: the second Tuesday.
    assert fires("cron(0 9 ? * 3#2 *)", "2025-03-01T00:00:00", 2) == [
        "2025-03-11 09:00 Tue",
        "2025-04-08 09:00 Tue",
    ]


def test_the_next_firing_is_strictly_after_the_moment() -> None:
    cron = parse("cron(* * * * ? *)")
    assert isinstance(cron, Cron)
    assert cron.next_after(at("2025-03-01T10:00:00")) == at("2025-03-01T10:01:00")
    assert cron.next_after(at("2025-03-01T10:00:59.9")) == at("2025-03-01T10:01:00")


@pytest.mark.parametrize(
    "expression",
    [
        "cron(0 12 * * *)",  # five fields
        "cron(0 12 * * * *)",  # neither day field is '?'
        "cron(0 12 ? * ? *)",  # both are
        "cron(60 12 * * ? *)",  # minute out of range
        "cron(0 12 * 13 ? *)",  # month out of range
        "cron(0 12 ? * 0 *)",  # AWS weekdays are 1-7
        "cron(0 12 ? * FRI-MON *)",  # backwards
        "cron(0 12 15W * ? *)",  # W: not supported locally
        "cron(0/0 * * * ? *)",  # zero step
        "every day",
    ],
)
def test_bad_cron_is_refused_with_the_expression_in_the_message(expression: str) -> None:
    with pytest.raises(InvalidSchedule) as refused:
        parse(expression)
    assert expression in str(refused.value)
