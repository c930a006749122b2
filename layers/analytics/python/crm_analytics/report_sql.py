"""The reports of `crm_analytics.reports` (`sales`, `customers`, `loyalty`) as SQL over the
columnar snapshot (docs/analytics.md), for a shop whose snapshot is too large for one Lambda's
memory: the query runs where the data lies (Athena over the Glue tables; DuckDB over the
Parquet files on a developer's machine and in the tests), and only its few rows come back.

Each report is one query (`sales_sql`, `customers_sql`, `loyalty_sql`) and a function that
turns the query's rows into the report (`sales_from_rows`, ...): the rows are the report's
aggregated sums and counts, and the report is built from them by the same code as the pandas
report's (`reports.sales_from_sums`, ...), so money is rendered, averages and ratios rounded
exactly as there. `report_via_sql` does both for a report by name.

The queries are in the SQL that DuckDB and Athena (Trino) read alike, as `crm_analytics.sql`'s
(see there), plus `regexp_extract`, `date_trunc`, `TRY_CAST`, `GREATEST`, `NULLIF`,
`year`/`month`, `substr`, `length` and `||`, which both have with the same meaning. The one
regular expression needs only what RE2 (DuckDB) and Joni (Trino) read alike, and has no bracket
(`\\d`, `(T| )`), so that a `[` in a query's text is always a DuckDB list literal to its check.

What is done in Python after the query, and nothing else:
- sales: the list of periods (every bucket of the range, from `reports.buckets`: it depends on
  the range alone; the query gives only buckets that hold an order), the average order (half-
  even from the query's revenue and orders), the returning customers' revenue (revenue minus
  the new customers'), and the ranking of the breakdowns (the query gives every source and
  province, and the first `TOP_SKUS` SKUs by the report's own order, ranked again in Python).
- customers: the months without a new customer (zeros), the ratios from the counts.
- loyalty: the liability (half-even from the query's outstanding points), the sign of the
  points taken, the tiers' order.

One definition is expressed differently, with the same result on what the snapshot holds:
"first counted order ever" orders one customer's same-day orders by `placed_at` as instants,
and no function reads an ISO 8601 text with an offset into an instant in both engines (Trino
has `from_iso8601_timestamp`, which DuckDB has not, and its CAST refuses the `T` that DuckDB's
reads). The query takes the text apart with `regexp_extract` (`INSTANT_PATTERN`) and counts
seconds since 1970 in UTC and nanoseconds itself, from extended ISO 8601:
`YYYY-MM-DD[(T| )hh[:mm[:ss[.f...]]][ ][Z|+hh|+hhmm|+hh:mm]]` (`-` offsets too), fractions past
nanoseconds cut, as pandas reads them. Where the two may part:
- a text without an offset is read as UTC; pandas reads it in the offset of a text before it
  in the frame. The CRM writes none: every time it stores has an offset (`crm.clock`, the
  importers' `parse_timestamp`).
- a text in another form has no instant and comes after its customer's other orders of that
  day, as a missing `placed_at` does: pandas reads the basic form (`20250505T090000Z`), and
  refuses the whole frame on others (a comma before the fraction, a date that does not
  exist). The CRM writes none: its times are extended ISO 8601 with an offset.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any

import pandas as pd

from crm_analytics.reports import (
    TOP_SKUS,
    Entry,
    Sums,
    buckets,
    customers_from_counts,
    loyalty_from_sums,
    money_renderer,
    sales_from_sums,
)

SQL_REPORTS = ("sales", "customers", "loyalty")
ENTRY_TYPES = ("earn", "redeem", "expire", "reverse", "adjust")

# Extended ISO 8601 as pandas reads it (format="ISO8601"). DuckDB numbers groups 0..9 only, so
# the groups not read are non-capturing; none is followed by a colon, which would read as
# DuckDB's `::` cast to the check of the queries' text.
INSTANT_PATTERN = (
    r"^(\d{4}-\d{2}-\d{2})(?:(?:T| )(\d{2})(:(\d{2})(:(\d{2})(?:\.(\d+))?)?)? ?"
    r"(Z|(?:\+|-)\d{2}(?:\d{2}|:\d{2})?)?)?$"
)
_DATE, _HOUR, _MINUTE, _SECOND, _FRACTION, _ZONE = 1, 2, 4, 6, 7, 8


def _day(value: date) -> str:
    # Only a date gets into the query's text (a datetime's isoformat would not be a DATE).
    if not isinstance(value, date) or isinstance(value, datetime):
        raise TypeError(f"a date is needed, not {value!r}")
    return f"DATE '{value.isoformat()}'"


def _part(group: int) -> str:
    # DuckDB gives '' for a group that took no part in the match, Trino NULL: both are NULL.
    return f"NULLIF(regexp_extract(placed_at, '{INSTANT_PATTERN}', {group}), '')"


# -- sales -------------------------------------------------------------------------------------


def _bucket(granularity: str, start: date) -> str:
    if granularity == "day":
        return '"day"'
    # Both engines' weeks start on Monday (ISO); the first bucket is clipped to the range.
    return f"GREATEST(CAST(date_trunc('{granularity}', \"day\") AS DATE), {_day(start)})"


def sales_sql(
    orders_table: str, lines_table: str, *, start: date, end: date, granularity: str
) -> str:
    """One query for the sales report of `start`..`end`: rows `part`, `label`, `orders`,
    `revenue`, `new_revenue`, `refunds`, `quantity` (BIGINT, minor units for money), where
    `part` is `totals` (one row), `period` (a bucket that holds an order in the range, `label`
    its first day within the range as YYYY-MM-DD), `source` and `province` (`label` the name,
    NULL when missing or empty; counted orders and their revenue) or `sku` (the first
    `TOP_SKUS` by revenue descending then SKU, a missing one last; `quantity` and `revenue`).

    The tables go into the query as they are: Glue table names on Athena, or DuckDB table
    expressions (`crm_analytics.sql.duckdb_tables`); they are the job's configuration, never a
    customer's or an operator's input."""
    buckets(start, end, granularity)  # refuses a reversed range and an unknown granularity
    first, last = _day(start), _day(end)
    # Money sums are cast back to BIGINT: DuckDB sums BIGINT into HUGEINT, Trino into BIGINT.
    return f"""WITH parts AS (
    SELECT
        order_id,
        customer_id,
        NULLIF(source, '') AS source,
        NULLIF(province, '') AS province,
        "day",
        COALESCE(paid, FALSE) AND NOT COALESCE(cancelled, FALSE) AS settled,
        total - refunded AS kept,
        refunded,
        TRY_CAST({_part(_DATE)} AS DATE) AS at_date,
        CAST(COALESCE({_part(_HOUR)}, '0') AS BIGINT) AS at_hour,
        CAST(COALESCE({_part(_MINUTE)}, '0') AS BIGINT) AS at_minute,
        CAST(COALESCE({_part(_SECOND)}, '0') AS BIGINT) AS at_second,
        COALESCE({_part(_FRACTION)}, '') AS at_fraction,
        COALESCE({_part(_ZONE)}, 'Z') AS at_zone
    FROM {orders_table} AS orders
),
facts AS (
    SELECT
        order_id,
        customer_id,
        source,
        province,
        "day",
        settled,
        kept,
        refunded,
        COALESCE(settled AND kept > 0 AND "day" IS NOT NULL, FALSE) AS counted,
        date_diff('day', DATE '1970-01-01', at_date) * 86400
            + at_hour * 3600 + at_minute * 60 + at_second
            - CASE
                WHEN at_zone = 'Z' THEN 0
                ELSE (CASE WHEN substr(at_zone, 1, 1) = '-' THEN -1 ELSE 1 END) * (
                    CAST(substr(at_zone, 2, 2) AS BIGINT) * 3600
                    + CAST(CASE
                        WHEN length(at_zone) > 3 THEN substr(at_zone, length(at_zone) - 1, 2)
                        ELSE '0'
                    END AS BIGINT) * 60
                )
            END AS at_seconds,
        CAST(substr(at_fraction || '000000000', 1, 9) AS BIGINT) AS at_nanos
    FROM parts
),
firsts AS (
    SELECT
        order_id,
        customer_id,
        source,
        province,
        "day",
        counted,
        CASE WHEN counted THEN CAST(kept AS BIGINT) ELSE 0 END AS amount,
        CASE
            WHEN counted AND customer_id IS NOT NULL AND ROW_NUMBER() OVER (
                PARTITION BY counted, customer_id
                ORDER BY "day", at_seconds NULLS LAST, at_nanos NULLS LAST, order_id NULLS LAST
            ) = 1 THEN CAST(kept AS BIGINT)
            ELSE 0
        END AS new_amount,
        CASE WHEN settled THEN COALESCE(refunded, 0) ELSE 0 END AS refunds
    FROM facts
),
in_range AS (
    SELECT firsts.*, {_bucket(granularity, start)} AS period
    FROM firsts
    WHERE "day" >= {first} AND "day" <= {last}
),
per_sku AS (
    SELECT
        NULLIF(sku, '') AS sku,
        CAST(SUM(COALESCE(quantity, 0)) AS BIGINT) AS quantity,
        CAST(SUM(COALESCE(amount, 0)) AS BIGINT) AS revenue
    FROM {lines_table} AS lines
    WHERE order_id IN (SELECT order_id FROM in_range WHERE counted)
    GROUP BY NULLIF(sku, '')
),
top_skus AS (
    SELECT
        per_sku.*,
        ROW_NUMBER() OVER (
            ORDER BY revenue DESC, CASE WHEN sku IS NULL THEN 1 ELSE 0 END, sku
        ) AS place
    FROM per_sku
)
SELECT
    'totals' AS part,
    CAST(NULL AS VARCHAR) AS label,
    COUNT(CASE WHEN counted THEN 1 END) AS orders,
    CAST(COALESCE(SUM(amount), 0) AS BIGINT) AS revenue,
    CAST(COALESCE(SUM(new_amount), 0) AS BIGINT) AS new_revenue,
    CAST(COALESCE(SUM(refunds), 0) AS BIGINT) AS refunds,
    CAST(0 AS BIGINT) AS quantity
