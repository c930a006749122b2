"""The workflows' definitions, checked before any endpoint sees them: they render for
every stage, every Task retries transient errors and catches the rest, error names are ours
(never `States.` ones we invent), every transition lands on a state, and every step a Task
names exists in the Python module that runs it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from crm_local.provision import render_definition, substitutions
from infra.resources import STAGE_SETTINGS, STATE_MACHINES

# Error names Step Functions itself defines; a definition may match these and nothing else
# that starts with "States.".
PREDEFINED = {
    "States.ALL",
    "States.Timeout",
    "States.TaskFailed",
    "States.Permissions",
    "States.HeartbeatTimeout",
    "States.DataLimitExceeded",
    "States.Runtime",
}
STEPS_OF = {
    "function:fulfilment_step": ("functions.fulfilment", "STEPS"),
    "function:exception_step": ("functions.cases", "STEPS"),
    "function:refund_step": ("functions.refunds", "STEPS"),
    "function:import_step": ("functions.imports", "STEPS"),
}


def rendered(machine: Any, stage: str) -> dict[str, Any]:
    env = {machine.env_var: "machine", "CRM_OPS_TOPIC": "ops"}
    values = substitutions(
        machine.substitutions,
        env,
        lambda name: f"arn:aws:lambda:us-east-1:123456789012:function:{name}",
        STAGE_SETTINGS[stage],
    )
    return json.loads(render_definition(machine.definition_path(), values))


def states_of(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = dict(definition["States"])
    for state in definition["States"].values():
        for branch in state.get("Branches", []):
            found.update(states_of(branch))
        if "Iterator" in state:
            found.update(states_of(state["Iterator"]))
    return found


MACHINES = [pytest.param(m, id=m.definition_file) for m in STATE_MACHINES]


def test_the_workflows_are_declared() -> None:
    assert {m.definition_file for m in STATE_MACHINES} == {
        "order_fulfilment.asl.json",
        "order_exception.asl.json",
        "refund.asl.json",
        "file_import.asl.json",
    }


@pytest.mark.parametrize("machine", MACHINES)
@pytest.mark.parametrize("stage", sorted(STAGE_SETTINGS))
def test_it_renders_for_every_stage_with_numbers_where_numbers_go(machine, stage) -> None:
    definition = rendered(machine, stage)
    for state in states_of(definition).values():
        if "TimeoutSeconds" in state:
            assert isinstance(state["TimeoutSeconds"], int) and state["TimeoutSeconds"] > 0
        for retry in state.get("Retry", []):
            assert isinstance(retry["IntervalSeconds"], int)


@pytest.mark.parametrize("machine", MACHINES)
def test_every_task_retries_and_catches(machine) -> None:
    for name, state in states_of(rendered(machine, "local")).items():
        if state["Type"] == "Task":
            assert state.get("Retry"), f"{name} has no Retry"
            assert state.get("Catch"), f"{name} has no Catch"
            caught = {e for c in state["Catch"] for e in c["ErrorEquals"]}
            assert "States.ALL" in caught, f"{name} lets some error end the execution"


@pytest.mark.parametrize("machine", MACHINES)
def test_error_names_are_ours_or_predefined(machine) -> None:
    for name, state in states_of(rendered(machine, "local")).items():
        for rule in [*state.get("Retry", []), *state.get("Catch", [])]:
            for error in rule["ErrorEquals"]:
                if error.startswith("States."):
                    assert error in PREDEFINED, f"{name}: invented error name {error}"
        if state["Type"] == "Fail":
            assert not state["Error"].startswith("States."), name


@pytest.mark.parametrize("machine", MACHINES)
def test_every_transition_lands_on_a_state_and_every_state_is_reachable(machine) -> None:
    definition = rendered(machine, "local")
    states = definition["States"]
    targets = {definition["StartAt"]}
    for state in states.values():
        targets.update(t for t in [state.get("Next"), state.get("Default")] if t)
        targets.update(c["Next"] for c in state.get("Choices", []))
        targets.update(c["Next"] for c in state.get("Catch", []))
        if state["Type"] not in ("Succeed", "Fail", "Choice"):
            assert state.get("End") or state.get("Next")
    assert targets <= set(states), targets - set(states)
    assert set(states) <= targets, set(states) - targets


@pytest.mark.parametrize("machine", MACHINES)
def test_every_step_a_task_names_exists_in_its_module(machine) -> None:
    import importlib

    function_ref = machine.substitutions["StepFunction"]
    module_name, attr = STEPS_OF[function_ref]
    steps = getattr(importlib.import_module(module_name), attr)
    for name, state in states_of(rendered(machine, "local")).items():
        if state["Type"] != "Task":
            continue
        params = state["Parameters"].get("Payload", state["Parameters"])
        assert params["step"] in steps, f"{name} names step {params['step']!r}"


def test_an_unresolved_substitution_is_refused(tmp_path) -> None:
    broken = tmp_path / "x.asl.json"
    broken.write_text('{"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "${Nope}"}}}')
    with pytest.raises(ValueError, match="Nope"):
        render_definition(broken, {})


@pytest.mark.parametrize("machine", MACHINES)
@pytest.mark.parametrize("stage", sorted(STAGE_SETTINGS))
def test_the_endpoints_asl_parser_accepts_it(machine, stage) -> None:
    # The same parser that executes the workflows in the local stack (moto's, from LocalStack).
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    program, _ = AmazonStateLanguageParser.parse(json.dumps(rendered(machine, stage)))
    assert program is not None


def test_the_endpoints_asl_parser_refuses_a_broken_definition() -> None:
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    with pytest.raises(Exception):  # noqa: B017 - the parser's own error types vary
        AmazonStateLanguageParser.parse('{"StartAt": "A", "States": {"A": {"Type": "Nope"}}}')


def test_a_delivery_report_is_final_only_after_the_recheck_window() -> None:
    # Given the fulfilment workflow as the local stage renders it
    fulfilment = next(m for m in STATE_MACHINES if m.logical_id == "OrderFulfilment")
    states = rendered(fulfilment, "local")["States"]

    # Then the only way to MarkDelivered is RecheckDelivery, after the ConfirmDelivery wait
    into_mark = {
        name
        for name, state in states.items()
        if "MarkDelivered"
        in [
            state.get("Next"),
            *(c["Next"] for c in [*state.get("Choices", []), *state.get("Catch", [])]),
        ]
    }
    assert into_mark == {"RecheckDelivery"}
    assert states["RecheckDelivery"]["Parameters"]["step"] == "recheck_delivery"
    assert states["ConfirmDelivery"]["Type"] == "Wait"
    assert states["ConfirmDelivery"]["Seconds"] == STAGE_SETTINGS["local"]["delivery_recheck"]
    assert states["ConfirmDelivery"]["Next"] == "RecheckDelivery"
    # And both answers of the delivery wait go through it: a delivery, and a failed delivery
    # (which a later delivery by `at` may still overturn)
    await_delivery = states["AwaitDelivery"]
    assert await_delivery["Next"] == "ConfirmDelivery"
    failed = [c for c in await_delivery["Catch"] if c["ErrorEquals"] == ["DeliveryFailed"]]
    assert [(c["Next"], c["ResultPath"]) for c in failed] == [("ConfirmDelivery", "$.error")]
