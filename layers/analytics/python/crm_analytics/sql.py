"""The built-in segments of `crm_analytics.segments` as one SQL query over the columnar snapshot
(`docs/analytics.md`, `orders/`), so that a shop too large for one Lambda's memory is segmented
where the data lies: Athena in the cloud, DuckDB on a developer's machine and in the tests.

The query is written in the part of SQL that DuckDB and Athena (Trino) read alike: CTEs,
window functions, `CAST`, `CASE`, `DATE 'YYYY-MM-DD'` literals and `date_diff('day', a, b)`.
Nothing of either dialect alone (`::`, `QUALIFY`, `FILTER`, `//`, `INTERVAL` arithmetic).
Its figures are those of `segments.segment`, value for value; the tests hold it to that.
The reports' queries, in the same subset, are in `crm_analytics.report_sql`.
"""

from __future__ import annotations

import operator
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from crm_analytics.segments import COLUMNS, Thresholds, window_start

if TYPE_CHECKING:
    import pandas as pd

WHOLE_NUMBERS = ("recency_days", "frequency", "monetary", "r", "f", "m", "window_monetary")

DEFAULTS = Thresholds()

# The snapshot's `orders/` columns with their types, for a snapshot that holds no order yet.
ORDER_COLUMNS = (
    ("order_id", "VARCHAR"),
    ("customer_id", "VARCHAR"),
    ("source", "VARCHAR"),
    ("currency", "VARCHAR"),
    ("placed_at", "VARCHAR"),
    ("day", "DATE"),
    ("paid", "BOOLEAN"),
    ("cancelled", "BOOLEAN"),
    ("total", "BIGINT"),
    ("refunded", "BIGINT"),
    ("country_code", "VARCHAR"),
    ("province", "VARCHAR"),
    ("customer_active", "BOOLEAN"),
)


# The other datasets' columns (docs/analytics.md), for the same purpose. The customers' `tags`
# is a list: its type is DuckDB's spelling, as only DuckDB ever reads this empty relation.
DATASET_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "orders": ORDER_COLUMNS,
    "order_lines": (
        ("order_id", "VARCHAR"),
        ("customer_id", "VARCHAR"),
        ("day", "DATE"),
        ("sku", "VARCHAR"),
        ("quantity", "BIGINT"),
        ("amount", "BIGINT"),
    ),
    "customers": (
        ("customer_id", "VARCHAR"),
        ("created_at", "VARCHAR"),
        ("email", "VARCHAR"),
        ("phone", "VARCHAR"),
        ("first_name", "VARCHAR"),
        ("last_name", "VARCHAR"),
        ("gender", "VARCHAR"),
        ("locale", "VARCHAR"),
        ("timezone", "VARCHAR"),
        ("country_code", "VARCHAR"),
        ("province", "VARCHAR"),
        ("city", "VARCHAR"),
        ("zip", "VARCHAR"),
        ("birthday", "VARCHAR"),
        ("tags", "VARCHAR[]"),
        ("consents_email", "BOOLEAN"),
        ("consents_sms", "BOOLEAN"),
        ("tier", "VARCHAR"),
        ("total_spent", "BIGINT"),
        ("orders_count", "BIGINT"),
        ("first_order_at", "VARCHAR"),
        ("last_order_at", "VARCHAR"),
        ("points_balance", "BIGINT"),
        ("analytics", "VARCHAR"),
        ("version", "BIGINT"),
    ),
    "points": (
        ("customer_id", "VARCHAR"),
        ("entry_type", "VARCHAR"),
        ("points", "BIGINT"),
        ("day", "DATE"),
    ),
}


def _whole(value: int) -> str:
    # Thresholds are configuration written into the query's text: only an integer gets in.
    return str(operator.index(value))


def _day(value: date) -> str:
    return f"DATE '{value.isoformat()}'"


