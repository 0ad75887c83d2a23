"""Tracked links: /api/v1/campaigns/{id}/links, /api/v1/links/{id} and the per-contact URL."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Campaign, Click, Contact, Group, Link, User
from app.settings import Settings
from tests import factories
from tests.helpers import assert_error


def links_path(campaign: Campaign | int) -> str:
    campaign_id = campaign if isinstance(campaign, int) else campaign.id
    return f"/api/v1/campaigns/{campaign_id}/links"


def link_count(db: Session) -> int:
    return db.scalar(select(func.count()).select_from(Link)) or 0


@pytest.fixture
def campaign(db: Session, user: User) -> Campaign:
    return factories.make_campaign(db, user)


@pytest.fixture
def contact(db: Session, campaign: Campaign) -> Contact:
    return factories.make_contact(db, factories.make_group(db, campaign))


# Create.


def test_create_link(client, db: Session, headers: dict[str, str], campaign: Campaign) -> None:
    url = "https://shop.example.com/spring?utm_source=email&utm_medium=pixel#offers"
    response = client.post(links_path(campaign), json={"url": url, "name": "Spring offers"}, headers=headers)
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"id", "campaign_id", "name", "url", "uuid", "trap", "attribution", "created_at"}
    assert body["attribution"] is False
    assert body["trap"] is False
    assert (body["campaign_id"], body["name"], body["url"]) == (campaign.id, "Spring offers", url)
    row = db.get_one(Link, body["id"])
    assert (row.campaign_id, row.url, row.uuid, row.name) == (campaign.id, url, body["uuid"], "Spring offers")


@pytest.mark.parametrize(
    "url", ["http://example.com/a", "https://example.com/a", "HTTPS://Example.COM/Path", "https://example.com:8443/x"]
)
def test_http_and_https_urls_are_accepted(
    client, db: Session, headers: dict[str, str], campaign: Campaign, url: str
) -> None:
    response = client.post(links_path(campaign), json={"url": url}, headers=headers)
    assert response.status_code == 201, response.text
    stored = db.get_one(Link, response.json()["id"]).url
    assert stored == response.json()["url"]
    assert stored.startswith(("http://", "https://"))


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("javascript:alert(1)", id="javascript"),
        pytest.param("JaVaScRiPt:alert(document.cookie)", id="javascript-mixed-case"),
        pytest.param("ftp://files.example.com/x", id="ftp"),
        pytest.param("data:text/html,<script>alert(1)</script>", id="data"),
        pytest.param("file:///etc/passwd", id="file"),
        pytest.param("mailto:someone@example.com", id="mailto"),
        pytest.param("/relative/path", id="relative"),
        pytest.param("//example.com/scheme-relative", id="scheme-relative"),
        pytest.param("example.com/no-scheme", id="no-scheme"),
        pytest.param("https://", id="no-host"),
        pytest.param("", id="empty"),
        pytest.param("https://example.com/" + "a" * 2029, id="2049-chars"),
        pytest.param("https://example.com/" + "é" * 1000, id="over-2048-once-encoded"),
    ],
)
def test_create_rejects_bad_urls(client, db: Session, headers: dict[str, str], campaign: Campaign, url: str) -> None:
    body = assert_error(client.post(links_path(campaign), json={"url": url}, headers=headers), 422, "validation_error")
    assert body["detail"][0]["loc"][:2] == ["body", "url"]
    assert link_count(db) == 0


def test_url_of_exactly_2048_chars_is_stored_whole(
    client, db: Session, headers: dict[str, str], campaign: Campaign
) -> None:
    url = "https://example.com/" + "a" * 2028
    assert len(url) == 2048
    response = client.post(links_path(campaign), json={"url": url}, headers=headers)
    assert response.status_code == 201, response.text
    assert db.get_one(Link, response.json()["id"]).url == url


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({}, id="missing-url"),
        pytest.param({"url": None}, id="null-url"),
        pytest.param({"url": "https://example.com", "name": "n" * 201}, id="name-too-long"),
        pytest.param({"url": "https://example.com", "uuid": "0" * 32}, id="uuid-not-settable"),
        pytest.param({"url": "https://example.com", "campaign_id": 1}, id="campaign-not-settable"),
    ],
)
def test_create_invalid_body_is_422(
    client, db: Session, headers: dict[str, str], campaign: Campaign, payload: dict[str, Any]
) -> None:
    assert_error(client.post(links_path(campaign), json=payload, headers=headers), 422, "validation_error")
    assert link_count(db) == 0


def test_create_on_unknown_campaign_is_404(client, db: Session, headers: dict[str, str]) -> None:
    assert_error(client.post(links_path(987654), json={"url": "https://example.com"}, headers=headers), 404)
    assert link_count(db) == 0


# List / get.


def test_list_is_scoped_to_the_campaign_and_paginated(
    client, db: Session, user: User, headers: dict[str, str], campaign: Campaign
) -> None:
    mine = [factories.make_link(db, campaign, url=f"https://example.com/{i}") for i in range(3)]
    factories.make_link(db, factories.make_campaign(db, user), url="https://example.com/elsewhere")
    page = client.get(links_path(campaign), headers=headers).json()
    assert (page["total"], page["limit"], page["offset"]) == (3, 50, 0)
    assert [item["id"] for item in page["items"]] == [link.id for link in mine]
    assert {item["campaign_id"] for item in page["items"]} == {campaign.id}
    second = client.get(links_path(campaign), params={"limit": 1, "offset": 1}, headers=headers).json()
    assert [item["id"] for item in second["items"]] == [mine[1].id]


def test_get_one(client, db: Session, headers: dict[str, str], campaign: Campaign) -> None:
    link = factories.make_link(db, campaign, url="https://example.com/landing")
    response = client.get(f"/api/v1/links/{link.id}", headers=headers)
    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["campaign_id"], body["url"], body["uuid"]) == (
        link.id,
        campaign.id,
        "https://example.com/landing",
        link.uuid,
    )


def test_get_unknown_is_404(client, headers: dict[str, str]) -> None:
    assert_error(client.get("/api/v1/links/987654", headers=headers), 404, "not_found")


# Patch.


def test_patch_url_and_name(client, db: Session, headers: dict[str, str], campaign: Campaign) -> None:
    link = factories.make_link(db, campaign)
    response = client.patch(
        f"/api/v1/links/{link.id}", json={"url": "http://example.org/new", "name": "New"}, headers=headers
    )
    assert response.status_code == 200, response.text
    assert (response.json()["url"], response.json()["name"]) == ("http://example.org/new", "New")
    db.expire_all()
    row = db.get_one(Link, link.id)
    assert (row.url, row.name, row.uuid, row.campaign_id) == ("http://example.org/new", "New", link.uuid, campaign.id)


def test_patch_name_to_null_keeps_url(client, db: Session, headers: dict[str, str], campaign: Campaign) -> None:
    link = factories.make_link(db, campaign, url="https://example.com/keep")
    assert client.patch(f"/api/v1/links/{link.id}", json={"name": None}, headers=headers).status_code == 200
    db.expire_all()
    assert db.get_one(Link, link.id).url == "https://example.com/keep"


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"url": None}, id="null-url"),
        pytest.param({"url": "javascript:alert(1)"}, id="javascript"),
        pytest.param({"url": "ftp://example.com/x"}, id="ftp"),
        pytest.param({"url": "data:text/plain,hi"}, id="data"),
        pytest.param({"url": "/relative"}, id="relative"),
        pytest.param({"url": "https://example.com/" + "a" * 2029}, id="too-long"),
        pytest.param({"uuid": "f" * 32}, id="uuid-immutable"),
        pytest.param({"campaign_id": 1}, id="campaign-immutable"),
    ],
)
def test_patch_invalid_is_422_and_changes_nothing(
    client, db: Session, headers: dict[str, str], campaign: Campaign, payload: dict[str, Any]
) -> None:
    link = factories.make_link(db, campaign, url="https://example.com/keep")
    assert_error(client.patch(f"/api/v1/links/{link.id}", json=payload, headers=headers), 422, "validation_error")
    db.expire_all()
    row = db.get_one(Link, link.id)
    assert (row.url, row.uuid, row.campaign_id) == ("https://example.com/keep", link.uuid, campaign.id)


# Delete.


def test_delete_link_deletes_its_clicks_only(
    client, db: Session, headers: dict[str, str], campaign: Campaign, contact: Contact
) -> None:
    doomed = factories.make_link(db, campaign)
    kept = factories.make_link(db, campaign)
    factories.make_click(db, doomed, contact)
    factories.make_click(db, doomed, contact)
    kept_click = factories.make_click(db, kept, contact)
    doomed_id, kept_id, kept_click_id = doomed.id, kept.id, kept_click.id

    response = client.delete(f"/api/v1/links/{doomed_id}", headers=headers)
    assert response.status_code == 204
    db.expire_all()
    assert db.get(Link, doomed_id) is None
    assert db.scalars(select(Click.id)).all() == [kept_click_id]
    assert db.get(Link, kept_id) is not None
    assert db.get(Contact, contact.id) is not None
    assert_error(client.get(f"/api/v1/links/{doomed_id}", headers=headers), 404, "not_found")


def test_deleting_the_campaign_deletes_links_and_clicks(
    client, db: Session, headers: dict[str, str], campaign: Campaign, contact: Contact
) -> None:
    factories.make_click(db, factories.make_link(db, campaign), contact)
    assert client.delete(f"/api/v1/campaigns/{campaign.id}", headers=headers).status_code == 204
    assert link_count(db) == 0
    assert db.scalar(select(func.count()).select_from(Click)) == 0


# The tracked URL of a link for one contact.


def test_tracked_url(
    client, db: Session, settings: Settings, headers: dict[str, str], campaign: Campaign, contact: Contact
) -> None:
    link = factories.make_link(db, campaign)
    second = factories.make_contact(db, db.get_one(Group, contact.group_id))
    response = client.get(f"/api/v1/links/{link.id}/url", params={"contact_id": contact.id}, headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["link_id"], body["contact_id"]) == (link.id, contact.id)
    assert body["url"].startswith(settings.public_base_url + "/c/")
    assert len(body["url"]) > len(settings.public_base_url + "/c/")
    assert link.url not in body["url"]
    other = client.get(f"/api/v1/links/{link.id}/url", params={"contact_id": second.id}, headers=headers).json()
    assert other["url"].startswith(settings.public_base_url + "/c/")
    assert other["url"] != body["url"]


def test_tracked_url_for_contact_of_another_campaign_is_404(
    client, db: Session, user: User, headers: dict[str, str], campaign: Campaign
) -> None:
    link = factories.make_link(db, campaign)
    elsewhere = factories.make_contact(db, factories.make_group(db, factories.make_campaign(db, user)))
    response = client.get(f"/api/v1/links/{link.id}/url", params={"contact_id": elsewhere.id}, headers=headers)
    assert_error(response, 404, "not_found")


def test_tracked_url_for_unknown_contact_is_404(
    client, db: Session, headers: dict[str, str], campaign: Campaign
) -> None:
    link = factories.make_link(db, campaign)
    response = client.get(f"/api/v1/links/{link.id}/url", params={"contact_id": 987654}, headers=headers)
    assert_error(response, 404, "not_found")


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({}, id="missing"),
        pytest.param({"contact_id": ""}, id="empty"),
        pytest.param({"contact_id": "abc"}, id="not-a-number"),
        pytest.param({"contact_id": 0}, id="zero"),
        pytest.param({"contact_id": -5}, id="negative"),
        pytest.param({"contact_id": 2**64}, id="too-big"),
    ],
)
def test_tracked_url_with_bad_contact_id_is_422(
    client, db: Session, headers: dict[str, str], campaign: Campaign, params: dict[str, Any]
) -> None:
    link = factories.make_link(db, campaign)
    body = assert_error(
        client.get(f"/api/v1/links/{link.id}/url", params=params, headers=headers), 422, "validation_error"
    )
    assert body["detail"][0]["loc"] == ["query", "contact_id"]


def test_tracked_url_of_unknown_link_is_404(client, headers: dict[str, str], contact: Contact) -> None:
    response = client.get("/api/v1/links/987654/url", params={"contact_id": contact.id}, headers=headers)
    assert_error(response, 404, "not_found")
