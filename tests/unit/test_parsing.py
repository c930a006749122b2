"""Strict reading of untrusted integers and JSON (`crm.domain.parsing`)."""

from __future__ import annotations

import json

import pytest

from crm.domain.parsing import MAX_JSON_DEPTH, JsonRefused, ascii_int, load_json


@pytest.mark.parametrize(("text", "value"), [("0", 0), ("7", 7), ("500", 500), ("0012", 12)])
def test_ascii_digits_are_integers(text, value):
    assert ascii_int(text) == value


@pytest.mark.parametrize(
    "text",
    [
        "²",
        "\uff11\uff10",
        "\u0663",
        "5²",
        " 5",
        "5 ",
        "+5",
        "1_000",
        "1e2",
        "5.0",
        "",
        "-",
        "0x10",
        None,
        5,
    ],
)
def test_anything_else_is_not_an_integer(text):
    # str.isdigit() says True for "²"; int() reads full-width and Arabic-Indic digits,
    # " 5" and "1_000"
    assert ascii_int(text) is None


def test_bounds_and_signs():
    assert ascii_int("-3") is None  # negatives only when the minimum allows them
    assert ascii_int("-3", minimum=-10) == -3
    assert ascii_int("0", minimum=1) is None
    assert ascii_int("501", maximum=500) is None
    assert ascii_int("9" * 19) is None  # past 18 digits
    assert ascii_int("9" * 18) == int("9" * 18)


@pytest.mark.parametrize(
    ("raw", "issue"),
    [
        ("NaN", "not_finite"),
        ('{"a": Infinity}', "not_finite"),
        ("[-Infinity]", "not_finite"),
        ('{"a": 1e999}', "not_finite"),
        ("[" + "9" * 101 + "]", "number_too_long"),
        ("[1." + "0" * 100 + "]", "number_too_long"),
        ("[" * 100_000 + "]" * 100_000, "too_deep"),
        ("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1), "too_deep"),
        ('{"a": "\\ud800"}', "invalid_unicode"),
        ('{"\\udfff": 1}', "invalid_unicode"),
        ("{not json", "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        ('{"a": 1} x', "invalid_json"),
    ],
)
def test_what_json_loads_would_accept_or_crash_on_is_refused_with_a_reason(raw, issue):
    with pytest.raises(JsonRefused) as refused:
        load_json(raw)
    assert refused.value.issue == issue
    assert isinstance(refused.value, ValueError)


def test_plain_json_reads_as_json_loads_reads_it():
    text = '{"a": [1, 2.5, "x", null, true, {"b": "é\\u00e9"}], "c": -0.0, "d": 10000000000}'
    assert load_json(text) == json.loads(text)
    assert load_json(("\ufeff" + text).encode()) == json.loads(text)


def test_nesting_up_to_the_limit_is_read():
    raw = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert load_json(raw) is not None
    assert load_json('{"a": ' * (MAX_JSON_DEPTH - 1) + "1" + "}" * (MAX_JSON_DEPTH - 1))
