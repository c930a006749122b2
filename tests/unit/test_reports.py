"""The reports (contract, "Segments, jobs, reports") computed by the analytics layer with
pandas, against an independent computation written here in plain Python from the definitions
(it calls nothing of the module), on generated snapshot frames: two years of orders with ties,
refunds full and partial, cancellations, unpaid orders, guests, missing provinces, several
sources and same-day orders of one customer placed at instants written with other offsets."""

from __future__ import annotations

import csv
import io
import json
import random
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from itertools import pairwise
from typing import Any

import pandas as pd
import pytest

from crm_analytics.reports import customers_report, loyalty, sales, segments_report, to_csv

FIRST_DAY, LAST_DAY = date(2024, 1, 1), date(2025, 12, 31)
SHOP = timezone(timedelta(hours=8))
OFFSETS = [timezone(timedelta(hours=h)) for h in (8, 0, -5, 9)]
SOURCES = ["shopify", "web", "pos", "wechat"]
PROVINCES = ["Guangdong", "Zhejiang", "Beijing", "Sichuan", None, ""]
SKUS = [f"SKU-{n:03d}" for n in range(40)]
RATIO_KEYS = {"repeat_rate", "retention", "revenue_share"}


# -- generated snapshot ------------------------------------------------------------------------


def _placed(rng: random.Random, day: date) -> tuple[str, datetime]:
    """An instant on `day` (shop time), written with a random offset: its text does not sort
    like the instants."""
    local = datetime(day.year, day.month, day.day, tzinfo=SHOP) + timedelta(
        seconds=rng.choice([0, 3600, 36000, 36000, 50000, 86399])
    )
    return local.astimezone(rng.choice(OFFSETS)).isoformat(), local


def generated(seed: int, customers: int = 900) -> tuple[list[dict], list[dict]]:
    rng = random.Random(seed)
    orders: list[dict] = []
    span = (LAST_DAY - FIRST_DAY).days
    ids = rng.sample(range(10**6), 20000)  # order ids in no relation to time

    def order(customer: str | None, day: date) -> dict:
        total = rng.choice([1990, 4900, 4901, 9900, 12000, 25000, 99900, 3])
        refunded = rng.choice([0, 0, 0, 0, 0, 990, 1, total])  # none, part, all
        placed_at, _ = _placed(rng, day)
        o = {
            "order_id": f"o{ids[len(orders)]:06d}",
            "customer_id": customer,
            "source": rng.choice(SOURCES),
            "currency": "CNY",
            "placed_at": placed_at,
            "day": day,
            "paid": rng.random() > 0.07,
            "cancelled": rng.random() < 0.06,
            "total": total,
            "refunded": min(refunded, total),
            "country_code": "CN",
            "province": rng.choice(PROVINCES),
        }
        orders.append(o)
        return o

    for n in range(customers):
        customer = f"cus_{n:05d}"
        start = FIRST_DAY + timedelta(days=rng.randint(0, span))
        for _ in range(rng.choice([1, 1, 1, 2, 2, 3, 4, 6, 9])):
            day = min(LAST_DAY, start + timedelta(days=rng.choice([0, 0, 1, 30, 90, 200])))
            order(customer, day)
            if rng.random() < 0.1:  # another the same day, maybe at the very same instant
                twin = order(customer, day)
                if rng.random() < 0.5:
                    twin["placed_at"] = orders[-2]["placed_at"]
            start = day
    for _ in range(150):  # guests
        order(None, FIRST_DAY + timedelta(days=rng.randint(0, span)))
    lines = []
    for o in orders:
        for _ in range(rng.choice([1, 1, 2, 3])):
            quantity = rng.randint(1, 3)
            lines.append(
                {
                    "order_id": o["order_id"],
                    "customer_id": o["customer_id"],
                    "day": o["day"],
                    "sku": rng.choice(SKUS),
                    "quantity": quantity,
                    "amount": quantity * rng.choice([990, 1990, 4900, 12000]),
                }
            )
    return orders, lines


@pytest.fixture(scope="module")
def shop() -> tuple[list[dict], list[dict], pd.DataFrame, pd.DataFrame]:
    orders, lines = generated(7)
    return orders, lines, pd.DataFrame(orders), pd.DataFrame(lines)


