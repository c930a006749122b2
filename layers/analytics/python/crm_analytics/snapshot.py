"""The columnar snapshot (docs/analytics.md): taken from the tables by a parallel Scan, written
to the data bucket as Parquet partitioned by date, and read back by previews and reports.

Orders carry no personal field. Customers do (rule segments match on them), so only the latest
customers file is kept, and erasure rewrites it (`scrub`).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from crm.adapters import s3
from crm.config import Settings
from crm.domain.customers import ACTIVE, Customer
from crm.domain.loyalty import Program, tier_for
from crm.domain.money import exponent
from crm.domain.orders import Order
from crm.store import snapshot_reads

PREFIX = "analytics/snapshot/"
# Outside the snapshot's folder: the API reads it, and no grant of the API may reach the
# customers file.
MANIFEST = "analytics/manifest/snapshot.json"
SEGMENTS = 4  # parallel Scan segments per table
T = TypeVar("T")

ORDER_COLUMNS = {
    "order_id": pa.string(),
    "customer_id": pa.string(),
    "source": pa.string(),
    "currency": pa.string(),
    "placed_at": pa.string(),
    "day": pa.date32(),
    "paid": pa.bool_(),
    "cancelled": pa.bool_(),
    "total": pa.int64(),
    "refunded": pa.int64(),
    "country_code": pa.string(),
    "province": pa.string(),
    # The buyer is an active customer (not erased, not merged away): scored. Every order
    # counts in sales all the same.
    "customer_active": pa.bool_(),
}
LINE_COLUMNS = {
    "order_id": pa.string(),
    "customer_id": pa.string(),
    "day": pa.date32(),
    "sku": pa.string(),
    "quantity": pa.int64(),
    "amount": pa.int64(),
}
CUSTOMER_COLUMNS = {
    "customer_id": pa.string(),
    "created_at": pa.string(),
    "email": pa.string(),
    "phone": pa.string(),
    "first_name": pa.string(),
    "last_name": pa.string(),
    "gender": pa.string(),
    "locale": pa.string(),
    "timezone": pa.string(),
    "country_code": pa.string(),
    "province": pa.string(),
    "city": pa.string(),
    "zip": pa.string(),
    "birthday": pa.string(),
    "tags": pa.list_(pa.string()),
    "consents_email": pa.bool_(),
    "consents_sms": pa.bool_(),
    "tier": pa.string(),
    "total_spent": pa.int64(),
    "orders_count": pa.int64(),
    "first_order_at": pa.string(),
    "last_order_at": pa.string(),
    "points_balance": pa.int64(),
    "analytics": pa.string(),
    "analytics_digest": pa.int64(),
    "version": pa.int64(),
}
POINT_COLUMNS = {
    "customer_id": pa.string(),
    "entry_type": pa.string(),
    "points": pa.int64(),
    "day": pa.date32(),
}
DATASETS = {
    "orders": ORDER_COLUMNS,
    "order_lines": LINE_COLUMNS,
    "customers": CUSTOMER_COLUMNS,
    "points": POINT_COLUMNS,
}


@dataclass
class Snapshot:
    """The datasets as Arrow tables (a few dozen bytes an order; `to_pandas` for a frame)."""

    as_of: date
    orders: pa.Table
    lines: pa.Table
    customers: pa.Table
    points: pa.Table
    left_out: dict[str, int] = field(default_factory=dict)  # orders by currency without rate


class Converter:
    """An order's money in the shop's minor units: its own currency's minor units times the
    configured rate, rounded half-even; None for a currency without a rate."""

    def __init__(self, settings: Settings) -> None:
        self.currency = settings.currency
        self.rates = {code: Decimal(rate) for code, rate in settings.exchange_rates}

    def factor(self, currency: str | None) -> Decimal | None:
        code = (currency or self.currency).upper()
        if code == self.currency:
            return Decimal(1)
        rate = self.rates.get(code)
        if rate is None:
            return None
        return rate.scaleb(exponent(self.currency) - exponent(code))

    @staticmethod
    def apply(minor: int, factor: Decimal) -> int:
        if factor == 1:
            return minor
        return int((minor * factor).to_integral_value(rounding=ROUND_HALF_EVEN))


# Rows converted to Arrow at a time: the job holds the Python objects of one batch per Scan
# segment, never a table's (an order as objects is kilobytes; as Arrow, a few dozen bytes).
BATCH = 20_000


class _Batches:
    """Rows gathered into Arrow record batches of `BATCH` rows, in one dataset's schema."""

    def __init__(self, columns: dict[str, pa.DataType]) -> None:
        self.schema = pa.schema(list(columns.items()))
        self.rows: list[dict[str, Any]] = []
        self.batches: list[pa.RecordBatch] = []

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if len(self.rows) >= BATCH:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            self.batches.append(pa.RecordBatch.from_pylist(self.rows, schema=self.schema))
            self.rows = []

    def table(self) -> pa.Table:
        self.flush()
        return pa.Table.from_batches(self.batches, schema=self.schema)


