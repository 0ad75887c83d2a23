"""Reader throughput on SQLite: read-only sessions under BEGIN IMMEDIATE vs a plain BEGIN.

The measurement behind docs/transactions.md ("Read-only work does not take the write lock"):
4 threads each read a campaign and count its openings, with an idle or a busy writer (a
thread storing 200-event ingest batches). Run: `.venv/bin/python -m bench.sqlite_readers_bench`.
"""

from __future__ import annotations

import tempfile
import threading
import time

from sqlalchemy import func, select

from app.db import make_engine, make_sessionmaker, read_only
from app.migrations import upgrade
from app.models import Campaign, Opening
from app.tracking.events import OPEN, Event, new_event_id
from app.tracking.ingest import store_events
from tests import factories

SECONDS = 3.0
READERS = 4


def main() -> None:
    engine = make_engine(f"sqlite:///{tempfile.mkdtemp()}/bench.db")
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    with sessions() as db:
        tree = factories.make_tree(db, factories.make_user(db, username="bench"))
        pixel_id, campaign_id = tree["pixel"].id, tree["campaign"].id

    def measure(as_reader: bool, busy_writer: bool) -> tuple[float, float, float]:
        stop = time.monotonic() + SECONDS
        latencies: list[float] = []

        def read() -> None:
            while time.monotonic() < stop:
                started = time.perf_counter()
                with sessions() as session:
                    if as_reader:
                        read_only(session)
                    session.get(Campaign, campaign_id)
                    session.scalar(select(func.count()).select_from(Opening).where(Opening.campaign_id == campaign_id))
                    session.commit()
                latencies.append(time.perf_counter() - started)

        def write() -> None:
            while time.monotonic() < stop:
                ids = [new_event_id() for _ in range(200)]
                store_events(
                    engine, [(i, Event(OPEN, pixel_id, 0, 1_772_000_000_000, "browser", "", "", i)) for i in ids]
                )

        threads = [threading.Thread(target=read) for _ in range(READERS)]
        if busy_writer:
            threads.append(threading.Thread(target=write))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        latencies.sort()
        return (
            len(latencies) / SECONDS,
            latencies[len(latencies) // 2] * 1000,
            latencies[len(latencies) * 99 // 100] * 1000,
        )

    print("| writer | readers' BEGIN | reads/s | p50 | p99 |\n|---|---|---|---|---|")
    for busy in (False, True):
        for as_reader in (False, True):
            rate, p50, p99 = measure(as_reader, busy)
            begin = "`BEGIN` (read-only)" if as_reader else "`BEGIN IMMEDIATE`"
            print(f"| {'busy' if busy else 'idle'} | {begin} | {rate:.0f} | {p50:.2f} ms | {p99:.0f} ms |")


if __name__ == "__main__":
    main()
