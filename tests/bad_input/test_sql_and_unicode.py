"""SQL-looking and exotic Unicode text is stored and returned verbatim on both legs.

See tests/bad_input/conftest.py: never a 500, every rejection leaves every table as it was."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import Engine, func, inspect, select

from app.models import Base, Campaign, Contact, Group, Link, Opening, User
from tests.helpers import assert_error
from tests.support.bad_input import (
    ROUTES,
    Ctx,
    _read,
    _read_all,
    _rejected,
    _send,
    _snapshot,
)

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
        assert conn.execute(select(func.count()).select_from(Campaign)).scalar_one() >= 1
        assert conn.execute(select(func.count()).select_from(Contact)).scalar_one() >= 1


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
    table: dict[str, type[Campaign | Contact | Link | Opening | User]] = {
        "campaign-create": Campaign,
        "contact-create": Contact,
        "link-create": Link,
        "opening-create": Opening,
    }
    model = table.get(route_name, User)
    assert _read(engine, select(getattr(model, field)).where(model.id == response.json()["id"])) == expected


def test_opening_rows_keep_exotic_user_agents(client, engine: Engine, ctx: Ctx) -> None:
    ua = "Mozilla/5.0 😀 \u202e'; DROP TABLE openings; --\x00"
    response = client.post(f"/api/v1/pixels/{ctx.ids['pixel']}/openings", json={"user_agent": ua}, headers=ctx.headers)
    assert response.status_code == 201, response.text
    assert _read(engine, select(Opening.user_agent).where(Opening.id == response.json()["id"])) == ua
