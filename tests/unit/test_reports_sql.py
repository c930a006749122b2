"""The reports as SQL (`crm_analytics.report_sql`), run by DuckDB over a Parquet snapshot in the
layout of docs/analytics.md, held equal to the pandas reports (`crm_analytics.reports`, itself
held to the definitions in plain Python in test_reports.py) on the same data, dict for dict;
and written only in SQL that Athena (Trino) reads too."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from itertools import combinations
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crm_analytics.athena import _typed
from crm_analytics.report_sql import (
    INSTANT_PATTERN,
    customers_sql,
    loyalty_sql,
    report_via_sql,
    sales_sql,
)
from crm_analytics.reports import customers_report, loyalty, sales
from crm_analytics.snapshot import DATASETS
from crm_analytics.sql import DATASET_COLUMNS, duckdb_tables, query_duckdb, source_duckdb
from tests.unit.test_reports import (
    RANGES,
    expected_customers,
    expected_loyalty,
    expected_sales,
    generated,
    generated_points,
)
from tests.unit.test_reports import order as an_order
from tests.unit.test_segments_sql import DUCKDB_ONLY

SNAPSHOT_DAY = date(2026, 1, 2)
# As test_reports': the last day, mid-range, the first month, past the data, before it.
AS_OFS = [
    date(2025, 12, 31),
    date(2025, 6, 15),
    date(2024, 1, 31),
    date(2026, 3, 1),
    date(2023, 12, 31),
]
POINT_RANGES = [
    (None, None),
    (date(2024, 6, 1), date(2025, 5, 31)),
    (date(2025, 1, 1), None),
    (None, date(2024, 2, 29)),
    (date(2026, 1, 1), None),
]
Run = Callable[[str], pd.DataFrame]


# -- the snapshot on disk -----------------------------------------------------------------------


def write_dataset(root: Path, dataset: str, rows: list[dict], by_day: bool) -> None:
    """`<dataset>/date=YYYY-MM-DD/part-00000.parquet` as the snapshot writes it: orders and
    lines by the day they were placed, customers and points in the snapshot's date."""
    parts: dict[date, list[dict]] = {}
    for row in rows:
        parts.setdefault(row["day"] if by_day else SNAPSHOT_DAY, []).append(row)
    schema = pa.schema(list(DATASETS[dataset].items()))
    for day, part in parts.items():
        folder = root / dataset / f"date={day.isoformat()}"
        folder.mkdir(parents=True)
        table = pa.Table.from_pylist(part, schema=schema)
        pq.write_table(table, folder / "part-00000.parquet", compression="zstd")


def write_snapshot(
    root: Path,
    orders: Sequence[dict],
    lines: Sequence[dict] = (),
    customers: Sequence[dict] = (),
    points: Sequence[dict] = (),
) -> Path:
    write_dataset(root, "orders", list(orders), by_day=True)
    write_dataset(root, "order_lines", list(lines), by_day=True)
    write_dataset(root, "customers", list(customers), by_day=False)
    write_dataset(root, "points", list(points), by_day=False)
    return root


def read_back(root: Path, dataset: str) -> pd.DataFrame:
    """The dataset as `snapshot.read` gives it to the pandas reports: every file, concatenated;
    the dataset's typed empty frame when there is none."""
    files = sorted((root / dataset).rglob("*.parquet"))
    if not files:
        schema = pa.schema(list(DATASETS[dataset].items()))
        return pa.Table.from_pylist([], schema=schema).to_pandas()
    return pa.concat_tables([pq.read_table(f) for f in files]).to_pandas()


class Shop:
    def __init__(self, root: Path) -> None:
        self.orders, self.lines = generated(7)
        self.entries, self.customers = generated_points(11)
        self.root = write_snapshot(root, self.orders, self.lines, self.customers, self.entries)
        self.frames = {d: read_back(self.root, d) for d in DATASETS}
        self.tables = duckdb_tables(str(self.root))


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Shop:
    return Shop(tmp_path_factory.mktemp("snapshot"))


