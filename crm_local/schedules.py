"""EventBridge schedule expressions: `rate(...)` and AWS's six-field `cron(...)`, in UTC.

Pure: `parse(expression)` gives an object whose `next_after(moment)` is the next time the rule
fires strictly after `moment`. Supported: `*`, `?`, lists, ranges, steps, month and weekday
names, `L` (last day of the month) and `#` (the n-th weekday of the month). Day-of-week counts
AWS's way, 1-7 = SUN-SAT. `W` and `<n>L` in day-of-week are refused with a clear error.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

_RATE = re.compile(r"^rate\(\s*(\d+)\s+([a-z]+)\s*\)$")
_CRON = re.compile(r"^cron\((.*)\)$")
_UNITS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}
MONTHS = {
    name: i
    for i, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 1
    )
}
WEEKDAYS = {name: i for i, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), 1)}
MAX_YEAR = 2199


class InvalidSchedule(ValueError):
    pass


@dataclass(frozen=True)
class Rate:
    period: timedelta

    def next_after(self, moment: datetime, anchor: datetime | None = None) -> datetime:
        """The first `anchor + k * period` (k >= 1) after `moment`: a rate rule fires one period
        after it is created (`anchor`), then every period; missed firings are not caught up."""
        anchor = moment if anchor is None else anchor
        if moment < anchor:
            return anchor + self.period
        periods = (moment - anchor) // self.period + 1
        return anchor + periods * self.period


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int] | None  # None: `?`
    last_day: bool  # `L` in day-of-month
    months: frozenset[int]
    weekdays: frozenset[int] | None  # AWS numbering, 1 = Sunday; None: `?`
    nth_weekday: tuple[int, int] | None  # `3#2`: (3 = Tuesday, 2 = second)
    years: frozenset[int]

    def next_after(self, moment: datetime, anchor: datetime | None = None) -> datetime | None:
        """The first matching minute after `moment` (UTC), or None if the years ran out."""
        moment = _utc(moment)
        start = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
        day = start.date()
        while day.year <= MAX_YEAR:
            if day.year not in self.years:
                day = date(day.year + 1, 1, 1)
                continue
            if day.month not in self.months:
                day = date(day.year + (day.month == 12), day.month % 12 + 1, 1)
                continue
            if self._day_matches(day):
                earliest = (start.hour, start.minute) if day == start.date() else (0, 0)
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        if (hour, minute) >= earliest:
                            return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)
            day += timedelta(days=1)
        return None

    def _day_matches(self, day: date) -> bool:
        if self.days is not None or self.last_day:
            last = calendar.monthrange(day.year, day.month)[1]
            return (self.days is not None and day.day in self.days) or (
                self.last_day and day.day == last
            )
        weekday = aws_weekday(day)
        if self.nth_weekday is not None:
            wanted, nth = self.nth_weekday
            return weekday == wanted and (day.day - 1) // 7 + 1 == nth
        return self.weekdays is not None and weekday in self.weekdays


Schedule = Rate | Cron


def aws_weekday(day: date) -> int:
    """1 = Sunday ... 7 = Saturday (Python's weekday() is 0 = Monday)."""
    return (day.weekday() + 1) % 7 + 1


def parse(expression: str) -> Schedule:
    text = expression.strip()
    rate = _RATE.match(text)
    if rate:
        return _parse_rate(int(rate.group(1)), rate.group(2), expression)
    cron = _CRON.match(text)
    if cron:
        return _parse_cron(cron.group(1), expression)
    raise InvalidSchedule(f"{expression!r}: expected rate(<n> <unit>) or cron(<6 fields>)")


def _parse_rate(value: int, unit: str, expression: str) -> Rate:
    # EventBridge insists on "1 minute" but "5 minutes": so does this, to fail here first.
    singular = unit.removesuffix("s")
    if singular not in _UNITS or value < 1 or (value == 1) != (unit == singular):
        raise InvalidSchedule(
            f"{expression!r}: use rate(1 minute|hour|day) or "
            "rate(<n> minutes|hours|days) with n > 1"
        )
    return Rate(value * _UNITS[singular])


def _parse_cron(body: str, expression: str) -> Cron:
    fields = body.split()
    if len(fields) != 6:
        raise InvalidSchedule(
            f"{expression!r}: cron needs 6 fields (minutes hours "
            f"day-of-month month day-of-week year), got {len(fields)}"
        )
    minute, hour, dom, month, dow, year = (f.upper() for f in fields)
    if (dom == "?") == (dow == "?"):
        raise InvalidSchedule(
            f"{expression!r}: exactly one of day-of-month and day-of-week must be '?'"
        )
    try:
        last_day = dom == "L"
        days = None if dom == "?" or last_day else _field(dom, 1, 31)
        weekdays, nth = None, None
        if "#" in dow:
            name, _, which = dow.partition("#")
            nth = (_value(name, 1, 7, WEEKDAYS), int(which))
            if not 1 <= nth[1] <= 5:
                raise InvalidSchedule(f"{dow}: the week must be 1-5")
        elif dow != "?":
            weekdays = _field(dow, 1, 7, WEEKDAYS)
        return Cron(
            minutes=_field(minute, 0, 59),
            hours=_field(hour, 0, 23),
            days=days,
            last_day=last_day,
            months=_field(month, 1, 12, MONTHS),
            weekdays=weekdays,
            nth_weekday=nth,
            years=_field(year, 1970, MAX_YEAR),
        )
    except InvalidSchedule as exc:
        raise InvalidSchedule(f"{expression!r}: {exc}") from None


def _field(text: str, low: int, high: int, names: dict[str, int] | None = None) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        spec, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) < 1:
                raise InvalidSchedule(f"{part}: the step must be a positive number")
            step = int(step_text)
        if spec == "*":
            first, last = low, high
        elif "-" in spec:
            a, _, b = spec.partition("-")
            first, last = _value(a, low, high, names), _value(b, low, high, names)
            if first > last:
                raise InvalidSchedule(f"{part}: the range runs backwards")
        else:
            first = _value(spec, low, high, names)
            # `5/10` counts from 5 to the end of the field; a plain `5` is just 5.
            last = high if step_text else first
        values.update(range(first, last + 1, step))
    return frozenset(values)


def _value(text: str, low: int, high: int, names: dict[str, int] | None) -> int:
    if names and text in names:
        return names[text]
    if not text.isdigit():
        raise InvalidSchedule(
            f"{text!r} is not supported here (allowed: numbers {low}-{high}"
            + (", names" if names else "")
            + ", *, ?, lists, ranges, steps)"
        )
    value = int(text)
    if not low <= value <= high:
        raise InvalidSchedule(f"{value} is outside {low}-{high}")
    return value


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
