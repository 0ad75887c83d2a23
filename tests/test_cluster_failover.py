"""Failover on a real Redis Cluster (3 masters + 3 replicas of this module, tests/support/redis_cluster.py):
a master is SIGKILLed, its replica promoted, and the API's Redis users go on: the rate limiter
answers every hit (per-process counts while the slot has no master), the change feeds subscribe
again and hear the next change. Each test restarts the node it killed (it rejoins as a replica)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from app.breaker import CircuitBreaker
from app.changefeed import ChangeFeed
from app.clients import async_redis, sync_redis
from app.main import create_asgi
from app.models import Opening, User
from app.ratelimit import RateLimiter
from app.settings import Settings
from app.tracking.events import KeyScheme
from app.tracking.partitions import PartitionedWorker
from tests import factories
from tests.support.app_state import app_state
from tests.support.clock import mid_minute
from tests.support.redis_cluster import PrivateRedisCluster

pytestmark = pytest.mark.processes


@pytest.fixture(scope="module")
def fault_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedisCluster]:
    cluster = PrivateRedisCluster(Path(tmp_path_factory.mktemp("fault-cluster")))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster(fault_cluster: PrivateRedisCluster) -> Iterator[PrivateRedisCluster]:
    """The module's cluster, whole again afterwards: a killed node restarts as a replica."""
    fault_cluster.wait_ok()
    yield fault_cluster
    for node in fault_cluster.nodes:
        if not node.alive:
            fault_cluster.restart(node)
    fault_cluster.wait_ok()


def test_the_rate_limiter_answers_every_hit_through_a_failover(cluster: PrivateRedisCluster) -> None:
    key = "{user:1}"  # the limiter's key of user 1 is pt:rl:{user:1}:<window>: this slot

    async def run() -> tuple[list[float], int]:
        client = async_redis(cluster.url)
        limiter = RateLimiter(client, breaker=CircuitBreaker(timeout=0.5, open_for=0.5), clock=mid_minute)
        slowest: list[float] = []
        try:
            for _ in range(20):  # shared counts before the kill
                await limiter.hit("user:1", 1_000_000, 60)
            killed = cluster.kill_master_of(key)
            promoted = asyncio.create_task(asyncio.to_thread(cluster.wait_promoted, key, killed))
            while not promoted.done():
                started = time.monotonic()
                assert await limiter.hit("user:1", 1_000_000, 60) is None  # answered, never raised
                slowest.append(time.monotonic() - started)
                await asyncio.sleep(0.01)
            await promoted
            shared = 0
            deadline = time.monotonic() + 10
            while not shared and time.monotonic() < deadline:  # counts reach the new master
                await limiter.hit("user:1", 1_000_000, 60)
                await asyncio.sleep(0.1)
                keys = [k async for k in client.scan_iter(match="pt:rl:{user:1}:*")]
                shared = len(keys)
        finally:
            await client.aclose()
        return slowest, shared

    slowest, shared = asyncio.run(run())
    assert slowest, "hits were made while the slot had no master"
    assert max(slowest) < 2.5  # bounded by the breaker's timeout, plus the event loop's own work
    assert shared == 1  # the window's counter reached the new master (the clock stands still)