# -- the definitions, in plain Python -----------------------------------------------------------


def text(minor: int) -> str:
    sign = "-" if minor < 0 else ""
    return f"{sign}{abs(minor) // 100}.{abs(minor) % 100:02d}"


def half_even(numerator: int, denominator: int) -> int:
    return int((Decimal(numerator) / Decimal(denominator)).to_integral_value(ROUND_HALF_EVEN))


def share(part: int, whole: int) -> float:
    if not whole:
        return 0.0
    q = Decimal(part) / Decimal(whole)
    return float(q.quantize(Decimal("0.0001"), rounding=ROUND_HALF_EVEN))


def kept(o: dict) -> int:
    return o["total"] - o["refunded"]


def is_counted(o: dict) -> bool:
    return o["paid"] and not o["cancelled"] and kept(o) > 0


def firsts(orders: list[dict]) -> set[str]:
    """Order ids that are their customer's first counted order ever."""
    best: dict[str, tuple] = {}
    for o in orders:
        if is_counted(o) and o["customer_id"] is not None:
            key = (o["day"], datetime.fromisoformat(o["placed_at"]), o["order_id"])
            if o["customer_id"] not in best or key < best[o["customer_id"]]:
                best[o["customer_id"]] = key
    return {key[2] for key in best.values()}


def bucket(day: date, granularity: str, start: date) -> date:
    if granularity == "week":
        day = day - timedelta(days=day.weekday())
    elif granularity == "month":
        day = day.replace(day=1)
    return max(day, start)


def expected_sales(
    orders: list[dict], lines: list[dict], start: date, end: date, granularity: str
) -> dict:
    first = firsts(orders)
    periods: dict[date, dict[str, int]] = {}
    day = start
    while day <= end:
        periods.setdefault(bucket(day, granularity, start), dict.fromkeys("ornf", 0))
        day += timedelta(days=1)
    whole = dict.fromkeys("ornf", 0)
    sources: dict[Any, list[int]] = {}
    provinces: dict[Any, list[int]] = {}
    sold = set()
    for o in orders:
        if not start <= o["day"] <= end:
            continue
        sums = [whole, periods[bucket(o["day"], granularity, start)]]
        for s in sums:
            if o["paid"] and not o["cancelled"]:
                s["f"] += o["refunded"]
            if is_counted(o):
                s["o"] += 1
                s["r"] += kept(o)
                s["n"] += kept(o) if o["order_id"] in first else 0
        if is_counted(o):
            sold.add(o["order_id"])
            for table, name in ((sources, o["source"]), (provinces, o["province"] or None)):
                table.setdefault(name, [0, 0])
                table[name][0] += 1
                table[name][1] += kept(o)

    def figures(s: dict[str, int]) -> dict:
        return {
            "orders": s["o"],
            "revenue": text(s["r"]),
            "average_order": text(half_even(s["r"], s["o"]) if s["o"] else 0),
            "new_customer_revenue": text(s["n"]),
            "returning_customer_revenue": text(s["r"] - s["n"]),
            "refunds": text(s["f"]),
        }

    def ranked(table: dict, key: str) -> list[dict]:
        order = sorted(table.items(), key=lambda kv: (-kv[1][1], kv[0] is None, kv[0] or ""))
        return [{key: k, "orders": v[0], "revenue": text(v[1])} for k, v in order]

    skus: dict[str, list[int]] = {}
    for line in lines:
        if line["order_id"] in sold:
            skus.setdefault(line["sku"], [0, 0])
            skus[line["sku"]][0] += line["quantity"]
            skus[line["sku"]][1] += line["amount"]
    top = sorted(skus.items(), key=lambda kv: (-kv[1][1], kv[0]))[:10]
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "granularity": granularity,
        "currency": "CNY",
        "totals": figures(whole),
        "periods": [{"period": p.isoformat(), **figures(s)} for p, s in periods.items()],
        "by_source": ranked(sources, "source"),
        "by_province": ranked(provinces, "province"),
        "top_skus": [{"sku": k, "quantity": q, "revenue": text(r)} for k, (q, r) in top],
    }


def month_index(day: date) -> int:
    return day.year * 12 + day.month - 1


