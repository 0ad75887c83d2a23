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
  whole iteration without waiting at all.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
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


def pause(worked: float = 0.0) -> None:
    """In a threadpool thread, after `worked` seconds of CPU: step aside as long (at least PAUSE)."""
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
