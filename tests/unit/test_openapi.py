"""Issue 12: what /openapi.json promises (schemathesis holds the server to it, in
tests/integration/test_api_fuzz.py). Checked by removing `openapi.install(app)`: the error
status and ErrorOut assertions fail."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from shared.config import Settings
from shared.jobs.catalog import all_specs
from workers.ingress.app import create_app


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return create_app(Settings(env="test")).openapi()


def test_the_bearer_scheme_is_declared_and_used(schema: dict[str, Any]) -> None:
    schemes = schema["components"]["securitySchemes"]
    assert schemes["apiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["apiKey"]["description"],
    }
    assert schema["paths"]["/v1/jobs"]["post"]["security"] == [{"apiKey": []}]
    assert "security" not in schema["paths"]["/v1/oauth/{provider}/callback"]["get"]


def test_every_operation_documents_its_errors_with_code_and_message(
    schema: dict[str, Any],
) -> None:
    assert schema["components"]["schemas"]["ErrorOut"]["required"] == ["code", "message"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            expected = {"404", "422", "500", "503"}
            if operation.get("security"):
                expected |= {"401", "403", "429"}
            if "requestBody" in operation:
                expected |= {"400", "413"}
            assert expected <= set(responses), (method, path, sorted(responses))
            for status in expected:
                content = responses[status]["content"]["application/json"]["schema"]
                assert content == {"$ref": "#/components/schemas/ErrorOut"}, (method, path)


def test_kind_is_an_enum_of_the_public_kinds(schema: dict[str, Any]) -> None:
    public = sorted(spec.kind for spec in all_specs() if spec.public)
    kind = schema["components"]["schemas"]["JobIn"]["properties"]["kind"]
    assert sorted(kind["enum"]) == public
    listing = {p["name"]: p for p in schema["paths"]["/v1/jobs"]["get"]["parameters"]}
    assert "enum" in str(listing["kind"]["schema"])


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("TRACE", "/v1/jobs", "GET, POST"),
        ("OPTIONS", "/v1/backups", "GET, POST"),
        ("PUT", "/v1/jobs/3fa85f64-5717-4562-b3fc-2c963f66afa6", "GET"),
        ("DELETE", "/v1/exports/templates", "GET"),  # not an export id: its own route
    ],
)
def test_an_unsupported_method_is_a_405_naming_every_allowed_one(
    method: str, path: str, allow: str
) -> None:
    client = TestClient(create_app(Settings(env="test")))  # no lifespan: no database needed
    response = client.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    assert response.json()["code"] == "method_not_allowed"
