"""A StreamWorker looping in a background thread (fault tests)."""

from __future__ import annotations

import threading

import redis

from app.tracking.worker import StreamWorker


class WorkerThread:
    """A StreamWorker looping in a thread the way `pixeltrack worker` does (run_forever installs
    signal handlers, which only the main thread may do): Redis errors are retried."""

    def __init__(self, worker: StreamWorker) -> None:
        self.worker = worker
        self.redis_errors = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"worker-{worker.consumer}", daemon=True)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self.worker.run_once()
                except redis.RedisError:
                    self.redis_errors += 1
                    self._stop.wait(0.05)  # Redis is down: retry soon (run_forever waits 1 s)
        except BaseException as exc:  # surfaced by check()
            self.error = exc

    def check(self) -> None:
        if self.error is not None:
            raise AssertionError(f"worker thread died: {self.error!r}") from self.error

    def __enter__(self) -> WorkerThread:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self.worker.stop()
        self._thread.join(30)
