"""Scheduled contacts: /api/v1/groups/{id}/contacts (one or a bulk list) and /api/v1/contacts/{id}."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Campaign, Contact, Group, Opening, Pixel, User
from app.models.base import MAX_ID
from tests import factories
from tests.helpers import assert_error, count, parse_ts, reload
from tests.support.contacts_api import CONTACT_FIELDS, CONTACTS, post_raw, url


@pytest.fixture
def campaign(db: Session, user: User) -> Campaign:
    return factories.make_campaign(db, user)


@pytest.fixture
def group(db: Session, campaign: Campaign) -> Group:
    return factories.make_group(db, campaign, name="A")


@pytest.fixture
def sibling(db: Session, campaign: Campaign) -> Group:
    """Arm B of the same campaign."""
    return factories.make_group(db, campaign, name="B")


# --- POST one contact ----------------------------------------------------------------------


def test_post_one_contact_returns_201_contact(client, db: Session, group: Group, headers) -> None:
    response = client.post(
        url(group),
        headers=headers,
        json={"email": "  Ana.Lopez@Example.COM ", "name": "Ana", "scheduled_at": "2030-05-01T09:00:00+02:00"},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == CONTACT_FIELDS
    assert body["email"] == "ana.lopez@example.com"
    assert body["name"] == "Ana"
    assert body["campaign_id"] == group.campaign_id
    assert body["group_id"] == group.id
    assert body["status"] == "scheduled"
    assert body["sent_at"] is None
    assert body["scheduled_at"] == "2030-05-01T07:00:00+00:00"
    parse_ts(body["created_at"])
    parse_ts(body["updated_at"])

    row = reload(db, Contact, body["id"])
    assert row.email == "ana.lopez@example.com"
    assert (row.group_id, row.campaign_id, row.status) == (group.id, group.campaign_id, "scheduled")
    assert row.scheduled_at == datetime(2030, 5, 1, 7, tzinfo=UTC)


def test_post_contact_naive_scheduled_at_is_utc(client, group: Group, headers) -> None:
    response = client.post(
        url(group), headers=headers, json={"email": "a@example.com", "scheduled_at": "2030-01-02T03:04:05"}
    )
    assert response.status_code == 201
    assert response.json()["scheduled_at"] == "2030-01-02T03:04:05+00:00"


def test_post_contact_status_sent_without_sent_at_gets_now(client, db: Session, group: Group, headers) -> None:
    response = client.post(url(group), headers=headers, json={"email": "s@example.com", "status": "sent"})
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "sent"
    assert abs(parse_ts(body["sent_at"]) - datetime.now(UTC)) < timedelta(minutes=1)
    row = reload(db, Contact, body["id"])
    assert row.sent_at is not None
    assert row.status == "sent"


def test_post_contact_status_sent_keeps_given_sent_at(client, group: Group, headers) -> None:
    response = client.post(
        url(group),
        headers=headers,
        json={"email": "s@example.com", "status": "sent", "sent_at": "2029-12-31T23:00:00-01:00"},
    )
    assert response.status_code == 201
    assert response.json()["sent_at"] == "2030-01-01T00:00:00+00:00"


@pytest.mark.parametrize("status", ["scheduled", "failed"])
def test_post_contact_other_statuses_leave_sent_at_empty(client, group: Group, headers, status: str) -> None:
    response = client.post(url(group), headers=headers, json={"email": "x@example.com", "status": status})
    assert response.status_code == 201
    assert response.json()["status"] == status
    assert response.json()["sent_at"] is None


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"email": "not-an-email"}, ["body", "email"]),
        ({"email": "a@b@example.com"}, ["body", "email"]),
        ({"email": ""}, ["body", "email"]),
        ({"email": "x" * 250 + "@example.com"}, ["body", "email"]),
        ({"email": None}, ["body", "email"]),
        ({}, ["body", "email"]),
        ({"email": "a@example.com", "status": "bounced"}, ["body", "status"]),
        ({"email": "a@example.com", "status": None}, ["body", "status"]),
        ({"email": "a@example.com", "name": "n" * 201}, ["body", "name"]),
        ({"email": "a@example.com", "scheduled_at": "soon"}, ["body", "scheduled_at"]),
        ({"email": "a@example.com", "scheduled_at": "1969-01-01T00:00:00Z"}, ["body", "scheduled_at"]),
        ({"email": "a@example.com", "scheduled_at": "9999-01-01T00:00:00Z"}, ["body", "scheduled_at"]),
        ({"email": "a@example.com", "sent_at": "0001-01-01T00:00:00+01:00"}, ["body", "sent_at"]),
        ({"email": "a@example.com", "campaign_id": 1}, ["body", "campaign_id"]),
        ({"email": "a@example.com", "group_id": 1}, ["body", "group_id"]),
        ({"email": "a@example.com", "id": 1}, ["body", "id"]),
    ],
)
def test_post_one_invalid_contact_is_422_located(
    client, db: Session, group: Group, headers, body: dict[str, Any], loc: list[Any]
) -> None:
    error = assert_error(client.post(url(group), headers=headers, json=body), 422, "validation_error")
    assert loc in [item["loc"] for item in error["detail"]], error
    assert count(db, Contact) == 0


# --- POST a list (bulk) --------------------------------------------------------------------


def test_post_list_returns_items_in_order_sent(client, db: Session, group: Group, headers) -> None:
    emails = ["zed@example.com", "Amy@Example.com", "mo@example.com", "bea@example.com", "al@example.com"]
    payload: list[dict[str, Any]] = [{"email": e} for e in emails]
    payload[1]["status"] = "sent"
    payload[2]["scheduled_at"] = "2030-01-01T00:00:00"
    payload[3]["name"] = "Bea"
    response = client.post(url(group), headers=headers, json=payload)
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"items", "total"}
    assert body["total"] == 5
    assert [item["email"] for item in body["items"]] == [e.lower() for e in emails]
    assert all(set(item) == CONTACT_FIELDS for item in body["items"])
    assert body["items"][1]["status"] == "sent"
    assert body["items"][1]["sent_at"] is not None
    assert body["items"][0]["sent_at"] is None
    assert body["items"][2]["scheduled_at"] == "2030-01-01T00:00:00+00:00"
    assert body["items"][3]["name"] == "Bea"

    rows = {c.id: c for c in db.scalars(select(Contact).where(Contact.group_id == group.id))}
    db.commit()
    assert len(rows) == 5
    for item in body["items"]:
        row = rows[item["id"]]
        assert (row.email, row.group_id, row.campaign_id, row.status) == (
            item["email"],
            group.id,
            group.campaign_id,
            item["status"],
        )


def test_post_list_with_one_invalid_row_writes_nothing(client, db: Session, group: Group, headers) -> None:
    payload = [{"email": f"ok{i}@example.com"} for i in range(5)]
    payload[3] = {"email": "broken"}
    error = assert_error(client.post(url(group), headers=headers, json=payload), 422, "validation_error")
    assert [item["loc"] for item in error["detail"]] == [["body", 3, "email"]]
    assert count(db, Contact) == 0


def test_post_list_invalid_rows_each_located(client, db: Session, group: Group, headers) -> None:
    payload: list[Any] = [
        {"email": "ok@example.com"},
        {"email": "ok2@example.com", "status": "lost"},
        "not an object",
        {"email": "ok3@example.com", "owner_id": 1},
    ]
    error = assert_error(client.post(url(group), headers=headers, json=payload), 422, "validation_error")
    locs = [item["loc"] for item in error["detail"]]
    assert ["body", 1, "status"] in locs
    assert any(loc[:2] == ["body", 2] for loc in locs)
    assert ["body", 3, "owner_id"] in locs
    assert all(loc[1] != 0 for loc in locs)
    assert count(db, Contact) == 0


def test_post_list_duplicate_email_in_request_is_409_on_later_row(client, db: Session, group: Group, headers) -> None:
    payload = [{"email": f"u{i}@example.com"} for i in range(5)]
    payload[4] = {"email": "U1@EXAMPLE.com"}  # same as row 1 once lowercased
    error = assert_error(client.post(url(group), headers=headers, json=payload), 409, "conflict")
    assert [item["loc"] for item in error["detail"]] == [["body", 4, "email"]]
    assert count(db, Contact) == 0


def test_post_list_email_already_in_group_is_409_on_that_row(client, db: Session, group: Group, headers) -> None:
    factories.make_contact(db, group, email="taken@example.com")
    payload = [{"email": "new1@example.com"}, {"email": "new2@example.com"}, {"email": "Taken@example.com"}]
    error = assert_error(client.post(url(group), headers=headers, json=payload), 409, "conflict")
    assert [item["loc"] for item in error["detail"]] == [["body", 2, "email"]]
    assert count(db, Contact) == 1


def test_post_one_email_already_in_group_is_409(client, db: Session, group: Group, headers) -> None:
    factories.make_contact(db, group, email="taken@example.com")
    error = assert_error(client.post(url(group), headers=headers, json={"email": "TAKEN@example.com"}), 409, "conflict")
    assert error["detail"][0]["loc"] == ["body", "email"]
    assert count(db, Contact) == 1


def test_same_email_in_another_group_of_the_campaign_is_allowed(
    client, db: Session, group: Group, sibling: Group, headers
) -> None:
    factories.make_contact(db, group, email="both@example.com")
    response = client.post(url(sibling), headers=headers, json=[{"email": "both@example.com"}])
    assert response.status_code == 201, response.text
    assert response.json()["items"][0]["group_id"] == sibling.id
    assert count(db, Contact, Contact.email == "both@example.com") == 2


@pytest.mark.slow  # ~4 s: out of the fast loop
def test_bulk_of_exactly_10000_is_accepted(client, db: Session, group: Group, headers) -> None:
    payload = [{"email": f"bulk{i}@example.com"} for i in range(10_000)]
    response = client.post(url(group), headers=headers, json=payload)
    assert response.status_code == 201, response.text[:500]
    body = response.json()
    assert body["total"] == 10_000
    assert len(body["items"]) == 10_000
    assert body["items"][0]["email"] == "bulk0@example.com"
    assert body["items"][-1]["email"] == "bulk9999@example.com"
    assert len({item["id"] for item in body["items"]}) == 10_000
    assert count(db, Contact, Contact.group_id == group.id) == 10_000
    assert count(db, Contact, Contact.campaign_id == group.campaign_id, Contact.status == "scheduled") == 10_000


def test_bulk_errors_are_located_by_row_across_validation_chunks(client, db: Session, group: Group, headers) -> None:
    """Rows validate in chunks (app/cooperative.py): each error still names its row in the request."""
    payload: list[dict[str, Any]] = [{"email": f"row{i}@example.com"} for i in range(1_200)]
    payload[3]["email"] = "no-at-sign"
    payload[700]["status"] = "bogus"
    payload[1_199]["email"] = "still no at sign"
    error = assert_error(client.post(url(group), headers=headers, json=payload), 422, "validation_error")
    assert [item["loc"] for item in error["detail"]] == [
        ["body", 3, "email"],
        ["body", 700, "status"],
        ["body", 1199, "email"],
    ]
    assert count(db, Contact) == 0


def test_bulk_of_10001_is_422_and_writes_nothing(client, db: Session, group: Group, headers) -> None:
    content = json.dumps([{"email": f"bulk{i}@example.com"} for i in range(10_001)]).encode()
    error = assert_error(post_raw(client, group, headers, content), 422, "validation_error")
    assert error["detail"][0]["loc"] == ["body"]
    assert count(db, Contact) == 0


@pytest.mark.parametrize(
    "content",
    [
        b"[]",
        b'"ana@example.com"',
        b"42",
        b"null",
        b"true",
        b"",
        b"{not json",
        b'[{"email": "a@example.com"},',
        b"\xff\xfe\x00",
        b"[" * 100_000,  # nested deeper than the JSON parser's recursion limit
        b'{"email": "a@example.com", "name": NaN}',
        b'{"email": "a@example.com", "name": 1' + b"0" * 5000 + b"}",
    ],
)
def test_post_bodies_that_are_not_contacts_are_422(client, db: Session, group: Group, headers, content: bytes) -> None:
    assert_error(post_raw(client, group, headers, content), 422, "validation_error")
    assert count(db, Contact) == 0


def test_post_requires_a_json_content_type(client, db: Session, group: Group, headers) -> None:
    body = json.dumps({"email": "typed@example.com"}).encode()
    response = client.post(url(group), headers={**headers, "Content-Type": "text/plain"}, content=body)
    assert_error(response, 422, "validation_error")
    assert count(db, Contact) == 0
    response = client.post(
        url(group), headers={**headers, "Content-Type": "application/json; charset=utf-8"}, content=body
    )
    assert response.status_code == 201
    assert count(db, Contact) == 1


# --- GET list with filters -----------------------------------------------------------------


def test_list_contacts_filters_and_pagination(client, db: Session, group: Group, sibling: Group, headers) -> None:
    t = datetime(2030, 1, 1, 12, tzinfo=UTC)
    early = factories.make_contact(db, group, scheduled_at=t - timedelta(hours=1), status="scheduled")
    at = factories.make_contact(db, group, scheduled_at=t, status="sent", sent_at=t)
    late = factories.make_contact(db, group, scheduled_at=t + timedelta(hours=1), status="failed")
    unscheduled = factories.make_contact(db, group, status="scheduled")
    factories.make_contact(db, sibling, scheduled_at=t, status="sent")  # other group: never listed

    def ids(**params: Any) -> list[int]:
        response = client.get(url(group), headers=headers, params=params)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert ids() == [early.id, at.id, late.id, unscheduled.id]
    assert ids(status="scheduled") == [early.id, unscheduled.id]
    assert ids(status="sent") == [at.id]
    assert ids(status="failed") == [late.id]
    # before is strict, after is inclusive; naive query datetimes are UTC.
    assert ids(scheduled_before="2030-01-01T12:00:00Z") == [early.id]
    assert ids(scheduled_before="2030-01-01T12:00:00") == [early.id]
    assert ids(scheduled_after="2030-01-01T12:00:00+00:00") == [at.id, late.id]
    assert ids(scheduled_after="2030-01-01T13:00:00+01:00") == [at.id, late.id]
    assert ids(scheduled_after="2030-01-01T11:00:00", scheduled_before="2030-01-01T13:00:00") == [early.id, at.id]
    assert ids(status="sent", scheduled_after="2030-01-01T12:30:00Z") == []

    page = client.get(url(group), headers=headers, params={"status": "scheduled", "limit": 1, "offset": 1}).json()
    assert page["total"] == 2
    assert (page["limit"], page["offset"]) == (1, 1)
    assert [item["id"] for item in page["items"]] == [unscheduled.id]

    beyond = client.get(url(group), headers=headers, params={"offset": 10}).json()
    assert beyond == {"items": [], "total": 4, "limit": 50, "offset": 10}
    assert client.get(url(group), headers=headers, params={"limit": 500}).status_code == 200


@pytest.mark.parametrize(
    "params",
    [
        {"status": "bounced"},
        {"scheduled_before": "tomorrow"},
        {"scheduled_after": "9999-12-31T23:59:59Z"},
        {"scheduled_after": "1969-12-31T00:00:00Z"},
        {"limit": 0},
        {"limit": 501},
        {"offset": -1},
    ],
)
def test_list_contacts_invalid_query_is_422(client, group: Group, headers, params: dict[str, Any]) -> None:
    assert_error(client.get(url(group), headers=headers, params=params), 422, "validation_error")


# --- GET / PATCH / DELETE one contact ------------------------------------------------------


def test_get_contact(client, db: Session, group: Group, headers) -> None:
    contact = factories.make_contact(
        db, group, email="g@example.com", name="Gee", scheduled_at=datetime(2030, 2, 2, tzinfo=UTC)
    )
    response = client.get(f"{CONTACTS}/{contact.id}", headers=headers)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == CONTACT_FIELDS
    assert (body["id"], body["email"], body["name"], body["group_id"]) == (contact.id, "g@example.com", "Gee", group.id)
    assert body["scheduled_at"] == "2030-02-02T00:00:00+00:00"
    assert body["status"] == "scheduled"


def test_patch_contact_changes_only_sent_fields(client, db: Session, group: Group, headers) -> None:
    contact = factories.make_contact(
        db, group, email="p@example.com", name="Old", scheduled_at=datetime(2030, 2, 2, tzinfo=UTC)
    )
    response = client.patch(f"{CONTACTS}/{contact.id}", headers=headers, json={"name": "New"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["name"] == "New"
    assert (body["email"], body["group_id"], body["status"]) == ("p@example.com", group.id, "scheduled")
    assert body["scheduled_at"] == "2030-02-02T00:00:00+00:00"
    row = reload(db, Contact, contact.id)
    assert (row.name, row.email, row.group_id) == ("New", "p@example.com", group.id)
    assert row.scheduled_at == datetime(2030, 2, 2, tzinfo=UTC)


def test_patch_contact_email_is_lowercased_and_nullable_fields_clear(
    client, db: Session, group: Group, headers
) -> None:
    contact = factories.make_contact(db, group, email="p@example.com", name="Pat", scheduled_at=datetime(2030, 1, 1))
    response = client.patch(
        f"{CONTACTS}/{contact.id}",
        headers=headers,
        json={"email": "Pat@Example.ORG", "name": None, "scheduled_at": None},
    )
    assert response.status_code == 200, response.text
    assert response.json()["email"] == "pat@example.org"
    row = reload(db, Contact, contact.id)
    assert (row.email, row.name, row.scheduled_at) == ("pat@example.org", None, None)


def test_patch_contact_status_sent_sets_sent_at(client, db: Session, group: Group, headers) -> None:
    contact = factories.make_contact(db, group)
    response = client.patch(f"{CONTACTS}/{contact.id}", headers=headers, json={"status": "sent"})
    assert response.status_code == 200
    assert response.json()["status"] == "sent"
    assert abs(parse_ts(response.json()["sent_at"]) - datetime.now(UTC)) < timedelta(minutes=1)
    row = reload(db, Contact, contact.id)
    assert row.status == "sent"
    assert row.sent_at is not None

    other = factories.make_contact(db, group)
    response = client.patch(
        f"{CONTACTS}/{other.id}", headers=headers, json={"status": "sent", "sent_at": "2030-03-03T03:03:03"}
    )
    assert response.json()["sent_at"] == "2030-03-03T03:03:03+00:00"


def test_patch_clearing_sent_at_of_a_sent_contact_keeps_it_set(client, db: Session, group: Group, headers) -> None:
    """A sent contact always has a sent_at: clearing it alone is treated like "sent, time unknown" (now)."""
    contact = factories.make_contact(db, group, status="sent", sent_at=datetime(2030, 1, 1, tzinfo=UTC))
    response = client.patch(f"{CONTACTS}/{contact.id}", headers=headers, json={"sent_at": None})
    assert response.status_code == 200
    assert abs(parse_ts(response.json()["sent_at"]) - datetime.now(UTC)) < timedelta(minutes=1)
    row = reload(db, Contact, contact.id)
    assert row.status == "sent"
    assert row.sent_at is not None
    # A contact that is not sent may have its sent_at cleared.
    failed = factories.make_contact(db, group, status="failed", sent_at=datetime(2030, 1, 1, tzinfo=UTC))
    response = client.patch(f"{CONTACTS}/{failed.id}", headers=headers, json={"sent_at": None})
    assert response.json()["sent_at"] is None
    assert reload(db, Contact, failed.id).sent_at is None


def test_patch_contact_email_used_in_group_is_409(client, db: Session, group: Group, headers) -> None:
    factories.make_contact(db, group, email="taken@example.com")
    contact = factories.make_contact(db, group, email="mine@example.com")
    error = assert_error(
        client.patch(f"{CONTACTS}/{contact.id}", headers=headers, json={"email": "Taken@example.com"}), 409, "conflict"
    )
    assert error["detail"][0]["loc"] == ["body", "email"]
    assert reload(db, Contact, contact.id).email == "mine@example.com"
    # Re-sending its own email is not a conflict.
    same = client.patch(f"{CONTACTS}/{contact.id}", headers=headers, json={"email": "MINE@example.com"})
    assert same.status_code == 200


def test_patch_group_id_within_campaign_moves_the_contact(
    client, db: Session, group: Group, sibling: Group, headers
) -> None:
    contact = factories.make_contact(db, group, email="mover@example.com")
    response = client.patch(f"{CONTACTS}/{contact.id}", headers=headers, json={"group_id": sibling.id})
    assert response.status_code == 200, response.text
    assert response.json()["group_id"] == sibling.id
    assert response.json()["campaign_id"] == group.campaign_id
    row = reload(db, Contact, contact.id)
    assert (row.group_id, row.campaign_id) == (sibling.id, group.campaign_id)
    assert client.get(url(group), headers=headers).json()["total"] == 0
    assert [c["id"] for c in client.get(url(sibling), headers=headers).json()["items"]] == [contact.id]


def test_patch_group_id_where_email_exists_is_409(client, db: Session, group: Group, sibling: Group, headers) -> None:
    contact = factories.make_contact(db, group, email="dup@example.com")
    factories.make_contact(db, sibling, email="dup@example.com")
    error = assert_error(
        client.patch(f"{CONTACTS}/{contact.id}", headers=headers, json={"group_id": sibling.id}), 409, "conflict"
    )
    assert error["detail"][0]["loc"] == ["body", "email"]
    assert reload(db, Contact, contact.id).group_id == group.id


def test_patch_group_id_of_another_campaign_is_422(client, db: Session, user: User, group: Group, headers) -> None:
    foreign = factories.make_group(db, factories.make_campaign(db, user))
    contact = factories.make_contact(db, group)
    for target in (foreign.id, 987654):
        error = assert_error(
            client.patch(f"{CONTACTS}/{contact.id}", headers=headers, json={"group_id": target}),
            422,
            "validation_error",
        )
        assert error["detail"][0]["loc"] == ["body", "group_id"]
    row = reload(db, Contact, contact.id)
    assert (row.group_id, row.campaign_id) == (group.id, group.campaign_id)


@pytest.mark.parametrize(
    "body",
    [
        {"email": None},
        {"email": "nope"},
        {"status": None},
        {"status": "opened"},
        {"group_id": None},
        {"group_id": 0},
        {"group_id": MAX_ID + 1},
        {"name": "n" * 201},
        {"scheduled_at": "2030-13-01T00:00:00Z"},
        {"sent_at": "1969-07-20T20:17:00Z"},
        {"campaign_id": 1},
        {"id": 2},
        [],
        "x",
    ],
)
def test_patch_contact_invalid_body_is_422_and_changes_nothing(
    client, db: Session, group: Group, headers, body: Any
) -> None:
    contact = factories.make_contact(db, group, email="still@example.com", name="Same")
    assert_error(client.patch(f"{CONTACTS}/{contact.id}", headers=headers, json=body), 422, "validation_error")
    row = reload(db, Contact, contact.id)
    assert (row.email, row.name, row.status, row.group_id) == ("still@example.com", "Same", "scheduled", group.id)


def test_delete_contact_removes_its_pixels_and_openings(client, db: Session, tree: dict[str, Any], headers) -> None:
    contact = tree["contact"]
    second_pixel = factories.make_pixel(db, contact, number=2)
    factories.make_opening(db, second_pixel)
    neighbour = factories.make_contact(db, tree["group"])
    neighbour_opening = factories.make_opening(db, factories.make_pixel(db, neighbour))
    assert count(db, Pixel) == 3
    assert count(db, Opening) == 3

    response = client.delete(f"{CONTACTS}/{contact.id}", headers=headers)
    assert response.status_code == 204
    assert response.content == b""
    assert_error(client.get(f"{CONTACTS}/{contact.id}", headers=headers), 404, "not_found")
    assert_error(client.delete(f"{CONTACTS}/{contact.id}", headers=headers), 404, "not_found")

    assert count(db, Contact, Contact.id == contact.id) == 0
    assert count(db, Pixel, Pixel.contact_id == contact.id) == 0
    assert count(db, Opening, Opening.contact_id == contact.id) == 0
    assert count(db, Pixel) == 1
    assert count(db, Opening, Opening.id == neighbour_opening.id) == 1
    assert count(db, Group) == 1