def expected_customers(orders: list[dict], as_of: date) -> dict:
    months: dict[str, set[int]] = {}
    counts: dict[str, int] = {}
    for o in orders:
        if is_counted(o) and o["day"] <= as_of and o["customer_id"] is not None:
            months.setdefault(o["customer_id"], set()).add(month_index(o["day"]))
            counts[o["customer_id"]] = counts.get(o["customer_id"], 0) + 1
    last = month_index(as_of)
    cohorts: dict[int, list[set[int]]] = {}
    for mine in months.values():
        cohorts.setdefault(min(mine), []).append(mine)
    repeat = sum(1 for n in counts.values() if n >= 2)

    def label(m: int) -> str:
        return f"{m // 12:04d}-{m % 12 + 1:02d}"

    return {
        "as_of": as_of.isoformat(),
        "customers_with_orders": len(months),
        "repeat_customers": repeat,
        "repeat_rate": share(repeat, len(months)),
        "new_customers": [
            {"month": label(m), "customers": len(cohorts.get(m, []))}
            for m in range(min(cohorts), last + 1)
        ]
        if cohorts
        else [],
        "cohorts": [
            {
                "cohort": label(c),
                "size": len(members),
                "retention": [
                    share(sum(1 for mine in members if c + k in mine), len(members))
                    for k in range(last - c + 1)
                ],
            }
            for c, members in sorted(cohorts.items())
        ],
    }


def assert_json_ready(value: Any, key: str = "") -> None:
    """Plain JSON types only, and a float only as a ratio (never money)."""
    if isinstance(value, dict):
        for k, v in value.items():
            assert isinstance(k, str)
            assert_json_ready(v, k)
    elif isinstance(value, list):
        for v in value:
            assert_json_ready(v, key)
    elif isinstance(value, float):
        assert key in RATIO_KEYS, key
    else:
        assert value is None or type(value) in (str, int, bool), (key, type(value))


def csv_rows(text_: str) -> list[list[str]]:
    assert text_.endswith("\r\n")
    assert text_.count("\n") == text_.count("\r\n")  # Excel's line ends, no bare \n
    return list(csv.reader(io.StringIO(text_, newline="")))


# -- sales --------------------------------------------------------------------------------------

RANGES = [
    (FIRST_DAY, LAST_DAY),  # everything
    (date(2024, 3, 13), date(2025, 2, 19)),  # starts and ends mid-week and mid-month
    (date(2025, 6, 30), date(2025, 6, 30)),  # one day
    (date(2023, 11, 29), date(2024, 1, 9)),  # begins before the first order
    (date(2025, 12, 20), date(2026, 2, 3)),  # ends after the last
]


@pytest.mark.parametrize("granularity", ["day", "week", "month"])
@pytest.mark.parametrize(("start", "end"), RANGES)
def test_sales_matches_the_definitions(shop, granularity: str, start: date, end: date) -> None:
    orders, lines, frame, line_frame = shop
    report = sales(
        frame,
        line_frame,
        start=start,
        end=end,
        granularity=granularity,
        currency="CNY",
        decimals=2,
    )
    assert report == expected_sales(orders, lines, start, end, granularity)
    assert_json_ready(report)
    assert json.loads(json.dumps(report)) == report


def test_the_generated_data_has_what_the_reports_must_handle(shop) -> None:
    orders, _, _, _ = shop
    assert len(orders) > 2000
    assert any(o["paid"] and not o["cancelled"] and o["refunded"] == o["total"] for o in orders)
    assert any(0 < o["refunded"] < o["total"] and is_counted(o) for o in orders)
    assert any(o["cancelled"] and o["paid"] and o["refunded"] for o in orders)
    assert any(not o["paid"] for o in orders)
    assert any(o["customer_id"] is None and is_counted(o) for o in orders)
    assert {o["province"] for o in orders} >= {None, ""}
    same_day: dict[tuple, list[dict]] = {}
    for o in orders:
        if is_counted(o) and o["customer_id"]:
            same_day.setdefault((o["customer_id"], o["day"]), []).append(o)
    pairs = [v for v in same_day.values() if len(v) > 1]
    assert any(len({o["placed_at"] for o in v}) == 1 for v in pairs)  # same instant
    assert any(  # text order is not instant order
        sorted(v, key=lambda o: o["placed_at"])
        != sorted(v, key=lambda o: datetime.fromisoformat(o["placed_at"]))
        for v in pairs
    )


