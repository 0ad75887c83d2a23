"""Conversion events out (issue #15): a stored conversion (app/tracking/conversions.store, through
tests/factories.make_conversion) appears in the event feed and is delivered, signed, to a real
receiver on loopback; its payload follows the contact's consent; both database legs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete
from sqlalchemy.orm import Session

from app.models import Conversion, Event, User
from app.settings import Settings
from app.webhooks.payload import events_query, read_conversions
from app.webhooks.payload import payloads as payloads_of
from tests import factories
from tests.helpers import assert_error
from tests.support.webhook_receiver import running_receiver
from tests.support.webhooks import click, consent_tree, dispatching, ingest

AT = datetime(2026, 5, 1, 9, 0, 0, 123456, tzinfo=UTC)


def feed(client: TestClient, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    response = client.get("/api/v1/events", params={"limit": 1000, **params}, headers=headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def converted(db: Session, user: User) -> dict[str, Any]:
    """A consent tree (tests/support/webhooks.consent_tree) whose full and anonymous contacts
    convert, and an anonymous token of its group; the off contact's conversion is not stored."""
    tree = consent_tree(db, user)
    full, anonymous, off = (tree["contacts"][level] for level in ("full", "anonymous", "off"))
    link = tree["link"]
    stored = {
        "full": factories.make_conversion(
            db, full, value="42.5", currency="EUR", order_id="order-1", link_id=link.id, occurred_at=AT
        ),
        "anonymous": factories.make_conversion(db, anonymous, name="signup", occurred_at=AT),
        "token": factories.make_conversion(db, group=tree["group"], value="3", currency="USD", occurred_at=AT),
        "off": factories.make_conversion(db, off, occurred_at=AT),
    }
    assert stored["off"] is None
    return {**tree, "conversions": stored}


def expected(tree: dict[str, Any], conversion: Conversion | None, **fields: Any) -> dict[str, Any]:
    assert conversion is not None
    return {
        "id": conversion.event_id,
        "type": "conversion",
        "occurred_at": "2026-05-01T09:00:00.123456Z",
        "campaign_id": tree["campaign"].id,
        "group_id": tree["group"].id,
        "contact_id": None,
        "link_id": None,
        "name": "purchase",
        "value": None,
        "currency": None,
        "order_id": None,
        "source": "api",
        **fields,
    }


def payloads(tree: dict[str, Any]) -> dict[str, dict[str, Any]]:
    full = tree["contacts"]["full"]
    conversions = tree["conversions"]
    return {
        "full": expected(
            tree,
            conversions["full"],
            contact_id=full.id,
            email=full.email,
            link_id=tree["link"].id,
            value="42.5000",
            currency="EUR",
            order_id="order-1",
        ),
        "anonymous": expected(tree, conversions["anonymous"], name="signup"),  # names no one
        "token": expected(tree, conversions["token"], value="3.0000", currency="USD"),
    }


def test_conversions_are_in_the_feed_with_the_consent_rules(
    client: TestClient, db: Session, engine: Engine, user: User, headers: dict[str, str], other_headers: dict[str, str]
) -> None:
    tree = converted(db, user)
    clicked = ingest(engine, click(tree, "full"))
    items = feed(client, headers)
    assert [item["id"] for item in items if item["type"] == "click"] == clicked
    assert [item for item in items if item["type"] == "conversion"] == list(payloads(tree).values())
    assert feed(client, headers, types="conversion") == list(payloads(tree).values())
    assert [item["type"] for item in feed(client, headers, types="click,conversion")] == ["conversion"] * 3 + ["click"]
    assert [item["id"] for item in feed(client, headers, types="open,click")] == clicked
    assert feed(client, other_headers, types="conversion") == []  # owner-scoped
    # A lowered consent is what is told from then on: the conversion names no one.
    full = tree["contacts"]["full"]
    response = client.patch(f"/api/v1/contacts/{full.id}", json={"tracking": "anonymous"}, headers=headers)
    assert response.status_code == 200, response.text
    lowered = {key: value for key, value in payloads(tree)["full"].items() if key != "email"}
    assert feed(client, headers, types="conversion")[0] == {**lowered, "contact_id": None}
    assert_error(client.get("/api/v1/events", params={"types": "conversions"}, headers=headers), 422)


def test_deleting_what_a_conversion_belongs_to_takes_its_event(
    client: TestClient, db: Session, user: User, headers: dict[str, str]
) -> None:
    tree = converted(db, user)
    ids = [item["id"] for item in feed(client, headers, types="conversion")]
    assert len(ids) == 3
    assert client.delete(f"/api/v1/contacts/{tree['contacts']['full'].id}", headers=headers).status_code == 204
    assert [item["id"] for item in feed(client, headers, types="conversion")] == ids[1:]
    # The group goes: its conversions go (ON DELETE CASCADE), and their events are no longer told.
    assert client.delete(f"/api/v1/groups/{tree['group'].id}", headers=headers).status_code == 204
    assert feed(client, headers, types="conversion") == []


def test_conversions_are_delivered_to_a_webhook(
    client: TestClient, db: Session, engine: Engine, user: User, headers: dict[str, str], private_ok: Settings
) -> None:
    with running_receiver() as everything, running_receiver() as conversions_only:
        response = client.post("/api/v1/webhooks", json={"url": everything.url}, headers=headers)
        assert response.status_code == 201, response.text
        assert response.json()["events"] == ["open", "click", "conversion"]  # the default: every type
        secret = response.json()["secret"]
        response = client.post(
            "/api/v1/webhooks", json={"url": conversions_only.url, "events": ["conversion"]}, headers=headers
        )
        assert response.status_code == 201, response.text
        assert response.json()["events"] == ["conversion"]
        tree = converted(db, user)
        clicked = ingest(engine, click(tree, "full"))
        with dispatching(engine, private_ok):
            everything.wait_for(lambda r: len(r.events()) >= 4)
            conversions_only.wait_for(lambda r: len(r.events()) >= 3)
        for request in everything.requests:
            assert request.verify(secret)["type"] == "events"
        told = {event["id"]: event for event in everything.events()}
        assert set(told) == {*clicked, *(p["id"] for p in payloads(tree).values())}
        for key, payload in payloads(tree).items():
            assert told[payload["id"]] == payload, key
        assert conversions_only.events() == list(payloads(tree).values())


def test_a_conversion_gone_after_its_event_was_read_is_not_told(db: Session, engine: Engine, user: User) -> None:
    """The dispatcher reads a batch's events with its claim and their conversions when it sends
    (app/webhooks/payload.read_conversions): a conversion deleted in between drops out."""
    tree = converted(db, user)
    with engine.connect() as conn:
        rows = conn.execute(events_query().where(Event.type == "conversion").order_by(Event.seq)).all()
    assert len(rows) == 3
    gone = tree["conversions"]["full"]
    with engine.begin() as conn:
        conn.execute(delete(Conversion).where(Conversion.id == gone.id))
        told = payloads_of(rows, read_conversions(conn, rows))
    assert [event["id"] for event in told] == [row.event_id for row in rows if row.event_id != gone.event_id]
    assert [event["id"] for event in payloads_of(rows, {})] == []  # no conversion row read: none told
