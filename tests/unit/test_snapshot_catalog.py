"""The Glue tables of `infra/resources.py` are the columnar snapshot as `crm_analytics.snapshot`
writes it: the same datasets, columns in the same order, each Parquet type as Athena reads it,
under the prefix the snapshot is written to."""

from __future__ import annotations

import datetime

import pyarrow as pa

from crm_analytics import snapshot
from infra.resources import GLUE_DATABASES, SNAPSHOT_PREFIX, SNAPSHOT_TABLES
from infra.template import PARTITION_KEY


def hive_type(kind: pa.DataType) -> str:
    if pa.types.is_string(kind):
        return "string"
    if pa.types.is_int64(kind):
        return "bigint"
    if pa.types.is_boolean(kind):
        return "boolean"
    if pa.types.is_date32(kind):
        return "date"
    if pa.types.is_list(kind):
        return f"array<{hive_type(kind.value_type)}>"
    raise AssertionError(f"no Hive type for {kind}")


def test_every_dataset_is_a_table_with_the_columns_and_types_the_snapshot_writes() -> None:
    tables = {t.name: t.columns for t in SNAPSHOT_TABLES}

    assert set(tables) == set(snapshot.DATASETS)
    for name, columns in snapshot.DATASETS.items():
        assert tables[name] == tuple((c, hive_type(k)) for c, k in columns.items()), name


def test_the_tables_are_over_the_snapshot_s_prefix_and_its_date_partitions() -> None:
    [database] = GLUE_DATABASES

    assert database.prefix == SNAPSHOT_PREFIX == snapshot.PREFIX
    assert database.tables == SNAPSHOT_TABLES
    # The partition is the key's `date=`, never a column of the files themselves.
    assert all(PARTITION_KEY not in dict(t.columns) for t in SNAPSHOT_TABLES)
    one_order = pa.Table.from_pylist([{"order_id": "o", "day": datetime.date(2024, 5, 1)}])
    key = next(iter(snapshot._partitioned("orders", one_order)))
    assert key.startswith(f"{SNAPSHOT_PREFIX}orders/{PARTITION_KEY}=2024-05-01/")
