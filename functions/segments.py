"""Entry points of segments: parse the request, call the service, answer."""

from __future__ import annotations

from chalice import Response
from chalice.app import Request

from crm.api import endpoint, json_response, page_limit, query, read_json_object
from crm.services import segments


@endpoint
def list_segments() -> Response:
    return json_response(segments.list_segments())


@endpoint
def get_segment(name: str) -> Response:
    return json_response(segments.get_segment(name))


@endpoint
def put_segment(request: Request, name: str) -> Response:
    segment, created = segments.put_segment(name, read_json_object(request))
    return json_response(segment, 201 if created else 200)


@endpoint
def delete_segment(name: str) -> Response:
    return json_response(segments.delete_segment(name))


@endpoint
def members(request: Request, name: str) -> Response:
    params = query(request)
    return json_response(segments.members(name, page_limit(params), params.get("cursor")))


@endpoint
def preview(request: Request) -> Response:
    return json_response(segments.preview(read_json_object(request)))
