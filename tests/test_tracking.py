"""The public pixel and click endpoints end to end: embedded queue, Redis + worker, degraded modes.

Every test reads the outcome from the database after an explicit flush (embedded)
or an explicit worker drain (Redis): no sleeps.
"""

from __future__ import annotations

import asyncio
import base64
import struct
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, select, text
from sqlalchemy.orm import Session

from app.clients import sync_redis
from app.db import make_engine
from app.main import create_asgi
from app.models import Click, ContactStats, GroupCounts, Opening, User
from app.services import counters
from app.services import pixels as pixel_service
from app.settings import Settings
from app.tracking.events import OPEN, Event
from app.tracking.ingest import store_events
from app.tracking.queue import GROUP, STREAM, MemoryQueue, RedisQueue
from app.tracking.tokens import TokenCodec
from app.tracking.worker import StreamWorker
from tests import factories
from tests.helpers import count
from tests.live import concurrent_gets, live_server
from tests.support.app_state import app_state, flush_memory, in_app_loop

GIF_CACHE_CONTROL = "no-store, no-cache, must-revalidate, private"
BROWSER_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
)


def codec_of(client: TestClient) -> TokenCodec:
    codec: TokenCodec = app_state(client).tracker.codec
    return codec


def flush(client: TestClient) -> None:
    flush_memory(client)


