"""/openapi.json states what generated clients need: 503s, optional bodies, date-times, integer
bounds, binary GIF and HEAD, the redirect's Location, and error examples with their own codes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.orm import Session

from app.models import User
from app.models.base import MAX_ID
from tests import factories

OPERATIONS = ("get", "head", "post", "put", "patch", "delete")
EXAMPLE_CODES = {
    "401": "invalid_token",
    "403": "admin_required",
    "404": "not_found",
    "409": "conflict",
    "422": "validation_error",
    "429": "rate_limited",
    "503": "service_unavailable",
}
# The public conversion intake refuses a page's origin (not a user's role): its 403 says so.
OWN_CODES = {("/e", "403"): "forbidden", ("/e.gif", "403"): "forbidden"}


@pytest.fixture(scope="module")
def spec(client: Any) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method in OPERATIONS:
            if method in item:
                yield path, method, item[method]


def nodes(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for child in node.values():
            yield from nodes(child)
    elif isinstance(node, list):
        for child in node:
            yield from nodes(child)


def test_every_route_that_reads_the_database_documents_503(spec: dict[str, Any]) -> None:
    missing = [
        f"{method.upper()} {path}"
        for path, method, operation in operations(spec)
        if path.startswith(("/api/", "/auth/")) or path in ("/c/{token}", "/readyz")
        if "503" not in operation["responses"]
    ]
    assert not missing, missing


def test_pixel_create_body_is_a_plain_optional_schema(spec: dict[str, Any]) -> None:
    body = spec["paths"]["/api/v1/contacts/{contact_id}/pixels"]["post"]["requestBody"]
    assert body.get("required", False) is False
    assert body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/PixelCreate"}
    nullable_bodies = [
        f"{method.upper()} {path}"
        for path, method, operation in operations(spec)
        for media in operation.get("requestBody", {}).get("content", {}).values()
        if {"type": "null"} in media.get("schema", {}).get("anyOf", [])
    ]
    assert not nullable_bodies


def test_response_timestamps_are_date_times(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    checked = 0
    for name, schema in schemas.items():
        for field, prop in schema.get("properties", {}).items():
            if field.endswith("_at") or field in ("bucket_start",):
                options = prop.get("anyOf", [prop])
                formats = [o.get("format") for o in options if o.get("type") == "string"]
                assert formats == ["date-time"], (name, field, prop)
                checked += 1
    assert checked >= 10
    assert schemas["PixelOut"]["properties"]["created_at"] == {
        "type": "string",
        "format": "date-time",
        "title": "Created At",
    }


def test_integer_bounds_are_integers(client: Any, spec: dict[str, Any]) -> None:
    assert "e+18" not in client.get("/openapi.json").text
    bounds = [
        node[key]
        for node in nodes(spec)
        if node.get("type") == "integer"
        for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
        if key in node
    ]
    assert bounds
    assert all(type(bound) is int for bound in bounds), {b for b in bounds if type(b) is not int}
    assert spec["components"]["schemas"]["CampaignOut"]["properties"]["id"]["maximum"] == MAX_ID
    assert json.loads(json.dumps(spec)) == spec


def test_pixel_documents_a_binary_gif_on_get_and_head(spec: dict[str, Any]) -> None:
    item = spec["paths"]["/o/{token}.gif"]
    assert set(item) >= {"get", "head"}
    for method in ("get", "head"):
        content = item[method]["responses"]["200"]["content"]
        assert content == {"image/gif": {"schema": {"type": "string", "format": "binary"}}}


def test_click_documents_the_location_header(spec: dict[str, Any]) -> None:
    item = spec["paths"]["/c/{token}"]
    assert set(item) >= {"get", "head"}
    for method in ("get", "head"):
        redirect = item[method]["responses"]["302"]
        assert redirect["headers"]["Location"]["schema"] == {"type": "string", "format": "uri"}


def test_error_examples_show_their_own_code(spec: dict[str, Any]) -> None:
    seen = set()
    for path, method, operation in operations(spec):
        for status, response in operation["responses"].items():
            if status not in EXAMPLE_CODES or path == "/readyz":
                continue
            example = response["content"]["application/json"]["example"]
            assert example["code"] == OWN_CODES.get((path, status), EXAMPLE_CODES[status]), (method, path, status)
            assert set(example) == {"detail", "code"}
            seen.add(status)
    assert seen == set(EXAMPLE_CODES)


def test_head_of_the_documented_routes_answers_like_get(client: Any) -> None:
    """create_app alone (no fast path) serves HEAD through the documented routes too."""
    head = client.head("/o/not-a-token.gif")
    assert head.status_code == 404
    assert head.content == b""


def test_pixel_create_takes_no_body_or_an_object_but_not_null(
    client: Any, db: Session, user: User, headers: dict[str, str]
) -> None:
    contact = factories.make_contact(db, factories.make_group(db, factories.make_campaign(db, user)))
    path = f"/api/v1/contacts/{contact.id}/pixels"
    assert client.post(path, headers=headers).json()["number"] == 1
    assert client.post(path, headers={**headers, "Content-Type": "application/json"}).json()["number"] == 2
    assert client.post(path, headers=headers, json={"number": 7}).json()["number"] == 7
    refused = client.post(path, headers={**headers, "Content-Type": "application/json"}, content=b"null")
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body"]
