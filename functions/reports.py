"""Entry point of reports: parse the query, call the service, answer JSON or CSV."""

from __future__ import annotations

from chalice import Response
from chalice.app import Request

from crm.api import endpoint, json_response, query
from crm.services import reports


@endpoint
def get_report(request: Request, report: str) -> Response:
    params = query(request)
    answer = reports.report(report, params)
    if params.get("format") == "csv":
        return Response(
            body=answer["csv"],
            status_code=200,
            headers={
                "Content-Type": "text/csv; charset=utf-8",
                "Content-Disposition": f'attachment; filename="{report}.csv"',
            },
        )
    return json_response(answer)
