"""BOLA/IDOR: every /api/v1 route that takes the id of an owned object, called by another user.

User A owns a full tree (campaign, group, contact, pixel, opening, link). User B calls every
route with A's ids and must get exactly what a non-existent id gets (404 `not_found`) with no
row of any table changed. The same calls succeed for A and for an admin, so the 404s mean
"not yours", not "broken request". The table is checked against the app's routes, so a new
route that takes an owned id cannot be added without an entry here.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Base, Contact, User
from app.settings import Settings
from tests import factories
from tests.helpers import assert_error
from tests.support.routes import ApiCall, owned_calls

MISSING_ID = 987_654_321

# (method, path template, JSON body, status for the owner): the shared table's owned routes.
ROUTES: list[ApiCall] = owned_calls()

OWNED_PARAMS = {"campaign_id", "group_id", "contact_id", "pixel_id", "opening_id", "link_id"}


def _route_id(route: ApiCall) -> str:
    method, path, body = route.method, route.path, route.body
    suffix = "-list" if isinstance(body, list) else ("-nobody" if method == "POST" and body is None else "")
    return f"{method} {path.removeprefix('/api/v1')}{suffix}"


CASES = [pytest.param(route, id=_route_id(route)) for route in ROUTES]


def ids_of(tree: dict[str, Any]) -> dict[str, int]:
    return {name: obj.id for name, obj in tree.items()}


def call(client: Any, route: ApiCall, ids: dict[str, int], headers: dict[str, str]) -> Any:
    method, template, body = route.method, route.path, route.body_for(ids)
    kwargs: dict[str, Any] = {"headers": headers}
    if body is not None:
        kwargs["json"] = body
    return client.request(method, template.format(**ids), **kwargs)


def snapshot(db: Session) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (not only counts), read in a fresh transaction."""
    db.rollback()  # MariaDB is REPEATABLE READ: never compare inside one old snapshot
    tables = {}
    for table in Base.metadata.sorted_tables:
        rows = db.execute(select(table).order_by(*table.primary_key.columns)).all()
        tables[table.name] = [tuple(row) for row in rows]
    db.rollback()
    return tables


@pytest.fixture
def attacker(db: Session, other_user: User) -> User:
    # B owns a tree of their own, so B is a real customer with valid ids of every kind.
    factories.make_tree(db, other_user)
    return other_user


def test_route_table_covers_every_route_with_an_owned_id(app: FastAPI) -> None:
    covered = {(route.method, route.template) for route in ROUTES}
    names = {"campaign", "group", "contact", "pixel", "opening", "link"}
    expected: set[tuple[str, str]] = set()
    for path, operations in app.openapi()["paths"].items():
        params = set(re.findall(r"{(\w+)}", path))
        if not path.startswith("/api/v1/") or not params & OWNED_PARAMS:
            continue
        generic = re.sub(r"{(\w+)_id}", lambda m: "{" + m.group(1) + "}", path)
        assert set(re.findall(r"{(\w+)}", generic)) <= names, path
        expected.update((method.upper(), generic) for method in operations)
    assert expected, "no owned routes found"
    assert expected - covered == set(), "routes missing from ROUTES"
    assert covered - expected == set(), "ROUTES lists routes that do not exist"


@pytest.mark.parametrize("route", CASES)
def test_other_user_gets_404_and_changes_nothing(
    client, db: Session, tree: dict[str, Any], attacker: User, other_headers: dict[str, str], route: Any
) -> None:
    ids = ids_of(tree)
    before = snapshot(db)
    response = call(client, route, ids, other_headers)
    body = assert_error(response, 404, "not_found")
    assert snapshot(db) == before

    # Indistinguishable from an id that does not exist at all: no existence oracle.
    missing = dict.fromkeys(tree, MISSING_ID)
    if "contact_id={contact}" in route[1]:
        missing["contact"] = tree["contact"].id  # only the link is unknown
    assert call(client, route, missing, other_headers).json() == body


@pytest.mark.parametrize("route", CASES)
def test_owner_succeeds(client, db: Session, tree: dict[str, Any], headers: dict[str, str], route: Any) -> None:
    ids = ids_of(tree)
    before = snapshot(db)
    response = call(client, route, ids, headers)
    assert response.status_code == route[3], response.text
    if route[0] == "GET":
        assert snapshot(db) == before
    else:
        assert snapshot(db) != before
    if route[0] == "DELETE":
        assert_error(call(client, ApiCall("GET", route.path, None, 200), ids, headers), 404, "not_found")


@pytest.mark.parametrize("route", CASES)
def test_admin_succeeds(
    client, db: Session, tree: dict[str, Any], admin: User, admin_headers: dict[str, str], route: Any
) -> None:
    ids = ids_of(tree)
    before = snapshot(db)
    response = call(client, route, ids, admin_headers)
    assert response.status_code == route[3], response.text
    if route[0] == "GET":
        assert snapshot(db) == before
    else:
        assert snapshot(db) != before


def test_lists_of_the_other_user_do_not_show_a_objects(
    client, tree: dict[str, Any], attacker: User, other_headers: dict[str, str]
) -> None:
    page = client.get("/api/v1/campaigns", headers=other_headers).json()
    assert tree["campaign"].id not in {item["id"] for item in page["items"]}
    assert page["total"] == 1


def test_tracked_url_of_own_link_with_a_contact_of_a_is_404(
    client, db: Session, settings: Settings, tree: dict[str, Any], other_user: User, other_headers: dict[str, str]
) -> None:
    b_tree = factories.make_tree(db, other_user)
    response = client.get(
        f"/api/v1/links/{b_tree['link'].id}/url", params={"contact_id": tree["contact"].id}, headers=other_headers
    )
    body = assert_error(response, 404, "not_found")
    unknown = client.get(
        f"/api/v1/links/{b_tree['link'].id}/url", params={"contact_id": MISSING_ID}, headers=other_headers
    )
    assert unknown.json() == body  # A's contact looks exactly like a contact that does not exist
    own = client.get(
        f"/api/v1/links/{b_tree['link'].id}/url", params={"contact_id": b_tree["contact"].id}, headers=other_headers
    )
    assert own.status_code == 200
    assert own.json()["url"].startswith(settings.public_base_url + "/c/")


def test_moving_own_contact_into_a_group_of_a_is_refused(
    client, db: Session, tree: dict[str, Any], other_user: User, other_headers: dict[str, str]
) -> None:
    b_tree = factories.make_tree(db, other_user)
    before = snapshot(db)
    response = client.patch(
        f"/api/v1/contacts/{b_tree['contact'].id}", json={"group_id": tree["group"].id}, headers=other_headers
    )
    assert response.status_code in (404, 422), response.text
    assert_error(response, response.status_code)
    assert snapshot(db) == before
    db.expire_all()
    assert db.get_one(Contact, b_tree["contact"].id).group_id == b_tree["group"].id
