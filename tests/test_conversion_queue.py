"""Conversions on the pixels' queue: the wire format (version 4, older versions still read), Redis
and the worker, idempotency under concurrent duplicate posts, origins told to other processes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.clients import sync_redis
from app.main import create_asgi
from app.models import Opening, User
from app.settings import Settings
from app.tracking.events import SEP, ConversionEvent, Event, decode, new_event_id
from app.tracking.queue import STREAM
from app.tracking.worker import StreamWorker
from tests import factories
from tests.live import live_server
from tests.support.app_state import app_state, flush_memory
from tests.support.conversions import SHOP, body, purchase, reload_origins, rows, shop, token

HEADERS = {"content-type": "text/plain;charset=UTF-8", "origin": SHOP}


def conversion(**kw: Any) -> ConversionEvent:
    fields: dict[str, Any] = {
        "campaign_id": 1,
        "group_id": 2,
        "contact_id": 3,
        "link_id": 4,
        "click_event_id": new_event_id(),
        "at_ms": 1_764_000_000_000,
        "event_id": "v" + new_event_id(),
        "name": "purchase",
        "value": Decimal("42.50"),
        "currency": "EUR",
        "order_id": "order-1",
    }
    fields.update(kw)
    return ConversionEvent(**fields)


def test_a_conversion_goes_over_the_wire_and_back() -> None:
    full = conversion()
    assert full.encode().startswith("4" + SEP + "v" + SEP)
    assert decode(full.encode()) == full
    assert decode(full.encode().encode()) == full
    bare = conversion(contact_id=0, value=None, currency=None, order_id=None, link_id=0)
    assert decode(bare.encode()) == bare
    # The dedupe key: one per (campaign, contact, order); a fresh one without an order id.
    assert full.dedupe_key == conversion(event_id="v" + new_event_id()).dedupe_key
    assert full.dedupe_key != conversion(contact_id=9).dedupe_key
    assert bare.dedupe_key != bare._replace(event_id="v" + new_event_id()).dedupe_key
    with pytest.raises(ValueError, match="not an open or a click"):
        Event.decode(full.encode())


@pytest.mark.parametrize(
    "bad",
    [
        "4\x1fv\x1f1\x1f2",
        "4\x1fv\x1fx\x1f2\x1f3\x1f4\x1fc\x1f1\x1fe\x1fn\x1f\x1f\x1f\x1fbrowser",
        "4\x1fv\x1f1\x1f2\x1f3\x1f4\x1fc\x1f1\x1fe\x1fn\x1fnot-a-number\x1fEUR\x1f\x1fbrowser",
        "4\x1fv\x1f1\x1f2\x1f3\x1f4\x1fc\x1f1\x1f\x1fn\x1f\x1f\x1f\x1fbrowser",  # no event id
        "3\x1fv\x1f1\x1f2\x1f3\x1f4\x1fc\x1f1\x1fe\x1fn\x1f\x1f\x1f\x1fbrowser",  # version 3 had no conversions
        "5\x1fo\x1f1",
    ],
)
def test_malformed_entries_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - malformed, or not a number
        decode(bad)


def test_opens_and_clicks_of_versions_2_and_3_still_decode() -> None:
    v3 = SEP.join(["3", "o", "7", "0", "1764000000000", "", "a" * 24, "h", "GET", "", "1.2.3.4", "UA"])
    assert decode(v3) == Event("o", 7, 0, 1_764_000_000_000, "", "1.2.3.4", "UA", "a" * 24, False, "GET", "")
    v2 = SEP.join(["2", "c", "8", "9", "1764000000000", "browser", "b" * 24, "1.2.3.4", "UA"])
    assert decode(v2) == Event("c", 8, 9, 1_764_000_000_000, "browser", "1.2.3.4", "UA", "b" * 24, reason="event:v2")
    now = Event("o", 7, 0, 1, "", "ip", "ua", "c" * 24)
    assert now.encode().startswith("3" + SEP)  # what a previous release's worker reads
    assert decode("4" + now.encode()[1:]) == now
    assert decode(now.encode()) == now


@pytest.fixture
def with_redis(settings: Settings, engine: Engine, redis_client: Any, redis_url: str) -> Iterator[TestClient]:
    with TestClient(create_asgi(settings.model_copy(update={"redis_url": redis_url}))) as client:
        yield client


@pytest.fixture
def worker(engine: Engine, redis_client: Any, redis_url: str) -> StreamWorker:
    return StreamWorker(sync_redis(redis_url), engine, consumer="test-worker", block_ms=10)


def test_through_redis_and_the_worker_with_entries_of_the_previous_release(
    with_redis: TestClient, worker: StreamWorker, settings: Settings, db: Session, user: User, redis_client: Any
) -> None:
    tree = shop(db, user)
    with factories.one_commit(db):
        pixel = factories.make_pixel(db, tree["contact"])
    reload_origins(with_redis)
    pt = token(settings, tree)
    assert with_redis.post("/e", content=json.dumps(body(pt)), headers=HEADERS).status_code == 204
    assert with_redis.post("/e", content=json.dumps(body(pt)), headers=HEADERS).status_code == 204  # a repeat
    left_by_v3 = SEP.join(["3", "o", str(pixel.id), "0", str(time.time_ns() // 10**6), "", new_event_id(), "h"])
    redis_client.xadd(STREAM, {"e": left_by_v3 + SEP.join(["", "GET", "", "1.2.3.4", "Mozilla/5.0"])})
    assert redis_client.xlen(STREAM) == 2  # the repeat was never enqueued
    worker.drain()
    assert worker.stats.conversions == 1
    assert worker.stats.malformed == 0
    assert rows(db) == [purchase(tree)]
    assert db.scalar(select(Opening.pixel_id).where(Opening.pixel_id == pixel.id)) == pixel.id
    assert redis_client.xlen(STREAM) == 0


def _concurrent_posts(base: str, payload: dict[str, Any], n: int) -> list[int]:
    def one(_: int) -> int:
        with httpx.Client(base_url=base, timeout=30) as client:
            return client.post("/e", content=json.dumps(payload), headers=HEADERS).status_code

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(one, range(n)))


@pytest.mark.parametrize("window", [0, 3600])
def test_concurrent_duplicate_posts_count_once_with_redis(
    settings: Settings,
    engine: Engine,
    db: Session,
    user: User,
    redis_client: Any,
    redis_url: str,
    worker: StreamWorker,
    window: int,
) -> None:
    """With a dedupe window Redis lets one post through; without one, every post is queued and the
    store's key (INSERT IGNORE on the idempotency key) keeps one row. (On a slow machine the breaker
    may send some to the in-process fallback, flushed when the server stops: one row still.)"""
    tree = shop(db, user)
    app = create_asgi(settings.model_copy(update={"redis_url": redis_url, "dedupe_window_seconds": window}))
    with live_server(app) as base:
        assert _concurrent_posts(base, body(token(settings, tree)), 16) == [204] * 16
    assert redis_client.xlen(STREAM) <= 16
    worker.drain()
    assert rows(db) == [purchase(tree)]


def test_concurrent_duplicate_posts_count_once_embedded(
    settings: Settings, engine: Engine, db: Session, user: User
) -> None:
    tree = shop(db, user)
    app = create_asgi(settings.model_copy(update={"dedupe_window_seconds": 0}))
    with live_server(app) as base:
        pt = token(settings, tree)
        assert _concurrent_posts(base, body(pt), 16) == [204] * 16
        # and again, from a second page (another token of the same contact: the same order)
        assert _concurrent_posts(base, body(token(settings, tree)), 8) == [204] * 8
    # The server's shutdown flushed the in-process queue.
    assert rows(db) == [purchase(tree)]


def test_other_processes_learn_a_changed_origin(
    settings: Settings,
    engine: Engine,
    db: Session,
    user: User,
    headers: dict[str, str],
    redis_url: str,
    redis_client: Any,
) -> None:
    tree = shop(db, user)
    with_redis = settings.model_copy(update={"redis_url": redis_url})
    preflight = {"origin": SHOP, "access-control-request-method": "POST"}
    with TestClient(create_asgi(with_redis)) as one, TestClient(create_asgi(with_redis)) as two:
        assert two.options("/e", headers=preflight).status_code == 204  # loaded at start
        before = app_state(two).intake.origins.loads
        assert one.delete(f"/api/v1/campaigns/{tree['campaign'].id}", headers=headers).status_code == 204
        assert one.options("/e", headers=preflight).status_code == 403  # at once where it changed
        deadline = time.monotonic() + 10
        while app_state(two).intake.origins.loads == before and time.monotonic() < deadline:
            time.sleep(0.01)  # polling for the pub/sub message, bounded
        assert two.options("/e", headers=preflight).status_code == 403
        flush_memory(one)
