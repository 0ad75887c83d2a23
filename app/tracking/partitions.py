"""Partitioned event streams: the key scheme of an install, and the worker that consumes partitions.

`key_scheme(settings)`: STREAM_PARTITIONS, and REDIS_CLUSTER or a `redis+cluster://` REDIS_URL
(app/tracking/events.KeyScheme names the keys). The API's queue (app/tracking/queue.RedisQueue)
and the worker must agree on it.

`PartitionedWorker` (what `pixeltrack worker` runs): one `StreamWorker` per partition stream it
consumes (all by default, or `--partitions 0-7` / `3` / `0-3,8`: `parse_partitions`), every Redis
call on one stream (so one cluster slot). It goes round the streams without blocking, each
turn one batch per stream (one transaction each); only when a whole round found nothing does it
block, on one stream (the next one each time) and for at most `IDLE_BLOCK_MS`, so a partition
that gets events while the worker waits on another one waits at most that long. With a single
stream (one partition, the default) it blocks `block_ms` on it, as before partitioning.

Migration from 1 to N partitions (docs/scaling.md): with a tagged scheme, a worker also drains
the legacy stream `pt:events` (same consumer group) while it has entries, and looks again every
`LEGACY_RECHECK_S` seconds (an API process still on one partition may add more), so switching
STREAM_PARTITIONS loses nothing.

Gauges (`pixeltrack_stream_length`, `_pending`, `_lag`) are summed over every stream of the
scheme (not only this worker's), legacy included: each worker reports the whole backlog, so
`max()` over workers (the dashboards, prometheus/rules.yml) keeps its meaning.
"""

from __future__ import annotations

import re
import time
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from app import clients, metrics
from app.tracking.backlog import backlog, database_up
from app.tracking.events import GROUP, STREAM, KeyScheme
from app.tracking.worker import ConsumerLoop, StreamWorker, WorkerStats, ensure_group

if TYPE_CHECKING:
    from app.settings import Settings

IDLE_BLOCK_MS = 100  # the longest block on one stream while a worker consumes several
LEGACY_RECHECK_S = 10.0  # how often an idle legacy stream is looked at again
_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def is_cluster(settings: Settings) -> bool:
    return clients.is_cluster(settings.redis_dsn, settings.redis_cluster)


def key_scheme(settings: Settings) -> KeyScheme:
    """The install's key scheme (STREAM_PARTITIONS, cluster or not)."""
    return KeyScheme.of(settings.stream_partitions, is_cluster(settings))


def parse_partitions(spec: str, count: int) -> list[int]:
    """`0-7`, `3`, `0-3,8` → sorted partition numbers, each below `count`; ValueError (with a
    message for the user) on anything else."""
    chosen: set[int] = set()
    for part in spec.split(","):
        match = _RANGE.match(part.strip())
        if match is None:
            raise ValueError(f"{part.strip()!r} is not a partition number or range (e.g. 3, 0-7, 0-3,8)")
        low = int(match[1])
        high = int(match[2]) if match[2] is not None else low
        if low > high:
            raise ValueError(f"{part.strip()!r}: the range is empty (start after end)")
        if high >= count:
            raise ValueError(f"partition {high} does not exist: STREAM_PARTITIONS={count} (0-{count - 1})")
        chosen.update(range(low, high + 1))
    return sorted(chosen)


