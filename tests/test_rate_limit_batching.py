"""The per-user rate limit's Redis round trips are group-committed (app/ratelimit.py `hit`):
exact within a process, shared between processes, one round trip for many concurrent requests."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from app.breaker import CircuitBreaker
from app.clients import async_redis, sync_redis
from app.ratelimit import RateLimiter
from tests.support.clock import mid_minute


def _counting(client: Any) -> list[int]:
    """Count the pipelines (round trips) a redis client sends."""
    sent: list[int] = []
    make = client.pipeline

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        sent.append(1)
        return make(*args, **kwargs)

    client.pipeline = pipeline
    return sent


def test_concurrent_hits_allow_exactly_the_limit_in_fewer_round_trips(redis_url: str, redis_client: Any) -> None:
    async def run() -> tuple[list[float | None], int]:
        client = async_redis(redis_url)
        sent = _counting(client)
        limiter = RateLimiter(client, breaker=CircuitBreaker(), clock=mid_minute)
        try:
            answers = await asyncio.gather(*(limiter.hit("user:1", 20, 60) for _ in range(60)))
            await asyncio.sleep(0)
            while limiter._drain is not None:  # the hits made meanwhile go out too
                await limiter._drain
        finally:
            await client.aclose()
        return list(answers), len(sent)

    answers, round_trips = asyncio.run(run())
    assert sum(answer is None for answer in answers) == 20
    assert all(answer is not None and 0 < answer <= 60 for answer in answers[20:])
    assert round_trips < 10, round_trips  # 60 hits, a handful of round trips
    (key,) = redis_client.keys("pt:rl:{user:1}:*")
    assert int(redis_client.get(key)) == 60  # every hit counted in the shared count
    assert 0 < redis_client.ttl(key) <= 61


def test_the_limit_is_shared_between_processes(redis_url: str, redis_client: Any) -> None:
    async def run() -> list[bool]:
        clients = [async_redis(redis_url), async_redis(redis_url)]
        one, two = (RateLimiter(c, breaker=CircuitBreaker(), clock=mid_minute) for c in clients)
        allowed = []
        try:
            for n in range(10):
                limiter = one if n % 2 else two
                allowed.append(await limiter.hit("user:7", 6, 60) is None)
        finally:
            for c in clients:
                await c.aclose()
        return allowed

    assert asyncio.run(run()) == [True] * 6 + [False] * 4


def test_without_redis_each_process_counts_alone(redis_url: str) -> None:
    async def run() -> list[bool]:
        limiter = RateLimiter(None, clock=mid_minute)
        return [await limiter.hit("user:3", 3, 60) is None for _ in range(5)]

    assert asyncio.run(run()) == [True, True, True, False, False]


def test_a_redis_that_fails_falls_back_to_counting_in_process(redis_url: str) -> None:
    async def run() -> tuple[list[bool], bool]:
        client = async_redis("redis://127.0.0.1:1/0")  # nothing listens there
        breaker = CircuitBreaker(timeout=0.5, open_for=60)
        limiter = RateLimiter(client, breaker=breaker, clock=mid_minute)
        try:
            allowed = [await limiter.hit("user:9", 2, 60) is None for _ in range(4)]
        finally:
            await client.aclose()
        return allowed, breaker.is_open

    allowed, opened = asyncio.run(run())
    assert allowed == [True, True, False, False]
    assert opened


def test_sequential_hits_each_see_the_shared_count(redis_url: str) -> None:
    """One request at a time (no concurrency): every hit is its own round trip, as before."""
    probe = sync_redis(redis_url)

    async def run() -> list[int]:
        client = async_redis(redis_url)
        limiter = RateLimiter(client, breaker=CircuitBreaker(), clock=mid_minute)
        counts = []
        try:
            for _ in range(3):
                await limiter.hit("user:11", 100, 60)
                (key,) = probe.keys("pt:rl:{user:11}:*")
                counts.append(int(cast(bytes, probe.get(key))))
        finally:
            await client.aclose()
        return counts

    try:
        assert asyncio.run(run()) == [1, 2, 3]
    finally:
        probe.delete(*(probe.keys("pt:rl:{user:11}:*") or ["none"]))
        probe.close()
