"""Unknown routes and wrong methods answer 404/405 with the one error shape.

See tests/bad_input/conftest.py: never a 500, every rejection leaves every table as it was."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from tests.helpers import assert_error
from tests.support.bad_input import (
    Ctx,
    _headers_for,
    _snapshot,
)

# Unknown routes and wrong methods.


@pytest.mark.parametrize(
    "path",
    [
        "/nope",
        "/api/v1/nope",
        "/api/v2/campaigns",
        "/api/v1/campaigns/1/nope",
        "/api/v1/../../etc/passwd",
        "/%00",
        "/😀",
        "/api/v1/campaigns/1/groups/1/contacts",
        "/" + "x" * 10_000,
    ],
)
@pytest.mark.parametrize("method", ["GET", "POST", "PATCH", "DELETE"])
def test_unknown_route_is_404_with_error_shape(client, ctx: Ctx, path: str, method: str) -> None:
    assert_error(client.request(method, path, headers=ctx.headers), 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/api/v1/campaigns/{campaign}"),
        ("POST", "/api/v1/campaigns/{campaign}"),
        ("DELETE", "/api/v1/campaigns"),
        ("PATCH", "/api/v1/campaigns"),
        ("PUT", "/api/v1/groups/{group}"),
        ("DELETE", "/api/v1/groups/{group}/contacts"),
        ("PUT", "/api/v1/contacts/{contact}"),
        ("PUT", "/api/v1/pixels/{pixel}"),
        ("DELETE", "/api/v1/pixels/{pixel}/openings"),
        ("PUT", "/api/v1/openings/{opening}"),
        ("POST", "/api/v1/links/{link}/url"),
        ("PATCH", "/api/v1/users"),
        ("POST", "/healthz"),
        ("DELETE", "/auth/me"),
        ("GET", "/auth/token"),
    ],
)
def test_wrong_method_is_405_with_error_shape(client, engine: Engine, ctx: Ctx, method: str, path: str) -> None:
    before = _snapshot(engine)
    url = path.format(**ctx.ids)
    response = client.request(method, url, json={"name": "x"}, headers=_headers_for(ctx, url))
    assert_error(response, 405, "method_not_allowed")
    assert response.headers.get("allow")
    assert _snapshot(engine) == before