def as_athena_gives(frame: pd.DataFrame) -> pd.DataFrame:
    """DuckDB's rows as `athena.run_athena` types Athena's: every value through its text, whole
    numbers as int64 (Int64 with a NULL), the rest as str or None."""
    out = {}
    for name in frame.columns:
        column = frame[name]
        kind = "bigint" if pd.api.types.is_integer_dtype(column) else "varchar"
        texts = [None if pd.isna(v) else str(v) for v in column.astype(object)]
        out[name] = _typed(texts, kind)
    return pd.DataFrame(out, columns=list(frame.columns))


def athena_shaped(sql: str) -> pd.DataFrame:
    return as_athena_gives(query_duckdb(sql))


RUNS: dict[str, Run] = {"duckdb": query_duckdb, "athena-shaped": athena_shaped}


# -- sales --------------------------------------------------------------------------------------


@pytest.mark.parametrize("granularity", ["day", "week", "month"])
@pytest.mark.parametrize(("start", "end"), RANGES)
def test_sales_by_sql_is_the_pandas_report(
    shop: Shop, granularity: str, start: date, end: date
) -> None:
    # Given the generated shop (ties, refunds, cancellations, guests, missing provinces,
    # same-day orders at instants written with other offsets) as a Parquet snapshot
    params = {"from": start.isoformat(), "to": end.isoformat(), "granularity": granularity}

    # When the sales report is computed by SQL on DuckDB
    got = report_via_sql("sales", params, query_duckdb, shop.tables, "CNY", 2)

    # Then it is the pandas report on the same files, and the definitions' in plain Python
    want = sales(
        shop.frames["orders"],
        shop.frames["order_lines"],
        start=start,
        end=end,
        granularity=granularity,
        currency="CNY",
        decimals=2,
    )
    assert got == want
    assert got == expected_sales(shop.orders, shop.lines, start, end, granularity)


def test_the_sales_figures_are_not_trivial(shop: Shop) -> None:
    params = {"from": "2024-01-01", "to": "2025-12-31", "granularity": "month"}
    got = report_via_sql("sales", params, query_duckdb, shop.tables, "CNY", 2)
    totals = got["totals"]
    assert totals["orders"] > 2000
    assert totals["new_customer_revenue"] != "0.00" != totals["returning_customer_revenue"]
    assert totals["refunds"] != "0.00"
    assert {p["province"] for p in got["by_province"]} >= {None, "Beijing"}
    assert len(got["top_skus"]) == 10


# -- customers ----------------------------------------------------------------------------------


@pytest.mark.parametrize("as_of", AS_OFS)
def test_customers_by_sql_is_the_pandas_report(shop: Shop, as_of: date) -> None:
    got = report_via_sql("customers", {"as_of": as_of}, query_duckdb, shop.tables, "CNY", 2)

    assert got == customers_report(shop.frames["orders"], as_of=as_of)
    assert got == expected_customers(shop.orders, as_of)


# -- loyalty ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("start", "end"), POINT_RANGES)
@pytest.mark.parametrize("value", [5000, 3])
def test_loyalty_by_sql_is_the_pandas_report(
    shop: Shop, start: date | None, end: date | None, value: int
) -> None:
    params = {"from": start.isoformat() if start else None, "to": end.isoformat() if end else None}

    got = report_via_sql(
        "loyalty",
        params,
        query_duckdb,
        shop.tables,
        "CNY",
        2,
        point_value_minor_per_1000=value,
    )

    want = loyalty(
        shop.frames["points"],
        shop.frames["customers"],
        start=start,
        end=end,
        currency="CNY",
        decimals=2,
        point_value_minor_per_1000=value,
    )
    assert got == want
    assert got == expected_loyalty(shop.entries, shop.customers, start, end, value)


