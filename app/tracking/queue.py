"""The event queue behind the pixel and click endpoints: dedupe + enqueue, group-committed.

`RedisQueue` (production): concurrent requests share one round trip per partition. Each
request appends its event and awaits; one flush at a time splits the whole pending batch by
partition (`KeyScheme.partition`, app/tracking/events.py: `id % STREAM_PARTITIONS`) and sends
one EVALSHA of `DEDUPE_AND_ADD` per partition touched, concurrently (per event: `SET key NX EX
window`, and only if that set it, `XADD` to the partition's stream; every key of a call shares
the partition's hash tag, so it runs on Redis Cluster). Every request answers after Redis has
replied for its event (durable ack); a partition whose call fails records its events through
the fallback, the others are unaffected. With one partition it is one EVALSHA per batch, as
before partitioning. The worker (app/tracking/worker.py) moves the streams into the database.

`MemoryQueue` (embedded default, and the fallback while Redis is unreachable): a
TTL dedupe map and a list flushed in batches to the database by a background task
through the same insert path (app/tracking/ingest.py); flushed on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import Protocol

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from app import metrics
from app.breaker import BreakerOpen, CircuitBreaker
from app.clients import AsyncRedis
from app.errors import describe_db_error
from app.tracking.click_rules import DEFAULT_RULES, ClickRules
from app.tracking.events import DEFAULT_KEYS, GROUP, RECORD_SEP, STREAM, KeyScheme, Tracked
from app.tracking.ingest import IngestResult, store_events
from app.tracking.replication import ReplicatedScript

log = logging.getLogger("pixeltrack.queue")

MAX_BACKOFF = 10.0  # seconds between the in-process flusher's retries while the database fails
__all__ = ["DEDUPE_AND_ADD", "GROUP", "STREAM", "EventQueue", "MemoryQueue", "RedisQueue"]

# KEYS[1]: the partition's stream; KEYS[1 + i]: the dedupe key of the batch's i-th event (computed in
# Python by app/tracking/events.KeyScheme: every key a script touches is in KEYS and all of them share
# the partition's hash tag, as Redis Cluster requires).
# ARGV[1]: dedupe window (s); ARGV[2]: the batch, encoded events joined by "\30" (one argument: a batch
# of hundreds costs one cheap command to send). Per event: `SET key NX EX window`, and only if that
# set it, `XADD`. Returns one 1 (recorded) or 0 (duplicate) per event.
DEDUPE_AND_ADD = r"""
local window = tonumber(ARGV[1])
local out = {}
local i = 1
for event in string.gmatch(ARGV[2], '[^\30]+') do
  i = i + 1
  local fresh = true
  if window > 0 then
    fresh = redis.call('SET', KEYS[i], '1', 'NX', 'EX', window)
  end
  if fresh then
    redis.call('XADD', KEYS[1], '*', 'e', event)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
