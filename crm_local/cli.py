"""`crm`: the project's command line. `crm local` serves the whole system on this machine;
`crm import` puts a file in a stack's drop folder and prints the report; `crm jobs run` runs a
scheduled job now; `crm demo` loads a sample shop and walks through a day of it."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

cli = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode="markdown",
    help="Shop CRM: the local stack and operator tools.",
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
    chaos: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Share of DynamoDB data calls that fail as AWS's may: transaction conflicts, "
            "throttling, 500s (e.g. 0.05; default: CRM_LOCAL_DYNAMODB_CHAOS or 0).",
        ),
    ] = None,
    chaos_seed: Annotated[
        int | None,
        typer.Option(help="Seed of the chaos draws (default: CRM_LOCAL_DYNAMODB_CHAOS_SEED)."),
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
    if chaos_seed is not None and chaos is None:
        chaos = float(os.environ.get("CRM_LOCAL_DYNAMODB_CHAOS") or 0)
    stack = LocalStack(api_port=api_port, aws_port=aws_port, chaos=chaos, chaos_seed=chaos_seed)
    try:
        stack.start()
    except OSError as exc:
        log.error(
            "cannot start the local stack: %s (is another one running on these ports? "
            "try --api-port / --aws-port)",
            exc,
        )
        raise typer.Exit(1) from None
    except ValueError as exc:  # a setting that makes no sense, e.g. the chaos share
        log.error("cannot start the local stack: %s", exc)
        raise typer.Exit(2) from None
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


# -- operator tools: import, jobs, demo -------------------------------------------------------

ApiUrl = Annotated[
    str | None,
    typer.Option(
        "--api-url",
        help="The stack's API [default: http://127.0.0.1:$CRM_API_PORT, port 8000].",
        show_default=False,
    ),
]
AwsUrl = Annotated[
    str | None,
    typer.Option(
        "--aws-url",
        help="The stack's AWS endpoint [default: $AWS_ENDPOINT_URL, else "
        "http://127.0.0.1:$CRM_AWS_PORT, port 4566]; empty for a real AWS account.",
        show_default=False,
    ),
]
Cloud = Annotated[
    bool, typer.Option("--cloud", help="A real AWS account (boto3's credentials and region).")
]


def _console() -> Any:
    from rich.console import Console

    return Console()


@contextmanager
def _errors() -> Iterator[None]:
    """A problem the user can fix is one line on stderr and an exit code, never a traceback."""
    from rich.console import Console

    from crm_local.client import CliError

    try:
        yield
    except CliError as exc:
        Console(stderr=True, soft_wrap=True).print(f"[bold red]Error:[/] {exc}", highlight=False)
        raise typer.Exit(exc.code) from None
    except KeyboardInterrupt:
        Console(stderr=True).print("Interrupted.")
        raise typer.Exit(130) from None


@cli.command("import")
def import_file(
    file: Annotated[Path, typer.Argument(help="A .csv, .txt, .jsonl or .ndjson file.")],
    kind: Annotated[
        str,
        typer.Option("--kind", "-k", help="customers, orders or inventory.", show_default=False),
    ],
    api_url: ApiUrl = None,
    aws_url: AwsUrl = None,
    cloud: Cloud = False,
    bucket: Annotated[
        str | None,
        typer.Option(
            help="The drop bucket [default: crm-local-drop; required with --cloud].",
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the report.")] = 1800,
    name: Annotated[
        str | None,
        typer.Option(
            help="The name in the drop folder [default: the file's name].", show_default=False
        ),
    ] = None,
) -> None:
    """Put a file in a stack's drop folder, wait for the import and print its report.

    FILE goes to `incoming/KIND/NAME` of the drop bucket; the report is
    `results/KIND/NAME.report.json`, with the first lines of the error file when rows failed.
    Exit code 0 when the import finished (even with failed rows), 1 when it failed or no report
    came in time, 2 for a wrong command. `--api-url` is accepted for symmetry with `crm demo`:
    the import itself only talks to S3.
    """
    from crm_local.client import (
        LOCAL_BUCKET,
        USAGE,
        CliError,
        DropFolder,
        check_import_args,
        report_table,
        resolve_aws_url,
        run_import,
    )

    with _errors():
        target = check_import_args(file, kind, name)
        endpoint = resolve_aws_url(aws_url, cloud)
        if endpoint is None and not bucket:
            raise CliError("--bucket is needed with a real AWS account", USAGE)
        console = _console()
        result = run_import(
            console, DropFolder(endpoint, bucket or LOCAL_BUCKET), file, kind, target, timeout
        )
        console.print(report_table(result))
        if result.errors_head:
            console.print(f"[bold]First lines of {result.report['errors_file']}:[/]")
            for line in result.errors_head:
                console.print(line, markup=False, highlight=False)
        if result.failed:
            raise CliError(f"the import of {result.key} failed: {result.report.get('error')}")


jobs = typer.Typer(no_args_is_help=True, help="The scheduled jobs the app declares.")
cli.add_typer(jobs, name="jobs")


@jobs.command("list")
def list_jobs() -> None:
    """The jobs and their schedules (the app's `@app.schedule` functions)."""
    from crm_local.client import known_jobs

    console = _console()
    for job, expression in known_jobs().items():
        console.print(f"{job}  [dim]{expression}[/]")


@jobs.command("run")
def run_job(
    name: Annotated[str, typer.Argument(help="The job, e.g. low_stock, points_expiry.")],
    aws_url: AwsUrl = None,
    cloud: Cloud = False,
    stage: Annotated[str, typer.Option(help="The stage its function belongs to.")] = "local",
    now: Annotated[
        str | None,
        typer.Option(
            help="An ISO time that replaces the job's clock (points_expiry).", show_default=False
        ),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="The day segmentation or reports is computed for (YYYY-MM-DD).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run a scheduled job now and print the summary it returns.

    The job's function is invoked once through the stack's Lambda API, as its schedule would.
    """
    from crm_local.client import USAGE, CliError, known_jobs, resolve_aws_url
    from crm_local.client import run_job as invoke

    with _errors():
        known = known_jobs()
        if known and name not in known:
            raise CliError(f"unknown job {name!r}: the jobs are {', '.join(known)}", USAGE)
        endpoint = resolve_aws_url(aws_url, cloud)
        console = _console()
        with console.status(f"Running {name}..."):
            run = invoke(name, endpoint, stage, now, as_of)
        if run.error is not None:
            raise CliError(f"{name} ({run.function}) failed: {run.error}")
        console.print(f"[bold]{name}[/] ran in {run.seconds:.1f} s ({run.function}):")
        _print_summary(console, run.result)
        if isinstance(run.result, dict) and run.result.get("status") == "failed":
            raise CliError(f"{name} ({run.function}) failed: {run.result.get('error')}")


def _print_summary(console: Any, result: Any) -> None:
    from rich.table import Table

    if (
        isinstance(result, dict)
        and result
        and all(isinstance(v, str | int | float | bool) or v is None for v in result.values())
    ):
        table = Table(show_header=False)
        table.add_column(style="bold")
        table.add_column(justify="right")
        for key, value in result.items():
            table.add_row(str(key), str(value))
        console.print(table)
    else:
        console.print_json(data=result)


DEMO_CUSTOMERS = 200


@cli.command()
def demo(
    seed: Annotated[int, typer.Option(help="The same seed makes the same shop.")] = 7,
    customers: Annotated[
        int, typer.Option(min=1, max=100_000, help="Customers in the shop's customer file.")
    ] = DEMO_CUSTOMERS,
    api_url: ApiUrl = None,
    aws_url: AwsUrl = None,
    bucket: Annotated[str, typer.Option(help="The drop bucket.")] = "crm-local-drop",
    deliveries: Annotated[
        int, typer.Option(min=0, help="Of today's paid orders, how many the carrier delivers.")
    ] = 3,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="CRM_OPERATOR_TOKEN",
            help="The operator token [default: local-operator-token].",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Load a sample shop into a stack and walk through a day of it.

    Stock, customers and a year of orders go through the drop folder (as `crm import`), today's
    orders arrive as signed Shopify webhooks, the carrier delivers a few of them, and a summary
    says what the CRM made of it. When no stack answers at the API URL, a local one is started
    in this process and stopped at the end.
    """
    from crm_local.client import DEFAULT_TOKEN, default_api_url, resolve_aws_url
    from crm_local.demo import DemoOptions, run

    started: list[bool] = []
    code = 0
    try:
        with _errors():
            options = DemoOptions(
                seed=seed,
                customers=customers,
                api_url=api_url or default_api_url(),
                aws_url=resolve_aws_url(aws_url),
                bucket=bucket,
                token=token or DEFAULT_TOKEN,
                deliveries=deliveries,
            )
            run(_console(), options, on_start=lambda: started.append(True))
    except typer.Exit as exc:
        if not started:
            raise
        code = exc.exit_code
    except Exception:
        if not started:
            raise
        traceback.print_exc()
        code = 1
    if started:
        _leave(code)


def _leave(code: int) -> None:
    """After a stack ran in this process: it is stopped, but moto runs each workflow execution
    on its own thread, and one waiting for a task token would keep the interpreter alive for
    hours (as `crm local` does, leave now)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
