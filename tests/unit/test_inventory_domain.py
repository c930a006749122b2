"""Warehouses, destinations, distances and the allocation rule (nearest with everything, the
split rule, out of stock), with no AWS."""

import json

import pytest

from crm.domain import inventory
from crm.domain.errors import AddressNotRoutable, OutOfStock, ValidationFailed
from crm.domain.inventory import (
    StockLevel,
    allocate,
    china_regions,
    default_warehouses_json,
    destination,
    distance_km,
    load_warehouses,
    merge_lines,
)

WAREHOUSES = load_warehouses(default_warehouses_json())
SHANGHAI = (31.23, 121.47)
BEIJING = (39.90, 116.40)
GUANGZHOU = (23.13, 113.26)
HANGZHOU = (30.27, 120.15)


def stock(*rows):
    return [StockLevel(sku, wh, on_hand, reserved) for sku, wh, on_hand, reserved in rows]


def parts(allocation):
    return [(p.warehouse_id, p.lines) for p in allocation.parts]


# -- configuration ------------------------------------------------------------------------------


def test_the_packaged_warehouses_cover_every_region_once():
    assert [w.warehouse_id for w in WAREHOUSES] == ["wh-shanghai", "wh-guangzhou", "wh-beijing"]
    served = [code for w in WAREHOUSES for code in w.regions]
    assert sorted(served) == sorted(r.code for r in china_regions().regions)
    assert len(china_regions().regions) == 34  # 31 mainland + HK, MO, TW


def test_the_region_table_has_unique_codes_and_postcode_prefixes():
    regions = china_regions().regions
    assert len({r.code for r in regions}) == len(regions)
    prefixes = [p for r in regions for p in r.postcode_prefixes]
    assert len(prefixes) == len(set(prefixes))
    assert all(len(p) == 2 and p.isdigit() for p in prefixes)


def test_warehouses_from_json_are_validated():
    custom = load_warehouses(
        json.dumps([{"id": "wh-x", "name": "X", "latitude": "30.5", "longitude": 114.3}])
    )
    assert custom[0].warehouse_id == "wh-x" and custom[0].location == (30.5, 114.3)
    with pytest.raises(ValueError, match="duplicate"):
        load_warehouses(
            [
                {"warehouse_id": "a", "latitude": 1, "longitude": 1},
                {"warehouse_id": "a", "latitude": 2, "longitude": 2},
            ]
        )
    with pytest.raises(ValueError, match="latitude"):
        load_warehouses([{"warehouse_id": "a", "latitude": 91, "longitude": 1}])
    with pytest.raises(ValueError, match="not usable"):
        load_warehouses([{"warehouse_id": "a#b", "latitude": 1, "longitude": 1}])
    with pytest.raises(ValueError, match="non-empty"):
        load_warehouses("[]")


# -- distance and destination -------------------------------------------------------------------


def test_distance_is_great_circle_kilometres():
    assert distance_km(SHANGHAI, SHANGHAI) == 0
    assert distance_km(SHANGHAI, BEIJING) == pytest.approx(1067, abs=5)
    assert distance_km(SHANGHAI, GUANGZHOU) == pytest.approx(1213, abs=5)
    assert distance_km(BEIJING, SHANGHAI) == distance_km(SHANGHAI, BEIJING)
    # A quarter of the equator.
    assert distance_km((0, 0), (0, 90)) == pytest.approx(10_007.5, abs=1)


def test_destination_uses_the_address_coordinates_first():
    address = {"province_code": "GD", "latitude": "30.27", "longitude": "120.15"}
    assert destination(address, china_regions()) == HANGZHOU


@pytest.mark.parametrize(
    "address",
    [
        {"latitude": "", "longitude": None, "province_code": "ZJ"},
        {"latitude": "0", "longitude": "0", "province_code": "ZJ"},
        {"latitude": "95", "longitude": "120", "province_code": "ZJ"},
        {"latitude": "abc", "longitude": "120", "province_code": "ZJ"},
        {"province_code": "zj"},
        {"province_code": "CN-ZJ"},
        {"province": "Zhejiang"},
        {"province": "浙江"},
        {"province": "浙江省"},
        {"province": "Zhejiang Province"},
        {"zip": "310000"},
        {"country_code": "CN", "province": "Nowhere", "zip": "325000"},
    ],
)
def test_destination_falls_back_to_the_province_centre(address):
    zhejiang = next(r for r in china_regions().regions if r.code == "ZJ")
    assert destination(address, china_regions()) == zhejiang.location


