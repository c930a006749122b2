"""Carrier events (`POST /logistics/events`): what a carrier may say, and what the recorded
events mean for an order's fulfilment workflow. Pure.

Carriers batch their callbacks and deliver them in any order, sometimes before our workflow
is ready to hear them. So an event is never "answered" on arrival: it is recorded on the order
(once), and whichever comes second, the event or the workflow step that waits for it, decides
from everything recorded so far (`awaited_outcome`). The answer depends only on the set of
events, never on their arrival order:

- `shipped` is known once any event of the parcel is recorded (`in_transit`, `delivered` and
  `delivery_failed` all imply that it left the warehouse);
- the delivery is decided by the latest of `delivered` and `delivery_failed` by their `at`
  (a tie goes to `delivered`): a failed attempt followed by a delivery is a delivery;
- events recorded during an earlier fulfilment attempt (before an exception's retry) do not
  answer a later attempt's waits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from crm.domain.errors import ValidationFailed

SHIPPED, IN_TRANSIT, DELIVERED, DELIVERY_FAILED = (
    "shipped",
    "in_transit",
    "delivered",
    "delivery_failed",
)
EVENTS = (SHIPPED, IN_TRANSIT, DELIVERED, DELIVERY_FAILED)
# Facts that happen once per parcel: a second report of one is a repeat, whatever its `at`.
ONCE = (SHIPPED, DELIVERED)

# The window an event's `at` must fall in: a carrier's clock may run a little ahead of ours,
# and a callback may be held back for a while, but not for longer than an order takes.
CLOCK_SKEW = timedelta(minutes=5)
MAX_AGE = timedelta(days=30)
# Events kept per order; the oldest `in_transit` scans go first, facts are never dropped.
MAX_EVENTS = 100
MAX_TEXT = 200

# RFC 3339 date-time, ASCII digits only (`\d` would take any Unicode digit).
_RFC3339 = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)


@dataclass(frozen=True)
class CarrierEvent:
    order_id: str
    event: str
    carrier: str | None
    tracking_number: str | None
    at: str  # UTC, ISO 8601 with milliseconds
    received_at: str

    def record(self, attempt: int) -> dict[str, Any]:
        """The event as kept on the order (`fulfilment.tracking_events`)."""
        return {
            "event": self.event,
            "carrier": self.carrier,
            "tracking_number": self.tracking_number,
            "at": self.at,
            "received_at": self.received_at,
            "attempt": attempt,
        }


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def parse_time(value: str) -> datetime | None:
    """An RFC 3339 timestamp with its offset, or None."""
    if not _RFC3339.match(value):
        return None
    text = value[:-1] + "+00:00" if value[-1] in "Zz" else value
    # Python's parser takes at most microseconds: cut nanoseconds to six digits.
    text = re.sub(r"(\.[0-9]{6})[0-9]+", r"\1", text)
    try:
        return datetime.fromisoformat(text.replace("t", "T").replace(" ", "T", 1))
    except ValueError:
        return None


def parse_carrier_event(payload: Any, now: datetime) -> CarrierEvent:
    """Validate a callback's body; every problem is listed at once (422)."""
    if not isinstance(payload, dict):
        raise ValidationFailed(
            "the body must be a JSON object", details=[{"field": "", "issue": "wrong_type"}]
        )
    problems: list[dict[str, Any]] = []
    known = {"order_id", "event", "carrier", "tracking_number", "at"}
    problems += [{"field": k, "issue": "unknown_field"} for k in sorted(set(payload) - known)]
    for name in ("order_id", "event"):
        value = payload.get(name)
        if not isinstance(value, str) or not value.strip():
            problems.append({"field": name, "issue": "missing" if value is None else "wrong_type"})
        elif len(value) > MAX_TEXT:
            problems.append({"field": name, "issue": "too_long"})
    event = payload.get("event")
    if isinstance(event, str) and event.strip() and event not in EVENTS:
        problems.append({"field": "event", "issue": "unknown_value", "allowed": list(EVENTS)})
    for name in ("carrier", "tracking_number"):
        value = payload.get(name)
        if value is not None and not isinstance(value, str):
            problems.append({"field": name, "issue": "wrong_type"})
        elif isinstance(value, str) and len(value) > MAX_TEXT:
            problems.append({"field": name, "issue": "too_long"})
    at = now
    raw_at = payload.get("at")
    if raw_at is not None:
        parsed = parse_time(raw_at) if isinstance(raw_at, str) else None
        if parsed is None:
            problems.append({"field": "at", "issue": "not_rfc3339"})
        elif parsed > now + CLOCK_SKEW:
            problems.append({"field": "at", "issue": "in_the_future"})
        elif parsed < now - MAX_AGE:
            problems.append({"field": "at", "issue": "too_old"})
        else:
            at = parsed
    if problems:
        raise ValidationFailed("the logistics event is not valid", details=problems)
    return CarrierEvent(
        order_id=payload["order_id"].strip(),
        event=payload["event"],
        carrier=(payload.get("carrier") or "").strip() or None,
        tracking_number=(payload.get("tracking_number") or "").strip() or None,
        at=iso(at),
        received_at=iso(now),
    )


