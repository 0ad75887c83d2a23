"""Clicks by link scanners that look like people: the ingest's timing rules (app/tracking/click_rules.py).
A person-like click within SCANNER_WINDOW_SECONDS of its contact's `sent_at`, or in a burst that
follows every link of the campaign within SCANNER_BURST_SECONDS, is stored as `scanner` (kept,
reported apart), on the embedded queue and through the Redis worker alike; the counters follow."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.clients import sync_redis
from app.main import create_asgi
from app.models import Click, Contact, ContactStats, Link, Opening, User
from app.settings import Settings
from app.tracking.click_rules import ClickRules
from app.tracking.events import CLICK, Event, new_event_id
from app.tracking.worker import StreamWorker
from tests import factories
from tests.support.app_state import app_state, flush_memory

BROWSER = {"User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"}


def _sent(db: Session, contact: Contact, ago: timedelta) -> None:
    contact.status, contact.sent_at = "sent", datetime.now(UTC) - ago
    db.commit()


def _stored(db: Session, model: Any, **where: int) -> list[tuple[str, str]]:
    db.commit()  # (ends the read transaction: a new one sees what the ingest committed since)
    return [(row.client, row.reason) for row in db.scalars(select(model).filter_by(**where).order_by(model.id))]


@pytest.fixture
def embedded(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_asgi(settings.model_copy(update={"scanner_window_seconds": 30}))) as client:
        yield client


def test_a_click_right_after_the_send_is_a_scanner_s(embedded: TestClient, db: Session, user: User) -> None:
    tree = factories.make_tree(db, user)
    fresh, old = tree["contact"], factories.make_contact(db, tree["group"])
    _sent(db, fresh, timedelta(seconds=2))
    _sent(db, old, timedelta(minutes=5))
    codec = app_state(embedded).tracker.codec
    for contact in (fresh, old):
        url = f"/c/{codec.click_token(tree['link'].id, contact.id)}"
        assert embedded.get(url, headers=BROWSER, follow_redirects=False).status_code == 302
    pixel_url = f"/o/{codec.pixel_token(tree['pixel'].id)}.gif"
    assert embedded.get(pixel_url, headers=BROWSER).status_code == 200
    flush_memory(embedded)
    assert _stored(db, Click, contact_id=fresh.id) == [("scanner", "timing:after-send")]
    assert _stored(db, Click, contact_id=old.id)[0][0] == "browser"
    assert ("browser", "ua:browser-engine") in _stored(db, Opening, pixel_id=tree["pixel"].id)  # opens: no rule


def test_the_worker_applies_the_rule_with_its_window(
    engine: Engine, redis_client: Any, redis_url: str, db: Session, user: User
) -> None:
    tree = factories.make_tree(db, user)
    contact, link = tree["contact"], tree["link"]
    _sent(db, contact, timedelta(0))
    assert contact.sent_at is not None
    sent_ms = int(contact.sent_at.replace(tzinfo=UTC).timestamp() * 1000)
    agent = BROWSER["User-Agent"]
    for at_ms in (sent_ms + 5_000, sent_ms + 15_000):
        event = Event(CLICK, link.id, contact.id, at_ms, "", "203.0.113.5", agent, new_event_id())
        redis_client.xadd("pt:events", {"e": event.encode()})
    classified = Event(CLICK, link.id, contact.id, sent_ms + 1_000, "browser", "", agent, new_event_id())
    redis_client.xadd("pt:events", {"e": classified.encode()})  # classified before: kept as it is
    worker = StreamWorker(
        sync_redis(redis_url), engine, consumer="rules", block_ms=10, click_rules=ClickRules(window_s=10)
    )
    assert worker.drain() == 3
    clients = [client for client, _reason in _stored(db, Click, contact_id=contact.id)]
    assert sorted(clients) == ["browser", "browser", "scanner"]
    assert _stored(db, Click, contact_id=contact.id)[0] == ("scanner", "timing:after-send")


def test_window_zero_turns_the_rule_off(
    engine: Engine, redis_client: Any, redis_url: str, db: Session, user: User
) -> None:
    tree = factories.make_tree(db, user)
    _sent(db, tree["contact"], timedelta(0))
    event = Event(
        CLICK,
        tree["link"].id,
        tree["contact"].id,
        int(datetime.now(UTC).timestamp() * 1000),
        "",
        "",
        BROWSER["User-Agent"],
    )
    redis_client.xadd("pt:events", {"e": event._replace(event_id=new_event_id()).encode()})
    worker = StreamWorker(
        sync_redis(redis_url), engine, consumer="off", block_ms=10, click_rules=ClickRules(window_s=0)
    )
    assert worker.drain() == 1
    assert _stored(db, Click, contact_id=tree["contact"].id)[0][0] == "browser"


def _click(link_id: int, contact_id: int, at_ms: int, agent: str = BROWSER["User-Agent"]) -> Event:
    return Event(CLICK, link_id, contact_id, at_ms, "", "203.0.113.5", agent, new_event_id())


def test_a_burst_over_every_link_is_a_scanner_s_even_across_batches(
    engine: Engine, redis_client: Any, redis_url: str, db: Session, user: User
) -> None:
    tree = factories.make_tree(db, user)
    campaign, contact, slow = tree["campaign"], tree["contact"], factories.make_contact(db, tree["group"])
    links = [tree["link"], factories.make_link(db, campaign, "https://example.com/2")]
    factories.make_link(db, campaign, "https://example.com/3")  # three links in all
    links.append(db.scalars(select(Link).where(Link.campaign_id == campaign.id).order_by(Link.id.desc())).first())
    t0 = 1_800_000_000_000
    worker = StreamWorker(
        sync_redis(redis_url), engine, consumer="burst", block_ms=10, click_rules=ClickRules(burst_s=5)
    )
    # Two links in one batch (not yet all of them: kept as a person's), the third in the next one.
    for event in (_click(links[0].id, contact.id, t0), _click(links[1].id, contact.id, t0 + 1500)):
        redis_client.xadd("pt:events", {"e": event.encode()})
    assert worker.drain() == 2
    assert [c for c, _ in _stored(db, Click, contact_id=contact.id)] == ["browser", "browser"]
    redis_client.xadd("pt:events", {"e": _click(links[2].id, contact.id, t0 + 3000).encode()})
    # A person clicking the three links over a minute: no burst.
    for n, link in enumerate(links):
        redis_client.xadd("pt:events", {"e": _click(link.id, slow.id, t0 + n * 30_000).encode()})
    assert worker.drain() == 4
    assert _stored(db, Click, contact_id=contact.id) == [("scanner", "timing:burst")] * 3
    assert {c for c, _ in _stored(db, Click, contact_id=slow.id)} == {"browser"}
    db.commit()
    stats = db.scalars(select(ContactStats).where(ContactStats.contact_id == contact.id)).one()
    assert stats.clicks == 3  # (the drift check after the test compares every counter with a recompute)


def test_burst_rule_leaves_single_link_campaigns_and_preclassified_clicks(
    engine: Engine, redis_client: Any, redis_url: str, db: Session, user: User
) -> None:
    tree = factories.make_tree(db, user)
    link, contact = tree["link"], tree["contact"]
    t0 = 1_800_000_000_000
    for n in range(3):  # one link, followed three times at once: a single-link campaign has no burst
        redis_client.xadd("pt:events", {"e": _click(link.id, contact.id, t0 + n).encode()})
    worker = StreamWorker(sync_redis(redis_url), engine, consumer="single", block_ms=10)
    assert worker.drain() == 3
    assert {c for c, _ in _stored(db, Click, contact_id=contact.id)} == {"browser"}