"""


class EventQueue(Protocol):
    async def submit(self, event: Tracked) -> bool:
        """Record the event unless it is a duplicate within the window; True if recorded."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class MemoryQueue:
    """In-process dedupe and queue, flushed to the database in batches."""

    def __init__(
        self,
        engine: Engine,
        *,
        window_seconds: int,
        flush_interval: float = 0.2,
        max_batch: int = 2000,
        clock: Callable[[], float] = time.monotonic,
        click_rules: ClickRules = DEFAULT_RULES,
    ) -> None:
        self._engine = engine
        self._window = window_seconds
        self._click_rules = click_rules
        self._interval = flush_interval
        self._max_batch = max_batch
        self._clock = clock
        self._seen: dict[str, float] = {}
        self._pending: list[tuple[str, Tracked]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._last_sweep = clock()
        self._backoff = 0.0
        self._retry_at = 0.0  # while the database fails, the background flusher waits until then
        self.db_down = False
        self.totals = IngestResult()

    def offer(self, event: Tracked) -> bool:
        """Dedupe and enqueue synchronously (no await): True if it will be recorded."""
        now = self._clock()
        if self._window > 0:
            key = event.dedupe_key
            expires = self._seen.get(key)
            if expires is not None and expires > now:
                return False
            self._seen[key] = now + self._window
            if now - self._last_sweep > 60:
                self._sweep(now)
        self._pending.append((uuid.uuid4().hex, event))
        if len(self._pending) >= self._max_batch and not self.db_down:
            self._wake.set()
        return True

    async def submit(self, event: Tracked) -> bool:
        return self.offer(event)

    def _sweep(self, now: float) -> None:
        self._seen = {k: v for k, v in self._seen.items() if v > now}
        self._last_sweep = now

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self) -> IngestResult:
        """Write everything pending now (tests and shutdown call this explicitly)."""
        async with self._lock:
            result = IngestResult()
            while self._pending:
                batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
                try:
                    result += await asyncio.to_thread(store_events, self._engine, batch, rules=self._click_rules)
                except Exception as exc:  # noqa: BLE001 - whatever failed, keep the events
                    # Keep the events (the database may be briefly unavailable) and retry later.
                    self._pending[:0] = batch
                    self._failed(exc)
                    break
            else:
                self._recovered()
            self.totals += result
            metrics.MEMORY_QUEUE.set(len(self._pending))
            return result

    def _failed(self, exc: Exception) -> None:
        """Back off (doubling up to MAX_BACKOFF) and log once per outage: the error class and
        driver code only, never the SQL, its parameters or the events (IPs, user agents)."""
        self._backoff = min(MAX_BACKOFF, max(self._interval, 0.5, self._backoff * 2))
        self._retry_at = time.monotonic() + self._backoff
        metrics.DEPENDENCY_ERRORS.labels("database", "flusher").inc()
        if self.db_down:
            return
        self.db_down = True
        if isinstance(exc, SQLAlchemyError):
            log.error(
                "database unavailable (%s): %d tracking events kept in memory, retrying with backoff",
                describe_db_error(exc),
                len(self._pending),
            )
        else:  # not an outage: a bug, show where (once per failure streak)
            log.error("could not write tracking events; retrying with backoff", exc_info=exc)

    def _recovered(self) -> None:
        self._backoff = 0.0
        self._retry_at = 0.0
        if self.db_down:
            self.db_down = False
            log.warning("database available again: tracking events written")

    async def _run(self) -> None:
        while True:
            wait = max(self._interval, self._retry_at - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
            self._wake.clear()
            if self._pending and time.monotonic() >= self._retry_at:
                await self.flush()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="pixeltrack-memory-flusher")

    async def close(self) -> None:
        if self._task is not None:
            # Never cancel a batch being written: its thread would go on after the cancel, and
            # uvicorn re-raises SIGTERM as soon as the lifespan returns, killing the process
            # (and that transaction). Wait for the flush in progress, then stop the flusher.
            async with self._lock:
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()


