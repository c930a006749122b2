"""The reports of the contract ("Segments, jobs, reports": `GET /reports/sales`, `/customers`,
`/loyalty`, `/segments`), computed with pandas from the analytics snapshot's frames
(docs/analytics.md: `orders`, `order_lines`, `customers`, `points`) as plain JSON-ready dicts
(str, int, float ratios, lists, None), and each report's main table as CSV.

Money in the frames is int64 minor units of the shop's currency; in a report it is a decimal
string (`crm.domain.money.to_decimal_string`, e.g. "199.00") beside the report's `currency`.
Money is never a float: sums are integers and a quotient of money is rounded half-even to the
minor unit with exact arithmetic. Ratios (shares, rates) are JSON numbers rounded to 4 decimals
(half-even, from the exact quotient).

Definitions:

- A **counted order** is the contract's (`crm_analytics.segments.counted_orders`): paid, not
  cancelled, and kept money (`total` - `refunded`) above zero. Its day is the `day` column (the
  calendar date it was placed, shop timezone); ranges are inclusive by that day.
- **sales** over `start`..`end`: `orders` (counted orders), `revenue` (their kept money),
  `average_order` (revenue / orders, half-even to the minor unit; zero when no orders),
  `new_customer_revenue` (kept money of the orders that are their customer's first counted
  order ever, over the whole frame; orders of one customer on the same day are ordered by
  `placed_at` (as instants) then `order_id`), `returning_customer_revenue` (the rest, so an
  order without a `customer_id` is here), `refunds` (`refunded` summed over the paid, not
  cancelled orders placed in the range, fully refunded ones included). The same for the whole
  range (`totals`) and for every bucket of it (`periods`, empty ones too): a day, a week from
  Monday or a month from the 1st, the first and last clipped to the range, `period` being the
  bucket's first day within the range. `by_source` and `by_province` (a missing or empty
  province is `null`): counted orders and revenue, by revenue descending then name (`null`
  last). `top_skus`: the order lines of the counted orders in the range, by `sku`: `quantity`
  and `revenue` (the lines' `amount`), the first 10 by revenue descending then sku.
- **customers** as of a date, over the counted orders placed on or before it that carry a
  `customer_id`: `customers_with_orders`; `repeat_customers` (at least 2 counted orders);
  `repeat_rate` (repeat / with orders, 0 when none); `new_customers` (customers by the month of
  their first counted order, every month from the first such month to the month of `as_of`,
  zeros included); `cohorts` (one per month with new customers): `size`, and `retention[k]`,
  the share of the cohort's customers with a counted order in the k-th month after the cohort's
  (k = 0 .. the month of `as_of`; retention[0] is 1.0).
- **loyalty** over ledger entries whose `day` is in `start`..`end` (either bound may be open):
  `points_issued` (earn entries' points), `points_redeemed`, `points_expired`, `points_reversed`
  (the points those entries took, as positive numbers: the ledger writes them negative),
  `points_adjusted` (signed sum of adjust entries); other entry types are not counted. Now, over
  the snapshot's (active) customers: `points_outstanding` (sum of `points_balance`), `liability`
  (outstanding x `point_value_minor_per_1000` / 1000, half-even to the minor unit; the default
  follows the program: 1,000 points redeem for a 50.00 coupon) and `tiers` (customers per tier,
  by tier name, no tier being "none").
- **segments**: a size history `[{"as_of", "total_revenue", "segments": {name: {"size",
  "revenue"}}}]` (`total_revenue`: the revenue of all customers at that `as_of`, in the same
  terms as the segments' revenue: integer minor units or decimal strings, never floats) as
  `{"history": [{"as_of", "total_revenue", "segments": [{"name", "size", "revenue_share"}]}]}`,
  by `as_of` then by name; `revenue_share` = revenue / total_revenue (0 when the total is 0).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Mapping
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pandas as pd

from crm.domain.money import exponent, to_decimal_string
from crm_analytics.segments import counted_orders

GRANULARITIES = ("day", "week", "month")
TOP_SKUS = 10
REPORTS = ("sales", "customers", "loyalty", "segments")
PERIOD_FIELDS = (
    "orders",
    "revenue",
    "average_order",
    "new_customer_revenue",
    "returning_customer_revenue",
    "refunds",
)

ORDER_COLUMNS = (
    "order_id",
    "customer_id",
    "source",
    "placed_at",
    "day",
    "paid",
    "cancelled",
    "total",
    "refunded",
    "province",
)
LINE_COLUMNS = ("order_id", "sku", "quantity", "amount")
POINT_COLUMNS = ("customer_id", "entry_type", "points", "day")
CUSTOMER_COLUMNS = ("customer_id", "tier", "points_balance")


# -- shared ------------------------------------------------------------------------------------


def _frame(frame: pd.DataFrame, columns: Iterable[str], name: str) -> pd.DataFrame:
    """The frame with a fresh 0..n-1 index; an empty one may lack columns, others may not."""
    missing = [c for c in columns if c not in frame.columns]
    if missing and not frame.empty:
        raise ValueError(f"{name} lacks the columns {', '.join(missing)}")
    return frame.reset_index(drop=True).reindex(columns=[*frame.columns, *missing])


def _days(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values).dt.normalize()


def _ratio(part: int | Fraction, whole: int | Fraction) -> float:
    """part / whole rounded half-even to 4 decimals from the exact quotient; 0 without whole."""
    if not whole:
        return 0.0
    return float(round(Fraction(part) / Fraction(whole), 4))


def money_renderer(currency: str, decimals: int) -> Callable[[int], str]:
    """Minor units as the currency's decimal string; `decimals` must be the currency's own
    (the snapshot's minor units are those of `crm.domain.money`)."""
    if decimals != exponent(currency):
        raise ValueError(f"{currency} has {exponent(currency)} decimals, not {decimals}")

    def render(minor: int) -> str:
        return to_decimal_string(int(minor), currency)

    return render


def _name(value: Any) -> str | None:
    """A label from a frame: missing (None, NaN) or empty text is None."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    text = str(value)
    return text if text else None


def _ranked(entries: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """By revenue (int minor units under `_minor`) descending, then `key` ascending, None last."""
    return sorted(entries, key=lambda e: (-e["_minor"], e[key] is None, e[key] or ""))


# -- sales -------------------------------------------------------------------------------------


def _order_facts(orders: pd.DataFrame) -> pd.DataFrame:
    """One row per order (same index): `day`, `counted`, `amount` (kept money of a counted
    order, else 0), `first` (its customer's first counted order ever) and `refunds` (`refunded`
    of a paid, not cancelled order, else 0)."""
    facts = pd.DataFrame(index=orders.index)
    facts["day"] = _days(orders["day"])
    facts["counted"] = False
    facts["amount"] = pd.Series(0, index=orders.index, dtype="int64")
    facts["first"] = False
    paid = orders["paid"].eq(True) & ~orders["cancelled"].eq(True)
    facts["refunds"] = orders["refunded"].where(paid, 0).fillna(0).astype("int64")
    latest = facts["day"].max()
    if orders.empty or pd.isna(latest):
        return facts
    counted = counted_orders(orders, latest.date())
    facts.loc[counted.index, "counted"] = True
    facts.loc[counted.index, "amount"] = counted["amount"]
    mine = orders.loc[counted.index, ["customer_id", "order_id"]].copy()
    mine["day"] = counted["day"]
    mine["at"] = pd.to_datetime(orders.loc[counted.index, "placed_at"], utc=True, format="ISO8601")
    mine = mine[mine["customer_id"].notna()]
    mine = mine.sort_values(
        ["customer_id", "day", "at", "order_id"], na_position="last", kind="mergesort"
    )
    facts.loc[mine.drop_duplicates("customer_id").index, "first"] = True
    return facts


def _next_bucket(day: date, granularity: str) -> date:
    if granularity == "day":
        return day + timedelta(days=1)
    if granularity == "week":
        return day + timedelta(days=7 - day.weekday())
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def buckets(start: date, end: date, granularity: str) -> list[date]:
    """The first day (within the range) of every bucket of `start`..`end`, in order."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {', '.join(GRANULARITIES)}")
    if start > end:
        raise ValueError("start is after end")
    out = [start]
    while (following := _next_bucket(out[-1], granularity)) <= end:
        out.append(following)
    return out