# -- both engines' frames, both kinds of table --------------------------------------------------

REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("sales", {"from": "2024-03-13", "to": "2025-02-19", "granularity": "week"}),
    ("sales", {"from": "2025-06-30", "to": "2025-06-30"}),
    ("customers", {"as_of": "2025-06-15"}),
    ("loyalty", {"from": "2024-06-01"}),
    ("loyalty", {}),
]


@pytest.mark.parametrize(("name", "params"), REQUESTS)
def test_rows_typed_as_athena_types_them_give_the_same_report(
    shop: Shop, name: str, params: dict[str, Any]
) -> None:
    # Given the rows as Athena's runner types them (through text; a NULL in a whole-number
    # column makes it Int64), not as DuckDB gives them
    duckdb = report_via_sql(name, params, query_duckdb, shop.tables, "CNY", 2)

    athena = report_via_sql(name, params, athena_shaped, shop.tables, "CNY", 2)

    assert athena == duckdb


def test_table_names_are_queried_as_athena_queries_its_glue_tables(shop: Shop) -> None:
    import duckdb

    # Given the snapshot's datasets as named tables in a schema (as the Glue database's)
    with duckdb.connect(":memory:") as connection:
        connection.execute("CREATE SCHEMA crm")
        for dataset, source in shop.tables.items():
            connection.execute(f"CREATE TABLE crm.{dataset} AS SELECT * FROM {source}")  # noqa: S608
        names = {dataset: f"crm.{dataset}" for dataset in shop.tables}

        def run(sql: str) -> pd.DataFrame:
            return connection.execute(sql).df()

        # When the reports' queries name the tables, then the reports are the same
        for name, params in REQUESTS:
            assert report_via_sql(name, params, run, names, "CNY", 2) == report_via_sql(
                name, params, query_duckdb, shop.tables, "CNY", 2
            )


# -- first orders: instants ---------------------------------------------------------------------

# Instants of one shop day written as ISO 8601 allows and pandas reads; equal ones on purpose.
PLACED_AT = [
    "2025-05-05T09:00:00+08:00",  # 01:00:00Z
    "2025-05-05T02:00:00+00:00",
    "2025-05-05T01:30:00Z",
    "2025-05-05 01:15:00+0000",
    "2025-05-05T03+02",  # 01:00:00Z, hours only
    "2025-05-04T20:00:00-05:00",  # 01:00:00Z, the day before as written
    "2025-05-05T01:00:00.5Z",
    "2025-05-05T01:00:00.000000001Z",
    "2025-05-05T01:00:00.123456789999Z",  # past nanoseconds: cut
    "2025-05-04T23:59:59.999-01:30",  # 01:29:59.999Z, a half-hour offset
    "2025-05-05T01:00:00 +00:00",
    None,  # no instant: after the others
]


def test_a_customers_first_order_goes_by_instant_in_every_form_then_order_id(
    tmp_path: Path,
) -> None:
    # Given customers with two counted orders on one shop day, every pair of forms of
    # placed_at in both order-id orders, each customer on a day of its own
    orders = []
    day = date(2025, 5, 5)
    pairs = [(a, b) for a, b in combinations(PLACED_AT, 2)]
    pairs += [(b, a) for a, b in pairs]
    for n, (a, b) in enumerate(pairs):
        on = day + timedelta(days=n)
        customer = f"c{n:03d}"
        orders.append(an_order(f"{customer}-a", customer, on, a, total=100))
        orders.append(an_order(f"{customer}-b", customer, on, b, total=200))
    write_snapshot(tmp_path, orders)
    last = day + timedelta(days=len(pairs) - 1)
    params = {"from": day, "to": last, "granularity": "day"}

    # When the sales report is computed by SQL, each day's new revenue telling which was first
    got = report_via_sql("sales", params, query_duckdb, duckdb_tables(str(tmp_path)), "CNY", 2)

    # Then the SQL chose as pandas did, pair by pair
    want = sales(
        read_back(tmp_path, "orders"),
        pd.DataFrame(),
        start=day,
        end=last,
        granularity="day",
        currency="CNY",
        decimals=2,
    )
    assert got == want
    assert {p["new_customer_revenue"] for p in got["periods"]} == {"1.00", "2.00"}


