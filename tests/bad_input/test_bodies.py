"""Malformed, mistyped and oversized bodies on every write route: a 4xx, nothing written.

See tests/bad_input/conftest.py: never a 500, every rejection leaves every table as it was."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.support.bad_input import (
    MB,
    PLACEHOLDER,
    ROUTE_IDS,
    ROUTES,
    SURROGATE,
    Ctx,
    Route,
    _raw_with,
    _rejected,
    _send,
)
from tests.support.routes import API_CALLS


def test_every_body_route_here_is_in_the_shared_route_table() -> None:
    assert {(r.method, r.path) for r in ROUTES} <= {(call.method, call.template) for call in API_CALLS}


# The valid bodies are accepted (so the rejections below are caused by the bad input alone).


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_valid_body_is_accepted(client, engine: Engine, ctx: Ctx, route: Route) -> None:
    response = _send(client, ctx, route, json.dumps(route.valid).encode())
    assert response.status_code in (200, 201), response.text


# Malformed JSON and bodies that are not an object.

MALFORMED = {
    "truncated": b'{"name": ',
    "unquoted-keys": b"{name: 1}",
    "single-quotes": b"{'name': 'x'}",
    "trailing-comma": b'{"name": "x",}',
    "two-documents": b'{"name": "x"}{"name": "y"}',
    "invalid-utf8": b'{"name": "\xff\xfe"}',
    "latin1": '{"name": "café"}'.encode("latin-1"),
    "only-whitespace": b"   ",
    "deeply-nested": b"[" * 100_000 + b"]" * 100_000,
    "deeply-nested-object": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "int-with-5000-digits": b'{"name": ' + b"9" * 5000 + b"}",
    "nan": b'{"name": NaN}',
    "comment": b'{"name": "x" /* hi */}',
}
NOT_AN_OBJECT = {
    "empty-array": b"[]",
    "array-of-numbers": b"[1, 2, 3]",
    "array-of-arrays": b"[[]]",
    "string": b'"hello"',
    "number": b"42",
    "float": b"4.2",
    "true": b"true",
}


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_json_is_rejected(client, engine: Engine, ctx: Ctx, route: Route, raw: bytes) -> None:
    _rejected(client, engine, ctx, route, raw, statuses=(400, 422))


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize("raw", NOT_AN_OBJECT.values(), ids=NOT_AN_OBJECT.keys())
def test_json_that_is_not_an_object_is_422(client, engine: Engine, ctx: Ctx, route: Route, raw: bytes) -> None:
    _rejected(client, engine, ctx, route, raw)


@pytest.mark.parametrize("route", [r for r in ROUTES if not r.body_optional], ids=lambda r: r.name)
@pytest.mark.parametrize("raw", [b"", b"null"], ids=["empty-body", "null"])
def test_missing_body_is_422(client, engine: Engine, ctx: Ctx, route: Route, raw: bytes) -> None:
    _rejected(client, engine, ctx, route, raw)


def test_pixel_create_without_body_takes_next_number(client, ctx: Ctx) -> None:
    route = next(r for r in ROUTES if r.name == "pixel-create")
    response = _send(client, ctx, route, b"")
    assert response.status_code == 201, response.text
    assert response.json()["number"] == 2  # the tree's pixel is number 1


# Wrong content types.

CONTENT_TYPES = {
    "text-plain": "text/plain",
    "form-urlencoded": "application/x-www-form-urlencoded",
    "multipart": "multipart/form-data; boundary=xyz",
    "xml": "application/xml",
    "octet-stream": "application/octet-stream",
    "missing": None,
}


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize("content_type", CONTENT_TYPES.values(), ids=CONTENT_TYPES.keys())
def test_valid_json_with_wrong_content_type_is_rejected(
    client, engine: Engine, ctx: Ctx, route: Route, content_type: str | None
) -> None:
    _rejected(client, engine, ctx, route, json.dumps(route.valid).encode(), content_type=content_type)


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_form_body_is_rejected(client, engine: Engine, ctx: Ctx, route: Route) -> None:
    _rejected(
        client, engine, ctx, route, b"name=x&email=a%40example.com", content_type="application/x-www-form-urlencoded"
    )


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "application/merge-patch+json", "APPLICATION/JSON"]
)
def test_json_content_type_variants_are_accepted(client, ctx: Ctx, content_type: str) -> None:
    for route in (r for r in ROUTES if r.name in ("campaign-create", "contact-create")):
        response = _send(client, ctx, route, json.dumps(route.valid).encode(), content_type=content_type)
        assert response.status_code == 201, response.text
        assert _send(client, ctx, route, b"{}", content_type=content_type).status_code == 422
        # Clean up so the next variant can create the same contact again.
        path = "/api/v1/campaigns/" if route.name == "campaign-create" else "/api/v1/contacts/"
        assert client.delete(path + str(response.json()["id"]), headers=ctx.headers).status_code == 204


# Wrong types, out-of-range values, huge strings, unknown fields: one case per field.


def _field_cases() -> list[Any]:
    cases: list[Any] = []

    def add(route: Route, label: str, field: str, fragment: str, statuses: tuple[int, ...] = (422,)) -> None:
        cases.append(pytest.param(route, field, fragment, statuses, id=f"{route.name}-{field}-{label}"))

    for route in ROUTES:
        for field in route.strings:
            add(route, "int", field, "123")
            add(route, "float", field, "1.5")
            add(route, "bool", field, "true")
            add(route, "list", field, '["x"]')
            add(route, "object", field, '{"x": 1}')
            add(route, "1MB", field, json.dumps("x" * MB))
            add(route, "1MB-emoji", field, json.dumps("😀" * (MB // 4)))
            add(route, "lone-surrogate", field, json.dumps("ab" + PLACEHOLDER).replace(PLACEHOLDER, SURROGATE))
            add(route, "surrogate-only", field, f'"{SURROGATE}"')
            add(route, "low-surrogate", field, '"x\\udfff"')
            add(route, "reversed-pair", field, '"\\ude00\\ud83d"')
        for field in route.ints:
            add(route, "word", field, '"seven"')
            add(route, "numeric-string-float", field, '"1.5"')
            add(route, "float", field, "1.5")
            add(route, "zero", field, "0")
            add(route, "negative", field, "-1")
            add(route, "2**63", field, str(2**63))
            add(route, "-2**63", field, str(-(2**63)))
            add(route, "10**30", field, str(10**30))
            add(route, "1e400", field, "1e400")
            add(route, "list", field, "[1]")
            add(route, "object", field, '{"a": 1}')
            if route.name not in ("contact-update", "render"):  # (ids: 1001 is a valid id, not too big)
                add(route, "too-big", field, "1001")
        for field in route.datetimes:
            add(route, "word", field, '"tomorrow"')
            add(route, "bad-month", field, '"2026-13-01T00:00:00Z"')
            add(route, "year-0001-east", field, '"0001-01-01T00:00:00+14:00"')
            add(route, "year-9999-west", field, '"9999-12-31T23:59:59-14:00"')
            add(route, "huge-timestamp", field, str(10**30))
            add(route, "inf", field, "1e400")
            add(route, "list", field, '["2026-01-01"]')
        for field in route.enums:
            add(route, "unknown", field, '"bogus"')
            add(route, "sql", field, json.dumps("scheduled' OR '1'='1"))
            add(route, "int", field, "1")
            add(route, "list", field, '["sent"]')
        for field in route.bools:
            add(route, "word", field, '"maybe"')
            add(route, "two", field, "2")
            add(route, "list", field, "[true]")
            add(route, "object", field, "{}")
        for extra in ("unknown_field", "id", "owner_id", "campaign_id", "uuid", "hashed_password", "token_version"):
            if extra not in (*route.strings, *route.ints, *route.datetimes, *route.enums, *route.bools):
                add(route, "unknown", extra, "1")
    return cases


@pytest.mark.parametrize(("route", "field", "fragment", "statuses"), _field_cases())
def test_bad_field_is_rejected(
    client, engine: Engine, ctx: Ctx, route: Route, field: str, fragment: str, statuses: tuple[int, ...]
) -> None:
    body = _rejected(client, engine, ctx, route, _raw_with(route, field, fragment), statuses=statuses)
    assert body["code"] == "validation_error"
    # The error names the field (and the row, for a list), and never echoes a huge input back.
    locs = [tuple(item["loc"]) for item in body["detail"]]
    expected = ("body", len(route.valid), field) if route.bulk else ("body", field)
    assert any(loc[: len(expected)] == expected for loc in locs), locs
    assert len(json.dumps(body)) < 10_000


@pytest.mark.slow  # 1 MB bodies: ~0.3 s each, one per route
@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_huge_body_of_many_fields_is_rejected(client, engine: Engine, ctx: Ctx, route: Route) -> None:
    fields = {f"f{i}": "x" * 100 for i in range(10_000)}
    raw = json.dumps([{**route.valid[0], **fields}] if route.bulk else {**route.valid, **fields}).encode()
    body = _rejected(client, engine, ctx, route, raw)
    assert len(json.dumps(body)) < 2 * MB