FROM in_range
UNION ALL
SELECT
    'period',
    CAST(period AS VARCHAR),
    COUNT(CASE WHEN counted THEN 1 END),
    CAST(SUM(amount) AS BIGINT),
    CAST(SUM(new_amount) AS BIGINT),
    CAST(SUM(refunds) AS BIGINT),
    CAST(0 AS BIGINT)
FROM in_range
GROUP BY period
UNION ALL
SELECT 'source', source, COUNT(*), CAST(SUM(amount) AS BIGINT), 0, 0, 0
FROM in_range
WHERE counted
GROUP BY source
UNION ALL
SELECT 'province', province, COUNT(*), CAST(SUM(amount) AS BIGINT), 0, 0, 0
FROM in_range
WHERE counted
GROUP BY province
UNION ALL
SELECT 'sku', sku, 0, revenue, 0, 0, quantity
FROM top_skus
WHERE place <= {TOP_SKUS}
"""  # noqa: S608 - the tables are the job's configuration and every other value a date or int


def sales_from_rows(
    rows: pd.DataFrame,
    *,
    start: date,
    end: date,
    granularity: str,
    currency: str,
    decimals: int,
) -> dict[str, Any]:
    """The sales report from the rows of `sales_sql` (DuckDB's or Athena's frame): the dict
    `reports.sales` gives on the same snapshot."""
    totals: Sums = (0, 0, 0, 0)
    periods: dict[date, Sums] = {}
    entries: dict[str, list[Entry]] = {"source": [], "province": [], "sku": []}
    for row in _records(rows):
        part, label = row["part"], _text(row["label"])
        sums: Sums = (
            int(row["orders"]),
            int(row["revenue"]),
            int(row["new_revenue"]),
            int(row["refunds"]),
        )
        if part == "totals":
            totals = sums
        elif part == "period":
            periods[date.fromisoformat(str(label))] = sums
        elif part == "sku":
            entries["sku"].append((label, int(row["quantity"]), int(row["revenue"])))
        else:
            entries[part].append((label, int(row["orders"]), int(row["revenue"])))
    return sales_from_sums(
        start=start,
        end=end,
        granularity=granularity,
        currency=currency,
        decimals=decimals,
        totals=totals,
        periods=periods,
        by_source=entries["source"],
        by_province=entries["province"],
        skus=entries["sku"],
    )


# -- customers ---------------------------------------------------------------------------------


def customers_sql(orders_table: str, *, as_of: date) -> str:
    """One query for the customers report as of `as_of`: rows `part`, `cohort`, `k`,
    `customers` (BIGINT; months as indices, year x 12 + month - 1), where `part` is `repeat`
    (one row: customers with 2 counted orders or more), `cohort` (customers by the month of
    their first counted order) or `active` (a cohort's customers with a counted order `k`
    months after its month). See `sales_sql` for `orders_table`."""
    at = _day(as_of)
    return f"""WITH counted AS (
    SELECT customer_id, CAST(year("day") * 12 + month("day") - 1 AS BIGINT) AS month_index
    FROM {orders_table} AS orders
    WHERE COALESCE(paid, FALSE) AND NOT COALESCE(cancelled, FALSE) AND total - refunded > 0
        AND "day" <= {at} AND customer_id IS NOT NULL
),
per_customer AS (
    SELECT customer_id, MIN(month_index) AS cohort, COUNT(*) AS counted_orders
    FROM counted
    GROUP BY customer_id
),
active AS (
    SELECT DISTINCT
        counted.customer_id,
        per_customer.cohort,
        counted.month_index - per_customer.cohort AS k
    FROM counted
    JOIN per_customer ON per_customer.customer_id = counted.customer_id
)
SELECT
    'repeat' AS part,
    CAST(NULL AS BIGINT) AS cohort,
    CAST(NULL AS BIGINT) AS k,
    COUNT(*) AS customers