def test_sales_periods_add_up_and_weeks_start_on_monday(shop) -> None:
    _, _, frame, line_frame = shop
    start, end = date(2024, 3, 13), date(2025, 2, 19)  # a Wednesday, a Wednesday
    weeks = sales(
        frame, line_frame, start=start, end=end, granularity="week", currency="CNY", decimals=2
    )
    days = [date.fromisoformat(p["period"]) for p in weeks["periods"]]
    assert days[0] == start and all(d.weekday() == 0 for d in days[1:])
    assert all((b - a).days == 7 for a, b in pairwise(days[1:]))
    months = sales(
        frame, line_frame, start=start, end=end, granularity="month", currency="CNY", decimals=2
    )
    assert [p["period"] for p in months["periods"]][:3] == [
        "2024-03-13",
        "2024-04-01",
        "2024-05-01",
    ]
    assert len(months["periods"]) == 12
    for report in (weeks, months):
        for field in ("revenue", "refunds", "new_customer_revenue", "returning_customer_revenue"):
            assert sum(Decimal(p[field]) for p in report["periods"]) == Decimal(
                report["totals"][field]
            )
        assert sum(p["orders"] for p in report["periods"]) == report["totals"]["orders"]
        totals = report["totals"]
        assert Decimal(totals["new_customer_revenue"]) + Decimal(
            totals["returning_customer_revenue"]
        ) == Decimal(totals["revenue"])


def test_sales_day_columns_as_timestamps_give_the_same_report(shop) -> None:
    _, _, frame, line_frame = shop
    stamped = frame.assign(day=pd.to_datetime(frame["day"])).sample(frac=1, random_state=3)
    stamped.index = stamped.index * 7 + 5  # any index
    args = {"start": FIRST_DAY, "end": LAST_DAY, "granularity": "month", "currency": "CNY"}
    assert sales(stamped, line_frame, **args, decimals=2) == sales(
        frame, line_frame, **args, decimals=2
    )


def order(order_id: str, customer: str | None, day: date, placed_at: str, **kw: Any) -> dict:
    base = {
        "order_id": order_id,
        "customer_id": customer,
        "source": "web",
        "currency": "CNY",
        "placed_at": placed_at,
        "day": day,
        "paid": True,
        "cancelled": False,
        "total": 10000,
        "refunded": 0,
        "country_code": "CN",
        "province": "Guangdong",
    }
    return base | kw


def test_a_customers_first_order_on_a_day_goes_by_instant_then_order_id() -> None:
    day = date(2025, 5, 5)
    orders = pd.DataFrame(
        [
            # 09:00 in Shanghai is 01:00 UTC: first, though its text sorts after the other's.
            order("b", "c1", day, "2025-05-05T09:00:00+08:00", total=100),
            order("a", "c1", day, "2025-05-05T02:00:00+00:00", total=200),
            # The same instant: the smaller order id is first.
            order("z", "c2", day, "2025-05-05T10:00:00+08:00", total=300),
            order("y", "c2", day, "2025-05-05T02:00:00+00:00", total=400),
            # A first order before the range makes the customer returning in it.
            order("p", "c3", date(2025, 5, 1), "2025-05-01T10:00:00+08:00", total=500),
            order("q", "c3", day, "2025-05-05T10:00:00+08:00", total=600),
            # A cancelled or fully refunded earlier order is not a counted one.
            order("r", "c4", date(2025, 5, 1), "2025-05-01T10:00:00+08:00", cancelled=True),
            order("s", "c4", date(2025, 5, 2), "2025-05-02T10:00:00+08:00", refunded=10000),
            order("t", "c4", day, "2025-05-05T10:00:00+08:00", total=700),
            order("g", None, day, "2025-05-05T10:00:00+08:00", total=800),  # a guest's
        ]
    )
    report = sales(
        orders,
        pd.DataFrame(),
        start=day,
        end=day,
        granularity="day",
        currency="CNY",
        decimals=2,
    )
    totals = report["totals"]
    assert totals["new_customer_revenue"] == "12.00"  # b 1.00 + y 4.00 + t 7.00
    assert totals["returning_customer_revenue"] == "19.00"  # a 2.00 + z 3.00 + q 6.00 + g 8.00
    assert totals["refunds"] == "0.00"


