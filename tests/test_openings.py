"""Manual openings: /api/v1/pixels/{id}/openings and /api/v1/openings/{id}."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Contact, Opening, Pixel, User
from tests import factories
from tests.helpers import assert_error


def openings_path(pixel: Pixel | int) -> str:
    pixel_id = pixel if isinstance(pixel, int) else pixel.id
    return f"/api/v1/pixels/{pixel_id}/openings"


def opening_count(db: Session) -> int:
    return db.scalar(select(func.count()).select_from(Opening)) or 0


@pytest.fixture
def contact(db: Session, user: User) -> Contact:
    # A second campaign first, so that the contact and campaign ids differ from the pixel's.
    factories.make_tree(db, user)
    campaign = factories.make_campaign(db, user)
    group = factories.make_group(db, campaign)
    factories.make_contact(db, group)
    return factories.make_contact(db, group)


@pytest.fixture
def pixel(db: Session, contact: Contact) -> Pixel:
    factories.make_pixel(db, contact, number=1)
    return factories.make_pixel(db, contact, number=2)


# Create.


def test_create_with_defaults(client, db: Session, headers: dict[str, str], contact: Contact, pixel: Pixel) -> None:
    before = datetime.now(UTC)
    response = client.post(openings_path(pixel), json={}, headers=headers)
    after = datetime.now(UTC)
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {
        "id",
        "pixel_id",
        "contact_id",
        "campaign_id",
        "opened_at",
        "ip",
        "user_agent",
        "client",
        "reason",
        "event_id",
    }
    assert body["pixel_id"] == pixel.id
    assert body["contact_id"] == contact.id
    assert body["campaign_id"] == contact.campaign_id
    assert (body["client"], body["reason"]) == ("unknown", "api:manual")
    assert body["ip"] is None
    assert body["user_agent"] is None
    assert re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", body["event_id"])
    opened_at = datetime.fromisoformat(body["opened_at"])
    assert opened_at.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= opened_at <= after + timedelta(seconds=1)

    row = db.get_one(Opening, body["id"])
    assert (row.pixel_id, row.contact_id, row.campaign_id) == (pixel.id, contact.id, contact.campaign_id)
    assert (row.client, row.event_id, row.ip) == ("unknown", f"{pixel.id}~{body['event_id']}", None)
    assert abs(row.opened_at - opened_at) < timedelta(milliseconds=1)


def test_generated_event_ids_are_unique(client, db: Session, headers: dict[str, str], pixel: Pixel) -> None:
    ids = {client.post(openings_path(pixel), json={}, headers=headers).json()["event_id"] for _ in range(3)}
    assert len(ids) == 3
    assert opening_count(db) == 3 + 1  # plus the opening of the fixture tree


def test_create_with_explicit_fields(client, db: Session, headers: dict[str, str], pixel: Pixel) -> None:
    payload = {
        "opened_at": "2026-03-01T12:30:15.250000+02:00",
        "ip": "2001:DB8:0:0:0:0:0:0001",
        "user_agent": "Mozilla/5.0 (Macintosh)",
        "client": "apple_mpp",
        "event_id": "import:batch-7.row_42",
    }
    response = client.post(openings_path(pixel), json=payload, headers=headers)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["opened_at"] == "2026-03-01T10:30:15.250000+00:00"
    assert body["ip"] == "2001:db8::1"
    assert body["user_agent"] == "Mozilla/5.0 (Macintosh)"
    assert body["client"] == "apple_mpp"
    assert body["event_id"] == "import:batch-7.row_42"
    row = db.get_one(Opening, body["id"])
    assert row.opened_at == datetime(2026, 3, 1, 10, 30, 15, 250000, tzinfo=UTC)
    assert (row.ip, row.client, row.event_id) == ("2001:db8::1", "apple_mpp", f"{pixel.id}~import:batch-7.row_42")


def test_naive_opened_at_is_taken_as_utc(client, headers: dict[str, str], pixel: Pixel) -> None:
    response = client.post(openings_path(pixel), json={"opened_at": "2026-01-02T03:04:05"}, headers=headers)
    assert response.status_code == 201
    assert response.json()["opened_at"] == "2026-01-02T03:04:05+00:00"


def test_duplicate_event_id_is_409_and_not_recorded_twice(
    client, db: Session, headers: dict[str, str], pixel: Pixel
) -> None:
    first = client.post(openings_path(pixel), json={"event_id": "evt-1", "client": "browser"}, headers=headers)
    assert first.status_code == 201
    body = assert_error(
        client.post(openings_path(pixel), json={"event_id": "evt-1", "client": "bot"}, headers=headers),
        409,
        "conflict",
    )
    assert body["detail"][0]["loc"] == ["body", "event_id"]
    rows = db.scalars(select(Opening).where(Opening.event_id == f"{pixel.id}~evt-1")).all()
    assert [(r.id, r.client) for r in rows] == [(first.json()["id"], "browser")]


def test_event_id_is_a_key_of_its_pixel_only(
    client, db: Session, headers: dict[str, str], contact: Contact, pixel: Pixel
) -> None:
    other_pixel = db.scalars(select(Pixel).where(Pixel.contact_id == contact.id, Pixel.id != pixel.id)).one()
    first = client.post(openings_path(pixel), json={"event_id": "shared"}, headers=headers)
    second = client.post(openings_path(other_pixel), json={"event_id": "shared"}, headers=headers)
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["event_id"] == second.json()["event_id"] == "shared"
    assert first.json()["id"] != second.json()["id"]


def test_event_ids_differing_only_in_case_are_distinct_on_every_backend(
    client, db: Session, headers: dict[str, str], pixel: Pixel
) -> None:
    assert client.post(openings_path(pixel), json={"event_id": "Evt-A"}, headers=headers).status_code == 201
    assert client.post(openings_path(pixel), json={"event_id": "evt-a"}, headers=headers).status_code == 201
    stored = [f"{pixel.id}~Evt-A", f"{pixel.id}~evt-a"]
    assert db.scalar(select(func.count()).select_from(Opening).where(Opening.event_id.in_(stored))) == 2


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        pytest.param({"ip": "999.1.1.1"}, "ip", id="ip-octet-out-of-range"),
        pytest.param({"ip": "not-an-ip"}, "ip", id="ip-garbage"),
        pytest.param({"ip": "1.2.3"}, "ip", id="ip-short"),
        pytest.param({"ip": ""}, "ip", id="ip-empty"),
        pytest.param({"ip": "1" * 46}, "ip", id="ip-too-long"),
        pytest.param({"client": "chrome"}, "client", id="client-unknown-kind"),
        pytest.param({"client": None}, "client", id="client-null"),
        pytest.param({"client": "APPLE_MPP"}, "client", id="client-wrong-case"),
        pytest.param({"opened_at": "yesterday"}, "opened_at", id="opened-at-garbage"),
        pytest.param({"opened_at": "0001-01-01T00:00:00Z"}, "opened_at", id="opened-at-year-1"),
        pytest.param({"event_id": ""}, "event_id", id="event-id-empty"),
        pytest.param({"event_id": "x" * 65}, "event_id", id="event-id-too-long"),
        pytest.param({"event_id": "has space"}, "event_id", id="event-id-bad-chars"),
        pytest.param({"user_agent": "u" * 513}, "user_agent", id="user-agent-too-long"),
        pytest.param({"pixel_id": 1}, "pixel_id", id="pixel-id-not-settable"),
        pytest.param({"campaign_id": 1}, "campaign_id", id="campaign-id-not-settable"),
    ],
)
def test_create_invalid_is_422_and_writes_nothing(
    client, db: Session, headers: dict[str, str], pixel: Pixel, payload: dict[str, Any], field: str
) -> None:
    before = opening_count(db)
    body = assert_error(client.post(openings_path(pixel), json=payload, headers=headers), 422, "validation_error")
    assert body["detail"][0]["loc"][:2] == ["body", field]
    assert opening_count(db) == before


def test_create_on_unknown_pixel_is_404(client, db: Session, headers: dict[str, str]) -> None:
    assert_error(client.post(openings_path(987654), json={}, headers=headers), 404, "not_found")


# List.


def test_list_is_ordered_by_opened_at_and_paginated(
    client, db: Session, headers: dict[str, str], contact: Contact, pixel: Pixel
) -> None:
    base = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    for hours in (5, 1, 3, 2, 4):
        factories.make_opening(db, pixel, opened_at=base + timedelta(hours=hours), event_id=f"h{hours}")
    other_pixel = db.scalars(select(Pixel).where(Pixel.contact_id == contact.id, Pixel.id != pixel.id)).one()
    factories.make_opening(db, other_pixel, opened_at=base, event_id="elsewhere")

    page = client.get(openings_path(pixel), headers=headers).json()
    assert (page["total"], page["limit"], page["offset"]) == (5, 50, 0)
    assert [item["event_id"] for item in page["items"]] == ["h1", "h2", "h3", "h4", "h5"]
    assert [datetime.fromisoformat(item["opened_at"]) for item in page["items"]] == [
        base + timedelta(hours=h) for h in (1, 2, 3, 4, 5)
    ]
    assert {item["pixel_id"] for item in page["items"]} == {pixel.id}

    second = client.get(openings_path(pixel), params={"limit": 2, "offset": 2}, headers=headers).json()
    assert second["total"] == 5
    assert [item["event_id"] for item in second["items"]] == ["h3", "h4"]


def test_list_of_unknown_pixel_is_404(client, headers: dict[str, str]) -> None:
    assert_error(client.get(openings_path(987654), headers=headers), 404, "not_found")


# Get / patch / delete one.


def test_get_one(client, db: Session, headers: dict[str, str], contact: Contact, pixel: Pixel) -> None:
    opening = factories.make_opening(db, pixel, ip="203.0.113.7", client="gmail_proxy")
    response = client.get(f"/api/v1/openings/{opening.id}", headers=headers)
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == opening.id
    assert (body["pixel_id"], body["contact_id"], body["campaign_id"]) == (pixel.id, contact.id, contact.campaign_id)
    assert (body["ip"], body["client"], body["event_id"]) == ("203.0.113.7", "gmail_proxy", opening.event_id)


def test_get_unknown_is_404(client, headers: dict[str, str]) -> None:
    assert_error(client.get("/api/v1/openings/987654", headers=headers), 404, "not_found")


def test_patch_client_opened_at_ip_and_user_agent(client, db: Session, headers: dict[str, str], pixel: Pixel) -> None:
    opening = factories.make_opening(db, pixel, ip="203.0.113.7", user_agent="old", event_id="keep-me")
    response = client.patch(
        f"/api/v1/openings/{opening.id}",
        json={"client": "browser", "opened_at": "2026-02-03T04:05:06-05:00", "ip": "198.51.100.9", "user_agent": "new"},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["client"] == "browser"
    assert body["opened_at"] == "2026-02-03T09:05:06+00:00"
    assert body["ip"] == "198.51.100.9"
    assert body["user_agent"] == "new"
    assert body["event_id"] == "keep-me"
    db.expire_all()
    row = db.get_one(Opening, opening.id)
    assert (row.client, row.ip, row.user_agent, row.event_id) == ("browser", "198.51.100.9", "new", "keep-me")
    assert row.opened_at == datetime(2026, 2, 3, 9, 5, 6, tzinfo=UTC)
    assert (row.pixel_id, row.contact_id, row.campaign_id) == (
        opening.pixel_id,
        opening.contact_id,
        opening.campaign_id,
    )


def test_patch_only_changes_the_fields_sent(client, db: Session, headers: dict[str, str], pixel: Pixel) -> None:
    opened_at = datetime(2026, 4, 4, 4, 4, 4, tzinfo=UTC)
    opening = factories.make_opening(db, pixel, ip="203.0.113.7", client="bot", opened_at=opened_at)
    response = client.patch(f"/api/v1/openings/{opening.id}", json={"ip": None}, headers=headers)
    assert response.status_code == 200
    db.expire_all()
    row = db.get_one(Opening, opening.id)
    assert (row.ip, row.client, row.opened_at) == (None, "bot", opened_at)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        pytest.param({"opened_at": None}, None, id="opened-at-null"),
        pytest.param({"client": None}, None, id="client-null"),
        pytest.param({"client": "chrome"}, "client", id="client-unknown-kind"),
        pytest.param({"ip": "300.0.0.1"}, "ip", id="ip-invalid"),
        pytest.param({"opened_at": "soon"}, "opened_at", id="opened-at-garbage"),
        pytest.param({"event_id": "new-id"}, "event_id", id="event-id-immutable"),
        pytest.param({"pixel_id": 1}, "pixel_id", id="pixel-id-immutable"),
        pytest.param({"contact_id": 1}, "contact_id", id="contact-id-immutable"),
    ],
)
def test_patch_invalid_is_422_and_changes_nothing(
    client, db: Session, headers: dict[str, str], pixel: Pixel, payload: dict[str, Any], field: str | None
) -> None:
    opened_at = datetime(2026, 4, 4, 4, 4, 4, tzinfo=UTC)
    opening = factories.make_opening(db, pixel, ip="203.0.113.7", client="bot", opened_at=opened_at, event_id="e1")
    body = assert_error(
        client.patch(f"/api/v1/openings/{opening.id}", json=payload, headers=headers), 422, "validation_error"
    )
    if field is not None:
        assert body["detail"][0]["loc"][:2] == ["body", field]
    db.expire_all()
    row = db.get_one(Opening, opening.id)
    assert (row.ip, row.client, row.opened_at, row.event_id, row.pixel_id) == (
        "203.0.113.7",
        "bot",
        opened_at,
        "e1",
        pixel.id,
    )


def test_patch_unknown_is_404(client, headers: dict[str, str]) -> None:
    assert_error(client.patch("/api/v1/openings/987654", json={"client": "bot"}, headers=headers), 404, "not_found")


def test_delete_one(client, db: Session, headers: dict[str, str], pixel: Pixel) -> None:
    doomed = factories.make_opening(db, pixel)
    kept = factories.make_opening(db, pixel)
    doomed_id, kept_id = doomed.id, kept.id
    response = client.delete(f"/api/v1/openings/{doomed_id}", headers=headers)
    assert response.status_code == 204
    db.expire_all()
    assert db.get(Opening, doomed_id) is None
    assert db.get(Opening, kept_id) is not None
    assert db.get(Pixel, pixel.id) is not None
    assert_error(client.get(f"/api/v1/openings/{doomed_id}", headers=headers), 404, "not_found")
    assert_error(client.delete(f"/api/v1/openings/{doomed_id}", headers=headers), 404, "not_found")


def test_deleted_event_id_can_be_recorded_again(client, db: Session, headers: dict[str, str], pixel: Pixel) -> None:
    opening = factories.make_opening(db, pixel, event_id="again")
    assert client.delete(f"/api/v1/openings/{opening.id}", headers=headers).status_code == 204
    response = client.post(openings_path(pixel), json={"event_id": "again"}, headers=headers)
    assert response.status_code == 201
    assert response.json()["id"] != opening.id