def _segments(scan: Callable[[int], T]) -> list[T]:
    """`scan(segment)` for every segment of a parallel Scan, at once."""
    with ThreadPoolExecutor(SEGMENTS) as pool:
        return list(pool.map(scan, range(SEGMENTS)))


def local_day(moment: str | None, zone: ZoneInfo) -> date | None:
    if not moment:
        return None
    parsed = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    if parsed.tzinfo is None:  # a date or a naive time: the shop's own calendar
        return parsed.date()
    return parsed.astimezone(zone).date()


def _order_tables(
    converter: Converter, zone: ZoneInfo
) -> tuple[pa.Table, pa.Table, dict[str, int]]:
    """The orders and their lines (a parallel Scan), and the orders left out by currency."""

    def scan(segment: int) -> tuple[pa.Table, pa.Table, dict[str, int]]:
        orders, lines = _Batches(ORDER_COLUMNS), _Batches(LINE_COLUMNS)
        left_out: dict[str, int] = {}
        for order in snapshot_reads.orders(segment, SEGMENTS):
            _add_order(order, converter, zone, orders, lines, left_out)
        return orders.table(), lines.table(), left_out

    parts = _segments(scan)
    left_out: dict[str, int] = {}
    for _, _, left in parts:
        for code, n in left.items():
            left_out[code] = left_out.get(code, 0) + n
    return (
        pa.concat_tables([orders for orders, _, _ in parts]),
        pa.concat_tables([lines for _, lines, _ in parts]),
        left_out,
    )


def _add_order(
    order: Order,
    converter: Converter,
    zone: ZoneInfo,
    orders: _Batches,
    lines: _Batches,
    left_out: dict[str, int],
) -> None:
    day = local_day(order.created_at or order.received_at, zone)
    factor = converter.factor(order.currency)
    if day is None or not order.customer_id:
        return
    if factor is None:
        code = (order.currency or converter.currency).upper()
        left_out[code] = left_out.get(code, 0) + 1
        return
    address = order.shipping_address or {}
    orders.add(
        {
            "order_id": order.order_id,
            "customer_id": order.customer_id,
            "source": order.source,
            "currency": (order.currency or converter.currency).upper(),
            "placed_at": order.created_at or order.received_at,
            "day": day,
            "paid": order.paid_at is not None,
            "cancelled": order.cancelled_at is not None,
            "total": converter.apply(order.total, factor),
            "refunded": converter.apply(order.refunded, factor),
            "country_code": address.get("country_code"),
            "province": address.get("province"),
            "customer_active": False,  # set once every customer is read (`take`)
        }
    )
    for line in order.lines:
        lines.add(
            {
                "order_id": order.order_id,
                "customer_id": order.customer_id,
                "day": day,
                "sku": line.sku,
                "quantity": int(line.quantity),
                "amount": converter.apply(int(line.unit_price) * int(line.quantity), factor),
            }
        )


def _ledger_tables(zone: ZoneInfo) -> tuple[pa.Table, dict[str, int]]:
    """The ledger's entries (the points dataset) and every customer's balance."""

    def scan(segment: int) -> tuple[pa.Table, dict[str, int]]:
        points, balances = _Batches(POINT_COLUMNS), dict[str, int]()
        for r in snapshot_reads.ledger(segment, SEGMENTS):
            if r["kind"] == "balance":
                balances[r["customer_id"]] = r["balance"]
            elif r["kind"] == "entry" and r["at"]:
                points.add(
                    {
                        "customer_id": r["customer_id"],
                        "entry_type": r["entry_type"],
                        "points": r["points"],
                        "day": local_day(r["at"], zone),
                    }
                )
        return points.table(), balances

    parts = _segments(scan)
    return pa.concat_tables([points for points, _ in parts]), {
        customer: balance for _, balances in parts for customer, balance in balances.items()
    }


def _consent(customer: Customer, channel: str) -> bool | None:
    held = customer.consents.get(channel)
    granted = held.get("granted") if isinstance(held, dict) else held
    return granted if isinstance(granted, bool) else None


def _customer_table(
    balances: dict[str, int], as_of: date, program: Program, zone: ZoneInfo
) -> pa.Table:
    """The active customers (a parallel Scan); merged-away and erased profiles are left out."""
    moment = datetime.combine(as_of, datetime.max.time(), zone).isoformat()

    def scan(segment: int) -> pa.Table:
        rows = _Batches(CUSTOMER_COLUMNS)
        for c in snapshot_reads.customers(segment, SEGMENTS):
            if c.status == ACTIVE:
                rows.add(_customer_row(c, balances, moment, program, zone))
        return rows.table()

    return pa.concat_tables(_segments(scan))


