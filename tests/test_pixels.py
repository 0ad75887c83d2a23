"""Pixels of a contact: /api/v1/contacts/{id}/pixels and /api/v1/pixels/{id}."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Contact, Group, Opening, Pixel, User
from app.settings import Settings
from tests import factories
from tests.helpers import assert_error


class _ImgTags(HTMLParser):
    """Collects the attributes of every <img> tag of a snippet (local helper)."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str | None]] = []
        self.other_tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs))
        else:
            self.other_tags.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)


def assert_pixel_representation(body: dict[str, Any], settings: Settings) -> None:
    """`url` is the public tracking URL and `html` a 1x1 <img> whose src is exactly that URL."""
    url = body["url"]
    assert url.startswith(settings.public_base_url + "/o/"), url
    assert url.endswith(".gif"), url
    assert len(url) > len(settings.public_base_url + "/o/.gif")
    parser = _ImgTags()
    parser.feed(body["html"])
    parser.close()
    assert parser.other_tags == []
    assert len(parser.images) == 1, body["html"]
    img = parser.images[0]
    assert img["src"] == url
    assert img["width"] == "1"
    assert img["height"] == "1"


def pixels_path(contact: Contact | int) -> str:
    contact_id = contact if isinstance(contact, int) else contact.id
    return f"/api/v1/contacts/{contact_id}/pixels"


def pixel_count(db: Session, contact: Contact) -> int:
    return db.scalar(select(func.count()).select_from(Pixel).where(Pixel.contact_id == contact.id)) or 0


@pytest.fixture
def contact(db: Session, user: User) -> Contact:
    campaign = factories.make_campaign(db, user)
    return factories.make_contact(db, factories.make_group(db, campaign))


# Create.


@pytest.mark.parametrize(
    "send",
    [
        pytest.param({}, id="no-body"),
        pytest.param({"json": {}}, id="empty-object"),
        pytest.param({"json": {"number": None}}, id="null-number"),
    ],
)
def test_create_without_number_numbers_automatically(
    client, db: Session, settings: Settings, headers: dict[str, str], contact: Contact, send: dict[str, Any]
) -> None:
    numbers = []
    for _ in range(3):
        response = client.post(pixels_path(contact), headers=headers, **send)
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["contact_id"] == contact.id
        assert_pixel_representation(body, settings)
        numbers.append(body["number"])
    assert numbers == [1, 2, 3]
    rows = db.scalars(select(Pixel).where(Pixel.contact_id == contact.id).order_by(Pixel.number)).all()
    assert [(p.number, p.contact_id) for p in rows] == [(1, contact.id), (2, contact.id), (3, contact.id)]
    assert len({p.uuid for p in rows}) == 3


def test_create_response_matches_stored_row(
    client, db: Session, settings: Settings, headers: dict[str, str], contact: Contact
) -> None:
    response = client.post(pixels_path(contact), json={"number": 7}, headers=headers)
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"id", "uuid", "contact_id", "number", "created_at", "url", "html"}
    row = db.get(Pixel, body["id"])
    assert row is not None
    assert (row.uuid, row.contact_id, row.number) == (body["uuid"], contact.id, 7)
    assert body["created_at"].endswith("+00:00")
    assert_pixel_representation(body, settings)


def test_auto_number_follows_the_highest_existing(
    client, db: Session, headers: dict[str, str], contact: Contact
) -> None:
    factories.make_pixel(db, contact, number=5)
    response = client.post(pixels_path(contact), headers=headers)
    assert response.status_code == 201, response.text
    assert response.json()["number"] == 6


def test_auto_number_is_per_contact(client, db: Session, headers: dict[str, str], contact: Contact) -> None:
    neighbour = factories.make_contact(db, db.get_one(Group, contact.group_id))
    factories.make_pixel(db, neighbour, number=1)
    factories.make_pixel(db, neighbour, number=2)
    response = client.post(pixels_path(contact), headers=headers)
    assert response.status_code == 201
    assert response.json()["number"] == 1


def test_auto_number_stays_in_range_when_the_top_slot_is_used(
    client, db: Session, headers: dict[str, str], contact: Contact
) -> None:
    factories.make_pixel(db, contact, number=1000)
    response = client.post(pixels_path(contact), headers=headers)
    assert response.status_code == 201, response.text
    number = response.json()["number"]
    assert 1 <= number <= 1000
    assert number != 1000
    # The number it was given can be set back through PATCH, i.e. it is a valid number.
    assert client.patch(f"/api/v1/pixels/{response.json()['id']}", json={"number": number}, headers=headers).is_success


def test_auto_number_when_every_slot_is_used_is_409(
    client, db: Session, headers: dict[str, str], contact: Contact
) -> None:
    db.add_all(Pixel(contact_id=contact.id, number=n, uuid=f"{n:032x}") for n in range(1, 1001))
    db.commit()
    body = assert_error(client.post(pixels_path(contact), headers=headers), 409, "conflict")
    assert body["detail"][0]["loc"] == ["body", "number"]
    assert pixel_count(db, contact) == 1000


