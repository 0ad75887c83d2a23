"""Fault injection with real processes, on loopback only (issue 5).

a) a private redis-server SIGKILLed in the middle of pixel loads (the API falls back to
   its in-process queue), then restarted from its append-only file;
b) a private MariaDB (its own datadir and port: the system MariaDB is never touched)
   SIGKILLed while the stream worker inserts, then restarted on the same datadir;
c) a `pixeltrack worker` process SIGKILLed mid-batch, a second worker reclaiming its
   pending entries;
d) a `pixeltrack serve` process SIGTERMed under load and started again on the same port,
   with Redis + a worker and in the embedded mode (no Redis).

Three small tests first pin, deterministically, the app bugs these faults exposed.

Each fault test compares the database rows with what was acknowledged (a 200 to the client,
an entry in the stream): nothing acknowledged is lost, nothing is inserted twice. They
poll with deadlines (no fixed sleeps), stop every process they start in a `finally`,
and print what they injected and the final row counts (`pytest -s`).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import Engine, create_engine, text

from app.clients import sync_redis
from app.db import make_engine
from app.main import create_asgi
from app.migrations import upgrade
from app.settings import Settings
from app.tracking.events import OPEN, Event, new_event_id
from app.tracking.ingest import store_events
from app.tracking.queue import GROUP, STREAM, MemoryQueue, RedisQueue
from app.tracking.tokens import TokenCodec
from app.tracking.worker import StreamWorker
from tests.live import concurrent_gets, live_server
from tests.support.mariadb_server import PrivateMariaDB
from tests.support.pixel_loader import PixelLoader
from tests.support.pixeltrack_process import UA, api_server, process_env, start_worker
from tests.support.processes import free_port, stop_process, wait_until
from tests.support.redis_server import PrivateRedis
from tests.support.tracking_data import (
    consumer_pending,
    gauge,
    held_event_ids,
    openings,
    pending,
    push_events,
    row_count,
    seed_pixels,
    stored_event_ids,
)
from tests.support.worker_thread import WorkerThread

pytestmark = pytest.mark.processes  # starts real processes or servers: not in the fast loop

# --- the app bugs (a) and (d) found, pinned deterministically ----------------------------------


async def submit_through(engine: Engine, redis_url: str, wrap: Callable[[Any], Any], event: Event) -> RedisQueue:
    """One event through a RedisQueue whose enqueue script is wrapped by `wrap`; closes the queue
    (which flushes its fallback to the database) and returns it."""
    from app.clients import async_redis

    client = async_redis(redis_url)
    queue = RedisQueue(client, MemoryQueue(engine, window_seconds=3600), window_seconds=3600)
    queue._script = wrap(queue._script)
    try:
        assert await asyncio.wait_for(queue.submit(event), 5) is True  # answered, as recorded
        await queue.close()
    finally:
        await client.aclose()
    return queue


def test_a_non_redis_error_from_the_client_falls_back_instead_of_hanging(
    engine: Engine, redis_client: Any, redis_url: str
) -> None:
    """When Redis dies mid-connect, redis-py (with uvloop) raises RuntimeError("the handler is closed"),
    not a RedisError: the batch's requests must still be answered and recorded, not wait forever."""
    pixel = seed_pixels(engine, 1)[0]

    def dying(_script: Any) -> Any:
        async def call(**_kwargs: Any) -> Any:
            raise RuntimeError("unable to perform operation on <TCPTransport closed=True>; the handler is closed")

        return call

    event = Event(OPEN, pixel, 0, 1, "browser", "", "", new_event_id())
    queue = asyncio.run(submit_through(engine, redis_url, dying, event))
    assert queue.degraded
    assert openings(engine, [pixel])["rows"] == 1


def test_load_enqueued_but_reply_lost_is_stored_once(engine: Engine, redis_client: Any, redis_url: str) -> None:
    """Redis ran the enqueue script, then died before replying: the API also records the load through
    its fallback; both copies carry the event id given when the load was answered, so one row."""
    pixel = seed_pixels(engine, 1)[0]

    def reply_lost(script: Any) -> Any:
        async def call(**kwargs: Any) -> Any:
            await script(**kwargs)
            raise redis.ConnectionError("Connection closed by server.")

        return call

    event = Event(OPEN, pixel, 0, 1, "browser", "", "", new_event_id())
    queue = asyncio.run(submit_through(engine, redis_url, reply_lost, event))
    assert queue.degraded
    assert openings(engine, [pixel])["rows"] == 1  # through the fallback...
    assert redis_client.xlen(STREAM) == 1  # ...and the same load is in the stream
    worker = StreamWorker(sync_redis(redis_url), engine, consumer="lost-reply")
    assert worker.drain() == 1
    assert (worker.stats.inserted, worker.stats.duplicates) == (0, 1)
    assert openings(engine, [pixel])["rows"] == 1


