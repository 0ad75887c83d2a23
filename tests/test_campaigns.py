"""Campaigns and their A/B groups: /api/v1/campaigns[/{id}[/groups]] and /api/v1/groups/{id}."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.orm import Session

from app.models import Campaign, Click, Contact, Group, Link, Opening, Pixel, User
from tests import factories
from tests.helpers import assert_error, count, parse_ts, reload

CAMPAIGNS = "/api/v1/campaigns"
GROUPS = "/api/v1/groups"


def full_tree(db: Session, owner: User) -> dict[str, Any]:
    """make_tree plus a click (no factory for clicks) on the tree's link by its contact."""
    tree = factories.make_tree(db, owner)
    tree["click"] = factories.make_click(db, tree["link"], tree["contact"])
    return tree


# --- Campaigns: create / read ----------------------------------------------------------------


def test_create_campaign_returns_201_and_stores_utc(client, db: Session, user: User, headers) -> None:
    response = client.post(
        CAMPAIGNS,
        headers=headers,
        json={
            "name": "  Spring sale  ",
            "description": "Offers",
            "starts_at": "2030-01-01T10:00:00+02:00",
            "ends_at": "2030-02-01T00:00:00",  # naive: taken as UTC
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {
        "id",
        "owner_id",
        "name",
        "description",
        "starts_at",
        "ends_at",
        "tracking_default",
        "attribution_default",
        "conversion_origins",
        "created_at",
        "updated_at",
    }
    assert body["attribution_default"] is False
    assert body["conversion_origins"] == []
    assert body["owner_id"] == user.id
    assert body["name"] == "Spring sale"
    assert body["description"] == "Offers"
    assert body["starts_at"] == "2030-01-01T08:00:00+00:00"
    assert body["ends_at"] == "2030-02-01T00:00:00+00:00"
    created = parse_ts(body["created_at"])
    assert abs(created - datetime.now(UTC)) < timedelta(minutes=1)
    parse_ts(body["updated_at"])

    row = reload(db, Campaign, body["id"])
    assert row.owner_id == user.id
    assert row.name == "Spring sale"
    assert row.starts_at == datetime(2030, 1, 1, 8, tzinfo=UTC)
    assert row.ends_at == datetime(2030, 2, 1, tzinfo=UTC)


def test_create_campaign_minimal_body_defaults_to_null(client, db: Session, headers) -> None:
    response = client.post(CAMPAIGNS, headers=headers, json={"name": "Only a name"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["description"] is None
    assert body["starts_at"] is None
    assert body["ends_at"] is None
    assert count(db, Campaign) == 1


def test_create_campaign_keeps_microseconds_and_long_unicode_name(client, db: Session, headers) -> None:
    name = "\N{ROCKET}" * 200  # 200 four-byte characters fit the 200-character column on both backends
    response = client.post(CAMPAIGNS, headers=headers, json={"name": name, "starts_at": "2030-05-06T07:08:09.123456Z"})
    assert response.status_code == 201, response.text
    assert response.json()["name"] == name
    assert response.json()["starts_at"] == "2030-05-06T07:08:09.123456+00:00"
    fetched = client.get(f"{CAMPAIGNS}/{response.json()['id']}", headers=headers).json()
    assert fetched["name"] == name
    assert fetched["starts_at"] == "2030-05-06T07:08:09.123456+00:00"


@pytest.mark.parametrize(
    ("starts_at", "ends_at"),
    [
        ("2030-01-02T00:00:00Z", "2030-01-02T00:00:00Z"),  # equal
        ("2030-01-02T00:00:00Z", "2030-01-01T00:00:00Z"),  # before
        ("2030-01-02T00:00:00Z", "2030-01-02T01:00:00+02:00"),  # 23:00 UTC the day before
    ],
)
def test_create_campaign_ends_at_not_after_starts_at_is_422(
    client, db: Session, headers, starts_at: str, ends_at: str
) -> None:
    response = client.post(CAMPAIGNS, headers=headers, json={"name": "x", "starts_at": starts_at, "ends_at": ends_at})
    assert_error(response, 422, "validation_error")
    assert count(db, Campaign) == 0


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "   "},
        {"name": None},
        {"name": "x" * 201},
        {"name": 123},
        {"name": "x", "description": "d" * 2001},
        {"name": "x", "owner_id": 999},
        {"name": "x", "is_admin": True},
        {"name": "x", "id": 42},
        {"name": "x", "created_at": "2030-01-01T00:00:00Z"},
        {"name": "x", "starts_at": "not a date"},
        {"name": "x", "starts_at": "0001-01-01T00:00:00"},
        {"name": "x", "starts_at": "1969-12-31T23:59:59Z"},
        {"name": "x", "starts_at": "1970-01-01T00:30:00+01:00"},  # 1969 in UTC
        {"name": "x", "ends_at": "9999-12-31T23:59:59Z"},
        {"name": "x", "ends_at": "9998-12-31T23:00:00-02:00"},  # 9999 in UTC
        {"name": "x", "ends_at": "10000-01-01T00:00:00Z"},
        {"name": "x", "ends_at": 1e20},
        [],
        "a campaign",
        None,
    ],
)
def test_create_campaign_invalid_body_is_422_and_writes_nothing(client, db: Session, headers, body: Any) -> None:
    assert_error(client.post(CAMPAIGNS, headers=headers, json=body), 422, "validation_error")
    assert count(db, Campaign) == 0


def test_create_campaign_invalid_json_is_an_error_not_500(client, db: Session, headers) -> None:
    response = client.post(CAMPAIGNS, headers={**headers, "Content-Type": "application/json"}, content=b'{"name": "x",')
    assert_error(response, 422)
    assert count(db, Campaign) == 0


def test_create_campaign_owner_id_cannot_be_chosen(client, db: Session, headers, other_user: User) -> None:
    response = client.post(CAMPAIGNS, headers=headers, json={"name": "mine", "owner_id": other_user.id})
    body = assert_error(response, 422, "validation_error")
    assert any(item["loc"] == ["body", "owner_id"] for item in body["detail"])
    assert count(db, Campaign, Campaign.owner_id == other_user.id) == 0


def test_get_campaign(client, db: Session, user: User, headers) -> None:
    campaign = factories.make_campaign(
        db, user, name="Fetched", starts_at=datetime(2030, 3, 1, 12, tzinfo=UTC), description="about"
    )
    response = client.get(f"{CAMPAIGNS}/{campaign.id}", headers=headers)
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == campaign.id
    assert body["name"] == "Fetched"
    assert body["description"] == "about"
    assert body["starts_at"] == "2030-03-01T12:00:00+00:00"
    assert body["ends_at"] is None
    assert body["owner_id"] == user.id


# --- Campaigns: list and pagination --------------------------------------------------------


def test_list_campaigns_is_paginated_and_scoped_to_owner(
    client, db: Session, user: User, other_user: User, headers
) -> None:
    mine = [factories.make_campaign(db, user, name=f"mine {i}") for i in range(3)]
    factories.make_campaign(db, other_user, name="theirs")

    response = client.get(CAMPAIGNS, headers=headers)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"items", "total", "limit", "offset"}
    assert body["total"] == 3
    assert body["limit"] == 50
    assert body["offset"] == 0
    assert [item["id"] for item in body["items"]] == [c.id for c in mine]

    page = client.get(CAMPAIGNS, headers=headers, params={"limit": 2, "offset": 1}).json()
    assert page["total"] == 3
    assert page["limit"] == 2
    assert page["offset"] == 1
    assert [item["id"] for item in page["items"]] == [mine[1].id, mine[2].id]


