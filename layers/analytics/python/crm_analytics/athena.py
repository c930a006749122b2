"""Run one query on Athena and read its result into a frame: how a job runs `segment_sql` (or
any report query) over the snapshot's Glue tables in the cloud.

Athena answers asynchronously: the query is started, its state polled until it ends, then its
rows paged. Every value comes back as text; the types the query declares give each column
its dtype, so a BIGINT of money is an int64 again, never a float.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

ENDED = ("SUCCEEDED", "FAILED", "CANCELLED")
WHOLE_TYPES = ("tinyint", "smallint", "integer", "int", "bigint")
REAL_TYPES = ("double", "float", "real")


class AthenaQueryFailed(RuntimeError):
    """The query ended otherwise than SUCCEEDED; `reason` is Athena's own words."""

    def __init__(self, query_execution_id: str, state: str, reason: str) -> None:
        super().__init__(f"Athena query {query_execution_id} {state}: {reason}")
        self.query_execution_id = query_execution_id
        self.state = state
        self.reason = reason


class AthenaQueryTimedOut(AthenaQueryFailed, TimeoutError):
    """The query did not end in time; it has been asked to stop, so it costs no more."""


@lru_cache(maxsize=1)
def _client() -> Any:
    import boto3

    return boto3.client("athena")


def run_athena(
    sql: str,
    *,
    database: str,
    workgroup: str,
    output_location: str,
    client: Any = None,
    poll_seconds: float = 1.0,
    timeout_seconds: float = 600.0,
) -> pd.DataFrame:
    """The rows of `sql`, one column per column of the query, typed by what it declares:
    whole-number types as int64 (the nullable Int64 when a value is missing), double as
    float64, boolean as bool (object when a value is missing), anything else (varchar, date,
    ...) as str or None. Raises `AthenaQueryFailed` when the query fails or is cancelled, and
    `AthenaQueryTimedOut` (after stopping it) when it has not ended in `timeout_seconds`."""
    athena = client if client is not None else _client()
    started = athena.start_query_execution(
        QueryString=sql,
        QueryExecutionContext={"Database": database},
        WorkGroup=workgroup,
        ResultConfiguration={"OutputLocation": output_location},
    )
    query_id = started["QueryExecutionId"]
    _wait(athena, query_id, poll_seconds=poll_seconds, timeout_seconds=timeout_seconds)
    return _results(athena, query_id)


def _wait(athena: Any, query_id: str, *, poll_seconds: float, timeout_seconds: float) -> None:
    deadline = time.monotonic() + timeout_seconds
    while True:
        status = athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]["Status"]
        state = status["State"]
        if state == "SUCCEEDED":
            return
        if state in ENDED:
            reason = status.get("StateChangeReason") or status.get("AthenaError", {}).get(
                "ErrorMessage", "no reason given"
            )
            raise AthenaQueryFailed(query_id, state, reason)
        if time.monotonic() >= deadline:
            athena.stop_query_execution(QueryExecutionId=query_id)
            raise AthenaQueryTimedOut(
                query_id, "TIMED_OUT", f"still {state} after {timeout_seconds:g} s; stopped"
            )
        time.sleep(poll_seconds)


def _results(athena: Any, query_id: str) -> pd.DataFrame:
    import pandas as pd

    columns: list[dict[str, Any]] = []
    rows: list[list[str | None]] = []
    pages = athena.get_paginator("get_query_results").paginate(QueryExecutionId=query_id)
    for number, page in enumerate(pages):
        result = page["ResultSet"]
        if number == 0:
            columns = result["ResultSetMetadata"]["ColumnInfo"]
        found = [[cell.get("VarCharValue") for cell in row["Data"]] for row in result["Rows"]]
        # A SELECT's first row is its header: the column names again, as text.
        if number == 0 and found and found[0] == [c["Name"] for c in columns]:
            found = found[1:]
        rows.extend(found)
    frame = pd.DataFrame(
        {
            c["Name"]: _typed([row[i] for row in rows], c["Type"].lower())
            for i, c in enumerate(columns)
        }
    )
    return frame


def _typed(values: list[str | None], kind: str) -> pd.Series:
    import pandas as pd

    if kind in WHOLE_TYPES:
        missing = any(v is None for v in values)
        whole = [None if v is None else int(v) for v in values]
        return pd.Series(whole, dtype="Int64" if missing else "int64")
    if kind in REAL_TYPES:
        return pd.Series([float("nan") if v is None else float(v) for v in values], dtype="float64")
    if kind == "boolean":
        truths = [None if v is None else v == "true" for v in values]
        return pd.Series(truths, dtype=object if None in truths else "bool")
    return pd.Series(values, dtype=object)
