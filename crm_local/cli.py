"""`crm`: the project's command line. `crm local` serves the whole system on this machine."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import warnings
from typing import Annotated, Any

import typer

cli = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Shop CRM: the local stack and operator tools."
)


def _configure_logging() -> None:
    from crm_local.endpoint import quiet_request_logs

    # The local tools log as `stack.*`: Powertools puts a filter on the root handler that drops
    # every record whose logger name contains its service name ("crm").
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    quiet_request_logs()
    # A request that records no metric is normal here; Powertools warns about it every time.
    warnings.filterwarnings("ignore", message="No application metrics to publish")


@cli.callback()
def main_options() -> None:
    """Shop CRM."""


@cli.command()
def local(
    api_port: Annotated[
        int | None, typer.Option(help="API port (default: CRM_API_PORT or 8000).")
    ] = None,
    aws_port: Annotated[
        int | None, typer.Option(help="Embedded AWS endpoint port (default: CRM_AWS_PORT or 4566).")
    ] = None,
) -> None:
    """Serve the API, the embedded AWS endpoint, workflows and schedules until Ctrl-C."""
    stop = threading.Event()

    def request_stop(signum: int, frame: Any) -> None:
        if stop.is_set():  # a second Ctrl-C while stopping: give up waiting
            raise SystemExit(130)
        stop.set()

    # Installed first, so a Ctrl-C or SIGTERM during start-up also ends in a clean stop.
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    _configure_logging()
    log = logging.getLogger("stack")

    from crm_local.stack import LocalStack

    began = time.monotonic()
    stack = LocalStack(api_port=api_port, aws_port=aws_port)
    try:
        stack.start()
    except OSError as exc:
        log.error(
            "cannot start the local stack: %s (is another one running on these ports? "
            "try --api-port / --aws-port)",
            exc,
        )
        raise typer.Exit(1) from None
    try:
        if not stop.is_set():
            typer.echo(stack.banner())
            log.info("ready in %.1f s", time.monotonic() - began)
        while not stop.wait(0.5):
            pass
        log.info("stopping")
    finally:
        stack.stop()
    log.info("stopped")
    # moto runs each workflow execution on its own thread, and one waiting for a task token
    # would keep the interpreter alive for hours: everything of ours is stopped, so leave now.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
