"""Running `pixeltrack` commands as real processes (serve, worker) with a test's settings."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx

from app.settings import Settings
from tests.support.processes import stop_process, wait_until

VENV_BIN = Path(sys.executable).parent
PIXELTRACK = str(VENV_BIN / "pixeltrack")
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"


def process_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a `pixeltrack` subprocess: no inherited configuration, the test's keys."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in Settings.model_fields and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    env.update(
        APP_ENV="test",
        DATABASE_URL=settings.sqlalchemy_url,
        API_SECRET_KEY=settings.secret_key(),
        FERNET_KEY=settings.fernet_keys()[0],
        SECRETS_FILE=settings.secrets_file,
        LOG_LEVEL="WARNING",
        WORKER_METRICS_PORT="0",
    )
    env.update(extra)
    return env


def start_worker(env: dict[str, str], consumer: str, log: IO[bytes], cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [PIXELTRACK, "worker", "--consumer", consumer], env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT
    )


@contextmanager
def api_server(env: dict[str, str], port: int, log: Path, cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`pixeltrack serve` on the port; waits for /healthz; always stopped (SIGTERM) on exit."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [PIXELTRACK, "serve", "--no-sample", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def healthy() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"pixeltrack serve exited ({proc.returncode}); see {log}")
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, "pixeltrack serve to answer /healthz", interval=0.05)
        yield proc
    finally:
        stop_process(proc)