def test_create_with_taken_number_is_409_and_writes_nothing(
    client, db: Session, headers: dict[str, str], contact: Contact
) -> None:
    factories.make_pixel(db, contact, number=2)
    body = assert_error(client.post(pixels_path(contact), json={"number": 2}, headers=headers), 409, "conflict")
    assert body["detail"][0]["loc"] == ["body", "number"]
    assert pixel_count(db, contact) == 1


def test_same_number_on_another_contact_is_fine(
    client, db: Session, user: User, headers: dict[str, str], contact: Contact
) -> None:
    other = factories.make_contact(db, factories.make_group(db, factories.make_campaign(db, user)))
    factories.make_pixel(db, other, number=3)
    response = client.post(pixels_path(contact), json={"number": 3}, headers=headers)
    assert response.status_code == 201
    assert response.json()["number"] == 3


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"number": 0}, id="zero"),
        pytest.param({"number": 1001}, id="too-big"),
        pytest.param({"number": -1}, id="negative"),
        pytest.param({"number": 2**70}, id="huge"),
        pytest.param({"number": "abc"}, id="not-a-number"),
        pytest.param({"number": 1.5}, id="fraction"),
        pytest.param({"uuid": "0" * 32}, id="uuid-is-not-settable"),
        pytest.param({"contact_id": 1}, id="contact-is-not-settable"),
        pytest.param([], id="list"),
    ],
)
def test_create_invalid_body_is_422(
    client, db: Session, headers: dict[str, str], contact: Contact, payload: Any
) -> None:
    assert_error(client.post(pixels_path(contact), json=payload, headers=headers), 422, "validation_error")
    assert pixel_count(db, contact) == 0


def test_create_out_of_range_locates_the_field(client, headers: dict[str, str], contact: Contact) -> None:
    body = assert_error(client.post(pixels_path(contact), json={"number": 1001}, headers=headers), 422)
    assert body["detail"][0]["loc"] == ["body", "number"]


def test_create_for_unknown_contact_is_404(client, headers: dict[str, str]) -> None:
    assert_error(client.post(pixels_path(987654), headers=headers), 404, "not_found")


def test_create_without_token_is_401(client, db: Session, contact: Contact) -> None:
    assert_error(client.post(pixels_path(contact)), 401, "not_authenticated")
    assert pixel_count(db, contact) == 0


# List.


def test_list_is_paginated_ordered_by_number_and_scoped_to_the_contact(
    client, db: Session, settings: Settings, user: User, headers: dict[str, str], contact: Contact
) -> None:
    for number in (3, 1, 2):
        factories.make_pixel(db, contact, number=number)
    other = factories.make_contact(db, factories.make_group(db, factories.make_campaign(db, user)))
    factories.make_pixel(db, other, number=9)

    response = client.get(pixels_path(contact), headers=headers)
    assert response.status_code == 200
    page = response.json()
    assert (page["total"], page["limit"], page["offset"]) == (3, 50, 0)
    assert [p["number"] for p in page["items"]] == [1, 2, 3]
    assert {p["contact_id"] for p in page["items"]} == {contact.id}
    for item in page["items"]:
        assert_pixel_representation(item, settings)
    assert len({p["url"] for p in page["items"]}) == 3

    second = client.get(pixels_path(contact), params={"limit": 2, "offset": 2}, headers=headers).json()
    assert (second["total"], second["limit"], second["offset"]) == (3, 2, 2)
    assert [p["number"] for p in second["items"]] == [3]


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 501}, {"offset": -1}, {"limit": "x"}])
def test_list_bad_paging_is_422(client, headers: dict[str, str], contact: Contact, params: dict[str, Any]) -> None:
    assert_error(client.get(pixels_path(contact), params=params, headers=headers), 422, "validation_error")


def test_list_of_unknown_contact_is_404(client, headers: dict[str, str]) -> None:
    assert_error(client.get(pixels_path(987654), headers=headers), 404, "not_found")


# Get / patch / delete one.


def test_get_one_pixel(client, db: Session, settings: Settings, headers: dict[str, str], contact: Contact) -> None:
    pixel = factories.make_pixel(db, contact, number=4)
    response = client.get(f"/api/v1/pixels/{pixel.id}", headers=headers)
    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["uuid"], body["contact_id"], body["number"]) == (pixel.id, pixel.uuid, contact.id, 4)
    assert_pixel_representation(body, settings)
    listed = client.get(pixels_path(contact), headers=headers).json()["items"][0]
    assert listed["id"] == pixel.id
    assert_pixel_representation(listed, settings)


