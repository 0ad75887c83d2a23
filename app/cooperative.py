"""Sharing the interpreter with the event loop while CPU-bound work runs in the threadpool.

A bulk import (10,000 rows: JSON decoding, validation, SQL parameter escaping, building the
answer) runs in a threadpool thread, but in one process threads take turns on the GIL: while it
holds the GIL the event loop, which answers every tenant's pixels, waits. CPython hands the GIL
to a waiting thread only every `sys.getswitchinterval()` (5 ms by default), and a pixel load
needs the loop several times (read, Redis reply, write), so each wait adds up.

Two measures, measured by `bench/import_bench.py` (docs/benchmarks.md):
- `SWITCH_INTERVAL`: the server process asks for the GIL to change hands every 0.5 ms
  (`configure_process`, called by the app factory); a lone thread never pays for it.
- `pause()` between chunks of such work: the worker thread sleeps briefly, so the loop runs a
  whole iteration without waiting at all; only while other requests are in flight (the pixel
  and click fast path and the app count them: `arrived`/`left`, app/tracking/asgi.py). A bulk
  request marks itself (`bulk()`) so that it does not wait for itself: on an idle server it
  never sleeps (a 10,000-row import slept about 2 s of its 5 s before; docs/benchmarks.md).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

SWITCH_INTERVAL = 0.0005  # seconds; CPython's default is 0.005
PAUSE = 0.0005  # least seconds given to the event loop between chunks
MAX_PAUSE = 0.05
CHUNK = 500  # rows of CPU-bound work between pauses


def configure_process() -> None:
    """Server processes: a shorter GIL switch interval (see the module docstring)."""
    if sys.getswitchinterval() > SWITCH_INTERVAL:
        sys.setswitchinterval(SWITCH_INTERVAL)


_in_flight = 0  # HTTP requests being answered (written by the event loop's thread only)
_bulk = 0  # of them, those doing bulk work in the threadpool (`bulk()`)
_bulk_lock = threading.Lock()


def arrived() -> None:
    """On the event loop: an HTTP request starts."""
    global _in_flight
    _in_flight += 1


def left() -> None:
    """On the event loop: an HTTP request is answered (or failed)."""
    global _in_flight
    _in_flight -= 1


@contextmanager
def bulk() -> Iterator[None]:
    """Around the threadpool work of a bulk request: its own request is no reason to pause."""
    global _bulk
    with _bulk_lock:
        _bulk += 1
    try:
        yield
    finally:
        with _bulk_lock:
            _bulk -= 1


def others_waiting() -> bool:
    """Whether requests other than the bulk ones are in flight: the event loop has work to do."""
    return _in_flight > _bulk


def pause(worked: float = 0.0) -> None:
    """In a threadpool thread, after `worked` seconds of CPU: step aside as long (at least PAUSE)
    when other requests are in flight."""
    if others_waiting():
        time.sleep(min(max(worked, PAUSE), MAX_PAUSE))


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[tuple[int, Sequence[T]]]:
    """(offset, slice) of `items`; between slices, step aside as long as the last one held the
    interpreter (this thread's CPU time: waiting on the database does not count)."""
    started = time.thread_time()
    for start in range(0, len(items), size):
        if start:
            pause(time.thread_time() - started)
            started = time.thread_time()
        yield start, items[start : start + size]
