"""DynamoDB's refusals told apart from outages (`crm.store.errors`), by codes only."""

from __future__ import annotations

from dataclasses import dataclass

from crm.domain.errors import StoreLimitExceeded, Unavailable
from crm.store.errors import refused_as_invalid, store_error


@dataclass
class Reason:
    code: str | None


class PynamoError(Exception):
    def __init__(self, code: str | None, reasons: list[Reason | None] | None = None) -> None:
        super().__init__("message text is never read")
        self.cause_response_code = code
        self.cancellation_reasons = reasons or []


class ClientError(Exception):
    def __init__(self, code: str) -> None:
        super().__init__("message text is never read")
        self.response = {"Error": {"Code": code}}


def test_validation_exceptions_and_validation_reasons_are_refusals():
    assert refused_as_invalid(PynamoError("ValidationException"))
    assert refused_as_invalid(ClientError("ValidationException"))
    reasons = [None, Reason("ValidationError"), Reason("None")]
    assert refused_as_invalid(PynamoError("TransactionCanceledException", reasons))


def test_throttling_conflicts_and_server_errors_are_not():
    for code in (
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "InternalServerError",
        "RequestLimitExceeded",
    ):
        assert not refused_as_invalid(PynamoError(code))
    conflict = [Reason("TransactionConflict"), Reason("ConditionalCheckFailed")]
    assert not refused_as_invalid(PynamoError("TransactionCanceledException", conflict))
    assert not refused_as_invalid(None)


def test_a_refusal_is_found_through_the_errors_it_caused():
    try:
        try:
            raise ClientError("ValidationException")
        except ClientError as inner:
            raise Unavailable("the order store did not accept the write") from inner
    except Unavailable as outer:
        assert refused_as_invalid(outer)


def test_store_error_is_422_content_or_503_unavailable():
    assert isinstance(store_error(ClientError("ValidationException"), "x"), StoreLimitExceeded)
    unavailable = store_error(ClientError("ThrottlingException"), "the ledger could not be read")
    assert type(unavailable) is Unavailable and unavailable.message.startswith("the ledger")