def test_breakdowns_break_revenue_ties_by_name_with_a_missing_province_last() -> None:
    day, at = date(2025, 1, 6), "2025-01-06T10:00:00+08:00"
    orders = [
        order("a", "c1", day, at, source="web", province=None, total=300),
        order("b", "c2", day, at, source="pos", province="Zhejiang", total=500),
        order("c", "c3", day, at, source="web", province="", total=300, refunded=100),
        order("d", "c4", day, at, source="app", province="Anhui", total=500),
        order("e", "c5", day, at, source="zzz", province="Beijing", total=900),
        order("f", "c6", day, at, source="aaa", province="Beijing", total=900, paid=False),
    ]
    lines = [
        {"order_id": "a", "sku": "B", "quantity": 1, "amount": 300},
        {"order_id": "b", "sku": "A", "quantity": 2, "amount": 300},
        {"order_id": "e", "sku": "C", "quantity": 1, "amount": 100},
        {"order_id": "f", "sku": "D", "quantity": 9, "amount": 900},  # not a counted order
    ]
    report = sales(
        pd.DataFrame(orders),
        pd.DataFrame(lines),
        start=day,
        end=day,
        granularity="week",
        currency="CNY",
        decimals=2,
    )
    assert report["by_province"] == [
        {"province": "Beijing", "orders": 1, "revenue": "9.00"},
        {"province": "Anhui", "orders": 1, "revenue": "5.00"},
        {"province": "Zhejiang", "orders": 1, "revenue": "5.00"},
        {"province": None, "orders": 2, "revenue": "5.00"},  # None and "" are both missing
    ]
    assert report["by_source"] == [
        {"source": "zzz", "orders": 1, "revenue": "9.00"},
        {"source": "app", "orders": 1, "revenue": "5.00"},
        {"source": "pos", "orders": 1, "revenue": "5.00"},
        {"source": "web", "orders": 2, "revenue": "5.00"},
    ]
    assert report["top_skus"] == [
        {"sku": "A", "quantity": 2, "revenue": "3.00"},
        {"sku": "B", "quantity": 1, "revenue": "3.00"},
        {"sku": "C", "quantity": 1, "revenue": "1.00"},
    ]
    assert report["periods"][0]["period"] == "2025-01-06"


def test_average_order_rounds_half_to_even_and_follows_the_currency() -> None:
    day = date(2025, 1, 6)
    at = "2025-01-06T10:00:00+08:00"
    two = [order("a", "c1", day, at, total=101), order("b", "c2", day, at, total=100)]
    args = {"start": day, "end": day, "granularity": "day"}
    report = sales(pd.DataFrame(two), pd.DataFrame(), **args, currency="CNY", decimals=2)
    assert report["totals"]["average_order"] == "1.00"  # 100.5 minor units
    two[0]["total"] = 103
    report = sales(pd.DataFrame(two), pd.DataFrame(), **args, currency="CNY", decimals=2)
    assert report["totals"]["average_order"] == "1.02"  # 101.5
    report = sales(pd.DataFrame(two), pd.DataFrame(), **args, currency="JPY", decimals=0)
    assert report["currency"] == "JPY"
    assert report["totals"]["revenue"] == "203" and report["totals"]["average_order"] == "102"
    with pytest.raises(ValueError, match="decimals"):
        sales(pd.DataFrame(two), pd.DataFrame(), **args, currency="JPY", decimals=2)


def test_sales_refuses_a_reversed_range_and_an_unknown_granularity(shop) -> None:
    _, _, frame, line_frame = shop
    with pytest.raises(ValueError, match="after"):
        sales(
            frame,
            line_frame,
            start=LAST_DAY,
            end=FIRST_DAY,
            granularity="day",
            currency="CNY",
            decimals=2,
        )
    with pytest.raises(ValueError, match="granularity"):
        sales(
            frame,
            line_frame,
            start=FIRST_DAY,
            end=LAST_DAY,
            granularity="quarter",
            currency="CNY",
            decimals=2,
        )