def test_shutdown_waits_for_the_batch_being_written(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by (d): close() used to cancel the flusher while its thread was writing a batch, and
    returned before that write ended; uvicorn then re-raises SIGTERM and the batch died with the
    process. close() must return only once the batch is in the database."""
    import app.tracking.queue as queue_module

    pixel = seed_pixels(engine, 1)[0]
    entered, release = threading.Event(), threading.Event()
    real_store = store_events  # what app.tracking.queue calls

    def slow_store(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        release.wait(10)
        return real_store(*args, **kwargs)

    monkeypatch.setattr(queue_module, "store_events", slow_store)

    async def run() -> int:
        queue = MemoryQueue(engine, window_seconds=3600, max_batch=1)  # one event wakes the flusher
        await queue.start()
        assert queue.offer(Event(OPEN, pixel, 0, 1, "browser", "", "", new_event_id()))
        assert await asyncio.to_thread(entered.wait, 10)  # the flusher's thread is writing the batch

        async def closer() -> int:
            await queue.close()
            return int(openings(engine, [pixel])["rows"])  # rows at the moment close() returned

        closing = asyncio.create_task(closer())
        for _ in range(50):  # loop turns only: let close() go as far as it can without the write
            await asyncio.sleep(0)
        release.set()
        return await asyncio.wait_for(closing, 10)

    assert asyncio.run(run()) == 1


# --- a) Redis killed mid-load ---------------------------------------------------------------


def test_redis_killed_mid_load_every_load_answers_and_lands_once(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    pixels = seed_pixels(engine, 1800)
    during, after_kill, after_restart = pixels[:1000], pixels[1000:1300], pixels[1300:]
    codec = TokenCodec(settings.fernet_keys())

    def path(pixel_id: int) -> str:
        return f"/o/{codec.pixel_token(pixel_id)}.gif"

    server = PrivateRedis(tmp_path / "redis", durable=True)
    server.start()
    probe = sync_redis(server.url)
    try:
        app = create_asgi(settings.model_copy(update={"redis_url": server.url}))
        worker = StreamWorker(sync_redis(server.url), engine, consumer="fault-a", batch_size=200, block_ms=50)
        loaded: list[int] = []
        statuses: list[int] = []
        with WorkerThread(worker) as worker_thread:
            with live_server(app) as base, httpx.Client(base_url=base, headers={"User-Agent": UA}) as http:
                queue = app.state.tracker.queue
                assert isinstance(queue, RedisQueue)
                # 1. 1,000 distinct pixels over 20 connections; SIGKILL Redis once ~150 are in it.
                with ThreadPoolExecutor(1) as pool:
                    loading = pool.submit(concurrent_gets, base, [path(p) for p in during], connections=20)
                    wait_until(lambda: loading.done() or probe.dbsize() >= 150, "the first loads to reach Redis")
                    in_flight = not loading.done()
                    in_redis_at_kill = (len(probe.keys("pt:d:*")), probe.xlen(STREAM))
                    server.kill()
                    statuses += loading.result()
                loaded += during
                assert in_flight, "the load finished before Redis was killed: not a mid-load fault"
                assert queue.degraded
                degraded_gauge = gauge(base, "pixeltrack_degraded")
                # 2. Redis stays down: 300 more pixels, each loaded twice (dedupe per process).
                statuses += concurrent_gets(base, [path(p) for p in after_kill for _ in range(2)], connections=20)
                loaded += after_kill
                # 3. Restart Redis (same port, same AOF); load new pixels one by one until the API is back on it.
                server.start()
                fresh = iter(after_restart)

                def back_on_redis() -> bool:
                    pixel_id = next(fresh)
                    statuses.append(http.get(path(pixel_id)).status_code)
                    loaded.append(pixel_id)
                    return not queue.degraded

                wait_until(back_on_redis, "the API to leave degraded mode", timeout=15, interval=0.05)
                rest = list(fresh)
                statuses += concurrent_gets(base, [path(p) for p in rest], connections=20)
                loaded += rest
                recovered_gauge = gauge(base, "pixeltrack_degraded")
            # The app has shut down (its lifespan flushed the in-process queue); the worker drains the stream,
            # including what was in Redis when it was killed (restored from the AOF).

            def drained() -> bool:
                worker_thread.check()
                return pending(probe) == 0 and probe.xlen(STREAM) == 0 and row_count(engine) >= len(loaded)

            wait_until(drained, "the worker to drain the stream", timeout=60)
        counts = openings(engine, pixels)
        fallback = app.state.tracking.memory.totals
        print(
            f"\n[a] injected: SIGKILL of the private redis-server with loads in flight, after {in_redis_at_kill[0]} events "
            f"were accepted ({in_redis_at_kill[1]} still in the stream); "
            f"restarted from its AOF on the same port.\n"
            f"    loads: {len(statuses)} requests, {statuses.count(200)} x 200, {len(set(loaded))} distinct pixels "
            f"({len(during)} around the kill, {len(after_kill)} x 2 while down, {len(loaded) - len(during) - len(after_kill)} after restart);\n"
            f"    degraded gauge {degraded_gauge:.0f} while down, {recovered_gauge:.0f} after; "
            f"in-process fallback: {fallback.inserted} inserted, {fallback.duplicates} already stored; "
            f"worker: {worker.stats.inserted} inserted, {worker.stats.duplicates} already stored, "
            f"{worker_thread.redis_errors} Redis errors.\n"
            f"    rows: {counts['rows']} openings, {counts['distinct_event_ids']} distinct event ids, "
            f"{len(counts['per_pixel'])} distinct pixels."
        )
        assert statuses == [200] * len(statuses)
        assert degraded_gauge == 1
        assert recovered_gauge == 0
        assert counts["rows"] == len(set(loaded)) == len(loaded)
        assert counts["distinct_event_ids"] == counts["rows"]
        assert set(counts["per_pixel"]) == set(loaded)
        assert max(counts["per_pixel"].values()) == 1
    finally:
        probe.close()
        server.stop()


# --- b) MariaDB killed while the worker inserts ------------------------------------------------


def test_mariadb_killed_while_worker_inserts_entries_stay_pending_then_land_once(
    redis_client: Any, redis_url: str, tmp_path: Path
) -> None:
    mariadb = PrivateMariaDB(tmp_path / "mariadb")
    mariadb.install()
    eng: Engine | None = None
    try:
        mariadb.start()
        admin = create_engine(mariadb.server_url())
        with admin.connect() as conn:
            conn.execute(text("CREATE DATABASE pixeltrack_faults CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"))
        admin.dispose()
        eng = make_engine(mariadb.server_url("pixeltrack_faults"), connect_args={"connect_timeout": 2})
        upgrade(eng)
        pixels = seed_pixels(eng, 500)
        total = push_events(redis_client, pixels, 3000, with_ids=False)
        worker = StreamWorker(
            sync_redis(redis_url), eng, consumer="fault-b", batch_size=50, block_ms=50, max_backoff=1.0
        )
        with WorkerThread(worker) as worker_thread:

            def inserting() -> bool:
                worker_thread.check()
                return worker.stats.inserted >= 300

            wait_until(inserting, "the worker to insert its first batches")
            mariadb.kill()
            inserted_at_kill = worker.stats.inserted
            assert inserted_at_kill < total, "the worker finished before MariaDB was killed"
            total += push_events(
                redis_client, pixels, 1000, with_ids=False
            )  # events keep arriving while the database is down

            def errors(n: int) -> bool:
                worker_thread.check()  # a dead worker thread fails here, not as a timeout
                return worker.stats.db_errors >= n

            wait_until(lambda: errors(2), "the worker to report database errors")
            group = next(g for g in redis_client.xinfo_groups(STREAM) if g["name"] == GROUP)
            held = (worker.stats.inserted, group["pending"], group["last-delivered-id"])
            wait_until(lambda: errors(4), "more failed retries")
            group = next(g for g in redis_client.xinfo_groups(STREAM) if g["name"] == GROUP)
            still = (worker.stats.inserted, group["pending"], group["last-delivered-id"])
            stream_len_down = redis_client.xlen(STREAM)
            errors_down = worker.stats.db_errors
            mariadb.start()  # same datadir and port: InnoDB crash recovery
            total += push_events(redis_client, pixels, 1000, with_ids=False)

            def landed() -> bool:
                worker_thread.check()
                return pending(redis_client) == 0 and redis_client.xlen(STREAM) == 0 and row_count(eng) >= total

            wait_until(landed, "every event to be inserted after the restart", timeout=60)
        counts = openings(eng, pixels)
        print(
            f"\n[b] injected: SIGKILL of the private mariadbd after {inserted_at_kill} rows were inserted, "
            f"1,000 events pushed while it was down, restart on the same datadir/port.\n"
            f"    while down: {errors_down} database errors, pending {held[1]} → {still[1]}, rows inserted "
            f"{held[0]} → {still[0]}, last delivered {held[2]} → {still[2]}, stream length {stream_len_down}.\n"
            f"    rows: {counts['rows']} openings for {total} events, {counts['distinct_event_ids']} distinct event ids; "
            f"worker {worker.stats.inserted} inserted, {worker.stats.duplicates} duplicates ignored; pending "
            f"{pending(redis_client)}."
        )
        assert held[1] > 0  # the failed batch stays pending...
        assert still == held  # ...and nothing is acked, inserted or read while the database is down
        assert stream_len_down >= 1000 + held[1]
        assert counts["rows"] == total
        assert counts["distinct_event_ids"] == counts["rows"]
        assert pending(redis_client) == 0
    finally:
        if eng is not None:
            eng.dispose()
        mariadb.stop()


# --- c) worker SIGKILLed mid-batch ----------------------------------------------------------------


def test_worker_sigkilled_mid_batch_is_reclaimed_exactly_once(
    settings: Settings, engine: Engine, redis_client: Any, redis_url: str, tmp_path: Path
) -> None:
    pixels = seed_pixels(engine, 1000)
    # Enough that no kill can drain the stream (at most 5 x ~550 rows), and no more: under load the
    # survivor's batches of 50 (one commit each) dominate the test's time.
    events = push_events(redis_client, pixels, 6_000)
    env = process_env(
        settings,
        REDIS_URL=redis_url,
        WORKER_BATCH_SIZE="50",
        WORKER_CLAIM_IDLE_MS="1000",
        LOG_LEVEL="INFO",
    )
    procs: list[subprocess.Popen[bytes]] = []
    kills: list[tuple[str, int, int]] = []  # consumer, rows when killed, its pending entries
    held: set[str] = set()  # the event ids of those pending entries
    try:
        # Kill workers until one dies holding a batch (killed between two batches, it holds none); at most 5.
        for attempt in range(1, 6):
            name = f"doomed-{attempt}"
            with (tmp_path / f"{name}.log").open("wb") as log:
                proc = start_worker(env, name, log, tmp_path)
            procs.append(proc)
            start_rows = row_count(engine)

            def progressing(proc: subprocess.Popen[bytes] = proc, start_rows: int = start_rows) -> bool:
                if proc.poll() is not None:
                    raise AssertionError(f"worker exited early ({proc.returncode})")
                return row_count(engine) >= start_rows + 500

            wait_until(progressing, f"{name} to insert rows", interval=0.05)  # COUNT(*): not in a tight loop

            def holding(proc: subprocess.Popen[bytes] = proc, name: str = name) -> bool:
                nonlocal events
                if proc.poll() is not None:
                    raise AssertionError(f"worker exited early ({proc.returncode})")
                if redis_client.xlen(STREAM) < 500:
                    # On an idle machine a worker can drain the stream before a poll sees it holding a
                    # batch: keep it busy (every event pushed is counted in `events`).
                    events += push_events(redis_client, pixels, 2_000)
                return consumer_pending(redis_client, name) > 0  # a batch read and not yet acknowledged

            wait_until(holding, f"{name} to hold a batch", interval=0.001)  # cheap: one Redis call
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            kills.append((name, row_count(engine), consumer_pending(redis_client, name)))
            held |= held_event_ids(redis_client, name)
            if kills[-1][2]:
                break
        rows_before_survivor = row_count(engine)
        assert kills[-1][2] > 0, f"no worker died holding pending entries: {kills}"
        assert rows_before_survivor < events, "the stream was drained before the worker was killed"
        survivor_log = tmp_path / "survivor.log"
        with survivor_log.open("wb") as log:
            survivor = start_worker(env, "survivor", log, tmp_path)
        procs.append(survivor)

        def done() -> bool:
            if survivor.poll() is not None:
                raise AssertionError(f"survivor exited ({survivor.returncode})")
            # Redis first (cheap); the rows are counted only once the stream is empty.
            return pending(redis_client) == 0 and redis_client.xlen(STREAM) == 0 and row_count(engine) >= events

        wait_until(done, "the survivor to insert every event and reclaim the dead consumers' entries", timeout=90)
        stop_process(survivor)
        counts = openings(engine, pixels)
        left = {name: consumer_pending(redis_client, name) for name, _, _ in kills}
        print(
            f"\n[c] injected: SIGKILL of `pixeltrack worker` (batch 50) x {len(kills)}: "
            + ", ".join(f"{n} at {r} rows holding {p} pending" for n, r, p in kills)
            + f"; survivor started with WORKER_CLAIM_IDLE_MS=1000.\n"
            f"    dead consumers' pending now {left}.\n"
            f"    rows: {counts['rows']} openings for {events} events, {counts['distinct_event_ids']} distinct event ids; "
            f"pending {pending(redis_client)}, stream length {redis_client.xlen(STREAM)}."
        )
        assert counts["rows"] == events
        assert counts["distinct_event_ids"] == events
        assert pending(redis_client) == 0
        assert redis_client.xlen(STREAM) == 0
        assert set(left.values()) == {0}
        # What the dead consumers held was reclaimed and stored, each event exactly once.
        assert len(held) == sum(p for _, _, p in kills)
        assert stored_event_ids(engine, held) == dict.fromkeys(held, 1)
    finally:
        for proc in procs:
            stop_process(proc, signal.SIGKILL)


# --- d) API process restarted under load ----------------------------------------------------------


@pytest.mark.parametrize("mode", ["redis", "embedded"])
def test_api_restarted_under_load_every_acknowledged_load_lands_once(
    mode: str, settings: Settings, engine: Engine, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    pixels = seed_pixels(engine, 6000)
    codec = TokenCodec(settings.fernet_keys())
    extra: dict[str, str] = {}
    worker: StreamWorker | None = None
    redis_client: Any = None
    if mode == "redis":
        redis_client = request.getfixturevalue("redis_client")
        redis_url: str = request.getfixturevalue("redis_url")
        extra["REDIS_URL"] = redis_url
        worker = StreamWorker(sync_redis(redis_url), engine, consumer="fault-d", batch_size=500, block_ms=50)
    env = process_env(settings, **extra)
    port = free_port()
    log = tmp_path / "serve.log"
    loader = PixelLoader(port, [f"/o/{codec.pixel_token(p)}.gif" for p in pixels])
    draining: AbstractContextManager[WorkerThread | None] = (
        WorkerThread(worker) if worker is not None else nullcontext()
    )
    with draining as worker_thread:
        try:
            with api_server(env, port, log, tmp_path) as first:
                loader.start()
                wait_until(lambda: len(loader.acked) >= 800, "loads acknowledged by the first server")
                acked_first = len(loader.acked)
                first.send_signal(signal.SIGTERM)  # graceful: in-flight requests answered, queue flushed
                first.wait(30)
            exit_code = first.returncode
            with api_server(env, port, log, tmp_path) as second:
                mark = len(loader.acked)
                wait_until(
                    lambda: len(loader.acked) >= mark + 800 or loader.exhausted(),
                    "loads acknowledged by the restarted server",
                )
                loader.stop()
                second.send_signal(signal.SIGTERM)
                second.wait(30)
        finally:
            loader.stop()
        assert not loader.exhausted(), "ran out of pixels: the restart was not under load"
        if worker_thread is not None:

            def drained() -> bool:
                worker_thread.check()
                return pending(redis_client) == 0 and redis_client.xlen(STREAM) == 0

            wait_until(drained, "the worker to drain the stream")
    counts = openings(engine, pixels)
    per_pixel = counts["per_pixel"]
    acked = {pixels[i] for i in loader.acked}
    failed = {pixels[i] for i in loader.failed}
    lost = sorted(p for p in acked if per_pixel.get(p, 0) != 1)
    failed_recorded = sum(1 for p in failed if p in per_pixel)
    print(
        f"\n[d:{mode}] injected: SIGTERM of `pixeltrack serve` under load (8 connections) after "
        f"{acked_first} acknowledged loads (exit code {exit_code}), restart on the same port.\n"
        f"    loads: {len(loader.acked)} x 200, {len(loader.failed)} failed (connection closed before the answer; "
        f"{failed_recorded} of them recorded anyway), {len(loader.other)} other statuses, "
        f"{loader.refused} refused connects while down.\n"
        f"    rows: {counts['rows']} openings, {counts['distinct_event_ids']} distinct event ids, "
        f"{len(per_pixel)} distinct pixels; acknowledged but missing: {len(lost)}."
    )
    assert loader.other == []
    assert lost == []  # every 200 became exactly one opening
    assert set(per_pixel) <= acked | failed  # nothing recorded that was not requested
    assert max(per_pixel.values()) == 1  # no pixel recorded twice
    assert counts["rows"] == len(acked) + failed_recorded
    assert counts["distinct_event_ids"] == counts["rows"]
