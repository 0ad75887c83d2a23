"""Bad ids in paths and query strings, bad paging and filters: 422 (or 404), never a 500.

See tests/bad_input/conftest.py: never a 500, every rejection leaves every table as it was."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import Engine, func, select

from app.models import Contact
from tests.helpers import assert_error
from tests.support.bad_input import (
    Ctx,
    _headers_for,
    _snapshot,
)
from tests.support.routes import item_paths, list_paths

# Ids in paths and query parameters.

ITEM_PATHS = item_paths()
# `parent-children -> /api/v1/<parents>/{}/<children>`: the nested lists, and a link's URL for a contact.
PARENT_PATHS = {
    **{
        f"{kinds.rstrip('s')}-{path.rsplit('/', 1)[1]}": re.sub(r"{\w+}", "{}", path)
        for kinds, path in ((path.split("/")[3], path) for path in list_paths().values())
        if "{" in path
    },
    "link-url": "/api/v1/links/{}/url?contact_id=1",
}
BAD_IDS = {
    "zero": "0",
    "negative": "-1",
    "2**63": str(2**63),
    "-2**63": str(-(2**63)),
    "10**30": str(10**30),
    "word": "abc",
    "float": "1.5",
    "exponent": "1e3",
    "hex": "0x10",
    "nul": "%00",
    "invalid-utf8": "%ff",
    "surrogate-utf8": "%ED%A0%80",
    "fullwidth-digit": "%EF%BC%91",
    "sql": "1%20OR%201%3D1",
    "sql-drop": "1%3B%20DROP%20TABLE%20campaigns",
}
PATCH_BODIES = {
    "campaign": {"name": "x"},
    "group": {"name": "x"},
    "contact": {"name": "x"},
    "pixel": {"number": 5},
    "opening": {"client": "bot"},
    "link": {"name": "x"},
    "user": {"email": "x@example.com"},
    "webhook": {"description": "x"},
}


@pytest.mark.parametrize("kind", ITEM_PATHS.keys())
@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
@pytest.mark.parametrize("bad_id", BAD_IDS.values(), ids=BAD_IDS.keys())
def test_bad_item_id_is_422(client, engine: Engine, ctx: Ctx, kind: str, method: str, bad_id: str) -> None:
    path = ITEM_PATHS[kind].format(bad_id)
    body = PATCH_BODIES[kind] if method == "PATCH" else None
    before = _snapshot(engine)
    response = client.request(method, path, json=body, headers=_headers_for(ctx, path))
    assert_error(response, 422, "validation_error")
    assert _snapshot(engine) == before


@pytest.mark.parametrize("kind", ITEM_PATHS.keys())
@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
@pytest.mark.parametrize(
    "missing_id", [2**63 - 1, 2**31, 2**32 + 1, 999_999], ids=["max-int64", "2**31", "2**32+1", "absent"]
)
def test_largest_and_absent_ids_are_404(
    client, engine: Engine, ctx: Ctx, kind: str, method: str, missing_id: int
) -> None:
    path = ITEM_PATHS[kind].format(missing_id)
    body = PATCH_BODIES[kind] if method == "PATCH" else None
    before = _snapshot(engine)
    response = client.request(method, path, json=body, headers=_headers_for(ctx, path))
    assert_error(response, 404, "not_found")
    assert _snapshot(engine) == before


@pytest.mark.parametrize("kind", PARENT_PATHS.keys())
@pytest.mark.parametrize("bad_id", BAD_IDS.values(), ids=BAD_IDS.keys())
def test_bad_parent_id_is_422(client, engine: Engine, ctx: Ctx, kind: str, bad_id: str) -> None:
    path = PARENT_PATHS[kind].format(bad_id)
    before = _snapshot(engine)
    assert_error(client.get(path, headers=ctx.headers), 422, "validation_error")
    if kind != "link-url":
        assert_error(client.post(path, json={}, headers=ctx.headers), 422, "validation_error")
    assert _snapshot(engine) == before


@pytest.mark.parametrize("kind", PARENT_PATHS.keys())
def test_largest_parent_id_is_404(client, engine: Engine, ctx: Ctx, kind: str) -> None:
    path = PARENT_PATHS[kind].format(2**63 - 1)
    before = _snapshot(engine)
    assert_error(client.get(path, headers=ctx.headers), 404, "not_found")
    if kind != "link-url":
        valid = {
            "campaign-groups": {"name": "g"},
            "campaign-links": {"url": "https://example.com/"},
            "group-contacts": {"email": "a@example.com"},
            "contact-pixels": {},
            "pixel-openings": {},
        }[kind]
        assert_error(client.post(path, json=valid, headers=ctx.headers), 404, "not_found")
    assert _snapshot(engine) == before


LIST_PATHS = list_paths()
BAD_PAGING = {
    "limit-0": "limit=0",
    "limit-negative": "limit=-1",
    "limit-501": "limit=501",
    "limit-2**63": f"limit={2**63}",
    "limit-10**30": f"limit={10**30}",
    "limit-word": "limit=abc",
    "limit-float": "limit=1.5",
    "limit-empty": "limit=",
    "limit-nul": "limit=%00",
    "limit-invalid-utf8": "limit=%ff",
    "limit-sql": "limit=1%3B%20DROP%20TABLE%20campaigns",
    "offset-negative": "offset=-1",
    "offset-2**63": f"offset={2**63}",
    "offset-10**30": f"offset={10**30}",
    "offset-word": "offset=abc",
    "offset-just-too-big": f"offset={2**31 + 1}",
}


@pytest.mark.parametrize("kind", LIST_PATHS.keys())
@pytest.mark.parametrize("query", BAD_PAGING.values(), ids=BAD_PAGING.keys())
def test_bad_paging_is_422(client, ctx: Ctx, kind: str, query: str) -> None:
    path = LIST_PATHS[kind].format(**ctx.ids)
    body = assert_error(client.get(f"{path}?{query}", headers=_headers_for(ctx, path)), 422, "validation_error")
    assert body["detail"][0]["loc"][0] == "query"


@pytest.mark.parametrize("kind", LIST_PATHS.keys())
@pytest.mark.parametrize("query", ["limit=500", f"offset={2**31}", f"limit=500&offset={2**31}", "limit=1&offset=1"])
def test_extreme_but_valid_paging_is_answered(client, ctx: Ctx, kind: str, query: str) -> None:
    path = LIST_PATHS[kind].format(**ctx.ids)
    response = client.get(f"{path}?{query}", headers=_headers_for(ctx, path))
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"items", "total", "limit", "offset"}
    assert body["total"] >= 1
    if f"offset={2**31}" in query:
        assert body["items"] == []


BAD_FILTERS = {
    "status-unknown": "status=bogus",
    "status-sql": "status=scheduled%27%20OR%20%271%27%3D%271",
    "status-surrogate": "status=%ED%A0%80",
    "before-word": "scheduled_before=tomorrow",
    "before-huge-number": f"scheduled_before={10**30}",
    "before-year-0001": "scheduled_before=0001-01-01T00:00:00%2B14:00",
    "after-year-9999": "scheduled_after=9999-12-31T23:59:59-14:00",
    "after-inf": "scheduled_after=1e400",
    "after-sql": "scheduled_after=2026-01-01%27%3B%20DROP%20TABLE%20contacts%3B--",
}


@pytest.mark.parametrize("query", BAD_FILTERS.values(), ids=BAD_FILTERS.keys())
def test_bad_contact_filters_are_422(client, engine: Engine, ctx: Ctx, query: str) -> None:
    response = client.get(f"/api/v1/groups/{ctx.ids['group']}/contacts?{query}", headers=ctx.headers)
    assert_error(response, 422, "validation_error")
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Contact)) == 1


@pytest.mark.parametrize(
    "contact_id",
    ["0", "-1", str(2**63), str(10**30), "abc", "", "%00", "1%20OR%201%3D1"],
    ids=["zero", "negative", "2**63", "10**30", "word", "empty", "nul", "sql"],
)
def test_bad_contact_id_query_param_is_422(client, ctx: Ctx, contact_id: str) -> None:
    response = client.get(f"/api/v1/links/{ctx.ids['link']}/url?contact_id={contact_id}", headers=ctx.headers)
    assert_error(response, 422, "validation_error")


def test_missing_contact_id_query_param_is_422_and_largest_is_404(client, ctx: Ctx) -> None:
    assert_error(client.get(f"/api/v1/links/{ctx.ids['link']}/url", headers=ctx.headers), 422, "validation_error")
    response = client.get(f"/api/v1/links/{ctx.ids['link']}/url?contact_id={2**63 - 1}", headers=ctx.headers)
    assert_error(response, 404, "not_found")