@pytest.mark.parametrize(
    "empty",
    [
        pd.DataFrame(),
        pd.DataFrame(columns=["order_id", "customer_id", "source", "placed_at", "day", "paid"]),
    ],
)
def test_sales_of_nothing_is_a_report_of_zeros(empty: pd.DataFrame) -> None:
    report = sales(
        empty,
        pd.DataFrame(),
        start=date(2025, 1, 30),
        end=date(2025, 3, 2),
        granularity="month",
        currency="CNY",
        decimals=2,
    )
    zeros = {
        "orders": 0,
        "revenue": "0.00",
        "average_order": "0.00",
        "new_customer_revenue": "0.00",
        "returning_customer_revenue": "0.00",
        "refunds": "0.00",
    }
    assert report["totals"] == zeros
    assert report["periods"] == [
        {"period": p, **zeros} for p in ("2025-01-30", "2025-02-01", "2025-03-01")
    ]
    assert report["by_source"] == report["by_province"] == report["top_skus"] == []
    assert_json_ready(report)


def test_a_frame_without_the_documented_columns_is_refused() -> None:
    with pytest.raises(ValueError, match="lacks"):
        sales(
            pd.DataFrame([{"order_id": "a"}]),
            pd.DataFrame(),
            start=FIRST_DAY,
            end=LAST_DAY,
            granularity="day",
            currency="CNY",
            decimals=2,
        )


# -- customers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "as_of",
    [LAST_DAY, date(2025, 6, 15), date(2024, 1, 31), date(2026, 3, 1), date(2023, 12, 31)],
)
def test_customers_report_matches_the_definitions(shop, as_of: date) -> None:
    orders, _, frame, _ = shop
    report = customers_report(frame, as_of=as_of)
    assert report == expected_customers(orders, as_of)
    assert_json_ready(report)
    assert json.loads(json.dumps(report)) == report
    for cohort in report["cohorts"]:
        assert cohort["retention"][0] == 1.0
    assert sum(n["customers"] for n in report["new_customers"]) == report["customers_with_orders"]


def test_customers_report_of_nothing() -> None:
    for empty in (pd.DataFrame(), pd.DataFrame(columns=["order_id", "customer_id", "day"])):
        assert customers_report(empty, as_of=date(2025, 1, 1)) == {
            "as_of": "2025-01-01",
            "customers_with_orders": 0,
            "repeat_customers": 0,
            "repeat_rate": 0.0,
            "new_customers": [],
            "cohorts": [],
        }


# -- loyalty ------------------------------------------------------------------------------------


def generated_points(seed: int) -> tuple[list[dict], list[dict]]:
    rng = random.Random(seed)
    entries, customers = [], []
    for n in range(400):
        customer = f"cus_{n:05d}"
        tier = rng.choice(["regular", "silver", "gold", None, ""])
        balance = rng.choice([0, 1, 999, 1000, 2500, 17, None])
        customers.append({"customer_id": customer, "tier": tier, "points_balance": balance})
        for _ in range(rng.randint(0, 8)):
            kind = rng.choice(["earn", "earn", "redeem", "reverse", "expire", "adjust"])
            size = rng.randint(1, 3000)
            points = {"earn": size, "adjust": rng.choice([size, -size])}.get(kind, -size)
            day = FIRST_DAY + timedelta(days=rng.randint(0, (LAST_DAY - FIRST_DAY).days))
            entries.append(
                {"customer_id": customer, "entry_type": kind, "points": points, "day": day}
            )
    return entries, customers