@pytest.mark.parametrize(
    ("address", "code"),
    [
        ({"province": "广西壮族自治区"}, "GX"),
        ({"province": "Guangxi Zhuang Autonomous Region"}, "GX"),
        ({"province": "内蒙古自治区"}, "NM"),
        ({"province_code": "YZ"}, "YZ"),
        ({"province_code": "XZ"}, "YZ"),  # ISO's code for Xizang; Shopify's is YZ
        ({"province": "Shaanxi"}, "SN"),
        ({"province": "Shanxi"}, "SX"),
        ({"province": "上海市"}, "SH"),
        ({"zip": "100101"}, "BJ"),
        ({"zip": "518 000"}, "GD"),
        ({"zip": "200001"}, "SH"),
        ({"country_code": "HK", "city": "Kowloon"}, "HK"),
        ({"country_code": "MO"}, "MO"),
        ({"country_code": "TW", "province": "Taipei"}, "TW"),
    ],
)
def test_destination_by_chinese_and_english_names_codes_and_postcodes(address, code):
    region = next(r for r in china_regions().regions if r.code == code)
    assert destination(address, china_regions()) == region.location


@pytest.mark.parametrize(
    "address",
    [
        None,
        {},
        {"country_code": "CN", "city": "somewhere"},
        {"province": "Atlantis", "zip": "999999"},
        {"zip": "1234"},
        {"country_code": "US", "province_code": "HI", "zip": "96813"},  # Hawaii, not Hainan
    ],
)
def test_an_address_that_cannot_be_placed_is_not_routable(address):
    with pytest.raises(AddressNotRoutable) as caught:
        destination(address, china_regions())
    assert caught.value.code == "address_not_routable"
    assert type(caught.value).__name__ == "AddressNotRoutable"  # what Step Functions matches


def test_a_foreign_address_with_coordinates_is_routable():
    assert destination(
        {"country_code": "US", "latitude": "21.3", "longitude": "-157.8"}, china_regions()
    ) == (21.3, -157.8)


# -- allocation ---------------------------------------------------------------------------------


def test_the_nearest_warehouse_with_every_line_wins():
    levels = stock(
        ("A", "wh-shanghai", 5, 0),
        ("B", "wh-shanghai", 5, 0),
        ("A", "wh-beijing", 5, 0),
        ("B", "wh-beijing", 5, 0),
    )
    assert parts(allocate([("A", 1), ("B", 2)], levels, WAREHOUSES, HANGZHOU)) == [
        ("wh-shanghai", [("A", 1), ("B", 2)])
    ]
    allocation = allocate([("A", 1), ("B", 2)], levels, WAREHOUSES, BEIJING)
    assert parts(allocation) == [("wh-beijing", [("A", 1), ("B", 2)])]
    assert allocation.split is False and allocation.parts[0].distance_km == 0


def test_a_farther_warehouse_with_everything_beats_splitting_from_the_nearest():
    levels = stock(
        ("A", "wh-shanghai", 5, 0),
        ("A", "wh-beijing", 5, 0),
        ("B", "wh-beijing", 5, 0),
    )
    allocation = allocate([("A", 1), ("B", 1)], levels, WAREHOUSES, HANGZHOU)
    assert parts(allocation) == [("wh-beijing", [("A", 1), ("B", 1)])]
    assert allocation.split is False


def test_reserved_units_are_not_available():
    levels = stock(("A", "wh-shanghai", 5, 5), ("A", "wh-guangzhou", 5, 4))
    assert parts(allocate([("A", 1)], levels, WAREHOUSES, SHANGHAI)) == [
        ("wh-guangzhou", [("A", 1)])
    ]


def test_duplicate_lines_are_merged():
    levels = stock(("A", "wh-shanghai", 3, 0), ("A", "wh-beijing", 4, 0))
    allocation = allocate([("A", 2), ("A", 2)], levels, WAREHOUSES, SHANGHAI)
    assert parts(allocation) == [("wh-beijing", [("A", 4)])]
    assert merge_lines([("A", 1), ("B", 2), ("A", 3)]) == [("A", 4), ("B", 2)]


@pytest.mark.parametrize(
    "lines",
    [[], [("A", 0)], [("A", -1)], [("A", 1.5)], [("A", True)], [("", 1)], [(None, 1)], [("A",)]],
)
def test_lines_must_have_a_sku_and_a_positive_integer_quantity(lines):
    with pytest.raises(ValidationFailed):
        allocate(lines, stock(("A", "wh-shanghai", 5, 0)), WAREHOUSES, SHANGHAI)


