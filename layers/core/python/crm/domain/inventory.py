"""Stock, warehouses, where an order goes, and which warehouse ships it. Pure: no AWS here.

Allocation rule (docs/decisions.md, "Allocation and the split rule"):

1. Lines of the same SKU are merged; every quantity is a positive integer.
2. A warehouse can serve a line when its available stock (on hand minus reserved) covers the
   line's full quantity. Safety stock is a threshold for alerts, not a reserve: an order may
   take the last unit.
3. One warehouse: the nearest (great-circle distance to the destination) that can serve every
   line. Ties go to the smaller warehouse id, so the answer never depends on read order.
4. Otherwise the order is split. A line is served whole by one warehouse whenever any
   warehouse holds its full quantity; only a line that no warehouse holds in full is divided,
   nearest warehouse first. Among the sets of warehouses that can serve the order under that
   rule, the one with the fewest warehouses wins (fewest parcels), then the smallest total
   distance, then the smaller ids. Each whole line goes to the nearest warehouse of the set
   that holds it. With many stocked warehouses (more combinations than `MAX_COMBINATIONS`) a
   greedy pass replaces the search: repeatedly take the warehouse that serves the most
   remaining whole lines, the nearer on a tie.
5. When the warehouses together hold less than a line needs, `OutOfStock` names every short
   SKU with what was asked and what is available.

Only configured warehouses are considered: stock recorded under an unknown warehouse id has
no location, so it is never allocated.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

from crm.domain.errors import AddressNotRoutable, OutOfStock, ValidationFailed

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
EARTH_RADIUS_KM = 6371.0088  # the mean radius (IUGG)
MAX_COMBINATIONS = 5000  # sets of warehouses tried exactly before the greedy pass takes over
MAX_QUANTITY = 10**9
MAX_SKU = 128
# The store keeps each order's reservations under `order#<order id>`, beside the SKUs' stock:
# no SKU may look like that.
ORDER_PREFIX = "order#"
# Countries whose addresses the region table can place (Shopify treats HK, MO, TW as countries).
REGION_COUNTRIES = frozenset({"CN", "HK", "MO", "TW"})


# -- configuration --------------------------------------------------------------------------


@dataclass(frozen=True)
class Warehouse:
    warehouse_id: str
    name: str
    latitude: float
    longitude: float
    regions: tuple[str, ...] = ()  # province codes it normally serves (informational)

    @property
    def location(self) -> tuple[float, float]:
        return (self.latitude, self.longitude)

    def view(self) -> dict[str, Any]:
        return {
            "warehouse_id": self.warehouse_id,
            "name": self.name,
            "latitude": self.latitude,
            "longitude": self.longitude,
            "regions": list(self.regions),
        }


def _coordinate(value: Any, limit: float) -> float | None:
    """A latitude (`limit` 90) or longitude (180) from a number or a decimal string."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number) or abs(number) > limit:
        return None
    return number


def load_warehouses(raw_json: str | bytes | Sequence[Any]) -> tuple[Warehouse, ...]:
    """Warehouses from their JSON configuration: a list of `{"warehouse_id" (or "id"), "name",
    "latitude", "longitude", "regions": [province codes]}`. Raises ValueError listing every
    problem, so a bad `CRM_WAREHOUSES` fails the cold start, not an order."""
    data = json.loads(raw_json) if isinstance(raw_json, str | bytes) else raw_json
    if not isinstance(data, list) or not data:
        raise ValueError("warehouses: a non-empty JSON list is required")
    problems: list[str] = []
    found: list[Warehouse] = []
    seen: set[str] = set()
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            problems.append(f"warehouses[{index}]: not an object")
            continue
        unknown = set(item) - {"warehouse_id", "id", "name", "latitude", "longitude", "regions"}
        if unknown:
            problems.append(f"warehouses[{index}]: unknown fields {sorted(unknown)}")
        warehouse_id = item.get("warehouse_id", item.get("id"))
        latitude = _coordinate(item.get("latitude"), 90)
        longitude = _coordinate(item.get("longitude"), 180)
        regions = item.get("regions", [])
        if not isinstance(warehouse_id, str) or not warehouse_id.strip():
            problems.append(f"warehouses[{index}]: warehouse_id is required")
            continue
        warehouse_id = warehouse_id.strip()
        if "#" in warehouse_id or len(warehouse_id) > 64:
            # `#` separates the SKU from the warehouse in a reservation's key.
            problems.append(f"warehouses[{index}]: id {warehouse_id!r} is not usable")
        if warehouse_id in seen:
            problems.append(f"warehouses[{index}]: duplicate id {warehouse_id!r}")
        if latitude is None or longitude is None:
            problems.append(f"warehouses[{index}]: latitude and longitude are required")
        if not isinstance(regions, list) or not all(isinstance(r, str) for r in regions):
            problems.append(f"warehouses[{index}]: regions must be a list of province codes")
            regions = []
        seen.add(warehouse_id)
        found.append(
            Warehouse(
                warehouse_id=warehouse_id,
                name=str(item.get("name") or warehouse_id),
                latitude=latitude or 0.0,
                longitude=longitude or 0.0,
                regions=tuple(r.strip().upper() for r in regions),
            )
        )
    if problems:
        raise ValueError("invalid warehouses: " + "; ".join(problems))
    return tuple(found)