class PartitionedWorker(ConsumerLoop):
    """Consumes the given partitions (all by default) of a key scheme, plus the legacy stream while
    a tagged scheme finds entries in it (module docstring)."""

    def __init__(
        self,
        redis: clients.SyncRedis,
        engine: Engine,
        *,
        keys: KeyScheme,
        partitions: list[int] | None = None,
        consumer: str | None = None,
        block_ms: int = 1000,
        **options: Any,
    ) -> None:
        self.redis = redis
        self.engine = engine
        self.keys = keys
        self.partitions = list(range(keys.partitions)) if partitions is None else partitions
        if not self.partitions or any(not 0 <= p < keys.partitions for p in self.partitions):
            raise ValueError(f"partitions must be within 0-{keys.partitions - 1}")
        self.block_ms = block_ms
        self._options = options
        streams = [keys.stream(p) for p in self.partitions]
        short = block_ms if len(streams) == 1 and not keys.tagged else min(block_ms, IDLE_BLOCK_MS)
        self.workers = [self._worker(s, consumer, short) for s in streams]
        self.consumer = self.workers[0].consumer
        self.legacy: StreamWorker | None = None
        self._legacy_check = 0.0  # when to look at the legacy stream again (tagged schemes)
        self._retired = WorkerStats()  # stats of a legacy consumer already dropped
        self._turn = 0

    def _worker(self, stream: str, consumer: str | None, block_ms: int) -> StreamWorker:
        return StreamWorker(
            self.redis, self.engine, consumer=consumer, stream=stream, block_ms=block_ms, **self._options
        )

    def describe(self) -> str:
        names = ", ".join(w.stream for w in self.workers)
        return f"{names} (group {GROUP})" + (f", and {STREAM} while it has entries" if self.keys.tagged else "")

    @property
    def stats(self) -> WorkerStats:  # type: ignore[override]
        total = WorkerStats(**{f.name: getattr(self._retired, f.name) for f in fields(WorkerStats)})
        for worker in self._active():
            for f in fields(WorkerStats):
                setattr(total, f.name, getattr(total, f.name) + getattr(worker.stats, f.name))
        return total

    def _active(self) -> list[StreamWorker]:
        return self.workers if self.legacy is None else [*self.workers, self.legacy]

    # -- the legacy stream (1 → N partitions) ------------------------------
    def _check_legacy(self) -> None:
        """Start consuming `pt:events` when a tagged scheme finds entries in it; stop once it is
        empty (acknowledged entries are deleted, so XLEN counts the pending ones too)."""
        now = time.monotonic()
        if not self.keys.tagged or now < self._legacy_check:
            return
        self._legacy_check = now + LEGACY_RECHECK_S
        if self.legacy is None and self.redis.xlen(STREAM):
            ensure_group(self.redis, STREAM, GROUP)
            self.legacy = self._worker(STREAM, self.consumer, min(self.block_ms, IDLE_BLOCK_MS))
        elif self.legacy is not None and not self.redis.xlen(STREAM):
            self._retire_legacy()

    def _retire_legacy(self) -> None:
        assert self.legacy is not None
        for f in fields(WorkerStats):
            setattr(self._retired, f.name, getattr(self._retired, f.name) + getattr(self.legacy.stats, f.name))
        self.legacy = None

    # -- the loop -------------------------------------------------------------
    def run_once(self, *, block: bool = True) -> int:
        """One round: one batch from each stream without blocking; if none had any, one blocking
        read on the next stream in turn."""
        self._check_legacy()
        active = self._active()
        handled = sum(worker.run_once(block=False) for worker in active)
        if handled or not block:
            return handled
        self._turn = (self._turn + 1) % len(active)
        return active[self._turn].run_once(block=True)

    def drain(self) -> int:
        self._legacy_check = 0.0  # tests and benchmarks: look at the legacy stream now
        return super().drain()

    def stop(self, *_args: object) -> None:
        super().stop()
        for worker in self._active():
            worker.stop()

    def update_gauges(self) -> None:
        """Length, pending and lag summed over every stream of the scheme (and the legacy one)."""
        database_up(self.engine)
        streams = self.keys.streams() + ([STREAM] if self.keys.tagged else [])
        try:
            totals = [backlog(self.redis, stream) for stream in streams]
        except clients.REDIS_ERRORS:
            metrics.DEPENDENCY_UP.labels("redis").set(0)
            raise
        metrics.DEPENDENCY_UP.labels("redis").set(1)
        metrics.STREAM_LENGTH.set(sum(t[0] for t in totals))
        metrics.STREAM_PENDING.set(sum(t[1] for t in totals))
        metrics.STREAM_LAG.set(sum(t[2] for t in totals))
