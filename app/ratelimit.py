"""Rate limits, in Redis when configured (shared by every process), else in-process.

`hit(key, limit, window)` counts one event in a fixed window and answers how long to wait
when the limit is exceeded (None: allowed).

`reserve(key, limit, window)` takes one of `limit` slots atomically (one Lua script in
Redis; plain dict updates on the event loop in-process), the window starting with the
first slot taken. Failed-login throttling takes a slot before checking a password, so
however many attempts run in parallel, at most `limit` passwords are checked; `release`
gives a slot back (the attempt was not a failure) and `reset` clears the key (success).

If Redis fails or is slow, the circuit breaker (app/breaker.py) skips it for a while and the
in-process counters take over: limits are then per process (fail open for the shared limit),
counted in `pixeltrack_rate_limit_unshared_total`.
"""

from __future__ import annotations

import contextlib
import logging
import time

import redis.asyncio as aioredis

from app import metrics
from app.breaker import BreakerOpen, CircuitBreaker

log = logging.getLogger("pixeltrack.ratelimit")

# KEYS[1]: the counter; ARGV[1]: window (s). Returns {count after taking a slot, seconds left}.
_RESERVE = """
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""
_RELEASE = """
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count > 0 then redis.call('DECR', KEYS[1]) end
return count
"""


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

    async def reserve(self, key: str, limit: int, window: int) -> float | None:
        """Take a slot: None when one of `limit` was free, else the seconds until the window ends."""
        full = f"{self._prefix}{key}"
        if self._redis is not None:
            redis = self._redis
            try:
                count, ttl = await self._breaker.call(lambda: redis.eval(_RESERVE, 1, full, window))
                return max(1.0, float(ttl)) if int(count) > limit else None
            except BreakerOpen:
                metrics.RATE_LIMIT_UNSHARED.labels("breaker_open").inc()
            except Exception:  # noqa: BLE001 - any Redis failure (the breaker logs it): count in process
                metrics.RATE_LIMIT_UNSHARED.labels("redis_error").inc()
        now = time.time()
        if len(self._local) > 100_000:
            self._local = {k: v for k, v in self._local.items() if v[1] > now}
        count, ends = self._local.get(full, (0, now + window))
        if ends <= now:
            count, ends = 0, now + window
        self._local[full] = (count + 1, ends)
        return max(1.0, ends - now) if count + 1 > limit else None

    async def release(self, key: str) -> None:
        """Give back a slot taken by `reserve` (the attempt turned out not to count)."""
        full = f"{self._prefix}{key}"
        if full in self._local:
            count, ends = self._local[full]
            self._local[full] = (max(0, count - 1), ends)
        if self._redis is not None:
            redis = self._redis
            with contextlib.suppress(Exception):  # BreakerOpen, Redis errors: the slot expires anyway
                await self._breaker.call(lambda: redis.eval(_RELEASE, 1, full))

    async def reset(self, key: str) -> None:
        """Forget a key taken with `reserve` (a successful login)."""
        full = f"{self._prefix}{key}"
        self._local.pop(full, None)
        if self._redis is not None:
            with contextlib.suppress(Exception):  # BreakerOpen, Redis errors: the key expires anyway
                await self._breaker.call(lambda: self._redis.delete(full))  # type: ignore[union-attr]
