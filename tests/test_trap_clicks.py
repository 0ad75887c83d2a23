"""Clicks on the campaign's hidden trap link (issue #12 §2, inserted by the render's `trap_link`):
only machines follow it, so whatever their agent they are `scanner` with reason `trap:link`, counted
in `scanner_clicks`, never as human clicks, through the embedded queue and the Redis worker alike.
The burst rule neither counts the trap link as one of "every link" nor its clicks in a span."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.clients import sync_redis
from app.main import create_asgi
from app.models import Click, Link, User
from app.services import reclassify
from app.settings import Settings
from app.tracking.click_rules import ClickRules
from app.tracking.events import CLICK, Event, new_event_id
from app.tracking.ingest import store_events
from app.tracking.worker import StreamWorker
from tests import factories
from tests.support.app_state import app_state, flush_memory

BROWSER = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15"
)


def _trap_tree(db: Session, user: User) -> dict[str, Any]:
    tree = factories.make_tree(db, user)
    trap = factories.make_link(db, tree["campaign"], "http://track.test/")
    trap.trap = True
    db.commit()
    return {**tree, "trap": trap}


def _stored(db: Session, link: Link) -> list[tuple[str, str]]:
    db.commit()
    return [(c.client, c.reason) for c in db.scalars(select(Click).where(Click.link_id == link.id).order_by(Click.id))]


def _click_stats(client: TestClient, campaign_id: int, headers: dict[str, str]) -> tuple[int, int, int]:
    stats = client.get(f"/api/v1/campaigns/{campaign_id}/stats", headers=headers).json()
    return stats["clicks"], stats["human_clicks"], stats["scanner_clicks"]


@pytest.fixture
def embedded(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_asgi(settings)) as client:
        yield client


def test_a_trap_click_is_a_scanner_s_on_the_embedded_queue(
    embedded: TestClient, db: Session, user: User, headers: dict[str, str]
) -> None:
    tree = _trap_tree(db, user)
    codec = app_state(embedded).tracker.codec
    contact = tree["contact"]
    for link in (tree["trap"], tree["link"]):
        answer = embedded.get(
            f"/c/{codec.click_token(link.id, contact.id)}", headers={"User-Agent": BROWSER}, follow_redirects=False
        )
        assert answer.status_code == 302
        assert answer.headers["location"] == link.url  # the trap link still answers
    flush_memory(embedded)
    assert _stored(db, tree["trap"]) == [("scanner", "trap:link")]
    assert _stored(db, tree["link"])[0][0] == "browser"
    assert _click_stats(embedded, tree["campaign"].id, headers) == (2, 1, 1)


def test_a_trap_click_is_a_scanner_s_through_the_worker(
    client: TestClient,
    engine: Engine,
    redis_client: Any,
    redis_url: str,
    db: Session,
    user: User,
    headers: dict[str, str],
) -> None:
    tree = _trap_tree(db, user)
    now = int(datetime.now(UTC).timestamp() * 1000)
    for link, at in ((tree["trap"], now), (tree["link"], now + 60_000)):
        event = Event(CLICK, link.id, tree["contact"].id, at, "", "203.0.113.9", BROWSER, new_event_id())
        redis_client.xadd("pt:events", {"e": event.encode()})
    worker = StreamWorker(sync_redis(redis_url), engine, consumer="trap", block_ms=10, click_rules=ClickRules())
    assert worker.drain() == 2
    assert _stored(db, tree["trap"]) == [("scanner", "trap:link")]
    assert _stored(db, tree["link"])[0][0] == "browser"
    assert _click_stats(client, tree["campaign"].id, headers) == (2, 1, 1)


def test_reclassify_keeps_a_trap_click_a_scanner_s(
    engine: Engine, db: Session, user: User, app: Any, client: Any
) -> None:
    tree = _trap_tree(db, user)
    event = Event(CLICK, tree["trap"].id, tree["contact"].id, 1_800_000_000_000, "", "", BROWSER, new_event_id())
    store_events(engine, [(event.event_id, event)])
    reclassify.reclassify(app.state.session_factory)
    assert _stored(db, tree["trap"]) == [("scanner", "trap:link")]


def _at(db: Session, links: list[Link], contact_id: int, offsets_ms: list[int]) -> None:
    t0 = 1_800_000_000_000
    events = [
        Event(CLICK, link.id, contact_id, t0 + offset, "", "203.0.113.9", BROWSER, new_event_id())
        for link, offset in zip(links, offsets_ms, strict=True)
    ]
    store_events(db.get_bind(), [(e.event_id, e) for e in events], rules=ClickRules(window_s=0, burst_s=5))  # type: ignore[arg-type]


def test_the_burst_rule_ignores_the_trap_link(engine: Engine, db: Session, user: User) -> None:
    tree = _trap_tree(db, user)
    second = factories.make_link(db, tree["campaign"], "https://example.com/second")
    burst, careful = tree["contact"], factories.make_contact(db, tree["group"])
    # Every real link within a second: a burst (the trap link is not one of "every link").
    _at(db, [tree["link"], second], burst.id, [0, 800])
    assert _stored(db, second) == [("scanner", "timing:burst")]
    # One real link and the trap: not every link, and the trap click is not counted in a span.
    _at(db, [tree["link"], tree["trap"]], careful.id, [0, 500])
    db.commit()
    clicks = db.execute(select(Click.link_id, Click.client, Click.reason).where(Click.contact_id == careful.id)).all()
    assert sorted(clicks) == sorted(
        [(tree["link"].id, "browser", "ua:browser-engine"), (tree["trap"].id, "scanner", "trap:link")]
    )
