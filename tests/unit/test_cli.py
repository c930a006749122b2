"""`crm import`, `crm jobs run` and `crm demo` without a stack: usage errors, help, exit codes,
and the wait for the import report against a stand-in for S3."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from typer.testing import CliRunner

from crm_local import client
from crm_local.cli import cli

WIDE = {"COLUMNS": "200"}


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(cli, list(args), env={**WIDE, **(env or {})})


@pytest.fixture
def customers_csv(tmp_path: Path) -> Path:
    path = tmp_path / "customers.csv"
    path.write_text("email,first_name\nana@example.com,Ana\nnot-an-email,Bad\n")
    return path


def test_help_names_every_command() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("local", "import", "jobs", "demo"):
        assert command in result.output


def test_import_help_tells_the_kinds_and_the_exit_codes() -> None:
    result = invoke("import", "--help")
    assert result.exit_code == 0
    for needed in ("--kind", "customers, orders or inventory", "--aws-url", "--timeout", "--name"):
        assert needed in result.output
    assert "Exit code 0" in result.output


def test_jobs_and_demo_help() -> None:
    assert "Run a scheduled job now" in invoke("jobs", "run", "--help").output
    demo = invoke("demo", "--help")
    assert demo.exit_code == 0 and "--customers" in demo.output and "--seed" in demo.output


def test_an_unknown_kind_is_a_usage_error_in_one_line(customers_csv: Path) -> None:
    result = invoke("import", str(customers_csv), "--kind", "people")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "Error: unknown kind 'people': use one of customers, orders, inventory"
    )
    assert "Traceback" not in result.output


def test_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    result = invoke("import", str(tmp_path / "nope.csv"), "--kind", "customers")
    assert result.exit_code == 2
    assert "no such file" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_directory_or_a_file_type_the_drop_folder_refuses(tmp_path: Path) -> None:
    assert invoke("import", str(tmp_path), "--kind", "orders").exit_code == 2
    sheet = tmp_path / "stock.xlsx"
    sheet.write_bytes(b"PK")
    result = invoke("import", str(sheet), "--kind", "inventory")
    assert result.exit_code == 2 and ".csv, .txt, .jsonl or .ndjson" in result.stderr


def test_kind_is_required(customers_csv: Path) -> None:
    assert invoke("import", str(customers_csv)).exit_code == 2


def test_a_real_account_needs_the_bucket(customers_csv: Path) -> None:
    result = invoke("import", str(customers_csv), "--kind", "customers", "--cloud")
    assert result.exit_code == 2 and "--bucket" in result.stderr
    both = invoke(
        "import", str(customers_csv), "-k", "customers", "--cloud", "--aws-url", "http://x"
    )
    assert both.exit_code == 2


def test_an_unreachable_stack_is_one_line_without_a_traceback(customers_csv: Path) -> None:
    result = invoke(
        "import", str(customers_csv), "--kind", "customers", "--aws-url", "http://127.0.0.1:9"
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: cannot reach the AWS endpoint at http://127.0.0.1:9")
    assert "Traceback" not in result.output


def test_an_unknown_job_lists_the_known_ones() -> None:
    result = invoke("jobs", "run", "nightly_magic")
    assert result.exit_code == 2
    assert "unknown job 'nightly_magic'" in result.stderr
    assert "low_stock" in result.stderr and "points_expiry" in result.stderr


def test_the_jobs_are_the_schedules_the_app_declares() -> None:
    jobs = client.known_jobs()
    assert {"low_stock", "points_expiry"} <= set(jobs)
    assert jobs["points_expiry"].startswith("cron(")
    assert client.job_function("low_stock", "local") == "shop-crm-local-low_stock"
    listed = invoke("jobs", "list")
    assert listed.exit_code == 0 and "low_stock" in listed.output


def test_a_job_on_an_unreachable_stack() -> None:
    result = invoke("jobs", "run", "low_stock", "--aws-url", "http://127.0.0.1:9")
    assert result.exit_code == 1 and "cannot reach the AWS endpoint" in result.stderr


def test_the_demo_without_a_stack_and_nowhere_to_start_one() -> None:
    result = invoke("demo", "--api-url", "http://stack.invalid:8000")
    assert result.exit_code == 1
    assert "no stack answers at http://stack.invalid:8000" in result.stderr


def test_where_the_aws_endpoint_comes_from(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("CRM_AWS_PORT", raising=False)
    assert client.resolve_aws_url(None) == "http://127.0.0.1:4566"
    monkeypatch.setenv("CRM_AWS_PORT", "4999")
    assert client.resolve_aws_url(None) == "http://127.0.0.1:4999"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://elsewhere:4566")
    assert client.resolve_aws_url(None) == "http://elsewhere:4566"
    assert client.resolve_aws_url("http://given:1") == "http://given:1"
    assert client.resolve_aws_url("") is None
    assert client.resolve_aws_url(None, cloud=True) is None


def test_keys_of_a_drop() -> None:
    key = client.drop_key("customers", "shop export.csv")
    assert key == "incoming/customers/shop export.csv"
    assert client.results_key(key, "report.json") == (
        "results/customers/shop export.csv.report.json"
    )


# -- the import against a stand-in for S3 ---------------------------------------------------


class FakeS3:
    """Enough of S3 for `crm import`; `on_upload(key)` plays the import."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, datetime, str]] = {}
        self.on_upload = lambda key: None
        self.clock = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
        self.versions = 0

    def put(self, key: str, body: bytes) -> None:
        self.clock += timedelta(seconds=1)
        self.versions += 1
        self.objects[key] = (body, self.clock, f'"v{self.versions}"')

    def _missing(self, operation: str) -> ClientError:
        return ClientError({"Error": {"Code": "404", "Message": "Not Found"}}, operation)

    def head_bucket(self, Bucket: str) -> dict[str, Any]:
        return {}

    def head_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        if Key not in self.objects:
            raise self._missing("HeadObject")
        _, modified, etag = self.objects[Key]
        return {"ETag": etag, "LastModified": modified}

    def get_object(self, Bucket: str, Key: str, Range: str | None = None) -> dict[str, Any]:
        import io

        return {"Body": io.BytesIO(self.objects[Key][0])}

    def upload_file(self, filename: str, bucket: str, key: str, Callback: Any) -> None:
        body = Path(filename).read_bytes()
        Callback(len(body))
        self.put(key, body)
        self.on_upload(key)


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> FakeS3:
    fake = FakeS3()
    monkeypatch.setattr(client, "aws_client", lambda service, endpoint, **kw: fake)
    monkeypatch.setattr(client, "POLL_SECONDS", 0.01)
    return fake