class RedisQueue:
    """Redis dedupe + stream with group commit; falls back to a MemoryQueue if Redis fails."""

    def __init__(
        self,
        redis: AsyncRedis,
        fallback: MemoryQueue,
        *,
        window_seconds: int,
        keys: KeyScheme = DEFAULT_KEYS,
        breaker: CircuitBreaker | None = None,
        on_degraded: Callable[[bool], None] | None = None,
        wait_replicas: int = 0,
    ) -> None:
        self._redis = redis
        self._fallback = fallback
        self._window = window_seconds
        self._keys = keys
        # A failed or slow round trip opens it: loads then go to the fallback at once.
        self._breaker = breaker or CircuitBreaker()
        self._on_degraded = on_degraded
        self._pending: list[tuple[Tracked, asyncio.Future[bool]]] = []
        self._flush_task: asyncio.Task[None] | None = None
        self._script = redis.register_script(DEDUPE_AND_ADD)
        # REDIS_WAIT_REPLICAS: the script then WAIT on one connection (app/tracking/replication.py),
        # within half the breaker's timeout, so a slow replica never trips the breaker.
        self._replicated = (
            ReplicatedScript(redis, DEDUPE_AND_ADD, replicas=wait_replicas, timeout_ms=int(self._breaker.timeout * 500))
            if wait_replicas
            else None
        )
        self.degraded = False

    async def start(self) -> None:
        await self._fallback.start()

    async def close(self) -> None:
        if self._flush_task is not None:
            await self._flush_task  # answers the requests already waiting
        if self._replicated is not None:
            await self._replicated.aclose()
        await self._fallback.close()

    async def submit(self, event: Tracked) -> bool:
        if self._breaker.is_open:
            if not self.degraded:  # another user of the breaker (rate limiter) saw Redis fail first
                self._set_degraded(True, None)
            return self._fallback.offer(event)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((event, future))
        if self._flush_task is None:
            # Starts on the next loop turn: requests read in this turn join the same batch.
            self._flush_task = asyncio.create_task(self._flush_loop())
        return await future

    async def _flush_loop(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                await self._flush(batch)
        finally:
            self._flush_task = None

    async def _flush(self, batch: list[tuple[Tracked, asyncio.Future[bool]]]) -> None:
        if self._keys.partitions == 1:  # the common case: one call, no grouping
            await self._send(0, batch)
            return
        parts: dict[int, list[tuple[Tracked, asyncio.Future[bool]]]] = {}
        partition = self._keys.partition
        for item in batch:
            parts.setdefault(partition(item[0]), []).append(item)
        await asyncio.gather(*(self._send(p, items) for p, items in parts.items()))

    async def _send(self, partition: int, batch: list[tuple[Tracked, asyncio.Future[bool]]]) -> None:
        """One EVALSHA for the batch's events of one partition; never raises (a failure falls back)."""
        joined = RECORD_SEP.join(event.encode() for event, _ in batch)
        scheme = self._keys
        if scheme.tagged:
            keys = [scheme.stream(partition), *(scheme.dedupe(event, partition) for event, _ in batch)]
        else:
            keys = [STREAM, *(event.dedupe_key for event, _ in batch)]
        try:
            if self._replicated is None:
                answers = await self._breaker.call(lambda: self._script(keys=keys, args=[self._window, joined]))
            else:
                answers = await self._send_replicated(keys, [self._window, joined], batch)
        except Exception as exc:  # noqa: BLE001
            # Not only RedisError: when Redis dies mid-connect, redis-py lets uvloop's RuntimeError
            # ("the handler is closed") through. Any failure must fall back, never leave requests waiting.
            self._set_degraded(True, exc)
            for event, future in batch:
                if not future.done():
                    future.set_result(self._fallback.offer(event))
            return
        if self.degraded:
            self._set_degraded(False, None)
        for (_, future), answer in zip(batch, answers, strict=True):
            if not future.done():
                future.set_result(bool(answer))

    async def _send_replicated(
        self, keys: list[str], args: list[object], batch: list[tuple[Tracked, asyncio.Future[bool]]]
    ) -> list[int]:
        """The script, then WAIT. Events the script recorded but fewer replicas than asked have
        (the WAIT timed out: a replica down or behind) are recorded through the fallback too, so
        losing the master cannot lose them; the unique event id keeps one row."""
        replicated = self._replicated
        assert replicated is not None
        answers, acked = await self._breaker.call(lambda: replicated.run(keys, args))
        if acked < replicated.replicas:
            metrics.REDIS_WAIT_SHORT.inc()
            for (event, _), answer in zip(batch, answers, strict=True):
                if answer:
                    self._fallback.offer(event)
        return list(answers)

    def _set_degraded(self, degraded: bool, exc: Exception | None) -> None:
        if degraded:
            if not self.degraded:
                reason = "breaker open" if exc is None or isinstance(exc, BreakerOpen) else exc.__class__.__name__
                log.error("Redis unavailable (%s): recording directly to the database, dedupe per process", reason)
        else:
            log.warning("Redis is back: tracking events go to the stream again")
        self.degraded = degraded
        if self._on_degraded is not None:
            self._on_degraded(degraded)
