"""Entry points of fulfilment: parse the trigger, call the service, answer."""

from __future__ import annotations

from typing import Any

from crm.services.fulfilment import STEPS
from crm.services.workflow_steps import run_step


def fulfilment_step(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return run_step("fulfilment", STEPS, event)
