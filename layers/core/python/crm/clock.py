"""The one clock: every timestamp the CRM writes comes from here, in one format (UTC, RFC 3339,
milliseconds), so that stored times sort and compare as text. Tests that need another time pass
it in; nothing reads the clock anywhere else."""

from __future__ import annotations

from datetime import UTC, date, datetime


def now() -> datetime:
    return datetime.now(UTC)


def now_iso() -> str:
    return now().isoformat(timespec="milliseconds")


def today() -> date:
    """Today in UTC (what a birthday in the future is measured against)."""
    return now().date()


def today_in(timezone: str) -> date:
    """Today's calendar date where the shop is (its reports and segments count its days)."""
    from zoneinfo import ZoneInfo

    return now().astimezone(ZoneInfo(timezone)).date()
