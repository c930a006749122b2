"""The built-in segments as SQL (`crm_analytics.sql`), run by DuckDB over a Parquet snapshot in
the layout of docs/analytics.md, held equal to the pandas computation (`segments.segment`,
itself held to the contract's words in test_segments.py) on the same generated orders, every
column of every customer; and written only in SQL that Athena (Trino) reads too."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crm_analytics.segments import Thresholds, segment
from crm_analytics.sql import (
    COLUMNS,
    as_segments,
    orders_source_duckdb,
    run_duckdb,
    segment_sql,
)
from tests.unit.test_segments import AS_OF, generated_orders

SNAPSHOT_SCHEMA = pa.schema(
    [
        ("order_id", pa.string()),
        ("customer_id", pa.string()),
        ("source", pa.string()),
        ("currency", pa.string()),
        ("placed_at", pa.string()),
        ("day", pa.date32()),
        ("paid", pa.bool_()),
        ("cancelled", pa.bool_()),
        ("total", pa.int64()),
        ("refunded", pa.int64()),
        ("country_code", pa.string()),
        ("province", pa.string()),
    ]
)
# Every threshold moved off its default, and an as_of that leaves more orders in its future.
SHOP_THRESHOLDS = Thresholds(
    churned_after_days=200,
    at_risk_after_days=45,
    loyal_orders_in_window=3,
    new_within_days=20,
    window_days=180,
    high_value_share=70,
    mid_value_share=90,
)
CASES = {
    "defaults": (AS_OF, Thresholds()),
    "shop_thresholds": (AS_OF - timedelta(days=150), SHOP_THRESHOLDS),
}


def write_snapshot(orders: list[dict], root: Path) -> Path:
    """`orders/date=YYYY-MM-DD/part-0.parquet`, one file per day the orders were placed."""
    by_day: dict[date, list[dict]] = {}
    for n, o in enumerate(orders):
        row = {
            "order_id": f"ord_{n:06d}",
            "customer_id": o["customer_id"],
            "source": "shopify",
            "currency": "DKK",
            "placed_at": f"{o['day'].isoformat()}T12:00:00+01:00",
            "day": o["day"],
            "paid": o["paid"],
            "cancelled": o["cancelled"],
            "total": o["total"],
            "refunded": o["refunded"],
            "country_code": "DK",
            "province": None,
        }
        by_day.setdefault(o["day"], []).append(row)
    for day, rows in by_day.items():
        partition = root / "orders" / f"date={day.isoformat()}"
        partition.mkdir(parents=True)
        table = pa.Table.from_pylist(rows, schema=SNAPSHOT_SCHEMA)
        pq.write_table(table, partition / "part-0.parquet", compression="zstd")
    return root


@pytest.fixture(scope="module", params=[1, 2, 3], ids=lambda seed: f"seed{seed}")
def shop(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[list[dict], Path]]:
    orders = generated_orders(request.param)
    yield orders, write_snapshot(orders, tmp_path_factory.mktemp("snapshot"))


@pytest.mark.parametrize("case", CASES)
def test_the_sql_on_the_snapshot_equals_the_pandas_segments(
    shop: tuple[list[dict], Path], case: str
) -> None:
    # Given a shop's orders (ties, refunds, cancellations, unpaid and later orders) in the
    # snapshot's Parquet layout
    orders, root = shop
    as_of, thresholds = CASES[case]

    # When the segments are computed by the SQL on DuckDB
    got = run_duckdb(segment_sql(orders_source_duckdb(str(root)), as_of, thresholds))

    # Then they are the pandas computation's exactly: the same customers in the same order,
    # every column's values and dtypes
    want = segment(pd.DataFrame(orders), as_of, thresholds)
    pd.testing.assert_frame_equal(got, want)
    # And the data exercised every group, stage and band
    assert set(got["group"]) == {
        "champions",
        "loyal",
        "at_risk",
        "recent",
        "inactive",
        "needs_attention",
    }
    assert set(got["lifecycle"]) == {"new", "active", "returning", "loyal", "at_risk", "churned"}
    assert set(got["value_band"].dropna()) == {"high_value", "mid_value", "low_value"}
    assert got["value_band"].isna().any()  # customers with no money in the window


def test_ties_share_a_score_and_the_80_20_head_is_the_shortest(tmp_path: Path) -> None:
    # Given four customers: two tied on everything, one far ahead in money
    day = AS_OF - timedelta(days=10)
    orders = [
        {
            "customer_id": c,
            "day": day,
            "paid": True,
            "cancelled": False,
            "total": total,
            "refunded": 0,
        }
        for c, total in (("a", 80_000), ("b", 10_000), ("c", 5_000), ("d", 5_000))
    ]
    write_snapshot(orders, tmp_path)

    # When segmented by the SQL
    got = run_duckdb(segment_sql(orders_source_duckdb(str(tmp_path)), AS_OF))

    # Then the ties share their score, and the bands are the contract's worked example
    assert got.loc["c", "m"] == got.loc["d", "m"] == 1
    assert got.loc["a", "m"] == 4
    assert got["value_band"].to_dict() == {
        "a": "high_value",
        "b": "mid_value",
        "c": "mid_value",
        "d": "low_value",
    }
    pd.testing.assert_frame_equal(got, segment(pd.DataFrame(orders), AS_OF))


def test_a_snapshot_without_orders_gives_no_row(tmp_path: Path) -> None:
    # Given a snapshot that holds no order yet (no orders/ at all, then an empty orders/)
    for layout in ("nothing", "empty orders/"):
        if layout == "empty orders/":
            (tmp_path / "orders").mkdir()

        # When segmented by the SQL
        got = run_duckdb(segment_sql(orders_source_duckdb(str(tmp_path)), AS_OF))

        # Then no customer, and the columns are still those of the pandas frame
        assert got.empty, layout
        assert list(got.columns) == list(COLUMNS)
        assert got.index.name == "customer_id"


def test_orders_none_counted_gives_no_row(tmp_path: Path) -> None:
    # Given orders none of which counts: unpaid, cancelled, all refunded, after as_of
    base = {"customer_id": "a", "paid": True, "cancelled": False, "total": 100, "refunded": 0}
    orders = [
        {**base, "day": AS_OF, "paid": False},
        {**base, "day": AS_OF, "cancelled": True},
        {**base, "day": AS_OF - timedelta(days=1), "refunded": 100},
        {**base, "day": AS_OF + timedelta(days=1)},
    ]
    write_snapshot(orders, tmp_path)

    got = run_duckdb(segment_sql(orders_source_duckdb(str(tmp_path)), AS_OF))

    assert got.empty
    assert segment(pd.DataFrame(orders), AS_OF).empty


def test_a_table_name_is_queried_as_athena_queries_its_glue_table(
    shop: tuple[list[dict], Path],
) -> None:
    import duckdb

    # Given the snapshot's orders as a table (as Athena sees the Glue table over orders/)
    orders, root = shop
    with duckdb.connect(":memory:") as connection:
        source = orders_source_duckdb(str(root))
        connection.execute(f"CREATE TABLE orders AS SELECT * FROM {source}")  # noqa: S608

        # When the query names the table
        frame = connection.execute(segment_sql("orders", AS_OF)).df()

    # Then the result is the same
    pd.testing.assert_frame_equal(as_segments(frame), segment(pd.DataFrame(orders), AS_OF))


# DuckDB's own syntax that Trino does not read (or reads otherwise: `/` on integers).
DUCKDB_ONLY = {
    "::": r"::",
    "QUALIFY": r"\bQUALIFY\b",
    "FILTER": r"\bFILTER\s*\(",
    "//": r"//",
    "INTERVAL": r"\bINTERVAL\b",
    "EXCLUDE": r"\bEXCLUDE\b",
    "ILIKE": r"\bILIKE\b",
    "read_parquet": r"\bread_parquet\b",
    "integer division": r"[\w)]\s*/\s*[\w(]",
    "string concatenation by +": r"'\s*\+",
    "LIMIT ... OFFSET": r"\bOFFSET\b",
    "GROUP BY ALL": r"\bGROUP\s+BY\s+ALL\b",
    "list literal": r"\[",
}


@pytest.mark.parametrize("thresholds", [Thresholds(), SHOP_THRESHOLDS], ids=["defaults", "shop"])
def test_the_sql_holds_nothing_duckdb_only(thresholds: Thresholds) -> None:
    sql = segment_sql("crm.orders", AS_OF, thresholds)

    found = [name for name, pattern in DUCKDB_ONLY.items() if re.search(pattern, sql, re.I)]

    assert found == []
    # The dates are standard literals, the reserved word is quoted
    assert "DATE '2026-11-29'" in sql
    assert "date_diff('day', " in sql
    assert 'AS "group"' in sql


def test_thresholds_get_into_the_sql_only_as_integers() -> None:
    with pytest.raises(TypeError):
        segment_sql("orders", AS_OF, Thresholds(window_days="365) OR (1=1"))  # type: ignore[arg-type]


def test_the_source_of_a_snapshot(tmp_path: Path) -> None:
    # An s3 prefix gives the same expression (read by DuckDB only with httpfs, which is not
    # here offline: in the cloud the query runs on Athena)
    assert orders_source_duckdb("s3://shop-data/analytics/snapshot/") == (
        "read_parquet('s3://shop-data/analytics/snapshot/orders/**/*.parquet', "
        "hive_partitioning = true)"
    )
    # A quote in a path cannot end the literal
    odd = tmp_path / "it's"
    write_snapshot(generated_orders(4, customers=20), odd)
    assert "it''s" in orders_source_duckdb(str(odd))
    assert not run_duckdb(segment_sql(orders_source_duckdb(str(odd)), AS_OF)).empty
    # A snapshot directory that is not there is a mistake, not an empty shop
    with pytest.raises(FileNotFoundError):
        orders_source_duckdb(str(tmp_path / "missing"))
