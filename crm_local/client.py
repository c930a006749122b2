"""The `crm` commands' side of a stack: where it is, its drop folder, its API, its jobs.

What the contract gives a user and nothing more: S3 (the drop folder), the Lambda API (a
scheduled job run now), and HTTP (the API, the webhooks). Local by default (the embedded AWS
endpoint and the API of `crm local`); the AWS endpoint comes from `--aws-url`, else
`AWS_ENDPOINT_URL`, else `http://127.0.0.1:$CRM_AWS_PORT` (4566); an empty `--aws-url` (or
`--cloud`) means a real AWS account, with boto3's own credentials and region.

Everything that goes wrong in a way a user can fix is a `CliError`: one line, an exit code.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from crm.config import LOCAL_SECRET_DEFAULTS
from crm.domain.signatures import sign_generic, sign_shopify
from crm_local import PROJECT_DIR

KINDS = ("customers", "orders", "inventory")  # the contract's `incoming/<kind>/` folders
LOCAL_BUCKET = "crm-local-drop"
LOCAL_REGION = "us-east-1"
# The contract's local defaults (the local stack reads the same).
DEFAULT_TOKEN = LOCAL_SECRET_DEFAULTS["operator_token"]
DEFAULT_SHOPIFY_SECRET = LOCAL_SECRET_DEFAULTS["shopify_secret"]
DEFAULT_WEBHOOK_SECRET = LOCAL_SECRET_DEFAULTS["webhook_secret"]
DEFAULT_LOGISTICS_SECRET = LOCAL_SECRET_DEFAULTS["logistics_secret"]
POLL_SECONDS = 0.5
ERROR_LINES = 10

USAGE = 2  # exit codes: 1 is "it did not work", 2 "the command was wrong"


class CliError(Exception):
    """A problem the user can fix, told in one line; `code` is the exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# -- where the stack is ---------------------------------------------------------------------


def default_api_url() -> str:
    return f"http://127.0.0.1:{os.environ.get('CRM_API_PORT') or 8000}"


def resolve_aws_url(option: str | None, cloud: bool = False) -> str | None:
    """The AWS endpoint to use, or None for a real AWS account."""
    if cloud:
        if option:
            raise CliError("--cloud and --aws-url cannot be used together", USAGE)
        return None
    if option is not None:
        return option.strip() or None
    return os.environ.get("AWS_ENDPOINT_URL") or (
        f"http://127.0.0.1:{os.environ.get('CRM_AWS_PORT') or 4566}"
    )


def aws_client(
    service: str, endpoint_url: str | None, *, read_timeout: float = 60, attempts: int = 3
) -> Any:
    """A boto3 client for the stack: the endpoint with any credentials (the contract's "any"
    unless some are set), or AWS with boto3's own configuration."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=5,
        read_timeout=read_timeout,
        retries={"total_max_attempts": attempts, "mode": "standard"},
    )
    if endpoint_url is None:
        return _cloud_errors(lambda: boto3.client(service, config=config))
    return boto3.session.Session().client(
        service,
        endpoint_url=endpoint_url,
        config=config,
        region_name=os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or LOCAL_REGION,
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID") or "local",
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY") or "local",
        aws_session_token=os.environ.get("AWS_SESSION_TOKEN") or None,
    )


def _cloud_errors(make: Callable[[], Any]) -> Any:
    from botocore.exceptions import NoRegionError

    try:
        return make()
    except NoRegionError:
        raise CliError("no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION)") from None


def where(endpoint_url: str | None) -> str:
    return endpoint_url or "AWS"


@contextlib.contextmanager
def aws_errors(endpoint_url: str | None, what: str) -> Iterator[None]:
    """boto3's failures a user can act on, as one-line `CliError`s."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
    )

    try:
        yield
    except EndpointConnectionError:
        hint = " (is the stack running? `crm local`)" if endpoint_url else ""
        raise CliError(f"cannot reach the AWS endpoint at {endpoint_url}{hint}") from None
    except NoCredentialsError:
        raise CliError("no AWS credentials: configure them as for the aws CLI") from None
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "?"), error.get("Message") or ""
        raise CliError(f"{what}: {code} {message}".strip() + f" ({where(endpoint_url)})") from None
    except BotoCoreError as exc:
        raise CliError(f"{what}: {exc}") from None


# -- the drop folder ------------------------------------------------------------------------


