"""The one function that stores conversions (app/tracking/conversions.store): consent, idempotency
on the order id, the outbox row, and what it refuses to store."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.models import Campaign, Contact, Conversion, Event, Tracking
from app.tracking.conversions import ConversionIn, store
from app.tracking.events import new_event_id
from tests import factories

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def conversion(campaign: Campaign, contact: Contact | None, group_id: int, **kw: Any) -> ConversionIn:
    fields: dict[str, Any] = {
        "event_id": "v" + new_event_id(),
        "campaign_id": campaign.id,
        "group_id": group_id,
        "contact_id": contact.id if contact is not None else 0,
        "name": "purchase",
        "value": Decimal("42.50"),
        "currency": "EUR",
        "order_id": "order-1",
        "source": "api",
        "occurred_at": NOW,
    }
    fields.update(kw)
    return ConversionIn(**fields)


def stored(db: Session) -> list[tuple[Any, ...]]:
    db.expire_all()
    return [tuple(r) for r in db.execute(select(Conversion.contact_id, Conversion.order_id, Conversion.value))]


def test_one_order_is_stored_once_and_told_once(engine: Engine, db: Session, tree: dict[str, Any]) -> None:
    campaign, group, contact = tree["campaign"], tree["group"], tree["contact"]
    first = conversion(campaign, contact, group.id)
    with engine.begin() as conn:
        assert store(conn, [first, first._replace(event_id="v" + new_event_id())], now=NOW) == 1
    with engine.begin() as conn:
        assert store(conn, [first._replace(source="browser")], now=NOW) == 0  # the same order from the page
        assert store(conn, [first._replace(order_id=None)], now=NOW) == 1  # no order id: each post counts
    assert sorted(stored(db), key=str) == sorted(
        [(contact.id, "order-1", Decimal("42.5000")), (contact.id, None, Decimal("42.5000"))], key=str
    )
    events = db.scalars(select(Event.type).where(Event.campaign_id == campaign.id)).all()
    assert events == ["conversion", "conversion"]


def test_consent_decides_what_is_stored(engine: Engine, db: Session, tree: dict[str, Any]) -> None:
    campaign, group = tree["campaign"], tree["group"]
    with factories.one_commit(db):
        anonymous = factories.make_contact(db, group, tracking=Tracking.anonymous.value)
        off = factories.make_contact(db, group, tracking=Tracking.off.value)
    with engine.begin() as conn:
        new = store(
            conn,
            [
                conversion(campaign, anonymous, group.id, order_id="a", click_event_id="c" * 24),
                conversion(campaign, off, group.id, order_id="b"),
                conversion(campaign, None, group.id, order_id="c"),  # an anonymous token
            ],
            now=NOW,
        )
    assert new == 2
    assert sorted(stored(db), key=str) == [(None, "a", Decimal("42.5000")), (None, "c", Decimal("42.5000"))]
    assert db.scalars(select(Event.contact_id).where(Event.type == "conversion")).all() == [None, None]
    assert db.scalars(select(Conversion.click_event_id)).all() == [None, None]  # a click row names its contact


def test_what_no_longer_exists_or_does_not_match_is_dropped(
    engine: Engine, db: Session, user: Any, tree: dict[str, Any]
) -> None:
    campaign, group, contact = tree["campaign"], tree["group"], tree["contact"]
    other = factories.make_tree(db, factories.make_user(db))
    with engine.begin() as conn:
        new = store(
            conn,
            [
                conversion(campaign, None, group.id, contact_id=10**12),  # a deleted contact
                conversion(other["campaign"], contact, other["group"].id),  # contact of another campaign
                conversion(campaign, None, other["group"].id),  # an anonymous token naming another's group
                conversion(campaign, None, 10**12),  # a deleted group
            ],
            now=NOW,
        )
    assert new == 0
    assert stored(db) == []
