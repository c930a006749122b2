"""Retrying a lost optimistic write (crm.contention): read again after each lost race, a 503
after the last, and anything else straight to the caller."""

from __future__ import annotations

import pytest

from crm import contention
from crm.contention import retry_on_contention
from crm.domain.errors import Conflict, Unavailable


class Lost(Exception):
    pass


@pytest.fixture(autouse=True)
def no_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(contention, "pause", lambda attempt: None)


def test_a_write_that_loses_twice_then_wins_returns_the_third_attempts_answer():
    calls: list[int] = []
    retries: list[int] = []

    def attempt() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise Lost()
        return "saved"

    answer = retry_on_contention(
        attempt, lost=(Lost,), what="the customer", on_retry=lambda: retries.append(1)
    )

    assert answer == "saved"
    assert len(calls) == 3 and len(retries) == 2


@pytest.mark.parametrize(
    ("what", "plural", "message"),
    [
        ("the stock", False, "the stock is being changed by many requests at once; retry"),
        ("the points", True, "the points are being changed by many requests at once; retry"),
    ],
)
def test_after_the_last_lost_attempt_the_caller_is_told_to_retry(what, plural, message):
    calls: list[int] = []

    def attempt() -> None:
        calls.append(1)
        raise Lost()

    with pytest.raises(Unavailable) as refused:
        retry_on_contention(attempt, lost=(Lost,), what=what, attempts=5, plural=plural)

    assert len(calls) == 5
    assert refused.value.message == message


def test_an_answer_that_is_not_a_lost_race_is_not_retried():
    calls: list[int] = []

    def attempt() -> None:
        calls.append(1)
        raise Conflict("taken", code="identity_conflict")

    with pytest.raises(Conflict):
        retry_on_contention(attempt, lost=(Lost,), what="the customer")

    assert len(calls) == 1