@dataclass(frozen=True)
class Marker:
    """What identifies one version of an object: a report written again has another."""

    etag: str
    modified: datetime


class DropFolder:
    """The drop bucket of a stack: put a file in `incoming/`, read what the import wrote."""

    def __init__(self, endpoint_url: str | None, bucket: str, s3: Any = None) -> None:
        self.endpoint_url = endpoint_url
        self.bucket = bucket
        self.s3 = s3 if s3 is not None else aws_client("s3", endpoint_url)

    def check(self) -> None:
        from botocore.exceptions import ClientError

        with aws_errors(self.endpoint_url, f"bucket {self.bucket}"):
            try:
                self.s3.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket"):
                    raise CliError(
                        f"there is no bucket {self.bucket} at {where(self.endpoint_url)}"
                    ) from None
                raise

    def marker(self, key: str) -> Marker | None:
        from botocore.exceptions import ClientError

        with aws_errors(self.endpoint_url, f"s3://{self.bucket}/{key}"):
            try:
                head = self.s3.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return None
                raise
        return Marker(str(head.get("ETag", "")), head["LastModified"])

    def upload(self, file: Path, key: str, callback: Callable[[int], None]) -> None:
        from boto3.exceptions import S3UploadFailedError

        with aws_errors(self.endpoint_url, f"upload to s3://{self.bucket}/{key}"):
            try:
                self.s3.upload_file(str(file), self.bucket, key, Callback=callback)
            except S3UploadFailedError as exc:
                raise CliError(f"upload to s3://{self.bucket}/{key} failed: {exc}") from None

    def read(self, key: str, max_bytes: int | None = None) -> bytes:
        extra = {"Range": f"bytes=0-{max_bytes - 1}"} if max_bytes else {}
        with aws_errors(self.endpoint_url, f"s3://{self.bucket}/{key}"):
            body: bytes = self.s3.get_object(Bucket=self.bucket, Key=key, **extra)["Body"].read()
        return body

    def wait_for(
        self,
        key: str,
        before: Marker | None,
        since: datetime | None,
        timeout: float,
        tick: Callable[[], None] = lambda: None,
    ) -> bytes | None:
        """The object at `key` once a version other than `before`, written at or after `since`
        (the S3 clock, to the second), is there; None after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.marker(key)
            if found is not None and found != before and (since is None or found.modified >= since):
                return self.read(key)
            if time.monotonic() >= deadline:
                return None
            tick()
            time.sleep(POLL_SECONDS)


def drop_key(kind: str, name: str) -> str:
    return f"incoming/{kind}/{name.lstrip('/')}"


def results_key(key: str, suffix: str) -> str:
    """`results/<path under incoming/>.<suffix>`, as the import writes it."""
    return f"results/{key.removeprefix('incoming/')}.{suffix}"


def check_import_args(file: Path, kind: str, name: str | None) -> str:
    """The usage errors of `crm import`, before anything talks to a stack; the object name."""
    if kind not in KINDS:
        raise CliError(f"unknown kind {kind!r}: use one of {', '.join(KINDS)}", USAGE)
    if not file.exists():
        raise CliError(f"no such file: {file}", USAGE)
    if not file.is_file():
        raise CliError(f"not a file: {file}", USAGE)
    target = (name or file.name).strip().lstrip("/")
    if not target or target.endswith("/"):
        raise CliError(f"not a file name: {name!r}", USAGE)
    from crm.domain.import_files import format_for

    try:
        format_for(target)
    except ValueError:
        raise CliError(
            f"{target}: the drop folder takes .csv, .txt, .jsonl or .ndjson files", USAGE
        ) from None
    return target


@dataclass
class ImportResult:
    key: str
    report: dict[str, Any]
    errors_head: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return self.report.get("status") == "failed"


def run_import(
    console: Console,
    drop: DropFolder,
    file: Path,
    kind: str,
    name: str,
    timeout: float,
    *,
    label: str | None = None,
) -> ImportResult:
    """Put `file` in `incoming/<kind>/<name>` with a progress bar, wait for its report with a
    spinner, and read the head of its error file. CliError on timeout."""
    key = drop_key(kind, name)
    report_key = results_key(key, "report.json")
    label = label or file.name
    drop.check()
    before = drop.marker(report_key)
    began = time.monotonic()
    size = file.stat().st_size
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(f"Uploading {label}", total=size or 1)
        drop.upload(file, key, lambda sent: progress.advance(task, sent))
        progress.update(task, completed=size or 1)
    # The upload's own time on the S3 clock (the import may have moved it already: then the
    # earlier report, if any, is told apart by its version alone).
    uploaded = drop.marker(key)
    since = uploaded.modified if uploaded else None
    if console.is_terminal:
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task(f"Importing {label} (waiting for {report_key})")
            body = drop.wait_for(
                report_key, before, since, timeout, tick=lambda: progress.update(task)
            )
    else:
        body = drop.wait_for(report_key, before, since, timeout)
    if body is None:
        raise CliError(
            f"no report for {key} after {timeout:g} s; the import may still be running: "
            f"look for s3://{drop.bucket}/{report_key} later"
        )
    report = json.loads(body)
    errors_head: list[str] = []
    if report.get("errors_file"):
        text = drop.read(report["errors_file"], max_bytes=64 * 1024)
        errors_head = text.decode("utf-8-sig", "replace").splitlines()[:ERROR_LINES]
    return ImportResult(key, report, errors_head, time.monotonic() - began)


def report_table(result: ImportResult) -> Table:
    report = result.report
    status = str(report.get("status"))
    table = Table(title=f"Import of {result.key}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    colour = "red" if status == "failed" else "green"
    table.add_row("status", f"[{colour}]{status}[/]")
    for name in ("rows", "created", "updated", "unchanged", "failed", "chunks"):
        table.add_row(name, str(report.get(name, "")))
    units = report.get("orders")
    if isinstance(units, dict):
        table.add_row("orders", ", ".join(f"{k} {v}" for k, v in units.items()) or "none")
    table.add_row("errors file", str(report.get("errors_file") or "none"))
    if report.get("archived_as"):
        table.add_row("archived as", str(report["archived_as"]))
    if report.get("error"):
        table.add_row("error", f"[red]{report['error']}[/]")
    if report.get("resume"):
        table.add_row("resume", str(report["resume"]))
    table.add_row("took", f"{result.seconds:.1f} s")
    return table


def report_line(result: ImportResult) -> str:
    """One line, for `crm demo`."""
    r = result.report
    units = r.get("orders")
    extra = ""
    if isinstance(units, dict):
        extra = " (orders: " + ", ".join(f"{v} {k}" for k, v in units.items()) + ")"
    failed = f"[red]{r.get('failed', 0)} failed[/]" if r.get("failed") else "0 failed"
    return (
        f"{r.get('rows', 0)} rows: {r.get('created', 0)} created, {r.get('updated', 0)} updated, "
        f"{r.get('unchanged', 0)} unchanged, {failed}{extra} [dim]in {result.seconds:.1f} s, "
        f"status {r.get('status')}[/]"
    )


# -- jobs -----------------------------------------------------------------------------------


def known_jobs(app_file: Path = PROJECT_DIR / "app.py") -> dict[str, str]:
    """The scheduled jobs the Chalice app declares: `@app.schedule(expression, name=...)`, by
    name, with their expression. Read from the source, so nothing of the app is imported."""
    try:
        tree = ast.parse(app_file.read_text(encoding="utf-8"))
    except OSError:
        return {}
    jobs: dict[str, str] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            if not (
                isinstance(decorator, ast.Call)
                and isinstance(decorator.func, ast.Attribute)
                and decorator.func.attr == "schedule"
            ):
                continue
            name = node.name
            for keyword in decorator.keywords:
                if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
                    name = str(keyword.value.value)
            expression = decorator.args[0] if decorator.args else None
            jobs[name] = str(expression.value) if isinstance(expression, ast.Constant) else ""
    return dict(sorted(jobs.items()))


def app_name(project_dir: Path = PROJECT_DIR) -> str:
    try:
        config = json.loads((project_dir / ".chalice" / "config.json").read_text())
        return str(config.get("app_name") or "shop-crm")
    except (OSError, ValueError):
        return "shop-crm"


def job_function(job: str, stage: str) -> str:
    """The deployed function of a job, named as `chalice package` (and the local stack) do."""
    from crm_local.provision import function_name

    return function_name(app_name(), stage, job)


def scheduled_event(now: str | None = None, as_of: str | None = None) -> dict[str, Any]:
    """What EventBridge sends a scheduled function; `detail.now` replaces the job's clock,
    `detail.as_of` the day a segmentation or reports run is computed for."""
    return {
        "version": "0",
        "id": f"crm-cli-{uuid.uuid4()}",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": LOCAL_REGION,
        "resources": [],
        "detail": {
            **({"now": now} if now else {}),
            **({"as_of": as_of} if as_of else {}),
        },
    }


@dataclass
class JobRun:
    function: str
    result: Any
    error: str | None
    seconds: float


def run_job(
    job: str,
    endpoint_url: str | None,
    stage: str,
    now: str | None = None,
    as_of: str | None = None,
) -> JobRun:
    """Invoke the job's function once, synchronously (no retry: a job is not re-run)."""
    function = job_function(job, stage)
    client = aws_client("lambda", endpoint_url, read_timeout=960, attempts=1)
    began = time.monotonic()
    with aws_errors(endpoint_url, f"function {function}"):
        try:
            answer = client.invoke(
                FunctionName=function, Payload=json.dumps(scheduled_event(now, as_of)).encode()
            )
        except client.exceptions.ResourceNotFoundException:
            raise CliError(f"there is no function {function} at {where(endpoint_url)}") from None
    seconds = time.monotonic() - began
    raw = answer["Payload"].read()
    try:
        result = json.loads(raw) if raw else None
    except ValueError:
        result = raw.decode("utf-8", "replace")
    if "FunctionError" in answer:
        if isinstance(result, dict):
            error = f"{result.get('errorType', 'Error')}: {result.get('errorMessage', '')}"
        else:
            error = str(result)
        return JobRun(function, result, error, seconds)
    return JobRun(function, result, None, seconds)


