"""The whole system on one machine: endpoint, resources, functions, schedules, then the API."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from crm_local import PROJECT_DIR, lambda_executor
from crm_local.chaos import ROUTE as CHAOS_ROUTE
from crm_local.chaos import chaos
from crm_local.endpoint import Endpoint
from crm_local.provision import (
    AppFunction,
    app_functions,
    function_name,
    provision_data_resources,
    provision_failure_destinations,
    provision_functions,
    provision_messaging,
    provision_notifications,
    provision_schedules,
    provision_state_machines,
    stage_environment,
)
from crm_local.scheduler import Scheduler
from crm_local.server import ApiServer

log = logging.getLogger("stack")

# The local stack never talks to AWS: nothing from the user's own AWS setup may leak in.
_FOREIGN_AWS_SETTINGS = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
)


class LocalStack:
    """`start()` brings everything up in order and `stop()` takes it down; or use `with`.
    Ports: None reads CRM_API_PORT / CRM_AWS_PORT (defaults 8000 / 4566); 0 picks free ones."""

    def __init__(
        self,
        api_port: int | None = None,
        aws_port: int | None = None,
        stage: str = "local",
        host: str = "127.0.0.1",
        project_dir: Path = PROJECT_DIR,
        scheduler_interval: float = 1.0,
        chaos: float | None = None,
        chaos_seed: int | None = None,
    ) -> None:
        self.stage = stage
        # The share of DynamoDB calls that fail as AWS's may (None: CRM_LOCAL_DYNAMODB_CHAOS).
        self.chaos, self.chaos_seed = chaos, chaos_seed
        self.project_dir = project_dir
        self.endpoint = Endpoint(aws_port, host)
        self.api = ApiServer(host, api_port, stage, project_dir)
        self.scheduler: Scheduler | None = None
        self._scheduler_interval = scheduler_interval
        self.functions: list[AppFunction] = []
        self.provisioned: dict[str, Any] = {}
        self.started_in: float | None = None
        self._saved_environ: dict[str, str] | None = None

    @property
    def api_url(self) -> str:
        return self.api.url

    @property
    def aws_url(self) -> str:
        return self.endpoint.url

    def start(self) -> LocalStack:
        began = time.monotonic()
        self._saved_environ = dict(os.environ)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - began
        return self

    def _start(self) -> None:
        if os.environ.get("RECORD_AWS_CALLS"):  # `make permissions` (crm_local.aws_calls)
            from crm_local import aws_calls

            aws_calls.install_from_environment(self.project_dir)
        env = stage_environment(self.stage, self.project_dir)
        for name in _FOREIGN_AWS_SETTINGS:
            os.environ.pop(name, None)
        for name in [k for k in os.environ if k.startswith("AWS_ENDPOINT_URL_")]:
            del os.environ[name]
        # Before anything imports crm.*: Powertools reads its settings at import, as in Lambda.
        os.environ.update(env)

        self.endpoint.start()
        os.environ.update(self.endpoint.environment())
        self._start_chaos()
        client = self.endpoint.client
        self.provisioned = provision_data_resources(client, env)
        # os.environ: the stage's variables, and a CRM_SENDER_EMAIL the user may have set.
        self.provisioned["messaging"] = provision_messaging(client, os.environ)

        self.api.load()
        app = self.api.app
        self.functions = app_functions(app, self.api.app_module)
        for function in self.functions:
            lambda_executor.register(self._physical(function.name), function.handler)
        arns: dict[str, str] = {}
        for function in self.functions:
            scoped = self.api.function_config(function.name)
            arns.update(
                provision_functions(
                    client,
                    [function],
                    app.app_name,
                    self.stage,
                    env,
                    timeout=scoped.lambda_timeout or 60,
                    memory=scoped.lambda_memory_size or 128,
                )
            )
        self.provisioned["functions"] = {self._physical(n): arn for n, arn in arns.items()}
        self.provisioned["notifications"] = provision_notifications(
            client, env, arns, self.functions
        )
        self.provisioned["destinations"] = provision_failure_destinations(
            client, self.functions, arns, env
        )
        self.provisioned["state_machines"] = provision_state_machines(
            client, env, arns, self.stage, app.app_name
        )
        self.provisioned["schedules"] = provision_schedules(
            client, self.functions, arns, app.app_name, self.stage
        )

        self.scheduler = Scheduler(client, interval=self._scheduler_interval).start()
        self.api.start()

    def _start_chaos(self) -> None:
        if self.chaos is None:
            chaos.configure_from_env()
        else:
            chaos.configure(self.chaos, self.chaos_seed)
        if chaos.active():
            log.warning(
                "DynamoDB chaos: %g%% of data calls fail as AWS's may (seed %s); counts at %s%s",
                chaos.rate * 100,
                chaos.seed,
                self.aws_url,
                CHAOS_ROUTE,
            )

    def _physical(self, name: str) -> str:
        return function_name(self.api.app.app_name, self.stage, name)

    def stop(self) -> None:
        """Stop taking requests, stop firing schedules, let running invocations finish (a few
        seconds at most), then stop the endpoint and put the environment back."""
        self.api.stop()
        if self.scheduler is not None:
            self.scheduler.stop(timeout=5)
            self.scheduler = None
        if not lambda_executor.wait_for_background(5):
            log.warning("some asynchronous invocations were still running at stop")
        for function in self.functions:
            lambda_executor.unregister(self._physical(function.name))
        self.endpoint.stop()
        chaos.configure(0.0)
        if self._saved_environ is not None:
            os.environ.clear()
            os.environ.update(self._saved_environ)
            self._saved_environ = None

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def banner(self) -> str:
        """What a developer needs to start: addresses, secrets, names, three commands."""
        from crm.config import get_secret

        token = get_secret("operator_token")
        env = stage_environment(self.stage, self.project_dir)
        buckets = ", ".join(self.provisioned.get("buckets", []))
        tables = ", ".join(self.provisioned.get("tables", []))
        lines = [
            "",
            "CRM local stack is up (no AWS account, no Docker).",
            "",
            f"  API                 {self.api_url}",
            f"  AWS endpoint        {self.aws_url}   (region us-east-1, any credentials)",
            f"  Operator token      {token}",
            f"  Shopify secret      {get_secret('shopify_secret')}",
            f"  Webhook secret      {get_secret('webhook_secret')}",
            f"  Carrier secret      {get_secret('logistics_secret')}",
            f"  Drop bucket         {env.get('CRM_DROP_BUCKET', '')}",
            f"  Buckets             {buckets}",
            f"  Tables              {tables}",
        ]
        if chaos.active():
            lines.append(
                f"  DynamoDB chaos      {chaos.rate:g} of data calls fail "
                f"(counts: {self.aws_url}{CHAOS_ROUTE})"
            )
        machines = self.provisioned.get("state_machines") or {}
        schedules = self.provisioned.get("schedules") or {}
        if machines:
            lines.append(f"  State machines      {', '.join(machines)}")
        if schedules:
            lines.append(
                "  Schedules           " + ", ".join(f"{k} {v}" for k, v in schedules.items())
            )
        lines += [
            "",
            "Try:",
            f"  curl -s -X POST {self.api_url}/customers -H 'Authorization: Bearer {token}' "
            "-H 'Content-Type: application/json' "
            '-d \'{"external_ids": {"shopify": "1001"}, "tags": ["vip"]}\'',
            f"  curl -s {self.api_url}/customers/<customer_id from the answer> "
            f"-H 'Authorization: Bearer {token}'",
            f"  aws --endpoint-url {self.aws_url} dynamodb list-tables   "
            f"(and: aws --endpoint-url {self.aws_url} s3 ls)",
            "",
            "Ctrl-C stops everything.",
            "",
        ]
        return "\n".join(lines)
