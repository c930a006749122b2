"""The `crm` operator commands against a running local stack: `crm import` drops a file and
prints the report, `crm jobs run` runs a job, `crm demo` loads the sample shop.

This module has a stack of its own (started as `conftest.start_stack` starts every stack): the
demo's Shopify orders (ids `5...`) and stock would otherwise land in the stack other modules
count orders and cases in."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest
import requests
from typer.testing import CliRunner

from crm_local.cli import cli
from crm_local.demo_data import generate
from tests.e2e.conftest import OPERATOR, RunningStack, start_stack

pytestmark = pytest.mark.e2e

DEMO_CUSTOMERS = 60


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    running = start_stack(tmp_path_factory.mktemp("cli-stack") / "crm-local.log")
    try:
        yield running
    finally:
        running.stop()


def crm(stack: RunningStack, *args: str) -> Any:
    return CliRunner().invoke(
        cli,
        list(args),
        env={
            "COLUMNS": "200",
            "CRM_API_PORT": stack.api_url.rsplit(":", 1)[1],
            "CRM_AWS_PORT": stack.aws_url.rsplit(":", 1)[1],
            "AWS_ENDPOINT_URL": None,  # unset: the ports above say where the stack is
        },
    )


def rows_of(output: str) -> dict[str, str]:
    """The report table's rows: `│ created │ 2 │` -> {"created": "2"}."""
    found = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) == 2:
            found[cells[0]] = cells[1]
    return found


def test_import_prints_the_report_and_the_bad_rows(stack: RunningStack, tmp_path) -> None:
    file = tmp_path / "shop customers.csv"
    file.write_text(
        "email,phone,first_name,last_name\n"
        "cli.one@shop.example,13900139011,One,Li\n"
        "not-an-email,,Bad,Row\n"
        "cli.two@shop.example,,Two,Wang\n",
        encoding="utf-8",
    )
    result = crm(stack, "import", str(file), "--kind", "customers", "--name", "cli-e2e.csv")
    assert result.exit_code == 0, result.output
    assert "Import of incoming/customers/cli-e2e.csv" in result.output
    rows = rows_of(result.output)
    assert (rows["status"], rows["rows"], rows["created"], rows["failed"]) == (
        "done",
        "3",
        "2",
        "1",
    )
    assert rows["errors file"] == "results/customers/cli-e2e.csv.errors.csv"
    assert "First lines of results/customers/cli-e2e.csv.errors.csv:" in result.output
    assert '2,"not-an-email,,Bad,Row",email: invalid_email' in result.output

    # The same file again: a new report (not the first one, still there), nothing changes.
    again = crm(stack, "import", str(file), "--kind", "customers", "--name", "cli-e2e.csv")
    assert again.exit_code == 0, again.output
    rows = rows_of(again.output)
    assert (rows["created"], rows["unchanged"], rows["failed"]) == ("0", "2", "1")
    found = requests.get(
        f"{stack.api_url}/customers",
        params={"email": "cli.two@shop.example"},
        headers=OPERATOR,
        timeout=10,
    ).json()["items"]
    assert found and found[0]["last_name"] == "Wang"


def test_jobs_run_low_stock_prints_its_summary(stack: RunningStack) -> None:
    result = crm(stack, "jobs", "run", "low_stock")
    assert result.exit_code == 0, result.output
    assert "low_stock ran in" in result.output and "shop-crm-local-low_stock" in result.output
    assert {"checked", "below_safety", "alerted"} <= set(rows_of(result.output))


def test_jobs_run_segmentation_for_a_day_waits_for_its_end(stack: RunningStack) -> None:
    day = (date.today() - timedelta(days=3)).isoformat()
    result = crm(stack, "jobs", "run", "segmentation", "--as-of", day)
    assert result.exit_code == 0, result.output
    assert "segmentation ran in" in result.output
    assert '"status": "succeeded"' in result.output and f'"as_of": "{day}"' in result.output
    refused = crm(stack, "jobs", "run", "segmentation", "--as-of", "2026-02-30")
    assert refused.exit_code != 0


def test_the_demo_loads_the_shop_and_walks_through_a_day(stack: RunningStack) -> None:
    result = crm(stack, "demo", "--customers", str(DEMO_CUSTOMERS))
    assert result.exit_code == 0, result.output
    output = result.output
    assert f"Using the stack at {stack.api_url}" in output
    shop = generate(seed=7, customers=DEMO_CUSTOMERS, today=date.today())
    summary = rows_of(output)
    assert summary["Customers imported"].startswith(f"{DEMO_CUSTOMERS} ({DEMO_CUSTOMERS} created")
    assert summary["Orders imported"].startswith(f"{len(shop.orders)} orders")
    assert summary["Live orders accepted"].startswith(
        f"{len(shop.live_orders)} of {len(shop.live_orders)} today"
    )
    assert summary["Delivered today"].startswith("3 orders")
    for line in ("Points of the 5 best customers", "Open cases", "Messages sent", "Bad rows"):
        assert line in summary, line
    assert f"{len(shop.bad_customer_rows)} in customers.csv" in summary["Bad rows"]
    for kind in set(shop.bad_customer_rows.values()):
        assert kind in output
    assert "Demo done in" in output
    # And the shop's segments, its 80/20 split and its top predicted customers
    assert "Segments as of" in output and "rfm_champions" in output
    assert "80/20" in output and "of its revenue" in output
    assert "Top 5 predicted customers" in output or "Predicted value: not fitted" in output

    # What the demo put in is in the stack: a customer of the generated file, by email.
    customer = next(c for c in shop.customers if c.email)
    found = requests.get(
        f"{stack.api_url}/customers", params={"email": customer.email}, headers=OPERATOR, timeout=10
    ).json()["items"]
    assert found and found[0]["external_ids"]["shopify"] == str(customer.customer_id)
