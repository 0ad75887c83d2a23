"""`pixeltrack worker`: moves tracking events from the Redis stream into the database.

`StreamWorker` consumes one stream (one partition; app/tracking/partitions.PartitionedWorker,
what the command runs, drives one per partition stream it consumes). A Redis Streams consumer
group; several workers may run. Each loop:
1. every `claim_every` loops, and at least every `claim_idle_ms / 2` of wall time (an idle
   worker blocks `block_ms` per loop), XAUTOCLAIM entries idle longer than `claim_idle_ms`
   (their consumer died) and process them; again on the next loop while a reclaim fills a
   whole batch;
2. re-read this consumer's own pending entries (a batch whose insert failed);
3. XREADGROUP new entries (blocking up to `block_ms`);
and for each batch: one transaction through app/tracking/ingest.store_events, and
only after the commit, XACK + XDEL (the stream is trimmed as it is consumed).
A database error leaves the batch pending and backs off exponentially; nothing is
lost and, as `event_id` is unique (the id the API gave the event, else the stream
entry id), nothing is inserted twice.

Batches overlap (`inflight` > 1, WORKER_INFLIGHT_BATCHES; app/tracking/pipeline.py): once a
loop has its first batch of new entries, it keeps reading new entries (without blocking, for at
most TURN_SECONDS) while up to `inflight` transactions run, each on its own connection. Only full
batches start while others run; a short one waits for them and for WORKER_BATCH_INTERVAL_MS after
the previous batch, gathering what arrives meanwhile (a group commit: batches grow with the
load). Every batch it started has ended, and those that committed are acknowledged, when the loop
returns. A stop (SIGTERM) ends the loop after the batches in flight. A batch read again (a failed
batch, a dead consumer's entries) is stored alone: nothing new is read until it committed, so a
database that is down leaves the pending entries as they were.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ResponseError
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from app import gctune, metrics
from app.clients import REDIS_ERRORS, SyncRedis
from app.tracking.backlog import backlog, database_up
from app.tracking.click_rules import DEFAULT_RULES, ClickRules
from app.tracking.events import decode
from app.tracking.ingest import IngestResult, classified, store_events, warm_up
from app.tracking.pipeline import Batch, Entries, InFlight, Settled
from app.tracking.queue import GROUP, STREAM

log = logging.getLogger("pixeltrack.worker")

DEFAULT_INFLIGHT = 4  # WORKER_INFLIGHT_BATCHES' default (app/settings_worker.py)
TURN_SECONDS = 2.0  # the longest run of overlapping batches in one loop (then the next loop, or stream)


@dataclass
class WorkerStats:
    batches: int = 0
    inserted: int = 0
    duplicates: int = 0
    skipped_missing: int = 0
    skipped_consent: int = 0
    conversions: int = 0
    malformed: int = 0
    reclaimed: int = 0
    db_errors: int = 0


def ensure_group(redis: SyncRedis, stream: str = STREAM, group: str = GROUP) -> None:
    """Create the consumer group (reading from the start of the stream) if missing."""
    try:
        redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


class ConsumerLoop:
    """What `pixeltrack worker` runs: `run_once` until stopped, gauges every second, Redis outages
    retried every second (StreamWorker: one stream; app/tracking/partitions.PartitionedWorker)."""

    consumer: str
    stats: WorkerStats
    _stopping = False
    _redis_down = False
    _next_gauges = 0.0

    def run_once(self, *, block: bool = True) -> int:
        raise NotImplementedError

    def update_gauges(self) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stopping and time.monotonic() < deadline:
            time.sleep(min(0.1, deadline - time.monotonic()))

    def drain(self) -> int:
        """Process without blocking until a loop finds nothing to do (tests, benchmarks)."""
        total = 0
        while handled := self.run_once(block=False):
            total += handled
        return total

    def stop(self, *_args: object) -> None:
        self._stopping = True

    def run_forever(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        gctune.tune()  # (`pixeltrack worker`: what it keeps is loaded; app/gctune.py)
        log.info("worker %s consuming %s", self.consumer, self.describe())
        while not self._stopping:
            try:
                self.run_once()
                if time.monotonic() >= self._next_gauges:
                    self.update_gauges()
                    self._next_gauges = time.monotonic() + 1.0
            except REDIS_ERRORS as exc:  # on a cluster too: no master for a slot, topology unreadable
                metrics.DEPENDENCY_ERRORS.labels("redis", "worker").inc()
                metrics.DEPENDENCY_UP.labels("redis").set(0)
                self._next_gauges = 0.0  # re-check (and report up) as soon as a loop succeeds
                if not self._redis_down:
                    log.error("Redis unavailable (%s); retrying every second", exc.__class__.__name__)
                    self._redis_down = True
                self._sleep(1.0)
                continue
            if self._redis_down:
                log.warning("Redis available again")
                self._redis_down = False
        log.info("worker %s stopped: %s", self.consumer, self.stats)


class StreamWorker(ConsumerLoop):
    def __init__(
        self,
        redis: SyncRedis,
        engine: Engine,
        *,
        consumer: str | None = None,
        stream: str = STREAM,
        group: str = GROUP,
        batch_size: int = 1000,
        block_ms: int = 1000,
        claim_idle_ms: int = 30_000,
        claim_every: int = 10,
        max_backoff: float = 30.0,
        click_rules: ClickRules = DEFAULT_RULES,
        inflight: int = DEFAULT_INFLIGHT,
        batch_interval_ms: int = 0,
    ) -> None:
        self.click_rules = click_rules
        self.batch_interval = batch_interval_ms / 1000  # WORKER_BATCH_INTERVAL_MS (`_paced`)
        self._last_batch = float("-inf")  # no batch yet: the first goes at once
        self._inflight = InFlight(max(1, inflight), self._store, name=f"ingest-{stream}")
        self.redis = redis
        self.engine = engine
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.stream = stream
        self.group = group
        self.batch_size = batch_size
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.claim_every = claim_every
        self.max_backoff = max_backoff
        self.stats = WorkerStats()
        self._loops = 0
        self._next_claim = 0.0
        self._claim_more = False
        self._backoff = 0.0
        ensure_group(redis, stream, group)
        warm_up()

    def describe(self) -> str:
        return f"{self.stream} (group {self.group})"

    # -- reading -------------------------------------------------------------
    def _own_pending(self) -> Entries:
        reply: Any = self.redis.xreadgroup(self.group, self.consumer, {self.stream: "0"}, count=self.batch_size)
        gone = [entry_id for entry_id, fields in (reply[0][1] if reply else []) if not fields]
        if gone:  # deleted from the stream while pending: nothing left to insert
            self.redis.xack(self.stream, self.group, *gone)
        return _entries(reply)

    def _new(self, block: bool, count: int | None = None) -> Entries:
        reply = self.redis.xreadgroup(
            self.group,
            self.consumer,
            {self.stream: ">"},
            count=count or self.batch_size,
            block=self.block_ms if block else None,
        )
        return _entries(reply)

    def reclaim(self) -> Entries:
        """Take over entries whose consumer has not acknowledged them for claim_idle_ms."""
        reply: Any = self.redis.xautoclaim(
            self.stream,
            self.group,
            self.consumer,
            min_idle_time=self.claim_idle_ms,
            start_id="0-0",
            count=self.batch_size,
        )
        entries = [(entry_id, fields) for entry_id, fields in reply[1] if fields is not None]
        self._claim_more = len(reply[1]) >= self.batch_size  # more may be waiting: next loop too
        self.stats.reclaimed += len(entries)
        return entries

    def _claim_due(self) -> bool:
        now = time.monotonic()
        due = self._claim_more or self.claim_every == 1 or self._loops % self.claim_every == 1
        if due or now >= self._next_claim:
            self._next_claim = now + self.claim_idle_ms / 2000
            return True
        return False

    def _paced(self, entries: Entries) -> Entries:
        """A short batch of new entries starts no sooner than `batch_interval` after the last one,
        gathering what arrives meanwhile: under a steady light load, one transaction per interval
        instead of one per handful of events (a full batch goes at once, and so does an event
        after a pause)."""
        wait = self._last_batch + self.batch_interval - time.monotonic()
        if wait > 0 and len(entries) < self.batch_size:
            self._sleep(wait)
            entries = entries + self._new(block=False, count=self.batch_size - len(entries))
        self._last_batch = time.monotonic()
        return entries

    # -- processing ----------------------------------------------------------
    def _prepare(self, entries: Entries) -> Batch:
        """Decode and classify a batch's events (in this thread: meanwhile, others are in flight)."""
        batch = Batch([entry_id for entry_id, _ in entries])
        for entry_id, fields in entries:
            try:
                batch.events.append((entry_id, classified(decode(fields["e"]))))
            except (KeyError, ValueError):
                batch.malformed.append(entry_id)
        return batch

    def _store(self, batch: Batch) -> IngestResult:
        """The batch's transaction (in a thread of `InFlight` when batches overlap)."""
        return store_events(self.engine, batch.events, rules=self.click_rules) if batch.events else IngestResult()

    def _finish(self, batch: Batch, result: IngestResult) -> None:
        """After the batch's commit, and only then: acknowledge and delete its entries."""
        if batch.ids:
            pipe = self.redis.pipeline(transaction=False)
            pipe.xack(self.stream, self.group, *batch.ids)
            pipe.xdel(self.stream, *batch.ids)
            pipe.execute()
        if batch.malformed:
            log.warning("dropped %d malformed stream entries", len(batch.malformed))
        self.stats.batches += 1
        self.stats.malformed += len(batch.malformed)
        for name in ("inserted", "duplicates", "skipped_missing", "skipped_consent", "conversions"):
            setattr(self.stats, name, getattr(self.stats, name) + getattr(result, name))

    def process(self, entries: Entries) -> IngestResult:
        """Insert a batch, then ack and delete it. Raises SQLAlchemyError if the database fails."""
        batch = self._prepare(entries)
        result = self._store(batch)
        self._finish(batch, result)
        return result

    def run_once(self, *, block: bool = True) -> int:
        """One loop; returns how many entries it handled. Database errors back off and retry;
        a consumer group that vanished (Redis restarted without its data) is recreated."""
        self._loops += 1
        try:
            return self._run_once(block)
        except ResponseError as exc:
            if not _is_nogroup(exc):
                raise
            self._recreate_group()
            return 0

    def _recreate_group(self) -> None:
        metrics.DEPENDENCY_ERRORS.labels("redis", "worker").inc()
        log.warning(
            "consumer group %s of %s is gone (Redis restarted without its data?): recreating it",
            self.group,
            self.stream,
        )
        ensure_group(self.redis, self.stream, self.group)

    def _run_once(self, block: bool) -> int:
        entries: Entries = []
        if self._claim_due():
            entries = self.reclaim()
        if not entries:
            entries = self._own_pending()
        retry = bool(entries)  # entries read before (a failed batch, a dead consumer's): alone
        if not entries:
            entries = self._new(block)
        if not entries:
            self._backoff = 0.0
            return 0
        if self._inflight.depth > 1 and not retry:
            return self._turn(entries)
        if not retry:
            entries = self._paced(entries)
        try:
            self.process(entries)
        except SQLAlchemyError as exc:
            self._database_failed(exc)
            return 0
        self._backoff = 0.0
        return len(entries)

    def _turn(self, entries: Entries) -> int:
        """Batches in flight (app/tracking/pipeline.py): this batch of new entries, then more as long as
        the stream has some, for at most TURN_SECONDS (a stop or a failed batch ends the turn
        sooner), up to `inflight` transactions at once; every batch started has ended when it
        returns. Returns the entries acknowledged (their batches committed)."""
        handled, failure = 0, None
        deadline = time.monotonic() + TURN_SECONDS
        try:
            while entries and not failure:
                entries = self._paced(entries)
                self._inflight.submit(self._prepare(entries))
                entries = []
                # The next batch: a full one goes at once (up to `inflight` at a time); a short one
                # first waits for the batches in flight, gathering what arrives meanwhile. Batches
                # so grow with the arrival rate, as a group commit: many small transactions at
                # once cost the worker (and the database) more per event the lighter the load.
                while not (failure or self._stopping or time.monotonic() >= deadline):
                    if len(entries) < self.batch_size:
                        entries += self._new(block=False, count=self.batch_size - len(entries))
                    if not self._inflight or (len(entries) >= self.batch_size and not self._inflight.full):
                        break
                    settled = self._inflight.settle_oldest()
                    handled += self._settled(settled)
                    failure = failure or settled.error
            # Entries read after a batch failed stay pending: the next loop reads them again.
            for settled in self._inflight.drain():
                handled += self._settled(settled)
                failure = failure or settled.error
        except BaseException:
            # (Redis failed, or a bug): wait for what is in flight, acknowledge nothing more.
            # What committed unacknowledged is read again and stored once (event_id is unique).
            self._inflight.drain()
            raise
        if isinstance(failure, SQLAlchemyError):
            self._database_failed(failure)
        else:
            self._backoff = 0.0
        return handled

    def _settled(self, settled: Settled) -> int:
        """Acknowledge a batch that committed; one that failed stays pending (its entries are
        this consumer's pending ones, read again by the next loop). Not a database error: raised."""
        if settled.error is not None:
            if not isinstance(settled.error, SQLAlchemyError):
                raise settled.error
            return 0
        assert settled.result is not None
        self._finish(settled.batch, settled.result)
        return len(settled.batch.ids)

    def _database_failed(self, exc: SQLAlchemyError) -> None:
        self.stats.db_errors += 1
        metrics.DEPENDENCY_ERRORS.labels("database", "worker").inc()
        self._backoff = min(self.max_backoff, max(0.5, self._backoff * 2))
        log.error(
            "database unavailable (%s); batch stays pending, retrying in %.1fs",
            exc.__class__.__name__,
            self._backoff,
        )
        self._sleep(self._backoff)

    def update_gauges(self) -> None:
        """Stream length, pending, lag (`backlog`); database and Redis up."""
        database_up(self.engine)
        try:
            length, pending, lag = backlog(self.redis, self.stream, self.group)
        except REDIS_ERRORS:
            metrics.DEPENDENCY_UP.labels("redis").set(0)
            raise
        metrics.DEPENDENCY_UP.labels("redis").set(1)
        metrics.STREAM_LENGTH.set(length)
        metrics.STREAM_PENDING.set(pending)
        metrics.STREAM_LAG.set(lag)


def _is_nogroup(exc: ResponseError) -> bool:
    return str(exc).startswith("NOGROUP")


def _entries(reply: Any) -> Entries:
    if not reply:
        return []
    # [[stream, [(id, {field: value}), ...]]]
    return [(entry_id, fields) for entry_id, fields in reply[0][1] if fields]
