"""Exception cases: an order that needs a human, the decision, and the task token waiting for
it. A case is opened once per exception workflow (its id comes from the execution) and resolved
once (conditional on being open). A refund whose stock could not be put back opens a case too
(`restock_failed`, naming the refund and its SKUs; its id comes from the refund), and its alert
to operations is marked sent once (`mark_alerted`)."""

from __future__ import annotations

import builtins
from functools import lru_cache
from typing import Any

from pynamodb.exceptions import DoesNotExist, PutError, PynamoDBException, UpdateError

from crm.config import get_settings
from crm.domain import cursors
from crm.domain.errors import Conflict, NotFound
from crm.store import retry
from crm.store.errors import store_error
from crm.store.models import CaseModel, bind_models

OPEN, RESOLVED = "open", "resolved"
# Free texts a decision may carry (an operator's note); erasure removes them.
DECISION_TEXTS = ("note", "text")


def case_view(item: CaseModel) -> dict[str, Any]:
    return {
        "case_id": item.case_id,
        "order_id": item.order_id,
        "customer_id": item.customer_id,
        "reason": item.reason,
        "cause": item.cause,
        "status": item.status,
        "opened_at": item.opened_at,
        "awaiting_decision": bool(item.token) and item.status == OPEN,
        "decision": item.decision,
        "resolved_at": item.resolved_at,
        "refund_id": item.refund_id,
        "skus": list(item.skus or []),
        "alerted_at": item.alerted_at,
    }


class CaseStore:
    def open(self, case: dict[str, Any]) -> dict[str, Any]:
        """Open the case (once: a repeated step finds it open and returns it)."""
        item = CaseModel(status=OPEN, **case)
        try:
            item.save(condition=CaseModel.case_id.does_not_exist())
        except PutError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise store_error(exc, "the case could not be opened") from exc
            return self.get(case["case_id"])
        return case_view(item)

    def get(self, case_id: str) -> dict[str, Any]:
        return case_view(self._item(case_id))

    def token_of(self, case_id: str) -> str | None:
        return self._item(case_id).token

    def _item(self, case_id: str) -> CaseModel:
        try:
            return CaseModel.get(case_id, consistent_read=True)
        except DoesNotExist:
            raise NotFound(f"case {case_id} does not exist") from None
        except PynamoDBException as exc:
            raise store_error(exc, "the case could not be read") from exc

    def await_decision(self, case_id: str, token: str) -> None:
        try:
            CaseModel(case_id).update(
                actions=[CaseModel.token.set(token)], condition=CaseModel.status == OPEN
            )
        except UpdateError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                raise Conflict(f"case {case_id} is not open", code="case_closed") from exc
            raise store_error(exc, "the case could not be updated") from exc

    def mark_alerted(self, case_id: str, now: str) -> bool:
        """Record that operations were told of the case; False when it was already recorded
        (a retried step must not tell them twice)."""
        try:
            CaseModel(case_id).update(
                actions=[CaseModel.alerted_at.set(now)],
                condition=CaseModel.case_id.exists() & CaseModel.alerted_at.does_not_exist(),
            )
            return True
        except UpdateError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                return False
            raise store_error(exc, "the case could not be updated") from exc

    def resolve(self, case_id: str, decision: dict[str, Any], now: str) -> bool:
        """Record the decision; False when the case was already resolved (by this decision,
        on a retried step, or by another)."""
        try:
            CaseModel(case_id).update(
                actions=[
                    CaseModel.status.set(RESOLVED),
                    CaseModel.decision.set(decision),
                    CaseModel.resolved_at.set(now),
                    CaseModel.token.remove(),
                ],
                condition=CaseModel.status == OPEN,
            )
            return True
        except UpdateError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                return False
            raise store_error(exc, "the case could not be updated") from exc

    def list(
        self, status: str, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Oldest first; `cursor` is the full key of the previous page's last case (two cases
        opened in the same millisecond are both listed)."""
        start = None
        if cursor:
            opened_at, case_id = cursors.decode(cursor, 2)
            start = {
                "case_id": {"S": case_id},
                "status": {"S": status},
                "opened_at": {"S": opened_at},
            }
        try:
            page = CaseModel.by_status.query(status, limit=limit, last_evaluated_key=start)
            items = [case_view(i) for i in page]
        except PynamoDBException as exc:
            raise store_error(exc, "the cases could not be read") from exc
        more = len(items) == limit and page.last_evaluated_key
        last = items[-1] if more else None
        return items, (cursors.encode(last["opened_at"], last["case_id"]) if last else None)

    def for_customer(self, customer_id: str) -> builtins.list[dict[str, Any]]:
        """Every case of the customer, oldest first (the export of what is held)."""
        try:
            return [case_view(i) for i in CaseModel.by_customer.query(customer_id)]
        except PynamoDBException as exc:
            raise store_error(exc, "the cases could not be read") from exc

    def move_customer(self, source_id: str, target_id: str) -> int:
        """A merge: the source's cases name the target (each only while it still names the
        source, so a retried merge finishes an interrupted one). How many moved."""
        moved = 0
        try:
            for item in CaseModel.by_customer.query(source_id):
                try:
                    CaseModel(item.case_id).update(
                        actions=[CaseModel.customer_id.set(target_id)],
                        condition=CaseModel.customer_id == source_id,
                    )
                except UpdateError as exc:
                    if exc.cause_response_code != "ConditionalCheckFailedException":
                        raise
                    continue
                moved += 1
        except PynamoDBException as exc:
            raise store_error(exc, "the cases could not be moved") from exc
        return moved

    def forget_customer(self, customer_id: str, now: str) -> int:
        """Erasure: every case of the customer keeps its facts (order, reason, status, the
        decision's action) but loses its free texts (the cause, the decision's note), which
        may name, reach or locate the person. Returns how many cases were changed; a case
        already forgotten is left alone, so a repeated erasure changes nothing."""
        forgotten = 0
        try:
            for item in CaseModel.by_customer.query(customer_id):
                decision = dict(item.decision or {})
                texts = [k for k in DECISION_TEXTS if k in decision]
                if item.cause is None and not texts:
                    continue
                for key in texts:
                    decision.pop(key)
                CaseModel(item.case_id).update(
                    actions=[
                        CaseModel.cause.remove(),
                        CaseModel.decision.set(decision)
                        if decision
                        else CaseModel.decision.remove(),
                        CaseModel.erased_at.set(now),
                    ],
                    condition=CaseModel.case_id.exists(),
                )
                forgotten += 1
        except PynamoDBException as exc:
            raise store_error(exc, "the cases could not be forgotten") from exc
        return forgotten


@lru_cache(maxsize=1)
def get_case_store() -> CaseStore:
    bind_models(get_settings())
    return CaseStore()


def reset() -> None:
    retry.reset()  # connections forgotten: their shared client too (a new endpoint, a test)
    get_case_store.cache_clear()
    CaseModel._connection = None
