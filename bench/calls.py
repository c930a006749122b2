"""The instrument of `aws_calls`: counts every AWS API call made by any botocore client.

boto3 and PynamoDB both build their clients with `botocore.session.Session.create_client`
(PynamoDB through its own per-thread `botocore.session.get_session()`), so wrapping that one
method at class level sees every client created while the counter is installed. Each new
client gets handlers on its own `meta.events`:

- `before-call.*.*`  one per API call as the code asked for it (what is counted as "calls");
- `before-send.*.*`  one per HTTP attempt, retries included ("sends");
- `after-call.*.*` / `after-call-error.*.*`  close the timer opened by `before-call`, so the
  time spent inside AWS calls (serialising, the endpoint or moto, parsing) is known too.

Clients created before `install()` are not seen: install the counter first.
"""

from __future__ import annotations

import functools
import itertools
import time
import weakref
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import botocore.session

_ids = itertools.count()


@dataclass
class Tally:
    """What happened during one measured block."""

    calls: Counter[str] = field(default_factory=Counter)
    sends: Counter[str] = field(default_factory=Counter)
    aws_seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    def breakdown(self) -> dict[str, int]:
        return dict(sorted(self.calls.items()))

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.total,
            "by_operation": self.breakdown(),
            "http_sends": sum(self.sends.values()),
        }


class CallCounter:
    """Count AWS API calls by `service.Operation` (e.g. `dynamodb.BatchGetItem`).

    Use as a context manager (install on enter, uninstall on exit) and `measure()` blocks:

        with CallCounter() as counter:
            with counter.measure() as tally:
                ...
            tally.total, tally.breakdown()
    """

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.sends: Counter[str] = Counter()
        self.aws_seconds = 0.0
        self.clients_seen = 0
        self._uid = f"bench-call-counter-{next(_ids)}"
        self._original: Any = None
        self._emitters: list[weakref.ref[Any]] = []
        self._open: list[float] = []

    # -- install -------------------------------------------------------------------------------

    def install(self) -> CallCounter:
        if self._original is not None:
            raise RuntimeError("this counter is already installed")
        original = botocore.session.Session.create_client
        counter = self

        @functools.wraps(original)
        def create_client(session: Any, *args: Any, **kwargs: Any) -> Any:
            client = original(session, *args, **kwargs)
            counter.attach(client)
            return client

        self._original = original
        botocore.session.Session.create_client = create_client  # type: ignore[method-assign]
        return self

    def uninstall(self) -> None:
        if self._original is None:
            return
        botocore.session.Session.create_client = self._original  # type: ignore[method-assign]
        self._original = None
        for ref in self._emitters:
            events = ref()
            if events is None:
                continue
            for event, suffix, handler in self._handlers():
                events.unregister(event, handler, unique_id=self._uid + suffix)
        self._emitters.clear()

    def attach(self, client: Any) -> None:
        """Count the calls of `client` (done for every client created while installed)."""
        events = client.meta.events
        for event, suffix, handler in self._handlers():
            events.register(event, handler, unique_id=self._uid + suffix)
        self._emitters.append(weakref.ref(events))
        self.clients_seen += 1

    def _handlers(self) -> list[tuple[str, str, Any]]:
        return [
            ("before-call.*.*", "-before-call", self._on_before_call),
            ("before-send.*.*", "-before-send", self._on_before_send),
            ("after-call.*.*", "-after-call", self._on_after_call),
            ("after-call-error.*.*", "-after-call-error", self._on_after_call),
        ]

    def __enter__(self) -> CallCounter:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.uninstall()

    # -- handlers ------------------------------------------------------------------------------

    @staticmethod
    def _name(event_name: str, model: Any = None) -> str:
        # event_name is e.g. "before-call.dynamodb.BatchGetItem"
        parts = event_name.split(".")
        service = parts[1] if len(parts) > 1 else "?"
        operation = getattr(model, "name", None) or (parts[2] if len(parts) > 2 else "?")
        return f"{service}.{operation}"

    def _on_before_call(self, event_name: str, model: Any = None, **_: Any) -> None:
        self.calls[self._name(event_name, model)] += 1
        self._open.append(time.perf_counter())

    def _on_before_send(self, event_name: str, **_: Any) -> None:
        self.sends[self._name(event_name)] += 1

    def _on_after_call(self, **_: Any) -> None:
        if self._open:
            self.aws_seconds += time.perf_counter() - self._open.pop()

    # -- reading -------------------------------------------------------------------------------

    def reset(self) -> None:
        self.calls.clear()
        self.sends.clear()
        self.aws_seconds = 0.0

    def snapshot(self) -> Tally:
        return Tally(Counter(self.calls), Counter(self.sends), self.aws_seconds)

    @contextmanager
    def measure(self) -> Iterator[Tally]:
        """A Tally filled, on exit, with what happened inside the block."""
        before = self.snapshot()
        tally = Tally()
        try:
            yield tally
        finally:
            tally.calls = self.calls - before.calls
            tally.sends = self.sends - before.sends
            tally.aws_seconds = self.aws_seconds - before.aws_seconds
