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
from typing import TYPE_CHECKING, Any

from crm.domain.segment_rules import DATE, FIELDS, TEXT, TEXTS, Condition
from crm_analytics.segments import COLUMNS, Thresholds, window_start

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from crm_analytics.facts import Facts

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
        ("analytics_digest", "BIGINT"),
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
    return f"""WITH {_counted(orders_table, at)},
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
{_scoring(thresholds)}
SELECT
    scored.customer_id,
    {_labels(thresholds)}
FROM scored
LEFT JOIN bands ON bands.customer_id = scored.customer_id
ORDER BY scored.customer_id
"""  # noqa: S608 - the table is the job's configuration and every other value is a date or int


def _counted(orders_table: str, at: str) -> str:
    return f"""counted AS (
    SELECT customer_id, "day", CAST(total - refunded AS BIGINT) AS amount
    FROM {orders_table} AS orders
    WHERE paid AND NOT cancelled AND "day" <= {at} AND total - refunded > 0
)"""  # noqa: S608 - as segment_sql's


def _scoring(t: Thresholds) -> str:
    """The CTEs from `per_customer` (recency, first order's age, frequency, monetary and the
    window's orders and money of each customer) to the scores (`scored`) and bands (`bands`)."""
    return f"""worse AS (
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
        worse.*,
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
)"""  # noqa: S608 - every value in it is an integer of the thresholds


def _labels(t: Thresholds) -> str:
    """The columns of `segments.COLUMNS` from `scored` and `bands`."""
    return f"""scored.recency_days,
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
    bands.value_band"""


# The models' summary of each customer that `facts_sql` adds to `segments.COLUMNS`
# (`clv.history`: `x` repeat purchase days, `t_x` and `T` in days, `m_x` the repeat purchases'
# mean money).
HISTORY_COLUMNS = ("x", "t_x", "T", "m_x")


def facts_sql(
    orders_table: str,
    customers_table: str,
    as_of: date,
    thresholds: Thresholds = DEFAULTS,
    rules: dict[str, Any] | None = None,
) -> str:
    """Everything the segmentation job needs of the orders, as one query (one scan of the
    orders): one row per customer of `customers_table`, ordered by `customer_id`, with
    `version` and `analytics_digest` (the digest of what the profile holds), the columns of
    `segment_sql` (null for a customer without a counted order), the models' summary
    (`HISTORY_COLUMNS`), and one boolean column `rule_<i>` per rule segment, `i` its place in
    `sorted(rules)`.

    The orders are summed per customer and day first (same-day orders are one purchase for
    the models), then per customer: the figures are `segment_sql`'s, value for value."""
    at = _day(as_of)
    after = _day(window_start(as_of, thresholds))
    ruled = "".join(
        f",\n    {rule_sql(rule)} AS rule_{i}"
        for i, (_, rule) in enumerate(sorted((rules or {}).items()))
    )
    return f"""WITH {_counted(orders_table, at)},
daily AS (
    SELECT customer_id, "day", COUNT(*) AS orders, CAST(SUM(amount) AS BIGINT) AS amount
    FROM counted
    GROUP BY customer_id, "day"
),
per_customer AS (
    SELECT
        customer_id,
        date_diff('day', MAX("day"), {at}) AS recency_days,
        date_diff('day', MIN("day"), {at}) AS first_order_age_days,
        CAST(SUM(orders) AS BIGINT) AS frequency,
        CAST(SUM(amount) AS BIGINT) AS monetary,
        CAST(COALESCE(SUM(CASE WHEN "day" > {after} THEN orders END), 0) AS BIGINT)
            AS window_orders,
        CAST(COALESCE(SUM(CASE WHEN "day" > {after} THEN amount END), 0) AS BIGINT)
            AS window_monetary,
        COUNT(*) - 1 AS x,
        date_diff('day', MIN("day"), MAX("day")) AS t_x,
        CAST(SUM(amount) - min_by(amount, "day") AS BIGINT) AS repeat_money
    FROM daily
    GROUP BY customer_id
),
{_scoring(thresholds)},
labelled AS (
    SELECT
        scored.customer_id,
        {_labels(thresholds)},
        scored.x,
        scored.t_x,
        scored.first_order_age_days,
        scored.repeat_money
    FROM scored
    LEFT JOIN bands ON bands.customer_id = scored.customer_id
)
SELECT
    c.customer_id,
    c.version,
    c.analytics_digest,
    {", ".join(f's."{name}"' for name in COLUMNS)},
    s.x,
    CAST(s.t_x AS DOUBLE) AS t_x,
    CAST(s.first_order_age_days AS DOUBLE) AS "T",
    CASE WHEN s.x > 0 THEN CAST(s.repeat_money AS DOUBLE) / s.x WHEN s.x = 0 THEN 0.0 END
        AS m_x{ruled}
FROM {customers_table} AS c
LEFT JOIN labelled AS s ON s.customer_id = c.customer_id
ORDER BY c.customer_id
"""  # noqa: S608 - tables are the job's configuration; rules are compiled by rule_sql


# -- rule segments ---------------------------------------------------------------------------

# A documented rule field (crm.domain.segment_rules.FIELDS) as a column of `facts_sql`'s join:
# `c` the customers file, `s` this run's scores (none for a customer without a counted order).
_RULE_COLUMNS = {
    **{name: f"c.{name}" for name in FIELDS},
    "consents.email": "c.consents_email",
    "consents.sms": "c.consents_sms",
    "r": "s.r",
    "f": "s.f",
    "m": "s.m",
    "recency_days": "s.recency_days",
    "rfm_group": 's."group"',
    "lifecycle": "s.lifecycle",
    "value_band": "s.value_band",
}