def expected_loyalty(
    entries: list[dict], customers: list[dict], start: date | None, end: date | None, value: int
) -> dict:
    chosen = [
        e
        for e in entries
        if (start is None or e["day"] >= start) and (end is None or e["day"] <= end)
    ]

    def total(kind: str) -> int:
        return sum(e["points"] for e in chosen if e["entry_type"] == kind)

    outstanding = sum(c["points_balance"] or 0 for c in customers)
    tiers: dict[str, int] = {}
    for c in customers:
        tiers[c["tier"] or "none"] = tiers.get(c["tier"] or "none", 0) + 1
    return {
        "from": start.isoformat() if start else None,
        "to": end.isoformat() if end else None,
        "currency": "CNY",
        "points_issued": total("earn"),
        "points_redeemed": -total("redeem"),
        "points_expired": -total("expire"),
        "points_reversed": -total("reverse"),
        "points_adjusted": total("adjust"),
        "points_outstanding": outstanding,
        "liability": text(half_even(outstanding * value, 1000)),
        "tiers": [{"tier": t, "customers": n} for t, n in sorted(tiers.items())],
    }


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (None, None),
        (date(2024, 6, 1), date(2025, 5, 31)),
        (date(2025, 1, 1), None),
        (None, date(2024, 2, 29)),
        (date(2026, 1, 1), None),
    ],
)
@pytest.mark.parametrize("value", [5000, 3])
def test_loyalty_matches_the_definitions(start: date | None, end: date | None, value: int) -> None:
    entries, customers = generated_points(11)
    report = loyalty(
        pd.DataFrame(entries),
        pd.DataFrame(customers),
        start=start,
        end=end,
        currency="CNY",
        decimals=2,
        point_value_minor_per_1000=value,
    )
    assert report == expected_loyalty(entries, customers, start, end, value)
    assert report["points_redeemed"] > 0 or start == date(2026, 1, 1)
    assert_json_ready(report)


def test_liability_follows_the_program_and_rounds_half_to_even() -> None:
    def liability(balances: list[int], value: int = 5000) -> str:
        customers = pd.DataFrame(
            [
                {"customer_id": str(n), "tier": "gold", "points_balance": b}
                for n, b in enumerate(balances)
            ]
        )
        report = loyalty(
            pd.DataFrame(),
            customers,
            start=None,
            end=None,
            currency="CNY",
            decimals=2,
            point_value_minor_per_1000=value,
        )
        return str(report["liability"])

    assert liability([1000]) == "50.00"  # 1,000 points: a 50.00 coupon
    assert liability([600, 400, 1]) == "50.05"
    assert liability([500], value=3) == "0.02"  # 1.5 minor units
    assert liability([1500], value=3) == "0.04"  # 4.5


def test_loyalty_of_nothing() -> None:
    report = loyalty(
        pd.DataFrame(), pd.DataFrame(), start=None, end=None, currency="CNY", decimals=2
    )
    assert report["points_issued"] == report["points_outstanding"] == 0
    assert report["liability"] == "0.00" and report["tiers"] == []


# -- segments -----------------------------------------------------------------------------------

HISTORY = [
    {
        "as_of": "2025-02-01",
        "total_revenue": 300000,
        "segments": {
            "rfm_champions": {"size": 12, "revenue": 100000},
            "high_value": {"size": 30, "revenue": 240001},
            "churned": {"size": 0, "revenue": 0},
        },
    },
    {
        "as_of": "2025-01-01",
        "total_revenue": 0,
        "segments": {"rfm_champions": {"size": 0, "revenue": 0}},
    },
]


def test_segments_report_gives_each_segments_share_of_all_revenue() -> None:
    report = segments_report(HISTORY)
    assert report == {
        "history": [
            {
                "as_of": "2025-01-01",
                "total_revenue": 0,
                "segments": [{"name": "rfm_champions", "size": 0, "revenue_share": 0.0}],
            },
            {
                "as_of": "2025-02-01",
                "total_revenue": 300000,
                "segments": [
                    {"name": "churned", "size": 0, "revenue_share": 0.0},
                    {"name": "high_value", "size": 30, "revenue_share": 0.8},
                    {"name": "rfm_champions", "size": 12, "revenue_share": 0.3333},
                ],
            },
        ]
    }
    assert_json_ready(report)
    assert segments_report([]) == {"history": []}
    decimal_strings = [
        {
            "as_of": "2025-03-01",
            "total_revenue": "2000.00",
            "segments": {"x": {"size": 1, "revenue": "1.00"}},
        }
    ]
    assert segments_report(decimal_strings)["history"][0]["segments"][0]["revenue_share"] == 0.0005
    with pytest.raises(TypeError):
        segments_report([{"as_of": "2025-03-01", "total_revenue": 1.5, "segments": {}}])