def default_warehouses_json() -> str:
    """The warehouses shipped with the package (`crm/data/warehouses.json`)."""
    return (DATA_DIR / "warehouses.json").read_text(encoding="utf-8")


# -- regions and destinations ---------------------------------------------------------------


@dataclass(frozen=True)
class Region:
    code: str  # Shopify's province_code; the country code for HK, MO, TW
    country_code: str
    name: str
    name_zh: str
    latitude: float
    longitude: float
    postcode_prefixes: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()

    @property
    def location(self) -> tuple[float, float]:
        return (self.latitude, self.longitude)


_EN_SUFFIXES = (
    "specialadministrativeregion",
    "autonomousregion",
    "municipality",
    "province",
    "sheng",
    "shi",
    "sar",
)
_ZH_SUFFIXES = (
    "壮族自治区",
    "回族自治区",
    "维吾尔自治区",
    "特别行政区",
    "自治区",
    "省",
    "市",
)


def _name_key(text: str) -> str:
    """`Guangxi Zhuang Autonomous Region` -> `guangxizhuang`, `浙江省` -> `浙江`."""
    key = "".join(ch for ch in text.casefold() if ch.isalnum())
    for suffix in (*_EN_SUFFIXES, *_ZH_SUFFIXES):
        if key.endswith(suffix) and len(key) > len(suffix):
            return key[: -len(suffix)]
    return key


@dataclass(frozen=True)
class RegionTable:
    regions: tuple[Region, ...]
    by_code: Mapping[str, Region] = field(default_factory=dict)
    by_name: Mapping[str, Region] = field(default_factory=dict)
    by_postcode: Mapping[str, Region] = field(default_factory=dict)

    @classmethod
    def build(cls, regions: Iterable[Region]) -> RegionTable:
        regions = tuple(regions)
        by_code: dict[str, Region] = {}
        by_name: dict[str, Region] = {}
        by_postcode: dict[str, Region] = {}
        for region in regions:
            by_code[region.code.upper()] = region
            for alias in (region.name, region.name_zh, *region.aliases):
                if len(alias) == 2 and alias.isascii() and alias.isupper():
                    by_code.setdefault(alias, region)  # an alternate code (Xizang: XZ)
                by_name.setdefault(_name_key(alias), region)
            for prefix in region.postcode_prefixes:
                by_postcode[prefix] = region
        return cls(regions, by_code, by_name, by_postcode)

    def find(self, code: str | None = None, name: str | None = None) -> Region | None:
        if code:
            code = code.strip().upper().removeprefix("CN-")
            if code in self.by_code:
                return self.by_code[code]
        if name:
            return self.by_name.get(_name_key(name))
        return None

    def for_postcode(self, postcode: str | None) -> Region | None:
        digits = "".join(ch for ch in (postcode or "") if not ch.isspace())
        if len(digits) != 6 or not digits.isdigit():
            return None
        return self.by_postcode.get(digits[:2])


def load_regions(raw_json: str | bytes | Mapping[str, Any]) -> RegionTable:
    data = json.loads(raw_json) if isinstance(raw_json, str | bytes) else raw_json
    return RegionTable.build(
        Region(
            code=item["code"],
            country_code=item.get("country_code", "CN"),
            name=item["name"],
            name_zh=item["name_zh"],
            latitude=float(item["latitude"]),
            longitude=float(item["longitude"]),
            postcode_prefixes=tuple(item.get("postcode_prefixes", ())),
            aliases=tuple(item.get("aliases", ())),
        )
        for item in data["regions"]
    )