def test_split_uses_the_fewest_warehouses_then_the_shortest_total_distance():
    # From Shanghai: Beijing is ~1,067 km, Guangzhou ~1,213 km. No warehouse has A, B and C.
    levels = stock(
        ("A", "wh-shanghai", 5, 0),
        ("B", "wh-shanghai", 5, 0),
        ("A", "wh-guangzhou", 5, 0),
        ("C", "wh-guangzhou", 5, 0),
        ("B", "wh-beijing", 5, 0),
        ("C", "wh-beijing", 5, 0),
    )
    allocation = allocate([("A", 2), ("B", 1), ("C", 1)], levels, WAREHOUSES, SHANGHAI)
    assert allocation.split is True
    assert parts(allocation) == [
        ("wh-shanghai", [("A", 2), ("B", 1)]),
        ("wh-beijing", [("C", 1)]),
    ]
    # From Guangzhou the pair with Guangzhou is nearest: A and C there, B from Shanghai
    # (nearer to Guangzhou than Beijing).
    allocation = allocate([("A", 2), ("B", 1), ("C", 1)], levels, WAREHOUSES, GUANGZHOU)
    assert parts(allocation) == [
        ("wh-guangzhou", [("A", 2), ("C", 1)]),
        ("wh-shanghai", [("B", 1)]),
    ]


def test_a_line_is_not_divided_when_one_warehouse_holds_all_of_it():
    # A x10: Beijing holds 10; Shanghai 6 and Guangzhou 4 would add up, but the line stays whole.
    levels = stock(
        ("A", "wh-shanghai", 6, 0),
        ("A", "wh-guangzhou", 4, 0),
        ("A", "wh-beijing", 10, 0),
        ("B", "wh-shanghai", 1, 0),
    )
    allocation = allocate([("A", 10), ("B", 1)], levels, WAREHOUSES, SHANGHAI)
    assert parts(allocation) == [("wh-shanghai", [("B", 1)]), ("wh-beijing", [("A", 10)])]


def test_a_line_no_warehouse_holds_in_full_is_divided_nearest_first():
    levels = stock(
        ("A", "wh-shanghai", 6, 0),
        ("A", "wh-guangzhou", 4, 0),
        ("A", "wh-beijing", 3, 0),
    )
    # Shanghai + Beijing (nearest pair) hold only 9: Shanghai + Guangzhou it is.
    allocation = allocate([("A", 10)], levels, WAREHOUSES, SHANGHAI)
    assert parts(allocation) == [("wh-shanghai", [("A", 6)]), ("wh-guangzhou", [("A", 4)])]
    # 13 needs all three, nearest first.
    allocation = allocate([("A", 13)], levels, WAREHOUSES, BEIJING)
    assert parts(allocation) == [
        ("wh-beijing", [("A", 3)]),
        ("wh-shanghai", [("A", 6)]),
        ("wh-guangzhou", [("A", 4)]),
    ]


def test_out_of_stock_names_every_short_sku():
    levels = stock(("A", "wh-shanghai", 2, 0), ("A", "wh-beijing", 1, 1), ("B", "wh-beijing", 9, 0))
    with pytest.raises(OutOfStock) as caught:
        allocate([("A", 3), ("B", 1), ("C", 1)], levels, WAREHOUSES, SHANGHAI)
    assert caught.value.code == "out_of_stock"
    assert caught.value.details == [
        {"sku": "A", "requested": 3, "available": 2},
        {"sku": "C", "requested": 1, "available": 0},
    ]


def test_stock_in_an_unconfigured_warehouse_is_never_allocated():
    with pytest.raises(OutOfStock):
        allocate([("A", 1)], stock(("A", "wh-gone", 5, 0)), WAREHOUSES, SHANGHAI)


def test_the_greedy_pass_serves_the_order_when_there_are_too_many_combinations(monkeypatch):
    monkeypatch.setattr(inventory, "MAX_COMBINATIONS", 1)
    levels = stock(
        ("A", "wh-shanghai", 5, 0),
        ("B", "wh-shanghai", 5, 0),
        ("C", "wh-beijing", 5, 0),
        ("D", "wh-guangzhou", 2, 0),
        ("D", "wh-beijing", 2, 0),
    )
    allocation = allocate([("A", 1), ("B", 1), ("C", 1), ("D", 3)], levels, WAREHOUSES, SHANGHAI)
    served: dict[str, int] = {}
    for part in allocation.parts:
        for sku, qty in part.lines:
            served[sku] = served.get(sku, 0) + qty
    assert served == {"A": 1, "B": 1, "C": 1, "D": 3}
    assert dict(parts(allocation))["wh-shanghai"] == [("A", 1), ("B", 1)]
    assert allocation.split is True


def test_allocation_view_is_json_ready():
    levels = stock(("A", "wh-shanghai", 5, 0))
    view = allocate([("A", 1)], levels, WAREHOUSES, HANGZHOU).view()
    assert json.loads(json.dumps(view)) == view
    assert view["parts"][0]["lines"] == [{"sku": "A", "quantity": 1}]
    assert view["split"] is False