FROM per_customer
WHERE counted_orders >= 2
UNION ALL
SELECT 'cohort', cohort, CAST(NULL AS BIGINT), COUNT(*)
FROM per_customer
GROUP BY cohort
UNION ALL
SELECT 'active', cohort, k, COUNT(*)
FROM active
GROUP BY cohort, k
"""  # noqa: S608 - the table is the job's configuration and the only other value a date


def customers_from_rows(rows: pd.DataFrame, *, as_of: date) -> dict[str, Any]:
    """The customers report from the rows of `customers_sql`: the dict
    `reports.customers_report` gives on the same snapshot."""
    repeat = 0
    sizes: dict[int, int] = {}
    active: dict[tuple[int, int], int] = {}
    for row in _records(rows):
        if row["part"] == "repeat":
            repeat = int(row["customers"])
        elif row["part"] == "cohort":
            sizes[int(row["cohort"])] = int(row["customers"])
        else:
            active[int(row["cohort"]), int(row["k"])] = int(row["customers"])
    return customers_from_counts(as_of=as_of, repeat=repeat, sizes=sizes, active=active)


# -- loyalty -----------------------------------------------------------------------------------


def loyalty_sql(
    points_table: str, customers_table: str, *, start: date | None, end: date | None
) -> str:
    """One query for the loyalty report over the ledger entries of `start`..`end` (either
    open): rows `part`, `label`, `amount` (BIGINT), where `part` is `entry` (`label` an entry
    type, `amount` its entries' signed points), `outstanding` (one row: the customers' points
    balances summed) or `tier` (`label` a tier name, "none" for no tier; `amount` customers).
    See `sales_sql` for the tables."""
    if start is not None and end is not None and start > end:
        raise ValueError("start is after end")
    # An open range takes every entry, an entry without a day too (as the pandas report).
    bounds = "".join(
        f' AND ledger."day" {op} {_day(bound)}'
        for op, bound in ((">=", start), ("<=", end))
        if bound is not None
    )
    types = ", ".join(f"'{t}'" for t in ENTRY_TYPES)
    return f"""SELECT
    'entry' AS part,
    ledger.entry_type AS label,
    CAST(COALESCE(SUM(COALESCE(ledger.points, 0)), 0) AS BIGINT) AS amount
