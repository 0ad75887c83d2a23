"""Redis losing its data or hanging, with a private redis-server (issue 10, items 6 and 11).

- FLUSHALL + SCRIPT FLUSH (a restart without persistence) under pixel load: the worker
  recreates its consumer group (NOGROUP) and the API reloads its script (NOSCRIPT); every
  acknowledged load lands exactly once, except the events Redis itself wiped (recorded
  atomically with the flush, so the test knows exactly which).
- The worker's gauges say so while the group is missing (lag = the stream, not 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY
from sqlalchemy import Engine

from app.clients import sync_redis
from app.main import create_asgi
from app.settings import Settings
from app.tracking.events import Event
from app.tracking.queue import STREAM, RedisQueue
from app.tracking.tokens import TokenCodec
from app.tracking.worker import StreamWorker
from tests.live import live_server
from tests.support.pixel_loader import PixelLoader
from tests.support.processes import wait_until
from tests.support.redis_server import PrivateRedis
from tests.support.tracking_data import openings, pending, push_events, row_count, seed_pixels
from tests.support.worker_thread import WorkerThread


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
