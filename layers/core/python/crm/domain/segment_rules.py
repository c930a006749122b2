"""Rule segments: the rule language of `PUT /segments/{name}` and `POST /segments/preview`.

A rule is `{"all": [...]}`, `{"any": [...]}`, `{"not": rule}` or a condition
`{"field": ..., "op": ..., "value": ...}` over the documented customer fields (`FIELDS`). It is
checked whole before anything is stored: an unknown field or operator, a value of the wrong
type, a malformed node, a rule too deep or too large is a `ValidationFailed` (422) whose details
name every problem by its path (`rule.all[1].any[0].value`). `parse_rule` returns the rule with
values normalised (money in minor units, dates as ISO dates); `matches` evaluates it on one
customer's record. The analytics layer compiles the same parsed rule for a whole shop.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from crm.domain.errors import ValidationFailed
from crm.domain.money import to_minor

TEXT, TEXTS, INT, MONEY, DATE, BOOL = "text", "texts", "int", "money", "date", "bool"

# The built-in segments (the contract's definitions): RFM groups are segments named `rfm_<group>`.
RFM_GROUPS = ("champions", "loyal", "at_risk", "recent", "inactive", "needs_attention")
LIFECYCLE_STAGES = ("new", "active", "returning", "loyal", "at_risk", "churned")
VALUE_BANDS = ("high_value", "mid_value", "low_value")
RFM_SEGMENTS = tuple(f"rfm_{group}" for group in RFM_GROUPS)
BUILTIN_SEGMENTS = (*LIFECYCLE_STAGES, *VALUE_BANDS, *RFM_SEGMENTS)

# The documented fields and their types (docs: the segments section of the contract).
FIELDS: dict[str, str] = {
    "email": TEXT,
    "phone": TEXT,
    "first_name": TEXT,
    "last_name": TEXT,
    "gender": TEXT,
    "locale": TEXT,
    "timezone": TEXT,
    "country_code": TEXT,
    "province": TEXT,
    "city": TEXT,
    "zip": TEXT,
    "birthday": DATE,
    "tags": TEXTS,
    "consents.email": BOOL,
    "consents.sms": BOOL,
    "tier": TEXT,
    "total_spent": MONEY,
    "orders_count": INT,
    "first_order_at": DATE,
    "last_order_at": DATE,
    "points_balance": INT,
    "r": INT,
    "f": INT,
    "m": INT,
    "recency_days": INT,
    "rfm_group": TEXT,
    "lifecycle": TEXT,
    "value_band": TEXT,
}
ORDERED = ("=", "!=", ">", ">=", "<", "<=", "in", "exists")
OPERATORS: dict[str, tuple[str, ...]] = {
    TEXT: ("=", "!=", "in", "contains", "exists"),
    TEXTS: ("contains", "exists"),
    INT: ORDERED,
    MONEY: ORDERED,
    DATE: ORDERED,
    BOOL: ("=", "!=", "exists"),
}
MAX_DEPTH, MAX_CONDITIONS, MAX_IN = 8, 50, 500
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: Any  # normalised: int (INT, MONEY in minor units), str (TEXT, DATE), bool, list


Rule = dict[str, Any]  # {"all": [...]} | {"any": [...]} | {"not": rule} | Condition


def parse_rule(raw: Any, currency: str) -> Any:
    """The rule checked and normalised; `ValidationFailed` naming every problem."""
    problems: list[dict[str, Any]] = []
    count = [0]
    parsed = _node(raw, "rule", 1, currency, problems, count)
    if count[0] > MAX_CONDITIONS:
        problems.append({"field": "rule", "issue": "too_many_conditions", "limit": MAX_CONDITIONS})
    if problems:
        raise ValidationFailed("the segment rule is invalid", details=problems)
    return parsed


def _node(
    raw: Any, path: str, depth: int, currency: str, problems: list[dict[str, Any]], count: list[int]
) -> Any:
    if depth > MAX_DEPTH:
        problems.append({"field": path, "issue": "too_deep", "limit": MAX_DEPTH})
        return None
    if not isinstance(raw, dict):
        problems.append({"field": path, "issue": "wrong_type", "expected": "object"})
        return None
    keys = set(raw)
    if keys in ({"all"}, {"any"}):
        (kind,) = keys
        children = raw[kind]
        if not isinstance(children, list) or not children:
            problems.append(
                {
                    "field": f"{path}.{kind}",
                    "issue": "wrong_type",
                    "expected": "a non-empty list of rules",
                }
            )
            return None
        return {
            kind: [
                _node(c, f"{path}.{kind}[{i}]", depth + 1, currency, problems, count)
                for i, c in enumerate(children)
            ]
        }
    if keys == {"not"}:
        return {"not": _node(raw["not"], f"{path}.not", depth + 1, currency, problems, count)}
    if "field" in keys or "op" in keys:
        count[0] += 1
        return _condition(raw, path, currency, problems)
    problems.append(
        {
            "field": path,
            "issue": "unknown_node",
            "expected": "all, any, not, or a condition (field, op, value)",
        }
    )
    return None


def _condition(
    raw: dict[str, Any], path: str, currency: str, problems: list[dict[str, Any]]
) -> Condition | None:
    extra = set(raw) - {"field", "op", "value"}
    if extra:
        problems.append({"field": f"{path}.{sorted(extra)[0]}", "issue": "unknown_key"})
    field, op = raw.get("field"), raw.get("op")
    kind = FIELDS.get(field) if isinstance(field, str) else None
    if kind is None or not isinstance(field, str):
        problems.append(
            {
                "field": f"{path}.field",
                "issue": "unknown_field",
                "value": field,
                "allowed": sorted(FIELDS),
            }
        )
        return None
    if op not in OPERATORS[kind]:
        problems.append(
            {
                "field": f"{path}.op",
                "issue": "unknown_operator",
                "value": op,
                "allowed": list(OPERATORS[kind]),
            }
        )
        return None
    value_path = f"{path}.value"
    if op == "exists":
        value = raw.get("value", True)
        if not isinstance(value, bool):
            problems.append({"field": value_path, "issue": "wrong_type", "expected": "boolean"})
            return None
        return Condition(field, op, value)
    if "value" not in raw:
        problems.append({"field": value_path, "issue": "missing"})
        return None
    if op == "in":
        values = raw["value"]
        if not isinstance(values, list) or not values or len(values) > MAX_IN:
            problems.append(
                {
                    "field": value_path,
                    "issue": "wrong_type",
                    "expected": f"a list of 1 to {MAX_IN} values",
                }
            )
            return None
        parsed = [
            _value(v, kind, f"{value_path}[{i}]", currency, problems) for i, v in enumerate(values)
        ]
        return Condition(field, op, parsed)
    element = TEXT if kind == TEXTS else kind  # `contains` on tags: one tag
    return Condition(field, op, _value(raw["value"], element, value_path, currency, problems))


def _value(raw: Any, kind: str, path: str, currency: str, problems: list[dict[str, Any]]) -> Any:
    if kind == TEXT and isinstance(raw, str):
        return raw
    if kind == INT and isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if kind == BOOL and isinstance(raw, bool):
        return raw
    if kind == MONEY and isinstance(raw, str):
        try:
            return to_minor(raw, currency)
        except (ValidationFailed, ValueError, ArithmeticError):
            pass
    if kind == DATE and isinstance(raw, str):
        text = raw.strip()
        try:
            if _DATE.match(text):
                return date.fromisoformat(text).isoformat()
            return datetime.fromisoformat(text.replace("Z", "+00:00")).date().isoformat()
        except ValueError:
            pass
    expected = {
        TEXT: "string",
        INT: "integer",
        BOOL: "boolean",
        MONEY: 'decimal string (e.g. "1000.00")',
        DATE: "date (YYYY-MM-DD)",
    }[kind]
    problems.append({"field": path, "issue": "wrong_type", "expected": expected})
    return None


def matches(rule: Any, record: dict[str, Any]) -> bool:
    """Whether one customer's record (the documented fields; money in minor units, dates and
    times as ISO text) is in the segment. A missing value satisfies only `exists false`."""
    if isinstance(rule, Condition):
        return _holds(rule, record)
    if "all" in rule:
        return all(matches(child, record) for child in rule["all"])
    if "any" in rule:
        return any(matches(child, record) for child in rule["any"])
    return not matches(rule["not"], record)


def _holds(c: Condition, record: dict[str, Any]) -> bool:
    value = record.get(c.field)
    present = value not in (None, "", [])
    if c.op == "exists":
        return present is c.value
    if not present:
        return False
    if FIELDS[c.field] == DATE:
        value = str(value)[:10]  # a time compares by its date
    if c.op == "contains":
        return c.value in value if isinstance(value, list) else c.value in str(value)
    if c.op == "in":
        return value in c.value
    return bool(
        {
            "=": value == c.value,
            "!=": value != c.value,
            ">": value > c.value,
            ">=": value >= c.value,
            "<": value < c.value,
            "<=": value <= c.value,
        }[c.op]
    )
