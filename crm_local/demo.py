"""`crm demo`: a realistic sample shop loaded into a stack, then a day of it.

A seeded shop from `crm_local.demo_data`: its stock, customers and a year of orders go through
the drop folder (the same code path as `crm import`), today's orders arrive as Shopify webhooks,
the carrier ships and delivers a few of them, and a summary says what the CRM made of it all,
read back through the API. Without a stack answering at the API URL, one is started in this
process (and stopped at the end).
"""

from __future__ import annotations

import csv
import io
import logging
import os
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from crm_local.client import (
    DEFAULT_LOGISTICS_SECRET,
    DEFAULT_SHOPIFY_SECRET,
    Api,
    CliError,
    DropFolder,
    ImportResult,
    report_line,
    run_import,
)

SHOP_DOMAIN = "demo-tea-shop.myshopify.com"
CARRIER = "SF Express"
BEST = 5  # the sample of best customers whose points the summary shows
WAIT = 30.0  # seconds for an order's workflow to reach the next state


@dataclass(frozen=True)
class DemoOptions:
    seed: int
    customers: int
    api_url: str
    aws_url: str | None
    bucket: str
    token: str
    deliveries: int = 3
    timeout: float = 600.0


@dataclass
class LiveResult:
    answers: Counter[str]  # "orders/paid processed", "orders/create 401", ...
    accepted: dict[int, str]  # Shopify order id -> the CRM's order id, for accepted orders
    refused: list[str]


def secrets() -> tuple[str, str]:
    """The Shopify secret and the carrier (logistics) secret, as the local stack reads them."""
    return (
        os.environ.get("CRM_SHOPIFY_SECRET") or DEFAULT_SHOPIFY_SECRET,
        os.environ.get("CRM_LOGISTICS_SECRET") or DEFAULT_LOGISTICS_SECRET,
    )


@contextmanager
def stack_for(
    console: Console, options: DemoOptions, on_start: Callable[[], None]
) -> Iterator[tuple[str, str | None]]:
    """(API URL, AWS URL): the stack answering at the API URL, or a local one started in this
    process on the ports of the URLs (`on_start` is told), stopped when the block ends."""
    if Api(options.api_url, options.token).healthy():
        console.print(f"Using the stack at [bold]{options.api_url}[/]")
        yield options.api_url, options.aws_url
        return
    api = urlsplit(options.api_url)
    aws = urlsplit(options.aws_url or "")
    local = ("127.0.0.1", "localhost")
    if api.hostname not in local or (options.aws_url and aws.hostname not in local):
        raise CliError(f"no stack answers at {options.api_url} (GET /health)")
    if options.aws_url is None:
        raise CliError(f"no stack answers at {options.api_url}, and --cloud starts none")
    from crm_local.endpoint import quiet_request_logs
    from crm_local.stack import LocalStack

    stack = LocalStack(api_port=api.port or 80, aws_port=aws.port or 80)
    # The functions run in this process: their metrics (EMF lines on stdout) and logs do not
    # belong on the demo's screen, only their problems.
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    began = time.monotonic()
    with console.status(f"No stack at {options.api_url}: starting one in this process..."):
        on_start()
        try:
            stack.start()
        except OSError as exc:
            raise CliError(
                f"no stack answers at {options.api_url} and none could be started there: {exc}"
            ) from None
    quiet_request_logs()
    logging.getLogger(os.environ.get("POWERTOOLS_SERVICE_NAME") or "crm").setLevel(logging.ERROR)
    console.print(
        f"No stack answered at {options.api_url}: started one in this process "
        f"(API {stack.api_url}, AWS {stack.aws_url}) in {time.monotonic() - began:.1f} s; "
        "it stops when the demo ends."
    )
    try:
        yield stack.api_url, stack.aws_url
    finally:
        with console.status("Stopping the local stack..."):
            stack.stop()


