"""The bulk import answers with the contacts as stored, without reading them back, and counts
them set-based (app/services/contacts.import_contacts, counters/contacts.count_new_contacts)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session

from app.db import make_sessionmaker
from app.models import Campaign, Contact, ContactStats, Group, GroupCounts, User
from app.models.base import utcnow
from app.schemas.contact import ContactOut
from tests import factories
from tests.helpers import counter_drift


@pytest.fixture
def campaign(db: Session, user: User) -> Campaign:
    return factories.make_campaign(db, user, tracking_default="anonymous")


@pytest.fixture
def group(db: Session, campaign: Campaign) -> Group:
    return factories.make_group(db, campaign, name="A")


def _rows() -> list[dict[str, Any]]:
    """Every column a client sets, in the forms it may send them."""
    rows: list[dict[str, Any]] = [
        {"email": "Plain@Example.COM"},
        {"email": "b@example.com", "name": '  Zoë 🚀 — "quoted" O\'Brien  ', "tracking": "off"},
        {"email": "c@example.com", "scheduled_at": "2030-01-01T09:00:00.123456+02:00", "tracking": "full"},
        {"email": "d@example.com", "scheduled_at": "2030-01-01T09:00:00Z", "status": "sent"},
        {"email": "e@example.com", "status": "sent", "sent_at": "2029-12-31T23:59:59.000001-05:30"},
        {"email": "f@example.com", "status": "failed", "scheduled_at": "2030-06-01T00:00:00"},
        {"email": "g@bücher.example.org", "name": ""},
    ]
    rows += [{"email": f"bulk{i}@example.com", "name": f"Contact {i}"} for i in range(2_500)]  # several chunks
    return rows


def test_the_answer_is_what_the_database_holds(client, db: Session, group: Group, headers) -> None:
    response = client.post(f"/api/v1/groups/{group.id}/contacts", headers=headers, json=_rows())
    assert response.status_code == 201, response.text[:500]
    body = response.json()
    assert body["total"] == len(_rows()) == len(body["items"])
    stored = {c.id: c for c in db.scalars(select(Contact).where(Contact.group_id == group.id))}
    db.commit()
    assert len(stored) == len(_rows())
    for item in body["items"]:
        assert item == ContactOut.model_validate(stored[item["id"]]).model_dump(mode="json")
    first, second, third, fourth = body["items"][:4]
    assert (first["email"], first["tracking"]) == ("plain@example.com", "anonymous")  # the campaign's default
    assert (second["name"], second["tracking"]) == ('Zoë 🚀 — "quoted" O\'Brien', "off")
    assert third["scheduled_at"] == "2030-01-01T07:00:00.123456+00:00"
    assert fourth["status"] == "sent"
    assert fourth["sent_at"] is not None


def test_imported_contacts_are_counted(client, db: Session, engine: Engine, group: Group, headers) -> None:
    response = client.post(f"/api/v1/groups/{group.id}/contacts", headers=headers, json=_rows())
    assert response.status_code == 201, response.text[:500]
    counts = db.scalar(select(GroupCounts).where(GroupCounts.group_id == group.id))
    assert counts is not None
    assert (counts.contacts, counts.sent, counts.pixels, counts.openers, counts.clicks) == (len(_rows()), 2, 0, 0, 0)
    stats = db.scalar(select(ContactStats).where(ContactStats.contact_id == response.json()["items"][2]["id"]))
    assert stats is not None
    assert (stats.sent, stats.pixels, stats.first_opened_at) == (False, 0, None)
    db.commit()
    with engine.connect() as conn:
        assert counter_drift(conn) == []


@pytest.fixture
def plain(engine: Engine) -> Iterator[Session]:
    with make_sessionmaker(engine)() as session:
        yield session


def test_an_insert_of_contacts_of_several_groups_through_the_session_is_counted(
    plain: Session, engine: Engine, db: Session, campaign: Campaign, group: Group
) -> None:
    other = factories.make_group(db, campaign, name="B")
    now = utcnow()
    common = {"campaign_id": campaign.id, "created_at": now, "updated_at": now}
    plain.execute(
        insert(Contact),
        [
            {**common, "group_id": group.id, "email": "a@example.com", "status": "sent", "sent_at": now},
            {**common, "group_id": other.id, "email": "a@example.com"},
            {**common, "group_id": group.id, "email": "b@example.com"},
            {**common, "group_id": other.id, "email": "c@example.com", "status": "failed"},
        ],
    )
    plain.commit()
    with engine.connect() as conn:
        assert counter_drift(conn) == []
    sums = {g: (c, s) for g, c, s in db.execute(select(GroupCounts.group_id, GroupCounts.contacts, GroupCounts.sent))}
    db.commit()
    assert sums == {group.id: (2, 1), other.id: (2, 0)}
