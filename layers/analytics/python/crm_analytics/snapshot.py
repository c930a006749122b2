"""The columnar snapshot (docs/analytics.md): taken from the tables by a parallel Scan, written
to the data bucket as Parquet partitioned by date, and read back by previews and reports.

Orders carry no personal field. Customers do (rule segments match on them), so only the latest
customers file is kept, and erasure rewrites it (`scrub`).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa
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
    as_of: date
    orders: pd.DataFrame
    lines: pd.DataFrame
    customers: pd.DataFrame
    points: pd.DataFrame
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


def _parallel(read: Callable[[int, int], Iterator[T]]) -> list[T]:
    with ThreadPoolExecutor(SEGMENTS) as pool:
        parts = pool.map(lambda segment: list(read(segment, SEGMENTS)), range(SEGMENTS))
        return [row for part in parts for row in part]


def local_day(moment: str | None, zone: ZoneInfo) -> date | None:
    if not moment:
        return None
    parsed = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    if parsed.tzinfo is None:  # a date or a naive time: the shop's own calendar
        return parsed.date()
    return parsed.astimezone(zone).date()


def _order_rows(
    orders: list[Order], converter: Converter, zone: ZoneInfo, left_out: dict[str, int]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rows: list[dict[str, Any]] = []
    lines: list[dict[str, Any]] = []
    for order in orders:
        day = local_day(order.created_at or order.received_at, zone)
        factor = converter.factor(order.currency)
        if day is None or not order.customer_id:
            continue
        if factor is None:
            code = (order.currency or converter.currency).upper()
            left_out[code] = left_out.get(code, 0) + 1
            continue
        address = order.shipping_address or {}
        rows.append(
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
                "customer_active": False,
            }
        )
        for line in order.lines:
            lines.append(
                {
                    "order_id": order.order_id,
                    "customer_id": order.customer_id,
                    "day": day,
                    "sku": line.sku,
                    "quantity": int(line.quantity),
                    "amount": converter.apply(int(line.unit_price) * int(line.quantity), factor),
                }
            )
    return rows, lines


def _consent(customer: Customer, channel: str) -> bool | None:
    held = customer.consents.get(channel)
    granted = held.get("granted") if isinstance(held, dict) else held
    return granted if isinstance(granted, bool) else None


def _customer_rows(
    customers: list[Customer],
    balances: dict[str, int],
    as_of: date,
    program: Program,
    zone: ZoneInfo,
) -> list[dict[str, Any]]:
    rows = []
    moment = datetime.combine(as_of, datetime.max.time(), zone).isoformat()
    for c in customers:
        if c.status != ACTIVE:
            continue
        address = c.address or {}
        stats = c.stats or {}
        first, last = stats.get("first_order_at"), stats.get("last_order_at")
        rows.append(
            {
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
        )
    return rows


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
    """Read the tables (a parallel Scan each) into the snapshot's frames."""
    zone = ZoneInfo(settings.timezone)
    converter = Converter(settings)
    left_out: dict[str, int] = {}
    with ThreadPoolExecutor(3) as pool:
        customers_read = pool.submit(_parallel, snapshot_reads.customers)
        orders_read = pool.submit(_parallel, snapshot_reads.orders)
        ledger_read = pool.submit(_parallel, snapshot_reads.ledger)
        customers, orders, ledger = (
            customers_read.result(),
            orders_read.result(),
            ledger_read.result(),
        )
    active = {c.customer_id for c in customers if c.status == ACTIVE}
    order_rows, line_rows = _order_rows(orders, converter, zone, left_out)
    balances = {r["customer_id"]: r["balance"] for r in ledger if r["kind"] == "balance"}
    point_rows = [
        {
            "customer_id": r["customer_id"],
            "entry_type": r["entry_type"],
            "points": r["points"],
            "day": local_day(r["at"], zone),
        }
        for r in ledger
        if r["kind"] == "entry" and r["at"]
    ]
    snapshot = Snapshot(
        as_of=as_of,
        orders=_frame(order_rows, ORDER_COLUMNS),
        lines=_frame(line_rows, LINE_COLUMNS),
        customers=_frame(
            _customer_rows(customers, balances, as_of, program, zone), CUSTOMER_COLUMNS
        ),
        points=_frame(point_rows, POINT_COLUMNS),
        left_out=left_out,
    )
    # An order of a profile that is no longer active (erased, or merged and not yet moved)
    # stays in the orders for the books but has no customer to score.
    snapshot.orders["customer_active"] = snapshot.orders["customer_id"].isin(active)
    return snapshot


# -- Parquet in the data bucket -------------------------------------------------------------------


def _parquet(frame: pd.DataFrame, columns: dict[str, pa.DataType]) -> bytes:
    table = pa.Table.from_pandas(
        frame[list(columns)], schema=pa.schema(list(columns.items())), preserve_index=False
    )
    out = io.BytesIO()
    pq.write_table(table, out, compression="zstd")
    return out.getvalue()


def _partitioned(dataset: str, frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    if frame.empty:
        return {}
    return {
        f"{PREFIX}{dataset}/date={day.isoformat()}/part-00000.parquet": part
        for day, part in frame.groupby("day", sort=True)
    }


def write(snapshot: Snapshot, bucket: str) -> dict[str, int]:
    """Write the snapshot; remove what an older one wrote that this one does not (a partition
    whose orders all moved away, an older customers or points file). Files written, by dataset.
    """
    files: dict[str, tuple[pd.DataFrame, dict[str, pa.DataType]]] = {}
    for key, part in _partitioned("orders", snapshot.orders).items():
        files[key] = (part, ORDER_COLUMNS)
    for key, part in _partitioned("order_lines", snapshot.lines).items():
        files[key] = (part, LINE_COLUMNS)
    dated = f"date={snapshot.as_of.isoformat()}/part-00000.parquet"
    files[f"{PREFIX}customers/{dated}"] = (snapshot.customers, CUSTOMER_COLUMNS)
    files[f"{PREFIX}points/{dated}"] = (snapshot.points, POINT_COLUMNS)

    def put(item: tuple[str, tuple[pd.DataFrame, dict[str, pa.DataType]]]) -> None:
        key, (frame, columns) = item
        s3.put_bytes(bucket, key, _parquet(frame, columns), "application/vnd.apache.parquet")

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
            "orders": len(snapshot.orders),
            "customers": len(snapshot.customers),
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