def run(
    console: Console, options: DemoOptions, on_start: Callable[[], None] = lambda: None
) -> None:
    """The whole demo. `on_start` is called when a stack is started in this process."""
    from crm_local.demo_data import generate, write_files

    began = time.monotonic()
    with stack_for(console, options, on_start) as (api_url, aws_url):
        api = Api(api_url, options.token)
        drop = DropFolder(aws_url, options.bucket)
        shop = generate(seed=options.seed, customers=options.customers)
        console.print(
            f"Demo shop (seed {shop.seed}): {len(shop.customers)} customers and "
            f"{len(shop.bad_customer_rows)} bad rows, {len(shop.orders)} orders over a year, "
            f"{len(shop.stock)} stock levels; today {shop.today}: {len(shop.live_orders)} orders."
        )
        with tempfile.TemporaryDirectory(prefix="crm-demo-") as directory:
            files = write_files(shop, Path(directory))
            reports: dict[str, ImportResult] = {}
            console.rule("Imports through the drop folder")
            for kind in ("inventory", "customers", "orders"):
                result = run_import(
                    console,
                    drop,
                    files[kind],
                    kind,
                    f"demo-{shop.seed}-{options.customers}.csv",
                    options.timeout,
                    label=f"{kind}.csv",
                )
                console.print(f"[bold]{kind}[/]: {report_line(result)}")
                if result.failed:
                    raise CliError(f"the {kind} import failed: {result.report.get('error')}")
                reports[kind] = result
        console.rule(f"Today, {shop.today}: live orders")
        shopify_secret, logistics_secret = secrets()
        live = send_live_events(console, api, shop.live_events, shopify_secret)
        delivered = play_carrier(console, api, shop, live, logistics_secret, options.deliveries)
        console.rule("Summary")
        summarise(console, api, drop, shop, reports, live, delivered)
        console.rule("Customer intelligence")
        intelligence(console, api, shop.today)
        console.print(f"[bold green]Demo done[/] in {time.monotonic() - began:.0f} s.")


def send_live_events(
    console: Console, api: Api, events: Any, secret: str, domain: str = SHOP_DOMAIN
) -> LiveResult:
    """Today's webhooks in the order they would arrive, signed like Shopify."""
    result = LiveResult(Counter(), {}, [])
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("Shopify webhooks", total=len(events))
        for topic, payload in events:
            answer = api.shopify_webhook(topic, payload, secret, domain)
            body = _json(answer)
            if answer.status_code == 200:
                result.answers[f"{topic} {body.get('status', 'ok')}"] += 1
                if body.get("order_id"):
                    result.accepted[int(payload["id"])] = str(body["order_id"])
            else:
                result.answers[f"{topic} {answer.status_code}"] += 1
                result.refused.append(f"{topic} {payload.get('name')}: {answer.text[:200]}")
            progress.advance(task)
    answers = ", ".join(f"{n} {what}" for what, n in sorted(result.answers.items()))
    console.print(f"Webhooks answered: {answers}")
    for refusal in result.refused[:5]:
        console.print(f"  [red]refused[/] {refusal}", markup=True, highlight=False)
    return result


def _json(answer: Any) -> dict[str, Any]:
    try:
        body = answer.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _wait(
    api: Api, order_id: str, done: Callable[[dict[str, Any]], bool], timeout: float = WAIT
) -> dict[str, Any] | None:
    """The order once `done(order)`, or None if it does not get there in time (or it stops
    somewhere else: cancelled, on hold)."""
    deadline = time.monotonic() + timeout
    while True:
        order = api.find(f"/orders/{order_id}") or {}
        if order and done(order):
            return order
        if order.get("status") in ("cancelled", "on_hold", "refunded", "delivered"):
            return None
        if time.monotonic() > deadline:
            return None
        time.sleep(0.3)


def _in_state(state: str) -> Callable[[dict[str, Any]], bool]:
    """Whether an order's workflow waits in `state` (`awaiting_shipped`, ...)."""
    return lambda order: (order.get("workflow") or {}).get("state") == state


def play_carrier(
    console: Console, api: Api, shop: Any, live: LiveResult, secret: str, wanted: int
) -> list[dict[str, Any]]:
    """The carrier's callbacks for a few of today's paid orders: shipped, then delivered (their
    points become active, their buyers hear of it). The delivered orders."""
    if wanted <= 0:
        return []
    paid = [o for o in shop.live_orders if o.paid_at is not None and o.order_id in live.accepted]
    chosen: list[tuple[Any, str]] = []
    with console.status("Waiting for paid orders to be allocated..."):
        for order in paid:
            if len(chosen) >= wanted:
                break
            order_id = live.accepted[order.order_id]
            if _wait(api, order_id, _in_state("awaiting_shipped")):
                chosen.append((order, order_id))
    if not chosen:
        console.print("No paid order is waiting for the carrier (shipped in an earlier run?).")
        return []
    delivered = []
    for event, state in (("shipped", "awaiting_shipped"), ("delivered", "awaiting_delivered")):
        with console.status(f"Carrier: {event}..."):
            for order, order_id in chosen:
                if not _wait(api, order_id, _in_state(state)):
                    continue
                answer = api.logistics_event(
                    {
                        "order_id": order_id,
                        "event": event,
                        "carrier": CARRIER,
                        "tracking_number": f"SF{order.order_id % 10**10:010d}",
                    },
                    secret,
                )
                if answer.status_code not in (200, 202):
                    console.print(f"  [red]{event} {order.name}: {answer.status_code}[/]")
    with console.status("Waiting for the deliveries to be recorded..."):
        for order, order_id in chosen:
            final = _wait(api, order_id, lambda o: o.get("status") == "delivered")
            if final is None:
                console.print(f"  {order.name}: not delivered within {WAIT:g} s")
                continue
            delivered.append(final)
            points = (final.get("points") or {}).get("earned", 0)
            console.print(
                f"  {order.name} shipped by {CARRIER} and delivered: {points} points active"
            )
    return delivered


