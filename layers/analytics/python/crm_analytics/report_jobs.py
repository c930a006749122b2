"""Reports over the latest snapshot: on demand (`GET /reports/...` through the analytics
function) and the nightly `reports` job, which refreshes the snapshot and keeps the day's
standard reports as dated files (`analytics/reports/date=<as_of>/<name>.json`)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from crm.adapters import s3
from crm.config import get_settings
from crm.domain.loyalty import Program
from crm.domain.money import exponent
from crm.store import segments as segment_store
from crm_analytics import reports, snapshot
from crm_analytics.jobs import athena_runner, scoring_engine

REPORTS_PREFIX = "analytics/reports/"


def _snapshot_date() -> date:
    """The latest snapshot's date (the API refuses a report before there is one)."""
    found = snapshot.latest_date(get_settings().data_bucket)
    if found is None:
        raise LookupError("no analytics snapshot yet")
    return found


def compute(name: str, params: dict[str, Any]) -> dict[str, Any]:
    settings = get_settings()
    bucket, currency = settings.data_bucket, settings.currency
    decimals = exponent(currency)
    if name == "segments":  # the runs' size history, not the snapshot
        latest = snapshot.latest_date(bucket)
        return {
            **reports.segments_report(segment_store.history()),
            "snapshot_as_of": latest.isoformat() if latest else None,
        }
    as_of = _snapshot_date()
    orders = int((snapshot.manifest(bucket) or {}).get("orders", 0))
    if scoring_engine(orders) == "sql":
        return {**_via_sql(name, params, as_of), "snapshot_as_of": as_of.isoformat()}
    if name == "sales":
        start, end = date.fromisoformat(params["from"]), date.fromisoformat(params["to"])
        # Every order, not only the range's: "new customer" means the buyer's first order ever.
        orders = snapshot.read(bucket, "orders")
        lines = snapshot.read(bucket, "order_lines", start=start, end=end)
        report = reports.sales(
            orders,
            lines,
            start=start,
            end=end,
            granularity=params.get("granularity") or "day",
            currency=currency,
            decimals=decimals,
        )
    elif name == "customers":
        day = date.fromisoformat(params["as_of"]) if params.get("as_of") else as_of
        report = reports.customers_report(snapshot.read(bucket, "orders"), as_of=day)
    elif name == "loyalty":
        report = reports.loyalty(
            snapshot.read(bucket, "points"),
            snapshot.read(bucket, "customers"),
            start=date.fromisoformat(params["from"]) if params.get("from") else None,
            end=date.fromisoformat(params["to"]) if params.get("to") else None,
            currency=currency,
            decimals=decimals,
        )
    else:
        raise ValueError(f"no report {name!r}")
    return {**report, "snapshot_as_of": as_of.isoformat()}


def _via_sql(name: str, params: dict[str, Any], as_of: date) -> dict[str, Any]:
    """The report as one SQL query over the snapshot: Athena over the Glue tables in the cloud,
    DuckDB over a copy of the snapshot's files locally (past the documented size, or forced)."""
    from crm_analytics import sql
    from crm_analytics.report_sql import report_via_sql

    settings = get_settings()
    currency, decimals = settings.currency, exponent(settings.currency)
    wanted = {**params, "as_of": params.get("as_of") or as_of.isoformat()}
    if settings.is_local:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="crm-snapshot-") as root:
            snapshot.download(settings.data_bucket, root, tuple(snapshot.DATASETS))
            return report_via_sql(
                name, wanted, sql.query_duckdb, sql.duckdb_tables(root), currency, decimals
            )
    import os

    database = os.environ["CRM_GLUE_DATABASE"]
    tables = {dataset: f'"{database}"."{dataset}"' for dataset in snapshot.DATASETS}
    return report_via_sql(name, wanted, athena_runner(), tables, currency, decimals)


def report(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """A report as the API answers it: JSON, or `{"csv": text}` for `format=csv`."""
    answer = compute(name, params)
    if params.get("format") == "csv":
        return {"csv": reports.to_csv(name, answer)}
    return answer


def run(as_of: date) -> dict[str, Any]:
    """The `reports` job: a fresh snapshot, then the day's standard reports kept as files."""
    settings = get_settings()
    taken = snapshot.take(as_of, settings, Program(currency=settings.currency))
    files = snapshot.write(taken, settings.data_bucket)
    standard = {
        "sales_daily_30d": (
            "sales",
            {"from": str(as_of - timedelta(days=29)), "to": str(as_of), "granularity": "day"},
        ),
        "sales_monthly_12m": (
            "sales",
            {
                "from": str(as_of.replace(day=1) - timedelta(days=335)),
                "to": str(as_of),
                "granularity": "month",
            },
        ),
        "customers": ("customers", {"as_of": str(as_of)}),
        "loyalty": ("loyalty", {}),
        "segments": ("segments", {}),
    }
    written = []
    for file_name, (name, params) in standard.items():
        key = f"{REPORTS_PREFIX}date={as_of.isoformat()}/{file_name}.json"
        s3.put_json(settings.data_bucket, key, compute(name, params))
        written.append(key)
    return {
        "as_of": as_of.isoformat(),
        "orders": taken.orders.num_rows,
        "orders_left_out": taken.left_out,
        "snapshot_files": files,
        "reports": written,
    }