def _score(worse: str) -> str:
    """1 + floor(5 x worse / N) without dividing: the same `/` is integer division in Trino
    and exact division in DuckDB, and worse < N, so the floor is how many of 1..4 x N that
    5 x worse reaches."""
    steps = " + ".join(
        f"CASE WHEN 5 * {worse} >= {k} * population THEN 1 ELSE 0 END" for k in range(1, 5)
    )
    return f"CAST(1 + {steps} AS BIGINT)"


def segment_sql(orders_table: str, as_of: date, thresholds: Thresholds = DEFAULTS) -> str:
    """One query, one row per customer with a counted order, ordered by `customer_id`: the
    columns of `segments.segment` (with `customer_id` a column, not an index).

    `orders_table` goes into the query as it is: a table name (Athena: the Glue table over
    `orders/`) or a DuckDB table expression such as `orders_source_duckdb(root)`. It is the
    job's own configuration, never a customer's or an operator's input."""
    at = _day(as_of)
    after = _day(window_start(as_of, thresholds))
    t = thresholds
    # Money sums are cast back to BIGINT: DuckDB sums BIGINT into HUGEINT, Trino into BIGINT.
    return f"""WITH counted AS (
    SELECT customer_id, "day", CAST(total - refunded AS BIGINT) AS amount
    FROM {orders_table} AS orders
    WHERE paid AND NOT cancelled AND "day" <= {at} AND total - refunded > 0
),
per_customer AS (
    SELECT
        customer_id,
        date_diff('day', MAX("day"), {at}) AS recency_days,
        date_diff('day', MIN("day"), {at}) AS first_order_age_days,
        COUNT(*) AS frequency,
        CAST(SUM(amount) AS BIGINT) AS monetary,
        COUNT(CASE WHEN "day" > {after} THEN 1 END) AS window_orders,
        CAST(COALESCE(SUM(CASE WHEN "day" > {after} THEN amount END), 0) AS BIGINT)
            AS window_monetary
    FROM counted
    GROUP BY customer_id
),
worse AS (
    SELECT
        per_customer.*,
        COUNT(*) OVER () AS population,
        RANK() OVER (ORDER BY recency_days DESC) - 1 AS worse_r,
        RANK() OVER (ORDER BY frequency ASC) - 1 AS worse_f,
        RANK() OVER (ORDER BY monetary ASC) - 1 AS worse_m
    FROM per_customer
),
scored AS (
    SELECT
        customer_id, recency_days, frequency, monetary, window_orders, window_monetary,
        first_order_age_days,
        {_score("worse_r")} AS r,
        {_score("worse_f")} AS f,
        {_score("worse_m")} AS m
    FROM worse
),
spenders AS (
    SELECT
        customer_id,
        CAST(SUM(window_monetary) OVER (
            ORDER BY window_monetary DESC, customer_id ASC
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
        ) - window_monetary AS BIGINT) AS money_ahead,
        CAST(SUM(window_monetary) OVER () AS BIGINT) AS window_total
    FROM per_customer
    WHERE window_monetary > 0
),
bands AS (
    SELECT
        customer_id,
        CASE
            WHEN money_ahead * 100 < {_whole(t.high_value_share)} * window_total
                THEN 'high_value'
            WHEN money_ahead * 100 < {_whole(t.mid_value_share)} * window_total
                THEN 'mid_value'
            ELSE 'low_value'
        END AS value_band
    FROM spenders
)
SELECT
    scored.customer_id,
    scored.recency_days,
    scored.frequency,
    scored.monetary,
    scored.r,
    scored.f,
    scored.m,
    CASE
        WHEN r >= 4 AND f >= 4 AND m >= 4 THEN 'champions'
        WHEN f >= 4 AND r >= 3 THEN 'loyal'
        WHEN r <= 2 AND f >= 3 THEN 'at_risk'
        WHEN r >= 4 AND f <= 2 THEN 'recent'
        WHEN r = 1 AND f <= 2 THEN 'inactive'
        ELSE 'needs_attention'
    END AS "group",
    CASE
        WHEN recency_days > {_whole(t.churned_after_days)} THEN 'churned'
        WHEN recency_days > {_whole(t.at_risk_after_days)} THEN 'at_risk'
        WHEN window_orders >= {_whole(t.loyal_orders_in_window)} THEN 'loyal'
        WHEN frequency >= 2 THEN 'returning'
        WHEN first_order_age_days <= {_whole(t.new_within_days)} THEN 'new'
        ELSE 'active'
    END AS lifecycle,
    scored.window_monetary,
    bands.value_band
FROM scored
LEFT JOIN bands ON bands.customer_id = scored.customer_id
ORDER BY scored.customer_id
"""  # noqa: S608 - the table is the job's configuration and every other value is a date or int


