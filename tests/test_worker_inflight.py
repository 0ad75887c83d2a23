"""Batches in flight (WORKER_INFLIGHT_BATCHES, app/tracking/pipeline.py) keep the worker's guarantees:
an entry is acknowledged only after its batch committed, a batch that failed while others were in
flight stays pending and is stored once on the next loop, every event is stored exactly once and
the report counters match a recompute from the rows (concurrent batches sharing contacts)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import OperationalError

from app.clients import sync_redis
from app.models import GroupCounts, Opening
from app.services import counters
from app.tracking import ingest
from app.tracking import worker as worker_module
from app.tracking.events import Event
from app.tracking.queue import GROUP, STREAM
from app.tracking.worker import StreamWorker
from tests.helpers import counter_drift
from tests.support.tracking_data import openings, pending, push_events, seed_pixels


def _stream_event_ids(redis_client: Any) -> list[str]:
    """The event ids of the stream's entries, in stream order."""
    return [Event.decode(fields["e"]).event_id for _id, fields in redis_client.xrange(STREAM)]


def _pending_event_ids(redis_client: Any) -> set[str]:
    ids = {entry["message_id"] for entry in redis_client.xpending_range(STREAM, GROUP, "-", "+", 10_000)}
    return {Event.decode(fields["e"]).event_id for entry_id, fields in redis_client.xrange(STREAM) if entry_id in ids}


def _assert_counters_exact(engine: Engine, pixels: list[int], opens: int) -> None:
    """The counters match a recompute from the rows, and the group counts these openings."""
    with engine.connect() as conn:
        assert counter_drift(conn) == []
        conn.rollback()
        group = select(Opening.campaign_id).where(Opening.pixel_id == pixels[0]).limit(1).scalar_subquery()
        total = conn.scalar(select(func.sum(GroupCounts.opens_browser)).where(GroupCounts.campaign_id == group))
    assert total == opens


def test_overlapping_batches_store_every_event_once_and_keep_the_counters(
    engine: Engine, redis_client: Any, redis_url: str
) -> None:
    """Batches of 25 over 60 contacts, 4 in flight: concurrent transactions share contacts (and
    their group's and hour's rows); every event lands once, the counters match the rows."""
    pixels = seed_pixels(engine, 60)
    push_events(redis_client, pixels, 600)
    worker = StreamWorker(sync_redis(redis_url), engine, consumer="overlap", batch_size=25, inflight=4)
    assert worker.drain() == 600
    landed = openings(engine, pixels)
    assert (landed["rows"], landed["distinct_event_ids"]) == (600, 600)
    assert set(landed["per_pixel"].values()) == {10}
    assert worker.stats.inserted == 600
    assert worker.stats.duplicates == 0
    assert worker.stats.batches == 24
    assert pending(redis_client) == 0
    assert redis_client.xlen(STREAM) == 0
    _assert_counters_exact(engine, pixels, 600)