def rule_sql(rule: Any) -> str:
    """A parsed rule (`crm.domain.segment_rules.parse_rule`) as a SQL boolean that is never
    null: `segment_rules.matches` over `facts_sql`'s columns (a missing value satisfies only
    `exists false`), in the SQL that DuckDB and Athena read alike."""
    if isinstance(rule, Condition):
        return f"COALESCE({_holds(rule)}, FALSE)"
    if "all" in rule:
        return "(" + " AND ".join(rule_sql(child) for child in rule["all"]) + ")"
    if "any" in rule:
        return "(" + " OR ".join(rule_sql(child) for child in rule["any"]) + ")"
    return f"(NOT {rule_sql(rule['not'])})"


def _holds(c: Condition) -> str:
    kind = FIELDS[c.field]
    column = _RULE_COLUMNS[c.field]
    if kind == TEXTS:
        present = f"({column} IS NOT NULL AND {column} <> ARRAY[])"
    elif kind in (TEXT, DATE):
        present = f"({column} IS NOT NULL AND {column} <> '')"
    else:
        present = f"({column} IS NOT NULL)"
    if c.op == "exists":
        return present if c.value else f"(NOT {present})"
    if kind == DATE:
        column = f"substr({column}, 1, 10)"  # a time compares by its date
    if c.op == "contains":
        if kind == TEXTS:
            return f"({present} AND contains({column}, {_literal(c.value)}))"
        return f"({present} AND strpos({column}, {_literal(c.value)}) > 0)"
    if c.op == "in":
        values = ", ".join(_literal(v) for v in c.value)
        return f"({present} AND {column} IN ({values}))"
    op = "<>" if c.op == "!=" else c.op
    if op not in ("=", "<>", ">", ">=", "<", "<="):
        raise ValueError(f"no operator {c.op!r}")
    return f"({present} AND {column} {op} {_literal(c.value)})"


def _literal(value: Any) -> str:
    """A rule's value as a SQL literal: an operator's input, so only a bool, an int or a
    string (quotes doubled) gets in."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(operator.index(value))
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"a rule value of type {type(value).__name__}")


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


# The orders of active customers (the scored ones) in a table expression of the orders.
ACTIVE_ORDERS = "(SELECT * FROM {table} WHERE customer_active)"


def facts_duckdb(
    root: str,
    as_of: date,
    thresholds: Thresholds = DEFAULTS,
    rules: dict[str, Any] | None = None,
) -> pd.DataFrame | Facts:
    """`facts_sql` on DuckDB over the snapshot at `root` (its `orders/` and `customers/`),
    as `as_facts` gives it."""
    text = facts_sql(
        ACTIVE_ORDERS.format(table=source_duckdb(root, "orders")),
        source_duckdb(root, "customers"),
        as_of,
        thresholds,
        rules,
    )
    return as_facts(query_duckdb(text, arrow=True))


LABELS = ("group", "lifecycle", "value_band")


def as_facts(result: pd.DataFrame | pa.Table) -> pd.DataFrame | Facts:
    """A `facts_sql` result indexed by `customer_id` (in its order), as `segmentation.facts`
    gives it: whole numbers as floats where a customer has none (NaN), the profile's digest
    as Int64, rules as bool. From Athena a frame (`run_athena`); from DuckDB an Arrow table,
    converted column by column into `facts.Facts`, without a Python object per value
    where none is needed (labels as categories)."""
    import pandas as pd

    if isinstance(result, pd.DataFrame):
        out = result.set_index("customer_id")
        out.index = out.index.astype(object)
        for name in LABELS:
            column = out[name].astype(object)
            out[name] = column.where(column.notna(), None)
        for name in out.columns:
            if name.startswith("rule_"):
                out[name] = out[name].fillna(False).astype(bool)
        return out

    import pyarrow as pa

    from crm_analytics.facts import Facts

    columns: dict[str, Any] = {}
    for name in result.column_names:
        column = result[name]
        if name == "customer_id":
            continue
        if name in LABELS:
            columns[name] = column.dictionary_encode().to_pandas().array
        elif name == "analytics_digest":  # 64 bits: never through a float
            digests = column.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
            columns[name] = digests.array
        elif pa.types.is_integer(column.type) and column.null_count:
            columns[name] = column.cast(pa.float64()).to_numpy()  # nulls as NaN
        else:
            columns[name] = column.to_numpy()  # rules are never null (COALESCE)
    ids = result["customer_id"].to_numpy()
    return Facts(pd.Index(ids, dtype=object, name="customer_id"), columns)


def query_duckdb(sql: str, *, arrow: bool = False) -> Any:
    """Any query's rows from a fresh in-memory DuckDB, as DuckDB gives them (a frame, or an
    Arrow table): the local stand-in for `crm_analytics.athena.run_athena`. Its memory is
    held to `CRM_DUCKDB_MEMORY_LIMIT` (default 1GB; past it DuckDB spills to disk), so the
    job's own frames fit beside it in the function's memory."""
    import os

    import duckdb

    with duckdb.connect(":memory:") as connection:
        connection.execute(
            "SET memory_limit = ?", [os.environ.get("CRM_DUCKDB_MEMORY_LIMIT", "1GB")]
        )
        result = connection.execute(sql)
        return result.to_arrow_table() if arrow else result.df()


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
