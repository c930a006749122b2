"""The published API description covers every route the app serves."""

import json

from tests.conftest import PROJECT_DIR


def test_every_route_is_documented_with_its_methods(api):
    from app import app

    spec = api.http.get("/openapi.json").json_body
    assert spec["openapi"].startswith("3.")
    for path, methods in app.routes.items():
        assert path in spec["paths"], path
        for method in methods:
            assert method.lower() in spec["paths"][path], f"{method} {path}"


def test_the_document_is_valid_json_on_disk():
    json.loads((PROJECT_DIR / "functions" / "openapi.json").read_text())


def test_the_document_is_valid_openapi():
    from openapi_spec_validator import validate

    validate(json.loads((PROJECT_DIR / "functions" / "openapi.json").read_text()))