@lru_cache(maxsize=1)
def china_regions() -> RegionTable:
    """The province table shipped with the package (`crm/data/cn_regions.json`)."""
    return load_regions((DATA_DIR / "cn_regions.json").read_text(encoding="utf-8"))


def destination(address: Mapping[str, Any] | None, regions: RegionTable) -> tuple[float, float]:
    """Where the order goes, as (latitude, longitude): the address's own coordinates when they
    are valid (0,0 counts as missing); else the centre of its province, found by
    `province_code`, then by `province` in English or Chinese (for HK, MO and TW by the
    country code); else by the first two digits of a six-digit mainland postcode."""
    if not address:
        raise AddressNotRoutable(
            "the order has no shipping address",
            details=[{"field": "shipping_address", "issue": "missing"}],
        )
    latitude = _coordinate(address.get("latitude"), 90)
    longitude = _coordinate(address.get("longitude"), 180)
    if latitude is not None and longitude is not None and (latitude, longitude) != (0.0, 0.0):
        return (latitude, longitude)
    country = str(address.get("country_code") or "CN").strip().upper()
    if country in REGION_COUNTRIES:
        region = None
        if country != "CN":
            region = regions.find(code=country)
        if region is None:
            region = regions.find(
                code=_text(address.get("province_code")), name=_text(address.get("province"))
            )
        if region is None and country == "CN":
            region = regions.for_postcode(_text(address.get("zip")))
        if region is not None:
            return region.location
    raise AddressNotRoutable(
        "the shipping address has no coordinates, no known province and no known postcode",
        details=[{"field": "shipping_address", "issue": "not_routable", "country_code": country}],
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance between two (latitude, longitude) points (haversine)."""
    lat1, lon1, lat2, lon2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


# -- stock and allocation -------------------------------------------------------------------


@dataclass(frozen=True)
class StockLevel:
    sku: str
    warehouse_id: str
    on_hand: int
    reserved: int
    safety_stock: int = 0
    alerted: bool = False

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved

    @property
    def below_safety(self) -> bool:
        return self.available < self.safety_stock

    def view(self) -> dict[str, Any]:
        return {
            "warehouse_id": self.warehouse_id,
            "on_hand": self.on_hand,
            "reserved": self.reserved,
            "available": self.available,
            "safety_stock": self.safety_stock,
        }


# -- stock levels as an operator or a file sets them ----------------------------------------

STOCK_FIELDS = {"warehouse_id", "warehouse", "on_hand", "safety_stock"}


class StockSetting(NamedTuple):
    warehouse_id: str
    on_hand: int
    safety_stock: int | None  # None keeps the current one


def parse_sku(sku: str) -> str:
    sku = (sku or "").strip()
    if (
        not sku
        or len(sku) > MAX_SKU
        or sku.startswith(ORDER_PREFIX)
        or any(ord(ch) < 32 for ch in sku)
    ):
        raise ValidationFailed(
            f"the SKU must be 1 to {MAX_SKU} printable characters, not starting with "
            f"'{ORDER_PREFIX}'",
            details=[{"field": "sku", "issue": "invalid_value"}],
        )
    return sku


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_QUANTITY


def parse_stock_levels(body: dict[str, Any], known: Collection[str]) -> list[StockSetting]:
    """`{"warehouses": [{"warehouse_id", "on_hand", "safety_stock"?}, ...]}`, or the contract's
    single form `{"warehouse", "on_hand", "safety_stock"?}`; `warehouse` and `warehouse_id` are
    the same field, one of the `known` (configured) ids. Every problem is reported at once."""
    problems: list[dict[str, Any]] = []
    if "warehouses" in body:
        problems += [
            {"field": k, "issue": "unknown_field"} for k in sorted(set(body) - {"warehouses"})
        ]
        entries = body["warehouses"]
        if not isinstance(entries, list) or not entries:
            raise ValidationFailed(
                "warehouses must be a non-empty list",
                details=[{"field": "warehouses", "issue": "wrong_type"}, *problems],
            )
        prefixed = [(f"warehouses[{i}].", e) for i, e in enumerate(entries)]
    else:
        prefixed = [("", body)]
    parsed: list[StockSetting] = []
    seen: set[str] = set()
    for prefix, entry in prefixed:
        if not isinstance(entry, dict):
            problems.append({"field": prefix.rstrip("."), "issue": "wrong_type"})
            continue
        problems += [
            {"field": prefix + k, "issue": "unknown_field"}
            for k in sorted(set(entry) - STOCK_FIELDS)
        ]
        warehouse_id = entry.get("warehouse_id", entry.get("warehouse"))
        on_hand, safety = entry.get("on_hand"), entry.get("safety_stock")
        ok = True
        if not isinstance(warehouse_id, str) or not warehouse_id.strip():
            problems.append({"field": prefix + "warehouse_id", "issue": "missing"})
            ok = False
        elif warehouse_id not in known:
            problems.append(
                {
                    "field": prefix + "warehouse_id",
                    "issue": "unknown_warehouse",
                    "known": sorted(known),
                }
            )
            ok = False
        elif warehouse_id in seen:
            problems.append({"field": prefix + "warehouse_id", "issue": "duplicate"})
            ok = False
        if "on_hand" not in entry:
            problems.append({"field": prefix + "on_hand", "issue": "missing"})
            ok = False
        elif not _count(on_hand):
            problems.append({"field": prefix + "on_hand", "issue": "invalid_value"})
            ok = False
        if safety is not None and not _count(safety):
            problems.append({"field": prefix + "safety_stock", "issue": "invalid_value"})
            ok = False
        if ok:
            seen.add(str(warehouse_id))
            parsed.append(
                StockSetting(
                    str(warehouse_id), int(on_hand or 0), None if safety is None else int(safety)
                )
            )
    if problems:
        raise ValidationFailed(
            "the stock levels are invalid (on_hand and safety_stock are integers from 0, "
            "warehouse ids are configured ones)",
            details=problems,
        )
    return parsed


@dataclass(frozen=True)
class AllocationPart:
    warehouse_id: str
    lines: list[tuple[str, int]]
    distance_km: float

    def view(self) -> dict[str, Any]:
        return {
            "warehouse_id": self.warehouse_id,
            "lines": [{"sku": sku, "quantity": qty} for sku, qty in self.lines],
            "distance_km": round(self.distance_km, 1),
        }


@dataclass(frozen=True)
class Allocation:
    parts: list[AllocationPart]
    split: bool

    def view(self) -> dict[str, Any]:
        return {"split": self.split, "parts": [part.view() for part in self.parts]}


def merge_lines(lines: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
    """Lines with each SKU once (quantities added), in order of first appearance."""
    merged: dict[str, int] = {}
    problems: list[dict[str, Any]] = []
    for index, line in enumerate(lines):
        sku, quantity = (line[0], line[1]) if len(line) == 2 else (None, None)
        if not isinstance(sku, str) or not sku.strip():
            problems.append({"field": f"lines[{index}].sku", "issue": "missing"})
            continue
        if isinstance(quantity, bool) or not isinstance(quantity, int):
            problems.append({"field": f"lines[{index}].quantity", "issue": "wrong_type"})
            continue
        if not 0 < quantity <= MAX_QUANTITY:
            problems.append({"field": f"lines[{index}].quantity", "issue": "invalid_value"})
            continue
        merged[sku] = merged.get(sku, 0) + quantity
    if not merged and not problems:
        problems.append({"field": "lines", "issue": "empty"})
    if problems:
        raise ValidationFailed("the order's lines cannot be allocated", details=problems)
    return list(merged.items())


def allocate(
    lines: Sequence[tuple[str, int]],
    stock: Iterable[StockLevel],
    warehouses: Sequence[Warehouse],
    dest: tuple[float, float],
) -> Allocation:
    """Which warehouse ships what (the rule is in the module's docstring)."""
    wanted = merge_lines(lines)
    known = {w.warehouse_id: w for w in warehouses}
    available: dict[tuple[str, str], int] = {}
    for level in stock:
        if level.warehouse_id in known:
            key = (level.warehouse_id, level.sku)
            available[key] = available.get(key, 0) + max(0, level.available)
    distance = {w.warehouse_id: distance_km(w.location, dest) for w in warehouses}
    # Nearest first; the id breaks ties so the answer does not depend on the configuration order.
    order = sorted(known, key=lambda w: (distance[w], w))

    def has(warehouse_id: str, sku: str, quantity: int) -> bool:
        return available.get((warehouse_id, sku), 0) >= quantity

    totals = {sku: sum(available.get((w, sku), 0) for w in order) for sku, _ in wanted}
    short = [(sku, qty) for sku, qty in wanted if totals[sku] < qty]
    if short:
        raise OutOfStock(
            "not enough stock for " + ", ".join(sku for sku, _ in short),
            details=[
                {"sku": sku, "requested": qty, "available": totals[sku]} for sku, qty in short
            ],
        )

    for warehouse_id in order:
        if all(has(warehouse_id, sku, qty) for sku, qty in wanted):
            return Allocation(
                [AllocationPart(warehouse_id, list(wanted), distance[warehouse_id])], split=False
            )

    whole = [(sku, qty) for sku, qty in wanted if any(has(w, sku, qty) for w in order)]
    divided = [(sku, qty) for sku, qty in wanted if (sku, qty) not in whole]
    # Only warehouses holding something asked for can be part of a useful set.
    relevant = [w for w in order if any(available.get((w, sku), 0) > 0 for sku, _ in wanted)]

    def plan(chosen: Sequence[str]) -> dict[str, list[tuple[str, int]]] | None:
        """Lines per warehouse of `chosen` (nearest first), or None if it cannot serve."""
        parts: dict[str, list[tuple[str, int]]] = {w: [] for w in chosen}
        for sku, qty in whole:
            holder = next((w for w in chosen if has(w, sku, qty)), None)
            if holder is None:
                return None
            parts[holder].append((sku, qty))
        for sku, qty in divided:
            left = qty
            for w in chosen:
                take = min(left, available.get((w, sku), 0))
                if take:
                    parts[w].append((sku, take))
                    left -= take
                if not left:
                    break
            if left:
                return None
        return {w: ls for w, ls in parts.items() if ls}

    best: dict[str, list[tuple[str, int]]] | None = None
    for size in range(2, len(relevant) + 1):
        if math.comb(len(relevant), size) > MAX_COMBINATIONS:
            best = _greedy(relevant, whole, divided, has, available)
            break
        candidates = []
        for chosen in itertools.combinations(relevant, size):  # keeps the nearest-first order
            parts = plan(chosen)
            if parts is not None:
                total = sum(distance[w] for w in parts)
                candidates.append((len(parts), total, tuple(parts), parts))
        if candidates:
            best = min(candidates, key=lambda c: c[:3])[3]
            break
    if best is None:  # cannot happen once the totals suffice; kept as a guard
        raise OutOfStock("the stock cannot be combined to serve the order")
    ordered = sorted(best, key=lambda w: (distance[w], w))
    # Lines in the order's own order within each part.
    rank = {sku: i for i, (sku, _) in enumerate(wanted)}
    return Allocation(
        [
            AllocationPart(w, sorted(best[w], key=lambda line: rank[line[0]]), distance[w])
            for w in ordered
        ],
        split=len(ordered) > 1,
    )


def _greedy(
    order: Sequence[str],
    whole: Sequence[tuple[str, int]],
    divided: Sequence[tuple[str, int]],
    has: Any,
    available: Mapping[tuple[str, str], int],
) -> dict[str, list[tuple[str, int]]]:
    """Repeatedly the warehouse serving the most remaining whole lines (nearer on a tie);
    then each divided line nearest first, from the chosen warehouses before the others."""
    parts: dict[str, list[tuple[str, int]]] = {}
    remaining = list(whole)
    while remaining:
        counts = [(sum(has(w, s, q) for s, q in remaining), -i, w) for i, w in enumerate(order)]
        served, _, warehouse_id = max(counts)
        if not served:
            break
        mine = [(s, q) for s, q in remaining if has(warehouse_id, s, q)]
        parts.setdefault(warehouse_id, []).extend(mine)
        remaining = [line for line in remaining if line not in mine]
    for sku, qty in divided:
        left = qty
        for w in sorted(order, key=lambda w: w not in parts):  # stable: nearest first in each
            take = min(left, available.get((w, sku), 0))
            if take:
                parts.setdefault(w, []).append((sku, take))
                left -= take
            if not left:
                break
    return parts
