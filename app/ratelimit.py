"""Fixed-window rate limits, in Redis when configured (shared by every process), else in-process.

`hit(key, limit, window)` counts one event and answers how long to wait when the limit
is exceeded (None: allowed). `peek` reads a count without adding to it (failed-login
throttling counts failures only). If Redis fails or is slow, the circuit breaker
(app/breaker.py) skips it for a while and the in-process counters take over: limits are
then per process (fail open for the shared limit), counted in
`pixeltrack_rate_limit_unshared_total`.
"""

from __future__ import annotations

import contextlib
import logging
import time

import redis.asyncio as aioredis

from app import metrics
from app.breaker import BreakerOpen, CircuitBreaker

log = logging.getLogger("pixeltrack.ratelimit")


class RateLimiter:
    def __init__(
        self, redis: aioredis.Redis | None, *, prefix: str = "pt:rl:", breaker: CircuitBreaker | None = None
    ) -> None:
        self._redis = redis
        self._breaker = breaker or CircuitBreaker()
        self._prefix = prefix
        self._local: dict[str, tuple[int, float]] = {}  # key → (count, window end)

    def _window(self, window: int) -> tuple[int, float]:
        now = time.time()
        bucket = int(now // window)
        return bucket, (bucket + 1) * window - now

    async def _incr(self, key: str, window: int, amount: int) -> tuple[int, float]:
        bucket, remaining = self._window(window)
        full = f"{self._prefix}{key}:{bucket}"
        if self._redis is not None:
            redis = self._redis

            async def shared() -> int:
                pipe = redis.pipeline(transaction=False)
                pipe.incrby(full, amount)
                pipe.expire(full, window + 1)
                count, _ = await pipe.execute()
                return int(count)

            try:
                return await self._breaker.call(shared), remaining
            except BreakerOpen:
                metrics.RATE_LIMIT_UNSHARED.labels("breaker_open").inc()
            except Exception:  # noqa: BLE001 - any Redis failure (the breaker logs it): count in process
                metrics.RATE_LIMIT_UNSHARED.labels("redis_error").inc()
        if len(self._local) > 100_000:
            now = time.time()
            self._local = {k: v for k, v in self._local.items() if v[1] > now}
        count, ends = self._local.get(full, (0, time.time() + remaining))
        self._local[full] = (count + amount, ends)
        return count + amount, remaining

    async def hit(self, key: str, limit: int, window: int) -> float | None:
        count, remaining = await self._incr(key, window, 1)
        return remaining if count > limit else None

    async def peek(self, key: str, limit: int, window: int) -> float | None:
        count, remaining = await self._incr(key, window, 0)
        return remaining if count >= limit else None

    async def reset(self, key: str, window: int) -> None:
        bucket, _ = self._window(window)
        full = f"{self._prefix}{key}:{bucket}"
        self._local.pop(full, None)
        if self._redis is not None:
            with contextlib.suppress(Exception):  # BreakerOpen, Redis errors: the key expires anyway
                await self._breaker.call(lambda: self._redis.delete(full))  # type: ignore[union-attr]
