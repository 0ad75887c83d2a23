"""A circuit breaker for the API's Redis calls (event queue, rate limiter, login throttle, /readyz).

A hung Redis (stopped, partitioned) would make every request wait for the socket timeout.
Instead each call is bounded by `timeout`; a call that fails or exceeds it opens the breaker
for `open_for` seconds, during which callers skip Redis at once and take their fallback
(pixels: the in-process queue; rate limits: per-process counters). Then one call is let
through as a trial: success closes the breaker, failure opens it again.

One breaker per process and Redis client, shared by its users: the first to notice spares
the others. asyncio only (one event loop, no locks needed).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from app import metrics

log = logging.getLogger("pixeltrack.redis")

T = TypeVar("T")


class BreakerOpen(Exception):
    """Redis is being skipped: take the fallback."""


class CircuitBreaker:
    def __init__(
        self,
        *,
        timeout: float = 0.5,
        open_for: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout = timeout
        self.open_for = open_for
        self._clock = clock
        self._open_until = 0.0  # 0: closed
        self._trial = False  # half-open: one call in flight decides

    @property
    def is_open(self) -> bool:
        """True while callers should skip Redis (no side effect)."""
        if not self._open_until:
            return False
        return self._trial or self._clock() < self._open_until

    async def call(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run `make()` within `timeout`; raises BreakerOpen without calling it while open."""
        trial = False
        if self._open_until:
            if self._trial or self._clock() < self._open_until:
                raise BreakerOpen
            self._trial = trial = True
        try:
            async with asyncio.timeout(self.timeout):
                result = await make()
        except asyncio.CancelledError:
            raise  # the caller went away: says nothing about Redis
        except Exception as exc:
            self._trip(exc)
            raise
        finally:
            if trial:
                self._trial = False
        self._close()
        return result

    def _trip(self, exc: Exception) -> None:
        was_open = bool(self._open_until)
        self._open_until = self._clock() + self.open_for
        metrics.DEPENDENCY_ERRORS.labels("redis", "api").inc()
        if not was_open:
            metrics.REDIS_BREAKER_OPEN.set(1)
            reason = "too slow" if isinstance(exc, TimeoutError) else exc.__class__.__name__
            log.warning("Redis call failed (%s): skipping Redis for %.1fs at a time", reason, self.open_for)

    def _close(self) -> None:
        if self._open_until:
            self._open_until = 0.0
            metrics.REDIS_BREAKER_OPEN.set(0)
            log.warning("Redis answers again: breaker closed")