def _bad_rows(drop: DropFolder, report: dict[str, Any]) -> list[tuple[str, str]]:
    if not report.get("errors_file"):
        return []
    text = drop.read(report["errors_file"]).decode("utf-8-sig", "replace")
    return [(row[0], row[2]) for row in list(csv.reader(io.StringIO(text)))[1:] if len(row) >= 3]


def _customer_id(api: Api, shopify_id: int) -> str | None:
    found = api.get("/customers", external_id=f"shopify:{shopify_id}").get("items") or []
    return str(found[0]["customer_id"]) if found else None


def run_segmentation(api: Api, as_of: Any) -> dict[str, Any]:
    """Run the segmentation job through the API and wait for its end."""
    answer = api._call(
        "POST",
        "/jobs/segmentation/runs",
        json={"as_of": str(as_of)},
        headers={"Authorization": f"Bearer {api.token}"},
    )
    if answer.status_code != 202:
        raise CliError(f"POST /jobs/segmentation/runs: {answer.status_code} {answer.text[:200]}")
    run_id = answer.json()["run_id"]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        run = api.get(f"/jobs/segmentation/runs/{run_id}")
        if run["status"] != "running":
            return dict(run)
        time.sleep(0.5)
    raise CliError("the segmentation job did not finish within 300 s")


def intelligence(console: Console, api: Api, as_of: Any) -> None:
    """The shop's segments, its 80/20 split and its top predicted customers, as the
    segmentation job computes them today."""
    with console.status("Segmenting the shop (RFM, lifecycle, 80/20, predicted value)..."):
        run = run_segmentation(api, as_of)
    if run["status"] != "succeeded":
        raise CliError(f"the segmentation job failed: {run.get('error')}")
    summary = run["summary"]
    sizes = summary["segments"]
    history = api.get("/reports/segments")["history"]
    shares = {s["name"]: s["revenue_share"] for s in history[-1]["segments"]} if history else {}
    table = Table(title=f"Segments as of {summary['as_of']}", title_justify="left")
    for column in ("segment", "customers", "share of the year's revenue"):
        table.add_column(column, justify="left" if column == "segment" else "right")
    for name, size in sizes.items():
        share = shares.get(name)
        table.add_row(name, str(size), f"{share:.1%}" if share is not None else "")
    console.print(table)
    valued = sum(sizes.get(b, 0) for b in ("high_value", "mid_value", "low_value"))
    high = sizes.get("high_value", 0)
    if valued:
        console.print(
            f"[bold]80/20[/]: {high} of the year's {valued} buyers ({high / valued:.0%}) made "
            f"{shares.get('high_value', 0):.0%} of its revenue."
        )
    else:
        console.print("[bold]80/20[/]: no buyer in the last 365 days.")
    models = summary.get("models") or {}
    if "bgnbd" not in models:
        console.print(f"Predicted value: not fitted ({models.get('reason', 'no data')}).")
        return
    members = [m["customer_id"] for m in api.all("/segments/high_value/members")]
    with ThreadPoolExecutor(8) as pool:
        views = [v for v in pool.map(lambda c: api.find(f"/customers/{c}"), members) if v]
    ranked = sorted(
        (v for v in views if (v.get("predicted") or {}).get("clv_12m")),
        key=lambda v: -float(v["predicted"]["clv_12m"]["amount"]),
    )[:BEST]
    top = Table(
        title=f"Top {len(ranked)} predicted customers (BG/NBD r={models['bgnbd']['r']}, "
        f"Gamma-Gamma p={models['gamma_gamma']['p']})",
        title_justify="left",
    )
    for column in ("customer", "group", "p_alive", "orders in 90 days", "value in 12 months"):
        top.add_column(column, justify="left" if column in ("customer", "group") else "right")
    for view in ranked:
        predicted = view["predicted"]
        top.add_row(
            view["customer_id"],
            str(view["rfm"].get("group")),
            f"{predicted['p_alive']:.2f}",
            f"{predicted['expected_orders_90d']:.2f}",
            f"{predicted['clv_12m']['amount']} {predicted['clv_12m']['currency']}",
        )
    console.print(top)


