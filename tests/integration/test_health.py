"""`GET /health`: every table the stage configures answers, or the stage is degraded (503)."""

from __future__ import annotations

import json

import boto3
import pytest

from tests.conftest import LOCAL_ENV


def stage_tables() -> set[str]:
    return {v for k, v in LOCAL_ENV.items() if k.startswith("CRM_") and k.endswith("_TABLE")}


def health(api) -> tuple[int, dict]:
    response = api.http.get("/health")
    return response.status_code, json.loads(response.body)


def test_health_is_ok_and_checks_every_table_of_the_stage(api):
    # Given the local stage, every table provisioned from infra/
    # When /health is asked (no token: it is open)
    status, body = health(api)

    # Then every table is checked, the cases and imports tables among them, and each answers
    assert status == 200, body
    assert body["status"] == "ok" and body["stage"] == "local"
    assert set(body["checks"]) == stage_tables()
    assert {LOCAL_ENV["CRM_CASES_TABLE"], LOCAL_ENV["CRM_IMPORTS_TABLE"]} <= set(body["checks"])
    assert all(body["checks"].values())


@pytest.mark.parametrize("variable", ["CRM_CASES_TABLE", "CRM_IMPORTS_TABLE"])
def test_health_is_degraded_when_the_cases_or_imports_table_is_missing(api, variable):
    # Given a stage whose cases (or imports) table is gone
    missing = LOCAL_ENV[variable]
    boto3.client("dynamodb", region_name="us-east-1").delete_table(TableName=missing)

    # When /health is asked
    status, body = health(api)

    # Then it answers 503 degraded, naming that table as the one that does not answer
    assert status == 503, body
    assert body["status"] == "degraded"
    assert body["checks"][missing] is False
    assert all(ok for table, ok in body["checks"].items() if table != missing)
