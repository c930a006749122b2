"""The embedded AWS endpoint: moto in server mode, in this process, on 127.0.0.1.

Lambda code runs in-process (`crm_local.lambda_executor`) and Step Functions definitions are
executed by moto's ASL interpreter. Any credentials work; the region is us-east-1.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from typing import Any

import boto3

from crm_local import dynamodb_serial, lambda_executor

DEFAULT_PORT = 4566
REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}


def port_from_env(environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    return int(env.get("CRM_AWS_PORT") or DEFAULT_PORT)


def quiet_request_logs() -> None:
    """One line per AWS call drowns the console; only problems are worth showing."""
    for name in ("werkzeug", "moto", "botocore", "urllib3", "pynamodb"):
        logging.getLogger(name).setLevel(logging.WARNING)


class Endpoint:
    """`start()` / `stop()`, or use it as a context manager. Port 0 picks a free port."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port_from_env() if port is None else port
        self._server: Any = None
        # boto3's default session is not safe to build clients from on several threads.
        self._session = boto3.session.Session()
        self._session_lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Endpoint:
        from moto.core.config import default_user_config
        from moto.server import ThreadedMotoServer

        lambda_executor.install()
        dynamodb_serial.install()
        quiet_request_logs()
        # moto's Step Functions interpreter calls Lambda over HTTP at localhost:$MOTO_PORT;
        # without it every Task fails to connect to port 5000.
        if self.port:
            os.environ["MOTO_PORT"] = str(self.port)
        default_user_config["stepfunctions"]["execute_state_machine"] = True
        server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        server.start()
        self._server = server
        if not self.port:
            self.port = server.get_host_and_port()[1]
            os.environ["MOTO_PORT"] = str(self.port)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.stop()
        # ThreadedMotoServer.stop() leaves the listening socket open until garbage collection.
        wsgi_server = getattr(server, "_server", None)
        if wsgi_server is not None:
            wsgi_server.server_close()

    def __enter__(self) -> Endpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client(self, service: str) -> Any:
        with self._session_lock:
            return self._session.client(service, **self.client_kwargs())

    def resource(self, service: str) -> Any:
        with self._session_lock:
            return self._session.resource(service, **self.client_kwargs())

    def client_kwargs(self) -> dict[str, str]:
        return {
            "endpoint_url": self.url,
            "region_name": REGION,
            "aws_access_key_id": DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        }

    def environment(self) -> dict[str, str]:
        """What makes boto3 and PynamoDB in this process (and the `aws` CLI) use the endpoint."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            **DUMMY_CREDENTIALS,
        }