def test_the_worked_example_of_first_orders_through_the_sql(tmp_path: Path) -> None:
    # test_reports' worked example (instants against their text, same instant, a first order
    # before the range, uncounted earlier orders, a guest), through the SQL
    day = date(2025, 5, 5)
    orders = [
        an_order("b", "c1", day, "2025-05-05T09:00:00+08:00", total=100),
        an_order("a", "c1", day, "2025-05-05T02:00:00+00:00", total=200),
        an_order("z", "c2", day, "2025-05-05T10:00:00+08:00", total=300),
        an_order("y", "c2", day, "2025-05-05T02:00:00+00:00", total=400),
        an_order("p", "c3", date(2025, 5, 1), "2025-05-01T10:00:00+08:00", total=500),
        an_order("q", "c3", day, "2025-05-05T10:00:00+08:00", total=600),
        an_order("r", "c4", date(2025, 5, 1), "2025-05-01T10:00:00+08:00", cancelled=True),
        an_order("s", "c4", date(2025, 5, 2), "2025-05-02T10:00:00+08:00", refunded=10000),
        an_order("t", "c4", day, "2025-05-05T10:00:00+08:00", total=700),
        an_order("g", None, day, "2025-05-05T10:00:00+08:00", total=800),
    ]
    write_snapshot(tmp_path, orders)
    params = {"from": day, "to": day, "granularity": "day"}

    got = report_via_sql("sales", params, query_duckdb, duckdb_tables(str(tmp_path)), "CNY", 2)

    assert got["totals"]["new_customer_revenue"] == "12.00"  # b + y + t
    assert got["totals"]["returning_customer_revenue"] == "19.00"  # a + z + q + g


@pytest.mark.parametrize(
    ("odd", "pandas_reads_it"),
    [
        ("20250505T010000Z", True),  # the basic form
        ("2025-05-05T01:00:00,5Z", False),
        ("2025-02-30T01:00:00Z", False),
    ],
)
def test_a_placed_at_in_no_supported_form_comes_after_the_days_other_orders(
    tmp_path: Path, odd: str, pandas_reads_it: bool
) -> None:
    # Given a customer's two orders of a day, the earlier one's placed_at in a form the query
    # does not read (the CRM writes none such)
    day = date(2025, 5, 5)
    orders = [
        an_order("a", "c1", day, odd, total=100),
        an_order("b", "c1", day, "2025-05-05T23:00:00+08:00", total=200),
    ]
    write_snapshot(tmp_path, orders)
    params = {"from": day, "to": day}

    got = report_via_sql("sales", params, query_duckdb, duckdb_tables(str(tmp_path)), "CNY", 2)

    # Then the other order is the first, as it would be if `a` had no placed_at at all
    assert got["totals"]["new_customer_revenue"] == "2.00"
    # Where pandas reads it as the earlier instant, or refuses the whole frame
    frame = pd.DataFrame(orders)
    args: dict[str, Any] = {"start": day, "end": day, "granularity": "day", "currency": "CNY"}
    if pandas_reads_it:
        report = sales(frame, pd.DataFrame(), **args, decimals=2)
        assert report["totals"]["new_customer_revenue"] == "1.00"
    else:
        with pytest.raises(ValueError):
            sales(frame, pd.DataFrame(), **args, decimals=2)


