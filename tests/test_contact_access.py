"""Contacts: every route needs a valid token; missing ids 404, malformed 422; another user's are 404 and untouched; admins see all."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.orm import Session

from app.models import Campaign, Contact, Group, Opening, Pixel, User
from app.models.base import MAX_ID
from tests import factories
from tests.helpers import assert_error, count, reload
from tests.support.contacts_api import CONTACTS, GROUPS, post_raw, url
from tests.support.routes import routes_matching


@pytest.fixture
def campaign(db: Session, user: User) -> Campaign:
    return factories.make_campaign(db, user)


@pytest.fixture
def group(db: Session, campaign: Campaign) -> Group:
    return factories.make_group(db, campaign, name="A")


# --- Authentication, missing ids, IDOR -----------------------------------------------------

ROUTES = routes_matching(
    r"/api/v1/groups/\{group\}/contacts|/api/v1/contacts/\{contact\}"
)  # from the one route table (tests/support/routes.py)


def _call(client, method: str, path: str, headers: dict[str, str] | None, body: Any = None):
    if method in ("POST", "PATCH"):
        if body is None:  # a valid body for the route
            bulk_patch = method == "PATCH" and path.endswith("/contacts")
            body = {"ids": [987654], "status": "sent"} if bulk_patch else {"email": "n@example.com"}
        return client.request(method, path, headers=headers, json=body)
    return client.request(method, path, headers=headers)


@pytest.mark.parametrize(("method", "template"), ROUTES)
@pytest.mark.parametrize("auth", [None, {"Authorization": "Bearer not-a-jwt"}])
def test_every_route_requires_a_valid_token(
    client, db: Session, tree: dict[str, Any], method: str, template: str, auth: dict[str, str] | None
) -> None:
    path = template.format(group=tree["group"].id, contact=tree["contact"].id)
    response = _call(client, method, path, auth)
    assert_error(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"
    assert count(db, Contact) == 1
    assert reload(db, Contact, tree["contact"].id).email == tree["contact"].email


def test_post_without_token_and_invalid_body_is_still_401(client, db: Session, group: Group) -> None:
    assert_error(post_raw(client, group, {}, b"{broken"), 401)


@pytest.mark.parametrize(("method", "template"), ROUTES)
def test_missing_ids_are_404(client, db: Session, user: User, headers, method: str, template: str) -> None:
    assert_error(_call(client, method, template.format(group=987654, contact=987654), headers), 404, "not_found")
    assert count(db, Contact) == 0


@pytest.mark.parametrize("bad_id", ["0", str(MAX_ID + 1), "abc"])
@pytest.mark.parametrize(("method", "template"), ROUTES)
def test_malformed_ids_are_422(client, headers, method: str, template: str, bad_id: str) -> None:
    assert_error(_call(client, method, template.format(group=bad_id, contact=bad_id), headers), 422)


@pytest.mark.parametrize(
    ("method", "template", "body"),
    [
        ("GET", GROUPS + "/{group}/contacts", None),
        ("POST", GROUPS + "/{group}/contacts", {"email": "intruder@example.com"}),
        ("POST", GROUPS + "/{group}/contacts", [{"email": "i1@example.com"}, {"email": "i2@example.com"}]),
        ("GET", CONTACTS + "/{contact}", None),
        ("PATCH", CONTACTS + "/{contact}", {"email": "intruder@example.com", "status": "failed"}),
        ("PATCH", CONTACTS + "/{contact}", {"group_id": "{own_group}"}),
        ("DELETE", CONTACTS + "/{contact}", None),
    ],
)
def test_another_users_group_and_contact_are_404_and_untouched(
    client, db: Session, user: User, other_user: User, other_headers, method: str, template: str, body: Any
) -> None:
    tree = factories.make_tree(db, user)
    contact = tree["contact"]
    own_group = factories.make_group(db, factories.make_campaign(db, other_user))
    if isinstance(body, dict) and body.get("group_id") == "{own_group}":
        body = {"group_id": own_group.id}
    path = template.format(group=tree["group"].id, contact=contact.id)

    assert_error(_call(client, method, path, other_headers, body), 404, "not_found")

    assert count(db, Contact) == 1
    assert count(db, Pixel) == 1
    assert count(db, Opening) == 1
    row = reload(db, Contact, contact.id)
    assert (row.email, row.status, row.group_id) == (contact.email, "scheduled", tree["group"].id)


def test_admin_can_read_and_add_contacts_in_any_group(client, db: Session, group: Group, admin_headers) -> None:
    existing = factories.make_contact(db, group)
    assert client.get(f"{CONTACTS}/{existing.id}", headers=admin_headers).status_code == 200
    response = client.post(url(group), headers=admin_headers, json={"email": "by-admin@example.com"})
    assert response.status_code == 201
    assert count(db, Contact, Contact.group_id == group.id) == 2
