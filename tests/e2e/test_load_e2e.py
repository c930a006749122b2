"""The local API under the load real clients bring: hundreds of connections opened at once.

Each client opens its own connection at the same moment (a barrier releases them together), as
a platform's webhook burst or a load balancer's health checks do; every request must be
answered, none reset, none 5xx."""

from __future__ import annotations

import http.client
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
import requests

from tests.e2e.conftest import OPERATOR, RunningStack

pytestmark = pytest.mark.e2e

CLIENTS = 256
REQUESTS_PER_CLIENT = 4
TIMEOUT = 120.0  # per request: a hang fails the test instead of stalling the suite


def _one_client(stack: RunningStack, client: int, start: threading.Barrier) -> list[object]:
    """Open a fresh connection when every client is ready, send a few upserts on it (some of
    the same people as other clients), and return each answer's status or the error."""
    url = urlsplit(stack.api_url)
    start.wait(TIMEOUT)
    outcomes: list[object] = []
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=TIMEOUT)
    try:
        for n in range(REQUESTS_PER_CLIENT):
            body = json.dumps({"email": f"load{(client * 7 + n) % 300:03d}@load.example"})
            try:
                connection.request(
                    "POST",
                    "/customers",
                    body=body,
                    headers={**OPERATOR, "Content-Type": "application/json"},
                )
                answer = connection.getresponse()
                answer.read()
                outcomes.append(answer.status)
            except OSError as error:  # reset by peer, refused, broken pipe, timeout
                outcomes.append(type(error).__name__)
                connection.close()
                connection = http.client.HTTPConnection(url.hostname, url.port, timeout=TIMEOUT)
    finally:
        connection.close()
    return outcomes


def test_256_clients_connecting_at_once_are_all_answered_without_a_reset_or_a_5xx(stack):
    # Given 256 clients that connect at the same instant
    start = threading.Barrier(CLIENTS)
    with ThreadPoolExecutor(CLIENTS) as pool:
        futures = [pool.submit(_one_client, stack, c, start) for c in range(CLIENTS)]
        outcomes = [o for f in futures for o in f.result(timeout=10 * TIMEOUT)]

    # Then every request got an HTTP answer, and none was a server error
    errors = [o for o in outcomes if not isinstance(o, int)]
    assert errors == [], f"{len(errors)} of {len(outcomes)} requests failed: {set(errors)}"
    assert len(outcomes) == CLIENTS * REQUESTS_PER_CLIENT
    assert sorted({o for o in outcomes if isinstance(o, int) and o >= 500}) == []
    assert set(outcomes) <= {200, 201}


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "PROPFIND", "FOO"])
def test_an_unknown_method_is_405_in_the_error_shape(stack, method):
    # When a client uses a method no route has
    answer = requests.request(method, f"{stack.api_url}/customers", headers=OPERATOR, timeout=10)

    # Then it is refused as a method not allowed, naming the allowed ones (RFC 9110), in the
    # contract's error shape, not HTML
    assert answer.status_code == 405
    assert answer.headers["Allow"] == "GET, POST"
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.json()["error"]["code"] == "method_not_allowed"


def test_an_unknown_method_on_an_unknown_path_is_404(stack):
    answer = requests.request("TRACE", f"{stack.api_url}/nowhere", headers=OPERATOR, timeout=10)
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"
