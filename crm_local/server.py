"""The HTTP API served locally by Chalice's own local server, with the stage's settings.

Two things differ from `chalice local` as it comes: the local gateway's own error answers
(no token, a route that does not exist, an authorizer that refuses) are in the contract's error
shape, and request log lines never carry the query string (it may hold an email or a phone).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
from pathlib import Path
from typing import Any

from chalice.local import (
    ChaliceRequestHandler,
    ForbiddenError,
    LocalDevServer,
    LocalGatewayException,
    NotAuthorizedError,
    RouteMatcher,
    ThreadedHTTPServer,
)

from crm_local import PROJECT_DIR

# crm.* is imported inside functions: Powertools reads the stage's environment when
# crm.observability is first imported, and `ApiServer.load()` is what applies it.

DEFAULT_PORT = 8000
UNAUTHENTICATED = "a valid operator token is required (Authorization: Bearer <token>)"

log = logging.getLogger("stack.api")

_QUERY = re.compile(r"\?[^\s\"']*")


def port_from_env() -> int:
    return int(os.environ.get("CRM_API_PORT") or DEFAULT_PORT)


def _body(code: str, message: str, details: list[Any] | None = None) -> bytes:
    from crm.api import error_body

    return json.dumps(error_body(code, message, details)).encode()


class _PerThread:
    """A data descriptor that keeps an attribute per thread. Chalice keeps the request being
    served in `app.current_request`; in Lambda one container serves one request at a time, but
    the local server serves requests on concurrent threads, which would read each other's."""

    def __init__(self) -> None:
        self._values = threading.local()

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        return self if obj is None else getattr(self._values, "value", None)

    def __set__(self, obj: Any, value: Any) -> None:
        self._values.value = value


def serve_requests_per_thread(app: Any) -> None:
    """Give `app` a per-thread `current_request` and `lambda_context` (idempotent)."""
    if getattr(type(app), "_per_thread", False):
        return
    app.__class__ = type(
        type(app).__name__,
        (type(app),),
        {"current_request": _PerThread(), "lambda_context": _PerThread(), "_per_thread": True},
    )


class CrmHttpServer(ThreadedHTTPServer):
    """Chalice's threaded server with a listen backlog for real load. socketserver's default
    of 5 made the kernel reset connections as soon as a few dozen clients connected at once
    (a webhook burst, a load test); API Gateway never refuses a connection."""

    request_queue_size = 1024


