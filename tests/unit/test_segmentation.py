"""`segmentation.compute`: each customer's `segments` is the names, sorted, of the segments whose
member lists hold them (the lists are the definition; the per-customer tuples are derived from
them), `()` for a customer in none; held to a plain per-customer computation, built-in and
rule segments together, whatever the number of segments."""

from __future__ import annotations

import random

import pandas as pd
import pytest

from crm.domain.segment_rules import parse_rule
from crm_analytics.segmentation import _combinations, compute
from tests.unit.test_segments import AS_OF, generated_orders

RULES = {
    "big_spenders": {"field": "total_spent", "op": ">=", "value": "500.00"},
    "vip": {"field": "tags", "op": "contains", "value": "vip"},
    "east_recent": {
        "all": [
            {"field": "province", "op": "in", "value": ["浙江", "上海"]},
            {"field": "r", "op": ">=", "value": 4},
        ]
    },
    "nobody": {"field": "orders_count", "op": ">", "value": 10_000},
}


def plain(customer_ids: list[str], members: dict[str, list[str]]) -> dict[str, tuple[str, ...]]:
    held: dict[str, list[str]] = {c: [] for c in customer_ids}
    for name in sorted(members):
        for c in members[name]:
            if c in held:
                held[c].append(name)
    return {c: tuple(names) for c, names in held.items()}


def customers_frame(seed: int, n: int) -> pd.DataFrame:
    rng = random.Random(seed)
    return pd.DataFrame(
        {
            "customer_id": [f"cus_{i:05d}" for i in range(n)],
            "tags": [rng.choice([None, [], ["vip"], ["vip", "x"], ["x"]]) for _ in range(n)],
            "consents_email": [rng.choice([None, True, False]) for _ in range(n)],
            "consents_sms": [rng.choice([None, True, False]) for _ in range(n)],
            "province": [rng.choice([None, "浙江", "上海", "广东"]) for _ in range(n)],
            "total_spent": [rng.choice([0, 10_000, 50_000, 90_000]) for _ in range(n)],
            "orders_count": [rng.randint(0, 5) for _ in range(n)],
        }
    )


@pytest.mark.parametrize("seed", [1, 2])
def test_each_customers_segments_are_the_sorted_names_of_the_lists_that_hold_them(
    seed: int,
) -> None:
    # Given a shop's orders and more customers than buyers (some never ordered)
    orders = pd.DataFrame(generated_orders(seed, customers=1500))
    customers = customers_frame(seed, 1700)
    rules = {name: parse_rule(raw, "CNY") for name, raw in RULES.items()}

    # When the shop is segmented with built-in and rule segments
    outcome = compute(orders, customers, AS_OF, rule_segments=rules)

    # Then every customer holds exactly the segments whose lists name them, sorted
    ids = list(customers["customer_id"])
    expected = plain(ids, outcome.members)
    got = outcome.profiles["segments"]
    assert list(got.index) == ids
    assert {c: got[c] for c in ids} == expected
    assert all(isinstance(v, tuple) for v in got)
    assert any(v == () for v in got) and len(outcome.members["nobody"]) == 0
    assert sum(len(v) > 3 for v in got) > 0  # rule segments on top of the built-in ones


def memberships(ids: list[str], members: dict[str, list[str]]) -> list[tuple[str, ...]]:
    """Each customer's segments as `finish` derives them: one mask per segment, combined."""
    import numpy as np

    names = sorted(members)
    masks = [np.array([c in set(members[name]) for c in ids], dtype=bool) for name in names]
    combinations, which = _combinations(names, masks, len(ids))
    return list(combinations[which])


def test_memberships_with_no_segment_many_segments_and_repeated_ids() -> None:
    ids = [f"c{i}" for i in range(7)]
    assert memberships(ids, {}) == [()] * 7
    assert memberships([], {"a": ["c1"]}) == []

    # More segments than one 64-bit word holds (packed bits, not one integer a customer)
    many = {f"s{j:03d}": sorted({f"c{j % 7}", f"c{(j * 3) % 7}", "gone"}) for j in range(150)}
    assert dict(zip(ids, memberships(ids, many), strict=True)) == plain(ids, many)
    # As many as one word holds, and one fewer
    for n in (64, 63):
        some = {name: many[name] for name in sorted(many)[:n]}
        assert dict(zip(ids, memberships(ids, some), strict=True)) == plain(ids, some)

    # A customer twice: both rows hold the same segments
    few = {"b": ["c1"], "a": ["c1", "c2"]}
    assert memberships(["c1", "c2", "c1"], few) == [("a", "b"), ("a",), ("a", "b")]


