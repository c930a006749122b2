"""Customer intelligence through the running stack, in a stack of its own: a Shopify order
export dropped into the drop-folder, the segmentation job run on demand with `as_of`, then
every customer's RFM, lifecycle and value band (360 view and `?segment=`) and the reports,
each equal to the contract's definitions computed here in plain Python from the generated
shop."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import requests

from tests.e2e.conftest import OPERATOR, RunningStack, start_stack
from tests.e2e.test_imports_e2e import drop_and_wait
from tests.unit.test_segments import expected

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SHOP_ZONE = ZoneInfo("Asia/Shanghai")  # the stack's default shop timezone


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    running = start_stack(tmp_path_factory.mktemp("intelligence") / "crm-local.log")
    try:
        yield running
    finally:
        running.stop()


def api(stack: RunningStack, method: str, path: str, **kwargs):
    answer = requests.request(
        method, f"{stack.api_url}{path}", headers=OPERATOR, timeout=60, **kwargs
    )
    return answer.status_code, answer.json() if answer.content else None


def run_job(stack: RunningStack, job: str, as_of: str) -> dict:
    status, run = api(stack, "POST", f"/jobs/{job}/runs", json={"as_of": as_of})
    assert status == 202, run
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        status, done = api(stack, "GET", f"/jobs/{job}/runs/{run['run_id']}")
        assert status == 200, done
        if done["status"] != "running":
            return done
        time.sleep(0.5)
    raise AssertionError(f"{job} did not finish")


def minor(amount: Decimal) -> int:
    return int(amount * 100)


@pytest.fixture(scope="module")
def scored(own_stack: RunningStack) -> Scored:
    """A year and a half of a shop's orders, imported from its Shopify export, and the
    segmentation job run on demand as of yesterday; with the contract's definitions computed
    here from the generated orders."""
    from crm_local.demo_data import PAID_STATUSES, generate, orders_csv

    as_of = datetime.now(SHOP_ZONE).date() - timedelta(days=1)
    shop = generate(seed=41, customers=80, days=540, today=as_of)
    report = drop_and_wait(own_stack, "incoming/orders/intelligence.csv", orders_csv(shop))
    assert report["status"] == "done" and report["failed"] == 0

    # (the CRM's customer of each order, as the import resolved it)
    rows = []
    for order in shop.orders:
        status, found = api(own_stack, "GET", f"/orders/ord_shopify_{order.order_id}")
        assert status == 200, found
        rows.append(
            {
                "customer_id": found["customer_id"],
                "day": order.created_at.astimezone(SHOP_ZONE).date(),
                "paid": order.financial_status in PAID_STATUSES,
                "cancelled": order.cancelled_at is not None,
                "total": minor(order.total),
                "refunded": minor(order.refunded),
            }
        )
    facts = expected(rows, as_of)
    assert len(facts) >= 30

    run = run_job(own_stack, "segmentation", as_of.isoformat())
    assert run["status"] == "succeeded", run
    assert run["summary"]["profiles_written"] >= len(facts)
    return Scored(as_of, rows, facts)


@dataclass(frozen=True)
class Scored:
    as_of: date
    rows: list[dict]
    facts: dict[str, dict]


def walk(stack: RunningStack, path: str, params: dict | None = None) -> list[str]:
    """Every customer id of a paged list, 7 a page."""
    got, cursor = [], None
    while True:
        status, page = api(
            stack, "GET", path, params={**(params or {}), "limit": 7, "cursor": cursor}
        )
        assert status == 200, page
        got += [c["customer_id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            return got


def test_import_run_and_read_segments_and_reports_against_the_definitions(
    own_stack: RunningStack, scored: Scored
) -> None:
    as_of, rows, facts = scored.as_of, scored.rows, scored.facts

    # Then every scored customer's 360 view holds the definitions' values
    for customer_id, f in facts.items():
        status, view = api(own_stack, "GET", f"/customers/{customer_id}")
        assert status == 200
        rfm = view["rfm"]
        assert (rfm["r"], rfm["f"], rfm["m"], rfm["group"]) == (
            f["r"],
            f["f"],
            f["m"],
            f["group"],
        ), customer_id
        assert rfm["recency_days"] == f["recency_days"] and rfm["frequency"] == f["frequency"]
        assert minor(Decimal(rfm["monetary"]["amount"])) == f["monetary"]
        assert f["lifecycle"] in view["segments"] and f"rfm_{f['group']}" in view["segments"]
        if f["value_band"]:
            assert f["value_band"] in view["segments"]

    # And `?segment=` lists exactly the members of each built-in segment
    for name, key in (("loyal", "lifecycle"), ("returning", "lifecycle"), ("high_value", None)):
        wanted = {c for c, f in facts.items() if (f[key] if key else f["value_band"]) == name}
        assert set(walk(own_stack, "/customers", {"segment": name})) == wanted, name

    # And the sales report of the last 90 days equals the counted orders' own sums
    start = as_of - timedelta(days=89)
    counted = [
        r
        for r in rows
        if r["paid"]
        and not r["cancelled"]
        and r["total"] > r["refunded"]
        and start <= r["day"] <= as_of
    ]
    first_day: dict[str, tuple] = {}
    for r in rows:
        if r["paid"] and not r["cancelled"] and r["total"] > r["refunded"]:
            first_day[r["customer_id"]] = min(
                first_day.get(r["customer_id"], (r["day"],)), (r["day"],)
            )
    status, sales = api(
        own_stack,
        "GET",
        "/reports/sales",
        params={"from": start.isoformat(), "to": as_of.isoformat(), "granularity": "month"},
    )
    assert status == 200, sales
    assert sales["totals"]["orders"] == len(counted)
    revenue = sum(r["total"] - r["refunded"] for r in counted)
    assert minor(Decimal(sales["totals"]["revenue"])) == revenue
    assert sum(p["orders"] for p in sales["periods"]) == len(counted)

    # And the customers report's repeat buyers are those with two counted orders or more
    per_customer: dict[str, int] = defaultdict(int)
    for r in rows:
        if r["paid"] and not r["cancelled"] and r["total"] > r["refunded"] and r["day"] <= as_of:
            per_customer[r["customer_id"]] += 1
    status, customers = api(
        own_stack, "GET", "/reports/customers", params={"as_of": as_of.isoformat()}
    )
    assert status == 200, customers
    assert customers["customers_with_orders"] == len(per_customer)
    assert customers["repeat_customers"] == sum(1 for n in per_customer.values() if n >= 2)

    # And the same report as CSV, and the segments report with this run's sizes
    csv_answer = requests.get(
        f"{own_stack.api_url}/reports/sales",
        params={"from": start.isoformat(), "to": as_of.isoformat(), "format": "csv"},
        headers=OPERATOR,
        timeout=60,
    )
    assert csv_answer.status_code == 200
    assert csv_answer.headers["Content-Type"].startswith("text/csv")
    status, segments = api(own_stack, "GET", "/reports/segments")
    assert status == 200
    sizes = {s["name"]: s["size"] for s in segments["history"][-1]["segments"]}
    assert sizes["loyal"] == sum(1 for f in facts.values() if f["lifecycle"] == "loyal")

    # And a re-run on the same data writes no profile
    again = run_job(own_stack, "segmentation", as_of.isoformat())
    assert again["summary"]["profiles_written"] == 0


def test_two_hundred_clients_at_once_read_what_one_reads_alone(
    own_stack: RunningStack, scored: Scored
) -> None:
    # Given what one client reads alone: segment pages, member lists, 360 views, a report
    names = ("loyal", "returning", "high_value")
    pages = {name: walk(own_stack, "/customers", {"segment": name}) for name in names}
    members = {name: walk(own_stack, f"/segments/{name}/members") for name in names}
    ids = sorted(scored.facts)[:40]
    views = {c: api(own_stack, "GET", f"/customers/{c}")[1] for c in ids}
    report = api(own_stack, "GET", "/reports/customers", params={"as_of": str(scored.as_of)})

    # When 200 clients ask at once, each on its own connection, while three runs of the same
    # day are requested (they take turns on the snapshot, and find nothing to write)
    def client(n: int) -> object:
        kind = n % 10
        if kind < 3:
            return ("pages", names[n % 3], walk(own_stack, "/customers", {"segment": names[n % 3]}))
        if kind < 5:
            name = names[n % 3]
            return ("members", name, walk(own_stack, f"/segments/{name}/members"))
        if kind < 9:
            customer_id = ids[n % len(ids)]
            return ("view", customer_id, api(own_stack, "GET", f"/customers/{customer_id}")[1])
        if n < 30:  # three runs
            return ("run", n, run_job(own_stack, "segmentation", str(scored.as_of)))
        params = {"as_of": str(scored.as_of)}
        return ("report", n, api(own_stack, "GET", "/reports/customers", params=params))

    with ThreadPoolExecutor(200) as pool:
        answers = list(pool.map(client, range(200)))

    # Then every client read exactly what one reads alone, and every run succeeded
    runs = [a[2] for a in answers if a[0] == "run"]
    assert len(runs) == 3
    assert all(r["status"] == "succeeded" for r in runs), runs
    assert sum(r["summary"]["profiles_written"] for r in runs) == 0
    for kind, key, got in answers:
        if kind == "pages":
            assert got == pages[key], key
        elif kind == "members":
            assert got == members[key], key
        elif kind == "view":
            assert got == views[key], key
        elif kind == "report":
            assert got == report, key


def test_an_erased_customer_leaves_every_snapshot_file(own_stack: RunningStack) -> None:
    import io

    import pyarrow.parquet as pq

    status, created = api(
        own_stack, "POST", "/customers", json={"email": "erase.me@shop.test", "first_name": "Era"}
    )
    assert status in (200, 201)
    run = run_job(
        own_stack, "segmentation", (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    )
    assert run["status"] == "succeeded"
    s3 = own_stack.client("s3")

    def customer_files() -> list[bytes]:
        listed = s3.list_objects_v2(Bucket="crm-local-data", Prefix="analytics/snapshot/")
        return [
            s3.get_object(Bucket="crm-local-data", Key=o["Key"])["Body"].read()
            for o in listed.get("Contents", [])
            if "/customers/" in o["Key"]
        ]

    assert any(
        "erase.me@shop.test" in pq.read_table(io.BytesIO(b)).column("email").to_pylist()
        for b in customer_files()
    )
    status, _ = api(own_stack, "DELETE", f"/customers/{created['customer_id']}")
    assert status == 200
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        emails = [
            e
            for b in customer_files()
            for e in pq.read_table(io.BytesIO(b)).column("email").to_pylist()
        ]
        if "erase.me@shop.test" not in emails:
            break
        time.sleep(0.5)
    else:
        raise AssertionError("the erased email is still in a snapshot file")