def test_change_feeds_subscribe_again_after_their_node_dies(cluster: PrivateRedisCluster) -> None:
    channel = "pt:test:failover"

    async def run() -> tuple[list[str], list[str], int]:
        clients = [async_redis(cluster.url), async_redis(cluster.url)]
        heard: list[list[str]] = [[], []]
        resubscribed = [0]

        def again() -> None:
            resubscribed[0] += 1

        feeds = [
            ChangeFeed(c, channel, on_message=heard[i].append, on_resubscribe=again, ttl=10)
            for i, c in enumerate(clients)
        ]
        try:
            for feed in feeds:
                await feed.start()
            await feeds[0].publish("before")
            async with asyncio.timeout(5):
                while not all("before" in h for h in heard):
                    await asyncio.sleep(0.01)
            subscribed = resubscribed[0]
            killed = cluster.kill_master_of(channel)  # the node the subscriptions are on
            await asyncio.to_thread(cluster.wait_promoted, channel, killed)
            async with asyncio.timeout(20):
                while not all("after" in h for h in heard):  # a change made after the failover
                    await feeds[0].publish("after")
                    await asyncio.sleep(0.2)
        finally:
            for feed in feeds:
                await feed.close()
            for c in clients:
                await c.aclose()
        return heard[0], heard[1], resubscribed[0] - subscribed

    first, second, resubscribed = asyncio.run(run())
    assert "after" in first
    assert "after" in second
    assert resubscribed >= 2  # both dropped their caches: changes published meanwhile were lost


BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"}
SIXTEEN = KeyScheme.of(16, cluster=True)


def _failover(cluster: PrivateRedisCluster, key: str, done: dict[str, float]) -> None:
    """Kill the master of `key`'s slot, wait for its replica's promotion, restart the killed node
    (it rejoins as the new master's replica, so WAIT finds a replica again)."""
    started = time.monotonic()
    killed = cluster.kill_master_of(key)
    cluster.wait_promoted(key, killed)
    done["promoted_after_s"] = time.monotonic() - started
    cluster.restart(killed)
    cluster.wait_ok()
    done["whole_after_s"] = time.monotonic() - started


@pytest.mark.parametrize("wait_replicas", [0, 1])
def test_the_api_answers_every_load_through_a_failover_and_stores_each_once_at_most(
    cluster: PrivateRedisCluster, settings: Settings, engine: Engine, db: Session, user: User, wait_replicas: int
) -> None:
    """Each load is of its own pixel (a new event each): afterwards every pixel has one row or, if
    its event was acknowledged by the killed master and not yet replicated, none (counted, and
    with WAIT for one replica there must be none). Never two."""
    tree = factories.make_tree(db, user)
    with factories.one_commit(db):
        pixels = [factories.make_pixel(db, tree["contact"], number=n + 2) for n in range(300)]
    config = settings.model_copy(
        update={"redis_url": cluster.url, "stream_partitions": 16, "redis_wait_replicas": wait_replicas}
    )
    victim = SIXTEEN.stream(pixels[0].id % 16)
    failover: dict[str, float] = {}
    thread = threading.Thread(target=_failover, args=(cluster, victim, failover))
    slowest = 0.0
    with TestClient(create_asgi(config)) as api:
        codec = app_state(api).tracker.codec
        for n, pixel in enumerate(pixels):
            if n == 60:
                thread.start()
            started = time.monotonic()
            answer = api.get(f"/o/{codec.pixel_token(pixel.id)}.gif", headers=BROWSER)
            slowest = max(slowest, time.monotonic() - started)
            assert answer.status_code == 200, answer.text
            time.sleep(0.01)  # pacing: the loads span the failover (~2-3 s), not a wait for async work
        thread.join(60)
        assert "whole_after_s" in failover, "the cluster did not recover"
    # The app has closed: its fallback flushed what it took. Now the worker empties the streams.
    worker = PartitionedWorker(sync_redis(cluster.url), engine, keys=SIXTEEN, block_ms=10)
    worker.drain()
    db.expire_all()
    counts = dict(
        db.execute(
            select(Opening.pixel_id, func.count())
            .where(Opening.pixel_id.in_([p.id for p in pixels]))
            .group_by(Opening.pixel_id)
        ).all()
    )
    assert max(counts.values()) == 1  # never stored twice
    lost = len(pixels) - len(counts)
    print(
        f"\nWAIT={wait_replicas}: {len(pixels)} loads answered, lost {lost}, slowest {slowest * 1000:.0f} ms, {failover}"
    )
    assert slowest < 3.0
    if wait_replicas:
        assert lost == 0
