"""Never a 500, nothing partially written: hostile and malformed input on every write route.

Every rejected request must answer a 4xx with the one error shape `{"detail", "code"}` and
leave every table exactly as it was (same rows, same values). Accepted exotic input (SQL-looking
text, emoji, right-to-left text, combining characters, NUL) is stored and returned verbatim on
both database legs.

Local helpers: `_snapshot` (all rows of all tables), `assert_client_error` (4xx + error shape
for a set of acceptable statuses), `Route` (one write route and the types of its fields).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Engine, func, inspect, select
from sqlalchemy.orm import Session

from app.models import Base, Campaign, Contact, Group, Link, Opening, User
from tests import factories
from tests.helpers import assert_error
from tests.support.routes import API_CALLS, item_paths, list_paths

MB = 1024 * 1024
SURROGATE = "\\ud800"  # a lone surrogate, as written inside a JSON string
PLACEHOLDER = "@@PLACEHOLDER@@"


# Helpers.


def _snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, ordered by primary key."""
    with engine.connect() as conn:
        return {
            table.name: [tuple(row) for row in conn.execute(select(table).order_by(*table.primary_key.columns))]
            for table in Base.metadata.sorted_tables
        }


def _read(engine: Engine, stmt: Any) -> Any:
    """One value, read on a fresh connection (sees everything the app committed)."""
    with engine.connect() as conn:
        return conn.scalar(stmt)


def _read_all(engine: Engine, stmt: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.scalars(stmt))


def assert_client_error(response: Any, statuses: tuple[int, ...] = (422,)) -> dict[str, Any]:
    assert response.status_code in statuses, (response.status_code, response.text[:500])
    body: dict[str, Any] = response.json()
    assert set(body) == {"detail", "code"}, body
    assert isinstance(body["code"], str)
    assert body["code"]
    return body


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    path: str  # placeholders: {campaign} {group} {contact} {pixel} {opening} {link} {user}
    valid: Any
    strings: tuple[str, ...] = ()
    ints: tuple[str, ...] = ()
    datetimes: tuple[str, ...] = ()
    enums: tuple[str, ...] = ()
    bools: tuple[str, ...] = ()
    admin: bool = False
    body_optional: bool = False
    bulk: bool = False  # the body is a list of rows; field mutations go into the last row

    def with_field(self, field: str, value: Any) -> Any:
        if self.bulk:
            return [*self.valid, {**self.valid[-1], "email": "row-two@example.com", field: value}]
        return {**self.valid, field: value}


ROUTES = [
    Route(
        "campaign-create",
        "POST",
        "/api/v1/campaigns",
        {"name": "Fresh campaign"},
        strings=("name", "description"),
        datetimes=("starts_at", "ends_at"),
    ),
    Route(
        "campaign-update",
        "PATCH",
        "/api/v1/campaigns/{campaign}",
        {"name": "Renamed campaign"},
        strings=("name", "description"),
        datetimes=("starts_at", "ends_at"),
    ),
    Route(
        "group-create",
        "POST",
        "/api/v1/campaigns/{campaign}/groups",
        {"name": "Arm B"},
        strings=("name", "description"),
    ),
    Route("group-update", "PATCH", "/api/v1/groups/{group}", {"name": "Arm C"}, strings=("name", "description")),
    Route(
        "contact-create",
        "POST",
        "/api/v1/groups/{group}/contacts",
        {"email": "new@example.com", "name": "New"},
        strings=("email", "name"),
        datetimes=("scheduled_at", "sent_at"),
        enums=("status",),
    ),
    Route(
        "contact-bulk",
        "POST",
        "/api/v1/groups/{group}/contacts",
        [{"email": "row-one@example.com", "name": "Row one"}],
        strings=("email", "name"),
        datetimes=("scheduled_at", "sent_at"),
        enums=("status",),
        bulk=True,
    ),
    Route(
        "contact-update",
        "PATCH",
        "/api/v1/contacts/{contact}",
        {"name": "Renamed"},
        strings=("email", "name"),
        ints=("group_id",),
        datetimes=("scheduled_at", "sent_at"),
        enums=("status",),
    ),
    Route(
        "pixel-create", "POST", "/api/v1/contacts/{contact}/pixels", {"number": 7}, ints=("number",), body_optional=True
    ),
    Route("pixel-update", "PATCH", "/api/v1/pixels/{pixel}", {"number": 8}, ints=("number",)),
    Route(
        "opening-create",
        "POST",
        "/api/v1/pixels/{pixel}/openings",
        {"client": "browser", "ip": "203.0.113.7"},
        strings=("ip", "user_agent", "event_id"),
        datetimes=("opened_at",),
        enums=("client",),
    ),
    Route(
        "opening-update",
        "PATCH",
        "/api/v1/openings/{opening}",
        {"client": "bot"},
        strings=("ip", "user_agent"),
        datetimes=("opened_at",),
        enums=("client",),
    ),
    Route(
        "link-create",
        "POST",
        "/api/v1/campaigns/{campaign}/links",
        {"url": "https://example.com/landing-2", "name": "Landing"},
        strings=("url", "name"),
    ),
    Route("link-update", "PATCH", "/api/v1/links/{link}", {"name": "Renamed link"}, strings=("url", "name")),
    Route(
        "user-create",
        "POST",
        "/api/v1/users",
        {"username": "newbie", "email": "newbie@example.com", "password": "a-long-enough-password"},
        strings=("username", "email", "password"),
        bools=("is_admin",),
        admin=True,
    ),
    Route(
        "user-update",
        "PATCH",
        "/api/v1/users/{user}",
        {"email": "alice.new@example.com"},
        strings=("username", "email", "password"),
        bools=("is_admin", "is_active"),
        admin=True,
    ),
]
ROUTE_IDS = [r.name for r in ROUTES]