def _bucket_of(days: pd.Series, granularity: str, start: date) -> pd.Series:
    if granularity == "day":
        first = days
    elif granularity == "week":
        first = days - pd.to_timedelta(days.dt.weekday, unit="D")
    else:
        first = days.dt.to_period("M").dt.start_time
    return first.clip(lower=pd.Timestamp(start))


Sums = tuple[int, int, int, int]
"""Of some orders: counted orders, revenue, new customers' revenue, refunds (minor units)."""
Entry = tuple[str | None, int, int]
"""A breakdown's row: name (None when missing), a count (orders, or a SKU's quantity), revenue
(minor units)."""


def _figures(sums: Sums, money: Callable[[int], str]) -> dict[str, Any]:
    orders, revenue, new, refunds = sums
    average = round(Fraction(revenue, orders)) if orders else 0  # half-even
    return {
        "orders": orders,
        "revenue": money(revenue),
        "average_order": money(average),
        "new_customer_revenue": money(new),
        "returning_customer_revenue": money(revenue - new),
        "refunds": money(refunds),
    }


def sales(
    orders: pd.DataFrame,
    lines: pd.DataFrame,
    *,
    start: date,
    end: date,
    granularity: str,
    currency: str,
    decimals: int,
) -> dict[str, Any]:
    """The sales report of `start`..`end` (inclusive, by order day); see the module's
    definitions."""
    # Wrong arguments are refused before any work, as `sales_from_sums` would refuse them.
    money_renderer(currency, decimals)
    buckets(start, end, granularity)
    orders = _frame(orders, ORDER_COLUMNS, "orders")
    lines = _frame(lines, LINE_COLUMNS, "order_lines")
    facts = _order_facts(orders)
    in_range = (facts["day"] >= pd.Timestamp(start)) & (facts["day"] <= pd.Timestamp(end))
    facts = facts[in_range]
    sold = facts[facts["counted"]]
    rows = pd.DataFrame(
        {
            "bucket": _bucket_of(facts["day"], granularity, start).dt.date,
            "orders": facts["counted"].astype("int64"),
            "revenue": facts["amount"],
            "new": facts["amount"].where(facts["first"], 0).astype("int64"),
            "refunds": facts["refunds"],
        }
    )
    per = rows.groupby("bucket").sum()
    sums = ["orders", "revenue", "new", "refunds"]
    by_bucket: dict[date, Sums] = {
        bucket: (int(o), int(r), int(n), int(f)) for bucket, o, r, n, f in per[sums].itertuples()
    }
    o, r, n, f = (int(rows[c].sum()) for c in sums)

    kept = orders.loc[sold.index].assign(amount=sold["amount"])
    return sales_from_sums(
        start=start,
        end=end,
        granularity=granularity,
        currency=currency,
        decimals=decimals,
        totals=(o, r, n, f),
        periods=by_bucket,
        by_source=_breakdown(kept, "source"),
        by_province=_breakdown(kept, "province"),
        skus=_skus(lines[lines["order_id"].isin(kept["order_id"])]),
    )