def is_repeat(recorded: list[dict[str, Any]], event: CarrierEvent, attempt: int) -> bool:
    """The same report again: the same event at the same time for the same parcel, or a
    once-only fact (shipped, delivered) already known for that parcel. A parcel is its
    tracking number; without one on either side, the current attempt's parcel."""
    for seen in recorded:
        if seen.get("event") != event.event:
            continue
        if seen.get("tracking_number") and event.tracking_number:
            same_parcel = seen["tracking_number"] == event.tracking_number
        else:
            same_parcel = int(seen.get("attempt") or 1) == attempt
        if same_parcel and (event.event in ONCE or seen.get("at") == event.at):
            return True
    return False


def with_event(
    recorded: list[dict[str, Any]], event: CarrierEvent, attempt: int
) -> list[dict[str, Any]]:
    """The recorded events plus this one, oldest `in_transit` scans dropped past the cap."""
    events = [*recorded, event.record(attempt)]
    while len(events) > MAX_EVENTS:
        scans = [i for i, e in enumerate(events) if e.get("event") == IN_TRANSIT]
        failures = [i for i, e in enumerate(events) if e.get("event") == DELIVERY_FAILED]
        drop = (scans or failures or [0])[0]
        del events[drop]
    return events


@dataclass(frozen=True)
class Outcome:
    """What a waiting step is told: succeed with `output`, or fail with `error`."""

    output: dict[str, Any] | None = None
    error: str | None = None
    cause: str = ""


def _of_attempt(recorded: list[dict[str, Any]], attempt: int) -> list[dict[str, Any]]:
    return [e for e in recorded if int(e.get("attempt") or 1) == attempt]


def _delivery(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The deciding delivery report: the latest of delivered / delivery_failed by `at`, a tie
    to delivered."""
    reports = [e for e in events if e.get("event") in (DELIVERED, DELIVERY_FAILED)]
    if not reports:
        return None
    return max(reports, key=lambda e: (str(e.get("at")), e.get("event") == DELIVERED))


def shipment(recorded: list[dict[str, Any]], attempt: int) -> dict[str, Any] | None:
    """When and how the parcel left: the earliest event of this attempt, with the first
    carrier and tracking number any of them named."""
    events = sorted(_of_attempt(recorded, attempt), key=lambda e: str(e.get("at")))
    if not events:
        return None
    first_shipped = next((e for e in events if e.get("event") == SHIPPED), events[0])
    return {
        "carrier": first_shipped.get("carrier")
        or next((e["carrier"] for e in events if e.get("carrier")), None),
        "tracking_number": first_shipped.get("tracking_number")
        or next((e["tracking_number"] for e in events if e.get("tracking_number")), None),
        "at": events[0].get("at"),
    }


def awaited_outcome(
    recorded: list[dict[str, Any]],
    wanted: str,
    attempt: int,
    fulfilled_at: str | None = None,
) -> Outcome | None:
    """What the step waiting for `wanted` (`shipped` or `delivered`) is told now, or None to
    keep waiting. `fulfilled_at`: the platform said the order was fulfilled (delivered)."""
    events = _of_attempt(recorded, attempt)
    decided = _delivery(events)
    if decided is None and fulfilled_at:
        decided = {"event": DELIVERED, "at": fulfilled_at}
    if wanted == SHIPPED:
        if not events and decided is None:
            return None
        shipped = shipment(recorded, attempt) or {"at": fulfilled_at}
        delivered = decided is not None and decided.get("event") == DELIVERED
        return Outcome(
            output={
                "event": DELIVERED if delivered else SHIPPED,
                **shipped,
                **({"delivered_at": decided["at"]} if delivered and decided else {}),
            }
        )
    if decided is None:
        return None
    if decided.get("event") == DELIVERY_FAILED:
        return Outcome(error="DeliveryFailed", cause="the carrier reported the delivery failed")
    return Outcome(output={"event": DELIVERED, "at": decided.get("at")})