@pytest.mark.parametrize("pixel_id", ["987654", "0", "-1", "abc", str(2**64)])
def test_get_unknown_or_invalid_id(client, headers: dict[str, str], pixel_id: str) -> None:
    response = client.get(f"/api/v1/pixels/{pixel_id}", headers=headers)
    if pixel_id == "987654":
        assert_error(response, 404, "not_found")
    else:
        assert_error(response, 422, "validation_error")


def test_patch_number(client, db: Session, settings: Settings, headers: dict[str, str], contact: Contact) -> None:
    pixel = factories.make_pixel(db, contact, number=1)
    response = client.patch(f"/api/v1/pixels/{pixel.id}", json={"number": 5}, headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["number"] == 5
    assert body["uuid"] == pixel.uuid
    assert_pixel_representation(body, settings)
    db.expire_all()
    assert db.get_one(Pixel, pixel.id).number == 5


def test_patch_to_its_own_number_is_a_no_op(client, db: Session, headers: dict[str, str], contact: Contact) -> None:
    pixel = factories.make_pixel(db, contact, number=3)
    response = client.patch(f"/api/v1/pixels/{pixel.id}", json={"number": 3}, headers=headers)
    assert response.status_code == 200
    assert response.json()["number"] == 3


def test_patch_to_taken_number_is_409_and_changes_nothing(
    client, db: Session, headers: dict[str, str], contact: Contact
) -> None:
    first = factories.make_pixel(db, contact, number=1)
    factories.make_pixel(db, contact, number=2)
    body = assert_error(
        client.patch(f"/api/v1/pixels/{first.id}", json={"number": 2}, headers=headers), 409, "conflict"
    )
    assert body["detail"][0]["loc"] == ["body", "number"]
    db.expire_all()
    assert db.get_one(Pixel, first.id).number == 1


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"number": 0}, id="zero"),
        pytest.param({"number": 1001}, id="too-big"),
        pytest.param({"number": None}, id="null"),
        pytest.param({}, id="empty"),
        pytest.param({"number": 2, "uuid": "f" * 32}, id="uuid-is-not-settable"),
        pytest.param({"number": 2, "contact_id": 1}, id="contact-is-not-settable"),
    ],
)
def test_patch_invalid_body_is_422(
    client, db: Session, headers: dict[str, str], contact: Contact, payload: dict[str, Any]
) -> None:
    pixel = factories.make_pixel(db, contact, number=1)
    assert_error(client.patch(f"/api/v1/pixels/{pixel.id}", json=payload, headers=headers), 422, "validation_error")
    db.expire_all()
    row = db.get_one(Pixel, pixel.id)
    assert (row.number, row.uuid, row.contact_id) == (1, pixel.uuid, contact.id)


def test_patch_unknown_pixel_is_404(client, headers: dict[str, str]) -> None:
    assert_error(client.patch("/api/v1/pixels/987654", json={"number": 2}, headers=headers), 404, "not_found")


def test_delete_pixel_deletes_its_openings_only(client, db: Session, headers: dict[str, str], contact: Contact) -> None:
    doomed = factories.make_pixel(db, contact, number=1)
    kept = factories.make_pixel(db, contact, number=2)
    for _ in range(3):
        factories.make_opening(db, doomed)
    kept_opening = factories.make_opening(db, kept)
    doomed_id, kept_id, kept_opening_id = doomed.id, kept.id, kept_opening.id

    response = client.delete(f"/api/v1/pixels/{doomed_id}", headers=headers)
    assert response.status_code == 204
    assert response.content == b""

    db.expire_all()
    assert db.get(Pixel, doomed_id) is None
    assert db.scalar(select(func.count()).select_from(Opening).where(Opening.pixel_id == doomed_id)) == 0
    assert db.scalars(select(Opening.id)).all() == [kept_opening_id]
    assert db.get(Pixel, kept_id) is not None
    assert db.get(Contact, contact.id) is not None
    assert_error(client.get(f"/api/v1/pixels/{doomed_id}", headers=headers), 404, "not_found")
    assert_error(client.delete(f"/api/v1/pixels/{doomed_id}", headers=headers), 404, "not_found")


def test_deleted_number_can_be_reused(client, db: Session, headers: dict[str, str], contact: Contact) -> None:
    pixel = factories.make_pixel(db, contact, number=1)
    assert client.delete(f"/api/v1/pixels/{pixel.id}", headers=headers).status_code == 204
    response = client.post(pixels_path(contact), json={"number": 1}, headers=headers)
    assert response.status_code == 201
    assert response.json()["uuid"] != pixel.uuid


def test_deleting_the_contact_deletes_its_pixels(
    client, db: Session, headers: dict[str, str], contact: Contact
) -> None:
    pixel = factories.make_pixel(db, contact)
    factories.make_opening(db, pixel)
    assert client.delete(f"/api/v1/contacts/{contact.id}", headers=headers).status_code == 204
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(Pixel)) == 0
    assert db.scalar(select(func.count()).select_from(Opening)) == 0