class CrmRequestHandler(ChaliceRequestHandler):
    """Chalice's request handler, answering the gateway's own errors in the contract's shape."""

    _responded = False

    def __getattr__(self, name: str) -> Any:
        # http.server answers a method with no `do_<METHOD>` with an HTML 501; the gateway
        # refuses a method no route has with 405, in the contract's shape.
        if name.startswith("do_"):
            return self._method_not_allowed
        raise AttributeError(name)

    def _method_not_allowed(self) -> None:
        # Its body (if any) is never read: the connection cannot carry another request.
        self.close_connection = True
        app = self.local_gateway._app_object
        try:
            route = RouteMatcher(list(app.routes)).match_route(self.path).route
        except ValueError:
            message = f"no route for {self.command} {self._path_only()}"
            self._send_contract_error(404, "not_found", message)
            return
        allowed = ", ".join(sorted(app.routes[route]))
        message = f"{self.command} is not allowed on {self._path_only()}; allowed: {allowed}"
        self._send_contract_error(405, "method_not_allowed", message, {"Allow": allowed})

    def send_response(self, code: int, message: str | None = None) -> None:
        self._responded = True
        super().send_response(code, message)

    def _generic_handle(self) -> None:
        from crm.api import status_of
        from crm.domain.errors import CrmError

        self._responded = False
        try:
            super()._generic_handle()
        except CrmError as error:
            # The authorizer refuses a wrong token by raising (API Gateway then answers 401);
            # chalice's local gateway lets the exception out of `handle_request`.
            if self._responded:
                raise
            status = status_of(error)
            message = UNAUTHENTICATED if status == 401 else error.message
            self._send_contract_error(status, error.code, message)
        except Exception as exc:
            if self._responded:
                raise
            log.error(
                "the local gateway failed on %s %s: %s",
                self.command,
                self._path_only(),
                type(exc).__name__,
            )
            self._send_contract_error(500, "internal_error", "an unexpected error occurred")

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = do_PATCH = do_OPTIONS = _generic_handle

    def _send_error_response(self, error: LocalGatewayException) -> None:
        headers = {k: v for k, v in error.headers.items() if k.lower() != "x-amzn-errortype"}
        error_type = error.headers.get("x-amzn-ErrorType", "")
        if isinstance(error, NotAuthorizedError):
            status, code, message = 401, "unauthenticated", UNAUTHENTICATED
        elif isinstance(error, ForbiddenError) and error_type == "UnauthorizedException":
            # API Gateway answers a route it does not have with 403 "Missing Authentication
            # Token"; locally that is a plain 404.
            status, code = 404, "not_found"
            message = f"no route for {self.command} {self._path_only()}"
        elif isinstance(error, ForbiddenError):
            status, code, message = 403, "forbidden", "not allowed to access this resource"
        else:
            status, code, message = 500, "internal_error", "the authorizer failed"
        self._send_http_response(
            status, {**headers, "Content-Type": "application/json"}, _body(code, message)
        )

    def _send_contract_error(
        self, status: int, code: str, message: str, extra: dict[str, str] | None = None
    ) -> None:
        headers = {"Content-Type": "application/json", **(extra or {})}
        if self.close_connection:
            headers["Connection"] = "close"
        self._send_http_response(status, headers, _body(code, message))

    def _path_only(self) -> str:
        return self.path.split("?", 1)[0]

    def log_message(self, format: str, *args: Any) -> None:
        from crm.observability import mask_text

        # The query string may hold an email or a phone: never log it.
        line = _QUERY.sub("", format % args)
        log.info("%s %s", self.address_string(), mask_text(line))


class ApiServer:
    """`load()` applies the stage and imports app.py; `start()` serves it on a thread."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        stage: str = "local",
        project_dir: Path = PROJECT_DIR,
    ) -> None:
        self.host = host
        self.port = port_from_env() if port is None else port
        self.stage = stage
        self.project_dir = project_dir
        self.config: Any = None
        self.app: Any = None
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def app_module(self) -> Any:
        return sys.modules["app"]

    def load(self) -> ApiServer:
        """Set the stage's environment variables in this process and import the app, as
        `chalice local --stage <stage>` does. AWS_ENDPOINT_URL must already be set."""
        from chalice.cli.factory import CLIFactory

        factory = CLIFactory(str(self.project_dir), environ=os.environ)
        self.config = factory.create_config_obj(chalice_stage_name=self.stage)
        self.app = self.config.chalice_app
        self._factory = factory
        return self

    def function_config(self, name: str) -> Any:
        """The chalice config as it applies to one function (timeout, memory)."""
        return self.config.scope(self.stage, name)

    def start(self) -> ApiServer:
        if self.app is None:
            self.load()
        serve_requests_per_thread(self.app)
        server = LocalDevServer(
            self.app,
            self.config,
            self.host,
            self.port,
            handler_cls=CrmRequestHandler,
            server_cls=CrmHttpServer,
        )
        self.port = server.server.server_address[1]
        # A client that hangs up mid-request (or a request cut by Ctrl-C) is not an error of
        # ours: one log line, not socketserver's traceback on stderr.
        server.server.handle_error = lambda request, address: log.info(
            "connection from %s closed early", address[0]
        )
        self._server = server
        self._thread = threading.Thread(
            target=server.server.serve_forever, name="crm-api", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.server.shutdown()
        server.server.server_close()
        if self._thread is not None:
            self._thread.join(5)
