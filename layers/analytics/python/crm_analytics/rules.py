"""A parsed segment rule (`crm.domain.segment_rules.parse_rule`) over a whole shop's customers
at once: a boolean mask over a frame with one column per documented field. Same meaning as
`segment_rules.matches` on one record, which the tests hold it to."""

from __future__ import annotations

from typing import Any

import pandas as pd

from crm.domain.segment_rules import DATE, FIELDS, TEXTS, Condition


def mask(rule: Any, customers: pd.DataFrame) -> pd.Series:
    """Which rows of `customers` the rule selects."""
    if isinstance(rule, Condition):
        return _condition(rule, customers)
    if "all" in rule:
        out = pd.Series(True, index=customers.index)
        for child in rule["all"]:
            out &= mask(child, customers)
        return out
    if "any" in rule:
        out = pd.Series(False, index=customers.index)
        for child in rule["any"]:
            out |= mask(child, customers)
        return out
    return ~mask(rule["not"], customers)


def _present(column: pd.Series, kind: str) -> pd.Series:
    if kind == TEXTS:
        return column.map(lambda v: isinstance(v, list) and len(v) > 0)
    return column.notna() & column.map(lambda v: v != "")


def _condition(c: Condition, customers: pd.DataFrame) -> pd.Series:
    kind = FIELDS[c.field]
    if c.field in customers:
        column = customers[c.field]
    else:
        column = pd.Series(None, index=customers.index, dtype="object")
    present = _present(column, kind)
    if c.op == "exists":
        return present if c.value else ~present
    if kind == DATE:
        column = column.map(lambda v: str(v)[:10] if isinstance(v, str) else v)
    if c.op == "contains":
        if kind == TEXTS:
            held = column.map(lambda v: isinstance(v, list) and c.value in v)
        else:
            held = column.map(lambda v: isinstance(v, str) and c.value in v)
        return present & held.astype(bool)
    if c.op == "in":
        return present & column.isin(c.value)
    compare = {
        "=": lambda s: s == c.value,
        "!=": lambda s: s != c.value,
        ">": lambda s: s > c.value,
        ">=": lambda s: s >= c.value,
        "<": lambda s: s < c.value,
        "<=": lambda s: s <= c.value,
    }[c.op]
    held = compare(column[present]).astype(bool)
    return held.reindex(customers.index, fill_value=False).astype(bool)