def sales_from_sums(
    *,
    start: date,
    end: date,
    granularity: str,
    currency: str,
    decimals: int,
    totals: Sums,
    periods: Mapping[date, Sums],
    by_source: Iterable[Entry],
    by_province: Iterable[Entry],
    skus: Iterable[Entry],
) -> dict[str, Any]:
    """The sales report from its sums, however they were computed (pandas here, SQL in
    `crm_analytics.report_sql`): `periods` by a bucket's first day within the range (a bucket
    that is not there had no order); one entry per name in the breakdowns, a missing or empty
    name given as None; `skus` every SKU sold or at least the first `TOP_SKUS` of them by the
    report's order."""
    money = money_renderer(currency, decimals)
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "granularity": granularity,
        "currency": currency,
        "totals": _figures(totals, money),
        "periods": [
            {"period": p.isoformat(), **_figures(periods.get(p, (0, 0, 0, 0)), money)}
            for p in buckets(start, end, granularity)
        ],
        "by_source": _rendered(by_source, "source", "orders", money),
        "by_province": _rendered(by_province, "province", "orders", money),
        "top_skus": _rendered(skus, "sku", "quantity", money)[:TOP_SKUS],
    }


def _rendered(
    entries: Iterable[Entry], key: str, count: str, money: Callable[[int], str]
) -> list[dict[str, Any]]:
    ranked = _ranked([{key: name, count: n, "_minor": minor} for name, n, minor in entries], key)
    return [{key: e[key], count: e[count], "revenue": money(e["_minor"])} for e in ranked]