# -- CSV ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("granularity", ["day", "week", "month"])
def test_sales_csv_gives_the_periods_back(shop, granularity: str) -> None:
    _, _, frame, line_frame = shop
    report = sales(
        frame,
        line_frame,
        start=date(2024, 3, 13),
        end=date(2025, 2, 19),
        granularity=granularity,
        currency="CNY",
        decimals=2,
    )
    rows = csv_rows(to_csv("sales", report))
    header = [
        "period",
        "orders",
        "revenue",
        "average_order",
        "new_customer_revenue",
        "returning_customer_revenue",
        "refunds",
    ]
    assert rows[0] == header
    assert len(rows) == len(report["periods"]) + 1
    for row, period in zip(rows[1:], report["periods"], strict=True):
        assert row[0] == period["period"] and int(row[1]) == period["orders"]
        assert [Decimal(c) for c in row[2:]] == [Decimal(period[h]) for h in header[2:]]
    assert sum(Decimal(r[2]) for r in rows[1:]) == Decimal(report["totals"]["revenue"])


def test_customers_csv_gives_the_cohorts_back(shop) -> None:
    _, _, frame, _ = shop
    report = customers_report(frame, as_of=date(2025, 6, 15))
    rows = csv_rows(to_csv("customers", report))
    months = len(report["cohorts"][0]["retention"])
    assert rows[0] == ["cohort", "size", *(f"m{k}" for k in range(months))]
    for row, cohort in zip(rows[1:], report["cohorts"], strict=True):
        assert row[0] == cohort["cohort"] and int(row[1]) == cohort["size"]
        filled = [float(c) for c in row[2:] if c != ""]
        assert filled == cohort["retention"]
        assert row[2 + len(filled) :] == [""] * (months - len(filled))


def test_loyalty_csv_gives_the_totals_then_the_tiers() -> None:
    entries, customers = generated_points(11)
    report = loyalty(
        pd.DataFrame(entries),
        pd.DataFrame(customers),
        start=date(2024, 6, 1),
        end=None,
        currency="CNY",
        decimals=2,
    )
    rows = csv_rows(to_csv("loyalty", report))
    assert rows[0][:3] == ["from", "to", "currency"]
    totals = dict(zip(rows[0], rows[1], strict=True))
    assert totals["from"] == "2024-06-01" and totals["to"] == ""
    for key in ("points_issued", "points_redeemed", "points_adjusted", "points_outstanding"):
        assert int(totals[key]) == report[key]
    assert Decimal(totals["liability"]) == Decimal(report["liability"])
    assert rows[2] == ["tier", "customers"]
    assert [(t, int(n)) for t, n in rows[3:]] == [
        (t["tier"], t["customers"]) for t in report["tiers"]
    ]


def test_segments_csv_gives_the_rows_back_and_labels_stay_text() -> None:
    history = [*HISTORY, {"as_of": "2025-03-01", "total_revenue": 10, "segments": {}}]
    history[0] = {**HISTORY[0], "segments": {"=cmd()": {"size": 1, "revenue": 5}}}
    rows = csv_rows(to_csv("segments", segments_report(history)))
    assert rows == [
        ["as_of", "name", "size", "revenue_share"],
        ["2025-01-01", "rfm_champions", "0", "0.0"],
        ["2025-02-01", "'=cmd()", "1", "0.0"],
    ]
    report = segments_report(HISTORY)
    rows = csv_rows(to_csv("segments", report))
    flat = [
        (i["as_of"], s["name"], s["size"], s["revenue_share"])
        for i in report["history"]
        for s in i["segments"]
    ]
    assert [(a, n, int(s), float(r)) for a, n, s, r in rows[1:]] == flat


def test_csv_of_empty_reports_and_an_unknown_report() -> None:
    empty_sales = sales(
        pd.DataFrame(),
        pd.DataFrame(),
        start=date(2025, 1, 1),
        end=date(2025, 1, 2),
        granularity="day",
        currency="CNY",
        decimals=2,
    )
    assert csv_rows(to_csv("sales", empty_sales))[1] == [
        "2025-01-01",
        "0",
        "0.00",
        "0.00",
        "0.00",
        "0.00",
        "0.00",
    ]
    empty_customers = customers_report(pd.DataFrame(), as_of=date(2025, 1, 1))
    assert to_csv("customers", empty_customers) == "cohort,size\r\n"
    assert to_csv("segments", segments_report([])) == "as_of,name,size,revenue_share\r\n"
    with pytest.raises(ValueError, match="report"):
        to_csv("stock", {})