def summarise(
    console: Console,
    api: Api,
    drop: DropFolder,
    shop: Any,
    reports: dict[str, ImportResult],
    live: LiveResult,
    delivered: list[dict[str, Any]],
) -> None:
    customers = reports["customers"].report
    orders = reports["orders"].report
    best = sorted(shop.customers, key=lambda c: (-c.total_spent, c.index))[:BEST]
    with (
        console.status("Reading the results back through the API..."),
        ThreadPoolExecutor(8) as pool,
    ):
        best_ids = list(pool.map(lambda c: _customer_id(api, c.customer_id), best))
        points = list(
            pool.map(lambda i: api.get(f"/customers/{i}/points") if i else None, best_ids)
        )
        live_orders = list(pool.map(lambda i: api.find(f"/orders/{i}"), live.accepted.values()))
        buyers = {str(o["customer_id"]) for o in live_orders if o and o.get("customer_id")}
        sample = sorted(buyers | {i for i in best_ids if i})
        notes = list(pool.map(lambda i: api.all(f"/customers/{i}/notifications"), sample))
        cases = api.all("/cases", status="open")
        bad = _bad_rows(drop, customers)

    sent = Counter(n.get("kind") for items in notes for n in items if n.get("status") == "sent")
    skipped = Counter(
        str(n.get("reason") or n.get("status"))
        for items in notes
        for n in items
        if n.get("status") != "sent"
    )
    balance = sum(int(p.get("balance") or 0) for p in points if p)
    pending = sum(int(p.get("pending") or 0) for p in points if p)
    imported = sum(int(customers.get(k, 0)) for k in ("created", "updated", "unchanged"))
    units = orders.get("orders") or {}
    paid_today = sum(1 for o in live_orders if o and o.get("paid_at"))

    table = Table(title="Demo summary", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row(
        "Customers imported",
        f"{imported} ({customers.get('created', 0)} created, {customers.get('updated', 0)} "
        f"updated, {customers.get('unchanged', 0)} unchanged) of {customers.get('rows', 0)} rows",
    )
    table.add_row(
        "Orders imported",
        f"{sum(int(v) for v in units.values())} orders ("
        + ", ".join(f"{v} {k}" for k, v in units.items())
        + f") from {orders.get('rows', 0)} rows, {orders.get('failed', 0)} failed rows",
    )
    inventory = reports["inventory"].report
    table.add_row("Stock levels imported", f"{inventory.get('rows', 0)} rows")
    table.add_row(
        "Live orders accepted",
        f"{len(live.accepted)} of {len(shop.live_orders)} today ({paid_today} paid), "
        f"{sum(live.answers.values()) - len(live.refused)} of {len(shop.live_events)} webhooks",
    )
    table.add_row(
        "Delivered today", f"{len(delivered)} orders (shipped and delivered by the carrier)"
    )
    table.add_row(
        f"Points of the {len(best)} best customers",
        f"{balance:,} active, {pending:,} pending",
    )
    reasons = Counter(str(c.get("reason")) for c in cases)
    table.add_row(
        "Open cases",
        str(len(cases))
        + (" (" + ", ".join(f"{n} {r}" for r, n in reasons.items()) + ")" if cases else ""),
    )
    table.add_row(
        "Messages sent",
        f"{sum(sent.values())} to {len(sample)} customers (today's buyers and the best "
        f"customers): "
        + (", ".join(f"{n} {k}" for k, n in sorted(sent.items())) or "none")
        + (
            f"; {sum(skipped.values())} not sent ("
            + ", ".join(f"{n} {r}" for r, n in skipped.most_common())
            + ")"
            if skipped
            else ""
        ),
    )
    table.add_row("Bad rows", f"{len(bad)} in customers.csv (below)" if bad else "none")
    console.print(table)

    top = Table(title=f"The {len(best)} best customers", title_justify="left")
    for column in ("customer", "name", "spent (file)", "tier", "points", "pending"):
        top.add_column(column, justify="right" if column in ("points", "pending") else "left")
    for customer, customer_id, balance_of in zip(best, best_ids, points, strict=True):
        name = (
            f"{customer.first_name} {customer.last_name}"
            if customer.english_name
            else f"{customer.last_name}{customer.first_name}"
        )
        tier = ((balance_of or {}).get("tier") or {}).get("name", "")
        top.add_row(
            customer_id or "not found",
            name,
            f"{customer.total_spent} CNY",
            str(tier),
            f"{int((balance_of or {}).get('balance') or 0):,}",
            f"{int((balance_of or {}).get('pending') or 0):,}",
        )
    console.print(top)
    if bad:
        rows = Table(title="Bad rows of customers.csv", title_justify="left")
        rows.add_column("row", justify="right")
        rows.add_column("reason")
        for number, reason in bad:
            rows.add_row(number, reason)
        console.print(rows)