def test_a_batch_failing_while_others_are_in_flight_stays_pending_and_lands_once(
    engine: Engine, redis_client: Any, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three batches in flight; the second fails (rolled back after its openings were inserted)
    only once the third has committed. The first and third are acknowledged, the second is not
    (nothing acknowledged that was not committed); read again, it is stored alone (failing once
    more, nothing new is read meanwhile), once."""
    pixels = seed_pixels(engine, 30)
    push_events(redis_client, pixels, 30)
    ids = _stream_event_ids(redis_client)
    first, second, third = set(ids[:10]), set(ids[10:20]), set(ids[20:])
    third_committed = threading.Event()
    failures: list[str] = []
    real_store = ingest.store_events
    real_add = counters.add_events

    def store(engine: Engine, events: Sequence[tuple[str, Any]], **kw: Any) -> Any:
        batch = {e.event_id for _eid, e in events}
        if batch == second and not failures:
            # In flight (submitted, its thread running) while the third batch commits.
            assert third_committed.wait(30), "the third batch never committed while the second was in flight"
        result = real_store(engine, events, **kw)
        if batch == third:
            third_committed.set()
        return result

    def add_events(db: Any, rows: Sequence[dict[str, Any]], clicks: Sequence[dict[str, Any]]) -> None:
        if {row["event_id"] for row in rows} == second and len(failures) < 2:  # its first two runs
            failures.append("second")
            raise OperationalError("INSERT INTO contact_stats", {}, Exception("connection lost"))
        real_add(db, rows, clicks)

    monkeypatch.setattr(worker_module, "store_events", store)
    monkeypatch.setattr(counters, "add_events", add_events)
    worker = StreamWorker(sync_redis(redis_url), engine, consumer="failing", batch_size=10, inflight=3)
    monkeypatch.setattr(worker, "_sleep", lambda _seconds: None)  # the backoff itself is not the point
    assert worker.run_once(block=False) == 20  # the first and third batches, acknowledged
    assert failures == ["second"]
    assert worker.stats.db_errors == 1
    assert _pending_event_ids(redis_client) == second  # only the batch that did not commit
    stored = _stored(engine, set(ids))
    assert set(stored) == first | third
    assert set(stored.values()) == {1}
    _assert_counters_exact(engine, pixels, 20)
    push_events(redis_client, pixels, 10)  # new entries arrive meanwhile
    # A batch read again is stored alone: failing again, it reads nothing new (the database may be down).
    assert worker.run_once(block=False) == 0
    assert failures == ["second", "second"]
    assert _pending_event_ids(redis_client) == second
    assert worker.run_once(block=False) == 10  # its own pending entries: the failed batch, alone
    assert pending(redis_client) == 0
    assert redis_client.xlen(STREAM) == 10  # the new entries, not read yet
    assert worker.run_once(block=False) == 10
    assert worker.run_once(block=False) == 0
    stored = _stored(engine, set(ids))
    assert set(stored) == set(ids)
    assert set(stored.values()) == {1}
    assert pending(redis_client) == 0
    assert redis_client.xlen(STREAM) == 0
    assert worker.stats.inserted == 40
    assert worker.stats.duplicates == 0
    _assert_counters_exact(engine, pixels, 40)


def test_a_stop_ends_the_loop_after_the_batches_in_flight(
    engine: Engine, redis_client: Any, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM (`stop`) while batches are in flight: no new batch is read, those in flight
    commit and are acknowledged before the loop returns; the rest waits in the stream."""
    pixels = seed_pixels(engine, 20)
    push_events(redis_client, pixels, 100)
    worker = StreamWorker(sync_redis(redis_url), engine, consumer="stopping", batch_size=10, inflight=2)
    real_store: Callable[..., Any] = ingest.store_events
    calls: list[int] = []

    def store(engine: Engine, events: Sequence[tuple[str, Any]], **kw: Any) -> Any:
        calls.append(len(events))
        if len(calls) == 2:
            worker.stop()  # as the SIGTERM handler does, while two batches are in flight
        return real_store(engine, events, **kw)

    monkeypatch.setattr(worker_module, "store_events", store)
    handled = worker.run_once(block=False)
    assert handled == 10 * len(calls)
    assert 2 <= len(calls) <= 3
    assert pending(redis_client) == 0  # everything read was committed and acknowledged
    assert redis_client.xlen(STREAM) == 100 - handled
    assert openings(engine, pixels)["rows"] == handled
    _assert_counters_exact(engine, pixels, handled)


def _recording_store(
    monkeypatch: pytest.MonkeyPatch, first_call: Callable[[], None] | None = None
) -> list[tuple[int, int]]:
    """Each store call's (batch size, other batches being stored as it started); `first_call`
    runs inside the first call, before it stores."""
    real_store: Callable[..., Any] = ingest.store_events
    calls: list[tuple[int, int]] = []
    lock = threading.Lock()
    running = [0]

    def store(engine: Engine, events: Sequence[tuple[str, Any]], **kw: Any) -> Any:
        with lock:
            calls.append((len(events), running[0]))
            running[0] += 1
        try:
            if len(calls) == 1 and first_call is not None:
                first_call()
            return real_store(engine, events, **kw)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(worker_module, "store_events", store)
    return calls


def test_under_a_light_load_the_next_batch_gathers_while_one_is_stored(
    engine: Engine, redis_client: Any, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Entries arriving while a batch is stored wait for it and go together in one batch (a group
    commit), not in a transaction each as they come: the worker's (and the database's) cost per
    event no longer grows as the load gets lighter."""
    pixels = seed_pixels(engine, 10)
    push_events(redis_client, pixels, 5)

    def arrivals() -> None:
        for _ in range(3):
            push_events(redis_client, pixels, 10)

    calls = _recording_store(monkeypatch, arrivals)
    worker = StreamWorker(sync_redis(redis_url), engine, consumer="gathering", batch_size=100, inflight=4)
    assert worker.run_once(block=False) == 35
    assert calls == [(5, 0), (30, 0)]
    assert pending(redis_client) == 0
    assert openings(engine, pixels)["rows"] == 35
    _assert_counters_exact(engine, pixels, 35)


def test_full_batches_go_at_once_and_the_short_one_after_them(
    engine: Engine, redis_client: Any, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backlog is stored in full batches without waiting (up to `inflight` at once); the short
    batch at its end starts once they have ended."""
    pixels = seed_pixels(engine, 10)
    push_events(redis_client, pixels, 25)
    calls = _recording_store(monkeypatch)
    worker = StreamWorker(sync_redis(redis_url), engine, consumer="backlog", batch_size=10, inflight=4)
    assert worker.run_once(block=False) == 25
    assert [size for size, _ in calls] == [10, 10, 5]
    assert calls[2] == (5, 0)
    assert worker.stats.batches == 3
    _assert_counters_exact(engine, pixels, 25)


def _stored(engine: Engine, event_ids: set[str]) -> dict[str, int]:
    with engine.connect() as conn:
        query = select(Opening.event_id, func.count()).where(Opening.event_id.in_(event_ids))
        return {row[0]: row[1] for row in conn.execute(query.group_by(Opening.event_id))}


class _PacedWorker(StreamWorker):
    """The pacing's waits (WORKER_BATCH_INTERVAL_MS) noted instead of slept; `during_wait` runs in
    each, as if entries arrived meanwhile."""

    def __init__(self, *args: Any, during_wait: Callable[[], object], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.waits: list[float] = []
        self.during_wait = during_wait

    def _sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.during_wait()


@pytest.mark.parametrize("inflight", [1, 4])
def test_a_short_batch_right_after_another_waits_out_the_interval_gathering_arrivals(
    engine: Engine, redis_client: Any, redis_url: str, monkeypatch: pytest.MonkeyPatch, inflight: int
) -> None:
    """Under a steady light load a short batch starts no sooner than WORKER_BATCH_INTERVAL_MS after
    the previous one and takes what arrived meanwhile: one transaction per interval, not one per
    handful of events. An event after a pause, and a full batch, go at once."""
    pixels = seed_pixels(engine, 10)
    calls = _recording_store(monkeypatch)
    worker = _PacedWorker(
        sync_redis(redis_url),
        engine,
        consumer=f"paced-{inflight}",
        batch_size=40,
        inflight=inflight,
        batch_interval_ms=1000,
        during_wait=lambda: push_events(redis_client, pixels, 30),
    )
    push_events(redis_client, pixels, 5)
    assert worker.run_once(block=False) == 5  # after a pause: at once
    assert (calls, worker.waits) == ([(5, 0)], [])
    worker._last_batch = time.monotonic()  # a batch just started (however long the first took)
    push_events(redis_client, pixels, 5)  # so this one waits, and takes 30 more
    assert worker.run_once(block=False) == 35
    assert calls[1:] == [(35, 0)]
    assert len(worker.waits) == 1
    assert 0 < worker.waits[0] <= 1.0
    worker._last_batch = time.monotonic()  # a batch just started ...
    push_events(redis_client, pixels, 40)  # ... but this one is full: at once
    assert worker.run_once(block=False) == 40
    assert calls[2:] == [(40, 0)]
    assert len(worker.waits) == 1
    assert pending(redis_client) == 0
    _assert_counters_exact(engine, pixels, 80)


def test_without_an_interval_a_short_batch_goes_at_once(engine: Engine, redis_client: Any, redis_url: str) -> None:
    pixels = seed_pixels(engine, 10)
    worker = _PacedWorker(sync_redis(redis_url), engine, consumer="unpaced", batch_size=40, during_wait=lambda: None)
    for _ in range(2):
        push_events(redis_client, pixels, 5)
        assert worker.run_once(block=False) == 5
    assert worker.waits == []
