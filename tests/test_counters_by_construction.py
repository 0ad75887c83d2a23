"""The report counters are kept by construction (issue #11 item 1): a write path that never
mentions them, through the app's sessions, leaves them equal to a recompute from scratch.

The write paths below are new: written here, by hand, without calling anything in
app/services/counters. Flushed objects (adds, edits, deletes whose children the database
removes by ON DELETE CASCADE) and ORM statements run through the session (bulk INSERT,
UPDATE ... WHERE, DELETE ... WHERE) both move the counters.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.orm import Session

from app.db import connect_read_only, make_sessionmaker
from app.models import CampaignHour, Click, Contact, GroupCounts, Link, Opening, Pixel, User
from app.services.counters.hours import epoch_hour
from tests import factories
from tests.helpers import counter_drift

H1 = datetime(2026, 3, 2, 9, 15, tzinfo=UTC)
H2 = datetime(2026, 3, 2, 10, 30, tzinfo=UTC)
SENT_AT = datetime(2026, 3, 2, 8, tzinfo=UTC)


@pytest.fixture
def plain(engine: Engine) -> Iterator[Session]:
    """A session as the app makes them (app/db.make_sessionmaker), nothing else."""
    with make_sessionmaker(engine)() as session:
        yield session


@pytest.fixture
def ab(db: Session, user: User) -> dict[str, Any]:
    campaign = factories.make_campaign(db, user)
    a = factories.make_group(db, campaign, name="A")
    b = factories.make_group(db, campaign, name="B")
    c1 = factories.make_contact(db, a, status="sent", sent_at=SENT_AT)
    c2 = factories.make_contact(db, a)
    c3 = factories.make_contact(db, a)
    p1 = factories.make_pixel(db, c1, number=1)
    p2 = factories.make_pixel(db, c1, number=2)
    p3 = factories.make_pixel(db, c2)
    l1 = factories.make_link(db, campaign)
    l2 = factories.make_link(db, campaign)
    factories.make_opening(db, p1, opened_at=H1, client="browser")
    factories.make_opening(db, p3, opened_at=H1, client="bot")
    factories.make_click(db, l1, c1, clicked_at=H1, client="browser")
    return {"campaign": campaign, "a": a, "b": b, "c": [c1, c2, c3], "p": [p1, p2, p3], "l": [l1, l2]}


def assert_no_drift(engine: Engine) -> None:
    """The counters as committed equal a recompute from the rows (the recompute is rolled back)."""
    with engine.connect() as conn:
        drift = counter_drift(conn)
        conn.rollback()
    assert drift == []


def groups(engine: Engine, campaign_id: int) -> dict[int, tuple[int, ...]]:
    """group → (contacts, sent, pixels, opens_browser, opens_bot, openers, clicks, clickers)."""
    g = GroupCounts
    columns = (g.contacts, g.sent, g.pixels, g.opens_browser, g.opens_bot, g.openers, g.clicks, g.clickers)
    with connect_read_only(engine) as conn:
        rows = conn.execute(select(g.group_id, *columns).where(g.campaign_id == campaign_id))
        return {row[0]: tuple(row[1:]) for row in rows}


def hours(engine: Engine, campaign_id: int) -> dict[int, tuple[int, int]]:
    h = CampaignHour
    with connect_read_only(engine) as conn:
        rows = conn.execute(select(h.hour, h.opens, h.clicks).where(h.campaign_id == campaign_id))
        return {hour: (opens, clicks) for hour, opens, clicks in rows if opens or clicks}


def test_objects_added_moved_and_deleted_by_hand_keep_the_counters(
    plain: Session, engine: Engine, ab: dict[str, Any]
) -> None:
    campaign_id, a, b = ab["campaign"].id, ab["a"].id, ab["b"].id
    c1, c2, _c3 = (c.id for c in ab["c"])
    p1, p2, _p3 = (p.id for p in ab["p"])
    l1, l2 = (link.id for link in ab["l"])
    assert hours(engine, campaign_id) == {epoch_hour(H1): (2, 1)}

    # A new write path: an opening and a click added by hand.
    plain.add(
        Opening(pixel_id=p2, contact_id=c1, campaign_id=campaign_id, opened_at=H2, client="browser", event_id="n1")
    )
    plain.add(Click(link_id=l2, contact_id=c2, campaign_id=campaign_id, clicked_at=H2, client="browser", event_id="n2"))
    plain.commit()
    assert_no_drift(engine)
    assert hours(engine, campaign_id) == {epoch_hour(H1): (2, 1), epoch_hour(H2): (1, 1)}

    # A contact moved to the other group.
    contact = plain.get(Contact, c1)
    assert contact is not None
    contact.group_id = b
    plain.commit()
    assert_no_drift(engine)
    assert groups(engine, campaign_id)[b] == (1, 1, 2, 2, 0, 1, 1, 1)

    # A pixel (its opening goes by cascade) and a link (its click goes by cascade) deleted.
    plain.delete(plain.get(Pixel, p1))
    plain.delete(plain.get(Link, l1))
    plain.commit()
    assert_no_drift(engine)

    # A contact deleted: its pixel, opening and click go by cascade, unseen by the session.
    plain.delete(plain.get(Contact, c2))
    plain.commit()
    assert_no_drift(engine)
    assert groups(engine, campaign_id) == {a: (1, 0, 0, 0, 0, 0, 0, 0), b: (1, 1, 1, 1, 0, 1, 0, 0)}
    assert hours(engine, campaign_id) == {epoch_hour(H2): (1, 0)}


def test_orm_statements_through_the_session_keep_the_counters(
    plain: Session, engine: Engine, ab: dict[str, Any]
) -> None:
    campaign_id, a, b = ab["campaign"].id, ab["a"].id, ab["b"].id
    c1, c2, c3 = (c.id for c in ab["c"])
    p1, p2, p3 = (p.id for p in ab["p"])
    l1, _l2 = (link.id for link in ab["l"])
    event = {"campaign_id": campaign_id, "opened_at": H2, "client": "browser"}
    plain.execute(
        insert(Opening),
        [
            {**event, "pixel_id": p2, "contact_id": c1, "event_id": "b1"},
            {**event, "pixel_id": p3, "contact_id": c2, "event_id": "b2"},
        ],
    )
    plain.execute(
        insert(Click),
        [{"campaign_id": campaign_id, "link_id": l1, "contact_id": c3, "clicked_at": H2, "event_id": "b3"}],
    )
    plain.execute(insert(Pixel), [{"contact_id": c3, "number": 1, "uuid": "f" * 32}])
    plain.commit()
    assert_no_drift(engine)
    assert hours(engine, campaign_id) == {epoch_hour(H1): (2, 1), epoch_hour(H2): (2, 1)}

    plain.execute(update(Opening).where(Opening.pixel_id == p1).values(opened_at=H2, client="bot"))
    plain.execute(update(Contact).where(Contact.id == c2).values(group_id=b))
    plain.execute(delete(Pixel).where(Pixel.id == p2))
    plain.execute(delete(Click).where(Click.contact_id == c1))
    plain.commit()
    assert_no_drift(engine)
    assert hours(engine, campaign_id) == {epoch_hour(H1): (1, 0), epoch_hour(H2): (2, 1)}
    assert groups(engine, campaign_id) == {a: (2, 1, 2, 0, 1, 1, 1, 1), b: (1, 0, 1, 1, 1, 1, 0, 0)}

    plain.execute(delete(Contact).where(Contact.group_id == a))
    plain.commit()
    assert_no_drift(engine)
    assert hours(engine, campaign_id) == {epoch_hour(H1): (1, 0), epoch_hour(H2): (1, 0)}


def test_an_insert_the_counters_cannot_follow_is_refused(plain: Session, ab: dict[str, Any]) -> None:
    copy = select(Opening.pixel_id, Opening.contact_id, Opening.campaign_id, Opening.event_id + "x")
    with pytest.raises(NotImplementedError, match="counters"):
        plain.execute(insert(Opening).from_select(["pixel_id", "contact_id", "campaign_id", "event_id"], copy))
    plain.rollback()