def test_a_placed_at_without_offset_is_utc(tmp_path: Path) -> None:
    # Given a customer's two orders of a day, one placed_at without an offset (the CRM writes
    # none such; pandas would read it in the offset of a text before it in the frame)
    day = date(2025, 5, 5)
    orders = [
        an_order("a", "c1", day, "2025-05-05T01:00", total=100),
        an_order("b", "c1", day, "2025-05-05T08:30:00+08:00", total=200),  # 00:30Z
        an_order("c", "c2", day, "2025-05-05", total=400),  # 00:00Z
        an_order("d", "c2", day, "2025-05-05T00:00:01+00:00", total=800),
    ]
    write_snapshot(tmp_path, orders)
    params = {"from": day, "to": day}

    got = report_via_sql("sales", params, query_duckdb, duckdb_tables(str(tmp_path)), "CNY", 2)

    # Then it is read as UTC: b and c are the first orders
    assert got["totals"]["new_customer_revenue"] == "6.00"


# -- nothing ------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["no datasets", "empty datasets"])
def test_a_snapshot_with_nothing_gives_the_pandas_reports_of_nothing(
    tmp_path: Path, layout: str
) -> None:
    # Given a snapshot that holds nothing yet: no dataset directory, or empty ones
    if layout == "empty datasets":
        for dataset in DATASETS:
            (tmp_path / dataset).mkdir()
    tables = duckdb_tables(str(tmp_path))
    frames = {d: read_back(tmp_path, d) for d in DATASETS}

    # When the reports are computed by SQL, then they are the pandas reports of nothing
    sales_params = {"from": "2025-01-30", "to": "2025-03-02", "granularity": "month"}
    assert report_via_sql("sales", sales_params, query_duckdb, tables, "CNY", 2) == sales(
        frames["orders"],
        frames["order_lines"],
        start=date(2025, 1, 30),
        end=date(2025, 3, 2),
        granularity="month",
        currency="CNY",
        decimals=2,
    )
    as_of = date(2025, 1, 1)
    assert report_via_sql(
        "customers", {"as_of": as_of}, query_duckdb, tables, "CNY", 2
    ) == customers_report(frames["orders"], as_of=as_of)
    for run in RUNS.values():
        assert report_via_sql("loyalty", {}, run, tables, "JPY", 0) == loyalty(
            frames["points"],
            frames["customers"],
            start=None,
            end=None,
            currency="JPY",
            decimals=0,
        )


def test_orders_none_of_which_counts(tmp_path: Path) -> None:
    # Given orders that are unpaid, cancelled, fully refunded or placed after as_of
    day = date(2025, 5, 5)
    at = "2025-05-05T10:00:00+08:00"
    orders = [
        an_order("a", "c1", day, at, paid=False, refunded=100),
        an_order("b", "c1", day, at, cancelled=True, refunded=100),
        an_order("c", "c1", day, at, refunded=10000),
        an_order("d", "c2", day + timedelta(days=1), at),
    ]
    write_snapshot(tmp_path, orders, [{"order_id": "c", "day": day, "sku": "X", "quantity": 1}])
    tables = duckdb_tables(str(tmp_path))
    frames = {d: read_back(tmp_path, d) for d in DATASETS}

    got = report_via_sql("sales", {"from": day, "to": day}, query_duckdb, tables, "CNY", 2)
    assert got == sales(
        frames["orders"],
        frames["order_lines"],
        start=day,
        end=day,
        granularity="day",
        currency="CNY",
        decimals=2,
    )
    assert got["totals"]["orders"] == 0 and got["totals"]["refunds"] == "100.00"
    customers = report_via_sql("customers", {"as_of": day}, query_duckdb, tables, "CNY", 2)
    assert customers == customers_report(frames["orders"], as_of=day)


# -- the SQL itself -----------------------------------------------------------------------------


def every_report_sql() -> dict[str, str]:
    start, end = date(2024, 3, 13), date(2025, 2, 19)
    queries = {
        f"sales_{g}": sales_sql(
            "crm.orders", "crm.order_lines", start=start, end=end, granularity=g
        )
        for g in ("day", "week", "month")
    }
    queries["customers"] = customers_sql("crm.orders", as_of=end)
    ranges = {"open": (None, None), "closed": (start, end), "from": (start, None)}
    for label, (first, last) in ranges.items():
        queries[f"loyalty_{label}"] = loyalty_sql(
            "crm.points", "crm.customers", start=first, end=last
        )
    return queries