@pytest.fixture
def embedded(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    """A fresh app on the embedded queue (no Redis): its own dedupe memory per test."""
    with TestClient(create_asgi(settings)) as client:
        yield client


@pytest.fixture
def with_redis(settings: Settings, engine: Engine, redis_client: Any, redis_url: str) -> Iterator[TestClient]:
    with TestClient(create_asgi(settings.model_copy(update={"redis_url": redis_url}))) as client:
        yield client


@pytest.fixture
def worker(engine: Engine, redis_client: Any, redis_url: str) -> StreamWorker:
    return StreamWorker(sync_redis(redis_url), engine, consumer="test-worker", block_ms=10)


# --- the pixel, embedded --------------------------------------------------------------


def test_pixel_answers_gif_and_records_one_opening(embedded: TestClient, db: Session, user: User) -> None:
    tree = factories.make_tree(db, user)
    pixel, contact = tree["pixel"], tree["contact"]
    token = codec_of(embedded).pixel_token(pixel.id)
    response = embedded.get(f"/o/{token}.gif", headers={"User-Agent": BROWSER_UA})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/gif"
    assert response.headers["cache-control"] == GIF_CACHE_CONTROL
    body = response.content
    assert len(body) == 43
    assert body.startswith(b"GIF89a")
    assert body.endswith(b";")
    assert struct.unpack("<HH", body[6:10]) == (1, 1)  # 1x1
    assert body[13 + 6 : 13 + 9] == b"\x21\xf9\x04"
    assert body[13 + 9] & 1
    flush(embedded)
    assert count(db, Opening, pixel_id=pixel.id) == 2  # the factory's opening + this load
    new = db.scalars(select(Opening).where(Opening.pixel_id == pixel.id).order_by(Opening.id.desc())).first()
    assert new is not None
    assert (new.contact_id, new.campaign_id, new.client, new.user_agent) == (
        contact.id,
        contact.campaign_id,
        "browser",
        BROWSER_UA,
    )


def test_repeat_load_within_window_is_not_recorded(embedded: TestClient, db: Session, user: User) -> None:
    pixel = factories.make_tree(db, user)["pixel"]
    url = f"/o/{codec_of(embedded).pixel_token(pixel.id)}.gif"
    assert [embedded.get(url).status_code for _ in range(5)] == [200] * 5
    flush(embedded)
    assert count(db, Opening, pixel_id=pixel.id) == 1 + 1


@pytest.mark.parametrize("token", ["nope", "gAAAAA", "x" * 300, "%F0%9F%92%A5", "..%2F..%2Fetc"])
def test_invalid_token_is_404_and_writes_nothing(embedded: TestClient, db: Session, token: str) -> None:
    before = count(db, Opening)
    response = embedded.get(f"/o/{token}.gif")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found.", "code": "not_found"}
    assert app_state(embedded).tracking.memory.pending == 0
    flush(embedded)
    assert count(db, Opening) == before


def test_tampered_and_foreign_tokens_are_404(embedded: TestClient, db: Session, user: User) -> None:
    pixel = factories.make_tree(db, user)["pixel"]
    token = codec_of(embedded).pixel_token(pixel.id)
    tampered = token[:-3] + ("AAA" if token[-3:] != "AAA" else "BBB")
    foreign = TokenCodec([base64.urlsafe_b64encode(b"k" * 32).decode()]).pixel_token(pixel.id)
    for bad in (tampered, foreign, token[::-1]):
        assert embedded.get(f"/o/{bad}.gif").status_code == 404
    assert app_state(embedded).tracking.memory.pending == 0


def test_head_request_answers_without_body_and_counts_as_bot(embedded: TestClient, db: Session, user: User) -> None:
    pixel = factories.make_tree(db, user)["pixel"]
    response = embedded.head(f"/o/{codec_of(embedded).pixel_token(pixel.id)}.gif", headers={"User-Agent": BROWSER_UA})
    assert response.status_code == 200
    assert response.content == b""
    flush(embedded)
    assert count(db, Opening, pixel_id=pixel.id, client="bot") == 1


def test_pixel_url_from_the_api_is_the_working_tracking_url(
    embedded: TestClient, db: Session, user: User, settings: Settings
) -> None:
    tree = factories.make_tree(db, user)
    headers = factories.headers_for(settings, user)
    body = embedded.get(f"/api/v1/pixels/{tree['pixel'].id}", headers=headers).json()
    assert body["url"].startswith(f"{settings.public_base_url}/o/")
    assert body["url"].endswith(".gif")
    assert f'src="{body["url"]}"' in body["html"]
    path = body["url"].removeprefix(settings.public_base_url)
    assert embedded.get(path, headers={"User-Agent": BROWSER_UA}).status_code == 200
    flush(embedded)
    assert count(db, Opening, pixel_id=tree["pixel"].id) == 2


def test_deleted_pixel_load_still_answers_but_is_skipped(embedded: TestClient, db: Session, user: User) -> None:
    pixel = factories.make_tree(db, user)["pixel"]
    token = codec_of(embedded).pixel_token(pixel.id)
    pixel_service.delete_pixel(db, pixel)
    db.commit()  # services flush; the caller commits
    assert embedded.get(f"/o/{token}.gif").status_code == 200
    memory = app_state(embedded).tracking.memory
    result = in_app_loop(embedded, memory.flush)
    assert (result.inserted, result.skipped_missing) == (0, 1)
    assert count(db, Opening, pixel_id=pixel.id) == 0


def test_shutdown_flushes_pending_events(settings: Settings, engine: Engine, db: Session, user: User) -> None:
    pixel = factories.make_tree(db, user)["pixel"]
    with TestClient(create_asgi(settings)) as client:
        assert client.get(f"/o/{codec_of(client).pixel_token(pixel.id)}.gif").status_code == 200
    # The lifespan ended: the event must be in the database, without any explicit flush.
    assert count(db, Opening, pixel_id=pixel.id) == 2


def test_anonymize_ip_truncates_before_storage(settings: Settings, engine: Engine, db: Session, user: User) -> None:
    pixel = factories.make_tree(db, user)["pixel"]
    app = create_asgi(settings.model_copy(update={"anonymize_ip": True}))
    token = TokenCodec(settings.fernet_keys()).pixel_token(pixel.id)
    with live_server(app) as base:
        assert httpx.get(f"{base}/o/{token}.gif").status_code == 200
    db.commit()
    stored = db.scalars(select(Opening.ip).where(Opening.pixel_id == pixel.id, Opening.client != "unknown")).all()
    assert "127.0.0.0" in stored
    assert "127.0.0.1" not in stored


def test_dedupe_window_with_injected_clock(engine: Engine, db: Session, user: User) -> None:
    pixel = factories.make_tree(db, user)["pixel"]
    now = [1000.0]
    queue = MemoryQueue(engine, window_seconds=3600, clock=lambda: now[0])
    event = Event(OPEN, pixel.id, 0, 1, "browser", "", "")
    assert queue.offer(event) is True
    now[0] += 3599
    assert queue.offer(event) is False
    now[0] += 2  # 3601 s after the recorded one
    assert queue.offer(event) is True
    asyncio.run(queue.flush())
    assert count(db, Opening, pixel_id=pixel.id) == 1 + 2


# --- clicks ----------------------------------------------------------------------------


def test_click_redirects_to_stored_url_and_records(
    embedded: TestClient, db: Session, user: User, settings: Settings
) -> None:
    tree = factories.make_tree(db, user)
    link, contact = tree["link"], tree["contact"]
    headers = factories.headers_for(settings, user)
    tracked = embedded.get(f"/api/v1/links/{link.id}/url", params={"contact_id": contact.id}, headers=headers).json()[
        "url"
    ]
    path = tracked.removeprefix(settings.public_base_url)
    response = embedded.get(
        path + "?url=https://evil.example/", follow_redirects=False, headers={"User-Agent": BROWSER_UA}
    )
    assert response.status_code == 302
    assert response.headers["location"] == link.url
    flush(embedded)
    db.commit()
    clicks = db.scalars(select(Click).where(Click.link_id == link.id)).all()
    assert [(c.contact_id, c.campaign_id, c.client) for c in clicks] == [(contact.id, contact.campaign_id, "browser")]


def test_click_on_deleted_link_or_bad_token_is_404(
    embedded: TestClient, db: Session, user: User, settings: Settings
) -> None:
    tree = factories.make_tree(db, user)
    headers = factories.headers_for(settings, user)
    token = codec_of(embedded).click_token(tree["link"].id, tree["contact"].id)
    assert embedded.get(f"/c/{token}", follow_redirects=False).status_code == 302
    assert embedded.delete(f"/api/v1/links/{tree['link'].id}", headers=headers).status_code == 204
    assert embedded.get(f"/c/{token}", follow_redirects=False).status_code == 404
    assert embedded.get("/c/garbage", follow_redirects=False).status_code == 404
    assert embedded.get(f"/c/{codec_of(embedded).pixel_token(1)}", follow_redirects=False).status_code == 404


def test_tracking_routes_are_documented(embedded: TestClient) -> None:
    paths = embedded.get("/openapi.json").json()["paths"]
    assert "/o/{token}.gif" in paths
    assert "/c/{token}" in paths
    assert "security" not in paths["/o/{token}.gif"]["get"]


# --- Redis: dedupe + stream + worker -----------------------------------------------------


def test_redis_path_dedupes_enqueues_and_worker_inserts(
    with_redis: TestClient, worker: StreamWorker, redis_client: Any, db: Session, user: User, settings: Settings
) -> None:
    pixel = factories.make_tree(db, user)["pixel"]
    url = f"/o/{codec_of(with_redis).pixel_token(pixel.id)}.gif"
    assert [with_redis.get(url).status_code for _ in range(3)] == [200] * 3
    assert redis_client.xlen(STREAM) == 1  # two repeats acknowledged, not enqueued
    assert app_state(with_redis).tracker.queue.degraded is False
    ttl = redis_client.ttl(f"pt:d:o:{pixel.id}:h")
    assert settings.dedupe_window_seconds - 5 <= ttl <= settings.dedupe_window_seconds
    assert count(db, Opening, pixel_id=pixel.id) == 1  # nothing written by the request path
    assert worker.drain() == 1
    assert count(db, Opening, pixel_id=pixel.id) == 2
    assert redis_client.xlen(STREAM) == 0  # acked and trimmed
    # When the window has passed (the key expired), the next load is recorded again.
    redis_client.delete(f"pt:d:o:{pixel.id}:h")
    assert with_redis.get(url).status_code == 200
    assert worker.drain() == 1
    assert count(db, Opening, pixel_id=pixel.id) == 3


@pytest.mark.slow
def test_200_concurrent_loads_of_one_pixel_make_exactly_one_opening(
    settings: Settings, engine: Engine, worker: StreamWorker, redis_url: str, db: Session, user: User
) -> None:
    pixel = factories.make_tree(db, user)["pixel"]
    token = TokenCodec(settings.fernet_keys()).pixel_token(pixel.id)
    app = create_asgi(settings.model_copy(update={"redis_url": redis_url}))
    with live_server(app) as base:
        statuses = concurrent_gets(base, [f"/o/{token}.gif"] * 200, connections=200)
    assert statuses == [200] * 200
    worker.drain()
    assert count(db, Opening, pixel_id=pixel.id) == 1 + 1


@pytest.mark.slow
def test_1000_concurrent_loads_of_distinct_pixels_make_1000_openings(
    settings: Settings, engine: Engine, worker: StreamWorker, redis_url: str, db: Session, user: User
) -> None:
    tree = factories.make_tree(db, user)
    contacts = [factories.make_contact(db, tree["group"]) for _ in range(50)]
    pixels = [factories.make_pixel(db, contacts[i % 50], number=i // 50 + 1) for i in range(1000)]
    codec = TokenCodec(settings.fernet_keys())
    before = count(db, Opening)
    app = create_asgi(settings.model_copy(update={"redis_url": redis_url}))
    with live_server(app) as base:
        statuses = concurrent_gets(base, [f"/o/{codec.pixel_token(p.id)}.gif" for p in pixels], connections=100)
    assert statuses == [200] * 1000
    assert worker.drain() == 1000
    assert count(db, Opening) == before + 1000
    assert len(set(db.scalars(select(Opening.pixel_id).where(Opening.id > 0)).all())) == len(pixels) + 1


def test_worker_crash_before_ack_is_redelivered_without_duplicates(
    with_redis: TestClient, engine: Engine, redis_client: Any, redis_url: str, db: Session, user: User
) -> None:
    tree = factories.make_tree(db, user)
    pixels = [factories.make_pixel(db, tree["contact"], number=n) for n in range(2, 12)]
    for p in pixels:
        assert with_redis.get(f"/o/{codec_of(with_redis).pixel_token(p.id)}.gif").status_code == 200
    # Consumer A reads the batch, inserts half of it, and dies before acknowledging.
    crashed = StreamWorker(sync_redis(redis_url), engine, consumer="A", claim_idle_ms=0)
    entries = crashed._new(block=False)
    assert len(entries) == 10
    store_events(engine, [(eid, Event.decode(fields["e"])) for eid, fields in entries[:5]])
    assert redis_client.xpending(STREAM, GROUP)["pending"] == 10
    # Consumer B reclaims A's entries (idle >= 0 ms here) and finishes the job exactly once.
    survivor = StreamWorker(sync_redis(redis_url), engine, consumer="B", claim_idle_ms=0, claim_every=1)
    assert survivor.drain() == 10
    assert survivor.stats.reclaimed == 10
    assert survivor.stats.duplicates == 5
    assert redis_client.xpending(STREAM, GROUP)["pending"] == 0
    for p in pixels:
        assert count(db, Opening, pixel_id=p.id) == 1


def test_worker_skips_events_of_deleted_pixels(
    with_redis: TestClient, worker: StreamWorker, db: Session, user: User
) -> None:
    tree = factories.make_tree(db, user)
    gone = factories.make_pixel(db, tree["contact"], number=2)
    token = codec_of(with_redis).pixel_token(gone.id)
    assert with_redis.get(f"/o/{token}.gif").status_code == 200
    pixel_service.delete_pixel(db, gone)
    db.commit()  # services flush; the caller commits
    assert worker.drain() == 1
    assert (worker.stats.inserted, worker.stats.skipped_missing) == (0, 1)
    assert count(db, Opening, pixel_id=gone.id) == 0


def test_database_down_events_wait_in_stream_then_land_once(
    with_redis: TestClient,
    engine: Engine,
    redis_client: Any,
    redis_url: str,
    db: Session,
    user: User,
    db_leg: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tree = factories.make_tree(db, user)
    pixels = [factories.make_pixel(db, tree["contact"], number=n) for n in range(2, 7)]
    for p in pixels:
        assert with_redis.get(f"/o/{codec_of(with_redis).pixel_token(p.id)}.gif").status_code == 200
    dead_url = "mysql+pymysql://root@127.0.0.1:1/nowhere" if db_leg == "mysql" else "sqlite:////nonexistent-dir/x.db"
    dead = make_engine(dead_url)
    down = StreamWorker(sync_redis(redis_url), dead, consumer="same", max_backoff=0.01)
    monkeypatch.setattr(down, "_sleep", lambda seconds: None)  # our own backoff, not the point here
    assert down.run_once(block=False) == 0
    assert down.run_once(block=False) == 0
    assert down.stats.db_errors == 2
    assert redis_client.xpending(STREAM, GROUP)["pending"] == 5  # nothing acked, nothing lost
    back = StreamWorker(sync_redis(redis_url), engine, consumer="same")
    assert back.drain() == 5
    assert [count(db, Opening, pixel_id=p.id) for p in pixels] == [1] * 5
    assert redis_client.xlen(STREAM) == 0


def test_redis_down_pixel_still_answers_and_opening_is_recorded(
    settings: Settings, engine: Engine, db: Session, user: User
) -> None:
    pixel = factories.make_tree(db, user)["pixel"]
    app = create_asgi(settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"}))
    with TestClient(app) as client:
        token = codec_of(client).pixel_token(pixel.id)
        assert [client.get(f"/o/{token}.gif").status_code for _ in range(3)] == [200] * 3
        queue = app.state.tracker.queue
        assert isinstance(queue, RedisQueue)
        assert queue.degraded
        flush(client)
    assert count(db, Opening, pixel_id=pixel.id) == 1 + 1  # recorded once: per-process dedupe still applies


def test_documented_routes_behave_like_the_fast_path(client: TestClient, db: Session, user: User) -> None:
    """Without the ASGI wrapper (plain create_app), FastAPI's own routes serve the same replies."""
    tree = factories.make_tree(db, user)
    codec = app_state(client).tracker.codec
    response = client.get(f"/o/{codec.pixel_token(tree['pixel'].id)}.gif")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/gif"
    assert response.headers["cache-control"] == GIF_CACHE_CONTROL
    assert len(response.content) == 43
    assert client.get("/o/garbage.gif").json() == {"detail": "Not found.", "code": "not_found"}
    click = client.get(f"/c/{codec.click_token(tree['link'].id, tree['contact'].id)}", follow_redirects=False)
    assert click.status_code == 302
    assert click.headers["location"] == tree["link"].url
    flush(client)
    assert count(db, Opening, pixel_id=tree["pixel"].id) == 2
    assert count(db, Click, link_id=tree["link"].id) == 1


def test_readyz_reports_redis(with_redis: TestClient) -> None:
    # Redis down: 200 with redis "degraded" (tests/test_health.py).
    assert with_redis.get("/readyz").json() == {
        "status": "ok",
        "checks": {"database": "ok", "schema": "ok", "redis": "ok"},
    }


def test_entry_deleted_from_stream_while_pending_is_acknowledged(
    with_redis: TestClient, engine: Engine, redis_client: Any, redis_url: str, db: Session, user: User
) -> None:
    pixel = factories.make_tree(db, user)["pixel"]
    assert with_redis.get(f"/o/{codec_of(with_redis).pixel_token(pixel.id)}.gif").status_code == 200
    worker = StreamWorker(sync_redis(redis_url), engine, consumer="w")
    [(entry_id, _fields)] = worker._new(block=False)  # delivered, then the entry vanishes (XDEL/trim)
    redis_client.xdel(STREAM, entry_id)
    assert redis_client.xpending(STREAM, GROUP)["pending"] == 1
    assert worker.run_once(block=False) == 0
    assert redis_client.xpending(STREAM, GROUP)["pending"] == 0


@pytest.mark.mysql_only  # row locks (SQLite runs one writer at a time)
def test_concurrent_batches_count_a_first_opener_once(engine: Engine, db: Session, user: User) -> None:
    """Two ingest transactions each adding a contact's first opening: the second waits for the
    first (a locking read of the contact's counters, not a stale snapshot), so its group counts
    one opener and two opens, not two openers."""
    campaign = factories.make_campaign(db, user)
    group = factories.make_group(db, campaign)
    contact = factories.make_contact(db, group, status="sent", sent_at=datetime(2026, 3, 2, 8, tzinfo=UTC))
    pixel = factories.make_pixel(db, contact)
    first_at = datetime(2026, 3, 2, 9, tzinfo=UTC)
    row = {
        "event_id": "first-tx",
        "pixel_id": pixel.id,
        "contact_id": contact.id,
        "campaign_id": campaign.id,
        "opened_at": first_at,
        "client": "browser",
    }
    second = Event(OPEN, pixel.id, 0, int(first_at.timestamp() * 1000) - 60_000, "browser", "", "", "second-tx")
    with engine.connect() as conn, ThreadPoolExecutor(1) as pool:
        conn.execute(insert(Opening), [row])
        counters.add_events(conn, [row], [])
        pending = pool.submit(store_events, engine, [("second-tx", second)])
        # Commit once the second batch is stuck in a statement (on the contact's row lock).
        waiting = text(
            "SELECT COUNT(*) FROM information_schema.processlist "
            "WHERE id <> CONNECTION_ID() AND db = DATABASE() AND command = 'Query' AND info IS NOT NULL"
        )
        deadline = time.monotonic() + 10
        while conn.scalar(waiting) == 0:
            assert not pending.done(), "the second batch did not wait for the first"
            assert time.monotonic() < deadline, "the second batch never reached the contact's row lock"
            time.sleep(0.01)
        conn.commit()
        assert pending.result(timeout=30).inserted == 1
    db.expire_all()
    counts = db.get(GroupCounts, (campaign.id, group.id))
    assert counts is not None
    assert (counts.opens_browser, counts.openers, counts.timed_openers) == (2, 1, 1)
    stats = db.get(ContactStats, (campaign.id, contact.id))
    assert stats is not None
    assert stats.first_open_delay_us == 3600 * 10**6 - 60 * 10**6
