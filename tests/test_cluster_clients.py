"""Redis Cluster clients (app/clients.py) and the API's Redis users on a real cluster (3 masters + 3
replicas, tests/support/redis_cluster.py): the rate limiter's counts and slots, the change feeds
between two API processes, /readyz. The event queue and the worker on a cluster, and failover:
tests/test_cluster_failover.py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.breaker import CircuitBreaker
from app.changefeed import ChangeFeed
from app.clients import async_redis, cluster_url, is_cluster, sync_redis
from app.main import create_asgi
from app.models import User
from app.ratelimit import RateLimiter
from app.settings import Settings, StartupError
from tests import factories
from tests.support.clock import mid_minute
from tests.support.processes import wait_until
from tests.support.redis_cluster import PrivateRedisCluster

# What needs no server.


@pytest.mark.parametrize(
    ("url", "flag", "expected"),
    [
        ("redis+cluster://a:7000", False, True),
        ("rediss+cluster://a:7000", False, True),
        ("redis://a:7000/0", True, True),
        ("redis://a:7000/0", False, False),
        (None, True, False),
    ],
)
def test_a_cluster_is_named_by_the_scheme_or_the_flag(url: str | None, flag: bool, expected: bool) -> None:
    assert is_cluster(url, flag) is expected


def test_a_cluster_url_names_its_nodes_and_keeps_credentials_and_tls() -> None:
    assert cluster_url("redis+cluster://:s%40cret@h1:7000,h2:7001,[::1]:7002/0") == (
        "redis://:s%40cret@h1:7000/0",
        [("h2", 7001), ("::1", 7002)],
    )
    assert cluster_url("rediss+cluster://h1:7000?ssl_cert_reqs=required") == (
        "rediss://h1:7000?ssl_cert_reqs=required",
        [],
    )


@pytest.mark.parametrize(
    ("url", "flag"),
    [
        ("redis+cluster://:pw-secret@h1:7000/2", False),  # a cluster has database 0 only
        ("redis://:pw-secret@h1:7000/1", True),
        ("unix:///run/redis.sock", True),
        ("redis+cluster://h1:notaport", False),
    ],
)
def test_a_bad_cluster_url_stops_startup_without_echoing_it(url: str, flag: bool) -> None:
    with pytest.raises(StartupError) as raised:
        Settings(_env_file=None, redis_url=url, redis_cluster=flag)
    assert "pw-secret" not in str(raised.value)
    assert "REDIS_URL" in str(raised.value) or "database 0" in str(raised.value)


@pytest.mark.parametrize("url", ["redis+cluster://h1:7000,h2:7000", "redis+cluster://h1:7000/0", "redis://h:1/3"])
def test_good_urls_are_accepted(url: str) -> None:
    assert Settings(_env_file=None, redis_url=url).redis_dsn == url


# On the real cluster.


@pytest.fixture
def cluster(redis_cluster: PrivateRedisCluster) -> Iterator[PrivateRedisCluster]:
    redis_cluster.flush()  # our own cluster (tests/conftest.py)
    yield redis_cluster
    redis_cluster.flush()


@pytest.mark.processes
def test_the_clients_are_cluster_clients_for_a_cluster_url(cluster: PrivateRedisCluster) -> None:
    sync = sync_redis(cluster.url)
    try:
        assert isinstance(sync, redis.RedisCluster)
        sync.set("pt:{p5}:probe", "1")
        assert sync.get("pt:{p5}:probe") == "1"
    finally:
        sync.close()

    async def run() -> None:
        client = async_redis(cluster.plain_url, cluster=True)  # REDIS_CLUSTER=true with a redis:// URL
        try:
            assert isinstance(client, aioredis.RedisCluster)
            assert await client.get("pt:{p5}:probe") == "1"
        finally:
            await client.aclose()

    asyncio.run(run())


@pytest.mark.processes
def test_the_rate_limit_is_shared_between_processes_on_a_cluster(cluster: PrivateRedisCluster) -> None:
    users = [f"user:{n}" for n in range(12)]  # their tags land on all three masters

    async def run() -> dict[str, list[bool]]:
        clients = [async_redis(cluster.url), async_redis(cluster.url)]
        one, two = (RateLimiter(c, breaker=CircuitBreaker(), clock=mid_minute) for c in clients)
        allowed: dict[str, list[bool]] = {user: [] for user in users}
        try:
            for n in range(8):
                limiter = one if n % 2 else two
                for user in users:  # one at a time: each hit sees the other process's count
                    allowed[user].append(await limiter.hit(user, 5, 60) is None)
        finally:
            for c in clients:
                await c.aclose()
        return allowed

    allowed = asyncio.run(run())
    assert all(answers == [True] * 5 + [False] * 3 for answers in allowed.values()), allowed
    probe = cluster.client()
    try:
        keys = list(probe.scan_iter(match="pt:rl:*", target_nodes=redis.RedisCluster.PRIMARIES))
        assert sorted(k.rsplit(":", 1)[0] for k in keys) == sorted(f"pt:rl:{{{user}}}" for user in users)
        assert {cluster.slot_owner(k).port for k in keys} == cluster.master_ports()  # spread over the masters
        assert all(int(str(probe.get(k))) == 8 for k in keys)
    finally:
        probe.close()


@pytest.mark.processes
def test_login_slots_are_taken_and_given_back_on_a_cluster(cluster: PrivateRedisCluster) -> None:
    async def run() -> tuple[list[bool], int, int]:
        client = async_redis(cluster.url)
        limiter = RateLimiter(client, breaker=CircuitBreaker())
        try:
            taken = [await limiter.reserve("login:gina:10.0.0.1", 3, 60) is None for _ in range(4)]
            await limiter.release("login:gina:10.0.0.1")
            after_release = int(str(await client.get("pt:rl:{login:gina:10.0.0.1}")))
            await limiter.reset("login:gina:10.0.0.1")
            after_reset = await client.exists("pt:rl:{login:gina:10.0.0.1}")
        finally:
            await client.aclose()
        return taken, after_release, after_reset

    taken, after_release, after_reset = asyncio.run(run())
    assert taken == [True, True, True, False]
    assert after_release == 3
    assert after_reset == 0


@pytest.mark.processes
def test_a_change_published_by_one_process_reaches_the_others_on_a_cluster(cluster: PrivateRedisCluster) -> None:
    async def run() -> list[str]:
        clients = [async_redis(cluster.url) for _ in range(3)]
        received: list[str] = []
        feeds = [
            ChangeFeed(c, "pt:test:changed", on_message=received.append, on_resubscribe=lambda: None, ttl=10)
            for c in clients
        ]
        try:
            for feed in feeds:
                await feed.start()
            await feeds[0].publish("42")
            async with asyncio.timeout(5):
                while len(received) < 3:  # each process, the publisher's too, hears it once
                    await asyncio.sleep(0.01)
        finally:
            for feed in feeds:
                await feed.close()
            for c in clients:
                await c.aclose()
        return received

    assert asyncio.run(run()) == ["42", "42", "42"]


@pytest.fixture
def two_cluster_processes(settings: Settings, cluster: PrivateRedisCluster) -> Iterator[tuple[TestClient, TestClient]]:
    on_cluster = settings.model_copy(update={"redis_url": cluster.url})
    with TestClient(create_asgi(on_cluster)) as first, TestClient(create_asgi(on_cluster)) as second:
        yield first, second


@pytest.mark.processes
def test_api_processes_on_a_cluster_are_ready_and_share_link_edits(
    two_cluster_processes: tuple[TestClient, TestClient], db: Session, user: User, headers: dict[str, str]
) -> None:
    first, second = two_cluster_processes
    ready = first.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["redis"] == "ok"
    tree = factories.make_tree(db, user)
    link = factories.make_link(db, tree["campaign"], url="https://example.com/old")
    answer = first.get(f"/api/v1/links/{link.id}/url", params={"contact_id": tree["contact"].id}, headers=headers)
    url: str = answer.json()["url"]
    path = url[url.index("/c/") :]

    def location(client: TestClient) -> Any:
        return client.get(path, follow_redirects=False).headers.get("location")

    assert location(second) == "https://example.com/old"  # cached in the second process
    edited = first.patch(f"/api/v1/links/{link.id}", json={"url": "https://example.com/new"}, headers=headers)
    assert edited.status_code == 200, edited.text
    wait_until(lambda: location(second) == "https://example.com/new", "the edit to reach the other process", timeout=3)