def test_every_body_route_here_is_in_the_shared_route_table() -> None:
    assert {(r.method, r.path) for r in ROUTES} <= {(call.method, call.template) for call in API_CALLS}


@dataclass
class Ctx:
    ids: dict[str, int]
    headers: dict[str, str]
    admin_headers: dict[str, str]

    def url(self, route: Route) -> str:
        return route.path.format(**self.ids)

    def auth(self, route: Route, content_type: str | None = "application/json") -> dict[str, str]:
        result = dict(self.admin_headers if route.admin else self.headers)
        if content_type is not None:
            result["content-type"] = content_type
        return result


@pytest.fixture
def ctx(tree: dict[str, Any], user: User, headers: dict[str, str], admin_headers: dict[str, str]) -> Ctx:
    ids = {name: obj.id for name, obj in tree.items()}
    ids["user"] = user.id
    return Ctx(ids=ids, headers=headers, admin_headers=admin_headers)


def _send(client: Any, ctx: Ctx, route: Route, raw: bytes, content_type: str | None = "application/json") -> Any:
    return client.request(route.method, ctx.url(route), content=raw, headers=ctx.auth(route, content_type))


def _raw_with(route: Route, field: str, json_fragment: str) -> bytes:
    """The route's valid body with `field` set to a raw JSON fragment (e.g. a lone surrogate)."""
    text = json.dumps(route.with_field(field, PLACEHOLDER))
    return text.replace(json.dumps(PLACEHOLDER), json_fragment).encode()


def _rejected(client: Any, engine: Engine, ctx: Ctx, route: Route, raw: bytes, **kw: Any) -> dict[str, Any]:
    statuses = kw.pop("statuses", (422,))
    before = _snapshot(engine)
    response = _send(client, ctx, route, raw, **kw)
    body = assert_client_error(response, statuses)
    assert _snapshot(engine) == before, "a rejected request changed the database"
    return body


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
            if route.name != "contact-update":
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


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_huge_body_of_many_fields_is_rejected(client, engine: Engine, ctx: Ctx, route: Route) -> None:
    fields = {f"f{i}": "x" * 100 for i in range(10_000)}
    raw = json.dumps([{**route.valid[0], **fields}] if route.bulk else {**route.valid, **fields}).encode()
    body = _rejected(client, engine, ctx, route, raw)
    assert len(json.dumps(body)) < 2 * MB


# Semantic rejections that must not leave a partial write.


def test_contact_update_to_group_of_another_campaign_is_422(client, engine: Engine, db: Session, ctx: Ctx) -> None:
    other_campaign = factories.make_campaign(db, db.get(User, ctx.ids["user"]))
    foreign_group = factories.make_group(db, other_campaign)
    route = next(r for r in ROUTES if r.name == "contact-update")
    for group_id in (foreign_group.id, 2**63 - 1):
        raw = json.dumps({"name": "should not stick", "group_id": group_id}).encode()
        _rejected(client, engine, ctx, route, raw)


def test_campaign_update_with_dates_out_of_order_changes_nothing(client, engine: Engine, ctx: Ctx) -> None:
    route = next(r for r in ROUTES if r.name == "campaign-update")
    raw = json.dumps(
        {"name": "should not stick", "starts_at": "2026-05-02T00:00:00Z", "ends_at": "2026-05-01T00:00:00Z"}
    ).encode()
    _rejected(client, engine, ctx, route, raw)


