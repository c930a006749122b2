"""What the app asks of Step Functions, seen on its own client through botocore's event hooks
(no patching): each call of the chosen operations with its token or execution name, and,
while `down`, each one failing as an unreachable endpoint would."""

from __future__ import annotations

from typing import Any

ANSWERS = ("SendTaskSuccess", "SendTaskFailure")


class StepFunctionsCalls:
    def __init__(self, *operations: str) -> None:
        from crm.adapters import workflows

        self.calls: list[tuple[str, str]] = []
        self.down = False
        events = workflows._client().meta.events
        for operation in operations or ANSWERS:
            events.register(f"before-parameter-build.sfn.{operation}", self._seen)

    def _seen(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append((model.name, params.get("taskToken") or params.get("name") or ""))
        if self.down:
            raise ConnectionError("Step Functions could not be reached")