def _breakdown(kept: pd.DataFrame, column: str) -> list[Entry]:
    names = kept[column].map(_name)
    groups = kept.assign(name=names).groupby("name", dropna=False)["amount"].agg(["size", "sum"])
    return [(_name(name), int(row["size"]), int(row["sum"])) for name, row in groups.iterrows()]


def _skus(lines: pd.DataFrame) -> list[Entry]:
    per = (
        lines.assign(
            sku=lines["sku"].map(_name),
            quantity=lines["quantity"].fillna(0).astype("int64"),
            amount=lines["amount"].fillna(0).astype("int64"),
        )
        .groupby("sku", dropna=False)[["quantity", "amount"]]
        .sum()
    )
    return [(_name(sku), int(row["quantity"]), int(row["amount"])) for sku, row in per.iterrows()]


# -- customers ---------------------------------------------------------------------------------


def _month(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def customers_report(orders: pd.DataFrame, *, as_of: date) -> dict[str, Any]:
    """New and repeat customers and monthly cohorts' retention as of `as_of`; see the module's
    definitions."""
    orders = _frame(orders, ORDER_COLUMNS, "orders")
    if orders.empty:
        return customers_from_counts(as_of=as_of, repeat=0, sizes={}, active={})
    counted = counted_orders(orders, as_of)
    counted = counted[counted["customer_id"].notna()]
    if counted.empty:
        return customers_from_counts(as_of=as_of, repeat=0, sizes={}, active={})
    counted = counted.assign(month=counted["day"].dt.year * 12 + counted["day"].dt.month - 1)
    per = counted.groupby("customer_id").agg(cohort=("month", "min"), orders=("month", "size"))
    sizes = per["cohort"].value_counts()
    active = counted[["customer_id", "month"]].drop_duplicates()
    active = active.join(per["cohort"], on="customer_id")
    seen = active.groupby(["cohort", active["month"] - active["cohort"]]).size()
    return customers_from_counts(
        as_of=as_of,
        repeat=int((per["orders"] >= 2).sum()),
        sizes={int(c): int(n) for c, n in sizes.items()},
        active={(int(c), int(k)): int(n) for (c, k), n in seen.items()},
    )


def customers_from_counts(
    *,
    as_of: date,
    repeat: int,
    sizes: Mapping[int, int],
    active: Mapping[tuple[int, int], int],
) -> dict[str, Any]:
    """The customers report from its counts, however they were computed (pandas here, SQL in
    `crm_analytics.report_sql`). Months are indices (year x 12 + month - 1): `sizes` the
    customers of each cohort month (every customer with a counted order is in one), `repeat`
    those with 2 counted orders or more, `active[(cohort, k)]` the cohort's customers with a
    counted order k months after its own (a pair that is not there had none)."""
    customers = sum(sizes.values())
    report: dict[str, Any] = {
        "as_of": as_of.isoformat(),
        "customers_with_orders": customers,
        "repeat_customers": repeat,
        "repeat_rate": _ratio(repeat, customers),
        "new_customers": [],
        "cohorts": [],
    }
    if not customers:
        return report
    last = as_of.year * 12 + as_of.month - 1
    report.update(
        new_customers=[
            {"month": _month(m), "customers": sizes.get(m, 0)} for m in range(min(sizes), last + 1)
        ],
        cohorts=[
            {
                "cohort": _month(c),
                "size": sizes[c],
                "retention": [_ratio(active.get((c, k), 0), sizes[c]) for k in range(last - c + 1)],
            }
            for c in sorted(sizes)
        ],
    )
    return report


# -- loyalty -----------------------------------------------------------------------------------


def loyalty(
    points: pd.DataFrame,
    customers: pd.DataFrame,
    *,
    start: date | None,
    end: date | None,
    currency: str,
    decimals: int,
    point_value_minor_per_1000: int = 5000,
) -> dict[str, Any]:
    """Points issued, redeemed, expired, reversed and adjusted in `start`..`end` (inclusive,
    either open), and the points outstanding now, their liability and the tiers; see the
    module's definitions."""
    money_renderer(currency, decimals)  # a wrong currency is refused before any work
    if start is not None and end is not None and start > end:
        raise ValueError("start is after end")
    points = _frame(points, POINT_COLUMNS, "points")
    customers = _frame(customers, CUSTOMER_COLUMNS, "customers")
    days = _days(points["day"])
    chosen = pd.Series(True, index=points.index)
    if start is not None:
        chosen &= days >= pd.Timestamp(start)
    if end is not None:
        chosen &= days <= pd.Timestamp(end)
    entries = points[chosen]
    by_type = entries["points"].fillna(0).astype("int64").groupby(entries["entry_type"]).sum()
    tiers = customers["tier"].map(lambda t: _name(t) or "none").value_counts()
    return loyalty_from_sums(
        start=start,
        end=end,
        currency=currency,
        decimals=decimals,
        by_type={str(t): int(n) for t, n in by_type.items()},
        outstanding=int(customers["points_balance"].fillna(0).astype("int64").sum()),
        tiers={str(t): int(n) for t, n in tiers.items()},
        point_value_minor_per_1000=point_value_minor_per_1000,
    )


def loyalty_from_sums(
    *,
    start: date | None,
    end: date | None,
    currency: str,
    decimals: int,
    by_type: Mapping[str, int],
    outstanding: int,
    tiers: Mapping[str, int],
    point_value_minor_per_1000: int = 5000,
) -> dict[str, Any]:
    """The loyalty report from its sums, however they were computed (pandas here, SQL in
    `crm_analytics.report_sql`): `by_type` the signed points of the range's entries by entry
    type (a type not there had none), `outstanding` the customers' balances summed, `tiers`
    customers by tier name ("none" for no tier)."""
    money = money_renderer(currency, decimals)

    def total(entry_type: str) -> int:
        return int(by_type.get(entry_type, 0))

    return {
        "from": start.isoformat() if start is not None else None,
        "to": end.isoformat() if end is not None else None,
        "currency": currency,
        "points_issued": total("earn"),
        "points_redeemed": -total("redeem"),
        "points_expired": -total("expire"),
        "points_reversed": -total("reverse"),
        "points_adjusted": total("adjust"),
        "points_outstanding": outstanding,
        "liability": money(round(Fraction(outstanding * point_value_minor_per_1000, 1000))),
        "tiers": [{"tier": t, "customers": tiers[t]} for t in sorted(tiers)],
    }


# -- segments ----------------------------------------------------------------------------------


def _exact(value: Any, field: str) -> Fraction:
    """Money as given in a size history: integer minor units or a decimal string; no float."""
    if isinstance(value, bool) or not isinstance(value, (int, str, Decimal)):
        raise TypeError(f"{field} must be an integer or a decimal string, not {value!r}")
    return Fraction(Decimal(value)) if not isinstance(value, int) else Fraction(value)


def segments_report(history: list[dict]) -> dict[str, Any]:
    """The segments' size history with each segment's share of the revenue of all customers;
    see the module's definitions."""
    items = []
    for item in sorted(history, key=lambda h: str(h["as_of"])):
        as_of = item["as_of"]
        whole = _exact(item["total_revenue"], "total_revenue")
        segments = item["segments"]
        items.append(
            {
                "as_of": as_of.isoformat() if isinstance(as_of, date) else as_of,
                "total_revenue": item["total_revenue"],
                "segments": [
                    {
                        "name": name,
                        "size": int(segments[name]["size"]),
                        "revenue_share": _ratio(
                            _exact(segments[name]["revenue"], f"{name}.revenue"), whole
                        ),
                    }
                    for name in sorted(segments)
                ],
            }
        )
    return {"history": items}


# -- CSV ---------------------------------------------------------------------------------------

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _text(value: str | None) -> str | None:
    # Opened in Excel: a label starting like a formula is shown as text (as the import errors).
    return "'" + value if value and value.startswith(_FORMULA_START) else value


def _sales_rows(report: Mapping[str, Any]) -> list[list[Any]]:
    header = ["period", *PERIOD_FIELDS]
    return [header, *([p[c] for c in header] for p in report["periods"])]


def _customers_rows(report: Mapping[str, Any]) -> list[list[Any]]:
    months = max((len(c["retention"]) for c in report["cohorts"]), default=0)
    header = ["cohort", "size", *(f"m{k}" for k in range(months))]
    rows: list[list[Any]] = [header]
    for c in report["cohorts"]:
        retention = list(c["retention"])
        rows.append([c["cohort"], c["size"], *retention, *[""] * (months - len(retention))])
    return rows


_LOYALTY_TOTALS = (
    "from",
    "to",
    "currency",
    "points_issued",
    "points_redeemed",
    "points_expired",
    "points_reversed",
    "points_adjusted",
    "points_outstanding",
    "liability",
)


def _loyalty_rows(report: Mapping[str, Any]) -> list[list[Any]]:
    return [
        list(_LOYALTY_TOTALS),
        [report[c] for c in _LOYALTY_TOTALS],
        ["tier", "customers"],
        *([_text(t["tier"]), t["customers"]] for t in report["tiers"]),
    ]


def _segments_rows(report: Mapping[str, Any]) -> list[list[Any]]:
    rows: list[list[Any]] = [["as_of", "name", "size", "revenue_share"]]
    for item in report["history"]:
        for s in item["segments"]:
            rows.append([item["as_of"], _text(s["name"]), s["size"], s["revenue_share"]])
    return rows


_TABLES: dict[str, Callable[[Mapping[str, Any]], list[list[Any]]]] = {
    "sales": _sales_rows,
    "customers": _customers_rows,
    "loyalty": _loyalty_rows,
    "segments": _segments_rows,
}


def to_csv(report_name: str, report: Mapping[str, Any]) -> str:
    """The report's main table as CSV (`\\r\\n` line ends, as Excel expects; no index):
    sales: a header row and one row per period; customers: one row per cohort with the
    retention in columns m0..mN (empty past the month of `as_of`); loyalty: a header and a row
    of the totals, then a `tier,customers` header and one row per tier; segments:
    `as_of,name,size,revenue_share` rows. A missing value is an empty cell."""
    if report_name not in _TABLES:
        raise ValueError(f"report must be one of {', '.join(REPORTS)}")
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(_TABLES[report_name](report))
    return out.getvalue()
