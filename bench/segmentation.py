"""The segmentation job at scale, against DuckDB on the same files, and its write-back.

A. Scale: a generated shop (1,000,000 customers, 10,000,000 orders over three years; `--quick`
   100,000 / 1,000,000) as Parquet in the snapshot's layout (docs/analytics.md), generated
   with numpy and pyarrow (vectorised) and cached between runs in a git-ignored directory
   keyed by seed and size. Each measurement is a fresh child process, so that its peak memory
   is its own:
   - the job: its computing part as it runs at that size (`jobs.scoring_engine`): past the
     documented size one SQL query over the files (`sql.facts_sql` on DuckDB, with three
     rule segments compiled to SQL), else the frames and `segmentation.facts`; then
     `segmentation.finish` (memberships, the models fitted on the default sample and every
     customer scored, digests) and the change detection;
   - the reference: DuckDB computing RFM, lifecycle and value bands on the same files with
     `crm_analytics.sql.segment_sql`.
   Interleaved, the order rotated; the job's RFM, lifecycle and value bands must equal DuckDB's
   for every customer (a digest of all of them, and a sample compared value by value), and its
   rule segments those of the same rules written by hand in SQL.
B. Write-back: 100,000 customers (`--quick` 10,000) whose analytics all change, written by
   `crm_analytics.jobs.write_back` against the project's moto endpoint in another process
   (`crm_local.endpoint.Endpoint`, as `bench/imports.py`), its calls counted by
   `bench.calls.CallCounter`; then every profile read back and compared, and a second
   write-back once they hold what was written, which must write nothing.
"""

from __future__ import annotations

import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from bench.common import (
    LAYER_DIR,
    PROJECT_DIR,
    Failures,
    Row,
    judged,
    local_stage_environment,
    machine,
    ratio,
    write_result,
)

NAME = "segmentation"
MARK = "BENCH_SEGMENTATION "
ANALYTICS_LAYER_DIR = PROJECT_DIR / "layers" / "analytics" / "python"
CACHE_DIR = PROJECT_DIR / "bench" / ".data"  # git-ignored: the generated shops, by seed and size
GENERATOR_VERSION = 2  # part of the cache key: a change to the generator makes a new shop
SEED = 7
AS_OF = date(2026, 11, 20)
HISTORY_DAYS = 3 * 365  # orders placed over the three years up to AS_OF
CURRENCY = "CNY"

TARGET_RATIO = 2.0  # the job's time / the reference's, medians
TARGET_PEAK_MB = 2048.0  # the job's peak resident set

# The rule segments of the job (raw, as PUT /segments/{name} takes them).
RULES: dict[str, Any] = {
    "big_spenders": {
        "all": [
            {"field": "total_spent", "op": ">=", "value": "1000.00"},
            {"field": "orders_count", "op": ">=", "value": 3},
        ]
    },
    "vip_or_email_ok": {
        "any": [
            {"field": "tags", "op": "contains", "value": "vip"},
            {"field": "consents.email", "op": "=", "value": True},
        ]
    },
    "east_recent": {
        "all": [
            {"field": "province", "op": "in", "value": ["浙江", "上海", "江苏"]},
            {"field": "r", "op": ">=", "value": 4},
        ]
    },
}
# The same rules in SQL over the customers file joined with the reference's scores (a check,
# not timed): `c` the customers, `s` the reference's rows (none for a customer without a
# counted order).
RULES_SQL = {
    "big_spenders": "c.total_spent >= 100000 AND c.orders_count >= 3",
    "vip_or_email_ok": "list_contains(c.tags, 'vip') OR c.consents_email = true",
    "east_recent": "c.province IN ('浙江', '上海', '江苏') AND s.r >= 4",
}

# -- the generated shop ---------------------------------------------------------------------------

PROVINCES = (
    ("广东", "广州", 0.14),
    ("浙江", "杭州", 0.12),
    ("江苏", "南京", 0.11),
    ("上海", "上海", 0.09),
    ("北京", "北京", 0.08),
    ("山东", "济南", 0.07),
    ("四川", "成都", 0.06),
    ("福建", "福州", 0.05),
    ("湖北", "武汉", 0.05),
    ("河南", "郑州", 0.05),
    ("湖南", "长沙", 0.04),
    ("天津", "天津", 0.03),
    ("重庆", "重庆", 0.03),
    ("陕西", "西安", 0.03),
    ("辽宁", "沈阳", 0.03),
    ("安徽", "合肥", 0.02),
)
SURNAMES = ("王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴", "Smith", "Lee", "Brown")
GIVEN_NAMES = ("伟", "芳", "娜", "秀英", "敏", "静", "丽", "强", "磊", "Wei", "Anna", "Tom", "Mei")
TAGS = (("vip", 0.03), ("wholesale", 0.02), ("newsletter", 0.2), ("wechat", 0.25), ("staff", 0.005))
SOURCES = (("shopify", 0.85), ("pos", 0.1), ("api", 0.05))


@dataclass(frozen=True)
class Shop:
    """A generated shop on disk: `root` holds `orders/` and `customers/`."""

    root: Path
    manifest: dict[str, Any]


def _key(customers: int, orders: int, seed: int) -> str:
    return f"shop-v{GENERATOR_VERSION}-seed{seed}-c{customers}-o{orders}-{AS_OF.isoformat()}"


def _fixed_width_strings(matrix: Any) -> Any:
    """A pyarrow string array from an (n, width) uint8 matrix of ASCII (one string a row)."""
    import numpy as np
    import pyarrow as pa

    n, width = matrix.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    data = np.ascontiguousarray(matrix, dtype=np.uint8)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


def _hex_ids(rng: Any, n: int, prefix: str, nibbles: int) -> Any:
    """n distinct `<prefix><hex>` ids, random (as `crm.services.profiles.new_customer_id`)."""
    import numpy as np

    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    while True:
        raw = rng.integers(0, 16, size=(n, nibbles), dtype=np.uint8)
        as_int = np.zeros(n, dtype=np.uint64)
        for column in range(min(nibbles, 16)):  # a loop over digits, not rows: uniqueness check
            as_int = (as_int << np.uint64(4)) | raw[:, column].astype(np.uint64)
        if len(np.unique(as_int)) == n:
            break
    head = np.frombuffer(prefix.encode(), dtype=np.uint8)
    matrix = np.concatenate([np.broadcast_to(head, (n, len(head))), digits[raw]], axis=1)
    return _fixed_width_strings(matrix)


def _pick(rng: Any, labels: Sequence[str], weights: Sequence[float], n: int) -> Any:
    """n labels drawn with these weights, as a pyarrow string array (and the indices)."""
    import numpy as np
    import pyarrow as pa

    p = np.asarray(weights, dtype=np.float64)
    index = rng.choice(len(labels), size=n, p=p / p.sum())
    return pa.array(list(labels), pa.string()).take(pa.array(index)), index


def _join(*parts: Any) -> Any:
    import pyarrow.compute as pc

    return pc.binary_join_element_wise(*parts, "")