def test_bulk_with_one_bad_row_among_many_writes_nothing(client, engine: Engine, ctx: Ctx) -> None:
    route = next(r for r in ROUTES if r.name == "contact-bulk")
    rows: list[dict[str, Any]] = [{"email": f"bulk{i}@example.com"} for i in range(2000)]
    rows[1500] = {"email": "not-an-email"}
    before = _snapshot(engine)
    body = assert_error(_send(client, ctx, route, json.dumps(rows).encode()), 422, "validation_error")
    assert [item["loc"] for item in body["detail"]] == [["body", 1500, "email"]]
    assert _snapshot(engine) == before


@pytest.mark.parametrize(
    "rows",
    [
        pytest.param(
            [{"email": "dup@example.com"}, {"email": "other@example.com"}, {"email": "dup@example.com"}],
            id="in-request",
        ),
        pytest.param([{"email": "fresh@example.com"}, {"email": "EXISTING@example.com"}], id="already-in-group"),
    ],
)
def test_bulk_with_duplicate_writes_nothing(client, engine: Engine, db: Session, ctx: Ctx, rows: list[Any]) -> None:
    factories.make_contact(db, db.get(Group, ctx.ids["group"]), email="existing@example.com")
    route = next(r for r in ROUTES if r.name == "contact-bulk")
    before = _snapshot(engine)
    body = assert_error(_send(client, ctx, route, json.dumps(rows).encode()), 409, "conflict")
    assert body["detail"][0]["loc"][:2] == ["body", len(rows) - 1]
    assert _snapshot(engine) == before


def test_bulk_over_10000_rows_is_422(client, engine: Engine, ctx: Ctx) -> None:
    route = next(r for r in ROUTES if r.name == "contact-bulk")
    rows = [{"email": f"c{i}@example.com"} for i in range(10_001)]
    _rejected(client, engine, ctx, route, json.dumps(rows).encode())


@pytest.mark.parametrize(
    "rows",
    [
        pytest.param([{"email": "ok@example.com"}, "not an object"], id="string-row"),
        pytest.param([{"email": "ok@example.com"}, None], id="null-row"),
        pytest.param([{"email": "ok@example.com"}, [{"email": "nested@example.com"}]], id="nested-list"),
    ],
)
def test_bulk_with_non_object_row_is_422(client, engine: Engine, ctx: Ctx, rows: list[Any]) -> None:
    route = next(r for r in ROUTES if r.name == "contact-bulk")
    body = _rejected(client, engine, ctx, route, json.dumps(rows).encode())
    assert body["detail"][0]["loc"][:2] == ["body", 1]


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
}


def _headers_for(ctx: Ctx, path: str) -> dict[str, str]:
    return ctx.admin_headers if path.startswith("/api/v1/users") else ctx.headers


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


# SQL-looking strings: stored verbatim, returned as-is, tables intact.

SQL_STRINGS = [
    "'; DROP TABLE campaigns; --",
    "Robert'); DROP TABLE contacts;--",
    "1' OR '1'='1",
    '" OR ""="',
    "x'; DELETE FROM users WHERE '1'='1",
    "%_\\%\\_ LIKE '%'",
    "`users`; TRUNCATE `groups`",
    "\\'; SELECT SLEEP(5); --",
    "0x27 UNION SELECT hashed_password FROM users --",
]

# (route name, field, getter path) of free-text fields that store what they are given.
TEXT_FIELDS = [
    ("campaign-create", "name", "/api/v1/campaigns/{}"),
    ("campaign-create", "description", "/api/v1/campaigns/{}"),
    ("campaign-update", "description", "/api/v1/campaigns/{}"),
    ("group-create", "name", "/api/v1/groups/{}"),
    ("group-update", "description", "/api/v1/groups/{}"),
    ("contact-create", "name", "/api/v1/contacts/{}"),
    ("contact-update", "name", "/api/v1/contacts/{}"),
    ("opening-create", "user_agent", "/api/v1/openings/{}"),
    ("opening-update", "user_agent", "/api/v1/openings/{}"),
    ("link-create", "name", "/api/v1/links/{}"),
    ("link-update", "name", "/api/v1/links/{}"),
]


def _store_and_read_back(client: Any, ctx: Ctx, route_name: str, field: str, getter: str, value: str) -> None:
    route = next(r for r in ROUTES if r.name == route_name)
    response = _send(client, ctx, route, json.dumps(route.with_field(field, value)).encode())
    assert response.status_code in (200, 201), response.text
    created = response.json()
    assert created[field] == value
    fetched = client.get(getter.format(created["id"]), headers=ctx.headers)
    assert fetched.status_code == 200
    assert fetched.json()[field] == value


