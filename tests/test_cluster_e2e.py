"""Tracking on a real Redis Cluster (3 masters + 3 replicas, tests/support/redis_cluster.py), both
database legs: the API with STREAM_PARTITIONS=16 → the partition streams, spread over the three
masters → a worker → exactly one row per pixel and split, one per link and contact. Failover (a
master SIGKILLed in the middle of the loads): tests/test_cluster_failover.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app import metrics
from app.breaker import CircuitBreaker
from app.clients import async_redis, sync_redis
from app.main import create_asgi
from app.models import Click, Opening, User
from app.settings import Settings
from app.tracking.events import STREAM, Event, KeyScheme, new_event_id
from app.tracking.partitions import PartitionedWorker
from app.tracking.queue import MemoryQueue, RedisQueue
from tests import factories
from tests.support.app_state import app_state
from tests.support.redis_cluster import PrivateRedisCluster
from tests.support.split_loads import load_targets, rows_per

pytestmark = pytest.mark.processes

SIXTEEN = KeyScheme.of(16, cluster=True)


@pytest.fixture
def cluster(redis_cluster: PrivateRedisCluster) -> Iterator[PrivateRedisCluster]:
    redis_cluster.flush()  # our own cluster (tests/conftest.py)
    yield redis_cluster
    redis_cluster.flush()


@pytest.fixture
def api(settings: Settings, cluster: PrivateRedisCluster) -> Iterator[TestClient]:
    on_cluster = settings.model_copy(update={"redis_url": cluster.url, "stream_partitions": 16})
    with TestClient(create_asgi(on_cluster)) as client:
        yield client


def test_loads_on_a_cluster_store_one_row_per_pixel_and_split(
    api: TestClient, cluster: PrivateRedisCluster, engine: Engine, db: Session, user: User
) -> None:
    pixels, links, contact = factories.make_targets(db, user, 32)
    load_targets(api, pixels, links, contact, rounds=3)  # repeats within the dedupe window: one event per split
    assert not app_state(api).tracking.tracker.queue.degraded  # every call went to the cluster

    probe = cluster.client()
    try:
        lengths = {stream: probe.xlen(stream) for stream in SIXTEEN.streams()}
        assert not probe.exists(STREAM)
    finally:
        probe.close()
    assert sum(lengths.values()) == 32 * 2 + 32
    used = [stream for stream, length in lengths.items() if length]
    assert len(used) == 16
    assert {cluster.slot_owner(stream).port for stream in used} == cluster.master_ports()  # all 3 masters

    worker = PartitionedWorker(sync_redis(cluster.url), engine, keys=SIXTEEN, block_ms=10)
    assert worker.drain() == 96
    assert rows_per(db, Opening, Opening.pixel_id, [p.id for p in pixels]) == {p.id: 2 for p in pixels}
    assert rows_per(db, Click, Click.link_id, [link.id for link in links]) == {link.id: 1 for link in links}


def _events(count: int, base: int) -> list[Event]:
    return [Event("o", base + n, 0, 1, "", "10.0.0.1", "ua", new_event_id()) for n in range(count)]


def test_wait_replicas_on_a_cluster_acknowledges_after_the_replica_has_the_events(
    cluster: PrivateRedisCluster, engine: Engine
) -> None:
    """REDIS_WAIT_REPLICAS=1: every partition's script is followed by WAIT on the same node; the
    replicas have the events when the submits answer, so nothing goes to the fallback."""
    events = _events(48, 1000)

    async def run() -> tuple[list[bool], int]:
        client = async_redis(cluster.url)
        fallback = MemoryQueue(engine, window_seconds=60)
        queue = RedisQueue(client, fallback, window_seconds=60, keys=SIXTEEN, wait_replicas=1)
        answers = await asyncio.gather(*(queue.submit(e) for e in events + events[:5]))
        pending = fallback.pending
        await queue.close()
        await client.aclose()
        return list(answers), pending

    answers, fallen_back = asyncio.run(run())
    assert answers == [True] * 48 + [False] * 5
    assert fallen_back == 0
    for stream in SIXTEEN.streams():  # on the replica of the stream's master too
        master = cluster.slot_owner(stream)
        (replica,) = cluster.replicas_of(master)
        client = replica.client()
        try:
            client.execute_command("READONLY")
            partition = int(stream.split("{p")[1].split("}")[0])
            assert client.xlen(stream) == sum(1 for e in events if e.target_id % 16 == partition)
        finally:
            client.close()


def test_wait_replicas_without_a_replica_records_through_the_fallback_too(
    redis_url: str, redis_client: Any, engine: Engine
) -> None:
    """A plain Redis without replicas: WAIT times out (half the breaker's timeout), the events are in
    the stream and given to the fallback as well (so losing this Redis cannot lose them), the submits
    still answer True, and the breaker stays closed (a short WAIT is not a Redis failure)."""
    events = _events(6, 2000)
    before = metrics.REDIS_WAIT_SHORT._value.get()

    async def run() -> tuple[list[bool], int, bool]:
        client = async_redis(redis_url)
        fallback = MemoryQueue(engine, window_seconds=60)
        # WAIT 0.5 s: the call's other 0.5 s leave room for a busy machine (at 0.2 s, 0.1 s did
        # not always: the breaker opened in CI).
        breaker = CircuitBreaker(timeout=1.0, open_for=5)
        queue = RedisQueue(client, fallback, window_seconds=60, breaker=breaker, wait_replicas=1)
        started = time.monotonic()
        answers = await asyncio.gather(*(queue.submit(e) for e in events))
        assert time.monotonic() - started < 2.0
        pending = fallback.pending
        await queue.close()
        await client.aclose()
        return list(answers), pending, breaker.is_open

    answers, fallen_back, opened = asyncio.run(run())
    assert answers == [True] * 6
    assert fallen_back == 6
    assert not opened
    assert redis_client.xlen(STREAM) == 6
    assert metrics.REDIS_WAIT_SHORT._value.get() > before


def test_ship_enqueues_the_edge_log_on_a_cluster(cluster: PrivateRedisCluster, tmp_path: Path) -> None:
    """`pixeltrack ship` with the cluster client: one script call per partition, each in its slot;
    shipping the same log again records nothing more (same event ids, same dedupe keys)."""
    from tests.test_ship import line, shipper

    log = tmp_path / "pixels.log"
    log.write_text("".join(line(pixel) for pixel in range(1, 33)))
    client = sync_redis(cluster.url)
    try:
        totals = shipper(client, log, scheme=SIXTEEN).run(until_idle=True)
        assert (totals.lines, totals.recorded) == (32, 32)
        lengths = [client.xlen(stream) for stream in SIXTEEN.streams()]
        assert lengths == [2] * 16
        (tmp_path / ".state").unlink()  # forget the committed offset: the same lines again
        again = shipper(client, log, scheme=SIXTEEN).run(until_idle=True)
        assert again.recorded == 0
        assert sum(client.xlen(stream) for stream in SIXTEEN.streams()) == 32
    finally:
        client.close()
