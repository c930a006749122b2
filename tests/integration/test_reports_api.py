"""The reports through the API: JSON and CSV over the latest snapshot, the query checked before
any work, and the SQL path (DuckDB standing in for Athena) answering exactly what pandas does."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest

from tests.integration.test_segmentation_job import AS_OF, call, run_job, shop

REPORTS = {
    "sales": {
        "from": (AS_OF - timedelta(days=400)).isoformat(),
        "to": AS_OF.isoformat(),
        "granularity": "month",
    },
    "customers": {"as_of": AS_OF.isoformat()},
    "loyalty": {},
}


def get(api, path: str, params: dict[str, str]):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return call(api, "get", f"{path}?{query}" if query else path)


@pytest.fixture
def scored(api):
    analytics = api
    shop(analytics)
    run = run_job(analytics, AS_OF)
    assert run["status"] == "succeeded", run
    return analytics


def test_each_report_is_the_same_from_sql_as_from_pandas(scored, monkeypatch):
    by_pandas = {}
    for name, params in REPORTS.items():
        status, body = get(scored, f"/reports/{name}", params)
        assert status == 200, body
        by_pandas[name] = body
    assert by_pandas["sales"]["totals"]["orders"] == 21  # the churned buyer's is older
    assert by_pandas["customers"]["repeat_customers"] == 7

    monkeypatch.setenv("CRM_ANALYTICS_ENGINE", "sql")
    for name, params in REPORTS.items():
        status, body = get(scored, f"/reports/{name}", params)
        assert status == 200, body
        assert body == by_pandas[name], name


def test_csv_has_the_report_s_main_table(scored):
    answer = scored.http.get(
        "/reports/sales?from=2025-01-01&to=2026-11-20&granularity=month&format=csv",
        headers={"Authorization": "Bearer local-operator-token"},
    )
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(answer.body.decode())))
    assert rows[0][0] == "period" and len(rows) == 1 + 23  # a row per month of the range
    assert sum(int(r[1]) for r in rows[1:]) == 22


@pytest.mark.parametrize(
    ("path", "status", "issue"),
    [
        ("/reports/sales?to=2026-11-01", 422, "required"),
        ("/reports/sales?from=2026-11-02&to=2026-11-01", 422, "before_from"),
        ("/reports/sales?from=2026-11-01&to=2026-11-02&granularity=year", 422, "unknown_value"),
        ("/reports/sales?from=2026-13-01&to=2026-11-02", 422, "invalid_date"),
        ("/reports/sales?from=2000-01-01&to=2026-11-02", 422, "out_of_range"),
        ("/reports/customers?as_of=2999-01-01", 422, "in_the_future"),
        ("/reports/customers?format=xml", 422, "unknown_value"),
        ("/reports/customers?colour=red", 422, "unknown_parameter"),
        ("/reports/nope", 404, None),
    ],
)
def test_bad_queries_are_refused_before_any_work(api, path, status, issue):
    got, body = call(api, "get", path)
    assert got == status, body
    if issue:
        assert body["error"]["details"][0]["issue"] == issue


def test_before_any_snapshot_previews_and_reports_say_so_without_scanning(api):
    status, body = call(api, "get", "/reports/sales?from=2026-11-01&to=2026-11-02")
    assert (status, body["error"]["code"]) == (409, "no_snapshot")
    rule = {"rule": {"field": "orders_count", "op": ">", "value": 0}}
    status, body = call(api, "post", "/segments/preview", rule)
    assert (status, body["error"]["code"]) == (409, "no_snapshot")
    status, body = call(api, "get", "/reports/segments")
    assert status == 200 and body["history"] == []
