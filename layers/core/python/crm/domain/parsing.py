"""Reading untrusted text: integers and JSON, strictly. Pure: stdlib and domain errors only.

Every number and JSON document that comes from outside (a query parameter, a request or webhook
body, a cell or a line of a dropped file) is read here, so the rules hold in one place:

* An integer is ASCII digits only. `str.isdigit()` and `int()` accept far more: `"²"` is a
  digit to `isdigit()` (and then `int("²")` raises), `int()` reads full-width and
  Arabic-Indic digits (`"\\uff11\\uff10"` is 10), ignores spaces (`" 5 "`) and reads
  underscores (`"1_000"`). `ascii_int` takes `[0-9]+` (with a leading `-` when allowed),
  at most `MAX_INT_DIGITS` digits, and nothing else.
* JSON is RFC 8259 JSON. Python's `json.loads` also reads `NaN`, `Infinity` and `-Infinity`,
  turns `1e999` into an infinite float, raises `ValueError` (not a decode error) past 4,300
  digits, and `RecursionError` on deep nesting. `load_json` refuses all of them with
  `JsonRefused` (a `ValueError`), whose `issue` says why: `invalid_json`, `not_finite`,
  `number_too_long`, `too_deep` (more than `MAX_JSON_DEPTH` nested arrays and objects; the
  document itself is depth 1) or `invalid_unicode` (a lone surrogate such as `"\\ud800"`, which
  no UTF-8 store can keep). Nesting is measured without recursion. `parse_json` reads a
  request or webhook body with `load_json` and refuses it as `MalformedRequest` (400), with a
  message that says why, so a service that must verify a body before reading it (a signed
  webhook) reads it exactly as `crm.api` does.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Any

from crm.domain.errors import MalformedRequest

MAX_INT_DIGITS = 18  # below 2**63: every id, count and limit we read fits
MAX_NUMBER_CHARS = 100  # a JSON number literal longer than this is no number we use
MAX_JSON_DEPTH = 64

_ASCII_INT = re.compile(r"-?[0-9]+")


def ascii_int(
    text: Any,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int | None:
    """The integer `text` spells in ASCII digits, within [`minimum`, `maximum`]; else None.

    No spaces, signs other than a leading `-`, underscores, exponents or non-ASCII digits.
    A `-` is only read when `minimum` allows a negative number."""
    if not isinstance(text, str) or not _ASCII_INT.fullmatch(text):
        return None
    digits = text.removeprefix("-")
    if len(digits) > MAX_INT_DIGITS or (text.startswith("-") and (minimum or 0) >= 0):
        return None
    value = int(text)
    if minimum is not None and value < minimum:
        return None
    if maximum is not None and value > maximum:
        return None
    return value


class JsonRefused(ValueError):
    """The text is not JSON this system reads; `issue` is the reason, `at` a character offset
    when there is one."""

    def __init__(self, issue: str, message: str, at: int | None = None) -> None:
        super().__init__(message)
        self.issue = issue
        self.at = at


def _constant(name: str) -> Any:
    raise JsonRefused("not_finite", f"{name} is not a JSON value")


# Integral values up to DynamoDB's 38 digits become ints; larger ones stay floats (and are
# refused where an integer is required).
_INTEGRAL_LIMIT = Decimal(10) ** 38


def _float(text: str) -> float | int:
    """A fraction, or an integer written with a point or an exponent (`5.0`, `1e3`): JSON
    Schema, and so the published document, counts those as integers, and so does this reader
    (the exact value, from the decimal text, never through a binary float)."""
    if len(text) > MAX_NUMBER_CHARS:
        raise JsonRefused("number_too_long", "a number is too long")
    value = float(text)
    if not math.isfinite(value):
        raise JsonRefused("not_finite", "a number is too large to be finite")
    exact = Decimal(text)
    if exact == exact.to_integral_value() and abs(exact) < _INTEGRAL_LIMIT:
        return int(exact)
    return value


def _int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise JsonRefused("number_too_long", "a number is too long")
    return int(text)


_DECODER = json.JSONDecoder(parse_float=_float, parse_int=_int, parse_constant=_constant)


def load_json(raw: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The JSON value of `raw` (UTF-8 bytes, a BOM allowed, or text); `JsonRefused` else."""
    try:
        text = raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        raise JsonRefused("invalid_json", "the text is not UTF-8", at=exc.start) from exc
    try:
        value = _DECODER.decode(text)
    except JsonRefused:
        raise
    except json.JSONDecodeError as exc:
        raise JsonRefused("invalid_json", "the text is not valid JSON", at=exc.pos) from exc
    except RecursionError as exc:
        raise JsonRefused("too_deep", f"JSON nested deeper than {max_depth}") from exc
    except ValueError as exc:  # e.g. an integer past Python's digit limit
        raise JsonRefused("number_too_long", "a number is too long") from exc
    _check(value, max_depth)
    return value


def _check(value: Any, max_depth: int) -> None:
    """Depth and text of a decoded value, walked with a stack (never recursion)."""
    if isinstance(value, str):
        _check_text(value)
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
            for key in item:
                _check_text(key)
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            raise JsonRefused("too_deep", f"JSON nested deeper than {max_depth}")
        for child in children:
            if isinstance(child, str):
                _check_text(child)
            elif isinstance(child, dict | list):
                stack.append((child, depth + 1))


def _check_text(text: str) -> None:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise JsonRefused("invalid_unicode", "a string holds a lone surrogate") from exc


_JSON_MESSAGES = {
    "not_finite": "the body is not valid JSON: NaN and Infinity are not JSON numbers",
    "number_too_long": "the body holds a number longer than 100 characters",
    "too_deep": f"the body is nested deeper than {MAX_JSON_DEPTH} arrays and objects",
    "invalid_unicode": "the body holds a string that is not valid Unicode",
}


def parse_json(raw: bytes) -> Any:
    """A body as strict JSON (`load_json`): `MalformedRequest` (400) for anything else."""
    if not raw.strip():
        raise MalformedRequest("the body is empty; a JSON object was expected")
    try:
        return load_json(raw)
    except JsonRefused as exc:
        detail: dict[str, Any] = {"issue": exc.issue}
        if exc.at is not None:
            detail["at"] = exc.at
        raise MalformedRequest(
            _JSON_MESSAGES.get(exc.issue, "the body is not valid JSON"), details=[detail]
        ) from exc
