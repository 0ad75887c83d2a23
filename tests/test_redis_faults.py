"""Redis losing its data or hanging, with a private redis-server (issue 10, items 6 and 11).

- FLUSHALL + SCRIPT FLUSH (a restart without persistence) under pixel load: the worker
  recreates its consumer group (NOGROUP) and the API reloads its script (NOSCRIPT); every
  acknowledged load lands exactly once, except the events Redis itself wiped (recorded
  atomically with the flush, so the test knows exactly which).
- The worker's gauges say so while the group is missing (lag = the stream, not 0).
- A hung (SIGSTOPped) Redis: the circuit breaker skips it, requests answer fast, then recover.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.clients import sync_redis
from app.main import create_asgi
from app.models import User
from app.settings import Settings
from app.tracking.events import Event
from app.tracking.queue import STREAM, RedisQueue
from app.tracking.tokens import TokenCodec
from app.tracking.worker import StreamWorker
from tests import factories
from tests.live import live_server
from tests.support.pixel_loader import PixelLoader
from tests.support.processes import wait_until
from tests.support.redis_server import PrivateRedis
from tests.support.tracking_data import openings, pending, push_events, row_count, seed_pixels
from tests.support.worker_thread import WorkerThread

pytestmark = pytest.mark.processes  # starts real processes or servers: not in the fast loop


def flush_redis_recording_the_stream(client: Any) -> list[Event]:
    """Atomically: read what is in the stream, then FLUSHALL and SCRIPT FLUSH (what a restart
    without persistence does). Returns the events Redis lost."""
    pipe = client.pipeline(transaction=True)
    pipe.xrange(STREAM, "-", "+")
    pipe.flushall()
    pipe.script_flush()
    entries, _, _ = pipe.execute()
    return [Event.decode(fields["e"]) for _, fields in entries]


def test_flushall_under_load_every_acknowledged_load_lands_once(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    pixels = seed_pixels(engine, 4000)
    codec = TokenCodec(settings.fernet_keys())
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    probe = sync_redis(server.url)
    try:
        app = create_asgi(settings.model_copy(update={"redis_url": server.url}))
        worker = StreamWorker(sync_redis(server.url), engine, consumer="flushed", batch_size=200, block_ms=50)
        with WorkerThread(worker) as worker_thread, live_server(app) as base:
            queue = app.state.tracker.queue
            assert isinstance(queue, RedisQueue)
            port = int(base.rsplit(":", 1)[1])
            loader = PixelLoader(port, [f"/o/{codec.pixel_token(p)}.gif" for p in pixels], connections=8)
            loader.start()
            try:
                wait_until(lambda: len(loader.acked) >= 800, "loads acknowledged before the flush")
                wiped = flush_redis_recording_the_stream(probe)
                mark = len(loader.acked)
                wait_until(
                    lambda: len(loader.acked) >= mark + 1500 or loader.exhausted(), "loads acknowledged after it"
                )
            finally:
                loader.stop()
            assert not loader.exhausted(), "ran out of pixels: the flush was not under load"
            acked_after = len(loader.acked) - mark

            def drained() -> bool:
                worker_thread.check()
                return pending(probe) == 0 and probe.xlen(STREAM) == 0

            wait_until(drained, "the worker to drain the stream after the flush")
            assert not queue.degraded, "NOSCRIPT after the flush must reload the script, not fall back"
        per_pixel = openings(engine, pixels)["per_pixel"]
        acked = {pixels[i] for i in loader.acked}
        lost_by_redis = {event.target_id for event in wiped} & acked
        missing = sorted(p for p in acked - lost_by_redis if per_pixel.get(p, 0) != 1)
        print(
            f"\n[flush] FLUSHALL + SCRIPT FLUSH after {mark} acknowledged loads ({len(wiped)} events were in the stream "
            f"and wiped by Redis), {acked_after} acknowledged after it; worker: {worker.stats.inserted} inserted, "
            f"{worker_thread.redis_errors} Redis errors; rows {sum(per_pixel.values())}."
        )
        assert loader.other == []
        assert loader.failed == []
        assert acked_after >= 1500
        assert missing == []  # every acknowledged load Redis did not itself wipe: exactly one row
        assert max(per_pixel.values()) == 1
        assert set(per_pixel) <= acked
        assert worker_thread.redis_errors == 0  # NOGROUP is handled inside the worker loop
    finally:
        probe.close()
        server.stop()


def _sample(name: str, labels: dict[str, str] | None = None) -> float | None:
    return REGISTRY.get_sample_value(name, labels or {})


def test_worker_gauges_report_the_lag_while_its_group_is_gone(
    engine: Engine, redis_client: Any, redis_url: str
) -> None:
    pixels = seed_pixels(engine, 5)
    worker = StreamWorker(sync_redis(redis_url), engine, consumer="gauges", block_ms=10)
    redis_client.flushall()  # Redis restarted without its data: no stream, no group
    push_events(redis_client, pixels, 5)  # the API's XADD recreates the stream, not the group
    worker.update_gauges()
    assert _sample("pixeltrack_stream_length") == 5
    assert _sample("pixeltrack_stream_lag") == 5  # not delivered to anyone: not 0
    assert _sample("pixeltrack_dependency_up", {"dependency": "redis"}) == 1
    assert worker.run_once(block=False) == 0  # NOGROUP: the group is recreated...
    assert worker.drain() == 5  # ...from the start of the stream
    assert row_count(engine) == 5
    worker.update_gauges()
    assert _sample("pixeltrack_stream_lag") == 0
    assert _sample("pixeltrack_stream_length") == 0
    redis_client.delete(STREAM)  # no stream at all: nothing pending, nothing lagging
    worker.update_gauges()
    assert (_sample("pixeltrack_stream_length"), _sample("pixeltrack_stream_lag")) == (0, 0)


def test_hung_redis_is_skipped_then_used_again(
    settings: Settings, engine: Engine, db: Session, user: User, tmp_path: Path
) -> None:
    """A SIGSTOPped redis-server (accepts connections, never answers): after the first call that
    times out, the breaker opens and every request answers at once; after SIGCONT, Redis is
    used again (issue 10, item 11)."""
    pixels = seed_pixels(engine, 50)
    baseline_pixels, pixels = pixels[40:], pixels[:40]
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    assert server.proc is not None
    app = create_asgi(
        settings.model_copy(
            update={
                "redis_url": server.url,
                "rate_limit_per_minute": 1000,
                "login_max_failures": 50,
            }
        )
    )
    codec = TokenCodec(settings.fernet_keys())
    headers = factories.headers_for(settings, user)
    login = {"username": user.username, "password": factories.PASSWORD}
    probe = sync_redis(server.url)
    stopped = False
    try:
        with TestClient(app) as client:
            queue = app.state.tracker.queue
            assert isinstance(queue, RedisQueue)
            assert client.get("/auth/me", headers=headers).status_code == 200
            assert client.get(f"/o/{codec.pixel_token(pixels[0])}.gif").status_code == 200
            assert not queue.degraded
            timings: list[tuple[str, float]] = []

            def timed(label: str, status: int, method: str, path: str, **kwargs: Any) -> None:
                start = time.monotonic()
                response = client.request(method, path, **kwargs)
                timings.append((label, time.monotonic() - start))
                assert response.status_code == status, (label, response.status_code, response.text)

            def requests(pixel_ids: list[int]) -> None:
                for pixel in pixel_ids:
                    timed("pixel", 200, "GET", f"/o/{codec.pixel_token(pixel)}.gif")
                for _ in range(5):
                    timed("me", 200, "GET", "/auth/me", headers=headers)
                timed("login", 200, "POST", "/auth/token", data=login)
                timed("bad login", 401, "POST", "/auth/token", data={**login, "password": "wrong-password"})
                timed("readyz", 200, "GET", "/readyz")

            # The same requests with Redis answering, in this run: the baseline the hung case is held to
            # (password hashing alone takes longer on a busy machine).
            requests(baseline_pixels)
            baseline: dict[str, float] = {}
            for label, seconds in timings:
                baseline[label] = max(seconds, baseline.get(label, 0.0))
            timings.clear()
            assert not queue.degraded
            unshared_before = _sample("pixeltrack_rate_limit_unshared_total", {"reason": "breaker_open"}) or 0
            os.kill(server.proc.pid, signal.SIGSTOP)
            stopped = True
            started = time.monotonic()
            requests(pixels[1:11])
            hung_for = time.monotonic() - started
            assert client.get("/readyz").json()["checks"]["redis"] == "degraded"
            over = [(label, round(seconds - baseline[label], 3)) for label, seconds in timings]
            print(f"\n[hung] {len(timings)} requests with Redis stopped in {hung_for:.3f}s; over baseline: {over}")
            # Only one request per breaker interval (REDIS_BREAKER_OPEN_SECONDS, 2 s) may wait for the
            # 0.5 s call timeout: the first, then one trial per interval. On main, 18 such requests took
            # 21 s (each waited for the 2 s socket timeout). Logins are left out of this count: password
            # hashing varies by more than that on a busy machine; that the login throttle skipped Redis
            # shows in pixeltrack_rate_limit_unshared_total below.
            waited = [(label, extra) for label, extra in over if extra >= 0.45 and "login" not in label]
            assert 1 <= len(waited) <= 1 + int(hung_for / 2.0), (hung_for, over)
            assert max(extra for _, extra in over) < 1.5, over
            assert queue.degraded  # pixels went to the in-process queue
            assert _sample("pixeltrack_redis_breaker_open") == 1
            unshared = _sample("pixeltrack_rate_limit_unshared_total", {"reason": "breaker_open"}) or 0
            assert unshared > unshared_before  # rate limiting says it did not use Redis

            os.kill(server.proc.pid, signal.SIGCONT)
            stopped = False
            fresh = iter(pixels[11:])

            def back_on_redis() -> bool:
                assert client.get(f"/o/{codec.pixel_token(next(fresh))}.gif").status_code == 200
                return not queue.degraded

            wait_until(back_on_redis, "the API to use Redis again", timeout=10, interval=0.1)
            assert _sample("pixeltrack_redis_breaker_open") == 0
            probe.delete(*(probe.keys("pt:rl:*") or ["none"]))
            assert client.get("/auth/me", headers=headers).status_code == 200
            assert probe.keys("pt:rl:{user:*"), "the rate limiter counts in Redis again"
    finally:
        if stopped:
            os.kill(server.proc.pid, signal.SIGCONT)
        probe.close()
        server.stop()
