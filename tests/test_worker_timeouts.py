"""The stream worker never waits on a dead peer or on a slow reclaim cadence (issue 10, item 29).

- A database that stops answering without closing its connections (frozen host, partition)
  raised nothing with pymysql's default of no read/write timeout: the worker blocked forever.
  With DATABASE_READ/WRITE_TIMEOUT_SECONDS it reports a database error, keeps the batch
  pending and lands it once the database answers again.
- Setting the ingest connection's isolation level raised the driver's own error (SQLAlchemy does
  not wrap it) when the database was lost right after the pool's ping: the worker died (this
  was the flaky "timed out waiting for the worker to report database errors" of test_faults).
- An idle worker blocks `block_ms` per loop and used to reclaim a dead consumer's entries only
  every `claim_every` loops (10 s with the defaults); it now also reclaims on wall time.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from app.clients import sync_redis
from app.db import make_engine
from app.tracking.queue import GROUP, STREAM
from app.tracking.worker import StreamWorker, ensure_group
from tests.support.processes import wait_until
from tests.support.tcp_proxy import FreezableProxy
from tests.support.tracking_data import openings, pending, push_events, seed_pixels
from tests.support.worker_thread import WorkerThread

pytestmark = pytest.mark.processes  # starts real processes or servers: not in the fast loop


@pytest.mark.mysql_only
def test_worker_does_not_block_on_a_database_that_stops_answering(
    engine: Engine, database_url: str, redis_client: Any, redis_url: str
) -> None:
    pixels = seed_pixels(engine, 10)
    url = make_url(database_url)
    proxy = FreezableProxy(url.host or "127.0.0.1", url.port or 3306)
    through_proxy = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    eng = make_engine(through_proxy, connect_timeout=1, read_timeout=1, write_timeout=1)
    try:
        push_events(redis_client, pixels, 10)
        worker = StreamWorker(
            sync_redis(redis_url), eng, consumer="frozen", batch_size=10, block_ms=50, max_backoff=0.5
        )
        assert worker.run_once(block=False) == 10  # the proxy forwards
        push_events(redis_client, pixels, 10)
        proxy.freeze()  # connections stay open, nothing comes back
        with WorkerThread(worker) as thread:

            def failed() -> bool:
                thread.check()
                return worker.stats.db_errors >= 2

            wait_until(failed, "the worker to report the hung database", timeout=20)
            assert worker.stats.inserted == 10
            assert pending(redis_client) == 10  # the batch it could not write stays pending
            proxy.thaw()

            def landed() -> bool:
                thread.check()
                return pending(redis_client) == 0 and redis_client.xlen(STREAM) == 0

            wait_until(landed, "the batch to land once the database answers", timeout=20)
        counts = openings(engine, pixels)
        assert (counts["rows"], counts["distinct_event_ids"]) == (20, 20)
    finally:
        proxy.close()
        eng.dispose()


def test_an_idle_worker_reclaims_a_dead_consumers_entries_without_waiting_claim_every_loops(
    engine: Engine, redis_client: Any, redis_url: str
) -> None:
    pixels = seed_pixels(engine, 5)
    ensure_group(redis_client)
    push_events(redis_client, pixels, 5)
    redis_client.xreadgroup(GROUP, "dead", {STREAM: ">"}, count=5)  # delivered, never acknowledged
    survivor = StreamWorker(
        sync_redis(redis_url), engine, consumer="survivor", block_ms=200, claim_idle_ms=100, claim_every=10
    )
    handled = [survivor.run_once() for _ in range(3)]  # each idle loop blocks 200 ms > claim_idle_ms
    assert survivor.stats.reclaimed == 5, handled
    assert sum(handled) == 5
    assert pending(redis_client) == 0
    assert openings(engine, pixels)["rows"] == 5
