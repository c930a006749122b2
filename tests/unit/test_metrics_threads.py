"""The functions' Metrics under threads (the local stack serves requests and runs asynchronous
invocations on threads of one process): requests adding and flushing metrics at once never
fail, and no metric is lost. Powertools' own provider, shared the same way, raised "Must
contain at least one metric" when one flush emptied the set between another's check and its
serialising: a 500 to a webhook one time in a thousand. Under this test's load it failed 9
runs in 10 (Powertools 3.37, when this was written); that comparison is not kept as a test,
as a later Powertools may well fix its side."""

from __future__ import annotations

import contextlib
import io
import json
from concurrent.futures import ThreadPoolExecutor

from crm.observability import _LockedEMFProvider

REQUESTS = 4000


def requests_at_once(provider_class: type) -> tuple[list[BaseException], int]:
    """Threads that each add one metric and flush, as a request handler does; the errors
    they raised and the metrics printed."""
    shared: dict = {}
    provider = provider_class(namespace="ShopCRM", service="crm", metric_set=shared)

    def request(_: int) -> BaseException | None:
        try:
            provider.add_metric(name="OrderWebhooks", unit="Count", value=1)
            provider.flush_metrics()
        except BaseException as exc:
            return exc
        return None

    out = io.StringIO()
    with contextlib.redirect_stdout(out), ThreadPoolExecutor(16) as pool:
        errors = [e for e in pool.map(request, range(REQUESTS)) if e is not None]
    printed = sum(
        len(json.loads(line).get("OrderWebhooks", []))
        for line in out.getvalue().splitlines()
        if line.startswith("{")
    )
    return errors, printed


def test_requests_flushing_at_once_never_fail_and_lose_nothing(monkeypatch) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")

    errors, printed = requests_at_once(_LockedEMFProvider)

    assert errors == []
    assert printed == REQUESTS
