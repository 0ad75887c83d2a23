"""Failover on a real Redis Cluster (3 masters + 3 replicas of this module, tests/support/redis_cluster.py):
a master is SIGKILLed, its replica promoted, and the API's Redis users go on: the rate limiter
answers every hit (per-process counts while the slot has no master), the change feeds subscribe
again and hear the next change. Each test restarts the node it killed (it rejoins as a replica)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.breaker import CircuitBreaker
from app.changefeed import ChangeFeed
from app.clients import async_redis
from app.ratelimit import RateLimiter
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
        limiter = RateLimiter(client, breaker=CircuitBreaker(timeout=0.5, open_for=0.5))
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
    assert shared == 1


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
