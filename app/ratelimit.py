"""Rate limits, in Redis when configured (shared by every process), else in-process.

`hit(key, limit, window)` counts one event in a fixed window and answers how long to wait
when the limit is exceeded (None: allowed). Its Redis round trips are group-committed: a hit
made while none is in flight sends the counts (INCRBY per key, one pipeline) and decides on
the answer; hits made while one is in flight are decided at once on the last shared count plus
this process's own hits not yet in it, and go out together in the next round trip. Within one
process the count is exact; across processes it lags by at most one round trip (~1 ms). One
request alone costs one round trip, as before; under load, one round trip serves many
(measured: a Redis call per request took ~0.3 ms of the API's CPU, docs/benchmarks.md).

`reserve(key, limit, window)` takes one of `limit` slots atomically (one Lua script in
Redis; plain dict updates on the event loop in-process), the window starting with the
first slot taken. Failed-login throttling takes a slot before checking a password, so
however many attempts run in parallel, at most `limit` passwords are checked; `release`
gives a slot back (the attempt was not a failure) and `reset` clears the key (success).

Keys carry the caller's key as a hash tag (`pt:rl:{user:42}:<window>`, `pt:rl:{login:gina:10.0.0.1}`):
on a Redis Cluster one user's (one address's) counters live in one slot, and every command and
script names the one key it touches (KEYS), so each runs on the node that has it; the batch of
counts is a non-transactional pipeline, which the cluster client splits by node.

If Redis fails or is slow (on a cluster too: a master down, a slot moving, CLUSTERDOWN), the circuit breaker (app/breaker.py) skips it for a while and the
in-process counters take over: limits are then per process (fail open for the shared limit),
counted in `pixeltrack_rate_limit_unshared_total`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from app import metrics
from app.breaker import BreakerOpen, CircuitBreaker
from app.clients import AsyncRedis

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
        self,
        redis: AsyncRedis | None,
        *,
        prefix: str = "pt:rl:",
        breaker: CircuitBreaker | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._clock = clock  # wall time: the windows are the same in every process
        self._breaker = breaker or CircuitBreaker()
        self._prefix = prefix
        self._local: dict[str, tuple[int, float]] = {}  # key → (count, window end)
        # hit()'s group commit: full key → hits not sent yet / being sent / count last known.
        self._pending: dict[str, int] = {}
        self._sending: dict[str, int] = {}
        self._known: dict[str, int] = {}
        self._expiry: dict[str, int] = {}  # full key → seconds it lives in Redis
        self._flushing = False
        self._drain: asyncio.Task[None] | None = None

    def _window(self, window: int) -> tuple[int, float]:
        now = self._clock()
        bucket = int(now // window)
        return bucket, (bucket + 1) * window - now

    async def hit(self, key: str, limit: int, window: int) -> float | None:
        bucket, remaining = self._window(window)
        full = f"{self._prefix}{{{key}}}:{bucket}"
        if self._redis is None:
            count = self._add_locally(full, 1, window + 1)
            return remaining if count > limit else None
        self._expiry[full] = window + 1
        self._pending[full] = self._pending.get(full, 0) + 1
        if self._flushing:  # a round trip is in flight: this hit's place is known at once
            count = self._known.get(full, 0) + self._sending.get(full, 0) + self._pending[full]
            return remaining if count > limit else None
        self._flushing = True
        try:
            await self._send()  # this hit is the last of the batch: its place is the count returned
        finally:
            if self._pending:
                self._drain = asyncio.create_task(self._send_rest())  # hits made meanwhile
            else:
                self._flushing = False
        count = self._known.get(full, 0)
        return remaining if count > limit else None

    async def _send(self) -> None:
        """One round trip with every pending hit (the shared counts come back), or count them in
        process when Redis fails or the breaker is open (per-process limits: fail open)."""
        batch, self._pending = self._pending, {}
        self._sending = batch
        redis = self._redis
        assert redis is not None

        async def shared() -> list[int]:
            pipe = redis.pipeline(transaction=False)
            for full, amount in batch.items():
                pipe.incrby(full, amount)
                pipe.expire(full, self._expiry.get(full, 61))
            replies = await pipe.execute()
            return [int(count) for count in replies[::2]]

        if len(self._known) > 100_000:  # keys of past windows: Redis has expired them
            self._known.clear()
            self._expiry = {full: self._expiry[full] for full in batch}
        try:
            counts = await self._breaker.call(shared)
        except BreakerOpen:
            metrics.RATE_LIMIT_UNSHARED.labels("breaker_open").inc(sum(batch.values()))
            counts = self._count_locally(batch)
        except Exception:  # noqa: BLE001 - any Redis failure (the breaker logs it): count in process
            metrics.RATE_LIMIT_UNSHARED.labels("redis_error").inc(sum(batch.values()))
            counts = self._count_locally(batch)
        finally:
            self._sending = {}
        self._known.update(zip(batch, counts, strict=True))

    def _count_locally(self, batch: dict[str, int]) -> list[int]:
        return [self._add_locally(full, amount, self._expiry.get(full, 61)) for full, amount in batch.items()]

    def _add_locally(self, full: str, amount: int, lifetime: int) -> int:
        now = self._clock()
        if len(self._local) > 100_000:
            self._local = {k: v for k, v in self._local.items() if v[1] > now}
        count, ends = self._local.get(full, (0, now + lifetime))
        self._local[full] = (count + amount, ends)
        return count + amount

    async def _send_rest(self) -> None:
        """Send what was hit while a round trip was in flight, until nothing is left."""
        try:
            while self._pending:
                await self._send()
        except Exception:
            log.exception("rate limit counts not sent")
        finally:
            self._flushing = False
            self._drain = None

    async def reserve(self, key: str, limit: int, window: int) -> float | None:
        """Take a slot: None when one of `limit` was free, else the seconds until the window ends."""
        full = f"{self._prefix}{{{key}}}"
        if self._redis is not None:
            redis = self._redis
            try:
                count, ttl = await self._breaker.call(lambda: redis.eval(_RESERVE, 1, full, window))
                return max(1.0, float(ttl)) if int(count) > limit else None
            except BreakerOpen:
                metrics.RATE_LIMIT_UNSHARED.labels("breaker_open").inc()
            except Exception:  # noqa: BLE001 - any Redis failure (the breaker logs it): count in process
                metrics.RATE_LIMIT_UNSHARED.labels("redis_error").inc()
        now = self._clock()
        if len(self._local) > 100_000:
            self._local = {k: v for k, v in self._local.items() if v[1] > now}
        count, ends = self._local.get(full, (0, now + window))
        if ends <= now:
            count, ends = 0, now + window
        self._local[full] = (count + 1, ends)
        return max(1.0, ends - now) if count + 1 > limit else None

    async def release(self, key: str) -> None:
        """Give back a slot taken by `reserve` (the attempt turned out not to count)."""
        full = f"{self._prefix}{{{key}}}"
        if full in self._local:
            count, ends = self._local[full]
            self._local[full] = (max(0, count - 1), ends)
        if self._redis is not None:
            redis = self._redis
            with contextlib.suppress(Exception):  # BreakerOpen, Redis errors: the slot expires anyway
                await self._breaker.call(lambda: redis.eval(_RELEASE, 1, full))

    async def reset(self, key: str) -> None:
        """Forget a key taken with `reserve` (a successful login)."""
        full = f"{self._prefix}{{{key}}}"
        self._local.pop(full, None)
        if self._redis is not None:
            with contextlib.suppress(Exception):  # BreakerOpen, Redis errors: the key expires anyway
                await self._breaker.call(lambda: self._redis.delete(full))  # type: ignore[union-attr]
