"""The acceptance runs of issues 3 and 4, again, with 5 % of DynamoDB calls failing as AWS's do
(`crm local --chaos 0.05`: transaction conflicts, throttling, 500s before and after the write,
partial batch reads, outages longer than the SDK's retries). The same scenario code as the plain
runs, in a stack of this module's own; clients retry a 503 as a shop platform retries a webhook,
and the exactness must hold after the retries. Each scenario also proves the chaos fired while
it ran.

The day of deliveries runs at half size (150 orders, 500 deliveries): the property (every
delivery exactly once, whatever the order and the repeats) does not depend on the count, and
the plain run keeps the full 1,000 (decision in docs/decisions.md)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from functools import partial

import pytest
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from tests.e2e import test_fulfilment_e2e as fulfilment
from tests.e2e import test_orders_e2e as orders
from tests.e2e.conftest import RunningStack, start_stack
from tests.support.scenarios import plan_day

pytestmark = pytest.mark.e2e

CHAOS = 0.05
SEED = 20261129
CHAOS_ROUTE = "/moto-api/crm/dynamodb-chaos"
KINDS = ("faults", "conflict", "throttle", "internal", "applied", "unprocessed", "outage_attempts")


class ChaosStack(RunningStack):
    """The stack's AWS clients read what the system wrote without meeting the chaos."""

    def client(self, service: str):
        client = super().client(service)
        client.meta.events.register("before-sign.*.*", _spared)
        return client

    def chaos(self) -> dict:
        answer = requests.get(self.aws_url + CHAOS_ROUTE, timeout=10)
        answer.raise_for_status()
        return answer.json()


def _spared(request, **_) -> None:
    request.headers["x-crm-chaos"] = "skip"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosStack]:
    """This module's own stack: 5 % of its DynamoDB data calls fail."""
    log = tmp_path_factory.mktemp("chaos-stack") / "crm-local.log"
    running = start_stack(log, "--chaos", str(CHAOS), "--chaos-seed", str(SEED))
    chaotic = ChaosStack(
        running.process, running.api_url, running.aws_url, running.log_path, running.ready_in
    )
    try:
        yield chaotic
    finally:
        chaotic.stop()


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    """A platform's client: a 503 is sent again after a pause, a few times."""
    session = requests.Session()
    retry = Retry(
        total=8,
        connect=0,
        read=0,
        status=8,
        status_forcelist=[503],
        allowed_methods=None,  # webhooks and operator writes too: a platform retries them
        backoff_factor=0.2,
        raise_on_status=False,
        respect_retry_after_header=True,
    )
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=64, max_retries=retry)
    session.mount("http://", adapter)
    session.retried = 0  # type: ignore[attr-defined]

    def count(response: requests.Response, **_) -> None:
        history = getattr(getattr(response.raw, "retries", None), "history", ())
        session.retried += sum(1 for h in history if h.status == 503)  # type: ignore[attr-defined]

    session.hooks["response"].append(count)
    yield session
    session.close()


def retried_503s(http: requests.Session) -> int:
    return int(getattr(http, "retried", 0))


def run(scenario: Callable[..., None], request: pytest.FixtureRequest) -> None:
    """A scenario of the plain runs, with this module's fixtures (its stack, its client)."""
    wants = inspect.signature(scenario).parameters
    scenario(**{p: request.getfixturevalue(p) for p in wants if wants[p].default is inspect._empty})


def fired(stack: ChaosStack, before: dict, name: str, http: requests.Session) -> dict[str, int]:
    after = stack.chaos()
    assert after["rate"] == CHAOS and after["seed"] == SEED
    counts = {k: after[k] - before[k] for k in ("calls", *KINDS)}
    print(f"{name}: {counts}, {retried_503s(http)} 503s retried so far")
    # About 5 % of the calls the scenario made failed (outages fail every attempt of a call).
    assert 0.01 * counts["calls"] <= counts["faults"] <= 0.12 * counts["calls"], counts
    return counts


def test_a_days_deliveries_with_5_percent_of_dynamodb_calls_failing(
    stack: ChaosStack, http: requests.Session, request: pytest.FixtureRequest
) -> None:
    before = stack.chaos()
    run(
        partial(
            orders.test_a_days_deliveries_leave_exactly_the_right_orders_and_points,
            day=plan_day(scale=0.5),
        ),
        request,
    )
    counts = fired(stack, before, "a day of deliveries", http)
    # Every kind of failure met the code: conflicts (botocore leaves them to it), throttles and
    # 500s, partial batches, and answers lost after the write or outages longer than
    # botocore's retries (the rarest two, together: dozens expected, never none).
    assert all(counts[k] > 0 for k in ("conflict", "throttle", "internal", "unprocessed")), counts
    assert counts["applied"] + counts["outage_attempts"] > 0, counts


SMALL = {
    "50 concurrent redemptions": (
        orders.test_fifty_concurrent_redemptions_over_http_make_exactly_ten_coupons
    ),
    "20 orders for 5 units": fulfilment.test_twenty_orders_race_for_five_units,
    "concurrent refunds": (
        fulfilment.test_refunds_full_by_lines_by_amount_and_never_above_what_was_paid
    ),
}


def test_redemptions_stock_and_refunds_with_5_percent_of_dynamodb_calls_failing(
    stack: ChaosStack, http: requests.Session, request: pytest.FixtureRequest
) -> None:
    """The three smaller acceptance runs one after the other, checked together for faults
    (each alone makes too few calls to be sure that 5 % of them meets one; together they are)."""
    before = stack.chaos()
    for scenario in SMALL.values():
        run(scenario, request)
    fired(stack, before, "redemptions, stock and refunds", http)  # ~35 faults of ~700 calls