def _with_nulls(array: Any, present: Any) -> Any:
    """`array` with a null wherever `present` (numpy bool) is False."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.if_else(pa.array(present), array, pa.scalar(None, array.type))


def _order_counts(rng: Any, customers: int, orders: int) -> Any:
    """Orders per customer, summing to `orders` exactly: 12 % never ordered, two thirds of the
    buyers 1 to 3 orders, the rest a long (Pareto) tail capped at 5,000."""
    import numpy as np

    counts = np.zeros(customers, dtype=np.int64)
    buyers = rng.random(customers) >= 0.12
    light = buyers & (rng.random(customers) < 0.75)
    tail = buyers & ~light
    counts[light] = rng.choice([1, 2, 3], size=int(light.sum()), p=[0.6, 0.27, 0.13])
    need = orders - int(counts.sum())
    n_tail = int(tail.sum())
    if need < 4 * n_tail:
        raise ValueError(f"{orders} orders are too few for {customers} customers")
    shape = rng.pareto(1.4, size=n_tail)
    cap = 5000

    def total(scale: float) -> int:
        return int(np.minimum(4 + np.floor(shape * scale), cap).sum())

    low, high = 0.0, 1.0
    while total(high) < need:
        high *= 2
    for _ in range(60):  # bisection on the scale: the tail's sum as close to `need` as can be
        mid = (low + high) / 2
        low, high = (mid, high) if total(mid) < need else (low, mid)
    tail_counts = np.minimum(4 + np.floor(shape * low), cap).astype(np.int64)
    rest = need - int(tail_counts.sum())
    while rest:  # a few ones more (or less) on random tail customers, within the bounds
        room = np.flatnonzero(tail_counts < cap if rest > 0 else tail_counts > 4)
        chosen = rng.choice(room, size=min(abs(rest), len(room)), replace=False)
        tail_counts[chosen] += 1 if rest > 0 else -1
        rest -= len(chosen) if rest > 0 else -len(chosen)
    counts[tail] = tail_counts
    return counts


def generate(root: Path, customers: int, orders: int, seed: int = SEED) -> dict[str, Any]:
    """Write the shop under `root` (`orders/date=YYYY-MM-DD/part-00000.parquet`, one file a
    day, and `customers/date=<AS_OF>/part-00000.parquet`), vectorised; its manifest."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    sys.path[:0] = [p for p in (str(ANALYTICS_LAYER_DIR), str(LAYER_DIR)) if p not in sys.path]
    from crm_analytics.snapshot import CUSTOMER_COLUMNS, ORDER_COLUMNS

    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    epoch_as_of = (AS_OF - date(1970, 1, 1)).days

    # Customers: who, how many orders, when they came and how long they stayed.
    customer_ids = _hex_ids(rng, customers, "cus_", 20)
    counts = _order_counts(rng, customers, orders)
    first_back = np.floor(HISTORY_DAYS * rng.random(customers) ** 1.3).astype(np.int64)
    stay = np.minimum(rng.exponential(400.0, customers), first_back).astype(np.int64)
    regular = (counts >= 4) & (rng.random(customers) < 0.7)  # most of the tail still buys
    stay[regular] = first_back[regular]

    # Orders: one row each, grouped by customer, then sorted by day for the partitions.
    owner = np.repeat(np.arange(customers), counts)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = np.arange(orders) - starts[owner]
    back = first_back[owner] - np.where(
        position == 0, 0, np.floor(rng.random(orders) * (stay[owner] + 1)).astype(np.int64)
    )
    back = np.clip(back, 0, HISTORY_DAYS)
    day = (epoch_as_of - back).astype(np.int32)
    total = np.maximum(np.rint(rng.lognormal(np.log(25_000), 0.8, orders)), 100).astype(np.int64)
    total[rng.random(orders) < 0.005] = 0  # free samples: nothing kept, never counted
    roll = rng.random(orders)
    paid = roll >= 0.05  # 5 % never paid
    cancelled = rng.random(orders) < 0.03
    refunded = np.zeros(orders, dtype=np.int64)
    refund = rng.random(orders)
    partial = paid & ~cancelled & (refund < 0.04)
    refunded[partial] = np.floor(total[partial] * rng.uniform(0.1, 0.5, int(partial.sum())))
    full = (paid & ~cancelled & (refund >= 0.04) & (refund < 0.055)) | (paid & cancelled)
    refunded[full] = total[full]

    by_day = np.argsort(day, kind="stable")
    owner, day, total, paid, cancelled, refunded = (
        a[by_day] for a in (owner, day, total, paid, cancelled, refunded)
    )
    seconds = day.astype(np.int64) * 86_400 + rng.integers(0, 86_400, orders)
    placed_at = pc.strftime(pa.array(seconds, pa.timestamp("s")), format="%Y-%m-%dT%H:%M:%S+08:00")
    source, _ = _pick(rng, [s for s, _ in SOURCES], [w for _, w in SOURCES], orders)
    foreign = rng.random(orders) < 0.03
    currency = pc.if_else(pa.array(foreign), "USD", CURRENCY)
    province, _ = _pick(rng, [p for p, _, _ in PROVINCES], [w for *_, w in PROVINCES], orders)
    order_table = pa.table(
        {
            "order_id": _join(
                "ord_shopify_", pa.array(7_000_000_000 + np.arange(orders)).cast(pa.string())
            ),
            "customer_id": customer_ids.take(pa.array(owner)),
            "source": source,
            "currency": currency,
            "placed_at": placed_at,
            "day": pa.array(day, pa.date32()),
            "paid": pa.array(paid),
            "cancelled": pa.array(cancelled),
            "total": pa.array(total),
            "refunded": pa.array(refunded),
            "country_code": pa.array(np.where(rng.random(orders) < 0.98, "CN", "HK")),
            "province": province,
            "customer_active": pa.array(np.ones(orders, dtype=bool)),  # every buyer is active
        },
        schema=pa.schema(list(ORDER_COLUMNS.items())),
    )
    days, first_rows = np.unique(day, return_index=True)
    bounds = [*first_rows.tolist(), orders]
    for i, epoch_day in enumerate(days.tolist()):  # one file a day (a loop over partitions)
        partition = root / "orders" / f"date={date(1970, 1, 1) + timedelta(days=epoch_day)}"
        partition.mkdir(parents=True)
        part = order_table.slice(bounds[i], bounds[i + 1] - bounds[i])
        pq.write_table(part, partition / "part-00000.parquet", compression="zstd")

    # The customers file: profile fields, and the stats the orders give them.
    kept = total - refunded
    counted = paid & ~cancelled & (kept > 0)
    spent = np.bincount(owner[counted], weights=kept[counted], minlength=customers)
    spent = spent.astype(np.int64)
    counted_n = np.bincount(owner[counted], minlength=customers)
    year = counted & (day > epoch_as_of - 365)
    spent_year = np.bincount(owner[year], weights=kept[year], minlength=customers)
    first_day = np.full(customers, np.iinfo(np.int32).max, dtype=np.int64)
    last_day = np.full(customers, -1, dtype=np.int64)
    np.minimum.at(first_day, owner[counted], day[counted])
    np.maximum.at(last_day, owner[counted], day[counted])
    has_counted = counted_n > 0
    created_days = epoch_as_of - first_back - rng.integers(0, 30, customers)
    created_at = pc.strftime(
        pa.array(created_days * 86_400 + rng.integers(0, 86_400, customers), pa.timestamp("s")),
        format="%Y-%m-%dT%H:%M:%S+00:00",
    )

    def day_text(epoch_days: Any, present: Any) -> Any:
        text = pc.strftime(
            pa.array(np.where(present, epoch_days, 0) * 86_400, pa.timestamp("s")),
            format="%Y-%m-%d",
        )
        return _with_nulls(text, present)

    short_id = pc.utf8_slice_codeunits(customer_ids, 4, 16)
    phones = pa.array(rng.integers(3_000_000_000, 9_999_999_999, customers)).cast(pa.string())
    province_c, province_index = _pick(
        rng, [p for p, _, _ in PROVINCES], [w for *_, w in PROVINCES], customers
    )
    cities = pa.array([c for _, c, _ in PROVINCES]).take(pa.array(province_index))
    tag_names = [t for t, _ in TAGS]
    has_tag = np.stack([rng.random(customers) < w for _, w in TAGS], axis=1)
    tag_offsets = np.concatenate([[0], np.cumsum(has_tag.sum(axis=1))]).astype(np.int32)
    tag_values = pa.array(tag_names).take(pa.array(np.nonzero(has_tag)[1]))
    birthdays = rng.integers(-7300, 12_000, customers)  # 1950 .. 2002

    def consent(granted: float, unknown: float) -> Any:
        roll = rng.random(customers)
        return _with_nulls(pa.array(roll < granted), roll < 1 - unknown)

    tier = np.where(
        spent_year >= 1_000_000, "gold", np.where(spent_year >= 200_000, "silver", "regular")
    )
    customer_table = pa.table(
        {
            "customer_id": customer_ids,
            "created_at": created_at,
            "email": _with_nulls(_join(short_id, "@shop.example"), rng.random(customers) < 0.9),
            "phone": _with_nulls(_join("+861", phones), rng.random(customers) < 0.7),
            "first_name": pa.array(GIVEN_NAMES).take(
                pa.array(rng.integers(0, len(GIVEN_NAMES), customers))
            ),
            "last_name": pa.array(SURNAMES).take(
                pa.array(rng.integers(0, len(SURNAMES), customers))
            ),
            "gender": _with_nulls(
                pa.array(np.where(rng.random(customers) < 0.6, "female", "male")),
                rng.random(customers) < 0.5,
            ),
            "locale": pa.array(np.where(rng.random(customers) < 0.85, "zh-CN", "en-US")),
            "timezone": pa.array(np.full(customers, "Asia/Shanghai")),
            "country_code": pa.array(np.full(customers, "CN")),
            "province": _with_nulls(province_c, rng.random(customers) < 0.8),
            "city": cities,
            "zip": pa.array(rng.integers(100_000, 999_999, customers)).cast(pa.string()),
            "birthday": day_text(birthdays, rng.random(customers) < 0.6),
            "tags": pa.ListArray.from_arrays(pa.array(tag_offsets), tag_values),
            "consents_email": consent(0.45, 0.2),
            "consents_sms": consent(0.3, 0.3),
            "tier": pa.array(tier),
            "total_spent": pa.array(spent),
            "orders_count": pa.array(counted_n.astype(np.int64)),
            "first_order_at": day_text(first_day, has_counted),
            "last_order_at": day_text(last_day, has_counted),
            "points_balance": pa.array(
                np.floor(spent / 100 * rng.uniform(0.2, 1.0, customers)).astype(np.int64)
            ),
            "analytics": pa.nulls(customers, pa.string()),
            "analytics_digest": pa.nulls(customers, pa.int64()),
            "version": pa.array(np.ones(customers, dtype=np.int64)),
        },
        schema=pa.schema(list(CUSTOMER_COLUMNS.items())),
    )
    partition = root / "customers" / f"date={AS_OF.isoformat()}"
    partition.mkdir(parents=True)
    pq.write_table(customer_table, partition / "part-00000.parquet", compression="zstd")

    sample = rng.choice(customers, size=min(2000, customers), replace=False)
    edges = [
        int(np.argmax(spent)),  # the biggest spender
        int(np.argmax(counts)),  # the most orders
        *np.flatnonzero(counts == 0)[:3].tolist(),  # never ordered
        *np.flatnonzero((counts > 0) & ~has_counted)[:3].tolist(),  # orders, none counted
    ]
    chosen = sorted(set(sample.tolist()) | set(edges))
    return {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "customers": customers,
        "orders": orders,
        "as_of": AS_OF.isoformat(),
        "history_days": HISTORY_DAYS,
        "order_partitions": len(days),
        "customers_with_orders": int((counts > 0).sum()),
        "customers_with_counted_orders": int(has_counted.sum()),
        "customers_with_1_to_3_orders": int(((counts >= 1) & (counts <= 3)).sum()),
        "max_orders_per_customer": int(counts.max()),
        "orders_counted": int(counted.sum()),
        "orders_unpaid": int((~paid).sum()),
        "orders_cancelled": int(cancelled.sum()),
        "orders_refunded_partly": int(partial.sum()),
        "orders_refunded_fully": int(full.sum()),
        "bytes": sum(f.stat().st_size for f in root.rglob("*.parquet")),
        "generated_s": round(time.perf_counter() - started, 1),
        "sample_customer_ids": customer_ids.take(pa.array(chosen)).to_pylist(),
    }


