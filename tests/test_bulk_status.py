"""PATCH /api/v1/groups/{group_id}/contacts: status, sent time and consent of up to 10,000
contacts at once, all or nothing, the reports moving with them (the drift check of every test)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete, select, update
from sqlalchemy.orm import Session

from app.db import make_sessionmaker
from app.models import Contact, ContactStats, Group, GroupCounts, Opening, User
from app.services import counters
from tests import factories
from tests.helpers import assert_error, count, counter_drift, parse_ts
from tests.support.reports import stats

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def url(group: Group | int) -> str:
    return f"/api/v1/groups/{group if isinstance(group, int) else group.id}/contacts"


def patch(client: TestClient, group: Group | int, headers: dict[str, str], **body: Any) -> Any:
    return client.patch(url(group), json=body, headers=headers)


def statuses(db: Session, ids: list[int]) -> dict[int, tuple[str, datetime | None, str]]:
    db.commit()
    db.expire_all()
    rows = db.execute(select(Contact.id, Contact.status, Contact.sent_at, Contact.tracking).where(Contact.id.in_(ids)))
    return {cid: (status, sent_at, tracking) for cid, status, sent_at, tracking in rows}


@pytest.fixture
def arm(db: Session, user: User) -> dict[str, Any]:
    """A campaign with groups A and B; A's four contacts opened their pixel 10 minutes after
    they were scheduled (so a new sent_at moves their delay to the first opening)."""
    with factories.one_commit(db):
        campaign = factories.make_campaign(db, user)
        a = factories.make_group(db, campaign, name="A")
        b = factories.make_group(db, campaign, name="B")
        contacts = [factories.make_contact(db, a, scheduled_at=T0) for _ in range(4)]
        for contact in contacts:
            pixel = factories.make_pixel(db, contact)
            factories.make_opening(db, pixel, opened_at=T0 + timedelta(minutes=10), client="browser")
        other = factories.make_contact(db, b, scheduled_at=T0)
    return {"campaign": campaign, "a": a, "b": b, "contacts": contacts, "other": other}


def test_mark_sent_sets_now_unless_the_contact_has_a_sent_at(
    client: TestClient, db: Session, headers: dict[str, str], arm: dict[str, Any]
) -> None:
    first, second, third, _fourth = arm["contacts"]
    earlier = T0 + timedelta(minutes=1)
    first.sent_at = earlier
    db.commit()
    before = datetime.now(UTC)
    ids = [first.id, second.id, third.id]
    response = patch(client, arm["a"], headers, ids=ids, status="sent")
    assert response.status_code == 200, response.text
    assert response.json() == {"updated": 3}
    now = statuses(db, ids)
    assert now[first.id] == ("sent", earlier, "full")  # its own sent_at kept, as a single PATCH does
    for cid in (second.id, third.id):
        status, sent_at, _ = now[cid]
        assert status == "sent"
        assert sent_at is not None
        assert sent_at >= before - timedelta(seconds=1)
    body = stats(client, arm["campaign"].id, headers)
    assert body["contacts_sent"] == 3
    # The single-contact view agrees.
    single = client.get(f"/api/v1/contacts/{second.id}", headers=headers).json()
    assert single["status"] == "sent"
    assert parse_ts(single["sent_at"]) >= before - timedelta(seconds=1)


def test_explicit_sent_at_moves_the_delay_to_first_open(
    client: TestClient, db: Session, headers: dict[str, str], arm: dict[str, Any]
) -> None:
    ids = [c.id for c in arm["contacts"]]
    assert stats(client, arm["campaign"].id, headers)["median_seconds_to_first_open"] == 600
    sent_at = T0 + timedelta(minutes=4)
    response = patch(client, arm["a"], headers, ids=ids, status="sent", sent_at=sent_at.isoformat())
    assert response.json() == {"updated": 4}
    assert {v[:2] for v in statuses(db, ids).values()} == {("sent", sent_at)}
    body = stats(client, arm["campaign"].id, headers)
    assert body["contacts_sent"] == 4
    assert body["median_seconds_to_first_open"] == 360  # 10 min after schedule = 6 min after send


def test_failed_and_scheduled_keep_sent_at_and_repeated_ids_count_once(
    client: TestClient, db: Session, headers: dict[str, str], arm: dict[str, Any]
) -> None:
    ids = [c.id for c in arm["contacts"]]
    sent_at = T0 + timedelta(minutes=2)
    assert patch(client, arm["a"], headers, ids=ids, status="sent", sent_at=sent_at.isoformat()).status_code == 200
    response = patch(client, arm["a"], headers, ids=[ids[0], ids[0], ids[1], ids[0]], status="failed")
    assert response.json() == {"updated": 2}
    assert patch(client, arm["a"], headers, ids=[ids[2]], status="scheduled").json() == {"updated": 1}
    now = statuses(db, ids)
    assert [now[cid][:2] for cid in ids] == [
        ("failed", sent_at),
        ("failed", sent_at),
        ("scheduled", sent_at),
        ("sent", sent_at),
    ]
    assert stats(client, arm["campaign"].id, headers)["contacts_sent"] == 1


def test_tracking_alone_and_with_status(
    client: TestClient, db: Session, headers: dict[str, str], arm: dict[str, Any]
) -> None:
    ids = [c.id for c in arm["contacts"]]
    assert patch(client, arm["a"], headers, ids=ids[:2], tracking="anonymous").json() == {"updated": 2}
    assert patch(client, arm["a"], headers, ids=ids[2:], tracking="off", status="sent").json() == {"updated": 2}
    now = statuses(db, ids)
    assert [(now[cid][0], now[cid][2]) for cid in ids] == [
        ("scheduled", "anonymous"),
        ("scheduled", "anonymous"),
        ("sent", "off"),
        ("sent", "off"),
    ]
    listed = client.get(url(arm["a"]), headers=headers).json()["items"]
    assert [item["tracking"] for item in listed] == ["anonymous", "anonymous", "off", "off"]


def test_ids_outside_the_group_reject_everything_and_are_located(
    client: TestClient,
    db: Session,
    headers: dict[str, str],
    other_user: User,
    arm: dict[str, Any],
) -> None:
    foreign = factories.make_tree(db, other_user)["contact"]
    mine = [c.id for c in arm["contacts"]]
    missing = 9_000_000_000
    ids = [mine[0], arm["other"].id, mine[1], missing, foreign.id, arm["other"].id]
    response = patch(client, arm["a"], headers, ids=ids, status="sent", tracking="off")
    body = assert_error(response, 404, "not_found")
    assert body["detail"] == [
        {"loc": ["body", "ids", index], "msg": f"No contact {ids[index]} in this group.", "type": "not_found"}
        for index in (1, 3, 4, 5)
    ]
    # Nothing changed, for anyone.
    now = statuses(db, [*mine, arm["other"].id, foreign.id])
    assert {value[0] for value in now.values()} == {"scheduled"}
    assert {value[2] for value in now.values()} == {"full"}
    assert stats(client, arm["campaign"].id, headers)["contacts_sent"] == 0


def test_someone_elses_group_is_404_and_an_admin_may(
    client: TestClient,
    db: Session,
    headers: dict[str, str],
    other_headers: dict[str, str],
    admin_headers: dict[str, str],
    arm: dict[str, Any],
) -> None:
    ids = [c.id for c in arm["contacts"]]
    body = assert_error(patch(client, arm["a"], other_headers, ids=ids, status="sent"), 404, "not_found")
    assert body["detail"] == "Group not found."
    assert assert_error(patch(client, 9_000_000_000, headers, ids=ids, status="sent"), 404)
    assert {value[0] for value in statuses(db, ids).values()} == {"scheduled"}
    assert patch(client, arm["a"], admin_headers, ids=ids, status="sent").json() == {"updated": 4}


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"ids": [1]}, ["body"]),
        ({"ids": [], "status": "sent"}, ["body", "ids"]),
        ({"status": "sent"}, ["body", "ids"]),
        ({"ids": list(range(1, 10_002)), "status": "sent"}, ["body", "ids"]),
        ({"ids": [1], "status": "delivered"}, ["body", "status"]),
        ({"ids": [1], "tracking": "maybe"}, ["body", "tracking"]),
        ({"ids": [1], "tracking": None, "status": None}, ["body"]),
        ({"ids": ["1"], "status": "sent"}, ["body", "ids", 0]),
        ({"ids": [0], "status": "sent"}, ["body", "ids", 0]),
        ({"ids": [1], "status": "sent", "sent_at": "yesterday"}, ["body", "sent_at"]),
        ({"ids": [1], "status": "sent", "group_id": 3}, ["body", "group_id"]),
    ],
)
def test_invalid_bodies_are_422(
    client: TestClient, headers: dict[str, str], arm: dict[str, Any], body: dict[str, Any], loc: list[Any]
) -> None:
    detail = assert_error(client.patch(url(arm["a"]), json=body, headers=headers), 422, "validation_error")["detail"]
    assert loc in [item["loc"] for item in detail], detail


def test_ten_thousand_ids_in_one_request(client: TestClient, db: Session, headers: dict[str, str], user: User) -> None:
    """The size limit works, and keeps the counters exact (the drift check); the time is printed,
    not asserted (bench/ measures)."""
    campaign = factories.make_campaign(db, user)
    group = factories.make_group(db, campaign)
    rows = [{"email": f"c{i}@example.com", "scheduled_at": T0.isoformat()} for i in range(10_000)]
    created = client.post(url(group), json=rows, headers=headers)
    assert created.status_code == 201, created.text
    ids = [item["id"] for item in created.json()["items"]]
    with factories.one_commit(db):  # a few of them opened, before and after the send
        for index, cid in enumerate(ids[:50]):
            contact = db.get(Contact, cid)
            assert contact is not None
            pixel = factories.make_pixel(db, contact)
            at = T0 + timedelta(minutes=index)
            factories.make_opening(
                db, pixel, opened_at=at, client="browser", ip="203.0.113.5", user_agent="Mozilla/5.0"
            )
    started = time.perf_counter()
    response = patch(client, group, headers, ids=ids, status="sent", sent_at=(T0 + timedelta(minutes=5)).isoformat())
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text
    assert response.json() == {"updated": 10_000}
    print(f"PATCH of 10,000 ids: {elapsed * 1000:.0f} ms")
    assert count(db, Contact, Contact.group_id == group.id, Contact.status == "sent") == 10_000
    body = stats(client, campaign.id, headers)
    assert (body["contacts_sent"], body["unique_opens"]) == (10_000, 50)
    assert count(db, Opening, Opening.campaign_id == campaign.id, Opening.user_agent.is_not(None)) == 50
    started = time.perf_counter()
    response = patch(client, group, headers, ids=ids, tracking="anonymous")
    print(f"PATCH of 10,000 ids, consent only: {(time.perf_counter() - started) * 1000:.0f} ms")
    assert response.json() == {"updated": 10_000}
    assert count(db, Opening, Opening.campaign_id == campaign.id, Opening.user_agent.is_not(None)) == 0


# The counters' set-based path for status and send times (app/services/counters/contacts.move_reference).


def test_status_and_time_updates_through_a_plain_session_keep_the_counters(
    engine: Engine, db: Session, arm: dict[str, Any]
) -> None:
    ids = [c.id for c in arm["contacts"]]
    with make_sessionmaker(engine)() as plain:
        plain.execute(update(Contact).where(Contact.id.in_(ids[:2])).values(status="sent", sent_at=T0))
        plain.execute(update(Contact).where(Contact.id == ids[2]).values(scheduled_at=None))
        plain.execute(update(Contact).where(Contact.id == ids[3]).values(scheduled_at=T0 + timedelta(hours=1)))
        plain.commit()
        assert_no_drift(engine)
        plain.execute(update(Contact).where(Contact.id.in_(ids[:2])).values(status="failed", sent_at=None))
        plain.commit()
    assert_no_drift(engine)
    db.commit()
    timed, sent = db.execute(
        select(GroupCounts.timed_openers, GroupCounts.sent).where(GroupCounts.group_id == arm["a"].id)
    ).one()
    assert (timed, sent) == (3, 0)  # ids[2] has no reference time left


def test_an_update_chosen_by_the_status_it_changes_keeps_the_counters(
    engine: Engine, db: Session, arm: dict[str, Any]
) -> None:
    """The condition no longer finds the contacts after the UPDATE: they are found before."""
    with make_sessionmaker(engine)() as plain:
        plain.execute(update(Contact).where(Contact.status == "scheduled").values(status="sent", sent_at=T0))
        plain.commit()
    assert_no_drift(engine)
    db.commit()
    assert db.scalar(select(GroupCounts.sent).where(GroupCounts.group_id == arm["a"].id)) == 4


def test_a_contact_without_its_counter_row_is_recomputed(engine: Engine, db: Session, arm: dict[str, Any]) -> None:
    ids = [c.id for c in arm["contacts"]]
    with engine.begin() as conn:  # (as a contact written to the database by hand is left)
        counters.forget_contacts(conn, [ids[0]])
        conn.execute(delete(ContactStats).where(ContactStats.contact_id == ids[0]))
    with make_sessionmaker(engine)() as plain:
        plain.execute(update(Contact).where(Contact.id.in_(ids)).values(status="sent", sent_at=T0))
        plain.commit()
    db.commit()
    assert db.scalar(select(ContactStats.sent).where(ContactStats.contact_id == ids[0])) is True


def assert_no_drift(engine: Engine) -> None:
    with engine.connect() as conn:
        drift = counter_drift(conn)
        conn.rollback()
    assert not drift, drift