FROM {points_table} AS ledger
WHERE ledger.entry_type IN ({types}){bounds}
GROUP BY ledger.entry_type
UNION ALL
SELECT
    'outstanding',
    CAST(NULL AS VARCHAR),
    CAST(COALESCE(SUM(COALESCE(customers.points_balance, 0)), 0) AS BIGINT)
FROM {customers_table} AS customers
UNION ALL
SELECT 'tier', COALESCE(NULLIF(customers.tier, ''), 'none'), COUNT(*)
FROM {customers_table} AS customers
GROUP BY COALESCE(NULLIF(customers.tier, ''), 'none')
"""  # noqa: S608 - the tables are the job's configuration and every other value a date


def loyalty_from_rows(
    rows: pd.DataFrame,
    *,
    start: date | None,
    end: date | None,
    currency: str,
    decimals: int,
    point_value_minor_per_1000: int = 5000,
) -> dict[str, Any]:
    """The loyalty report from the rows of `loyalty_sql`: the dict `reports.loyalty` gives on
    the same snapshot."""
    by_type: dict[str, int] = {}
    tiers: dict[str, int] = {}
    outstanding = 0
    for row in _records(rows):
        if row["part"] == "entry":
            by_type[str(row["label"])] = int(row["amount"])
        elif row["part"] == "tier":
            tiers[str(row["label"])] = int(row["amount"])
        else:
            outstanding = int(row["amount"])
    return loyalty_from_sums(
        start=start,
        end=end,
        currency=currency,
        decimals=decimals,
        by_type=by_type,
        outstanding=outstanding,
        tiers=tiers,
        point_value_minor_per_1000=point_value_minor_per_1000,
    )


# -- by name -----------------------------------------------------------------------------------


def _records(rows: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in row.items()} for row in rows.to_dict("records")]


def _text(value: Any) -> str | None:
    """A label from either engine's frame: NULL comes as None, NaN or pd.NA."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return str(value)


