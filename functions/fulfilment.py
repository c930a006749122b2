"""Entry points of fulfilment: parse the trigger, call the service, answer."""

from __future__ import annotations

from typing import Any

from crm.domain.errors import ValidationFailed
from crm.services.fulfilment import STEPS
from crm.services.workflow_steps import check_fault


def fulfilment_step(event: dict[str, Any], context: Any) -> dict[str, Any]:
    step = event.get("step")
    if step not in STEPS:
        raise ValidationFailed(f"unknown fulfilment step {step!r}")
    check_fault("fulfilment", str(step), event.get("order_id"))
    return STEPS[str(step)](event)
