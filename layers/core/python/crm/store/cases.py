"""Exception cases: an order that needs a human, the decision, and the task token waiting for
it. A case is opened once per exception workflow (its id comes from the execution) and resolved
once (conditional on being open)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pynamodb.attributes import JSONAttribute, UnicodeAttribute
from pynamodb.exceptions import DoesNotExist, PutError, PynamoDBException, UpdateError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex

from crm.config import get_settings
from crm.domain.errors import Conflict, NotFound, Unavailable
from crm.store.retry import RetryingModel

OPEN, RESOLVED = "open", "resolved"


class CasesByStatus(GlobalSecondaryIndex["CaseModel"]):
    class Meta:
        index_name = "by_status"
        projection = AllProjection()

    status = UnicodeAttribute(hash_key=True)
    opened_at = UnicodeAttribute(range_key=True)


class CaseModel(RetryingModel):
    class Meta:
        table_name = "unbound-cases"
        region = "us-east-1"

    case_id = UnicodeAttribute(hash_key=True)
    order_id = UnicodeAttribute()
    customer_id = UnicodeAttribute(null=True)
    reason = UnicodeAttribute()
    cause = UnicodeAttribute(null=True)
    status = UnicodeAttribute()
    opened_at = UnicodeAttribute()
    attempt = UnicodeAttribute(null=True)
    token = UnicodeAttribute(null=True)  # the workflow step waiting for the decision
    decision = JSONAttribute(null=True)
    resolved_at = UnicodeAttribute(null=True)

    by_status = CasesByStatus()


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
    }


class CaseStore:
    def open(self, case: dict[str, Any]) -> dict[str, Any]:
        """Open the case (once: a repeated step finds it open and returns it)."""
        item = CaseModel(status=OPEN, **case)
        try:
            item.save(condition=CaseModel.case_id.does_not_exist())
        except PutError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise Unavailable("the case could not be opened") from exc
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
            raise Unavailable("the case could not be read") from exc

    def await_decision(self, case_id: str, token: str) -> None:
        try:
            CaseModel(case_id).update(
                actions=[CaseModel.token.set(token)], condition=CaseModel.status == OPEN
            )
        except UpdateError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                raise Conflict(f"case {case_id} is not open", code="case_closed") from exc
            raise Unavailable("the case could not be updated") from exc

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
            raise Unavailable("the case could not be updated") from exc

    def list(
        self, status: str, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        condition = CaseModel.opened_at > cursor if cursor else None
        try:
            page = CaseModel.by_status.query(status, condition, limit=limit)
            items = [case_view(i) for i in page]
        except PynamoDBException as exc:
            raise Unavailable("the cases could not be read") from exc
        more = len(items) == limit and page.last_evaluated_key
        return items, (items[-1]["opened_at"] if more else None)


@lru_cache(maxsize=1)
def get_case_store() -> CaseStore:
    settings = get_settings()
    if CaseModel.Meta.table_name != settings.cases_table:
        CaseModel.Meta.table_name = settings.cases_table
        CaseModel._connection = None
    import os

    CaseModel.Meta.region = os.environ.get("AWS_REGION") or os.environ.get(
        "AWS_DEFAULT_REGION", "us-east-1"
    )
    return CaseStore()


def reset() -> None:
    get_case_store.cache_clear()
    CaseModel._connection = None
    CaseModel.Meta.table_name = "unbound-cases"
