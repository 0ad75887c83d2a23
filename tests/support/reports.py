"""Shared pieces of the report tests: the A/B campaign they read (`make_ab`) and small readers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from app.models import Campaign, Click, ClientKind, Contact, Group, Link, Opening, Pixel, User
from tests import factories

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
ZERO_CLIENTS = {kind.value: 0 for kind in ClientKind}
# The conversion figures of a group (or campaign) without conversions.
NO_CONVERSIONS: dict[str, Any] = {
    "conversions": 0,
    "unique_converters": 0,
    "anonymous_conversions": 0,
    "conversion_rate": 0.0,
    "conversion_rate_of_human_clickers": 0.0,
    "revenue": {},
    "value_per_contact": {},
}
NOT_COUNTERS = (
    "campaign_id",
    "group_id",
    "name",
    "groups",
    "ab",
    "control_group_id",
    "winner_metric",
    "winner",
    "series",
)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def stats(client: Any, campaign_id: int, headers: dict[str, str], **params: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/campaigns/{campaign_id}/stats", params=params, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def group_of(body: dict[str, Any], group_id: int) -> dict[str, Any]:
    (group,) = [g for g in body["groups"] if g["group_id"] == group_id]
    return group


def counters(body: dict[str, Any]) -> dict[str, Any]:
    """The fields shared by the campaign and its groups."""
    return {k: v for k, v in body.items() if k not in NOT_COUNTERS}


def make_ab(db: Session, user: User) -> dict[str, Any]:
    """An A/B test. Delays to the first opening: A 100, 300, 5000 s; B 1000 s (interleaved).

    A: a1 (2 pixels: 3 openings, counted once), a2 (1 gmail_proxy opening), a3 (sent a minute
       later, 1 bot opening 5000 s after), a4 (no opening). 4 contacts, 4 sent, 5 pixels.
    B: b1 (unknown at +1000 s, browser the next day), b2 (clicks without opening), b3 (failed,
       never sent, no pixel). 3 contacts, 2 sent, 2 pixels.
    C: no contact at all.
    Clicks: a1 twice, b1 once, b2 once.
    """
    campaign = factories.make_campaign(db, user, name="Spring")
    a = factories.make_group(db, campaign, name="A")
    b = factories.make_group(db, campaign, name="B")
    c = factories.make_group(db, campaign, name="C")
    sent = {"status": "sent", "scheduled_at": T0, "sent_at": T0}
    a1 = factories.make_contact(db, a, **sent)
    a2 = factories.make_contact(db, a, **sent)
    a3 = factories.make_contact(db, a, status="sent", scheduled_at=T0, sent_at=at(60))
    a4 = factories.make_contact(db, a, **sent)
    b1 = factories.make_contact(db, b, **sent)
    b2 = factories.make_contact(db, b, **sent)
    b3 = factories.make_contact(db, b, status="failed", scheduled_at=T0)
    a1p1, a1p2 = factories.make_pixel(db, a1, 1), factories.make_pixel(db, a1, 2)
    a2p, a3p, b1p = factories.make_pixel(db, a2), factories.make_pixel(db, a3), factories.make_pixel(db, b1)
    factories.make_pixel(db, a4)
    factories.make_pixel(db, b2)
    factories.make_opening(db, a1p1, opened_at=at(100), client="browser")
    factories.make_opening(db, a1p2, opened_at=at(200), client="apple_mpp")
    factories.make_opening(db, a1p1, opened_at=at(3700), client="browser")
    factories.make_opening(db, a2p, opened_at=at(300), client="gmail_proxy")
    factories.make_opening(db, a3p, opened_at=at(5060), client="bot")
    factories.make_opening(db, b1p, opened_at=at(1000), client="unknown")
    factories.make_opening(db, b1p, opened_at=at(90_000), client="browser")
    link = factories.make_link(db, campaign)
    factories.make_click(db, link, a1, clicked_at=at(150), client="browser")
    factories.make_click(db, link, a1, clicked_at=at(4000), client="browser")
    factories.make_click(db, link, b1, clicked_at=at(1100), client="browser")
    factories.make_click(db, link, b2, clicked_at=at(2000), client="unknown")
    return {
        "campaign": campaign,
        "a": a,
        "b": b,
        "c": c,
        "contacts": {"a1": a1, "a2": a2, "a3": a3, "a4": a4, "b1": b1, "b2": b2, "b3": b3},
        "pixels": {"a1p1": a1p1, "a1p2": a1p2},
        "link": link,
    }


def make_arm(
    db: Session, campaign: Campaign, name: str, n: int, opened: int = 0, clicked: int = 0, status: str = "sent"
) -> Group:
    """A group of `n` contacts: the first `opened` load the pixel in a browser, the first `clicked`
    click in a browser (those past `opened`: a click without an opening, an inferred open). One
    flush for the contacts, one for the rest: the counters follow both."""
    group = factories.make_group(db, campaign, name=name)
    link = db.query(Link).filter_by(campaign_id=campaign.id).first() or factories.make_link(db, campaign)
    contacts = [
        Contact(campaign_id=campaign.id, group_id=group.id, email=f"{name}-{i}@example.com", status=status, sent_at=T0)
        for i in range(n)
    ]
    db.add_all(contacts)
    db.flush()
    pixels = [Pixel(contact_id=contact.id, number=1, uuid=uuid.uuid4().hex) for contact in contacts]
    db.add_all(pixels)
    db.flush()
    ids = {"campaign_id": campaign.id}
    for contact, pixel in zip(contacts[:opened], pixels, strict=False):
        db.add(
            Opening(
                pixel_id=pixel.id,
                contact_id=contact.id,
                **ids,
                opened_at=at(60),
                client="browser",
                event_id=uuid.uuid4().hex,
            )
        )
    for contact in contacts[:clicked]:
        db.add(
            Click(
                link_id=link.id,
                contact_id=contact.id,
                **ids,
                clicked_at=at(90),
                client="browser",
                event_id=uuid.uuid4().hex,
            )
        )
    db.commit()
    return group
