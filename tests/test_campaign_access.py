"""Campaigns and groups: every route needs a valid token; missing ids 404, malformed 422; another user's are 404 and untouched."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.orm import Session

from app.models import Campaign, Click, Contact, Group, Opening, User
from app.models.base import MAX_ID
from tests import factories
from tests.helpers import assert_error, count, reload
from tests.support.routes import routes_matching

CAMPAIGNS = "/api/v1/campaigns"
GROUPS = "/api/v1/groups"


def full_tree(db: Session, owner: User) -> dict[str, Any]:
    """make_tree plus a click (no factory for clicks) on the tree's link by its contact."""
    tree = factories.make_tree(db, owner)
    tree["click"] = factories.make_click(db, tree["link"], tree["contact"])
    return tree


# --- Authentication, missing ids, IDOR -----------------------------------------------------

ROUTES = routes_matching(
    r"/api/v1/campaigns(/\{campaign\}(/groups)?)?|/api/v1/groups/\{group\}"
)  # from the one route table (tests/support/routes.py)


def _call(client, method: str, path: str, headers: dict[str, str] | None = None, body: Any = None):
    if method in ("POST", "PATCH"):
        return client.request(method, path, headers=headers, json=body if body is not None else {"name": "New"})
    return client.request(method, path, headers=headers)


@pytest.mark.parametrize(("method", "template"), ROUTES)
@pytest.mark.parametrize("auth", [None, {"Authorization": "Bearer not-a-jwt"}])
def test_every_route_requires_a_valid_token(
    client, db: Session, tree: dict[str, Any], method: str, template: str, auth: dict[str, str] | None
) -> None:
    path = template.format(campaign=tree["campaign"].id, group=tree["group"].id)
    response = _call(client, method, path, auth)
    assert_error(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"
    assert count(db, Campaign) == 1
    assert count(db, Group) == 1
    assert reload(db, Campaign, tree["campaign"].id).name == tree["campaign"].name


@pytest.mark.parametrize(("method", "template"), [r for r in ROUTES if "{" in r[1]])
def test_missing_ids_are_404(client, db: Session, user: User, headers, method: str, template: str) -> None:
    assert_error(_call(client, method, template.format(campaign=987654, group=987654), headers), 404, "not_found")
    assert count(db, Group) == 0


@pytest.mark.parametrize("bad_id", ["0", "-1", str(MAX_ID + 1), "abc", "1.5"])
@pytest.mark.parametrize(("method", "template"), [r for r in ROUTES if "{" in r[1]])
def test_malformed_ids_are_422(client, headers, method: str, template: str, bad_id: str) -> None:
    assert_error(_call(client, method, template.format(campaign=bad_id, group=bad_id), headers), 422)


@pytest.mark.parametrize(("method", "template"), [r for r in ROUTES if "{" in r[1]])
def test_another_users_campaign_and_group_are_404_and_untouched(
    client, db: Session, user: User, other_headers, method: str, template: str
) -> None:
    tree = full_tree(db, user)
    campaign, group = tree["campaign"], tree["group"]
    before = (campaign.name, campaign.description, group.name)
    path = template.format(campaign=campaign.id, group=group.id)

    assert_error(_call(client, method, path, other_headers, {"name": "Hijacked"}), 404, "not_found")

    assert count(db, Campaign) == 1
    assert count(db, Group) == 1
    assert count(db, Contact) == 1
    assert count(db, Opening) == 1
    assert count(db, Click) == 1
    fresh_campaign = reload(db, Campaign, campaign.id)
    fresh_group = reload(db, Group, group.id)
    assert (fresh_campaign.name, fresh_campaign.description, fresh_group.name) == before
    assert fresh_campaign.owner_id == user.id


def test_other_users_list_does_not_show_my_campaigns(client, db: Session, user: User, other_headers) -> None:
    factories.make_campaign(db, user)
    assert client.get(CAMPAIGNS, headers=other_headers).json() == {
        "items": [],
        "total": 0,
        "limit": 50,
        "offset": 0,
    }