def _all_tables_present(engine: Engine) -> None:
    names = set(inspect(engine).get_table_names())
    assert {t.name for t in Base.metadata.sorted_tables} <= names
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(User)) == 2
        assert conn.scalar(select(func.count()).select_from(Campaign)) >= 1
        assert conn.scalar(select(func.count()).select_from(Contact)) >= 1


@pytest.mark.parametrize(("route_name", "field", "getter"), TEXT_FIELDS, ids=[f"{r}-{f}" for r, f, _ in TEXT_FIELDS])
@pytest.mark.parametrize("value", SQL_STRINGS)
def test_sql_looking_strings_are_stored_verbatim(
    client, engine: Engine, ctx: Ctx, route_name: str, field: str, getter: str, value: str
) -> None:
    _store_and_read_back(client, ctx, route_name, field, getter, value)
    _all_tables_present(engine)


def test_sql_looking_strings_in_email_and_url_and_event_id(client, engine: Engine, ctx: Ctx) -> None:
    contact = client.post(
        f"/api/v1/groups/{ctx.ids['group']}/contacts",
        json={"email": "o'brien--@example.com", "name": "'; DROP TABLE contacts; --"},
        headers=ctx.headers,
    )
    assert contact.status_code == 201, contact.text
    assert contact.json()["email"] == "o'brien--@example.com"
    url = "https://example.com/?q=%27%3B%20DROP%20TABLE%20links%3B%20--&a='1'"
    link = client.post(f"/api/v1/campaigns/{ctx.ids['campaign']}/links", json={"url": url}, headers=ctx.headers)
    assert link.status_code == 201, link.text
    stored_url = _read(engine, select(Link.url).where(Link.id == link.json()["id"]))
    assert stored_url == link.json()["url"]
    assert "DROP%20TABLE" in stored_url
    # event_id only allows [A-Za-z0-9_.:-]: SQL is refused, not escaped.
    route = next(r for r in ROUTES if r.name == "opening-create")
    _rejected(client, engine, ctx, route, json.dumps({"event_id": "x'; DROP TABLE openings; --"}).encode())
    _all_tables_present(engine)


def test_sql_looking_username_is_refused_and_users_intact(client, engine: Engine, ctx: Ctx) -> None:
    route = next(r for r in ROUTES if r.name == "user-create")
    for username in ("admin'--", "x'; DROP TABLE users; --", "' OR 1=1 --"):
        _rejected(client, engine, ctx, route, json.dumps({**route.valid, "username": username}).encode())
    _all_tables_present(engine)


# Unicode: stored and returned identically on both legs.

UNICODE_STRINGS = {
    "emoji": "Launch 🚀🎉 party 👍🏽👨‍👩‍👧‍👦",
    "hebrew-rtl": "מבצע אביב",
    "arabic-rtl": "تخفيضات الربيع",
    "rtl-override": "abc\u202edcba\u202c",
    "combining": "Cafe\u0301 Zu\u0308rich",
    "zalgo": "Z\u0334\u0321\u0322a\u0335\u034el\u0336g\u0337o",
    "astral-math": "\U0001d518\U0001d52b\U0001d526\U0001d520 \U0001d7d9\U0001d7da\U0001d7db",
    "cjk": "春季促销 春のセール 봄 세일",
    "zero-width": "a\u200bb\u200dc\ufeffd",
    "nbsp-inside": "a\u00a0b",
    "nul-inside": "before\x00after",
    "control-chars": "tab\tnew\nline\rbell\x07",
    "html": '<script>alert("x")</script>',
}


@pytest.mark.parametrize(("route_name", "field", "getter"), TEXT_FIELDS, ids=[f"{r}-{f}" for r, f, _ in TEXT_FIELDS])
@pytest.mark.parametrize("value", UNICODE_STRINGS.values(), ids=UNICODE_STRINGS.keys())
def test_unicode_is_stored_and_returned_identically(
    client, engine: Engine, ctx: Ctx, route_name: str, field: str, getter: str, value: str
) -> None:
    _store_and_read_back(client, ctx, route_name, field, getter, value)


def test_unicode_is_stored_verbatim_in_the_database(client, engine: Engine, ctx: Ctx) -> None:
    for label, value in UNICODE_STRINGS.items():
        response = client.post("/api/v1/campaigns", json={"name": label, "description": value}, headers=ctx.headers)
        assert response.status_code == 201, response.text
        stored = _read(engine, select(Campaign.description).where(Campaign.id == response.json()["id"]))
        assert stored == value, label


