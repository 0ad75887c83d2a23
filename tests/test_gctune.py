"""app/gctune.py: a long-running process freezes what it loaded at startup and collects its young
garbage less often (the API's ASGI app once built; `pixeltrack worker` and `pixeltrack dispatcher`
before their loops)."""

from __future__ import annotations

import gc
import signal
from collections.abc import Iterator

import pytest

from app import gctune


@pytest.fixture
def collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_tune_freezes_what_is_alive_and_raises_the_thresholds(collector: None) -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    alive = [object() for _ in range(10)], {"kept": [1, 2, 3]}  # tracked containers alive now

    gctune.tune()

    assert gc.get_threshold() == gctune.THRESHOLDS == (50_000, 20, 100)
    assert gc.get_freeze_count() > 0
    assert not any(obj is alive[1] for obj in gc.get_objects())  # frozen: no longer walked
    gc.unfreeze()
    assert any(obj is alive[1] for obj in gc.get_objects())


def test_the_worker_loop_tunes_the_collector_before_it_starts(collector: None) -> None:
    from app.tracking.worker import ConsumerLoop, WorkerStats

    class Once(ConsumerLoop):
        consumer = "test"
        stats = WorkerStats()
        tuned = (0, 0, 0)

        def run_once(self, *, block: bool = True) -> int:
            self.tuned = gc.get_threshold()
            self.stop()
            return 0

        def describe(self) -> str:
            return "nothing"

        def update_gauges(self) -> None:
            return None

    gc.set_threshold(700, 10, 10)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    loop = Once()
    try:
        loop.run_forever()  # (sets its own SIGTERM/SIGINT handlers: restored below)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert loop.tuned == gctune.THRESHOLDS
