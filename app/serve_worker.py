"""The children `pixeltrack serve` runs beside the API: the stream consumer when Redis is
configured, and the webhook dispatcher (app/webhooks/dispatcher.py).

One `pixeltrack worker` child process per `serve` (not one per uvicorn worker), stopped with it:
on SIGTERM/SIGINT (uvicorn shuts down gracefully, then re-raises the signal, caught here), and
on Linux also when `serve` is killed outright (the child asks for SIGTERM on its parent's death).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from app.metrics import MULTIPROC_ENV
from app.settings import Settings


class Stopped(Exception):
    """SIGTERM/SIGINT reached `serve` (re-raised by uvicorn once it has shut down)."""


@contextmanager
def stop_on_signals() -> Iterator[None]:
    def stop(signum: int, _frame: object) -> None:
        raise Stopped(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def start_stream_consumer(settings: Settings) -> subprocess.Popen[bytes]:
    """One `pixeltrack worker` beside the API (not one per uvicorn worker), stopped with `serve`.

    Its metrics port is off unless WORKER_METRICS_PORT is set explicitly (two `serve` on one
    machine would otherwise fight over the default port).
    """
    explicit = "worker_metrics_port" in settings.model_fields_set
    return start_child("worker", "stream consumer", "--no-worker", metrics=explicit)


def start_child(
    command: Literal["worker", "dispatcher"], what: str, opt_out: str, *, metrics: bool = False
) -> subprocess.Popen[bytes]:
    """`pixeltrack <command>` beside the API, stopped with `serve` (the dispatcher: app/webhooks).
    Without `metrics` its metrics port is off (WORKER_METRICS_PORT=0: one port, one process)."""
    env = dict(os.environ)
    env.pop(MULTIPROC_ENV, None)  # the API processes' shared metrics directory is theirs only
    if not metrics:
        env["WORKER_METRICS_PORT"] = "0"
    print(f"{what}: started `pixeltrack {command}` beside the API ({opt_out} to run it yourself)", flush=True)
    argv = [sys.executable, "-m", "app.cli", command]  # one of two fixed subcommands
    return subprocess.Popen(argv, env=env, preexec_fn=_die_with_parent)  # noqa: S603


def _die_with_parent() -> None:
    """In the child: SIGTERM when `serve` dies, even by SIGKILL (Linux), so no orphan keeps consuming."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGTERM)


def stop_stream_consumer(proc: subprocess.Popen[bytes] | None, timeout: float = 30.0) -> None:
    """SIGTERM: the worker finishes (and acknowledges) its batch and exits; SIGKILL only if it hangs."""
    if proc is None:
        return
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
