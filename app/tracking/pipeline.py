"""Batches in flight: the stream worker's overlap of Redis, Python and the database in one process.

A batch's transaction (app/tracking/ingest.store_events) mostly waits for the database; the
worker alone is not busy half of that time (the driver releases the GIL while it waits on the
socket). `InFlight` runs up to `depth` batches' transactions at once, each in a thread of its
own with a connection of its own, while the worker's thread reads the next batch from Redis,
decodes and classifies it (app/tracking/worker.StreamWorker._turn drives it).

The guarantees stay those of one batch at a time:
- a batch's entries are acknowledged (by the worker's thread, `settle`) only after its
  transaction committed; a batch whose transaction failed is reported, not acknowledged: its
  entries stay pending and are read again (the consumer's own pending entries) once nothing is
  in flight, so they are never read twice while in flight;
- acknowledgements may come in any order; rows are stored once (`event_id` is unique, a replay
  goes through the ingest's careful mode) and the counters move by exactly the rows inserted
  (their row locks are taken in one order by every transaction; a deadlock is retried,
  app/db.retrying);
- `drain` waits for every batch in flight (a stop, an error elsewhere): nothing is left running.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from app.tracking.events import Tracked
from app.tracking.ingest import IngestResult

Entries = list[tuple[str, dict[str, str]]]


@dataclass
class Batch:
    """Stream entries read together: their ids (all acknowledged together), the events decoded
    from them, and the ids of those that could not be decoded (acknowledged and dropped)."""

    ids: list[str]
    events: list[tuple[str, Tracked]] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)


@dataclass
class Settled:
    """A batch whose transaction ended: its result, or the error that rolled it back."""

    batch: Batch
    result: IngestResult | None
    error: BaseException | None


class InFlight:
    """Up to `depth` batches stored concurrently by `store` (one thread and connection each)."""

    def __init__(self, depth: int, store: Callable[[Batch], IngestResult], name: str = "ingest") -> None:
        self.depth = depth
        self._store = store
        self._name = name
        self._pool: ThreadPoolExecutor | None = None
        self._running: deque[tuple[Batch, Future[IngestResult]]] = deque()

    def __len__(self) -> int:
        return len(self._running)

    @property
    def full(self) -> bool:
        return len(self._running) >= self.depth

    def submit(self, batch: Batch) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.depth, thread_name_prefix=self._name)
        self._running.append((batch, self._pool.submit(self._store, batch)))

    def settle_oldest(self) -> Settled:
        """Wait for the oldest batch in flight to end."""
        batch, future = self._running.popleft()
        error = future.exception()  # (waits) reported to the caller, which decides; nothing raised here
        return Settled(batch, None if error else future.result(), error)

    def drain(self) -> list[Settled]:
        """Wait for every batch in flight, oldest first."""
        return [self.settle_oldest() for _ in range(len(self._running))]

    def close(self) -> None:
        self.drain()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
