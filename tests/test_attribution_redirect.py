"""The click redirect of a link with `attribution` (docs/conversions.md, "Attribution"): `pt=<token>`
appended to the stored URL, naming the campaign, group, contact (0: anonymous), link and the
recorded click's own event id; never for `off` contacts; links without attribution unchanged."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from app.main import create_asgi
from app.models import Click, Contact, Conversion, Link, Opening, Tracking, User
from app.settings import Settings
from app.tracking.attribution import Attribution, AttributionCodec
from app.tracking.redirect import with_param
from tests import factories
from tests.support.app_state import app_state, flush_memory

UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"


@pytest.fixture
def embedded(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_asgi(settings)) as client:
        yield client


def _codec(client: TestClient) -> AttributionCodec:
    codec: AttributionCodec = app_state(client).tracker.attribution.codec
    return codec


def _click(client: TestClient, link: Link, contact: Contact) -> str:
    token = app_state(client).tracker.codec.click_token(link.id, contact.id)
    response = client.get(f"/c/{token}", follow_redirects=False, headers={"User-Agent": UA})
    assert response.status_code == 302, response.text
    location: str = response.headers["location"]
    return location


def _pt(location: str) -> str:
    values = parse_qs(urlsplit(location).query)["pt"]
    assert len(values) == 1, location
    return values[0]


def _setup(db: Session, user: User, url: str = "https://shop.example.com/landing", **contact: Any) -> dict[str, Any]:
    campaign = factories.make_campaign(db, user)
    group = factories.make_group(db, campaign)
    return {
        "campaign": campaign,
        "group": group,
        "contact": factories.make_contact(db, group, **contact),
        "link": factories.make_link(db, campaign, url, attribution=True),
    }


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://s.example/p", "https://s.example/p?pt=T"),
        ("https://s.example/p?", "https://s.example/p?pt=T"),
        ("https://s.example/p?a=1&b=", "https://s.example/p?a=1&b=&pt=T"),
        ("https://s.example/p?pt=old&a=1&pt=older", "https://s.example/p?a=1&pt=T"),
        ("https://s.example/p?a=1#frag?x=1&pt=2", "https://s.example/p?a=1&pt=T#frag?x=1&pt=2"),
        ("https://s.example/p#", "https://s.example/p?pt=T#"),
        ("https://s.example/p?ptx=1&xpt=2&pt", "https://s.example/p?ptx=1&xpt=2&pt=T"),
        ("https://s.example/p?q=%26pt%3D1", "https://s.example/p?q=%26pt%3D1&pt=T"),
    ],
)
def test_with_param(url: str, expected: str) -> None:
    assert with_param(url, "T") == expected


def test_attribution_link_redirect_carries_a_token_naming_the_recorded_click(
    embedded: TestClient, db: Session, user: User
) -> None:
    objects = _setup(db, user, "https://shop.example.com/p?utm_source=email&pt=stale#buy")
    before = int(time.time())
    location = _click(embedded, objects["link"], objects["contact"])
    prefix, _, rest = location.partition("pt=")
    assert prefix == "https://shop.example.com/p?utm_source=email&"
    token, fragment = rest.split("#")
    assert fragment == "buy"
    assert len(token) == 87
    opened = _codec(embedded).open(token)
    assert opened is not None
    flush_memory(embedded)
    db.commit()
    clicks = db.scalars(select(Click).where(Click.link_id == objects["link"].id)).all()
    assert len(clicks) == 1
    assert opened == Attribution(
        campaign_id=objects["campaign"].id,
        group_id=objects["group"].id,
        contact_id=objects["contact"].id,
        link_id=objects["link"].id,
        click_event_id=clicks[0].event_id,
        issued_at=opened.issued_at,
    )
    assert before <= opened.issued_at <= int(time.time())
    # A second click gets a token of its own (its own event id).
    assert _pt(_click(embedded, objects["link"], objects["contact"])) != token


def test_anonymous_contact_token_names_no_contact(embedded: TestClient, db: Session, user: User) -> None:
    objects = _setup(db, user, tracking=Tracking.anonymous.value)
    opened = _codec(embedded).open(_pt(_click(embedded, objects["link"], objects["contact"])))
    assert opened is not None
    assert opened.anonymous
    assert (opened.campaign_id, opened.group_id, opened.contact_id) == (objects["campaign"].id, objects["group"].id, 0)
    assert (opened.link_id, opened.click_event_id) == (objects["link"].id, "0" * 24)  # its click would name it


def test_off_contact_and_plain_links_redirect_to_the_stored_url(embedded: TestClient, db: Session, user: User) -> None:
    url = "https://shop.example.com/p?a=1#x"
    off = _setup(db, user, url, tracking=Tracking.off.value)
    assert _click(embedded, off["link"], off["contact"]) == url
    plain = _setup(db, user, url)
    db.execute(update(Link).where(Link.id == plain["link"].id).values(attribution=False))
    db.commit()
    assert _click(embedded, plain["link"], plain["contact"]) == url


def test_patching_attribution_takes_effect_at_once(
    embedded: TestClient, db: Session, user: User, settings: Settings
) -> None:
    objects = _setup(db, user)
    link, contact = objects["link"], objects["contact"]
    assert "pt=" in _click(embedded, link, contact)
    headers = factories.headers_for(settings, user)
    assert embedded.patch(f"/api/v1/links/{link.id}", json={"attribution": False}, headers=headers).status_code == 200
    assert _click(embedded, link, contact) == link.url


def test_no_token_when_nothing_is_recorded(settings: Settings, engine: Engine, db: Session, user: User) -> None:
    objects = _setup(db, user)
    with TestClient(create_asgi(settings.model_copy(update={"tracking_disabled": True}))) as client:
        assert _click(client, objects["link"], objects["contact"]) == objects["link"].url


def test_token_lifetime_follows_the_setting(settings: Settings, engine: Engine, db: Session, user: User) -> None:
    objects = _setup(db, user)
    with TestClient(create_asgi(settings.model_copy(update={"attribution_token_days": 2}))) as client:
        codec = _codec(client)
        assert codec.lifetime == 2 * 86_400
        token = _pt(_click(client, objects["link"], objects["contact"]))
        assert codec.open(token, now=time.time() + 86_400) is not None
        assert codec.open(token, now=time.time() + 3 * 86_400) is None


def test_tracking_and_attribution_tokens_cannot_stand_in_for_each_other(
    embedded: TestClient, db: Session, user: User
) -> None:
    """Each token opens at its own endpoint only, though all derive from the one FERNET_KEY: an
    attribution token is no pixel or click token (404, nothing recorded), and a pixel or click
    token is no attribution token (the intake refuses it, 404)."""
    objects = _setup(db, user)
    pixel = factories.make_pixel(db, objects["contact"])
    db.commit()
    pt = _pt(_click(embedded, objects["link"], objects["contact"]))
    flush_memory(embedded)
    codec = app_state(embedded).tracker.codec
    pixel_token, click_token = codec.pixel_token(pixel.id), codec.click_token(objects["link"].id, objects["contact"].id)
    assert embedded.get(f"/o/{pt}.gif").status_code == 404
    assert embedded.get(f"/c/{pt}", follow_redirects=False).status_code == 404
    for token in (pixel_token, click_token):
        assert _codec(embedded).open(token) is None
        assert embedded.get("/e.gif", params={"pt": token, "name": "purchase"}).status_code == 404
    flush_memory(embedded)
    db.expire_all()
    assert len(db.scalars(select(Click).where(Click.link_id == objects["link"].id)).all()) == 1  # the real click only
    assert db.scalars(select(Opening).where(Opening.pixel_id == pixel.id)).all() == []
    assert db.scalars(select(Conversion).where(Conversion.campaign_id == objects["campaign"].id)).all() == []