def shop(customers: int, orders: int, seed: int = SEED) -> Shop:
    """The generated shop, from the cache when a complete one is there (its manifest is
    written last); else generated in a child process (so that this one stays small) into a
    temporary directory beside the cache, then moved into place."""
    path = CACHE_DIR / _key(customers, orders, seed)
    manifest = path / "manifest.json"
    if manifest.exists():
        return Shop(path, {**json.loads(manifest.read_text(encoding="utf-8")), "cached": True})
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="generating-", dir=CACHE_DIR))
    try:
        made = _child("generate_main", str(tmp), str(customers), str(orders), str(seed))
        (tmp / "manifest.json").write_text(json.dumps(made["result"], indent=1), encoding="utf-8")
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return Shop(path, {**made["result"], "cached": False, "peak_rss_mb": made["peak_rss_mb"]})


# -- children -------------------------------------------------------------------------------------


def _status_mb(field: str) -> float:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


def _ru_maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def _paths() -> None:
    """The analytics function's import roots: the project, the core and analytics layers."""
    for path in (str(ANALYTICS_LAYER_DIR), str(LAYER_DIR), str(PROJECT_DIR)):
        if path in sys.path:
            sys.path.remove(path)
        sys.path.insert(0, path)


def _report(result: Mapping[str, Any], start_maxrss: float) -> None:
    """The child's one MARK line: its result and its memory."""
    figures = {
        "result": result,
        "peak_rss_mb": round(_status_mb("VmHWM"), 1),
        "ru_maxrss_mb": round(_ru_maxrss_mb(), 1),
        "ru_maxrss_at_start_mb": round(start_maxrss, 1),
    }
    print(MARK + json.dumps(figures, ensure_ascii=False, default=str), flush=True)


def generate_main(root: str, customers: str, orders: str, seed: str) -> None:
    start_maxrss = _ru_maxrss_mb()
    _paths()
    _report(generate(Path(root), int(customers), int(orders), int(seed)), start_maxrss)


