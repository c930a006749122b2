"""A refund's goods back in stock, and what happens when that fails (decision 42).

The refund workflow's `stock` step puts the goods back (`put_back`): restocked when they had
shipped and the refund says so, the reservation released when nothing shipped and nothing is
left to ship. When that step fails for good, the money is already back with the customer, so
the refund stays as it is, but the stock is wrong and somebody must know: `report_failure`
marks the refund's `restock_status` "failed", opens a `restock_failed` case naming the order,
the refund and the SKUs (one per refund: its id comes from the refund), and tells operations on
the ops topic (ids and SKUs only), once however often the step is retried. The case's only
action is `retry` (`retry_from_case`): put the goods back now, mark the refund "restocked",
resolve the case.

Shared by the refund workflow's steps (crm/services/refunds.py) and the case decisions
(crm/services/cases.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any

from crm.adapters import ops
from crm.clock import now_iso
from crm.domain.errors import Conflict, NotFound, Unavailable
from crm.domain.order_events import Refund
from crm.domain.orders import DELIVERED, SHIPPED, Order
from crm.observability import logger
from crm.services import inventory
from crm.services.orders import change_order
from crm.store.cases import get_case_store
from crm.store.inventory import RESERVED, get_inventory_store
from crm.store.orders import get_order_store

RESTOCK_FAILED = "restock_failed"  # the case's reason, and the workflow's outcome
FAILED, RESTOCKED = "failed", "restocked"  # the refund's `restock_status`


@dataclass(frozen=True)
class StockPlan:
    """What the refund's stock step does: "restock" `lines` (sku, quantity) of a shipped
    order, or "release" what an order that never shipped holds."""

    action: str
    skus: tuple[str, ...]
    lines: tuple[tuple[str, int], ...] = ()


def plan_for(order: Order, refund: Refund) -> StockPlan | None:
    """The stock the refund puts back; None when it puts none back."""
    shipped = order.progress == SHIPPED or order.status == DELIVERED or order.fulfilled_at
    if shipped and refund.restock:
        lines = tuple((line.sku, line.quantity) for line in refund.lines if line.sku)
        if not lines:  # a refund by amount: nothing to put back
            return None
        return StockPlan("restock", tuple(dict.fromkeys(sku for sku, _ in lines)), lines)
    if not shipped and (order.cancelled_at or order.refundable == 0):
        return StockPlan("release", tuple(dict.fromkeys(line.sku for line in order.lines)))
    return None


def put_back(order: Order, refund: Refund) -> dict[str, Any]:
    """Do the plan (each action is idempotent: by the refund id, or by what the order holds)."""
    plan = plan_for(order, refund)
    if plan is None:
        return {"stock": "unchanged"}
    if plan.action == "restock":
        return inventory.restock_order(order.order_id, refund.refund_id, list(plan.lines))
    return inventory.release_order(order.order_id)


def still_to_put_back(order: Order, refund: Refund, plan: StockPlan) -> bool:
    """Whether the plan is still undone (a failed step may have failed after its write, or a
    cancellation may have released the order's stock already)."""
    held = get_inventory_store().order_stock(order.order_id)
    if plan.action == "restock":
        return refund.refund_id not in held.restocks
    return any(r.state == RESERVED for r in held.reservations)


def case_id_for(order_id: str, refund_id: str) -> str:
    """One case per refund, whatever the ids' length or characters."""
    digest = hashlib.sha256(f"{order_id}\n{refund_id}".encode()).hexdigest()[:24]
    return f"restock-{digest}"


def report_failure(order: Order, refund: Refund, error: Any) -> dict[str, Any]:
    """The stock step failed for good: the refund says so, a case is open, operations know.
    Safe to run again: the mark, the case and the alert each happen once."""
    plan = plan_for(order, refund)
    if plan is None or not still_to_put_back(order, refund, plan):
        return {"outcome": "stock_unchanged"}
    _set_restock_status(order.order_id, refund.refund_id, FAILED)
    store = get_case_store()
    case = store.open(
        {
            "case_id": case_id_for(order.order_id, refund.refund_id),
            "order_id": order.order_id,
            "customer_id": order.customer_id,
            "reason": RESTOCK_FAILED,
            "cause": _cause(error),
            "opened_at": now_iso(),
            "refund_id": refund.refund_id,
            "skus": list(plan.skus),
        }
    )
    if not case.get("alerted_at"):
        # Published before the mark: a crash between the two repeats the alert (it names the
        # case), it never loses it.
        ops.publish(
            f"Restock failed: order {order.order_id}",
            {
                "type": RESTOCK_FAILED,
                "case_id": case["case_id"],
                "order_id": order.order_id,
                "refund_id": refund.refund_id,
                "skus": list(plan.skus),
                "action": plan.action,
            },
        )
        store.mark_alerted(case["case_id"], now_iso())
    logger.warning(
        "restock failed; case opened",
        extra={"order_id": order.order_id, "refund_id": refund.refund_id, "case": case["case_id"]},
    )
    return {"outcome": RESTOCK_FAILED, "case_id": case["case_id"]}


def retry_from_case(case: dict[str, Any], note: str) -> dict[str, Any]:
    """The operator's `retry` of a `restock_failed` case: the stock put back now (the same
    idempotent action the workflow's step takes), the refund marked "restocked", the case
    resolved. The case stays open when the stock cannot be changed (`Unavailable`)."""
    order = get_order_store().get(str(case["order_id"]))
    refund = next(
        (r for r in (order.refunds if order else []) if r.refund_id == case["refund_id"]), None
    )
    if order is None or refund is None:
        raise NotFound(f"the refund of case {case['case_id']} no longer exists")
    result = put_back(order, refund)
    _set_restock_status(order.order_id, refund.refund_id, RESTOCKED)
    stock = {k: v for k, v in result.items() if k in ("restocked", "not_restocked", "released")}
    decision = {"action": "retry", "note": note, "by": "operator", "stock": stock}
    store = get_case_store()
    if not store.resolve(str(case["case_id"]), decision, now_iso()):
        raise Conflict(f"case {case['case_id']} is already resolved", code="case_closed")
    logger.info("restock retried", extra={"order_id": order.order_id, "case": case["case_id"]})
    return store.get(str(case["case_id"]))


def _set_restock_status(order_id: str, refund_id: str, status: str) -> None:
    def mark(order: Order) -> Order | None:
        for index, refund in enumerate(order.refunds):
            if refund.refund_id == refund_id:
                if refund.restock_status == status:
                    return None
                order.refunds[index] = replace(refund, restock_status=status)
                return order
        raise Unavailable(f"order {order_id} has no refund {refund_id} yet")

    change_order(order_id, mark)


def _cause(error: Any) -> str:
    """The step's error as Step Functions caught it: its name and message, short."""
    if not isinstance(error, dict):
        return "unknown"
    return f"{error.get('Error') or 'unknown'}: {error.get('Cause') or ''}"[:300]