def _numbers(n: int, rng: random.Random) -> dict:
    import numpy as np

    whole = {
        name: np.array([float(rng.randint(1, 5)) for _ in range(n)])
        for name in ("r", "f", "m", "recency_days", "frequency", "monetary", "p_clv_12m")
    }
    return {
        **whole,
        "p_p_alive": np.array([round(rng.random(), 4) for _ in range(n)]),
        "p_expected_orders_90d": np.array([round(rng.random() * 3, 4) for _ in range(n)]),
    }


def test_a_digest_moves_with_any_one_value_and_only_for_that_profile() -> None:
    import numpy as np

    from crm_analytics.segmentation import digests

    # Given 200 profiles' figures, groups and segments
    rng = random.Random(3)
    n = 200
    numbers = _numbers(n, rng)
    groups = np.array([rng.randint(-1, 5) for _ in range(n)])
    combinations = np.empty(3, dtype=object)
    combinations[:] = [(), ("loyal",), ("high_value", "loyal")]
    which = np.array([rng.randint(0, 2) for _ in range(n)])
    before = digests(numbers, groups, combinations, which)
    assert before.isna().sum() == 0 and len(set(before.tolist())) == n  # all distinct

    # When one value of one profile changes, in turn each figure, the group, the segments
    for name in numbers:
        changed = {k: v.copy() for k, v in numbers.items()}
        changed[name][17] += 1 if name not in ("p_p_alive", "p_expected_orders_90d") else 0.0001
        after = digests(changed, groups, combinations, which)
        # Then that profile's digest moves, and no other's
        assert (before != after).tolist() == [i == 17 for i in range(n)], name
    moved_group = groups.copy()
    moved_group[5] = (moved_group[5] + 2) % 6
    assert (digests(numbers, moved_group, combinations, which) != before).sum() == 1
    other = which.copy()
    other[9] = 2 if which[9] != 2 else 1
    assert (digests(numbers, groups, combinations, other) != before).sum() == 1

    # A figure gone (no prediction any more) is a change too; nothing at all: no digest
    gone = {k: v.copy() for k, v in numbers.items()}
    gone["p_p_alive"][4] = np.nan
    assert (digests(gone, groups, combinations, which) != before).tolist()[4]
    nothing = {k: np.full(n, np.nan) for k in numbers}
    empty = digests(nothing, np.full(n, -1), combinations, np.zeros(n, dtype=int))
    assert empty.isna().all()


def test_what_is_written_is_what_differs_from_what_the_profile_holds() -> None:
    from crm_analytics.segmentation import changed

    new = pd.array([1, 2, None, None, 5, 6], dtype="Int64")
    held = pd.array([1, 3, None, 4, None, 0], dtype="Int64")  # 0: held before digests

    got = changed(pd.Series(new), pd.Series(held)).tolist()

    assert got == [False, True, False, True, True, True]


def test_the_payload_holds_the_profiles_figures_and_its_digest() -> None:
    import json

    import numpy as np

    from crm_analytics.segmentation import payloads

    orders = pd.DataFrame(generated_orders(4, customers=400))
    customers = customers_frame(4, 450)
    outcome = compute(orders, customers, AS_OF)
    p = outcome.profiles
    everyone = np.arange(len(p))

    held = payloads(outcome, everyone, "CNY")

    assert json.loads(json.dumps(held)) == held  # JSON as it is stored
    for i, value in enumerate(held):
        row = p.iloc[i]
        assert value.get("segments", []) == list(row["segments"])
        assert ("digest" in value) == (not pd.isna(row["digest"]))
        if "digest" in value:
            assert value["digest"] == int(row["digest"])
        if "rfm" in value:
            assert value["rfm"]["r"] == row["r"] and value["rfm"]["group"] == row["group"]
            assert value["rfm"]["monetary"] == f"{int(row['monetary']) / 100:.2f}"
        if "predicted" in value:
            assert value["predicted"]["p_alive"] == row["p_p_alive"]
    assert sum("predicted" in v for v in held) > 100 and any(v == {} for v in held)
