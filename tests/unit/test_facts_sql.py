"""The segmentation job's facts as one SQL query over the snapshot (`sql.facts_sql`: DuckDB
here, Athena in the cloud) equal the pandas facts (`segmentation.facts`) value for value on
generated shops, with rule segments over profile fields and this run's scores; and a rule
compiled to SQL (`sql.rule_sql`) selects exactly what `segment_rules.matches` selects."""

from __future__ import annotations

import random
import re
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crm.domain.segment_rules import matches, parse_rule
from crm_analytics import segmentation, sql
from crm_analytics.segments import COLUMNS
from crm_analytics.snapshot import CUSTOMER_COLUMNS, ORDER_COLUMNS, to_pandas
from tests.unit.test_segment_rule_masks import RULES as MASK_RULES
from tests.unit.test_segment_rule_masks import records
from tests.unit.test_segments import AS_OF, generated_orders
from tests.unit.test_segments_sql import DUCKDB_ONLY

RULES = {
    "big_spenders": {"field": "total_spent", "op": ">=", "value": "500.00"},
    "vip_or_consented": {
        "any": [
            {"field": "tags", "op": "contains", "value": "vip"},
            {"field": "consents.email", "op": "=", "value": True},
        ]
    },
    "east_recent": {
        "all": [
            {"field": "province", "op": "in", "value": ["浙江", "上海"]},
            {"field": "r", "op": ">=", "value": 4},
        ]
    },
    "slipping_not_loyal": {
        "all": [
            {"field": "lifecycle", "op": "in", "value": ["at_risk", "churned"]},
            {"not": {"field": "rfm_group", "op": "=", "value": "loyal"}},
            {"field": "value_band", "op": "exists"},
        ]
    },
    "born_before_1990": {"field": "birthday", "op": "<", "value": "1990-01-01"},
    "nobody": {"field": "orders_count", "op": ">", "value": 10_000},
}
# Every number of the facts: the scores' whole numbers, then the models' history.
NUMBERS = tuple(c for c in COLUMNS if c not in sql.LABELS) + sql.HISTORY_COLUMNS


