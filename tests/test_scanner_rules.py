"""Clicks by link scanners that look like people: the ingest's timing rule. A click classified as
a person's that comes within SCANNER_WINDOW_SECONDS of its contact's `sent_at` is stored as
`scanner` (kept, reported apart), on the embedded queue and through the Redis worker alike."""

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
from app.models import Click, Contact, Opening, User
from app.settings import Settings
from app.tracking.events import CLICK, Event, new_event_id
from app.tracking.worker import StreamWorker
from tests import factories
from tests.support.app_state import app_state, flush_memory

BROWSER = {"User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"}


def _sent(db: Session, contact: Contact, ago: timedelta) -> None:
    contact.status, contact.sent_at = "sent", datetime.now(UTC) - ago
    db.commit()


def _stored(db: Session, model: Any, **where: int) -> list[tuple[str, str]]:
    db.expire_all()
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
    worker = StreamWorker(sync_redis(redis_url), engine, consumer="rules", block_ms=10, scanner_window_seconds=10)
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
    worker = StreamWorker(sync_redis(redis_url), engine, consumer="off", block_ms=10, scanner_window_seconds=0)
    assert worker.drain() == 1
    assert _stored(db, Click, contact_id=tree["contact"].id)[0][0] == "browser"