def _child(function: str, *args: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """`function(*args)` of this module in a fresh interpreter; its MARK line, parsed."""
    code = f"import sys; from bench.segmentation import {function}; {function}(*sys.argv[1:])"
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=PROJECT_DIR,
        env=dict(env) if env is not None else None,
        capture_output=True,
        text=True,
        timeout=7200,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{function} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    figures: dict[str, Any] = json.loads(lines[-1][len(MARK) :])
    return figures


# -- A: the job and the reference, each in its own child ------------------------------------------

# What the job reads: the columns `segmentation.compute` uses (orders) and the customers file
# whole, as the snapshot writes it (the rule fields, `analytics` and `version` for the
# write-back).
ORDER_READ = ("customer_id", "day", "paid", "cancelled", "total", "refunded")
CANON = ("r", "f", "m", "group", "recency_days", "frequency", "monetary", "lifecycle", "value_band")


def _canonical(frame: Any) -> Any:
    """One row per scored customer, sorted by `customer_id`, the columns of `CANON` as int64
    and str ("" for none): the job's and the reference's figures in one shape."""
    import pandas as pd

    out = pd.DataFrame(index=pd.Index(frame.index.astype(str), name="customer_id"))
    for name in CANON:
        column = frame[name]
        if name in ("group", "lifecycle", "value_band"):
            out[name] = column.astype(object).where(column.notna(), "").astype(str).to_numpy()
        else:
            out[name] = column.astype("int64").to_numpy()
    return out.sort_index()


def _digest(canonical: Any) -> str:
    """An order-free digest of every row (customer id included)."""
    import numpy as np
    import pandas as pd

    hashed = pd.util.hash_pandas_object(canonical.reset_index(), index=False).to_numpy()
    return f"{len(canonical)}:{int(hashed.astype(np.uint64).sum(dtype=np.uint64)):016x}"


def _sample(canonical: Any, ids: Sequence[str]) -> dict[str, Any]:
    """The figures of these customers (None for one without a counted order)."""
    present = canonical[canonical.index.isin(list(ids))]
    rows = {
        str(cid): [v.item() if hasattr(v, "item") else v for v in values]
        for cid, *values in present.itertuples(name=None)
    }
    return {cid: rows.get(cid) for cid in ids}


def job_main(root: str, sample_file: str, orders: str) -> None:
    """The job's computation as it runs on a shop of this size, timed by part: the engine
    the job picks for `orders` orders (`jobs.scoring_engine`): past the documented size one
    SQL query over the files (`sql.facts_sql` on DuckDB, Athena's stand-in), else the
    snapshot's frames read with pyarrow and `segmentation.facts` (pandas); then
    `segmentation.finish` (memberships, the models fitted on the default sample and every
    customer scored, digests) and the change detection (`Outcome.changed`)."""
    start_maxrss = _ru_maxrss_mb()
    _paths()
    started = time.perf_counter()
    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq

    from crm.domain.segment_rules import LIFECYCLE_STAGES, VALUE_BANDS, parse_rule
    from crm_analytics import clv, segmentation, sql
    from crm_analytics.jobs import scoring_engine
    from crm_analytics.snapshot import to_pandas

    imports_s = time.perf_counter() - started
    baseline_mb = _status_mb("VmRSS")
    base = Path(root)
    parts: dict[str, float] = {}
    fits: list[float] = []

    def timed(function: Any, into: list[float]) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                into.append(time.perf_counter() - t0)

        return wrapper

    # The models' share of `finish`: its `_predictions` (fit and scoring), and of that the two
    # fits; everything else in `finish` is memberships and digests.
    predictions: list[float] = []
    segmentation._predictions = timed(segmentation._predictions, predictions)  # type: ignore[attr-defined]
    clv.fit_bgnbd = timed(clv.fit_bgnbd, fits)  # type: ignore[assignment]
    clv.fit_gamma_gamma = timed(clv.fit_gamma_gamma, fits)  # type: ignore[assignment]

    rules = {name: parse_rule(raw, CURRENCY) for name, raw in RULES.items()}
    engine = scoring_engine(int(orders))
    peaks: dict[str, float] = {}
    if engine == "sql":  # as `jobs.sql_facts` and `sql.facts_duckdb`, in two timed steps
        t0 = time.perf_counter()
        text = sql.facts_sql(
            sql.ACTIVE_ORDERS.format(table=sql.source_duckdb(root, "orders")),
            sql.source_duckdb(root, "customers"),
            AS_OF,
            rules=rules,
        )
        result = sql.query_duckdb(text, arrow=True)
        parts["query"] = time.perf_counter() - t0
        peaks["query"] = _status_mb("VmHWM")
        t0 = time.perf_counter()
        found = sql.as_facts(result)
        del result
        parts["to_frame"] = time.perf_counter() - t0
        orders_read = int(orders)
    else:
        t0 = time.perf_counter()
        frame = pq.read_table(base / "orders", columns=list(ORDER_READ)).to_pandas()
        (customers_file,) = sorted((base / "customers").rglob("*.parquet"))
        customers = to_pandas(pq.read_table(customers_file))
        parts["read"] = time.perf_counter() - t0
        peaks["read"] = _status_mb("VmHWM")
        t0 = time.perf_counter()
        found = segmentation.facts(frame, customers, AS_OF, rule_segments=rules)
        parts["facts"] = time.perf_counter() - t0
        orders_read = len(frame)
        del frame, customers
    after_read_mb = _status_mb("VmRSS")
    peaks["facts"] = _status_mb("VmHWM")

    t0 = time.perf_counter()
    outcome = segmentation.finish(found, AS_OF, sorted(rules))
    finish_s = time.perf_counter() - t0
    parts["models"] = sum(predictions)
    parts["memberships_and_digests"] = finish_s - parts["models"]
    peaks["finish"] = _status_mb("VmHWM")

    t0 = time.perf_counter()
    changed = outcome.changed()
    parts["changes"] = time.perf_counter() - t0
    total_s = sum(parts.values())
    peak_mb = _status_mb("VmHWM")

    # Checks, not timed: the built-in figures of every scored customer, in one shape.
    p = outcome.profiles
    scored = p[p["r"].notna()].copy()
    for names, column in ((LIFECYCLE_STAGES, "lifecycle"), (VALUE_BANDS, "value_band")):
        label = pd.Series(None, index=scored.index, dtype=object)
        for name in names:
            label[label.index.isin(outcome.members[name])] = name
        scored[column] = label
    canonical = _canonical(scored)
    ids = json.loads(Path(sample_file).read_text(encoding="utf-8"))
    predicted = p["p_p_alive"].notna()
    finite = bool(
        np.isfinite(p.loc[predicted, ["p_p_alive", "p_expected_orders_90d"]].to_numpy()).all()
        and (p.loc[predicted, "p_clv_12m"] >= 0).all()
    )
    _report(
        {
            "engine": engine,
            "seconds": round(total_s, 3),
            "parts_s": {k: round(v, 3) for k, v in parts.items()},
            "finish_s": round(finish_s, 3),
            "model_fits_s": round(sum(fits), 3),
            "models_sample": clv.SAMPLE_SIZE,
            "imports_s": round(imports_s, 3),
            "baseline_rss_mb": round(baseline_mb, 1),
            "rss_after_read_mb": round(after_read_mb, 1),
            "peak_rss_during_job_mb": round(peak_mb, 1),
            "peak_rss_after_mb": {k: round(v, 1) for k, v in {**peaks, "changes": peak_mb}.items()},
            "orders_read": orders_read,
            "customers_read": len(p),
            "scored": len(scored),
            "predicted": int(predicted.sum()),
            "predictions_finite": finite,
            "models": outcome.models,
            "profiles_changed": int(changed.sum()),
            "profiles_to_hold_something": int(p["digest"].notna().sum()),
            "segment_sizes": {name: len(ids_) for name, ids_ in outcome.members.items()},
            "rule_members_digest": {name: _members_digest(outcome.members[name]) for name in RULES},
            "digest": _digest(canonical),
            "sample": _sample(canonical, ids),
        },
        start_maxrss,
    )


def _members_digest(ids: Sequence[str]) -> str:
    import hashlib

    return f"{len(ids)}:{hashlib.sha256(chr(10).join(sorted(ids)).encode()).hexdigest()[:16]}"


def reference_main(root: str, sample_file: str) -> None:
    """DuckDB: `segment_sql` over the same orders files, timed; then (not timed) the rule
    segments' members in SQL over the customers file and these scores."""
    start_maxrss = _ru_maxrss_mb()
    _paths()
    started = time.perf_counter()
    import duckdb

    from crm_analytics.sql import as_segments, orders_source_duckdb, segment_sql

    imports_s = time.perf_counter() - started
    baseline_mb = _status_mb("VmRSS")
    sql = segment_sql(orders_source_duckdb(root), AS_OF)
    connection = duckdb.connect(":memory:")
    t0 = time.perf_counter()
    frame = as_segments(connection.execute(sql).df())  # as `crm_analytics.sql.run_duckdb`
    seconds = time.perf_counter() - t0
    peak_mb = _status_mb("VmHWM")

    canonical = _canonical(frame)
    ids = json.loads(Path(sample_file).read_text(encoding="utf-8"))
    sizes: dict[str, int] = {}
    for column, prefix in (("lifecycle", ""), ("value_band", ""), ("group", "rfm_")):
        for name, n in frame[column].value_counts().items():
            sizes[f"{prefix}{name}"] = int(n)
    connection.register("scores", frame.reset_index())
    (customers_file,) = sorted((Path(root) / "customers").rglob("*.parquet"))
    rule_digests = {}
    for name, condition in RULES_SQL.items():
        rows = connection.execute(
            "SELECT c.customer_id FROM read_parquet(?) AS c "  # noqa: S608 - our own constants
            f"LEFT JOIN scores AS s ON s.customer_id = c.customer_id WHERE {condition}",
            [str(customers_file)],
        ).fetchall()
        rule_digests[name] = _members_digest([r[0] for r in rows])
    connection.close()
    _report(
        {
            "seconds": round(seconds, 3),
            "imports_s": round(imports_s, 3),
            "baseline_rss_mb": round(baseline_mb, 1),
            "peak_rss_during_query_mb": round(peak_mb, 1),
            "threads": os.cpu_count(),
            "scored": len(frame),
            "segment_sizes": sizes,
            "rule_members_digest": rule_digests,
            "digest": _digest(canonical),
            "sample": _sample(canonical, ids),
        },
        start_maxrss,
    )


# -- B: the write-back through the local stack ----------------------------------------------------

EARLIER = 7  # the profiles hold what a run this many days before AS_OF wrote
RUN_ID = "bench-write-back"
STALE = {"segments": ["new"]}  # for a profile that run would have left as today's: still a change
SEED_WRITERS = 4  # concurrent BatchWriteItems while seeding (not measured)


def _profile_items(customers: Any, held: Any) -> list[dict[str, Any]]:
    """The customers table's items of these snapshot rows, as `crm.store.customers.to_item`
    writes them (DynamoDB JSON, version 1), each holding `held[customer_id]` as its analytics."""
    from crm.domain.customers import Customer
    from crm.store.customers import to_item

    items = []
    for row in customers.itertuples(index=False):  # seeding, not measured
        consents = {
            channel: {"granted": bool(value), "at": row.created_at, "source": "import"}
            for channel, value in (("email", row.consents_email), ("sms", row.consents_sms))
            if value is not None and value == value
        }
        stats: dict[str, Any] = {
            "orders_count": int(row.orders_count),
            "total_spent": int(row.total_spent),
            "currency": CURRENCY,
        }
        if row.first_order_at:
            stats["first_order_at"] = f"{row.first_order_at}T12:00:00+08:00"
            stats["last_order_at"] = f"{row.last_order_at}T12:00:00+08:00"
        text = held[row.customer_id]
        customer = Customer(
            customer_id=row.customer_id,
            created_at=row.created_at,
            updated_at=row.created_at,
            email=row.email,
            phone=row.phone,
            first_name=row.first_name,
            last_name=row.last_name,
            birthday=row.birthday,
            gender=row.gender,
            locale=row.locale,
            timezone=row.timezone,
            address={
                k: v
                for k, v in (
                    ("country_code", row.country_code),
                    ("province", row.province),
                    ("city", row.city),
                    ("zip", row.zip),
                )
                if v
            },
            tags=list(row.tags) if row.tags is not None else [],
            consents=consents,
            external_ids={"shopify": f"{int(row.customer_id[4:16], 16)}"},
            stats=stats,
            analytics=json.loads(text) if text else {},
            version=1,
        )
        items.append(to_item(customer).serialize())
    return items


def _seed(ddb: Any, table: str, items: list[dict[str, Any]]) -> int:
    """BatchWriteItem, 25 a call, several at once; calls made (unprocessed items sent again)."""
    from concurrent.futures import ThreadPoolExecutor

    def write(batch: list[dict[str, Any]]) -> int:
        calls = 0
        request = {table: [{"PutRequest": {"Item": item}} for item in batch]}
        while request:
            calls += 1
            request = ddb.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
        return calls

    batches = [items[i : i + 25] for i in range(0, len(items), 25)]
    with ThreadPoolExecutor(SEED_WRITERS) as pool:
        return sum(pool.map(write, batches))


def _write_back_once(
    write_back: Any, outcome: Any, counter: Any, publishing: list[float]
) -> dict[str, Any]:
    before = len(publishing)
    with counter.measure() as tally:
        t0 = time.perf_counter()
        written = write_back(outcome, CURRENCY, RUN_ID)
        seconds = time.perf_counter() - t0
    calls = tally.breakdown()
    events_s = sum(publishing[before:])
    return {
        "seconds": round(seconds, 3),
        "events_s": round(events_s, 3),
        "writes_s": round(seconds - events_s, 3),
        **written,
        "calls": calls,
        "update_items": calls.get("dynamodb.UpdateItem", 0),
        "send_message_batches": calls.get("sqs.SendMessageBatch", 0),
        "in_aws_calls_s": round(tally.aws_seconds, 3),
    }


READERS = 8  # concurrent BatchGetItems reading the profiles back (not measured)


def _read_back(ddb: Any, table: str, customer_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Each profile's `version` and `analytics` as stored (BatchGetItem, 100 keys a call: the
    embedded endpoint's Scan walks the table from its start for every page)."""
    from concurrent.futures import ThreadPoolExecutor

    from boto3.dynamodb.types import TypeDeserializer

    plain = TypeDeserializer()

    def read(batch: Sequence[str]) -> list[dict[str, Any]]:
        keys = [{"customer_id": {"S": c}} for c in batch]
        request: dict[str, Any] = {
            table: {
                "Keys": keys,
                "ProjectionExpression": "customer_id, version, analytics",
            }
        }
        rows = []
        while request:
            answer = ddb.batch_get_item(RequestItems=request)
            rows += answer["Responses"].get(table, [])
            request = answer.get("UnprocessedKeys") or {}
        return [{k: plain.deserialize(v) for k, v in row.items()} for row in rows]

    batches = [customer_ids[i : i + 100] for i in range(0, len(customer_ids), 100)]
    with ThreadPoolExecutor(READERS) as pool:
        return {row["customer_id"]: row for rows in pool.map(read, batches) for row in rows}


def _held(row: Mapping[str, Any] | None) -> dict[str, Any]:
    """A profile's `analytics` as read back (the store keeps it as JSON text)."""
    text = (row or {}).get("analytics")
    return json.loads(text) if isinstance(text, str) and text else {}


def write_back_main(root: str) -> None:
    """In the child (the local stage's environment pointed at the endpoint): the outcome of
    the shop under `root` (not timed), its profiles seeded holding an earlier run's analytics
    (every one of them different from today's), then the write-back (timed, calls counted);
    every profile read back and compared with what was computed; then the write-back again
    with what the profiles now hold, which must write nothing."""
    start_maxrss = _ru_maxrss_mb()
    _paths()
    import boto3
    import numpy as np
    import pyarrow.parquet as pq

    from bench.calls import CallCounter

    counter = CallCounter().install()  # before any client is built
    from crm.adapters import events
    from crm.config import get_settings
    from crm.domain.segment_rules import parse_rule
    from crm_analytics import clv
    from crm_analytics.jobs import write_back
    from crm_analytics.segmentation import compute, payloads
    from crm_analytics.snapshot import held_digest, to_pandas

    started = time.perf_counter()
    base = Path(root)
    orders = pq.read_table(base / "orders", columns=list(ORDER_READ)).to_pandas()
    (customers_file,) = sorted((base / "customers").rglob("*.parquet"))
    customers = to_pandas(pq.read_table(customers_file))
    rules = {name: parse_rule(raw, CURRENCY) for name, raw in RULES.items()}
    outcome = compute(orders, customers, AS_OF, rule_segments=rules)
    models = (
        clv.BgNbd(**outcome.models["bgnbd"]),
        clv.GammaGamma(**outcome.models["gamma_gamma"]),
    )
    earlier = compute(
        orders, customers, AS_OF - timedelta(days=EARLIER), rule_segments=rules, models=models
    )
    n = len(outcome.profiles)
    everyone = np.arange(n)
    today = payloads(outcome, everyone, CURRENCY)
    held = payloads(earlier, everyone, CURRENCY)
    same = [a == b for a, b in zip(held, today, strict=True)]
    held = [STALE if alike else value for value, alike in zip(held, same, strict=True)]
    computed_s = time.perf_counter() - started

    # What the snapshot would read of these profiles: version 1, holding `held`
    outcome.profiles["version"] = 1
    outcome.profiles["held_digest"] = pd_int64([held_digest(h) for h in held])

    settings = get_settings()
    t0 = time.perf_counter()
    texts = {
        cid: json.dumps(h, sort_keys=True) if h else ""
        for cid, h in zip(outcome.profiles.index, held, strict=True)
    }
    items = _profile_items(customers, texts)
    built_s = time.perf_counter() - t0
    ddb = boto3.client("dynamodb")
    t0 = time.perf_counter()
    with counter.measure() as seeding:
        seed_calls = _seed(ddb, settings.customers_table, items)
    seeded_s = time.perf_counter() - t0
    del items

    # The events' share of the write-back: `crm.adapters.events.publish`, which it calls once
    # after its writes.
    publishing: list[float] = []
    publish = events.publish

    def timed_publish(sent: list[dict[str, Any]]) -> int:
        t0 = time.perf_counter()
        try:
            return publish(sent)
        finally:
            publishing.append(time.perf_counter() - t0)

    events.publish = timed_publish  # type: ignore[assignment]
    first = _write_back_once(write_back, outcome, counter, publishing)

    t0 = time.perf_counter()
    ids = list(outcome.profiles.index)
    stored = _read_back(ddb, settings.customers_table, ids)
    read_s = time.perf_counter() - t0
    expected = dict(zip(ids, today, strict=True))
    matching = sum(_held(stored.get(cid)) == expected[cid] for cid in ids)
    versions_moved = sum(int(stored.get(cid, {}).get("version", 0)) == 2 for cid in ids)

    # The next run on unchanged data: the profiles hold what was read back
    outcome.profiles["held_digest"] = pd_int64([held_digest(_held(stored.get(cid))) for cid in ids])
    second = _write_back_once(write_back, outcome, counter, publishing)

    checks: dict[str, bool] = {
        "held_differs_from_today": not any(
            a == b for a, b in zip(held, today, strict=True) if a or b
        ),
        "every_profile_changed": first["profiles_changed"] == n,
        "every_profile_written": first["profiles_written"] == n and first["profiles_skipped"] == 0,
        "one_update_item_each": first["update_items"] == n,
        "events_ten_a_call": first["send_message_batches"]
        == math.ceil(first["segment_events"] / 10)
        and first["event_calls"] == first["send_message_batches"],
        "stored_as_computed": matching == n,
        "versions_moved_once": versions_moved == n,
        "rerun_writes_nothing": second["profiles_changed"] == 0
        and second["update_items"] == 0
        and sum(v for k, v in second["calls"].items() if k.startswith("dynamodb.")) == 0,
        "rerun_sends_nothing": second["segment_events"] == 0
        and second["send_message_batches"] == 0,
    }
    _report(
        {
            "customers": n,
            "outcome_s": round(computed_s, 3),
            "held_stale": int(sum(same)),
            "items_built_s": round(built_s, 3),
            "seeded_s": round(seeded_s, 3),
            "seed_calls": seed_calls,
            "seed_by_operation": seeding.breakdown(),
            "read_back_s": round(read_s, 3),
            "first": first,
            "rerun": second,
            "checks": checks,
        },
        start_maxrss,
    )
    counter.uninstall()


def pd_int64(values: Sequence[int | None]) -> Any:
    import pandas as pd

    return pd.array(list(values), dtype="Int64")


def quick_sqs_sends() -> None:
    """In the endpoint's process, before it starts: moto (5.2.5) builds a queue's whole
    attribute map for every message sent to it, to read `ContentBasedDeduplication`, and that
    map counts the queue's messages three times over, so each SendMessageBatch costs more
    than the one before (a write-back's events would time moto's queue length). While a
    message is being sent, the three message counts answer 0: the send reads none of them, so
    it does exactly what it did; GetQueueAttributes still counts."""
    import threading

    from moto.sqs import models

    sending = threading.local()
    for name in (
        "approximate_number_of_messages",
        "approximate_number_of_messages_delayed",
        "approximate_number_of_messages_not_visible",
    ):
        counted = getattr(models.Queue, name).fget

        def count(self: Any, counted: Any = counted) -> int:
            return 0 if getattr(sending, "on", False) else int(counted(self))

        setattr(models.Queue, name, property(count))
    send = models.SQSBackend.send_message

    def send_message(self: Any, *args: Any, **kwargs: Any) -> Any:
        sending.on = True
        try:
            return send(self, *args, **kwargs)
        finally:
            sending.on = False

    models.SQSBackend.send_message = send_message  # type: ignore[method-assign]


def _queued(sqs: Any, queue_name: str) -> dict[str, Any]:
    """How many events are on the queue, and whether the first ten read are segment events
    of this run (they are left on it)."""
    url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    read = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0)
    bodies = [json.loads(m["Body"]) for m in read.get("Messages", [])]
    return {
        "messages": int(attributes["ApproximateNumberOfMessages"]),
        "read": len(bodies),
        "read_as_expected": sum(
            b.get("type") in ("segment_entered", "segment_exited")
            and b.get("run_id") == RUN_ID
            and b.get("as_of") == AS_OF.isoformat()
            and str(b.get("customer_id", "")).startswith("cus_")
            for b in bodies
        ),
    }


def _write_back(customers: int, asked: int | None = None) -> dict[str, Any]:
    """Part B: a shop of `customers` (ten orders each on average), its profiles on the
    project's moto endpoint in another process, the write-back in a child process."""
    from bench.imports import _child_env, _Server
    from crm_local.provision import provision_data_resources

    small = shop(customers, customers * 10)
    env = local_stage_environment()
    server = _Server(setup="bench.segmentation:quick_sqs_sends")
    try:
        provision_data_resources(server.client, env)
        started = time.perf_counter()
        child = _child("write_back_main", str(small.root), env=_child_env(server.url))
        elapsed = time.perf_counter() - started
        queued = _queued(server.client("sqs"), env["CRM_EVENTS_QUEUE"])
        server_peak = server.peak_mb()
    finally:
        server.stop()
    out: dict[str, Any] = dict(child["result"])
    first, rerun = out["first"], out["rerun"]
    n = out["customers"]
    out["events_queued"] = queued
    read_ok = queued["read_as_expected"] == queued["read"] == min(10, first["segment_events"])
    out["checks"]["events_on_the_queue"] = queued["messages"] == first["segment_events"] and read_ok
    first["writes_per_s"] = round(first["update_items"] / first["writes_s"], 1)
    first["ms_per_customer"] = round(1000 * first["seconds"] / n, 3)
    first["update_items_per_customer"] = round(first["update_items"] / n, 4)
    first["send_message_batches_per_customer"] = round(first["send_message_batches"] / n, 4)
    rerun["ms_per_customer"] = round(1000 * rerun["seconds"] / n, 3)
    first["segment_events_per_customer"] = round(first["segment_events"] / n, 4)
    if asked and asked != n:
        writing = first["seconds"] * asked / n
        out["asked"] = asked
        out["projected_at_asked_s"] = {"write_back": round(writing, 1)}
        out["reduced"] = (
            f"measured at {n:,} customers instead of {asked:,} "
            f"(BENCH_WRITE_BACK_CUSTOMERS): at {asked:,} the write-back would take about "
            f"{writing / 60:.0f} min here; read the per-customer figures"
        )
    failures = Failures()
    for name, ok in out["checks"].items():
        failures.check(bool(ok), f"check {name} failed")
    return {
        **out,
        "shop": {k: v for k, v in small.manifest.items() if k != "sample_customer_ids"},
        "endpoint": "crm_local.endpoint.Endpoint (moto server) in its own process, "
        "provisioned with provision_data_resources; moto's recount of a queue's messages for "
        "every message sent skipped (quick_sqs_sends)",
        "child_seconds": round(elapsed, 1),
        "child_peak_rss_mb": child["peak_rss_mb"],
        "moto_server_peak_rss_mb": server_peak,
        "failures": failures.as_dict(),
    }


# -- run ------------------------------------------------------------------------------------------


def _median(values: Sequence[float]) -> float:
    return round(statistics.median(values), 3) if values else math.nan


def _checks(job: Mapping[str, Any], reference: Mapping[str, Any], scored: int) -> dict[str, bool]:
    """What one job run must agree on with one reference run, and hold on its own."""
    builtin = {k: v for k, v in job["segment_sizes"].items() if k not in RULES}
    fitted = job["models"].get("fitted_on")
    return {
        "every_customers_figures_equal_duckdb": job["digest"] == reference["digest"],
        "sample_equal_duckdb": job["sample"] == reference["sample"],
        "segment_sizes_equal_duckdb": builtin
        == {k: reference["segment_sizes"].get(k, 0) for k in builtin},
        "rule_segments_equal_sql": job["rule_members_digest"] == reference["rule_members_digest"],
        "models_fitted_on_the_sample": fitted == min(job["models_sample"], scored),
        "every_scored_customer_predicted": job["predicted"] == job["scored"] == scored,
        "predictions_finite": bool(job["predictions_finite"]),
        # Nothing is held yet: every profile with something to hold is a change
        "every_change_found": job["profiles_changed"] == job["profiles_to_hold_something"] > 0,
    }


def run(
    customers: int = 1_000_000,
    orders: int = 10_000_000,
    runs: int = 3,
    write_back_customers: int = 100_000,
    write_back_asked: int | None = None,
) -> dict[str, Any]:
    """`write_back_asked`: the size part B is meant for, when it is measured at a smaller one
    (`write_back_customers`) because the embedded endpoint is too slow for it here."""
    started = time.perf_counter()
    big = shop(customers, orders)
    manifest = {k: v for k, v in big.manifest.items() if k != "sample_customer_ids"}
    with tempfile.TemporaryDirectory(prefix="bench-segmentation-") as tmp:
        sample_file = Path(tmp) / "sample.json"
        sample_file.write_text(json.dumps(big.manifest["sample_customer_ids"]), encoding="utf-8")
        jobs: list[dict[str, Any]] = []
        references: list[dict[str, Any]] = []
        for i in range(runs):  # interleaved, the order rotated
            for which in ("job", "reference") if i % 2 == 0 else ("reference", "job"):
                if which == "job":
                    jobs.append(_child("job_main", str(big.root), str(sample_file), str(orders)))
                else:
                    references.append(_child("reference_main", str(big.root), str(sample_file)))

    scored = manifest["customers_with_counted_orders"]
    failures = Failures()
    checks: dict[str, bool] = {}
    mismatch: dict[str, Any] = {}
    for job in jobs:
        for reference in references:
            for name, ok in _checks(job["result"], reference["result"], scored).items():
                checks[name] = checks.get(name, True) and ok
                failures.check(ok, f"{name} is false")
        first, ref = job["result"]["sample"], references[0]["result"]["sample"]
        for cid in first:
            if first[cid] != ref.get(cid) and not mismatch:
                mismatch = {"customer_id": cid, "job": first[cid], "duckdb": ref.get(cid)}
    for reference in references:
        ok = reference["result"]["scored"] == scored
        checks["duckdb_scored_every_buyer"] = checks.get("duckdb_scored_every_buyer", True) and ok
        failures.check(ok, f"DuckDB scored {reference['result']['scored']}, not {scored}")

    job_s = [j["result"]["seconds"] for j in jobs]
    reference_s = [r["result"]["seconds"] for r in references]
    job_peak = [j["peak_rss_mb"] for j in jobs]
    parts = {
        part: _median([j["result"]["parts_s"][part] for j in jobs])
        for part in jobs[0]["result"]["parts_s"]
    }
    sql_s = parts.get("query", parts.get("read", 0) + parts.get("facts", 0))
    last = jobs[-1]["result"]
    scale = {
        "runs": runs,
        "order": "job, reference / reference, job, alternately; each a fresh child process",
        "job_s": _median(job_s),
        "job_s_all": job_s,
        "job_parts_s": parts,
        "job_model_fits_s": _median([j["result"]["model_fits_s"] for j in jobs]),
        "reference_s": _median(reference_s),
        "reference_s_all": reference_s,
        "ratio_job_vs_reference": ratio(_median(job_s), _median(reference_s)),
        "engine": last["engine"],
        # The facts alone (the one SQL query, or reading and pandas), against the reference:
        # what the rest of the job (frames, models, memberships, digests) adds to it.
        "ratio_facts_vs_reference": ratio(sql_s, _median(reference_s)),
        "target_ratio": TARGET_RATIO,
        "job_peak_rss_mb": _median(job_peak),
        "job_peak_rss_mb_all": job_peak,
        "job_peak_rss_mb_max": max(job_peak),
        "job_rss_after_read_mb": _median([j["result"]["rss_after_read_mb"] for j in jobs]),
        "job_peak_rss_after_part_mb": jobs[-1]["result"]["peak_rss_after_mb"],
        "job_baseline_rss_mb": _median([j["result"]["baseline_rss_mb"] for j in jobs]),
        "job_ru_maxrss_mb_all": [j["ru_maxrss_mb"] for j in jobs],
        "target_peak_mb": TARGET_PEAK_MB,
        "reference_peak_rss_mb": _median([r["peak_rss_mb"] for r in references]),
        "reference_ru_maxrss_mb_all": [r["ru_maxrss_mb"] for r in references],
        "imports_s": {
            "job": _median([j["result"]["imports_s"] for j in jobs]),
            "reference": _median([r["result"]["imports_s"] for r in references]),
        },
        "orders_read": last["orders_read"],
        "customers_read": last["customers_read"],
        "scored": last["scored"],
        "profiles_changed": last["profiles_changed"],
        "models": last["models"],
        "segment_sizes": last["segment_sizes"],
        "checks": checks,
        "first_mismatch_in_sample": mismatch or None,
        "sample_size": len(big.manifest["sample_customer_ids"]),
        "failures": failures.as_dict(),
    }
    scale["meets_ratio"] = (
        scale["ratio_job_vs_reference"] is not None
        and scale["ratio_job_vs_reference"] <= TARGET_RATIO
    )
    scale["meets_peak"] = scale["job_peak_rss_mb_max"] <= TARGET_PEAK_MB

    write_back = _write_back(write_back_customers, write_back_asked)
    result = {
        "name": NAME,
        "machine": machine(),
        "seconds": round(time.perf_counter() - started, 1),
        "shop": manifest,
        "cache": str(big.root.relative_to(PROJECT_DIR)),
        "as_of": AS_OF.isoformat(),
        "rules": RULES,
        "job_reads": {
            "orders": list(ORDER_READ),
            "customers": "every column of the customers file",
            "how": "pyarrow.parquet.read_table(...).to_pandas() (defaults, as "
            "crm_analytics.snapshot.read)",
        },
        "scale": scale,
        "write_back": write_back,
        "failures": Failures().add(failures).add(write_back["failures"]).as_dict(),
    }
    if write_back.get("reduced"):
        result["note"] = f"write-back {write_back['reduced'].split(':', 1)[0]}"
    write_result(NAME, result)
    return result


def _mb(value: float) -> str:
    return f"{value:,.0f} MB"


def summary_rows(result: Mapping[str, Any]) -> list[Row]:
    """(figure, value, target, verdict) rows for the summary table."""
    s, shop_ = result["scale"], result["shop"]
    size = f"{shop_['customers']:,} customers, {shop_['orders']:,} orders"
    parts = ", ".join(f"{k} {v:.2f}" for k, v in s["job_parts_s"].items())
    n = f"n={s['runs']}"
    rows: list[Row] = [
        (
            f"job seconds ({size}; {n}; engine {s['engine']})",
            f"median {s['job_s']:.2f} s ({parts})",
            "",
            judged(None, s["failures"]),
        ),
        (
            f"reference seconds, DuckDB segment_sql ({n})",
            f"median {s['reference_s']:.2f} s",
            "",
            judged(None, s["failures"]),
        ),
        (
            "ratio job / reference",
            f"{s['ratio_job_vs_reference']} (the facts alone: {s['ratio_facts_vs_reference']})",
            f"<= {TARGET_RATIO:g}",
            judged(s["meets_ratio"], s["failures"]),
        ),
        (
            "peak memory of the job (VmHWM)",
            f"median {_mb(s['job_peak_rss_mb'])}, max {_mb(s['job_peak_rss_mb_max'])} "
            f"(after the facts {_mb(s['job_rss_after_read_mb'])}; DuckDB "
            f"{_mb(s['reference_peak_rss_mb'])})",
            f"<= {_mb(TARGET_PEAK_MB)}",
            judged(s["meets_peak"], s["failures"]),
        ),
        (
            "job's RFM, lifecycle, value bands and rule segments equal DuckDB's",
            ", ".join(k for k, v in s["checks"].items() if not v) or "every check holds",
            "",
            judged(None, s["failures"]),
        ),
    ]
    w = result["write_back"]
    first, rerun = w["first"], w["rerun"]
    reduced = (
        f" (measured at {w['customers']:,}, not {w['asked']:,}: see README)"
        if w.get("reduced")
        else ""
    )
    rows += [
        (
            f"write-back, {w['customers']:,} profiles changed{reduced}",
            f"{first['seconds']:.1f} s ({first['writes_s']:.1f} writing, "
            f"{first['events_s']:.1f} sending events), {first['writes_per_s']:,.0f} writes/s; "
            "a customer: "
            f"{first['ms_per_customer']:.2f} ms, {first['update_items_per_customer']:g} "
            f"UpdateItem, {first['send_message_batches_per_customer']:g} SendMessageBatch "
            f"({first['update_items']:,} UpdateItem, {first['send_message_batches']:,} "
            f"SendMessageBatch for {first['segment_events']:,} events)",
            "UpdateItem == customers",
            judged(first["update_items"] == w["customers"], w["failures"]),
        ),
        (
            "write-back again, nothing changed",
            f"{rerun['seconds']:.1f} s; UpdateItem {rerun['update_items']}, "
            f"SendMessageBatch {rerun['send_message_batches']}",
            "0 writes",
            judged(rerun["update_items"] == 0 and rerun["profiles_changed"] == 0, w["failures"]),
        ),
    ]
    if result["failures"]["failed"]:
        rows.append(("PROBLEM", str(result["failures"]["sample"]), "", ""))
    return rows