def _date_param(params: Mapping[str, Any], key: str) -> date | None:
    value = params.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    return date.fromisoformat(str(value))


def _required(params: Mapping[str, Any], key: str, name: str) -> date:
    value = _date_param(params, key)
    if value is None:
        raise ValueError(f"the {name} report needs {key!r}")
    return value


def report_via_sql(
    name: str,
    params: Mapping[str, Any],
    run: Callable[[str], pd.DataFrame],
    tables: Mapping[str, str],
    currency: str,
    decimals: int,
    *,
    point_value_minor_per_1000: int = 5000,
) -> dict[str, Any]:
    """The report `name` (`sales`, `customers` or `loyalty`) computed by one query that `run`
    runs (`crm_analytics.sql.query_duckdb`, or `crm_analytics.athena.run_athena` with its
    place bound), over `tables` (dataset name -> table: `orders`, `order_lines`, `customers`,
    `points`); the dict the pandas report gives on the same snapshot.

    `params` as the API takes them (ISO dates as text, or dates): sales `from`, `to`,
    `granularity` (default `day`); customers `as_of` (required: the caller knows its
    snapshot's date); loyalty `from` and `to`, either absent for an open bound. The segments
    report is not over the snapshot (it reads the segments' size history) and has no SQL."""
    money_renderer(currency, decimals)  # a wrong currency is refused before a query costs
    if name == "sales":
        start = _required(params, "from", name)
        end = _required(params, "to", name)
        granularity = params.get("granularity") or "day"
        sql = sales_sql(
            tables["orders"], tables["order_lines"], start=start, end=end, granularity=granularity
        )
        return sales_from_rows(
            run(sql),
            start=start,
            end=end,
            granularity=granularity,
            currency=currency,
            decimals=decimals,
        )
    if name == "customers":
        as_of = _required(params, "as_of", name)
        return customers_from_rows(run(customers_sql(tables["orders"], as_of=as_of)), as_of=as_of)
    if name == "loyalty":
        start_, end_ = _date_param(params, "from"), _date_param(params, "to")
        sql = loyalty_sql(tables["points"], tables["customers"], start=start_, end=end_)
        return loyalty_from_rows(
            run(sql),
            start=start_,
            end=end_,
            currency=currency,
            decimals=decimals,
            point_value_minor_per_1000=point_value_minor_per_1000,
        )
    raise ValueError(f"no report {name!r} over the snapshot: one of {', '.join(SQL_REPORTS)}")
