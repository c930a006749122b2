"""Entry points of jobs: start a run (202) and read it; the analytics function's handler."""

from __future__ import annotations

from chalice import Response
from chalice.app import Request

from crm.api import endpoint, json_response, read_json_object
from crm.services import jobs


@endpoint
def start_run(request: Request, name: str) -> Response:
    body = read_json_object(request) if request.raw_body else {}
    return json_response(jobs.start(name, body), 202)


@endpoint
def get_run(name: str, run_id: str) -> Response:
    return json_response(jobs.get(name, run_id))
