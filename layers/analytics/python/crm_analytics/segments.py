"""The built-in segments of the contract ("Segments, jobs, reports"), computed for a whole shop
at once with pandas: RFM scores and groups, lifecycle stages, and value bands by the 80/20 rule,
all as of a date.

Input is one row per order, already in the shop's terms: `customer_id`, `day` (the calendar date
the order was placed, in the shop's timezone), `paid`, `cancelled`, `total` and `refunded`
(integer minor units of the shop's currency: an order in another currency is converted or left
out by the caller, never summed as if it were the same money). Customers that are not active
(merged, erased) are left out by the caller too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd

from crm.domain.segment_rules import RFM_GROUPS

# The frame `segment` gives, one row per scored customer (the SQL path gives the same).
COLUMNS = (
    "recency_days",
    "frequency",
    "monetary",
    "r",
    "f",
    "m",
    "group",
    "lifecycle",
    "window_monetary",
    "value_band",
)


@dataclass(frozen=True)
class Thresholds:
    """The contract's defaults; a shop may change them (configuration)."""

    churned_after_days: int = 365
    at_risk_after_days: int = 90
    loyal_orders_in_window: int = 4
    new_within_days: int = 30
    window_days: int = 365
    high_value_share: int = 80  # percent of the window's money
    mid_value_share: int = 95


def counted_orders(orders: pd.DataFrame, as_of: date) -> pd.DataFrame:
    """Paid, not cancelled, placed on or before `as_of`, and money kept (total minus refunds)
    above zero; with `amount`, the money kept."""
    kept = orders["total"].astype("int64") - orders["refunded"].astype("int64")
    counted = (
        orders["paid"].astype(bool)
        & ~orders["cancelled"].astype(bool)
        & (pd.to_datetime(orders["day"]) <= pd.Timestamp(as_of))
        & (kept > 0)
    )
    out = orders.loc[counted, ["customer_id", "day"]].copy()
    out["day"] = pd.to_datetime(out["day"])
    out["amount"] = kept[counted].astype("int64")
    return out


def _score(values: pd.Series, *, lower_is_worse: bool) -> pd.Series:
    """1 + floor(5 x worse / N), `worse` the customers with a strictly worse value."""
    n = len(values)
    if lower_is_worse:
        worse = values.rank(method="min", ascending=True) - 1  # strictly smaller
    else:
        worse = n - values.rank(method="max", ascending=True)  # strictly larger
    return (1 + np.floor(5 * worse / n)).astype("int64")


def _group(r: pd.Series, f: pd.Series, m: pd.Series) -> pd.Series:
    conditions = [
        (r >= 4) & (f >= 4) & (m >= 4),
        (f >= 4) & (r >= 3),
        (r <= 2) & (f >= 3),
        (r >= 4) & (f <= 2),
        (r == 1) & (f <= 2),
    ]
    return pd.Series(np.select(conditions, RFM_GROUPS[:-1], default=RFM_GROUPS[-1]), index=r.index)


def segment(
    orders: pd.DataFrame, as_of: date, thresholds: Thresholds = Thresholds()
) -> pd.DataFrame:
    """One row per customer with a counted order, indexed by `customer_id`: `recency_days`,
    `frequency`, `monetary`, the scores `r`, `f`, `m`, the RFM `group`, the `lifecycle` stage,
    `window_monetary` (money kept in the window) and the `value_band` (None without any)."""
    counted = counted_orders(orders, as_of)
    columns = list(COLUMNS)
    if counted.empty:
        return pd.DataFrame(columns=columns).rename_axis("customer_id")
    at = pd.Timestamp(as_of)
    per = counted.groupby("customer_id").agg(
        last=("day", "max"),
        first=("day", "min"),
        frequency=("day", "size"),
        monetary=("amount", "sum"),
    )
    per["recency_days"] = (at - per["last"]).dt.days.astype("int64")
    per["r"] = _score(per["recency_days"], lower_is_worse=False)
    per["f"] = _score(per["frequency"], lower_is_worse=True)
    per["m"] = _score(per["monetary"], lower_is_worse=True)
    per["group"] = _group(per["r"], per["f"], per["m"])

    window_start = at - pd.Timedelta(days=thresholds.window_days)  # after it, through as_of
    in_window = counted[counted["day"] > window_start]
    window = in_window.groupby("customer_id").agg(
        window_orders=("day", "size"), window_monetary=("amount", "sum")
    )
    per = per.join(window, how="left")
    per["window_orders"] = per["window_orders"].fillna(0).astype("int64")
    per["window_monetary"] = per["window_monetary"].fillna(0).astype("int64")

    d = per["recency_days"]
    first_age = (at - per["first"]).dt.days
    per["lifecycle"] = np.select(
        [
            d > thresholds.churned_after_days,
            d > thresholds.at_risk_after_days,
            per["window_orders"] >= thresholds.loyal_orders_in_window,
            per["frequency"] >= 2,
            first_age <= thresholds.new_within_days,
        ],
        ["churned", "at_risk", "loyal", "returning", "new"],
        default="active",
    )
    bands = value_bands(per["window_monetary"], thresholds)
    per["value_band"] = bands.astype(object).where(bands.notna(), None)
    return per[columns]


def value_bands(window_monetary: pd.Series, thresholds: Thresholds = Thresholds()) -> pd.Series:
    """80/20: customers with money in the window, by it descending (ties by customer id);
    `high_value` the shortest head reaching 80% of the window's total, `mid_value` the next up
    to 95%, `low_value` the rest. Integer arithmetic: no share is rounded."""
    bands = pd.Series(None, index=window_monetary.index, dtype="object")
    spent = window_monetary[window_monetary > 0]
    if spent.empty:
        return bands
    ordered = spent.rename("money").reset_index()
    ordered = ordered.sort_values(["money", "customer_id"], ascending=[False, True])
    total = int(ordered["money"].sum())
    before = ordered["money"].cumsum() - ordered["money"]  # money of the customers ahead
    # In the head that reaches the share: the customers ahead of one have not reached it yet.
    high = before * 100 < thresholds.high_value_share * total
    mid = ~high & (before * 100 < thresholds.mid_value_share * total)
    labels = np.select([high, mid], ["high_value", "mid_value"], default="low_value")
    bands.loc[ordered["customer_id"].to_numpy()] = labels
    return bands


def window_start(as_of: date, thresholds: Thresholds = Thresholds()) -> date:
    """The window is the days after this one, through `as_of`."""
    return as_of - timedelta(days=thresholds.window_days)