def orders_source_duckdb(root: str) -> str:
    """The snapshot's orders as a DuckDB table expression, `root` the snapshot's directory
    (the one that holds `orders/`); see `source_duckdb`."""
    return source_duckdb(root, "orders")


def duckdb_tables(root: str) -> dict[str, str]:
    """Every dataset of the snapshot at `root` as a DuckDB table expression (`source_duckdb`),
    by dataset name: the `tables` that `crm_analytics.report_sql` queries take. On Athena the
    same names map to the Glue tables over the snapshot instead."""
    return {dataset: source_duckdb(root, dataset) for dataset in DATASET_COLUMNS}


def source_duckdb(root: str, dataset: str) -> str:
    """One dataset of the snapshot (`orders`, `order_lines`, `customers`, `points`) as a
    DuckDB table expression, `root` the snapshot's directory (the one that holds the datasets'
    directories).

    A local directory is read as it is; a dataset with nothing yet (no directory or no
    Parquet file in it) is an empty relation with the dataset's columns, where
    `read_parquet` would fail on a glob that matches nothing. An `s3://` prefix gives the
    same `read_parquet` expression, which needs DuckDB's httpfs extension and credentials:
    neither is here offline, so only local snapshots are exercised. In the cloud the query
    runs on Athena over the Glue table instead (`crm_analytics.athena.run_athena`)."""
    if dataset not in DATASET_COLUMNS:
        raise ValueError(f"no dataset {dataset!r} in the snapshot")
    if root.startswith("s3://"):
        return _read_parquet(f"{root.rstrip('/')}/{dataset}/**/*.parquet")
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"no snapshot directory at {root}")
    folder = base.resolve() / dataset
    if not folder.is_dir() or not any(folder.rglob("*.parquet")):
        columns = ", ".join(
            f"CAST(NULL AS {kind}) AS {name}" for name, kind in DATASET_COLUMNS[dataset]
        )
        return f"(SELECT {columns} WHERE FALSE)"
    return _read_parquet(f"{folder.as_posix()}/**/*.parquet")


def _read_parquet(glob: str) -> str:
    quoted = glob.replace("'", "''")
    return f"read_parquet('{quoted}', hive_partitioning = true)"


def run_duckdb(sql: str) -> pd.DataFrame:
    """Run a `segment_sql` query on a fresh in-memory DuckDB: the frame `segments.segment`
    gives, indexed by `customer_id`, whole numbers as int64, labels as str or None."""
    return as_segments(query_duckdb(sql))


def query_duckdb(sql: str) -> pd.DataFrame:
    """Any query's rows from a fresh in-memory DuckDB, as DuckDB gives them: the local
    stand-in for `crm_analytics.athena.run_athena`."""
    import duckdb

    with duckdb.connect(":memory:") as connection:
        return connection.execute(sql).df()


def as_segments(frame: pd.DataFrame) -> pd.DataFrame:
    """A `segment_sql` result (from DuckDB or Athena) in the shape of `segments.segment`."""
    out = frame.set_index("customer_id")[list(COLUMNS)].copy()
    out.index = out.index.astype(object)
    for name in WHOLE_NUMBERS:
        out[name] = out[name].astype("int64")
    for name in ("group", "lifecycle", "value_band"):
        column = out[name].astype(object)
        out[name] = column.where(column.notna(), None)
    return out
