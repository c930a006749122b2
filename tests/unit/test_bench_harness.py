"""The benchmarks' instrument is itself tested: `bench.calls.CallCounter` must count every AWS
call, made by boto3 or by PynamoDB (which builds its own botocore sessions), exactly once.
No timing is asserted here: speed is measured under bench/, never in the tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import botocore.session
import pytest
from pynamodb.attributes import UnicodeAttribute
from pynamodb.models import Model

from bench.calls import CallCounter

TABLE = "bench-harness-things"
REGION = "us-east-1"


class Thing(Model):
    class Meta:
        table_name = TABLE
        region = REGION

    key = UnicodeAttribute(hash_key=True)
    value = UnicodeAttribute(null=True)


@pytest.fixture
def moto_dynamodb(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from moto import mock_aws

    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    Thing._connection = None
    with mock_aws():
        boto3.client("dynamodb", region_name=REGION).create_table(
            TableName=TABLE,
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "key", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "key", "AttributeType": "S"}],
        )
        yield
    Thing._connection = None


def test_counts_boto3_and_pynamodb_calls_by_operation(moto_dynamodb: None) -> None:
    with CallCounter() as counter:
        ddb = boto3.client("dynamodb", region_name=REGION)
        with counter.measure() as tally:
            ddb.put_item(TableName=TABLE, Item={"key": {"S": "a"}, "value": {"S": "1"}})
            ddb.get_item(TableName=TABLE, Key={"key": {"S": "a"}})
            assert Thing.get("a").value == "1"  # PynamoDB: its own session and client

    assert tally.total == 3
    assert tally.breakdown() == {"dynamodb.GetItem": 2, "dynamodb.PutItem": 1}
    assert sum(tally.sends.values()) == 3
    assert tally.aws_seconds > 0
    assert counter.clients_seen == 2


def test_measure_counts_only_its_block_and_failed_calls_count(moto_dynamodb: None) -> None:
    with CallCounter() as counter:
        ddb = boto3.client("dynamodb", region_name=REGION)
        ddb.put_item(TableName=TABLE, Item={"key": {"S": "before"}})
        with counter.measure() as tally:
            with pytest.raises(Thing.DoesNotExist):
                Thing.get("missing")
            with pytest.raises(ddb.exceptions.ResourceNotFoundException):
                ddb.get_item(TableName="no-such-table", Key={"key": {"S": "a"}})

    assert tally.breakdown() == {"dynamodb.GetItem": 2}
    assert counter.calls["dynamodb.PutItem"] == 1


def test_uninstall_restores_botocore_and_stops_counting(moto_dynamodb: None) -> None:
    original = botocore.session.Session.create_client
    with CallCounter() as counter:
        assert botocore.session.Session.create_client is not original
        ddb = boto3.client("dynamodb", region_name=REGION)
    assert botocore.session.Session.create_client is original

    ddb.get_item(TableName=TABLE, Key={"key": {"S": "a"}})  # a client it had hooked
    boto3.client("dynamodb", region_name=REGION).get_item(TableName=TABLE, Key={"key": {"S": "a"}})
    assert counter.calls == {}


# -- bench/ stands on its own ------------------------------------------------------------------


def test_bench_imports_nothing_from_tests() -> None:
    import ast

    bench_dir = Path(__file__).resolve().parents[2] / "bench"
    imported = []
    for path in sorted(bench_dir.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.append((path.name, node.module))
            elif isinstance(node, ast.Import):
                imported += [(path.name, alias.name) for alias in node.names]
    assert imported
    assert [(f, m) for f, m in imported if m == "tests" or m.startswith("tests.")] == []


# -- verdicts: a target is judged only on operations that all succeeded -------------------------


def test_a_verdict_is_ok_or_missed_only_when_every_operation_succeeded() -> None:
    from bench.common import verdict

    assert verdict(True) == "OK"
    assert verdict(False) == "MISSED"
    assert verdict(None) == ""  # no target, nothing failed: no verdict
    # A webhook that fails early makes fewer calls: its figure meets the target, and says
    # nothing.
    assert verdict(True, failed=2, sample="duplicate answered 401") == (
        "FAILED (2 failed, e.g. duplicate answered 401)"
    )
    assert verdict(False, failed=1, sample="500").startswith("FAILED")
    assert verdict(None, failed=1, sample="500").startswith("FAILED")


def test_failures_count_operations_and_keep_the_first_failure_seen() -> None:
    from bench.common import Failures, judged

    failures = Failures()
    assert failures.check(True, "201")
    assert not failures.check(False, "first POST answered 500")
    failures.check(False, "first POST answered 503")
    assert failures.as_dict() == {
        "operations": 3,
        "failed": 2,
        "sample": "first POST answered 500",
    }
    both = Failures().add({"operations": 4, "failed": 0, "sample": None}).add(failures)
    assert (both.operations, both.failed, both.sample) == (7, 2, "first POST answered 500")
    assert judged(True, both.as_dict()) == "FAILED (2 failed, e.g. first POST answered 500)"
    assert judged(True, Failures().as_dict()) == "OK"
    assert judged(True, None) == "OK"


# -- bench/RESULTS.md -------------------------------------------------------------------------


def test_a_benchmark_is_failed_if_any_row_failed_else_missed_if_any_missed() -> None:
    from bench.report import overall

    assert overall(["OK", "", "MISSED", "FAILED (1 failed, e.g. 500)"]) == "FAILED"
    assert overall(["OK", "MISSED", ""]) == "MISSED"
    assert overall(["OK", ""]) == "OK"
    assert overall(["", ""]) == "-"


def test_the_results_file_is_rendered_from_the_summary_with_its_load() -> None:
    from bench.report import render

    summary = {
        "machine": {"at": "2026-01-01T00:00:00+00:00", "python": "3.11", "cpus": 2},
        "ran": ["orders"],
        "seconds": 12.0,
        "table": [
            {
                "benchmark": "orders",
                "figure": "calls duplicate",
                "value": "1 [BatchGetItem]",
                "target": "== 1 call (a read)",
                "verdict": "FAILED (1 failed, e.g. duplicate answered 401)",
            }
        ],
        "results": {
            "orders": {"machine": {"at": "2026-01-01T00:00:00+00:00", "loadavg": [1, 2, 3]}}
        },
    }
    text = render(summary)
    assert "| [orders](#orders) | FAILED | 2026-01-01T00:00:00+00:00 | 1.00, 2.00, 3.00 |" in text
    assert "| calls duplicate | 1 [BatchGetItem] | == 1 call (a read) | FAILED (1 failed" in text


# -- cold start --------------------------------------------------------------------------------


def test_cold_start_reads_every_non_http_lambda_and_its_entry_module_from_app_py(
    tmp_path: Path,
) -> None:
    from bench.cold_start import lambda_handlers

    app_py = tmp_path / "app.py"
    app_py.write_text(
        "from chalice import Chalice\n"
        "app = Chalice(app_name='x')\n"
        "@app.route('/a')\n"
        "def a():\n"
        "    from functions import profiles\n"
        "@app.authorizer()\n"
        "def operator(auth_request):\n"
        "    pass\n"
        "@app.lambda_function(name='step')\n"
        "def step_handler(event, context):\n"
        "    from functions import fulfilment\n"
        "    return fulfilment.step(event, context)\n"
        "@app.schedule('rate(1 hour)')\n"
        "def nightly(event):\n"
        "    import functions.ledger\n"
        "@app.on_s3_event(bucket='b')\n"
        "def dropped(event):\n"
        "    from functions.imports import import_file\n",
        encoding="utf-8",
    )
    assert lambda_handlers(app_py) == [
        {
            "lambda": "step",
            "handler": "app.step_handler",
            "trigger": "lambda_function",
            "entry_modules": ["functions.fulfilment"],
        },
        {
            "lambda": "nightly",
            "handler": "app.nightly",
            "trigger": "schedule",
            "entry_modules": ["functions.ledger"],
        },
        {
            "lambda": "dropped",
            "handler": "app.dropped",
            "trigger": "on_s3_event",
            "entry_modules": ["functions.imports"],
        },
    ]


def test_a_benchmarks_own_note_is_shown_next_to_it() -> None:
    from bench.report import render

    summary = {
        "machine": {"at": "2026-01-01T00:00:00+00:00"},
        "ran": ["segmentation"],
        "table": [],
        "results": {
            "segmentation": {
                "machine": {"at": "2026-01-01T00:00:00+00:00", "loadavg": [1, 1, 1]},
                "note": "write-back measured at 20,000 customers instead of 100,000",
            }
        },
    }
    row = next(line for line in render(summary).splitlines() if "(#segmentation)" in line)
    assert row.endswith("| write-back measured at 20,000 customers instead of 100,000 |")


# -- segmentation ------------------------------------------------------------------------------


def test_the_generated_shop_is_a_snapshot_that_segments_alike_in_pandas_and_duckdb(
    tmp_path: Path,
) -> None:
    import pyarrow.parquet as pq

    from bench.segmentation import AS_OF, _canonical, _digest, generate
    from crm_analytics.segments import segment
    from crm_analytics.snapshot import CUSTOMER_COLUMNS, ORDER_COLUMNS
    from crm_analytics.sql import orders_source_duckdb, run_duckdb, segment_sql

    made = generate(tmp_path, customers=500, orders=5000, seed=3)

    days = sorted(p.name for p in (tmp_path / "orders").iterdir())
    assert len(days) == made["order_partitions"] and days[-1] <= f"date={AS_OF.isoformat()}"
    orders = pq.read_table(tmp_path / "orders").to_pandas()
    assert len(orders) == 5000 and orders["order_id"].is_unique
    assert all(str(d) == str(p) for d, p in zip(orders["day"], orders["date"], strict=True))
    (customers_file,) = (tmp_path / "customers").rglob("*.parquet")
    customers = pq.read_table(customers_file).to_pandas()
    assert pq.read_schema(customers_file).names == list(CUSTOMER_COLUMNS)
    one_day = next((tmp_path / "orders").rglob("*.parquet"))
    assert pq.read_schema(one_day).names == list(ORDER_COLUMNS)
    assert len(customers) == 500 and set(orders["customer_id"]) <= set(customers["customer_id"])

    pandas_side = segment(orders.drop(columns="date"), AS_OF)
    duckdb_side = run_duckdb(segment_sql(orders_source_duckdb(str(tmp_path)), AS_OF))
    assert len(pandas_side) == made["customers_with_counted_orders"]
    assert _digest(_canonical(pandas_side)) == _digest(_canonical(duckdb_side))
    stats = customers.set_index("customer_id")["orders_count"]
    assert (stats.reindex(pandas_side.index) == pandas_side["frequency"]).all()
