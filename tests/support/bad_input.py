"""Shared pieces of the hostile-input tests (tests/bad_input/): the write routes and their field
types (`Route`, `ROUTES`), all rows of all tables (`_snapshot`), and sending a raw body and
asserting it is refused with nothing written (`_rejected`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select

from app.models import Base

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
        "api-key-create",
        "POST",
        "/api/v1/api-keys",
        {"name": "campaign tool"},
        strings=("name",),
        datetimes=("expires_at",),
    ),
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
        "render",
        "POST",
        "/api/v1/campaigns/{campaign}/render",
        {"html": '<p><a href="https://example.com/rendered">x</a></p>', "text": "https://example.com/t"},
        strings=("html",),  # (`text` takes 2 MB: its bad types are in tests/test_render.py)
        ints=("group_id", "after_contact_id"),
        datetimes=("scheduled_before", "scheduled_after"),
        enums=("status",),
        bools=("track_opens", "track_clicks", "trap_link"),
    ),
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


def _headers_for(ctx: Ctx, path: str) -> dict[str, str]:
    return ctx.admin_headers if path.startswith("/api/v1/users") else ctx.headers
