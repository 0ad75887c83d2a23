"""The garbage collector of a long-running process: `tune()` once it has loaded what it keeps for
its life (the API's ASGI app once built, `pixeltrack worker` and `pixeltrack dispatcher` before
their loops).

CPython's cyclic collector runs a young collection every 700 allocations (net of frees) and, every
100 of those, a full one that walks every object the collector tracks, for garbage that is almost
all young: a request's or a batch's own objects. Measured:
- API: pixel p99 30 ms → 7 ms (a full collection stalled every request in flight);
- stream worker, once its classifier has loaded its pattern data (~150,000 tracked objects): the
  collector took ~3 s of the ~14 s of CPU spent draining 200,000 events, about a fifth; after
  `tune`, ~0.8 s (bench/pixel_worker.py; docs/benchmarks.md, worker).

`tune` collects once, freezes what is alive then (`gc.freeze`: the permanent generation, never
walked again; what a process loads at startup lives as long as it does) and collects the young
generation every 50,000 allocations: cycles are still collected, far less often, and a full
collection no longer walks the startup objects. Young cyclic garbage waits a little longer
(at most a few megabytes).
"""

from __future__ import annotations

import gc

THRESHOLDS = (50_000, 20, 100)


def tune() -> None:
    """Freeze the objects alive now; collect less often (THRESHOLDS)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
