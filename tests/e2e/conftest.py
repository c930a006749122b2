"""The local stack as a user starts it: `crm local` in its own process, on free ports.

One stack per test worker (session scope). Tests talk to it only from outside: HTTP to the API,
boto3 and the `aws` CLI to the embedded endpoint."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
import requests

from tests.conftest import PROJECT_DIR

TOKEN = "local-operator-token"
OPERATOR = {"Authorization": f"Bearer {TOKEN}"}
READY_WITHIN = 90.0  # the acceptance's limit for `make run`


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningStack:
    process: subprocess.Popen[bytes]
    api_url: str
    aws_url: str
    log_path: Path
    ready_in: float

    def client(self, service: str):
        return boto3.client(
            service,
            endpoint_url=self.aws_url,
            region_name="us-east-1",
            aws_access_key_id="any",
            aws_secret_access_key="any",
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30.0) -> int:
        """Ctrl-C, as a user stops it; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


def start_stack(log_path: Path, *args: str) -> RunningStack:
    """`crm local [args]` on free ports, once it answers healthy."""
    api_port, aws_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRM_", "AWS_", "POWERTOOLS_"))}
    env.update(CRM_API_PORT=str(api_port), CRM_AWS_PORT=str(aws_port), PYTHONUNBUFFERED="1")
    env["CRM_FAULT_SWITCH"] = "on"  # the fault tests set faults on the running stack
    crm = Path(sys.executable).with_name("crm")
    command = [str(crm)] if crm.exists() else [sys.executable, "-m", "crm_local.cli"]
    began = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*command, "local", *args],
            cwd=PROJECT_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    stack = RunningStack(
        process, f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{aws_port}", log_path, 0.0
    )
    while time.monotonic() - began < READY_WITHIN:
        if process.poll() is not None:
            raise RuntimeError(f"crm local exited with {process.returncode}:\n{stack.output()}")
        try:
            health = requests.get(f"{stack.api_url}/health", timeout=2)
            if health.status_code == 200 and health.json().get("status") == "ok":
                stack.ready_in = time.monotonic() - began
                return stack
        except requests.RequestException:
            pass
        time.sleep(0.25)
    process.kill()
    raise RuntimeError(f"crm local not healthy within {READY_WITHIN} s:\n{stack.output()}")


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    running = start_stack(tmp_path_factory.mktemp("stack") / "crm-local.log")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def http() -> Iterator[requests.Session]:
    session = requests.Session()
    # Enough pooled connections for the concurrency tests' threads.
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=64)
    session.mount("http://", adapter)
    yield session
    session.close()


@pytest.fixture
def shop(http: requests.Session, stack: RunningStack):
    from tests.support.flows import Shop

    return Shop(http, stack)
