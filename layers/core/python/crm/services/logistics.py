"""Carrier callbacks: `POST /logistics/events`, signed like the generic webhook with the
carrier's own secret (`logistics_secret`).

A valid event is accepted whenever it arrives: it is recorded on the order once, and the
fulfilment workflow's waiting step is answered as soon as the recorded events decide it,
whichever of the two comes first (crm.domain.carrier_events, decision 39). The same event again
is 200 with no effect. An event for an order that is already finished is recorded (the order's
history should show what the carrier said) and changes nothing else.
"""

from __future__ import annotations

from crm.domain import carrier_events
from crm.domain.carrier_events import CarrierEvent
from crm.domain.orders import Order
from crm.observability import logger, metrics
from crm.services.orders import answer_due, change_order, find_order

MAX_BYTES = 64 * 1024


class Recorded:
    def __init__(self, order: Order, new: bool) -> None:
        self.order, self.new = order, new


def record_carrier_event(event: CarrierEvent) -> Recorded:
    """Record the event on the order it names (once), then answer the waiting step if it is
    due. A repeat answers too: if the first delivery was recorded but Step Functions could not
    be reached, the carrier's retry finishes the job. The order is read once: the write is at
    the version found (read again only after a lost race)."""
    found = find_order(event.order_id)
    outcome = {"new": False}

    def add(order: Order) -> Order | None:
        recorded = list(order.fulfilment.get("tracking_events") or [])
        attempt = int(order.workflow.get("attempt") or 1)
        if carrier_events.is_repeat(recorded, event, attempt):
            outcome["new"] = False
            return None
        outcome["new"] = True
        events = carrier_events.with_event(recorded, event, attempt)
        order.fulfilment = {**order.fulfilment, "tracking_events": events}
        shipment = carrier_events.shipment(events, attempt)
        if order.fulfilment.get("shipped_at") and shipment:
            # Already recorded as shipped from what had arrived then: an earlier report that
            # arrives late moves the time back, so every order of arrival ends the same.
            order.fulfilment = {
                **order.fulfilment,
                "shipped_at": min(order.fulfilment["shipped_at"], str(shipment["at"])),
                "carrier": order.fulfilment.get("carrier") or shipment.get("carrier"),
                "tracking_number": order.fulfilment.get("tracking_number")
                or shipment.get("tracking_number"),
            }
        return order

    order = change_order(found.order_id, add, order=found)
    if outcome["new"]:
        metrics.add_metric(name="CarrierEvents", unit="Count", value=1)
        logger.info(
            "carrier event recorded",
            extra={"order_id": order.order_id, "event": event.event, "status": order.status},
        )
    answer_due(order, strict=True)
    return Recorded(order, outcome["new"])