def _customer_row(
    c: Customer, balances: dict[str, int], moment: str, program: Program, zone: ZoneInfo
) -> dict[str, Any]:
    address = c.address or {}
    stats = c.stats or {}
    first, last = stats.get("first_order_at"), stats.get("last_order_at")
    return {
        "customer_id": c.customer_id,
        "created_at": c.created_at,
        "email": c.email,
        "phone": c.phone,
        "first_name": c.first_name,
        "last_name": c.last_name,
        "gender": c.gender,
        "locale": c.locale,
        "timezone": c.timezone,
        "country_code": address.get("country_code"),
        "province": address.get("province"),
        "city": address.get("city"),
        "zip": address.get("zip"),
        "birthday": c.birthday,
        "tags": list(c.tags or []),
        "consents_email": _consent(c, "email"),
        "consents_sms": _consent(c, "sms"),
        "tier": tier_for(stats.get("spend_months") or {}, moment, program).name,
        "total_spent": int(stats.get("total_spent", 0)),
        "orders_count": int(stats.get("orders_count", 0)),
        "first_order_at": str(local_day(first, zone)) if first else None,
        "last_order_at": str(local_day(last, zone)) if last else None,
        "points_balance": balances.get(c.customer_id, 0),
        "analytics": json.dumps(c.analytics, sort_keys=True) if c.analytics else None,
        "analytics_digest": held_digest(c.analytics),
        "version": int(c.version or 0),
    }


def held_digest(analytics: dict[str, Any] | None) -> int | None:
    """The digest of what a profile holds (`segmentation.digests`): None for nothing, and 0,
    a digest no computation gives but by a 1 in 2^64 chance, for analytics written before
    digests were (so they are rewritten once, with one)."""
    if not analytics:
        return None
    digest = analytics.get("digest")
    return int(digest) if isinstance(digest, int | Decimal) and not isinstance(digest, bool) else 0


def _frame(rows: list[dict[str, Any]], columns: dict[str, pa.DataType]) -> pd.DataFrame:
    table = pa.Table.from_pylist(rows, schema=pa.schema(list(columns.items())))
    return to_pandas(table)


def to_pandas(table: pa.Table) -> pd.DataFrame:
    """A snapshot table as a frame, pyarrow's defaults but for the digests: a 64-bit integer
    column with nulls would become floats, which do not hold 64 bits."""
    frame = table.to_pandas()
    if "analytics_digest" in table.column_names:
        digests = table.select(["analytics_digest"]).to_pandas(
            types_mapper={pa.int64(): pd.Int64Dtype()}.get
        )
        frame["analytics_digest"] = digests["analytics_digest"]
    return frame


def take(as_of: date, settings: Settings, program: Program) -> Snapshot:
    """Read the tables (a parallel Scan each) into the snapshot's Arrow tables, each item
    turned into its rows as it is read: the orders' Scan runs beside the ledger's, then the
    customers' (their rows carry the balances)."""
    zone = ZoneInfo(settings.timezone)
    with ThreadPoolExecutor(1) as pool:
        reading = pool.submit(_order_tables, Converter(settings), zone)
        points, balances = _ledger_tables(zone)
        customers = _customer_table(balances, as_of, program, zone)
        orders, lines, left_out = reading.result()
    # An order of a profile that is no longer active (erased, or merged and not yet moved)
    # stays in the orders for the books but has no customer to score.
    active = pc.is_in(orders["customer_id"], value_set=customers["customer_id"].combine_chunks())
    where = orders.schema.get_field_index("customer_active")
    orders = orders.set_column(where, "customer_active", active)
    return Snapshot(as_of, orders, lines, customers, points, left_out)


def frames(snapshot: Snapshot) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The active customers' orders and the customers, as frames (the pandas engine's)."""
    orders = snapshot.orders.filter(snapshot.orders["customer_active"])
    return to_pandas(orders), to_pandas(snapshot.customers)


# -- Parquet in the data bucket -------------------------------------------------------------------


def _parquet(table: pa.Table | pd.DataFrame, columns: dict[str, pa.DataType]) -> bytes:
    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(
            table[list(columns)], schema=pa.schema(list(columns.items())), preserve_index=False
        )
    out = io.BytesIO()
    pq.write_table(table, out, compression="zstd")
    return out.getvalue()


def _partitioned(dataset: str, table: pa.Table) -> dict[str, pa.Table]:
    """One slice of `table` per day, sorted by day (a stable sort: each day's rows keep their
    order), keyed by the day's file."""
    if table.num_rows == 0:
        return {}
    ordered = table.take(pc.sort_indices(table["day"]))
    days = ordered["day"].combine_chunks().cast(pa.int32()).to_numpy()
    firsts = np.flatnonzero(np.r_[True, days[1:] != days[:-1]])
    ends = np.r_[firsts[1:], len(days)]
    epoch = date(1970, 1, 1)
    return {
        f"{PREFIX}{dataset}/date={epoch + timedelta(days=int(days[a]))}/part-00000.parquet": (
            ordered.slice(a, b - a)
        )
        for a, b in zip(firsts, ends, strict=True)
    }