def shop_files(seed: int, root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A snapshot under `root` (orders by day, one customers file) of a generated shop: more
    customers than buyers, and some buyers no longer active (their orders are not scored);
    the snapshot's frames as the job reads them."""
    rng = random.Random(seed)
    orders = generated_orders(seed, customers=1200)
    buyers = sorted({o["customer_id"] for o in orders})
    gone = set(rng.sample(buyers, 40))  # merged or erased: not in customers/
    ids = [c for c in (f"cus_{n:05d}" for n in range(1400)) if c not in gone]
    rows = []
    for n, o in enumerate(orders):
        rows.append(
            {
                "order_id": f"ord_{n:06d}",
                "customer_id": o["customer_id"],
                "source": "shopify",
                "currency": "CNY",
                "placed_at": f"{o['day'].isoformat()}T12:00:00+08:00",
                "day": o["day"],
                "paid": o["paid"],
                "cancelled": o["cancelled"],
                "total": o["total"],
                "refunded": o["refunded"],
                "country_code": "CN",
                "province": None,
                "customer_active": o["customer_id"] not in gone,
            }
        )
    frame = pa.Table.from_pylist(rows, schema=pa.schema(list(ORDER_COLUMNS.items())))
    for day in sorted({r["day"] for r in rows}):
        folder = root / "orders" / f"date={day.isoformat()}"
        folder.mkdir(parents=True)
        part = [r for r in rows if r["day"] == day]
        pq.write_table(
            pa.Table.from_pylist(part, schema=frame.schema), folder / "part-00000.parquet"
        )

    def maybe(value):
        return value if rng.random() > 0.2 else None

    customers = []
    for c in ids:
        customers.append(
            {
                **{name: None for name in CUSTOMER_COLUMNS},
                "customer_id": c,
                "created_at": "2024-01-01T00:00:00+00:00",
                "province": maybe(rng.choice(["浙江", "上海", "广东", ""])),
                "birthday": maybe(rng.choice(["1985-03-02", "1990-01-01", "2001-12-30"])),
                "tags": rng.choice([None, [], ["vip"], ["vip", "x"], ["x"]]),
                "consents_email": maybe(rng.choice([True, False])),
                "consents_sms": maybe(rng.choice([True, False])),
                "total_spent": rng.choice([0, 10_000, 50_000, 90_000]),
                "orders_count": rng.randint(0, 5),
                "analytics": maybe('{"segments": ["new"]}'),
                "analytics_digest": maybe(rng.randint(-(2**63), 2**63 - 1)),
                "version": rng.randint(1, 9),
            }
        )
    rng.shuffle(customers)  # the file is in no order
    table = pa.Table.from_pylist(customers, schema=pa.schema(list(CUSTOMER_COLUMNS.items())))
    folder = root / "customers" / f"date={AS_OF.isoformat()}"
    folder.mkdir(parents=True)
    pq.write_table(table, folder / "part-00000.parquet")
    active = to_pandas(frame)
    return active[active["customer_active"]], to_pandas(table)


@pytest.fixture(scope="module", params=[1, 2, 3], ids=lambda seed: f"seed{seed}")
def shop(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("snapshot")
    orders, customers = shop_files(request.param, root)
    return root, orders, customers


@pytest.mark.parametrize("as_of", [AS_OF, AS_OF - timedelta(days=200)], ids=["as_of", "earlier"])
def test_the_sql_facts_equal_the_pandas_facts(shop, as_of: date) -> None:
    root, orders, customers = shop
    rules = {name: parse_rule(raw, "CNY") for name, raw in RULES.items()}

    got = sql.facts_duckdb(str(root), as_of, rules=rules)
    want = segmentation.facts(orders, customers, as_of, rule_segments=rules)

    # One row per active customer, in customer order, on both sides
    assert list(got.index) == list(want.index) == sorted(customers["customer_id"])
    for name in NUMBERS:
        left = got[name].to_numpy(dtype=np.float64, na_value=np.nan)
        right = want[name].to_numpy(dtype=np.float64, na_value=np.nan)
        np.testing.assert_array_equal(left, right, err_msg=name)
    for name in ("group", "lifecycle", "value_band"):
        left = [None if pd.isna(v) else str(v) for v in got[name]]
        right = [None if pd.isna(v) else str(v) for v in want[name]]
        assert left == right, name
    for i in range(len(rules)):
        assert got[f"rule_{i}"].tolist() == want[f"rule_{i}"].tolist(), sorted(rules)[i]
    assert got["version"].tolist() == want["version"].tolist()
    assert got["analytics_digest"].astype("Int64").tolist() == (
        want["analytics_digest"].astype("Int64").tolist()
    )
    # Each rule splits the shop (or selects nobody, as it should), scored or not
    sizes = {name: int(got[f"rule_{i}"].sum()) for i, name in enumerate(sorted(rules))}
    assert sizes["nobody"] == 0
    assert all(0 < n < len(got) for name, n in sizes.items() if name != "nobody"), sizes

    # And the job's outcome is the same from either: members, predictions, digests
    models_free = segmentation.finish(got, as_of, sorted(rules))
    from_pandas = segmentation.finish(want, as_of, sorted(rules))
    assert {k: list(v) for k, v in models_free.members.items()} == {
        k: list(v) for k, v in from_pandas.members.items()
    }
    pd.testing.assert_series_equal(
        models_free.profiles["digest"], from_pandas.profiles["digest"], check_names=False
    )
    assert models_free.changed().tolist() == from_pandas.changed().tolist()


def test_a_rule_in_sql_selects_what_each_record_matches() -> None:
    import duckdb

    rows = records()
    profile = pd.DataFrame(
        {
            "customer_id": [r["customer_id"] for r in rows],
            "email": [r["email"] for r in rows],
            "first_name": [r["first_name"] for r in rows],
            "city": [r["city"] for r in rows],
            "tags": [r["tags"] for r in rows],
            "total_spent": pd.array([r["total_spent"] for r in rows], dtype="Int64"),
            "orders_count": [r["orders_count"] for r in rows],
            "last_order_at": [r["last_order_at"] for r in rows],
            "consents_email": pd.array([r["consents.email"] for r in rows], dtype="boolean"),
            "tier": [r["tier"] for r in rows],
        }
    )
    scores = pd.DataFrame(
        {
            "customer_id": [r["customer_id"] for r in rows],
            "r": pd.array([r["r"] for r in rows], dtype="Int64"),
            "lifecycle": [r["lifecycle"] for r in rows],
        }
    )
    with duckdb.connect(":memory:") as connection:
        connection.register("c", profile)
        connection.register("s", scores)
        for raw in MASK_RULES:
            rule = parse_rule(raw, "CNY")
            selected = {
                row[0]
                for row in connection.execute(
                    "SELECT c.customer_id FROM c LEFT JOIN s ON s.customer_id = c.customer_id "  # noqa: S608
                    f"WHERE {sql.rule_sql(rule)}"
                ).fetchall()
            }
            assert selected == {r["customer_id"] for r in rows if matches(rule, r)}, raw


def test_a_rule_value_is_a_literal_whatever_it_holds() -> None:
    import duckdb

    names = ["O'Brien", "x' OR '1'='1", "Smith"]
    profile = pd.DataFrame({"customer_id": ["a", "b", "c"], "last_name": names})
    with duckdb.connect(":memory:") as connection:
        connection.register("c", profile)
        for value in names:
            rule = parse_rule({"field": "last_name", "op": "=", "value": value}, "CNY")
            selected = connection.execute(
                f"SELECT customer_id FROM c WHERE {sql.rule_sql(rule)}"  # noqa: S608
            ).fetchall()
            assert selected == [("abc"[names.index(value)],)]


def test_the_facts_query_holds_nothing_duckdb_only() -> None:
    rules = {name: parse_rule(raw, "CNY") for name, raw in RULES.items()}
    text = sql.facts_sql("crm.orders", "crm.customers", AS_OF, rules=rules)

    # `ARRAY[]` is Trino's empty array as much as DuckDB's, and a division of a DOUBLE is
    # the same in both; any other bracket or division is not
    patterns = {
        **DUCKDB_ONLY,
        "list literal": r"(?<!ARRAY)\[",
        "integer division": r"(?<!DOUBLE)[\w)]\s*/\s*[\w(]",
    }
    found = [name for name, pattern in patterns.items() if re.search(pattern, text, re.I)]

    assert found == []
    assert 'min_by(amount, "day")' in text and "contains(c.tags, 'vip')" in text