def report(status: str = "done", **counts: Any) -> bytes:
    body = {"status": status, "rows": 2, "created": 1, "updated": 0, "unchanged": 0}
    return json.dumps({**body, "failed": 1, "chunks": 1, "errors_file": None, **counts}).encode()


def test_the_report_and_the_head_of_the_error_file(s3: FakeS3, customers_csv: Path) -> None:
    def imported(key: str) -> None:
        errors = "results/customers/customers.csv.errors.csv"
        s3.put(
            errors, "\ufeffrow,original,reason\r\n2,not-an-email,email: invalid_email\r\n".encode()
        )
        s3.put("results/customers/customers.csv.report.json", report(errors_file=errors))
        del s3.objects[key]  # archived

    s3.on_upload = imported
    result = invoke("import", str(customers_csv), "--kind", "customers")
    assert result.exit_code == 0, result.output
    assert "Import of incoming/customers/customers.csv" in result.output
    assert "2,not-an-email,email: invalid_email" in result.output
    assert "row,original,reason" in result.output


def test_an_earlier_report_of_the_same_path_is_not_taken_for_the_new_one(
    s3: FakeS3, customers_csv: Path
) -> None:
    s3.put("results/customers/again.csv.report.json", report(created=9))
    result = invoke(
        "import", str(customers_csv), "-k", "customers", "--name", "again.csv", "--timeout", "0.3"
    )
    assert result.exit_code == 1
    assert "no report for incoming/customers/again.csv after 0.3 s" in result.stderr

    s3.on_upload = lambda key: s3.put("results/customers/again.csv.report.json", report())
    assert (
        invoke("import", str(customers_csv), "-k", "customers", "--name", "again.csv").exit_code
        == 0
    )


def test_a_failed_import_exits_1(s3: FakeS3, customers_csv: Path) -> None:
    s3.on_upload = lambda key: s3.put(
        "results/orders/customers.csv.report.json",
        report("failed", error="the table is gone", resume="put the same file again"),
    )
    result = invoke("import", str(customers_csv), "--kind", "orders")
    assert result.exit_code == 1
    assert "the table is gone" in result.output and "failed" in result.stderr
