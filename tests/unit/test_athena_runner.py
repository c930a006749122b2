"""`crm_analytics.athena.run_athena`: start, poll, page the results into a typed frame.

moto's Athena answers SUCCEEDED without running any SQL, so moto checks the control flow only
(the calls and their parameters, results it is told to give); a stubbed client checks the
paging, the types and the ends other than success. The SQL itself is checked on DuckDB
(test_segments_sql.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pytest
from botocore.stub import Stubber

from crm_analytics import athena
from crm_analytics.athena import AthenaQueryFailed, AthenaQueryTimedOut, run_athena

REGION = "us-east-1"
PLACE = {"database": "crm", "workgroup": "analytics", "output_location": "s3://results/q/"}
QUERY_ID = "11111111-2222-3333-4444-555555555555"


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    athena._client.cache_clear()
    yield
    athena._client.cache_clear()


def column(name: str, kind: str) -> dict[str, Any]:
    return {"Name": name, "Label": name, "Type": kind, "Nullable": "UNKNOWN"}


def row(*values: str | None) -> dict[str, Any]:
    return {"Data": [{} if v is None else {"VarCharValue": v} for v in values]}


def test_importing_the_runner_loads_no_aws_sdk() -> None:
    # In a fresh interpreter: this one has boto3 loaded by the other tests already
    layer = Path(__file__).resolve().parents[2] / "layers" / "analytics" / "python"
    probe = "import sys, crm_analytics.athena; print('boto3' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, "PYTHONPATH": str(layer)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "False"


def test_with_moto_the_query_is_started_where_asked_and_its_state_followed(
    credentials: None,
) -> None:
    import requests
    from moto import mock_aws

    with mock_aws():
        # Given the workgroup, and moto told which rows the next query gives
        boto3.client("athena").create_work_group(Name="analytics", Configuration={})
        requests.post(
            "http://motoapi.amazonaws.com/moto-api/static/athena/query-results",
            json={
                "region": REGION,
                "results": [
                    {
                        "rows": [row("customer_id", "frequency"), row("cus_00001", "3")],
                        "column_info": [
                            column("customer_id", "varchar"),
                            column("frequency", "bigint"),
                        ],
                    }
                ],
            },
            timeout=5,
        ).raise_for_status()

        # When a query runs (the client made by the runner itself)
        frame = run_athena("SELECT customer_id, frequency FROM orders", poll_seconds=0, **PLACE)

        # Then Athena was asked in the database, workgroup and output place given
        client = boto3.client("athena")
        [query_id] = client.list_query_executions(WorkGroup="analytics")["QueryExecutionIds"]
        execution = client.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
        assert execution["Query"] == "SELECT customer_id, frequency FROM orders"
        assert execution["QueryExecutionContext"] == {"Database": "crm"}
        assert execution["ResultConfiguration"]["OutputLocation"].startswith("s3://results/q/")
        # And the rows are read back typed, without the header row
        assert frame.to_dict("records") == [{"customer_id": "cus_00001", "frequency": 3}]
        assert frame["frequency"].dtype == "int64"

        # And a query with no rows gives an empty frame
        assert run_athena("SELECT 1", poll_seconds=0, **PLACE).empty


def stubbed() -> tuple[Any, Stubber]:
    client = boto3.client("athena", region_name=REGION)
    return client, Stubber(client)


def expect_start(stub: Stubber, sql: str) -> None:
    stub.add_response(
        "start_query_execution",
        {"QueryExecutionId": QUERY_ID},
        {
            "QueryString": sql,
            "QueryExecutionContext": {"Database": "crm"},
            "WorkGroup": "analytics",
            "ResultConfiguration": {"OutputLocation": "s3://results/q/"},
        },
    )


def expect_state(stub: Stubber, state: str, reason: str | None = None) -> None:
    status: dict[str, Any] = {"State": state}
    if reason:
        status["StateChangeReason"] = reason
    stub.add_response(
        "get_query_execution",
        {"QueryExecution": {"QueryExecutionId": QUERY_ID, "Status": status}},
        {"QueryExecutionId": QUERY_ID},
    )


def test_rows_are_paged_and_typed_as_the_query_declares(credentials: None) -> None:
    # Given a query that waits in the queue, runs, succeeds, and answers on two pages
    client, stub = stubbed()
    sql = "SELECT * FROM segments"
    expect_start(stub, sql)
    for state in ("QUEUED", "RUNNING", "SUCCEEDED"):
        expect_state(stub, state)
    columns = [
        column("customer_id", "varchar"),
        column("monetary", "bigint"),
        column("value_band", "varchar"),
        column("p_alive", "double"),
        column("consents_sms", "boolean"),
    ]
    stub.add_response(
        "get_query_results",
        {
            "ResultSet": {
                "Rows": [
                    row("customer_id", "monetary", "value_band", "p_alive", "consents_sms"),
                    row("cus_1", "9223372036854775807", "high_value", "0.25", "true"),
                ],
                "ResultSetMetadata": {"ColumnInfo": columns},
            },
            "NextToken": "page-2",
        },
        {"QueryExecutionId": QUERY_ID},
    )
    stub.add_response(
        "get_query_results",
        {
            "ResultSet": {
                "Rows": [row("cus_2", "0", None, None, "false")],
                "ResultSetMetadata": {"ColumnInfo": columns},
            }
        },
        {"QueryExecutionId": QUERY_ID, "NextToken": "page-2"},
    )

    # When it runs
    with stub:
        frame = run_athena(sql, client=client, poll_seconds=0, **PLACE)
        stub.assert_no_pending_responses()

    # Then both pages are in, the header once only, each column of its declared type: money a
    # whole number to its last digit, a missing text None, a missing double NaN
    assert list(frame.columns) == [
        "customer_id",
        "monetary",
        "value_band",
        "p_alive",
        "consents_sms",
    ]
    assert frame.dtypes.astype(str).to_dict() == {
        "customer_id": "object",
        "monetary": "int64",
        "value_band": "object",
        "p_alive": "float64",
        "consents_sms": "bool",
    }
    assert frame["customer_id"].tolist() == ["cus_1", "cus_2"]
    assert frame["monetary"].tolist() == [9223372036854775807, 0]
    assert frame["value_band"].tolist() == ["high_value", None]
    assert frame["p_alive"].iloc[0] == 0.25 and pd.isna(frame["p_alive"].iloc[1])
    assert frame["consents_sms"].tolist() == [True, False]


def test_a_missing_whole_number_keeps_the_others_whole(credentials: None) -> None:
    client, stub = stubbed()
    expect_start(stub, "SELECT n")
    expect_state(stub, "SUCCEEDED")
    stub.add_response(
        "get_query_results",
        {
            "ResultSet": {
                "Rows": [row("n"), row("7"), row(None)],
                "ResultSetMetadata": {"ColumnInfo": [column("n", "bigint")]},
            }
        },
        {"QueryExecutionId": QUERY_ID},
    )
    with stub:
        frame = run_athena("SELECT n", client=client, poll_seconds=0, **PLACE)
    assert frame["n"].dtype == "Int64"
    assert frame["n"].iloc[0] == 7 and frame["n"].isna().iloc[1]


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        ("FAILED", "COLUMN_NOT_FOUND: line 1:8: Column 'x' cannot be resolved"),
        ("CANCELLED", "Query was cancelled by the user"),
    ],
)
def test_a_query_that_fails_says_why(credentials: None, state: str, reason: str) -> None:
    client, stub = stubbed()
    expect_start(stub, "SELECT x")
    expect_state(stub, "RUNNING")
    expect_state(stub, state, reason)

    with stub, pytest.raises(AthenaQueryFailed) as failed:
        run_athena("SELECT x", client=client, poll_seconds=0, **PLACE)

    assert failed.value.state == state
    assert failed.value.reason == reason
    assert failed.value.query_execution_id == QUERY_ID
    assert reason in str(failed.value) and QUERY_ID in str(failed.value)


def test_a_query_that_does_not_end_in_time_is_stopped(credentials: None) -> None:
    # Given a query that is still running at the deadline
    client, stub = stubbed()
    expect_start(stub, "SELECT slow")
    expect_state(stub, "RUNNING")
    stub.add_response("stop_query_execution", {}, {"QueryExecutionId": QUERY_ID})

    # When it is run with no time to spare
    with stub, pytest.raises(AthenaQueryTimedOut) as late:
        run_athena("SELECT slow", client=client, poll_seconds=0, timeout_seconds=0, **PLACE)

    # Then it was stopped (it costs no more) and the error says in which state it was
    stub.assert_no_pending_responses()
    assert isinstance(late.value, TimeoutError)
    assert "RUNNING" in str(late.value)
