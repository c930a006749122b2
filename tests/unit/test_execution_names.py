"""Step Functions execution names (`crm.adapters.workflows.execution_name`): one name per
identity, so a second start of the same work is refused and different work is never refused."""

from __future__ import annotations

import re

import pytest

from crm.adapters.workflows import execution_name

VALID = re.compile(r"[A-Za-z0-9_-]{1,80}")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("ord_generic_A.1",), ("ord_generic_A-1",)),
        (("ord_generic_A 1",), ("ord_generic_A_1",)),
        (("ord_x_" + "L" * 80 + "1",), ("ord_x_" + "L" * 80 + "2",)),
        (("ord_x_" + "L" * 74, "rf-1"), ("ord_x_" + "L" * 74, "rf-2")),
        (("a-b",), ("a", "b")),
        (("case", "ord_1", "1"), ("ord_1", "attempt", "1")),
    ],
)
def test_different_identities_get_different_names(a, b):
    # Given two units of work that the old truncate-and-replace scheme named alike
    # When each is named
    # Then the names differ, so neither start is refused as the other's duplicate
    assert execution_name(*a) != execution_name(*b)


@pytest.mark.parametrize(
    "parts",
    [("ord_shopify_820982911946154508",), ("x" * 500, "y"), ("订单/1#2", "rf 3"), ("...",)],
)
def test_a_name_is_valid_deterministic_and_readable(parts):
    name = execution_name(*parts)
    assert VALID.fullmatch(name), name
    assert execution_name(*parts) == name
    readable = re.sub(r"[^A-Za-z0-9_-]+", "-", "-".join(parts))[:20].strip("-")
    assert name.startswith(readable)
