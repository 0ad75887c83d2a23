"""Events out (issue #14): what the outbox costs the ingest, and how fast one dispatcher delivers.

1. Ingest: batches of 1,000 opens (many contacts, a realistic mix) stored with `store_events`,
   with the outbox written (as shipped) and with `outbox.record` replaced by a no-op, the runs of
   the two cases interleaved in the same process, same database: the ratio is the outbox's cost.
2. Delivery: a pre-filled outbox of N events drained by one `Dispatcher` (WEBHOOK_BATCH_MAX=100)
   to a local receiver (a threaded http.server in a process of its own, keep-alive, that verifies
   nothing and answers 200): events/s from the first poll to the last 2xx, and the CPU time of
   this process (the dispatcher's) per 10,000 events, steadier than the rate on a shared machine.

3. `--paced` (bench/webhook_pace.py): the API as shipped under a live pixel load with the
   dispatcher delivering to a receiver: lag from pixel load to delivery at a paced 1,000 loads/s
   (wrk), and the pixel path's full-load throughput with and without the dispatcher, same run.

Run: `.venv/bin/python -m bench.webhook_bench [--database-url mysql+pymysql://root@127.0.0.1:3306/db]`
(default: a temporary SQLite file), or `.venv/bin/python -m bench.webhook_bench --paced [--rate 1000]
[--duration 30] [--full-duration 10] [--rounds 2]` (MariaDB + a private redis-server, wrk). The database must be empty (it is migrated here).
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import statistics
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from unittest import mock

from cryptography.fernet import Fernet
from sqlalchemy import func, select

from app.db import make_engine, make_sessionmaker
from app.migrations import upgrade
from app.models import WebhookBatch
from app.settings import Settings
from app.tracking.events import OPEN, Event, new_event_id
from app.tracking.ingest import store_events
from app.webhooks import sequence
from app.webhooks.dispatcher import Dispatcher
from bench import webhook_pace
from tests import factories
from tests.support.processes import free_port, wait_until

CONTACTS = 2000
BATCH = 1000
ROUNDS = 6
DELIVER = 20_000


class _Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


def _serve_sink(port: int) -> None:
    ThreadingHTTPServer(("127.0.0.1", port), _Sink).serve_forever()


def _pixels(engine: Any) -> tuple[int, list[int]]:
    sessions = make_sessionmaker(engine)
    with sessions() as db:
        user = factories.make_user(db, username="bench")
        with factories.one_commit(db):  # through the factories: the report counters exist for them
            campaign = factories.make_campaign(db, user)
            group = factories.make_group(db, campaign)
            contacts = [factories.make_contact(db, group) for _ in range(CONTACTS)]
            pixels = [factories.make_pixel(db, contact).id for contact in contacts]
        return user.id, pixels


def _batch(pixels: list[int], n: int, at_ms: int) -> list[tuple[str, Event]]:
    ids = [new_event_id() for _ in range(n)]
    return [
        (eid, Event(OPEN, pixels[i % len(pixels)], 0, at_ms + i, "browser", "", "", eid)) for i, eid in enumerate(ids)
    ]


def bench_ingest(engine: Any, pixels: list[int]) -> dict[str, float]:
    times: dict[str, list[float]] = {"with outbox": [], "without outbox": []}
    at = 1_772_000_000_000
    for round_ in range(ROUNDS):
        for case in times:
            batch = _batch(pixels, BATCH, at + round_ * 10_000_000)
            started = time.perf_counter()
            if case == "without outbox":
                with mock.patch("app.webhooks.outbox.record", return_value=0):
                    store_events(engine, batch)
            else:
                store_events(engine, batch)
            times[case].append(time.perf_counter() - started)
    return {case: BATCH / statistics.median(values) for case, values in times.items()}


def bench_delivery(engine: Any, settings: Settings, owner_id: int, pixels: list[int]) -> dict[str, float]:
    port = free_port()
    sink = multiprocessing.Process(target=_serve_sink, args=(port,), daemon=True)
    sink.start()
    wait_until(lambda: _listening(port), "the receiver to listen")
    sequence.assign(engine, limit=10**9)
    with engine.begin() as conn:
        webhook_pace.add_webhook(conn, settings, owner_id, f"http://127.0.0.1:{port}/hook", "open,click")
    for start in range(0, DELIVER, BATCH):
        store_events(engine, _batch(pixels, BATCH, 1_780_000_000_000 + start))
    dispatcher = Dispatcher(engine, settings)
    started, cpu = time.perf_counter(), time.process_time()
    done = 0
    while done < DELIVER:
        dispatcher.poll()
        time.sleep(0.05)  # the poll loop and the count compete with the delivery threads for the GIL
        with engine.connect() as conn:
            done = conn.scalar(
                select(func.coalesce(func.sum(WebhookBatch.event_count), 0)).where(WebhookBatch.status == "delivered")
            )
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    dispatcher.close()
    sink.terminate()
    return {
        "events": DELIVER,
        "seconds": elapsed,
        "events per second": DELIVER / elapsed,
        "cpu seconds per 10k": cpu / DELIVER * 10_000,
    }


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def main() -> None:
    if "--paced" in sys.argv[1:]:  # the live-load part: bench/webhook_pace.py
        raise SystemExit(webhook_pace.main(sys.argv[1:]))
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", default=f"sqlite:///{tempfile.mkdtemp()}/webhook-bench.db")
    parser.add_argument("--skip-ingest", action="store_true", help="measure the delivery only")
    args = parser.parse_args()
    url = args.database_url
    engine = make_engine(url)
    upgrade(engine)
    settings = Settings(
        _env_file=None,
        database_url=url,
        api_secret_key="bench-" + "x" * 40,
        fernet_key=Fernet.generate_key().decode(),
        webhook_allow_private=True,
    )
    owner_id, pixels = _pixels(engine)
    if not args.skip_ingest:
        ingest = bench_ingest(engine, pixels)
        print(f"ingest ({engine.dialect.name}, batches of {BATCH}, median of {ROUNDS}):")
        for case, rate in ingest.items():
            print(f"  {case:15} {rate:9,.0f} events/s")
        print(f"  outbox cost: {1 - ingest['with outbox'] / ingest['without outbox']:.0%} of the ingest throughput")
    delivery = bench_delivery(engine, settings, owner_id, pixels)
    print(
        f"delivery: {delivery['events']:,} events in {delivery['seconds']:.2f} s = "
        f"{delivery['events per second']:,.0f} events/s (one dispatcher, batches of {settings.webhook_batch_max}); "
        f"{delivery['cpu seconds per 10k']:.2f} CPU s per 10,000 events (this process: the dispatcher)"
    )


if __name__ == "__main__":
    main()