def write(snapshot: Snapshot, bucket: str) -> dict[str, int]:
    """Write the snapshot; remove what an older one wrote that this one does not (a partition
    whose orders all moved away, an older customers or points file). Files written, by dataset.
    """
    files: dict[str, tuple[pa.Table, dict[str, pa.DataType]]] = {}
    for key, part in _partitioned("orders", snapshot.orders).items():
        files[key] = (part, ORDER_COLUMNS)
    for key, part in _partitioned("order_lines", snapshot.lines).items():
        files[key] = (part, LINE_COLUMNS)
    dated = f"date={snapshot.as_of.isoformat()}/part-00000.parquet"
    files[f"{PREFIX}customers/{dated}"] = (snapshot.customers, CUSTOMER_COLUMNS)
    files[f"{PREFIX}points/{dated}"] = (snapshot.points, POINT_COLUMNS)

    def put(item: tuple[str, tuple[pa.Table, dict[str, pa.DataType]]]) -> None:
        key, (table, columns) = item
        s3.put_bytes(bucket, key, _parquet(table, columns), "application/vnd.apache.parquet")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, files.items()))
    stale = [key for key in s3.list_keys(bucket, PREFIX) if key not in files and key != MANIFEST]
    s3.delete_keys(bucket, stale)
    # What a reader needs before reading: the date, and the size that picks the engine.
    s3.put_json(
        bucket,
        MANIFEST,
        {
            "as_of": snapshot.as_of.isoformat(),
            "orders": snapshot.orders.num_rows,
            "customers": snapshot.customers.num_rows,
        },
    )
    counts: dict[str, int] = {}
    for key in files:
        dataset = key.removeprefix(PREFIX).split("/", 1)[0]
        counts[dataset] = counts.get(dataset, 0) + 1
    return counts


def read(
    bucket: str, dataset: str, *, start: date | None = None, end: date | None = None
) -> pd.DataFrame:
    """One dataset of the latest snapshot, only the date partitions in `start`..`end`."""
    columns = DATASETS[dataset]
    keys = []
    for key in s3.list_keys(bucket, f"{PREFIX}{dataset}/"):
        day = date.fromisoformat(key.split("date=", 1)[1][:10])
        if (start is None or day >= start) and (end is None or day <= end):
            keys.append(key)

    def get(key: str) -> pa.Table:
        body = s3.get_bytes(bucket, key)
        return pq.read_table(io.BytesIO(body or b""))

    with ThreadPoolExecutor(8) as pool:
        tables = list(pool.map(get, keys))
    if not tables:
        return _frame([], columns)
    return to_pandas(pa.concat_tables(tables))


def manifest(bucket: str) -> dict[str, Any] | None:
    found = s3.get_json(bucket, MANIFEST)
    return found if isinstance(found, dict) else None


def latest_date(bucket: str) -> date | None:
    found = manifest(bucket)
    return date.fromisoformat(found["as_of"]) if found else None


def download(bucket: str, root: str, datasets: tuple[str, ...]) -> None:
    """Copy datasets of the latest snapshot under `root` (DuckDB reads them there, standing in
    for Athena locally)."""
    import os

    for dataset in datasets:
        for key in s3.list_keys(bucket, f"{PREFIX}{dataset}/"):
            path = os.path.join(root, key.removeprefix(PREFIX))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as out:
                out.write(s3.get_bytes(bucket, key) or b"")


def scrub(bucket: str, customer_ids: set[str]) -> int:
    """Blank the personal fields of these customers in every customers file the snapshot
    holds (erasure reaches Parquet too); files rewritten."""
    rewritten = 0
    for key in s3.list_keys(bucket, f"{PREFIX}customers/"):
        body = s3.get_bytes(bucket, key)
        if body is None:
            continue
        frame = to_pandas(pq.read_table(io.BytesIO(body)))
        hit = frame["customer_id"].isin(customer_ids)
        if not hit.any():
            continue
        frame = frame[~hit]  # an erased person is not a customer to score either
        for name in CUSTOMER_COLUMNS:  # a file written before the column was
            if name not in frame:
                frame[name] = None
        s3.put_bytes(
            bucket, key, _parquet(frame, CUSTOMER_COLUMNS), "application/vnd.apache.parquet"
        )
        rewritten += 1
    return rewritten