@pytest.mark.parametrize("query", every_report_sql())
def test_the_report_sql_holds_nothing_duckdb_only(query: str) -> None:
    sql = every_report_sql()[query]

    found = [name for name, pattern in DUCKDB_ONLY.items() if re.search(pattern, sql, re.I)]

    assert found == []
    # A date is a standard literal or a cast's type, and the reserved word is always quoted
    for match in re.finditer(r"\bDATE\b", sql):
        before, after = sql[: match.start()], sql[match.end() :]
        assert re.match(r" '\d{4}-\d{2}-\d{2}'", after) or before.endswith("AS "), after[:20]
    assert re.search(r'(?<!")\bday\b(?!")', sql.replace("'day'", "")) is None


def test_the_instant_pattern_fits_duckdb_and_the_text_check() -> None:
    # DuckDB's regexp_extract numbers groups 0..9 only; a bracket would read as a list literal.
    assert re.compile(INSTANT_PATTERN).groups <= 9
    assert "[" not in INSTANT_PATTERN


def test_arguments_are_refused_before_any_query_runs(shop: Shop) -> None:
    ran: list[str] = []

    def run(sql: str) -> pd.DataFrame:
        ran.append(sql)
        return query_duckdb(sql)

    def via(name: str, params: dict[str, Any], currency: str = "CNY", decimals: int = 2) -> Any:
        return report_via_sql(name, params, run, shop.tables, currency, decimals)

    with pytest.raises(ValueError, match="after"):
        via("sales", {"from": "2025-02-01", "to": "2025-01-01"})
    with pytest.raises(ValueError, match="granularity"):
        via("sales", {"from": "2025-01-01", "to": "2025-02-01", "granularity": "quarter"})
    with pytest.raises(ValueError, match="from"):
        via("sales", {"to": "2025-02-01"})
    with pytest.raises(ValueError, match="as_of"):
        via("customers", {})
    with pytest.raises(ValueError, match="after"):
        via("loyalty", {"from": "2025-02-01", "to": "2025-01-01"})
    with pytest.raises(ValueError, match="decimals"):
        via("loyalty", {}, currency="JPY", decimals=2)
    with pytest.raises(ValueError, match="segments"):
        via("segments", {})
    with pytest.raises(ValueError):
        via("customers", {"as_of": "2025-01-01' OR '1'='1"})
    with pytest.raises(TypeError):
        customers_sql("orders", as_of=pd.Timestamp("2025-01-01"))  # type: ignore[arg-type]
    assert ran == []


def test_every_dataset_has_the_snapshots_columns(tmp_path: Path) -> None:
    kinds = {
        pa.string(): "VARCHAR",
        pa.int64(): "BIGINT",
        pa.date32(): "DATE",
        pa.bool_(): "BOOLEAN",
        pa.list_(pa.string()): "VARCHAR[]",
    }
    for dataset, columns in DATASETS.items():
        assert DATASET_COLUMNS[dataset] == tuple((n, kinds[t]) for n, t in columns.items())
        # A dataset with nothing yet is an empty relation with those columns, readable
        empty = query_duckdb(f"SELECT * FROM {source_duckdb(str(tmp_path), dataset)}")  # noqa: S608
        assert empty.empty and list(empty.columns) == list(columns)
    with pytest.raises(ValueError, match="dataset"):
        source_duckdb(str(tmp_path), "stock")
    assert duckdb_tables("s3://shop-data/analytics/snapshot/")["points"] == (
        "read_parquet('s3://shop-data/analytics/snapshot/points/**/*.parquet', "
        "hive_partitioning = true)"
    )
