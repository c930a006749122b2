"""What the store sends again (crm.store.retry): a failure that says "not now", never one that
is an answer."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from crm.store.retry import CONFLICT, SERVER, THROTTLE, passing_kind


def error(code: str, status: int = 400, reasons: list[str] | None = None) -> ClientError:
    response: dict = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    if reasons is not None:
        response["CancellationReasons"] = [{"Code": r} for r in reasons]
    return ClientError(response, "TransactWriteItems")


@pytest.mark.parametrize(
    ("failure", "kind"),
    [
        (error("TransactionCanceledException", reasons=["None", "TransactionConflict"]), CONFLICT),
        (error("TransactionCanceledException", reasons=["ThrottlingError", "None"]), THROTTLE),
        (error("TransactionConflictException"), CONFLICT),
        (error("ProvisionedThroughputExceededException"), THROTTLE),
        (error("ThrottlingException"), THROTTLE),
        (error("InternalServerError", 500), SERVER),
        (error("ServiceUnavailable", 503), SERVER),
        # Answers, not passing failures:
        (error("TransactionCanceledException", reasons=["ConditionalCheckFailed", "None"]), None),
        (
            error(
                "TransactionCanceledException",
                reasons=["ConditionalCheckFailed", "TransactionConflict"],
            ),
            None,
        ),
        (error("TransactionCanceledException", reasons=["None", "ValidationError"]), None),
        (error("TransactionCanceledException", reasons=["None"]), None),
        (error("ConditionalCheckFailedException"), None),
        (error("ValidationException"), None),
        (error("ResourceNotFoundException"), None),
    ],
)
def test_only_a_failure_that_says_not_now_is_sent_again(failure: ClientError, kind: str | None):
    assert passing_kind(failure) == kind
