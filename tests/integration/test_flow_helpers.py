"""The e2e helpers that read Step Functions see every execution, not the first page of them."""

from __future__ import annotations

import boto3

from tests.support.flows import Shop


class _Stack:
    """The one part of a running stack `Shop.executions` uses: its AWS clients (here moto's)."""

    def client(self, service: str):
        return boto3.client(service, region_name="us-east-1")


def test_an_order_s_executions_are_found_past_the_first_page(aws) -> None:
    # Given more executions in one machine than a page holds, the order's own among them
    from crm.config import get_settings

    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    machine = get_settings().fulfilment_machine
    names = [f"ord_other_{i}" for i in range(101)]
    names.insert(50, "ord_wanted_1-abc")
    for name in names:
        sfn.start_execution(stateMachineArn=machine, name=name, input="{}")

    # When the helper looks for the order's executions
    found = Shop(None, _Stack()).executions("ord_wanted_1")  # type: ignore[arg-type]

    # Then it finds it, wherever the pages put it, and every other one is seen too
    assert [run["name"] for run in found] == ["ord_wanted_1-abc"]
    assert len(Shop(None, _Stack()).executions("ord_")) == 102  # type: ignore[arg-type]
