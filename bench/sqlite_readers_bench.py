"""Reader throughput on SQLite: read-only sessions under BEGIN IMMEDIATE vs a plain BEGIN.

The measurement behind docs/transactions.md ("Read-only work does not take the write lock"):
4 threads each read a campaign and count its openings, with an idle or a busy writer (a
thread storing ingest batches of 2,000 events, the in-process flusher's largest), 3 s per
run, the runs of the four cases interleaved 3 times; the median run of each case is printed.
Run: `.venv/bin/python -m bench.sqlite_readers_bench`.
"""

from __future__ import annotations

import tempfile
import threading
import time
from typing import Any

from sqlalchemy import func, select

from app.db import make_engine, make_sessionmaker, read_only
from app.migrations import upgrade
from app.models import Campaign, Opening
from app.tracking.events import OPEN, Event, new_event_id
from app.tracking.ingest import store_events
from tests import factories

SECONDS = 3.0
READERS = 4
REPEATS = 3
BATCH = 2000


def main() -> None:
    engine = make_engine(f"sqlite:///{tempfile.mkdtemp()}/bench.db")
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    with sessions() as db:
        user = factories.make_user(db, username="bench")
        campaign_id = factories.make_tree(db, user)["campaign"].id  # read: its data never changes
        pixel_id = factories.make_tree(db, user)["pixel"].id  # written: another campaign's pixel

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
                ids = [new_event_id() for _ in range(BATCH)]
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

    cases = [(busy, as_reader) for busy in (False, True) for as_reader in (False, True)]
    runs: dict[tuple[bool, bool], list[tuple[float, float, float]]] = {case: [] for case in cases}
    for _ in range(REPEATS):
        for busy, as_reader in cases:
            runs[(busy, as_reader)].append(measure(as_reader, busy))
    print("| writer | readers' BEGIN | reads/s | p50 | p99 |\n|---|---|---|---|---|")
    for busy, as_reader in cases:
        rate, p50, p99 = sorted(runs[(busy, as_reader)])[REPEATS // 2]
        begin = "`BEGIN` (read-only)" if as_reader else "`BEGIN IMMEDIATE`"
        print(f"| {'busy' if busy else 'idle'} | {begin} | {rate:.0f} | {p50:.2f} ms | {p99:.0f} ms |")
    print("\n| a reader's transaction open for 1 s (an export streaming) | one ingest batch takes |\n|---|---|")
    for as_reader in (False, True):
        seconds = batch_during_long_read(engine, sessions, as_reader, campaign_id, pixel_id)
        begin = "`BEGIN` (read-only)" if as_reader else "`BEGIN IMMEDIATE`"
        print(f"| {begin} | {seconds * 1000:.0f} ms |")


def batch_during_long_read(engine: Any, sessions: Any, as_reader: bool, campaign_id: int, pixel_id: int) -> float:
    """How long one ingest batch takes while a reader holds its transaction open for a second."""
    reading = threading.Event()

    def long_read() -> None:
        with sessions() as session:
            if as_reader:
                read_only(session)
            session.get(Campaign, campaign_id)
            reading.set()
            time.sleep(1.0)  # the export's chunks being sent
            session.commit()

    reader = threading.Thread(target=long_read)
    reader.start()
    reading.wait()
    ids = [new_event_id() for _ in range(BATCH)]
    started = time.perf_counter()
    store_events(engine, [(i, Event(OPEN, pixel_id, 0, 1_772_000_000_000, "browser", "", "", i)) for i in ids])
    elapsed = time.perf_counter() - started
    reader.join()
    return elapsed


if __name__ == "__main__":
    main()
