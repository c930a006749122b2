"""Shared fixtures: the stage's environment, moto in-process provisioned from `infra/`, and
Chalice's test client over the real app."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from crm_local.provision import (
    provision_data_resources,
    provision_messaging,
    stage_environment,
)

PROJECT_DIR = Path(__file__).resolve().parent.parent
if os.environ.get("RECORD_AWS_CALLS"):  # `make permissions`: record each function's AWS calls
    from crm_local import aws_calls

    aws_calls.install_from_environment(PROJECT_DIR)
LOCAL_ENV = stage_environment("local", PROJECT_DIR)
# Fault injection (crm.config.injected_faults) is armed for the whole test run.
os.environ["CRM_FAULT_SWITCH"] = "on"
OPERATOR = {"Authorization": "Bearer local-operator-token"}


def _reset_caches() -> None:
    """Forget every cached setting, repository and client, so each test builds its own against
    the current environment (moto, or the endpoint)."""
    import importlib

    from crm.config import get_settings

    get_settings.cache_clear()
    for name in (
        "crm.store.retry",
        "crm.store.customers",
        "crm.store.orders",
        "crm.store.ledger",
        "crm.store.inventory",
        "crm.store.cases",
        "crm.store.notifications",
        "crm.store.imports",
        "crm.adapters.s3",
        "crm.adapters.messaging",
        "crm.adapters.ops",
        "crm.adapters.workflows",
    ):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError:
            continue
        module.reset()


@pytest.fixture
def local_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key, value in LOCAL_ENV.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "CRM_OPERATOR_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    _reset_caches()
    yield dict(os.environ)
    _reset_caches()


@pytest.fixture
def aws(local_env: dict[str, str]) -> Iterator[dict[str, object]]:
    """moto in-process with every data resource of `infra/` created under the local names."""
    from moto import mock_aws

    from crm_local import dynamodb_serial

    dynamodb_serial.install()  # moto's transactions are not safe under concurrent requests
    with mock_aws():
        made = provision_data_resources(
            lambda s: boto3.client(s, region_name="us-east-1"), LOCAL_ENV
        )
        made["messaging"] = provision_messaging(
            lambda s: boto3.client(s, region_name="us-east-1"), os.environ
        )
        made["state_machines"] = _provision_workflows()
        _provision_analytics()
        yield made
        from crm_local import lambda_executor

        lambda_executor.wait_for_background(30)


WORKFLOW_FUNCTIONS = ("fulfilment_step", "exception_step", "refund_step", "import_step")


def _provision_workflows() -> dict[str, str]:
    """The state machines, so that starting a workflow works; in-process moto does not run
    them (the e2e tests run them in the local stack)."""
    from moto.core.config import default_user_config

    from crm_local.provision import AppFunction, provision_functions, provision_state_machines

    default_user_config["stepfunctions"]["execute_state_machine"] = False
    client = lambda s: boto3.client(s, region_name="us-east-1")  # noqa: E731
    functions = [
        AppFunction(name=n, handler_string=f"app.{n}", handler=lambda e, c: None)
        for n in WORKFLOW_FUNCTIONS
    ]
    arns = provision_functions(client, functions, "shop-crm", "local", LOCAL_ENV)
    return provision_state_machines(client, LOCAL_ENV, arns, "local", "shop-crm")


def _provision_analytics() -> None:
    """The analytics function, run in-process when invoked (as the local stack runs it): the
    API's job runs, previews and reports, and erasure's scrub of the snapshot."""
    from crm_local import lambda_executor
    from crm_local.provision import AppFunction, provision_functions

    lambda_executor.install()
    client = lambda s: boto3.client(s, region_name="us-east-1")  # noqa: E731
    function = AppFunction(name="analytics", handler_string="app.analytics", handler=None)
    provision_functions(client, [function], "shop-crm", "local", LOCAL_ENV)

    def analytics(event: object, context: object) -> object:
        from crm_analytics import tasks

        return tasks.run(event if isinstance(event, dict) else {})

    lambda_executor.register("shop-crm-local-analytics", analytics)


@pytest.fixture
def api(aws: dict[str, object]) -> Iterator[object]:
    """Chalice's in-process test client over the real app, with the local stage applied."""
    from chalice.test import Client

    from app import app

    with Client(app, stage_name="local", project_dir=str(PROJECT_DIR)) as client:
        yield client


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """What a test measured and recorded as `size: ...` (the package's limits), after the run,
    whatever the worker it ran on."""
    lines = [
        f"{name.removeprefix('size: ')}: {value}"
        for report in terminalreporter.stats.get("passed", [])
        for name, value in getattr(report, "user_properties", [])
        if name.startswith("size: ")
    ]
    if lines:
        terminalreporter.write_sep("-", "package sizes")
        for line in lines:
            terminalreporter.write_line(line)
