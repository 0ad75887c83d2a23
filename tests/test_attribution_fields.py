"""The API's attribution fields (docs/conversions.md, "Attribution"): a campaign's
`attribution_default` and `conversion_origins`, a link's `attribution` (from the campaign's
default when not given, by `POST .../links` and by the render)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Campaign, Link, User
from app.schemas.origins import MAX_ORIGINS
from tests import factories
from tests.helpers import assert_error

CAMPAIGNS = "/api/v1/campaigns"


def _campaign(client: TestClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = client.post(CAMPAIGNS, json={"name": "Outcomes", **body}, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def test_campaign_defaults_and_round_trip(client: TestClient, headers: dict[str, str], db: Session) -> None:
    created = _campaign(client, headers)
    assert (created["attribution_default"], created["conversion_origins"]) == (False, [])
    campaign_id = created["id"]
    patched = client.patch(
        f"{CAMPAIGNS}/{campaign_id}",
        json={
            "attribution_default": True,
            "conversion_origins": [
                "HTTPS://Shop.Example.COM:443",  # lowercased, default port dropped
                "https://shop.example.com",  # the same origin: kept once
                "http://localhost:8080",
                "http://[::0001]:80",
            ],
        },
        headers=headers,
    )
    assert patched.status_code == 200, patched.text
    expected = ["https://shop.example.com", "http://localhost:8080", "http://[::1]"]
    assert patched.json()["conversion_origins"] == expected
    read = client.get(f"{CAMPAIGNS}/{campaign_id}", headers=headers).json()
    assert (read["attribution_default"], read["conversion_origins"]) == (True, expected)
    db.commit()  # (a fresh snapshot: MariaDB is REPEATABLE READ)
    stored = db.scalar(select(Campaign).where(Campaign.id == campaign_id))
    assert stored is not None
    assert stored.conversion_origins == expected
    assert stored.attribution_default is True
    # Only what is sent changes; an empty list clears the origins.
    renamed = client.patch(f"{CAMPAIGNS}/{campaign_id}", json={"name": "x"}, headers=headers).json()
    assert renamed["conversion_origins"] == expected
    cleared = client.patch(f"{CAMPAIGNS}/{campaign_id}", json={"conversion_origins": []}, headers=headers).json()
    assert cleared["conversion_origins"] == []


@pytest.mark.parametrize(
    "origin",
    [
        "ftp://shop.example.com",
        "shop.example.com",
        "https://shop.example.com/",
        "https://shop.example.com/path",
        "https://shop.example.com?x=1",
        "https://shop.example.com#top",
        "https://user:pw@shop.example.com",
        "https://shop.example.com:0",
        "https://shop.example.com:65536",
        "https://-shop.example.com",
        "https://shop..example.com",
        "https://[not-ipv6]",
        "https://",
        "javascript:alert(1)",
        "",
    ],
)
def test_invalid_origins_are_422(client: TestClient, headers: dict[str, str], origin: str) -> None:
    response = client.post(CAMPAIGNS, json={"name": "x", "conversion_origins": [origin]}, headers=headers)
    body = assert_error(response, 422, "validation_error")
    assert body["detail"][0]["loc"][:3] == ["body", "conversion_origins", 0]


def test_origins_bounds_and_types_are_422(client: TestClient, headers: dict[str, str], tree: dict[str, Any]) -> None:
    too_many = [f"https://shop{i}.example.com" for i in range(MAX_ORIGINS + 1)]
    assert_error(client.post(CAMPAIGNS, json={"name": "x", "conversion_origins": too_many}, headers=headers), 422)
    assert _campaign(client, headers, conversion_origins=too_many[:MAX_ORIGINS])["conversion_origins"] == too_many[:20]
    campaign_path = f"{CAMPAIGNS}/{tree['campaign'].id}"
    for body in (
        {"conversion_origins": None},
        {"conversion_origins": "https://shop.example.com"},
        {"attribution_default": None},
        {"attribution_default": "yes"},
        {"attribution_default": 1},
    ):
        assert_error(client.patch(campaign_path, json=body, headers=headers), 422, "validation_error")


def test_link_attribution_defaults_to_the_campaign(
    client: TestClient, headers: dict[str, str], db: Session, user: User
) -> None:
    plain = factories.make_campaign(db, user)
    attributed = factories.make_campaign(db, user, attribution_default=True)
    db.commit()

    def create(campaign: Campaign, **body: Any) -> dict[str, Any]:
        response = client.post(
            f"{CAMPAIGNS}/{campaign.id}/links", json={"url": "https://shop.example.com/a", **body}, headers=headers
        )
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    assert create(plain)["attribution"] is False
    assert create(plain, attribution=True)["attribution"] is True
    assert create(attributed)["attribution"] is True
    assert create(attributed, attribution=None)["attribution"] is True
    link = create(attributed, attribution=False)
    assert link["attribution"] is False
    patched = client.patch(f"/api/v1/links/{link['id']}", json={"attribution": True}, headers=headers)
    assert patched.status_code == 200
    assert patched.json()["attribution"] is True
    assert client.get(f"/api/v1/links/{link['id']}", headers=headers).json()["attribution"] is True
    assert db.scalar(select(Link.attribution).where(Link.id == link["id"])) is True
    for bad in (None, "true", 1):
        assert_error(client.patch(f"/api/v1/links/{link['id']}", json={"attribution": bad}, headers=headers), 422)


@pytest.mark.parametrize("default", [False, True])
def test_render_creates_links_with_the_campaign_default(
    client: TestClient, headers: dict[str, str], db: Session, user: User, default: bool
) -> None:
    campaign = factories.make_campaign(db, user, attribution_default=default)
    factories.make_contact(db, factories.make_group(db, campaign))
    db.commit()
    response = client.post(
        f"{CAMPAIGNS}/{campaign.id}/render",
        json={"html": '<p><a href="https://shop.example.com/x">x</a> <a href="https://shop.example.com/y">y</a>'},
        headers={**headers, "Accept": "application/json"},
    )
    assert response.status_code == 200, response.text
    flags = db.scalars(select(Link.attribution).where(Link.campaign_id == campaign.id)).all()
    assert flags == [default, default]