@pytest.mark.parametrize(
    ("char", "limit"),
    [("😀", 200), ("é", 200), ("e\u0301", 100), ("שׁ", 100)],
    ids=["emoji", "e-acute", "e-combining", "shin-dot"],
)
def test_length_limits_count_code_points_on_both_legs(client, engine: Engine, ctx: Ctx, char: str, limit: int) -> None:
    name = (char * limit)[:200]
    response = client.post("/api/v1/campaigns", json={"name": name}, headers=ctx.headers)
    assert response.status_code == 201, response.text
    assert response.json()["name"] == name
    assert _read(engine, select(Campaign.name).where(Campaign.id == response.json()["id"])) == name
    before = _read(engine, select(func.count()).select_from(Campaign))
    too_long = client.post("/api/v1/campaigns", json={"name": name + "x"}, headers=ctx.headers)
    assert_error(too_long, 422, "validation_error")
    assert _read(engine, select(func.count()).select_from(Campaign)) == before


def test_unicode_names_are_distinct_exactly_as_sent(client, engine: Engine, ctx: Ctx) -> None:
    """Binary comparison on both legs: no case, accent or normalisation folding."""
    url = f"/api/v1/campaigns/{ctx.ids['campaign']}/groups"
    names = ["é", "e\u0301", "E\u0301", "É", "a", "A", "ß", "ss", "😀", "😁", "x\x00", "x"]
    for name in names:
        response = client.post(url, json={"name": name}, headers=ctx.headers)
        assert response.status_code == 201, (name, response.text)
        assert response.json()["name"] == name
    for name in names:
        assert_error(client.post(url, json={"name": name}, headers=ctx.headers), 409, "conflict")
    stored = set(_read_all(engine, select(Group.name).where(Group.campaign_id == ctx.ids["campaign"])))
    assert set(names) <= stored


def test_unicode_emails_round_trip(client, engine: Engine, ctx: Ctx) -> None:
    url = f"/api/v1/groups/{ctx.ids['group']}/contacts"
    for email in ("josé@example.com", "用户@例子.广告", "ñandú@bücher.de"):
        response = client.post(url, json={"email": email}, headers=ctx.headers)
        assert response.status_code == 201, (email, response.text)
        stored = _read(engine, select(Contact.email).where(Contact.id == response.json()["id"]))
        assert stored == response.json()["email"]
        fetched = client.get(f"/api/v1/contacts/{response.json()['id']}", headers=ctx.headers)
        assert fetched.json()["email"] == stored


@pytest.mark.parametrize(
    ("route_name", "field"),
    [
        ("campaign-create", "name"),
        ("contact-create", "name"),
        ("contact-create", "email"),
        ("link-create", "url"),
        ("opening-create", "user_agent"),
        ("user-create", "email"),
    ],
)
def test_nul_in_validated_fields_never_500(client, engine: Engine, ctx: Ctx, route_name: str, field: str) -> None:
    """A NUL is refused (422, nothing written), stored and returned verbatim, or (URLs) percent-encoded."""
    route = next(r for r in ROUTES if r.name == route_name)
    value = {"email": "nul\x00@example.com", "url": "https://example.com/a\x00b"}.get(field, "nul\x00inside")
    before = _snapshot(engine)
    response = _send(client, ctx, route, json.dumps(route.with_field(field, value)).encode())
    if response.status_code == 422:
        assert_error(response, 422, "validation_error")
        assert _snapshot(engine) == before
        return
    assert response.status_code == 201, response.text
    expected = "https://example.com/a%00b" if field == "url" else value
    assert response.json()[field] == expected
    table = {"campaign-create": Campaign, "contact-create": Contact, "link-create": Link, "opening-create": Opening}
    model = table.get(route_name, User)
    assert _read(engine, select(getattr(model, field)).where(model.id == response.json()["id"])) == expected


def test_opening_rows_keep_exotic_user_agents(client, engine: Engine, ctx: Ctx) -> None:
    ua = "Mozilla/5.0 😀 \u202e'; DROP TABLE openings; --\x00"
    response = client.post(f"/api/v1/pixels/{ctx.ids['pixel']}/openings", json={"user_agent": ua}, headers=ctx.headers)
    assert response.status_code == 201, response.text
    assert _read(engine, select(Opening.user_agent).where(Opening.id == response.json()["id"])) == ua


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