def test_list_campaigns_offset_beyond_total_is_empty(client, db: Session, user: User, headers) -> None:
    factories.make_campaign(db, user)
    factories.make_campaign(db, user)
    body = client.get(CAMPAIGNS, headers=headers, params={"offset": 10}).json()
    assert body == {"items": [], "total": 2, "limit": 50, "offset": 10}


def test_list_campaigns_limit_500_is_accepted(client, db: Session, user: User, headers) -> None:
    factories.make_campaign(db, user)
    response = client.get(CAMPAIGNS, headers=headers, params={"limit": 500})
    assert response.status_code == 200
    assert response.json()["limit"] == 500
    assert response.json()["total"] == 1


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 501}, {"limit": -1}, {"offset": -1}, {"limit": "ten"}, {"offset": 2**70}],
)
def test_list_pagination_bounds_are_422(client, db: Session, user: User, headers, params: dict[str, Any]) -> None:
    campaign = factories.make_campaign(db, user)
    assert_error(client.get(CAMPAIGNS, headers=headers, params=params), 422, "validation_error")
    assert_error(
        client.get(f"{CAMPAIGNS}/{campaign.id}/groups", headers=headers, params=params), 422, "validation_error"
    )


def test_admin_sees_every_campaign(client, db: Session, user: User, other_user: User, admin_headers) -> None:
    a = factories.make_campaign(db, user)
    b = factories.make_campaign(db, other_user)
    body = client.get(CAMPAIGNS, headers=admin_headers).json()
    assert body["total"] == 2
    assert {item["id"] for item in body["items"]} == {a.id, b.id}
    response = client.get(f"{CAMPAIGNS}/{b.id}", headers=admin_headers)
    assert response.status_code == 200
    assert response.json()["owner_id"] == other_user.id
    groups = client.get(f"{CAMPAIGNS}/{b.id}/groups", headers=admin_headers)
    assert groups.status_code == 200