# -- the API and the webhooks ---------------------------------------------------------------


class Api:
    """The stack's HTTP API with the operator token."""

    def __init__(self, url: str, token: str) -> None:
        import requests

        self.url = url.rstrip("/")
        self.token = token
        self.http = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=16)
        self.http.mount("http://", adapter)
        self.http.mount("https://", adapter)

    def healthy(self) -> bool:
        import requests

        try:
            answer = self.http.get(f"{self.url}/health", timeout=3)
            return answer.status_code == 200 and answer.json().get("status") == "ok"
        except (requests.RequestException, ValueError):
            return False

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        import requests

        try:
            return self.http.request(method, f"{self.url}{path}", timeout=30, **kwargs)
        except requests.RequestException as exc:
            raise CliError(f"cannot reach the API at {self.url}: {type(exc).__name__}") from None

    def get(self, path: str, **params: Any) -> Any:
        answer = self._call(
            "GET", path, params=params, headers={"Authorization": f"Bearer {self.token}"}
        )
        if answer.status_code != 200:
            raise CliError(f"GET {path}: {answer.status_code} {answer.text[:200]}")
        return answer.json()

    def find(self, path: str, **params: Any) -> Any | None:
        """GET, or None for a 404."""
        answer = self._call(
            "GET", path, params=params, headers={"Authorization": f"Bearer {self.token}"}
        )
        if answer.status_code == 404:
            return None
        if answer.status_code != 200:
            raise CliError(f"GET {path}: {answer.status_code} {answer.text[:200]}")
        return answer.json()

    def all(self, path: str, **params: Any) -> list[Any]:
        """Every item of a list, page after page."""
        items: list[Any] = []
        cursor = None
        while True:
            page = self.get(path, **params, limit=500, **({"cursor": cursor} if cursor else {}))
            items += page.get("items") or []
            cursor = page.get("next_cursor")
            if not cursor:
                return items

    def shopify_webhook(
        self, topic: str, payload: dict[str, Any], secret: str, shop_domain: str
    ) -> Any:
        body = json.dumps(payload, ensure_ascii=False).encode()
        return self._call(
            "POST",
            "/webhooks/shopify",
            data=body,
            headers={
                "Content-Type": "application/json",
                "X-Shopify-Topic": topic,
                "X-Shopify-Hmac-Sha256": sign_shopify(body, secret),
                "X-Shopify-Webhook-Id": str(uuid.uuid4()),
                "X-Shopify-Triggered-At": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "X-Shopify-Shop-Domain": shop_domain,
            },
        )

    def logistics_event(self, event: dict[str, Any], secret: str) -> Any:
        body = json.dumps(event).encode()
        return self._call(
            "POST",
            "/logistics/events",
            data=body,
            headers={
                "Content-Type": "application/json",
                "X-Signature": sign_generic(body, secret, int(time.time())),
            },
        )