def test_admin_can_change_and_delete_another_users_campaign(
    client, db: Session, other_user: User, admin_headers
) -> None:
    campaign = factories.make_campaign(db, other_user, name="before")
    response = client.patch(f"{CAMPAIGNS}/{campaign.id}", headers=admin_headers, json={"name": "after"})
    assert response.status_code == 200
    assert response.json()["owner_id"] == other_user.id  # ownership unchanged
    assert reload(db, Campaign, campaign.id).name == "after"
    assert client.delete(f"{CAMPAIGNS}/{campaign.id}", headers=admin_headers).status_code == 204
    assert count(db, Campaign) == 0


# --- Campaigns: PATCH ----------------------------------------------------------------------


def test_patch_campaign_changes_only_sent_fields(client, db: Session, user: User, headers) -> None:
    campaign = factories.make_campaign(
        db,
        user,
        name="Original",
        description="keep me",
        starts_at=datetime(2030, 1, 1, tzinfo=UTC),
        ends_at=datetime(2030, 2, 1, tzinfo=UTC),
    )
    before = client.get(f"{CAMPAIGNS}/{campaign.id}", headers=headers).json()

    response = client.patch(f"{CAMPAIGNS}/{campaign.id}", headers=headers, json={"name": "Renamed"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["name"] == "Renamed"
    for field in ("id", "owner_id", "description", "starts_at", "ends_at", "created_at"):
        assert body[field] == before[field], field
    assert parse_ts(body["updated_at"]) >= parse_ts(before["updated_at"])

    row = reload(db, Campaign, campaign.id)
    assert row.name == "Renamed"
    assert row.description == "keep me"
    assert row.starts_at == datetime(2030, 1, 1, tzinfo=UTC)
    assert row.ends_at == datetime(2030, 2, 1, tzinfo=UTC)


def test_patch_campaign_can_clear_nullable_fields_and_empty_body_changes_nothing(
    client, db: Session, user: User, headers
) -> None:
    campaign = factories.make_campaign(db, user, name="n", description="d", starts_at=datetime(2030, 1, 1, tzinfo=UTC))
    response = client.patch(f"{CAMPAIGNS}/{campaign.id}", headers=headers, json={})
    assert response.status_code == 200
    assert response.json()["description"] == "d"

    response = client.patch(
        f"{CAMPAIGNS}/{campaign.id}", headers=headers, json={"description": None, "starts_at": None}
    )
    assert response.status_code == 200
    assert response.json()["description"] is None
    assert response.json()["starts_at"] is None
    row = reload(db, Campaign, campaign.id)
    assert row.description is None
    assert row.starts_at is None
    assert row.name == "n"


def test_patch_campaign_naive_datetime_is_utc(client, db: Session, user: User, headers) -> None:
    campaign = factories.make_campaign(db, user)
    response = client.patch(
        f"{CAMPAIGNS}/{campaign.id}",
        headers=headers,
        json={"starts_at": "2031-06-01T09:30:00", "ends_at": "2031-06-01T12:00:00-03:00"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["starts_at"] == "2031-06-01T09:30:00+00:00"
    assert response.json()["ends_at"] == "2031-06-01T15:00:00+00:00"
    row = reload(db, Campaign, campaign.id)
    assert row.starts_at == datetime(2031, 6, 1, 9, 30, tzinfo=UTC)
    assert row.ends_at == datetime(2031, 6, 1, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    "body",
    [
        {"ends_at": "2030-01-10T00:00:00Z"},  # equal to the stored starts_at
        {"ends_at": "2030-01-05T00:00:00Z"},  # before the stored starts_at
        {"starts_at": "2030-02-01T00:00:00Z"},  # equal to the stored ends_at
        {"starts_at": "2030-03-01T00:00:00Z"},  # after the stored ends_at
        {"starts_at": "2030-05-01T00:00:00Z", "ends_at": "2030-04-01T00:00:00Z"},  # both sent, wrong order
    ],
)
def test_patch_campaign_dates_checked_against_stored_values(
    client, db: Session, user: User, headers, body: dict[str, Any]
) -> None:
    campaign = factories.make_campaign(
        db, user, starts_at=datetime(2030, 1, 10, tzinfo=UTC), ends_at=datetime(2030, 2, 1, tzinfo=UTC)
    )
    response = assert_error(client.patch(f"{CAMPAIGNS}/{campaign.id}", headers=headers, json=body), 422)
    assert response["code"] == "validation_error"
    assert response["detail"][0]["loc"] == ["body", "ends_at"]
    row = reload(db, Campaign, campaign.id)
    assert row.starts_at == datetime(2030, 1, 10, tzinfo=UTC)
    assert row.ends_at == datetime(2030, 2, 1, tzinfo=UTC)


def test_patch_campaign_moving_both_dates_together_is_allowed(client, db: Session, user: User, headers) -> None:
    campaign = factories.make_campaign(
        db, user, starts_at=datetime(2030, 1, 10, tzinfo=UTC), ends_at=datetime(2030, 2, 1, tzinfo=UTC)
    )
    response = client.patch(
        f"{CAMPAIGNS}/{campaign.id}",
        headers=headers,
        json={"starts_at": "2030-06-01T00:00:00Z", "ends_at": "2030-07-01T00:00:00Z"},
    )
    assert response.status_code == 200
    row = reload(db, Campaign, campaign.id)
    assert row.starts_at == datetime(2030, 6, 1, tzinfo=UTC)
    assert row.ends_at == datetime(2030, 7, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "body",
    [
        {"name": None},
        {"name": ""},
        {"name": "  "},
        {"name": "x" * 201},
        {"description": "d" * 2001},
        {"owner_id": 1},
        {"is_admin": True},
        {"id": 7},
        {"created_at": "2030-01-01T00:00:00Z"},
        {"starts_at": "1900-01-01T00:00:00Z"},
        {"ends_at": "9999-06-01T00:00:00Z"},
        {"starts_at": "yesterday"},
        [],
        "name",
    ],
)
def test_patch_campaign_invalid_body_is_422_and_changes_nothing(
    client, db: Session, user: User, other_user: User, headers, body: Any
) -> None:
    campaign = factories.make_campaign(db, user, name="Stable", description="same")
    if isinstance(body, dict) and "owner_id" in body:
        body = {"owner_id": other_user.id}
    assert_error(client.patch(f"{CAMPAIGNS}/{campaign.id}", headers=headers, json=body), 422, "validation_error")
    row = reload(db, Campaign, campaign.id)
    assert (row.name, row.description, row.owner_id) == ("Stable", "same", user.id)


# --- Campaigns: DELETE and cascade ---------------------------------------------------------


def test_delete_campaign_is_204_then_404(client, db: Session, user: User, headers) -> None:
    campaign = factories.make_campaign(db, user)
    keep = factories.make_campaign(db, user)
    response = client.delete(f"{CAMPAIGNS}/{campaign.id}", headers=headers)
    assert response.status_code == 204
    assert response.content == b""
    assert_error(client.get(f"{CAMPAIGNS}/{campaign.id}", headers=headers), 404, "not_found")
    assert_error(client.delete(f"{CAMPAIGNS}/{campaign.id}", headers=headers), 404, "not_found")
    assert count(db, Campaign) == 1
    assert count(db, Campaign, Campaign.id == keep.id) == 1


def test_delete_campaign_cascades_to_everything_below_it(client, db: Session, user: User, headers) -> None:
    doomed = full_tree(db, user)
    second_group = factories.make_group(db, doomed["campaign"])
    factories.make_opening(db, factories.make_pixel(db, factories.make_contact(db, second_group)))
    kept = full_tree(db, user)
    counts = {model: count(db, model) for model in (Campaign, Group, Contact, Pixel, Opening, Link, Click)}
    assert counts == {Campaign: 2, Group: 3, Contact: 3, Pixel: 3, Opening: 3, Link: 2, Click: 2}

    response = client.delete(f"{CAMPAIGNS}/{doomed['campaign'].id}", headers=headers)
    assert response.status_code == 204

    campaign_id = doomed["campaign"].id
    assert count(db, Campaign, Campaign.id == campaign_id) == 0
    assert count(db, Group, Group.campaign_id == campaign_id) == 0
    assert count(db, Contact, Contact.campaign_id == campaign_id) == 0
    assert count(db, Pixel, Pixel.contact_id == doomed["contact"].id) == 0
    assert count(db, Opening, Opening.campaign_id == campaign_id) == 0
    assert count(db, Link, Link.campaign_id == campaign_id) == 0
    assert count(db, Click, Click.campaign_id == campaign_id) == 0
    # The other campaign's tree is untouched.
    remaining = {model: count(db, model) for model in (Campaign, Group, Contact, Pixel, Opening, Link, Click)}
    assert remaining == {Campaign: 1, Group: 1, Contact: 1, Pixel: 1, Opening: 1, Link: 1, Click: 1}
    assert count(db, Click, Click.id == kept["click"].id) == 1
    assert count(db, Opening, Opening.id == kept["opening"].id) == 1


# --- Groups --------------------------------------------------------------------------------


def test_create_group_returns_201_and_row(client, db: Session, user: User, headers) -> None:
    campaign = factories.make_campaign(db, user)
    response = client.post(
        f"{CAMPAIGNS}/{campaign.id}/groups", headers=headers, json={"name": " A ", "description": "control"}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"id", "campaign_id", "name", "description", "created_at"}
    assert body["campaign_id"] == campaign.id
    assert body["name"] == "A"
    assert body["description"] == "control"
    parse_ts(body["created_at"])
    row = reload(db, Group, body["id"])
    assert (row.campaign_id, row.name, row.description) == (campaign.id, "A", "control")


def test_get_group(client, db: Session, user: User, headers) -> None:
    group = factories.make_group(db, factories.make_campaign(db, user), name="B", description="variant")
    response = client.get(f"{GROUPS}/{group.id}", headers=headers)
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == group.id
    assert body["campaign_id"] == group.campaign_id
    assert (body["name"], body["description"]) == ("B", "variant")


def test_list_groups_is_paginated_and_scoped_to_campaign(client, db: Session, user: User, headers) -> None:
    campaign = factories.make_campaign(db, user)
    groups = [factories.make_group(db, campaign, name=f"arm {i}") for i in range(4)]
    factories.make_group(db, factories.make_campaign(db, user), name="elsewhere")

    body = client.get(f"{CAMPAIGNS}/{campaign.id}/groups", headers=headers).json()
    assert body["total"] == 4
    assert (body["limit"], body["offset"]) == (50, 0)
    assert [g["id"] for g in body["items"]] == [g.id for g in groups]

    page = client.get(f"{CAMPAIGNS}/{campaign.id}/groups", headers=headers, params={"limit": 2, "offset": 2}).json()
    assert page["total"] == 4
    assert (page["limit"], page["offset"]) == (2, 2)
    assert [g["id"] for g in page["items"]] == [groups[2].id, groups[3].id]

    beyond = client.get(f"{CAMPAIGNS}/{campaign.id}/groups", headers=headers, params={"offset": 99}).json()
    assert beyond == {"items": [], "total": 4, "limit": 50, "offset": 99}

    big = client.get(f"{CAMPAIGNS}/{campaign.id}/groups", headers=headers, params={"limit": 500})
    assert big.status_code == 200
    assert len(big.json()["items"]) == 4


def test_duplicate_group_name_in_same_campaign_is_409(client, db: Session, user: User, headers) -> None:
    campaign = factories.make_campaign(db, user)
    factories.make_group(db, campaign, name="A")
    for name in ("A", "  A  "):
        body = assert_error(
            client.post(f"{CAMPAIGNS}/{campaign.id}/groups", headers=headers, json={"name": name}), 409, "conflict"
        )
        assert body["detail"][0]["loc"] == ["body", "name"]
    assert count(db, Group, Group.campaign_id == campaign.id) == 1


def test_same_group_name_in_another_campaign_and_other_case_are_allowed(
    client, db: Session, user: User, headers
) -> None:
    first = factories.make_campaign(db, user)
    second = factories.make_campaign(db, user)
    factories.make_group(db, first, name="A")
    response = client.post(f"{CAMPAIGNS}/{second.id}/groups", headers=headers, json={"name": "A"})
    assert response.status_code == 201
    # Names compare exactly (binary collation on MariaDB, as on SQLite): "a" is not "A".
    response = client.post(f"{CAMPAIGNS}/{first.id}/groups", headers=headers, json={"name": "a"})
    assert response.status_code == 201, response.text
    assert count(db, Group, Group.campaign_id == first.id) == 2
    assert count(db, Group, Group.campaign_id == second.id) == 1


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "   "},
        {"name": None},
        {"name": "g" * 201},
        {"name": "ok", "description": "d" * 2001},
        {"name": "ok", "campaign_id": 1},
        {"name": "ok", "id": 1},
        [],
        "A",
    ],
)
def test_create_group_invalid_body_is_422(client, db: Session, user: User, headers, body: Any) -> None:
    campaign = factories.make_campaign(db, user)
    response = client.post(f"{CAMPAIGNS}/{campaign.id}/groups", headers=headers, json=body)
    assert_error(response, 422, "validation_error")
    assert count(db, Group) == 0


def test_group_name_of_200_characters_is_accepted(client, db: Session, user: User, headers) -> None:
    campaign = factories.make_campaign(db, user)
    name = "\N{GREEK SMALL LETTER ALPHA}" * 200
    response = client.post(f"{CAMPAIGNS}/{campaign.id}/groups", headers=headers, json={"name": name})
    assert response.status_code == 201
    assert reload(db, Group, response.json()["id"]).name == name


def test_patch_group_changes_only_sent_fields(client, db: Session, user: User, headers) -> None:
    group = factories.make_group(db, factories.make_campaign(db, user), name="A", description="control")
    response = client.patch(f"{GROUPS}/{group.id}", headers=headers, json={"description": "new text"})
    assert response.status_code == 200
    assert (response.json()["name"], response.json()["description"]) == ("A", "new text")
    response = client.patch(f"{GROUPS}/{group.id}", headers=headers, json={"name": "Control"})
    assert response.status_code == 200
    assert (response.json()["name"], response.json()["description"]) == ("Control", "new text")
    row = reload(db, Group, group.id)
    assert (row.name, row.description, row.campaign_id) == ("Control", "new text", group.campaign_id)


def test_patch_group_to_its_own_name_is_fine_but_a_siblings_name_is_409(
    client, db: Session, user: User, headers
) -> None:
    campaign = factories.make_campaign(db, user)
    a = factories.make_group(db, campaign, name="A")
    factories.make_group(db, campaign, name="B")
    assert client.patch(f"{GROUPS}/{a.id}", headers=headers, json={"name": "A"}).status_code == 200
    body = assert_error(client.patch(f"{GROUPS}/{a.id}", headers=headers, json={"name": "B"}), 409, "conflict")
    assert body["detail"][0]["loc"] == ["body", "name"]
    assert reload(db, Group, a.id).name == "A"
    # A group of the same name in another campaign does not conflict.
    factories.make_group(db, factories.make_campaign(db, user), name="C")
    assert client.patch(f"{GROUPS}/{a.id}", headers=headers, json={"name": "C"}).status_code == 200


@pytest.mark.parametrize(
    "body",
    [{"name": None}, {"name": ""}, {"name": "g" * 201}, {"description": "d" * 2001}, {"campaign_id": 1}, {"id": 3}],
)
def test_patch_group_invalid_body_is_422_and_changes_nothing(
    client, db: Session, user: User, headers, body: dict[str, Any]
) -> None:
    group = factories.make_group(db, factories.make_campaign(db, user), name="A", description="d")
    other_campaign = factories.make_campaign(db, user)
    if "campaign_id" in body:
        body = {"campaign_id": other_campaign.id}  # groups cannot be moved between campaigns
    assert_error(client.patch(f"{GROUPS}/{group.id}", headers=headers, json=body), 422, "validation_error")
    row = reload(db, Group, group.id)
    assert (row.name, row.description, row.campaign_id) == ("A", "d", group.campaign_id)


def test_delete_group_is_204_then_404_and_cascades(client, db: Session, user: User, headers) -> None:
    tree = full_tree(db, user)
    doomed = tree["group"]
    sibling = factories.make_group(db, tree["campaign"])
    sibling_opening = factories.make_opening(db, factories.make_pixel(db, factories.make_contact(db, sibling)))
    doomed_contact = factories.make_contact(db, doomed)
    factories.make_pixel(db, doomed_contact, number=1)
    factories.make_pixel(db, doomed_contact, number=2)

    response = client.delete(f"{GROUPS}/{doomed.id}", headers=headers)
    assert response.status_code == 204
    assert response.content == b""
    assert_error(client.get(f"{GROUPS}/{doomed.id}", headers=headers), 404, "not_found")

    assert count(db, Group, Group.id == doomed.id) == 0
    assert count(db, Contact, Contact.group_id == doomed.id) == 0
    assert count(db, Pixel, Pixel.contact_id.in_([tree["contact"].id, doomed_contact.id])) == 0
    assert count(db, Opening, Opening.contact_id == tree["contact"].id) == 0
    assert count(db, Click, Click.contact_id == tree["contact"].id) == 0
    # The campaign, its link and the sibling group's data stay.
    assert count(db, Campaign) == 1
    assert count(db, Link) == 1
    assert count(db, Group) == 1
    assert count(db, Contact) == 1
    assert count(db, Pixel) == 1
    assert count(db, Opening, Opening.id == sibling_opening.id) == 1
